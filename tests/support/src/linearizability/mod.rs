//! A Jepsen-style checker for histories of ZooKeeper registers (znodes): are the writes
//! linearizable, and do the reads keep ZooKeeper's promises?
//!
//! # The model
//! Each register is a znode holding a value and a version (`Stat.version`), from a known
//! initial state (created before the run). [`history::Call::Write`] is `setData` with version
//! -1: the register takes the value and its version grows by one, and the answer carries the
//! new version. [`history::Call::Cas`] is `setData` with a version: the same if the register
//! is at that version, else BadVersion. An operation's [`history::Outcome`] is Ok, a definite
//! failure (it did not take effect), or Unknown (connection loss, timeout: it may take effect
//! at any later time, or never, so its completion time is infinite). Definite failures are
//! left out of the search (a BadVersion is not used as evidence of the version it saw).
//!
//! Reads are not linearizable in ZooKeeper (a server answers from its own, possibly stale,
//! state, even after `sync`), so they are left out of the linearizability check and checked
//! only for what ZooKeeper promises within a session ([`reads`]). The exception is the
//! [`history::Call::FinalRead`] of each register once the faults are over: it comes after
//! every other operation has completed and is checked as a linearizable read, so it must
//! account for every acknowledged write (a lost write fails the check).
//!
//! # The checker
//! Wing & Gong's search for a linearization with Lowe's memo ([`checker`]): a depth-first
//! search that takes, at each step, an operation that may go next (invoked before the earliest
//! pending completion), applies it to the model, and backtracks when a completed operation can
//! no longer be placed; every (linearized set, model state) pair reached is remembered, and a
//! pair seen before is not explored again. Registers are independent (P-compositionality), so
//! each register's sub-history is checked on its own, on as many threads as there are cores.
//!
//! The memo's keys are exact but compact: the definite operations linearized form a prefix
//! (in invocation order) plus a few beyond it, so a key holds the prefix length and the words
//! of the bitset after it; the unknown operations linearized, as a bitset or a sorted list of
//! indices, whichever is smaller.
//!
//! Three prunings, each sound for this model, keep the search near-linear:
//! - *Versions only grow, and an acknowledged write pins its place.* A write that returned
//!   version r can only take effect at version r-1 (a CAS at its expected version, a final
//!   read at its own), so a state whose version is past some pending definite operation's pin
//!   is dead and not explored.
//! - *Unknown operations are tried last, and interchangeable ones once.* Two unknown blind
//!   writes that may both go next, whose values no linearizable read saw, lead to the same
//!   futures (swap them in any linearization), so only the first pending one is tried; the
//!   same for unknown CASes expecting the same version. A blind write is not tried where an
//!   unknown CAS expecting the current version could go: the CAS is useless anywhere else.
//! - *From any state, nothing unknown helps.* A window that starts mid-run starts from any
//!   state, which is at least as good as any state an unknown write could lead to.
//!
//! A failed check reports the smallest window it can ([`checker::smallest_window`]): the
//! shortest failing prefix of the register's sub-history, then the latest start from which
//! that prefix is already non-linearizable from any state, then (delta debugging) the fewest
//! operations that must keep their outcomes for the violation to stay, the others forgotten
//! (treated as Unknown). [`verify`] writes the history, with the verdict as its first line, to
//! a JSON-lines file and returns its path; the file replays as a history.
//!
//! # Why not a crate
//! `stateright` (0.31)'s `LinearizabilityTester` is fed invocations and returns in real-time
//! order, as its actor model produces them; its search is an exhaustive recursion over
//! interleavings with no memo, which clones the remaining history at every step and recurses
//! once per operation, and an operation with no return must be the last of its thread (a
//! client that lost an answer must go on under a new thread id). It is exponential on
//! concurrent histories and would overflow the stack long before 100,000 operations.
//! `todc-utils`' `WGLChecker` has Lowe's memo but keys it on a `Vec<bool>` of the whole
//! history, finds entries by linear search (quadratic), and has no incomplete operations.
//! Neither knows the versions that make this model's search near-linear, or shrinks a
//! failure, so the checker is written here.
//!
//! `benches/linearizability.rs` measures it on 10,000 and 100,000 operations.
//!
//! # Use
//! Record with [`history::Recorder`] (or build a [`History`]), then
//! `verify(&history, "name")`: Ok with the [`Report`], or Err with a [`Failed`] whose display
//! names the file and the window.

pub mod checker;
pub mod generate;
pub mod history;
pub mod reads;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use checker::{Deepest, Effect, LinOp, State, Verdict as SearchVerdict};
use history::{History, Invalid, Op};
use reads::{ReadAnomaly, check_reads};

/// How much a failed check spends looking for the smallest window.
const WINDOW_NODES: u64 = 2_000_000;
const WINDOW_TIME: Duration = Duration::from_secs(30);

