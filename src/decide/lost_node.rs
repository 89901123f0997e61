//! Rebuilding a member whose node is lost: when, and the next step.
//!
//! A node that stops reporting leaves its pods Running or Terminating for ever: the StatefulSet
//! never replaces a pod it cannot confirm is gone, and a pod whose volume lives only on that
//! node (a local volume) cannot start anywhere else until its claim is deleted. Deleting the
//! claim of a voter is the "voter that lost its data" hazard: a voter that comes back empty
//! may help elect a leader that lacks acknowledged writes (ZooKeeper's administrator's guide
//! asks for a server's data to be kept, and its reconfiguration guide for a member to be
//! removed before it is rebuilt). So the operator acts only once the loss is confirmed (see
//! [`confirmation`]), never while the server answers, and in this order, one step a round:
//! 1. while the member is a voter and its volume lives only on the lost node, remove it from the
//!    voters by reconfiguration, which needs the other voters to keep a quorum serving (the
//!    same check as every voter change, [`membership::quorum_refusal`]);
//! 2. once it is no longer a voter, delete its claims and evict its pod (grace period 0: its
//!    node cannot run a graceful shutdown); the StatefulSet recreates both, and the new pod
//!    starts on another node with empty volumes, as a joining server (the ConfigMap lists it
//!    as an observer since step 1, and the agent refuses to start a voter on an empty volume);
//! 3. the scale adds it back as a voter once it serves in sync ([`membership::next_step`]).
//!
//! A member whose volume can follow it (network or zonal storage) keeps its data and its vote:
//! only its pod is evicted, and it comes back elsewhere. Every step is decided again from what
//! each round observes (the committed membership, the pod, its claims), so an operator that
//! restarts halfway goes on from where the last one stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use super::{Disruption, ScaleView};
use crate::api::annotations::MemberRestart;
use crate::api::{LostNodeReplacement, LostNodeSpec};
use crate::quorum::Myid;
use crate::quorum::membership::{self, ScaleStep};

/// What is known of a node that is not Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// The Node object no longer exists (the API server said so).
    Deleted,
    /// Tainted `node.kubernetes.io/out-of-service`.
    OutOfService,
    /// NotReady (described, see [`super::node::not_ready`]), since when if known.
    NotReady {
        why: String,
        since: Option<Timestamp>,
    },
}

/// One of the member's volume claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub name: String,
    /// Deleted only while it is this very claim, never one the StatefulSet made since.
    pub uid: Option<String>,
    /// Its volume can only be used on the lost node.
    pub pinned: bool,
    /// Already being deleted.
    pub terminating: bool,
}

/// A server whose pod is on a node that is not Ready, or waits unscheduled for a volume that
/// lives only on such a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLoss {
    pub pod: String,
    pub uid: Option<String>,
    /// The pod is bound to the node (else it waits, unscheduled, for its volume).
    pub on_node: bool,
    pub node: String,
    pub state: NodeState,
    pub claims: Vec<Claim>,
}

/// `spec.lostNode`, as the decision reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// With `replacement: Automatic`: how long a node must have been NotReady.
    pub automatic_after: Option<Duration>,
}

impl From<&LostNodeSpec> for Policy {
    fn from(spec: &LostNodeSpec) -> Self {
        let after = Duration::from_secs(u64::try_from(spec.after_seconds).unwrap_or(0));
        Self {
            automatic_after: (spec.replacement == LostNodeReplacement::Automatic).then_some(after),
        }
    }
}

/// The next step of rebuilding a member, for the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    pub disruption: Disruption,
    pub scale: Option<ScaleStep>,
    /// What the status says: which member, why, and where the rebuild stands.
    pub status: String,
}

