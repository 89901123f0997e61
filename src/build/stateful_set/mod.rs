//! The StatefulSet that runs the servers.
//!
//! A StatefulSet gives each server what ZooKeeper needs: a stable name (`<name>-<ordinal>`, from
//! which the server's myid follows) and its own volumes that survive the pod. Servers start in
//! parallel because none can become Ready before a quorum has formed; starting them one by one
//! would wait for ever on the first.
//!
//! Pods are replaced only when the operator deletes them (`updateStrategy: OnDelete`): a
//! rolling update by the StatefulSet controller would go by ordinal and could restart the
//! leader first or while another server is still syncing. The operator rolls the ensemble
//! itself, followers first and the leader last, each after the previous one serves again.
//!
//! The server container is Zooherd's image, whose entrypoint is the `zooherd` binary:
//! `zooherd server` writes myid and starts ZooKeeper with the JVM settings it gets from the
//! environment, and `zooherd probe` answers the kubelet's probes from the AdminServer.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, ExecAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceFieldSelector, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use super::tls::{self, QuorumTls};
use super::{ClientSecrets, Settings, ValidatedEnsemble, names, server_ports};
use crate::api::validate::{JvmHeap, Validated};
use crate::api::{VolumeSpec, annotations};

/// User and group the server runs as; the image's `zooherd` user.
const SERVER_UID: i64 = 1000;

/// Heap share of the memory limit when the spec sets neither `jvm.heap` nor `jvm.heapPercent`
/// (documented on `spec.jvm.heapPercent`).
const DEFAULT_HEAP_PERCENT: i32 = 50;

/// Volume names: the log claim template, the ConfigMap, the scratch directory, the TLS
/// certificates, the SASL users and the client CA.
const LOG_VOLUME: &str = "log";
const CONFIG_VOLUME: &str = "config";
const TMP_VOLUME: &str = "tmp";
const TLS_VOLUME: &str = "tls";
const SASL_USERS_VOLUME: &str = "sasl-users";
const X509_CLIENT_CA_VOLUME: &str = "client-ca";

/// `<name>`: `replicas` servers, one pod and one set of volumes each.
pub(super) fn build(
    parent: &ValidatedEnsemble,
    settings: &Settings,
    zoo_cfg: &str,
    servers: u32,
    quorum_tls: QuorumTls,
    certificate_generation: u32,
    client_secrets: &ClientSecrets,
) -> StatefulSet {
    let ensemble = parent.ensemble();
    let spec = &ensemble.spec;
    let storage = &spec.storage;

    let jvm_env = jvm_env(&parent.spec);
    let mut annotations = spec.placement.pod_annotations.clone();
    annotations.insert(
        names::CONFIG_HASH_ANNOTATION.to_owned(),
        config_hash(zoo_cfg, &jvm_env),
    );
    // What the pod runs, for the operator to tell when every server has taken a stage.
    if quorum_tls.uses_certificates() {
        annotations.insert(
            names::QUORUM_TLS_ANNOTATION.to_owned(),
            quorum_tls.to_string(),
        );
    }
    // How the operator reaches the pod's AdminServer.
    if quorum_tls.secures_admin_server() {
        annotations.insert(names::ADMIN_TLS_ANNOTATION.to_owned(), "true".to_owned());
    }
    // A renewed certificate is a new template revision: the pods take it from the Secret when
    // they start, so the roll puts it in use one server at a time.
    if tls::uses_certificates(quorum_tls, spec.tls.client) && certificate_generation > 0 {
        annotations.insert(
            names::CERTIFICATE_GENERATION_ANNOTATION.to_owned(),
            certificate_generation.to_string(),
        );
    }
    // The users the servers read at start (none but the operator's when enforcement has
    // certificates alone): changed users are a new template revision.
    if spec.client_authentication.runs_sasl() {
        annotations.insert(
            names::CLIENT_SASL_ANNOTATION.to_owned(),
            client_secrets.sasl_users.clone().unwrap_or_default(),
        );
    }
    // The client CA the servers read at start: a changed CA is a new template revision.
    if spec.client_authentication.x509_client_ca_secret.is_some() {
        annotations.insert(
            names::CLIENT_X509_CA_ANNOTATION.to_owned(),
            client_secrets.x509_ca.clone().unwrap_or_default(),
        );
    }
    // A restart asked for on the ensemble is a new template revision, rolled like any change.
    if let Some(at) = ensemble.annotations().get(annotations::RESTARTED_AT) {
        annotations.insert(annotations::RESTARTED_AT.to_owned(), at.clone());
    }
    // The user's pod labels first, so that ours win: the selectors depend on them.
    let mut pod_labels = spec.placement.pod_labels.clone();
    pod_labels.extend(parent.labels.clone());

    let mut claims = vec![volume_claim(parent, names::DATA_VOLUME, &storage.data)];
    if let Some(log) = &storage.transaction_log {
        claims.push(volume_claim(parent, LOG_VOLUME, log));
    }

    StatefulSet {
        metadata: parent.metadata(names::stateful_set(ensemble)),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(servers).unwrap_or(i32::MAX)),
            selector: parent.selector(),
            service_name: Some(names::headless_service(ensemble)),
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(storage.retention.when_deleted.to_string()),
                    when_scaled: Some(storage.retention.when_scaled.to_string()),
                },
            ),
            volume_claim_templates: Some(claims),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(parent, settings, jvm_env, quorum_tls)),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

