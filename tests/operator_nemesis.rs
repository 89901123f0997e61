//! Issue 13, item 3: the operator's own disruptions and the operator's faults drawn at random,
//! overlapping with member faults, while the fault tier's workload runs and its history is
//! checked for linearizability and lost acknowledged writes ([`fault::CheckedWorkload`]).
//!
//! The fixed stories of `operator_real_zookeeper.rs` each place one fault at one point of a
//! roll. Here a seeded nemesis draws, round after round, whether a roll runs (a change of
//! `spec.config`) or a scale 3 -> 1 -> 3, 3 -> 5 -> 3 or 3 -> 7 -> 3 (by reconfiguration, one
//! voter at a time), whether an operator fault lands during it (the leading replica killed with
//! SIGKILL, or a replica cut off from the API server and healed), and whether a member fault
//! lands too (`kill -9` of a server, which its container restarts; a freeze past the
//! failed-member threshold, which the operator answers by evicting the pod; or its volume
//! wiped, which its agent refuses to start a voter on, and the operator answers by taking it
//! out of the voters, replacing its pod and adding it back once synced), or, in a round that
//! does not roll, the leader's pod deleted by hand instead. Each draw and its time is printed
//! with the seed; `ZOOHERD_FAULT_SEED=<seed>` replays the draws. After each round the ensemble
//! must come back by itself: ACTIVE 3/3 with voters 1-3, every pod at the StatefulSet's
//! revision. The seed also draws whether the whole run enforces client
//! authentication (SASL), so that the operator's own login is under the same faults
//! ([`ClientAuthDraw`]).
//!
//! There is no kubelet in this cluster (see `operator_real_zookeeper.rs`): a task here plays it
//! ([`Kubelet`]), stopping a server when its pod is deleted and starting one for each new pod,
//! whose pod turns Ready once the server serves (as the agent's readiness probe has it). The
//! pods are bound to two nodes kept Ready by their Leases (`support::node`), so that a
//! deleted pod stays terminating until its server has stopped, as on a real node, and so that a
//! round that rolls may also drain a node ([`drain`]): `kubectl drain`'s evictions racing the
//! operator's, with the PodDisruptionBudget the only thing between them. Each server runs in a
//! network namespace of its own, as in a pod, so it runs as root.

use zooherd_test_support as support;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::control_plane::{ControlPlane, shared};
use support::enforced_sasl::EnforcedSasl;
use support::fault;
use support::kubelet::{
    ensemble_with_superuser_built, mark_ready, refuse_empty_voter, start_empty_observer,
    start_not_ready, start_three_voters,
};
use support::linearizability::generate::Rng;
use support::node::{ReadyNode, finish_deletion};
use support::operator::{Operator, api_server_address, install_crds};
use support::proxy::Proxy;
use support::zookeeper::{ZkEnsemble, ZkEnsembleBuilder};
use tokio::sync::Mutex;
use zooherd::agent::server::read_dynamic_configs;
use zooherd::api::{Phase, ZooKeeperEnsemble};
use zooherd::build::names;
use zooherd::quorum::Myid;
use zooherd::quorum::membership::Membership;

