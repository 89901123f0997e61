//! The linearizability checker of tests/support/src/linearizability: known-good and known-bad
//! histories, the read checks, the history format, generated histories of a correct register
//! (they must always pass), and agreement with a brute-force checker on small random
//! histories, good and mutated, including the windows reported for the failing ones.

use zooherd_test_support as support;

use std::collections::HashSet;

use support::linearizability::generate::{Rng, Workload, generate};
use support::linearizability::history::{
    Call, History, Op, Outcome, Recorder, RegisterState, Version,
};
use support::linearizability::reads::AnomalyKind;
use support::linearizability::{KeyFailure, Report, Verdict, check, verify};

const R: &str = "/r";

/// A history under construction, on register [`R`] unless told otherwise. Times are plain
/// numbers; the session is the client.
struct Build {
    history: History,
}

impl Build {
    /// Register [`R`] starts at value 0, version 0.
    fn new() -> Self {
        let mut history = History::new();
        history.register(R, 0, 0);
        Build { history }
    }

    fn op(
        &mut self,
        key: &str,
        client: u32,
        call: Call,
        span: (u64, u64),
        outcome: Outcome,
    ) -> u64 {
        let id = self.history.ops.len() as u64;
        self.history.ops.push(Op {
            id,
            client,
            session: client as u64,
            key: key.to_string(),
            call,
            invoke: span.0,
            complete: span.1,
            outcome,
        });
        id
    }

    /// An acknowledged blind write of `value` that returned `version`.
    fn write(&mut self, client: u32, value: u64, span: (u64, u64), version: Version) -> u64 {
        self.op(R, client, Call::Write { value }, span, ok(version))
    }

    /// A blind write of `value` whose answer was lost at `invoke`.
    fn write_unknown(&mut self, client: u32, value: u64, invoke: u64) -> u64 {
        self.op(
            R,
            client,
            Call::Write { value },
            (invoke, invoke + 1),
            unknown(),
        )
    }

    /// A CAS from `expected` to `value`: Some(version) acknowledged, None BadVersion.
    fn cas(
        &mut self,
        client: u32,
        expected: Version,
        value: u64,
        span: (u64, u64),
        result: Option<Version>,
    ) -> u64 {
        let call = Call::Cas {
            expected_version: expected,
            value,
        };
        let outcome = match result {
            Some(version) => ok(version),
            None => Outcome::Fail {
                error: "BadVersion".into(),
            },
        };
        self.op(R, client, call, span, outcome)
    }

    fn read(&mut self, client: u32, span: (u64, u64), value: u64, version: Version) -> u64 {
        self.op(R, client, Call::Read, span, read_ok(value, version))
    }

    fn final_read(&mut self, at: u64, value: u64, version: Version) -> u64 {
        self.op(
            R,
            99,
            Call::FinalRead,
            (at, at + 1),
            read_ok(value, version),
        )
    }

    /// One write of 1 acknowledged at version 1, then a final read of `value`@v`version`.
    fn one_write_then_final_read(value: u64, version: Version) -> Self {
        let mut b = Build::new();
        b.write(1, 1, (0, 10), 1);
        b.final_read(20, value, version);
        b
    }

    /// Client 1 writes 1 and client 2 writes 2, over `spans`, acknowledged at `versions`; then
    /// a final read of `value`@v`version`.
    fn two_writes(
        spans: [(u64, u64); 2],
        versions: [Version; 2],
        (value, version): (u64, Version),
    ) -> Self {
        let mut b = Build::new();
        b.write(1, 1, spans[0], versions[0]);
        b.write(2, 2, spans[1], versions[1]);
        b.final_read(spans[0].1.max(spans[1].1) + 10, value, version);
        b
    }

    fn check(&self) -> Report {
        check(&self.history).expect("a valid history")
    }
}

fn ok(version: Version) -> Outcome {
    Outcome::Ok {
        version,
        value: None,
    }
}

