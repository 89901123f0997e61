//! zoo.cfg and the bootstrap membership, rendered from the ensemble.
//!
//! zoo.cfg is the same for every server: a server learns its own myid from its pod name (the
//! agent writes `dataDir/myid`), so one ConfigMap serves the whole StatefulSet. Rendering is
//! deterministic (sorted keys) because the file's hash goes into the pod template: the same
//! spec must give the same bytes, or every reconcile would roll pods.
//!
//! The file has two blocks: the keys the operator owns and the tuning keys (Zooherd's
//! defaults, overridden by `spec.config`). A key appears once: ZooKeeper would take the last of
//! duplicate keys, and a reader of the file should not have to know that.
//!
//! It lists no servers. Membership is dynamic (`reconfigEnabled=true`): ZooKeeper keeps the
//! committed server list in a dynamic configuration file that it rewrites itself on every
//! reconfiguration, and the operator changes it through ZooKeeper, not through this file. What
//! the operator does write is [`bootstrap_membership`]: the servers a server should start with
//! when its volume holds no newer configuration (the ConfigMap's `members`, outside the pod
//! template's hash, so that a membership change never rolls the pods), in which only the voters
//! are participants and the servers joining are observers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::names::{
    ADMIN_PORT, CLIENT_PORT, DATA_DIR, ELECTION_PORT, LOG_DIR, METRICS_PORT, QUORUM_PORT,
    server_host,
};
use super::tls::{ClientTls, QuorumTls};
use crate::api::operator_owned_keys;
use crate::api::security::is_security_key;
use crate::api::validate::is_config_key;
use crate::quorum::Myid;
use crate::quorum::membership::Membership;

/// Tuning keys Zooherd sets unless `spec.config` sets them.
const TUNING_DEFAULTS: &[(&str, &str)] = &[
    // ZooKeeper's own sample values: a 2 s tick, 20 s for a follower to connect and sync with
    // the leader, 10 s for it to fall behind before it is dropped.
    ("tickTime", "2000"),
    ("initLimit", "10"),
    ("syncLimit", "5"),
    // Without autopurge snapshots and transaction logs pile up until the volume is full.
    ("autopurge.snapRetainCount", "3"),
    ("autopurge.purgeInterval", "1"),
    // A server binds its election port before its own headless-Service DNS record may exist
    // (ZOOKEEPER-3320); ZooKeeper's default of 3 attempts makes such a server exit and
    // crash-loop with a growing back-off. 0 retries forever: the pod network namespace is ours,
    // so no other process can hold the port, and a member that stays out of the quorum anyway
    // is restarted by the operator. ZooKeeper reads this key as the system property
    // `zookeeper.electionPortBindRetry` (unknown zoo.cfg keys become `zookeeper.<key>`).
    ("electionPortBindRetry", "0"),
];

/// The 4-letter-word commands the server answers: what the probes and an operator at a shell
/// need, and nothing that dumps client sessions or watches (`cons`, `wchp`, `dump`, ...).
const FOUR_LETTER_WORDS: &str = "srvr,mntr,ruok,conf,isro";

const PROMETHEUS_PROVIDER: &str =
    "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider";

