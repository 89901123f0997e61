//! The backup controller: a kube-runtime Controller over `ZooKeeperBackup`.
//!
//! A backup is taken once. The reconcile reads what the backup needs (its ensemble, the
//! credentials Secret, the ensemble's TLS and superuser Secrets), which [`plan`] turns into the
//! members to ask or the reason to wait; then it records the attempt (phase Running) and
//! streams a snapshot from the first member that gives one ([`take`]); then it writes the
//! metadata object and the final status. A backup that is Succeeded or Failed is never touched
//! again.
//!
//! An operator that restarts, or loses its lease, in the middle of an attempt leaves the
//! backup Running with an upload that never completes (S3 keeps no object of an unfinished
//! multipart upload; a lifecycle rule on the bucket removes its parts). The next leader sees
//! Running and makes a new attempt: the key is the same, so a snapshot stored by an attempt
//! whose status write was lost is overwritten by a newer one, never left beside it. Only the
//! leading replica runs this controller, and it checks its lease before every attempt.

pub mod drill;
mod drilling;
pub mod plan;
pub mod schedule;
mod scheduler;
pub mod snapshot_file;
pub mod source;
pub mod take;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::api::{
    BACKUP_METADATA_FORMAT, BackupMetadata, BackupPhase, ZooKeeperBackup, ZooKeeperBackupStatus,
    ZooKeeperEnsemble,
};
use crate::build::names;
use crate::controller::{Fence, FenceError, Metrics};
use plan::Waiting;

/// The condition a backup carries: True once it is stored.
pub const COMPLETE: &str = "Complete";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: {source}")]
    Write {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the backup's status: {0}")]
    Status(#[source] kube::Error),
    #[error("not acting: {0}")]
    Fenced(#[from] FenceError),
}

struct Context {
    client: Client,
    fence: Fence,
    recorder: Recorder,
    metrics: Metrics,
}

/// Runs the backup controller over `namespace` (every namespace when None) until `shutdown`.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    reporter: Reporter,
    fence: Fence,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let schedules = scheduler::run(
        client.clone(),
        namespace.clone(),
        Recorder::new(client.clone(), reporter.clone()),
        fence.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    let backups: Api<ZooKeeperBackup> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        fence,
        metrics,
    });
    let backups = Controller::new(backups, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "backup controller event");
            }
            std::future::ready(())
        });
    futures::join!(backups, schedules);
}

fn error_policy(backup: Arc<ZooKeeperBackup>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(backup = %backup.name_any(), namespace = ?backup.namespace(), %error, "backup reconcile failed");
    Action::requeue(plan::RETRY_AFTER)
}

