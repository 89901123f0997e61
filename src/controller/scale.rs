//! Scaling: moving the committed membership to servers 1..=`spec.replicas`, one voter at a
//! time, by dynamic reconfiguration.
//!
//! The decision is [`crate::quorum::membership::next_step`]'s (called by [`crate::decide`]);
//! this module holds the pure pieces around it. The StatefulSet's size and the bootstrap membership are not steps taken
//! here but a pure function of the spec and the committed voters ([`topology`]), which the build
//! step applies: the StatefulSet grows as soon as `spec.replicas` does (the new servers start
//! with the committed voters plus themselves and sync as non-voting followers), and shrinks only
//! once the committed membership no longer lists the servers it would stop. The committed
//! voters come from `status.membership`, which is written only from what ZooKeeper reported, so
//! nothing here depends on memory an operator restart would lose.
//!
//! The committed membership is read (a ZooKeeper session as the superuser) only while it may
//! differ from the spec: when it is unknown, when the voters are not 1..=`spec.replicas`, or when
//! the StatefulSet's size is not `spec.replicas`. A steady ensemble costs no session.

use std::collections::BTreeSet;

use crate::api::MembershipStatus;
use crate::build::Topology;
use crate::quorum::membership::{Membership, ScaleStep};

/// The committed voters recorded in the status, if any.
pub fn recorded_voters(membership: Option<&MembershipStatus>) -> Option<BTreeSet<u8>> {
    let voters: BTreeSet<u8> = membership?
        .voters
        .iter()
        .filter_map(|&m| u8::try_from(m).ok())
        .filter(|&m| m > 0)
        .collect();
    (!voters.is_empty()).then_some(voters)
}

/// The StatefulSet's size and the bootstrap membership for `replicas` voters wanted and the
/// committed `voters` (None: not known yet, as for a new ensemble).
///
/// Servers: `replicas`, or more while voters beyond it are still committed. Bootstrap
/// membership: the committed voters and every server up to `replicas`.
pub fn topology(replicas: u32, voters: Option<&BTreeSet<u8>>) -> Topology {
    let wanted = (1..=replicas).filter_map(|m| u8::try_from(m).ok());
    let Some(voters) = voters else {
        return Topology::initial(replicas);
    };
    let highest = voters.last().map_or(0, |&m| u32::from(m));
    Topology {
        servers: replicas.max(highest),
        members: voters.iter().copied().chain(wanted).collect(),
        voters: u32::try_from(voters.len()).unwrap_or(u32::MAX),
    }
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

    fn set(myids: &[u8]) -> BTreeSet<u8> {
        myids.iter().copied().collect()
    }

    /// replicas, committed voters, servers, bootstrap members.
    type Case = (u32, Option<&'static [u8]>, u32, &'static [u8]);

    #[test]
    fn the_statefulset_follows_the_committed_voters() {
        let cases: [Case; 6] = [
            (3, None, 3, &[1, 2, 3]),
            (3, Some(&[1, 2, 3]), 3, &[1, 2, 3]),
            // Up: every new server at once, each in the bootstrap membership.
            (5, Some(&[1, 2, 3]), 5, &[1, 2, 3, 4, 5]),
            (5, Some(&[1, 2, 3, 4]), 5, &[1, 2, 3, 4, 5]),
            // Down: the servers stay until the committed membership drops them.
            (3, Some(&[1, 2, 3, 4, 5]), 5, &[1, 2, 3, 4, 5]),
            (1, Some(&[1, 2]), 2, &[1, 2]),
        ];
        for (replicas, voters, servers, members) in cases {
            let voters = voters.map(set);
            let topology = topology(replicas, voters.as_ref());
            assert_eq!(topology.servers, servers, "{replicas} {voters:?}");
            assert_eq!(topology.members, set(members), "{replicas} {voters:?}");
        }
    }

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
            Some(set(&[1, 2]))
        );
        assert_eq!(recorded_voters(None), None);
    }
}
