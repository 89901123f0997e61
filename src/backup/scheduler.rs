//! The schedule controller: a kube-runtime Controller over ZooKeeperEnsemble that creates each
//! ensemble's scheduled ZooKeeperBackups when they are due and deletes those beyond
//! `spec.backup.keep`, objects first (see [`schedule`] for the rules).
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

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::schedule::{
    SCHEDULED_AT_ANNOTATION, SCHEDULED_BY_LABEL, backup_name, due, newest_run, next, parse,
    to_prune,
};
use super::{Error, plan, read, take};
use crate::api::{ZooKeeperBackup, ZooKeeperBackupSpec, ZooKeeperEnsemble};
use crate::controller::Fence;

/// The longest a scheduled ensemble goes without a round: its schedule's next run may be
/// further away, but a round also retries pruning that failed.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);
/// How soon a round follows one that failed.
const RETRY_AFTER: Duration = Duration::from_secs(30);

struct Context {
    client: Client,
    recorder: Recorder,
    fence: Fence,
}

/// Runs the schedule controller over the ensembles of `namespace` (all when `None`) until
/// `shutdown` completes.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    recorder: Recorder,
    fence: Fence,
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
    let (Some(schedule), Some(s3), true) = (&backup.schedule, &backup.s3, backup.enabled) else {
        return Ok(Action::await_change());
    };
    // An invalid pattern is the ensemble's InvalidSpec condition; nothing to do until it changes.
    let Ok(cron) = parse(schedule) else {
        return Ok(Action::await_change());
    };
    if ensemble.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = ensemble.namespace().unwrap_or_default();
    let name = ensemble.name_any();
    let backups = Api::<ZooKeeperBackup>::namespaced(ctx.client.clone(), &namespace);
    let selector = format!("{SCHEDULED_BY_LABEL}={name}");
    let scheduled = backups
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Read {
            what: format!("the scheduled backups of {name}"),
            source,
        })?
        .items;
    let now = Timestamp::now();
    let created = ensemble
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let since = newest_run(&scheduled).unwrap_or(created);
    if let Some(at) = due(&cron, since, now) {
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
        prune(&backups, old, &namespace, &ctx).await?;
    }
    let wait = next(&cron, now)
        .and_then(|at| Duration::try_from(at.duration_since(now)).ok())
        .unwrap_or(LONGEST_WAIT);
    Ok(Action::requeue(
        wait.clamp(Duration::from_secs(1), LONGEST_WAIT),
    ))
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
        let event = Event {
            type_: EventType::Warning,
            reason: "PruneFailed".into(),
            note: Some(note),
            action: "Prune".into(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &backup.object_ref(&())).await {
            tracing::warn!(%error, "publishing an Event");
        }
        return Ok(());
    }
    match backups
        .delete(&backup.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => {
            tracing::info!(backup = %backup.name_any(), %namespace, "scheduled backup pruned");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(Error::Write {
            what: format!("deleting the backup {}", backup.name_any()),
            source,
        }),
    }
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
