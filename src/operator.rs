//! `zooherd operator`: the controller as a long-running service.
//!
//! Besides reconciling, a production operator must be observable (logs, Events, metrics, health
//! endpoints), stop cleanly on SIGTERM, and be safe to run with two replicas: only the holder
//! of a coordination.k8s.io Lease reconciles; the other stands by, ready to take over.

use std::net::SocketAddr;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Reporter;
use kube_lease_manager::LeaseManagerBuilder;

use crate::build;
use crate::controller::{self, Fence, Health, Metrics, Settings};
use crate::quorum::probe::ProbeSettings;
use crate::quorum::rule::RuleSettings;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Flags of `zooherd operator`; every flag can also be set through its environment variable.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Cluster DNS domain, used in the server names written to zoo.cfg.
    #[arg(long, env = "ZOOHERD_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Server image for ensembles that do not set spec.image.
    #[arg(long, env = "ZOOHERD_SERVER_IMAGE", default_value = crate::agent::DEFAULT_SERVER_IMAGE)]
    pub server_image: String,

    /// Namespace to watch (repeat for several); all namespaces when not given.
    #[arg(long = "namespace", env = "ZOOHERD_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "ZOOHERD_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: SocketAddr,

    /// Log format.
    #[arg(long, env = "ZOOHERD_LOG_FORMAT", value_enum, default_value = "plain")]
    pub log_format: LogFormat,

    /// Milliseconds between two probe rounds of an ensemble's members.
    #[arg(long, env = "ZOOHERD_PROBE_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub probe_interval_ms: u64,

    /// Milliseconds one AdminServer request may take.
    #[arg(long, env = "ZOOHERD_ADMIN_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=30_000))]
    pub admin_timeout_ms: u64,

    /// The longest, in milliseconds, a server that keeps failing its probes is left alone
    /// (0: every server is asked every round).
    #[arg(long, env = "ZOOHERD_PROBE_BACKOFF_MAX_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=300_000))]
    pub probe_backoff_max_ms: u64,

    /// Run only while holding the Lease (needed with more than one replica).
    #[arg(long, env = "ZOOHERD_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "ZOOHERD_LEASE_NAME", default_value = "zooherd-operator")]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (the operator's own namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// The operator's own namespace: the ensembles' NetworkPolicies admit the operator's pods
    /// there to the servers' AdminServer and client port.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub operator_namespace: String,

    /// Labels of the operator's own pods (key=value,key=value), which the ensembles'
    /// NetworkPolicies admit to the servers' AdminServer and client port. The chart passes the
    /// labels it gives them.
    #[arg(long, env = "ZOOHERD_OPERATOR_POD_LABELS", default_value = build::DEFAULT_OPERATOR_POD_LABELS, value_parser = build::parse_labels)]
    pub operator_pod_labels: std::collections::BTreeMap<String, String>,

    /// Identity of this replica in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

impl OperatorArgs {
    fn settings(&self) -> Settings {
        Settings {
            build: build::Settings {
                cluster_domain: self.cluster_domain.clone(),
                default_image: self.server_image.clone(),
                operator: build::OperatorPods {
                    namespace: self.operator_namespace.clone(),
                    labels: self.operator_pod_labels.clone(),
                },
            },
            namespaces: self.namespaces.clone(),
            probe_interval: Duration::from_millis(self.probe_interval_ms),
            probe: ProbeSettings {
                timeout: Duration::from_millis(self.admin_timeout_ms),
                admin_port: u16::try_from(build::names::ADMIN_PORT)
                    .expect("the AdminServer port fits in 16 bits"),
                backoff_max: Duration::from_millis(self.probe_backoff_max_ms),
                ..ProbeSettings::default()
            },
            rule: RuleSettings::default(),
        }
    }

    fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| format!("zooherd-{}", std::process::id()))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("connecting to the Kubernetes API (kubeconfig or in-cluster config): {0}")]
    Client(#[source] kube::Error),
    #[error("serving {address}: {source}")]
    Http {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("lost the leader-election Lease; exiting so that a fresh start resynchronises")]
    LostLease,
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The client to the API server, every request counted in `metrics`.
async fn client(metrics: &Metrics) -> Result<Client, kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    api_client(config, metrics)
}

