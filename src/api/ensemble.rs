//! `ZooKeeperEnsemble`: the spec a user writes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::ZooKeeperEnsembleStatus;
use super::validate::MAX_NAME_LENGTH;

/// zoo.cfg keys that Zooherd writes itself. Letting a user set them would break membership,
/// storage layout, probes or metrics, so the API server refuses them (see the CEL rule on
/// `spec.config`) and the renderer never reads them from the user's map.
pub const OPERATOR_OWNED_CONFIG_KEYS: &[&str] = &[
    "dataDir",
    "dataLogDir",
    "clientPort",
    "clientPortAddress",
    "secureClientPort",
    "secureClientPortAddress",
    "dynamicConfigFile",
    "standaloneEnabled",
    "reconfigEnabled",
    "quorumListenOnAllIPs",
    "4lw.commands.whitelist",
    "myid",
];

/// Prefixes of zoo.cfg keys Zooherd owns (membership, the AdminServer and the metrics provider).
pub const OPERATOR_OWNED_CONFIG_PREFIXES: &[&str] =
    &["server.", "group.", "weight.", "admin.", "metricsProvider."];

/// Returns the keys of a user's `spec.config` that the operator owns, in map order.
pub fn operator_owned_keys(config: &BTreeMap<String, String>) -> Vec<&str> {
    config
        .keys()
        .map(String::as_str)
        .filter(|key| {
            OPERATOR_OWNED_CONFIG_KEYS.contains(key)
                || OPERATOR_OWNED_CONFIG_PREFIXES
                    .iter()
                    .any(|p| key.starts_with(p))
        })
        .collect()
}

/// Adds to the `spec.config` schema one CEL rule per operator-owned key and one for the owned
/// prefixes, each with a message naming what to remove.
///
/// One rule per key, rather than one rule whose message lists the offending keys: a message
/// expression that scans keys of unbounded length exceeds the API server's cost budget, while
/// `'dataDir' in self` is a map lookup.
fn refuse_owned_config_keys(schema: &mut schemars::Schema) {
    refuse_config_keys(
        schema,
        OPERATOR_OWNED_CONFIG_KEYS,
        OPERATOR_OWNED_CONFIG_PREFIXES,
        |key| {
            format!(
                "spec.config: {key} is managed by Zooherd and cannot be set; remove it (data directories, ports and membership are configured by the operator)"
            )
        },
        |names| {
            format!(
                "spec.config: keys {names} are managed by Zooherd (membership, the AdminServer and metrics); remove them"
            )
        },
    );
    refuse_config_keys(
        schema,
        super::security::SECURITY_CONFIG_KEYS,
        super::security::SECURITY_CONFIG_PREFIXES,
        |key| format!("spec.config: {key} is a security setting, which Zooherd owns; remove it"),
        |names| {
            format!(
                "spec.config: keys {names} are security settings (TLS, authentication, superusers, the AdminServer), which Zooherd owns; remove them"
            )
        },
    );
}

/// One CEL rule per key in `keys` (message `for_key(key)`) and one for every key starting
/// with one of `prefixes` (message `for_prefixes("a.*, b.*")`).
fn refuse_config_keys(
    schema: &mut schemars::Schema,
    keys: &[&str],
    prefixes: &[&str],
    for_key: impl Fn(&str) -> String,
    for_prefixes: impl Fn(&str) -> String,
) {
    for key in keys {
        let rule =
            kube::core::Rule::new(format!("!('{key}' in self)")).message(for_key(key).as_str());
        kube::core::validate(schema, rule).expect("a CEL rule serializes to JSON");
    }
    let quoted: Vec<String> = prefixes.iter().map(|p| format!("'{p}'")).collect();
    let names: Vec<String> = prefixes.iter().map(|p| format!("{p}*")).collect();
    let rule = kube::core::Rule::new(format!(
        "!self.exists(k, [{}].exists(p, k.startsWith(p)))",
        quoted.join(", ")
    ))
    .message(for_prefixes(&names.join(", ")).as_str());
    kube::core::validate(schema, rule).expect("a CEL rule serializes to JSON");
}

