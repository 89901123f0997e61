//! The failed-member restart decision: which one pod, if any, the operator deletes now.
//!
//! The kubelet restarts crashed containers and the StatefulSet recreates deleted pods, but
//! neither sees a server that runs yet stays out of the quorum (stuck in an election, wedged,
//! frozen), nor gives up on a pod that crash-loops or has Failed. Deleting such a pod gets a
//! fresh one. Pure: the controller gathers the facts, calls [`decide_restart`], and performs
//! the one delete it names (with an Event, and [`crate::quorum::rule::EnsembleMemory::record_restart`]).
//!
//! Safety comes first, in this order:
//! - disabled: never;
//! - one at a time: nothing while any member's pod is terminating, while a member whose pod
//!   was (re)created less than the threshold ago is not serving yet, or while a pod the
//!   operator deleted less than the threshold ago has not been recreated;
//! - never at the cost of the quorum: a member counted as serving is deleted only if the
//!   others still hold a quorum without it (a member whose pod has Failed does not count).
//!
//! A member qualifies when its pod has Failed; when its pod crash-loops (waiting in
//! CrashLoopBackOff) and the member has not served for the threshold; or when its pod is
//! Running but the member has been not-serving or unreachable for the threshold while the
//! *other* voters hold a quorum: a running server that cannot rejoin a healthy ensemble is
//! stuck, whereas without a quorum elsewhere nothing is gained by deleting it. The failure
//! clock starts at the later of the member's `since` and its pod's creation, so a pod that
//! was just recreated gets the whole threshold to sync. Of several qualifying members, the
//! one failing the longest goes first.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::agent::server::EXIT_EMPTY_VOTER;
use crate::api::{FailedMemberRestartSpec, MemberState, MemberStatus};
use crate::quorum::Myid;
use crate::quorum::rule::{is_serving_voter, quorum_size};

/// The container waiting reason of a crash loop.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// `pod.status.phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::EnumString)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    fn parse(phase: Option<&str>) -> Self {
        phase
            .and_then(|phase| phase.parse().ok())
            .unwrap_or(Self::Unknown)
    }
}

/// What the decision needs to know about a member's pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    pub phase: PodPhase,
    /// The highest restartCount of its containers (init containers included).
    pub restart_count: i32,
    /// The first waiting reason among its containers, e.g. "CrashLoopBackOff".
    pub waiting_reason: Option<String>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// `metadata.creationTimestamp`.
    pub created_at: Option<Timestamp>,
    /// The pod's Ready condition is True: its own readiness probe says the server serves.
    pub ready: bool,
    /// A container is not running and last exited with [`EXIT_EMPTY_VOTER`]: the server
    /// refuses to start as a voter on an empty volume.
    pub refuses_empty_voter: bool,
    /// The pod's node is not Ready, described (see [`super::node::not_ready`]); None when it
    /// is Ready or not known.
    pub node_not_ready: Option<String>,
}

/// Whether a container is down because the agent refused to start a voter on an empty volume.
fn refuses_empty_voter(container: &ContainerStatus) -> bool {
    let exit = |state: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        state
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let running = container
        .state
        .as_ref()
        .is_some_and(|s| s.running.is_some());
    let code = i32::from(EXIT_EMPTY_VOTER);
    !running
        && (exit(container.state.as_ref()) == Some(code)
            || exit(container.last_state.as_ref()) == Some(code))
}

/// Whether a pod's Ready condition is True.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

impl PodFacts {
    /// Reads the facts from a pod. Intended caller: the controller, for each member's pod.
    pub fn from_pod(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let containers: Vec<&ContainerStatus> = status
            .into_iter()
            .flat_map(|s| {
                let init = s.init_container_statuses.iter().flatten();
                init.chain(s.container_statuses.iter().flatten())
            })
            .collect();
        Self {
            phase: PodPhase::parse(status.and_then(|s| s.phase.as_deref())),
            restart_count: containers
                .iter()
                .map(|c| c.restart_count)
                .max()
                .unwrap_or(0),
            waiting_reason: containers.iter().find_map(|c| {
                c.state
                    .as_ref()
                    .and_then(|state| state.waiting.as_ref())
                    .and_then(|waiting| waiting.reason.clone())
            }),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            created_at: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
            ready: pod_is_ready(pod),
            refuses_empty_voter: containers.iter().any(|c| refuses_empty_voter(c)),
            node_not_ready: None,
        }
    }

    fn crash_looping(&self) -> bool {
        self.waiting_reason.as_deref() == Some(CRASH_LOOP_BACK_OFF)
    }
}

