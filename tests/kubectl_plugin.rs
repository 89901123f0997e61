//! `kubectl zooherd`, the built plugin binary, against a real API server, the operator binary and
//! a real 3-server ZooKeeper ensemble (the test plays the kubelet: see `support::kubelet`):
//! what `status` and `events` print for ACTIVE, DEGRADED and DOWN ensembles, that `restart`
//! makes the operator roll (one member, then every server, followers first and the leader
//! last), and that it is refused while a restart would cost the quorum.

use zooherd_test_support as support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::{Value, json};
use support::control_plane::{ControlPlane, shared};
use support::kubelet::{Running, bind_pod, next_replaced, roll_followers_first, run_ensemble};
use support::operator::{Operator, install_crds, phase_is, status_where};
use support::zookeeper::ZkEnsemble;
use zooherd::api::annotations::{RESTART_MEMBER, RESTARTED_AT};
use zooherd::api::{MemberState, Phase, ZooKeeperEnsemble};
use zooherd::plugin::EXIT_REFUSED;

/// What one run of the plugin did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `kubectl-zooherd <args> -n <namespace>` with the control plane's kubeconfig.
async fn plugin(cp: &ControlPlane, namespace: &str, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-zooherd"))
        .args(args)
        .args(["-n", namespace])
        .env("KUBECONFIG", cp.kubeconfig())
        .output()
        .await
        .expect("running kubectl-zooherd");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!(
        "$ kubectl zooherd {} -n {namespace}\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

/// `status -o json`, which must succeed.
async fn status_json(cp: &ControlPlane, namespace: &str) -> Value {
    let run = plugin(cp, namespace, &["status", "zk", "-o", "json"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_str(&run.stdout).expect("status -o json prints JSON")
}

/// `restart zk [args]` is refused (the ensemble is `phase`) and writes nothing.
async fn assert_restart_refused(
    cp: &ControlPlane,
    namespace: &str,
    ensembles: &Api<ZooKeeperEnsemble>,
    args: &[&str],
    phase: Phase,
) {
    let before = ensembles.get("zk").await.unwrap().annotations().clone();
    let mut command = vec!["restart", "zk"];
    command.extend_from_slice(args);
    let run = plugin(cp, namespace, &command).await;
    assert_eq!(run.code, Some(i32::from(EXIT_REFUSED)), "{}", run.stdout);
    let expected = format!("refusing to restart zk: it is {phase}");
    assert!(run.stderr.starts_with(&expected), "{}", run.stderr);
    assert!(run.stderr.contains("cost the quorum"), "{}", run.stderr);
    assert_eq!(ensembles.get("zk").await.unwrap().annotations(), &before);
}

/// Waits until every server serves and the status says so, under the same leader; returns it.
async fn settled(zookeeper: &ZkEnsemble, ensembles: &Api<ZooKeeperEnsemble>) -> usize {
    let leader = zookeeper
        .wait_for_all_serving(Duration::from_secs(60))
        .await
        .expect("every server serving");
    let pod = format!("zk-{leader}");
    status_where(ensembles, "ACTIVE under the leader", |s| {
        s.phase == Some(Phase::Active) && s.leader.as_deref() == Some(pod.as_str())
    })
    .await;
    leader
}

async fn uids(pods: &Api<Pod>) -> Vec<String> {
    let mut uids = Vec::new();
    for i in 0..3 {
        uids.push(pods.get(&format!("zk-{i}")).await.unwrap().uid().unwrap());
    }
    uids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_zooherd_shows_restarts_and_refuses_to_cost_the_quorum() {
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "plugin").await.unwrap();
    let operator = Operator::start(cp, &ns);
    // The operator's own restarts of failed members are off: a stopped member stays stopped.
    let spec = json!({"replicas": 3, "failedMemberRestart": {"enabled": false}});
    let Running {
        mut zookeeper,
        ensembles,
        pods,
        uids: _,
    } = run_ensemble(&client, &ns, spec).await;

    // ACTIVE: every member serves, with what the operator read from its `srvr`.
    status_where(&ensembles, "ACTIVE with client counters", |s| {
        s.phase == Some(Phase::Active)
            && s.members
                .iter()
                .all(|m| m.latency.is_some() && m.connections.is_some())
    })
    .await;
    let leader = settled(&zookeeper, &ensembles).await;
    let run = plugin(cp, &ns, &["status", "zk"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with(&format!("zk in {ns}: ACTIVE, 3/3 voters serving, quorum 2, 1 more may fail\nleader zk-{leader}, zxid 0x")),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\x1b'), "colour only on a terminal");
    for i in 0..3 {
        let state = if i == leader { "leader" } else { "follower" };
        let row = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("zk-{i} ")))
            .unwrap_or_else(|| panic!("no row for zk-{i}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        // POD NODE MYID STATE ZXID LAG ...: no node (no kubelet), and a lag measured.
        let myid = (i + 1).to_string();
        assert_eq!(columns[1..4], ["-", myid.as_str(), state], "{row}");
        assert!(columns[4].starts_with("0x") && columns[5] != "-", "{row}");
    }
    let json = status_json(cp, &ns).await;
    assert_eq!(json["phase"], "ACTIVE");
    assert_eq!(json["leader"], format!("zk-{leader}"));
    for member in json["members"].as_array().unwrap() {
        assert!(member["lag"].is_u64(), "{member}");
        assert!(member["latency"].is_string(), "{member}");
        assert!(member["connections"].is_i64(), "{member}");
    }
    let run = plugin(cp, &ns, &["events", "zk"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains(" Active ") && l.contains("-> ACTIVE")),
        "{}",
        run.stdout
    );

    // restart --member: that pod alone is replaced, by the operator.
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let before = uids(&pods).await;
    let pod = format!("zk-{follower}");
    let run = plugin(cp, &ns, &["restart", "zk", "--member", &pod]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let annotations = ensembles.get("zk").await.unwrap().annotations().clone();
    assert_eq!(
        annotations[RESTART_MEMBER],
        format!("{pod}/{}", before[follower])
    );
    assert_eq!(next_replaced(&pods, &before, &[]).await, follower);
    zookeeper.restart(follower).unwrap();
    bind_pod(&pods, follower, zookeeper.member(follower).ip()).await;
    status_where(
        &ensembles,
        "ACTIVE after the member's restart",
        phase_is(Phase::Active),
    )
    .await;
    // Done once: the request names the old pod, so nothing else is replaced.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = uids(&pods).await;
    for i in (0..3).filter(|&i| i != follower) {
        assert_eq!(after[i], before[i], "zk-{i} was replaced too");
    }

    // restart: every server, followers first and the leader last.
    let leader = settled(&zookeeper, &ensembles).await;
    let run = plugin(cp, &ns, &["restart", "zk"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("followers first and the leader last"),
        "{}",
        run.stdout
    );
    assert!(
        ensembles
            .get("zk")
            .await
            .unwrap()
            .annotations()
            .contains_key(RESTARTED_AT)
    );
    roll_followers_first(&pods, &mut zookeeper, after, leader).await;
    status_where(&ensembles, "the restart to finish", |s| {
        s.phase == Some(Phase::Active)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Progressing" && c.status == "False")
    })
    .await;
    let run = plugin(cp, &ns, &["events", "zk"]).await;
    assert!(run.stdout.contains("RollingMember"), "{}", run.stdout);

    // DEGRADED: a follower stopped. Shown as such, and no restart may be asked.
    let leader = settled(&zookeeper, &ensembles).await;
    let stopped: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    zookeeper.stop(stopped[0]).unwrap();
    status_where(&ensembles, "DEGRADED", |s| {
        s.phase == Some(Phase::Degraded) && s.members[stopped[0]].state == MemberState::Unreachable
    })
    .await;
    let run = plugin(cp, &ns, &["status", "zk"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.starts_with(&format!(
            "zk in {ns}: DEGRADED, 2/3 voters serving, quorum 2, 0 more may fail\n"
        )),
        "{}",
        run.stdout
    );
    let down = format!("zk-{}: unreachable: ", stopped[0]);
    assert!(run.stdout.contains(&down), "{}", run.stdout);
    assert!(run.stdout.contains("Warning   Degraded"), "{}", run.stdout);
    let json = status_json(cp, &ns).await;
    assert_eq!(json["members"][stopped[0]]["state"], "unreachable");
    assert_eq!(json["members"][stopped[0]]["lag"], Value::Null);
    let member = format!("zk-{}", stopped[1]);
    assert_restart_refused(cp, &ns, &ensembles, &[], Phase::Degraded).await;
    assert_restart_refused(cp, &ns, &ensembles, &["--member", &member], Phase::Degraded).await;

    // DOWN: a second follower stopped; the last server alone is no quorum.
    zookeeper.stop(stopped[1]).unwrap();
    status_where(&ensembles, "DOWN", phase_is(Phase::Down)).await;
    let run = plugin(cp, &ns, &["status", "zk"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // (1/3 or 0/3: the leader stops serving once it notices it lost its followers.)
    let headline = run.stdout.lines().next().unwrap_or_default();
    assert!(
        headline.starts_with(&format!("zk in {ns}: DOWN, ")),
        "{headline}"
    );
    assert!(
        headline.ends_with("/3 voters serving, quorum 2, 0 more may fail"),
        "{headline}"
    );
    assert_eq!(status_json(cp, &ns).await["phase"], "DOWN");
    assert_restart_refused(cp, &ns, &ensembles, &[], Phase::Down).await;

    // Errors are errors, not refusals.
    let run = plugin(cp, &ns, &["status", "nope"]).await;
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr.trim(),
        format!("error: no ZooKeeperEnsemble nope in namespace {ns}")
    );

    drop(operator);
    cp.delete_namespace(&client, &ns).await.unwrap();
}
