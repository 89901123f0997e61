//! What a backup needs and where it goes, decided from what was read: no IO here.
//!
//! A backup waits (phase Pending, the `Complete` condition saying why) while it cannot be
//! taken: the ensemble is missing, has backups off, serves from no member, or a Secret it needs
//! is missing or incomplete. Each of these is the user's to fix, so the backup keeps waiting
//! until [`WAIT_LIMIT`] after its creation, then fails with the last reason. Once it can be
//! taken, each attempt that fails (a member that went away mid-stream, the storage refusing)
//! counts, and the backup fails after [`MAX_ATTEMPTS`].

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use jiff::Timestamp;

use crate::api::{
    ACCESS_KEY_ID_KEY, ENDPOINT_CA_KEY, MemberState, SECRET_ACCESS_KEY_KEY, ZooKeeperBackup,
    ZooKeeperBackupStatus, ZooKeeperEnsemble,
};

/// How long a backup waits for what it needs before it fails.
pub const WAIT_LIMIT: Duration = Duration::from_secs(600);
/// Attempts at streaming a snapshot before the backup fails.
pub const MAX_ATTEMPTS: i32 = 5;
/// Pause before the next attempt, or the next look at what the backup waits for.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Why a backup cannot be taken now: a reason for the condition and a message that says what
/// to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: &'static str,
    pub message: String,
}

impl Waiting {
    fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }
}

/// The reason of the condition a backup carries after an attempt failed.
pub const ATTEMPT_FAILED: &str = "AttemptFailed";

/// How long until the next attempt may start: [`RETRY_AFTER`] after the last failed one (its
/// condition's time). None when it may start now. Every status write wakes the controller, so
/// the pause is kept here, not only by a requeue.
pub fn retry_in(status: &ZooKeeperBackupStatus, now: Timestamp) -> Option<Duration> {
    let failed = status
        .conditions
        .iter()
        .find(|condition| condition.reason == ATTEMPT_FAILED)?;
    let since = now.duration_since(failed.last_transition_time.0);
    let since = Duration::try_from(since).unwrap_or_default();
    RETRY_AFTER
        .checked_sub(since)
        .filter(|left| !left.is_zero())
}

/// The pods to ask for a snapshot, best first: serving followers and observers (a snapshot
/// costs the server that takes it a pause in applying writes; a follower's pause delays no
/// commit), then the leader. Every one of them serves as part of the quorum, so its data is
/// what the quorum committed up to its zxid, which the snapshot is named by.
pub fn members_to_ask(
    name: &str,
    ensemble: Option<&ZooKeeperEnsemble>,
) -> Result<Vec<String>, Waiting> {
    let Some(ensemble) = ensemble else {
        return Err(Waiting::new(
            "EnsembleNotFound",
            format!(
                "the ZooKeeperEnsemble {name} (spec.ensemble) does not exist in this namespace; create it or fix the name"
            ),
        ));
    };
    if !ensemble.spec.backup.enabled || !ensemble.spec.tls.quorum {
        return Err(Waiting::new(
            "BackupsDisabled",
            format!(
                "the ZooKeeperEnsemble {name} does not allow backups; set its spec.backup.enabled: true (with spec.tls.quorum: true), which rolls its servers"
            ),
        ));
    }
    let members = ensemble
        .status
        .as_ref()
        .map(|status| status.members.as_slice())
        .unwrap_or_default();
    let mut serving: Vec<_> = members
        .iter()
        .filter(|member| member.state.is_serving())
        .collect();
    serving.sort_by_key(|member| (member.state == MemberState::Leader, member.myid));
    if serving.is_empty() {
        return Err(Waiting::new(
            "NoServingMember",
            format!(
                "no server of the ZooKeeperEnsemble {name} serves (it is DOWN or not formed yet); the backup waits for one"
            ),
        ));
    }
    Ok(serving.into_iter().map(|m| m.pod.clone()).collect())
}

/// The credentials of an S3-compatible store, from the Secret a backup names.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// PEM CA certificate of the endpoint, when the Secret holds one.
    pub ca: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The credentials in `secret` (named `name`), or why it cannot give them.
