//! The IO of restore drills: reads what [`super::drill::next_step`] decides from, and does what
//! it says. Only the leading replica acts (the fence is checked before every change), and each
//! step is found again from what is read, so an operator that restarts mid-drill goes on where
//! it was: the drill ensemble's name follows from the backup and its request, its label names
//! the backup, and a verdict is recorded before the drill ensemble is deleted.

use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::drill::{self, DrillStep, Verdict};
use super::{Context, Error, delete_if_present, list_labelled, plan, read, take};
use crate::api::{ZooKeeperBackup, ZooKeeperEnsemble};
use crate::build::names;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};

/// How often a running drill looks at its ensemble (the backup controller does not watch
/// ensembles).
const POLL: Duration = Duration::from_secs(5);

/// One step of `backup`'s drill.
pub(super) async fn reconcile(backup: &ZooKeeperBackup, ctx: &Context) -> Result<Action, Error> {
    // Read again: a verdict written a moment ago may not be in the cache yet.
    let namespace = backup.namespace().unwrap_or_default();
    let backups = Api::<ZooKeeperBackup>::namespaced(ctx.client.clone(), &namespace);
    let Some(backup) = read(&backups, &backup.name_any(), "the backup").await? else {
        return Ok(Action::await_change());
    };
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(ctx.client.clone(), &namespace);
    let now = Timestamp::now();
    let name = drill::drill_name(&backup, now);
    let drills = drill_ensembles(&ensembles, &backup, &name).await?;
    // Only a drill ensemble to create needs it: none of the backup's runs.
    let source = match drills
        .iter()
        .any(|drill| drill.metadata.deletion_timestamp.is_none())
    {
        true => None,
        false => read(&ensembles, &backup.spec.ensemble, "the ZooKeeperEnsemble").await?,
    };
    match drill::next_step(&backup, &drills, source.as_ref(), now) {
        DrillStep::Nothing => Ok(Action::await_change()),
        DrillStep::Create(ensemble) => {
            // A drill ensemble of this name deleted mid-drill (by hand): its Secrets and volume
            // claim go some time after it. Until then the new one would find them: Secrets not
            // its own (refused), or a claim holding the last restore instead of a fresh one.
            if let Some(leftover) = leftover(&ensemble, &namespace, ctx).await? {
                let why = format!("waiting for the deleted drill's {leftover} to be gone");
                drilling(&backup, why, ctx).await?;
                return Ok(Action::requeue(POLL));
            }
            ctx.fence.check().await?;
            match ensembles.create(&PostParams::default(), &ensemble).await {
                Ok(_) => {}
                // Created by this replica a moment ago, or by the one before it.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(source) => {
                    return Err(Error::Write {
                        what: format!("creating the drill ensemble {name}"),
                        source,
                    });
                }
            }
            let message = match source {
                Some(_) => format!("restoring into the drill ensemble {name}"),
                None => format!(
                    "restoring into the drill ensemble {name}, with a new ensemble's defaults \
                     (image, resources, storage class): the ZooKeeperEnsemble {} is gone",
                    backup.spec.ensemble
                ),
            };
            super::publish(
                &backup,
                ctx,
                EventType::Normal,
                "DrillStarted",
                message.clone(),
            )
            .await;
            drilling(&backup, message, ctx).await?;
            Ok(Action::requeue(POLL))
        }
        DrillStep::Wait(why) => {
            drilling(&backup, why, ctx).await?;
            Ok(Action::requeue(POLL))
        }
        DrillStep::Check(name) => {
            let drill_ensemble = drills
                .iter()
                .find(|drill| drill.name_any() == name)
                .expect("a drill ensemble that was read");
            ctx.fence.check().await?;
            match check(&backup, drill_ensemble, ctx).await? {
                Ok(verdict) => conclude(&backup, verdict, ctx).await,
                Err(why) => {
                    drilling(&backup, why, ctx).await?;
                    Ok(Action::requeue(POLL))
                }
            }
        }
        DrillStep::Conclude(verdict) => conclude(&backup, verdict, ctx).await,
        DrillStep::Remove(done) => {
            ctx.fence.check().await?;
            for name in done {
                delete_if_present(&ensembles, &name, "the drill ensemble").await?;
            }
            // Looked at again: a drill that is due goes on once they are on their way.
            Ok(Action::requeue(POLL))
        }
    }
}

