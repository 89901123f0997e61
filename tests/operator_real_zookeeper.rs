//! The whole status path, operator binary included, on a real API server and real ZooKeeper:
//! what `kubectl get zke` shows while servers stop, return and freeze.
//!
//! There is no kubelet in this cluster, so the StatefulSet's pods never run. The test plays
//! the kubelet's part: it starts a real 3-server ZooKeeper ensemble on loopback addresses and
//! writes each server's address into the matching pod's status (phase Running, podIP). The
//! operator then finds the servers exactly as in a cluster: through the pods' IPs, probing
//! their AdminServers. When the operator restarts a frozen member it evicts the pod, which is
//! what the test observes (the StatefulSet controller recreates it, without an IP).

use zooherd_test_support as support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::control_plane::shared;
use support::enforced_sasl::EnforcedSasl;
use support::fault;
use support::kubelet::{
    Running, bind_pod, ensemble_with_superuser, ensemble_with_superuser_built, mount_certificates,
    next_replaced, refuse_empty_voter, roll_followers_first, run_ensemble, start_empty_observer,
    start_three_voters,
};
use support::operator::{
    Operator, api_server_address, eventually, install_crds, phase_is, server_image,
    set_image_by_hand, status_where,
};
use support::proxy::Proxy;
use zooherd::api::{MemberState, Phase, ZooKeeperEnsemble, ZooKeeperEnsembleStatus};
use zooherd::build::names;
use zooherd::build::tls::QuorumTls;
use zooherd::quorum::Myid;
use zooherd::quorum::membership::Membership;

/// Two replicas of the operator; the leading one can be killed and replaced by a fresh standby.
struct Replicas<'a> {
    cp: &'a support::control_plane::ControlPlane,
    ns: String,
    running: Vec<(String, Operator)>,
    started: usize,
}

impl<'a> Replicas<'a> {
    fn start(cp: &'a support::control_plane::ControlPlane, ns: &str) -> Self {
        let running = ["replica-a", "replica-b"]
            .iter()
            .map(|identity| (identity.to_string(), Operator::start_as(cp, ns, identity)))
            .collect();
        Replicas {
            cp,
            ns: ns.to_owned(),
            running,
            started: 0,
        }
    }

    /// Kills (SIGKILL: it cannot release the Lease) the replica the Lease names, and starts a
    /// fresh standby in its place; returns the killed one's identity. Right after a kill the
    /// Lease still names the dead replica until a standby takes it over: that is waited for.
    async fn kill_the_leader(&mut self, client: &kube::Client) -> String {
        let leases = Api::<Lease>::namespaced(client.clone(), &self.ns);
        let running = &self.running;
        let position = eventually("a running replica holding the Lease", || async {
            let holder = leases
                .get_opt("zooherd-operator")
                .await
                .unwrap()
                .and_then(|l| l.spec?.holder_identity)?;
            running.iter().position(|(identity, _)| *identity == holder)
        })
        .await;
        let (identity, killed) = self.running.remove(position);
        killed.kill();
        let fresh = format!("replica-fresh-{}", self.started);
        self.started += 1;
        let replica = Operator::start_as(self.cp, &self.ns, &fresh);
        self.running.push((fresh, replica));
        identity
    }
}

/// Waits for an Event of the ensemble's namespace that `check` accepts; returns it.
async fn event_where(events: &Api<Event>, what: &str, check: impl Fn(&Event) -> bool) -> Event {
    eventually(what, || async {
        let list = events.list(&Default::default()).await.unwrap();
        list.items.into_iter().find(|e| check(e))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_follows_a_real_ensemble() {
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "status").await.unwrap();
    let operator = Operator::start(cp, &ns);
    let spec = json!({"replicas": 3, "failedMemberRestart": {"thresholdSeconds": 10}});
    let Running {
        mut zookeeper,
        ensembles,
        pods,
        uids,
    } = run_ensemble(&client, &ns, spec).await;

    // All three serve: ACTIVE, and the leader is the pod of the member that leads.
    let status = status_where(&ensembles, "ACTIVE", phase_is(Phase::Active)).await;
    let leader = zookeeper.leader().await.expect("a leader");
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    assert_eq!(status.quorum, Some(2));
    assert_eq!(status.fault_tolerance, Some(1));
    assert_eq!(status.leader, Some(format!("zk-{leader}")));
    assert!(status.zxid.as_deref().is_some_and(|z| z.starts_with("0x")));
    assert!(status.epoch.is_some());
    let get = cp
        .kubectl()
        .args(["get", "zke", "zk", "-n", &ns, "--no-headers"])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&get.stdout).to_string();
    println!("kubectl get zke: {line}");
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        columns[..4],
        ["zk", "ACTIVE", "3/3", &format!("zk-{leader}")]
    );

    // Stop a follower: DEGRADED, 2/3, no fault tolerance left, a Warning Event.
    let follower = (0..3).find(|&i| i != leader).unwrap();
    zookeeper.stop(follower).unwrap();
    let status = status_where(&ensembles, "DEGRADED", phase_is(Phase::Degraded)).await;
    assert_eq!(status.ready.as_deref(), Some("2/3"));
    assert_eq!(status.fault_tolerance, Some(0));
    let member = &status.members[follower];
    assert_eq!(member.pod, format!("zk-{follower}"));
    assert_eq!(member.state, MemberState::Unreachable, "{member:?}");
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    event_where(&events, "a Warning Event for DEGRADED", |e| {
        e.reason.as_deref() == Some("Degraded") && e.type_.as_deref() == Some("Warning")
    })
    .await;

    // Start it again: ACTIVE.
    zookeeper.start_member(follower).unwrap();
    status_where(&ensembles, "ACTIVE again", phase_is(Phase::Active)).await;

    // Freeze a follower (SIGSTOP): the process is alive but answers nothing. Its pod is on a
    // node that is not Ready: it may still run there, so past the threshold the operator
    // leaves it alone and a condition names the node and what an administrator must confirm.
    let nodes = Api::<Node>::all(client.clone());
    let node = format!("{ns}-lost-node");
    create_node(&nodes, &node).await;
    set_node_ready(&nodes, &node, false).await;
    bind_to_node(&pods, &format!("zk-{follower}"), &node).await;
    zookeeper.freeze(follower).unwrap();
    status_where(&ensembles, "the frozen member unreachable", |s| {
        s.phase == Some(Phase::Degraded) && s.members[follower].state == MemberState::Unreachable
    })
    .await;
    let held = status_where(&ensembles, "a RestartHeld condition", |s| {
        condition(s, "RestartHeld").is_some()
    })
    .await;
    let message = &condition(&held, "RestartHeld").unwrap().message;
    println!("{message}");
    assert!(
        message.contains(&format!(
            "zk-{follower} is unreachable (timed out), but its pod is on node {node}, which is NotReady (Ready=Unknown"
        )) && message.contains("node.kubernetes.io/out-of-service"),
        "{message}"
    );
    // Twice the threshold (10 s): the pod is still the same.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let old_uid = uids[follower].clone();
    let pod = pods.get(&format!("zk-{follower}")).await.unwrap();
    assert_eq!(
        pod.uid().as_deref(),
        Some(old_uid.as_str()),
        "restarted on a NotReady node"
    );
    // The node Ready again: with the others holding the quorum, the operator evicts the pod,
    // and the kubelet (this test) confirms the deletion.
    set_node_ready(&nodes, &node, true).await;
    let name = format!("zk-{follower}");
    eventually("the frozen member's pod evicted", || async {
        let pod = pods.get(&name).await.unwrap();
        pod.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    pods.delete(
        &name,
        &kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    eventually("the frozen member's pod to be deleted", || async {
        let pod = pods.get_opt(&format!("zk-{follower}")).await.unwrap();
        match pod {
            Some(pod) if pod.uid().as_deref() == Some(old_uid.as_str()) => None,
            _ => Some(()),
        }
    })
    .await;
    let status = status_where(&ensembles, "the restart counted", |s| {
        s.members[follower].restarts == 1
    })
    .await;
    assert_eq!(status.phase, Some(Phase::Degraded), "{status:?}");
    eventually("a MemberRestarted Event", || async {
        let list = events.list(&Default::default()).await.unwrap();
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("MemberRestarted")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains(&format!("zk-{follower}")))
            })
            .then_some(())
    })
    .await;

    // Only one member was restarted, and the others kept serving throughout.
    assert!(status.members.iter().filter(|m| m.restarts > 0).count() == 1);
    zookeeper.thaw(follower).unwrap();
    // The recreated pod is bound to the thawed server, as a kubelet would run it: ACTIVE.
    bind_pod(&pods, follower, zookeeper.member(follower).ip()).await;
    status_where(
        &ensembles,
        "ACTIVE after the restart",
        phase_is(Phase::Active),
    )
    .await;

    // A config change rolls the servers: one pod at a time, each only once the ensemble is
    // ACTIVE again, followers first (highest myid first) and the leader last.
    let mut uids = Vec::new();
    for i in 0..3 {
        uids.push(pods.get(&format!("zk-{i}")).await.unwrap().uid().unwrap());
    }
    let leader_before = zookeeper.leader().await.expect("a leader");
    ensembles
        .patch(
            "zk",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"config": {"maxClientCnxns": "100"}}})),
        )
        .await
        .unwrap();
    roll_followers_first(&pods, &mut zookeeper, uids, leader_before).await;
    let status = status_where(&ensembles, "the roll to finish", |s| {
        s.phase == Some(Phase::Active)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Progressing" && c.status == "False")
    })
    .await;
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    // Repeated Events of one reason are aggregated into one Event with a series count.
    eventually("a RollingMember Event", || async {
        let list = events.list(&Default::default()).await.unwrap();
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("RollingMember"))
            .then_some(())
    })
    .await;

    // A hand edit of the pod template is put back, and never rolled out: no pod is replaced.
    let stateful_sets =
        Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns);
    let before = server_image(&stateful_sets.get("zk").await.unwrap());
    let uids_before: Vec<_> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.uid())
        .collect();
    set_image_by_hand(&stateful_sets, "zk").await;
    eventually("the hand-edited image put back", || async {
        (server_image(&stateful_sets.get("zk").await.unwrap()) == before).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let uids_after: Vec<_> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.uid())
        .collect();
    assert_eq!(
        uids_before, uids_after,
        "a pod was replaced after a hand edit"
    );

    drop(operator);
    nodes.delete(&node, &Default::default()).await.unwrap();
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// A Node with no kubelet behind it. It always carries a NoSchedule taint of its own, so that
/// the scheduler places nothing on it: the control plane is shared by the tests, and only the
/// pod this test binds may run there.
async fn create_node(nodes: &Api<Node>, name: &str) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"taints": [{"key": "zooherd.test/no-kubelet", "effect": "NoSchedule"}]},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
}

