//! One reconcile of one ensemble, read top to bottom as its pipeline:
//! validate → build → apply (the children), then observe → decide → act → report (the members).
//!
//! Most reconciles are probe rounds: nothing the children are built from has changed. Building
//! and comparing every child (the StatefulSet is serialised and hashed) would then be most of
//! an idle operator's CPU, so the apply step runs only when one of its inputs changed (see
//! [`ApplyInputs`]) and at least every [`full_apply_every`]. The round itself follows the
//! probes: every probe interval while a voter is to be asked, later when every voter is left
//! alone for failing (`quorum::backoff`), and on a pod's change when none has an address.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::apply::{Applied, apply_child, delete_child};
use super::memory::{CredentialsStatus, LastApply, recorded_membership};
use super::progress::{self, Progress};
use super::report::publish;
use super::telemetry::Outcome;
use super::{
    Context, Error, act, client_ca, observe, report, restore, sasl_users, scale, secrets,
    superuser, tls,
};
use crate::api::ZooKeeperEnsemble;
use crate::build;
use crate::build::tls::QuorumTls;
use crate::decide::{SpecOutcome, decide};

/// How long one reconcile may take. A round is a probe round (bounded by the AdminServer
/// timeout), a few API calls and at most one reconfiguration (bounded by its own timeouts):
/// seconds. Past this something hangs; the reconcile fails loudly and is retried.
pub const RECONCILE_DEADLINE: Duration = Duration::from_secs(60);

/// The longest the children of the ensemble `uid` go without being built and compared. The
/// inputs cover every object the operator watches; this bounds what they do not: a Secret
/// changed (they are read again on the same schedule, [`secrets::recheck_after`]) or a
/// certificate due for renewal.
fn full_apply_every(uid: &str) -> Duration {
    secrets::recheck_after(uid)
}

/// How soon an ensemble is reconciled again when the caches had not listed yet.
const CACHES_NOT_READY: Duration = Duration::from_millis(200);

/// The next round of an ensemble none of whose voters has an address: their pods' changes
/// trigger one at once, so this only bounds the timers (a lost node's grace period).
const UNADDRESSED_ROUND: Duration = Duration::from_secs(10);

pub async fn reconcile(
    ensemble: Arc<ZooKeeperEnsemble>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    // Every await below is bounded by this deadline: a reconcile that hangs (a half-open
    // connection, a server that accepts but never answers) would otherwise keep this ensemble
    // from ever being reconciled again, since the controller runs one reconcile per object.
    let progress = Progress::default();
    let result = tokio::time::timeout(
        RECONCILE_DEADLINE,
        progress.track(reconcile_ensemble(&ensemble, &ctx)),
    )
    .await
    .unwrap_or_else(|_| {
        Err(Error::Overran {
            after: RECONCILE_DEADLINE,
            step: progress.step(),
        })
    });
    let outcome = if result.is_ok() {
        Outcome::Success
    } else {
        Outcome::Error
    };
    ctx.metrics.reconciled(outcome, started.elapsed());
    result
}

