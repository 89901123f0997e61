//! Issue 15: placement over three nodes and zones, and a node lost, with a client writing.
//!
//! Three nodes (tests/e2e/cluster.sh with ZOOHERD_E2E_NODES=3), each with its own kubelet,
//! containerd, network namespace, zone label and local volumes. First the production example
//! (deploy/examples/five-servers-production.yaml, without its CPU and memory requests, which
//! this machine's nodes cannot all grant) spreads its five servers 2/2/1 over the three zones
//! and at most two per node. Then item 4: `kubectl drain` of each node in turn under a
//! 3-server ensemble, with a client writing: every drain completes, the evicted server comes
//! back on its node (its local volume lives there) once the node is uncordoned, a sampler sees
//! never fewer than a quorum of servers up, no write is lost, and the longest time without an
//! acknowledged write is printed. Last, deploy/examples/three-servers.yaml
//! lands one server per node (the default placement spreads them). Then the node of a server
//! other than the operator's is switched off (node.sh stop: kubelet, containerd and containers
//! killed, network gone): the ensemble shows DEGRADED within seconds; once Kubernetes marks the
//! node NotReady the RestartHeld condition names it, and nothing is deleted (the pod stays, its
//! claim stays). An administrator then confirms the loss with Kubernetes' out-of-service taint,
//! and the operator rebuilds the member on another node (voter removed, claim and pod deleted,
//! the new pod synced on a new local volume and added back): ACTIVE 3/3 again, no acknowledged
//! write lost, and the longest time without one printed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use zooherd::api::{Phase, ZooKeeperEnsemble};

use super::support::local_cluster::{AdminAccess, LocalCluster};
use super::{
    CHANGE_TIMEOUT, FORM_TIMEOUT, Writer, active_3_of_3, drain, events, secs, selector,
    three_servers_active, verify_writes,
};

/// The production example, as a user applies it (less its resources; see the module docs).
const FIVE_SERVERS_EXAMPLE: &str =
    include_str!("../../deploy/examples/five-servers-production.yaml");

/// How long Kubernetes may take to mark a switched-off node NotReady: the node lifecycle
/// controller's grace period (40 s by default) and a margin.
const NOT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Item 5's placement: the production example's five servers over three zones and nodes.
pub async fn five_servers_spread_over_zones(cluster: &LocalCluster, client: &kube::Client) {
    let ns = cluster
        .api()
        .create_namespace(client, "e2e-zones")
        .await
        .unwrap();
    let mut manifest: serde_json::Value = serde_yaml::from_str(FIVE_SERVERS_EXAMPLE).unwrap();
    let spec = manifest["spec"].as_object_mut().expect("spec");
    spec.remove("resources");
    spec.remove("jvm");
    let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let t = Instant::now();
    cluster.apply(&ns, &manifest.to_string());
    cluster
        .wait_status(&ensembles, &name, "ACTIVE 5/5", FORM_TIMEOUT, |s| {
            s.phase == Some(Phase::Active) && s.ready.as_deref() == Some("5/5")
        })
        .await;
    let nodes: Vec<String> = pods
        .list(&ListParams::default().labels(&selector(&name)))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| node_of(p).unwrap_or_default())
        .collect();
    let count = |key: &dyn Fn(&str) -> String| {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for node in &nodes {
            *counts.entry(key(node)).or_default() += 1;
        }
        counts
    };
    let per_node = count(&|node| node.to_owned());
    // cluster.sh labels node 10.212.<i>.2 with zone-<i>.
    let per_zone = count(&|node| format!("zone-{}", node.split('.').nth(2).unwrap_or("?")));
    eprintln!(
        "(zones) five-servers-production.yaml ACTIVE 5/5 after {}: per zone {per_zone:?}, per \
         node {per_node:?}",
        secs(t)
    );
    let mut zone_sizes: Vec<usize> = per_zone.values().copied().collect();
    zone_sizes.sort_unstable();
    assert_eq!(
        zone_sizes,
        [1, 2, 2],
        "not spread 2/2/1 over the zones: {per_zone:?}"
    );
    assert!(
        per_node.values().all(|&n| n <= 2),
        "more than two servers on a node: {per_node:?}"
    );
    cluster.api().delete_namespace(client, &ns).await.unwrap();
}