fn read_ok(value: u64, version: Version) -> Outcome {
    Outcome::Ok {
        version,
        value: Some(value),
    }
}

fn unknown() -> Outcome {
    Outcome::Unknown {
        error: "ConnectionLoss".into(),
    }
}

#[track_caller]
fn assert_linearizable(b: &Build) {
    let report = b.check();
    assert!(report.writes_ok(), "{}", report.describe(&b.history));
}

/// The single failure of a history whose writes must not be linearizable.
#[track_caller]
fn assert_violation(b: &Build) -> KeyFailure {
    let report = b.check();
    let failures: Vec<_> = report.failures().cloned().collect();
    assert_eq!(
        failures.len(),
        1,
        "expected a violation; report: {report:?}"
    );
    println!("{}", report.describe(&b.history));
    failures.into_iter().next().unwrap()
}

#[test]
fn concurrent_writes_linearize_in_either_order() {
    // Two overlapping writes; the versions they returned say which went first.
    let spans = [(0, 10), (5, 15)];
    assert_linearizable(&Build::two_writes(spans, [1, 2], (2, 2)));
    assert_linearizable(&Build::two_writes(spans, [2, 1], (1, 2)));
    // Whoever went last, the final read must show its value.
    assert_violation(&Build::two_writes(spans, [2, 1], (2, 2)));
}

#[test]
fn a_cas_that_succeeds_twice_on_the_same_version_fails() {
    let mut b = Build::new();
    let first = b.cas(1, 0, 1, (0, 10), Some(1));
    let second = b.cas(2, 0, 2, (2, 12), Some(1));
    b.final_read(20, 2, 1);
    let failure = assert_violation(&b);
    let essential: HashSet<u64> = failure.essential.iter().copied().collect();
    assert!(
        essential.contains(&first) && essential.contains(&second),
        "{failure:?}"
    );
    assert!(failure.minimal);

    // A CAS that lost the race fails with BadVersion and is fine.
    let mut b = Build::new();
    b.cas(1, 0, 1, (0, 10), Some(1));
    b.cas(2, 0, 2, (2, 12), None);
    b.final_read(20, 1, 1);
    assert_linearizable(&b);
}

#[test]
fn a_lost_write_fails_and_its_window_names_it() {
    let mut b = Build::new();
    for k in 1..=8u64 {
        b.write(1 + (k % 3) as u32, k, (k * 100, k * 100 + 50), k as Version);
    }
    // Write 8 was acknowledged at version 8, but the register ends at write 7.
    b.final_read(2_000, 7, 7);
    let report = b.check();
    assert!(!report.writes_ok());
    let failure = report.failures().next().unwrap().clone();
    let lost = 7; // the id of write 8
    let last = b.history.ops.len() as u64 - 1;
    assert_eq!(failure.essential, vec![lost, last], "{failure:?}");
    assert_eq!(
        failure.from,
        Some(800),
        "the window starts at the lost write: {failure:?}"
    );
    assert_eq!(failure.window, vec![lost, last]);
    assert!(
        failure.explanation.contains("final read"),
        "{}",
        failure.explanation
    );

    // verify() writes the history, with the verdict first, and the file replays.
    let failed = verify(&b.history, "lost-write").expect_err("a lost write must fail");
    println!("{failed}");
    assert!(
        failed
            .to_string()
            .contains(&failed.path.display().to_string())
    );
    let text = std::fs::read_to_string(&failed.path).expect("the failure file");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["record"], "verdict", "{first}");
    let verdict: Verdict = serde_json::from_value(first).unwrap();
    assert_eq!(verdict.failures, vec![failure]);
    assert_eq!(History::load(&failed.path).unwrap(), b.history);
    std::fs::remove_file(&failed.path).unwrap();
}

