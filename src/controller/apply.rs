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

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::{Context, Error};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "zooherd";

/// Annotation holding the hash of the content the operator last applied.
pub const APPLIED_HASH_ANNOTATION: &str = "zooherd.dev/applied-hash";

/// Stamps `object` with the hash of its content (the stamp itself excluded).
pub fn stamp<K: Resource + Serialize>(object: &mut K) {
    object.annotations_mut().remove(APPLIED_HASH_ANNOTATION);
    let content = serde_json::to_vec(object).expect("Kubernetes objects serialize to JSON");
    let hash = hex(&Sha256::digest(&content)[..16]);
    object
        .annotations_mut()
        .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
}

pub fn decide<K: Resource>(desired: &K, owner_uid: &str, live: Option<&K>) -> ApplyDecision {
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
    if live.meta().deletion_timestamp.is_none()
        && hash(live).is_some()
        && hash(live) == hash(desired)
    {
        ApplyDecision::UpToDate
    } else {
        ApplyDecision::Apply
    }
}

/// Applies `desired` unless the cached live object makes that unnecessary. Returns
/// "Kind name" when a write was sent.
pub async fn apply_child<K>(
    ctx: &Context,
    store: &Store<K>,
    owner_uid: &str,
    mut desired: K,
) -> Result<Option<String>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    stamp(&mut desired);
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let live = store.get(&ObjectRef::new(&name).within(&namespace));
    let kind = K::kind(&()).into_owned();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut decision = decide(&desired, owner_uid, live.as_deref());
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
            && decide(&desired, owner_uid, Some(&found)) == ApplyDecision::Foreign
        {
            decision = ApplyDecision::Foreign;
        }
    }
    match decision {
        ApplyDecision::UpToDate => Ok(None),
        ApplyDecision::Foreign => Err(Error::ForeignChild { kind, name }),
        ApplyDecision::Apply => {
            api.patch(
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
            tracing::info!(%kind, %name, "applied");
            Ok(Some(format!("{kind} {name}")))
        }
    }
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
        assert_eq!(decide(&desired, "u1", None), ApplyDecision::Apply);
        assert_eq!(
            decide(&desired, "u1", Some(&desired)),
            ApplyDecision::UpToDate
        );
        let changed = config_map("tickTime=3000", "u1");
        assert_eq!(decide(&desired, "u1", Some(&changed)), ApplyDecision::Apply);
        let foreign = config_map("tickTime=2000", "someone-else");
        assert_eq!(
            decide(&desired, "u1", Some(&foreign)),
            ApplyDecision::Foreign
        );
        let mut unstamped = desired.clone();
        unstamped.annotations_mut().clear();
        assert_eq!(
            decide(&desired, "u1", Some(&unstamped)),
            ApplyDecision::Apply
        );
        let mut terminating = desired.clone();
        terminating.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(
            decide(&desired, "u1", Some(&terminating)),
            ApplyDecision::Apply
        );
    }
}