/// The CEL rule on the whole object that refuses a name longer than [`MAX_NAME_LENGTH`] at
/// `kubectl apply` time; [`super::validate::validate`] checks the same limit for an ensemble
/// that reaches the operator from a CRD installed without the rule.
fn name_length_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!("self.metadata.name.size() <= {MAX_NAME_LENGTH}")).message(
        format!(
            "metadata.name must be at most {MAX_NAME_LENGTH} characters long (the StatefulSet labels its pods with the name, a '-' and a revision hash of up to 10 characters, and a label value holds 63); create the ensemble under a shorter name"
        )
        .as_str(),
    )
}

/// The ensemble's spec. Everything but `replicas` and `storage` may be edited at any time; the
/// operator rolls a change through the servers one at a time, followers first, leader last.
// Every printcolumn repeats `type_ =` and `description =`, which clippy takes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "zooherd.dev",
    version = "v1beta1",
    kind = "ZooKeeperEnsemble",
    plural = "zookeeperensembles",
    singular = "zookeeperensemble",
    shortname = "zke",
    category = "all",
    namespaced,
    status = "ZooKeeperEnsembleStatus",
    validation = name_length_rule(),
    doc = "A ZooKeeper ensemble run by Zooherd: a StatefulSet of ZooKeeper servers whose quorum the operator watches and reports.",
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "Quorum status: PENDING, ACTIVE, DEGRADED or DOWN"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "Serving voters / voters"
    ),
    printcolumn(
        name = "Leader",
        type_ = "string",
        json_path = ".status.leader",
        description = "Pod of the current leader"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Quorum",
        type_ = "integer",
        json_path = ".status.quorum",
        description = "Voters needed for a quorum",
        priority = 1
    ),
    printcolumn(
        name = "Tolerance",
        type_ = "integer",
        json_path = ".status.faultTolerance",
        description = "How many more voters may fail",
        priority = 1
    ),
    printcolumn(
        name = "Zxid",
        type_ = "string",
        json_path = ".status.zxid",
        description = "Last zxid the leader processed",
        priority = 1
    ),
    printcolumn(
        name = "Connect",
        type_ = "string",
        json_path = ".status.connectString",
        description = "Client connect string",
        priority = 1
    )
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.backup) || !self.backup.enabled || !has(self.tls) || self.tls.quorum").message(super::validate::BACKUP_WITHOUT_QUORUM_TLS))]
#[x_kube(validation = kube::core::Rule::new("!has(self.clientAuthentication) || !has(self.clientAuthentication.x509ClientCaSecret) || (has(self.tls) && has(self.tls.client) && self.tls.client)").message(super::validate::X509_NEEDS_CLIENT_TLS))]
#[x_kube(validation = kube::core::Rule::new("has(self.restore) == has(oldSelf.restore) && (!has(self.restore) || self.restore == oldSelf.restore)").message(super::validate::RESTORE_ONLY_AT_CREATION))]
#[serde(rename_all = "camelCase")]
pub struct ZooKeeperEnsembleSpec {
    /// Number of voting ZooKeeper servers, 1 to 255 (myids are 1..255). Use an odd number:
    /// n voters tolerate floor((n-1)/2) failures, so a 4th or 6th voter adds no tolerance;
    /// an even count is accepted but reported by the EvenReplicas condition. A change scales
    /// the running ensemble by dynamic reconfiguration, one voter at a time: new servers start
    /// and are added as voters once they have synced; leaving voters are removed (highest
    /// myid first) before their servers stop. A step that would leave the new membership
    /// without a quorum of serving voters is refused (the Scaling condition says why) until
    /// the servers it needs serve again. status.membership shows the committed voters.
    #[serde(default = "default_replicas")]
    #[x_kube(
        validation = kube::core::Rule::new("self >= 1 && self <= 255").message("spec.replicas must be between 1 and 255 (ZooKeeper myids are 1..255); use an odd number such as 3 or 5"),
    )]
    pub replicas: i32,

    /// Server image. Defaults to Zooherd's server image at the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Image pull policy of the server containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Secrets used to pull the server image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// zoo.cfg tuning keys and values, e.g. tickTime, initLimit, syncLimit, maxClientCnxns,
    /// autopurge.snapRetainCount, autopurge.purgeInterval. Keys the operator owns (server.*,
    /// dataDir, dataLogDir, clientPort, dynamicConfigFile, admin.*, metricsProvider.*, ...) are
    /// refused. Changing this map rolls the servers one at a time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 1024}))]
    #[x_kube(
        validation = kube::core::Rule::new("self.all(k, k.matches('^[A-Za-z0-9][A-Za-z0-9_.\\\\-]*$'))").message("spec.config: keys must be zoo.cfg property names made of letters, digits, '.', '_' and '-' (no '=', spaces or line breaks); rename or remove the offending key"),
        validation = kube::core::Rule::new("self.all(k, !self[k].contains('\\n') && !self[k].contains('\\r'))").message("spec.config: values must be a single line; remove the line break from the value"),
    )]
    #[schemars(transform = refuse_owned_config_keys)]
    pub config: BTreeMap<String, String>,

    /// JVM settings of the servers.
    #[serde(default)]
    pub jvm: JvmSpec,

    /// CPU and memory of each server container. The JVM heap follows the memory limit
    /// unless `jvm.heap` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Persistent volumes of each server.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Where the server pods run, and the labels and annotations they carry.
    #[serde(default)]
    pub placement: PlacementSpec,

    /// When the operator deletes the pod of a member that cannot recover by itself.
    #[serde(default)]
    pub failed_member_restart: FailedMemberRestartSpec,

    /// What the operator does with a member whose node is lost: rebuild it on another node
    /// once the loss is confirmed (see `lostNode.replacement`).
    #[serde(default)]
    pub lost_node: LostNodeSpec,

    /// Who may reach which server port: a NetworkPolicy named after the ensemble, on by
    /// default. Every port admits its owner only: the quorum and election ports (2888, 3888)
    /// the ensemble's own servers; the AdminServer (8080) the operator's pods and the
    /// ensemble's own servers (which ask each other before a data directory is moved aside);
    /// the client port (2181) `clientFrom` and the operator (it changes the membership as a
    /// ZooKeeper client); the metrics port (7000) `metricsFrom`. Everything else is refused
    /// wherever the cluster's network plugin enforces NetworkPolicies (with a plugin that does
    /// not, the policy has no effect).
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// TLS between the servers.
    #[serde(default)]
    pub tls: TlsSpec,

    /// Who clients must prove to be: SASL DIGEST-MD5 users from a Secret, optionally
    /// required of every client session.
    #[serde(default)]
    pub client_authentication: ClientAuthenticationSpec,

    /// Backups of the ensemble's data (ZooKeeperBackup resources).
    #[serde(default)]
    pub backup: BackupSpec,

    /// Start this new ensemble from a backup. Only when the ensemble is created: it cannot be
    /// added to, changed on or removed from an existing one (restoring into a running ensemble
    /// would replace the data it serves). status.restore shows the snapshot it starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSpec>,

    /// Stop changing the ensemble's children (for maintenance). Status is still reported.
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    3
}

