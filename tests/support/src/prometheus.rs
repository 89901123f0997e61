//! A real Prometheus server (built from the Prometheus Go module by
//! `tests/cluster/build-prometheus.sh`) watching the local cluster of the end-to-end tier.
//!
//! It runs on the host, on a loopback port, with a temporary data directory, and loads the
//! chart's alert rules (`charts/zooherd/files/alerts.yaml`) as a plain Prometheus does
//! (`rule_files`). It finds its targets through the cluster's API (Kubernetes discovery, with
//! the cluster's kubeconfig) and scrapes every second:
//! - job `zooherd`: the operator's pods, port `http` (8080, what the `zooherd-metrics` Service
//!   and the chart's ServiceMonitor select), with `honor_labels` as the ServiceMonitor has, so
//!   that the per-ensemble series keep the ensemble's namespace;
//! - job `zookeeper`: every server's metrics port (7000), with the README's plain scrape
//!   configuration (labels `ensemble`, `namespace`, `pod`). The node admits the host to the pods
//!   as it admits itself, so the ensembles' NetworkPolicies do not stop these scrapes.
//!
//! Rules are evaluated every second too. The tests read its HTTP API: `/api/v1/rules` (every
//! rule loaded and evaluated without error), `/api/v1/alerts` (which alerts are pending or
//! firing, for which ensemble), `/api/v1/query`. The process is killed when the value is
//! dropped, and with the test process (parent-death signal).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use tempfile::TempDir;

use super::process;

/// The chart's alert rules, which the server loads.
pub const RULES: &str = "charts/zooherd/files/alerts.yaml";

/// How long the server may take to start and answer `/-/ready`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The Prometheus server: `ZOOHERD_PROMETHEUS`, or the one setup.sh built.
pub fn prometheus_path() -> PathBuf {
    let dir = format!(
        "bin/prometheus-{}",
        super::version("PROMETHEUS_MODULE_VERSION")
    );
    super::tool_path("ZOOHERD_PROMETHEUS", Path::new(&dir).join("prometheus"))
}

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    url: String,
    http: reqwest::Client,
    dir: TempDir,
}

/// The scrape configuration and rule files (see the module docs), for a cluster reached with
/// `kubeconfig` whose operator runs in `operator_namespace`.
fn config(kubeconfig: &Path, operator_namespace: &str, rules: &Path) -> String {
    let kubeconfig = kubeconfig.display();
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: zooherd
    honor_labels: true
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: {kubeconfig}
        namespaces:
          names: [{operator_namespace}]
    relabel_configs:
      - source_labels:
          - __meta_kubernetes_pod_label_app_kubernetes_io_name
          - __meta_kubernetes_pod_label_app_kubernetes_io_component
          - __meta_kubernetes_pod_container_port_name
        regex: zooherd;operator;http
        action: keep
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
  - job_name: zookeeper
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: {kubeconfig}
    relabel_configs:
      - source_labels:
          - __meta_kubernetes_pod_label_app_kubernetes_io_name
          - __meta_kubernetes_pod_label_app_kubernetes_io_component
          - __meta_kubernetes_pod_label_app_kubernetes_io_managed_by
          - __meta_kubernetes_pod_container_port_name
        regex: zookeeper;server;zooherd;metrics
        action: keep
      - source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_instance]
        target_label: ensemble
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
"#,
        rules = rules.display()
    )
}

