//! A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager
//! and kube-scheduler, built by `tests/cluster/setup.sh` and run by
//! `tests/cluster/control-plane.sh` (which generates the PKI and kubeconfigs, starts the four
//! components on free ports of 127.0.0.1 and waits for `/readyz`).
//!
//! [`shared()`] gives every test of a process the same control plane; tests isolate themselves
//! with [`ControlPlane::create_namespace`]. When `ZOOHERD_TEST_KUBECONFIG` is set (as
//! `tests/run.sh` does, to share one control plane across all test binaries), that cluster is
//! used and nothing is started.
//!
//! A control plane started here dies with the test process, even when a test panics or the
//! process is killed: the script is spawned with PR_SET_PDEATHSIG from a long-lived thread
//! (see [`super::process`]) and starts its components the same way. The shared one is stopped,
//! and its temporary directory removed, when the test process exits.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::process;

/// How long a cold start may take before it counts as failed (the machine may be busy).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// A running control plane: one this process started, or the one `ZOOHERD_TEST_KUBECONFIG`
/// points at.
pub struct ControlPlane {
    kubeconfig: PathBuf,
    /// Where helm keeps its configuration, cache and data for this control plane.
    helm_home: PathBuf,
    owned: Mutex<Option<Owned>>,
}

struct Owned {
    child: Child,
    dir: TempDir,
}

/// The control plane shared by all tests of this process; started on first use.
///
/// Panics (in every test that calls it) if it cannot be started, with the components' logs.
pub fn shared() -> &'static ControlPlane {
    static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    extern "C" fn stop_shared() {
        if let Some(Ok(cp)) = SHARED.get() {
            cp.stop();
        }
    }
    let result = SHARED.get_or_init(|| {
        if let Some(path) = std::env::var_os("ZOOHERD_TEST_KUBECONFIG").filter(|p| !p.is_empty()) {
            return Ok(ControlPlane::existing(PathBuf::from(path)));
        }
        let cp = ControlPlane::start().map_err(|e| e.to_string())?;
        // Statics are never dropped: stop it when the test process exits.
        // SAFETY: registering a plain function; it runs once, at exit.
        unsafe {
            nix::libc::atexit(stop_shared);
        }
        Ok(cp)
    });
    match result {
        Ok(cp) => cp,
        Err(e) => panic!("cannot start the test control plane: {e}"),
    }
}

impl ControlPlane {
    /// Uses an already running cluster, given its admin kubeconfig.
    pub fn existing(kubeconfig: PathBuf) -> ControlPlane {
        let helm_home = kubeconfig
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("helm");
        ControlPlane {
            kubeconfig,
            helm_home,
            owned: Mutex::new(None),
        }
    }