#[test]
fn a_write_applied_twice_fails() {
    // One write, and the version moved by two.
    assert_violation(&Build::one_write_then_final_read(1, 2));

    // The second write's version says something else took effect in between: nothing did.
    let mut b = Build::new();
    b.write(1, 1, (0, 10), 1);
    b.write(1, 2, (20, 30), 3);
    b.final_read(40, 2, 3);
    let failure = assert_violation(&b);
    assert_eq!(
        failure.to, 30,
        "the prefix ends at the impossible write: {failure:?}"
    );
}

#[test]
fn unknown_writes_that_did_or_did_not_take_effect_pass() {
    // It took effect between two acknowledged writes (the second write's version 3 says so),
    // or it never did (version 2).
    for second in [3, 2] {
        let mut b = Build::new();
        b.write(1, 1, (0, 10), 1);
        b.write_unknown(2, 9, 5);
        b.write(1, 2, (20, 30), second);
        b.final_read(40, 2, second);
        assert_linearizable(&b);
    }

    // It took effect long after its client gave up, after later writes.
    let mut b = Build::new();
    b.write_unknown(2, 9, 0);
    b.write(1, 1, (10, 20), 1);
    b.write(1, 2, (30, 40), 2);
    b.final_read(50, 9, 3);
    assert_linearizable(&b);

    // An unknown CAS fills the gap only at the version it expects.
    for (expected, fills) in [(1, true), (0, false), (2, false)] {
        let mut b = Build::new();
        b.write(1, 1, (0, 10), 1);
        let call = Call::Cas {
            expected_version: expected,
            value: 9,
        };
        b.op(R, 2, call, (5, 6), unknown());
        b.write(1, 2, (20, 30), 3);
        b.final_read(40, 2, 3);
        assert_eq!(
            b.check().writes_ok(),
            fills,
            "an unknown CAS expecting {expected}"
        );
    }
}

#[test]
fn an_unknown_write_cannot_take_effect_before_it_was_invoked() {
    let mut b = Build::new();
    b.write(1, 1, (0, 10), 2);
    b.write_unknown(2, 9, 50);
    b.final_read(60, 1, 2);
    let failure = assert_violation(&b);
    assert_eq!(failure.essential, vec![0], "{failure:?}");
}

#[test]
fn many_unknown_writes_in_flight_still_pass_fast() {
    // 300 unknown writes pending across 3000 acknowledged ones, a third of them taking effect;
    // the final read sees one of the unknown ones.
    let mut b = Build::new();
    let mut version = 0;
    let mut t = 0;
    for k in 0..3000u64 {
        if k % 10 == 0 {
            let value = 1_000_000 + k;
            b.write_unknown(2, value, t);
            if k % 30 == 0 {
                version += 1;
            }
        }
        version += 1;
        b.write(1, k + 1, (t + 1, t + 5), version);
        t += 10;
    }
    let value = 1_000_000 + 2990;
    b.write_unknown(3, value, t);
    b.final_read(t + 100, value, version + 1);
    let started = std::time::Instant::now();
    assert_linearizable(&b);
    println!("3,301 operations checked in {:?}", started.elapsed());
}

