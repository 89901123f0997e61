//! The operator: a kube-runtime Controller over `ZooKeeperEnsemble`.
//!
//! One reconcile runs the whole pipeline for an ensemble ([`reconcile`]): validate → build →
//! apply the children, then observe → decide → act → report. Validation, building and deciding
//! are pure (`api::validate`, `build`, `decide`); this module only does the IO: server-side apply
//! of the children (skipped when nothing changed, see [`apply`]), the ensemble's superuser Secret
//! (created once, see [`superuser`]), one probe round of the members' AdminServers
//! ([`observe`]), the one disruption decided ([`act`]: a pod deleted, or a voter changed), and
//! the status write and Events ([`report`]). Every reconcile requeues after the probe interval,
//! so the status follows the quorum even when no Kubernetes object changes; pod events trigger a
//! reconcile at once.
//!
//! Reads come from informer caches ([`caches`]: children and pods, filtered by the managed-by
//! label and trimmed to what is read; nodes), so a steady ensemble costs the API server nothing
//! but the watches.

mod act;
pub mod api_traffic;
mod apply;
pub mod budget;
mod cached;
mod caches;
mod client_ca;
pub mod events;
mod fence;
mod heap;
mod lost_node;
mod memory;
mod observe;
mod progress;
mod reconcile;
mod report;
mod restore;
mod sasl_users;
mod scale;
mod secrets;
pub(crate) mod superuser;
pub mod telemetry;
pub(crate) mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::api::ZooKeeperEnsemble;
use crate::build;
use crate::quorum::probe::{ProbeSettings, Prober};
use crate::quorum::reconfig::Reconfigurer;
use crate::quorum::rule::RuleSettings;
use events::EventPublisher;

pub use apply::FIELD_MANAGER;
pub use caches::Stores;
use caches::{reflect_children, reflect_nodes, reflect_pods, scoped};
pub use fence::{Fence, FenceError};
pub use telemetry::{Health, Metrics};

/// Operator settings, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub build: build::Settings,
    /// Namespaces to watch; empty means every namespace.
    pub namespaces: Vec<String>,
    /// How often every ensemble's members are probed.
    pub probe_interval: Duration,
    pub probe: ProbeSettings,
    pub rule: RuleSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "{kind} {name} already exists and is not owned by this ensemble; delete or rename it, or give the ensemble another name"
    )]
    ForeignChild { kind: String, name: String },
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    #[error("reading or creating the superuser Secret {name}: {source}")]
    Superuser {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the superuser Secret {name} {problem}; the operator does not rewrite it (the servers run with its digest): \
         restore it, or delete it and restart the servers so that they take a new one"
    )]
    SuperuserSecret { name: String, problem: String },
    #[error("reading or creating the quorum TLS Secret {name}: {source}")]
    QuorumTls {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the quorum TLS Secret {name} {problem}")]
    QuorumTlsSecret { name: String, problem: String },
    #[error(transparent)]
    QuorumCertificates(#[from] crate::tls::IssueError),
    #[error(
        "reading the SASL users Secret {name} (spec.clientAuthentication.saslUsersSecret): {source}"
    )]
    SaslUsers {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the SASL users Secret {name} (spec.clientAuthentication.saslUsersSecret) {problem}; the servers keep the users they run with"
    )]
    SaslUsersSecret { name: String, problem: String },
    #[error(
        "reading the client CA Secret {name} (spec.clientAuthentication.x509ClientCaSecret): {source}"
    )]
    ClientCa {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the client CA Secret {name} (spec.clientAuthentication.x509ClientCaSecret) {problem}; the servers keep the CA they run with"
    )]
    ClientCaSecret { name: String, problem: String },
    #[error("removing pod {pod}: {source}")]
    RemovePod {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting volume claim {claim}: {source}")]
    DeleteClaim {
        claim: String,
        #[source]
        source: kube::Error,
    },
    #[error("not acting: {0}")]
    Fenced(#[from] FenceError),
    #[error(
        "the reconcile did not finish within {} s and was abandoned while {step}; it is retried",
        .after.as_secs()
    )]
    Overran { after: Duration, step: &'static str },
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Apply { .. } => "apply",
            Self::ForeignChild { .. } => "foreign_child",
            Self::Status(_) => "status",
            Self::RemovePod { .. } => "remove_pod",
            Self::DeleteClaim { .. } => "delete_claim",
            Self::Fenced(_) => "fenced",
            Self::Overran { .. } => "overran",
            Self::Superuser { .. } | Self::SuperuserSecret { .. } => "superuser",
            Self::SaslUsers { .. } | Self::SaslUsersSecret { .. } => "sasl_users",
            Self::ClientCa { .. } | Self::ClientCaSecret { .. } => "client_ca",
            Self::QuorumTls { .. } | Self::QuorumTlsSecret { .. } | Self::QuorumCertificates(_) => {
                "quorum_tls"
            }
        }
    }
}