/// TLS settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Mutual TLS on the quorum and election ports (2888, 3888), on by default: a server
    /// accepts a peer only with a certificate of the ensemble's own CA, which the operator
    /// creates and keeps in the Secret `<name>-zooherd-tls`, so no other process can
    /// join the ensemble and receive a copy of its data. Switching it on or off for a running
    /// ensemble takes three rolls (accept TLS, connect with TLS, refuse plaintext, as in
    /// ZooKeeper's administrator's guide), each one server at a time; status.quorumTls shows
    /// the stage the servers run.
    #[serde(default = "enabled")]
    pub quorum: bool,

    /// A TLS client port, 2281, beside the plaintext 2181 (off by default: clients must be
    /// configured for it, e.g. `zookeeper.client.secure=true` and
    /// `zookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty` in Java). The
    /// servers present the certificate of the ensemble's CA (`ca.crt` in the Secret
    /// `<name>-zooherd-tls`, which clients trust), named for the client Service and every
    /// server; clients need no certificate of their own unless
    /// `clientAuthentication.x509ClientCaSecret` asks for one. The client Service and the
    /// NetworkPolicy (`networkPolicy.clientFrom`) open it like 2181. Changing it rolls the
    /// servers.
    #[serde(default)]
    pub client: bool,
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self {
            quorum: true,
            client: false,
        }
    }
}

