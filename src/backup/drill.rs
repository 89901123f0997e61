//! Restore drills, decided from what was read: no IO here.
//!
//! A backup is known to restore only once it has been restored. With `spec.verify`, once a
//! backup is stored the operator creates a throwaway one-server ZooKeeperEnsemble restored from
//! it ([`drill_ensemble`]: the restore path a user's new ensemble takes, checksum check
//! included), waits for it to serve, takes a snapshot of the restored server as a backup would,
//! and compares its persistent znodes with the backup's ([`verdict`]). The result is the
//! backup's `Verified` condition; then the drill ensemble is deleted, with its volume.
//!
//! The comparison is of the persistent znodes outside `/zookeeper`, by count and by an
//! order-independent hash (`snapshot_file::PersistentContents`), not of ZooKeeper's own digest:
//! a restored server holds the snapshot's sessions and expires them, which deletes their
//! ephemeral znodes and changes their parents' child counters, so its tree digest moves on
//! by itself within a session timeout; and `/zookeeper/config` is each ensemble's own.
//!
//! A backup is drilled again when asked after its last verdict: the annotation
//! [`DRILL_REQUESTED_ANNOTATION`] holds when (the ensemble's `spec.backup.drillSchedule` sets it
//! on the newest successful backup; a user may set it by hand). A stored snapshot can stop
//! restoring while its first verdict stands: the object deleted or damaged in the bucket, the
//! credentials Secret changed, an image or storage class that no longer works. While such a
//! drill runs the last verdict stays (it is still what the last drill found); the new one
//! replaces it, its `lastTransitionTime` the time it was reached.
//!
//! Each drill has its own ensemble name, from the backup's uid and the request it answers
//! ([`drill_name`]): a drill never meets the volume claim or Secrets of the one before, which go
//! some time after their ensemble (garbage collection), and a drill ensemble of an earlier
//! request is removed, not checked. The drill ensemble is the backup's child (an owner
//! reference), so deleting the backup deletes it. A ZooKeeperEnsemble of the drill's name that
//! is not the backup's child is never used or deleted: the drill fails instead, naming it.
//!
//! A backup outlives its ensemble, and one whose ensemble is gone is the one a restore may need
//! most: its drill runs with the defaults a new ensemble gets (image, resources, storage class).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::snapshot_file::PersistentContents;
use crate::api::validate::MAX_NAME_LENGTH;
use crate::api::{
    BackupPhase, BackupSpec, Phase, RestoreSpec, RetentionPolicy, ZooKeeperBackup,
    ZooKeeperEnsemble, ZooKeeperEnsembleSpec,
};

/// The condition that says whether a drill restored the backup.
pub const VERIFIED: &str = "Verified";
/// Annotation on a backup: drill it (again) if its last verdict is older than this time
/// (RFC 3339).
pub const DRILL_REQUESTED_ANNOTATION: &str = "zooherd.dev/drill-requested-at";
/// The label that names the backup a drill ensemble restores.
pub const DRILL_OF_LABEL: &str = "zooherd.dev/drill-of";
/// How long a drill ensemble may take to serve: pulling an image, binding a volume, the
/// download and ZooKeeper's start.
pub const DRILL_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How far ahead of the operator's clock a drill request may be (a skewed clock of the one who
/// set it). A request later than that is not honoured once a verdict exists: every verdict
/// would be older than it, and the backup would be drilled over and over until then.
const REQUEST_SKEW: Duration = Duration::from_secs(60);

/// What the drill of a backup needs next.
#[derive(Debug)]
pub enum DrillStep {
    /// Nothing: no drill asked for, the backup not stored, or done with.
    Nothing,
    /// Create the drill ensemble.
    Create(Box<ZooKeeperEnsemble>),
    /// Wait for the drill ensemble to serve (why, for the condition).
    Wait(String),
    /// The drill ensemble of this name serves: take its snapshot and compare.
    Check(String),
    /// Record the verdict without a check.
    Conclude(Verdict),
    /// Delete these drill ensembles of the backup: the verdict is recorded, or they answer an
    /// earlier request.
    Remove(Vec<String>),
}