async fn reconcile(backup: Arc<ZooKeeperBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Some(status) = backup
        .status
        .as_ref()
        .filter(|s| s.phase.is_some_and(BackupPhase::is_final))
    {
        // Every backup is seen at start: the metric of the newest success survives restarts.
        // Only while its ensemble exists: a deleted ensemble's series went with it
        // (`Metrics::forget_ensemble`), and its backups, kept on purpose, must not bring them
        // back at the next start, where the stale-backup alert would fire for an ensemble that
        // is gone.
        let (namespace, ensemble) = (
            backup.namespace().unwrap_or_default(),
            &backup.spec.ensemble,
        );
        if let (Some(BackupPhase::Succeeded), Some(completed_at)) =
            (status.phase, &status.completed_at)
            && ensemble_exists(&ctx, &namespace, ensemble).await?
        {
            ctx.metrics
                .backups
                .succeeded(&namespace, ensemble, completed_at.0);
            if let Some(verdict) = drill::verdict_condition(&backup) {
                let verified = verdict.status == "True";
                let at = verdict.last_transition_time.0;
                ctx.metrics
                    .backups
                    .drill_verdict(&namespace, ensemble, at, verified);
                if verified {
                    ctx.metrics
                        .backups
                        .verified(&namespace, ensemble, completed_at.0);
                }
            }
        }
        if let Some(problem) = drill::invalid_request(&backup, Timestamp::now()) {
            publish(
                &backup,
                &ctx,
                EventType::Warning,
                "InvalidDrillRequest",
                problem,
            )
            .await;
        }
        if drill::wanted(&backup) {
            return drilling::reconcile(&backup, &ctx).await;
        }
        return Ok(Action::await_change());
    }
    // Read again: the cache may not have the status this controller wrote a moment ago, and
    // a backup that just succeeded must not be taken twice.
    let namespace = backup.namespace().unwrap_or_default();
    let api = Api::<ZooKeeperBackup>::namespaced(ctx.client.clone(), &namespace);
    let Some(backup) = read(&api, &backup.name_any(), "the backup").await? else {
        return Ok(Action::await_change());
    };
    let status = backup.status.clone().unwrap_or_default();
    if status.phase.is_some_and(BackupPhase::is_final) {
        return Ok(Action::await_change());
    }
    if let Some(left) = plan::retry_in(&status, Timestamp::now()) {
        return Ok(Action::requeue(left));
    }
    ctx.fence.check().await?;
    let ready = match gather(&backup, &namespace, &ctx).await? {
        Ok(ready) => ready,
        Err(waiting) => return wait(&backup, status, waiting, &ctx).await,
    };

    let key = plan::snapshot_key(&backup);
    let location = format!("s3://{}/{key}", backup.spec.s3.bucket);
    let started_at = status
        .started_at
        .clone()
        .unwrap_or_else(|| Time(Timestamp::now()));
    let attempts = status.attempts + 1;
    let running = ZooKeeperBackupStatus {
        phase: Some(BackupPhase::Running),
        location: Some(location),
        started_at: Some(started_at.clone()),
        attempts,
        conditions: vec![condition(
            false,
            "Running",
            format!("attempt {attempts} of {}", plan::MAX_ATTEMPTS),
        )],
        ..ZooKeeperBackupStatus::default()
    };
    write_status(&backup, &running, &ctx).await?;

    let result = attempt(&backup, &ready, &key, started_at.0).await;
    match result {
        Ok(done) => {
            let message = format!(
                "stored {} bytes ({} znodes, zxid {}) from {} at {}",
                done.stored.size_bytes,
                done.stored.contents.znodes,
                done.stored.zxid,
                done.member,
                running.location.as_deref().unwrap_or_default()
            );
            let completed_at = Timestamp::now();
            let succeeded = ZooKeeperBackupStatus {
                phase: Some(BackupPhase::Succeeded),
                size_bytes: i64::try_from(done.stored.size_bytes).ok(),
                sha256: Some(done.stored.sha256),
                zxid: Some(done.stored.zxid),
                znode_count: i64::try_from(done.stored.contents.znodes).ok(),
                tree_digest: done.stored.contents.digest.map(tree_digest),
                persistent_znode_count: i64::try_from(done.stored.contents.persistent.znodes).ok(),
                content_hash: Some(done.stored.contents.persistent.hash_hex()),
                member: Some(done.member),
                zookeeper_version: done.version,
                completed_at: Some(Time(completed_at)),
                conditions: vec![condition(true, "Stored", message.clone())],
                ..running
            };
            write_status(&backup, &succeeded, &ctx).await?;
            ctx.metrics
                .backups
                .succeeded(&namespace, &backup.spec.ensemble, completed_at);
            publish(&backup, &ctx, EventType::Normal, "BackupSucceeded", message).await;
            Ok(Action::await_change())
        }
        Err(error) if attempts >= plan::MAX_ATTEMPTS => {
            let message = format!("gave up after {attempts} attempts; the last: {error}");
            fail(&backup, running, "AttemptsExhausted", message, &ctx).await
        }
        Err(error) => {
            let retrying = ZooKeeperBackupStatus {
                conditions: vec![condition(
                    false,
                    plan::ATTEMPT_FAILED,
                    format!("attempt {attempts} failed, retrying: {error}"),
                )],
                ..running
            };
            write_status(&backup, &retrying, &ctx).await?;
            Ok(Action::requeue(plan::RETRY_AFTER))
        }
    }
}