fn pod_spec(
    parent: &ValidatedEnsemble,
    settings: &Settings,
    jvm_env: Vec<EnvVar>,
    quorum_tls: QuorumTls,
) -> PodSpec {
    let spec = &parent.ensemble().spec;
    let placement = &spec.placement;
    let mut volumes = vec![
        Volume {
            name: CONFIG_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map(parent.ensemble()),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: TMP_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if tls::uses_certificates(quorum_tls, spec.tls.client) {
        volumes.push(tls_volume(parent));
    }
    if let Some(secret) = &spec.client_authentication.sasl_users_secret {
        volumes.push(Volume {
            name: SASL_USERS_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                default_mode: Some(0o440),
                optional: Some(false),
                items: None,
            }),
            ..Volume::default()
        });
    }
    if let Some(secret) = &spec.client_authentication.x509_client_ca_secret {
        volumes.push(Volume {
            name: X509_CLIENT_CA_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                // The CA certificate only: a CA Issuer's Secret also holds the CA's key.
                items: Some(vec![secret_item(tls::CA_KEY)]),
                default_mode: Some(0o440),
                optional: Some(false),
            }),
            ..Volume::default()
        });
    }
    PodSpec {
        containers: vec![container(parent, settings, jvm_env, quorum_tls)],
        volumes: Some(volumes),
        image_pull_secrets: non_empty(&spec.image_pull_secrets),
        // The servers never call the Kubernetes API.
        automount_service_account_token: Some(false),
        // Service environment variables would only grow with every Service in the namespace.
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(SERVER_UID),
            run_as_group: Some(SERVER_UID),
            fs_group: Some(SERVER_UID),
            // Skip the recursive chown of a large data volume on every start.
            fs_group_change_policy: Some("OnRootMismatch".to_owned()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        affinity: Some(
            placement
                .affinity
                .clone()
                .unwrap_or_else(|| spread_across_nodes(parent)),
        ),
        topology_spread_constraints: non_empty(&placement.topology_spread_constraints),
        node_selector: (!placement.node_selector.is_empty())
            .then(|| placement.node_selector.clone()),
        tolerations: non_empty(&placement.tolerations),
        priority_class_name: placement.priority_class_name.clone(),
        ..PodSpec::default()
    }
}

/// The Secret's key `key`, as a file of the same name.
fn secret_item(key: &str) -> KeyToPath {
    KeyToPath {
        key: key.to_owned(),
        path: key.to_owned(),
        mode: None,
    }
}