fn enabled() -> bool {
    true
}

/// Client authentication settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new("!has(self.enforce) || !self.enforce || has(self.saslUsersSecret) || has(self.x509ClientCaSecret)").message(super::validate::ENFORCE_NEEDS_LOGIN))]
#[serde(rename_all = "camelCase")]
pub struct ClientAuthenticationSpec {
    /// A Secret in the ensemble's namespace whose keys are SASL DIGEST-MD5 user names and
    /// whose values are their passwords (`kubectl create secret generic zk-users
    /// --from-literal=kafka=<password>`). The servers accept these users (Java clients: a JAAS
    /// `Client` section with `org.apache.zookeeper.server.auth.DigestLoginModule`); a client
    /// that logs in gets the identity `sasl:<user>` for ACLs. The name `zooherd` is the
    /// operator's own. Servers read the users at start: setting, removing or changing the
    /// Secret's contents rolls the servers one at a time (the operator does not watch Secrets;
    /// it reads this one again within about seven minutes, or at once when the ensemble
    /// changes). A missing Secret, or a user or password that cannot be used, is reported in
    /// the ApplyFailed condition and changes nothing on the running servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub sasl_users_secret: Option<String>,

    /// A Secret in the ensemble's namespace whose key `ca.crt` holds the CA certificate(s)
    /// (PEM) of client certificates: the layout cert-manager writes, so a CA Issuer's Secret
    /// works unchanged. On the TLS client port (needs `tls.client: true`) the servers ask each
    /// client for a certificate; one signed by this CA logs the session in as
    /// `x509:<subject DN>` for ACLs (`setAcl /kafka x509:CN=kafka:cdrwa`); a client with
    /// none, or with another CA's, is not logged in by it and connects as before.
    /// With `enforce`, such a login counts as one. Servers read the CA at start: setting it,
    /// removing it or changing the certificate rolls the servers one at a time. A missing
    /// Secret, or no PEM certificate under `ca.crt`, is reported in the ApplyFailed
    /// condition and changes nothing on the running servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub x509_client_ca_secret: Option<String>,

    /// Refuse every request of a client session that has not logged in as one of those users
    /// or with a certificate of `x509ClientCaSecret` (ZooKeeper's `enforce.auth.enabled`, with
    /// the schemes `sasl` and `x509` only: the digest scheme accepts any name and password, so
    /// it does not count). Needs `saslUsersSecret` or `x509ClientCaSecret`, or both. With
    /// certificates alone, the servers still take SASL logins of one user, the operator's own
    /// (`zooherd`), whose password only the operator and the servers know. Changing it rolls
    /// the servers.
    #[serde(default)]
    pub enforce: bool,
}

impl ClientAuthenticationSpec {
    /// Whether the servers take SASL logins: for the users of `saslUsersSecret`, or, when
    /// authentication is enforced, for the operator's own login alone (its sessions must be
    /// logins too).
    pub fn runs_sasl(&self) -> bool {
        self.sasl_users_secret.is_some() || self.enforce
    }
}