#[test]
fn a_stale_read_passes_unless_it_breaks_the_session_promises() {
    // Client 2 reads the older state after client 1's second write completed: stale, allowed.
    let mut b = Build::new();
    b.write(1, 1, (0, 10), 1);
    b.write(1, 2, (20, 30), 2);
    b.read(2, (40, 50), 1, 1);
    b.final_read(60, 2, 2);
    let report = b.check();
    assert!(report.is_ok(), "{}", report.describe(&b.history));

    // Client 1 reads the older state after its own write: read-your-writes broken.
    let mut b = Build::new();
    b.write(1, 1, (0, 10), 1);
    b.write(1, 2, (20, 30), 2);
    let stale = b.read(1, (40, 50), 1, 1);
    b.final_read(60, 2, 2);
    let report = b.check();
    assert!(report.writes_ok(), "reads are not part of the write check");
    assert_eq!(
        report.read_anomalies.len(),
        1,
        "{:?}",
        report.read_anomalies
    );
    assert_eq!(report.read_anomalies[0].kind, AnomalyKind::ReadYourWrites);
    assert_eq!(report.read_anomalies[0].op, stale);
    assert_eq!(report.read_anomalies[0].earlier, Some(1));

    // Client 2 saw version 2, then version 1: not monotonic.
    let mut b = Build::new();
    b.write(1, 1, (0, 10), 1);
    b.write(1, 2, (20, 30), 2);
    let newer = b.read(2, (40, 50), 2, 2);
    let older = b.read(2, (60, 70), 1, 1);
    b.final_read(80, 2, 2);
    let report = b.check();
    assert!(report.writes_ok());
    assert_eq!(
        report.read_anomalies.len(),
        1,
        "{:?}",
        report.read_anomalies
    );
    assert_eq!(report.read_anomalies[0].kind, AnomalyKind::NonMonotonic);
    assert_eq!(
        (
            report.read_anomalies[0].op,
            report.read_anomalies[0].earlier
        ),
        (older, Some(newer))
    );

    // Another session going back is not this session's business.
    let mut b = Build::new();
    b.write(1, 1, (0, 10), 1);
    b.write(1, 2, (20, 30), 2);
    b.read(2, (40, 50), 2, 2);
    b.read(3, (60, 70), 1, 1);
    b.final_read(80, 2, 2);
    assert!(b.check().is_ok());

    // A read that overlaps the session's own write may or may not see it.
    let mut b = Build::new();
    b.write(1, 1, (0, 10), 1);
    b.read(1, (5, 15), 0, 0);
    b.final_read(20, 1, 1);
    assert!(b.check().is_ok());
}

#[test]
fn reads_of_states_that_never_existed_are_reported() {
    let mut b = Build::new();
    b.write(1, 1, (0, 10), 1);
    b.write_unknown(1, 5, 12);
    b.write(1, 2, (20, 30), 2);
    let never_written = b.read(2, (40, 50), 77, 1);
    let wrong_version = b.read(3, (40, 50), 1, 2);
    let future = b.read(4, (0, 5), 2, 2);
    // The unknown write of 5 did not produce version 2: write 2 holds it.
    let taken = b.read(5, (40, 50), 5, 2);
    let before_start = b.read(6, (40, 50), 3, 0);
    // Unknown write 5 may well be at version 3, which nobody else holds.
    b.read(7, (40, 50), 5, 3);
    let missing = b.op(
        R,
        8,
        Call::Read,
        (40, 50),
        Outcome::Fail {
            error: "NoNode".into(),
        },
    );
    b.final_read(60, 5, 3);
    let report = b.check();
    assert!(report.writes_ok(), "{}", report.describe(&b.history));
    let found: Vec<(u64, AnomalyKind)> = report
        .read_anomalies
        .iter()
        .map(|a| (a.op, a.kind))
        .collect();
    use AnomalyKind::{Missing, Phantom};
    assert_eq!(
        found,
        vec![
            (never_written, Phantom),
            (wrong_version, Phantom),
            (future, Phantom),
            (taken, Phantom),
            (before_start, Phantom),
            (missing, Missing),
        ],
        "{}",
        report.describe(&b.history)
    );
}

#[test]
fn overlapping_operations_where_only_one_order_works() {
    // A long write must fall between a short write and a CAS that expects its version.
    let mut b = Build::new();
    b.write(1, 1, (0, 100), 2);
    b.write(2, 2, (10, 20), 1);
    b.cas(3, 2, 3, (30, 40), Some(3));
    b.final_read(200, 3, 3);
    assert_linearizable(&b);

    // The same versions with the long write over before the short one began: impossible.
    let mut b = Build::new();
    b.write(1, 1, (0, 5), 2);
    b.write(2, 2, (10, 20), 1);
    b.cas(3, 2, 3, (30, 40), Some(3));
    b.final_read(200, 3, 3);
    // From the known initial state, the long write's version 2 is already impossible when it
    // completes: nothing could have made version 1 by then.
    let failure = assert_violation(&b);
    assert_eq!((failure.essential, failure.to), (vec![0], 5));

    // Operations that touch (one completes when the other starts) count as concurrent.
    let touching = Build::two_writes([(0, 10), (10, 20)], [2, 1], (1, 2));
    assert_linearizable(&touching);
}