/// `spec.failedMemberRestart`, as the decision uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    pub enabled: bool,
    /// How long a member may fail before its pod is deleted; also how long after a delete
    /// (or a pod's creation) the next delete waits for the member to serve.
    pub threshold: Duration,
}

impl From<&FailedMemberRestartSpec> for RestartPolicy {
    fn from(spec: &FailedMemberRestartSpec) -> Self {
        Self {
            enabled: spec.enabled,
            threshold: Duration::from_secs(u64::try_from(spec.threshold_seconds).unwrap_or(0)),
        }
    }
}

/// At most one pod to delete now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Delete this member's pod; `reason` is for the Event.
    Delete {
        pod: String,
        myid: Myid,
        reason: String,
    },
    /// Delete nothing, and why (for logs): nothing needs a restart, or not yet.
    Keep { why: String },
    /// A member needs a restart but it would not be safe, and why (for a condition): the
    /// administrator may have something to confirm or repair.
    Held { why: String },
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// A member whose pod qualifies for a delete, before the safety checks.
struct Candidate<'a> {
    member: &'a MemberStatus,
    failing_since: Timestamp,
    /// What is wrong, without for how long.
    what: String,
    /// Whether the failure counts against the threshold (not a Failed pod, which goes at once).
    timed: bool,
    /// Only worth it when the other voters hold a quorum (a Running pod that does not serve).
    needs_quorum_elsewhere: bool,
}

impl Candidate<'_> {
    /// Why the pod is deleted now, for the Event: for how long it has failed.
    fn reason(&self, now: Timestamp, threshold_s: u64) -> String {
        if !self.timed {
            return self.what.clone();
        }
        let failing_for = elapsed(self.failing_since, now).as_secs();
        format!(
            "{} for {failing_for} s (threshold {threshold_s} s)",
            self.what
        )
    }

    /// Why the pod would be deleted, in a refusal: the RestartHeld condition's message, so it
    /// says since when, which does not change from one reconcile to the next (a count of
    /// seconds would, and the status would be written every round).
    fn held_reason(&self, threshold_s: u64) -> String {
        if !self.timed {
            return self.what.clone();
        }
        format!(
            "{} since {} (threshold {threshold_s} s)",
            self.what, self.failing_since
        )
    }
}