/// Reports the node Ready, or lost as the node lifecycle controller shows it when the kubelet
/// stops posting (Ready=Unknown, tainted unreachable).
async fn set_node_ready(nodes: &Api<Node>, name: &str, ready: bool) {
    let (status, reason, message) = if ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        )
    };
    let now = jiff::Timestamp::now().to_string();
    let mut taints = vec![json!({"key": "zooherd.test/no-kubelet", "effect": "NoSchedule"})];
    if !ready {
        taints.push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}));
    }
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": taints}})),
        )
        .await
        .unwrap();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{
                "type": "Ready", "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }]}})),
        )
        .await
        .unwrap();
}

/// What the scheduler does: binds a pod to a node.
async fn bind_to_node(pods: &Api<Pod>, pod: &str, node: &str) {
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        pod,
        &PostParams::default(),
        &binding,
    )
    .await
    .unwrap();
}

/// The condition of `type_` in a status.
fn condition<'a>(
    status: &'a ZooKeeperEnsembleStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

fn voters_are(want: &'static [i32]) -> impl Fn(&ZooKeeperEnsembleStatus) -> bool {
    move |s| {
        s.membership
            .as_ref()
            .is_some_and(|m| m.voters == want && m.scaling.is_none())
            && s.phase == Some(Phase::Active)
    }
}

/// The kubelet's part in a 3 -> 5 scale: starts servers 4 and 5 for pods zk-3 and zk-4;
/// returns the status once the operator has added them as voters.
async fn start_servers_4_and_5(
    zookeeper: &mut support::zookeeper::ZkEnsemble,
    pods: &Api<Pod>,
    ensembles: &Api<ZooKeeperEnsemble>,
) -> ZooKeeperEnsembleStatus {
    for i in 3..5 {
        zookeeper.start_member(i).expect("starting a new server");
        bind_pod(pods, i, zookeeper.member(i).ip()).await;
    }
    status_where(
        ensembles,
        "ACTIVE with voters 1-5",
        voters_are(&[1, 2, 3, 4, 5]),
    )
    .await
}