#[test]
fn the_final_state_must_be_reachable() {
    assert_violation(&Build::one_write_then_final_read(12345, 1));
    assert_violation(&Build::one_write_then_final_read(0, 0));
    assert_linearizable(&Build::one_write_then_final_read(1, 1));

    // No write at all: the register must still hold its initial state.
    let mut b = Build::new();
    b.final_read(20, 0, 0);
    assert_linearizable(&b);
    let mut b = Build::new();
    b.write_unknown(1, 4, 0);
    b.final_read(20, 4, 1);
    assert_linearizable(&b);
}

#[test]
fn registers_are_checked_independently() {
    let mut b = Build::new();
    b.history.register("/s", 10, 3);
    b.write(1, 1, (0, 10), 1);
    b.final_read(20, 1, 1);
    b.op("/s", 1, Call::Write { value: 11 }, (0, 10), ok(4));
    b.op("/s", 2, Call::Write { value: 12 }, (5, 15), ok(5));
    b.op("/s", 99, Call::FinalRead, (30, 31), read_ok(11, 4));
    let report = b.check();
    let failing: Vec<&str> = report.failures().map(|f| f.key.as_str()).collect();
    assert_eq!(failing, vec!["/s"]);
    assert_eq!(report.keys.len(), 2);
}

#[test]
fn histories_round_trip_through_json_lines() {
    let generated = generate(&Workload {
        ops: 300,
        unknown: 0.1,
        ..Workload::default()
    });
    let mut bytes = Vec::new();
    generated.history.write_jsonl(&mut bytes).unwrap();
    let back = History::read_jsonl(&bytes[..]).unwrap();
    assert_eq!(back, generated.history);
    assert_eq!(
        String::from_utf8(bytes).unwrap().lines().count(),
        generated.history.ops.len() + generated.history.initial.len()
    );

    // The format documented in history.rs.
    let doc = r#"
{"record":"register","key":"/lin/r0","value":0,"version":0}
{"record":"op","id":0,"client":1,"session":1,"key":"/lin/r0","call":{"f":"write","value":7},"invoke":1200,"complete":3400,"outcome":{"type":"ok","version":1}}
{"record":"op","id":1,"client":2,"session":2,"key":"/lin/r0","call":{"f":"cas","expected_version":0,"value":8},"invoke":1300,"complete":3900,"outcome":{"type":"fail","error":"BadVersion"}}
{"record":"op","id":2,"client":3,"session":3,"key":"/lin/r0","call":{"f":"read"},"invoke":5000,"complete":5100,"outcome":{"type":"ok","version":1,"value":7}}
{"record":"op","id":3,"client":0,"session":9,"key":"/lin/r0","call":{"f":"final_read"},"invoke":90000,"complete":90200,"outcome":{"type":"ok","version":1,"value":7}}
"#;
    let history = History::read_jsonl(doc.as_bytes()).unwrap();
    assert_eq!(history.ops.len(), 4);
    assert_eq!(
        history.ops[1].call,
        Call::Cas {
            expected_version: 0,
            value: 8
        }
    );
    assert!(check(&history).unwrap().is_ok());
    let error = History::read_jsonl(&b"{\"record\":\"op\"}\n"[..]).unwrap_err();
    assert!(error.to_string().contains("line 1"), "{error}");
}

