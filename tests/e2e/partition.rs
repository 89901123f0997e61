//! Issue 13: a network partition on a real node. The leader of deploy/examples/three-servers.yaml
//! is cut off from both its peers (every packet between them dropped, in the leader pod's own
//! network namespace) while clients and the operator still reach every pod, as when a switch
//! port or a node's peer link fails.
//!
//! What must happen, by ZooKeeper's design: the two others elect a leader of their own and keep
//! acknowledging writes; the cut-off leader loses its quorum and stops serving (it must not
//! acknowledge anything on its own: that is what a split brain would be); the status shows
//! DEGRADED with the new leader; once the link heals the old leader rejoins as a follower and
//! the status is ACTIVE 3/3, with no restart (the partition is shorter than the restart
//! threshold). Throughout, the sequential writer and the fault tier's workload (blind writes,
//! compare-and-sets and reads, checked for linearizability) run through every server's address.

use std::time::{Duration, Instant};

use zooherd::api::Phase;

use super::support::fault::CheckedWorkload;
use super::support::local_cluster::LocalCluster;
use super::{
    CHANGE_TIMEOUT, Writer, active_3_of_3, assert_not_restarted, connect_string, secs, selector,
    three_servers_active, verify_writes,
};

pub async fn leader_cut_off_from_its_peers(cluster: &LocalCluster, client: &kube::Client) {
    let (ns, ensembles, pods) = three_servers_active(cluster, client, "e2e-partition").await;
    let name = "zk";
    let before = ensembles.get(name).await.unwrap().status.unwrap();
    let leader = before.leader.clone().expect("a leader");
    let leader_uid = pods.get(&leader).await.unwrap().metadata.uid;
    let mut peers = Vec::new();
    for member in before.members.iter().filter(|m| m.pod != leader) {
        let pod = pods.get(&member.pod).await.unwrap();
        peers.push(pod.status.and_then(|s| s.pod_ip).expect("a pod IP"));
    }

    let writer = Writer::start(pods.clone(), selector(name));
    writer.wait_for_writes("before the partition").await;
    let servers = connect_string(&pods, &selector(name)).await;
    let workload = CheckedWorkload::start(&servers, "e2e-partition").await;
    let t = Instant::now();
    cluster.cut_off(&pods, &leader, &peers, true).await;
    eprintln!("(partition) {leader}, the leader, cut off from {peers:?}");
    let during = cluster
        .wait_status(
            &ensembles,
            name,
            "DEGRADED with a new leader",
            CHANGE_TIMEOUT,
            |s| {
                s.phase == Some(Phase::Degraded) && s.leader.as_deref().is_some_and(|l| l != leader)
            },
        )
        .await;
    eprintln!(
        "(partition) DEGRADED {} with {} leading after {}",
        during.ready.as_deref().unwrap_or("?"),
        during.leader.as_deref().unwrap_or("?"),
        secs(t)
    );
    writer
        .wait_for_writes("by the majority during the partition")
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let healed = Instant::now();
    cluster.cut_off(&pods, &leader, &peers, false).await;
    active_3_of_3(cluster, &ensembles, name, CHANGE_TIMEOUT).await;
    eprintln!(
        "(partition) healed after {}: ACTIVE 3/3 {} later",
        secs(t),
        secs(healed)
    );
    let after = pods.get(&leader).await.unwrap();
    assert_eq!(
        after.metadata.uid, leader_uid,
        "the operator replaced {leader} during the partition"
    );
    assert_not_restarted(&after, "through the partition");
    let report = writer.finish().await;
    eprintln!(
        "(partition) {}",
        verify_writes(&pods, &selector(name), &report).await
    );
    workload.finish().await;
    cluster.api().delete_namespace(client, &ns).await.unwrap();
}
