//! Issue 20, item 3: a `kubectl drain` racing a roll never takes a second server.
//!
//! The roll (an image change on three-servers.yaml) replaces one server at a time through the
//! Eviction API; a drain of the node, started as soon as the roll has taken its first server,
//! evicts through the same API. The PodDisruptionBudget (one unavailable for 3 servers) is the
//! only thing that keeps the two from taking two servers at once: it must refuse the drain (or
//! the roll) while one server is away. The node stays cordoned, so the first server taken does
//! not come back until the test uncordons it; meanwhile the other two must keep serving and
//! acknowledging writes. Then the roll must finish by itself.
//!
//! A sampler asks every server's AdminServer (`srvr`) five times a second: "up" is a server
//! that answers at all, "serving" one that answers as leader or follower. Up never drops below
//! the quorum. Serving drops below it during an election: when the roll replaces the leader
//! (its last step, after the uncordon), or if the drain itself evicted the leader while the
//! budget allowed it (the roll's first server back before the cordon); the sampler prints when.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use zooherd::api::Phase;

use super::support::local_cluster::{AdminAccess, LocalCluster};
use super::{
    Writer, assert_not_restarted, events, secs, selector, three_servers_active, verify_writes,
};

/// The node the single-node cluster runs (tests/e2e/node.sh: node 0).
const NODE: &str = "10.212.0.2";

/// What the sampler saw: the fewest servers up and serving at once, and when.
#[derive(Debug, Default)]
pub(super) struct Availability {
    pub samples: u64,
    pub fewest_up: usize,
    pub fewest_serving: usize,
    /// Samples with fewer than a quorum serving: seconds since the image change, and how many.
    pub below_quorum: Vec<(f64, usize)>,
}

impl Availability {
    /// Prints what the sampler saw, as the story `story`; fails if fewer than `quorum` servers
    /// were ever up at once.
    pub fn print_and_check(&self, story: &str, quorum: usize) {
        eprintln!(
            "({story}) {} samples: fewest up {}, fewest serving {}; below a quorum serving at \
             {:?} (s, serving)",
            self.samples, self.fewest_up, self.fewest_serving, self.below_quorum
        );
        assert!(
            self.fewest_up >= quorum,
            "fewer than a quorum of servers were up at once: {self:?}"
        );
    }
}

/// Samples every server of the ensemble until `stop`; see the module docs. `quorum`: how many
/// must serve.
pub(super) async fn sample(
    admin: AdminAccess,
    pods: Api<Pod>,
    selector: String,
    quorum: usize,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Availability {
    let mut seen = Availability {
        fewest_up: usize::MAX,
        fewest_serving: usize::MAX,
        ..Availability::default()
    };
    while !stop.load(Ordering::SeqCst) {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("listing pods");
        let ips: Vec<String> = list
            .items
            .iter()
            .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
            .collect();
        let answers = futures::future::join_all(ips.iter().map(|ip| admin.srvr(ip))).await;
        let up = answers
            .iter()
            .filter(|a| !a.starts_with("unreachable"))
            .count();
        let serving = answers
            .iter()
            .filter(|a| {
                serde_json::from_str::<serde_json::Value>(a).is_ok_and(|v| {
                    matches!(
                        v["server_stats"]["server_state"].as_str(),
                        Some("leader" | "follower")
                    )
                })
            })
            .count();
        seen.samples += 1;
        seen.fewest_up = seen.fewest_up.min(up);
        seen.fewest_serving = seen.fewest_serving.min(serving);
        if serving < quorum {
            seen.below_quorum
                .push((started.elapsed().as_secs_f64(), serving));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen
}

pub(super) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `kubectl drain` of the node for the ensemble's pods only (the operator's own pod and the
/// node's system pods stay), giving up after `timeout`.
fn drain_command(cluster: &LocalCluster, selector: &str, timeout: Duration) -> Command {
    let mut kubectl = cluster.api().kubectl();
    kubectl
        .args(["drain", NODE, "--pod-selector", selector])
        // The servers' emptyDir volumes (scratch space) go with their pods, as in any drain.
        .arg("--delete-emptydir-data")
        .arg(format!("--timeout={}s", timeout.as_secs()));
    kubectl
}

/// Runs a command to its end: its exit status and output.
fn run(mut command: Command) -> (bool, String) {
    super::support::outcome(&command.output().expect("running kubectl drain"))
}

pub async fn drain_during_a_roll(cluster: &LocalCluster, client: &kube::Client) {
    let (ns, ensembles, pods) = three_servers_active(cluster, client, "e2e-drain").await;
    let name = "zk";

    let writer = Writer::start(pods.clone(), selector(name));
    writer.wait_for_writes("before the roll").await;
    let image = cluster.server_image();
    let rolled = format!("{image}-drained");
    cluster.tag_image(&image, &rolled);
    let t = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let admin = AdminAccess::of(client, &ns, name).await;
    let sampler = tokio::spawn(sample(
        admin,
        pods.clone(),
        selector(name),
        2,
        stop.clone(),
        t,
    ));
    ensembles
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": rolled}})),
        )
        .await
        .unwrap();
    // The roll has taken its first server: drain now.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events(client, &ns, name)
        .await
        .iter()
        .any(|(_, reason, _)| reason == "RollingMember")
    {
        assert!(Instant::now() < deadline, "the roll did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("(drain) roll's first step after {}; draining", secs(t));
    let drain = drain_command(cluster, &selector(name), Duration::from_secs(30));
    let drained = tokio::task::spawn_blocking(move || run(drain));
    // While the drain is refused, the two servers left keep serving.
    writer
        .wait_for_writes("while the drain is refused: the other two must serve")
        .await;
    let (completed, output) = drained.await.expect("the drain task");
    eprintln!("(drain) drain gave up after {}", secs(t));
    assert!(
        !completed && output.contains("disruption budget"),
        "the drain should have been refused by the PodDisruptionBudget while a server was \
         away, and given up:\n{output}"
    );
    writer
        .wait_for_writes("after the drain gave up: the other two must serve")
        .await;

    cluster.set_schedulable(true);
    eprintln!("(drain) uncordoned after {}", secs(t));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = pods
            .list(&ListParams::default().labels(&selector(name)))
            .await
            .unwrap();
        // Ready too: a pod just recreated has the new image before its server has even
        // started, while the status still shows the ACTIVE 3/3 of before its eviction.
        let all_rolled = list.items.len() == 3
            && list.items.iter().all(|p| {
                p.spec.as_ref().map(|s| s.containers[0].image.as_deref()) == Some(Some(&rolled))
                    && p.metadata.deletion_timestamp.is_none()
                    && is_ready(p)
            });
        let status = ensembles.get(name).await.unwrap().status.unwrap();
        if all_rolled
            && status.phase == Some(Phase::Active)
            && status.ready.as_deref() == Some("3/3")
        {
            for pod in &list.items {
                assert_not_restarted(pod, "during the drain and the roll");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the roll did not finish after the uncordon: {status:?}\n{}",
            cluster.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "(drain) uncordoned; roll finished, ACTIVE 3/3 after {}",
        secs(t)
    );
    stop.store(true, Ordering::SeqCst);
    let seen = sampler.await.expect("the sampler");
    seen.print_and_check("drain", 2);
    let report = writer.finish().await;
    eprintln!(
        "(drain) {}",
        verify_writes(&pods, &selector(name), &report).await
    );
    cluster.api().delete_namespace(client, &ns).await.unwrap();
}