/// Renders the static zoo.cfg of an ensemble.
///
/// `user_config` is `spec.config`; `backups` is `spec.backup.enabled`. Keys the operator owns and entries that could not be written
/// as one `key=value` line are skipped: the API server and [`crate::api::validate::validate`]
/// refuse them, and the renderer must not be the one place where they slip through.
pub fn render(
    ensemble_name: &str,
    namespace: &str,
    user_config: &BTreeMap<String, String>,
    separate_log_dir: bool,
    quorum_tls: QuorumTls,
    client_tls: ClientTls,
    backups: bool,
) -> String {
    // Backups stream the data tree through `snapshot`: on only while the AdminServer admits
    // nothing but clients with a certificate of the ensemble's CA (the operator and the
    // ensemble's servers). ZooKeeper 3.9 also authorizes the command against the ACL of `/`
    // for the credentials sent; the operator sends the superuser's, which pass any ACL.
    let snapshot = backups && quorum_tls.secures_admin_server();
    let mut owned = BTreeMap::from([
        ("dataDir", DATA_DIR.to_owned()),
        ("clientPort", CLIENT_PORT.to_string()),
        ("admin.enableServer", "true".to_owned()),
        ("admin.serverPort", ADMIN_PORT.to_string()),
        // The AdminServer's `snapshot` streams the whole data tree and `restore` replaces a
        // server's database. ZooKeeper 3.9 enables both and authorizes them against the ACL of
        // `/` (anyone may do anything by default) with the digest provider, which accepts any
        // user:password: any pod could read or overwrite the data. `restore` is never on;
        // `snapshot` only for backups (above). ZooKeeper reads these keys as the system
        // properties `zookeeper.admin.{snapshot,restore}.enabled` at every request; a disabled
        // command answers HTTP 503.
        ("admin.snapshot.enabled", snapshot.to_string()),
        ("admin.restore.enabled", "false".to_owned()),
        ("4lw.commands.whitelist", FOUR_LETTER_WORDS.to_owned()),
        // Even a single server runs as a quorum of one, never standalone: only a quorum can
        // take more voters by reconfiguration.
        ("standaloneEnabled", "false".to_owned()),
        // Scaling adds and removes voters by reconfiguration, as the superuser (never skipACL).
        ("reconfigEnabled", "true".to_owned()),
        // Bind the quorum and election ports on every interface, so that binding never depends
        // on resolving the server's own DNS name.
        ("quorumListenOnAllIPs", "true".to_owned()),
        ("metricsProvider.className", PROMETHEUS_PROVIDER.to_owned()),
        ("metricsProvider.httpPort", METRICS_PORT.to_string()),
    ]);
    if separate_log_dir {
        owned.insert("dataLogDir", LOG_DIR.to_owned());
    }
    owned.extend(quorum_tls.zoo_cfg_entries());
    owned.extend(client_tls.zoo_cfg_entries());

    let owned_by_operator = operator_owned_keys(user_config);
    let mut tuning: BTreeMap<&str, String> = TUNING_DEFAULTS
        .iter()
        .map(|&(key, value)| (key, value.to_owned()))
        .collect();
    for (key, value) in user_config {
        if owned_by_operator.contains(&key.as_str()) || is_security_key(key) || !is_config_key(key)
        {
            continue;
        }
        if let Some(value) = property_value(value) {
            tuning.insert(key, value);
        }
    }

    let mut cfg = String::new();
    // Writing to a String cannot fail, hence the ignored results below.
    let _ = writeln!(
        cfg,
        "# zoo.cfg of the ZooKeeperEnsemble {namespace}/{ensemble_name}, written by Zooherd.\n\
         # Do not edit: the operator rewrites this file. Tune the servers with spec.config."
    );
    cfg.push_str("\n# Owned by the operator.\n");
    for (key, value) in &owned {
        let _ = writeln!(cfg, "{key}={value}");
    }
    cfg.push_str("\n# Tuning: Zooherd's defaults and spec.config.\n");
    for (key, value) in &tuning {
        let _ = writeln!(cfg, "{key}={value}");
    }
    cfg
}

/// The `server.<myid>=` value of the server with pod ordinal `ordinal`: a voter (participant)
/// with its quorum, election and client ports.
pub fn server_line(
    ensemble_name: &str,
    namespace: &str,
    ordinal: u32,
    cluster_domain: &str,
) -> String {
    line_with_role(
        ensemble_name,
        namespace,
        ordinal,
        cluster_domain,
        "participant",
    )
}

fn line_with_role(
    ensemble_name: &str,
    namespace: &str,
    ordinal: u32,
    cluster_domain: &str,
    role: &str,
) -> String {
    let host = server_host(ensemble_name, namespace, ordinal, cluster_domain);
    format!("{host}:{QUORUM_PORT}:{ELECTION_PORT}:{role};{CLIENT_PORT}")
}

/// The bootstrap membership, as the ConfigMap's `members` carries it, at version 0: the
/// `voters` as participants and the `joining` servers as observers, so that joining servers
/// can never vote before they have reached a voter (see [`super::Topology::new`]).
pub fn bootstrap_membership(
    ensemble_name: &str,
    namespace: &str,
    cluster_domain: &str,
    voters: &BTreeSet<Myid>,
    joining: &BTreeSet<Myid>,
) -> Membership {
    let roles = voters
        .iter()
        .map(|&myid| (myid, "participant"))
        .chain(joining.iter().map(|&myid| (myid, "observer")));
    let servers = roles
        .map(|(myid, role)| {
            let line = line_with_role(
                ensemble_name,
                namespace,
                myid.ordinal(),
                cluster_domain,
                role,
            );
            (myid, line)
        })
        .collect();
    Membership {
        version: 0,
        servers,
    }
}

