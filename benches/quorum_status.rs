//! How fast the computed status follows a real ZooKeeper ensemble, and what a probe round
//! costs. Run it with:
//!
//! ```sh
//! bash tests/cluster/setup.sh          # once: ZooKeeper 3.9.6 into ~/.cache/zooherd
//! cargo bench --bench quorum_status
//! ```
//!
//! `ZOOHERD_BENCH_SIZES=3,5,7` (the default) chooses the ensemble sizes,
//! `ZOOHERD_BENCH_REPEATS=3` how many deaths and returns each size goes through, and
//! `ZOOHERD_BENCH_TLS=0,1` (the default) whether the servers run quorum TLS (0: plaintext, the
//! AdminServer in plain HTTP; 1: as the operator configures them by default, the AdminServer
//! in HTTPS for clients with a certificate of the ensemble's CA, which the prober shows).
//!
//! For each size it starts an ensemble on loopback addresses (tests/support), then drives the
//! prober and the status rule with their default settings the way the controller does, one
//! round per second, and prints:
//! - a probe round: requests sent and wall time (min / median / max of 20 rounds);
//! - kill -9 of a follower -> DEGRADED in the computed status;
//! - its return -> ACTIVE: from the restarted member's first serving answer (seen by a side
//!   poller every 50 ms) and from the process start (JVM start and sync included);
//! - kill -9 of the leader -> DEGRADED under a new leader, and the phases shown meanwhile.
//!
//! Each kill happens at a random point of the probe interval. The target at defaults is
//! death -> DEGRADED and return -> ACTIVE within 3 s. This is a measurement, not a test: it
//! fails only when the ensemble does not reach a phase within a minute.

use zooherd_test_support as support;

use std::time::{Duration, Instant};

use support::status_loop::{StatusLoop, leader_index};
use support::zookeeper::ZkEnsemble;
use zooherd::api::{MemberState, Phase};
use zooherd::quorum::admin::{AdminClient, SrvrAnswer};

const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("quorum_status: a benchmark; run `cargo bench --bench quorum_status`");
        return;
    }
    let sizes = support::env_list("ZOOHERD_BENCH_SIZES", &[3, 5, 7]);
    let tls = support::env_list("ZOOHERD_BENCH_TLS", &[0, 1]);
    let repeats = support::env_list("ZOOHERD_BENCH_REPEATS", &[3])[0];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        for &tls in &tls {
            for &size in &sizes {
                bench_size(size, repeats, tls != 0).await;
            }
        }
    });
}

/// A pause of a random part of the probe interval, so that kills land anywhere in it.
async fn random_offset() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let offset = PROBE_INTERVAL.mul_f64(f64::from(nanos % 1000) / 1000.0);
    tokio::time::sleep(offset).await;
}