/// How the loss of `loss.node` is confirmed, or None while it is not: the Node object deleted,
/// the out-of-service taint, the administrator's `zooherd.dev/replaceMember` naming this very
/// pod (`approval`), or, with `replacement: Automatic`, NotReady for long enough.
pub fn confirmation(
    loss: &NodeLoss,
    policy: &Policy,
    approval: Option<&str>,
    now: Timestamp,
) -> Option<String> {
    match &loss.state {
        NodeState::Deleted => return Some("its Node object was deleted".into()),
        NodeState::OutOfService => {
            return Some("it is tainted node.kubernetes.io/out-of-service".into());
        }
        NodeState::NotReady { .. } => {}
    }
    let approved = approval
        .and_then(MemberRestart::parse)
        .is_some_and(|a| a.pod == loss.pod && Some(&a.uid) == loss.uid.as_ref());
    if approved {
        return Some("zooherd.dev/replaceMember confirms it".into());
    }
    let NodeState::NotReady {
        since: Some(since), ..
    } = &loss.state
    else {
        return None;
    };
    let after = policy.automatic_after?;
    let down = Duration::try_from(now.duration_since(*since)).unwrap_or_default();
    (down >= after).then(|| {
        format!(
            "it has been NotReady since {since} (spec.lostNode.replacement Automatic, after {} s)",
            after.as_secs()
        )
    })
}