#[test]
fn the_recorder_keeps_operations_whose_answer_never_came() {
    let initial = RegisterState {
        value: 0,
        version: 0,
    };
    let recorder = Recorder::new(&[(R, initial)]);
    let write = recorder.invoke(1, 1, R, Call::Write { value: 1 });
    write.complete(ok(1));
    let lost = recorder.invoke(2, 2, R, Call::Write { value: 2 });
    drop(lost); // a cancelled future: no answer
    let read = recorder.invoke(1, 1, R, Call::FinalRead);
    read.complete(read_ok(2, 2));
    let history = recorder.finish();
    assert_eq!(history.ops.len(), 3);
    assert!(matches!(history.ops[1].outcome, Outcome::Unknown { .. }));
    assert!(check(&history).unwrap().is_ok());
}

#[test]
fn invalid_histories_are_rejected() {
    let mut b = Build::new();
    b.write(1, 1, (0, 10), 1);
    b.final_read(5, 1, 1);
    let invalid = check(&b.history).unwrap_err();
    assert!(
        invalid.to_string().contains("final read must start after"),
        "{invalid}"
    );

    let mut b = Build::new();
    b.op("/undeclared", 1, Call::Write { value: 1 }, (0, 10), ok(1));
    b.op(
        R,
        1,
        Call::Cas {
            expected_version: -1,
            value: 2,
        },
        (0, 10),
        ok(1),
    );
    b.op(R, 1, Call::Read, (0, 10), ok(1));
    b.op(R, 1, Call::Write { value: 3 }, (10, 5), ok(1));
    let invalid = check(&b.history).unwrap_err();
    assert_eq!(invalid.0.len(), 4, "{invalid}");

    let failed = verify(&b.history, "invalid").expect_err("invalid");
    assert!(failed.report.is_none());
    std::fs::remove_file(&failed.path).unwrap();
}

#[test]
fn generated_histories_of_a_correct_register_always_pass() {
    let mut rng = Rng::new(7);
    let mut total = 0;
    for seed in 0..300 {
        let workload = Workload {
            seed,
            ops: 10 + rng.below(400) as usize,
            clients: 1 + rng.below(8) as u32,
            keys: 1 + rng.below(3) as usize,
            reads: [0.0, 0.3, 0.6][rng.below(3) as usize],
            cas: [0.0, 0.5, 1.0][rng.below(3) as usize],
            unknown: [0.0, 0.01, 0.05, 0.3][rng.below(4) as usize],
            stale: [0.0, 0.5][rng.below(2) as usize],
            latency: 1 + rng.below(5_000),
        };
        let generated = generate(&workload);
        total += generated.history.ops.len();
        match verify(&generated.history, "generated") {
            Ok(_) => {}
            Err(failed) => panic!("{workload:?}: {failed}"),
        }
    }
    println!("{total} generated operations passed");

    // And one large history.
    let generated = generate(&Workload {
        seed: 42,
        ops: 20_000,
        clients: 10,
        keys: 4,
        unknown: 0.02,
        ..Workload::default()
    });
    let report = verify(&generated.history, "generated-large").unwrap_or_else(|f| panic!("{f}"));
    println!(
        "20,000 operations: writes checked in {:?}, reads in {:?}",
        report.writes_elapsed, report.reads_elapsed
    );
}

