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
//! out of the voters, replacing its pod and adding it back once synced). Each draw and its
//! time is printed with the seed; `ZOOHERD_FAULT_SEED=<seed>` replays the draws. After each round
//! the ensemble must come back by itself: ACTIVE 3/3 with voters 1-3, every pod at the
//! StatefulSet's revision. The seed also draws whether the whole run enforces client
//! authentication (SASL), so that the operator's own login is under the same faults
//! ([`ClientAuthDraw`]).
//!
//! There is no kubelet in this cluster (see `operator_real_zookeeper.rs`): a task here plays it
//! ([`play_kubelet`]), stopping a server when its pod is deleted and starting one for each new
//! pod. The pods are bound to a node kept Ready by its Lease (`support::node`), so that a
//! deleted pod stays terminating until its server has stopped, as on a real node. Each server
//! runs in a network namespace of its own, as in a pod, so it runs as root.

use zooherd_test_support as support;

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
    bind_pod, ensemble_with_superuser_built, refuse_empty_voter, start_empty_observer,
    start_three_voters,
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
    // The pods run on a node, so that they are deleted as a kubelet deletes them.
    let node = Arc::new(ReadyNode::register(&client, "nemesis-node").await);
    for i in 0..3 {
        node.bind(&pods, &format!("zk-{i}")).await;
        let bound = pods.get(&format!("zk-{i}")).await.unwrap();
        let on = bound.spec.and_then(|spec| spec.node_name);
        assert_eq!(on.as_deref(), Some(node.name.as_str()), "zk-{i}'s node");
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
    let kubelet = tokio::spawn(play_kubelet(
        started,
        client.clone(),
        ns.clone(),
        (zookeeper.clone(), node),
        uids,
        stop.clone(),
        deleted.clone(),
    ));
    settled(&ensembles, &client, &ns, &zookeeper).await;
    let workload =
        fault::CheckedWorkload::start_as(&connect_string, auth.login(), "operator-nemesis").await;

    let drawn = std::sync::Mutex::new(std::collections::BTreeMap::<&str, u32>::new());
    let count = |what: &'static str| *drawn.lock().unwrap().entry(what).or_default() += 1;
    let mut windows = Vec::new();
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
        // The faults, each at a random time into the round.
        let operator_fault = rng.below(3);
        let member_fault = rng.below(4);
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
        futures::join!(disruption, operator, member);
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
    Api::<Node>::all(client)
        .delete("nemesis-node", &Default::default())
        .await
        .unwrap();
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

/// The kubelet's part, on `node`. A pod deleted takes its server with it, and is deleted for
/// good once the server has stopped; a new pod is bound to the node, its server starts and the
/// pod is bound to it: on its volume if it has one, else (a pod of a scale-up, or one whose
/// claim went with a scale-down) empty, joining with the ConfigMap's membership. Fails if two
/// pods within the StatefulSet's replicas are found gone at once: the operator takes one server
/// down at a time, and the next only once it serves again in a Ready pod (a roll step and an
/// eviction of a failed member alike).
async fn play_kubelet(
    started: Instant,
    client: kube::Client,
    ns: String,
    (zookeeper, node): (Arc<Mutex<ZkEnsemble>>, Arc<ReadyNode>),
    mut uids: Vec<Option<String>>,
    stop: Arc<AtomicBool>,
    deleted: Arc<AtomicUsize>,
) {
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let sets = Api::<StatefulSet>::namespaced(client, &ns);
    let say = |what: String| {
        println!(
            "  {:>6.1} s  kubelet: {what}",
            started.elapsed().as_secs_f64()
        )
    };
    while !stop.load(Ordering::Relaxed) {
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
            node.bind(&pods, &format!("zk-{i}")).await;
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
            uids[i] = Some(bind_pod(&pods, i, ip).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
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
