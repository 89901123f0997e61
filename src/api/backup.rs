//! `ZooKeeperBackup`: one snapshot of an ensemble's data, taken once, kept in object storage.
//!
//! A backup is a request that runs once: the operator streams a snapshot from a serving
//! member's AdminServer into the bucket, with a metadata object beside it, and records where
//! it went and what it holds in the status. The spec cannot change afterwards (the CEL rule
//! below): a backup describes what was taken, and a different destination is a new backup.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Key of the access key id in a backup's credentials Secret.
pub const ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
/// Key of the secret access key in a backup's credentials Secret.
pub const SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Optional key of a PEM CA certificate that the endpoint's certificate chains to.
pub const ENDPOINT_CA_KEY: &str = "ca.crt";

/// A snapshot of a ZooKeeperEnsemble's data, streamed once to S3-compatible object storage.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "zooherd.dev",
    version = "v1beta1",
    kind = "ZooKeeperBackup",
    plural = "zookeeperbackups",
    singular = "zookeeperbackup",
    shortname = "zkb",
    category = "all",
    namespaced,
    status = "ZooKeeperBackupStatus",
    doc = "One backup of a ZooKeeperEnsemble: a snapshot streamed from a serving member to S3-compatible object storage, with its size, SHA-256 and zxid. ZooKeeper takes it while writes continue (a fuzzy snapshot): it holds every write acknowledged before it started.",
    printcolumn(
        name = "Ensemble",
        type_ = "string",
        json_path = ".spec.ensemble",
        description = "The ZooKeeperEnsemble backed up"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Running, Succeeded or Failed"
    ),
    printcolumn(
        name = "Zxid",
        type_ = "string",
        json_path = ".status.zxid",
        description = "Zxid the server named the snapshot by (the last applied when it started)"
    ),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.sizeBytes",
        description = "Bytes stored"
    ),
    printcolumn(
        name = "Znodes",
        type_ = "integer",
        json_path = ".status.znodeCount",
        description = "Znodes in the snapshot, the root included"
    ),
    printcolumn(
        name = "Verified",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Verified\")].status",
        description = "True once a restore drill restored it and found what it holds (spec.verify)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Location",
        type_ = "string",
        json_path = ".status.location",
        description = "Where the snapshot is",
        priority = 1
    )
)]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("a ZooKeeperBackup's spec cannot change once created; create another backup instead"))]
#[serde(rename_all = "camelCase")]
pub struct ZooKeeperBackupSpec {
    /// Name of the ZooKeeperEnsemble to back up, in the backup's namespace. The ensemble must
    /// have `spec.backup.enabled: true` (which turns on its servers' snapshot command, for the
    /// operator only) and quorum TLS.
    #[x_kube(validation = kube::core::Rule::new("self.size() > 0").message("spec.ensemble must name the ZooKeeperEnsemble to back up"))]
    pub ensemble: String,

    /// Where the snapshot goes.
    pub s3: S3Location,

    /// Prove the backup restores, once it is stored (a restore drill): the operator creates a
    /// throwaway one-server ZooKeeperEnsemble `<backup>-drill-<uid>` restored from it (with
    /// the backed-up ensemble's image, resources, storage class and placement, not its pod
    /// labels, so that no Service selecting the servers by them reaches the drill), takes a
    /// snapshot of the restored server, and compares its persistent znodes with the backup's
    /// (`status.persistentZnodeCount`, `status.contentHash`); the `Verified` condition gives
    /// the result, and the drill ensemble and its volume are deleted. Off by default: a drill
    /// costs a pod and a volume for a minute or two.
    #[serde(default)]
    pub verify: bool,
}

