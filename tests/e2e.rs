//! End to end: the seed walkthroughs on a node that really runs the pods.
//!
//! A local cluster (tests/e2e/cluster.sh: control plane, a kubelet with containerd, the operator
//! installed by Helm) runs ensembles made from the repository's example manifests, and the
//! test does to the servers what the seed walkthroughs do: stop one, stop the leader, kill -9,
//! freeze. It reads what a user reads (`.status`, `kubectl get zke`, Events), and a ZooKeeper
//! client writes sequential znodes all along: every write the ensemble acknowledged must be
//! there at the end.
//!
//! "Stop a server" is `kubectl delete pod` on a cordoned node: the server shuts down and its pod
//! stays Pending until the node is uncordoned, which is the start. "kill -9" signals the JVM
//! itself while the kubelet is held, so nothing restarts it until the walkthrough brings the
//! servers back.
//!
//! Then the day-2 stories of issue 8, with the writer too: an image change rolled over 5 servers
//! (followers first, the leader last; beside the writer, issue 13's checked workload through the
//! servers' names, which follow the new pods' IPs) and scaling 3 -> 5 -> 3 -> 1 -> 3 by
//! reconfiguration.
//! Last, issue 20's drain story (tests/e2e/drain.rs): `kubectl drain` of the node while a roll
//! has a server away is refused by the PodDisruptionBudget, and the roll finishes after the
//! uncordon, with never fewer than a quorum of servers up. Then issue 13's partition
//! (tests/e2e/partition.rs): the leader cut off from its peers in its own network namespace; the
//! others elect a leader and keep acknowledging writes, the status shows DEGRADED, and after the
//! heal ACTIVE 3/3 with no restart, the fault tier's workload linearizable throughout. Then
//! issue 14's client authentication (tests/e2e/client_auth.rs): SASL users from a Secret, then
//! enforced, each a roll with a writer through it (anonymous, then logged in; every operator
//! replica SIGKILLed in the middle of the first), and once enforced every server refuses an
//! anonymous session and a wrong password; then the TLS client port with client certificates
//! of a CA from a Secret, where a certificate writes and none is refused.
//!
//! First, the NetworkPolicy story of issue 14: the node enforces NetworkPolicies (kube-router,
//! firewall only), and rogue pods in another namespace and in the ensemble's own try every door
//! of the leader (the AdminServer's snapshot, restore, dump and connections, the quorum,
//! election, client and metrics ports) and are refused, while an allowed namespace reaches the
//! client and metrics ports only, the ensemble stays ACTIVE and the operator (in its own
//! namespace) keeps probing; with `networkPolicy.enabled: false` the same knocks get through (the negative
//! control), and turning it back on closes the doors again. The later stories run with the
//! default policy on, too.
//!
//! All along, a real Prometheus (built from the Prometheus Go module, tests/support/src/prometheus.rs)
//! scrapes the operator and the servers through Kubernetes discovery and evaluates the chart's
//! alert rules: every rule loads and evaluates without error, the servers' metrics come with
//! their `ensemble` label, and ZooKeeperEnsembleDegraded (with ZooKeeperFaultToleranceExhausted)
//! and ZooKeeperEnsembleDown become active for the right ensemble while the stories hold it
//! DEGRADED or DOWN, and inactive once it is ACTIVE again. The stories hold a phase for seconds,
//! not for the rules' `for` durations (1 to 5 minutes), so an alert shows as pending: its
//! expression holds, which is what the rule decides; `promtool test rules` covers the `for`
//! durations (tests/monitoring.rs). At the end of the three-server story, every query of the
//! chart's Grafana dashboard returns series for that ensemble (tests/e2e/grafana.rs).
//!
//! Last, backups (tests/e2e/backups.rs): a backup of a three-server ensemble to a real
//! S3-compatible server on the host, its restore drill on the node (Verified True), and the
//! ensemble deleted and restored from the backup into a new one, znode for znode.
//!
//! The stories run one after the other in one test: they share the node, and cordoning it for
//! one would stop the other's restarts.
//!
//! A second test brings up a cluster of three nodes for issue 15's stories (tests/e2e/nodes.rs):
//! placement over zones, drains of every node in turn, and a lost node rebuilt elsewhere; the
//! two clusters take turns, as they use the same node names.

#[path = "e2e/backups.rs"]
mod backups;
#[path = "e2e/client_auth.rs"]
mod client_auth;
#[path = "e2e/drain.rs"]
mod drain;
#[path = "e2e/grafana.rs"]
mod grafana;
#[path = "e2e/nodes.rs"]
mod nodes;
#[path = "e2e/partition.rs"]
mod partition;
use zooherd_test_support as support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use nix::sys::signal::Signal;
use serde_json::json;
use support::fault::CheckedWorkload;
use support::local_cluster::{AdminAccess, LocalCluster, OPERATOR_NAMESPACE};
use support::pod_names::PodNames;
use support::prometheus::Prometheus;
use support::rogue;
use zooherd::api::{MemberState, Phase, ZooKeeperEnsemble, ZooKeeperEnsembleStatus};
use zookeeper_client as zk;

/// The README's quickstart manifest, as a user applies it.
const THREE_SERVERS_EXAMPLE: &str = include_str!("../deploy/examples/three-servers.yaml");
/// How long an ensemble may take to form after `kubectl apply` (pods start, JVMs start, elect).
const FORM_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a status change may take to show: the operator's target is seconds; the margin is
/// for a loaded 2-core machine.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the end-to-end writer looks for pods with new addresses.
const ADDRESSES_CHECKED_EVERY: Duration = Duration::from_millis(500);
/// How long an alert may take to become active or inactive once the status shows the phase:
/// the operator's metrics are scraped and the rules evaluated every second.
const ALERT_TIMEOUT: Duration = Duration::from_secs(30);

/// deploy/examples/three-servers.yaml (the ensemble `zk`) applied in a namespace of its own,
/// named from `prefix`, and ACTIVE 3/3: the namespace, and the ensembles' and pods' APIs there.
async fn three_servers_active(
    cluster: &LocalCluster,
    client: &kube::Client,
    prefix: &str,
) -> (String, Api<ZooKeeperEnsemble>, Api<Pod>) {
    let ns = cluster
        .api()
        .create_namespace(client, prefix)
        .await
        .unwrap();
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    cluster.apply(&ns, THREE_SERVERS_EXAMPLE);
    active_3_of_3(cluster, &ensembles, "zk", FORM_TIMEOUT).await;
    (ns, ensembles, pods)
}