/// State shared by every reconcile in one watch scope.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Metrics,
    pub events: EventPublisher,
    pub stores: Stores,
    pub prober: Prober,
    /// What the status rule remembers between probe rounds, per ensemble.
    pub memory: Mutex<HashMap<ObjectRef<ZooKeeperEnsemble>, memory::Memory>>,
    /// Reads and changes ensembles' membership.
    pub reconfigurer: Reconfigurer,
    /// Checked before every disruption: this replica must hold the leader-election Lease.
    pub fence: Fence,
    /// Children ("Kind/namespace/name", stamp) whose applied content the API server stores in
    /// another form: compared by their stamp only (see `apply::decide`).
    pub normalised: Mutex<std::collections::HashSet<(String, String)>>,
    /// Superuser passwords read from the ensembles' Secrets.
    pub superusers: secrets::SecretReads<String>,
    /// When the ensembles' quorum certificates expire, as read from their Secrets, and the
    /// operator's client of their AdminServers.
    pub quorum_certificates: secrets::SecretReads<tls::QuorumCredentials>,
}

impl Context {
    /// Forgets a deleted ensemble: its status memory, its metric series and its Event series.
    pub(crate) fn forget(&self, namespace: &str, name: &str) {
        self.metrics.forget_ensemble(namespace, name);
        self.events.forget(namespace, name);
        let mut memory = self.memory.lock().expect("status memory lock");
        let is_it = |key: &ObjectRef<ZooKeeperEnsemble>| {
            key.name == name && key.namespace.as_deref() == Some(namespace)
        };
        // What was read from its Secrets is kept by uid, which only the memory still knows;
        // the operator's AdminServer client among it holds a connection pool.
        for uid in memory
            .iter()
            .filter(|(key, _)| is_it(key))
            .filter_map(|(_, remembered)| remembered.uid.as_deref())
        {
            self.superusers.forget(uid);
            self.quorum_certificates.forget(uid);
        }
        memory.retain(|key, _| !is_it(key));
    }
}

fn error_policy(ensemble: Arc<ZooKeeperEnsemble>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(
        ensemble = %ObjectRef::from(ensemble.as_ref()),
        %error,
        "reconcile failed"
    );
    ctx.metrics.reconcile_failed(error.metric_label());
    let note = error.to_string();
    tokio::spawn(async move {
        report::publish(
            &ensemble,
            &ctx,
            kube::runtime::events::EventType::Warning,
            "ReconcileFailed",
            "Reconcile",
            note,
        )
        .await;
    });
    Action::requeue(Duration::from_secs(5))
}

/// The ensemble a managed pod belongs to, from its labels.
fn ensemble_of_pod(pod: Pod) -> Option<ObjectRef<ZooKeeperEnsemble>> {
    let name = pod.labels().get(build::names::INSTANCE_LABEL)?;
    Some(ObjectRef::new(name).within(&pod.namespace()?))
}