/// Scaling by reconfiguration through the operator: 3 -> 5 (servers started, then added as
/// voters one at a time), 5 -> 3 (voters removed, the leader among them, then the StatefulSet
/// shrunk), a refused 3 -> 1 while a member is down, finished when it is back.
///
/// One liberty of loopback servers: the operator adds a server with the client address every
/// server binds in a pod, `;2181` (all interfaces), and ZooKeeper 3.9 rebinds an added
/// server's client port to the address its committed line names, which a server sharing this
/// machine's port 2181 with the others cannot do: it keeps following and voting, but stops
/// taking clients. The operator reads and changes the membership through the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_scales_by_reconfiguration_and_refuses_to_lose_the_quorum() {
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "scaling").await.unwrap();
    let operator = Operator::start(cp, &ns);
    let (ensembles, mut zookeeper) =
        ensemble_with_superuser(&client, &ns, json!({"replicas": 3}), 5).await;
    let pods = start_three_voters(&client, &ns, &mut zookeeper).await;
    let status = status_where(&ensembles, "ACTIVE with voters 1-3", voters_are(&[1, 2, 3])).await;
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    let version = status.membership.unwrap().version;
    assert!(version.starts_with("0x1"), "{version}");

    // 3 -> 5: the StatefulSet grows; the kubelet (this test) starts the new servers, and the
    // operator adds them as voters once they have synced.
    let patch = |replicas: i32| Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let started = std::time::Instant::now();
    ensembles
        .patch("zk", &PatchParams::default(), &patch(5))
        .await
        .unwrap();
    // The bootstrap membership lists them as observers: they cannot vote until they are added.
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let bootstrap = eventually("a bootstrap membership of 5 servers", || async {
        let mut data = config_maps.get("zk-config").await.unwrap().data?;
        let members = Membership::parse(&data.remove(names::MEMBERS_KEY)?).unwrap();
        (members.servers.len() == 5).then_some(members)
    })
    .await;
    assert_eq!(bootstrap.voters(), Myid::up_to(3).collect());
    assert!(
        bootstrap.servers[&Myid::try_from(5).unwrap()].ends_with(":2888:3888:observer;2181"),
        "{}",
        bootstrap.render()
    );
    let status = start_servers_4_and_5(&mut zookeeper, &pods, &ensembles).await;
    println!("3 -> 5 voters committed after {:?}", started.elapsed());
    assert_eq!(status.ready.as_deref(), Some("5/5"));
    assert_eq!(status.quorum, Some(3));
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    let added = event_where(&events, "an AddedVoter Event", |e| {
        e.reason.as_deref() == Some("AddedVoter")
    })
    .await
    .note
    .unwrap_or_default();
    println!("{added}");
    assert!(
        added.starts_with("adding server 4 as a voter (pod zk-3): committed version 0x"),
        "{added}"
    );

    // Make the leader one of the leaving servers: with equal zxids an election picks the
    // highest myid.
    let mut leader = zookeeper.leader().await.expect("a leader");
    while leader < 3 {
        zookeeper.restart(leader).expect("restart the leader");
        leader = zookeeper
            .wait_for_new_leader(leader, Duration::from_secs(60))
            .await
            .expect("a new leader");
        status_where(&ensembles, "ACTIVE", phase_is(Phase::Active)).await;
    }
    println!("leader before 5 -> 3: zk-{leader}");

    // 5 -> 3: voters 5 then 4 removed, then the StatefulSet shrinks.
    let patch = |replicas: i32| Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let started = std::time::Instant::now();
    ensembles
        .patch("zk", &PatchParams::default(), &patch(3))
        .await
        .unwrap();
    let status = status_where(&ensembles, "ACTIVE with voters 1-3", voters_are(&[1, 2, 3])).await;
    println!("5 -> 3 voters committed after {:?}", started.elapsed());
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    assert_eq!(status.quorum, Some(2));
    let stateful_sets =
        Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns);
    eventually("the StatefulSet at 3 and pods zk-3, zk-4 gone", || async {
        let sts = stateful_sets.get("zk").await.unwrap();
        let three = sts.spec.unwrap().replicas == Some(3);
        let gone = pods.get_opt("zk-3").await.unwrap().is_none()
            && pods.get_opt("zk-4").await.unwrap().is_none();
        (three && gone).then_some(())
    })
    .await;
    println!(
        "5 -> 3 done (StatefulSet shrunk) after {:?}",
        started.elapsed()
    );
    zookeeper.stop(3).unwrap();
    zookeeper.stop(4).unwrap();
    // (Events of one reason are aggregated into one Event with a series count.)
    let removed = event_where(&events, "a RemovedVoter Event", |e| {
        e.reason.as_deref() == Some("RemovedVoter")
    })
    .await
    .note
    .unwrap_or_default();
    println!("{removed}");
    assert!(
        removed.starts_with("removing voter 5 (pod zk-4): committed version 0x"),
        "{removed}"
    );

    // 3 -> 1 with a member down: removing voter 3 would leave 1 of {1, 2} serving.
    zookeeper.stop(1).unwrap();
    status_where(&ensembles, "DEGRADED", phase_is(Phase::Degraded)).await;
    ensembles
        .patch("zk", &PatchParams::default(), &patch(1))
        .await
        .unwrap();
    let status = status_where(&ensembles, "a refused scale", |s| {
        condition(s, "Scaling").is_some_and(|c| c.reason == "ScaleRefused")
    })
    .await;
    let refused = condition(&status, "Scaling").unwrap();
    assert_eq!(
        refused.message,
        "scaling to 1 voters: refused: removing voter 3 would leave voters 1, 2 with 1 serving (1), fewer than their quorum of 2"
    );
    assert_eq!(status.membership.as_ref().unwrap().voters, [1, 2, 3]);
    event_where(&events, "a ScaleRefused Warning Event", |e| {
        e.reason.as_deref() == Some("ScaleRefused") && e.type_.as_deref() == Some("Warning")
    })
    .await;

    // The member back: the scale goes on, to a single voter.
    zookeeper.start_member(1).unwrap();
    let started = std::time::Instant::now();
    let status = status_where(&ensembles, "ACTIVE with voter 1", voters_are(&[1])).await;
    println!(
        "3 -> 1 voters committed {:?} after member 1 returned",
        started.elapsed()
    );
    assert_eq!(status.ready.as_deref(), Some("1/1"));
    assert_eq!(status.leader.as_deref(), Some("zk-0"));
    assert_eq!(
        condition(&status, "Scaling").map(|c| c.status.as_str()),
        Some("False")
    );
    drop(operator);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// Issue 14, item 3, through the operator: with client authentication enforced, a session
