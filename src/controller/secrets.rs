//! The Secrets the operator keeps for each ensemble (its superuser's, its TLS certificates):
//! created once by the operator, never rewritten (the running servers depend on what they
//! hold), owned by the ensemble, and read again only every [`recheck_after`].

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::{Context, Error};
use crate::api::ZooKeeperEnsemble;

/// The shortest time after which an ensemble's Secrets are read again.
pub const RECHECK: Duration = Duration::from_secs(300);

/// How long after a read the Secrets of the ensemble `uid` are read again: [`RECHECK`] and up
/// to half as much again, the same for an ensemble every time (from its uid). Ensembles
/// created together were otherwise all read again together, every five minutes: 2,000 GETs in
/// one minute with 1,000 ensembles (`cargo bench --bench scale`).
pub fn recheck_after(uid: &str) -> Duration {
    let mut hasher = DefaultHasher::new();
    uid.hash(&mut hasher);
    let spread = RECHECK.as_millis() as u64 / 2;
    RECHECK + Duration::from_millis(hasher.finish() % spread)
}

/// What the operator last read from one kind of Secret of each ensemble, by ensemble uid. The
/// operator does not watch Secrets (it would cache every Secret of the cluster); it reads an
/// ensemble's Secret again once [`recheck_after`] has passed, so that a deleted one is
/// noticed, without a read every round.
#[derive(Debug)]
pub struct SecretReads<V>(Mutex<HashMap<String, (V, std::time::Instant)>>);

impl<V: Clone> SecretReads<V> {
    /// The value read for the ensemble `uid` less than [`recheck_after`] ago.
    pub fn fresh(&self, uid: &str) -> Option<V> {
        self.0
            .lock()
            .expect("secret reads lock")
            .get(uid)
            .filter(|(_, read)| read.elapsed() < recheck_after(uid))
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

/// The Secret `name` in the ensemble's namespace, if it exists: one of the user's, which the
/// operator only reads.
pub async fn user_secret(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    name: &str,
) -> Result<Option<Secret>, kube::Error> {
    let namespace = ensemble.namespace().unwrap_or_default();
    Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(name)
        .await
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
    use super::{RECHECK, SecretReads, recheck_after};

    #[test]
    fn ensembles_are_read_again_at_times_of_their_own() {
        let after: Vec<_> = (0..1000)
            .map(|i| recheck_after(&format!("uid-{i}")))
            .collect();
        assert!(
            after
                .iter()
                .all(|&a| a >= RECHECK && a < RECHECK + RECHECK / 2)
        );
        assert_eq!(recheck_after("uid-7"), after[7], "the same for an ensemble");
        // Spread over the whole half: each of its ten slices holds some of them.
        let mut slices = [0; 10];
        for a in &after {
            slices[((*a - RECHECK).as_secs_f64() / (RECHECK / 2).as_secs_f64() * 10.0) as usize] +=
                1;
        }
        assert!(slices.iter().all(|&n| n > 50), "{slices:?}");
    }

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