/// A value as it must be written for ZooKeeper (a Java properties file) to read it back
/// unchanged, or `None` if it cannot be written on one line.
///
/// ZooKeeper trims values, so trimming here changes nothing and keeps trailing whitespace out
/// of the file. A backslash is an escape character in properties files (a trailing one even
/// joins the next line), so it is doubled.
fn property_value(value: &str) -> Option<String> {
    if value.contains(['\n', '\r']) {
        return None;
    }
    Some(value.trim().replace('\\', "\\\\"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::myid::ids;

    fn config(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|&(key, value)| (key.to_owned(), value.to_owned()))
            .collect()
    }

    /// The `key=value` lines of a rendered file, without comments and blank lines.
    fn entries(cfg: &str) -> Vec<(&str, &str)> {
        cfg.lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| line.split_once('=').expect("every entry is key=value"))
            .collect()
    }

    fn value<'a>(cfg: &'a str, key: &str) -> Option<&'a str> {
        let matches: Vec<&str> = entries(cfg)
            .into_iter()
            .filter(|&(k, _)| k == key)
            .map(|(_, v)| v)
            .collect();
        assert!(matches.len() <= 1, "{key} appears {} times", matches.len());
        matches.first().copied()
    }

    fn render_default() -> String {
        render(
            "zk",
            "ns",
            &BTreeMap::new(),
            false,
            QuorumTls::On,
            ClientTls::Off,
            false,
        )
    }

    #[test]
    fn three_servers_render_exactly() {
        let want = "\
# zoo.cfg of the ZooKeeperEnsemble ns/zk, written by Zooherd.
# Do not edit: the operator rewrites this file. Tune the servers with spec.config.

# Owned by the operator.
4lw.commands.whitelist=srvr,mntr,ruok,conf,isro
admin.enableServer=true
admin.forceHttps=true
admin.needClientAuth=true
admin.restore.enabled=false
admin.serverPort=8080
admin.snapshot.enabled=false
clientPort=2181
dataDir=/var/lib/zookeeper/data
metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
metricsProvider.httpPort=7000
portUnification=false
quorumListenOnAllIPs=true
reconfigEnabled=true
ssl.quorum.hostnameVerification=false
ssl.quorum.keyStore.location=/etc/zooherd-tls/keystore.pem
ssl.quorum.keyStore.type=PEM
ssl.quorum.trustStore.location=/etc/zooherd-tls/ca.crt
ssl.quorum.trustStore.type=PEM
sslQuorum=true
standaloneEnabled=false

# Tuning: Zooherd's defaults and spec.config.
autopurge.purgeInterval=1
autopurge.snapRetainCount=3
electionPortBindRetry=0
initLimit=10
syncLimit=5
tickTime=2000
";
        assert_eq!(render_default(), want);
    }

    #[test]
    fn snapshot_is_on_only_for_backups_behind_the_tls_admin_server() {
        let none = BTreeMap::new();
        let snapshot = |quorum_tls, backups| {
            let cfg = render(
                "zk",
                "ns",
                &none,
                false,
                quorum_tls,
                ClientTls::Off,
                backups,
            );
            assert_eq!(value(&cfg, "admin.restore.enabled"), Some("false"));
            value(&cfg, "admin.snapshot.enabled").map(str::to_owned)
        };
        assert_eq!(snapshot(QuorumTls::On, true).as_deref(), Some("true"));
        assert_eq!(
            snapshot(QuorumTls::Accepting, true).as_deref(),
            Some("true")
        );
        assert_eq!(snapshot(QuorumTls::On, false).as_deref(), Some("false"));
        // Plain HTTP would answer anyone who reaches port 8080.
        assert_eq!(snapshot(QuorumTls::Off, true).as_deref(), Some("false"));
    }

    #[test]
    fn a_tls_client_port_serves_the_ensembles_certificate_with_netty() {
        let cfg = render(
            "zk",
            "ns",
            &BTreeMap::new(),
            false,
            QuorumTls::Off,
            ClientTls::On,
            false,
        );
        assert_eq!(value(&cfg, "secureClientPort"), Some("2281"));
        assert_eq!(value(&cfg, "clientPort"), Some("2181"), "plaintext stays");
        assert_eq!(
            value(&cfg, "serverCnxnFactory"),
            Some("org.apache.zookeeper.server.NettyServerCnxnFactory")
        );
        assert_eq!(
            value(&cfg, "ssl.keyStore.location"),
            Some("/etc/zooherd-tls/keystore.pem")
        );
        assert_eq!(value(&cfg, "ssl.clientAuth"), Some("none"));
        assert_eq!(value(&cfg, "authProvider.x509"), None);
        assert_eq!(value(&cfg, "sslQuorum"), None, "quorum TLS is off");
        let plain = render(
            "zk",
            "ns",
            &BTreeMap::new(),
            false,
            QuorumTls::Off,
            ClientTls::Off,
            false,
        );
        assert_eq!(value(&plain, "secureClientPort"), None);
        assert_eq!(value(&plain, "ssl.keyStore.location"), None);
    }

    #[test]
    fn client_certificates_are_asked_for_and_checked_against_the_users_ca() {
        let cfg = render(
            "zk",
            "ns",
            &BTreeMap::new(),
            false,
            QuorumTls::On,
            ClientTls::ClientCertificates,
            false,
        );
        assert_eq!(value(&cfg, "secureClientPort"), Some("2281"));
        assert_eq!(value(&cfg, "ssl.clientAuth"), Some("want"));
        assert_eq!(
            value(&cfg, "ssl.trustStore.location"),
            Some("/etc/zooherd-client-ca/ca.crt")
        );
        assert_eq!(
            value(&cfg, "ssl.keyStore.location"),
            Some("/etc/zooherd-tls/keystore.pem"),
            "the servers still present the ensemble's certificate"
        );
        assert_eq!(
            value(&cfg, "authProvider.x509"),
            Some("org.apache.zookeeper.server.auth.X509AuthenticationProvider")
        );
        // The quorum and the AdminServer keep the ensemble's own CA.
        assert_eq!(
            value(&cfg, "ssl.quorum.trustStore.location"),
            Some("/etc/zooherd-tls/ca.crt")
        );
    }

    #[test]
    fn bootstrap_membership_lists_voters_as_participants_and_joining_servers_as_observers() {
        let members = bootstrap_membership("zk", "ns", "cluster.local", &ids(&[1]), &ids(&[2, 3]));
        assert_eq!(
            members.render(),
            "server.1=zk-0.zk-headless.ns.svc.cluster.local:2888:3888:participant;2181\n\
             server.2=zk-1.zk-headless.ns.svc.cluster.local:2888:3888:observer;2181\n\
             server.3=zk-2.zk-headless.ns.svc.cluster.local:2888:3888:observer;2181\n\
             version=0\n"
        );
        assert_eq!(members.voters(), ids(&[1]));
        let eleven = bootstrap_membership(
            "zk",
            "ns",
            "cluster.local",
            &Myid::up_to(11).collect(),
            &ids(&[]),
        );
        let myids: Vec<Myid> = eleven.servers.keys().copied().collect();
        assert_eq!(myids, Myid::up_to(11).collect::<Vec<_>>());
        assert_eq!(eleven.voters().len(), 11, "every server is a participant");
        let mixed = bootstrap_membership("zk", "ns", "cluster.local", &ids(&[1, 3]), &ids(&[2, 4]));
        assert_eq!(mixed.voters(), ids(&[1, 3]));
        assert_eq!(mixed.servers.len(), 4);
    }

    #[test]
    fn cluster_domain_and_namespace_reach_the_member_hosts() {
        assert_eq!(
            server_line("kafka-zk", "prod", 0, "corp.example"),
            "kafka-zk-0.kafka-zk-headless.prod.svc.corp.example:2888:3888:participant;2181"
        );
    }

    #[test]
    fn no_server_lines_and_never_standalone() {
        let cfg = render_default();
        assert!(
            entries(&cfg)
                .iter()
                .all(|(key, _)| !key.starts_with("server."))
        );
        assert_eq!(value(&cfg, "standaloneEnabled"), Some("false"));
        assert_eq!(value(&cfg, "reconfigEnabled"), Some("true"));
        assert_eq!(value(&cfg, "skipACL"), None);
    }

    #[test]
    fn data_log_dir_only_with_a_separate_log_volume() {
        let cases = [(false, None), (true, Some("/var/lib/zookeeper/log"))];
        for (separate, want) in cases {
            let cfg = render(
                "zk",
                "ns",
                &BTreeMap::new(),
                separate,
                QuorumTls::On,
                ClientTls::Off,
                false,
            );
            assert_eq!(value(&cfg, "dataLogDir"), want);
            assert_eq!(value(&cfg, "dataDir"), Some("/var/lib/zookeeper/data"));
        }
    }

    #[test]
    fn user_keys_override_defaults_and_add_tuning() {
        let user = config(&[
            ("tickTime", "3000"),
            ("autopurge.purgeInterval", "24"),
            ("electionPortBindRetry", "100"),
            ("maxClientCnxns", "120"),
        ]);
        let cfg = render(
            "zk",
            "ns",
            &user,
            false,
            QuorumTls::On,
            ClientTls::Off,
            false,
        );
        let cases = [
            ("tickTime", "3000"),
            ("initLimit", "10"),
            ("syncLimit", "5"),
            ("autopurge.purgeInterval", "24"),
            ("autopurge.snapRetainCount", "3"),
            ("electionPortBindRetry", "100"),
            ("maxClientCnxns", "120"),
        ];
        for (key, want) in cases {
            assert_eq!(value(&cfg, key), Some(want), "{key}");
        }
    }

    #[test]
    fn owned_keys_in_user_config_are_skipped() {
        let user = config(&[
            ("dataDir", "/tmp/evil"),
            ("clientPort", "9999"),
            ("server.9", "attacker:2888:3888"),
            ("admin.enableServer", "false"),
            ("admin.snapshot.enabled", "true"),
            ("admin.restore.enabled", "true"),
            ("metricsProvider.httpPort", "1"),
            ("4lw.commands.whitelist", "*"),
            ("standaloneEnabled", "true"),
            ("reconfigEnabled", "true"),
            ("maxClientCnxns", "10"),
        ]);
        let cfg = render(
            "zk",
            "ns",
            &user,
            false,
            QuorumTls::On,
            ClientTls::Off,
            false,
        );
        let cases = [
            ("dataDir", Some("/var/lib/zookeeper/data")),
            ("clientPort", Some("2181")),
            ("server.9", None),
            ("admin.enableServer", Some("true")),
            ("admin.snapshot.enabled", Some("false")),
            ("admin.restore.enabled", Some("false")),
            ("metricsProvider.httpPort", Some("7000")),
            ("4lw.commands.whitelist", Some("srvr,mntr,ruok,conf,isro")),
            ("standaloneEnabled", Some("false")),
            ("reconfigEnabled", Some("true")),
            ("maxClientCnxns", Some("10")),
        ];
        for (key, want) in cases {
            assert_eq!(value(&cfg, key), want, "{key}");
        }
    }

    #[test]
    fn entries_that_cannot_be_one_line_are_skipped() {
        let user = config(&[
            ("tickTime", "2000\nserver.9=attacker:2888:3888"),
            ("syncLimit", "7\r"),
            ("bad key", "1"),
            ("a=b", "1"),
            ("#comment", "1"),
            ("maxClientCnxns", "60"),
        ]);
        let cfg = render(
            "zk",
            "ns",
            &user,
            false,
            QuorumTls::On,
            ClientTls::Off,
            false,
        );
        assert_eq!(value(&cfg, "tickTime"), Some("2000"));
        assert_eq!(value(&cfg, "syncLimit"), Some("5"));
        assert_eq!(value(&cfg, "server.9"), None);
        assert_eq!(value(&cfg, "maxClientCnxns"), Some("60"));
        assert!(!cfg.contains("bad key") && !cfg.contains("a=b") && !cfg.contains("#comment"));
        assert!(!cfg.contains('\r'));
    }

    #[test]
    fn values_are_trimmed_and_backslashes_escaped() {
        let user = config(&[
            ("maxClientCnxns", "  60  "),
            ("snapshot.compression.method", "C:\\keys\\"),
            // A security setting is never written, whatever slipped past validation.
            ("ssl.keyStore.location", "/tmp/k"),
        ]);
        let cfg = render(
            "zk",
            "ns",
            &user,
            false,
            QuorumTls::On,
            ClientTls::Off,
            false,
        );
        assert_eq!(value(&cfg, "maxClientCnxns"), Some("60"));
        assert_eq!(
            value(&cfg, "snapshot.compression.method"),
            Some("C:\\\\keys\\\\")
        );
        assert_eq!(value(&cfg, "ssl.keyStore.location"), None);
    }

    #[test]
    fn no_trailing_whitespace_and_a_final_newline() {
        let user = config(&[("maxClientCnxns", "60 \t"), ("globalOutstandingLimit", "")]);
        for separate in [false, true] {
            let cfg = render(
                "zk",
                "ns",
                &user,
                separate,
                QuorumTls::On,
                ClientTls::Off,
                false,
            );
            for line in cfg.lines() {
                assert_eq!(line, line.trim_end(), "trailing whitespace in {line:?}");
            }
            assert!(cfg.ends_with("=2000\n"), "{cfg}");
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        let user = config(&[("tickTime", "3000"), ("maxClientCnxns", "60")]);
        let first = render(
            "zk",
            "ns",
            &user,
            true,
            QuorumTls::On,
            ClientTls::Off,
            false,
        );
        let second = render(
            "zk",
            "ns",
            &user.clone(),
            true,
            QuorumTls::On,
            ClientTls::Off,
            false,
        );
        assert_eq!(first, second);
    }
}