async fn reconcile_ensemble(ensemble: &ZooKeeperEnsemble, ctx: &Context) -> Result<Action, Error> {
    let namespace = ensemble.namespace().unwrap_or_default();
    let name = ensemble.name_any();
    if ensemble.meta().deletion_timestamp.is_some() {
        // Owner references make the garbage collector remove the children; nothing to write.
        ctx.forget(&namespace, &name);
        return Ok(Action::await_change());
    }
    if !ctx.stores.ready() {
        return Ok(Action::requeue(CACHES_NOT_READY));
    }

    // Validated once: an invalid spec changes nothing that runs, and building cannot fail.
    let mut password = None;
    let mut credentials = None;
    let mut stateful_set_written = false;
    let spec = match build::ValidatedEnsemble::new(ensemble) {
        Err(problem) => SpecOutcome::Invalid(problem.to_string()),
        Ok(_) if ensemble.spec.paused => SpecOutcome::Paused,
        Ok(valid) => 'applied: {
            // A restored ensemble's servers are created once status.restore names the snapshot.
            let resolved;
            progress::at("resolving the restore source");
            let (ensemble, valid) = match restore::resolve(ensemble, ctx).await {
                Ok(None) => (ensemble, valid),
                Ok(Some(patched)) => {
                    resolved = patched;
                    match build::ValidatedEnsemble::new(&resolved) {
                        Ok(valid) => (&resolved, valid),
                        Err(problem) => break 'applied SpecOutcome::Invalid(problem.to_string()),
                    }
                }
                Err(problem) => break 'applied SpecOutcome::NotApplied(problem),
            };
            let inputs = ApplyInputs::of(ensemble, ctx);
            if let Some((superuser, applied)) = unchanged(ensemble, ctx, &inputs) {
                password = Some(superuser);
                credentials = Some(applied);
                break 'applied SpecOutcome::Applied { changed: false };
            }
            let tls_facts = tls::facts(ensemble, ctx);
            let tls_stage = crate::decide::quorum_tls::stage(&tls_facts);
            let topology = build::Topology {
                quorum_tls: Some(tls_stage),
                ..topology(ensemble, ctx, u32::from(valid.spec.replicas))
            };
            // The Secret is read while any server may use it: the ConfigMap's stage, or a pod's
            // still (switching off), whose AdminServer takes only the operator's certificate.
            let running = tls_facts.pods.iter().map(|&(stage, _)| stage).max();
            let tls = (tls_stage, tls_facts.configured.max(running));
            // Boxed, as is `act`: most rounds take neither path, so a round's future (one per
            // ensemble in flight) need not hold room for theirs. With both boxed it is 11.9 KB.
            match Box::pin(apply(ensemble, ctx, &valid, topology, tls)).await {
                Ok((superuser, applied, written)) => {
                    ctx.remember_apply(
                        ensemble,
                        LastApply {
                            inputs,
                            at: Instant::now(),
                            credentials: applied.clone(),
                        },
                    );
                    password = Some(superuser);
                    credentials = Some(applied);
                    stateful_set_written = written.stateful_set;
                    SpecOutcome::Applied {
                        changed: written.changed,
                    }
                }
                // The probes, the status and the phase's Events go on: an apply error must not
                // freeze what the status says about the quorum.
                Err(error) => {
                    tracing::warn!(ensemble = %name, %error, "applying the children failed");
                    ctx.metrics.reconcile_failed(error.metric_label());
                    SpecOutcome::NotApplied(error.to_string())
                }
            }
        }
    };
    let password = password.as_deref();
    progress::at("observing the servers");
    let mut observation = observe::observe(ensemble, ctx, password).await;
    observation.stateful_set_written = stateful_set_written;
    observation.credentials = credentials;
    let decision = decide(&observation.facts(&spec));
    progress::at("acting");
    let acted = Box::pin(act::act(
        ensemble,
        ctx,
        &observation,
        &decision.disruption,
        password,
    ))
    .await?;
    let next_probe_in = observation.next_probe_in;
    progress::at("reporting");
    report::report(ensemble, ctx, &spec, observation, &decision, acted).await?;
    let next_round = next_probe_in.map_or(UNADDRESSED_ROUND, |due| {
        due.max(ctx.settings.probe_interval)
    });
    Ok(Action::requeue(next_round))
}

/// A fingerprint of everything the apply step reads from the cluster: the ensemble (spec,
/// annotations and status: any write changes its resource version), each child as cached, the
/// servers' pods (the quorum TLS stage follows them) and the voters the operator last recorded.
/// Equal fingerprints mean that building and comparing the children again would find nothing
/// to write, unless someone changed what is not watched (see [`full_apply_every`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyInputs(u64);

