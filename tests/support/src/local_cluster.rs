//! A local cluster whose nodes really run pods, for the end-to-end tests: the control plane,
//! one node or more (kubelet, containerd, runc, CNI, kube-proxy, CoreDNS, kube-router enforcing
//! NetworkPolicies) and the operator installed with Helm, all brought up by
//! `tests/e2e/cluster.sh run` (see that script and tests/e2e/README.md).
//!
//! [`LocalCluster::start`] runs the script with SIGTERM as its parent-death signal, so the node
//! is torn down even when the test process dies; `ZOOHERD_E2E_DIR` points at a cluster that is
//! already up (`tests/e2e/demo.sh --keep`), which is then used and left running.
//!
//! The node's processes are the host's processes too (the node has its own PID namespace,
//! but the host sees into it), so the tests can do what the seed walkthroughs do to a server:
//! `kill -9` or SIGSTOP its JVM, found through the container's cgroup. They can also hold the
//! kubelet (SIGSTOP), so that a killed server stays down as long as the walkthrough needs.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use zooherd::api::{ZooKeeperEnsemble, ZooKeeperEnsembleStatus};

use super::control_plane::ControlPlane;
use super::process;

/// Where the chart runs the operator (tests/e2e/cluster.sh), and its pods' label.
pub const OPERATOR_NAMESPACE: &str = "zooherd-system";
pub const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=zooherd";

/// How long bringing the cluster up may take: images, control plane, node and Helm install.
/// Building the images from cold (base images, the release build of zooherd, the JRE) takes
/// about ten minutes of it; tests/run.sh builds them before the tests.
const START_TIMEOUT: Duration = Duration::from_secs(1200);

/// The node's cgroup root (node.sh: `cgroupRoot: /zhnode<index>`, index 0).
const NODE_CGROUP: &str = "/sys/fs/cgroup/pids/zhnode0";

/// A running local cluster.
pub struct LocalCluster {
    dir: PathBuf,
    api: ControlPlane,
    owned: Option<(Child, TempDir)>,
}

impl LocalCluster {
    /// Brings up a cluster of its own (or uses the one `ZOOHERD_E2E_DIR` names), with images
    /// made from this build's zooherd binary and 24 local volumes. Panics with the script's
    /// log if it fails.
    pub fn start() -> LocalCluster {
        Self::start_with_volumes(24)
    }

