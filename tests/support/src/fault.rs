//! The fault-injection tier on real ZooKeeper: a workload of concurrent clients on a few
//! registers, a nemesis that kills, stops and freezes members of a local ensemble
//! ([`super::zookeeper::ZkEnsemble`]), and the history they leave for the linearizability
//! checker ([`super::linearizability`]).
//!
//! - **Workload.** [`Profile::clients`] workers, each with its own ZooKeeper session through
//!   the connect string of every server (as real clients connect), on [`Profile::registers`]
//!   znodes created before the run with value 0 at version 0: reads, blind writes (`setData`
//!   with version -1) and compare-and-set writes (`setData` with the version the worker last
//!   saw), every one recorded with its invocation and completion times. A write's value is
//!   unique (the worker's id times 10^9 plus a counter). Only BadVersion and NoNode are
//!   definite failures; connection loss, timeouts and expired sessions are Unknown, and a
//!   worker whose session is gone (expired, closed, or an answer that never came) goes on in a
//!   new session under a new number.
//! - **Nemesis.** Faults drawn from [`Profile::seed`] ([`seed`]: `ZOOHERD_FAULT_SEED` replays
//!   one): SIGKILL of the leader or of a follower then a restart, SIGSTOP of a member for a
//!   few seconds then SIGCONT, SIGTERM then a restart, a network partition that cuts the
//!   leader or a follower off from its peers for a few seconds while its clients stay
//!   connected to it (each member runs in its own network namespace:
//!   [`super::member_networks`]), and on 5 servers or more two of these overlapping on two
//!   members. Never more members down than the ensemble tolerates, except
//!   one explicit [`FaultKind::QuorumLoss`] midway (a quorum of members, the leader among
//!   them, SIGKILLed and restarted): the ensemble must come back, and every acknowledged
//!   write with it. Each fault ends when every member serves again; the next starts after a
//!   quiet second or two. The end-to-end tier partitions pods of a real ensemble the same
//!   way (tests/e2e/partition.rs) and runs [`CheckedWorkload`] through it.
//! - **Check.** After the last fault and every worker stopped, every member serving, one
//!   final read of each register (`sync`, then `getData`, retried until it succeeds) that the
//!   checker treats as linearizable: it must account for every acknowledged write.
//!
//! [`run`] returns the [`Run`]: the history, the faults with their windows, and
//! [`Run::table`], the figures per kind of fault. The caller checks the history with
//! [`super::linearizability::verify`]. [`Workload`] is the workload alone, and
//! [`CheckedWorkload`] the workload with its check, for tests whose disruptions come from the
//! operator or the cluster (tests/operator_real_zookeeper.rs, the end-to-end partition);
//! [`summary`] prints a history in one line.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use super::linearizability::generate::Rng;
use super::linearizability::history::{Call, History, Op, Outcome, Recorder, RegisterState};
use super::linearizability::verify;
use super::zookeeper::{ZkEnsemble, quorum_size};

/// Replays a run's faults and workload choices (the timings are the machine's).
pub const SEED_VAR: &str = "ZOOHERD_FAULT_SEED";
/// How long the nemesis injects faults, in seconds (the long profile: 1800).
pub const SECONDS_VAR: &str = "ZOOHERD_FAULT_SECONDS";

/// Starting the JVMs of an ensemble on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// From a fault's end (members thawed or restarted) to every member serving again.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// A client's session timeout (ZooKeeper bounds it to 2..20 ticks of 500 ms).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An answer that takes longer is given up on (Unknown), and its session with it.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// The final reads must succeed within this.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Workers go on this long after the last fault, so that the history ends quietly.
const QUIET_END: Duration = Duration::from_secs(3);

/// What a run does.
#[derive(Clone, Debug)]
pub struct Profile {
    pub servers: usize,
    pub clients: u32,
    pub registers: usize,
    /// How long faults are injected (the last one may end later).
    pub fault_time: Duration,
    pub seed: u64,
    /// Whether one fault midway costs the quorum.
    pub quorum_loss: bool,
}

