//! Formation, step by step (issue 18, item 1): where the time from `kubectl apply` to ACTIVE
//! goes for a three-server ensemble, over many consecutive ensembles, so that a stall (a first
//! election that waits initLimit × tickTime) shows as an outlier in one column.
//!
//! Each step is the first 100 ms poll at which it holds for all three servers (the first
//! quorum: a leader and a follower). AdminServer answers stand for "the JVM is up": ZooKeeper
//! starts its AdminServer before the first election.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use zooherd::api::{Phase, ZooKeeperEnsemble};

use super::support::local_cluster::{AdminAccess, LocalCluster};
use super::{FORM_TIMEOUT, manifest};

const SERVERS: usize = 3;
/// A formation slower than this keeps its server logs for a look.
const SLOW: Duration = Duration::from_secs(15);
const STEPS: [&str; 6] = [
    "scheduled",
    "containers running",
    "JVMs answering",
    "first quorum",
    "all serving",
    "ACTIVE",
];

/// Seconds from apply to each of [`STEPS`].
type Timeline = [f64; STEPS.len()];

pub async fn run(cluster: &LocalCluster, client: &kube::Client, count: usize) {
    if count == 0 {
        return;
    }
    let logs = tempfile::Builder::new()
        .prefix("zooherd-bench-formation-")
        .tempdir()
        .expect("a directory for slow formations' logs")
        .keep();
    println!("| # | {} | ACTIVE after all serving |", STEPS.join(" | "));
    println!("|{}", " --- |".repeat(STEPS.len() + 2));
    let mut timelines = Vec::new();
    for i in 0..count {
        let timeline = formation(cluster, client, i, &logs).await;
        println!(
            "| {i} | {} | {:.1} s |",
            timeline.map(|t| format!("{t:.1} s")).join(" | "),
            timeline[5] - timeline[4]
        );
        timelines.push(timeline);
    }
    println!("\n| step | min | median | max |\n| --- | --- | --- | --- |");
    for (step, name) in STEPS.iter().enumerate() {
        let mut column: Vec<f64> = timelines.iter().map(|t| t[step]).collect();
        column.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} s | {:.1} s | {:.1} s |",
            column[0],
            column[column.len() / 2],
            column[column.len() - 1]
        );
    }
    let slow = timelines
        .iter()
        .filter(|t| t[5] > SLOW.as_secs_f64())
        .count();
    println!(
        "{slow} of {count} formations took over {} s to ACTIVE{}\n",
        SLOW.as_secs(),
        if slow > 0 {
            format!("; their server logs are in {}", logs.display())
        } else {
            String::new()
        }
    );
}

/// One ensemble from apply to ACTIVE, then its namespace deleted.
async fn formation(
    cluster: &LocalCluster,
    client: &kube::Client,
    index: usize,
    logs: &Path,
) -> Timeline {
    let ns = cluster
        .api()
        .create_namespace(client, &format!("bench-form-{index}"))
        .await
        .expect("a namespace");
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let applied = Instant::now();
    cluster.apply(&ns, &manifest("zk", SERVERS));
    let mut reached: [Option<f64>; STEPS.len()] = [None; STEPS.len()];
    let mut admin = AdminAccess::of(client, &ns, "zk").await;
    // Until every step has been seen: ACTIVE implies the others, but a poll may miss one (an
    // AdminServer slow to answer), and the next poll then sees it.
    while reached.iter().any(Option::is_none) {
        assert!(
            applied.elapsed() < FORM_TIMEOUT,
            "formation {index}: not ACTIVE after {FORM_TIMEOUT:?}; reached {reached:?}\n{}",
            cluster.operator_log()
        );
        // The servers' AdminServers take the certificate of the ensemble's CA, whose Secret the
        // operator creates after the apply.
        if !admin.is_tls() {
            admin = AdminAccess::of(client, &ns, "zk").await;
        }
        let now = steps_now(&pods, &ensembles, &admin).await;
        let at = applied.elapsed().as_secs_f64();
        for (step, holds) in now.into_iter().enumerate() {
            if holds && reached[step].is_none() {
                reached[step] = Some(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let timeline = reached.map(|t| t.expect("every step was seen"));
    if timeline[5] > SLOW.as_secs_f64() {
        keep_logs(cluster, &ns, index, logs);
    }
    cluster
        .api()
        .delete_namespace(client, &ns)
        .await
        .expect("deleting the namespace");
    timeline
}

/// Which of [`STEPS`] hold at this moment.
async fn steps_now(
    pods: &Api<Pod>,
    ensembles: &Api<ZooKeeperEnsemble>,
    admin: &AdminAccess,
) -> [bool; STEPS.len()] {
    let pods = pods
        .list(&ListParams::default())
        .await
        .expect("listing pods")
        .items;
    let all = |holds: &dyn Fn(&Pod) -> bool| pods.len() == SERVERS && pods.iter().all(holds);
    let scheduled = all(&|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()));
    let running = all(&|p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            })
    });
    let ips: Vec<String> = pods
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    let answers = futures::future::join_all(ips.iter().map(|ip| admin.srvr(ip))).await;
    let states: Vec<String> = answers
        .iter()
        .filter_map(|a| serde_json::from_str::<serde_json::Value>(a).ok())
        .map(|v| {
            v["server_stats"]["server_state"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let answering = running && states.len() == SERVERS;
    let serving = |state: &str| states.iter().filter(|s| *s == state).count();
    let quorum = answering && serving("leader") == 1 && serving("follower") >= 1;
    let all_serving = quorum && serving("leader") + serving("follower") == SERVERS;
    let active = ensembles
        .get_opt("zk")
        .await
        .ok()
        .flatten()
        .and_then(|e| e.status?.phase)
        == Some(Phase::Active);
    [scheduled, running, answering, quorum, all_serving, active]
}

/// Writes each server's log of a slow formation to `logs/formation-N-POD.log`.
fn keep_logs(cluster: &LocalCluster, ns: &str, index: usize, logs: &Path) {
    for ordinal in 0..SERVERS {
        let pod = format!("zk-{ordinal}");
        let out = cluster
            .api()
            .kubectl()
            .args(["-n", ns, "logs", &pod])
            .output()
            .expect("running kubectl logs");
        let path = logs.join(format!("formation-{index}-{pod}.log"));
        std::fs::write(&path, [out.stdout, out.stderr].concat()).expect("writing a server log");
    }
}
