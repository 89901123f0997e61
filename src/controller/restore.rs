//! spec.restore, resolved once before a restored ensemble's servers are created.
//!
//! The servers download exactly what `status.restore` names and check it against the figures
//! there (`build::stateful_set` passes them on), so the operator writes it before the first
//! StatefulSet, from the backup as [`restore_source`] reads it (or from the metadata object
//! beside a named snapshot, [`object_source`]), and never again: a backup deleted later
//! changes nothing, and the servers' template stays the same. The status field
//! is written with a field manager of its own, so the status report's server-side apply, which
//! does not set it, never removes it.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use object_store::ObjectStoreExt;
use serde_json::json;

use super::report::publish;
use super::{Context, scale};
use crate::api::{RestoreObject, RestoreStatus, ZooKeeperBackup, ZooKeeperEnsemble};
use crate::backup::source::{METADATA_LIMIT, StoredMetadata, object_source, restore_source};
use crate::backup::{plan, take};

/// The field manager of `status.restore`.
const FIELD_MANAGER: &str = "zooherd-restore";

/// The ensemble with `status.restore` written, when spec.restore asks for a restore the status
/// does not show yet; `None` when there is nothing to resolve; what keeps the servers from
/// being created otherwise (the backup is missing, unfinished or failed).
pub(super) async fn resolve(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
) -> Result<Option<ZooKeeperEnsemble>, String> {
    let Some(restore) = &ensemble.spec.restore else {
        return Ok(None);
    };
    let status = ensemble.status.as_ref();
    if status.is_some_and(|s| s.restore.is_some()) {
        return Ok(None);
    }
    // A status lost after formation (restored from an etcd backup, say) is not resolved again:
    // the servers hold the data now, and a backup deleted since must not stop the operator.
    if status.is_some_and(|s| s.formed_at.is_some())
        || scale::config_map_says_formed(&ctx.stores, ensemble)
    {
        return Ok(None);
    }
    let namespace = ensemble.namespace().unwrap_or_default();
    let source = match (&restore.backup, &restore.object) {
        (Some(name), _) => {
            let backups = Api::<ZooKeeperBackup>::namespaced(ctx.client.clone(), &namespace);
            let backup = backups.get_opt(name).await.map_err(|e| {
                format!("spec.restore.backup: reading the ZooKeeperBackup {name}: {e}")
            })?;
            restore_source(name, backup.as_ref())?
        }
        (None, Some(object)) => stored_object(object, &namespace, ctx).await?,
        // Validation (and the CRD's rule) refuses this before the operator gets here.
        (None, None) => return Err(crate::api::validate::RESTORE_NEEDS_ONE.to_owned()),
    };
    let ensembles = Api::<ZooKeeperEnsemble>::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": ZooKeeperEnsemble::api_version(&()),
        "kind": ZooKeeperEnsemble::kind(&()),
        "status": { "restore": source },
    });
    let patched = ensembles
        .patch_status(
            &ensemble.name_any(),
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| format!("writing status.restore: {e}"))?;
    let from = source.backup.as_ref().map_or_else(
        || "the stored snapshot".to_owned(),
        |name| format!("the ZooKeeperBackup {name}"),
    );
    let note = format!(
        "starting from {from}: {} ({} bytes, zxid {}, SHA-256 {})",
        source.location, source.size_bytes, source.zxid, source.sha256
    );
    publish(
        ensemble,
        ctx,
        EventType::Normal,
        "Restoring",
        "Restore",
        note,
    )
    .await;
    Ok(Some(patched))
}

/// The snapshot spec.restore.object names, as the metadata beside it describes it: reads the
/// credentials Secret, the metadata object and the snapshot's length, and leaves the verdict
/// to [`object_source`].
async fn stored_object(
    object: &RestoreObject,
    namespace: &str,
    ctx: &Context,
) -> Result<RestoreStatus, String> {
    const FIELD: &str = "spec.restore.object.s3";
    let name = &object.s3.credentials_secret;
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| format!("{FIELD}.credentialsSecret: reading the Secret {name}: {e}"))?;
    let credentials = plan::credentials(FIELD, name, secret.as_ref()).map_err(|w| w.message)?;
    let store = take::object_store(FIELD, &object.s3, &credentials)?;
    let storage = |key: &str, e: object_store::Error| {
        format!(
            "{FIELD}: reading s3://{}/{key} with the Secret {name}'s credentials: {e}",
            object.s3.bucket
        )
    };
    let metadata_key = plan::metadata_key(&object.key);
    let metadata = match store.get(&metadata_key.as_str().into()).await {
        Ok(answer) if answer.meta.size > METADATA_LIMIT => Err(answer.meta.size),
        Ok(answer) => Ok(Some(
            answer
                .bytes()
                .await
                .map_err(|e| storage(&metadata_key, e))?,
        )),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => return Err(storage(&metadata_key, e)),
    };
    let snapshot_size = match store.head(&object.key.as_str().into()).await {
        Ok(meta) => Some(meta.size),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(storage(&object.key, e)),
    };
    let metadata = match &metadata {
        Ok(Some(bytes)) => StoredMetadata::Read(bytes),
        Ok(None) => StoredMetadata::Missing,
        Err(size) => StoredMetadata::TooLarge(*size),
    };
    object_source(object, metadata, snapshot_size)
}