impl Profile {
    /// 5 clients on 3 registers of a `servers`-server ensemble, one quorum loss, faults for
    /// `ZOOHERD_FAULT_SECONDS` or `default_seconds`, the seed from [`seed`].
    pub fn new(servers: usize, default_seconds: u64) -> Profile {
        let seconds = match std::env::var(SECONDS_VAR) {
            Ok(s) if !s.trim().is_empty() => s
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{SECONDS_VAR}: not a number of seconds: {s:?}")),
            _ => default_seconds,
        };
        Profile {
            servers,
            clients: 5,
            registers: 3,
            fault_time: Duration::from_secs(seconds),
            seed: seed(),
            quorum_loss: true,
        }
    }
}

/// `ZOOHERD_FAULT_SEED`, or a fresh random seed.
pub fn seed() -> u64 {
    match std::env::var(SEED_VAR) {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}: not a number: {s:?}")),
        _ => getrandom::u64().expect("the operating system's random numbers"),
    }
}

/// The kinds of fault the nemesis injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL of the leader's JVM, a restart a few seconds later.
    KillLeader,
    /// SIGKILL of a follower's JVM, a restart a few seconds later.
    KillFollower,
    /// SIGSTOP of any member (the leader too) for 2–6 s, then SIGCONT.
    Freeze,
    /// SIGTERM of any member (it shuts down), a restart a few seconds later.
    StopRestart,
    /// The leader cut off from its peers (iptables in its network namespace) for 2–6 s, its
    /// clients still connected to it, then healed.
    PartitionLeader,
    /// A follower cut off from its peers for 2–6 s, then healed.
    PartitionFollower,
    /// Any member (the leader too) cut off from its clients for 3–8 s, its peers still
    /// reaching it: the clients' connections hang (packets dropped, not reset) until their own
    /// timeout moves their sessions to another server, with writes in flight.
    CutClients,
    /// Two of the above on two members, overlapping (5 servers or more).
    TwoOverlapping,
    /// A quorum of members, the leader among them, SIGKILLed, restarted a few seconds later.
    QuorumLoss,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::Freeze,
        FaultKind::StopRestart,
        FaultKind::PartitionLeader,
        FaultKind::PartitionFollower,
        FaultKind::CutClients,
        FaultKind::TwoOverlapping,
        FaultKind::QuorumLoss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill -9 leader",
            FaultKind::KillFollower => "kill -9 follower",
            FaultKind::Freeze => "freeze (SIGSTOP)",
            FaultKind::StopRestart => "stop (SIGTERM)",
            FaultKind::PartitionLeader => "partition leader",
            FaultKind::PartitionFollower => "partition follower",
            FaultKind::CutClients => "clients cut off",
            FaultKind::TwoOverlapping => "two overlapping",
            FaultKind::QuorumLoss => "quorum loss",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One injected fault.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// What was done, to whom.
    pub what: String,
    /// When it began (ns on the history's clock).
    pub start: u64,
    /// When every member served again.
    pub end: u64,
}

/// A finished run.
pub struct Run {
    pub profile: Profile,
    /// The name for [`super::linearizability::verify`] (the history file's prefix).
    pub name: String,
    pub history: History,
    pub faults: Vec<Fault>,
    /// Wall time of the run, from the ensemble's start to the final reads.
    pub elapsed: Duration,
}

/// A primitive blow to one member, and how it is healed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blow {
    Kill,
    Freeze,
    Stop,
    /// Cut off from every other member, both ways.
    Partition,
    /// Cut off from its clients.
    CutClients,
}

impl Blow {
    const ALL: [Blow; 5] = [
        Blow::Kill,
        Blow::Freeze,
        Blow::Stop,
        Blow::Partition,
        Blow::CutClients,
    ];