/// Runs one controller per watch scope until `shutdown` completes.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    reporter: Reporter,
    fence: Fence,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let (nodes, node_stream) = reflect_nodes(&client);
    let node_watch = tokio::spawn(node_stream.for_each(|result| {
        if let Err(error) = result {
            tracing::warn!(%error, "watching nodes (needed to tell a member on a lost node)");
        }
        std::future::ready(())
    }));
    let shared = Shared {
        client,
        settings,
        metrics,
        reporter,
        fence,
        nodes,
    };
    let give_back = tokio::spawn(heap::give_back_freed_memory());
    let backups: Vec<_> = scopes
        .iter()
        .cloned()
        .map(|scope| {
            crate::backup::run(
                shared.client.clone(),
                scope,
                shared.reporter.clone(),
                shared.fence.clone(),
                shared.metrics.clone(),
                shutdown.clone(),
            )
        })
        .collect();
    let controllers = scopes
        .into_iter()
        .map(|scope| run_scope(&shared, scope, shutdown.clone()));
    futures::join!(
        futures::future::join_all(controllers),
        futures::future::join_all(backups)
    );
    give_back.abort();
    node_watch.abort();
}

/// What every watch scope's controller shares.
struct Shared {
    client: Client,
    settings: Settings,
    metrics: Metrics,
    reporter: Reporter,
    fence: Fence,
    nodes: Store<Node>,
}

async fn run_scope(
    shared: &Shared,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = &shared.client;
    let ns = namespace.as_deref();
    let (stateful_sets, sts_stream) = reflect_children::<StatefulSet>(client, ns);
    let (config_maps, cm_stream) = reflect_children::<ConfigMap>(client, ns);
    let (services, svc_stream) = reflect_children::<Service>(client, ns);
    let (pod_disruption_budgets, pdb_stream) = reflect_children::<PodDisruptionBudget>(client, ns);
    let (network_policies, netpol_stream) = reflect_children::<NetworkPolicy>(client, ns);
    let (pods, pod_stream) = reflect_pods(client, ns);
    let ctx = Arc::new(Context {
        client: client.clone(),
        prober: Prober::counted(
            shared.settings.probe.clone(),
            shared.metrics.probe_traffic(),
        ),
        events: EventPublisher::new(client.clone(), shared.reporter.clone()),
        settings: shared.settings.clone(),
        metrics: shared.metrics.clone(),
        stores: Stores {
            stateful_sets,
            config_maps,
            services,
            pod_disruption_budgets,
            network_policies,
            pods,
            nodes: shared.nodes.clone(),
        },
        memory: Mutex::new(HashMap::new()),
        reconfigurer: Reconfigurer::default(),
        fence: shared.fence.clone(),
        normalised: Mutex::default(),
        superusers: secrets::SecretReads::default(),
        quorum_certificates: secrets::SecretReads::default(),
    });
    let forgetter = ctx.clone();
    let sweeper = ctx.clone();
    let event_sweep = tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            sweeper.events.drop_ended(std::time::Instant::now());
        }
    });
    tracing::info!(namespace = ns.unwrap_or("<all>"), "starting controller");
    let (ensembles, ensemble_writer) = reflector::store();
    let ensemble_stream = watcher(
        scoped::<ZooKeeperEnsemble>(client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|ensemble| {
        // Neither is read; `kubectl apply`'s copy of the whole spec doubles its size.
        ensemble.managed_fields_mut().clear();
        ensemble
            .annotations_mut()
            .remove("kubectl.kubernetes.io/last-applied-configuration");
    })
    .reflect(ensemble_writer)
    .applied_objects();
    Controller::for_stream(ensemble_stream, ensembles)
        .owns_stream(sts_stream)
        .owns_stream(cm_stream)
        .owns_stream(svc_stream)
        .owns_stream(pdb_stream)
        .owns_stream(netpol_stream)
        .watches_stream(pod_stream, ensemble_of_pod)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            match result {
                // A deleted ensemble: drop what we remembered about it, and its metric series.
                Err(kube::runtime::controller::Error::ObjectNotFound(gone)) => {
                    forgetter.forget(gone.namespace.as_deref().unwrap_or_default(), &gone.name);
                }
                Err(error) => tracing::debug!(%error, "controller event"),
                Ok(_) => {}
            }
            std::future::ready(())
        })
        .await;
    event_sweep.abort();
    tracing::info!(namespace = ns.unwrap_or("<all>"), "controller stopped");
}