/// Rounds of the nemesis (`ZOOHERD_NEMESIS_ROUNDS`; 6 in the CI profile, about two minutes).
fn rounds() -> u64 {
    std::env::var("ZOOHERD_NEMESIS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// How long an ensemble may take to come back after a round: a Lease taken over after its
/// holder was killed or cut off, a frozen member noticed and evicted, the rest of a roll or a
/// scale. Generous on purpose: a round that takes longer than [`SLOW_ROUND`] is reported with
/// the replicas' logs, and only one that never settles fails. (Before the pods had a node,
/// they went at once when deleted, and rounds of about two minutes happened: the disruption
/// controller, not seeing an evicted pod terminate, kept its eviction in the budget's status
/// for two minutes, and the replacement of the same name inherited it; see
/// `zooherd::controller::budget`.)
const SETTLE: Duration = Duration::from_secs(600);

/// A round longer than this prints the operator replicas' last log lines.
const SLOW_ROUND: Duration = Duration::from_secs(60);

/// Servers prepared: three voters, and four more for a scale to 7.
const SERVERS: usize = 7;

/// Mixed into the seed for the draw of client authentication, so that it does not shift the
/// draws of the rounds (a seed replays the rounds it drew before the draw existed).
const AUTH_DRAW_SALT: u64 = 0x0a07_5a51;

/// Mixed into the seed for each round's draw of a node drain, apart from the rounds' other
/// draws for the same reason.
const DRAIN_DRAW_SALT: u64 = 0x0d4a_1e5d;

/// Mixed into the seed for each round's draw of the leader's pod deleted by hand (`kubectl
/// delete pod`), apart from the rounds' other draws for the same reason.
const LEADER_DELETION_DRAW_SALT: u64 = 0x1ead_de1e;

/// The nodes the pods run on.
const NODES: [&str; 2] = ["nemesis-a", "nemesis-b"];

/// The users Secret of an enforcing run, and its one user.
const USERS_SECRET: &str = "zk-users";
const USER: (&str, &str) = ("kafka", "nemesis-password");

/// Whether a run enforces client authentication, drawn from the seed (printed, so replayed
/// with it) apart from the rounds, which a seed draws as before. Enforced, the servers run as
/// the agent starts them for `clientAuthentication: {saslUsersSecret, enforce: true}` (SASL
/// only, the operator's own user beside the Secret's), the workload logs in as the Secret's
/// user, and every read and change of the membership through the rolls, scales and failovers
/// goes through the operator's own login, which a server refuses to anyone else.
struct ClientAuthDraw {
    enforced: bool,
    servers: EnforcedSasl,
}

impl ClientAuthDraw {
    fn of(seed: u64) -> Self {
        let enforced = Rng::new(seed ^ AUTH_DRAW_SALT).below(2) == 1;
        println!(
            "operator nemesis: client authentication {}",
            if enforced { "enforced (SASL)" } else { "off" }
        );
        ClientAuthDraw {
            enforced,
            servers: EnforcedSasl::new(USER),
        }
    }

    /// The servers, as the agent configures them when the run enforces.
    fn servers(&self, builder: ZkEnsembleBuilder) -> ZkEnsembleBuilder {
        if self.enforced {
            self.servers.servers(builder)
        } else {
            builder
        }
    }

    /// The servers' login file, when the run enforces (once the superuser Secret is there).
    async fn write_login_file(&self, client: &kube::Client, ns: &str) {
        if self.enforced {
            self.servers.write_login_file(client, ns).await;
        }
    }

    /// How the workload's sessions log in.
    fn login(&self) -> Option<fault::SaslLogin> {
        self.enforced
            .then(|| (USER.0.to_owned(), USER.1.to_owned()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_nemesis_of_rolls_scales_operator_faults_and_member_faults_loses_no_write() {
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
    // Seven servers prepared, three started: a scale starts the others it needs.
    // Each server in a network of its own, as a pod is: the operator adds a voter with the
    // client address 0.0.0.0, and on a shared loopback a server whose own line it becomes
    // rebinds its client port there, fails (the others hold 2181 on their addresses) and takes
    // no more clients.
    let auth = ClientAuthDraw::of(seed);
    let mut spec = json!({"replicas": 3, "failedMemberRestart": {"thresholdSeconds": 10}});
    if auth.enforced {
        spec["clientAuthentication"] = json!({"saslUsersSecret": USERS_SECRET, "enforce": true});
        auth.servers
            .create_users_secret(&client, &ns, USERS_SECRET)
            .await;
    }
    let (ensembles, mut zookeeper) =
        ensemble_with_superuser_built(&client, &ns, spec, SERVERS, |builder| {
            auth.servers(builder.member_networks())
        })
        .await;
    auth.write_login_file(&client, &ns).await;
    let pods = start_three_voters(&client, &ns, &mut zookeeper).await;
    // The pods run on nodes, so that they are deleted as a kubelet deletes them.
    let nodes = Arc::new(Nodes::register(&client).await);
    for i in 0..3 {
        nodes.schedulable().bind(&pods, &format!("zk-{i}")).await;
        let bound = pods.get(&format!("zk-{i}")).await.unwrap();
        let on = bound.spec.and_then(|spec| spec.node_name);
        assert!(
            on.as_deref().is_some_and(|on| NODES.contains(&on)),
            "zk-{i}'s node: {on:?}"
        );
    }
    let mut uids = Vec::new();
    for i in 0..SERVERS {
        uids.push(
            pods.get_opt(&format!("zk-{i}"))
                .await
                .unwrap()
                .and_then(|p| p.uid()),
        );
    }
    // The workload's clients reach the three servers that are always there.
    let connect_string = zookeeper.connect_string_of(0..3);
    let zookeeper = Arc::new(Mutex::new(zookeeper));
    let stop = Arc::new(AtomicBool::new(false));
    let deleted = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let kubelet = Kubelet {
        started,
        pods: pods.clone(),
        config_maps: Api::namespaced(client.clone(), &ns),
        sets: Api::namespaced(client.clone(), &ns),
        zookeeper: zookeeper.clone(),
        nodes: nodes.clone(),
        stop: stop.clone(),
        deleted: deleted.clone(),
    };
    let kubelet = tokio::spawn(kubelet.run(uids));
    settled(&ensembles, &client, &ns, &zookeeper).await;
    let workload =
        fault::CheckedWorkload::start_as(&connect_string, auth.login(), "operator-nemesis").await;

    let drawn = std::sync::Mutex::new(std::collections::BTreeMap::<&str, u32>::new());
    let count = |what: &'static str| *drawn.lock().unwrap().entry(what).or_default() += 1;
    let mut windows = Vec::new();
    let mut drain_draws = Rng::new(seed ^ DRAIN_DRAW_SALT);
    let mut deletion_draws = Rng::new(seed ^ LEADER_DELETION_DRAW_SALT);
    // The drain's own client: one that does not retry a 429 by itself (kube's default does,
    // for minutes), so that a refusal of the budget is seen and retried as kubectl does.
    let mut config = cp.config().await;
    config.default_retry = false;
    let evictions = Api::<Pod>::namespaced(kube::Client::try_from(config).unwrap(), &ns);
    for round in 0..rounds() {
        let round_started = workload.clock();
        let at = |what: &str| println!("  {:>6.1} s  {what}", started.elapsed().as_secs_f64());
        println!("round {round}:");
        let deleted_before = deleted.load(Ordering::Relaxed);
        // What the operator does this round: a roll (a new value of a key that rolls every
        // server), a scale 3 -> 1 -> 3, 3 -> 5 -> 3 or 3 -> 7 -> 3, or nothing.
        let disruption_kind = rng.below(4);
        let scale_to: u8 = [1, 5, 7][rng.below(3) as usize];
        let to_one = disruption_kind == 3 && scale_to == 1;
        let disruption = async {
            let patch = |spec: serde_json::Value| {
                let ensembles = ensembles.clone();
                async move {
                    ensembles
                        .patch(
                            "zk",
                            &PatchParams::default(),
                            &Patch::Merge(json!({ "spec": spec })),
                        )
                        .await
                        .unwrap();
                }
            };
            match disruption_kind {
                0 => {}
                1 | 2 => {
                    let value = (100 + round).to_string();
                    patch(json!({"config": {"maxClientCnxns": value}})).await;
                    at(&format!("roll: maxClientCnxns={value}"));
                    count("roll");
                }
                _ => {
                    patch(json!({"replicas": scale_to})).await;
                    at(&format!("scale: 3 -> {scale_to}"));
                    count(match scale_to {
                        1 => "scale 3 -> 1 -> 3",
                        5 => "scale 3 -> 5 -> 3",
                        _ => "scale 3 -> 7 -> 3",
                    });
                    let voters: Vec<i32> = (1..=i32::from(scale_to)).collect();
                    voters_are(&ensembles, &voters).await;
                    at(&format!("scale: voters 1-{scale_to}; {scale_to} -> 3"));
                    patch(json!({"replicas": 3})).await;
                }
            }
        };
        // A node drained while the roll runs (drawn every round, so that the draws that follow
        // do not depend on the round's kind).
        let drains = drain_draws.below(2) == 1 && matches!(disruption_kind, 1 | 2);
        let drain_at = drain_draws.below(8_000);
        // The faults, each at a random time into the round.
        let operator_fault = rng.below(3);
        // Not with a drain: a drain's evictions count on the budget, which counts Ready pods,
        // and here (no readiness probe) a frozen or killed server's pod stays Ready, so the
        // two together would exceed the fault tolerance, which a real node's probe prevents.
        let member_fault = Some(rng.below(4)).filter(|_| !drains).unwrap_or(0);
        // The leader's pod deleted by hand (drawn every round, as the drain), in a round that
        // does not roll, in place of the member fault: a deletion bypasses the budget, so
        // beside a roll step or another member fault it would take two of three servers,
        // beyond the fault tolerance, which no operator can prevent.
        let deletes_leader = deletion_draws.below(2) == 1 && !matches!(disruption_kind, 1 | 2);
        let deletion_at = deletion_draws.below(8_000);
        let member_fault = if deletes_leader { 0 } else { member_fault };
        // One of the three that are always there.
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
                    count("operator: leading replica killed");
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
            let pod = || async {
                pods.get_opt(&format!("zk-{victim}"))
                    .await
                    .unwrap()
                    .and_then(|p| p.uid())
            };
            let running = zookeeper.lock().await.is_running(victim);
            if member_fault != 0 && !running {
                at(&format!(
                    "member: zk-{victim} not running (its pod is replaced)"
                ));
                return;
            }
            match member_fault {
                0 => {}
                1 => {
                    let before = pod().await;
                    zookeeper.lock().await.kill(victim).unwrap();
                    at(&format!("member: kill -9 of zk-{victim}"));
                    count("member: kill -9");
                    // The kubelet restarts the container in place, after a back-off, unless
                    // the pod was deleted meanwhile (then the new pod starts it).
                    tokio::time::sleep(Duration::from_millis(1_000 + frozen_for % 2_000)).await;
                    let same_pod = pod().await == before;
                    let mut zookeeper = zookeeper.lock().await;
                    if same_pod && !zookeeper.is_running(victim) {
                        zookeeper.start_member(victim).unwrap();
                        at(&format!("member: zk-{victim}'s container restarted"));
                    }
                }
                3 => {
                    // The volume lost (a disk replaced, say): the server stops, its data is
                    // gone, and its agent refuses to start it again as a voter. Not during a
                    // 3 -> 1 -> 3 scale: with one or two voters a lost volume is beyond the
                    // fault tolerance (with one, the only copy; with two, the other cannot
                    // commit its removal), which no operator can undo.
                    if to_one {
                        at(&format!(
                            "member: zk-{victim} not wiped: fewer than three voters this round"
                        ));
                        return;
                    }
                    let mut zookeeper = zookeeper.lock().await;
                    let Some(uid) = pod().await.filter(|_| zookeeper.is_running(victim)) else {
                        at(&format!("member: zk-{victim} not running, not wiped"));
                        return;
                    };
                    if zookeeper.member(victim).is_frozen() {
                        zookeeper.kill(victim).unwrap();
                    }
                    zookeeper.stop(victim).unwrap();
                    let _ = std::fs::remove_dir_all(&zookeeper.member(victim).spec().data_dir);
                    let ip = zookeeper.member(victim).ip();
                    // Its pod replaced meanwhile: the kubelet finds the new one's volume empty.
                    let refused = refuse_empty_voter(&pods, victim, &uid, ip).await.is_ok();
                    at(&format!(
                        "member: zk-{victim}'s volume wiped{}",
                        if refused {
                            "; its agent refuses to start it as a voter"
                        } else {
                            " as its pod was replaced"
                        }
                    ));
                    count("member: volume wiped");
                }
                _ => {
                    // Stopped by the kubelet since it was looked at: nothing to freeze.
                    if let Err(error) = zookeeper.lock().await.freeze(victim) {
                        at(&format!("member: zk-{victim} not frozen: {error}"));
                        return;
                    }
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
        let leader_deleted = async {
            if !deletes_leader {
                return;
            }
            tokio::time::sleep(Duration::from_millis(deletion_at)).await;
            let Some(leader) = zookeeper.lock().await.leader().await else {
                at("member: no leader now, no pod deleted");
                return;
            };
            match pods
                .delete(&format!("zk-{leader}"), &Default::default())
                .await
            {
                Ok(_) => {
                    at(&format!("member: the leader's pod zk-{leader} deleted"));
                    count("member: the leader's pod deleted");
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    at(&format!(
                        "member: the leader's pod zk-{leader} gone already"
                    ));
                }
                Err(e) => panic!("deleting zk-{leader}: {e}"),
            }
        };
        let drained = async {
            if drains {
                tokio::time::sleep(Duration::from_millis(drain_at)).await;
                drain(&nodes, &client, &evictions, &at).await;
                count("node drained during the roll");
            }
        };
        futures::join!(disruption, operator, member, drained, leader_deleted);
        replicas.replace_exited();
        let round_began = Instant::now();
        settled(&ensembles, &client, &ns, &zookeeper).await;
        if round_began.elapsed() > SLOW_ROUND {
            at(&format!(
                "slow: settled {:.0} s after the faults ended",
                round_began.elapsed().as_secs_f64()
            ));
            replicas.print_logs();
        }
        windows.push((format!("round {round}"), round_started, workload.clock()));
        at(&format!(
            "settled: ACTIVE 3/3, voters 1-3, at the StatefulSet's revision; {} pods deleted \
             this round",
            deleted.load(Ordering::Relaxed) - deleted_before
        ));
    }
    println!(
        "operator nemesis: {} rounds in {:.0} s, {} pods deleted (roll steps, evictions, \
         scale-downs); drawn: {:?}",
        rounds(),
        started.elapsed().as_secs_f64(),
        deleted.load(Ordering::Relaxed),
        drawn.lock().unwrap()
    );
    workload.finish_with_windows(&windows).await;
    stop.store(true, Ordering::Relaxed);
    kubelet.await.unwrap();
    drop(replicas);
    cp.delete_namespace(&client, &ns).await.unwrap();
    for node in NODES {
        Api::<Node>::all(client.clone())
            .delete(node, &Default::default())
            .await
            .unwrap();
    }
}

/// The nodes, and which one a drain has cordoned.
struct Nodes {
    nodes: Vec<ReadyNode>,
    cordoned: std::sync::Mutex<Option<String>>,
}

impl Nodes {
    async fn register(client: &kube::Client) -> Self {
        let mut nodes = Vec::new();
        for name in NODES {
            nodes.push(ReadyNode::register(client, name).await);
        }
        Nodes {
            nodes,
            cordoned: std::sync::Mutex::new(None),
        }
    }

    /// A node new pods may go to.
    fn schedulable(&self) -> &ReadyNode {
        let cordoned = self.cordoned.lock().unwrap().clone();
        self.nodes
            .iter()
            .find(|node| Some(&node.name) != cordoned.as_ref())
            .expect("two nodes, at most one cordoned")
    }

    /// Marks `node` unschedulable (`Some`), or every node schedulable again (`None`), for the
    /// scheduler and for the kubelet's binding alike.
    async fn cordon(&self, client: &kube::Client, node: Option<&str>) {
        let before =
            std::mem::replace(&mut *self.cordoned.lock().unwrap(), node.map(str::to_owned));
        let (name, unschedulable) = match (node, before) {
            (Some(node), _) => (node.to_owned(), true),
            (None, Some(before)) => (before, false),
            (None, None) => return,
        };
        Api::<Node>::all(client.clone())
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": unschedulable}})),
            )
            .await
            .unwrap();
    }
}

/// `kubectl drain` of the node most of the three servers run on: cordoned, then each of the
/// ensemble's pods on it evicted through the Eviction API, a refusal (the budget's 429)
/// retried every second as kubectl does, until none is left on it; then uncordoned. The
/// operator's roll evicts through the same API meanwhile: the PodDisruptionBudget (one
/// unavailable for three servers) must keep the two from taking two servers at once, which
/// the kubelet's check (several pods replaced at once) and the workload's history would show.
/// The pods here are Ready as soon as their servers start (no readiness probe), so a drain
/// may evict a server while the one before it still syncs: harsher than a real node.
async fn drain(nodes: &Nodes, client: &kube::Client, pods: &Api<Pod>, at: &impl Fn(&str)) {
    let node_of = |pod: Option<Pod>| pod?.spec?.node_name;
    let mut on = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..3 {
        if let Some(node) = node_of(pods.get_opt(&format!("zk-{i}")).await.unwrap()) {
            *on.entry(node).or_default() += 1;
        }
    }
    let Some(node) = on.into_iter().max_by_key(|(_, n)| *n).map(|(node, _)| node) else {
        at("drain: no server's pod on a node");
        return;
    };
    nodes.cordon(client, Some(&node)).await;
    at(&format!("drain: {node} cordoned"));
    let (mut evicted, mut refused) = (0, 0);
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut left = Vec::new();
        for pod in pods.list(&Default::default()).await.unwrap() {
            let terminating = pod.metadata.deletion_timestamp.is_some();
            if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) == Some(&node) && !terminating {
                left.push(pod.name_any());
            }
        }
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drain of {node} did not finish within {SETTLE:?}: {left:?} left, {refused} \
             evictions refused"
        );
        for pod in left {
            match pods.evict(&pod, &Default::default()).await {
                Ok(_) => {
                    evicted += 1;
                    at(&format!("drain: {pod} evicted"));
                }
                Err(kube::Error::Api(e)) if e.code == 429 => refused += 1,
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => panic!("evicting {pod}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    nodes.cordon(client, None).await;
    at(&format!(
        "drain: {node} drained ({evicted} evicted, {refused} evictions refused by the budget) \
         and uncordoned"
    ));
}

/// Waits until the ensemble is ACTIVE with 3 of 3 ready and voters 1-3, not progressing, every
/// pod at the StatefulSet's update revision, and servers 1-3 serving. A timeout names what was
/// still missing.
async fn settled(
    ensembles: &Api<ZooKeeperEnsemble>,
    client: &kube::Client,
    ns: &str,
    zookeeper: &Mutex<ZkEnsemble>,
) {
    let sets = Api::<StatefulSet>::namespaced(client.clone(), ns);
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let missing = || async {
        let Some(status) = ensembles.get("zk").await.unwrap().status else {
            return Some("no status".to_owned());
        };
        let progressing = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Progressing" && c.status != "False");
        let voters = status.membership.as_ref().map(|m| m.voters.clone());
        if status.phase != Some(Phase::Active)
            || status.ready.as_deref() != Some("3/3")
            || voters.as_deref() != Some(&[1, 2, 3][..])
            || progressing.is_some()
        {
            return Some(format!(
                "status {:?} {:?}, voters {voters:?}, progressing {:?}",
                status.phase,
                status.ready,
                progressing.map(|c| &c.message)
            ));
        }
        let revision = sets
            .get("zk")
            .await
            .unwrap()
            .status
            .and_then(|s| s.update_revision);
        for i in 0..3 {
            let pod = pods.get_opt(&format!("zk-{i}")).await.unwrap();
            let at = pod
                .as_ref()
                .and_then(|p| p.labels().get("controller-revision-hash"));
            if revision.is_none() || at != revision.as_ref() {
                return Some(format!("zk-{i} at revision {at:?}, not {revision:?}"));
            }
        }
        let zookeeper = zookeeper.lock().await;
        for i in 0..3 {
            let probe = zookeeper.probe(i).await;
            if !probe.is_serving() {
                return Some(format!("zk-{i} not serving: {probe}"));
            }
        }
        None
    };
    let deadline = Instant::now() + SETTLE;
    while let Some(missing) = missing().await {
        assert!(
            Instant::now() < deadline,
            "the ensemble did not settle within {SETTLE:?}: {missing}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the committed voters are `voters`; a timeout shows the last status.
async fn voters_are(ensembles: &Api<ZooKeeperEnsemble>, voters: &[i32]) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let status = ensembles.get("zk").await.unwrap().status;
        let committed = status.as_ref().and_then(|s| s.membership.as_ref());
        if committed.is_some_and(|m| m.voters == voters) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "voters {voters:?} not committed within {SETTLE:?}; the last status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The kubelet's part, on the nodes. A pod deleted takes its server with it, and is deleted
/// for good once the server has stopped; a new pod is bound to a schedulable node (unless the
/// scheduler was first), its server starts and the pod is bound to it: on its volume if it has
/// one, else (a pod of a scale-up, or one whose claim went with a scale-down) empty, joining
/// with the ConfigMap's membership; the pod turns Ready once the server serves. Fails if two
/// pods within the StatefulSet's replicas are found gone at once: the operator takes one server
/// down at a time, and the next only once it serves again in a Ready pod (a roll step and an
/// eviction of a failed member alike), and a drain's evictions are held back by the budget.
struct Kubelet {
    started: Instant,
    pods: Api<Pod>,
    config_maps: Api<ConfigMap>,
    sets: Api<StatefulSet>,
    zookeeper: Arc<Mutex<ZkEnsemble>>,
    nodes: Arc<Nodes>,
    stop: Arc<AtomicBool>,
    deleted: Arc<AtomicUsize>,
}

impl Kubelet {
    /// Plays the kubelet until stopped; `uids`: the pods' uids the servers run for now.
    async fn run(self, mut uids: Vec<Option<String>>) {
        let Kubelet {
            started,
            pods,
            config_maps,
            sets,
            zookeeper,
            nodes,
            stop,
            deleted,
        } = self;
        let say = |what: String| {
            println!(
                "  {:>6.1} s  kubelet: {what}",
                started.elapsed().as_secs_f64()
            )
        };
        // Pods whose servers started and do not serve yet: Ready once they serve (the
        // agent's readiness probe), which the budget, and so a drain, waits for.
        let mut starting = std::collections::BTreeMap::<usize, (String, Ipv4Addr)>::new();
        while !stop.load(Ordering::Relaxed) {
            for (i, (uid, ip)) in starting.clone() {
                if uids[i].as_ref() != Some(&uid) {
                    starting.remove(&i);
                } else if zookeeper.lock().await.probe(i).await.is_serving() {
                    // Replaced meanwhile: the next pass looks at the new one.
                    let _ = mark_ready(&pods, i, &uid, ip).await;
                    starting.remove(&i);
                    say(format!("zk-{i} serves: its pod Ready"));
                }
            }
            let (mut gone, mut new) = (Vec::new(), Vec::new());
            for (i, known) in uids.iter().enumerate() {
                let pod = pods.get_opt(&format!("zk-{i}")).await.unwrap();
                let uid = pod
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .and_then(|p| p.uid());
                if known.is_some() && uid != *known {
                    gone.push(i);
                }
                if uid.is_some() && uid != *known {
                    new.push(i);
                }
            }
            // Read after the pods: a pod the StatefulSet controller deleted for a scale-down was
            // deleted after its replicas went down, so this sees them down (read before, a
            // scale-down between the two reads kept the claim, and the server came back on it).
            let replicas = sets
                .get("zk")
                .await
                .unwrap()
                .spec
                .and_then(|s| s.replicas)
                .unwrap_or(3) as usize;
            let serving_gone: Vec<_> = gone.iter().filter(|&&i| i < replicas).collect();
            assert!(
                serving_gone.len() <= 1,
                "several pods replaced at once: {serving_gone:?}"
            );
            for &i in &gone {
                let mut zookeeper = zookeeper.lock().await;
                // A frozen JVM ignores SIGTERM until the grace ends: the kubelet's SIGKILL.
                if zookeeper.member(i).is_frozen() {
                    zookeeper.kill(i).unwrap();
                }
                zookeeper.stop(i).unwrap();
                if i >= replicas {
                    // Scaled down: the claim goes with the pod (storage.retention.whenScaled).
                    let _ = std::fs::remove_dir_all(&zookeeper.member(i).spec().data_dir);
                }
                if let Some(uid) = uids[i].take() {
                    finish_deletion(&pods, &format!("zk-{i}"), &uid).await;
                }
                deleted.fetch_add(1, Ordering::Relaxed);
                say(format!("zk-{i}'s pod deleted, its server stopped"));
            }
            for i in new {
                nodes.schedulable().bind(&pods, &format!("zk-{i}")).await;
                let ip = {
                    let mut zookeeper = zookeeper.lock().await;
                    let on_volume = zookeeper
                        .member(i)
                        .spec()
                        .data_dir
                        .join("version-2")
                        .exists();
                    if on_volume && newest_on_volume_lists(&zookeeper, i) {
                        zookeeper.start_member(i).unwrap();
                        say(format!(
                            "zk-{i}'s new pod: its server started on its volume"
                        ));
                    } else if on_volume {
                        // Removed (a scale-down whose claim outlived the pod, the StatefulSet
                        // scaled back up first): it joins as an observer, on its data.
                        start_empty_observer(&mut zookeeper, i);
                        say(format!(
                            "zk-{i}'s new pod: its volume's newest membership does not list it: \
                         its server started on its volume, joining"
                        ));
                    } else if listed_as_voter(&config_maps, i).await {
                        // The agent's rule: once formed, a voter never starts on an empty volume
                        // (it would vote without the data it acknowledged); the operator has to
                        // take it out of the voters first.
                        let ip = zookeeper.member(i).ip();
                        let pod = pods.get_opt(&format!("zk-{i}")).await.unwrap();
                        let Some(uid) = pod.and_then(|p| p.uid()) else {
                            continue;
                        };
                        match refuse_empty_voter(&pods, i, &uid, ip).await {
                            Ok(()) => {
                                say(format!(
                                    "zk-{i}'s new pod: its volume is empty and it is still a voter: \
                                 its agent refuses to start"
                                ));
                                uids[i] = Some(uid);
                            }
                            // Replaced meanwhile: the next pass looks at the new one.
                            Err(_) => uids[i] = None,
                        }
                        continue;
                    } else {
                        start_empty_observer(&mut zookeeper, i);
                        say(format!(
                            "zk-{i}'s new pod: its server started empty, joining"
                        ));
                    }
                    zookeeper.member(i).ip()
                };
                let Some(uid) = pods
                    .get_opt(&format!("zk-{i}"))
                    .await
                    .unwrap()
                    .and_then(|p| p.uid())
                else {
                    continue;
                };
                // Replaced meanwhile: the next pass stops this server and starts the new one.
                if start_not_ready(&pods, i, &uid, ip).await.is_ok() {
                    starting.insert(i, (uid.clone(), ip));
                }
                uids[i] = Some(uid);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether the newest membership ZooKeeper wrote on server `i`'s volume lists it: if not, the
/// agent starts it with the ConfigMap's membership, joining (`choose_membership`).
fn newest_on_volume_lists(zookeeper: &ZkEnsemble, i: usize) -> bool {
    let member = zookeeper.member(i);
    let myid = Myid::try_from(i32::try_from(i + 1).unwrap()).unwrap();
    read_dynamic_configs(member.config_file())
        .unwrap()
        .iter()
        .max_by_key(|m| m.version)
        .is_none_or(|newest| newest.servers.contains_key(&myid))
}

/// Whether the ConfigMap's membership (what a new pod's agent starts with when its volume holds
/// none) lists server `i` (its ordinal) as a voter.
async fn listed_as_voter(config_maps: &Api<ConfigMap>, i: usize) -> bool {
    let data = config_maps.get("zk-config").await.unwrap().data.unwrap();
    let members = Membership::parse(&data[names::MEMBERS_KEY]).unwrap();
    let myid = Myid::try_from(i32::try_from(i + 1).unwrap()).unwrap();
    members.voters().contains(&myid)
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

impl Replicas<'_> {
    /// What the replicas that run last said.
    fn print_logs(&self) {
        for (identity, operator) in [&self.proxied, &self.direct].into_iter().flatten() {
            println!("--- {identity}'s log, last lines:\n{}", operator.log_tail());
        }
    }
}

impl Drop for Replicas<'_> {
    /// On a failure, what the replicas that still run last said.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
    }
}
