//! The schedule controller: a kube-runtime Controller over ZooKeeperEnsemble that creates each
//! ensemble's scheduled ZooKeeperBackups when they are due and deletes those beyond
//! `spec.backup.keep`, objects first, and asks for the drills of `spec.backup.drillSchedule`
//! (see [`schedule`] for the rules).
//!
//! Each round lists the ensemble's scheduled backups (by label) from the API server rather than
//! from a cache: a run it created a moment ago must be seen, or the next round would create it
//! again (harmless, as the name is the run's, but noisy). An ensemble without a schedule costs
//! nothing: its round returns at once and waits for a change of its spec. The ensembles are
//! cached without their status and managed fields, which this controller never reads.
//!
//! A backup is pruned only once its objects are gone from the bucket, so a failure to delete
//! them (credentials changed, the bucket unreachable) leaves the backup, with a Warning Event,
//! to be tried again next round, rather than an object nobody knows about.

use std::sync::Arc;
use std::time::Duration;

use croner::Cron;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde_json::json;

use super::drill::DRILL_REQUESTED_ANNOTATION;
use super::schedule::{
    SCHEDULED_AT_ANNOTATION, SCHEDULED_BY_LABEL, backup_name, drill_due, due, newest_run, next,
    parse, to_prune,
};
use super::{Error, delete_if_present, list_labelled, plan, publish_event, read, take};
use crate::api::{S3Location, ZooKeeperBackup, ZooKeeperBackupSpec, ZooKeeperEnsemble};
use crate::controller::Fence;
use crate::controller::telemetry::Metrics;

/// The longest a scheduled ensemble goes without a round: its schedule's next run may be
/// further away, but a round also retries pruning that failed.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);
/// How soon a round follows one that failed.
const RETRY_AFTER: Duration = Duration::from_secs(30);

struct Context {
    client: Client,
    recorder: Recorder,
    fence: Fence,
    metrics: Metrics,
}

/// Runs the schedule controller over the ensembles of `namespace` (all when `None`) until
/// `shutdown` completes.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    recorder: Recorder,
    fence: Fence,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ensembles: Api<ZooKeeperEnsemble> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, writer) = reflector::store();
    let stream = watcher(ensembles, watcher::Config::default())
        .default_backoff()
        .modify(|ensemble| {
            ensemble.managed_fields_mut().clear();
            ensemble.status = None;
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let ctx = Arc::new(Context {
        client,
        recorder,
        fence,
        metrics,
    });
    Controller::for_stream(stream, reader)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "backup schedule event");
            }
            std::future::ready(())
        })
        .await;
}

fn error_policy(ensemble: Arc<ZooKeeperEnsemble>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(ensemble = %ensemble.name_any(), namespace = ?ensemble.namespace(), %error, "backup schedule round failed");
    Action::requeue(RETRY_AFTER)
}

async fn reconcile(ensemble: Arc<ZooKeeperEnsemble>, ctx: Arc<Context>) -> Result<Action, Error> {
    let backup = &ensemble.spec.backup;
    let live = backup.enabled && ensemble.meta().deletion_timestamp.is_none();
    // An invalid pattern is the ensemble's InvalidSpec condition; nothing to do until it changes.
    let backups = backup
        .schedule
        .as_deref()
        .zip(backup.s3.as_ref())
        .and_then(|(schedule, s3)| Some((parse(schedule).ok()?, s3)))
        .filter(|_| live);
    let drills = backup
        .drill_schedule
        .as_deref()
        .and_then(|s| parse(s).ok())
        .filter(|_| live);
    if backups.is_none() {
        let namespace = ensemble.namespace().unwrap_or_default();
        ctx.metrics
            .backups
            .scheduled(&namespace, &ensemble.name_any(), None);
    }
    if backups.is_none() && drills.is_none() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let mut runs = Vec::new();
    if let Some((cron, s3)) = backups {
        backup_round(&ensemble, &cron, s3, &ctx, now).await?;
        runs.extend(next(&cron, now));
    }
    if let Some(cron) = drills {
        drill_round(&ensemble, &cron, &ctx, now).await?;
        runs.extend(next(&cron, now));
    }
    let wait = runs
        .into_iter()
        .min()
        .and_then(|at| Duration::try_from(at.duration_since(now)).ok())
        .unwrap_or(LONGEST_WAIT);
    Ok(Action::requeue(
        wait.clamp(Duration::from_secs(1), LONGEST_WAIT),
    ))
}

fn created(ensemble: &ZooKeeperEnsemble, now: Timestamp) -> Timestamp {
    ensemble
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0)
}