/// Backup settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new("!has(self.schedule) || (has(self.enabled) && self.enabled && has(self.s3))").message(super::validate::SCHEDULE_NEEDS))]
#[x_kube(validation = kube::core::Rule::new("!has(self.drillSchedule) || (has(self.enabled) && self.enabled)").message(super::validate::DRILL_SCHEDULE_NEEDS))]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Let ZooKeeperBackups of this ensemble be taken (off by default). It turns on the
    /// servers' AdminServer `snapshot` command, which streams the whole data tree, and needs
    /// `tls.quorum`: the AdminServer then admits only clients with a certificate of the
    /// ensemble's CA, which only the operator and the ensemble's own servers hold (the
    /// operator authenticates as the ensemble's superuser, so an ACL on `/` does not stop
    /// it). `restore` stays off. Changing it rolls the servers.
    #[serde(default)]
    pub enabled: bool,

    /// Take a backup on this schedule: a cron pattern in UTC (`minute hour day-of-month month
    /// day-of-week`, e.g. `0 3 * * *` for 03:00 every day; a leading seconds field is
    /// accepted). Each run creates a ZooKeeperBackup `<ensemble>-<yyyymmdd-hhmmss>` to `s3`;
    /// a run missed while the operator was down is taken once when it is back, not once per
    /// missed run. ZooKeeper lets each server take one snapshot per 5 minutes, so schedules
    /// more frequent than that fail. Needs `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,

    /// How many scheduled backups that succeeded to keep (default 7): older ones are deleted,
    /// with their objects in the bucket. As many failed ones are kept, for their reason.
    /// Backups created by hand are never deleted by the operator.
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep: i32,

    /// Where scheduled backups go (as a ZooKeeperBackup's spec.s3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<super::S3Location>,

    /// Restore each scheduled backup into a throwaway ensemble to prove it restores (a
    /// ZooKeeperBackup's spec.verify). Off by default.
    #[serde(default)]
    pub verify: bool,

    /// Restore the ensemble's newest successful ZooKeeperBackup (scheduled or created by hand)
    /// into a throwaway ensemble on this schedule (a cron pattern in UTC, as `schedule`), even
    /// if a drill verified it before: a stored snapshot can stop restoring (the object deleted
    /// or damaged in the bucket, the credentials Secret changed, an image or storage class
    /// that no longer works). The operator sets the backup's annotation
    /// `zooherd.dev/drill-requested-at`, which can also be set by hand on any backup. The
    /// backup's Verified condition keeps its last verdict while the drill runs, then takes
    /// the new one (its lastTransitionTime is when that drill ended). A run missed while the
    /// operator was down is drilled once when it is back. Needs `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_schedule: Option<String>,
}

impl Default for BackupSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            schedule: None,
            keep: default_keep(),
            s3: None,
            verify: false,
            drill_schedule: None,
        }
    }
}

fn default_keep() -> i32 {
    7
}

/// The backup a new ensemble starts from: a ZooKeeperBackup, or a snapshot in a bucket.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.backup) != has(self.object)").message(super::validate::RESTORE_NEEDS_ONE))]
pub struct RestoreSpec {
    /// Name of a ZooKeeperBackup in this namespace whose phase is Succeeded. The operator
    /// creates the servers once it has; before ZooKeeper first starts, each server downloads
    /// the backup's snapshot with the credentials of the backup's Secret, checks its size and
    /// SHA-256 against the backup's status, and starts from it. Servers added later, and any
    /// server once the ensemble has formed, sync from the leader instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub backup: Option<String>,

    /// A snapshot a Zooherd backup stored, named by its place in the bucket: for a backup
    /// taken in another namespace or cluster, or whose ZooKeeperBackup is gone. The operator
    /// reads the metadata object beside it (`.json` for `.snapshot`) and the servers check
    /// the snapshot's size and SHA-256 against it, as for `backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<RestoreObject>,
}

/// A stored snapshot: the bucket it is in and its key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.s3.prefix) || self.s3.prefix == ''").message(super::validate::RESTORE_OBJECT_PREFIX))]
pub struct RestoreObject {
    /// The bucket and how to reach it; the credentials Secret is in this namespace and needs
    /// only read access. `prefix` is not used: `key` is the whole key.
    pub s3: super::S3Location,