    /// The host's address on the bridge its nodes hang off (tests/e2e/node.sh): what a pod
    /// reaches a server the test runs on the host at (an S3-compatible store, say).
    pub const HOST_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 212, 0, 1);

    /// [`LocalCluster::start`] with `volumes` local PersistentVolumes (one per server; a
    /// volume whose claim is deleted is wiped and made Available again by cluster.sh).
    pub fn start_with_volumes(volumes: usize) -> LocalCluster {
        Self::start_nodes(1, volumes)
    }

    /// A cluster of `nodes` nodes (node i is named 10.212.<i>.2 and labelled
    /// `topology.kubernetes.io/zone=zone-<i>`; the operator runs on node 0) and `volumes` local
    /// volumes spread over them, each usable on its node only.
    pub fn start_nodes(nodes: usize, volumes: usize) -> LocalCluster {
        if let Some(dir) = std::env::var_os("ZOOHERD_E2E_DIR").filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("cluster-ready").exists(),
                "ZOOHERD_E2E_DIR={} holds no running cluster (tests/e2e/demo.sh --keep makes one)",
                dir.display()
            );
            return LocalCluster {
                api: ControlPlane::existing(dir.join("kubeconfig")),
                dir,
                owned: None,
            };
        }
        assert!(
            nix::unistd::geteuid().is_root(),
            "the end-to-end tests need root (network namespaces, cgroups, containerd): \
             run them as root, e.g. through `bash tests/run.sh` in CI"
        );
        let temp = super::owned_temp_dir("zooherd-e2e-").expect("a temporary directory");
        let dir = temp.path().to_path_buf();
        let log_path = dir.join("cluster.log");
        let log = File::create(&log_path).expect("creating cluster.log");
        let mut command = Command::new("bash");
        command
            .arg(super::repo_root().join("tests/e2e/cluster.sh"))
            .arg("run")
            .arg(&dir)
            .env("ZOOHERD_E2E_VOLUMES", volumes.to_string())
            .env("ZOOHERD_E2E_NODES", nodes.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cluster.log"))
            .stderr(log);
        let started = Instant::now();
        let mut child = process::spawn_with_death_signal(command, Signal::SIGTERM)
            .expect("running tests/e2e/cluster.sh");
        let ready =
            process::wait_for_ready_file(&mut child, &dir.join("cluster-ready"), START_TIMEOUT)
                .expect("waiting for cluster.sh");
        if let Err(failure) = ready {
            let _ = process::terminate(&mut child, Signal::SIGTERM, Duration::from_secs(60));
            let log = super::tail(&log_path, 80);
            let kept = temp.keep();
            panic!(
                "the local cluster did not come up: cluster.sh {failure} (files kept in {})\n{log}",
                kept.display()
            );
        }
        eprintln!(
            "local cluster (control plane, {nodes} node(s), operator by Helm) ready in {:.1} s ({})",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
        LocalCluster {
            api: ControlPlane::existing(dir.join("kubeconfig")),
            dir,
            owned: Some((child, temp)),
        }
    }

    /// The API side: kubectl, helm, clients, namespaces.
    pub fn api(&self) -> &ControlPlane {
        &self.api
    }

    /// The cluster's directory (kubeconfig, logs, volumes).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops node `index` as a machine that is switched off: its kubelet, containerd and every
    /// container die at once, and its network goes (tests/e2e/node.sh stop). Its Node object
    /// stays, as with a real machine, until someone deletes it.
    pub fn stop_node(&self, index: usize) {
        let out = Command::new("bash")
            .arg(super::repo_root().join("tests/e2e/node.sh"))
            .arg("stop")
            .arg(&self.dir)
            .env("ZOOHERD_NODE_INDEX", index.to_string())
            .env("ZOOHERD_NODE_KEEP_OBJECT", "1")
            .output()
            .expect("running node.sh stop");
        assert!(
            out.status.success(),
            "node.sh stop of node {index}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Marks the node unschedulable (`kubectl cordon`) or schedulable again: a deleted server's
    /// pod then stays Pending, i.e. the server stays stopped, until the node is uncordoned.
    pub fn set_schedulable(&self, schedulable: bool) {
        let verb = if schedulable { "uncordon" } else { "cordon" };
        let out = self
            .api
            .kubectl()
            .args([verb, "10.212.0.2"])
            .output()
            .expect("running kubectl");
        assert!(
            out.status.success(),
            "kubectl {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The host pids of the processes of the first container of `pod`, found through the
    /// container's cgroup on the node.
    pub async fn container_pids(&self, pods: &Api<Pod>, pod: &str) -> Vec<i32> {
        let object = pods.get(pod).await.expect("reading the pod");
        let container_id = object
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref()?.first()?.container_id.clone())
            .unwrap_or_else(|| panic!("pod {pod} has no running container"));
        let id = container_id
            .strip_prefix("containerd://")
            .unwrap_or_else(|| panic!("unexpected container id {container_id}"));
        let procs = find_dir(Path::new(NODE_CGROUP), id)
            .unwrap_or_else(|| panic!("no cgroup for container {id} of pod {pod}"))
            .join("cgroup.procs");
        fs::read_to_string(&procs)
            .expect("reading cgroup.procs")
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .collect()
    }

    /// Sends `signal` to every process of the first container of `pod`. Returns how many
    /// processes got it.
    pub async fn signal_container(&self, pods: &Api<Pod>, pod: &str, signal: Signal) -> usize {
        let signalled = self
            .container_pids(pods, pod)
            .await
            .into_iter()
            .filter(|pid| kill(Pid::from_raw(*pid), signal).is_ok())
            .count();
        assert!(signalled > 0, "no process of pod {pod} got {signal}");
        signalled
    }

    /// Cuts the network between `pod` and the addresses `peers` (a partition: every packet
    /// between them dropped, both ways), or heals it: iptables rules in the pod's own network
    /// namespace (entered through its container's first process), so that nothing else on the
    /// node is touched and the pod's other traffic (clients, the operator's probes) flows.
    pub async fn cut_off(&self, pods: &Api<Pod>, pod: &str, peers: &[String], cut: bool) {
        let pid = *self
            .container_pids(pods, pod)
            .await
            .first()
            .unwrap_or_else(|| panic!("pod {pod} has no process"));
        let action = if cut { "-I" } else { "-D" };
        for peer in peers {
            for rule in [["INPUT", "-s"], ["OUTPUT", "-d"]] {
                let out = Command::new("nsenter")
                    .arg(format!("--net=/proc/{pid}/ns/net"))
                    .args([
                        "iptables", "-w", action, rule[0], rule[1], peer, "-j", "DROP",
                    ])
                    .output()
                    .expect("running nsenter iptables");
                assert!(
                    out.status.success(),
                    "iptables {action} {} {} {peer} in pod {pod}: {}",
                    rule[0],
                    rule[1],
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    /// Holds (SIGSTOP) or resumes (SIGCONT) the node's kubelet: while it is held, nothing
    /// restarts a container that dies, as with a server killed outside Kubernetes.
    pub fn hold_kubelet(&self, hold: bool) {
        let pid = self
            .kubelet_pid()
            .expect("the node's kubelet is not running");
        let signal = if hold {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        kill(Pid::from_raw(pid as i32), signal).expect("signalling the kubelet");
        if hold {
            let deadline = Instant::now() + Duration::from_secs(5);
            while process::is_stopped(pid) == Some(false) {
                assert!(Instant::now() < deadline, "the kubelet did not stop");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// `kubectl apply -n NAMESPACE -f -` of `manifest` (YAML or JSON).
    pub fn apply(&self, namespace: &str, manifest: &str) {
        use std::io::Write;
        let mut child = self
            .api
            .kubectl()
            .args(["-n", namespace, "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        let mut stdin = child.stdin.take().expect("kubectl's stdin");
        stdin
            .write_all(manifest.as_bytes())
            .expect("writing to kubectl");
        drop(stdin);
        let out = child.wait_with_output().expect("waiting for kubectl");
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The ensemble's status once `check` accepts it, polled every 100 ms; panics after
    /// `timeout` with the last status and the operator's log.
    pub async fn wait_status(
        &self,
        ensembles: &Api<ZooKeeperEnsemble>,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&ZooKeeperEnsembleStatus) -> bool,
    ) -> ZooKeeperEnsembleStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let status = ensembles
                .get(name)
                .await
                .expect("reading the ensemble")
                .status;
            if let Some(status) = status.as_ref().filter(|s| check(s)) {
                return status.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "{name}: no {what} after {timeout:?}; status: {}\noperator log:\n{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default(),
                    self.operator_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server image the chart was installed with (tests/e2e/cluster.sh: images.env).
    pub fn server_image(&self) -> String {
        self.image("ZOOHERD_E2E_SERVER_IMAGE")
    }

    /// An image with busybox, for pods that are not servers (tests/e2e/image.sh toolbox).
    pub fn toolbox_image(&self) -> String {
        self.image("ZOOHERD_E2E_TOOLBOX_IMAGE")
    }

    fn image(&self, variable: &str) -> String {
        let env = fs::read_to_string(self.dir.join("images.env")).expect("reading images.env");
        env.lines()
            .find_map(|l| l.strip_prefix(variable)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("images.env has no {variable}"))
            .to_string()
    }

    /// Gives image `from` a second name `to` in the node's containerd: a new image reference
    /// with the same content, so that a spec change to it rolls the servers.
    pub fn tag_image(&self, from: &str, to: &str) {
        let out = Command::new("bash")
            .arg(super::repo_root().join("tests/e2e/node.sh"))
            .args(["ctr"])
            .arg(&self.dir)
            .args(["-n", "k8s.io", "images", "tag", "--force", from, to])
            .output()
            .expect("running node.sh ctr");
        assert!(
            out.status.success(),
            "tagging {from} as {to}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The host pid of the node's kubelet.
    fn kubelet_pid(&self) -> io::Result<u32> {
        let config = self.dir.join("node-0/kubelet/config.yaml");
        find_process(&format!("--config={}", config.display()))
    }

    /// The last lines of the operator's log (both replicas), for failure messages.
    pub fn operator_log(&self) -> String {
        let out = self
            .api
            .kubectl()
            .args([
                "-n",
                OPERATOR_NAMESPACE,
                "logs",
                "-l",
                OPERATOR_SELECTOR,
                "--tail=40",
                "--prefix",
            ])
            .output()
            .expect("running kubectl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last lines of a pod's log, for failure messages.
    pub fn pod_log(&self, namespace: &str, pod: &str) -> String {
        let out = self
            .api
            .kubectl()
            .args(["-n", namespace, "logs", pod, "--tail=80"])
            .output()
            .expect("running kubectl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.owned.is_none() {
            // A cluster that outlives the test: undo what a failed walkthrough may have left.
            if self.kubelet_pid().is_ok() {
                self.hold_kubelet(false);
            }
            self.set_schedulable(true);
        }
        if let Some((mut child, temp)) = self.owned.take() {
            // The script tears the node and the control plane down on SIGTERM.
            let _ = process::terminate(&mut child, Signal::SIGTERM, Duration::from_secs(90));
            drop(temp);
        }
    }
}

/// The directory named `name` below `root` (depth-first).
fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    for entry in fs::read_dir(root).ok()?.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if entry.file_name() == name {
            return Some(path);
        }
        if let Some(found) = find_dir(&path, name) {
            return Some(found);
        }
    }
    None
}

/// The pid of a process whose command line has the argument `arg`.
fn find_process(arg: &str) -> io::Result<u32> {
    for entry in fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            return Ok(pid);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no process with argument {arg}"),
    ))
}

/// The tests' way into an ensemble's AdminServers, the operator's: over HTTPS with a client
/// certificate issued from the ensemble's CA (in its TLS Secret) when the servers run quorum
/// TLS, which secures the AdminServer; plain HTTP without the Secret.
pub struct AdminAccess {
    client: reqwest::Client,
    scheme: &'static str,
}

impl AdminAccess {
    /// Access to the AdminServers of ensemble `namespace/name`.
    pub async fn of(client: &kube::Client, namespace: &str, name: &str) -> Self {
        let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
        let secret = secrets
            .get_opt(&format!("{name}-zooherd-tls"))
            .await
            .expect("reading the ensemble's TLS Secret");
        let Some(data) = secret.and_then(|s| s.data) else {
            let client = zooherd::http::builder().build().expect("an HTTP client");
            return Self {
                client,
                scheme: "http",
            };
        };
        let text = |key: &str| String::from_utf8(data[key].0.clone()).expect("PEM text");
        let tls = zooherd::tls::admin_client(
            &format!("{namespace}/{name}"),
            &text("ca.crt"),
            &text("ca.key"),
            "zooherd tests",
            jiff::Timestamp::now(),
        )
        .expect("a client certificate from the ensemble's CA");
        let client = zooherd::http::admin_builder(&tls)
            .expect("a TLS client")
            .build()
            .expect("a TLS client");
        Self {
            client,
            scheme: "https",
        }
    }

    /// Whether it speaks TLS: false before the ensemble's TLS Secret exists.
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
    }

    /// The AdminServer's `srvr` answer of a pod, as text (the seeds read the same JSON), or
    /// "unreachable: ..." when it does not answer within 3 s.
    pub async fn srvr(&self, pod_ip: &str) -> String {
        let url = format!("{}://{pod_ip}:8080/commands/srvr", self.scheme);
        match self
            .client
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) => format!("unreachable: {e}"),
        }
    }
}
