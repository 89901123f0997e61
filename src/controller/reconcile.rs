//! One reconcile of one ensemble: validate → build → apply → status.

use std::sync::Arc;
use std::time::Instant;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::apply::apply_child;
use super::telemetry::Outcome;
use super::{Context, Error, scale, status, superuser};
use crate::api::ZooKeeperEnsemble;
use crate::build;

/// What the apply step did, for the status' conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecOutcome {
    /// The children match the spec (`changed`: this reconcile had to write some of them).
    Applied { changed: bool },
    /// `spec.paused`: the children were left alone.
    Paused,
    /// The spec cannot be turned into children; nothing was changed. The text names the field.
    Invalid(String),
}

pub async fn reconcile(
    ensemble: Arc<ZooKeeperEnsemble>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_ensemble(&ensemble, &ctx).await;
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
    ctx.stores.wait_until_ready().await;

    // The StatefulSet's size and the bootstrap membership follow the committed voters.
    let voters = scale::recorded_voters(status::recorded_membership(ensemble, ctx).as_ref());
    let replicas = u32::try_from(ensemble.spec.replicas).unwrap_or(0);
    let running = scale::stateful_set_replicas(&ctx.stores, ensemble);
    let topology = build::Topology::new(replicas, voters.as_ref(), running);
    // Building validates first (api::validate): an invalid spec changes nothing that runs.
    let mut password = None;
    let spec = match build::children(ensemble, &ctx.settings.build, Some(&topology)) {
        Err(problem) => SpecOutcome::Invalid(problem.to_string()),
        Ok(_) if ensemble.spec.paused => SpecOutcome::Paused,
        Ok(children) => {
            // Before the StatefulSet: its pods take the superuser's digest from the Secret.
            password = Some(superuser::ensure(ensemble, ctx).await?);
            let applied = apply_children(ensemble, ctx, children).await?;
            if !applied.is_empty() {
                status::publish(
                    ensemble,
                    ctx,
                    EventType::Normal,
                    "Applied",
                    "Apply",
                    format!("applied {}", applied.join(", ")),
                )
                .await;
            }
            SpecOutcome::Applied {
                changed: !applied.is_empty(),
            }
        }
    };
    status::update(ensemble, ctx, &spec, password.as_deref()).await?;
    Ok(Action::requeue(ctx.settings.probe_interval))
}

/// Applies every child whose live copy differs; returns the ones written ("Kind name").
async fn apply_children(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    children: build::Children,
) -> Result<Vec<String>, Error> {
    let uid = ensemble.uid().unwrap_or_default();
    let stores = &ctx.stores;
    let build::Children {
        config_map,
        headless_service,
        client_service,
        stateful_set,
        pod_disruption_budget,
    } = children;
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
    ];
    Ok(applied.into_iter().flatten().collect())
}
