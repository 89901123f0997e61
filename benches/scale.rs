//! One operator, many ensembles (issue 18, item 3): what a replica costs as the number of
//! ensembles grows, in the worst case where no member ever answers. Run it as root with:
//!
//! ```sh
//! bash tests/cluster/setup.sh          # once
//! cargo bench --bench scale
//! ```
//!
//! A control plane of its own (tests/cluster/control-plane.sh, the controller manager allowed
//! 200 requests/s) and KWOK (built from its Go module by `build-control-plane.sh kwok`, once):
//! ten simulated nodes, on which the scheduler places the servers' pods and KWOK marks them
//! running with an IP, without containers. The pods' IPs are in 127.64.0.0/16 inside a network
//! namespace of the benchmark's own (it re-executes itself under `unshare --net`), where a
//! firewall rule drops every packet to them: each probe of a member waits for the whole
//! AdminServer timeout, as for a server frozen or on a lost node. Volumes are PersistentVolumes
//! made beforehand, each bound to the claim its server will make.
//!
//! The operator runs with its shipped probe settings (1 s rounds, 1 s timeout, 10 s backoff
//! ceiling), watching the benchmark's namespace. For each total in `ZOOHERD_BENCH_ENSEMBLES`
//! (default 100,300,1000; ensembles are added to reach it) it prints the time until every
//! ensemble has its children, its pods running and a status; then, after
//! `ZOOHERD_BENCH_SETTLE_SECONDS` (default 90: past the failed-member restart threshold, 60 s,
//! whose condition changes each status once), over `ZOOHERD_BENCH_REST_SECONDS` (default 60):
//! the operator's resident memory and CPU, its API requests per second by verb and resource
//! (from its own `zooherd_api_requests_total`), its probe requests per second and the most in
//! flight (sampled every 100 ms); and last the time from a restart of the operator until it has
//! published a phase for every ensemble. Beside them runs one real ensemble, `zk` (three
//! ZooKeeper servers on loopback, its pods bound to them as `support::kubelet` does, kept off
//! the simulated nodes): after each window one of its followers is stopped, and the time until
//! its status shows DEGRADED, then ACTIVE once the follower is started again, is printed: the
//! operator's many unanswering members must not slow what it sees of the ones that answer.
//! `ZOOHERD_BINARY` runs another build of the operator
//! (an older one, for a before/after comparison). A measurement, not a test.

use zooherd_test_support as support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use support::control_plane::ControlPlane;
use support::operator::{Operator, eventually_within, install_crds, phase_is, status_where};
use zooherd::api::{Phase, ZooKeeperEnsemble};

/// Where KWOK gives pods their IPs: loopback addresses nothing listens on, dropped.
const POD_CIDR: &str = "127.64.0.0/16";
const NODES: usize = 10;
const IN_NETNS: &str = "ZOOHERD_BENCH_IN_NETNS";
const WAIT: Duration = Duration::from_secs(1800);
/// How often the benchmark looks: listing a thousand objects is not free for the API server.
const POLL: Duration = Duration::from_millis(500);

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale: a benchmark; run `cargo bench --bench scale` as root");
        return;
    }
    if std::env::var_os(IN_NETNS).is_none() {
        std::process::exit(enter_network_namespace());
    }
    let totals = support::env_list("ZOOHERD_BENCH_ENSEMBLES", &[100, 300, 1000]);
    let seconds =
        |name, default| Duration::from_secs(support::env_list(name, &[default])[0] as u64);
    let settle = seconds("ZOOHERD_BENCH_SETTLE_SECONDS", 90);
    let rest = seconds("ZOOHERD_BENCH_REST_SECONDS", 60);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(&totals, settle, rest));
}

