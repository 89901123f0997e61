//! What a user of the local cluster sees, timed: apply to ACTIVE, a server's death to DEGRADED
//! and its return to ACTIVE in the resource status, and what the operator costs at rest. Run it
//! (as root, like the end-to-end tests) with:
//!
//! ```sh
//! bash tests/cluster/setup.sh          # once
//! cargo bench --bench end_to_end
//! ```
//!
//! First, formation (issue 18, item 1): `ZOOHERD_BENCH_FORMATIONS=20` three-server ensembles,
//! one after the other, each timed from `kubectl apply` to: every pod scheduled, every server
//! container running, every AdminServer answering (the JVM is up), the first quorum (a leader
//! and a follower), every server serving, ACTIVE; then the min, median and max of each. The
//! server logs of a formation slower than 15 s are kept (the path is printed).
//!
//! `ZOOHERD_BENCH_SIZES=3,5` (the default) chooses the ensemble sizes, `ZOOHERD_BENCH_REPEATS=2`
//! how many ensembles of each size, `ZOOHERD_BENCH_AT_REST=10` how many 1-server ensembles run
//! while the operator is measured at rest, and `ZOOHERD_BENCH_REST_SECONDS=60` for how long.
//!
//! It brings up the local cluster of the end-to-end tests (tests/e2e/cluster.sh: a kubelet
//! node, the operator installed by Helm), then for each ensemble:
//! - `kubectl apply` -> `.status.phase` ACTIVE;
//! - kill -9 of a follower's JVM, with the kubelet held so that it stays dead -> DEGRADED; then
//!   the kubelet is released, restarts the container, and the member's return -> ACTIVE (JVM
//!   start and sync included) is measured from the release;
//!
//! and last, with the 1-server ensembles all ACTIVE, each operator pod's resident memory and the
//! CPU it used over the window (from /proc, through the container's cgroup). The status is
//! polled every 100 ms, which bounds the resolution. A measurement, not a test: it fails only
//! when a phase is not reached within minutes.

#[path = "end_to_end/formation.rs"]
mod formation;
use zooherd_test_support as support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use nix::sys::signal::Signal;
use serde_json::json;
use support::local_cluster::LocalCluster;
use zooherd::api::{Phase, ZooKeeperEnsemble};

const FORM_TIMEOUT: Duration = Duration::from_secs(300);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("end_to_end: a benchmark; run `cargo bench --bench end_to_end`");
        return;
    }
    let formations = support::env_list("ZOOHERD_BENCH_FORMATIONS", &[20])[0];
    let sizes = support::env_list("ZOOHERD_BENCH_SIZES", &[3, 5]);
    let repeats = support::env_list("ZOOHERD_BENCH_REPEATS", &[2])[0];
    let at_rest = support::env_list("ZOOHERD_BENCH_AT_REST", &[10])[0];
    let rest_window =
        Duration::from_secs(support::env_list("ZOOHERD_BENCH_REST_SECONDS", &[60])[0] as u64);
    // Volumes are recycled once their namespace is gone (tests/e2e/cluster.sh): enough for
    // the largest ensemble twice (one going while the next comes) and the ensembles at rest.
    let volumes = 2 * sizes.iter().copied().max().unwrap_or(0).max(3) + at_rest;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let cluster = LocalCluster::start_with_volumes(volumes);
    runtime.block_on(async {
        let client = cluster.api().client().await;
        formation::run(&cluster, &client, formations).await;
        println!(
            "| servers | apply -> ACTIVE | kill -9 follower -> DEGRADED | kubelet restarts it -> ACTIVE |"
        );
        println!("| --- | --- | --- | --- |");
        for &size in &sizes {
            for round in 0..repeats {
                failure_round(&cluster, &client, size, round).await;
            }
        }
        at_rest_cost(&cluster, &client, at_rest, rest_window).await;
    });
}

fn manifest(name: &str, replicas: usize) -> String {
    json!({
        "apiVersion": "zooherd.dev/v1beta1",
        "kind": "ZooKeeperEnsemble",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    })
    .to_string()
}