/// The TLS certificates: the CA certificate and the servers' key store, never the CA's key
/// (a server that could sign certificates could let others in).
fn tls_volume(parent: &ValidatedEnsemble) -> Volume {
    Volume {
        name: TLS_VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names::tls_secret(parent.ensemble())),
            items: Some(vec![
                secret_item(tls::CA_KEY),
                secret_item(tls::KEY_STORE_KEY),
            ]),
            // Readable by the server's group only (fsGroup), not by every user in the pod.
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

fn container(
    parent: &ValidatedEnsemble,
    settings: &Settings,
    jvm_env: Vec<EnvVar>,
    quorum_tls: QuorumTls,
) -> Container {
    let spec = &parent.ensemble().spec;
    let mut volume_mounts = vec![
        mount(CONFIG_VOLUME, names::CONFIG_DIR, true),
        mount(names::DATA_VOLUME, names::DATA_DIR, false),
    ];
    if spec.storage.transaction_log.is_some() {
        volume_mounts.push(mount(LOG_VOLUME, names::LOG_DIR, false));
    }
    volume_mounts.push(mount(TMP_VOLUME, names::TMP_DIR, false));
    if tls::uses_certificates(quorum_tls, spec.tls.client) {
        volume_mounts.push(mount(TLS_VOLUME, tls::DIR, true));
    }
    let mut args = strings(&["server", "--config", names::ZOO_CFG_PATH]);
    let auth = &spec.client_authentication;
    if auth.sasl_users_secret.is_some() {
        volume_mounts.push(mount(SASL_USERS_VOLUME, names::SASL_USERS_DIR, true));
        args.extend(strings(&["--sasl-users", names::SASL_USERS_DIR]));
    }
    if auth.enforce {
        args.push("--enforce-auth".to_owned());
    }
    if auth.x509_client_ca_secret.is_some() {
        volume_mounts.push(mount(
            X509_CLIENT_CA_VOLUME,
            names::X509_CLIENT_CA_DIR,
            true,
        ));
        // Enforced authentication counts x509 logins too.
        args.push("--x509-clients".to_owned());
    }

    Container {
        name: names::CONTAINER.to_owned(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| settings.default_image.clone()),
        ),
        image_pull_policy: spec.image_pull_policy.map(|p| p.to_string()),
        args: Some(args),
        env: Some(env(parent, jvm_env)),
        ports: Some(
            server_ports(spec)
                .iter()
                .map(|&(name, port)| ContainerPort {
                    name: Some(name.to_owned()),
                    container_port: port,
                    protocol: Some("TCP".to_owned()),
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        // Ready means serving: in a quorum (or standalone) and answering clients.
        readiness_probe: Some(Probe {
            period_seconds: Some(5),
            timeout_seconds: Some(4),
            failure_threshold: Some(2),
            ..zooherd_probe("ready", quorum_tls)
        }),
        // Live means the server process answers, quorum or not: restarting servers because
        // the quorum is lost would only keep it lost.
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(20),
            period_seconds: Some(10),
            timeout_seconds: Some(4),
            failure_threshold: Some(6),
            ..zooherd_probe("live", quorum_tls)
        }),
        // Up to 5 minutes to start (a large snapshot takes a while to load) before liveness
        // applies.
        startup_probe: Some(Probe {
            period_seconds: Some(5),
            timeout_seconds: Some(4),
            failure_threshold: Some(60),
            ..zooherd_probe("live", quorum_tls)
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        resources: spec.resources.clone(),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    }
}

/// The server's environment: who it is (for myid and for telling its volume apart from one
/// left by an earlier ensemble of the same name), its memory limit, and the JVM settings.
fn env(parent: &ValidatedEnsemble, jvm_env: Vec<EnvVar>) -> Vec<EnvVar> {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
        literal_env("ZOOHERD_ENSEMBLE_UID", &parent.owner_reference.uid),
        // The superuser's digest, never its password; from the Secret the operator keeps, so
        // that it is in no pod spec.
        EnvVar {
            name: names::SUPER_DIGEST_ENV.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: names::superuser_secret(parent.ensemble()),
                    key: names::SUPERUSER_DIGEST_KEY.to_owned(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
        },
    ];
    env.extend(restore_env(parent));
    // Without a memory limit the downward API reports the node's memory, which must never be
    // mistaken for the container's: the variable is only set when there is a limit.
    if parent.spec.memory_limit.is_some() {
        env.push(EnvVar {
            name: "ZOOHERD_MEMORY_LIMIT".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    container_name: Some(names::CONTAINER.to_owned()),
                    resource: "limits.memory".to_owned(),
                    divisor: Some(Quantity("1".to_owned())),
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    env.extend(jvm_env);
    env
}

/// The snapshot a restored ensemble starts from (see `agent::server::restore`), from
/// `status.restore` as the operator resolved it, and the credentials from the backup's Secret.
/// None for an ensemble without spec.restore; the operator creates a restored ensemble's
/// StatefulSet only once the status has it.
fn restore_env(parent: &ValidatedEnsemble) -> Vec<EnvVar> {
    use crate::agent::server as agent;
    let ensemble = parent.ensemble();
    let resolved = ensemble.status.as_ref().and_then(|s| s.restore.as_ref());
    let Some(restore) = ensemble.spec.restore.as_ref().and(resolved) else {
        return Vec::new();
    };
    let secret = |name: &str, key: &str, optional: bool| EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: restore.s3.credentials_secret.clone(),
                key: key.to_owned(),
                optional: Some(optional),
            }),
            ..EnvVarSource::default()
        }),
    };
    vec![
        literal_env(agent::ENV_RESTORE_ENDPOINT, &restore.s3.endpoint),
        literal_env(agent::ENV_RESTORE_BUCKET, &restore.s3.bucket),
        literal_env(agent::ENV_RESTORE_KEY, &restore.key),
        literal_env(agent::ENV_RESTORE_REGION, &restore.s3.region),
        literal_env(
            agent::ENV_RESTORE_VIRTUAL_HOSTED_STYLE,
            &restore.s3.virtual_hosted_style.to_string(),
        ),
        literal_env(agent::ENV_RESTORE_SIZE, &restore.size_bytes.to_string()),
        literal_env(agent::ENV_RESTORE_SHA256, &restore.sha256),
        literal_env(agent::ENV_RESTORE_ZXID, &restore.zxid),
        secret(
            agent::ENV_RESTORE_ACCESS_KEY_ID,
            crate::api::ACCESS_KEY_ID_KEY,
            false,
        ),
        secret(
            agent::ENV_RESTORE_SECRET_ACCESS_KEY,
            crate::api::SECRET_ACCESS_KEY_KEY,
            false,
        ),
        secret(agent::ENV_RESTORE_CA, crate::api::ENDPOINT_CA_KEY, true),
    ]
}

/// The JVM settings, as literal variables `zooherd server` turns into JVM options:
/// `ZOOHERD_JVM_HEAP` (a Kubernetes quantity such as `512Mi`, for -Xmx and -Xms),
/// `ZOOHERD_JVM_HEAP_PERCENT` (a share of `ZOOHERD_MEMORY_LIMIT`) and `ZOOHERD_JVM_EXTRA_OPTS`
/// (appended last). Without a memory limit the downward API reports the node's memory instead,
/// so a share is never taken of that: the default share applies only when there is a limit and
/// nothing else sizes the heap.
fn jvm_env(spec: &Validated) -> Vec<EnvVar> {
    let mut env = Vec::new();
    let percent = match spec.heap {
        JvmHeap::Fixed(bytes) => {
            env.push(literal_env("ZOOHERD_JVM_HEAP", &heap_quantity(bytes)));
            None
        }
        JvmHeap::ShareOfLimit(percent) => Some(percent),
        JvmHeap::Unset { sized_by_options } => {
            (spec.memory_limit.is_some() && !sized_by_options).then_some(DEFAULT_HEAP_PERCENT)
        }
    };
    if let Some(percent) = percent {
        env.push(literal_env(
            "ZOOHERD_JVM_HEAP_PERCENT",
            &percent.to_string(),
        ));
    }
    let extra_options = &spec.ensemble.spec.jvm.extra_options;
    if !extra_options.is_empty() {
        env.push(literal_env(
            "ZOOHERD_JVM_EXTRA_OPTS",
            &extra_options.join(" "),
        ));
    }
    env
}

/// Bytes as the Kubernetes quantity `zooherd server` reads: whole mebibytes as `<n>Mi`,
/// otherwise plain bytes. (Not a JVM size: `k` is 1000 for Kubernetes and 1024 for the JVM.)
fn heap_quantity(bytes: u64) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{}Mi", bytes / (1024 * 1024))
    } else {
        bytes.to_string()
    }
}

