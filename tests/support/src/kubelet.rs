//! The kubelet's part, played by tests whose control plane has none: the StatefulSet's pods
//! never run, so a test starts real ZooKeeper servers on loopback addresses and writes each
//! server's address into the matching pod's status. When the operator replaces a pod, the test
//! starts the server again and binds the new pod to it.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use zooherd::agent::server::EXIT_EMPTY_VOTER;
use zooherd::api::ZooKeeperEnsemble;

use super::operator::{create_ensemble, eventually};
use super::zookeeper::{ZkEnsemble, ZkEnsembleBuilder, quorum_leader, render_config, server_line};
use zooherd::build::names::server_host;

/// The ensemble `zk` run by real servers: what [`run_ensemble`] started.
pub struct Running {
    pub zookeeper: ZkEnsemble,
    pub ensembles: Api<ZooKeeperEnsemble>,
    pub pods: Api<Pod>,
    /// The pods' uids, by ordinal.
    pub uids: Vec<String>,
}

/// `spec` with quorum TLS off unless it sets `tls`: the servers this kubelet starts run
/// plaintext, as pods without the certificates would (the pods' stage annotation tells the
/// operator how to reach their AdminServers). A test about quorum TLS sets `tls` and plays
/// the certificates' part itself ([`ZkEnsemble::configure_quorum_tls`]).
pub fn plaintext_servers(mut spec: serde_json::Value) -> serde_json::Value {
    if spec.get("tls").is_none() {
        spec["tls"] = json!({"quorum": false});
    }
    spec
}

/// Starts a 3-server ZooKeeper ensemble on loopback and waits until it serves, creates the
/// ensemble `zk` with `spec` in `namespace` (see [`plaintext_servers`]), and binds its pods
/// to the servers.
pub async fn run_ensemble(
    client: &kube::Client,
    namespace: &str,
    spec: serde_json::Value,
) -> Running {
    let spec = plaintext_servers(spec);
    let zookeeper = ZkEnsemble::start(3).expect("starting ZooKeeper");
    zookeeper
        .wait_for_all_serving(Duration::from_secs(60))
        .await
        .expect("a quorum");
    let ensembles = create_ensemble(client, namespace, spec).await;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let mut uids = Vec::new();
    for i in 0..3 {
        uids.push(bind_pod(&pods, i, zookeeper.member(i).ip()).await);
    }
    Running {
        zookeeper,
        ensembles,
        pods,
        uids,
    }
}

/// Plays the kubelet: marks pod `zk-<i>` Running and Ready with the address of ZooKeeper
/// member `i`; returns the pod's uid.
pub async fn bind_pod(pods: &Api<Pod>, i: usize, ip: std::net::Ipv4Addr) -> String {
    bind_named_pod(pods, &format!("zk-{i}"), ip).await
}

/// Plays the kubelet for the pod `name`, as [`bind_pod`] does.
pub async fn bind_named_pod(pods: &Api<Pod>, name: &str, ip: std::net::Ipv4Addr) -> String {
    let name = name.to_owned();
    let pod = eventually(&format!("pod {name}"), || async {
        pods.get_opt(&name).await.unwrap()
    })
    .await;
    running(pods, &name, None, ip, true).await.unwrap();
    pod.uid().unwrap()
}

/// Plays the kubelet for pod `zk-<i>` of uid `uid`, whose server has started at `ip` but may
/// not serve yet: Running, not Ready, as the agent's readiness probe (which waits until the
/// server serves) leaves it; [`mark_ready`] once it serves. Fails with a conflict if the pod
/// was replaced.
pub async fn start_not_ready(
    pods: &Api<Pod>,
    i: usize,
    uid: &str,
    ip: std::net::Ipv4Addr,
) -> Result<(), kube::Error> {
    running(pods, &format!("zk-{i}"), Some(uid), ip, false).await
}

/// Marks pod `zk-<i>` of uid `uid`, running at `ip`, Ready: its server serves. Fails with a
/// conflict if the pod was replaced.
pub async fn mark_ready(
    pods: &Api<Pod>,
    i: usize,
    uid: &str,
    ip: std::net::Ipv4Addr,
) -> Result<(), kube::Error> {
    running(pods, &format!("zk-{i}"), Some(uid), ip, true).await
}

