//! Fencing: a replica disrupts a server only while it provably holds the leader-election Lease.
//!
//! The lease manager's "leading" flag is not enough on its own: a replica cut off from the API
//! server cannot renew, yet nothing tells it so until a renewal fails, and meanwhile a standby
//! may take the Lease over. Two replicas acting at once could each take one server, together
//! more than the ensemble tolerates; and reconfiguration goes to ZooKeeper, not the API server,
//! so a replica partitioned from the API server could still change the voters. So before every
//! destructive step the Lease is read again: it must name this replica, and its last renewal
//! must be recent enough that no other replica may have taken it over (its duration, less a
//! margin for clock skew between the replicas).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

/// The margin kept below the Lease's duration, for clock skew between replicas.
pub const SKEW_MARGIN: Duration = Duration::from_secs(5);

/// Whether this replica may act.
#[derive(Clone)]
pub enum Fence {
    /// No leader election (one replica by configuration): always free to act.
    Unfenced,
    /// Only while holding a Lease.
    Lease(Box<HeldLease>),
}

/// The Lease `name`, held as `identity`.
#[derive(Clone)]
pub struct HeldLease {
    api: Api<Lease>,
    name: String,
    identity: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("reading the leader-election Lease {name}: {source}")]
    Read {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("this replica ({identity}) no longer holds the leader-election Lease {name}: {why}")]
    NotHolder {
        name: String,
        identity: String,
        why: String,
    },
}

impl Fence {
    pub fn lease(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self::Lease(Box::new(HeldLease {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
        }))
    }

    /// Ok when this replica holds the Lease now (see the module documentation).
    pub async fn check(&self) -> Result<(), FenceError> {
        let Self::Lease(held) = self else {
            return Ok(());
        };
        let HeldLease {
            api,
            name,
            identity,
        } = held.as_ref();
        let lease = api.get(name).await.map_err(|source| FenceError::Read {
            name: name.clone(),
            source,
        })?;
        holds(&lease, identity, Timestamp::now()).map_err(|why| FenceError::NotHolder {
            name: name.clone(),
            identity: identity.clone(),
            why,
        })
    }
}

/// Whether `lease` is held by `identity` at `now`, with the renewal recent enough; Err says why
/// not.
pub fn holds(lease: &Lease, identity: &str, now: Timestamp) -> Result<(), String> {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder != identity {
        return Err(format!("it is held by {holder:?}"));
    }
    let (Some(renewed), Some(duration)) = (spec.renew_time, spec.lease_duration_seconds) else {
        return Err("it has no renewal time or duration".into());
    };
    let duration = Duration::from_secs(u64::try_from(duration).unwrap_or(0));
    let valid_for = duration.saturating_sub(SKEW_MARGIN);
    let age = now.duration_since(renewed.0);
    match Duration::try_from(age) {
        Ok(age) if age < valid_for => Ok(()),
        // A renewal in the future (clock skew) is as good as a fresh one.
        Err(_) => Ok(()),
        Ok(age) => Err(format!(
            "its last renewal was {} s ago, and it is only safe for {} s",
            age.as_secs(),
            valid_for.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed: Timestamp, duration: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(duration),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn only_a_fresh_lease_of_our_own_lets_us_act() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let ago = |s: i64| now - jiff::SignedDuration::from_secs(s);
        assert_eq!(holds(&lease("me", ago(3), 15), "me", now), Ok(()));
        // Held by another replica.
        assert!(holds(&lease("other", ago(0), 15), "me", now).is_err());
        // Ours, but too old: a standby may take it over once 15 s have passed, so past
        // 15 - 5 s we stop.
        let stale = holds(&lease("me", ago(11), 15), "me", now).unwrap_err();
        assert!(stale.contains("11 s ago"), "{stale}");
        // Renewed "in the future" by a clock ahead of ours.
        assert_eq!(
            holds(
                &lease("me", now + jiff::SignedDuration::from_secs(2), 15),
                "me",
                now
            ),
            Ok(())
        );
        // No renewal at all.
        let mut empty = lease("me", now, 15);
        empty.spec.as_mut().unwrap().renew_time = None;
        assert!(holds(&empty, "me", now).is_err());
    }
}