/// Item 4: drains of every node in turn, each completed and undone before the next.
pub async fn drain_each_node_in_turn(cluster: &LocalCluster, client: &kube::Client) {
    let (ns, ensembles, pods) = three_servers_active(cluster, client, "e2e-drains").await;
    let name = "zk";
    let writer = Writer::start(pods.clone(), selector(name));
    writer.wait_for_writes("before the drains").await;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let admin = AdminAccess::of(client, &ns, name).await;
    let sampler = tokio::spawn(drain::sample(
        admin,
        pods.clone(),
        selector(name),
        2,
        stop.clone(),
        started,
    ));
    for node in ["10.212.0.2", "10.212.1.2", "10.212.2.2"] {
        let t = Instant::now();
        // The servers only: the operator's pods are pinned to node 0 by cluster.sh, and would
        // only wait there for the uncordon.
        let mut drain = cluster.api().kubectl();
        drain
            .args(["drain", node, "--pod-selector", &selector(name)])
            .args(["--delete-emptydir-data", "--timeout=180s"]);
        let out = tokio::task::spawn_blocking(move || drain.output())
            .await
            .unwrap()
            .expect("running kubectl drain");
        assert!(
            out.status.success(),
            "drain of {node}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("(drains) {node} drained in {}", secs(t));
        let out = cluster
            .api()
            .kubectl()
            .args(["uncordon", node])
            .output()
            .expect("running kubectl uncordon");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        active_3_of_3(cluster, &ensembles, name, FORM_TIMEOUT).await;
        eprintln!(
            "(drains) {node} uncordoned; ACTIVE 3/3 {} after the drain began",
            secs(t)
        );
        writer.wait_for_writes("after a drain").await;
    }
    stop.store(true, Ordering::SeqCst);
    let seen = sampler.await.expect("the sampler");
    seen.print_and_check("drains", 2);
    let report = writer.finish().await;
    eprintln!(
        "(drains) {}",
        verify_writes(&pods, &selector(name), &report).await
    );
    cluster.api().delete_namespace(client, &ns).await.unwrap();
}

pub async fn a_lost_node_is_rebuilt_elsewhere(cluster: &LocalCluster, client: &kube::Client) {
    let t = Instant::now();
    let (ns, ensembles, pods) = three_servers_active(cluster, client, "e2e-lost").await;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    let name = "zk";
    eprintln!("(lost node) three-servers.yaml ACTIVE after {}", secs(t));

    // Item 1: the default placement puts the three servers on three nodes.
    let placed: Vec<(String, String)> = pods
        .list(&ListParams::default().labels(&selector(name)))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| (p.name_any(), node_of(p).unwrap_or_default()))
        .collect();
    let nodes: BTreeSet<&String> = placed.iter().map(|(_, node)| node).collect();
    eprintln!("(lost node) placement: {placed:?}");
    assert_eq!(
        nodes.len(),
        3,
        "three servers on fewer than three nodes: {placed:?}"
    );

    // The server on node 2 (the operator runs on node 0) goes with its node.
    let (victim, node) = placed
        .iter()
        .find(|(_, node)| node == "10.212.2.2")
        .cloned()
        .expect("a server on node 2");
    let claim_name = format!("data-{victim}");
    let old_pod = pods.get(&victim).await.unwrap().uid();
    let old_claim = claims.get(&claim_name).await.unwrap().uid();
    let writer = Writer::start(pods.clone(), selector(name));
    writer.wait_for_writes("before the node is lost").await;
    let t = Instant::now();
    cluster.stop_node(2);
    eprintln!("(lost node) node {node} (with {victim}) switched off");
    cluster
        .wait_status(&ensembles, name, "DEGRADED 2/3", CHANGE_TIMEOUT, |s| {
            s.phase == Some(Phase::Degraded) && s.ready.as_deref() == Some("2/3")
        })
        .await;
    eprintln!("(lost node) DEGRADED 2/3 after {}", secs(t));
    let held = cluster
        .wait_status(
            &ensembles,
            name,
            "RestartHeld naming the node",
            NOT_READY_TIMEOUT,
            |s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "RestartHeld" && c.message.contains(&node))
            },
        )
        .await;
    let message = held
        .conditions
        .iter()
        .find(|c| c.type_ == "RestartHeld")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    eprintln!(
        "(lost node) the node NotReady, the restart held after {}: {message}",
        secs(t)
    );
    writer.wait_for_writes("with one node lost").await;
    // Past the restart threshold would be a minute; the point is that nothing was deleted on
    // the operator's own judgement by now, with the node NotReady.
    assert_eq!(
        pods.get(&victim).await.unwrap().uid(),
        old_pod,
        "pod replaced"
    );
    let claim = claims.get(&claim_name).await.unwrap();
    assert_eq!(claim.uid(), old_claim, "claim replaced");
    assert!(claim.metadata.deletion_timestamp.is_none(), "claim deleted");

    // An administrator confirms the node is off for good.
    let confirmed = Instant::now();
    let taint = "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute";
    let out = cluster
        .api()
        .kubectl()
        .args(["taint", "node", &node, taint])
        .output()
        .expect("running kubectl taint");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = active_3_of_3(cluster, &ensembles, name, FORM_TIMEOUT).await;
    let voters = status.membership.as_ref().map(|m| m.voters.clone());
    eprintln!(
        "(lost node) confirmed; ACTIVE 3/3 again {} later, voters {voters:?}",
        secs(confirmed)
    );
    let pod = pods.get(&victim).await.unwrap();
    assert_ne!(pod.uid(), old_pod, "{victim} was not replaced");
    let new_node = node_of(&pod).unwrap_or_default();
    assert_ne!(new_node, node, "{victim} is on the lost node");
    let claim = claims.get(&claim_name).await.unwrap();
    assert_ne!(claim.uid(), old_claim, "{claim_name} was not replaced");
    eprintln!("(lost node) {victim} now on node {new_node}, with a new volume");
    assert_eq!(voters, Some(vec![1, 2, 3]));
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.type_ != "MemberReplacement"),
        "{:?}",
        status.conditions
    );
    let seen: Vec<String> = events(client, &ns, name)
        .await
        .into_iter()
        .map(|(_, reason, _)| reason)
        .collect();
    for reason in ["RemovedVoter", "ReplacingMember", "AddedVoter"] {
        assert!(
            seen.iter().any(|r| r == reason),
            "no {reason} Event: {seen:?}"
        );
    }
    let report = writer.finish().await;
    eprintln!(
        "(lost node) {}",
        verify_writes(&pods, &selector(name), &report).await
    );
    cluster.api().delete_namespace(client, &ns).await.unwrap();
    // The machine is gone: its Node object goes too, as an administrator would remove it.
    Api::<Node>::all(client.clone())
        .delete(&node, &Default::default())
        .await
        .unwrap();
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}