/// The pod `name` Running at `ip`, Ready or not; if `uid` is given, only the pod of that uid.
async fn running(
    pods: &Api<Pod>,
    name: &str,
    uid: Option<&str>,
    ip: std::net::Ipv4Addr,
    ready: bool,
) -> Result<(), kube::Error> {
    let ready = if ready { "True" } else { "False" };
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": uid.map(|uid| json!({"uid": uid})).unwrap_or_else(|| json!({})),
            "status": {
                "phase": "Running",
                "podIP": ip.to_string(),
                "podIPs": [{"ip": ip.to_string()}],
                "conditions": [{"type": "Ready", "status": ready}],
            },
        })),
    )
    .await
    .map(|_| ())
}

/// Plays the kubelet for pod `zk-<i>` (of uid `uid`: the patch fails with a conflict if the pod
/// was replaced) whose agent refused to start a voter on an empty volume: its container exited
/// with [`EXIT_EMPTY_VOTER`] and is in CrashLoopBackOff, the pod not Ready, at address `ip`.
pub async fn refuse_empty_voter(
    pods: &Api<Pod>,
    i: usize,
    uid: &str,
    ip: std::net::Ipv4Addr,
) -> Result<(), kube::Error> {
    pods.patch_status(
        &format!("zk-{i}"),
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"uid": uid},
            "status": {
                "phase": "Running",
                "podIP": ip.to_string(),
                "podIPs": [{"ip": ip.to_string()}],
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{
                    "name": "zookeeper", "image": "zookeeper", "imageID": "", "ready": false,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": EXIT_EMPTY_VOTER, "reason": "Error"}},
                }],
            },
        })),
    )
    .await
    .map(|_| ())
}

/// Waits until a roll replaces one of the pods whose uids are `uids`; returns its ordinal.
/// Fails if several are replaced at once (one server at a time: the next goes only once this
/// one serves again), or if one already in `order` is replaced again.
pub async fn next_replaced(pods: &Api<Pod>, uids: &[String], order: &[usize]) -> usize {
    let replaced = eventually("the roll to replace a pod", || async {
        let mut replaced = Vec::new();
        for (i, uid) in uids.iter().enumerate() {
            let pod = pods.get_opt(&format!("zk-{i}")).await.unwrap();
            if pod.is_none_or(|p| p.uid().as_ref() != Some(uid)) {
                replaced.push(i);
            }
        }
        assert!(
            replaced.len() <= 1,
            "several pods replaced at once: {replaced:?}"
        );
        replaced.first().copied()
    })
    .await;
    assert!(
        !order.contains(&replaced),
        "zk-{replaced} replaced twice: {order:?}"
    );
    replaced
}

/// Follows a roll of the pods whose uids are `uids` to its end, starting each replaced
/// member's server again, and checks its order: followers first (highest myid first), and
/// `leader` (the member that led before the roll) last.
pub async fn roll_followers_first(
    pods: &Api<Pod>,
    zookeeper: &mut ZkEnsemble,
    mut uids: Vec<String>,
    leader: usize,
) {
    let mut order = Vec::new();
    while order.len() < uids.len() {
        let replaced = next_replaced(pods, &uids, &order).await;
        order.push(replaced);
        // The kubelet's part: the replacement pod's container starts the server again.
        zookeeper.restart(replaced).unwrap();
        uids[replaced] = bind_pod(pods, replaced, zookeeper.member(replaced).ip()).await;
    }
    println!("roll order: {order:?} (leader before the roll: zk-{leader})");
    let followers: Vec<usize> = (0..uids.len()).rev().filter(|&i| i != leader).collect();
    assert_eq!(
        order[..followers.len()],
        followers[..],
        "followers first, highest myid first"
    );
    assert_eq!(order.last(), Some(&leader), "the leader last");
}

/// The kubelet's part for the quorum TLS Secret: its files where the servers read them (`dir`),
/// and the test's own way into AdminServers that take only TLS (a client certificate from the
/// Secret's CA, as the operator issues itself one).
pub async fn mount_certificates(
    secrets: &Api<Secret>,
    dir: &std::path::Path,
    zookeeper: &mut ZkEnsemble,
) {
    mount_certificates_of(secrets, "zk", dir, zookeeper).await;
}

