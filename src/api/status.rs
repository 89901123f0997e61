//! `ZooKeeperEnsemble.status`: what the operator observed, written only by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What `kubectl get zke` reports about an ensemble.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZooKeeperEnsembleStatus {
    /// PENDING until the ensemble first forms a quorum; then ACTIVE (every voter serving, one
    /// leader), DEGRADED (a leader and a quorum, but some voters not serving) or DOWN (no quorum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Serving voters / voters, e.g. "2/3".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,

    /// Voters needed for a quorum: floor(voters/2)+1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<i32>,

    /// How many more voters may fail before the quorum is lost (0 when DOWN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_tolerance: Option<i32>,

    /// Pod of the current leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,

    /// Last zxid the leader processed, in hex (0x<epoch><counter>).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxid: Option<String>,

    /// Leader epoch: the high 32 bits of the zxid, incremented by every election.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,

    /// One entry per voter, by myid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,

    /// When the ensemble first formed a quorum. Until then the phase is PENDING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formed_at: Option<Time>,

    /// Client connect string: host:port of every server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_string: Option<String>,

    /// The committed membership, as ZooKeeper reported it when the operator last read it, and
    /// what scaling is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipStatus>,

    /// Mutual TLS between the servers: the stage they are configured for and when their
    /// certificate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_tls: Option<QuorumTlsStatus>,

    /// When the last CA certificate in `spec.clientAuthentication.x509ClientCaSecret` expires
    /// (absent without one). The operator only reads that Secret: before then, put the CA's
    /// successor beside it in `ca.crt` (both are trusted), move the clients over, then drop the
    /// old one. ZooKeeper goes on accepting certificates of an expired CA (Java does not check
    /// a CA's own expiry): the operator refuses a `ca.crt` of expired CAs alone, and warns
    /// (Event ExpiredClientCa) of an expired one beside a current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_not_after: Option<Time>,

    /// The snapshot a restored ensemble (spec.restore) starts from, as the operator found it
    /// before it created the servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,

    /// Available, Degraded, Progressing, and errors the operator met.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The spec generation this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The snapshot a restored ensemble starts from: what spec.restore names, resolved once,
/// before the servers were created, and kept here so that the servers download exactly this
/// object (and check exactly this size and SHA-256) even if the backup is deleted later.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// The ZooKeeperBackup spec.restore.backup names; absent for spec.restore.object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// `s3://<bucket>/<key>` of the snapshot.
    pub location: String,
    /// Where the object is: the backup's spec.s3, or spec.restore.object.s3 (the Secret is in
    /// this namespace).
    pub s3: super::S3Location,
    /// The snapshot object's key in the bucket.
    pub key: String,
    /// Last zxid the snapshot holds, hex: the servers start at it.
    pub zxid: String,
    /// Bytes of the snapshot.
    pub size_bytes: i64,
    /// SHA-256 of the snapshot, hex.
    pub sha256: String,
}

/// The committed membership: the voters ZooKeeper's `/zookeeper/config` lists, and its version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipStatus {
    /// The voters' myids (server N is pod `<name>-(N-1)`).
    pub voters: Vec<i32>,

    /// The version of the committed configuration: the zxid of the reconfiguration that
    /// committed it, in hex.
    pub version: String,

    /// The current step of a scale ("adding server 4 as a voter", "waiting: ..."), or why the
    /// next step is refused; absent when the voters are servers 1..spec.replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<String>,
}

/// Quorum TLS as the servers are configured for it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuorumTlsStatus {
    /// off (plaintext), accepting (TLS accepted, plaintext used), connecting (TLS used,
    /// plaintext still accepted) or on (TLS only). Switching TLS on or off moves one stage at a
    /// time, each rolled through every server before the next.
    pub stage: String,

    /// When the servers' certificate expires (absent while off). The operator renews it, from
    /// the same CA, 608 days before then, and rolls the servers onto the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<Time>,

    /// When the ensemble's CA expires (absent while off). A renewed certificate is valid no
    /// longer than its CA, and the CA is not replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_not_after: Option<Time>,
}

/// The ensemble's quorum status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
#[derive(strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "UPPERCASE")]
pub enum Phase {
    Pending,
    Active,
    Degraded,
    Down,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What one voter is doing, as its AdminServer (or its absence) tells.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[derive(strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum MemberState {
    Leader,
    Follower,
    Observer,
    Standalone,
    /// The process answers but is not in a quorum ("not currently serving requests").
    NotServing,
    /// The AdminServer refused, timed out, or gave an answer that could not be understood.
    Unreachable,
    /// No pod, a pod without an IP, or no way to ask it (the operator holds no certificate
    /// for its TLS-only AdminServer yet).
    Missing,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Serving client requests as part of a quorum (or alone, for a 1-server ensemble).
    pub fn is_serving(self) -> bool {
        matches!(
            self,
            Self::Leader | Self::Follower | Self::Observer | Self::Standalone
        )
    }
}

/// One voter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Pod name.
    pub pod: String,

    /// The server's myid (pod ordinal + 1).
    pub myid: i32,

    /// leader, follower, observer, standalone, not-serving, unreachable or missing.
    pub state: MemberState,

    /// Why the member is not serving, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// Last zxid this server processed, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxid: Option<String>,

    /// Latency of the requests this server answered, min/avg/max in ms, since it started (as
    /// ZooKeeper's `srvr` reports it); while it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,

    /// Client connections open on this server; while it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,

    /// When the member entered its current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,

    /// How many times the operator deleted this member's pod because it had failed.
    #[serde(default)]
    pub restarts: i32,
}

impl MemberStatus {
    /// Member `myid` (pod `pod`) in `state`, with nothing else known.
    pub fn new(pod: String, myid: i32, state: MemberState) -> Self {
        Self {
            pod,
            myid,
            state,
            reason: None,
            zxid: None,
            latency: None,
            connections: None,
            since: None,
            restarts: 0,
        }
    }
}
