//! The recorded history of a run: what each client asked of which register, when, and what it
//! got back; saved and replayed as JSON lines.
//!
//! A history file holds one JSON object a line, each a [`Record`]:
//!
//! ```text
//! {"record":"register","key":"/lin/r0","value":0,"version":0}
//! {"record":"op","id":0,"client":1,"session":1,"key":"/lin/r0","call":{"f":"write","value":7},"invoke":1200,"complete":3400,"outcome":{"type":"ok","version":1}}
//! {"record":"op","id":1,"client":2,"session":2,"key":"/lin/r0","call":{"f":"cas","expected_version":0,"value":8},"invoke":1300,"complete":3900,"outcome":{"type":"fail","error":"BadVersion"}}
//! {"record":"op","id":2,"client":3,"session":3,"key":"/lin/r0","call":{"f":"read"},"invoke":5000,"complete":5100,"outcome":{"type":"ok","version":1,"value":7}}
//! {"record":"op","id":3,"client":0,"session":9,"key":"/lin/r0","call":{"f":"final_read"},"invoke":90000,"complete":90200,"outcome":{"type":"ok","version":1,"value":7}}
//! ```
//!
//! A file that a failed check wrote starts with a `{"record":"verdict",...}` line (see
//! [`super::Verdict`]); [`History::read_jsonl`] skips it, so the file replays as it is.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A register's value. A workload writes each value at most once per register (a counter, in
/// the znode as ASCII decimal), so that a value names the write that put it there.
pub type Value = u64;

/// A znode's data version (`Stat.version`): 0 when created, +1 at each `setData`.
pub type Version = i32;

/// A register's content: what a read returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegisterState {
    pub value: Value,
    pub version: Version,
}

/// What a client asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Call {
    /// `getData`. Not linearizable in ZooKeeper (a server may answer from a stale state, even
    /// after `sync`): checked only for what ZooKeeper promises, read-your-writes and
    /// monotonic versions within a session.
    Read,
    /// `setData` with version -1: the register holds `value` and its version grows by one.
    Write { value: Value },
    /// `setData` with a version: as `Write` if the register's version is `expected_version`,
    /// otherwise fails with BadVersion and changes nothing.
    Cas {
        expected_version: Version,
        value: Value,
    },
    /// The read of every register once the faults are over and the ensemble is healthy, after
    /// every other operation on the register completed. Checked as a linearizable read: it must
    /// account for every acknowledged write.
    FinalRead,
}

/// What a client got back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    /// It took effect. A write or CAS returns the register's new `version` (from its `Stat`;
    /// `value` is left out), a read the `value` and `version` it saw.
    Ok {
        version: Version,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Value>,
    },
    /// A definite failure: it did not take effect (`BadVersion`, `NoNode`, ...). By convention
    /// `error` is ZooKeeper's error code name.
    Fail { error: String },
    /// No answer (connection loss, timeout): it may take effect at any time after its
    /// invocation, or never. The checker treats its completion time as infinite.
    Unknown { error: String },
}

/// One operation: a call on one register and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Unique in the history.
    pub id: u64,
    /// The worker that ran it (for reports).
    pub client: u32,
    /// The ZooKeeper session it ran in: the read checks hold within one session. A worker that
    /// loses its session goes on under a new number.
    pub session: u64,
    /// The register (znode path).
    pub key: String,
    pub call: Call,
    /// When it was invoked, in nanoseconds since the run's start.
    pub invoke: u64,
    /// When the client got its answer (for an Unknown outcome, when it gave up: the checker
    /// ignores it, the operation may take effect later).
    pub complete: u64,
    pub outcome: Outcome,
}

impl Op {
    /// Whether it ended with [`Outcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok { .. })
    }

    /// One line for reports: `#12 client 3/s7 cas 0->8 = ok v1 [1.200 ms, 3.400 ms]`.
    pub fn describe(&self) -> String {
        let call = match self.call {
            Call::Read => "read".to_string(),
            Call::FinalRead => "final read".to_string(),
            Call::Write { value } => format!("write {value}"),
            Call::Cas {
                expected_version,
                value,
            } => format!("cas v{expected_version}->{value}"),
        };
        let outcome = match &self.outcome {
            Outcome::Ok {
                version,
                value: Some(value),
            } => format!("ok {value}@v{version}"),
            Outcome::Ok { version, .. } => format!("ok v{version}"),
            Outcome::Fail { error } => format!("fail {error}"),
            Outcome::Unknown { error } => format!("unknown ({error})"),
        };
        let end = if matches!(self.outcome, Outcome::Unknown { .. }) {
            "never".to_string()
        } else {
            ms(self.complete)
        };
        format!(
            "#{} client {}/s{} {} {call} = {outcome} [{}, {end}]",
            self.id,
            self.client,
            self.session,
            self.key,
            ms(self.invoke)
        )
    }
}