    fn verb(self) -> &'static str {
        match self {
            Blow::Kill => "kill -9",
            Blow::Freeze => "freeze",
            Blow::Stop => "stop",
            Blow::Partition => "partition",
            Blow::CutClients => "cut the clients of",
        }
    }

    /// How long a member stays down (ms): a few seconds, past the 2.5 s sync limit; a cut from
    /// the clients past their connection timeout (zookeeper-client: 2/5 of the 6 s session
    /// timeout), so that they give the connection up and move their sessions, and sometimes
    /// past the session timeout itself.
    fn downtime_ms(self) -> (u64, u64) {
        match self {
            Blow::Kill => (1000, 4000),
            Blow::Freeze => (2000, 6000),
            Blow::Stop => (1000, 3000),
            Blow::Partition => (2000, 6000),
            Blow::CutClients => (3000, 8000),
        }
    }
}

/// Strikes member `i` (the helpers block: SIGTERM waits for the JVM to exit).
fn strike(zk: &mut ZkEnsemble, i: usize, blow: Blow) {
    let result = tokio::task::block_in_place(|| match blow {
        Blow::Kill => zk.kill(i),
        Blow::Freeze => zk.freeze(i),
        Blow::Stop => zk.stop(i),
        Blow::Partition => {
            let peers: Vec<usize> = (0..zk.size()).filter(|&p| p != i).collect();
            zk.partition(i, &peers)
        }
        Blow::CutClients => zk.cut_clients(i),
    });
    result.unwrap_or_else(|e| panic!("{} member {i}: {e}", blow.verb()));
}

/// Undoes [`strike`]: SIGCONT, a restart on the member's data directory, or the links back.
fn heal(zk: &mut ZkEnsemble, i: usize, blow: Blow) {
    let result = tokio::task::block_in_place(|| match blow {
        Blow::Freeze => zk.thaw(i),
        Blow::Kill | Blow::Stop => zk.start_member(i),
        Blow::Partition | Blow::CutClients => zk.heal_partition(i),
    });
    result.unwrap_or_else(|e| panic!("healing member {i} after {}: {e}", blow.verb()));
}