/// Creates the backup run due, if one is, and prunes beyond `keep`.
async fn backup_round(
    ensemble: &ZooKeeperEnsemble,
    cron: &Cron,
    s3: &S3Location,
    ctx: &Context,
    now: Timestamp,
) -> Result<(), Error> {
    let backup = &ensemble.spec.backup;
    let namespace = ensemble.namespace().unwrap_or_default();
    let name = ensemble.name_any();
    let backups = Api::<ZooKeeperBackup>::namespaced(ctx.client.clone(), &namespace);
    let selector = format!("{SCHEDULED_BY_LABEL}={name}");
    let scheduled = list_labelled(
        &backups,
        &selector,
        &format!("the scheduled backups of {name}"),
    )
    .await?;
    let newest = newest_run(&scheduled);
    let run = due(cron, newest.unwrap_or_else(|| created(ensemble, now)), now);
    ctx.metrics
        .backups
        .scheduled(&namespace, &name, run.or(newest));
    if let Some(at) = run {
        ctx.fence.check().await?;
        let mut run = ZooKeeperBackup::new(
            &backup_name(&name, at),
            ZooKeeperBackupSpec {
                ensemble: name.clone(),
                s3: s3.clone(),
                verify: backup.verify,
            },
        );
        run.labels_mut()
            .insert(SCHEDULED_BY_LABEL.to_owned(), name.clone());
        run.annotations_mut()
            .insert(SCHEDULED_AT_ANNOTATION.to_owned(), at.to_string());
        match backups.create(&PostParams::default(), &run).await {
            Ok(_) => {
                tracing::info!(ensemble = %name, %namespace, backup = %run.name_any(), "scheduled backup created")
            }
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(source) => {
                return Err(Error::Write {
                    what: format!("creating the scheduled backup {}", run.name_any()),
                    source,
                });
            }
        }
    }
    let keep = usize::try_from(backup.keep).unwrap_or(1);
    for old in to_prune(&scheduled, keep) {
        ctx.fence.check().await?;
        prune(&backups, old, &namespace, ctx).await?;
    }
    Ok(())
}

/// Asks for the drill due, if one is, of the ensemble's newest successful backup; with none, a
/// Warning Event on the ensemble says so.
async fn drill_round(
    ensemble: &ZooKeeperEnsemble,
    cron: &Cron,
    ctx: &Context,
    now: Timestamp,
) -> Result<(), Error> {
    let namespace = ensemble.namespace().unwrap_or_default();
    let name = ensemble.name_any();
    let api = Api::<ZooKeeperBackup>::namespaced(ctx.client.clone(), &namespace);
    let mut backups = api
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Read {
            what: format!("the backups in {namespace}"),
            source,
        })?
        .items;
    backups.retain(|backup| backup.spec.ensemble == name);
    let Some((at, target)) = drill_due(cron, &backups, created(ensemble, now), now) else {
        return Ok(());
    };
    ctx.fence.check().await?;
    let Some(target) = target else {
        let note = format!(
            "the drill run of {at} (spec.backup.drillSchedule) found no successful ZooKeeperBackup of {name} to restore"
        );
        let regarding = ensemble.object_ref(&());
        let (warning, reason) = (EventType::Warning, "NothingToDrill");
        publish_event(&ctx.recorder, &regarding, warning, reason, "Drill", note).await;
        return Ok(());
    };
    let patch = json!({"metadata": {"annotations": {DRILL_REQUESTED_ANNOTATION: at.to_string()}}});
    api.patch(
        &target.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| Error::Write {
        what: format!("asking for a drill of the backup {}", target.name_any()),
        source,
    })?;
    tracing::info!(ensemble = %name, %namespace, backup = %target.name_any(), "scheduled drill asked for");
    Ok(())
}

/// Deletes `backup`'s snapshot and metadata objects, then the backup; when the objects cannot
/// be deleted, a Warning Event on the backup says why and the backup stays.
async fn prune(
    backups: &Api<ZooKeeperBackup>,
    backup: &ZooKeeperBackup,
    namespace: &str,
    ctx: &Context,
) -> Result<(), Error> {
    if let Err(problem) = delete_objects(backup, namespace, ctx).await {
        let note = format!(
            "not deleted beyond spec.backup.keep, retried later: deleting its objects failed: {problem}"
        );
        let regarding = backup.object_ref(&());
        let (warning, reason) = (EventType::Warning, "PruneFailed");
        publish_event(&ctx.recorder, &regarding, warning, reason, "Prune", note).await;
        return Ok(());
    }
    if delete_if_present(backups, &backup.name_any(), "the backup").await? {
        tracing::info!(backup = %backup.name_any(), %namespace, "scheduled backup pruned");
    }
    Ok(())
}

async fn delete_objects(
    backup: &ZooKeeperBackup,
    namespace: &str,
    ctx: &Context,
) -> Result<(), String> {
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    let name = &backup.spec.s3.credentials_secret;
    let secret = read(&secrets, name, "the credentials Secret")
        .await
        .map_err(|e| e.to_string())?;
    let credentials = plan::credentials("spec.s3", name, secret.as_ref()).map_err(|w| w.message)?;
    let store = take::object_store("spec.s3", &backup.spec.s3, &credentials)?;
    let snapshot = plan::snapshot_key(backup);
    for key in [plan::metadata_key(&snapshot), snapshot] {
        match store.delete(&ObjectPath::from(key.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(format!("{key}: {error}")),
        }
    }
    Ok(())
}