/// that has not logged in with SASL is refused every request, the operator's included. The
/// operator logs in as its own user (the agent adds it to the servers' login file, its password
/// the superuser's digest) on pods that run SASL, and so still reads and changes the
/// membership: a 3 -> 5 scale adds two voters by reconfiguration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_authentication_enforced_the_operator_scales_through_its_own_login() {
    use zookeeper_client as zk;
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "sasl").await.unwrap();
    // The servers run as the agent starts them with --sasl-users and --enforce-auth.
    let sasl = EnforcedSasl::new(("kafka", "kafka-secret"));
    sasl.create_users_secret(&client, &ns, "zk-users").await;
    let operator = Operator::start(cp, &ns);
    let spec = json!({
        "replicas": 3,
        "clientAuthentication": {"saslUsersSecret": "zk-users", "enforce": true},
    });
    let (ensembles, mut zookeeper) =
        ensemble_with_superuser_built(&client, &ns, spec, 5, |builder| sasl.servers(builder)).await;
    sasl.write_login_file(&client, &ns).await;

    let pods = start_three_voters(&client, &ns, &mut zookeeper).await;
    let status = status_where(&ensembles, "ACTIVE with voters 1-3", voters_are(&[1, 2, 3])).await;
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    let pod = pods.get("zk-0").await.unwrap();
    assert!(
        pod.annotations()
            .contains_key(names::CLIENT_SASL_ANNOTATION),
        "the pods say they run SASL"
    );

    // Enforced indeed: a session without a login is refused; kafka's is served.
    let servers = zookeeper.connect_string_of(0..3);
    let anonymous = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&servers)
        .await;
    let read = match &anonymous {
        Ok(session) => session.get_children("/").await.map(|_| ()),
        Err(e) => Err(e.clone()),
    };
    assert!(matches!(read, Err(zk::Error::AuthFailed)), "{read:?}");
    let kafka = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_sasl(zk::SaslOptions::digest_md5("kafka", "kafka-secret"))
        .connect(&servers)
        .await
        .expect("kafka logs in");
    kafka.get_children("/").await.expect("kafka reads");

    let started = std::time::Instant::now();
    ensembles
        .patch(
            "zk",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    eventually("pods zk-3 and zk-4", || async {
        let three = pods.get_opt("zk-3").await.unwrap();
        let four = pods.get_opt("zk-4").await.unwrap();
        (three.is_some() && four.is_some()).then_some(())
    })
    .await;
    let status = start_servers_4_and_5(&mut zookeeper, &pods, &ensembles).await;
    println!(
        "3 -> 5 voters committed over SASL after {:?}",
        started.elapsed()
    );
    assert_eq!(status.ready.as_deref(), Some("5/5"));
    drop(kafka);
    drop(operator);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// Issue 20, item 2, through the operator: voter 3's volume comes back empty and its agent
/// refuses to start (exit 82, shown in the pod's container status as the kubelet would). The
/// operator removes it from the voters (the others keep a quorum), evicts its pod so that it
/// starts again with the ConfigMap in which it joins as an observer, and adds it back once it
/// has synced: voters 1-3 and ACTIVE again, the data intact.
///
/// Two replicas of the operator run, and the leading one is killed (SIGKILL) after each step
/// of that flow (item 11): the standby must go on from what it observes, never re-adding the
/// empty server as a voter before it has synced, and never stopping half-way. The fault tier's
/// workload runs throughout ([`fault::CheckedWorkload`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_whose_volume_came_back_empty_rejoins_before_it_votes() {
    use zookeeper_client as zk;
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "emptied").await.unwrap();
    let mut replicas = Replicas::start(cp, &ns);
    let spec = json!({"replicas": 3, "failedMemberRestart": {"thresholdSeconds": 10}});
    let (ensembles, mut zookeeper) = ensemble_with_superuser(&client, &ns, spec, 3).await;
    for i in 0..3 {
        zookeeper.start_member(i).expect("starting a server");
    }
    zookeeper
        .wait_for_all_serving(Duration::from_secs(90))
        .await
        .expect("a quorum");
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    for i in 0..3 {
        bind_pod(&pods, i, zookeeper.member(i).ip()).await;
    }
    status_where(&ensembles, "ACTIVE with voters 1-3", |s| {
        s.phase == Some(Phase::Active) && voters_are(&[1, 2, 3])(s)
    })
    .await;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    eventually("the ConfigMap to say the ensemble formed", || async {
        let data = config_maps.get("zk-config").await.unwrap().data?;
        (data.get(names::FORMED_KEY)? == "true").then_some(())
    })
    .await;
    let cluster = zookeeper.connect_string_of(0..2);
    let writer = zk::Client::connect(&cluster).await.expect("a client");
    let create = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    writer.create("/kept", b"yes", &create).await.unwrap();
    let workload = fault::CheckedWorkload::start(&cluster, "operator-empty-volume").await;

    // Voter 3's volume is lost; its agent refuses to start as a voter, and the kubelet says so.
    zookeeper.stop(2).unwrap();
    let spec = zookeeper.member(2).spec().clone();
    std::fs::remove_dir_all(&spec.data_dir).unwrap();
    let old_uid = pods.get("zk-2").await.unwrap().uid().unwrap();
    refuse_empty_voter(&pods, 2, &old_uid, zookeeper.member(2).ip())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    status_where(&ensembles, "voter 3 removed", |s| {
        s.membership.as_ref().is_some_and(|m| m.voters == [1, 2])
    })
    .await;
    println!("empty voter 3 removed after {:?}", started.elapsed());
    let killed = replicas.kill_the_leader(&client).await;
    println!("killed the leading {killed}");
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    event_where(&events, "a RemovedVoter Event", |e| {
        e.reason.as_deref() == Some("RemovedVoter")
    })
    .await;
    // The ConfigMap now lists 3 as joining, and its refusing pod is replaced.
    let bootstrap = eventually("3 listed as an observer", || async {
        let mut data = config_maps.get("zk-config").await.unwrap().data?;
        let members = Membership::parse(&data.remove(names::MEMBERS_KEY)?).unwrap();
        (members.voters() == Myid::up_to(2).collect()).then_some(members)
    })
    .await;
    assert!(
        bootstrap.servers[&Myid::try_from(3).unwrap()].contains(":observer;"),
        "{}",
        bootstrap.render()
    );
    eventually("the refusing pod to be replaced", || async {
        let pod = pods.get_opt("zk-2").await.unwrap()?;
        (pod.uid().as_deref() != Some(old_uid.as_str())).then_some(())
    })
    .await;
    println!("the refusing pod replaced after {:?}", started.elapsed());
    let killed = replicas.kill_the_leader(&client).await;
    println!("killed the leading {killed}");

    // The kubelet's part: the new pod's server starts empty, joining.
    start_empty_observer(&mut zookeeper, 2);
    bind_pod(&pods, 2, zookeeper.member(2).ip()).await;
    let status = status_where(&ensembles, "ACTIVE with voters 1-3 again", |s| {
        s.phase == Some(Phase::Active) && voters_are(&[1, 2, 3])(s)
    })
    .await;
    println!("voter 3 back after {:?}", started.elapsed());
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    let (data, _) = writer.get_data("/kept").await.unwrap();
    assert_eq!(data, b"yes");
    workload.finish().await;
    drop(replicas);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// Issue 15, item 3: a member on a lost node whose volume lives only there is rebuilt elsewhere,