/// [`mount_certificates`] for the ensemble `ensemble`.
pub async fn mount_certificates_of(
    secrets: &Api<Secret>,
    ensemble: &str,
    dir: &std::path::Path,
    zookeeper: &mut ZkEnsemble,
) {
    let data = secrets
        .get(&format!("{ensemble}-zooherd-tls"))
        .await
        .unwrap()
        .data
        .unwrap();
    let text = |key: &str| String::from_utf8(data[key].0.clone()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for key in ["ca.crt", "keystore.pem"] {
        std::fs::write(dir.join(key), text(key)).unwrap();
    }
    let admin = zooherd::tls::admin_client(
        &format!("tests/{ensemble}"),
        &text("ca.crt"),
        &text("ca.key"),
        "tests",
        jiff::Timestamp::now(),
    )
    .unwrap();
    zookeeper
        .set_admin_tls(0..zookeeper.size(), &admin)
        .unwrap();
}

/// Creates the ensemble `zk` with `spec` and prepares (without starting) a ZooKeeper
/// ensemble of `size` members for it, the first `spec.replicas` of them its voters: the
/// servers run with the digest of the superuser the operator created, under the names the
/// operator gives them (mapped to their addresses for the JVMs).
pub async fn ensemble_with_superuser(
    client: &kube::Client,
    ns: &str,
    spec: serde_json::Value,
    size: usize,
) -> (Api<ZooKeeperEnsemble>, ZkEnsemble) {
    ensemble_with_superuser_built(client, ns, spec, size, |builder| builder).await
}

/// [`ensemble_with_superuser`], with `customize` applied to the ZooKeeper ensemble's builder
/// (e.g. [`ZkEnsembleBuilder::member_networks`], so that each server has a network of its own,
/// as a pod does).
pub async fn ensemble_with_superuser_built(
    client: &kube::Client,
    ns: &str,
    spec: serde_json::Value,
    size: usize,
    customize: impl FnOnce(ZkEnsembleBuilder) -> ZkEnsembleBuilder,
) -> (Api<ZooKeeperEnsemble>, ZkEnsemble) {
    let voters = spec["replicas"].as_u64().expect("spec.replicas") as usize;
    let ensembles = create_ensemble(client, ns, plaintext_servers(spec)).await;
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns);
    let secret = eventually("the superuser Secret", || async {
        secrets.get_opt("zk-zooherd-superuser").await.unwrap()
    })
    .await;
    let digest = String::from_utf8(secret.data.unwrap()["digest"].0.clone()).unwrap();
    let names_ns = ns.to_owned();
    let builder = ZkEnsemble::builder(size)
        .hostnames(move |myid| server_host("zk", &names_ns, u32::from(myid) - 1, "cluster.local"))
        .reconfig(&digest, voters);
    let zookeeper = customize(builder).prepare().expect("preparing ZooKeeper");
    (ensembles, zookeeper)
}

/// The kubelet's part for voters 1-3 of an ensemble from [`ensemble_with_superuser`]: starts
/// their servers, waits for a quorum, and binds pods zk-0..zk-2 to them.
pub async fn start_three_voters(
    client: &kube::Client,
    ns: &str,
    zookeeper: &mut ZkEnsemble,
) -> Api<Pod> {
    for i in 0..3 {
        zookeeper.start_member(i).expect("starting a server");
    }
    // A quorum of the three voters (the other prepared servers are not members yet).
    zookeeper
        .wait_for(
            "a quorum of voters 1-3",
            Duration::from_secs(90),
            |probes| quorum_leader(&probes[..3]),
        )
        .await
        .expect("a quorum");
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    for i in 0..3 {
        bind_pod(&pods, i, zookeeper.member(i).ip()).await;
    }
    pods
}

/// Starts member `i` with the membership in which a server joins: the ConfigMap's, in this
/// harness's address form, listing it as an observer. On an empty data directory (a rebuilt
/// server), or on its volume when the newest membership there no longer lists it (the agent's
/// rule, `zooherd::agent::server::choose_membership`): the data is kept.
pub fn start_empty_observer(zookeeper: &mut ZkEnsemble, i: usize) {
    let spec = zookeeper.member(i).spec().clone();
    std::fs::create_dir_all(&spec.data_dir).unwrap();
    std::fs::write(spec.data_dir.join("myid"), format!("{}\n", spec.myid)).unwrap();
    std::fs::write(&spec.config_file, render_config(&spec, &[])).unwrap();
    let lines: String = spec
        .servers
        .iter()
        .map(|s| {
            let line = server_line(s);
            let line = if s.myid == spec.myid {
                line.replace(":participant;", ":observer;")
            } else {
                line
            };
            format!("server.{}={line}\n", s.myid)
        })
        .collect();
    std::fs::write(spec.dynamic_config_file.as_ref().unwrap(), lines).unwrap();
    zookeeper.start_member(i).unwrap();
}