pub fn credentials(
    field: &str,
    name: &str,
    secret: Option<&Secret>,
) -> Result<S3Credentials, Waiting> {
    let problem = |what: String| {
        Waiting::new(
            "CredentialsInvalid",
            format!("the Secret {name} ({field}.credentialsSecret) {what}"),
        )
    };
    let secret = secret.ok_or_else(|| {
        problem(format!(
            "does not exist; create it with the keys {ACCESS_KEY_ID_KEY} and {SECRET_ACCESS_KEY_KEY}"
        ))
    })?;
    let text = |key: &str| -> Result<Option<String>, Waiting> {
        let Some(value) = secret.data.as_ref().and_then(|data| data.get(key)) else {
            return Ok(None);
        };
        let text = String::from_utf8(value.0.clone())
            .map_err(|_| problem(format!("has a {key} that is not UTF-8 text")))?;
        Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
    };
    let required = |key: &str| {
        text(key)?.ok_or_else(|| problem(format!("has no (or an empty) key {key}; add it")))
    };
    Ok(S3Credentials {
        access_key_id: required(ACCESS_KEY_ID_KEY)?,
        secret_access_key: required(SECRET_ACCESS_KEY_KEY)?,
        ca: text(ENDPOINT_CA_KEY)?,
    })
}

/// The key of a backup's snapshot object:
/// `<prefix>/<namespace>/<ensemble>/<backup name>-<backup uid>.snapshot`. The uid makes it
/// unique: a backup deleted and created again under the same name never overwrites the old
/// one's snapshot.
pub fn snapshot_key(backup: &ZooKeeperBackup) -> String {
    let prefix = backup.spec.s3.prefix.trim_matches('/');
    let name = format!(
        "{}/{}/{}-{}.snapshot",
        backup.namespace().unwrap_or_default(),
        backup.spec.ensemble,
        backup.name_any(),
        backup.uid().unwrap_or_default()
    );
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// The key of the metadata object beside a snapshot.
pub fn metadata_key(snapshot_key: &str) -> String {
    let stem = snapshot_key
        .strip_suffix(".snapshot")
        .unwrap_or(snapshot_key);
    format!("{stem}.json")
}

/// A zxid as the `last_zxid` header of ZooKeeper's `snapshot` command gives it (`0x` and
/// hex digits), checked; what is wrong with it otherwise.
pub fn zxid(header: Option<&str>) -> Result<String, String> {
    let header = header.ok_or("the answer has no last_zxid header")?;
    let digits = header
        .strip_prefix("0x")
        .filter(|d| !d.is_empty() && d.len() <= 16 && d.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| format!("last_zxid {header:?} is not a hex zxid"))?;
    Ok(format!("0x{}", digits.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MemberStatus, ZooKeeperEnsembleStatus};
    use k8s_openapi::ByteString;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn ensemble(spec: serde_json::Value, members: &[(i32, MemberState)]) -> ZooKeeperEnsemble {
        let mut ensemble: ZooKeeperEnsemble = serde_json::from_value(json!({
            "apiVersion": "zooherd.dev/v1beta1", "kind": "ZooKeeperEnsemble",
            "metadata": {"name": "zk", "namespace": "data"},
            "spec": spec,
        }))
        .unwrap();
        ensemble.status = Some(ZooKeeperEnsembleStatus {
            members: members
                .iter()
                .map(|&(myid, state)| MemberStatus::new(format!("zk-{}", myid - 1), myid, state))
                .collect(),
            ..ZooKeeperEnsembleStatus::default()
        });
        ensemble
    }

    #[test]
    fn followers_are_asked_before_the_leader_and_unserving_members_never() {
        let zk = ensemble(
            json!({"backup": {"enabled": true}}),
            &[
                (1, MemberState::Leader),
                (2, MemberState::Unreachable),
                (3, MemberState::Follower),
                (4, MemberState::NotServing),
                (5, MemberState::Follower),
            ],
        );
        assert_eq!(
            members_to_ask("zk", Some(&zk)).unwrap(),
            ["zk-2", "zk-4", "zk-0"]
        );
    }

    #[test]
    fn a_backup_waits_for_an_ensemble_that_allows_it_and_serves() {
        assert_eq!(
            members_to_ask("zk", None).unwrap_err().reason,
            "EnsembleNotFound"
        );
        let off = ensemble(json!({}), &[(1, MemberState::Leader)]);
        let waiting = members_to_ask("zk", Some(&off)).unwrap_err();
        assert_eq!(waiting.reason, "BackupsDisabled");
        assert!(
            waiting.message.contains("spec.backup.enabled"),
            "{waiting:?}"
        );
        let plaintext = ensemble(
            json!({"backup": {"enabled": true}, "tls": {"quorum": false}}),
            &[(1, MemberState::Leader)],
        );
        assert_eq!(
            members_to_ask("zk", Some(&plaintext)).unwrap_err().reason,
            "BackupsDisabled"
        );
        let down = ensemble(
            json!({"backup": {"enabled": true}}),
            &[(1, MemberState::NotServing), (2, MemberState::Unreachable)],
        );
        assert_eq!(
            members_to_ask("zk", Some(&down)).unwrap_err().reason,
            "NoServingMember"
        );
    }

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn credentials_come_from_the_secret_or_the_problem_names_it_and_the_key() {
        let good = secret(&[
            ("AWS_ACCESS_KEY_ID", b"id\n"),
            ("AWS_SECRET_ACCESS_KEY", b"key"),
        ]);
        let read = credentials("spec.s3", "s3", Some(&good)).unwrap();
        assert_eq!(
            read.access_key_id, "id",
            "a trailing newline is not part of it"
        );
        assert_eq!(read.ca, None);
        assert!(
            !format!("{read:?}").contains("key\""),
            "the secret is not printed"
        );

        let missing = credentials("spec.s3", "s3", None).unwrap_err();
        assert!(missing.message.contains("Secret s3"), "{missing:?}");
        let partial = credentials(
            "spec.s3",
            "s3",
            Some(&secret(&[("AWS_ACCESS_KEY_ID", b"id")])),
        );
        let partial = partial.unwrap_err();
        assert!(
            partial.message.contains("AWS_SECRET_ACCESS_KEY"),
            "{partial:?}"
        );
        let binary = secret(&[
            ("AWS_ACCESS_KEY_ID", b"\xff"),
            ("AWS_SECRET_ACCESS_KEY", b"key"),
        ]);
        assert!(
            credentials("spec.s3", "s3", Some(&binary))
                .unwrap_err()
                .message
                .contains("not UTF-8")
        );
    }

    #[test]
    fn keys_are_unique_per_backup_and_the_metadata_sits_beside_the_snapshot() {
        let backup = |prefix: &str| -> ZooKeeperBackup {
            serde_json::from_value(json!({
                "apiVersion": "zooherd.dev/v1beta1", "kind": "ZooKeeperBackup",
                "metadata": {"name": "nightly", "namespace": "data", "uid": "u-1"},
                "spec": {"ensemble": "zk", "s3": {
                    "endpoint": "http://s3:9000", "bucket": "zk-backups", "prefix": prefix,
                    "credentialsSecret": "s3"}},
            }))
            .unwrap()
        };
        assert_eq!(
            snapshot_key(&backup("/prod/")),
            "prod/data/zk/nightly-u-1.snapshot"
        );
        assert_eq!(snapshot_key(&backup("")), "data/zk/nightly-u-1.snapshot");
        assert_eq!(
            metadata_key("prod/data/zk/nightly-u-1.snapshot"),
            "prod/data/zk/nightly-u-1.json"
        );
    }

    #[test]
    fn an_attempt_waits_out_the_pause_after_a_failed_one() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let failed_at: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let status = |reason: &str| ZooKeeperBackupStatus {
            conditions: vec![Condition {
                type_: "Complete".to_owned(),
                status: "False".to_owned(),
                reason: reason.to_owned(),
                message: String::new(),
                last_transition_time: Time(failed_at),
                observed_generation: None,
            }],
            ..ZooKeeperBackupStatus::default()
        };
        let after = |secs: i64| failed_at + jiff::SignedDuration::from_secs(secs);
        assert_eq!(
            retry_in(&status(ATTEMPT_FAILED), after(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(retry_in(&status(ATTEMPT_FAILED), after(10)), None);
        assert_eq!(retry_in(&status(ATTEMPT_FAILED), after(60)), None);
        assert_eq!(retry_in(&status("Running"), after(1)), None);
        assert_eq!(retry_in(&ZooKeeperBackupStatus::default(), after(1)), None);
    }

    #[test]
    fn a_zxid_header_is_taken_only_as_hex() {
        assert_eq!(zxid(Some("0x1A00000003")).unwrap(), "0x1a00000003");
        assert!(zxid(None).is_err());
        assert!(zxid(Some("12")).is_err());
        assert!(zxid(Some("0x")).is_err());
        assert!(zxid(Some("0x12345678901234567")).is_err());
        assert!(zxid(Some("0xzz")).is_err());
    }
}