/// The next step of rebuilding the first member (by myid) whose node's loss is confirmed and
/// whose server does not answer; None when there is none, or when the committed membership
/// is needed and could not be read (then the other rules go on: a restart elsewhere may be
/// what brings the quorum back).
pub fn step(
    losses: &BTreeMap<Myid, NodeLoss>,
    policy: &Policy,
    approval: Option<&str>,
    view: &ScaleView,
    now: Timestamp,
) -> Option<Replacement> {
    let (&myid, loss, confirmed) = losses.iter().find_map(|(myid, loss)| {
        // A server that answers is not on a lost node, whatever the node's object says.
        let answers = view.states.get(myid).is_some_and(|s| s.is_serving());
        let confirmed = confirmation(loss, policy, approval, now).filter(|_| !answers)?;
        Some((myid, loss, confirmed))
    })?;
    let what = format!(
        "pod {} (server {myid}) is on lost node {}: {confirmed}",
        loss.pod, loss.node
    );
    let replace = |claims: Vec<Claim>, status: String| Replacement {
        disruption: Disruption::Replace {
            pod: loss.pod.clone(),
            uid: loss.uid.clone(),
            claims,
            reason: status.clone(),
        },
        scale: None,
        status,
    };
    if !loss.claims.iter().any(|c| c.pinned) {
        // Its volumes can be used elsewhere: the member keeps its data and its vote.
        return loss.on_node.then(|| {
            replace(
                Vec::new(),
                format!("{what}; its volumes can follow it, so its pod is evicted to start on another node with its data"),
            )
        });
    }
    let Some(Ok(committed)) = &view.committed else {
        return None;
    };
    let voters = committed.voters();
    if voters.contains(&myid) {
        let mut new = voters.clone();
        new.remove(&myid);
        let change = format!(
            "removing voter {myid}, whose volume lives only on lost node {}",
            loss.node
        );
        return Some(
            match membership::quorum_refusal(&change, &voters, &new, &view.states) {
                Some(why) => Replacement {
                    disruption: Disruption::Nothing,
                    status: format!("{what}; step 1 of 3 waits: {why}"),
                    scale: Some(ScaleStep::Refuse(why)),
                },
                None => Replacement {
                    disruption: Disruption::RemoveVoter(myid),
                    scale: Some(ScaleStep::RemoveVoter(myid)),
                    status: format!(
                        "{what}; step 1 of 3: removing it from the voters, as its volume lives only there"
                    ),
                },
            },
        );
    }
    let claims: Vec<Claim> = loss
        .claims
        .iter()
        .filter(|c| !c.terminating)
        .cloned()
        .collect();
    let listed = loss
        .claims
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if claims.is_empty() && !loss.on_node {
        return Some(Replacement {
            disruption: Disruption::Nothing,
            scale: None,
            status: format!(
                "{what}; step 2 of 3: waiting for claims {listed} to be deleted, after which the StatefulSet makes new ones"
            ),
        });
    }
    Some(replace(
        claims,
        format!(
            "{what}; step 2 of 3: it is no longer a voter, so its pod and claims ({listed}) are deleted to start again on another node, as a joining server"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MemberState::{self, Follower as F, Leader as L, Unreachable as U};
    use crate::quorum::membership::Membership;
    use crate::quorum::myid::id;

    const NOW: i64 = 1_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    fn loss(state: NodeState, pinned: bool) -> NodeLoss {
        NodeLoss {
            pod: "zk-2".into(),
            uid: Some("uid-2".into()),
            on_node: true,
            node: "n3".into(),
            state,
            claims: vec![Claim {
                name: "data-zk-2".into(),
                uid: Some("uid-data".into()),
                pinned,
                terminating: false,
            }],
        }
    }

    fn not_ready(for_seconds: i64) -> NodeState {
        NodeState::NotReady {
            why: "node n3, which is NotReady".into(),
            since: Some(Timestamp::from_second(NOW - for_seconds).unwrap()),
        }
    }

    fn view(voters: &[u8], states: &[(u8, MemberState)]) -> ScaleView {
        let lines: String = voters
            .iter()
            .map(|m| format!("server.{m}=zk-{}.zk:2888:3888:participant;2181\n", m - 1))
            .collect();
        let committed = Membership::parse(&format!("{lines}version=100000000\n")).unwrap();
        ScaleView {
            desired: 3,
            committed: Some(Ok(committed)),
            states: states.iter().map(|&(m, s)| (id(m), s)).collect(),
            ..ScaleView::default()
        }
    }

    fn step_for(
        loss: NodeLoss,
        policy: &Policy,
        approval: Option<&str>,
        view: &ScaleView,
    ) -> Option<Replacement> {
        step(
            &BTreeMap::from([(id(3), loss)]),
            policy,
            approval,
            view,
            now(),
        )
    }

    #[test]
    fn an_unconfirmed_loss_changes_nothing() {
        let view = view(&[1, 2, 3], &[(1, L), (2, F), (3, U)]);
        let loss = loss(not_ready(3_600), true);
        assert_eq!(
            step_for(loss.clone(), &Policy::default(), None, &view),
            None
        );
        // An approval for another pod, or for an earlier pod of the same name, is not one.
        for approval in ["zk-1/uid-1", "zk-2/uid-old", "zk-2", "garbage"] {
            assert_eq!(
                step_for(loss.clone(), &Policy::default(), Some(approval), &view),
                None,
                "{approval}"
            );
        }
        // Automatic, but not NotReady for long enough yet.
        let automatic = Policy {
            automatic_after: Some(Duration::from_secs(300)),
        };
        assert_eq!(
            step_for(self::loss(not_ready(299), true), &automatic, None, &view),
            None
        );
    }

    #[test]
    fn every_confirmation_removes_a_pinned_voter_first() {
        let view = view(&[1, 2, 3], &[(1, L), (2, F), (3, U)]);
        let automatic = Policy {
            automatic_after: Some(Duration::from_secs(300)),
        };
        let cases = [
            (
                loss(NodeState::Deleted, true),
                Policy::default(),
                None,
                "its Node object was deleted",
            ),
            (
                loss(NodeState::OutOfService, true),
                Policy::default(),
                None,
                "out-of-service",
            ),
            (
                loss(not_ready(10), true),
                Policy::default(),
                Some("zk-2/uid-2"),
                "zooherd.dev/replaceMember confirms it",
            ),
            (
                loss(not_ready(300), true),
                automatic,
                None,
                "Automatic, after 300 s",
            ),
        ];
        for (loss, policy, approval, why) in cases {
            let step = step_for(loss, &policy, approval, &view).expect("a step");
            assert_eq!(step.disruption, Disruption::RemoveVoter(id(3)), "{why}");
            assert_eq!(step.scale, Some(ScaleStep::RemoveVoter(id(3))));
            assert!(step.status.contains(why), "{why}: {}", step.status);
            assert!(step.status.contains("step 1 of 3"), "{}", step.status);
        }
    }

    #[test]
    fn a_voter_is_not_removed_at_the_cost_of_the_quorum() {
        // Voters 1 and 3 down: without 3, voters 1 and 2 are not a serving quorum of 2.
        let view = view(&[1, 2, 3], &[(1, U), (2, L), (3, U)]);
        let step = step_for(
            loss(NodeState::Deleted, true),
            &Policy::default(),
            None,
            &view,
        )
        .expect("a step");
        assert_eq!(step.disruption, Disruption::Nothing);
        assert!(matches!(step.scale, Some(ScaleStep::Refuse(_))), "{step:?}");
        assert!(step.status.contains("step 1 of 3 waits"), "{}", step.status);
    }

    #[test]
    fn nothing_is_deleted_without_the_committed_membership() {
        let mut view = view(&[1, 2, 3], &[(1, L), (2, F), (3, U)]);
        for committed in [None, Some(Err("connection refused".to_owned()))] {
            view.committed = committed;
            assert_eq!(
                step_for(
                    loss(NodeState::Deleted, true),
                    &Policy::default(),
                    None,
                    &view
                ),
                None
            );
        }
    }

    #[test]
    fn once_no_longer_a_voter_its_pod_and_claims_are_deleted() {
        let view = view(&[1, 2], &[(1, L), (2, F)]);
        let mut loss = loss(NodeState::OutOfService, true);
        loss.claims.push(Claim {
            name: "log-zk-2".into(),
            uid: None,
            pinned: false,
            terminating: false,
        });
        let step = step_for(loss.clone(), &Policy::default(), None, &view).expect("a step");
        let Disruption::Replace {
            pod, uid, claims, ..
        } = &step.disruption
        else {
            panic!("{step:?}");
        };
        assert_eq!((pod.as_str(), uid.as_deref()), ("zk-2", Some("uid-2")));
        // Every claim goes: a log volume without the data it belongs to is of no use.
        let names: Vec<&str> = claims.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["data-zk-2", "log-zk-2"]);
        assert!(step.status.contains("step 2 of 3"), "{}", step.status);

        // The claims already being deleted and the pod off the node: wait for them.
        for claim in &mut loss.claims {
            claim.terminating = true;
        }
        let mut unscheduled = loss.clone();
        unscheduled.on_node = false;
        let step = step_for(unscheduled, &Policy::default(), None, &view).expect("a step");
        assert_eq!(step.disruption, Disruption::Nothing);
        assert!(
            step.status.contains("waiting for claims"),
            "{}",
            step.status
        );
        // ... but a pod still on the node is evicted (without deleting a claim twice).
        let step = step_for(loss, &Policy::default(), None, &view).expect("a step");
        assert!(
            matches!(&step.disruption, Disruption::Replace { claims, .. } if claims.is_empty()),
            "{step:?}"
        );
    }

    #[test]
    fn a_member_whose_volume_can_follow_it_keeps_its_data_and_vote() {
        let view = view(&[1, 2, 3], &[(1, L), (2, F), (3, U)]);
        let step = step_for(
            loss(NodeState::Deleted, false),
            &Policy::default(),
            None,
            &view,
        )
        .expect("a step");
        assert!(
            matches!(&step.disruption, Disruption::Replace { claims, .. } if claims.is_empty()),
            "{step:?}"
        );
        // Without the committed membership too: nothing of its vote changes.
        let mut unread = view.clone();
        unread.committed = None;
        assert!(
            step_for(
                loss(NodeState::Deleted, false),
                &Policy::default(),
                None,
                &unread
            )
            .is_some()
        );
        // Its pod already gone from the node: nothing to do.
        let mut rescheduling = loss(NodeState::Deleted, false);
        rescheduling.on_node = false;
        assert_eq!(
            step_for(rescheduling, &Policy::default(), None, &view),
            None
        );
    }

    #[test]
    fn a_server_that_answers_is_never_rebuilt() {
        let view = view(&[1, 2, 3], &[(1, L), (2, F), (3, F)]);
        assert_eq!(
            step_for(
                loss(NodeState::Deleted, true),
                &Policy::default(),
                None,
                &view
            ),
            None
        );
    }
}