/// Builds KWOK (it needs the Go module proxy), then runs this benchmark again in a network
/// namespace of its own, with the pods' addresses dropped; returns its exit code.
fn enter_network_namespace() -> i32 {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run the scale benchmark as root"
    );
    let built = Command::new("bash")
        .arg(support::repo_root().join("tests/cluster/build-control-plane.sh"))
        .arg("kwok")
        .status()
        .expect("running build-control-plane.sh kwok");
    assert!(built.success(), "building KWOK failed");
    let setup = format!(
        "ip link set lo up && iptables -A OUTPUT -d {POD_CIDR} -j DROP && exec \"$0\" \"$@\""
    );
    let status = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &setup])
        .arg(std::env::current_exe().expect("this benchmark's path"))
        .args(std::env::args().skip(1))
        .env(IN_NETNS, "1")
        // The StatefulSet controller creates 3 pods and 3 claims per ensemble; at its default
        // 20 requests/s the control plane, not the operator, would be what is measured.
        .env(
            "ZOOHERD_CP_KCM_FLAGS",
            "--kube-api-qps=200 --kube-api-burst=400 --concurrent-statefulset-syncs=20",
        )
        // Each ensemble's client Service takes a cluster IP: 254 would not do. They are only
        // records here (no kube-proxy, and a network namespace of the benchmark's own).
        .env(
            "ZOOHERD_CP_APISERVER_FLAGS",
            "--service-cluster-ip-range=10.0.0.0/20",
        )
        .status()
        .expect("running unshare");
    status.code().unwrap_or(1)
}

async fn run(totals: &[usize], settle: Duration, rest: Duration) {
    let cp = ControlPlane::start().expect("a control plane");
    install_crds(&cp);
    let client = cp.client().await;
    let mut kwok = start_kwok(&cp);
    make_nodes(&client).await;
    let ns = cp
        .create_namespace(&client, "scale")
        .await
        .expect("a namespace");
    let mut operator = Operator::start_as_shipped(&cp, &ns);
    // Scheduled nowhere: its pods are bound to the real servers, not run by KWOK.
    let unscheduled =
        json!({"replicas": 3, "placement": {"nodeSelector": {"zooherd.dev/bench": "nowhere"}}});
    let mut real = support::kubelet::run_ensemble(&client, &ns, unscheduled).await;
    status_where(
        &real.ensembles,
        "the real ensemble ACTIVE",
        phase_is(Phase::Active),
    )
    .await;
    let mut rows = Vec::new();
    let mut made = 0;
    for &total in totals {
        let started = Instant::now();
        make_ensembles(&client, &ns, made..total).await;
        made = total;
        eventually_within(
            &format!("{total} ensembles' children"),
            WAIT,
            POLL,
            || async {
                (count::<StatefulSet>(&client, &ns, |_| true).await >= total).then_some(())
            },
        )
        .await;
        let children = started.elapsed();
        eventually_within(
            &format!("{} pods running", 3 * total),
            WAIT,
            POLL,
            || async {
                (count::<Pod>(&client, &ns, |p| {
                    p.status.as_ref().is_some_and(|s| {
                        s.phase.as_deref() == Some("Running") && s.pod_ip.is_some()
                    })
                })
                .await
                    >= 3 * total)
                    .then_some(())
            },
        )
        .await;
        let running = started.elapsed();
        eventually_within(&format!("{total} statuses"), WAIT, POLL, || async {
            (count::<ZooKeeperEnsemble>(&client, &ns, |e| {
                e.status.as_ref().is_some_and(|s| s.phase.is_some())
            })
            .await
                >= total)
                .then_some(())
        })
        .await;
        let statuses = started.elapsed();
        tokio::time::sleep(settle).await;
        let cost = at_rest(&operator, rest).await;
        let follower = follower_death(&mut real).await;
        drop(operator);
        let restarted = Instant::now();
        operator = Operator::start_as_shipped(&cp, &ns);
        eventually_within(
            "a phase for every ensemble after a restart",
            WAIT,
            POLL,
            || async {
                let metrics = operator.try_metrics().await.unwrap_or_default();
                (phases_published(&metrics) >= total).then_some(())
            },
        )
        .await;
        let row = Row {
            total,
            children,
            running,
            statuses,
            cost,
            follower,
            restart: restarted.elapsed(),
        };
        row.print_details();
        rows.push(row);
    }
    println!();
    println!(
        "| ensembles | children | pods running | statuses | RSS | CPU at rest | API requests/s (writes/s, Lease excluded) | probes/s | most in flight | real follower stopped -> DEGRADED | started -> ACTIVE | restart -> every phase |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        row.print();
    }
    drop(operator);
    let _ = support::process::terminate(
        &mut kwok,
        nix::sys::signal::Signal::SIGTERM,
        Duration::from_secs(10),
    );
}

