//! Issue 13, item 3: the operator's own disruptions and the operator's faults drawn at random,
//! overlapping with member faults, while the fault tier's workload runs and its history is
//! checked for linearizability and lost acknowledged writes ([`fault::CheckedWorkload`]).
//!
//! The fixed stories of `operator_real_zookeeper.rs` each place one fault at one point of a
//! roll. Here a seeded nemesis draws, round after round, whether a roll runs (a change of
//! `spec.config`), whether an operator fault lands during it (the leading replica killed with
//! SIGKILL, or a replica cut off from the API server and healed), and whether a member fault
//! lands too (`kill -9` of a server, which its container restarts, or a freeze past the
//! failed-member threshold, which the operator answers by evicting the pod). Each draw and its
//! time is printed with the seed; `ZOOHERD_FAULT_SEED=<seed>` replays the draws. After each round
//! the ensemble must come back by itself: ACTIVE 3/3, every pod at the StatefulSet's revision.
//!
//! There is no kubelet in this cluster (see `operator_real_zookeeper.rs`): a task here plays it,
//! starting a pod's server again whenever the pod it ran for is deleted, and binding the new
//! pod to it.

use zooherd_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::control_plane::{ControlPlane, shared};
use support::fault;
use support::kubelet::{Running, bind_pod, run_ensemble};
use support::linearizability::generate::Rng;
use support::operator::{Operator, api_server_address, eventually_within, install_crds};
use support::proxy::Proxy;
use support::zookeeper::ZkEnsemble;
use tokio::sync::Mutex;
use zooherd::api::{Phase, ZooKeeperEnsemble};