/// and only once the loss is confirmed. Voter 3's pod runs on a node whose local volume holds
/// its data; the node stops reporting and its server is gone. Nothing is deleted while the node
/// is merely NotReady. Once an administrator taints it `node.kubernetes.io/out-of-service`, the
/// operator removes voter 3 by reconfiguration, deletes its claim and pod, and the new pod
/// (started empty by the test, as the kubelet of another node would) joins and is added back
/// as a voter. The operator leading at the first step is killed on the way. No write is lost:
/// the fault tier's workload runs throughout ([`fault::CheckedWorkload`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_a_lost_node_is_rebuilt_elsewhere_once_the_loss_is_confirmed() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use zookeeper_client as zk;
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "lostnode").await.unwrap();
    let nodes = Api::<Node>::all(client.clone());
    let node = format!("{ns}-node");
    create_node(&nodes, &node).await;
    set_node_ready(&nodes, &node, true).await;
    // The local volume of server 3 (pod zk-2): usable on that node only, bound to its claim.
    let class = format!("{ns}-local");
    let volumes = Api::<PersistentVolume>::all(client.clone());
    let volume_name = format!("{ns}-data-zk-2");
    let volume: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": volume_name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "persistentVolumeReclaimPolicy": "Retain",
            "local": {"path": "/var/lib/zooherd-test"},
            "claimRef": {"namespace": ns, "name": "data-zk-2"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]},
            ]}]}},
        },
    }))
    .unwrap();
    volumes
        .create(&PostParams::default(), &volume)
        .await
        .unwrap();

    let mut replicas = Replicas::start(cp, &ns);
    let spec = json!({
        "replicas": 3,
        "failedMemberRestart": {"thresholdSeconds": 10},
        "storage": {"data": {"size": "1Gi", "storageClassName": class}},
    });
    let (ensembles, mut zookeeper) = ensemble_with_superuser(&client, &ns, spec, 3).await;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    let old_claim = eventually("claim data-zk-2 bound to the local volume", || async {
        let claim = claims.get_opt("data-zk-2").await.unwrap()?;
        (claim.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(claim)
    })
    .await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    eventually("pod zk-2", || async { pods.get_opt("zk-2").await.unwrap() }).await;
    bind_to_node(&pods, "zk-2", &node).await;
    let pods = start_three_voters(&client, &ns, &mut zookeeper).await;
    status_where(&ensembles, "ACTIVE with voters 1-3", voters_are(&[1, 2, 3])).await;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    eventually("the ConfigMap to say the ensemble formed", || async {
        let data = config_maps.get("zk-config").await.unwrap().data?;
        (data.get(names::FORMED_KEY)? == "true").then_some(())
    })
    .await;
    let cluster = zookeeper.connect_string_of(0..2);
    let writer = zk::Client::connect(&cluster).await.expect("a client");
    let create = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    writer.create("/kept", b"yes", &create).await.unwrap();
    let workload = fault::CheckedWorkload::start(&cluster, "operator-lost-node").await;

    // The node stops reporting, and its server with it.
    zookeeper.stop(2).unwrap();
    set_node_ready(&nodes, &node, false).await;
    let old_uid = pods.get("zk-2").await.unwrap().uid().unwrap();
    let held = status_where(&ensembles, "DEGRADED, the restart held for the node", |s| {
        s.phase == Some(Phase::Degraded)
            && condition(s, "RestartHeld").is_some_and(|c| c.message.contains(&node))
    })
    .await;
    let message = &condition(&held, "RestartHeld").unwrap().message;
    assert!(message.contains("zooherd.dev/replaceMember"), "{message}");
    // Past the restart threshold, with the node only NotReady: nothing is deleted.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let pod = pods.get("zk-2").await.unwrap();
    assert_eq!(pod.uid().as_deref(), Some(old_uid.as_str()), "pod replaced");
    assert!(pod.metadata.deletion_timestamp.is_none(), "pod deleted");
    let claim = claims.get("data-zk-2").await.unwrap();
    assert_eq!(claim.uid(), old_claim.uid(), "claim replaced");
    assert!(claim.metadata.deletion_timestamp.is_none(), "claim deleted");
    let status = ensembles.get("zk").await.unwrap().status.unwrap();
    assert_eq!(status.membership.unwrap().voters, [1, 2, 3]);
    assert!(condition(&status_now(&ensembles).await, "MemberReplacement").is_none());

    // An administrator confirms the node is gone (Kubernetes' non-graceful node shutdown).
    let started = std::time::Instant::now();
    let taints = json!([
        {"key": "zooherd.test/no-kubelet", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"},
    ]);
    nodes
        .patch(
            &node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": taints}})),
        )
        .await
        .unwrap();
    let removing = status_where(&ensembles, "voter 3 removed", |s| {
        s.membership.as_ref().is_some_and(|m| m.voters == [1, 2])
    })
    .await;
    println!(
        "lost voter 3 removed {:?} after the confirmation",
        started.elapsed()
    );
    if let Some(c) = condition(&removing, "MemberReplacement") {
        println!("MemberReplacement: {}", c.message);
    }
    let killed = replicas.kill_the_leader(&client).await;
    println!("killed the leading {killed}");
    eventually("claim data-zk-2 to be replaced", || async {
        match claims.get_opt("data-zk-2").await.unwrap() {
            None => Some(()),
            Some(claim) => (claim.uid() != old_claim.uid()).then_some(()),
        }
    })
    .await;
    let new_pod = eventually("pod zk-2 to be replaced", || async {
        let pod = pods.get_opt("zk-2").await.unwrap()?;
        (pod.uid().as_deref() != Some(old_uid.as_str())).then_some(pod)
    })
    .await;
    println!(
        "the claim and the pod replaced {:?} after the confirmation",
        started.elapsed()
    );
    assert_ne!(
        new_pod.spec.as_ref().unwrap().node_name.as_deref(),
        Some(node.as_str()),
        "the new pod is on the lost node"
    );
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    let replacing = event_where(&events, "a ReplacingMember Event", |e| {
        e.reason.as_deref() == Some("ReplacingMember")
    })
    .await;
    println!("Event: {}", replacing.note.unwrap_or_default());

    // Another node's kubelet: the new pod's server starts on an empty volume, joining.
    std::fs::remove_dir_all(&zookeeper.member(2).spec().data_dir).unwrap();
    start_empty_observer(&mut zookeeper, 2);
    bind_pod(&pods, 2, zookeeper.member(2).ip()).await;
    let status = status_where(&ensembles, "ACTIVE with voters 1-3 again", |s| {
        voters_are(&[1, 2, 3])(s) && condition(s, "MemberReplacement").is_none()
    })
    .await;
    println!(
        "voter 3 back {:?} after the confirmation",
        started.elapsed()
    );
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    let (data, _) = writer.get_data("/kept").await.unwrap();
    assert_eq!(data, b"yes");
    workload.finish().await;
    drop(replicas);
    cp.delete_namespace(&client, &ns).await.unwrap();
    nodes.delete(&node, &Default::default()).await.unwrap();
    volumes
        .delete(&volume_name, &Default::default())
        .await
        .unwrap();
}

/// The ensemble's status as it is now.
async fn status_now(ensembles: &Api<ZooKeeperEnsemble>) -> ZooKeeperEnsembleStatus {
    ensembles.get("zk").await.unwrap().status.unwrap()
}

/// Issue 20, item 11: two replicas of the operator, and at every step of a roll the one that
/// leads is killed with SIGKILL (as with its node lost: it cannot release the Lease). The
/// standby takes the Lease over once it expires and goes on from what it observes: one server
/// at a time, followers first, the leader last, and the ensemble ACTIVE at the end.
///
/// Throughout, the fault tier's workload runs and its history is checked
/// ([`fault::CheckedWorkload`]): the roll and the operator's deaths lose no acknowledged write
/// and break no linearizability.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_finishes_though_the_operator_leader_is_killed_at_every_step() {
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "failover").await.unwrap();
    let mut replicas = Replicas::start(cp, &ns);
    let Running {
        mut zookeeper,
        ensembles,
        pods,
        mut uids,
    } = run_ensemble(&client, &ns, json!({"replicas": 3})).await;
    status_where(&ensembles, "ACTIVE", phase_is(Phase::Active)).await;

    let workload =
        fault::CheckedWorkload::start(&zookeeper.connect_string(), "operator-roll").await;
    let leader_before = zookeeper.leader().await.expect("a leader");
    ensembles
        .patch(
            "zk",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"config": {"maxClientCnxns": "100"}}})),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut order = Vec::new();
    while order.len() < 3 {
        let replaced = next_replaced(&pods, &uids, &order).await;
        order.push(replaced);
        // The leading replica dies right after the step; a fresh standby takes its place.
        let identity = replicas.kill_the_leader(&client).await;
        println!(
            "zk-{replaced} replaced after {:?}; killed the leading {identity}",
            started.elapsed()
        );
        // The kubelet's part: the replacement pod's container starts the server again.
        zookeeper.restart(replaced).unwrap();
        uids[replaced] = bind_pod(&pods, replaced, zookeeper.member(replaced).ip()).await;
    }
    let followers: Vec<usize> = (0..3).rev().filter(|&i| i != leader_before).collect();
    assert_eq!(
        order[..2],
        followers[..],
        "followers first, highest myid first"
    );
    assert_eq!(order[2], leader_before, "the leader last");
    let status = status_where(&ensembles, "the roll to finish", |s| {
        s.phase == Some(Phase::Active)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Progressing" && c.status == "False")
    })
    .await;
    println!("roll finished after {:?}", started.elapsed());
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    workload.finish().await;
    drop(replicas);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// Issue 13: a replica cut off from the API server (a partition between it and the control