/// Stops a follower of the real ensemble: how long until its status shows DEGRADED; then starts
/// it again: how long until ACTIVE (polled every 100 ms).
async fn follower_death(real: &mut support::kubelet::Running) -> (Duration, Duration) {
    let leader = real
        .zookeeper
        .leader()
        .await
        .expect("the real ensemble has a leader");
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    real.zookeeper.stop(follower).expect("stopping a follower");
    let degraded = phase_after(&real.ensembles, Phase::Degraded).await;
    real.zookeeper
        .start_member(follower)
        .expect("starting it again");
    let active = phase_after(&real.ensembles, Phase::Active).await;
    (degraded, active)
}

/// How long until the real ensemble's status shows `phase`.
async fn phase_after(ensembles: &Api<ZooKeeperEnsemble>, phase: Phase) -> Duration {
    let started = Instant::now();
    loop {
        let status = ensembles.get("zk").await.ok().and_then(|e| e.status);
        if status.is_some_and(|s| s.phase == Some(phase)) {
            return started.elapsed();
        }
        assert!(started.elapsed() < WAIT, "the real ensemble not {phase:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// KWOK managing the nodes annotated as fake, giving pods IPs from [`POD_CIDR`].
fn start_kwok(cp: &ControlPlane) -> std::process::Child {
    let kwok = support::tool_path(
        "ZOOHERD_KWOK",
        format!("bin/kwok-{}/kwok", support::version("KWOK_VERSION")),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = std::fs::File::create(support::target_tmp_dir().join("scale-kwok.log"))
        .expect("KWOK's log");
    let stages = kwok.with_file_name("stages.yaml");
    let mut command = Command::new(kwok);
    command
        .arg(format!("--kubeconfig={}", cp.kubeconfig().display()))
        .arg(format!("--config={}", stages.display()))
        .arg("--node-lease-duration-seconds=40")
        .arg("--manage-all-nodes=false")
        .arg("--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake")
        .arg(format!("--cidr={POD_CIDR}"))
        .arg("--node-ip=127.0.0.1")
        .arg(format!("--server-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().expect("KWOK's log"))
        .stderr(log);
    support::process::spawn(command).expect("starting KWOK")
}

async fn make_nodes(client: &kube::Client) {
    let nodes = Api::<Node>::all(client.clone());
    for i in 0..NODES {
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": format!("kwok-{i}"),
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"kubernetes.io/hostname": format!("kwok-{i}"), "type": "kwok"},
            },
            "status": {
                "allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "1000"},
                "capacity": {"cpu": "1000", "memory": "4Ti", "pods": "1000"},
            },
        }))
        .expect("a node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("creating a node");
    }
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "kwok"},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
    }))
    .expect("a storage class");
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("creating the storage class");
}

/// Ensembles `zk-<i>` for each i in `range`, each with its three volumes made first.
async fn make_ensembles(client: &kube::Client, ns: &str, range: std::ops::Range<usize>) {
    use futures::StreamExt;
    let volumes = Api::<PersistentVolume>::all(client.clone());
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(client.clone(), ns);
    futures::stream::iter(range)
        .for_each_concurrent(16, |i| {
            let (volumes, ensembles) = (volumes.clone(), ensembles.clone());
            async move {
                let name = format!("zk-{i}");
                for ordinal in 0..3 {
                    let claim = format!("data-{name}-{ordinal}");
                    let volume: PersistentVolume = serde_json::from_value(json!({
                        "metadata": {"name": format!("{ns}-{claim}")},
                        "spec": {
                            "capacity": {"storage": "1Gi"},
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": "kwok",
                            "hostPath": {"path": "/nonexistent"},
                            "claimRef": {"namespace": ns, "name": claim},
                        },
                    }))
                    .expect("a volume");
                    volumes
                        .create(&PostParams::default(), &volume)
                        .await
                        .expect("creating a volume");
                }
                let ensemble: ZooKeeperEnsemble = serde_json::from_value(json!({
                    "apiVersion": "zooherd.dev/v1beta1",
                    "kind": "ZooKeeperEnsemble",
                    "metadata": {"name": name},
                    "spec": {
                        "replicas": 3,
                        "storage": {"data": {"size": "1Gi", "storageClassName": "kwok"}},
                    },
                }))
                .expect("an ensemble");
                ensembles
                    .create(&PostParams::default(), &ensemble)
                    .await
                    .expect("creating an ensemble");
            }
        })
        .await;
}