/// The result of a drill: the `Verified` condition's status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub verified: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The name of the ensemble of the drill due at `now`: `<backup>-drill-<8 hex digits>`, the
/// digits from a hash of the backup's uid and the request the drill answers (none for a first
/// drill), the backup's name cut to fit the ensemble name limit.
pub fn drill_name(backup: &ZooKeeperBackup, now: Timestamp) -> String {
    let uid = backup.uid().unwrap_or_default();
    let request = honoured_request(backup, now).map_or("", |(text, _)| text);
    let digest = Sha256::digest(format!("{uid}\n{request}"));
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let suffix = format!("-drill-{hex}");
    let name = backup.name_any();
    let room = MAX_NAME_LENGTH.saturating_sub(suffix.len()).min(name.len());
    format!("{}{suffix}", name[..room].trim_end_matches(['-', '.']))
}

/// The `Verified` condition's status (True: Some(true), False: Some(false)); None while no
/// verdict is recorded (no condition, or Unknown while a first drill runs).
pub fn verified(backup: &ZooKeeperBackup) -> Option<bool> {
    verdict_condition(backup).map(|c| c.status == "True")
}

/// When a drill was last asked for by annotation, if it was.
pub fn drill_requested_at(backup: &ZooKeeperBackup) -> Option<Timestamp> {
    backup
        .annotations()
        .get(DRILL_REQUESTED_ANNOTATION)?
        .parse()
        .ok()
}

/// What is wrong with the drill annotation, when it is there and not a time.
pub fn invalid_request(backup: &ZooKeeperBackup, now: Timestamp) -> Option<String> {
    let value = backup.annotations().get(DRILL_REQUESTED_ANNOTATION)?;
    match value.parse::<Timestamp>() {
        Err(problem) => Some(format!(
            "the annotation {DRILL_REQUESTED_ANNOTATION} {value:?} is not an RFC 3339 time \
             ({problem}), so no drill was asked for; set it to one in UTC, such as \
             2026-12-06T05:00:00Z (`date -u +%FT%TZ`)"
        )),
        Ok(at) if ahead(at, now) => Some(format!(
            "the annotation {DRILL_REQUESTED_ANNOTATION} {value:?} is in the future (the \
             operator's clock says {now}), so it asks for no drill beyond the first; set it \
             to the current time (`date -u +%FT%TZ`)"
        )),
        Ok(_) => None,
    }
}

/// Whether a request at `at` is further ahead of `now` than a skewed clock explains.
fn ahead(at: Timestamp, now: Timestamp) -> bool {
    Duration::try_from(at.duration_since(now)).is_ok_and(|ahead| ahead > REQUEST_SKEW)
}

/// Whether `backup` is ever drilled: its `spec.verify`, or a drill asked for by annotation.
pub fn wanted(backup: &ZooKeeperBackup) -> bool {
    backup.spec.verify || drill_requested_at(backup).is_some()
}

/// The `Verified` condition, if it holds a verdict (True or False) rather than progress.
pub fn verdict_condition(backup: &ZooKeeperBackup) -> Option<&Condition> {
    backup
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == VERIFIED && c.status != "Unknown")
}

/// The drill request (the annotation's text and time) that is honoured at `now`: one that is a
/// time and not in the future (see [`REQUEST_SKEW`]).
fn honoured_request(backup: &ZooKeeperBackup, now: Timestamp) -> Option<(&str, Timestamp)> {
    let text = backup.annotations().get(DRILL_REQUESTED_ANNOTATION)?;
    let at = text.parse().ok().filter(|&at| !ahead(at, now))?;
    Some((text, at))
}

/// Whether a drill of `backup` is due at `now`: none reached a verdict yet, or one was asked for
/// after the last verdict.
fn due(backup: &ZooKeeperBackup, now: Timestamp) -> bool {
    let requested = honoured_request(backup, now).map(|(_, at)| at);
    match (verdict_condition(backup), requested) {
        (None, _) => true,
        (Some(verdict), Some(requested)) => requested > verdict.last_transition_time.0,
        (Some(_), None) => false,
    }
}

