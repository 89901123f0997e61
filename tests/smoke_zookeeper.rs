//! Smoke tests of the real-ZooKeeper support (tests/support/src/zookeeper.rs): ensembles start,
//! elect a leader, survive the loss of one, and the process controls do what they say.
//! Run `bash tests/cluster/setup.sh` once first (tests/run.sh does).

use zooherd_test_support as support;

use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;
use support::zookeeper::{JavaLauncher, Launcher, MemberSpec, Probe, ServerState, ZkEnsemble};
use zookeeper_client as zk;

const QUORUM_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn killing_the_leader_elects_a_new_one() {
    let mut zk = ZkEnsemble::start(3).expect("start 3 ZooKeeper servers");
    let leader = zk
        .wait_for_quorum(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The leader as the AdminServer says it, in the raw JSON.
    let srvr = zk.admin_command(leader, "srvr").await.expect("srvr");
    assert_eq!(srvr["server_stats"]["server_state"], "leader", "{srvr}");
    let old = zk.member(leader);
    println!(
        "leader: member {leader} (myid {}, {}), pid {:?}",
        old.myid(),
        old.admin_url(),
        old.pid()
    );
    let pid = old.pid().expect("the leader runs");

    // Data written before the failure must survive it.
    let client = zk::Client::connect(&zk.connect_string())
        .await
        .expect("connect a client");
    let create = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client
        .create("/smoke", b"before", &create)
        .await
        .expect("create /smoke");
    drop(client);

    let killed = Instant::now();
    zk.kill(leader).expect("kill -9 the leader");
    let new_leader = zk
        .wait_for_new_leader(leader, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let elapsed = killed.elapsed();
    println!(
        "new leader: member {new_leader} (myid {}) elected {} ms after kill -9 of member {leader}",
        zk.member(new_leader).myid(),
        elapsed.as_millis()
    );

    // The old leader is gone: no process, no answer; the other two hold the quorum.
    assert_ne!(new_leader, leader);
    assert_eq!(
        kill(Pid::from_raw(pid as i32), None),
        Err(nix::errno::Errno::ESRCH),
        "process {pid} still exists"
    );
    assert!(zk.member(leader).pid().is_none());
    let probes = zk.probe_all().await;
    assert!(
        matches!(probes[leader], Probe::Unreachable(_)),
        "{}",
        probes[leader]
    );
    let serving = probes.iter().filter(|p| p.is_serving_voter()).count();
    assert_eq!(serving, 2, "{probes:?}");

    let client = zk::Client::connect(&zk.connect_string())
        .await
        .expect("connect a client");
    let (data, _) = client.get_data("/smoke").await.expect("read /smoke");
    assert_eq!(data, b"before");
}

#[tokio::test]
async fn stop_freeze_thaw_and_restart_a_follower() {
    let mut zk = ZkEnsemble::start(3).expect("start 3 ZooKeeper servers");
    let leader = zk
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let follower = (leader + 1) % 3;
    assert_eq!(
        zk.probe(follower).await.state(),
        Some(&ServerState::Follower)
    );

    // SIGSTOP: the process stays but answers nothing; the other two keep the quorum.
    zk.freeze(follower).expect("freeze");
    assert!(zk.member(follower).is_frozen());
    assert!(matches!(zk.probe(follower).await, Probe::Unreachable(_)));
    assert_eq!(
        zk.wait_for_quorum(QUORUM_TIMEOUT).await.expect("quorum"),
        leader
    );
    zk.thaw(follower).expect("thaw");
    zk.wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("after thaw: {e}"));

    // SIGTERM: the member exits; restarted on the same data, it syncs and serves again.
    zk.stop(follower).expect("stop");
    assert!(!zk.is_running(follower));
    assert!(matches!(zk.probe(follower).await, Probe::Unreachable(_)));
    zk.start_member(follower).expect("start again");
    let state = zk
        .wait_for_serving(follower, QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("after restart: {e}"));
    assert_eq!(state, ServerState::Follower);
    zk.restart(follower).expect("restart");
    zk.wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("after restart(): {e}"));

    // Losing two of three loses the quorum: the survivor stops serving.
    let other = 3 - leader - follower;
    zk.stop(follower).expect("stop");
    zk.kill(other).expect("kill");
    let lone = zk
        .wait_for("the leader to lose its quorum", QUORUM_TIMEOUT, |probes| {
            matches!(probes[leader], Probe::NotServing(_)).then(|| probes[leader].clone())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("member {leader} without a quorum: {lone}");
}

#[tokio::test]
async fn members_named_by_hostnames_through_a_custom_launcher() {
    // Server lines name members the way the operator does; a hosts file resolves the names.
    let launcher = |member: &MemberSpec| JavaLauncher::default().command(member);
    let zk = ZkEnsemble::builder(3)
        .hostnames(|myid| {
            format!(
                "smoke-{}.smoke-headless.default.svc.cluster.local",
                myid - 1
            )
        })
        .launcher(launcher)
        .start()
        .expect("start 3 ZooKeeper servers");
    let config = std::fs::read_to_string(zk.member(0).config_file()).expect("zoo.cfg");
    assert!(
        config.contains("server.2=smoke-1.smoke-headless.default.svc.cluster.local:2888:3888"),
        "{config}"
    );
    let hosts = std::fs::read_to_string(zk.hosts_file().expect("a hosts file")).expect("hosts");
    assert!(
        hosts.contains(&format!(
            "{} smoke-2.smoke-headless.default.svc.cluster.local",
            zk.member(2).ip()
        )),
        "{hosts}"
    );
    let leader = zk
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("hostname ensemble led by member {leader}");
}

#[tokio::test]
async fn a_single_server_runs_standalone() {
    let zk = ZkEnsemble::start(1).expect("start 1 ZooKeeper server");
    let leader = zk
        .wait_for_quorum(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(leader, 0);
    assert_eq!(zk.probe(0).await.state(), Some(&ServerState::Standalone));
    let started = Instant::now();
    let mntr = zk.admin_command(0, "mntr").await.expect("mntr");
    // With the Prometheus provider, mntr reports numbers as floats.
    assert!(
        mntr["znode_count"].as_f64().is_some_and(|n| n >= 1.0),
        "{mntr}"
    );
    println!("mntr answered in {} ms", started.elapsed().as_millis());

    // The Prometheus metrics provider listens on the member's address, port 7000.
    let http = zooherd::http::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let metrics = http
        .get(zk.member(0).metrics_url())
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(metrics.contains("znode_count"), "{metrics}");
}
