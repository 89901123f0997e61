//! The read checks: what ZooKeeper promises of reads, which are not linearizable.
//!
//! A ZooKeeper server answers reads from its own state, which may lag the leader (even after
//! `sync`), so a read may be stale. What a client may rely on, and what is checked here, within
//! one session and one register:
//! - read-your-writes: a read invoked after the session's write was acknowledged sees that
//!   write's version or a later one;
//! - monotonic reads: a read never sees a version older than one the session already saw
//!   (from an earlier read or an acknowledged write that completed before the read began);
//! - no phantom: a read sees a state that existed: the initial state, or a value written by a
//!   write that did not definitely fail and was invoked before the read completed, at the
//!   version that write produced (when the write was acknowledged, its returned version);
//! - no missing register: the registers exist from before the run and are never deleted, so
//!   an operation failing with `NoNode` means a server without them answered.
//!
//! A stale read that breaks none of these is fine, whatever other sessions saw.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::history::{Call, History, Op, Outcome, Value, Version};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    ReadYourWrites,
    NonMonotonic,
    Phantom,
    Missing,
}

/// A read that breaks one of ZooKeeper's promises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAnomaly {
    pub kind: AnomalyKind,
    pub key: String,
    pub session: u64,
    /// The read (or, for `Missing`, the failed operation).
    pub op: u64,
    /// The session's earlier operation that the read went behind, or the write it contradicts.
    pub earlier: Option<u64>,
    pub message: String,
}

/// The version an acknowledged operation saw or produced.
fn seen_version(op: &Op) -> Option<Version> {
    match op.outcome {
        Outcome::Ok { version, .. } => Some(version),
        _ => None,
    }
}

/// The value a write or CAS writes.
fn written_value(op: &Op) -> Option<Value> {
    match op.call {
        Call::Write { value } | Call::Cas { value, .. } => Some(value),
        _ => None,
    }
}

fn is_write(op: &Op) -> bool {
    matches!(op.call, Call::Write { .. } | Call::Cas { .. })
}

/// Every read anomaly in `history`, in the order of the reads' ids.
pub fn check_reads(history: &History) -> Vec<ReadAnomaly> {
    let mut anomalies = Vec::new();
    let mut groups: BTreeMap<(u64, &str), Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        if let Outcome::Fail { error } = &op.outcome
            && error.eq_ignore_ascii_case("NoNode")
        {
            anomalies.push(ReadAnomaly {
                kind: AnomalyKind::Missing,
                key: op.key.clone(),
                session: op.session,
                op: op.id,
                earlier: None,
                message: format!(
                    "{}: the register exists from before the run and is never deleted",
                    op.describe()
                ),
            });
        }
        if op.call != Call::FinalRead && op.is_ok() {
            groups
                .entry((op.session, op.key.as_str()))
                .or_default()
                .push(op);
        }
    }
    for ops in groups.values() {
        session_order(ops, &mut anomalies);
    }
    for key in history.keys() {
        phantoms(history, key, &mut anomalies);
    }
    anomalies.sort_by_key(|a| (a.op, a.kind as u8));
    anomalies
}

/// Read-your-writes and monotonic reads for one session's acknowledged operations on one key.
fn session_order(ops: &[&Op], anomalies: &mut Vec<ReadAnomaly>) {
    let mut by_completion: Vec<&Op> = ops.to_vec();
    by_completion.sort_by_key(|op| (op.complete, op.id));
    let mut reads: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| op.call == Call::Read)
        .collect();
    reads.sort_by_key(|op| (op.invoke, op.id));
    // The highest version the session wrote, and saw at all, before the read began.
    let mut own: Option<(Version, &Op)> = None;
    let mut any: Option<(Version, &Op)> = None;
    let mut done = 0;
    for read in reads {
        while done < by_completion.len() && by_completion[done].complete < read.invoke {
            let op = by_completion[done];
            done += 1;
            let Some(version) = seen_version(op) else {
                continue;
            };
            if is_write(op) && own.is_none_or(|(v, _)| version > v) {
                own = Some((version, op));
            }
            if any.is_none_or(|(v, _)| version > v) {
                any = Some((version, op));
            }
        }
        let Some(version) = seen_version(read) else {
            continue;
        };
        let (kind, floor) = match (own, any) {
            (Some((v, op)), _) if version < v => (AnomalyKind::ReadYourWrites, (v, op)),
            (_, Some((v, op))) if version < v => (AnomalyKind::NonMonotonic, (v, op)),
            _ => continue,
        };
        let what = if kind == AnomalyKind::ReadYourWrites {
            "its own acknowledged write"
        } else {
            "what the session had already seen"
        };
        anomalies.push(ReadAnomaly {
            kind,
            key: read.key.clone(),
            session: read.session,
            op: read.id,
            earlier: Some(floor.1.id),
            message: format!(
                "{} saw version {version}, older than {what}: {} (version {})",
                read.describe(),
                floor.1.describe(),
                floor.0
            ),
        });
    }
}

/// Reads of states that never existed, on `key`.
fn phantoms(history: &History, key: &str, anomalies: &mut Vec<ReadAnomaly>) {
    let Some(initial) = history.initial.get(key) else {
        return;
    };
    let ops = history.ops_on(key);
    let mut writes: HashMap<Value, Vec<&Op>> = HashMap::new();
    let mut acknowledged: HashMap<Version, Vec<&Op>> = HashMap::new();
    for op in &ops {
        let Some(value) = written_value(op) else {
            continue;
        };
        match op.outcome {
            Outcome::Fail { .. } => continue,
            Outcome::Ok { version, .. } => acknowledged.entry(version).or_default().push(op),
            Outcome::Unknown { .. } => {}
        }
        writes.entry(value).or_default().push(op);
    }
    for read in ops.iter().filter(|op| op.call == Call::Read) {
        let Outcome::Ok {
            version,
            value: Some(value),
        } = read.outcome
        else {
            continue;
        };
        if value == initial.value && version == initial.version {
            continue;
        }
        let problem = if version <= initial.version {
            Some((
                None,
                format!(
                    "the register started at {}@v{}: no later state has version {version}",
                    initial.value, initial.version
                ),
            ))
        } else {
            let candidates: Vec<&&Op> = writes
                .get(&value)
                .into_iter()
                .flatten()
                .filter(|w| w.invoke <= read.complete)
                .collect();
            let produced = |w: &Op| seen_version(w) == Some(version);
            let unknown = |w: &Op| matches!(w.outcome, Outcome::Unknown { .. });
            if candidates.is_empty() {
                Some((
                    None,
                    "no write of this value was invoked before the read completed".to_string(),
                ))
            } else if candidates.iter().any(|w| produced(w)) {
                None
            } else if candidates.iter().any(|w| unknown(w)) {
                // The unknown write may have produced this version, unless an acknowledged
                // write of another value holds it.
                acknowledged
                    .get(&version)
                    .into_iter()
                    .flatten()
                    .find(|w| written_value(w) != Some(value))
                    .map(|w| {
                        (
                            Some(w.id),
                            format!("version {version} was written by {}", w.describe()),
                        )
                    })
            } else {
                let w = candidates[0];
                Some((
                    Some(w.id),
                    format!(
                        "that value was written at another version: {}",
                        w.describe()
                    ),
                ))
            }
        };
        if let Some((earlier, why)) = problem {
            anomalies.push(ReadAnomaly {
                kind: AnomalyKind::Phantom,
                key: key.to_string(),
                session: read.session,
                op: read.id,
                earlier,
                message: format!("{} saw a state that never existed: {why}", read.describe()),
            });
        }
    }
}