/// The ensembles labelled as `backup`'s drills, and the one named `name` if it is not labelled
/// so (someone else's, which the drill must not take for its own).
async fn drill_ensembles(
    ensembles: &Api<ZooKeeperEnsemble>,
    backup: &ZooKeeperBackup,
    name: &str,
) -> Result<Vec<ZooKeeperEnsemble>, Error> {
    let selector = format!("{}={}", drill::DRILL_OF_LABEL, backup.name_any());
    let what = format!("the ZooKeeperEnsembles labelled {selector}");
    let mut drills = list_labelled(ensembles, &selector, &what).await?;
    if !drills.iter().any(|drill| drill.name_any() == name) {
        drills.extend(read(ensembles, name, "the drill ensemble").await?);
    }
    Ok(drills)
}

/// A Secret or the volume claim of the drill ensemble's names that exists before the ensemble
/// does ("Secret <name>", "PersistentVolumeClaim <name>").
async fn leftover(
    drill_ensemble: &ZooKeeperEnsemble,
    namespace: &str,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    for name in [
        names::superuser_secret(drill_ensemble),
        names::tls_secret(drill_ensemble),
    ] {
        if read(&secrets, &name, "a Secret of the drill ensemble")
            .await?
            .is_some()
        {
            return Ok(Some(format!("Secret {name}")));
        }
    }
    let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace);
    let claim = names::data_claim(drill_ensemble, 0);
    Ok(read(&claims, &claim, "the drill ensemble's volume claim")
        .await?
        .map(|_| format!("PersistentVolumeClaim {claim}")))
}

/// Takes a snapshot of the drill ensemble's restored server and compares it with the backup;
/// or why it could not yet.
async fn check(
    backup: &ZooKeeperBackup,
    drill_ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
) -> Result<Result<Verdict, String>, Error> {
    let name = drill_ensemble.name_any();
    let pods = match plan::members_to_ask(&name, Some(drill_ensemble)) {
        Ok(pods) => pods,
        Err(waiting) => return Ok(Err(waiting.message)),
    };
    let members = match super::members(drill_ensemble, pods, ctx).await? {
        Ok(members) => members,
        Err(waiting) => return Ok(Err(waiting.message)),
    };
    let http = match take::snapshot_client(&members.admin_tls) {
        Ok(http) => http,
        Err(problem) => return Ok(Err(problem)),
    };
    let mut failures = Vec::new();
    for (member, base) in &members.members {
        match take::read_snapshot(&http, member, base, &members.password).await {
            Ok(restored) => {
                return Ok(Ok(drill::verdict(
                    backup,
                    &name,
                    &restored.contents.persistent,
                    &restored.zxid,
                )));
            }
            Err(error) => failures.push(error.to_string()),
        }
    }
    Ok(Err(format!(
        "the drill ensemble {name} gave no snapshot: {}",
        failures.join("; ")
    )))
}

/// Says that the drill runs, and why it waits, unless [`drill::progress`] keeps quiet.
async fn drilling(backup: &ZooKeeperBackup, message: String, ctx: &Context) -> Result<(), Error> {
    match drill::progress(backup, message) {
        Some(condition) => write_verified(backup, condition, ctx).await,
        None => Ok(()),
    }
}

/// Records the verdict, with an Event; the next step deletes the drill ensemble.
async fn conclude(
    backup: &ZooKeeperBackup,
    verdict: Verdict,
    ctx: &Context,
) -> Result<Action, Error> {
    let (status, event_type, reason) = if verdict.verified {
        ("True", EventType::Normal, "BackupVerified")
    } else {
        ("False", EventType::Warning, "BackupNotVerified")
    };
    let condition = drill::verified_condition(status, verdict.reason, verdict.message.clone());
    // The metric follows when the written verdict comes back (super::reconcile).
    write_verified(backup, condition, ctx).await?;
    super::publish(backup, ctx, event_type, reason, verdict.message).await;
    Ok(Action::requeue(POLL))
}

/// Replaces the backup's `Verified` condition, keeping the others.
async fn write_verified(
    backup: &ZooKeeperBackup,
    condition: k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
    ctx: &Context,
) -> Result<(), Error> {
    let mut conditions: Vec<_> = backup
        .status
        .as_ref()
        .map(|status| status.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != drill::VERIFIED)
        .collect();
    conditions.push(condition);
    super::merge_status(backup, json!({ "conditions": conditions }), ctx).await
}