/// A brute-force linearizability check of one register's writes: every order of the
/// operations that respects real time, each unknown one in or out. Independent of the
/// checker's code, for small histories. `start` None: any state.
fn brute_force(ops: &[BruteOp], start: Option<(u64, i64)>) -> bool {
    fn apply((value, version): (u64, i64), op: &BruteOp) -> Option<(u64, i64)> {
        match op.call {
            Call::Write { value: v } => match op.returned {
                Some(r) if r != version + 1 => None,
                _ => Some((v, version + 1)),
            },
            Call::Cas {
                expected_version,
                value: v,
            } => {
                let expected = expected_version as i64;
                if version != expected || op.returned.is_some_and(|r| r != expected + 1) {
                    None
                } else {
                    Some((v, expected + 1))
                }
            }
            Call::FinalRead => (op.read == Some((value, version))).then_some((value, version)),
            Call::Read => unreachable!(),
        }
    }
    fn search(ops: &[BruteOp], done: &mut Vec<bool>, state: (u64, i64)) -> bool {
        if ops
            .iter()
            .zip(done.iter())
            .all(|(op, &d)| d || op.complete.is_none())
        {
            return true;
        }
        for i in 0..ops.len() {
            if done[i] {
                continue;
            }
            let blocked = (0..ops.len())
                .any(|j| !done[j] && j != i && ops[j].complete.is_some_and(|c| c < ops[i].invoke));
            if blocked {
                continue;
            }
            if let Some(next) = apply(state, &ops[i]) {
                done[i] = true;
                if search(ops, done, next) {
                    return true;
                }
                done[i] = false;
            }
        }
        false
    }
    let mut done = vec![false; ops.len()];
    match start {
        Some(state) => search(ops, &mut done, state),
        None => {
            // Any start state: the value matters only to a read seeing it, the version only
            // within the range the operations mention.
            let fresh = u64::MAX;
            let mut values: Vec<u64> = ops.iter().filter_map(|op| op.read.map(|r| r.0)).collect();
            values.push(fresh);
            let versions: Vec<i64> = ops
                .iter()
                .filter_map(|op| match op.call {
                    Call::Cas {
                        expected_version, ..
                    } => Some(expected_version as i64),
                    _ => op.returned.or(op.read.map(|r| r.1)),
                })
                .collect();
            let (lo, hi) = match (versions.iter().min(), versions.iter().max()) {
                (Some(&lo), Some(&hi)) => (lo - ops.len() as i64 - 1, hi + 1),
                _ => (0, 0),
            };
            values.iter().any(|&value| {
                (lo..=hi).any(|version| search(ops, &mut vec![false; ops.len()], (value, version)))
            })
        }
    }
}

#[derive(Clone, Debug)]
struct BruteOp {
    id: u64,
    call: Call,
    returned: Option<i64>,
    read: Option<(u64, i64)>,
    invoke: u64,
    complete: Option<u64>,
}

/// The write-check operations of `key`, as the brute force sees them.
fn brute_ops(history: &History, key: &str) -> Vec<BruteOp> {
    history
        .ops_on(key)
        .into_iter()
        .filter_map(|op| {
            let (returned, read, complete) = match (&op.call, &op.outcome) {
                (Call::Read, _) | (_, Outcome::Fail { .. }) => return None,
                (Call::FinalRead, Outcome::Ok { version, value }) => (
                    None,
                    Some((value.unwrap(), *version as i64)),
                    Some(op.complete),
                ),
                (Call::FinalRead, _) => return None,
                (_, Outcome::Ok { version, .. }) => {
                    (Some(*version as i64), None, Some(op.complete))
                }
                (_, Outcome::Unknown { .. }) => (None, None, None),
            };
            Some(BruteOp {
                id: op.id,
                call: op.call,
                returned,
                read,
                invoke: op.invoke,
                complete,
            })
        })
        .collect()
}

/// The window of `failure` as the brute force sees it: what `KeyFailure` documents.
fn window_ops(ops: &[BruteOp], failure: &KeyFailure) -> Vec<BruteOp> {
    let essential: HashSet<u64> = failure.essential.iter().copied().collect();
    let mut out = Vec::new();
    for op in ops {
        if op.invoke > failure.to {
            continue;
        }
        if let (Some(from), Some(complete)) = (failure.from, op.complete)
            && complete < from
        {
            continue;
        }
        if op.complete.is_some() && essential.contains(&op.id) {
            out.push(op.clone());
        } else if op.call != Call::FinalRead {
            out.push(BruteOp {
                returned: None,
                complete: None,
                ..op.clone()
            });
        }
    }
    out
}