/// Sleeps a random time in `min_ms..max_ms`; returns it in seconds.
async fn pause(rng: &mut Rng, min_ms: u64, max_ms: u64) -> f64 {
    let ms = min_ms + rng.below(max_ms - min_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms as f64 / 1000.0
}

fn who(i: usize, leader: usize) -> String {
    if i == leader {
        format!("member {i} (leader)")
    } else {
        format!("member {i}")
    }
}

/// Distinct random members, `count` of them, `first` first if given.
fn pick(rng: &mut Rng, n: usize, count: usize, first: Option<usize>) -> Vec<usize> {
    let mut chosen: Vec<usize> = first.into_iter().collect();
    while chosen.len() < count {
        let i = rng.below(n as u64) as usize;
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen
}

/// Injects one fault of `kind` and heals it; returns what it did.
async fn inject(zk: &mut ZkEnsemble, kind: FaultKind, leader: usize, rng: &mut Rng) -> String {
    let n = zk.size();
    match kind {
        FaultKind::KillLeader
        | FaultKind::KillFollower
        | FaultKind::Freeze
        | FaultKind::StopRestart
        | FaultKind::PartitionLeader
        | FaultKind::PartitionFollower
        | FaultKind::CutClients => {
            let follower = |rng: &mut Rng| (leader + 1 + rng.below(n as u64 - 1) as usize) % n;
            let (blow, i) = match kind {
                FaultKind::KillLeader => (Blow::Kill, leader),
                FaultKind::KillFollower => (Blow::Kill, follower(rng)),
                FaultKind::PartitionLeader => (Blow::Partition, leader),
                FaultKind::PartitionFollower => (Blow::Partition, follower(rng)),
                FaultKind::Freeze => (Blow::Freeze, rng.below(n as u64) as usize),
                FaultKind::CutClients => (Blow::CutClients, rng.below(n as u64) as usize),
                _ => (Blow::Stop, rng.below(n as u64) as usize),
            };
            let (min, max) = blow.downtime_ms();
            strike(zk, i, blow);
            let down = pause(rng, min, max).await;
            heal(zk, i, blow);
            format!("{} {} for {down:.1} s", blow.verb(), who(i, leader))
        }
        FaultKind::TwoOverlapping => {
            let members = pick(rng, n, 2, None);
            let blows = [
                Blow::ALL[rng.below(Blow::ALL.len() as u64) as usize],
                Blow::ALL[rng.below(Blow::ALL.len() as u64) as usize],
            ];
            strike(zk, members[0], blows[0]);
            let lead = pause(rng, 500, 2500).await;
            strike(zk, members[1], blows[1]);
            let both = pause(rng, 1000, 4000).await;
            heal(zk, members[0], blows[0]);
            let tail = pause(rng, 500, 2500).await;
            heal(zk, members[1], blows[1]);
            format!(
                "{} {}, {lead:.1} s later {} {}, both down {both:.1} s, the second healed \
                 {tail:.1} s after the first",
                blows[0].verb(),
                who(members[0], leader),
                blows[1].verb(),
                who(members[1], leader)
            )
        }
        FaultKind::QuorumLoss => {
            let members = pick(rng, n, quorum_size(n), Some(leader));
            for &i in &members {
                strike(zk, i, Blow::Kill);
            }
            let down = pause(rng, 2000, 5000).await;
            for &i in &members {
                heal(zk, i, Blow::Kill);
            }
            let names: Vec<String> = members.iter().map(|&i| who(i, leader)).collect();
            format!("kill -9 {} for {down:.1} s", names.join(", "))
        }
    }
}

/// Injects faults for `profile.fault_time`; returns them.
async fn nemesis(
    zk: &mut ZkEnsemble,
    recorder: &Recorder,
    profile: &Profile,
    rng: &mut Rng,
) -> Vec<Fault> {
    let started = Instant::now();
    let mut kinds = vec![
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::Freeze,
        FaultKind::StopRestart,
        FaultKind::PartitionLeader,
        FaultKind::PartitionFollower,
        FaultKind::CutClients,
    ];
    if zk.size() >= 5 {
        kinds.push(FaultKind::TwoOverlapping);
    }
    let mut quorum_lost = !profile.quorum_loss || zk.size() < 3;
    let mut faults = Vec::new();
    while started.elapsed() < profile.fault_time {
        pause(rng, 1000, 3000).await;
        let leader = zk
            .wait_for_all_serving(RECOVERY_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("before a fault: {e}"));
        let kind = if !quorum_lost && started.elapsed() >= profile.fault_time / 2 {
            quorum_lost = true;
            FaultKind::QuorumLoss
        } else {
            kinds[rng.below(kinds.len() as u64) as usize]
        };
        let start = recorder.now();
        let what = inject(zk, kind, leader, rng).await;
        let healed = recorder.now();
        zk.wait_for_all_serving(RECOVERY_TIMEOUT)
            .await
            .unwrap_or_else(|e| {
                panic!("after {kind} ({what}) the ensemble did not come back: {e}")
            });
        let end = recorder.now();
        println!(
            "[{:>7.1} s] {kind}: {what}; every member serving {:.1} s after the heal",
            start as f64 / 1e9,
            (end - healed) as f64 / 1e9
        );
        faults.push(Fault {
            kind,
            what,
            start,
            end,
        });
    }
    faults
}

/// A SASL DIGEST-MD5 login: user and password.
pub type SaslLogin = (String, String);

/// What the workers share.
struct Shared {
    recorder: Recorder,
    connect_string: String,
    /// How every session logs in (None: anonymously).
    login: Option<SaslLogin>,
    keys: Vec<String>,
    stop: AtomicBool,
    sessions: AtomicU64,
}

async fn connect(connect_string: &str, login: Option<&SaslLogin>) -> Option<zk::Client> {
    let mut connector = zk::Client::connector().with_session_timeout(SESSION_TIMEOUT);
    if let Some((user, password)) = login {
        connector =
            connector.with_sasl(zk::SaslOptions::digest_md5(user.clone(), password.clone()));
    }
    let connecting = connector.connect(connect_string);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(client)) => Some(client),
        _ => None,
    }
}

