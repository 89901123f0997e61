//! The prober (src/quorum/probe.rs), the status rule (src/quorum/rule.rs) and the restart
//! decision (src/quorum/restart.rs) against real ZooKeeper ensembles on loopback addresses
//! (tests/support/src/zookeeper.rs), driven the way the controller drives them: a probe round,
//! then the rule, every [`PROBE_INTERVAL`].
//!
//! Run `bash tests/cluster/setup.sh` once first (it fetches ZooKeeper into ~/.cache/zooherd),
//! then `cargo test --test quorum_real_zookeeper`. The tests take turns (one ensemble at a
//! time: a 2-core machine runs one ensemble's JVMs well, not three ensembles'). They wait for
//! each phase with a generous deadline and never assert how long anything took: the figures
//! are the benchmark's job (benches/quorum_status.rs).

use zooherd_test_support as support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use support::status_loop::{StatusLoop, leader_index};
use support::zookeeper::ZkEnsemble;
use tokio::sync::Mutex;
use zooherd::api::{MemberState, Phase};
use zooherd::decide::restart::{
    PodFacts, PodPhase, RestartDecision, RestartPolicy, decide_restart,
};
use zooherd::quorum::rule::ComputedStatus;

const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Starting JVMs on a busy 2-core machine can be slow; elections and failures are not.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// One ensemble at a time (see the module documentation).
static ONE_ENSEMBLE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn pod(index: usize) -> String {
    format!("zk-{index}")
}

fn state_of(status: &ComputedStatus, index: usize) -> MemberState {
    status.members[index].state
}

/// A follower's index: the first member that is not `leader`.
fn a_follower(size: usize, leader: usize) -> usize {
    (0..size)
        .find(|&i| i != leader)
        .expect("more than one member")
}

fn start(size: usize) -> ZkEnsemble {
    ZkEnsemble::start(size).unwrap_or_else(|e| panic!("start {size} ZooKeeper servers: {e}"))
}

#[tokio::test]
async fn three_servers_a_follower_stops_and_returns_then_the_leader_dies() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = start(3);
    let mut status_loop = StatusLoop::new(&zk, PROBE_INTERVAL);

    let active = status_loop.until_phase(Phase::Active, START_TIMEOUT).await;
    assert_eq!(active.summary.ready(), "3/3");
    assert_eq!(
        (active.summary.quorum, active.summary.fault_tolerance),
        (2, 1)
    );
    let leader = leader_index(&active).expect("a leader");
    assert_eq!(
        zk.leader().await,
        Some(leader),
        "the rule's leader is the one that says so"
    );
    let epoch = active.summary.epoch.expect("the leader's epoch");
    assert!(
        active
            .summary
            .zxid
            .as_deref()
            .is_some_and(|z| z.starts_with("0x"))
    );
    for (i, member) in active.members.iter().enumerate() {
        let expected = if i == leader {
            MemberState::Leader
        } else {
            MemberState::Follower
        };
        assert_eq!(member.state, expected, "{member:?}");
        assert!(
            member.since.is_some() && member.zxid.is_some(),
            "{member:?}"
        );
    }
    assert!(active.formed_at.is_some());
    // The leader's mntr is there once the followers have synced.
    let details = status_loop
        .until("the leader's mntr", CHANGE_TIMEOUT, |s| {
            s.leader_details
                .as_ref()
                .is_some_and(|d| d.synced_followers == Some(2))
        })
        .await
        .leader_details
        .expect("mntr");
    assert!(details.znode_count.is_some_and(|n| n > 0), "{details:?}");

    // A follower stops: DEGRADED, the same leader, the follower unreachable.
    let follower = a_follower(3, leader);
    zk.stop(follower).expect("stop a follower");
    let degraded = status_loop
        .until_phase(Phase::Degraded, CHANGE_TIMEOUT)
        .await;
    assert_eq!(degraded.summary.ready(), "2/3");
    assert_eq!(degraded.summary.fault_tolerance, 0);
    assert_eq!(degraded.summary.leader, Some(pod(leader)));
    assert_eq!(state_of(&degraded, follower), MemberState::Unreachable);
    assert_eq!(
        degraded.members[follower].reason.as_deref(),
        Some("connection refused")
    );

    // It returns: ACTIVE again.
    zk.start_member(follower).expect("start the follower again");
    let active = status_loop.until_phase(Phase::Active, START_TIMEOUT).await;
    assert_eq!(active.summary.ready(), "3/3");
    assert_eq!(state_of(&active, follower), MemberState::Follower);

    // kill -9 the leader: a new leader, DEGRADED.
    zk.kill(leader).expect("kill -9 the leader");
    let degraded = status_loop
        .until("DEGRADED under a new leader", CHANGE_TIMEOUT, |s| {
            s.summary.phase == Phase::Degraded && s.summary.leader.is_some()
        })
        .await;
    let new_leader = leader_index(&degraded).expect("a leader");
    assert_ne!(new_leader, leader);
    assert_eq!(state_of(&degraded, leader), MemberState::Unreachable);
    assert_eq!(state_of(&degraded, new_leader), MemberState::Leader);
    assert!(
        degraded.summary.epoch.is_some_and(|e| e > epoch),
        "{:?}",
        degraded.summary
    );
    println!("phases shown: {:?}", status_loop.phases());
    assert!(
        !status_loop.phases()[1..].contains(&Phase::Pending),
        "PENDING after the first quorum: {:?}",
        status_loop.phases()
    );
}