/// Hex SHA-256 of everything a server reads only when it starts: zoo.cfg (which the pod
/// template does not contain) and the JVM settings.
fn config_hash(zoo_cfg: &str, jvm_env: &[EnvVar]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(zoo_cfg.as_bytes());
    for var in jvm_env {
        let value = var.value.as_deref().unwrap_or_default();
        hasher.update(format!("\n{}={value}", var.name).as_bytes());
    }
    const_hex::encode(hasher.finalize())
}

/// Prefer one server per node, so that losing a node costs the ensemble one voter.
/// Preferred rather than required: an ensemble on fewer nodes than servers still runs.
fn spread_across_nodes(parent: &ValidatedEnsemble) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(parent.labels.clone()),
                            match_expressions: None,
                        }),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

/// A claim template; the StatefulSet creates `<volume>-<pod>` from it for every server.
fn volume_claim(
    parent: &ValidatedEnsemble,
    volume: &str,
    spec: &VolumeSpec,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(volume.to_owned()),
            labels: Some(parent.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(strings(&["ReadWriteOnce"])),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), spec.size.clone())])),
                limits: None,
            }),
            storage_class_name: spec.storage_class_name.clone(),
            // The API server's default, written out so the template reads back as built.
            volume_mode: Some("Filesystem".to_owned()),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// `zooherd probe <kind>`; over HTTPS with the servers' certificate when the AdminServer takes
/// only that (the stage is the pod's own, fixed in its spec like this command).
fn zooherd_probe(kind: &str, quorum_tls: QuorumTls) -> Probe {
    let mut command = strings(&["zooherd", "probe", kind]);
    if quorum_tls.secures_admin_server() {
        command.extend(strings(&["--tls-dir", tls::DIR]));
    }
    Probe {
        exec: Some(ExecAction {
            command: Some(command),
        }),
        ..Probe::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: field_path.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn literal_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&item| item.to_owned()).collect()
}

/// A list field as the API leaves it when empty: absent.
fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

#[cfg(test)]
mod tests;
