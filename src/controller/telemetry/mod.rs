//! What the operator tells about itself: Prometheus metrics, and the /healthz, /readyz and
//! /metrics endpoints that the Deployment's probes and a ServiceMonitor scrape.

mod backups;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::{MemberStatus, Phase};
use crate::quorum::probe::ProbeTraffic;
pub use backups::BackupMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Success,
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnsembleLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    namespace: String,
    name: String,
    pod: String,
    state: String,
}

/// The member_state series set for each ensemble.
type MemberSeries = HashMap<EnsembleLabels, Vec<MemberLabels>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    name: String,
    phase: String,
}

/// The buckets of the duration histograms, in seconds: a reconcile or a probe round takes
/// milliseconds when every member answers, up to the probe timeout when one does not.
const DURATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The operator's metrics. Cheap to clone: every field is a shared handle.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Family<OutcomeLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histogram,
    api_writes: Family<WriteLabels, Counter>,
    ensemble_phase: Family<PhaseLabels, Gauge>,
    fault_tolerance: Family<EnsembleLabels, Gauge>,
    member_restarts: Family<EnsembleLabels, Counter>,
    quorum_certificate_expiry: Family<EnsembleLabels, Gauge>,
    client_ca_expiry: Family<EnsembleLabels, Gauge>,
    /// The series of ZooKeeperBackups and their drills.
    pub backups: BackupMetrics,
    member_state: Family<MemberLabels, Gauge>,
    /// The member_state series last set for each ensemble (namespace, name), so that a
    /// member's old state goes when it changes: one series per member, not one per state.
    member_series: Arc<Mutex<MemberSeries>>,
    probe_round_duration: Histogram,
    probe_traffic: ProbeTraffic,
    api_requests: Family<RequestLabels, Counter>,
    leading: Gauge,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("zooherd");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciliations by outcome",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error kind",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(DURATION_BUCKETS);
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconciliation, probe round included",
            reconcile_duration.clone(),
        );
        let api_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Writes the operator sent to the Kubernetes API server, by object kind",
            api_writes.clone(),
        );
        let ensemble_phase = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "ensemble_phase",
            "1 for the phase each ensemble is in, 0 for the others",
            ensemble_phase.clone(),
        );
        let fault_tolerance = Family::<EnsembleLabels, Gauge>::default();
        registry.register(
            "ensemble_fault_tolerance",
            "How many more voters of each ensemble may fail before its quorum is lost (.status.faultTolerance)",
            fault_tolerance.clone(),
        );
        let member_restarts = Family::<EnsembleLabels, Counter>::default();
        registry.register(
            "member_restarts",
            "Pods the operator deleted because their member had failed",
            member_restarts.clone(),
        );
        let quorum_certificate_expiry = Family::<EnsembleLabels, Gauge>::default();
        registry.register(
            "quorum_certificate_expiry_timestamp_seconds",
            "When the certificate each ensemble's servers present to each other expires (Unix time; .status.quorumTls.certificateNotAfter)",
            quorum_certificate_expiry.clone(),
        );
        let client_ca_expiry = Family::<EnsembleLabels, Gauge>::default();
        registry.register(
            "client_ca_expiry_timestamp_seconds",
            "When the last CA certificate of each ensemble's spec.clientAuthentication.x509ClientCaSecret expires (Unix time; .status.clientCaNotAfter)",
            client_ca_expiry.clone(),
        );
        let backups = BackupMetrics::register(&mut registry);
        let member_state = Family::<MemberLabels, Gauge>::default();
        registry.register(
            "member_state",
            "1 for each voter of each ensemble, labelled with its pod and its state in .status.members (leader, follower, not-serving, unreachable, ...)",
            member_state.clone(),
        );
        let probe_round_duration = Histogram::new(DURATION_BUCKETS);
        registry.register(
            "probe_round_duration_seconds",
            "Duration of one probe round: every voter of one ensemble asked, in parallel, what it is doing",
            probe_round_duration.clone(),
        );
        let probe_traffic = ProbeTraffic::default();
        registry.register(
            "probe_requests",
            "AdminServer requests sent to the members (srvr, and mntr to leaders); members that keep failing are asked less often",
            probe_traffic.requests.clone(),
        );
        registry.register(
            "probe_requests_in_flight",
            "AdminServer requests sent and not yet answered or timed out",
            probe_traffic.in_flight.clone(),
        );
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests the operator sent to the Kubernetes API server, by verb and resource (watches counted when opened)",
            api_requests.clone(),
        );
        let leading = Gauge::default();
        registry.register(
            "leading",
            "1 while this replica runs the controllers (it holds the leader-election Lease), 0 while it stands by",
            leading.clone(),
        );
        Self {
            reconciles,
            reconcile_errors,
            reconcile_duration,
            api_writes,
            ensemble_phase,
            fault_tolerance,
            member_restarts,
            quorum_certificate_expiry,
            client_ca_expiry,
            backups,
            member_state,
            member_series: Arc::default(),
            probe_round_duration,
            probe_traffic,
            api_requests,
            leading,
            registry: Arc::new(registry),
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, outcome: Outcome, took: Duration) {
        self.reconciles
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    pub fn reconcile_failed(&self, error: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: error.to_owned(),
            })
            .inc();
    }

    pub fn api_write(&self, kind: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn phase(&self, namespace: &str, name: &str, phase: Phase) {
        // The restart counter exists from 0, so that an alert on its increase counts the
        // first restart too.
        drop(self.member_restarts.get_or_create(&EnsembleLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }));
        for candidate in [Phase::Pending, Phase::Active, Phase::Degraded, Phase::Down] {
            self.ensemble_phase
                .get_or_create(&PhaseLabels {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    phase: candidate.as_str().to_owned(),
                })
                .set(i64::from(candidate == phase));
        }
    }

    /// How many more voters may fail: the status's `faultTolerance`.
    pub fn fault_tolerance(&self, namespace: &str, name: &str, tolerance: usize) {
        self.fault_tolerance
            .get_or_create(&EnsembleLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .set(i64::try_from(tolerance).unwrap_or(i64::MAX));
    }

    /// When the ensemble's quorum certificate expires (None: the servers use none).
    pub fn quorum_certificate_expiry(
        &self,
        namespace: &str,
        name: &str,
        not_after: Option<jiff::Timestamp>,
    ) {
        expiry(&self.quorum_certificate_expiry, namespace, name, not_after);
    }

    /// When the CA of the ensemble's client certificates expires (None: it has none).
    pub fn client_ca_expiry(
        &self,
        namespace: &str,
        name: &str,
        not_after: Option<jiff::Timestamp>,
    ) {
        expiry(&self.client_ca_expiry, namespace, name, not_after);
    }

    /// The voters' states, as `.status.members` lists them.
    pub fn members(&self, namespace: &str, name: &str, members: &[MemberStatus]) {
        let current: Vec<MemberLabels> = members
            .iter()
            .map(|m| MemberLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                pod: m.pod.clone(),
                state: m.state.as_str().to_owned(),
            })
            .collect();
        for labels in &current {
            self.member_state.get_or_create(labels).set(1);
        }
        let key = EnsembleLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let mut series = self.member_series.lock().expect("member series lock");
        let previous = series.insert(key, current.clone()).unwrap_or_default();
        for gone in previous.iter().filter(|l| !current.contains(l)) {
            self.member_state.remove(gone);
        }
    }

    /// How long one probe round of an ensemble's voters took.
    /// The counters a prober counts its requests in.
    pub fn probe_traffic(&self) -> ProbeTraffic {
        self.probe_traffic.clone()
    }

    /// One request to the API server.
    pub fn api_request(&self, verb: &'static str, resource: String) {
        self.api_requests
            .get_or_create(&RequestLabels { verb, resource })
            .inc();
    }

    pub fn probe_round(&self, took: Duration) {
        self.probe_round_duration.observe(took.as_secs_f64());
    }

    /// Whether this replica runs the controllers (holds the Lease, or runs without election).
    pub fn leading(&self, leading: bool) {
        self.leading.set(i64::from(leading));
    }

    /// Drops the per-ensemble series of a deleted ensemble.
    pub fn forget_ensemble(&self, namespace: &str, name: &str) {
        for candidate in [Phase::Pending, Phase::Active, Phase::Degraded, Phase::Down] {
            self.ensemble_phase.remove(&PhaseLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                phase: candidate.as_str().to_owned(),
            });
        }
        let ensemble = EnsembleLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.fault_tolerance.remove(&ensemble);
        self.member_restarts.remove(&ensemble);
        self.quorum_certificate_expiry.remove(&ensemble);
        self.client_ca_expiry.remove(&ensemble);
        self.backups.forget(&ensemble);
        let members = self
            .member_series
            .lock()
            .expect("member series lock")
            .remove(&ensemble);
        for labels in members.unwrap_or_default() {
            self.member_state.remove(&labels);
        }
    }

    pub fn member_restarted(&self, namespace: &str, name: &str) {
        self.member_restarts
            .get_or_create(&EnsembleLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing metrics to a String cannot fail");
        text
    }
}

