//! Names, labels, ports and paths shared by the builders, the controller and the in-pod agent.
//!
//! Every object Zooherd creates for an ensemble is named after the ensemble, so the controller
//! can find each child (and each server's pod) from the ensemble alone, without listing. The
//! agent inside a pod derives its myid from its own pod name with [`ordinal_from_pod_name`] and
//! [`Myid::from_ordinal`](crate::quorum::Myid::from_ordinal), and the paths and ports below are the ones zoo.cfg and the pod spec agree on, so
//! they live in one place.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::api::ZooKeeperEnsemble;

/// Port ZooKeeper clients connect to.
pub const CLIENT_PORT: i32 = 2181;
/// Port followers use to talk to the leader.
pub const QUORUM_PORT: i32 = 2888;
/// Port ZooKeeper clients connect to with TLS, when `spec.tls.client` asks for it.
pub const SECURE_CLIENT_PORT: i32 = 2281;
/// Port of the leader election.
pub const ELECTION_PORT: i32 = 3888;
/// Port of the AdminServer (HTTP, `/commands/<name>`), which the probes and the operator ask.
pub const ADMIN_PORT: i32 = 8080;
/// Port of the Prometheus metrics endpoint.
pub const METRICS_PORT: i32 = 7000;

/// Directory where the ConfigMap holding zoo.cfg is mounted, read-only.
pub const CONFIG_DIR: &str = "/etc/zooherd";
/// Key of zoo.cfg in the ConfigMap, and so its file name under [`CONFIG_DIR`].
pub const ZOO_CFG_KEY: &str = "zoo.cfg";
/// Full path of zoo.cfg inside a server pod.
pub const ZOO_CFG_PATH: &str = "/etc/zooherd/zoo.cfg";
/// Key of the bootstrap membership in the ConfigMap (see [`super::zoo_cfg::bootstrap_membership`]).
pub const MEMBERS_KEY: &str = "members";
/// Full path of the bootstrap membership inside a server pod.
pub const MEMBERS_PATH: &str = "/etc/zooherd/members";
/// Key in the ConfigMap that says whether the ensemble has ever formed a quorum ("true" or
/// "false"). Once true it stays true: from then on an empty volume never starts as a voter.
pub const FORMED_KEY: &str = "formed";
/// Key in the ConfigMap naming the quorum TLS stage its zoo.cfg configures (see
/// [`super::quorum_tls`]); absent in ConfigMaps written before quorum TLS existed, which
/// configure none.
pub const QUORUM_TLS_KEY: &str = "quorumTls";
/// Pod template annotation naming the quorum TLS stage the pod's servers run; absent: off.
pub const QUORUM_TLS_ANNOTATION: &str = "zooherd.dev/quorum-tls";
/// Pod template annotation, "true" when the pod's server started with an AdminServer that takes
/// only HTTPS from clients with a certificate of the ensemble's CA. A pod of an older template
/// (an operator from before, whose servers run the same quorum TLS stage with a plain HTTP
/// AdminServer) does not carry it, and is asked in plain HTTP until the roll replaces it.
pub const ADMIN_TLS_ANNOTATION: &str = "zooherd.dev/admin-tls";
/// Annotation of the pod template when its servers run SASL client authentication
/// (`spec.clientAuthentication`: users, or enforcement): the value is a hash of the users
/// Secret's contents (empty without one: the operator's user alone), so that
/// a changed Secret rolls the servers (ZooKeeper reads its users once, at start). The operator
/// logs in with SASL to the servers of pods that carry it, and without to the others.
pub const CLIENT_SASL_ANNOTATION: &str = "zooherd.dev/client-sasl-users";
/// Where a server's container mounts the users Secret.
pub const SASL_USERS_DIR: &str = "/etc/zooherd-sasl-users";
/// Annotation of the pod template when its servers take client certificates
/// (`spec.clientAuthentication.x509ClientCaSecret`): a hash of the CA certificate(s), so that
/// a changed CA rolls the servers (ZooKeeper reads its trust store at start).
pub const CLIENT_X509_CA_ANNOTATION: &str = "zooherd.dev/client-x509-ca";
/// Where a server's container mounts the client CA Secret's `ca.crt`.
pub const X509_CLIENT_CA_DIR: &str = "/etc/zooherd-client-ca";
/// Annotation of the quorum TLS Secret and of the pod template: how many times the servers'
/// certificate has been renewed. Absent: never (a template without it is what every operator
/// version before renewal wrote, so an upgrade rolls nothing). A renewal changes the template,
/// so the servers are rolled onto the new certificate.
pub const CERTIFICATE_GENERATION_ANNOTATION: &str = "zooherd.dev/certificate-generation";
/// Full path of [`FORMED_KEY`] inside a server pod.
pub const FORMED_PATH: &str = "/etc/zooherd/formed";
/// Snapshots and `myid` (and the transaction log unless it has its own volume).
pub const DATA_DIR: &str = "/var/lib/zookeeper/data";
/// The transaction log, when `spec.storage.transactionLog` asks for a separate volume.
pub const LOG_DIR: &str = "/var/lib/zookeeper/log";
/// A writable scratch directory (an emptyDir): the root filesystem is read-only.
pub const TMP_DIR: &str = "/tmp";

