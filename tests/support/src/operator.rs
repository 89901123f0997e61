//! The operator binary, run by tests against the shared control plane.

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use zooherd::api::{Phase, ZooKeeperEnsemble, ZooKeeperEnsembleStatus};

use super::control_plane::ControlPlane;
use super::process;

pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, or panics with `what` after [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, TIMEOUT, Duration::from_millis(200), check).await
}

/// Polls `check` every `period` until it returns `Some`, or panics with `what` after
/// `timeout`.
pub async fn eventually_within<T, F, Fut>(
    what: &str,
    timeout: Duration,
    period: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({timeout:?})"
        );
        tokio::time::sleep(period).await;
    }
}

/// Creates the ensemble `zk` with `spec` in `namespace`.
pub async fn create_ensemble(
    client: &kube::Client,
    namespace: &str,
    spec: serde_json::Value,
) -> kube::Api<ZooKeeperEnsemble> {
    let ensembles = kube::Api::<ZooKeeperEnsemble>::namespaced(client.clone(), namespace);
    let ensemble: ZooKeeperEnsemble = serde_json::from_value(serde_json::json!({
        "apiVersion": "zooherd.dev/v1beta1",
        "kind": "ZooKeeperEnsemble",
        "metadata": {"name": "zk"},
        "spec": spec,
    }))
    .unwrap();
    ensembles
        .create(&kube::api::PostParams::default(), &ensemble)
        .await
        .unwrap();
    ensembles
}

/// Waits until the status of the ensemble `zk` is one `check` accepts; returns it. On a
/// timeout the panic shows the last status seen.
pub async fn status_where(
    ensembles: &kube::Api<ZooKeeperEnsemble>,
    what: &str,
    check: impl Fn(&ZooKeeperEnsembleStatus) -> bool,
) -> ZooKeeperEnsembleStatus {
    let last = std::sync::Mutex::new(None);
    let found = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(status) = ensembles.get("zk").await.unwrap().status {
                if check(&status) {
                    return status;
                }
                *last.lock().unwrap() = Some(status);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {what}; the last status: {:#?}",
            last.lock().unwrap()
        )
    })
}

pub fn phase_is(phase: Phase) -> impl Fn(&ZooKeeperEnsembleStatus) -> bool {
    move |s| s.phase == Some(phase)
}

/// The server image in a StatefulSet's pod template.
pub fn server_image(sts: &k8s_openapi::api::apps::v1::StatefulSet) -> Option<String> {
    sts.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .image
        .clone()
}

/// What `kubectl set image` does to the StatefulSet `name`: another image in its template.
pub async fn set_image_by_hand(
    stateful_sets: &kube::Api<k8s_openapi::api::apps::v1::StatefulSet>,
    name: &str,
) {
    let set_image = serde_json::json!([{
        "op": "replace",
        "path": "/spec/template/spec/containers/0/image",
        "value": "registry.example/someone-elses:1",
    }]);
    stateful_sets
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Json::<()>(serde_json::from_value(set_image).unwrap()),
        )
        .await
        .unwrap();
}

/// Installs the CRDs exactly as `zooherd crd` prints them, and waits until they are served.
pub fn install_crds(cp: &ControlPlane) {
    let crds = Command::new(crate::zooherd_binary())
        .arg("crd")
        .output()
        .expect("running zooherd crd");
    assert!(crds.status.success());
    let mut apply = cp
        .kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl");
    use std::io::Write;
    apply.stdin.take().unwrap().write_all(&crds.stdout).unwrap();
    let out = apply.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_established(cp, "zookeeperensembles.zooherd.dev");
}