/// The status once the ensemble shows ACTIVE 3/3, within `timeout`.
async fn active_3_of_3(
    cluster: &LocalCluster,
    ensembles: &Api<ZooKeeperEnsemble>,
    name: &str,
    timeout: Duration,
) -> ZooKeeperEnsembleStatus {
    cluster
        .wait_status(
            ensembles,
            name,
            "ACTIVE 3/3",
            timeout,
            shows(Phase::Active, "3/3"),
        )
        .await
}

/// The ensemble shows `phase` with `ready` serving voters, e.g. DEGRADED "2/3".
fn shows(phase: Phase, ready: &str) -> impl Fn(&ZooKeeperEnsembleStatus) -> bool + '_ {
    move |s| s.phase == Some(phase) && s.ready.as_deref() == Some(ready)
}

fn member_state(status: &ZooKeeperEnsembleStatus, pod: &str) -> Option<MemberState> {
    status
        .members
        .iter()
        .find(|m| m.pod == pod)
        .map(|m| m.state)
}

/// `kubectl get zke NAME` as a user sees it: the header and the row, columns by name.
fn printed_columns(
    cluster: &LocalCluster,
    namespace: &str,
    name: &str,
) -> BTreeMap<String, String> {
    let out = cluster
        .api()
        .kubectl()
        .args(["-n", namespace, "get", "zke", name])
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    header
        .iter()
        .zip(row.iter())
        .map(|(h, v)| (h.to_string(), v.to_string()))
        .collect()
}