/// What the write check found on one register.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyReport {
    pub key: String,
    /// Operations in the write check (acknowledged and unknown writes and CASes, final reads).
    pub checked: usize,
    /// Of which with an unknown outcome.
    pub unknown: usize,
    /// Search nodes of the check.
    pub nodes: u64,
    pub seconds: f64,
    /// None if the register's writes are linearizable.
    pub failure: Option<KeyFailure>,
}

/// A register whose writes are not linearizable, and the smallest window that shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyFailure {
    pub key: String,
    /// The window's start (ns), or None: from the run's start and the known initial state.
    /// From a start, the window begins in any state.
    pub from: Option<u64>,
    /// The window's end (ns): operations invoked later are left out, and those still pending
    /// then are treated as Unknown.
    pub to: u64,
    /// Every operation in the window (ids).
    pub window: Vec<u64>,
    /// The operations whose outcomes the violation needs (ids); the window's others may be
    /// treated as Unknown and the violation stays.
    pub essential: Vec<u64>,
    /// Whether `essential` is minimal (no one of them can be forgotten); false if the search
    /// for it ran out of time.
    pub minimal: bool,
    /// Where the search got stuck, in words.
    pub explanation: String,
}

/// What a failed check found; the first line of its file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<String>,
    pub failures: Vec<KeyFailure>,
    pub read_anomalies: Vec<ReadAnomaly>,
}

/// The result of [`check`].
#[derive(Clone, Debug)]
pub struct Report {
    pub keys: Vec<KeyReport>,
    pub read_anomalies: Vec<ReadAnomaly>,
    /// Wall time of the write check (all registers).
    pub writes_elapsed: Duration,
    pub reads_elapsed: Duration,
}

impl Report {
    /// No write violation and no read anomaly.
    pub fn is_ok(&self) -> bool {
        self.writes_ok() && self.read_anomalies.is_empty()
    }

    /// Every register's writes are linearizable.
    pub fn writes_ok(&self) -> bool {
        self.keys.iter().all(|k| k.failure.is_none())
    }

    pub fn failures(&self) -> impl Iterator<Item = &KeyFailure> {
        self.keys.iter().filter_map(|k| k.failure.as_ref())
    }

    /// What went wrong, for people: each failing register's window and each read anomaly.
    pub fn describe(&self, history: &History) -> String {
        let mut text = String::new();
        let by_id: HashMap<u64, &Op> = history.ops.iter().map(|op| (op.id, op)).collect();
        for failure in self.failures() {
            let span = match failure.from {
                None => format!("from the start ({})", initial_text(history, &failure.key)),
                Some(from) => format!("from {} (in any state)", history::ms(from)),
            };
            let earlier = failure.from.map_or(0, |from| {
                failure
                    .window
                    .iter()
                    .filter_map(|id| by_id.get(id))
                    .filter(|op| op.invoke < from)
                    .count()
            });
            let _ = writeln!(
                text,
                "register {}: not linearizable. Smallest window found: {span} to {}, {} \
                 operation(s) ({earlier} invoked before it and still pending or unknown), of \
                 which these {} must keep their outcomes for the violation to stay{}:",
                failure.key,
                history::ms(failure.to),
                failure.window.len(),
                failure.essential.len(),
                if failure.minimal {
                    ""
                } else {
                    " (not minimised: out of time)"
                },
            );
            for id in &failure.essential {
                if let Some(op) = by_id.get(id) {
                    let _ = writeln!(text, "  {}", op.describe());
                }
            }
            let _ = writeln!(text, "  {}", failure.explanation);
        }
        if !self.read_anomalies.is_empty() {
            let _ = writeln!(text, "read anomalies ({}):", self.read_anomalies.len());
            for anomaly in self.read_anomalies.iter().take(20) {
                let _ = writeln!(text, "  {:?}: {}", anomaly.kind, anomaly.message);
            }
            if self.read_anomalies.len() > 20 {
                let _ = writeln!(text, "  ... and {} more", self.read_anomalies.len() - 20);
            }
        }
        text
    }
}

fn initial_text(history: &History, key: &str) -> String {
    match history.initial.get(key) {
        Some(s) => format!("{}@v{}", s.value, s.version),
        None => "undeclared".into(),
    }
}

/// Checks `history`: each register's writes for linearizability (in parallel), and the reads.
/// A register that fails gets its smallest window.
pub fn check(history: &History) -> Result<Report, Invalid> {
    history.validate()?;
    let started = Instant::now();
    let keys = history.keys();
    let results: Mutex<Vec<Option<KeyReport>>> = Mutex::new(vec![None; keys.len()]);
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(keys.len())
        .max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(key) = keys.get(k) else { break };
                    let report = check_key(history, key);
                    results.lock().unwrap_or_else(|e| e.into_inner())[k] = Some(report);
                }
            });
        }
    });
    let writes_elapsed = started.elapsed();
    let started = Instant::now();
    let read_anomalies = check_reads(history);
    Ok(Report {
        keys: results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|r| r.expect("every register checked"))
            .collect(),
        read_anomalies,
        writes_elapsed,
        reads_elapsed: started.elapsed(),
    })
}

