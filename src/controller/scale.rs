//! Scaling: moving the committed membership to servers 1..=`spec.replicas`, one voter at a
//! time, by dynamic reconfiguration.
//!
//! The decision is [`crate::quorum::membership::next_step`]'s (called by [`crate::decide`]);
//! this module holds the pure pieces around it. The StatefulSet's size and the bootstrap membership are not steps taken
//! here but a pure function of the spec, the committed voters and the StatefulSet's size
//! ([`crate::build::Topology::new`]), which the build step applies: the StatefulSet grows as
//! soon as `spec.replicas` does (the new servers start with a membership in which they are
//! observers, so that they cannot vote, and sync from the leader as non-voting followers), and
//! shrinks only once the committed membership no longer lists the servers it would stop. The
//! committed voters come from `status.membership`, which is written only from what ZooKeeper
//! reported, so nothing here depends on memory an operator restart would lose.
//!
//! The committed membership is read (a ZooKeeper session as the superuser) only while it may
//! differ from the spec: when it is unknown, when the voters are not 1..=`spec.replicas`, or when
//! the StatefulSet's size is not `spec.replicas`. A steady ensemble costs no session.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::Stores;
use crate::api::{MembershipStatus, ZooKeeperEnsemble};
use crate::build::names;
use crate::quorum::Myid;
use crate::quorum::membership::{Membership, ScaleStep};

/// The committed voters recorded in the status, if any.
pub fn recorded_voters(membership: Option<&MembershipStatus>) -> Option<BTreeSet<Myid>> {
    let voters: BTreeSet<Myid> = membership?
        .voters
        .iter()
        .filter_map(|&m| Myid::try_from(m).ok())
        .collect();
    (!voters.is_empty()).then_some(voters)
}

/// Whether the ensemble's live ConfigMap says it has formed.
pub fn config_map_says_formed(stores: &Stores, ensemble: &ZooKeeperEnsemble) -> bool {
    let namespace = ensemble.namespace().unwrap_or_default();
    stores
        .config_maps
        .get(&ObjectRef::new(&names::config_map(ensemble)).within(&namespace))
        .and_then(|config_map| config_map.facts.get(names::FORMED_KEY).cloned())
        .is_some_and(|formed| formed == "true")
}

/// The replicas of the ensemble's StatefulSet in `stores` (None: there is none yet).
pub fn stateful_set_replicas(stores: &Stores, ensemble: &ZooKeeperEnsemble) -> Option<u32> {
    u32::try_from(stores.stateful_set(ensemble)?.spec.as_ref()?.replicas?).ok()
}

/// `status.membership` for a committed membership and the step taken.
pub fn membership_status(committed: &Membership, step: &ScaleStep) -> MembershipStatus {
    MembershipStatus {
        voters: committed.voters().into_iter().map(i32::from).collect(),
        version: format!("0x{}", committed.version_hex()),
        scaling: match step {
            ScaleStep::Steady => None,
            other => Some(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::myid::ids;

    #[test]
    fn status_names_the_voters_the_version_and_the_step() {
        let committed =
            Membership::parse("server.1=a:1:2;3\nserver.2=b:1:2;3\nversion=100000003\n").unwrap();
        assert_eq!(
            membership_status(&committed, &ScaleStep::Steady),
            MembershipStatus {
                voters: vec![1, 2],
                version: "0x100000003".into(),
                scaling: None,
            }
        );
        let refused = ScaleStep::Refuse("no quorum".into());
        assert_eq!(
            membership_status(&committed, &refused).scaling.as_deref(),
            Some("refused: no quorum")
        );
        assert_eq!(
            recorded_voters(Some(&membership_status(&committed, &refused))),
            Some(ids(&[1, 2]))
        );
        assert_eq!(recorded_voters(None), None);
    }
}