/// What an attempt needs, all read.
struct Ready {
    ensemble: ZooKeeperEnsemble,
    members: Members,
    credentials: plan::S3Credentials,
}

/// The members of an ensemble to ask for a snapshot, and how to ask.
struct Members {
    /// Best first, with their AdminServer's base URL.
    members: Vec<(String, String)>,
    admin_tls: crate::http::AdminTls,
    password: String,
}

/// Reads what the backup needs, or why it must wait.
async fn gather(
    backup: &ZooKeeperBackup,
    namespace: &str,
    ctx: &Context,
) -> Result<Result<Ready, Waiting>, Error> {
    let name = &backup.spec.ensemble;
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(ctx.client.clone(), namespace);
    let ensemble = read(&ensembles, name, "the ZooKeeperEnsemble").await?;
    let pods_to_ask = match plan::members_to_ask(name, ensemble.as_ref()) {
        Ok(pods) => pods,
        Err(waiting) => return Ok(Err(waiting)),
    };
    let ensemble = ensemble.expect("members_to_ask found the ensemble");
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    let credentials_secret = &backup.spec.s3.credentials_secret;
    let credentials = match plan::credentials(
        "spec.s3",
        credentials_secret,
        read(&secrets, credentials_secret, "the credentials Secret")
            .await?
            .as_ref(),
    ) {
        Ok(credentials) => credentials,
        Err(waiting) => return Ok(Err(waiting)),
    };
    Ok(members(&ensemble, pods_to_ask, ctx)
        .await?
        .map(|members| Ready {
            ensemble,
            members,
            credentials,
        }))
}

/// How to ask `pods_to_ask` of `ensemble` for a snapshot: the operator's AdminServer
/// certificate, the superuser's password and the pods' IPs; or why not yet.
async fn members(
    ensemble: &ZooKeeperEnsemble,
    pods_to_ask: Vec<String>,
    ctx: &Context,
) -> Result<Result<Members, Waiting>, Error> {
    let namespace = ensemble.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let tls_name = names::tls_secret(ensemble);
    let admin_tls = read(&secrets, &tls_name, "the quorum TLS Secret")
        .await?
        .ok_or_else(|| "does not exist yet".to_owned())
        .and_then(|secret| crate::controller::tls::admin_tls(ensemble, &secret));
    let superuser_name = names::superuser_secret(ensemble);
    let password = read(&secrets, &superuser_name, "the superuser Secret")
        .await?
        .ok_or_else(|| "does not exist yet".to_owned())
        .and_then(|secret| crate::controller::superuser::password(&secret));
    let (admin_tls, password) = match (admin_tls, password) {
        (Ok(tls), Ok(password)) => (tls, password),
        (Err(problem), _) => {
            return Ok(Err(ensemble_secret_problem(&tls_name, &problem)));
        }
        (_, Err(problem)) => {
            return Ok(Err(ensemble_secret_problem(&superuser_name, &problem)));
        }
    };
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace);
    let mut members = Vec::new();
    for pod_name in pods_to_ask {
        let ip = read(&pods, &pod_name, "a member's pod")
            .await?
            .and_then(|pod| pod.status?.pod_ip);
        if let Some(ip) = ip {
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip
            };
            members.push((pod_name, format!("https://{host}:{}", names::ADMIN_PORT)));
        }
    }
    if members.is_empty() {
        return Ok(Err(Waiting {
            reason: "NoServingMember",
            message: format!(
                "no serving member of the ZooKeeperEnsemble {} has a pod IP",
                ensemble.name_any()
            ),
        }));
    }
    Ok(Ok(Members {
        members,
        admin_tls,
        password,
    }))
}

fn ensemble_secret_problem(secret: &str, problem: &str) -> Waiting {
    Waiting {
        reason: "EnsembleSecretInvalid",
        message: format!(
            "the ensemble's Secret {secret} {problem}; the operator creates it with the ensemble"
        ),
    }
}

async fn read<K>(api: &Api<K>, name: &str, what: &str) -> Result<Option<K>, Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.map_err(|source| Error::Read {
        what: format!("{what} {name}"),
        source,
    })
}