/// Name of the server container in every pod.
pub const CONTAINER: &str = "zookeeper";

/// Label keys, from the Kubernetes recommended set.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// Value of [`MANAGED_BY_LABEL`] on everything Zooherd creates.
pub const MANAGED_BY: &str = "zooherd";

/// Pod template annotation holding the hash of the servers' configuration (zoo.cfg and the JVM
/// settings): a configuration change changes the template, so the pods get rolled.
pub const CONFIG_HASH_ANNOTATION: &str = "zooherd.dev/config-hash";

/// Headless Service that gives every server a stable DNS name (see [`server_host`]).
pub fn headless_service(ensemble: &ZooKeeperEnsemble) -> String {
    format!("{}-headless", ensemble.name_any())
}

/// ClusterIP Service that clients connect to; it only routes to serving (Ready) servers.
pub fn client_service(ensemble: &ZooKeeperEnsemble) -> String {
    format!("{}-client", ensemble.name_any())
}

/// ConfigMap holding zoo.cfg.
pub fn config_map(ensemble: &ZooKeeperEnsemble) -> String {
    format!("{}-config", ensemble.name_any())
}

/// Secret holding the superuser's password and digest: the operator reconfigures the
/// ensemble as this user.
pub fn superuser_secret(ensemble: &ZooKeeperEnsemble) -> String {
    format!("{}-zooherd-superuser", ensemble.name_any())
}

/// `<name>-zooherd-tls`: the ensemble's quorum CA and its servers' certificate (see
/// [`super::quorum_tls`]).
pub fn tls_secret(ensemble: &ZooKeeperEnsemble) -> String {
    format!("{}-zooherd-tls", ensemble.name_any())
}

/// Keys of the superuser Secret: the password (only the operator reads it) and the
/// `zooherd:<digest>` the servers get.
pub const SUPERUSER_PASSWORD_KEY: &str = "password";
pub const SUPERUSER_DIGEST_KEY: &str = "digest";

/// The server's environment variable holding the superuser's digest (from the Secret).
pub const SUPER_DIGEST_ENV: &str = "ZOOHERD_SUPER_DIGEST";

/// The claim template of the servers' data volume.
pub const DATA_VOLUME: &str = "data";

/// StatefulSet of the servers: the ensemble's own name, so pods are `<name>-<ordinal>`.
pub fn stateful_set(ensemble: &ZooKeeperEnsemble) -> String {
    ensemble.name_any()
}

/// PodDisruptionBudget of the servers.
pub fn pod_disruption_budget(ensemble: &ZooKeeperEnsemble) -> String {
    ensemble.name_any()
}

/// NetworkPolicy of the servers (when `spec.networkPolicy.enabled`).
pub fn network_policy(ensemble: &ZooKeeperEnsemble) -> String {
    ensemble.name_any()
}

/// Pod of the server at `ordinal`, as the StatefulSet names it.
pub fn pod(ensemble: &ZooKeeperEnsemble, ordinal: u32) -> String {
    format!("{}-{ordinal}", stateful_set(ensemble))
}

/// The data volume claim of the server at `ordinal`, as the StatefulSet names it
/// (`<claim template>-<set>-<ordinal>`).
pub fn data_claim(ensemble: &ZooKeeperEnsemble, ordinal: u32) -> String {
    format!("{DATA_VOLUME}-{}", pod(ensemble, ordinal))
}

/// Ordinal of a StatefulSet pod, from the number after its last `-`; `None` when the name does
/// not end in a canonical ordinal (digits without a sign or a leading zero).
pub fn ordinal_from_pod_name(pod_name: &str) -> Option<u32> {
    let (_, suffix) = pod_name.rsplit_once('-')?;
    let canonical = !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_digit())
        && (suffix == "0" || !suffix.starts_with('0'));
    if canonical { suffix.parse().ok() } else { None }
}

/// Stable DNS name of a server, resolvable before the pod is Ready because the headless
/// Service publishes not-ready addresses (peers must find each other to form a quorum).
pub fn server_host(
    ensemble_name: &str,
    namespace: &str,
    ordinal: u32,
    cluster_domain: &str,
) -> String {
    format!("{ensemble_name}-{ordinal}.{ensemble_name}-headless.{namespace}.svc.{cluster_domain}")
}