/// The write check of one register.
fn check_key(history: &History, key: &str) -> KeyReport {
    let started = Instant::now();
    let ops = LinOp::from_history(&history.ops_on(key));
    let initial = State::known(history.initial[key]);
    let result = checker::search(initial, &ops, None);
    let failure = match result.verdict {
        SearchVerdict::Linearizable => None,
        SearchVerdict::Violation(_) | SearchVerdict::GaveUp => {
            let found = checker::smallest_window(initial, &ops, WINDOW_NODES, WINDOW_TIME);
            Some(KeyFailure {
                key: key.to_string(),
                from: found.from,
                to: found.to,
                window: found.ops.iter().map(|op| op.id).collect(),
                explanation: explain(history, &found.deepest, found.start, &found.ops),
                essential: found.essential,
                minimal: found.minimal,
            })
        }
    };
    KeyReport {
        key: key.to_string(),
        checked: ops.len(),
        unknown: ops.iter().filter(|op| op.complete.is_none()).count(),
        nodes: result.nodes,
        seconds: started.elapsed().as_secs_f64(),
        failure,
    }
}

/// Where the search got stuck, in words.
fn explain(history: &History, deepest: &Deepest, start: State, ops: &[LinOp]) -> String {
    let describe = |id: u64| {
        history
            .op(id)
            .map_or_else(|| format!("#{id}"), Op::describe)
    };
    let need = |id: u64| {
        let Some(op) = ops.iter().find(|op| op.id == id) else {
            return String::new();
        };
        match op.effect {
            Effect::Write { .. } => {
                let r = op.returned.unwrap_or_default();
                format!("it returned version {r}, so it needs version {}", r - 1)
            }
            Effect::Cas { expected, .. } => match op.returned {
                Some(r) if r != expected + 1 => {
                    format!("it expected version {expected} but returned version {r}")
                }
                _ => format!("it needs version {expected}"),
            },
            Effect::Read { value, version } => format!("it saw {value}@v{version}"),
        }
    };
    let mut text = if deepest.linearized == 0 {
        if start == State::ANY {
            "from any state".to_string()
        } else {
            format!("from the initial state {start}")
        }
    } else {
        format!(
            "after at best {} of the {} operations that must take effect (the last: {}), the \
             register is at {}",
            deepest.linearized,
            deepest.definite,
            deepest
                .recent
                .iter()
                .map(|id| format!("#{id}"))
                .collect::<Vec<_>>()
                .join(", "),
            deepest.state
        )
    };
    if let Some((taken, after, stuck)) = deepest.dead_end {
        let _ = write!(
            text,
            ", {} can take effect next only to leave it at {after}, where {} can never take \
             effect: {}",
            describe(taken),
            describe(stuck),
            need(stuck)
        );
    } else if let Some(blocked) = deepest.blocked {
        let _ = write!(
            text,
            ", {} must take effect next but cannot: {}",
            describe(blocked),
            need(blocked)
        );
    }
    text
}

/// A failed [`verify`]: where the history went, and what was found.
#[derive(Debug)]
pub struct Failed {
    pub path: PathBuf,
    pub report: Option<Box<Report>>,
    pub text: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nhistory and verdict: {}",
            self.text,
            self.path.display()
        )
    }
}

impl std::error::Error for Failed {}

/// Where failed checks write their files: `ZOOHERD_LINEARIZABILITY_DIR`, or
/// `linearizability/` under Cargo's temporary directory for tests and benchmarks.
pub fn failure_dir() -> PathBuf {
    match std::env::var_os("ZOOHERD_LINEARIZABILITY_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => crate::target_tmp_dir().join("linearizability"),
    }
}

/// Checks `history` ([`check`]); if anything is wrong (or the history is invalid), writes it
/// to `<failure_dir>/<name>-....jsonl` with the verdict as its first line, and returns the
/// path and what was found.
pub fn verify(history: &History, name: &str) -> Result<Report, Failed> {
    let (report, verdict, text) = match check(history) {
        Ok(report) if report.is_ok() => return Ok(report),
        Ok(report) => {
            let verdict = Verdict {
                name: name.to_string(),
                invalid: Vec::new(),
                failures: report.failures().cloned().collect(),
                read_anomalies: report.read_anomalies.clone(),
            };
            let text = report.describe(history);
            (Some(Box::new(report)), verdict, text)
        }
        Err(invalid) => {
            let text = invalid.to_string();
            let verdict = Verdict {
                name: name.to_string(),
                invalid: invalid.0,
                failures: Vec::new(),
                read_anomalies: Vec::new(),
            };
            (None, verdict, text)
        }
    };
    let dir = failure_dir();
    let path = dir.join(format!("{}.jsonl", super::unique_name(name)));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| history.write_records(Some(&verdict), std::fs::File::create(&path)?));
    let text = match written {
        Ok(()) => text,
        Err(e) => format!("{text}\n(could not write {}: {e})", path.display()),
    };
    Err(Failed { path, report, text })
}