/// Health of the process, as the HTTP endpoints report it.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Ready once the operator reached the API server and is either leading or standing by.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct Endpoints {
    metrics: Metrics,
    health: Health,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Endpoints>) -> impl IntoResponse {
    if state.health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(state): State<Endpoints>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Serves /healthz, /readyz and /metrics until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(self::metrics))
        .with_state(Endpoints { metrics, health });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Sets the ensemble's series of the expiry gauge `family` to `not_after`, or removes it.
fn expiry(
    family: &Family<EnsembleLabels, Gauge>,
    namespace: &str,
    name: &str,
    not_after: Option<jiff::Timestamp>,
) {
    let ensemble = EnsembleLabels {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    match not_after {
        Some(at) => {
            family.get_or_create(&ensemble).set(at.as_second());
        }
        None => {
            family.remove(&ensemble);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MemberState;

    #[test]
    fn phase_gauge_marks_exactly_one_phase() {
        let metrics = Metrics::default();
        metrics.phase("ns", "zk", Phase::Active);
        metrics.phase("ns", "zk", Phase::Degraded);
        let text = metrics.encode();
        assert!(
            text.contains(r#"zooherd_ensemble_phase{namespace="ns",name="zk",phase="DEGRADED"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"zooherd_ensemble_phase{namespace="ns",name="zk",phase="ACTIVE"} 0"#),
            "{text}"
        );
        metrics.forget_ensemble("ns", "zk");
        assert!(!metrics.encode().contains(r#"name="zk""#));
    }

    /// The series the chart's alert rules (charts/zooherd/files/alerts.yaml) read, by the
    /// names and labels they use.
    #[test]
    fn alerted_series_have_the_names_the_rules_use() {
        let metrics = Metrics::default();
        let text = metrics.encode();
        assert!(text.contains("zooherd_leading 0\n"), "{text}");
        assert!(
            text.contains("zooherd_reconcile_duration_seconds_count 0\n"),
            "{text}"
        );
        metrics.leading(true);
        metrics.phase("ns", "zk", Phase::Active);
        assert!(
            metrics
                .encode()
                .contains(r#"zooherd_member_restarts_total{namespace="ns",name="zk"} 0"#),
            "the restart counter starts at 0"
        );
        metrics.fault_tolerance("ns", "zk", 1);
        metrics.fault_tolerance("ns", "zk", 0);
        metrics.member_restarted("ns", "zk");
        metrics.reconciled(Outcome::Success, Duration::from_millis(3));
        metrics.reconcile_failed("apply");
        let text = metrics.encode();
        for series in [
            "zooherd_leading 1\n",
            r#"zooherd_ensemble_fault_tolerance{namespace="ns",name="zk"} 0"#,
            r#"zooherd_member_restarts_total{namespace="ns",name="zk"} 1"#,
            r#"zooherd_reconciles_total{outcome="Success"} 1"#,
            r#"zooherd_reconcile_errors_total{error="apply"} 1"#,
            "zooherd_reconcile_duration_seconds_count 1\n",
        ] {
            assert!(text.contains(series), "no {series} in {text}");
        }
        metrics.forget_ensemble("ns", "zk");
        assert!(
            !metrics
                .encode()
                .contains("zooherd_ensemble_fault_tolerance{")
        );
    }

    #[test]
    fn the_quorum_certificates_expiry_is_exported_while_the_servers_use_one() {
        let metrics = Metrics::default();
        let at: jiff::Timestamp = "2031-12-01T00:00:00Z".parse().unwrap();
        metrics.quorum_certificate_expiry("ns", "zk", Some(at));
        assert!(metrics.encode().contains(
            "zooherd_quorum_certificate_expiry_timestamp_seconds{namespace=\"ns\",name=\"zk\"} 1953849600\n"
        ));
        metrics.quorum_certificate_expiry("ns", "zk", None);
        assert!(
            !metrics
                .encode()
                .contains("zooherd_quorum_certificate_expiry_timestamp_seconds{")
        );
    }

    #[test]
    fn the_client_cas_expiry_is_exported_while_the_ensemble_names_one() {
        let metrics = Metrics::default();
        let at: jiff::Timestamp = "2031-12-01T00:00:00Z".parse().unwrap();
        metrics.client_ca_expiry("ns", "zk", Some(at));
        let series = "zooherd_client_ca_expiry_timestamp_seconds{namespace=\"ns\",name=\"zk\"}";
        assert!(
            metrics.encode().contains(&format!("{series} 1953849600\n")),
            "{}",
            metrics.encode()
        );
        metrics.client_ca_expiry("ns", "zk", None);
        assert!(!metrics.encode().contains(series));
        metrics.client_ca_expiry("ns", "zk", Some(at));
        metrics.forget_ensemble("ns", "zk");
        assert!(!metrics.encode().contains(series));
    }

    #[test]
    fn each_member_has_one_state_series_which_follows_it() {
        let metrics = Metrics::default();
        let member = |pod: &str, state| MemberStatus::new(pod.to_owned(), 1, state);
        metrics.members(
            "ns",
            "zk",
            &[
                member("zk-0", MemberState::Leader),
                member("zk-1", MemberState::Follower),
            ],
        );
        metrics.members(
            "ns",
            "zk",
            &[
                member("zk-0", MemberState::Unreachable),
                member("zk-1", MemberState::Leader),
            ],
        );
        let text = metrics.encode();
        let mut series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("zooherd_member_state{"))
            .collect();
        series.sort();
        assert_eq!(
            series,
            [
                r#"zooherd_member_state{namespace="ns",name="zk",pod="zk-0",state="unreachable"} 1"#,
                r#"zooherd_member_state{namespace="ns",name="zk",pod="zk-1",state="leader"} 1"#,
            ],
            "{text}"
        );
        metrics.forget_ensemble("ns", "zk");
        assert!(!metrics.encode().contains("zooherd_member_state{"));
    }

    #[test]
    fn writes_are_counted_by_kind() {
        let metrics = Metrics::default();
        metrics.api_write("StatefulSet");
        metrics.api_write("StatefulSet");
        assert!(
            metrics
                .encode()
                .contains(r#"zooherd_api_writes_total{kind="StatefulSet"} 2"#)
        );
    }
}