/// Client connect string listing every server (`host:2181,...`), in ordinal order.
pub fn connect_string(
    ensemble_name: &str,
    namespace: &str,
    replicas: u32,
    cluster_domain: &str,
) -> String {
    (0..replicas)
        .map(|ordinal| {
            let host = server_host(ensemble_name, namespace, ordinal, cluster_domain);
            format!("{host}:{CLIENT_PORT}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels on every child object, and the selector of the servers' pods. They depend only on
/// the ensemble's name, so they never change (a StatefulSet's selector is immutable).
pub fn labels(ensemble: &ZooKeeperEnsemble) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), "zookeeper".to_owned()),
        (INSTANCE_LABEL.to_owned(), ensemble.name_any()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (COMPONENT_LABEL.to_owned(), "server".to_owned()),
    ])
}

/// [`labels`] as a label selector string, for listing an ensemble's pods.
pub fn label_selector(ensemble: &ZooKeeperEnsemble) -> String {
    labels(ensemble)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ZooKeeperEnsembleSpec;

    fn ensemble(name: &str) -> ZooKeeperEnsemble {
        let spec: ZooKeeperEnsembleSpec = serde_json::from_str("{}").unwrap();
        ZooKeeperEnsemble::new(name, spec)
    }

    #[test]
    fn child_names() {
        let zk = ensemble("zk");
        let cases = [
            (headless_service(&zk), "zk-headless"),
            (client_service(&zk), "zk-client"),
            (config_map(&zk), "zk-config"),
            (stateful_set(&zk), "zk"),
            (pod_disruption_budget(&zk), "zk"),
            (pod(&zk, 0), "zk-0"),
            (pod(&zk, 254), "zk-254"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn ordinal_from_pod_name_reads_canonical_suffixes_only() {
        let cases = [
            ("zk-0", Some(0)),
            ("zk-2", Some(2)),
            ("my-zk-10", Some(10)),
            ("zk-254", Some(254)),
            ("zk", None),
            ("zk-", None),
            ("zk-a", None),
            ("zk-01", None),
            ("zk-+1", None),
            ("zk-1a", None),
            ("zk-99999999999", None),
        ];
        for (pod_name, want) in cases {
            assert_eq!(ordinal_from_pod_name(pod_name), want, "{pod_name}");
        }
    }

    #[test]
    fn pod_names_round_trip_to_ordinals() {
        let zk = ensemble("zk-prod");
        for ordinal in 0..255 {
            assert_eq!(ordinal_from_pod_name(&pod(&zk, ordinal)), Some(ordinal));
        }
        assert_eq!(data_claim(&zk, 2), "data-zk-prod-2");
    }

    #[test]
    fn server_hosts_and_connect_strings() {
        assert_eq!(
            server_host("zk", "data", 2, "cluster.local"),
            "zk-2.zk-headless.data.svc.cluster.local"
        );
        let cases = [
            (1, "zk-0.zk-headless.ns.svc.example.org:2181"),
            (
                3,
                "zk-0.zk-headless.ns.svc.example.org:2181,\
                 zk-1.zk-headless.ns.svc.example.org:2181,\
                 zk-2.zk-headless.ns.svc.example.org:2181",
            ),
        ];
        for (replicas, want) in cases {
            assert_eq!(connect_string("zk", "ns", replicas, "example.org"), want);
        }
    }

    #[test]
    fn labels_identify_the_ensemble() {
        let zk = ensemble("zk");
        let labels = labels(&zk);
        assert_eq!(labels[NAME_LABEL], "zookeeper");
        assert_eq!(labels[INSTANCE_LABEL], "zk");
        assert_eq!(labels[MANAGED_BY_LABEL], "zooherd");
        assert_eq!(labels[COMPONENT_LABEL], "server");
        assert_eq!(labels.len(), 4);
        assert_eq!(
            label_selector(&zk),
            "app.kubernetes.io/component=server,app.kubernetes.io/instance=zk,\
             app.kubernetes.io/managed-by=zooherd,app.kubernetes.io/name=zookeeper"
        );
    }

    #[test]
    fn zoo_cfg_path_is_inside_the_config_dir() {
        assert_eq!(ZOO_CFG_PATH, format!("{CONFIG_DIR}/{ZOO_CFG_KEY}"));
        assert_eq!(MEMBERS_PATH, format!("{CONFIG_DIR}/{MEMBERS_KEY}"));
        assert_eq!(FORMED_PATH, format!("{CONFIG_DIR}/{FORMED_KEY}"));
    }
}
