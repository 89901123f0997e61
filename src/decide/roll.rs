//! Rolling a changed pod template through the ensemble, one server at a time.
//!
//! The StatefulSet uses the OnDelete strategy: the StatefulSet controller never replaces a
//! server by itself, because it knows nothing of quorums or leaders. The operator decides
//! instead, with the pure [`next_step`]: a pod whose revision is not the StatefulSet's update
//! revision is evicted (and recreated at the new revision) only when every voter serves (as
//! answered this round, not as the status holds it), every member's pod is Ready, the leader
//! counts every voting follower as synced (`mntr`'s `synced_followers` less its
//! `synced_non_voting_followers`: caught up with the leader, not merely started), and no other
//! pod is on its way; followers go first, highest myid first, and the leader last. The
//! decision reads only what is observed, so a roll interrupted by an operator restart resumes
//! where it stood.
//!
//! **The leader's step hands the lead over instead of forcing an election** when the ensemble
//! has at least [`HAND_OVER_MIN_VOTERS`] voters ([`RollStep::HandOver`]): the leader is removed
//! from the voters by reconfiguration. When ZooKeeper commits a reconfiguration that removes
//! the leader, the leader designates the voter that acknowledged the most as the next leader
//! and the others follow it without an election (`Leader.tryToCommit`: "an up-to-date follower
//! will be designated as leader. This saves leader election time"). The old leader is then a
//! server that holds no vote: its outdated pod is replaced before anything else (deleting a
//! non-voter costs the quorum nothing, and the reconfiguration committed only once a quorum of
//! the old voters and one of the new had it), it starts as a joining server, syncs, and the
//! scale adds it back as a voter. With 3 voters the leader is replaced as before, at the cost of
//! one election: removing it would leave 2 voters that tolerate no failure until it is back, and
//! one of them losing its disk in that window could not be repaired without a person (2 voters,
//! one empty, have no quorum to reconfigure with), whereas a replaced leader's own vote brings
//! the quorum back.
//!
//! One exception to "every voter serves": while the ensemble is DEGRADED, an outdated member
//! that does not serve is replaced first, because the change may be what repairs it, and a
//! server that does not serve is no loss to the quorum.
//!
//! A restart of one member asked for on the ensemble ([`MemberRestart`], what
//! `kubectl zooherd restart --member` writes) is a roll step for that pod alone
//! ([`requested_restart`]): taken under the same conditions, once no pod is outdated, and done
//! once the pod it named has been replaced.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::annotations::MemberRestart;
use crate::api::{MemberState, MemberStatus, Phase};
use crate::quorum::Myid;

/// The fewest voters with which a roll hands the lead over rather than replacing the leader:
/// the voters left without it still tolerate a failure (3 of 4: quorum 2).
pub const HAND_OVER_MIN_VOTERS: usize = 4;

/// What the decision needs to know about a server's pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRevision {
    /// The server the pod runs.
    pub myid: Myid,
    /// The pod's `controller-revision-hash` label.
    pub revision: Option<String>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// The pod's Ready condition is True.
    pub ready: bool,
    /// `metadata.uid`: tells a pod from its replacement of the same name.
    pub uid: Option<String>,
}

/// The next step of a roll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollStep {
    /// Every pod runs the current revision.
    Done,
    /// Pods are outdated but it is not safe to replace one now; why.
    Wait(String),
    /// Delete this pod; `reason` is for the Event and the Progressing condition.
    Delete { pod: String, reason: String },
    /// Remove the leader (`myid`, whose pod is `pod`) from the voters, so that it hands the lead
    /// to a synced follower without an election (see the module documentation).
    HandOver {
        myid: Myid,
        pod: String,
        reason: String,
    },
}

fn serves(state: MemberState) -> bool {
    matches!(
        state,
        MemberState::Leader
            | MemberState::Follower
            | MemberState::Observer
            | MemberState::Standalone
    )
}