/// Nanoseconds as milliseconds, for reports.
pub(crate) fn ms(nanos: u64) -> String {
    format!("{:.3} ms", nanos as f64 / 1e6)
}

/// A line of a history file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// A register and its state before the run (created before the first operation).
    Register {
        key: String,
        value: Value,
        version: Version,
    },
    Op(Op),
    /// What a failed check found; ignored when the history is read back.
    Verdict(super::Verdict),
}

/// A run: the registers' initial states and every operation, in any order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub initial: BTreeMap<String, RegisterState>,
    pub ops: Vec<Op>,
}

/// Why a history cannot be checked (a bug of the workload, not of ZooKeeper).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid(pub Vec<String>);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid history: {}", self.0.join("; "))
    }
}

impl std::error::Error for Invalid {}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares register `key` with its state before the run.
    pub fn register(&mut self, key: &str, value: Value, version: Version) -> &mut Self {
        self.initial
            .insert(key.to_string(), RegisterState { value, version });
        self
    }

    /// The registers' names, sorted.
    pub fn keys(&self) -> Vec<&str> {
        self.initial.keys().map(String::as_str).collect()
    }

    /// The operations on `key`, in invocation order.
    pub fn ops_on<'a>(&'a self, key: &str) -> Vec<&'a Op> {
        let mut ops: Vec<&Op> = self.ops.iter().filter(|op| op.key == key).collect();
        ops.sort_by_key(|op| (op.invoke, op.id));
        ops
    }

    /// The operation with id `id`.
    pub fn op(&self, id: u64) -> Option<&Op> {
        self.ops.iter().find(|op| op.id == id)
    }

    /// The mistakes that make the history uncheckable: unknown registers, duplicate ids,
    /// answers before calls, answers of the wrong shape, final reads that are not final.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut errors = Vec::new();
        let mut ids = HashSet::new();
        for op in &self.ops {
            let what = op.describe();
            if !ids.insert(op.id) {
                errors.push(format!("duplicate id in {what}"));
            }
            if !self.initial.contains_key(&op.key) {
                errors.push(format!("{what}: register {} is not declared", op.key));
            }
            let unknown = matches!(op.outcome, Outcome::Unknown { .. });
            if !unknown && op.complete < op.invoke {
                errors.push(format!("{what}: completes before it is invoked"));
            }
            match (&op.call, &op.outcome) {
                (Call::Read | Call::FinalRead, Outcome::Ok { value: None, .. }) => {
                    errors.push(format!("{what}: a read's answer needs the value"));
                }
                (
                    Call::Write { value } | Call::Cas { value, .. },
                    Outcome::Ok { value: Some(v), .. },
                ) if v != value => {
                    errors.push(format!("{what}: a write's answer names another value"));
                }
                _ => {}
            }
            if let Call::Cas {
                expected_version, ..
            } = op.call
                && expected_version < 0
            {
                errors.push(format!("{what}: a CAS with version -1 is a blind write"));
            }
            if op.call == Call::FinalRead && !op.is_ok() {
                errors.push(format!(
                    "{what}: a final read must succeed (retry it until the ensemble answers)"
                ));
            }
        }
        // A final read comes after every other operation on its register has completed.
        let mut last: HashMap<&str, u64> = HashMap::new();
        for op in self.ops.iter().filter(|op| op.call != Call::FinalRead) {
            let unknown = matches!(op.outcome, Outcome::Unknown { .. });
            let end = if unknown { op.invoke } else { op.complete };
            let entry = last.entry(op.key.as_str()).or_insert(0);
            *entry = (*entry).max(end);
        }
        for op in self.ops.iter().filter(|op| op.call == Call::FinalRead) {
            if let Some(&end) = last.get(op.key.as_str())
                && op.invoke <= end
            {
                errors.push(format!(
                    "{}: a final read must start after every other operation on its register \
                     has completed (the last at {})",
                    op.describe(),
                    ms(end)
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Invalid(errors))
        }
    }

    /// The history as JSON lines: the registers, then the operations.
    pub fn write_jsonl(&self, out: impl Write) -> io::Result<()> {
        self.write_records(None, out)
    }

    pub(crate) fn write_records(
        &self,
        verdict: Option<&super::Verdict>,
        out: impl Write,
    ) -> io::Result<()> {
        let mut out = BufWriter::new(out);
        let mut line = |record: &Record| -> io::Result<()> {
            serde_json::to_writer(&mut out, record)?;
            out.write_all(b"\n")
        };
        if let Some(verdict) = verdict {
            line(&Record::Verdict(verdict.clone()))?;
        }
        for (key, state) in &self.initial {
            line(&Record::Register {
                key: key.clone(),
                value: state.value,
                version: state.version,
            })?;
        }
        for op in &self.ops {
            line(&Record::Op(op.clone()))?;
        }
        out.flush()
    }

    /// Reads a history written by [`History::write_jsonl`] (or a failed check's file: its
    /// verdict line is skipped). Blank lines are skipped; a bad line is an error that names it.
    pub fn read_jsonl(input: impl BufRead) -> io::Result<History> {
        let mut history = History::new();
        for (n, line) in input.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(&line).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("line {}: {e}", n + 1))
            })?;
            match record {
                Record::Register {
                    key,
                    value,
                    version,
                } => {
                    history.register(&key, value, version);
                }
                Record::Op(op) => history.ops.push(op),
                Record::Verdict(_) => {}
            }
        }
        Ok(history)
    }

    /// Writes the history to `path` as JSON lines.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        self.write_jsonl(fs::File::create(path)?)
    }

    /// Reads a history file.
    pub fn load(path: &Path) -> io::Result<History> {
        History::read_jsonl(io::BufReader::new(fs::File::open(path)?))
    }
}