/// Waits until the CRD `name` is served. A CRD just created has no status.conditions until the
/// API server's CRD controllers write them, and `kubectl wait --for=condition` fails at once
/// on that ("<nil> is of the type <nil>") instead of waiting: it is asked again then.
pub fn wait_established(cp: &ControlPlane, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let wait = cp
            .kubectl()
            .args(["wait", "--for=condition=Established", "--timeout=60s"])
            .arg(format!("crd/{name}"))
            .stdin(Stdio::null())
            .output()
            .expect("running kubectl wait");
        if wait.status.success() {
            return;
        }
        let stderr = String::from_utf8_lossy(&wait.stderr);
        assert!(
            stderr.contains("accessor error") && Instant::now() < deadline,
            "kubectl wait for crd/{name} ({}): {stderr}",
            wait.status
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The API server's address, from the control plane's kubeconfig (`server: https://ip:port`).
pub fn api_server_address(cp: &ControlPlane) -> std::net::SocketAddr {
    let kubeconfig = std::fs::read_to_string(cp.kubeconfig()).unwrap();
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .and_then(|address| address.trim().parse().ok())
        .expect("the kubeconfig names the API server as https://ip:port")
}

/// The tests' probe settings: rounds twice as often as the default, shorter timeouts.
const TEST_PROBES: &[&str] = &["--probe-interval-ms", "500", "--admin-timeout-ms", "300"];

/// The operator binary, watching one namespace, with its metrics on a free port.
pub struct Operator {
    child: Child,
    log: PathBuf,
    metrics_url: String,
    _dir: tempfile::TempDir,
}

impl Operator {
    pub fn start(cp: &ControlPlane, namespace: &str) -> Operator {
        Self::start_as(cp, namespace, &format!("operator-{namespace}"))
    }

    /// One replica of the operator with its own identity in the leader-election Lease.
    pub fn start_as(cp: &ControlPlane, namespace: &str, identity: &str) -> Operator {
        let dir = super::owned_temp_dir("zooherd-operator-").unwrap();
        Self::spawn(dir, cp.kubeconfig(), namespace, identity, TEST_PROBES)
    }

    /// The operator with its default probe settings (the tests' are faster), for benchmarks:
    /// what a user's operator costs.
    pub fn start_as_shipped(cp: &ControlPlane, namespace: &str) -> Operator {
        let dir = super::owned_temp_dir("zooherd-operator-").unwrap();
        let identity = format!("operator-{namespace}");
        Self::spawn(dir, cp.kubeconfig(), namespace, &identity, &[])
    }

    /// [`Operator::start_as`], reaching the API server through `proxy` (a
    /// [`super::proxy::Proxy`] to [`api_server_address`]), so that a test can cut it off.
    pub fn start_through(
        cp: &ControlPlane,
        namespace: &str,
        identity: &str,
        proxy: std::net::SocketAddr,
    ) -> Operator {
        let dir = super::owned_temp_dir("zooherd-operator-").unwrap();
        let original = std::fs::read_to_string(cp.kubeconfig()).unwrap();
        let server = format!("https://{}", api_server_address(cp));
        assert!(original.contains(&server), "{server} not in the kubeconfig");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            original.replace(&server, &format!("https://{proxy}")),
        )
        .unwrap();
        Self::spawn(dir, &kubeconfig, namespace, identity, TEST_PROBES)
    }

    fn spawn(
        dir: tempfile::TempDir,
        kubeconfig: &std::path::Path,
        namespace: &str,
        identity: &str,
        probes: &[&str],
    ) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("operator.log");
        let mut command = Command::new(crate::zooherd_binary());
        command
            .args(["operator", "--namespace", namespace])
            .args(["--http-address", &format!("127.0.0.1:{port}")])
            .args(["--lease-namespace", namespace])
            .args(["--server-image", "zooherd.test/zookeeper:test"])
            .args(probes)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info,zooherd=debug")
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(File::create(&log).unwrap());
        let child = process::spawn(command).expect("starting the operator");
        Operator {
            child,
            log,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            _dir: dir,
        }
    }

    /// Kills the replica with SIGKILL, as a node loss would: it cannot release its Lease.
    pub fn kill(mut self) {
        let _ = process::terminate(&mut self.child, Signal::SIGKILL, Duration::from_secs(10));
    }

    /// Whether the replica has exited, and with what status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .try_wait()
            .expect("checking the operator process")
    }

    pub fn log_tail(&self) -> String {
        super::tail(&self.log, 60)
    }

    /// The process id, for its figures in /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The text of its /metrics.
    pub async fn metrics(&self) -> String {
        self.try_metrics()
            .await
            .unwrap_or_else(|e| panic!("reading {}: {e}\n{}", self.metrics_url, self.log_tail()))
    }

    /// The text of its /metrics, or why there is none (not listening yet, say).
    pub async fn try_metrics(&self) -> Result<String, reqwest::Error> {
        zooherd::http::builder()
            .build()?
            .get(&self.metrics_url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    }

    /// `zooherd_api_writes_total`, summed over kinds.
    pub async fn writes(&self) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| l.starts_with("zooherd_api_writes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = process::terminate(&mut self.child, Signal::SIGTERM, Duration::from_secs(10));
        if std::thread::panicking() {
            eprintln!("--- operator log ---\n{}", self.log_tail());
        }
    }
}