/// Decides the next step of a roll to `update_revision` (see the module documentation).
///
/// `members` is the computed status, one per voter; `pods` holds the pods of every server, voter
/// or not, by name; `synced_followers` is what the leader's `mntr` said, when it answered;
/// `committed_voters` the committed membership's voters, when it was read this round (only a
/// server it does not list is replaced as a non-voter).
pub fn next_step(
    phase: Phase,
    members: &[MemberStatus],
    pods: &BTreeMap<String, PodRevision>,
    update_revision: Option<&str>,
    synced_followers: Option<u64>,
    committed_voters: Option<&BTreeSet<Myid>>,
) -> RollStep {
    let Some(update_revision) = update_revision else {
        return RollStep::Wait("the StatefulSet has no update revision yet".into());
    };
    let outdated: Vec<&MemberStatus> = members
        .iter()
        .filter(|m| {
            pods.get(&m.pod)
                .is_some_and(|p| p.revision.as_deref() != Some(update_revision))
        })
        .collect();
    // Servers the status does not list as voters: a leader the roll has just removed from the
    // voters, or a server joining or leaving in a scale.
    let outdated_others: Vec<(&String, &PodRevision)> = pods
        .iter()
        .filter(|(pod, p)| {
            !members.iter().any(|m| &m.pod == *pod)
                && p.revision.as_deref() != Some(update_revision)
        })
        .collect();
    if outdated.is_empty() && outdated_others.is_empty() {
        return RollStep::Done;
    }
    if let Some(why) = another_on_its_way(members, pods) {
        return RollStep::Wait(why);
    }
    // Before any voter, whatever the phase: a server that holds no vote costs the quorum
    // nothing, and a leader that handed over is added back only once it runs the new revision.
    // Only on the committed membership's word: the status may lag a change just committed.
    let non_voter = outdated_others
        .iter()
        .rev()
        .find(|(_, p)| committed_voters.is_some_and(|voters| !voters.contains(&p.myid)));
    if let Some((pod, _)) = non_voter {
        return RollStep::Delete {
            pod: (*pod).clone(),
            reason: format!(
                "replacing {pod} (not a voter) with revision {update_revision}: it holds no vote"
            ),
        };
    }
    if outdated.is_empty()
        && let Some((pod, _)) = outdated_others.first()
    {
        let why = match committed_voters {
            None => "the committed membership could not be read this round",
            Some(_) => {
                "the committed membership lists it as a voter, which the status does not show yet"
            }
        };
        return RollStep::Wait(format!(
            "{pod} runs an older revision but cannot be replaced as a non-voter: {why}"
        ));
    }
    // The change may be what repairs a failed member (a config or image that crashes it, a
    // heap too small): while DEGRADED, an outdated member that does not serve is replaced, since
    // deleting a server that does not serve costs the quorum nothing. One at a time, like every
    // step; the serving members wait for ACTIVE.
    if phase == Phase::Degraded
        && let Some(failed) = outdated
            .iter()
            .filter(|m| !serves(m.state))
            .max_by_key(|m| m.myid)
    {
        return RollStep::Delete {
            pod: failed.pod.clone(),
            reason: format!(
                "replacing {} ({}, not serving) with revision {update_revision} first: the change may repair it",
                failed.pod, failed.state
            ),
        };
    }
    let leader = match every_voter_serves(phase, members, pods, synced_followers) {
        Ok(leader) => leader,
        Err(why) => return RollStep::Wait(why),
    };
    let total = members.len();
    let updated = total - outdated.len();
    let next = outdated
        .iter()
        .filter(|m| m.myid != leader.myid)
        .max_by_key(|m| m.myid)
        .copied();
    match next {
        Some(follower) => RollStep::Delete {
            pod: follower.pod.clone(),
            reason: format!(
                "replacing {} ({}) with revision {update_revision}: {updated} of {total} done, the leader last",
                follower.pod, follower.state
            ),
        },
        None => match Myid::try_from(leader.myid) {
            Ok(myid) if total >= HAND_OVER_MIN_VOTERS => RollStep::HandOver {
                myid,
                pod: leader.pod.clone(),
                reason: format!(
                    "handing the lead over: removing the leader {} (voter {myid}) from the voters, to replace it with revision {update_revision} and add it back; {updated} of {total} done",
                    leader.pod
                ),
            },
            _ => RollStep::Delete {
                pod: leader.pod.clone(),
                reason: format!(
                    "replacing the leader {} with revision {update_revision} last: {updated} of {total} done",
                    leader.pod
                ),
            },
        },
    }
}