/// The `Verified` condition that says a drill runs and why it waits; `None` when nothing is to
/// be written: a drill that runs again keeps the last verdict, and the same message is not
/// written twice (every write wakes the controller).
pub fn progress(backup: &ZooKeeperBackup, message: String) -> Option<Condition> {
    let conditions = &backup.status.as_ref()?.conditions;
    let said = conditions
        .iter()
        .any(|c| c.type_ == VERIFIED && (c.status != "Unknown" || c.message == message));
    (!said).then(|| verified_condition("Unknown", "Drilling", message))
}

/// A `Verified` condition with `status` True, False or Unknown.
pub fn verified_condition(status: &str, reason: &str, message: String) -> Condition {
    Condition {
        type_: VERIFIED.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: Time(Timestamp::now()),
        observed_generation: None,
    }
}

/// What the drill of `backup` needs next at `now`, given its drill ensembles (those labelled as
/// its drills, and the ensemble of the due drill's name if there is one) and the backed-up
/// ensemble (`source`; only read when a drill ensemble is to be created).
pub fn next_step(
    backup: &ZooKeeperBackup,
    drills: &[ZooKeeperEnsemble],
    source: Option<&ZooKeeperEnsemble>,
    now: Timestamp,
) -> DrillStep {
    let status = backup.status.clone().unwrap_or_default();
    if !wanted(backup) || status.phase != Some(BackupPhase::Succeeded) {
        return DrillStep::Nothing;
    }
    let due = due(backup, now);
    let created = |drill: &ZooKeeperEnsemble| {
        drill
            .meta()
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0)
    };
    let mut ours: Vec<&ZooKeeperEnsemble> = drills
        .iter()
        .filter(|drill| is_drill_of(drill, backup) && drill.meta().deletion_timestamp.is_none())
        .collect();
    ours.sort_by_key(|drill| created(drill));
    // The drill that runs: the first one created since the last verdict. It answers every
    // request made while it runs, as its verdict comes after them (a drill schedule more
    // frequent than a drill takes must not start it over and over).
    let last_verdict = verdict_condition(backup).map(|c| c.last_transition_time.0);
    let running = ours
        .iter()
        .copied()
        .filter(|_| due)
        .find(|drill| last_verdict.is_none_or(|verdict| created(drill) >= verdict));
    // Every other one is done with: its verdict is recorded, or it restored before the
    // request that is due was made (removed, never checked).
    let done: Vec<String> = ours
        .iter()
        .filter(|drill| running.is_none_or(|running| running.name_any() != drill.name_any()))
        .map(|drill| drill.name_any())
        .collect();
    if !done.is_empty() {
        return DrillStep::Remove(done);
    }
    if !due {
        return DrillStep::Nothing;
    }
    if status.content_hash.is_none() || status.persistent_znode_count.is_none() {
        return DrillStep::Conclude(Verdict {
            verified: false,
            reason: "NotHashed",
            message: "the backup has no hash of its persistent znodes (the operator that took it \
                      did not compute one), so a drill has nothing to compare with; take a new backup"
                .to_owned(),
        });
    }
    let Some(drill) = running else {
        let name = drill_name(backup, now);
        return match drills.iter().find(|drill| drill.name_any() == name) {
            None => DrillStep::Create(Box::new(drill_ensemble(backup, source, &name))),
            Some(drill) if !is_drill_of(drill, backup) => DrillStep::Conclude(Verdict {
                verified: false,
                reason: "NameTaken",
                message: format!(
                    "a ZooKeeperEnsemble {name} exists that is not this backup's drill; the \
                     operator neither uses nor deletes it"
                ),
            }),
            // Ours and on its way (deleted by hand mid-drill): a new one once it is gone.
            Some(_) => DrillStep::Wait(format!(
                "waiting for the drill ensemble {name}, deleted mid-drill, to be gone"
            )),
        };
    };
    let name = drill.name_any();
    let drill_status = drill.status.clone().unwrap_or_default();
    let created = created(drill);
    let waited = Duration::try_from(now.duration_since(created)).unwrap_or_default();
    let state = drill_status
        .conditions
        .iter()
        .find(|c| c.status == "False" && !c.message.is_empty())
        .map_or_else(
            || {
                let phase = drill_status.phase.map_or("none", Phase::as_str);
                format!("phase {phase}")
            },
            |c| format!("{}: {}", c.reason, c.message),
        );
    if waited > DRILL_LIMIT {
        // A server that serves but gives no snapshot ends here too, with the last reason.
        let last = status
            .conditions
            .iter()
            .find(|c| c.type_ == VERIFIED && c.status == "Unknown" && !c.message.is_empty())
            .map_or(String::new(), |c| format!("; last: {}", c.message));
        return DrillStep::Conclude(Verdict {
            verified: false,
            reason: "DrillTimedOut",
            message: format!(
                "the drill ensemble {name} did not serve a snapshot within {} minutes ({state}{last})",
                DRILL_LIMIT.as_secs() / 60
            ),
        });
    }
    if drill_status.phase == Some(Phase::Active) && drill_status.restore.is_some() {
        return DrillStep::Check(name);
    }
    DrillStep::Wait(format!(
        "restoring into the drill ensemble {name}, which does not serve yet ({state})"
    ))
}