impl ApplyInputs {
    fn of(ensemble: &ZooKeeperEnsemble, ctx: &Context) -> Self {
        let namespace = ensemble.namespace().unwrap_or_default();
        let stores = &ctx.stores;
        let mut hasher = DefaultHasher::new();
        fn version<K>(store: &Store<K>, name: String, namespace: &str) -> Option<String>
        where
            K: kube::Resource<DynamicType = ()> + Clone + 'static,
        {
            store
                .get(&ObjectRef::new(&name).within(namespace))?
                .resource_version()
        }
        ensemble.resource_version().hash(&mut hasher);
        use build::names;
        for child in [
            version(&stores.config_maps, names::config_map(ensemble), &namespace),
            version(
                &stores.services,
                names::headless_service(ensemble),
                &namespace,
            ),
            version(
                &stores.services,
                names::client_service(ensemble),
                &namespace,
            ),
            version(
                &stores.stateful_sets,
                names::stateful_set(ensemble),
                &namespace,
            ),
            version(
                &stores.pod_disruption_budgets,
                names::pod_disruption_budget(ensemble),
                &namespace,
            ),
            version(
                &stores.network_policies,
                names::network_policy(ensemble),
                &namespace,
            ),
        ] {
            child.hash(&mut hasher);
        }
        let recorded = recorded_membership(ensemble, ctx);
        let voters = scale::recorded_voters(recorded.as_ref());
        let servers = scale::stateful_set_replicas(stores, ensemble)
            .unwrap_or(0)
            .max(u32::try_from(ensemble.spec.replicas).unwrap_or(0))
            .max(
                voters
                    .iter()
                    .flatten()
                    .map(|&m| u32::from(m))
                    .max()
                    .unwrap_or(0),
            );
        for ordinal in 0..servers {
            let pod = build::names::pod(ensemble, ordinal);
            version(&stores.pods, pod, &namespace).hash(&mut hasher);
        }
        voters.hash(&mut hasher);
        Self(hasher.finish())
    }
}

/// The servers and their roles for `replicas` voters: the StatefulSet's size and the bootstrap
/// membership follow the committed voters.
fn topology(ensemble: &ZooKeeperEnsemble, ctx: &Context, replicas: u32) -> build::Topology {
    let voters = scale::recorded_voters(recorded_membership(ensemble, ctx).as_ref());
    let running = scale::stateful_set_replicas(&ctx.stores, ensemble);
    // Formed once a quorum was seen or a membership read, and never unformed: the ConfigMap
    // keeps it even if the status were lost.
    let formed = voters.is_some()
        || ensemble
            .status
            .as_ref()
            .is_some_and(|s| s.formed_at.is_some())
        || scale::config_map_says_formed(&ctx.stores, ensemble);
    build::Topology {
        formed,
        ..build::Topology::new(replicas, voters.as_ref(), running)
    }
}

/// What the apply step wrote.
struct Written {
    /// Anything at all.
    changed: bool,
    /// The StatefulSet: its pods' template may have just changed, so no roll goes by the
    /// revision the cache shows this round.
    stateful_set: bool,
}