/// Whether the ensemble `name` exists (its metadata is read, not the whole object).
async fn ensemble_exists(ctx: &Context, namespace: &str, name: &str) -> Result<bool, Error> {
    let api = Api::<ZooKeeperEnsemble>::namespaced(ctx.client.clone(), namespace);
    match api.get_metadata_opt(name).await {
        Ok(found) => Ok(found.is_some()),
        Err(source) => Err(Error::Read {
            what: format!("the ensemble {name}"),
            source,
        }),
    }
}

/// The objects `api` holds with the labels `selector`; `what` names them in an error.
async fn list_labelled<K>(api: &Api<K>, selector: &str, what: &str) -> Result<Vec<K>, Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default().labels(selector))
        .await
        .map(|list| list.items)
        .map_err(|source| Error::Read {
            what: what.to_owned(),
            source,
        })
}

/// Deletes `what` `name`, if it is still there: whether this call deleted it.
async fn delete_if_present<K>(api: &Api<K>, name: &str, what: &str) -> Result<bool, Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(source) => Err(Error::Write {
            what: format!("deleting {what} {name}"),
            source,
        }),
    }
}

/// A stored snapshot and where it came from.
struct Done {
    stored: take::Stored,
    member: String,
    version: Option<String>,
}

/// The digest as the status and the metadata show it.
fn tree_digest(digest: snapshot_file::TreeDigest) -> crate::api::TreeDigest {
    crate::api::TreeDigest {
        zxid: format!("{:#x}", digest.zxid),
        value: format!("{:#018x}", digest.value),
        version: digest.version,
    }
}