impl Prometheus {
    /// Starts the server for the cluster reached with `kubeconfig`, whose operator runs in
    /// `operator_namespace`, and waits until it is ready. Panics with its log if it does not
    /// start.
    pub async fn start(kubeconfig: &Path, operator_namespace: &str) -> Prometheus {
        let binary = prometheus_path();
        super::require_file(&binary, "prometheus").unwrap();
        let dir = super::owned_temp_dir("zooherd-prometheus-").expect("a temporary directory");
        let rules = super::repo_root().join(RULES);
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config(kubeconfig, operator_namespace, &rules))
            .expect("writing prometheus.yml");
        let log_path = dir.path().join("prometheus.log");
        let started = Instant::now();
        // A free loopback port: the kernel picks one, free again once the listener is dropped.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = fs::File::create(&log_path).expect("creating prometheus.log");
        let mut command = Command::new(&binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("prometheus.log"))
            .stderr(log);
        let child = process::spawn(command).expect("starting prometheus");
        let mut prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: zooherd::http::builder().build().expect("an HTTP client"),
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !prometheus.ready().await {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!(
                    "prometheus exited ({status}):\n{}",
                    super::tail(&log_path, 30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after {START_TIMEOUT:?}:\n{}",
                super::tail(&log_path, 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "(alerts) prometheus {} ready on {} after {:.1} s, with the rules of {RULES}",
            super::version("PROMETHEUS_VERSION"),
            prometheus.url,
            started.elapsed().as_secs_f64()
        );
        prometheus
    }

    async fn ready(&self) -> bool {
        self.http
            .get(format!("{}/-/ready", self.url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// The `data` of an API answer (`path` below `/api/v1/`); panics on an error.
    pub async fn api(&self, path: &str) -> Value {
        let url = format!("{}/api/v1/{path}", self.url);
        let answer: Value = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(answer["status"], "success", "{url}: {answer}");
        answer["data"].clone()
    }

    /// The result of an instant query.
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let query: String = url_encode(promql);
        let data = self.api(&format!("query?query={query}")).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The result of a range query from `start` to `end` (Unix seconds), every `step` seconds.
    pub async fn query_range(&self, promql: &str, start: f64, end: f64, step: f64) -> Vec<Value> {
        let query: String = url_encode(promql);
        let data = self
            .api(&format!(
                "query_range?query={query}&start={start:.3}&end={end:.3}&step={step}"
            ))
            .await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The pending and firing alerts: (alertname, its labels, its state).
    pub async fn alerts(&self) -> Vec<(String, Value, String)> {
        let data = self.api("alerts").await;
        data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                (
                    a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    a["labels"].clone(),
                    a["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The state (`pending` or `firing`) of alert `name` for ensemble `namespace`/`ensemble`
    /// (labels `namespace` and `name`), or None when it is inactive.
    pub async fn alert_state(
        &self,
        alert: &str,
        namespace: &str,
        ensemble: &str,
    ) -> Option<String> {
        self.alerts()
            .await
            .into_iter()
            .find(|(name, labels, _)| {
                name == alert && labels["namespace"] == namespace && labels["name"] == ensemble
            })
            .map(|(_, _, state)| state)
    }

    /// Waits until alert `alert` of the ensemble is active (`active`: pending or firing) or
    /// inactive (`!active`), polling every 200 ms; returns how long it took. Panics after
    /// `timeout` with every active alert and the server's log.
    pub async fn wait_alert(
        &self,
        alert: &str,
        (namespace, ensemble): (&str, &str),
        active: bool,
        timeout: Duration,
    ) -> (Duration, Option<String>) {
        let start = Instant::now();
        loop {
            let state = self.alert_state(alert, namespace, ensemble).await;
            if state.is_some() == active {
                return (start.elapsed(), state);
            }
            if start.elapsed() > timeout {
                panic!(
                    "{alert} for {namespace}/{ensemble} still {} after {timeout:?}; active \
                     alerts: {:#?}\nphases: {:#?}\nprometheus log:\n{}",
                    if active { "inactive" } else { "active" },
                    self.alerts().await,
                    self.query(&format!(
                        "zooherd_ensemble_phase{{namespace=\"{namespace}\",name=\"{ensemble}\"}}"
                    ))
                    .await,
                    super::tail(&self.dir.path().join("prometheus.log"), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every rule of every group of [`RULES`] is loaded and has been evaluated
    /// without error (health `ok`); returns how many alerting rules there are.
    pub async fn wait_rules_healthy(&self, timeout: Duration) -> usize {
        let text = fs::read_to_string(super::repo_root().join(RULES)).expect("reading the rules");
        let file: Value = serde_yaml::from_str(&text).expect("parsing the rules");
        let want: Vec<String> = file["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["alert"].as_str().map(str::to_owned))
            .collect();
        let start = Instant::now();
        loop {
            let data = self.api("rules").await;
            let rules: Vec<Value> = data["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let mut loaded: Vec<String> = rules
                .iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect();
            loaded.sort();
            let mut sorted = want.clone();
            sorted.sort();
            assert_eq!(loaded, sorted, "the rules Prometheus loaded from {RULES}");
            let unhealthy: Vec<&Value> = rules
                .iter()
                .filter(|r| {
                    r["health"] != "ok" || r["lastError"].as_str().is_some_and(|e| !e.is_empty())
                })
                .collect();
            if unhealthy.is_empty() {
                return want.len();
            }
            assert!(
                start.elapsed() < timeout,
                "rules not evaluated without error after {timeout:?}: {unhealthy:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the instant query `promql` returns at least `count` series; returns them.
    pub async fn wait_series(&self, promql: &str, count: usize, timeout: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let result = self.query(promql).await;
            if result.len() >= count {
                return result;
            }
            assert!(
                start.elapsed() < timeout,
                "`{promql}` returned {} series after {timeout:?}, expected {count}: {result:#?}\n\
                 targets: {}\nprometheus log:\n{}",
                result.len(),
                self.api("targets?state=active").await,
                super::tail(&self.dir.path().join("prometheus.log"), 20)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = process::terminate(&mut self.child, Signal::SIGTERM, Duration::from_secs(10));
    }
}

/// Percent-encodes a query parameter's value.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