/// Records a live run from several threads: [`Recorder::invoke`] before the call,
/// [`Pending::complete`] with its outcome, [`Recorder::finish`] for the history.
///
/// An invoked operation is never lost: a [`Pending`] dropped without an outcome (a cancelled
/// future, a panicking worker) is recorded as Unknown, since it may still take effect.
pub struct Recorder {
    start: Instant,
    initial: BTreeMap<String, RegisterState>,
    ops: Mutex<Vec<Op>>,
}

/// An invoked operation, waiting for its outcome.
#[must_use = "complete it with Pending::complete; dropped, it is recorded as Unknown"]
pub struct Pending<'a> {
    recorder: &'a Recorder,
    op: Option<Op>,
}

impl Recorder {
    /// Starts the clock; `initial` are the registers as created before the run.
    pub fn new(initial: &[(&str, RegisterState)]) -> Self {
        Recorder {
            start: Instant::now(),
            initial: initial
                .iter()
                .map(|(key, state)| (key.to_string(), *state))
                .collect(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the run's start: the clock of the operations' times (a nemesis
    /// times its faults with it).
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records the invocation of `call` on `key`, now.
    pub fn invoke(&self, client: u32, session: u64, key: &str, call: Call) -> Pending<'_> {
        Pending {
            recorder: self,
            op: Some(Op {
                id: 0,
                client,
                session,
                key: key.to_string(),
                call,
                invoke: self.now(),
                complete: 0,
                outcome: Outcome::Unknown {
                    error: "no outcome recorded".into(),
                },
            }),
        }
    }

    fn record(&self, mut op: Op) {
        op.complete = self.now();
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        op.id = ops.len() as u64;
        ops.push(op);
    }

    /// The history recorded so far.
    pub fn finish(&self) -> History {
        History {
            initial: self.initial.clone(),
            ops: self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

impl Pending<'_> {
    /// Records the outcome, now.
    pub fn complete(mut self, outcome: Outcome) {
        if let Some(mut op) = self.op.take() {
            op.outcome = outcome;
            self.recorder.record(op);
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            self.recorder.record(op);
        }
    }
}
