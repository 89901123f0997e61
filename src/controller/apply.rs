//! Server-side apply of an ensemble's children, skipping every write that would change nothing.
//!
//! Each desired object is stamped with a hash of its own content. When the live object in the
//! informer cache carries the same stamp, the apply is skipped, so a steady ensemble costs the
//! API server no writes however often it is reconciled. A child that someone else created (no
//! owner reference to this ensemble) is never taken over: that would silently repoint a user's
//! Service or overwrite their ConfigMap. Such an object is not in the cache (which holds only
//! what carries the managed-by label), so a child missing from the cache is read once before
//! it is created.

use std::fmt::Debug;

use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::cached::{Cached, Child};
use super::{Context, Error};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "zooherd";

/// Annotation holding the hash of the content the operator last applied.
pub const APPLIED_HASH_ANNOTATION: &str = "zooherd.dev/applied-hash";

/// Stamps `object` with the hash of its content (the stamp itself excluded).
pub fn stamp<K: Resource + Serialize>(object: &mut K) {
    object.annotations_mut().remove(APPLIED_HASH_ANNOTATION);
    let content = serde_json::to_vec(object).expect("Kubernetes objects serialize to JSON");
    let hash = const_hex::encode(&Sha256::digest(&content)[..16]);
    object
        .annotations_mut()
        .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash);
}

/// What to do with one stamped desired object, given the live one.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyDecision {
    /// The live object already holds exactly this content.
    UpToDate,
    /// Missing or different: apply.
    Apply,
    /// An object of that name exists but belongs to someone else.
    Foreign,
    /// Ours, with the operator's stamp, but changed by someone else since: apply it again.
    Reverted,
}

pub fn decide<K: Resource + Serialize>(
    desired: &K,
    owner_uid: &str,
    live: Option<&K>,
    normalised: bool,
) -> ApplyDecision {
    let Some(live) = live else {
        return ApplyDecision::Apply;
    };
    let owned = live
        .owner_references()
        .iter()
        .any(|owner| owner.uid == owner_uid);
    if !owned {
        return ApplyDecision::Foreign;
    }
    let hash = |k: &K| k.annotations().get(APPLIED_HASH_ANNOTATION).cloned();
    if live.meta().deletion_timestamp.is_some()
        || hash(live).is_none()
        || hash(live) != hash(desired)
    {
        return ApplyDecision::Apply;
    }
    // The stamp only says what the operator last wrote; `kubectl scale` or `kubectl edit`
    // keeps it while changing the content. So the content is compared too: every field the
    // operator sets must hold its value (what the API server and other controllers add is
    // ignored). `normalised`: this very content came back from the API server in another
    // form before (a quantity rewritten, say), so only the stamp can be compared.
    if normalised || covers(&to_json(live), &to_json(desired)) {
        ApplyDecision::UpToDate
    } else {
        ApplyDecision::Reverted
    }
}

fn to_json(object: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(object).expect("Kubernetes objects serialize to JSON")
}

/// Whether every field `desired` sets has the same value in `live`. Lists must have the same
/// length, element by element.
pub fn covers(live: &serde_json::Value, desired: &serde_json::Value) -> bool {
    difference(live, desired).is_none()
}

/// The path of the first field `desired` sets that `live` does not hold with the same value.
pub fn difference(live: &serde_json::Value, desired: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, value)| {
            match have.get(key) {
                None => Some(key.clone()),
                Some(live) => difference(live, value).map(|path| format!("{key}.{path}")),
            }
            .map(|path| path.trim_end_matches('.').to_owned())
        }),
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => want
            .iter()
            .zip(have)
            .enumerate()
            .find_map(|(i, (w, h))| difference(h, w).map(|path| format!("[{i}].{path}"))),
        (want, have) => (want != have).then(String::new),
    }
}

/// Applies `desired` unless the cached live object makes that unnecessary. Returns what was
/// written, if anything.
pub async fn apply_child<K: Child>(
    ctx: &Context,
    store: &Store<Cached<K>>,
    owner_uid: &str,
    mut desired: K,
) -> Result<Option<Applied>, Error> {
    stamp(&mut desired);
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let live = store
        .get(&ObjectRef::new(&name).within(&namespace))
        .map(|cached| cached.object());
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = (format!("{kind}/{namespace}/{name}"), stamp_of(&desired));
    let normalised = ctx
        .normalised
        .lock()
        .expect("normalised lock")
        .contains(&key);
    let mut decision = decide(&desired, owner_uid, live.as_ref(), normalised);
    if live.is_none() {
        // The cache holds only objects with the managed-by label: an object of this name that
        // someone else made is invisible to it, and applying would take it over (and, through
        // the owner reference, delete it with the ensemble). One read settles it; it is needed
        // only when the object is not in the cache, i.e. when it is about to be created.
        let found = api.get_opt(&name).await.map_err(|source| Error::Apply {
            kind: kind.clone(),
            name: name.clone(),
            source,
        })?;
        if let Some(found) = found
            && decide(&desired, owner_uid, Some(&found), false) == ApplyDecision::Foreign
        {
            decision = ApplyDecision::Foreign;
        }
    }
    match decision {
        ApplyDecision::UpToDate => Ok(None),
        ApplyDecision::Foreign => Err(Error::ForeignChild { kind, name }),
        ApplyDecision::Apply | ApplyDecision::Reverted => {
            let written = api
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&desired),
                )
                .await
                .map_err(|source| Error::Apply {
                    kind: kind.clone(),
                    name: name.clone(),
                    source,
                })?;
            ctx.metrics.api_write(&kind);
            // What the API server stores may differ in form from what was sent (a quantity
            // normalised): then this content can only be compared by its stamp, or every
            // reconcile would write it again.
            if let Some(path) = difference(&to_json(&written), &to_json(&desired)) {
                tracing::debug!(%kind, %name, %path, "stored in another form than applied");
                ctx.normalised.lock().expect("normalised lock").insert(key);
            }
            let what = format!("{kind} {name}");
            if decision == ApplyDecision::Reverted {
                tracing::warn!(%kind, %name, "changed by someone else; put back");
                Ok(Some(Applied::Reverted(what)))
            } else {
                tracing::info!(%kind, %name, "applied");
                Ok(Some(Applied::Written(what)))
            }
        }
    }
}