/// The (type, reason, message) of the ensemble's Events, oldest first.
async fn events(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Vec<(String, String, String)> {
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind=ZooKeeperEnsemble,involvedObject.name={name}"
        )))
        .await
        .expect("listing events");
    let mut items = events.items;
    items.sort_by_key(|e| {
        (
            e.event_time.clone().map(|t| t.0),
            e.last_timestamp.clone().map(|t| t.0),
        )
    });
    items
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits for an Event of the ensemble with this type and reason whose message contains `text`.
async fn wait_event(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    (type_, reason, text): (&str, &str, &str),
) -> String {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    loop {
        let all = events(client, namespace, name).await;
        if let Some((_, _, message)) = all
            .iter()
            .rev()
            .find(|(t, r, m)| t == type_ && r == reason && m.contains(text))
        {
            return message.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {type_} Event {reason} with '{text}' for {name}; Events: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn pod_ip(pods: &Api<Pod>, name: &str) -> String {
    pods.get(name)
        .await
        .expect("reading the pod")
        .status
        .and_then(|s| s.pod_ip)
        .unwrap_or_else(|| panic!("pod {name} has no IP"))
}

/// How many acknowledged writes a story's check of them needs at least.
const ENOUGH_WRITES: usize = 100;

/// A client's SASL DIGEST-MD5 login, for an ensemble with `spec.clientAuthentication`.
#[derive(Clone, Debug)]
struct SaslLogin {
    user: String,
    password: String,
}

/// The writes a [`Writer`] saw acknowledged, and how long the ensemble took none.
struct WriterReport {
    /// How the writer logged in: [`verify_writes`] reads back the same way.
    login: Option<SaslLogin>,
    acknowledged: Vec<(String, u64)>,
    failed: u64,
    longest_gap: Duration,
    /// Gaps between acknowledgements of a second or more: when each ended, and how long.
    long_gaps: Vec<(jiff::Timestamp, Duration)>,
}

/// A ZooKeeper client that creates persistent sequential znodes under `/e2e-writes`, one
/// every 20 ms, through the walkthrough. It connects to the servers' pod IPs and keeps its
/// session through failures as real clients do ([`support::writer::give_up_session`]); when
/// the pods' addresses change (a recreated pod may have a new IP) it opens a session with the
/// new ones beside the old, and moves over once it is open. Its sessions log in with SASL when
/// it is given a login ([`Writer::start_as`]).
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<WriterReport>,
}

impl Writer {
    fn start(pods: Api<Pod>, selector: String) -> Writer {
        Writer::start_as(pods, selector, None)
    }

    fn start_as(pods: Api<Pod>, selector: String, login: Option<SaslLogin>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write_loop(
            pods,
            selector,
            login,
            stop.clone(),
            acknowledged.clone(),
        ));
        Writer {
            stop,
            acknowledged,
            task,
        }
    }

    /// Waits until the ensemble acknowledges more writes: it is serving clients.
    async fn wait_for_writes(&self, what: &str) {
        let before = self.acknowledged.load(Ordering::SeqCst);
        self.wait_until_acknowledged(before + 10, what).await;
    }

    /// Stops the writer once it has had enough writes acknowledged for [`verify_writes`] to
    /// mean something: a story whose faults pass quickly (three drains in 12 s, one election
    /// among them) may end before it has.
    async fn finish(self) -> WriterReport {
        let enough = ENOUGH_WRITES as u64 + 1;
        self.wait_until_acknowledged(enough, "for the check to mean anything")
            .await;
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the writer panicked")
    }

    async fn wait_until_acknowledged(&self, at_least: u64, what: &str) {
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        loop {
            let acknowledged = self.acknowledged.load(Ordering::SeqCst);
            if acknowledged >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{acknowledged} writes acknowledged, {at_least} awaited {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The servers' pod IPs with the client port, comma-separated; empty when the pods cannot be
/// listed (the writer, which asks every 500 ms, then keeps the session it has).
async fn connect_string(pods: &Api<Pod>, selector: &str) -> String {
    let listed = pods.list(&ListParams::default().labels(selector)).await;
    listed
        .map(|list| list.items)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .map(|ip| format!("{ip}:2181"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn connect(pods: &Api<Pod>, selector: &str, login: Option<&SaslLogin>) -> Option<zk::Client> {
    let servers = connect_string(pods, selector).await;
    open_session(servers, Duration::from_secs(2), login).await
}

/// A writer's session, with the servers' addresses it was opened with.
type WriterSession = (String, zk::Client);

/// A session with the servers of `servers`, if one opens within 5 s; each server is given
/// `connection_timeout` to answer.
async fn open_session(
    servers: String,
    connection_timeout: Duration,
    login: Option<&SaslLogin>,
) -> Option<zk::Client> {
    if servers.is_empty() {
        return None;
    }
    let mut connector = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_connection_timeout(connection_timeout);
    if let Some(login) = login {
        connector = connector.with_sasl(zk::SaslOptions::digest_md5(
            login.user.clone(),
            login.password.clone(),
        ));
    }
    match tokio::time::timeout(Duration::from_secs(5), connector.connect(&servers)).await {
        Ok(Ok(client)) => Some(client),
        _ => None,
    }
}

async fn write_loop(
    pods: Api<Pod>,
    selector: String,
    login: Option<SaslLogin>,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
) -> WriterReport {
    let mode = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let mut report = WriterReport {
        login: login.clone(),
        acknowledged: Vec::new(),
        failed: 0,
        longest_gap: Duration::ZERO,
        long_gaps: Vec::new(),
    };
    // The session in use, with the addresses it was opened with, and one being opened with
    // newer addresses, which replaces it once open (the old one writes until then).
    let mut session: Option<WriterSession> = None;
    let mut opening: Option<tokio::task::JoinHandle<Option<WriterSession>>> = None;
    let mut addresses_checked: Option<Instant> = None;
    let mut failing_since: Option<Instant> = None;
    let mut last_ack = Instant::now();
    let mut value = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if opening.as_ref().is_some_and(|task| task.is_finished()) {
            let task = opening.take().expect("checked above");
            if let Some(opened) = task.await.ok().flatten() {
                session = Some(opened);
                failing_since = None;
            }
        }
        let check_due = addresses_checked.is_none_or(|at| at.elapsed() >= ADDRESSES_CHECKED_EVERY);
        if opening.is_none() && check_due {
            addresses_checked = Some(Instant::now());
            let servers = connect_string(&pods, &selector).await;
            let moved = session
                .as_ref()
                .is_none_or(|(opened_with, _)| *opened_with != servers);
            if moved && !servers.is_empty() {
                let login = login.clone();
                opening = Some(tokio::spawn(async move {
                    let timeout = support::writer::CONNECTION_TIMEOUT;
                    let client = open_session(servers.clone(), timeout, login.as_ref()).await?;
                    let parent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                    let _ = client.create("/e2e-writes", b"", &parent).await;
                    Some((servers, client))
                }));
            }
        }
        let Some((_, c)) = &session else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        value += 1;
        let write = c.create("/e2e-writes/w-", value.to_string().as_bytes(), &mode);
        match tokio::time::timeout(Duration::from_secs(5), write).await {
            Ok(Ok((_, sequence))) => {
                report
                    .acknowledged
                    .push((format!("w-{:010}", sequence.into_i64()), value));
                let gap = last_ack.elapsed();
                report.longest_gap = report.longest_gap.max(gap);
                if gap >= Duration::from_secs(1) {
                    report.long_gaps.push((jiff::Timestamp::now(), gap));
                }
                acknowledged.fetch_add(1, Ordering::SeqCst);
                last_ack = Instant::now();
                failing_since = None;
            }
            outcome => {
                // The outcome of this write is unknown; it is not counted.
                report.failed += 1;
                let since = *failing_since.get_or_insert_with(Instant::now);
                if support::writer::give_up_session(c, outcome.is_err(), since) {
                    // Start afresh with the pods that exist now.
                    session = None;
                    addresses_checked = None;
                    failing_since = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(task) = opening {
        task.abort();
    }
    report
}

/// Every acknowledged write is there, with its value. Returns the report's summary.
async fn verify_writes(pods: &Api<Pod>, selector: &str, report: &WriterReport) -> String {
    assert!(
        report.acknowledged.len() > ENOUGH_WRITES,
        "too few writes were acknowledged ({}) for the check to mean anything",
        report.acknowledged.len()
    );
    let client = connect(pods, selector, report.login.as_ref())
        .await
        .expect("connecting to read the writes back");
    let children: std::collections::BTreeSet<String> = client
        .list_children("/e2e-writes")
        .await
        .expect("listing /e2e-writes")
        .into_iter()
        .collect();
    let missing: Vec<&String> = report
        .acknowledged
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !children.contains(*name))
        .collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    let wrong: Vec<String> = futures::stream::iter(report.acknowledged.iter())
        .map(|(name, value)| {
            let client = &client;
            async move {
                let (data, _) = client
                    .get_data(&format!("/e2e-writes/{name}"))
                    .await
                    .expect("reading a write back");
                (data != value.to_string().as_bytes()).then(|| name.clone())
            }
        })
        .buffer_unordered(32)
        .filter_map(|wrong| async move { wrong })
        .collect()
        .await;
    assert!(
        wrong.is_empty(),
        "writes with another value than acknowledged: {wrong:?}"
    );
    let long_gaps: Vec<String> = report
        .long_gaps
        .iter()
        .map(|(end, gap)| format!("{:.1} s ending {end}", gap.as_secs_f64()))
        .collect();
    format!(
        "{} writes acknowledged, all read back; {} failed or unknown; longest time without an \
         acknowledged write {:.1} s; gaps of 1 s or more: {}",
        report.acknowledged.len(),
        report.failed,
        report.longest_gap.as_secs_f64(),
        if long_gaps.is_empty() {
            "none".to_owned()
        } else {
            long_gaps.join(", ")
        }
    )
}

/// No crash loop: the pod's containers never restarted.
fn assert_not_restarted(pod: &Pod, when: &str) {
    assert_eq!(
        container_restarts(pod),
        0,
        "{} restarted its container {when}",
        pod.metadata.name.as_deref().unwrap_or_default()
    );
}

/// How many times the kubelet restarted the pod's containers (as `kubectl get pods` counts).
fn container_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).sum())
}

/// Waits until each of `alerts` is active (pending or firing) for the ensemble, or inactive
/// (`!active`), and prints by when, counted from `shown`: when the status showed the phase.
async fn alerts_become(
    prometheus: &Prometheus,
    alerts: &[&str],
    (namespace, name): (&str, &str),
    active: bool,
    (when, shown): (&str, Instant),
) {
    for alert in alerts {
        let (_, state) = prometheus
            .wait_alert(alert, (namespace, name), active, ALERT_TIMEOUT)
            .await;
        eprintln!(
            "(alerts) {alert} {} for {namespace}/{name} {when}: seen {} after the status showed it",
            state.as_deref().unwrap_or("inactive"),
            secs(shown)
        );
    }
}

/// Issue 14: `port` of `<name>-0` speaks TLS and presents the certificate of the ensemble's own
/// CA (the one in its Secret), as a TLS client on the host sees it.
async fn tls_answers(client: &kube::Client, pods: &Api<Pod>, ns: &str, name: &str, port: u16) {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let secret = secrets.get(&format!("{name}-zooherd-tls")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &secret.data.as_ref().unwrap()["ca.crt"].0).unwrap();
    let ip = pod_ip(pods, &format!("{name}-0")).await;
    let output = std::process::Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect"])
        .arg(format!("{ip}:{port}"))
        .arg("-CAfile")
        .arg(&ca)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let member = format!("CN = Zooherd quorum member of {ns}/{name}");
    assert!(
        text.contains(&member) && text.contains("Verify return code: 0 (ok)"),
        "port {port} of {name}-0 does not present the ensemble's certificate:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{name}-0:{port} speaks TLS with the certificate of the ensemble's CA");
}

fn selector(name: &str) -> String {
    format!("app.kubernetes.io/name=zookeeper,app.kubernetes.io/instance={name}")
}

fn secs(since: Instant) -> String {
    format!("{:.1} s", since.elapsed().as_secs_f64())
}

/// One local cluster at a time: every cluster names its nodes alike (tests/e2e/node.sh).
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_among_three_is_rebuilt_elsewhere() {
    if std::env::var_os("ZOOHERD_E2E_DIR").is_some_and(|d| !d.is_empty()) {
        eprintln!("skipped: ZOOHERD_E2E_DIR names a one-node cluster; this story needs three");
        return;
    }
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    // Five volumes per node: the production example's two servers with two volumes each, then
    // (once those are recycled) one server each and room for the rebuilt one.
    let cluster = LocalCluster::start_nodes(3, 15);
    let client = cluster.api().client().await;
    nodes::five_servers_spread_over_zones(&cluster, &client).await;
    nodes::drain_each_node_in_turn(&cluster, &client).await;
    nodes::a_lost_node_is_rebuilt_elsewhere(&cluster, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_walkthroughs_on_a_real_node() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    // Fewer volumes than the stories' servers (3 + 3 + 3 + 5 + 5 + 3 and more): the later
    // stories run only because cluster.sh wipes and recycles the volumes of deleted claims
    // (issue 18, item 4). Ten is what two stories hold at once while one namespace goes.
    let cluster = LocalCluster::start_with_volumes(10);
    let client = cluster.api().client().await;
    let prometheus = Prometheus::start(&cluster.dir().join("kubeconfig"), OPERATOR_NAMESPACE).await;
    let rules = prometheus.wait_rules_healthy(ALERT_TIMEOUT).await;
    prometheus
        .wait_series("zooherd_leading == 1", 1, ALERT_TIMEOUT)
        .await;
    eprintln!(
        "(alerts) {rules} alerting rules loaded and evaluated without error; the leading \
         operator replica scraped"
    );
    network_policy(&cluster, &client).await;
    three_servers(&cluster, &client, &prometheus).await;
    five_servers(&cluster, &client, &prometheus).await;
    scaling(&cluster, &client).await;
    drain::drain_during_a_roll(&cluster, &client).await;
    partition::leader_cut_off_from_its_peers(&cluster, &client).await;
    client_auth::sasl_switched_on_then_enforced(&cluster, &client).await;
    backups::backed_up_drilled_and_restored(&cluster, &client).await;
}

/// Walkthrough (a), one server stopped and started, and (c), a frozen member restarted by the
/// operator, on deploy/examples/three-servers.yaml, with (d) a writer throughout.
async fn three_servers(cluster: &LocalCluster, client: &kube::Client, prometheus: &Prometheus) {
    let ns = cluster
        .api()
        .create_namespace(client, "e2e-three")
        .await
        .unwrap();
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let name = "zk";

    let story_started = grafana::unix_now();
    let t = Instant::now();
    cluster.apply(&ns, THREE_SERVERS_EXAMPLE);
    let status = cluster
        .wait_status(&ensembles, name, "ACTIVE", FORM_TIMEOUT, |s| {
            s.phase == Some(Phase::Active)
        })
        .await;
    eprintln!("(a) three-servers.yaml: ACTIVE after {}", secs(t));
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    assert_eq!(status.quorum, Some(2));
    assert_eq!(status.fault_tolerance, Some(1));
    let columns = printed_columns(cluster, &ns, name);
    assert_eq!(
        columns.get("STATUS").map(String::as_str),
        Some("ACTIVE"),
        "{columns:?}"
    );
    assert_eq!(
        columns.get("READY").map(String::as_str),
        Some("3/3"),
        "{columns:?}"
    );
    assert_eq!(columns.get("LEADER"), status.leader.as_ref(), "{columns:?}");
    wait_event(client, &ns, name, ("Normal", "Active", "-> ACTIVE")).await;
    assert_eq!(
        status.quorum_tls.as_ref().map(|t| t.stage.as_str()),
        Some("on"),
        "a new ensemble runs quorum TLS"
    );
    // The election port, which every server listens on.
    tls_answers(client, &pods, &ns, name, 3888).await;
    // Prometheus finds the servers through the API and scrapes their metrics port with the
    // README's scrape configuration, through the ensemble's NetworkPolicy (the node admits the
    // host).
    let up = format!("up{{job=\"zookeeper\",namespace=\"{ns}\",ensemble=\"{name}\"}} == 1");
    let t = Instant::now();
    prometheus.wait_series(&up, 3, ALERT_TIMEOUT).await;
    eprintln!(
        "(alerts) the 3 servers of {ns}/{name} scraped (up, labelled ensemble) after {}",
        secs(t)
    );

    // The failed-member restart threshold, down from the default 60 s, for (c).
    ensembles
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"failedMemberRestart": {"thresholdSeconds": 10}}})),
        )
        .await
        .unwrap();

    let writer = Writer::start(pods.clone(), selector(name));
    tokio::time::sleep(Duration::from_secs(3)).await;

    // (a) Stop one server: the quorum holds, with no failure left to spare.
    let leader = status.leader.clone().unwrap();
    let stopped = status
        .members
        .iter()
        .map(|m| m.pod.clone())
        .filter(|p| *p != leader)
        .max()
        .unwrap();
    cluster.set_schedulable(false);
    let t = Instant::now();
    pods.delete(&stopped, &DeleteParams::default())
        .await
        .unwrap();
    let status = cluster
        .wait_status(
            &ensembles,
            name,
            "DEGRADED 2/3",
            CHANGE_TIMEOUT,
            shows(Phase::Degraded, "2/3"),
        )
        .await;
    let shown = Instant::now();
    eprintln!("(a) {stopped} stopped: DEGRADED 2/3 after {}", secs(t));
    assert_eq!(status.fault_tolerance, Some(0));
    writer
        .wait_for_writes("while DEGRADED 2/3: the quorum must still serve")
        .await;
    assert!(matches!(
        member_state(&status, &stopped),
        Some(MemberState::Missing | MemberState::Unreachable)
    ));
    let columns = printed_columns(cluster, &ns, name);
    assert_eq!(
        columns.get("STATUS").map(String::as_str),
        Some("DEGRADED"),
        "{columns:?}"
    );
    assert_eq!(
        columns.get("READY").map(String::as_str),
        Some("2/3"),
        "{columns:?}"
    );
    wait_event(
        client,
        &ns,
        name,
        ("Warning", "Degraded", "ACTIVE -> DEGRADED"),
    )
    .await;
    let degraded = [
        "ZooKeeperEnsembleDegraded",
        "ZooKeeperFaultToleranceExhausted",
    ];
    let when = ("during (a), DEGRADED 2/3", shown);
    alerts_become(prometheus, &degraded, (&ns, name), true, when).await;

    // (a) Start it again.
    let t = Instant::now();
    cluster.set_schedulable(true);
    active_3_of_3(cluster, &ensembles, name, FORM_TIMEOUT).await;
    let shown = Instant::now();
    eprintln!("(a) {stopped} started: ACTIVE 3/3 after {}", secs(t));
    let when = ("after (a), ACTIVE 3/3", shown);
    alerts_become(prometheus, &degraded, (&ns, name), false, when).await;
    wait_event(
        client,
        &ns,
        name,
        ("Normal", "Active", "DEGRADED -> ACTIVE"),
    )
    .await;

    // (c) Freeze a follower (SIGSTOP, as the seed's frozen JVM): its pod stays Running, so
    // only the operator can see that the server is gone, and restarts it.
    let status = ensembles.get(name).await.unwrap().status.unwrap();
    let leader = status.leader.clone().unwrap();
    let frozen = status
        .members
        .iter()
        .map(|m| m.pod.clone())
        .find(|p| *p != leader)
        .unwrap();
    let frozen_uid = pods.get(&frozen).await.unwrap().metadata.uid;
    let t = Instant::now();
    cluster
        .signal_container(&pods, &frozen, Signal::SIGSTOP)
        .await;
    let status = cluster
        .wait_status(
            &ensembles,
            name,
            "the frozen member restarted",
            Duration::from_secs(120),
            |s| s.members.iter().any(|m| m.pod == frozen && m.restarts >= 1),
        )
        .await;
    eprintln!(
        "(c) {frozen} frozen: restarted by the operator after {} (phase {:?})",
        secs(t),
        status.phase
    );
    wait_event(client, &ns, name, ("Warning", "MemberRestarted", &frozen)).await;
    // Where the time goes, from the freeze: the replacement pod, its start, the quorum.
    let (mut created, mut running) = (None, None);
    let deadline = Instant::now() + FORM_TIMEOUT;
    loop {
        if let Some(pod) = pods.get_opt(&frozen).await.unwrap()
            && pod.metadata.uid != frozen_uid
        {
            created.get_or_insert_with(|| secs(t));
            if pod.status.and_then(|s| s.phase).as_deref() == Some("Running") {
                running.get_or_insert_with(|| secs(t));
            }
        }
        let status = ensembles.get(name).await.unwrap().status.unwrap();
        if shows(Phase::Active, "3/3")(&status) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{frozen} did not come back: {status:?}\n{}",
            cluster.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "(c) {frozen} back: ACTIVE 3/3 after {} (replacement pod created after {}, Running \
         after {})",
        secs(t),
        created.as_deref().unwrap_or("?"),
        running.as_deref().unwrap_or("?")
    );

    // The dashboard's every query answers for this ensemble, the writer still writing.
    grafana::dashboard_answers(prometheus, &ns, name, story_started).await;

    // (d) Nothing acknowledged was lost.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = writer.finish().await;
    eprintln!(
        "(d) three servers: {}",
        verify_writes(&pods, &selector(name), &report).await
    );

    cluster.api().delete_namespace(client, &ns).await.unwrap();
}

/// Walkthrough (b) on five servers: the leader stopped, a second server stopped, a third
/// killed with SIGKILL, and all brought back; with (d) a writer throughout.
async fn five_servers(cluster: &LocalCluster, client: &kube::Client, prometheus: &Prometheus) {
    let ns = cluster
        .api()
        .create_namespace(client, "e2e-five")
        .await
        .unwrap();
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let name = "zk5";

    let t = Instant::now();
    cluster.apply(
        &ns,
        &json!({
            "apiVersion": "zooherd.dev/v1beta1",
            "kind": "ZooKeeperEnsemble",
            "metadata": {"name": name},
            "spec": {"replicas": 5},
        })
        .to_string(),
    );
    let status = cluster
        .wait_status(&ensembles, name, "ACTIVE", FORM_TIMEOUT, |s| {
            s.phase == Some(Phase::Active)
        })
        .await;
    eprintln!("(b) five servers: ACTIVE after {}", secs(t));
    assert_eq!(status.ready.as_deref(), Some("5/5"));
    assert_eq!(status.quorum, Some(3));
    assert_eq!(status.fault_tolerance, Some(2));

    let writer = Writer::start(pods.clone(), selector(name));
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.set_schedulable(false);

    // Stop the leader: another server leads, the quorum holds.
    let first = status.leader.clone().unwrap();
    let t = Instant::now();
    pods.delete(&first, &DeleteParams::default()).await.unwrap();
    let status = cluster
        .wait_status(
            &ensembles,
            name,
            "DEGRADED 4/5 with a new leader",
            CHANGE_TIMEOUT,
            |s| {
                s.phase == Some(Phase::Degraded)
                    && s.ready.as_deref() == Some("4/5")
                    && s.leader.as_ref().is_some_and(|l| *l != first)
            },
        )
        .await;
    let second_leader = status.leader.clone().unwrap();
    eprintln!(
        "(b) leader {first} stopped: DEGRADED 4/5, {second_leader} leads, after {}",
        secs(t)
    );
    assert_eq!(status.fault_tolerance, Some(1));
    let columns = printed_columns(cluster, &ns, name);
    assert_eq!(columns.get("LEADER"), Some(&second_leader), "{columns:?}");

    // Stop a second server (a follower): still serving, no failure left to spare.
    let second = status
        .members
        .iter()
        .filter(|m| m.pod != first && m.pod != second_leader)
        .map(|m| m.pod.clone())
        .max()
        .unwrap();
    let t = Instant::now();
    pods.delete(&second, &DeleteParams::default())
        .await
        .unwrap();
    let status = cluster
        .wait_status(
            &ensembles,
            name,
            "DEGRADED 3/5",
            CHANGE_TIMEOUT,
            shows(Phase::Degraded, "3/5"),
        )
        .await;
    eprintln!("(b) {second} stopped: DEGRADED 3/5 after {}", secs(t));
    assert_eq!(status.fault_tolerance, Some(0));
    writer
        .wait_for_writes("while DEGRADED 3/5: the quorum must still serve")
        .await;
    let serving_leader = status.leader.clone().unwrap();
    let admin = AdminAccess::of(client, &ns, name).await;
    let leader_answer = admin.srvr(&pod_ip(&pods, &serving_leader).await).await;
    let state = serde_json::from_str::<serde_json::Value>(&leader_answer)
        .ok()
        .and_then(|v| {
            v["server_stats"]["server_state"]
                .as_str()
                .map(str::to_owned)
        });
    assert_eq!(state.as_deref(), Some("leader"), "{leader_answer}");

    // kill -9 a third (the leader, so that the rest lose it at once), with the kubelet held so
    // that it stays dead: fewer than a quorum remain.
    let third = serving_leader;
    let survivors: Vec<String> = status
        .members
        .iter()
        .map(|m| m.pod.clone())
        .filter(|p| *p != first && *p != second && *p != third)
        .collect();
    assert_eq!(survivors.len(), 2);
    cluster.hold_kubelet(true);
    let t = Instant::now();
    cluster
        .signal_container(&pods, &third, Signal::SIGKILL)
        .await;
    let down = cluster
        .wait_status(&ensembles, name, "DOWN", CHANGE_TIMEOUT, |s| {
            s.phase == Some(Phase::Down)
        })
        .await;
    let shown = Instant::now();
    eprintln!(
        "(b) {third} killed: DOWN after {} ({})",
        secs(t),
        down.ready.as_deref().unwrap_or("?")
    );
    let columns = printed_columns(cluster, &ns, name);
    assert_eq!(
        columns.get("STATUS").map(String::as_str),
        Some("DOWN"),
        "{columns:?}"
    );
    for survivor in &survivors {
        let answer = admin.srvr(&pod_ip(&pods, survivor).await).await;
        assert!(
            answer.contains("not currently serving requests"),
            "{survivor} answered {answer}"
        );
    }
    wait_event(client, &ns, name, ("Warning", "Down", "-> DOWN")).await;
    alerts_become(
        prometheus,
        &["ZooKeeperEnsembleDown"],
        (&ns, name),
        true,
        ("during (b), DOWN", shown),
    )
    .await;

    // Bring them all back.
    let t = Instant::now();
    cluster.hold_kubelet(false);
    cluster.set_schedulable(true);
    let status = cluster
        .wait_status(
            &ensembles,
            name,
            "ACTIVE 5/5",
            FORM_TIMEOUT,
            shows(Phase::Active, "5/5"),
        )
        .await;
    let shown = Instant::now();
    eprintln!(
        "(b) all back: ACTIVE 5/5 after {}, {} leads",
        secs(t),
        status.leader.as_deref().unwrap_or("?")
    );
    alerts_become(
        prometheus,
        &["ZooKeeperEnsembleDown", "ZooKeeperEnsembleDegraded"],
        (&ns, name),
        false,
        ("after (b), ACTIVE 5/5", shown),
    )
    .await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = writer.finish().await;
    eprintln!(
        "(d) five servers: {}",
        verify_writes(&pods, &selector(name), &report).await
    );

    image_change_rolls(cluster, client, &ns, name).await;
    cluster.api().delete_namespace(client, &ns).await.unwrap();
}

/// A new server image on the ACTIVE 5-server ensemble (issue 8's roll): the operator replaces
/// one server at a time, followers first and the leader last, never losing the quorum, with a
/// client writing throughout; the leader hands the lead over by leaving the voters instead of
/// forcing an election (issue 18, item 2). Prints how long the client went without an
/// acknowledged write.
async fn image_change_rolls(cluster: &LocalCluster, client: &kube::Client, ns: &str, name: &str) {
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(client.clone(), ns);
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let before = ensembles.get(name).await.unwrap().status.unwrap();
    let leader = before.leader.clone().unwrap();
    let image = cluster.server_image();
    let rolled = format!("{image}-rolled");
    cluster.tag_image(&image, &rolled);

    let writer = Writer::start(pods.clone(), selector(name));
    writer.wait_for_writes("before the roll").await;
    // Beside it, the fault tier's checked workload (concurrent sessions, compare-and-set
    // writes, the history checked for linearizability) through the servers' names, which
    // follow the replaced pods to their new IPs as a client's DNS names do.
    let servers: Vec<String> = (0..5).map(|i| format!("{name}-{i}")).collect();
    let by_name = PodNames::start(&pods, &servers, 2181).await;
    let workload = CheckedWorkload::start(&by_name.connect_string(), "e2e-roll").await;
    let t = Instant::now();
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let admin = AdminAccess::of(client, ns, name).await;
    let sampler = tokio::spawn(drain::sample(
        admin,
        pods.clone(),
        selector(name),
        3,
        stop_sampling.clone(),
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
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let list = pods
            .list(&ListParams::default().labels(&selector(name)))
            .await
            .unwrap();
        // Every pod Ready too: the status may still be the one written before the last pod
        // went (see client_auth.rs's `rolled`).
        let all_rolled = list.items.len() == 5
            && list.items.iter().all(|p| {
                p.spec.as_ref().map(|s| s.containers[0].image.as_deref()) == Some(Some(&rolled))
                    && p.metadata.deletion_timestamp.is_none()
                    && drain::is_ready(p)
            });
        let status = ensembles.get(name).await.unwrap().status.unwrap();
        if all_rolled
            && status.phase == Some(Phase::Active)
            && status.ready.as_deref() == Some("5/5")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the roll did not finish: {:?}\n{}",
            status,
            cluster.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "(roll) image change on 5 servers: all replaced, ACTIVE 5/5 after {}",
        secs(t)
    );
    stop_sampling.store(true, Ordering::SeqCst);
    let seen = sampler.await.unwrap();
    eprintln!(
        "(roll) {} samples of every server's srvr: fewest up {}, fewest serving {}; fewer than 3 serving at {:?} (s, serving)",
        seen.samples, seen.fewest_up, seen.fewest_serving, seen.below_quorum
    );

    let rolling: Vec<String> = events(client, ns, name)
        .await
        .into_iter()
        .filter(|(_, reason, _)| reason == "RollingMember")
        .map(|(_, _, message)| message)
        .collect();
    assert_eq!(
        rolling.len(),
        5,
        "one RollingMember Event per server: {rolling:#?}"
    );
    assert!(
        rolling[..4]
            .iter()
            .all(|m| !m.contains(&format!("{leader} "))),
        "the leader {leader} was rolled before a follower: {rolling:#?}"
    );
    assert!(
        rolling[4].contains(&leader),
        "the leader {leader} was not last: {rolling:#?}"
    );
    // With 5 voters the leader hands the lead over (leaves the voters, so that ZooKeeper
    // designates its successor without an election) before its pod is replaced as a
    // non-voter, and is added back afterwards.
    let all = events(client, ns, name).await;
    let about_leader = |reason: &str, (_, r, m): &(String, String, String)| {
        r == reason && m.contains(leader.as_str())
    };
    let handed = all.iter().position(|e| about_leader("HandedOverLead", e));
    let added = handed.and_then(|i| all[i..].iter().position(|e| about_leader("AddedVoter", e)));
    assert!(
        added.is_some(),
        "the leader {leader} did not hand over and come back as a voter: {all:#?}"
    );
    assert!(
        rolling[4].contains("not a voter"),
        "the leader's pod was replaced while a voter: {rolling:#?}"
    );
    // No crash loop: every replacement started once and stayed up.
    for pod in pods
        .list(&ListParams::default().labels(&selector(name)))
        .await
        .unwrap()
    {
        assert_not_restarted(&pod, "during the roll");
    }
    let report = writer.finish().await;
    eprintln!(
        "(roll) {}",
        verify_writes(&pods, &selector(name), &report).await
    );
    workload.finish().await;
    drop(by_name);
    for event in Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("listing events")
    {
        if let (Some(time), Some(reason)) = (event.event_time, event.reason)
            && ["RollingMember", "HandedOverLead", "AddedVoter"].contains(&reason.as_str())
        {
            eprintln!("(roll) {} {reason}", time.0);
        }
    }
}

/// Issue 8's scaling story on deploy/examples/three-servers.yaml: 3 -> 5 -> 3 -> 1 -> 3 voters by
/// dynamic reconfiguration, with a client writing throughout. Each step must end with the
/// committed membership, the pods and the phase all agreeing; no acknowledged write may be
/// lost and no container may restart. Prints each step's duration and the longest time the
/// client went without an acknowledged write.
async fn scaling(cluster: &LocalCluster, client: &kube::Client) {
    let (ns, ensembles, pods) = three_servers_active(cluster, client, "e2e-scale").await;
    let name = "zk";

    let writer = Writer::start(pods.clone(), selector(name));
    writer.wait_for_writes("before scaling").await;
    let mut versions = Vec::new();
    for replicas in [5usize, 3, 1, 3] {
        let t = Instant::now();
        ensembles
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .unwrap();
        let want: Vec<i32> = (1..=replicas as i32).collect();
        let ready = format!("{replicas}/{replicas}");
        let status = cluster
            .wait_status(
                &ensembles,
                name,
                &format!("{replicas} committed voters, ACTIVE {ready}"),
                Duration::from_secs(300),
                |s| {
                    s.phase == Some(Phase::Active)
                        && s.ready.as_deref() == Some(ready.as_str())
                        && s.membership
                            .as_ref()
                            .is_some_and(|m| m.voters == want && m.scaling.is_none())
                },
            )
            .await;
        // The StatefulSet follows: exactly the voters' pods, none of them restarted.
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        loop {
            let list = pods
                .list(&ListParams::default().labels(&selector(name)))
                .await
                .unwrap();
            let live: Vec<&Pod> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            for pod in &live {
                assert_not_restarted(pod, &format!("while scaling to {replicas}"));
            }
            if live.len() == replicas && list.items.len() == replicas {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} pods while the committed voters are {want:?}",
                list.items.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let version = status.membership.map(|m| m.version).unwrap_or_default();
        eprintln!(
            "(scale) to {replicas}: voters {want:?} committed at version {version}, pods and \
             phase agree, after {}",
            secs(t)
        );
        versions.push(version);
    }
    let mut distinct = versions.clone();
    distinct.dedup();
    assert_eq!(distinct, versions, "every step commits a new configuration");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = writer.finish().await;
    eprintln!(
        "(scale) 3 -> 5 -> 3 -> 1 -> 3: {}",
        verify_writes(&pods, &selector(name), &report).await
    );
    cluster.api().delete_namespace(client, &ns).await.unwrap();
}

/// With no NetworkPolicy in the way, the AdminServer of the server at `ip` still answers no
/// one without a certificate of the ensemble's CA: curl from the host, in HTTPS without a
/// client certificate (trusting anything) and in plain HTTP.
fn admin_server_refuses_strangers(ip: &str) {
    for (what, url, extra) in [
        (
            "HTTPS, no certificate",
            format!("https://{ip}:8080/commands/dump"),
            "--insecure",
        ),
        (
            "plain HTTP",
            format!("http://{ip}:8080/commands/dump"),
            "--http1.1",
        ),
    ] {
        let (ok, text) = support::outcome(
            &std::process::Command::new("curl")
                .args(["-sS", "--max-time", "5", extra, &url])
                .output()
                .expect("running curl"),
        );
        assert!(
            !ok && !text.contains("\"command\""),
            "the AdminServer answered {what} from the host: {text}"
        );
        eprintln!(
            "(netpol) AdminServer, {what}, from the host: {}",
            text.trim()
        );
    }
}

/// Issue 14, items 5 and 7: the ensemble's NetworkPolicy on a node that enforces it. See the
/// module docs; rogue pods knock with [`rogue::knock`].
async fn network_policy(cluster: &LocalCluster, client: &kube::Client) {
    let story = Instant::now();
    let api = cluster.api();
    let ns = api.create_namespace(client, "e2e-netpol").await.unwrap();
    let allowed_ns = api
        .create_namespace(client, "e2e-netpol-allowed")
        .await
        .unwrap();
    let rogue_ns = api.create_namespace(client, "e2e-rogue").await.unwrap();
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(client.clone(), &ns);
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let name = "zk";

    let t = Instant::now();
    cluster.apply(&ns, THREE_SERVERS_EXAMPLE);
    let allowed_only = json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": allowed_ns}}}]);
    // With the TLS client port too, which the policy must open exactly as it opens 2181.
    let peers = json!({"spec": {
        "networkPolicy": {"clientFrom": allowed_only, "metricsFrom": allowed_only},
        "tls": {"client": true},
    }});
    ensembles
        .patch(name, &PatchParams::default(), &Patch::Merge(peers))
        .await
        .unwrap();
    let image = cluster.toolbox_image();
    let other = (rogue_ns.as_str(), "rogue");
    let same = (ns.as_str(), "rogue");
    let allowed = (allowed_ns.as_str(), "client");
    for (namespace, pod) in [other, same, allowed] {
        rogue::start(client, namespace, pod, &image).await;
    }
    active_3_of_3(cluster, &ensembles, name, FORM_TIMEOUT).await;
    // The patch may have come after the first pods: wait for every server to run the TLS
    // client port and be Ready (after a roll, if so), and the ensemble to be ACTIVE.
    let deadline = Instant::now() + FORM_TIMEOUT;
    loop {
        let mut serving_tls = 0;
        for i in 0..3 {
            let pod = pods.get_opt(&format!("{name}-{i}")).await.unwrap();
            let declares = pod.as_ref().is_some_and(|pod| {
                let containers = pod.spec.as_ref().map(|s| &s.containers[..]).unwrap_or(&[]);
                containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .any(|p| p.container_port == 2281)
            });
            let ready = pod.as_ref().is_some_and(|p| {
                p.metadata.deletion_timestamp.is_none() && zooherd::decide::restart::pod_is_ready(p)
            });
            if declares && ready {
                serving_tls += 1;
            }
        }
        if serving_tls == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the servers did not all take the TLS client port"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = active_3_of_3(cluster, &ensembles, name, FORM_TIMEOUT).await;
    eprintln!(
        "(netpol) ACTIVE 3/3 behind its NetworkPolicy, with a TLS client port, after {}",
        secs(t)
    );
    tls_answers(client, &pods, &ns, name, 2281).await;
    let policy = policies
        .get(name)
        .await
        .expect("the ensemble's NetworkPolicy");
    let ingress = policy.spec.and_then(|s| s.ingress).unwrap_or_default();
    assert_eq!(ingress.len(), 4, "{ingress:?}");

    // A client on the host writes throughout (the node admits the host as it admits itself).
    let before = status.zxid.clone();
    let writer = Writer::start(pods.clone(), selector(name));

    // Every door of the leader (the only server listening on 2888) is closed to the rogues;
    // the allowed namespace reaches the client and metrics ports and nothing else.
    let leader = status.leader.clone().expect("a leader");
    let ip = pod_ip(&pods, &leader).await;
    let client_and_metrics = ["client-2181", "client-tls-2281", "metrics-7000"];
    for (who, open) in [
        (other, &[][..]),
        (same, &[]),
        (allowed, &client_and_metrics),
    ] {
        let took = rogue::wait_doors(api, who, &ip, open, CHANGE_TIMEOUT).await;
        eprintln!(
            "(netpol) {}/{} -> {leader}: open {open:?}, every other door closed ({:.1} s)",
            who.0,
            who.1,
            took.as_secs_f64()
        );
    }

    // The ensemble, the operator and the status are unaffected: the writes move the leader's
    // zxid, and the status shows the new zxid only if the operator's probes, from its own
    // namespace, got through.
    writer.wait_for_writes("behind the NetworkPolicy").await;
    let status = cluster
        .wait_status(
            &ensembles,
            name,
            "ACTIVE 3/3 with a newer zxid",
            CHANGE_TIMEOUT,
            |s| shows(Phase::Active, "3/3")(s) && s.zxid != before,
        )
        .await;
    assert!(
        status
            .members
            .iter()
            .all(|m| matches!(m.state, MemberState::Leader | MemberState::Follower)),
        "every member serving: {:?}",
        status.members
    );
    assert_eq!(status.leader.as_deref(), Some(leader.as_str()));
    for pod in pods
        .list(&ListParams::default().labels(&selector(name)))
        .await
        .unwrap()
        .items
    {
        assert_not_restarted(&pod, "while rogue pods knocked");
    }
    eprintln!(
        "(netpol) after the knocks: ACTIVE 3/3, leader {leader}, zxid {before:?} -> {:?}",
        status.zxid,
    );

    // The negative control: without the policy the same knocks get through.
    let t = Instant::now();
    let enabled = |on: bool| json!({"spec": {"networkPolicy": {"enabled": on}}});
    ensembles
        .patch(name, &PatchParams::default(), &Patch::Merge(enabled(false)))
        .await
        .unwrap();
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while policies.get_opt(name).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the NetworkPolicy is not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_event(client, &ns, name, ("Normal", "Deleted", "NetworkPolicy zk")).await;
    // Every door but the AdminServer's commands, which quorum TLS keeps shut (HTTPS with a
    // certificate of the ensemble's CA only; issue 14, item 1).
    let unguarded: Vec<&str> = rogue::DOORS
        .into_iter()
        .filter(|door| !rogue::ADMIN_COMMANDS.contains(door))
        .collect();
    for who in [other, same] {
        rogue::wait_doors(api, who, &ip, &unguarded, CHANGE_TIMEOUT).await;
    }
    eprintln!(
        "(netpol) networkPolicy.enabled=false: the policy deleted and every door but the AdminServer's commands open to both rogues after {}",
        secs(t)
    );
    admin_server_refuses_strangers(&ip);

    // And back on: closed again.
    let t = Instant::now();
    ensembles
        .patch(name, &PatchParams::default(), &Patch::Merge(enabled(true)))
        .await
        .unwrap();
    for who in [other, same] {
        rogue::wait_doors(api, who, &ip, &[], CHANGE_TIMEOUT).await;
    }
    eprintln!(
        "(netpol) networkPolicy.enabled=true again: every door closed after {}",
        secs(t)
    );
    active_3_of_3(cluster, &ensembles, name, CHANGE_TIMEOUT).await;
    let report = writer.finish().await;
    eprintln!(
        "(netpol) through the knocks and the policy's changes: {}; the story took {}",
        verify_writes(&pods, &selector(name), &report).await,
        secs(story)
    );
    for namespace in [&ns, &allowed_ns, &rogue_ns] {
        api.delete_namespace(client, namespace).await.unwrap();
    }
}