/// plane, while it still reaches the ZooKeeper servers) disrupts nothing. Replica A reaches the
/// API server through a proxy and leads; a roll starts, and right after its first step A is cut
/// off. Replica B takes the Lease over once A's expires and finishes the roll, one server at a
/// time, followers first. Then the link heals: A, which may still hold what it saw before the
/// cut, must exit without touching a member (no pod replaced after the roll, the voters
/// unchanged). The fault tier's workload runs throughout ([`fault::CheckedWorkload`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_api_server_disrupts_nothing() {
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "cut-off").await.unwrap();
    let proxy = Proxy::start(api_server_address(cp)).await;
    let mut replica_a = Operator::start_through(cp, &ns, "replica-a", proxy.address());
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    let holder = || async {
        leases
            .get_opt("zooherd-operator")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    };
    eventually("replica-a to hold the Lease", || async {
        (holder().await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let replica_b = Operator::start_as(cp, &ns, "replica-b");
    let Running {
        mut zookeeper,
        ensembles,
        pods,
        mut uids,
    } = run_ensemble(&client, &ns, json!({"replicas": 3})).await;
    status_where(&ensembles, "ACTIVE", phase_is(Phase::Active)).await;
    let workload =
        fault::CheckedWorkload::start(&zookeeper.connect_string(), "operator-cut-off").await;

    let leader_before = zookeeper.leader().await.expect("a leader");
    ensembles
        .patch(
            "zk",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"config": {"maxClientCnxns": "100"}}})),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut order = Vec::new();
    while order.len() < 3 {
        let replaced = next_replaced(&pods, &uids, &order).await;
        order.push(replaced);
        if order.len() == 1 {
            proxy.set_cut(true);
            println!(
                "zk-{replaced} replaced after {:?}; replica-a ({:?} holds the Lease) cut off \
                 from the API server",
                started.elapsed(),
                holder().await
            );
        } else {
            println!("zk-{replaced} replaced after {:?}", started.elapsed());
        }
        zookeeper.restart(replaced).unwrap();
        uids[replaced] = bind_pod(&pods, replaced, zookeeper.member(replaced).ip()).await;
    }
    let followers: Vec<usize> = (0..3).rev().filter(|&i| i != leader_before).collect();
    assert_eq!(order[..2], followers[..], "followers first");
    assert_eq!(order[2], leader_before, "the leader last");
    status_where(&ensembles, "the roll to finish", |s| {
        s.phase == Some(Phase::Active)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Progressing" && c.status == "False")
    })
    .await;
    assert_eq!(holder().await.as_deref(), Some("replica-b"));
    println!("roll finished by replica-b after {:?}", started.elapsed());

    proxy.set_cut(false);
    let healed = std::time::Instant::now();
    let exited = loop {
        if let Some(status) = replica_a.exited() {
            break status;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(60),
            "replica-a still runs 60 s after the heal:\n{}",
            replica_a.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "replica-a exited ({exited}) {:?} after the heal",
        healed.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    pods_are_still(&pods, &uids, "after the roll").await;
    status_where(&ensembles, "ACTIVE with voters 1-3", voters_are(&[1, 2, 3])).await;
    workload.finish().await;
    drop(replica_b);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// Issue 20, item 8: a replica that lost the Lease disrupts nothing, even when it has not yet
/// noticed the loss (its lease manager renews only every 10 s). The ensemble is paused while a
/// follower freezes past the restart threshold, another identity takes the Lease (as a standby
/// would after a partition), then the ensemble is resumed: the old holder reconciles at once and
/// decides the restart, but its fence check refuses it, and it exits once it sees the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_the_lease_disrupts_nothing() {
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "fenced").await.unwrap();
    let mut replica = Operator::start_as(cp, &ns, "replica-a");
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    eventually("replica-a to hold the Lease", || async {
        let lease = leases.get_opt("zooherd-operator").await.unwrap()?;
        (lease.spec?.holder_identity.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let Running {
        mut zookeeper,
        ensembles,
        pods,
        uids,
    } = run_ensemble(
        &client,
        &ns,
        json!({"replicas": 3, "failedMemberRestart": {"thresholdSeconds": 10}}),
    )
    .await;
    status_where(&ensembles, "ACTIVE", phase_is(Phase::Active)).await;

    let pause = |paused: bool| Patch::Merge(json!({"spec": {"paused": paused}}));
    ensembles
        .patch("zk", &PatchParams::default(), &pause(true))
        .await
        .unwrap();
    status_where(&ensembles, "the Paused condition", |s| {
        condition(s, "Paused").is_some_and(|c| c.status == "True")
    })
    .await;
    let leader = zookeeper.leader().await.expect("a leader");
    let follower = (0..3).find(|&i| i != leader).unwrap();
    zookeeper.freeze(follower).unwrap();
    status_where(&ensembles, "the frozen member unreachable", |s| {
        s.members[follower].state == MemberState::Unreachable
    })
    .await;
    // Past the threshold: unpaused, this member would be restarted at once.
    tokio::time::sleep(Duration::from_secs(12)).await;

    // Another identity takes the Lease, valid for an hour.
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    leases
        .patch(
            "zooherd-operator",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "holderIdentity": "replica-elsewhere",
                "renewTime": now,
                "acquireTime": now,
                "leaseDurationSeconds": 3600,
            }})),
        )
        .await
        .unwrap();
    ensembles
        .patch("zk", &PatchParams::default(), &pause(false))
        .await
        .unwrap();

    // replica-a reconciles, decides the restart, and its fence refuses it.
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    let refused = event_where(&events, "a ReconcileFailed Event from the fence", |e| {
        e.reason.as_deref() == Some("ReconcileFailed")
            && e.note
                .as_deref()
                .is_some_and(|n| n.contains("no longer holds the leader-election Lease"))
    })
    .await;
    println!("{}", refused.note.unwrap_or_default());
    // It exits once its lease manager sees the loss (within one renewal period, 10 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = replica.exited() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "replica-a still runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("replica-a exited: {exited}");
    assert!(!exited.success());
    let pod = pods.get(&format!("zk-{follower}")).await.unwrap();
    assert_eq!(
        pod.uid().as_deref(),
        Some(uids[follower].as_str()),
        "a replica without the Lease restarted a member"
    );
    zookeeper.thaw(follower).unwrap();
    drop(replica);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// Issue 20, item 11, for scales: 3 -> 5 -> 3 voters, with the leading replica killed after