/// Why no server may be taken now because another is already on its way (terminating, or not
/// recreated yet); None when none is.
fn another_on_its_way(
    members: &[MemberStatus],
    pods: &BTreeMap<String, PodRevision>,
) -> Option<String> {
    if let Some((pod, _)) = pods.iter().find(|(_, p)| p.terminating) {
        return Some(format!("pod {pod} is terminating"));
    }
    members
        .iter()
        .find(|m| !pods.contains_key(&m.pod))
        .map(|member| format!("pod {} does not exist yet", member.pod))
}

/// The leader, when a serving server may be taken: every voter serves (`phase`, as answered this
/// round), every pod is Ready and the leader counts every voting follower in sync; else why not.
fn every_voter_serves<'a>(
    phase: Phase,
    members: &'a [MemberStatus],
    pods: &BTreeMap<String, PodRevision>,
    synced_followers: Option<u64>,
) -> Result<&'a MemberStatus, String> {
    if phase != Phase::Active {
        return Err(format!(
            "the ensemble is {phase}; servers are replaced only while every voter serves"
        ));
    }
    // The PodDisruptionBudget and the client Service go by Ready, not by what the servers
    // answer: a member that serves but whose pod is not Ready yet (its readiness probe runs
    // once per period) still counts as unavailable there, and replacing another server then
    // would leave Kubernetes counting two down and clients one endpoint fewer.
    if let Some((pod, _)) = pods.iter().find(|(_, p)| !p.ready) {
        return Err(format!("pod {pod} is not Ready yet"));
    }
    let leads = |m: &MemberStatus| matches!(m.state, MemberState::Leader | MemberState::Standalone);
    let Some(leader) = members.iter().find(|m| leads(m)) else {
        return Err("no leader is known".into());
    };
    let followers = members.iter().filter(|m| !leads(m)).count() as u64;
    match synced_followers {
        Some(synced) if synced >= followers => Ok(leader),
        Some(synced) => Err(format!(
            "the leader counts {synced} of {followers} followers in sync"
        )),
        None if followers == 0 => Ok(leader),
        None => Err("the leader has not said how many followers are in sync".into()),
    }
}

