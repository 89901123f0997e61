//! The Secrets the operator keeps for each ensemble (its superuser's, its TLS certificates):
//! created once by the operator, never rewritten (the running servers depend on what they
//! hold), owned by the ensemble, and read again only every [`SecretReads::RECHECK`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::{Context, Error};
use crate::api::ZooKeeperEnsemble;

/// What the operator last read from one kind of Secret of each ensemble, by ensemble uid. The
/// operator does not watch Secrets (it would cache every Secret of the cluster); it reads an
/// ensemble's Secret again once [`SecretReads::RECHECK`] has passed, so that a deleted one is
/// noticed, without a read every round.
#[derive(Debug)]
pub struct SecretReads<V>(Mutex<HashMap<String, (V, std::time::Instant)>>);

impl<V: Clone> SecretReads<V> {
    pub const RECHECK: Duration = Duration::from_secs(300);

    /// The value read for the ensemble `uid` less than [`Self::RECHECK`] ago.
    pub fn fresh(&self, uid: &str) -> Option<V> {
        self.0
            .lock()
            .expect("secret reads lock")
            .get(uid)
            .filter(|(_, read)| read.elapsed() < Self::RECHECK)
            .map(|(value, _)| value.clone())
    }

    /// The value last read for the ensemble `uid`, however long ago.
    pub fn last(&self, uid: &str) -> Option<V> {
        self.0
            .lock()
            .expect("secret reads lock")
            .get(uid)
            .map(|(value, _)| value.clone())
    }

    /// Forgets what was read for the ensemble `uid` (deleted).
    pub fn forget(&self, uid: &str) {
        self.0.lock().expect("secret reads lock").remove(uid);
    }

    pub fn insert(&self, uid: &str, value: V) {
        self.0
            .lock()
            .expect("secret reads lock")
            .insert(uid.to_owned(), (value, std::time::Instant::now()));
    }
}

impl<V> Default for SecretReads<V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

/// The ensemble's Secret `name`, created from `new()` if it does not exist (`new` may refuse,
/// with the error to report); one created meanwhile by another reconcile is used as it is. A
/// Secret of that name the ensemble does not own is refused. `api_error` wraps what the API
/// server answered.
pub async fn get_or_create(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    name: &str,
    new: impl FnOnce() -> Result<Secret, Error>,
    api_error: impl Fn(kube::Error) -> Error,
) -> Result<Secret, Error> {
    let api: Api<Secret> = Api::namespaced(
        ctx.client.clone(),
        &ensemble.namespace().unwrap_or_default(),
    );
    let existing = match api.get_opt(name).await.map_err(&api_error)? {
        Some(existing) => existing,
        None => match api.create(&PostParams::default(), &new()?).await {
            Ok(created) => {
                ctx.metrics.api_write("Secret");
                created
            }
            // Created meanwhile (by another reconcile): use that one.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                api.get(name).await.map_err(&api_error)?
            }
            Err(source) => return Err(api_error(source)),
        },
    };
    let uid = ensemble.uid().unwrap_or_default();
    if !existing
        .owner_references()
        .iter()
        .any(|owner| owner.uid == uid)
    {
        return Err(Error::ForeignChild {
            kind: "Secret".into(),
            name: name.to_owned(),
        });
    }
    Ok(existing)
}

/// An ensemble `zk` in namespace `data`, as read from the API server, for the tests of the
/// Secrets' contents.
#[cfg(test)]
pub fn test_ensemble() -> ZooKeeperEnsemble {
    let mut ensemble = ZooKeeperEnsemble::new("zk", serde_json::from_str("{}").unwrap());
    ensemble.metadata.namespace = Some("data".into());
    ensemble.metadata.uid = Some("uid-1".into());
    ensemble
}

#[cfg(test)]
mod tests {
    use super::SecretReads;

    #[test]
    fn what_was_read_stays_until_the_ensemble_is_forgotten() {
        let reads = SecretReads::<u32>::default();
        reads.insert("uid-1", 1);
        reads.insert("uid-2", 2);
        assert_eq!(reads.fresh("uid-1"), Some(1));
        reads.forget("uid-1");
        assert_eq!(reads.last("uid-1"), None);
        assert_eq!(reads.last("uid-2"), Some(2));
    }
}