/// A place in S3-compatible object storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    /// The endpoint's URL, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://minio.storage.svc:9000` (plain HTTP only for endpoints inside the cluster).
    #[schemars(regex(pattern = r"^https?://[^/\s]+/?$"))]
    pub endpoint: String,

    /// The bucket; it must exist.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,

    /// Prefix of the objects' keys, e.g. `zookeeper/prod`. The snapshot is stored at
    /// `<prefix>/<namespace>/<ensemble>/<backup name>-<backup uid>.snapshot`, its metadata
    /// beside it with `.json` for `.snapshot`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,

    /// The bucket's region (signing needs one; most S3-compatible servers accept the default).
    #[serde(default = "default_region")]
    pub region: String,

    /// Virtual-hosted-style requests (`https://<bucket>.<endpoint host>/key`) instead of
    /// path-style (`https://<endpoint host>/<bucket>/key`, the default, which every
    /// S3-compatible server accepts).
    #[serde(default)]
    pub virtual_hosted_style: bool,

    /// Secret in the backup's namespace with the keys `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`, and optionally `ca.crt`: a PEM CA certificate the endpoint's
    /// certificate chains to (otherwise the public web's CAs are trusted).
    #[schemars(length(min = 1))]
    pub credentials_secret: String,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// What the operator did with a backup, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZooKeeperBackupStatus {
    /// Pending (waiting for a serving member), Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,

    /// `s3://<bucket>/<key>` of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,

    /// Bytes of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,

    /// SHA-256 of the snapshot, hex; also in its metadata object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,

    /// Zxid the server named the snapshot by (the last one applied when it started), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxid: Option<String>,

    /// Znodes in the snapshot, the root included, as the operator counted them while it
    /// checked the snapshot's own checksums. (ZooKeeper's `znode_count` metric counts the
    /// root twice: one more.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub znode_count: Option<i64>,

    /// The data-tree digest ZooKeeper wrote into the snapshot (absent when the server has
    /// `zookeeper.digest.enabled` off, or had applied no transaction yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_digest: Option<TreeDigest>,

    /// Persistent znodes in the snapshot outside `/zookeeper`: what a restore must bring back
    /// (ephemeral znodes go with their sessions, which a restored server expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_znode_count: Option<i64>,

    /// A hash of those znodes (path, data, ACL, version, creation and last change), the same
    /// for any tree that holds them: a restore drill compares the restored server's with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,

    /// The pod whose server took the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,

    /// The ZooKeeper version of that server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zookeeper_version: Option<String>,

    /// When the operator started taking it (the first attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,

    /// When it succeeded or failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,

    /// Attempts made so far.
    #[serde(default)]
    pub attempts: i32,

    /// Complete (true once stored) and, while it is not, why; with `spec.verify`, Verified
    /// (Unknown while the drill runs, then True or False with what the drill found).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Where a backup is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, strum::Display)]
pub enum BackupPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl BackupPhase {
    /// Whether the backup is done with, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// ZooKeeper's digest of its data tree after one transaction (`ZxidDigest`): two servers whose
/// trees hold the same znodes have the same digest at the same zxid.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TreeDigest {
    /// The transaction after which the tree had this digest, hex (`0x...`).
    pub zxid: String,
    /// The digest, hex.
    pub value: String,
    /// The version of ZooKeeper's digest calculation.
    pub version: i32,
}

/// The metadata object stored beside a snapshot: what it is and where it came from, enough to
/// check a download against (size, SHA-256) and to restore it knowingly.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupMetadata {
    /// `zooherd.dev/backup-metadata/v1`.
    pub format: String,
    pub namespace: String,
    pub ensemble: String,
    pub ensemble_uid: String,
    pub backup: String,
    pub backup_uid: String,
    /// The pod whose server took the snapshot.
    pub member: String,
    pub zookeeper_version: Option<String>,
    /// Last zxid in the snapshot, hex (`0x...`).
    pub zxid: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// Znodes in the snapshot, the root included (absent in metadata written before it was
    /// counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub znode_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_digest: Option<TreeDigest>,
    /// Persistent znodes outside `/zookeeper`, and their hash (see the backup's status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_znode_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// The snapshot object's key.
    pub snapshot_key: String,
    pub started_at: Timestamp,
    pub completed_at: Timestamp,
}

/// The `format` of [`BackupMetadata`] written now.
pub const BACKUP_METADATA_FORMAT: &str = "zooherd.dev/backup-metadata/v1";
