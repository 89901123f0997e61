//! spec.restore, resolved once before a restored ensemble's servers are created.
//!
//! The servers download exactly what `status.restore` names and check it against the figures
//! there (`build::stateful_set` passes them on), so the operator writes it before the first
//! StatefulSet, from the backup as [`restore_source`] reads it, and never again: a backup
//! deleted later changes nothing, and the servers' template stays the same. The status field
//! is written with a field manager of its own, so the status report's server-side apply, which
//! does not set it, never removes it.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::report::publish;
use super::{Context, scale};
use crate::api::{ZooKeeperBackup, ZooKeeperEnsemble};
use crate::backup::source::restore_source;

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
    let backups = Api::<ZooKeeperBackup>::namespaced(ctx.client.clone(), &namespace);
    let backup = backups.get_opt(&restore.backup).await.map_err(|e| {
        format!(
            "spec.restore.backup: reading the ZooKeeperBackup {}: {e}",
            restore.backup
        )
    })?;
    let source = restore_source(&restore.backup, backup.as_ref())?;
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
    let note = format!(
        "starting from the ZooKeeperBackup {}: {} ({} bytes, zxid {}, SHA-256 {})",
        source.backup, source.location, source.size_bytes, source.zxid, source.sha256
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