/// A register's value as written: ASCII decimal. Anything else reads as `u64::MAX`, which no
/// write wrote (the read check reports it as a phantom).
fn parse_value(data: &[u8]) -> u64 {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// What an operation's error means: the outcome, and whether the session is gone.
fn failure(error: &zk::Error) -> (Outcome, bool) {
    match error {
        zk::Error::BadVersion => (
            Outcome::Fail {
                error: "BadVersion".into(),
            },
            false,
        ),
        zk::Error::NoNode => (
            Outcome::Fail {
                error: "NoNode".into(),
            },
            false,
        ),
        other => (
            Outcome::Unknown {
                error: other.to_string(),
            },
            matches!(
                other,
                zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::SessionMoved
            ),
        ),
    }
}

/// One worker: operations until told to stop.
async fn worker(shared: Arc<Shared>, id: u32, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut counter = 0u64;
    let mut versions: Vec<Option<i32>> = vec![None; shared.keys.len()];
    let mut client: Option<(zk::Client, u64)> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some((zk_client, session)) = &client else {
            match connect(&shared.connect_string, shared.login.as_ref()).await {
                Some(c) => client = Some((c, shared.sessions.fetch_add(1, Ordering::Relaxed))),
                None => tokio::time::sleep(Duration::from_millis(250)).await,
            }
            continue;
        };
        let session = *session;
        let k = rng.below(shared.keys.len() as u64) as usize;
        let key = shared.keys[k].as_str();
        let dice = rng.below(100);
        let call = match (dice, versions[k]) {
            (0..40, _) | (70.., None) => Call::Read,
            (40..70, _) => Call::Write {
                value: u64::from(id) * 1_000_000_000 + counter,
            },
            (70.., Some(expected_version)) => Call::Cas {
                expected_version,
                value: u64::from(id) * 1_000_000_000 + counter,
            },
        };
        if call != Call::Read {
            counter += 1;
        }
        let pending = shared.recorder.invoke(id, session, key, call);
        let answer = match call {
            Call::Write { value } | Call::Cas { value, .. } => {
                let expected = match call {
                    Call::Cas {
                        expected_version, ..
                    } => Some(expected_version),
                    _ => None,
                };
                let data = value.to_string();
                tokio::time::timeout(
                    OP_TIMEOUT,
                    zk_client.set_data(key, data.as_bytes(), expected),
                )
                .await
                .map(|r| r.map(|stat| (stat.version, None)))
            }
            _ => tokio::time::timeout(OP_TIMEOUT, zk_client.get_data(key))
                .await
                .map(|r| r.map(|(data, stat)| (stat.version, Some(parse_value(&data))))),
        };
        let (outcome, session_gone, backoff) = match answer {
            Ok(Ok((version, value))) => {
                versions[k] = Some(version);
                (Outcome::Ok { version, value }, false, false)
            }
            Ok(Err(error)) => {
                if error == zk::Error::BadVersion {
                    versions[k] = None;
                }
                let definite = matches!(error, zk::Error::BadVersion | zk::Error::NoNode);
                let (outcome, gone) = failure(&error);
                (outcome, gone, !definite)
            }
            Err(_) => (
                Outcome::Unknown {
                    error: format!("no answer in {} s", OP_TIMEOUT.as_secs()),
                },
                true,
                false,
            ),
        };
        pending.complete(outcome);
        if session_gone {
            client = None;
        } else if backoff {
            // Disconnected: the client reconnects on its own; don't record a storm of failures.
            tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.below(10))).await;
        }
    }
}

