//! Histories of a correct register, for the checker's tests and benchmark.
//!
//! A simulation runs `clients` sequential clients against one true register per key. Each
//! operation takes effect at one instant (its linearization point) between its invocation and
//! its completion, which are drawn at random, with a long tail, so that operations overlap
//! freely. Reads answer from a state the session may see (the current one, or a stale one no
//! older than what the session saw), as a ZooKeeper follower would. Some answers are lost
//! (Unknown): half of those operations never take effect, the other half take effect, possibly
//! after the client gave up. The final reads see the true final states. Every history it
//! makes is therefore linearizable and passes the read checks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::history::{Call, History, Op, Outcome, RegisterState, Version};

/// SplitMix64: small, fast, and reproducible from a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Workload {
    pub seed: u64,
    /// Operations, not counting the final reads.
    pub ops: usize,
    pub clients: u32,
    pub keys: usize,
    /// Share of reads; of the rest, `cas` are CASes and the others blind writes.
    pub reads: f64,
    pub cas: f64,
    /// Share of operations whose answer is lost.
    pub unknown: f64,
    /// Share of reads answered from a stale state.
    pub stale: f64,
    /// Typical latency, in nanoseconds.
    pub latency: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            seed: 1,
            ops: 1000,
            clients: 5,
            keys: 3,
            reads: 0.3,
            cas: 0.4,
            unknown: 0.01,
            stale: 0.3,
            latency: 2_000_000,
        }
    }
}

/// A generated history and what really happened: each register's successive states.
pub struct Generated {
    pub history: History,
    pub truth: BTreeMap<String, Vec<RegisterState>>,
}

struct Flight {
    op: Op,
    key: usize,
    unknown: bool,
    result: Option<Outcome>,
}

struct Client {
    session: u64,
    /// Per key, the highest version this session saw (reads and acknowledged writes).
    seen: Vec<Option<Version>>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Invoke(u32),
    TakeEffect(usize),
    Complete(usize),
}