/// Polls one AdminServer every 50 ms with `client` until it answers serving; returns when it
/// first did.
async fn first_serving(client: AdminClient, base: String) -> Instant {
    loop {
        if let Ok(SrvrAnswer::Serving(_)) = client.srvr(&base).await {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn summary(values: &[Duration]) -> String {
    let list: Vec<String> = values.iter().map(|d| seconds(*d)).collect();
    let max = values.iter().max().copied().unwrap_or_default();
    format!("{} (max {})", list.join(", "), seconds(max))
}

async fn bench_size(size: usize, repeats: usize, tls: bool) {
    let timeout = Duration::from_millis(500);
    let (mut zk, side_client, tls_client) = if tls {
        println!(
            "== {size} servers, quorum TLS (AdminServer in HTTPS with client certificates) =="
        );
        let (zk, operator) = ZkEnsemble::start_with_quorum_tls(size)
            .unwrap_or_else(|e| panic!("start {size} ZooKeeper servers: {e}"));
        let client = |timeout| AdminClient::with_tls(timeout, &operator).expect("a TLS client");
        let prober_timeout = zooherd::quorum::probe::ProbeSettings::default().timeout;
        (zk, client(timeout), Some(client(prober_timeout)))
    } else {
        println!("== {size} servers, plaintext ==");
        let zk = ZkEnsemble::start(size)
            .unwrap_or_else(|e| panic!("start {size} ZooKeeper servers: {e}"));
        (zk, AdminClient::new(timeout), None)
    };
    let mut status_loop = StatusLoop::new(&zk, PROBE_INTERVAL);
    status_loop.prober = status_loop.prober.with_tls(tls_client);
    status_loop.until_phase(Phase::Active, PHASE_TIMEOUT).await;

    // The cost of a round, in the steady state.
    let mut walls = Vec::new();
    let mut requests = Vec::new();
    for _ in 0..20 {
        let round = status_loop.prober.probe(&status_loop.voters).await;
        assert!(
            round
                .observations
                .iter()
                .all(|o| matches!(o.answer, zooherd::quorum::probe::Answer::Serving { .. })),
            "{round:?}"
        );
        walls.push(round.elapsed);
        requests.push(round.requests);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    walls.sort();
    requests.sort();
    println!(
        "probe round: {} requests ({size} srvr + mntr of the leader), wall min {:.1} / median {:.1} / max {:.1} ms",
        requests[requests.len() / 2],
        walls[0].as_secs_f64() * 1e3,
        walls[walls.len() / 2].as_secs_f64() * 1e3,
        walls[walls.len() - 1].as_secs_f64() * 1e3,
    );

    let mut to_degraded = Vec::new();
    let mut serving_to_active = Vec::new();
    let mut start_to_active = Vec::new();
    let mut leader_to_degraded = Vec::new();
    for repeat in 0..repeats {
        let active = status_loop.until_phase(Phase::Active, PHASE_TIMEOUT).await;
        let leader = leader_index(&active).expect("an ACTIVE status names its leader");
        let follower = (0..size)
            .map(|i| (i + repeat) % size)
            .find(|&i| i != leader)
            .expect("a follower");

        random_offset().await;
        zk.kill(follower).expect("kill -9 a follower");
        let killed = Instant::now();
        status_loop
            .until("DEGRADED", PHASE_TIMEOUT, |s| {
                s.summary.phase == Phase::Degraded
                    && s.members[follower].state == MemberState::Unreachable
            })
            .await;
        to_degraded.push(killed.elapsed());

        zk.start_member(follower).expect("start the follower again");
        let started = Instant::now();
        let base = zk.member(follower).admin_url();
        let serving = tokio::spawn(first_serving(side_client.clone(), base));
        status_loop.until_phase(Phase::Active, PHASE_TIMEOUT).await;
        let active_at = Instant::now();
        start_to_active.push(active_at - started);
        let serving_at = serving.await.expect("the side poller");
        serving_to_active.push(active_at.saturating_duration_since(serving_at));

        random_offset().await;
        zk.kill(leader).expect("kill -9 the leader");
        let killed = Instant::now();
        // The phase when the leader died, and every one shown until DEGRADED.
        let shown_before = status_loop.phases().len().saturating_sub(1);
        status_loop
            .until("DEGRADED under a new leader", PHASE_TIMEOUT, |s| {
                s.summary.phase == Phase::Degraded && leader_index(s).is_some_and(|l| l != leader)
            })
            .await;
        leader_to_degraded.push(killed.elapsed());
        let phases = &status_loop.phases()[shown_before..];
        println!(
            "  repeat {}: follower zk-{follower} and leader zk-{leader} killed; phases after the leader's death: {phases:?}",
            repeat + 1
        );
        zk.start_member(leader).expect("start the old leader again");
    }
    println!(
        "kill -9 follower -> DEGRADED:     {}",
        summary(&to_degraded)
    );
    println!(
        "first serving answer -> ACTIVE:   {}",
        summary(&serving_to_active)
    );
    println!(
        "process start -> ACTIVE:          {}",
        summary(&start_to_active)
    );
    println!(
        "kill -9 leader -> DEGRADED (new): {}",
        summary(&leader_to_degraded)
    );
}