/// every step (the StatefulSet grown, each voter added, then each voter removed and its server
/// stopped); each time a fresh replica takes over and the scale goes on to the end, one step at a
/// time, with voters and servers agreeing. Throughout, the fault tier's workload runs on voters
/// 1-3 and its history is checked ([`fault::CheckedWorkload`]): the leader's removal by
/// reconfiguration among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_finishes_though_the_operator_leader_is_killed_at_every_step() {
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp
        .create_namespace(&client, "scale-failover")
        .await
        .unwrap();
    let mut replicas = Replicas::start(cp, &ns);
    let (ensembles, mut zookeeper) =
        ensemble_with_superuser(&client, &ns, json!({"replicas": 3}), 5).await;
    let pods = start_three_voters(&client, &ns, &mut zookeeper).await;
    status_where(&ensembles, "ACTIVE with voters 1-3", voters_are(&[1, 2, 3])).await;
    let workload =
        fault::CheckedWorkload::start(&zookeeper.connect_string_of(0..3), "operator-scale").await;
    let stateful_sets =
        Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), &ns);
    // (the StatefulSet's replicas, the recorded voters)
    let step = || async {
        let sts = stateful_sets.get("zk").await.unwrap().spec?.replicas?;
        let voters = ensembles
            .get("zk")
            .await
            .unwrap()
            .status?
            .membership?
            .voters;
        Some((sts, voters))
    };

    let started = std::time::Instant::now();
    for replicas_wanted in [5, 3] {
        ensembles
            .patch(
                "zk",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas_wanted}})),
            )
            .await
            .unwrap();
        let mut seen = eventually("the scale's state", step).await;
        let wanted = (replicas_wanted, (1..=replicas_wanted).collect::<Vec<i32>>());
        let mut steps = 0;
        while seen != wanted {
            steps += 1;
            assert!(steps <= 4, "more than 4 changes: now {seen:?}");
            let next = eventually("the next scale step", || async {
                step().await.filter(|now| *now != seen)
            })
            .await;
            let killed = replicas.kill_the_leader(&client).await;
            println!(
                "{:?}: StatefulSet {} servers, voters {:?}; killed the leading {killed}",
                started.elapsed(),
                next.0,
                next.1
            );
            // Always toward the target, never back (a replica acting on a stale view could).
            let toward = |from: usize, to: usize| {
                let target = wanted.1.len();
                from.abs_diff(target) >= to.abs_diff(target)
            };
            assert!(
                toward(seen.1.len(), next.1.len()) && toward(seen.0 as usize, next.0 as usize),
                "{seen:?} -> {next:?}"
            );
            // The kubelet's part: servers 4 and 5 start when their pods exist.
            if next.0 == 5 && seen.0 == 3 {
                for i in 3..5 {
                    zookeeper.start_member(i).expect("starting a new server");
                    bind_pod(&pods, i, zookeeper.member(i).ip()).await;
                }
            }
            seen = next;
        }
    }
    eventually("pods zk-3 and zk-4 gone", || async {
        let gone = pods.get_opt("zk-3").await.unwrap().is_none()
            && pods.get_opt("zk-4").await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
    zookeeper.stop(3).unwrap();
    zookeeper.stop(4).unwrap();
    let status = status_where(&ensembles, "ACTIVE with voters 1-3", voters_are(&[1, 2, 3])).await;
    println!("3 -> 5 -> 3 finished after {:?}", started.elapsed());
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    workload.finish().await;
    drop(replicas);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// Issue 14, item 2: switching quorum TLS on for a running ensemble takes three rolls, one
/// stage at a time (accepting, connecting, on), and a stage is taken only once every server
/// runs the one before, so that no two running servers are more than one stage apart. The
/// ensemble's Secret with its CA is created before the first server needs it, and the status
/// names the stage and the certificate's expiry. Each replaced pod's server runs its pod's
/// stage with the Secret's certificates, as the operator renders it: from the first TLS stage
/// on, its AdminServer takes only HTTPS with a certificate of the ensemble's CA, so the
/// operator's probes (over HTTPS for the pods of a TLS stage, plain HTTP for the others) must
/// see every server serve before each next stage.
///
/// Two replicas of the operator run, and the leading one is SIGKILLed each time a new stage is
/// configured, in the middle of that stage's roll: a fresh replica must go on from what it
/// observes, never configuring a stage before every server runs the one before. The fault
/// tier's workload runs throughout ([`fault::CheckedWorkload`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_quorum_tls_on_rolls_one_stage_at_a_time_and_a_renewal_rolls_once() {
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "tls").await.unwrap();
    let mut replicas = Replicas::start(cp, &ns);
    let spec = json!({"replicas": 3, "tls": {"quorum": false}});
    let Running {
        mut zookeeper,
        ensembles,
        pods,
        mut uids,
    } = run_ensemble(&client, &ns, spec).await;
    let status = status_where(&ensembles, "ACTIVE", phase_is(Phase::Active)).await;
    assert_eq!(status.quorum_tls.map(|t| t.stage).as_deref(), Some("off"));
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let stage_of = |config_map: &ConfigMap| {
        config_map
            .data
            .as_ref()
            .and_then(|d| d.get(names::QUORUM_TLS_KEY).cloned())
    };
    assert_eq!(
        stage_of(&config_maps.get("zk-config").await.unwrap()).as_deref(),
        Some("off")
    );
    assert!(
        secrets.get_opt("zk-zooherd-tls").await.unwrap().is_none(),
        "no certificates while quorum TLS is off"
    );
    let workload =
        fault::CheckedWorkload::start(&zookeeper.connect_string(), "operator-quorum-tls").await;
    let tls_dir = zookeeper.dir().join("tls");

    ensembles
        .patch(
            "zk",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tls": {"quorum": true}}})),
        )
        .await
        .unwrap();
    // Play the kubelet (start each replaced member's server again) and check, at every
    // sample, that no pod runs a stage more than one away from the configured one.
    let started = std::time::Instant::now();
    let mut configured_stages = vec![QuorumTls::Off];
    loop {
        let configured: QuorumTls = stage_of(&config_maps.get("zk-config").await.unwrap())
            .and_then(|stage| stage.parse().ok())
            .expect("the ConfigMap names a stage");
        if configured_stages.last() != Some(&configured) {
            let killed = replicas.kill_the_leader(&client).await;
            println!(
                "{configured} configured after {:?}; killed the leading {killed}",
                started.elapsed()
            );
            configured_stages.push(configured);
        }
        let mut running = Vec::new();
        for (i, uid) in uids.iter_mut().enumerate() {
            let Some(pod) = pods.get_opt(&format!("zk-{i}")).await.unwrap() else {
                continue;
            };
            let stage: QuorumTls = pod
                .annotations()
                .get(names::QUORUM_TLS_ANNOTATION)
                .map_or(Ok(QuorumTls::Off), |stage| stage.parse())
                .unwrap();
            assert!(
                stage <= configured && configured.toward(false) <= stage,
                "zk-{i} runs {stage} while {configured} is configured"
            );
            running.push(stage);
            if pod.uid().as_ref() != Some(uid) && pod.metadata.deletion_timestamp.is_none() {
                // The new pod's server runs its stage, with the Secret's certificates.
                if stage.uses_certificates() && !tls_dir.exists() {
                    mount_certificates(&secrets, &tls_dir, &mut zookeeper).await;
                }
                zookeeper.stop(i).unwrap();
                zookeeper.configure_quorum_tls(i, stage, &tls_dir).unwrap();
                zookeeper.start_member(i).unwrap();
                *uid = bind_pod(&pods, i, zookeeper.member(i).ip()).await;
            }
        }
        if configured == QuorumTls::On && running == [QuorumTls::On; 3] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "quorum TLS not on after 5 minutes: {configured_stages:?}, pods {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("every server on quorum TLS after {:?}", started.elapsed());
    assert_eq!(
        configured_stages,
        [
            QuorumTls::Off,
            QuorumTls::Accepting,
            QuorumTls::Connecting,
            QuorumTls::On
        ]
    );
    let status = status_where(&ensembles, "quorum TLS on", |s| {
        s.phase == Some(Phase::Active) && s.quorum_tls.as_ref().is_some_and(|t| t.stage == "on")
    })
    .await;
    let not_after = status.quorum_tls.unwrap().certificate_not_after.unwrap().0;
    assert!(not_after > jiff::Timestamp::now(), "{not_after}");
    let secret = secrets.get("zk-zooherd-tls").await.unwrap();
    let keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["ca.crt", "ca.key", "keystore.pem", "tls.crt", "tls.key"]
    );
    // Nothing more to roll: the pods stay.
    tokio::time::sleep(Duration::from_secs(5)).await;
    pods_are_still(&pods, &uids, "again").await;

    // Issue 14, item 4: the servers' certificate comes due for renewal. The operator issued it
    // for five years and reads its expiry from the Secret's annotation: set it to ten days from
    // now, and fail the leading replica over so that the next one reads the Secret afresh.
    let before = secrets.get("zk-zooherd-tls").await.unwrap();
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(240);
    let annotations =
        json!({"metadata": {"annotations": {"zooherd.dev/not-after": soon.to_string()}}});
    secrets
        .patch(
            "zk-zooherd-tls",
            &PatchParams::default(),
            &Patch::Merge(annotations),
        )
        .await
        .unwrap();
    replicas.kill_the_leader(&client).await;
    let renewing = std::time::Instant::now();
    let mut restarts = 0;
    loop {
        let mut renewed = 0;
        for (i, uid) in uids.iter_mut().enumerate() {
            let Some(pod) = pods.get_opt(&format!("zk-{i}")).await.unwrap() else {
                continue;
            };
            if pod.uid().as_ref() != Some(uid) && pod.metadata.deletion_timestamp.is_none() {
                // The kubelet mounts the Secret as it is when the new pod starts.
                mount_certificates(&secrets, &tls_dir, &mut zookeeper).await;
                zookeeper.stop(i).unwrap();
                zookeeper.start_member(i).unwrap();
                *uid = bind_pod(&pods, i, zookeeper.member(i).ip()).await;
                restarts += 1;
            }
            let generation = pod
                .annotations()
                .get(names::CERTIFICATE_GENERATION_ANNOTATION);
            if pod.uid().as_ref() == Some(uid) && generation.map(String::as_str) == Some("1") {
                renewed += 1;
            }
        }
        if renewed == 3 {
            break;
        }
        assert!(
            renewing.elapsed() < Duration::from_secs(300),
            "the servers are not on the renewed certificate after 5 minutes ({renewed} of 3)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "renewal: every server on the renewed certificate after {:?}, {restarts} server restarts",
        renewing.elapsed()
    );
    let after = secrets.get("zk-zooherd-tls").await.unwrap();
    let data = |secret: &Secret, key: &str| secret.data.as_ref().unwrap()[key].0.clone();
    assert_eq!(data(&after, "ca.crt"), data(&before, "ca.crt"), "same CA");
    assert_ne!(data(&after, "tls.crt"), data(&before, "tls.crt"));
    let new_not_after: jiff::Timestamp = after.annotations()["zooherd.dev/not-after"]
        .parse()
        .unwrap();
    assert!(new_not_after > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 1800));
    let certificate = String::from_utf8(data(&after, "tls.crt")).unwrap();
    let shown = tempfile::tempdir().unwrap();
    for key in ["tls.crt", "tls.key"] {
        std::fs::write(shown.path().join(key), data(&after, key)).unwrap();
    }
    for i in 0..3 {
        // The last server restarted may still be starting: asked until it answers.
        let address = format!("{}:{}", zookeeper.member(i).ip(), names::ADMIN_PORT);
        let presented = eventually(&format!("a certificate from {address}"), || async {
            presented_certificate(&address, shown.path())
        })
        .await;
        assert_eq!(
            presented.trim(),
            certificate.trim(),
            "zk-{i}'s AdminServer presents the renewed certificate"
        );
    }
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    event_where(&events, "the CertificateRenewed Event", |e| {
        e.reason.as_deref() == Some("CertificateRenewed")
    })
    .await;
    let status = status_where(&ensembles, "ACTIVE with the new expiry", |s| {
        s.phase == Some(Phase::Active)
            && s.quorum_tls
                .as_ref()
                .and_then(|t| t.certificate_not_after.as_ref())
                .is_some_and(|at| at.0 == new_not_after)
    })
    .await;
    // The CA's expiry too, later than the certificate's (five years and ten, issued together).
    let ca_not_after = status
        .quorum_tls
        .unwrap()
        .ca_not_after
        .expect("caNotAfter")
        .0;
    assert!(
        ca_not_after > new_not_after,
        "{ca_not_after} {new_not_after}"
    );
    // Renewed once: a leader that reads the Secret afresh finds nothing due and rolls nothing.
    replicas.kill_the_leader(&client).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let again = secrets.get("zk-zooherd-tls").await.unwrap();
    assert_eq!(data(&again, "tls.crt"), data(&after, "tls.crt"));
    pods_are_still(&pods, &uids, "after the renewal").await;
    workload.finish().await;
    drop(replicas);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// Asserts that the pods `zk-<i>` are the ones with `uids` (none replaced `when`).
async fn pods_are_still(pods: &Api<Pod>, uids: &[String], when: &str) {
    for (i, uid) in uids.iter().enumerate() {
        let pod = pods.get(&format!("zk-{i}")).await.unwrap();
        assert_eq!(pod.uid().as_ref(), Some(uid), "zk-{i} replaced {when}");
    }
}

/// The certificate (PEM) the TLS server at `address` presents, as `openssl s_client` prints it,
/// showing the certificate `tls.crt` with key `tls.key` in `client` (the AdminServer takes only
/// clients with one of the ensemble's CA); None when it presents none (not listening).
fn presented_certificate(address: &str, client: &std::path::Path) -> Option<String> {
    let output = std::process::Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect", address])
        .arg("-cert")
        .arg(client.join("tls.crt"))
        .arg("-key")
        .arg(client.join("tls.key"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let end_marker = "-----END CERTIFICATE-----";
    let begin = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text.find(end_marker)? + end_marker.len();
    Some(text[begin..end].to_owned())
}