#[tokio::test]
async fn five_servers_lose_two_then_a_third_then_come_back() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = start(5);
    let mut status_loop = StatusLoop::new(&zk, PROBE_INTERVAL);
    let active = status_loop.until_phase(Phase::Active, START_TIMEOUT).await;
    assert_eq!(
        (active.summary.quorum, active.summary.fault_tolerance),
        (3, 2)
    );
    let leader = leader_index(&active).expect("a leader");
    let followers: Vec<usize> = (0..5).filter(|&i| i != leader).collect();

    // Two followers die: still a quorum, with no tolerance left.
    zk.kill(followers[0]).expect("kill -9 a follower");
    zk.kill(followers[1]).expect("kill -9 another follower");
    let degraded = status_loop
        .until("DEGRADED with two members gone", CHANGE_TIMEOUT, |s| {
            s.summary.phase == Phase::Degraded && s.summary.serving == 3
        })
        .await;
    assert_eq!(degraded.summary.ready(), "3/5");
    assert_eq!(degraded.summary.fault_tolerance, 0);
    assert_eq!(degraded.summary.leader, Some(pod(leader)));

    // A third: DOWN, and the two survivors say they are not serving.
    zk.kill(followers[2]).expect("kill -9 a third member");
    let survivors = [leader, followers[3]];
    let down = status_loop
        .until("DOWN with the survivors not serving", CHANGE_TIMEOUT, |s| {
            s.summary.phase == Phase::Down
                && survivors
                    .iter()
                    .all(|&i| state_of(s, i) == MemberState::NotServing)
        })
        .await;
    assert_eq!(down.summary.fault_tolerance, 0);
    assert_eq!(down.summary.leader, None);
    for &i in &survivors {
        let reason = down.members[i].reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("not currently serving requests"),
            "{reason}"
        );
    }
    for &i in &followers[..3] {
        assert_eq!(state_of(&down, i), MemberState::Unreachable);
    }

    // They come back: ACTIVE.
    for &i in &followers[..3] {
        zk.start_member(i).expect("start a member again");
    }
    let active = status_loop.until_phase(Phase::Active, START_TIMEOUT).await;
    assert_eq!(active.summary.ready(), "5/5");
    assert_eq!(active.summary.fault_tolerance, 2);
}

#[tokio::test]
async fn a_frozen_member_is_unreachable_then_named_for_a_restart() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = start(3);
    let mut status_loop = StatusLoop::new(&zk, PROBE_INTERVAL);
    let active = status_loop.until_phase(Phase::Active, START_TIMEOUT).await;
    let leader = leader_index(&active).expect("a leader");
    let frozen = a_follower(3, leader);

    // Every pod Running for an hour, as the controller would read them.
    let created = Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let pods: BTreeMap<String, PodFacts> = (0..3)
        .map(|i| {
            let facts = PodFacts {
                phase: PodPhase::Running,
                restart_count: 0,
                waiting_reason: None,
                terminating: false,
                created_at: Some(created),
                // No kubelet here runs the readiness probe.
                ready: false,
                refuses_empty_voter: false,
                node_not_ready: None,
            };
            (pod(i), facts)
        })
        .collect();
    // The smallest threshold the API accepts.
    let policy = RestartPolicy {
        enabled: true,
        threshold: Duration::from_secs(10),
    };
    let decide = |status: &ComputedStatus| {
        decide_restart(
            &status.members,
            &pods,
            &policy,
            None,
            false,
            Timestamp::now(),
        )
    };
    assert!(matches!(decide(&active), RestartDecision::Keep { .. }));

    zk.freeze(frozen).expect("SIGSTOP a follower");
    let degraded = status_loop
        .until("the frozen member unreachable", CHANGE_TIMEOUT, |s| {
            state_of(s, frozen) == MemberState::Unreachable
        })
        .await;
    assert_eq!(degraded.summary.phase, Phase::Degraded);
    assert_eq!(
        degraded.members[frozen].reason.as_deref(),
        Some("timed out")
    );

    // Not before the threshold; then the frozen member, and only it, is named.
    let since = degraded.members[frozen].since.clone().expect("since").0;
    let started = Instant::now();
    let (pod_named, reason) = loop {
        let status = status_loop.round().await;
        let decision = decide(&status);
        let failing_for = Timestamp::now().duration_since(since);
        match decision {
            RestartDecision::Delete { pod, reason, .. } => {
                assert!(
                    failing_for.as_secs_f64() >= 10.0,
                    "{reason} after {failing_for:?}"
                );
                break (pod, reason);
            }
            RestartDecision::Keep { why } | RestartDecision::Held { why } => {
                assert!(started.elapsed() < Duration::from_secs(60), "still: {why}");
            }
        }
    };
    println!("restart decision: delete {pod_named}: {reason}");
    assert_eq!(pod_named, pod(frozen));
    assert!(reason.contains("unreachable (timed out)"), "{reason}");

    // Thawed, it serves again.
    zk.thaw(frozen).expect("SIGCONT");
    status_loop.until_phase(Phase::Active, START_TIMEOUT).await;
}

#[tokio::test]
async fn a_single_server_is_active_alone_and_down_without_its_process() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = start(1);
    let mut status_loop = StatusLoop::new(&zk, PROBE_INTERVAL);
    let active = status_loop.until_phase(Phase::Active, START_TIMEOUT).await;
    assert_eq!(active.summary.ready(), "1/1");
    assert_eq!(
        (active.summary.quorum, active.summary.fault_tolerance),
        (1, 0)
    );
    assert_eq!(active.summary.leader, Some(pod(0)));
    assert_eq!(state_of(&active, 0), MemberState::Standalone);

    zk.kill(0).expect("kill -9 the server");
    let down = status_loop.until_phase(Phase::Down, CHANGE_TIMEOUT).await;
    assert_eq!(down.summary.ready(), "0/1");
    zk.start_member(0).expect("start it again");
    status_loop.until_phase(Phase::Active, START_TIMEOUT).await;
}