async fn failure_round(cluster: &LocalCluster, client: &kube::Client, size: usize, round: usize) {
    let ns = cluster
        .api()
        .create_namespace(client, &format!("bench-{size}-{round}"))
        .await
        .expect("a namespace");
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let name = "zk";

    let applied = Instant::now();
    cluster.apply(&ns, &manifest(name, size));
    let status = cluster
        .wait_status(&ensembles, name, "ACTIVE", FORM_TIMEOUT, |s| {
            s.phase == Some(Phase::Active)
        })
        .await;
    let to_active = applied.elapsed();

    let leader = status.leader.clone().expect("a leader");
    let follower = status
        .members
        .iter()
        .map(|m| m.pod.clone())
        .find(|p| *p != leader)
        .expect("a follower");
    // The kubelet is held while the server is dead, as in the walkthrough: a container it
    // restarts at once may be back before two failed probes confirm the failure.
    cluster.hold_kubelet(true);
    let killed = Instant::now();
    cluster
        .signal_container(&pods, &follower, Signal::SIGKILL)
        .await;
    cluster
        .wait_status(&ensembles, name, "DEGRADED", CHANGE_TIMEOUT, |s| {
            s.phase == Some(Phase::Degraded)
        })
        .await;
    let to_degraded = killed.elapsed();
    let released = Instant::now();
    cluster.hold_kubelet(false);
    cluster
        .wait_status(&ensembles, name, "ACTIVE again", CHANGE_TIMEOUT, |s| {
            s.phase == Some(Phase::Active)
        })
        .await;
    let to_active_again = released.elapsed();
    println!(
        "| {size} | {:.1} s | {:.1} s | {:.1} s |",
        to_active.as_secs_f64(),
        to_degraded.as_secs_f64(),
        to_active_again.as_secs_f64()
    );
    cluster
        .api()
        .delete_namespace(client, &ns)
        .await
        .expect("deleting the namespace");
}

/// Resident memory (KiB) and CPU time (clock ticks) of process `pid`, from /proc.
fn usage(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after "(comm)": state is the 1st, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (rss_kib, ticks(11) + ticks(12))
}

async fn at_rest_cost(
    cluster: &LocalCluster,
    client: &kube::Client,
    count: usize,
    window: Duration,
) {
    let ns = cluster
        .api()
        .create_namespace(client, "bench-rest")
        .await
        .expect("a namespace");
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(client.clone(), &ns);
    let started = Instant::now();
    for i in 0..count {
        cluster.apply(&ns, &manifest(&format!("zk-{i}"), 1));
    }
    for i in 0..count {
        cluster
            .wait_status(
                &ensembles,
                &format!("zk-{i}"),
                "ACTIVE",
                FORM_TIMEOUT,
                |s| s.phase == Some(Phase::Active),
            )
            .await;
    }
    println!(
        "\n{count} one-server ensembles applied and ACTIVE in {:.1} s; the operator at rest over {} s:",
        started.elapsed().as_secs_f64(),
        window.as_secs()
    );
    let system = "zooherd-system";
    let operator_pods = Api::<Pod>::namespaced(client.clone(), system);
    let holder = Api::<Lease>::namespaced(client.clone(), system)
        .get_opt("zooherd-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .unwrap_or_default();
    let names: Vec<String> = operator_pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=zooherd"))
        .await
        .expect("listing the operator's pods")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let mut before = Vec::new();
    for name in &names {
        let pid = cluster.container_pids(&operator_pods, name).await[0];
        before.push((name.clone(), pid, usage(pid).1));
    }
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    tokio::time::sleep(window).await;
    println!("| operator pod | leader | RSS | CPU (share of one core) |");
    println!("| --- | --- | --- | --- |");
    for (name, pid, ticks_before) in before {
        let (rss_kib, ticks_after) = usage(pid);
        let cpu = (ticks_after - ticks_before) as f64 / ticks_per_second / window.as_secs_f64();
        println!(
            "| {name} | {} | {:.1} MiB | {:.2} % |",
            if holder.contains(&name) { "yes" } else { "no" },
            rss_kib as f64 / 1024.0,
            cpu * 100.0
        );
    }
    cluster
        .api()
        .delete_namespace(client, &ns)
        .await
        .expect("deleting the namespace");
}