fn is_drill_of(drill: &ZooKeeperEnsemble, backup: &ZooKeeperBackup) -> bool {
    let uid = backup.uid();
    uid.is_some()
        && drill
            .owner_references()
            .iter()
            .any(|owner| Some(&owner.uid) == uid.as_ref() && owner.kind == "ZooKeeperBackup")
}

/// The throwaway ensemble `name` that restores `backup`: one server with `source`'s image, JVM,
/// resources, storage and placement (a new ensemble's defaults when the source is gone), its own
/// CA and superuser, the snapshot command on (the drill takes a snapshot), no schedule, and its
/// volume deleted with it.
///
/// Not the source's pod labels: a Service of the user's that selects the source's servers by
/// them would send clients to the drill's server too, which would acknowledge their writes and
/// lose them with the drill. Zooherd's own Services select by the ensemble's name.
pub fn drill_ensemble(
    backup: &ZooKeeperBackup,
    source: Option<&ZooKeeperEnsemble>,
    name: &str,
) -> ZooKeeperEnsemble {
    let mut spec = source.map_or_else(
        || {
            serde_json::from_value::<ZooKeeperEnsembleSpec>(serde_json::json!({}))
                .expect("every field of an ensemble's spec has a default")
        },
        |source| source.spec.clone(),
    );
    spec.placement.pod_labels.clear();
    spec.replicas = 1;
    spec.paused = false;
    spec.restore = Some(RestoreSpec {
        backup: Some(backup.name_any()),
        object: None,
    });
    spec.backup = BackupSpec {
        enabled: true,
        ..BackupSpec::default()
    };
    spec.tls.quorum = true;
    spec.storage.retention.when_deleted = RetentionPolicy::Delete;
    let mut drill = ZooKeeperEnsemble::new(name, spec);
    drill.metadata.namespace = backup.namespace();
    drill
        .labels_mut()
        .insert(DRILL_OF_LABEL.to_owned(), backup.name_any());
    drill.metadata.owner_references = backup.controller_owner_ref(&()).map(|o| vec![o]);
    drill
}

/// What the drill found: the restored server's snapshot (`restored`, at zxid `zxid`) against
/// what the backup recorded.
pub fn verdict(
    backup: &ZooKeeperBackup,
    drill: &str,
    restored: &PersistentContents,
    zxid: &str,
) -> Verdict {
    let status = backup.status.clone().unwrap_or_default();
    let recorded_count = status.persistent_znode_count.unwrap_or(-1);
    let recorded_hash = status.content_hash.unwrap_or_default();
    let count = i64::try_from(restored.znodes).unwrap_or(i64::MAX);
    let hash = restored.hash_hex();
    if count == recorded_count && hash == recorded_hash {
        Verdict {
            verified: true,
            reason: "Restored",
            message: format!(
                "restored into {drill}: its server holds the backup's {count} persistent znodes \
                 (hash {hash}) at zxid {zxid}"
            ),
        }
    } else {
        Verdict {
            verified: false,
            reason: "Mismatch",
            message: format!(
                "restored into {drill}, its server holds {count} persistent znodes (hash {hash}), \
                 the backup {recorded_count} (hash {recorded_hash}): the snapshot does not \
                 restore what it holds"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