/// Deletes the child `name` in `namespace` that the spec no longer asks for (a NetworkPolicy
/// turned off), if the cache holds one this ensemble owns. A foreign object of that name is
/// not in the cache and is left alone. The delete is conditional on the cached uid, so an
/// object recreated meanwhile is not deleted in its place.
pub async fn delete_child<K: Child>(
    ctx: &Context,
    store: &Store<Cached<K>>,
    owner_uid: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Applied>, Error> {
    let Some(live) = store.get(&ObjectRef::new(name).within(namespace)) else {
        return Ok(None);
    };
    let owned = live
        .owner_references()
        .iter()
        .any(|owner| owner.uid == owner_uid);
    if !owned || live.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: live.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
        Err(source) => {
            return Err(Error::Apply {
                kind,
                name: name.to_owned(),
                source,
            });
        }
    }
    ctx.metrics.api_write(&kind);
    tracing::info!(%kind, %name, "deleted: the ensemble no longer asks for it");
    Ok(Some(Applied::Deleted(format!("{kind} {name}"))))
}

/// A child written by [`apply_child`] or [`delete_child`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Created, or changed because the spec changed ("Kind name").
    Written(String),
    /// Put back after someone else changed it ("Kind name").
    Reverted(String),
    /// Deleted because the spec no longer asks for it ("Kind name").
    Deleted(String),
}

fn stamp_of(object: &impl Resource) -> String {
    object
        .annotations()
        .get(APPLIED_HASH_ANNOTATION)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    fn config_map(data: &str, owner_uid: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("zk-config".into());
        cm.metadata.owner_references = Some(vec![OwnerReference {
            uid: owner_uid.into(),
            ..OwnerReference::default()
        }]);
        cm.data = Some([("zoo.cfg".to_string(), data.to_string())].into());
        stamp(&mut cm);
        cm
    }

    #[test]
    fn stamp_is_deterministic_and_content_sensitive() {
        let a = config_map("tickTime=2000", "u1");
        let b = config_map("tickTime=2000", "u1");
        let c = config_map("tickTime=3000", "u1");
        assert_eq!(a.annotations(), b.annotations());
        assert_ne!(a.annotations(), c.annotations());
        // Restamping an already stamped object gives the same stamp.
        let mut again = a.clone();
        stamp(&mut again);
        assert_eq!(again.annotations(), a.annotations());
    }

    #[test]
    fn decisions() {
        let desired = config_map("tickTime=2000", "u1");
        assert_eq!(decide(&desired, "u1", None, false), ApplyDecision::Apply);
        assert_eq!(
            decide(&desired, "u1", Some(&desired), false),
            ApplyDecision::UpToDate
        );
        let changed = config_map("tickTime=3000", "u1");
        assert_eq!(
            decide(&desired, "u1", Some(&changed), false),
            ApplyDecision::Apply
        );
        let foreign = config_map("tickTime=2000", "someone-else");
        assert_eq!(
            decide(&desired, "u1", Some(&foreign), false),
            ApplyDecision::Foreign
        );
        let mut unstamped = desired.clone();
        unstamped.annotations_mut().clear();
        assert_eq!(
            decide(&desired, "u1", Some(&unstamped), false),
            ApplyDecision::Apply
        );
        let mut terminating = desired.clone();
        terminating.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(
            decide(&desired, "u1", Some(&terminating), false),
            ApplyDecision::Apply
        );
        // Edited by hand, the stamp kept: put back. Fields added by others do not count.
        let mut edited = desired.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("zoo.cfg".into(), "tickTime=1".into());
        assert_eq!(
            decide(&desired, "u1", Some(&edited), false),
            ApplyDecision::Reverted
        );
        let mut added = desired.clone();
        added
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        added.metadata.resource_version = Some("42".into());
        assert_eq!(
            decide(&desired, "u1", Some(&added), false),
            ApplyDecision::UpToDate
        );
        // Content the API server stores in another form: only the stamp is compared.
        assert_eq!(
            decide(&desired, "u1", Some(&edited), true),
            ApplyDecision::UpToDate
        );
    }
}