/// One attempt: each member in turn until one gives a snapshot; the metadata once stored.
async fn attempt(
    backup: &ZooKeeperBackup,
    ready: &Ready,
    key: &str,
    started_at: Timestamp,
) -> Result<Done, String> {
    let store = take::object_store("spec.s3", &backup.spec.s3, &ready.credentials)?;
    let with_credentials = |e: take::TakeError| match e {
        take::TakeError::Storage(message) => format!(
            "object storage (endpoint {}, bucket {}, credentials from the Secret {}): {message}",
            backup.spec.s3.endpoint, backup.spec.s3.bucket, backup.spec.s3.credentials_secret
        ),
        member => member.to_string(),
    };
    let Members {
        members,
        admin_tls,
        password,
    } = &ready.members;
    let http = take::snapshot_client(admin_tls)?;
    let admin = crate::quorum::admin::AdminClient::with_tls(Duration::from_secs(5), admin_tls)?;
    let mut failures = Vec::new();
    for (member, base) in members {
        // Asked first so that the metadata names the version that wrote the snapshot, and so
        // that a member that stopped serving since the status was written is passed over.
        let version = match admin.srvr(base).await {
            Ok(crate::quorum::admin::SrvrAnswer::Serving(stats)) => stats.version,
            Ok(other) => {
                failures.push(format!("{member}: not serving ({other:?})"));
                continue;
            }
            Err(e) => {
                failures.push(format!("{member}: {e}"));
                continue;
            }
        };
        match take::stream_snapshot(&http, member, base, password, store.as_ref(), key).await {
            Ok(stored) => {
                let metadata = BackupMetadata {
                    format: BACKUP_METADATA_FORMAT.to_owned(),
                    namespace: backup.namespace().unwrap_or_default(),
                    ensemble: ready.ensemble.name_any(),
                    ensemble_uid: ready.ensemble.uid().unwrap_or_default(),
                    backup: backup.name_any(),
                    backup_uid: backup.uid().unwrap_or_default(),
                    member: member.clone(),
                    zookeeper_version: version.clone(),
                    zxid: stored.zxid.clone(),
                    size_bytes: stored.size_bytes,
                    sha256: stored.sha256.clone(),
                    znode_count: Some(stored.contents.znodes),
                    tree_digest: stored.contents.digest.map(tree_digest),
                    persistent_znode_count: Some(stored.contents.persistent.znodes),
                    content_hash: Some(stored.contents.persistent.hash_hex()),
                    snapshot_key: key.to_owned(),
                    started_at,
                    completed_at: Timestamp::now(),
                };
                take::put_metadata(store.as_ref(), &plan::metadata_key(key), &metadata)
                    .await
                    .map_err(with_credentials)?;
                return Ok(Done {
                    stored,
                    member: member.clone(),
                    version,
                });
            }
            Err(e @ take::TakeError::Storage(_)) => return Err(with_credentials(e)),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(format!(
        "no member gave a snapshot: {}",
        failures.join("; ")
    ))
}

/// Records why the backup waits, or fails it once it has waited [`plan::WAIT_LIMIT`].
async fn wait(
    backup: &ZooKeeperBackup,
    status: ZooKeeperBackupStatus,
    waiting: Waiting,
    ctx: &Context,
) -> Result<Action, Error> {
    let created = backup
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let waited = Timestamp::now().duration_since(created);
    if waited > jiff::SignedDuration::try_from(plan::WAIT_LIMIT).expect("a few minutes fit") {
        let message = format!(
            "gave up after waiting {} s: {}",
            plan::WAIT_LIMIT.as_secs(),
            waiting.message
        );
        return fail(backup, status, waiting.reason, message, ctx).await;
    }
    // Written only when the reason or message changes: every write wakes this controller.
    let said = status.phase.is_some()
        && status
            .conditions
            .iter()
            .any(|c| c.reason == waiting.reason && c.message == waiting.message);
    if !said {
        let pending = ZooKeeperBackupStatus {
            phase: Some(status.phase.unwrap_or(BackupPhase::Pending)),
            conditions: vec![condition(false, waiting.reason, waiting.message)],
            ..status
        };
        write_status(backup, &pending, ctx).await?;
    }
    Ok(Action::requeue(plan::RETRY_AFTER))
}

async fn fail(
    backup: &ZooKeeperBackup,
    status: ZooKeeperBackupStatus,
    reason: &'static str,
    message: String,
    ctx: &Context,
) -> Result<Action, Error> {
    let failed = ZooKeeperBackupStatus {
        phase: Some(BackupPhase::Failed),
        completed_at: Some(Time(Timestamp::now())),
        conditions: vec![condition(false, reason, message.clone())],
        ..status
    };
    write_status(backup, &failed, ctx).await?;
    publish(backup, ctx, EventType::Warning, "BackupFailed", message).await;
    Ok(Action::await_change())
}

fn condition(complete: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: COMPLETE.to_owned(),
        status: if complete { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: Time(Timestamp::now()),
        observed_generation: None,
    }
}

async fn write_status(
    backup: &ZooKeeperBackup,
    status: &ZooKeeperBackupStatus,
    ctx: &Context,
) -> Result<(), Error> {
    merge_status(backup, json!(status), ctx).await
}

/// Merges `status` (JSON) into the backup's status.
async fn merge_status(
    backup: &ZooKeeperBackup,
    status: serde_json::Value,
    ctx: &Context,
) -> Result<(), Error> {
    let api = Api::<ZooKeeperBackup>::namespaced(
        ctx.client.clone(),
        &backup.namespace().unwrap_or_default(),
    );
    api.patch_status(
        &backup.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(Error::Status)?;
    Ok(())
}

/// Where the unit tests' backups go.
#[cfg(test)]
fn test_location(prefix: &str) -> crate::api::S3Location {
    crate::api::S3Location {
        endpoint: "http://s3:9000".into(),
        bucket: "zk-backups".into(),
        prefix: prefix.into(),
        region: "us-east-1".into(),
        virtual_hosted_style: false,
        credentials_secret: "s3".into(),
    }
}

async fn publish(
    backup: &ZooKeeperBackup,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let regarding = backup.object_ref(&());
    publish_event(&ctx.recorder, &regarding, type_, reason, "Backup", note).await;
}

/// Publishes an Event about `regarding`; a failure to is only logged.
async fn publish_event(
    recorder: &Recorder,
    regarding: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, regarding).await {
        tracing::warn!(%error, name = ?regarding.name, "publishing an Event");
    }
}