    /// Starts a control plane of its own, in a new temporary directory, on free ports; returns
    /// once the API server's `/readyz` and the other components' `/healthz` answer ok.
    /// Dropping it stops the components and removes the directory.
    pub fn start() -> io::Result<ControlPlane> {
        let script = super::repo_root().join("tests/cluster/control-plane.sh");
        let dir = super::owned_temp_dir("zooherd-control-plane-")?;
        let ports = free_ports(5)?;
        let log_path = dir.path().join("control-plane.log");
        let log = File::create(&log_path)?;
        let mut command = Command::new("bash");
        command
            .arg(&script)
            .arg("run")
            .arg(dir.path())
            .env("ZOOHERD_CP_ETCD_PORT", ports[0].to_string())
            .env("ZOOHERD_CP_ETCD_PEER_PORT", ports[1].to_string())
            .env("ZOOHERD_CP_APISERVER_PORT", ports[2].to_string())
            .env("ZOOHERD_CP_KCM_PORT", ports[3].to_string())
            .env("ZOOHERD_CP_SCHEDULER_PORT", ports[4].to_string())
            // The logs are reported below, not by the script.
            .env("ZOOHERD_CP_QUIET", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let started = Instant::now();
        let mut child = process::spawn(command)?;
        let ready =
            process::wait_for_ready_file(&mut child, &dir.path().join("ready"), START_TIMEOUT)?;
        if let Err(failure) = ready {
            let _ = process::terminate(&mut child, Signal::SIGTERM, Duration::from_secs(10));
            let report = logs_report(dir.path(), &log_path);
            // Kept for a look; the next run's owned_temp_dir removes it.
            let kept = dir.keep();
            return Err(io::Error::other(format!(
                "control-plane.sh {failure} (files kept in {})\n{report}",
                kept.display()
            )));
        }
        eprintln!(
            "test control plane ready in {} ms ({})",
            started.elapsed().as_millis(),
            dir.path().display()
        );
        Ok(ControlPlane {
            kubeconfig: dir.path().join("kubeconfig"),
            helm_home: dir.path().join("helm"),
            owned: Mutex::new(Some(Owned { child, dir })),
        })
    }

    /// Stops the components (if this process started them) and removes their directory.
    /// Idempotent; [`Drop`] calls it too.
    pub fn stop(&self) {
        let owned = match self.owned.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(Owned { mut child, dir }) = owned {
            let _ = process::terminate(&mut child, Signal::SIGTERM, Duration::from_secs(15));
            drop(dir);
        }
    }

    /// The admin kubeconfig (a client certificate in group system:masters).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new client for this control plane. Build one per test (per tokio runtime).
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config().await)
            .unwrap_or_else(|e| panic!("building a client: {e}"))
    }

    /// The admin kubeconfig's client configuration.
    pub async fn config(&self) -> kube::Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.kubeconfig.display()));
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("loading {}: {e}", self.kubeconfig.display()))
    }

    /// `kubectl --kubeconfig <admin kubeconfig>`, ready for more arguments.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(super::kubectl_path());
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// `helm --kubeconfig <admin kubeconfig>`, with helm's own files kept beside the kubeconfig.
    pub fn helm(&self) -> Command {
        let mut command = Command::new(super::helm_path());
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CONFIG_HOME", self.helm_home.join("config"))
            .env("HELM_CACHE_HOME", self.helm_home.join("cache"))
            .env("HELM_DATA_HOME", self.helm_home.join("data"));
        command
    }

    /// Creates a namespace named `<prefix>-<unique suffix>` and returns its name, once the
    /// controller manager has given it its `default` ServiceAccount (pods need it).
    pub async fn create_namespace(
        &self,
        client: &kube::Client,
        prefix: &str,
    ) -> Result<String, kube::Error> {
        let prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(30)
            .collect();
        let prefix = prefix.trim_matches('-');
        let name = super::unique_name(if prefix.is_empty() { "test" } else { prefix });
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    "zooherd.dev/test-namespace".to_string(),
                    "true".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &name);
        let deadline = Instant::now() + Duration::from_secs(60);
        while accounts.get_opt("default").await?.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(name)
    }

    /// Deletes a namespace (and so everything in it); does not wait for it to be gone.
    pub async fn delete_namespace(
        &self,
        client: &kube::Client,
        name: &str,
    ) -> Result<(), kube::Error> {
        Api::<Namespace>::all(client.clone())
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ())
    }

    /// The log files of the components, when this process started them.
    pub fn log_dir(&self) -> Option<PathBuf> {
        let guard = self.owned.lock().ok()?;
        guard.as_ref().map(|owned| owned.dir.path().join("logs"))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` distinct free TCP ports on 127.0.0.1, found by binding port 0.
fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    // Hold all listeners until every port is known, so that they are distinct.
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// The script's output and the tail of every log in `<dir>/logs`.
fn logs_report(dir: &Path, script_log: &Path) -> String {
    let mut report = format!(
        "----- {} -----\n{}\n",
        script_log.display(),
        super::tail(script_log, 60)
    );
    if let Ok(entries) = fs::read_dir(dir.join("logs")) {
        let mut logs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        logs.sort();
        for log in logs {
            report.push_str(&format!(
                "----- {} -----\n{}\n",
                log.display(),
                super::tail(&log, 40)
            ));
        }
    }
    report
}