async fn count<K>(client: &kube::Client, ns: &str, filter: impl Fn(&K) -> bool) -> usize
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|list| list.items.iter().filter(|k| filter(k)).count())
        .unwrap_or(0)
}

/// The ensembles with a phase set to 1 in `zooherd_ensemble_phase`.
fn phases_published(metrics: &str) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with("zooherd_ensemble_phase{") && l.ends_with(" 1"))
        .count()
}

/// Counter values by series, from a /metrics text.
fn series(metrics: &str, prefix: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

struct Cost {
    rss_mib: f64,
    cpu_cores: f64,
    /// Requests per second by series (`zooherd_api_requests_total{verb=..,resource=..}`).
    api: BTreeMap<String, f64>,
    probes_per_second: f64,
    most_in_flight: f64,
}

/// The operator's cost over `window`, from /proc and its own metrics.
async fn at_rest(operator: &Operator, window: Duration) -> Cost {
    let pid = operator.pid();
    let before = operator.metrics().await;
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let mut most_in_flight: f64 = 0.0;
    while started.elapsed() < window {
        let text = operator.metrics().await;
        for value in series(&text, "zooherd_probe_requests_in_flight").values() {
            most_in_flight = most_in_flight.max(*value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = operator.metrics().await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let rate = |prefix| {
        let was = series(&before, prefix);
        series(&after, prefix)
            .into_iter()
            .map(|(name, now)| {
                let delta = now - was.get(&name).copied().unwrap_or(0.0);
                (name, delta / elapsed)
            })
            .filter(|(_, rate)| *rate > 0.0)
            .collect::<BTreeMap<_, _>>()
    };
    Cost {
        rss_mib: rss_kib(pid) as f64 / 1024.0,
        cpu_cores: cpu / elapsed,
        api: rate("zooherd_api_requests_total"),
        probes_per_second: rate("zooherd_probe_requests_total").values().sum(),
        most_in_flight,
    }
}

fn proc_file(pid: u32, file: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default()
}

fn rss_kib(pid: u32) -> u64 {
    proc_file(pid, "status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User and system CPU seconds of the process (fields 14 and 15 of /proc/<pid>/stat).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = proc_file(pid, "stat");
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .into_iter()
        .flatten()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

struct Row {
    total: usize,
    children: Duration,
    running: Duration,
    statuses: Duration,
    cost: Cost,
    /// The real ensemble's follower stopped -> DEGRADED; started again -> ACTIVE.
    follower: (Duration, Duration),
    restart: Duration,
}

impl Row {
    fn writes(&self) -> f64 {
        self.cost
            .api
            .iter()
            .filter(|(series, _)| !series.contains("resource=\"leases\""))
            .filter(|(series, _)| {
                ["create", "update", "patch", "delete"]
                    .iter()
                    .any(|verb| series.contains(&format!("verb=\"{verb}")))
            })
            .map(|(_, rate)| rate)
            .sum()
    }

    fn print_details(&self) {
        println!(
            "{} ensembles, at rest, API requests per second:",
            self.total
        );
        for (series, rate) in &self.cost.api {
            println!("  {series}: {rate:.2}");
        }
    }

    fn print(&self) {
        let total: f64 = self.cost.api.values().sum();
        println!(
            "| {} | {:.1} s | {:.1} s | {:.1} s | {:.0} MiB | {:.3} cores | {:.2} ({:.2}) | {:.0} | {:.0} | {:.1} s | {:.1} s | {:.1} s |",
            self.total,
            self.children.as_secs_f64(),
            self.running.as_secs_f64(),
            self.statuses.as_secs_f64(),
            self.cost.rss_mib,
            self.cost.cpu_cores,
            total,
            self.writes(),
            self.cost.probes_per_second,
            self.cost.most_in_flight,
            self.follower.0.as_secs_f64(),
            self.follower.1.as_secs_f64(),
            self.restart.as_secs_f64(),
        );
    }
}