/// Generates a history of a correct register, following `w`.
pub fn generate(w: &Workload) -> Generated {
    let mut rng = Rng::new(w.seed);
    let mut next_value = 1u64;
    let names: Vec<String> = (0..w.keys).map(|k| format!("/lin/r{k}")).collect();
    let mut log: Vec<Vec<RegisterState>> = (0..w.keys)
        .map(|_| {
            let state = RegisterState {
                value: next_value,
                version: rng.below(3) as Version,
            };
            next_value += 1;
            vec![state]
        })
        .collect();
    let mut history = History::new();
    for (name, states) in names.iter().zip(&log) {
        history.register(name, states[0].value, states[0].version);
    }

    let mut clients: Vec<Client> = (0..w.clients)
        .map(|c| Client {
            session: c as u64,
            seen: vec![None; w.keys],
        })
        .collect();
    let mut next_session = w.clients as u64;
    let mut flights: Vec<Flight> = Vec::new();
    let mut events = BinaryHeap::new();
    let mut seq = 0u64;
    let mut schedule = |events: &mut BinaryHeap<_>, at: u64, event: Event| {
        seq += 1;
        events.push(Reverse((at, seq, event)));
    };
    for c in 0..w.clients {
        let at = rng.below(w.latency.max(1));
        schedule(&mut events, at, Event::Invoke(c));
    }
    let mut end = 0;
    while let Some(Reverse((now, _, event))) = events.pop() {
        end = end.max(now);
        match event {
            Event::Invoke(c) => {
                if flights.len() >= w.ops {
                    continue;
                }
                let key = rng.below(w.keys as u64) as usize;
                let current = *log[key].last().unwrap();
                let call = if rng.chance(w.reads) {
                    Call::Read
                } else if rng.chance(w.cas) {
                    // Mostly a CAS on what a fresh read would show; else on what the session saw.
                    let expected = match clients[c as usize].seen[key] {
                        Some(seen) if rng.chance(0.3) => seen,
                        _ => current.version,
                    };
                    next_value += 1;
                    Call::Cas {
                        expected_version: expected,
                        value: next_value,
                    }
                } else {
                    next_value += 1;
                    Call::Write { value: next_value }
                };
                let mut latency = 1 + rng.below(w.latency.max(1));
                if rng.chance(0.03) {
                    latency *= 20;
                }
                let unknown = rng.chance(w.unknown);
                let id = flights.len();
                let (effect_at, complete) = if unknown {
                    // Takes effect (perhaps after the client gave up) or never.
                    let effect_at = (rng.chance(0.5) && call != Call::Read)
                        .then(|| now + 1 + rng.below(3 * latency));
                    (effect_at, now + latency)
                } else {
                    let effect_at = now + rng.below(latency);
                    (Some(effect_at), effect_at + 1 + rng.below(latency))
                };
                flights.push(Flight {
                    op: Op {
                        id: id as u64,
                        client: c,
                        session: clients[c as usize].session,
                        key: names[key].clone(),
                        call,
                        invoke: now,
                        complete,
                        outcome: Outcome::Unknown {
                            error: "ConnectionLoss".into(),
                        },
                    },
                    key,
                    unknown,
                    result: None,
                });
                if let Some(at) = effect_at {
                    schedule(&mut events, at, Event::TakeEffect(id));
                }
                schedule(&mut events, complete, Event::Complete(id));
            }
            Event::TakeEffect(id) => {
                let flight = &mut flights[id];
                let states = &mut log[flight.key];
                let current = *states.last().unwrap();
                flight.result = Some(match flight.op.call {
                    Call::Write { value } | Call::Cas { value, .. } => {
                        let applies = match flight.op.call {
                            Call::Cas {
                                expected_version, ..
                            } => current.version == expected_version,
                            _ => true,
                        };
                        if applies {
                            let version = current.version + 1;
                            states.push(RegisterState { value, version });
                            Outcome::Ok {
                                version,
                                value: None,
                            }
                        } else {
                            Outcome::Fail {
                                error: "BadVersion".into(),
                            }
                        }
                    }
                    Call::Read | Call::FinalRead => {
                        // A state no older than what the session saw: maybe stale.
                        let client = &clients[flight.op.client as usize];
                        let base = states[0].version;
                        let floor = client.seen[flight.key].unwrap_or(base).max(base);
                        let state = if rng.chance(w.stale) {
                            let lag = rng.below((current.version - floor) as u64 + 1) as i32;
                            states[(current.version - lag - base) as usize]
                        } else {
                            current
                        };
                        Outcome::Ok {
                            version: state.version,
                            value: Some(state.value),
                        }
                    }
                });
            }
            Event::Complete(id) => {
                let flight = &mut flights[id];
                let c = flight.op.client as usize;
                if flight.unknown {
                    // The connection was lost: sometimes the session with it.
                    if rng.chance(0.5) {
                        clients[c].session = next_session;
                        clients[c].seen = vec![None; w.keys];
                        next_session += 1;
                    }
                } else {
                    let outcome = flight.result.take().expect("took effect before completing");
                    if let Outcome::Ok { version, .. } = outcome {
                        let seen = &mut clients[c].seen[flight.key];
                        *seen = Some(seen.map_or(version, |s| s.max(version)));
                    }
                    flight.op.outcome = outcome;
                }
                let think = rng.below(w.latency / 4 + 1);
                schedule(&mut events, now + think, Event::Invoke(c as u32));
            }
        }
    }
    history.ops = flights.into_iter().map(|f| f.op).collect();
    // The final reads, once everything is over.
    for (k, name) in names.iter().enumerate() {
        let state = *log[k].last().unwrap();
        let invoke = end + 1_000 + 10 * k as u64;
        history.ops.push(Op {
            id: history.ops.len() as u64,
            client: w.clients,
            session: next_session,
            key: name.clone(),
            call: Call::FinalRead,
            invoke,
            complete: invoke + 5,
            outcome: Outcome::Ok {
                version: state.version,
                value: Some(state.value),
            },
        });
    }
    let truth = names.into_iter().zip(log).collect();
    Generated { history, truth }
}