/// Decides which pod, if any, to delete now (see the module documentation).
///
/// `members` is the computed status (one per voter: state and since), `pods` the facts of the
/// members' pods by pod name (absent: no pod), `last_restart_at` when the operator last
/// deleted a member's pod ([`crate::quorum::rule::EnsembleMemory::last_restart_at`]),
/// `every_follower_synced` whether the leader counts every follower in sync this round.
///
/// Intended caller: the controller, after the status rule, when the ensemble is not paused.
pub fn decide_restart(
    members: &[MemberStatus],
    pods: &BTreeMap<String, PodFacts>,
    policy: &RestartPolicy,
    last_restart_at: Option<Timestamp>,
    every_follower_synced: bool,
    now: Timestamp,
) -> RestartDecision {
    let keep = |why: String| RestartDecision::Keep { why };
    if !policy.enabled {
        return keep(
            "failed-member restarts are disabled (spec.failedMemberRestart.enabled)".into(),
        );
    }
    let threshold_s = policy.threshold.as_secs();

    if let Some(member) = members
        .iter()
        .find(|m| pods.get(&m.pod).is_some_and(|p| p.terminating))
    {
        return keep(format!(
            "pod {} is terminating; members are restarted one at a time",
            member.pod
        ));
    }
    if let Some(last) = last_restart_at.filter(|&last| elapsed(last, now) < policy.threshold)
        && let Some(member) = members.iter().find(|m| !pods.contains_key(&m.pod))
    {
        return keep(format!(
            "a member was restarted {} s ago and pod {} does not exist yet; waiting for it before another restart",
            elapsed(last, now).as_secs(),
            member.pod
        ));
    }

    let mut candidates = Vec::new();
    let mut pending = Vec::new();
    let mut refused = Vec::new();
    for member in members {
        let Some(pod) = pods.get(&member.pod) else {
            continue;
        };
        // A pod on a node that is not Ready may still be running there, writing to its
        // volume: deleting it would not stop it, only hide it (the pod stays Terminating until
        // the node answers, and no replacement starts meanwhile). Only an administrator can
        // tell that the node is gone for good.
        if let Some(node) = &pod.node_not_ready {
            if !is_serving_voter(member.state) {
                refused.push(format!(
                    "{} is {}, but its pod is on {node}: the server may still run there, so its pod is not restarted; if the node is gone for good, confirm it (delete the Node object, taint it node.kubernetes.io/out-of-service=nodeshutdown:NoExecute, or annotate the ensemble zooherd.dev/replaceMember=<pod>/<pod uid>) and the member is rebuilt on another node (spec.lostNode)",
                    member.pod,
                    describe_state(member)
                ));
            }
            continue;
        }
        if pod.phase == PodPhase::Failed {
            candidates.push(Candidate {
                member,
                failing_since: member
                    .since
                    .as_ref()
                    .map(|t| t.0)
                    .or(pod.created_at)
                    .unwrap_or(now),
                what: format!("pod {} has Failed", member.pod),
                timed: false,
                needs_quorum_elsewhere: false,
            });
            continue;
        }
        if is_serving_voter(member.state) {
            continue;
        }
        let Some(since) = member.since.as_ref().map(|t| t.0) else {
            continue;
        };
        let crash_looping = pod.crash_looping();
        let stuck = pod.phase == PodPhase::Running
            && matches!(
                member.state,
                MemberState::NotServing | MemberState::Unreachable
            );
        if !crash_looping && !stuck {
            // Pending or Unknown: the scheduler's or the kubelet's business, not a stuck server.
            continue;
        }
        let failing_since = pod.created_at.map_or(since, |created| since.max(created));
        let failing_for = elapsed(failing_since, now).as_secs();
        let what = describe_state(member);
        // Only the operator may be cut off from it: its own readiness probe passes and the
        // leader counts every follower in sync. Deleting a working server for the operator's
        // own network fault (a NetworkPolicy, the CNI, a slow AdminServer) would cost the
        // ensemble a member for nothing.
        if member.state == MemberState::Unreachable && pod.ready && every_follower_synced {
            refused.push(format!(
                "{} is {what} from the operator, but its pod is Ready and the leader counts every follower in sync: the path from the operator to it is at fault, not the server",
                member.pod
            ));
            continue;
        }
        if failing_for < threshold_s {
            pending.push(format!(
                "{} {what} for {failing_for} s (threshold {threshold_s} s)",
                member.pod
            ));
            continue;
        }
        let candidate = if crash_looping {
            Candidate {
                member,
                failing_since,
                what: format!(
                    "pod {} is crash-looping ({} restarts) and the member has not served",
                    member.pod, pod.restart_count
                ),
                timed: true,
                needs_quorum_elsewhere: false,
            }
        } else {
            Candidate {
                member,
                failing_since,
                what: format!(
                    "pod {} is Running but the member has been {what}",
                    member.pod
                ),
                timed: true,
                needs_quorum_elsewhere: true,
            }
        };
        candidates.push(candidate);
    }
    candidates.sort_by_key(|c| (c.failing_since, c.member.myid));

    let quorum = quorum_size(members.len());
    for candidate in &candidates {
        // The status rule writes each member from a probed voter, whose myid is valid.
        let Ok(myid) = Myid::try_from(candidate.member.myid) else {
            continue;
        };
        let others: Vec<&MemberStatus> = members
            .iter()
            .filter(|m| m.myid != candidate.member.myid)
            .collect();
        if let Some(young) = others.iter().find(|m| {
            !is_serving_voter(m.state)
                && pods
                    .get(&m.pod)
                    .and_then(|p| p.created_at)
                    .is_some_and(|created| elapsed(created, now) < policy.threshold)
        }) {
            refused.push(format!(
                "{}: pod {} was created less than {threshold_s} s ago and is not serving yet; members are restarted one at a time",
                candidate.held_reason(threshold_s),
                young.pod
            ));
            continue;
        }
        // A member whose pod has Failed serves no longer, whatever its last answer was.
        let serving_others = others
            .iter()
            .filter(|m| is_serving_voter(m.state))
            .filter(|m| pods.get(&m.pod).is_none_or(|p| p.phase != PodPhase::Failed))
            .count();
        let counted = is_serving_voter(candidate.member.state);
        if (candidate.needs_quorum_elsewhere || counted) && serving_others < quorum {
            refused.push(format!(
                "{}, but the other voters do not hold a quorum without it ({serving_others} serving, {quorum} needed)",
                candidate.held_reason(threshold_s)
            ));
            continue;
        }
        return RestartDecision::Delete {
            pod: candidate.member.pod.clone(),
            myid,
            reason: candidate.reason(now, threshold_s),
        };
    }

    if !refused.is_empty() {
        return RestartDecision::Held {
            why: format!("not restarting: {}", refused.join("; ")),
        };
    }
    if !pending.is_empty() {
        return keep(format!("not yet: {}", pending.join("; ")));
    }
    keep("no member needs a restart".into())
}

fn describe_state(member: &MemberStatus) -> String {
    match &member.reason {
        Some(reason) => format!("{} ({reason})", member.state),
        None => member.state.to_string(),
    }
}

#[cfg(test)]
mod tests;
