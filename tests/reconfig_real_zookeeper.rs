//! Scaling by dynamic reconfiguration on real ZooKeeper ensembles (tests/support/src/zookeeper.rs):
//! the planner (src/quorum/membership.rs) decides each step from the committed membership and
//! what the members answer, and the reconfiguration client (src/quorum/reconfig.rs) makes it,
//! as the superuser, the way the controller does; the test plays the StatefulSet (starting and
//! stopping members).
//!
//! Run `bash tests/cluster/setup.sh` once first, then `cargo test --test reconfig_real_zookeeper`.
//! The tests take turns (one ensemble at a time on a 2-core machine). Each add and remove step
//! prints how long it took.

use zooherd_test_support as support;

use std::time::Duration;

use support::scaling::{Scaler, committed, names, states};
use support::zookeeper::{ZkEnsemble, server_line};
use tokio::sync::Mutex;
use zooherd::quorum::Myid;
use zooherd::quorum::membership::{Membership, ScaleFacts, ScaleStep, next_step};
use zooherd::quorum::reconfig::{BARRIER_PATH, Login, Reconfigurer, SUPERUSER, super_digest};

const PASSWORD: &str = "test-superuser-password";
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

static ONE_ENSEMBLE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// An ensemble of `size` prepared members, the first `voters` of them started as the voters.
async fn start(size: usize, voters: usize) -> ZkEnsemble {
    let mut zk = ZkEnsemble::builder(size)
        .reconfig(&super_digest(PASSWORD), voters)
        .prepare()
        .expect("prepare the ensemble");
    for i in 0..voters {
        zk.start_member(i).expect("start a member");
    }
    zk.wait_for_quorum(START_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    zk
}

fn committed_voters(membership: &Membership) -> Vec<i32> {
    membership.voters().into_iter().map(i32::from).collect()
}

/// The controller's steps on the plain harness: joining members start with the files the
/// harness wrote for them (the first voters plus themselves).
fn scaler<'a>(no_op: &'a mut dyn FnMut(&Membership, u8)) -> Scaler<'a> {
    Scaler {
        password: PASSWORD,
        line: &|zk: &ZkEnsemble, myid: Myid| {
            let i = myid.ordinal() as usize;
            server_line(&zk.member(i).spec().servers[i])
        },
        before_grow: no_op,
    }
}

#[tokio::test]
async fn three_to_five_one_by_one_then_back_to_three_removing_the_leader() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = start(5, 3).await;
    let mut replicas = 3;
    let mut no_op = |_: &Membership, _: u8| {};
    let mut scaler = scaler(&mut no_op);
    let before = committed(&zk, replicas, PASSWORD).await;
    assert_eq!(committed_voters(&before), [1, 2, 3]);

    let steps = scaler.scale(&mut zk, &mut replicas, 5).await;
    assert_eq!(
        names(&steps),
        [
            "starting servers up to 5 (as non-voting followers)",
            "adding server 4 as a voter",
            "adding server 5 as a voter",
        ]
    );
    let after = committed(&zk, replicas, PASSWORD).await;
    assert_eq!(committed_voters(&after), [1, 2, 3, 4, 5]);
    zk.wait_for_all_serving(STEP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Make myid 5 the leader: with equal zxids an election picks the highest myid.
    let mut leader = zk
        .wait_for_quorum(STEP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    while leader != 4 {
        zk.restart(leader).expect("restart the leader");
        leader = zk
            .wait_for_new_leader(leader, STEP_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        zk.wait_for_all_serving(STEP_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let steps = scaler.scale(&mut zk, &mut replicas, 3).await;
    assert_eq!(
        names(&steps),
        [
            "removing voter 5",
            "removing voter 4",
            "stopping the servers beyond 3"
        ]
    );
    let after = committed(&zk, replicas, PASSWORD).await;
    assert_eq!(committed_voters(&after), [1, 2, 3]);
    let leader = zk
        .wait_for_quorum(STEP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(leader < 3, "a remaining voter leads, not {leader}");
    let states = states(&zk, 3).await;
    assert!(
        states.values().all(|s| s.is_serving()),
        "every remaining voter serves: {states:?}"
    );

    // After each removal a write was committed before the servers beyond 3 were stopped (the
    // first created the barrier, the second wrote it again), to a znode only the superuser
    // may read.
    let cluster = zk
        .client_addresses(0..3)
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let anonymous = zookeeper_client::Client::connect(&cluster).await.unwrap();
    assert_eq!(
        anonymous.get_data(BARRIER_PATH).await.err(),
        Some(zookeeper_client::Error::NoAuth)
    );
    let superuser = zookeeper_client::Client::connector()
        .with_auth("digest", format!("{SUPERUSER}:{PASSWORD}").as_bytes())
        .connect(&cluster)
        .await
        .unwrap();
    let (_, stat) = superuser.get_data(BARRIER_PATH).await.unwrap();
    assert_eq!(stat.version, 1, "one write per removal: {stat:?}");
}

#[tokio::test]
async fn a_step_that_would_lose_the_quorum_is_refused() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = start(3, 3).await;
    zk.stop(1).expect("stop member 1");
    zk.wait_for(
        "member 1 down, the others serving",
        STEP_TIMEOUT,
        |probes| {
            (!probes[1].is_serving() && probes[0].is_serving() && probes[2].is_serving())
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let before = Reconfigurer::default()
        .committed(&zk.client_addresses([0, 2]), Login::superuser(PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let states = states(&zk, 3).await;
    let step = next_step(&ScaleFacts {
        desired: 1,
        committed: &before,
        stateful_set_replicas: 3,
        states: &states,
    });
    assert_eq!(
        step,
        ScaleStep::Refuse(
            "removing voter 3 would leave voters 1, 2 with 1 serving (1), fewer than their quorum of 2"
                .into()
        )
    );
    let after = Reconfigurer::default()
        .committed(&zk.client_addresses([0, 2]), Login::superuser(PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after, before, "nothing changed");
}

#[tokio::test]
async fn a_change_without_the_superuser_is_refused_by_zookeeper() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let zk = start(3, 3).await;
    let servers = zk.client_addresses(0..3);
    let committed = committed(&zk, 3, PASSWORD).await;
    let error = Reconfigurer::default()
        .remove_voter(
            &servers,
            Login::superuser("wrong-password"),
            &committed,
            Myid::try_from(3).unwrap(),
        )
        .await
        .expect_err("a wrong password cannot reconfigure");
    assert!(error.to_string().contains("NoAuth"), "{error}");
    assert_eq!(self::committed(&zk, 3, PASSWORD).await, committed);
}