/// Ensures the superuser and quorum TLS Secrets, then builds and applies the children of
/// `valid` with `topology`: returns the superuser's password, quorum TLS as the status shows
/// it, and what was written. A child someone else changed is put back, with a Warning Event.
/// `tls` is the quorum TLS stage the children configure and the highest one the ConfigMap or a
/// pod holds now.
async fn apply(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    valid: &build::ValidatedEnsemble<'_>,
    topology: build::Topology,
    tls: (QuorumTls, Option<QuorumTls>),
) -> Result<(String, CredentialsStatus, Written), Error> {
    // Before the StatefulSet: its pods take the superuser's digest and the quorum
    // certificates from the Secrets, and its template the certificate's generation (a renewal
    // rolls the servers).
    progress::at("ensuring the superuser Secret");
    let password = superuser::ensure(ensemble, ctx).await?;
    progress::at("ensuring the quorum TLS Secret");
    let (quorum_tls, certificate_generation) = tls::ensure(ensemble, ctx, tls.0, tls.1).await?;
    progress::at("reading the SASL users Secret");
    let sasl_users = sasl_users::users_hash(ensemble, ctx).await?;
    progress::at("reading the client CA Secret");
    let client_ca = client_ca::read(ensemble, ctx).await?;
    let client_secrets = build::ClientSecrets {
        sasl_users,
        x509_ca: client_ca.as_ref().map(|ca| ca.hash.clone()),
    };
    let topology = build::Topology {
        certificate_generation,
        client_secrets,
        ..topology
    };
    let children = build::children(valid, &ctx.settings.build, Some(&topology));
    progress::at("applying the children");
    let applied = apply_children(ensemble, ctx, children).await?;
    let (mut written, mut reverted, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    for child in &applied {
        match child {
            Applied::Written(what) => written.push(what.as_str()),
            Applied::Reverted(what) => reverted.push(what.as_str()),
            Applied::Deleted(what) => deleted.push(what.as_str()),
        }
    }
    if !written.is_empty() {
        let note = format!("applied {}", written.join(", "));
        publish(ensemble, ctx, EventType::Normal, "Applied", "Apply", note).await;
    }
    if !deleted.is_empty() {
        let note = format!(
            "deleted {}: the ensemble no longer asks for it",
            deleted.join(", ")
        );
        publish(ensemble, ctx, EventType::Normal, "Deleted", "Apply", note).await;
    }
    if !reverted.is_empty() {
        let note = format!(
            "{} differed from what the ensemble specifies (changed by hand?) and was put back; change the ZooKeeperEnsemble instead",
            reverted.join(", ")
        );
        publish(ensemble, ctx, EventType::Warning, "Reverted", "Apply", note).await;
    }
    let stateful_set = applied.iter().any(|child| {
        matches!(child, Applied::Written(what) | Applied::Reverted(what) if what.starts_with("StatefulSet "))
    });
    let changed = !applied.is_empty();
    let credentials = CredentialsStatus {
        quorum_tls,
        client_ca_not_after: client_ca.map(|ca| ca.not_after),
    };
    Ok((
        password,
        credentials,
        Written {
            changed,
            stateful_set,
        },
    ))
}

/// Applies every child whose live copy differs; returns the ones written.
async fn apply_children(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    children: build::Children,
) -> Result<Vec<Applied>, Error> {
    let uid = ensemble.uid().unwrap_or_default();
    let stores = &ctx.stores;
    let build::Children {
        config_map,
        headless_service,
        client_service,
        stateful_set,
        pod_disruption_budget,
        network_policy,
    } = children;
    let network_policy = match network_policy {
        Some(policy) => apply_child(ctx, &stores.network_policies, &uid, policy).await?,
        None => {
            let namespace = ensemble.namespace().unwrap_or_default();
            let name = build::names::network_policy(ensemble);
            delete_child(ctx, &stores.network_policies, &uid, &namespace, &name).await?
        }
    };
    // The ConfigMap goes first so that pods created by the StatefulSet find their zoo.cfg.
    let applied = [
        apply_child(ctx, &stores.config_maps, &uid, config_map).await?,
        apply_child(ctx, &stores.services, &uid, headless_service).await?,
        apply_child(ctx, &stores.services, &uid, client_service).await?,
        apply_child(ctx, &stores.stateful_sets, &uid, stateful_set).await?,
        apply_child(
            ctx,
            &stores.pod_disruption_budgets,
            &uid,
            pod_disruption_budget,
        )
        .await?,
        network_policy,
    ];
    Ok(applied.into_iter().flatten().collect())
}

/// The superuser's password and the credentials' status, if the children need not be built and
/// compared this round: nothing they are built from (`inputs`, the ensemble's now) changed
/// since the last full apply, which was less than [`full_apply_every`] ago, and the password is
/// fresh.
fn unchanged(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    inputs: &ApplyInputs,
) -> Option<(String, CredentialsStatus)> {
    let last = ctx.last_apply(ensemble)?;
    let uid = ensemble.uid()?;
    if last.inputs != *inputs || last.at.elapsed() >= full_apply_every(&uid) {
        return None;
    }
    let password = ctx.superusers.fresh(&uid)?;
    Some((password, last.credentials))
}