/// Rounds of the nemesis (`ZOOHERD_NEMESIS_ROUNDS`; 6 in the CI profile, about two minutes).
fn rounds() -> u64 {
    std::env::var("ZOOHERD_NEMESIS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// How long an ensemble may take to come back after a round: a Lease taken over after its
/// holder was killed or cut off, a frozen member noticed and evicted, the rest of a roll.
const SETTLE: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_nemesis_of_rolls_operator_faults_and_member_faults_loses_no_write() {
    let seed = fault::seed();
    println!(
        "operator nemesis: seed {seed} (replay with ZOOHERD_FAULT_SEED={seed}), {} rounds",
        rounds()
    );
    let mut rng = Rng::new(seed);
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "nemesis").await.unwrap();
    let proxy = Proxy::start(api_server_address(cp)).await;
    let mut replicas = Replicas::start(cp, &ns, &proxy);
    let Running {
        zookeeper,
        ensembles,
        pods,
        uids,
    } = run_ensemble(
        &client,
        &ns,
        json!({"replicas": 3, "failedMemberRestart": {"thresholdSeconds": 10}}),
    )
    .await;
    let zookeeper = Arc::new(Mutex::new(zookeeper));
    let stop = Arc::new(AtomicBool::new(false));
    let replaced = Arc::new(AtomicUsize::new(0));
    let kubelet = tokio::spawn(play_kubelet(
        pods.clone(),
        zookeeper.clone(),
        uids,
        stop.clone(),
        replaced.clone(),
    ));
    settled(&ensembles, &client, &ns, &zookeeper).await;
    let connect_string = zookeeper.lock().await.connect_string();
    let workload = fault::CheckedWorkload::start(&connect_string, "operator-nemesis").await;

    let started = Instant::now();
    let drawn = std::sync::Mutex::new(std::collections::BTreeMap::<&str, u32>::new());
    let count = |what: &'static str| *drawn.lock().unwrap().entry(what).or_default() += 1;
    let mut windows = Vec::new();
    for round in 0..rounds() {
        let round_started = workload.clock();
        let at = |what: &str| println!("  {:>6.1} s  {what}", started.elapsed().as_secs_f64());
        println!("round {round}:");
        let replaced_before = replaced.load(Ordering::Relaxed);
        // A roll in most rounds: a new value of a key that rolls every server.
        if rng.chance(0.75) {
            let value = (100 + round).to_string();
            ensembles
                .patch(
                    "zk",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"config": {"maxClientCnxns": value}}})),
                )
                .await
                .unwrap();
            at(&format!("roll: maxClientCnxns={value}"));
            count("roll");
        }
        // The faults, each at a random time into the round.
        let operator_fault = rng.below(3);
        let member_fault = rng.below(3);
        let victim = rng.below(3) as usize;
        let (operator_at, member_at) = (rng.below(8_000), rng.below(8_000));
        let (cut_for, frozen_for) = (3_000 + rng.below(9_000), 2_000 + rng.below(20_000));
        let operator = async {
            tokio::time::sleep(Duration::from_millis(operator_at)).await;
            match operator_fault {
                0 => {}
                1 => {
                    let killed = replicas.kill_the_leader(&client).await;
                    at(&format!(
                        "operator: SIGKILL of the leading replica {killed}"
                    ));
                }
                _ => {
                    proxy.set_cut(true);
                    at("operator: the proxied replica cut off from the API server");
                    count("operator: replica cut off from the API server");
                    tokio::time::sleep(Duration::from_millis(cut_for)).await;
                    proxy.set_cut(false);
                    at("operator: healed");
                }
            }
        };
        let member = async {
            tokio::time::sleep(Duration::from_millis(member_at)).await;
            match member_fault {
                0 => {}
                1 => {
                    zookeeper.lock().await.kill(victim).unwrap();
                    at(&format!("member: kill -9 of zk-{victim}"));
                    count("member: kill -9");
                    // The kubelet restarts the container in place, after a back-off.
                    tokio::time::sleep(Duration::from_millis(1_000 + frozen_for % 2_000)).await;
                    let mut zookeeper = zookeeper.lock().await;
                    if !zookeeper.is_running(victim) {
                        zookeeper.start_member(victim).unwrap();
                        at(&format!("member: zk-{victim}'s container restarted"));
                    }
                }
                _ => {
                    zookeeper.lock().await.freeze(victim).unwrap();
                    at(&format!(
                        "member: zk-{victim} frozen (SIGSTOP) for {:.1} s",
                        frozen_for as f64 / 1000.0
                    ));
                    count("member: frozen");
                    tokio::time::sleep(Duration::from_millis(frozen_for)).await;
                    let mut zookeeper = zookeeper.lock().await;
                    // Evicted meanwhile: the kubelet already started its server again.
                    if zookeeper.member(victim).is_frozen() {
                        zookeeper.thaw(victim).unwrap();
                        at(&format!("member: zk-{victim} thawed"));
                    }
                }
            }
        };
        futures::join!(operator, member);
        replicas.replace_exited();
        settled(&ensembles, &client, &ns, &zookeeper).await;
        windows.push((format!("round {round}"), round_started, workload.clock()));
        at(&format!(
            "settled: ACTIVE 3/3 at the StatefulSet's revision; {} pods replaced this round",
            replaced.load(Ordering::Relaxed) - replaced_before
        ));
    }
    println!(
        "operator nemesis: {} rounds in {:.0} s, {} pods replaced (rolls and evictions); drawn: {:?}",
        rounds(),
        started.elapsed().as_secs_f64(),
        replaced.load(Ordering::Relaxed),
        drawn.lock().unwrap()
    );
    workload.finish_with_windows(&windows).await;
    stop.store(true, Ordering::Relaxed);
    kubelet.await.unwrap();
    drop(replicas);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// Waits until the ensemble is ACTIVE with 3 of 3 ready, not progressing, every pod at the
/// StatefulSet's update revision, and every server serving.
async fn settled(
    ensembles: &Api<ZooKeeperEnsemble>,
    client: &kube::Client,
    ns: &str,
    zookeeper: &Mutex<ZkEnsemble>,
) {
    let sets = Api::<StatefulSet>::namespaced(client.clone(), ns);
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    eventually_within(
        "the ensemble to settle",
        SETTLE,
        Duration::from_millis(500),
        || async {
            let ensemble = ensembles.get("zk").await.unwrap();
            let status = ensemble.status?;
            let progressing = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Progressing" && c.status != "False");
            if status.phase != Some(Phase::Active)
                || status.ready.as_deref() != Some("3/3")
                || progressing
            {
                return None;
            }
            let revision = sets.get("zk").await.unwrap().status?.update_revision?;
            for i in 0..3 {
                let pod = pods.get_opt(&format!("zk-{i}")).await.unwrap()?;
                if pod.labels().get("controller-revision-hash") != Some(&revision) {
                    return None;
                }
            }
            let probes = zookeeper.lock().await.probe_all().await;
            probes.iter().all(|p| p.is_serving()).then_some(())
        },
    )
    .await;
}