/// Random small changes that may break a correct history.
fn mutate(history: &mut History, rng: &mut Rng) {
    let n = history.ops.len();
    let op = &mut history.ops[rng.below(n as u64) as usize];
    let delta = if rng.chance(0.5) { 1 } else { -1 };
    match (&mut op.outcome, rng.below(4)) {
        (Outcome::Ok { version, .. }, 0 | 1) => *version += delta,
        (
            Outcome::Ok {
                value: Some(value), ..
            },
            2,
        ) => *value = rng.below(6),
        (Outcome::Ok { .. }, _) if op.call != Call::FinalRead => op.outcome = unknown(),
        (Outcome::Unknown { .. }, _) => op.outcome = ok(rng.below(6) as Version),
        (Outcome::Fail { .. }, _) => op.outcome = ok(rng.below(6) as Version),
        _ => {}
    }
    if op.call != Call::FinalRead && rng.chance(0.3) {
        let length = op.complete.saturating_sub(op.invoke);
        op.invoke = rng.below(op.invoke + 1);
        op.complete = op.invoke + rng.below(length + 1);
    }
}

/// `ZOOHERD_LIN_CASES` (default 3000) small histories, and `ZOOHERD_LIN_SEED` to start from.
#[test]
fn the_checker_agrees_with_brute_force_on_small_histories() {
    let cases = support::env_list("ZOOHERD_LIN_CASES", &[3000])[0] as u64;
    let first = support::env_list("ZOOHERD_LIN_SEED", &[0])[0] as u64;
    let mut rng = Rng::new(2024 + first);
    let (mut good, mut bad, mut windows) = (0, 0, 0);
    for seed in first..first + cases {
        let mut history = generate(&Workload {
            seed,
            ops: 2 + rng.below(7) as usize,
            clients: 2 + rng.below(3) as u32,
            keys: 1,
            reads: 0.0,
            cas: 0.5,
            unknown: 0.3,
            stale: 0.0,
            latency: 100,
        })
        .history;
        // Small values, so that mutations collide with real ones.
        for op in &mut history.ops {
            match &mut op.call {
                Call::Write { value } | Call::Cas { value, .. } => *value %= 6,
                _ => {}
            }
            if let Outcome::Ok {
                value: Some(value), ..
            } = &mut op.outcome
            {
                *value %= 6;
            }
        }
        for state in history.initial.values_mut() {
            state.value %= 6;
        }
        for _ in 0..rng.below(3) {
            mutate(&mut history, &mut rng);
        }
        let Ok(report) = check(&history) else {
            continue; // a mutation made it invalid (a final read no longer last)
        };
        let key = history.keys()[0].to_string();
        let initial = history.initial[&key];
        let ops = brute_ops(&history, &key);
        let expected = brute_force(&ops, Some((initial.value, initial.version as i64)));
        let listing = || {
            let lines: Vec<String> = history.ops.iter().map(Op::describe).collect();
            format!("seed {seed}:\n{}", lines.join("\n"))
        };
        assert_eq!(
            report.writes_ok(),
            expected,
            "checker and brute force disagree on {}",
            listing()
        );
        if expected {
            good += 1;
            continue;
        }
        bad += 1;
        // The reported window fails on its own, and each essential operation is needed.
        let failure = report.failures().next().unwrap();
        let start = match failure.from {
            None => Some((initial.value, initial.version as i64)),
            Some(_) => None,
        };
        let window = window_ops(&ops, failure);
        let context = || format!("{failure:?} in {}", listing());
        assert!(!brute_force(&window, start), "window passes: {}", context());
        if failure.minimal {
            for &id in &failure.essential {
                let fewer = KeyFailure {
                    essential: failure
                        .essential
                        .iter()
                        .copied()
                        .filter(|&e| e != id)
                        .collect(),
                    ..failure.clone()
                };
                assert!(
                    brute_force(&window_ops(&ops, &fewer), start),
                    "#{id} is not essential: {}",
                    context()
                );
            }
        }
        windows += 1;
    }
    println!("{good} linearizable, {bad} not ({windows} windows checked)");
    assert!(
        good > cases / 6 && bad > cases / 6,
        "{good} good, {bad} bad: mutate more evenly"
    );
}