    /// The snapshot object's key, as a backup's status.location shows it after the bucket:
    /// `<prefix>/<namespace>/<ensemble>/<backup>-<uid>.snapshot`.
    #[schemars(length(min = 10, max = 1024), regex(pattern = r"^[^/].*\.snapshot$"))]
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, strum::Display)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// JVM settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!(has(self.heap) && has(self.heapPercent))").message("spec.jvm: set either heap or heapPercent, not both"))]
pub struct JvmSpec {
    /// Fixed heap size (-Xmx and -Xms), e.g. "1Gi" or "512Mi".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap: Option<Quantity>,

    /// Heap as a percentage of the container memory limit (default 50 when a limit is set;
    /// with no limit and no heap the JVM picks its own default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 10 && self <= 90").message("spec.jvm.heapPercent must be between 10 and 90; leave room for off-heap memory"))]
    pub heap_percent: Option<i32>,

    /// Extra JVM options, appended after Zooherd's own. Options that set the AdminServer's
    /// system properties (-Dzookeeper.admin.*) are refused: the operator configures it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_options: Vec<String>,
}

/// Persistent volumes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.transactionLog) == has(oldSelf.transactionLog)").message("spec.storage.transactionLog cannot be added or removed after creation (volume claim templates are immutable); create a new ensemble instead"))]
pub struct StorageSpec {
    /// The data volume (snapshots, and the transaction log unless `transactionLog` is set).
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.storage.data cannot change after creation (volume claim templates are immutable); create a new ensemble instead"))]
    pub data: VolumeSpec,

    /// A separate volume for the transaction log (dataLogDir). Recommended for production:
    /// ZooKeeper's write latency is the log's fsync latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.storage.transactionLog cannot change after creation (volume claim templates are immutable); create a new ensemble instead"))]
    pub transaction_log: Option<VolumeSpec>,

    /// What happens to the volumes when the ensemble is deleted or scaled down.
    #[serde(default)]
    pub retention: RetentionSpec,
}

/// A PersistentVolumeClaim template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Requested size, e.g. "10Gi".
    #[serde(default = "default_volume_size")]
    pub size: Quantity,

    /// StorageClass of the volume; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for VolumeSpec {
    fn default() -> Self {
        Self {
            size: default_volume_size(),
            storage_class_name: None,
        }
    }
}

fn default_volume_size() -> Quantity {
    Quantity("10Gi".into())
}

/// Whether volumes are kept or deleted.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema, strum::Display,
)]
pub enum RetentionPolicy {
    /// Keep the volumes (the data survives; a later ensemble of the same name reuses them).
    #[default]
    Retain,
    /// Delete the volumes with their pods.
    Delete,
}

/// Volume retention (the StatefulSet's persistentVolumeClaimRetentionPolicy).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// When the ensemble is deleted. Default Retain: deleting an ensemble never deletes data.
    #[serde(default)]
    pub when_deleted: RetentionPolicy,

    /// When the ensemble is scaled down. Default Delete: a member that leaves the ensemble
    /// must not come back later on a volume holding an old membership.
    #[serde(default = "delete_policy")]
    pub when_scaled: RetentionPolicy,
}

fn delete_policy() -> RetentionPolicy {
    RetentionPolicy::Delete
}

impl Default for RetentionSpec {
    fn default() -> Self {
        Self {
            when_deleted: RetentionPolicy::Retain,
            when_scaled: delete_policy(),
        }
    }
}

/// Scheduling and pod metadata.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Pod affinity. Default: prefer spreading the servers across nodes (hostnames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Topology spread constraints, e.g. across zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// Node selector of the server pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the server pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// PriorityClass of the server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Extra labels on the server pods (the operator's own labels win on conflict).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,

    /// Extra annotations on the server pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