/// The kubelet's part: whenever the pod a server ran for is deleted, its server stops and
/// starts again for the new pod, which is bound to it. Fails if two pods are found replaced at
/// once: the operator takes one server down at a time, and the next only once it serves again
/// in a Ready pod (a roll step and an eviction of a failed member alike).
async fn play_kubelet(
    pods: Api<Pod>,
    zookeeper: Arc<Mutex<ZkEnsemble>>,
    mut uids: Vec<String>,
    stop: Arc<AtomicBool>,
    replaced: Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut gone = Vec::new();
        for (i, uid) in uids.iter().enumerate() {
            let pod = pods.get_opt(&format!("zk-{i}")).await.unwrap();
            if pod.is_none_or(|p| p.uid().as_ref() != Some(uid)) {
                gone.push(i);
            }
        }
        assert!(gone.len() <= 1, "several pods replaced at once: {gone:?}");
        for i in gone {
            let ip = {
                let mut zookeeper = zookeeper.lock().await;
                // A frozen JVM ignores SIGTERM until the grace ends: the kubelet's SIGKILL.
                if zookeeper.member(i).is_frozen() {
                    zookeeper.kill(i).unwrap();
                }
                zookeeper.stop(i).unwrap();
                zookeeper.start_member(i).unwrap();
                zookeeper.member(i).ip()
            };
            uids[i] = bind_pod(&pods, i, ip).await;
            replaced.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two replicas of the operator: one reaching the API server through the proxy (the one a cut
/// isolates), one directly. A killed or exited one is replaced by a fresh one of its kind.
struct Replicas<'a> {
    cp: &'a ControlPlane,
    ns: String,
    proxy: std::net::SocketAddr,
    proxied: Option<(String, Operator)>,
    direct: Option<(String, Operator)>,
    started: usize,
}

impl<'a> Replicas<'a> {
    fn start(cp: &'a ControlPlane, ns: &str, proxy: &Proxy) -> Self {
        let mut replicas = Replicas {
            cp,
            ns: ns.to_owned(),
            proxy: proxy.address(),
            proxied: None,
            direct: None,
            started: 0,
        };
        replicas.replace_exited();
        replicas
    }

    /// Starts a fresh replica in place of each one that is gone (killed, or exited: a replica
    /// that finds it lost its Lease exits).
    fn replace_exited(&mut self) {
        for proxied in [true, false] {
            let slot = if proxied {
                &mut self.proxied
            } else {
                &mut self.direct
            };
            if let Some((identity, operator)) = slot.as_mut()
                && let Some(status) = operator.exited()
            {
                println!("  replica {identity} exited ({status})");
                *slot = None;
            }
            if slot.is_none() {
                let identity = format!(
                    "replica-{}-{}",
                    if proxied { "proxied" } else { "direct" },
                    self.started
                );
                self.started += 1;
                let operator = if proxied {
                    Operator::start_through(self.cp, &self.ns, &identity, self.proxy)
                } else {
                    Operator::start_as(self.cp, &self.ns, &identity)
                };
                *slot = Some((identity, operator));
            }
        }
    }

    /// Kills (SIGKILL) the replica the Lease names, if one of these does, and starts a fresh
    /// one of its kind; returns what was killed.
    async fn kill_the_leader(&mut self, client: &kube::Client) -> String {
        let leases = Api::<Lease>::namespaced(client.clone(), &self.ns);
        let holder = leases
            .get_opt("zooherd-operator")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity);
        let mut killed = None;
        for slot in [&mut self.proxied, &mut self.direct] {
            if slot.as_ref().map(|(identity, _)| identity) == holder.as_ref() {
                let (identity, operator) = slot.take().unwrap();
                operator.kill();
                killed = Some(identity);
            }
        }
        self.replace_exited();
        killed.unwrap_or_else(|| format!("none (the Lease names {holder:?}, no running replica)"))
    }
}