/// The step of a restart of one member asked for on the ensemble (`request`, the annotation's
/// value), once no pod is outdated: [`RollStep::Done`] when there is none, it cannot be read,
/// or the pod it names is no longer the pod it asked to replace; else the pod, under the same
/// conditions as any roll step.
pub fn requested_restart(
    phase: Phase,
    members: &[MemberStatus],
    pods: &BTreeMap<String, PodRevision>,
    request: Option<&str>,
    synced_followers: Option<u64>,
) -> RollStep {
    let Some(request) = request.and_then(MemberRestart::parse) else {
        return RollStep::Done;
    };
    let pending = members.iter().find(|m| {
        m.pod == request.pod
            && pods
                .get(&m.pod)
                .is_some_and(|p| p.uid.as_deref() == Some(request.uid.as_str()))
    });
    let Some(member) = pending else {
        return RollStep::Done;
    };
    let wait = |why: String| RollStep::Wait(format!("a restart of {} is asked: {why}", member.pod));
    if let Some(why) = another_on_its_way(members, pods) {
        return wait(why);
    }
    match every_voter_serves(phase, members, pods, synced_followers) {
        Ok(_) => RollStep::Delete {
            pod: member.pod.clone(),
            reason: format!("restarting {} ({}) as asked", member.pod, member.state),
        },
        Err(why) => wait(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(myid: i32, state: MemberState, zxid: &str) -> MemberStatus {
        MemberStatus {
            pod: format!("zk-{}", myid - 1),
            myid,
            state,
            reason: None,
            zxid: Some(zxid.into()),
            latency: None,
            connections: None,
            since: None,
            restarts: 0,
        }
    }

    fn pods(revisions: &[(&str, &str)]) -> BTreeMap<String, PodRevision> {
        revisions
            .iter()
            .map(|(pod, revision)| {
                let ordinal: u8 = pod.trim_start_matches("zk-").parse().unwrap();
                let revision = PodRevision {
                    myid: Myid::try_from(i32::from(ordinal) + 1).unwrap(),
                    revision: Some(revision.to_string()),
                    terminating: false,
                    ready: true,
                    uid: Some(format!("uid-{pod}")),
                };
                (pod.to_string(), revision)
            })
            .collect()
    }

    /// `voters` members, all following the one with `leader_myid`.
    fn led_by(voters: i32, leader_myid: i32) -> Vec<MemberStatus> {
        (1..=voters)
            .map(|myid| {
                let state = if myid == leader_myid {
                    MemberState::Leader
                } else {
                    MemberState::Follower
                };
                member(myid, state, "0x500000010")
            })
            .collect()
    }

    fn three(leader_myid: i32) -> Vec<MemberStatus> {
        led_by(3, leader_myid)
    }

    #[test]
    fn followers_first_highest_myid_first_then_the_leader() {
        let members = three(3);
        let mut revisions = pods(&[("zk-0", "old"), ("zk-1", "old"), ("zk-2", "old")]);
        let mut order = Vec::new();
        for _ in 0..3 {
            match next_step(
                Phase::Active,
                &members,
                &revisions,
                Some("new"),
                Some(2),
                None,
            ) {
                RollStep::Delete { pod, .. } => {
                    revisions.get_mut(&pod).unwrap().revision = Some("new".into());
                    order.push(pod);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(order, ["zk-1", "zk-0", "zk-2"]);
        assert_eq!(
            next_step(
                Phase::Active,
                &members,
                &revisions,
                Some("new"),
                Some(2),
                None
            ),
            RollStep::Done
        );
    }

    #[test]
    fn with_five_voters_the_leader_hands_over_then_is_replaced_as_a_non_voter() {
        let all = led_by(5, 2);
        let mut revisions = pods(&[
            ("zk-0", "new"),
            ("zk-1", "old"),
            ("zk-2", "new"),
            ("zk-3", "new"),
            ("zk-4", "new"),
        ]);
        let voters: BTreeSet<Myid> = Myid::up_to(5).collect();
        assert!(matches!(
            next_step(Phase::Active, &all, &revisions, Some("new"), Some(4), Some(&voters)),
            RollStep::HandOver { myid, pod, reason }
                if myid == Myid::try_from(2).unwrap() && pod == "zk-1" && reason.contains("handing the lead over")
        ));
        // The reconfiguration committed: voter 2 is gone from the status and the membership, and
        // voter 4 leads. Its outdated pod is replaced first, even while a voter does not serve.
        let mut rest: Vec<MemberStatus> =
            led_by(5, 4).into_iter().filter(|m| m.myid != 2).collect();
        let without: BTreeSet<Myid> = voters
            .iter()
            .copied()
            .filter(|m| i32::from(*m) != 2)
            .collect();
        rest[2].state = MemberState::Unreachable;
        assert!(matches!(
            next_step(Phase::Degraded, &rest, &revisions, Some("new"), Some(2), Some(&without)),
            RollStep::Delete { pod, reason } if pod == "zk-1" && reason.contains("not a voter")
        ));
        // Only on the committed membership's word: unread, or still listing it, it waits.
        for (committed, why) in [
            (None, "could not be read"),
            (Some(&voters), "lists it as a voter"),
        ] {
            assert!(matches!(
                next_step(Phase::Active, &rest, &revisions, Some("new"), Some(3), committed),
                RollStep::Wait(w) if w.contains(why) && w.contains("zk-1")
            ));
        }
        // Replaced: the roll is done, and the scale adds it back.
        revisions.get_mut("zk-1").unwrap().revision = Some("new".into());
        assert_eq!(
            next_step(
                Phase::Active,
                &rest,
                &revisions,
                Some("new"),
                Some(3),
                Some(&without)
            ),
            RollStep::Done
        );
    }

    #[test]
    fn three_voters_replace_the_leader_at_the_cost_of_an_election() {
        // Two voters left would tolerate no failure until the third is back (see the module
        // documentation).
        let members = three(1);
        let revisions = pods(&[("zk-0", "old"), ("zk-1", "new"), ("zk-2", "new")]);
        let voters: BTreeSet<Myid> = Myid::up_to(3).collect();
        assert!(matches!(
            next_step(Phase::Active, &members, &revisions, Some("new"), Some(2), Some(&voters)),
            RollStep::Delete { pod, .. } if pod == "zk-0"
        ));
    }

    #[test]
    fn waits_unless_safe() {
        let members = three(1);
        let revisions = pods(&[("zk-0", "old"), ("zk-1", "new"), ("zk-2", "old")]);
        for phase in [Phase::Degraded, Phase::Down, Phase::Pending] {
            assert!(
                matches!(
                    next_step(phase, &members, &revisions, Some("new"), Some(2), None),
                    RollStep::Wait(_)
                ),
                "{phase}"
            );
        }
        let mut terminating = revisions.clone();
        terminating.get_mut("zk-1").unwrap().terminating = true;
        assert_eq!(
            next_step(
                Phase::Active,
                &members,
                &terminating,
                Some("new"),
                Some(2),
                None
            ),
            RollStep::Wait("pod zk-1 is terminating".into())
        );
        let mut missing = revisions.clone();
        missing.remove("zk-1");
        assert_eq!(
            next_step(
                Phase::Active,
                &members,
                &missing,
                Some("new"),
                Some(2),
                None
            ),
            RollStep::Wait("pod zk-1 does not exist yet".into())
        );
        assert_eq!(
            next_step(
                Phase::Active,
                &members,
                &revisions,
                Some("new"),
                Some(1),
                None
            ),
            RollStep::Wait("the leader counts 1 of 2 followers in sync".into())
        );
        assert!(matches!(
            next_step(Phase::Active, &members, &revisions, Some("new"), None, None),
            RollStep::Wait(_)
        ));
        assert!(matches!(
            next_step(Phase::Active, &members, &revisions, None, Some(2), None),
            RollStep::Wait(_)
        ));
    }

    #[test]
    fn while_degraded_only_a_failed_outdated_member_is_replaced() {
        let mut members = three(1);
        members[2].state = MemberState::Unreachable;
        let revisions = pods(&[("zk-0", "old"), ("zk-1", "old"), ("zk-2", "old")]);
        assert!(matches!(
            next_step(Phase::Degraded, &members, &revisions, Some("new"), Some(1), None),
            RollStep::Delete { pod, reason } if pod == "zk-2" && reason.contains("may repair")
        ));
        // Once the failed member runs the new revision, the serving ones wait for ACTIVE.
        let repaired = pods(&[("zk-0", "old"), ("zk-1", "old"), ("zk-2", "new")]);
        assert!(matches!(
            next_step(
                Phase::Degraded,
                &members,
                &repaired,
                Some("new"),
                Some(1),
                None
            ),
            RollStep::Wait(_)
        ));
        // DOWN: nothing is replaced (an election may be about to bring members back).
        assert!(matches!(
            next_step(Phase::Down, &members, &revisions, Some("new"), None, None),
            RollStep::Wait(_)
        ));
    }

    #[test]
    fn a_lone_server_is_replaced_when_it_serves() {
        let members = vec![member(1, MemberState::Standalone, "0x100000002")];
        let revisions = pods(&[("zk-0", "old")]);
        assert!(matches!(
            next_step(Phase::Active, &members, &revisions, Some("new"), None, None),
            RollStep::Delete { pod, .. } if pod == "zk-0"
        ));
    }

    #[test]
    fn nothing_to_do_when_current() {
        let members = three(2);
        let revisions = pods(&[("zk-0", "r"), ("zk-1", "r"), ("zk-2", "r")]);
        assert_eq!(
            next_step(Phase::Degraded, &members, &revisions, Some("r"), None, None),
            RollStep::Done
        );
    }

    #[test]
    fn a_serving_member_waits_while_another_pod_is_not_ready() {
        // zk-1 was just replaced: it serves again, but its readiness probe has not passed yet.
        let members = three(3);
        let mut revisions = pods(&[("zk-0", "old"), ("zk-1", "new"), ("zk-2", "old")]);
        revisions.get_mut("zk-1").unwrap().ready = false;
        assert_eq!(
            next_step(
                Phase::Active,
                &members,
                &revisions,
                Some("new"),
                Some(2),
                None
            ),
            RollStep::Wait("pod zk-1 is not Ready yet".into())
        );
        revisions.get_mut("zk-1").unwrap().ready = true;
        assert!(matches!(
            next_step(Phase::Active, &members, &revisions, Some("new"), Some(2), None),
            RollStep::Delete { pod, .. } if pod == "zk-0"
        ));
    }

    #[test]
    fn a_requested_restart_takes_its_pod_once_and_only_when_safe() {
        let members = three(3);
        let current = pods(&[("zk-0", "r"), ("zk-1", "r"), ("zk-2", "r")]);
        let step = |phase, pods: &BTreeMap<String, PodRevision>, request: Option<&str>| {
            requested_restart(phase, &members, pods, request, Some(2))
        };
        assert_eq!(step(Phase::Active, &current, None), RollStep::Done);
        // The leader too, when asked: it is the user's call, made only while every voter serves.
        for pod in ["zk-0", "zk-2"] {
            let request = format!("{pod}/uid-{pod}");
            assert!(matches!(
                step(Phase::Active, &current, Some(&request)),
                RollStep::Delete { pod: p, reason } if p == pod && reason.contains("as asked")
            ));
        }
        // Replaced (another uid), gone from the members, or unreadable: nothing more to do.
        for request in ["zk-0/uid-of-an-older-pod", "zk-7/uid-zk-7", "zk-0"] {
            assert_eq!(
                step(Phase::Active, &current, Some(request)),
                RollStep::Done,
                "{request}"
            );
        }
        // Never while a voter does not serve, another pod is on its way or not Ready, or the
        // followers have not synced.
        let request = Some("zk-0/uid-zk-0");
        for phase in [Phase::Degraded, Phase::Down, Phase::Pending] {
            assert!(
                matches!(step(phase, &current, request), RollStep::Wait(why) if why.contains(phase.as_str()))
            );
        }
        let mut terminating = current.clone();
        terminating.get_mut("zk-1").unwrap().terminating = true;
        assert_eq!(
            step(Phase::Active, &terminating, request),
            RollStep::Wait("a restart of zk-0 is asked: pod zk-1 is terminating".into())
        );
        let mut unready = current.clone();
        unready.get_mut("zk-1").unwrap().ready = false;
        assert!(matches!(
            step(Phase::Active, &unready, request),
            RollStep::Wait(_)
        ));
        assert!(matches!(
            requested_restart(Phase::Active, &members, &current, request, Some(1)),
            RollStep::Wait(why) if why.contains("1 of 2 followers in sync")
        ));
    }
}