/// Restarts of members that the kubelet cannot see are broken: a pod that is Running but whose
/// server stays out of the quorum, or a pod stuck crash-looping.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailedMemberRestartSpec {
    /// Evict the pod of a failed member so that it is recreated (one at a time, and never
    /// when that would cost the quorum).
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Seconds a member may stay not-serving or unreachable, while the rest of the ensemble
    /// holds a quorum, before its pod is evicted.
    #[serde(default = "default_restart_threshold")]
    #[x_kube(validation = kube::core::Rule::new("self >= 10").message("spec.failedMemberRestart.thresholdSeconds must be at least 10; a server needs time to sync with the leader after a restart"))]
    pub threshold_seconds: i32,
}

impl Default for FailedMemberRestartSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold_seconds: default_restart_threshold(),
        }
    }
}

/// `spec.lostNode`: rebuilding a member whose node is gone.
///
/// A pod on a node that stopped reporting may still run there, so nothing of it is deleted on
/// a guess. Once the loss is confirmed, the operator rebuilds the member elsewhere, one at a
/// time and only while the other voters keep a quorum: if its volume can only be used on the
/// lost node (a local volume), it first removes the member from the voters by
/// reconfiguration, then deletes its pod and its volume claims, lets the StatefulSet place it
/// on another node with new volumes, and adds it back as a voter once it has synced; if its
/// volume can follow it, it only deletes the pod, which comes back elsewhere with its data.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LostNodeSpec {
    /// When a loss counts as confirmed. `Confirmed` (the default): only when the Node object
    /// is deleted, the node is tainted `node.kubernetes.io/out-of-service` (Kubernetes'
    /// non-graceful node shutdown), or the ensemble carries the annotation
    /// `zooherd.dev/replaceMember: <pod>/<pod uid>`. `Automatic`: also once the node has been
    /// NotReady for `afterSeconds`; choose it only if a node that stops reporting never comes
    /// back on its own with the server still running (the rebuilt member then costs nothing
    /// but a resync, but its old volume's data is deleted).
    #[serde(default)]
    pub replacement: LostNodeReplacement,

    /// With `replacement: Automatic`, seconds a node must have been NotReady before its
    /// members are rebuilt elsewhere.
    #[serde(default = "default_lost_node_after")]
    #[x_kube(validation = kube::core::Rule::new("self >= 60").message("spec.lostNode.afterSeconds must be at least 60; a node that restarts or loses its network briefly must not cost a member its data"))]
    pub after_seconds: i32,
}

impl Default for LostNodeSpec {
    fn default() -> Self {
        Self {
            replacement: LostNodeReplacement::default(),
            after_seconds: default_lost_node_after(),
        }
    }
}

/// `spec.lostNode.replacement`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LostNodeReplacement {
    /// Only once the loss is confirmed by an administrator or by Kubernetes.
    #[default]
    Confirmed,
    /// Also after `afterSeconds` of NotReady.
    Automatic,
}

fn default_lost_node_after() -> i32 {
    300
}

/// `spec.networkPolicy` (its field's doc says what the policy admits; `build::network_policy`
/// builds it).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Keep a NetworkPolicy named after the ensemble that admits only the peers above. Default
    /// true. When false the operator deletes the NetworkPolicy it made, and every port is open
    /// to whatever the cluster's other policies allow.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Who may connect to the client port (2181), as NetworkPolicy peers: each entry a
    /// podSelector, a namespaceSelector (both together: those pods in those namespaces), or an
    /// ipBlock. Unset: every pod in the ensemble's namespace. To admit clients from everywhere,
    /// give `[{ipBlock: {cidr: 0.0.0.0/0}}]`; an empty list is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxItems" = 32))]
    #[x_kube(validation = kube::core::Rule::new("self.size() > 0").message(super::validate::NO_CLIENT_PEERS))]
    pub client_from: Option<Vec<NetworkPolicyPeer>>,

    /// Who may scrape the metrics port (7000), as NetworkPolicy peers, e.g. your Prometheus:
    /// `[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]`.
    /// Default: nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 32))]
    pub metrics_from: Vec<NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            client_from: None,
            metrics_from: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_restart_threshold() -> i32 {
    60
}