/// The operator's client for `config`, every request counted in `metrics`, and none retried
/// by the client itself.
///
/// kube's default policy retries an answer of 429, 503 or 504 up to 15 times, with a backoff
/// that grows to minutes and follows the server's Retry-After. The eviction API answers a
/// PodDisruptionBudget's refusal with 429: an eviction would be sent again and again for
/// minutes, holding the reconcile past its deadline and its status unwritten, and could land
/// long after the Lease was checked (the fence) and after what it was decided
/// from changed. Every request here is decided from a fresh observation; the reconcile that
/// fails is run again, and decides again.
pub fn api_client(mut config: kube::Config, metrics: &Metrics) -> Result<Client, kube::Error> {
    config.default_retry = false;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&controller::api_traffic::layer(metrics.clone()))
        .build())
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

pub async fn run(args: OperatorArgs) -> Result<(), ServiceError> {
    let metrics = Metrics::default();
    let client = client(&metrics).await.map_err(ServiceError::Client)?;
    let health = Health::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http = tokio::spawn(controller::telemetry::serve(
        args.http_address,
        metrics.clone(),
        health.clone(),
        stopped(stop_rx.clone()),
    ));
    let stop_tx = std::sync::Arc::new(stop_tx);
    let stop_on_signal = stop_tx.clone();
    tokio::spawn(async move {
        termination().await;
        let _ = stop_on_signal.send(true);
    });

    let identity = args.identity();
    let reporter = Reporter {
        controller: "zooherd".into(),
        instance: Some(identity.clone()),
    };
    let result = if args.leader_election {
        lead_then_run(&args, client, metrics, health, reporter, identity, stop_rx).await
    } else {
        health.set_ready(true);
        metrics.leading(true);
        let settings = args.settings();
        controller::run(
            client,
            settings,
            metrics,
            reporter,
            Fence::Unfenced,
            stopped(stop_rx),
        )
        .await;
        Ok(())
    };
    // Whatever ended the controllers (a signal, or the Lease lost) ends the HTTP server too, so
    // that the process exits: a replica that lost the Lease starts afresh as a standby.
    let _ = stop_tx.send(true);
    match http.await {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(source)) => {
            return Err(ServiceError::Http {
                address: args.http_address,
                source,
            });
        }
    }
    result
}

async fn lead_then_run(
    args: &OperatorArgs,
    client: Client,
    metrics: Metrics,
    health: Health,
    reporter: Reporter,
    identity: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServiceError> {
    let lease_error = |source| ServiceError::Lease {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .map_err(lease_error)?;
    let (mut leading, lease_task) = manager.watch().await;
    // A standby replica is healthy and ready: it is waiting for the Lease, as designed.
    health.set_ready(true);
    tracing::info!(%identity, lease = %args.lease_name, "waiting for the leader-election Lease");
    let acquired = tokio::select! {
        acquired = leading.wait_for(|is_leader| *is_leader) => Some(acquired.is_ok()),
        _ = stop.wait_for(|s| *s) => None,
    };
    match acquired {
        Some(true) => {}
        Some(false) => return Err(ServiceError::LostLease),
        None => {
            drop(leading);
            let _ = lease_task.await;
            return Ok(());
        }
    }
    tracing::info!(%identity, "leading: starting the controllers");
    metrics.leading(true);
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
    let mut leading_watch = leading.clone();
    let watch_lease = tokio::spawn(async move {
        let _ = leading_watch.wait_for(|is_leader| !*is_leader).await;
        let _ = lost_tx.send(true);
    });
    let shutdown = {
        let (stop, lost) = (stop.clone(), lost_rx.clone());
        async move {
            tokio::select! {
                _ = stopped(stop) => {},
                _ = stopped(lost) => {},
            }
        }
    };
    let fence = Fence::lease(
        client.clone(),
        &args.lease_namespace,
        &args.lease_name,
        &identity,
    );
    controller::run(client, args.settings(), metrics, reporter, fence, shutdown).await;
    watch_lease.abort();
    let lost = *lost_rx.borrow_and_update();
    // Closing the channel makes the lease task release the Lease, so a standby takes over at once.
    drop(leading);
    let _ = lease_task.await;
    if lost {
        Err(ServiceError::LostLease)
    } else {
        Ok(())
    }
}