/// The final read of `key`: invoked once, `sync` and `getData` retried (on a new session if
/// need be) until both succeed.
async fn final_read(shared: &Shared, key: &str) {
    let session = shared.sessions.fetch_add(1, Ordering::Relaxed);
    let pending = shared.recorder.invoke(0, session, key, Call::FinalRead);
    let started = Instant::now();
    let mut client = None;
    let mut last_error = String::new();
    while started.elapsed() < FINAL_READ_TIMEOUT {
        let Some(c) = &client else {
            client = connect(&shared.connect_string, shared.login.as_ref()).await;
            if client.is_none() {
                last_error = "cannot connect".into();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            continue;
        };
        let read = async {
            c.sync(key).await?;
            c.get_data(key).await
        };
        match tokio::time::timeout(OP_TIMEOUT, read).await {
            Ok(Ok((data, stat))) => {
                pending.complete(Outcome::Ok {
                    version: stat.version,
                    value: Some(parse_value(&data)),
                });
                return;
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = "timed out".into(),
        }
        client = None;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "the final read of {key} did not succeed in {} s: {last_error}",
        FINAL_READ_TIMEOUT.as_secs()
    );
}

/// The workload alone: its workers and the registers they work on. [`run`] puts it under the
/// nemesis; a test whose disruptions come from elsewhere (the operator's rolls) starts one on
/// its own ensemble and checks the history [`Workload::finish`] returns.
pub struct Workload {
    shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Creates `registers` registers (`/fault/r<i>`, value 0 at version 0) through
    /// `connect_string` and starts `clients` workers on them, every session logged in as
    /// `login` (if any); `seed` draws their choices.
    pub async fn start(
        connect_string: &str,
        login: Option<SaslLogin>,
        clients: u32,
        registers: usize,
        seed: u64,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let keys: Vec<String> = (0..registers).map(|r| format!("/fault/r{r}")).collect();
        let client = connect(connect_string, login.as_ref())
            .await
            .expect("a session to create the registers");
        let create = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let parent = std::iter::once(("/fault", ""));
        for (path, data) in parent.chain(keys.iter().map(|k| (k.as_str(), "0"))) {
            let created = client.create(path, data.as_bytes(), &create).await;
            created.unwrap_or_else(|e| panic!("create {path}: {e}"));
        }
        drop(client);
        let initial = RegisterState {
            value: 0,
            version: 0,
        };
        let state: Vec<(&str, RegisterState)> =
            keys.iter().map(|k| (k.as_str(), initial)).collect();
        let shared = Arc::new(Shared {
            recorder: Recorder::new(&state),
            connect_string: connect_string.to_owned(),
            login,
            keys,
            stop: AtomicBool::new(false),
            sessions: AtomicU64::new(1),
        });
        let workers = (1..=clients)
            .map(|id| tokio::spawn(worker(shared.clone(), id, rng.next_u64())))
            .collect();
        Workload { shared, workers }
    }

    /// The history's clock, for recording when faults happen.
    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    /// Stops the workers, then reads every register once more (retried until it succeeds, so
    /// call it once the ensemble is expected to serve); returns the history.
    pub async fn finish(self) -> History {
        self.shared.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.expect("a worker panicked");
        }
        for key in &self.shared.keys {
            final_read(&self.shared, key).await;
        }
        self.shared.recorder.finish()
    }
}

/// Issue 13, operator-driven faults: the workload (three clients, blind writes, compare-and-sets
/// and reads on two registers, each in its own session) run through what the operator does or
/// meets, and its history checked by the linearizability checker: the writes linearizable,
/// every acknowledged write in the final reads, reads monotonic.
pub struct CheckedWorkload {
    workload: Workload,
    name: &'static str,
    seed: u64,
}

impl CheckedWorkload {
    /// Starts the workload through `connect_string`; `name` prefixes its lines and the
    /// history's file.
    pub async fn start(connect_string: &str, name: &'static str) -> Self {
        Self::start_as(connect_string, None, name).await
    }

    /// [`Self::start`], every session logged in as `login` (servers that enforce
    /// authentication refuse the others).
    pub async fn start_as(
        connect_string: &str,
        login: Option<SaslLogin>,
        name: &'static str,
    ) -> Self {
        let seed = seed();
        println!(
            "{name}: workload seed {seed} (replay with {}={seed})",
            SEED_VAR
        );
        let workload = Workload::start(connect_string, login, 3, 2, seed).await;
        CheckedWorkload {
            workload,
            name,
            seed,
        }
    }

    /// The workload's clock (nanoseconds since it started), to mark windows of its history.
    pub fn clock(&self) -> u64 {
        self.workload.recorder().now()
    }

    /// Stops the workload, reads the registers once more and checks the history; panics,
    /// naming the history's file and the seed, if it is not linearizable.
    pub async fn finish(self) {
        self.finish_with_windows(&[]).await;
    }

    /// [`Self::finish`], printing first the longest time without an acknowledged write in each
    /// of `windows` (a name, and its start and end on [`Self::clock`]).
    pub async fn finish_with_windows(self, windows: &[(String, u64, u64)]) {
        let history = self.workload.finish().await;
        let acks = acknowledged_writes(&history);
        for (window, from, to) in windows {
            println!(
                "{}: {window}: longest time without an acknowledged write {:.1} s",
                self.name,
                longest_gap(&acks, *from, *to)
            );
        }
        println!("{}: {}", self.name, summary(&history));
        let report = verify(&history, self.name).unwrap_or_else(|failed| {
            panic!(
                "{}: seed {} ({}={} replays the workload): {failed}",
                self.name, self.seed, SEED_VAR, self.seed
            )
        });
        assert!(report.read_anomalies.is_empty());
    }
}

/// When each acknowledged write completed, in order.
fn acknowledged_writes(history: &History) -> Vec<u64> {
    let mut acks: Vec<u64> = history
        .ops
        .iter()
        .filter(|op| {
            op.call != Call::FinalRead
                && op.is_ok()
                && matches!(op.call, Call::Write { .. } | Call::Cas { .. })
        })
        .map(|op| op.complete)
        .collect();
    acks.sort_unstable();
    acks
}

/// Starts an ensemble, runs the workload under the nemesis, then the final reads; returns the
/// history and the faults. Panics if the ensemble does not start or does not come back.
pub async fn run(profile: Profile) -> Run {
    let started = Instant::now();
    let n = profile.servers;
    println!(
        "fault injection on {n} servers, {} clients, {} registers, {} s of faults: seed {} \
         (replay with {SEED_VAR}={})",
        profile.clients,
        profile.registers,
        profile.fault_time.as_secs(),
        profile.seed,
        profile.seed
    );
    let mut rng = Rng::new(profile.seed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut zk = ZkEnsemble::builder(n)
        .member_networks()
        .start()
        .unwrap_or_else(|e| panic!("start {n} ZooKeeper servers: {e}"));
    zk.wait_for_all_serving(START_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let workload = Workload::start(
        &zk.connect_string(),
        None,
        profile.clients,
        profile.registers,
        rng.next_u64(),
    )
    .await;
    let faults = nemesis(&mut zk, workload.recorder(), &profile, &mut rng).await;
    tokio::time::sleep(QUIET_END).await;
    zk.wait_for_all_serving(RECOVERY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("after the faults: {e}"));
    let history = workload.finish().await;
    Run {
        name: format!("fault-injection-{n}-servers-seed-{}", profile.seed),
        profile,
        history,
        faults,
        elapsed: started.elapsed(),
    }
}

/// One line on a history without faults of its own: its operations by outcome, and the
/// longest time without an acknowledged write.
pub fn summary(history: &History) -> String {
    let mut counts = Counts::default();
    let workload: Vec<&Op> = history
        .ops
        .iter()
        .filter(|op| op.call != Call::FinalRead)
        .collect();
    for op in &workload {
        counts.add(op);
    }
    let acks = acknowledged_writes(history);
    let start = workload.iter().map(|op| op.invoke).min().unwrap_or(0);
    let end = workload.iter().map(|op| op.complete).max().unwrap_or(0);
    format!(
        "{} operations: {} acknowledged ({} writes), {} failed, {} unknown; longest time \
         without an acknowledged write {:.1} s",
        counts.invoked,
        counts.acknowledged,
        counts.acknowledged_writes,
        counts.failed,
        counts.unknown,
        longest_gap(&acks, start, end)
    )
}

/// Operations counted by outcome.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    invoked: usize,
    acknowledged: usize,
    failed: usize,
    unknown: usize,
    acknowledged_writes: usize,
}

impl Counts {
    fn add(&mut self, op: &Op) {
        self.invoked += 1;
        match op.outcome {
            Outcome::Ok { .. } => {
                self.acknowledged += 1;
                if matches!(op.call, Call::Write { .. } | Call::Cas { .. }) {
                    self.acknowledged_writes += 1;
                }
            }
            Outcome::Fail { .. } => self.failed += 1,
            Outcome::Unknown { .. } => self.unknown += 1,
        }
    }
}

/// The longest time in `from..to` without an acknowledged write's completion, in seconds.
fn longest_gap(acks: &[u64], from: u64, to: u64) -> f64 {
    let mut last = from;
    let mut longest = 0;
    for &t in acks.iter().filter(|&&t| t > from && t < to) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to.saturating_sub(last)) as f64 / 1e9
}

#[derive(Default)]
struct Row {
    injected: usize,
    counts: Counts,
    gaps: Vec<f64>,
    durations: Vec<f64>,
}

impl Run {
    /// Per kind of fault: how many were injected, the operations invoked during them (from
    /// the fault to every member serving again) by outcome, and the longest time without an
    /// acknowledged write (the worst fault of the kind, and the mean over its faults); then
    /// the same for the time between faults and for the whole run.
    pub fn table(&self) -> String {
        let ops = &self.history.ops;
        let mut acks: Vec<u64> = ops
            .iter()
            .filter(|op| op.is_ok() && matches!(op.call, Call::Write { .. } | Call::Cas { .. }))
            .map(|op| op.complete)
            .collect();
        acks.sort_unstable();
        let mut rows: BTreeMap<FaultKind, Row> = BTreeMap::new();
        for fault in &self.faults {
            let row = rows.entry(fault.kind).or_default();
            row.injected += 1;
            row.gaps.push(longest_gap(&acks, fault.start, fault.end));
            row.durations.push((fault.end - fault.start) as f64 / 1e9);
        }
        let mut quiet = Counts::default();
        let mut all = Counts::default();
        let workload: Vec<&Op> = ops.iter().filter(|op| op.call != Call::FinalRead).collect();
        for op in &workload {
            all.add(op);
            match self
                .faults
                .iter()
                .find(|f| f.start <= op.invoke && op.invoke < f.end)
            {
                Some(fault) => rows.get_mut(&fault.kind).expect("a row").counts.add(op),
                None => quiet.add(op),
            }
        }
        let end = workload.iter().map(|op| op.complete).max().unwrap_or(0);
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{n} servers, seed {seed}, {secs} s of faults, run {run:.0} s, {ops} operations \
             ({writes} acknowledged writes)",
            n = self.profile.servers,
            seed = self.profile.seed,
            secs = self.profile.fault_time.as_secs(),
            run = self.elapsed.as_secs_f64(),
            ops = workload.len(),
            writes = all.acknowledged_writes,
        );
        let _ = writeln!(
            text,
            "{:<18} {:>8} {:>9} {:>8} {:>6} {:>7} {:>8} {:>9} {:>15} {:>14}",
            "fault",
            "injected",
            "mean dur",
            "ops",
            "acked",
            "failed",
            "unknown",
            "acked wr",
            "max no-ack gap",
            "mean no-ack gap"
        );
        let line = |text: &mut String, name: &str, row: &Row| {
            let mean = |v: &[f64]| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.1} s", v.iter().sum::<f64>() / v.len() as f64)
                }
            };
            let max = row
                .gaps
                .iter()
                .copied()
                .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))));
            let _ = writeln!(
                text,
                "{:<18} {:>8} {:>9} {:>8} {:>6} {:>7} {:>8} {:>9} {:>15} {:>14}",
                name,
                row.injected,
                mean(&row.durations),
                row.counts.invoked,
                row.counts.acknowledged,
                row.counts.failed,
                row.counts.unknown,
                row.counts.acknowledged_writes,
                max.map_or("-".to_string(), |g| format!("{g:.1} s")),
                mean(&row.gaps)
            );
        };
        for kind in FaultKind::ALL {
            if let Some(row) = rows.get(&kind) {
                line(&mut text, kind.name(), row);
            }
        }
        let between = Row {
            counts: quiet,
            ..Row::default()
        };
        line(&mut text, "(between faults)", &between);
        let whole = Row {
            injected: self.faults.len(),
            counts: all,
            gaps: vec![longest_gap(&acks, 0, end)],
            durations: Vec::new(),
        };
        line(&mut text, "(whole run)", &whole);
        text
    }
}
