//! The status rule: from one probe round and what was shown before, the ensemble's phase.
//!
//! Pure: no clock, no IO. The caller passes `now`, the round's [`Observation`]s and the
//! [`EnsembleMemory`] the previous call returned, and gets an [`Assessment`]: the status to
//! show and the memory for the next call. Every timing is a [`RuleSettings`] field.
//!
//! # The rule
//! Quorum = floor(voters/2)+1. Serving voters are members answering leader, follower or
//! standalone (an observer serves clients but does not vote, so it does not count); a
//! standalone server leads itself.
//! - ACTIVE: every voter serving, exactly one leader.
//! - DEGRADED: exactly one leader and serving voters >= quorum, but not all voters serving.
//! - DOWN: fewer than a quorum serving, or no single leader beyond the election grace.
//! - PENDING: the ensemble has never formed a quorum (no `formedAt`).
//!
//! # Not flapping, yet showing failures within seconds
//! *One lost probe* (a timeout during a GC pause, a dropped connection) must not flip the
//! phase. A member shown serving keeps its shown state (and `since`) until its failure is
//! confirmed: by a failed probe taken at least [`RuleSettings::failure_grace`] (500 ms) after
//! the first failed probe of an unbroken run of failures. So it takes two failed probes in a
//! row (one is never enough), and back-to-back rounds (a reconcile triggered by an event right
//! after the periodic one) cannot confirm a blip of a few milliseconds. At a 1 s probe
//! interval a death shows at the second failed probe: 1 to 2 s after it, plus the round time;
//! a longer grace would push a death past the target of 3 s. When confirmed, `since` is the
//! first failed probe: that is when the member stopped serving.
//!
//! Good news is never held back: a serving answer cannot be wrong, so a member that answers
//! shows at once, and so does a member whose pod is gone ([`Answer::Missing`] comes from the
//! pod list, not from a probe that may be lost). A held leader is released at once when
//! another member answers leader: the new leader's answer proves the old one lost the lead.
//!
//! *A leader election* takes 0.2-2 s, during which followers answer not-serving. While no
//! single leader answers with a quorum, but enough members are alive (serving or not-serving)
//! to elect one, the ensemble summary (phase, ready, leader, zxid...) stays as it was for
//! [`RuleSettings::election_grace`] (2 s), counted from the first round whose answers showed
//! no leader with a quorum, then turns DOWN. When too few members are alive to ever elect a
//! leader, there is nothing to wait for: DOWN at once (after the members' own confirmation).
//! Two members answering leader (split answers during an election) is never ACTIVE: DEGRADED
//! within the election grace, without a leader in the status, and DOWN after.
//!
//! # Surviving an operator restart
//! What the status must keep across restarts is in the status: `members[].since`,
//! `members[].restarts` and `formedAt`, and the summary; [`EnsembleMemory::from_status`]
//! rebuilds the memory from them. The failure counters and the start of a leaderless spell
//! are not persisted: a restart forgets a pending (unconfirmed) failure, which delays its
//! confirmation by one probe, and restarts the election grace.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Myid;
use super::admin::{ClientLoad, MonitorStats, zxid_epoch, zxid_hex};
use super::probe::{Answer, Observation};
use crate::api::{MemberState, MemberStatus, Phase, ZooKeeperEnsembleStatus};

/// The timings of the rule. See the module documentation for how they combine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSettings {
    /// A serving member's failure is confirmed by a failed probe at least this long after the
    /// first failed probe in a row. Default 500 ms (below the 1 s probe interval, so at that
    /// interval the second failed probe confirms). Zero: no hold, the first failed probe shows.
    pub failure_grace: Duration,
    /// How long the summary is kept while no single leader answers but enough members are
    /// alive to elect one. Default 2 s: a ZooKeeper election takes 0.2-2 s.
    pub election_grace: Duration,
}

impl Default for RuleSettings {
    fn default() -> Self {
        Self {
            failure_grace: Duration::from_millis(500),
            election_grace: Duration::from_secs(2),
        }
    }
}

/// Voters needed for a quorum of `voters`: floor(voters/2)+1.
pub fn quorum_size(voters: usize) -> usize {
    voters / 2 + 1
}

/// The member states that count towards a quorum.
pub fn is_serving_voter(state: MemberState) -> bool {
    matches!(
        state,
        MemberState::Leader | MemberState::Follower | MemberState::Standalone
    )
}

fn is_leader(state: MemberState) -> bool {
    matches!(state, MemberState::Leader | MemberState::Standalone)
}

/// A process that answers, in or out of a quorum: it can take part in an election.
fn is_alive(state: MemberState) -> bool {
    state.is_serving() || state == MemberState::NotServing
}

impl Observation {
    /// The member state this answer shows, before any anti-flap hold.
    pub fn state(&self) -> MemberState {
        match &self.answer {
            Answer::Serving { mode, .. } => (*mode).into(),
            Answer::NotServing(_) => MemberState::NotServing,
            Answer::Unreachable(_) => MemberState::Unreachable,
            Answer::Missing(_) => MemberState::Missing,
        }
    }

    fn reason(&self) -> Option<&str> {
        match &self.answer {
            Answer::Serving { .. } => None,
            Answer::NotServing(why) | Answer::Unreachable(why) | Answer::Missing(why) => Some(why),
        }
    }

    fn zxid(&self) -> Option<u64> {
        match &self.answer {
            Answer::Serving { zxid, .. } => Some(*zxid),
            _ => None,
        }
    }

    fn clients(&self) -> ClientLoad {
        match &self.answer {
            Answer::Serving { clients, .. } => clients.clone(),
            _ => ClientLoad::default(),
        }
    }
}

/// The ensemble-level part of the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub phase: Phase,
    /// Serving voters (leader, follower, standalone).
    pub serving: usize,
    pub voters: usize,
    /// floor(voters/2)+1.
    pub quorum: usize,
    /// serving - quorum, at least 0; 0 when DOWN or PENDING.
    pub fault_tolerance: usize,
    /// Pod of the leader (ACTIVE and DEGRADED only).
    pub leader: Option<String>,
    /// The leader's last zxid, hex.
    pub zxid: Option<String>,
    /// The leader's epoch (high 32 bits of its zxid).
    pub epoch: Option<i64>,
}

impl Summary {
    /// `status.ready`: "serving/voters".
    pub fn ready(&self) -> String {
        format!("{}/{}", self.serving, self.voters)
    }
}

/// What the rule remembers about one member between rounds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MemberMemory {
    pod: String,
    /// The state shown in the status.
    state: MemberState,
    reason: Option<String>,
    zxid: Option<u64>,
    /// Its clients, while it serves.
    clients: ClientLoad,
    since: Option<Timestamp>,
    restarts: i32,
    /// The first failed probe of an unconfirmed failure, while the member is shown serving.
    first_failure_at: Option<Timestamp>,
}

impl MemberMemory {
    fn to_status(&self, myid: Myid) -> MemberStatus {
        MemberStatus {
            pod: self.pod.clone(),
            myid: myid.into(),
            state: self.state,
            reason: self.reason.clone(),
            zxid: self.zxid.map(zxid_hex),
            latency: self.clients.latency_ms.clone(),
            connections: self
                .clients
                .connections
                .map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
            since: self.since.map(Time),
            restarts: self.restarts,
        }
    }
}

/// What the operator remembers about one ensemble between rounds: the last status shown,
/// when the quorum first formed, since when no leader has answered with a quorum, pending
/// member failures, and the operator's own restarts of members.
///
/// Intended caller: the controller keeps one per ensemble (in memory, keyed by the object's
/// UID), builds it with [`from_status`](Self::from_status) when it has none (first sight,
/// operator restart), and replaces it with [`Assessment::memory`] after every round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnsembleMemory {
    summary: Option<Summary>,
    formed_at: Option<Timestamp>,
    /// The first round of the current spell whose answers showed no leader with a quorum.
    leaderless_since: Option<Timestamp>,
    last_restart_at: Option<Timestamp>,
    members: BTreeMap<Myid, MemberMemory>,
}

impl EnsembleMemory {
    /// Rebuilds the memory from a status the operator wrote earlier (see the module
    /// documentation for what is kept).
    pub fn from_status(status: &ZooKeeperEnsembleStatus) -> Self {
        let summary = status.phase.map(|phase| {
            let (serving, voters) = status
                .ready
                .as_deref()
                .and_then(|ready| ready.split_once('/'))
                .and_then(|(s, v)| Some((s.trim().parse().ok()?, v.trim().parse().ok()?)))
                .unwrap_or((0, status.members.len()));
            Summary {
                phase,
                serving,
                voters,
                quorum: status
                    .quorum
                    .and_then(|q| usize::try_from(q).ok())
                    .unwrap_or_else(|| quorum_size(voters)),
                fault_tolerance: status
                    .fault_tolerance
                    .and_then(|t| usize::try_from(t).ok())
                    .unwrap_or(0),
                leader: status.leader.clone(),
                zxid: status.zxid.clone(),
                epoch: status.epoch,
            }
        });
        let members = status
            .members
            .iter()
            // The status shows only valid myids: the rule writes them from the probed voters.
            .filter_map(|m| Some((Myid::try_from(m.myid).ok()?, m)))
            .map(|(myid, m)| {
                let memory = MemberMemory {
                    pod: m.pod.clone(),
                    state: m.state,
                    reason: m.reason.clone(),
                    zxid: m.zxid.as_deref().and_then(parse_zxid_hex),
                    clients: ClientLoad {
                        latency_ms: m.latency.clone(),
                        connections: m.connections.and_then(|c| u64::try_from(c).ok()),
                    },
                    since: m.since.as_ref().map(|t| t.0),
                    restarts: m.restarts,
                    first_failure_at: None,
                };
                (myid, memory)
            })
            .collect();
        Self {
            leaderless_since: None,
            summary,
            formed_at: status.formed_at.as_ref().map(|t| t.0),
            last_restart_at: None,
            members,
        }
    }

    /// The phase last shown, if any.
    pub fn phase(&self) -> Option<Phase> {
        self.summary.as_ref().map(|s| s.phase)
    }

    /// Notes that the operator deleted member `myid`'s pod at `at`: its `restarts` count goes
    /// up in the next status, and [`last_restart_at`](Self::last_restart_at) moves.
    pub fn record_restart(&mut self, myid: Myid, at: Timestamp) {
        if let Some(member) = self.members.get_mut(&myid) {
            member.restarts += 1;
        }
        self.last_restart_at = Some(at);
    }

    /// When the operator last deleted a member's pod (since this memory was built), for
    /// [`crate::decide::restart::decide_restart`].
    pub fn last_restart_at(&self) -> Option<Timestamp> {
        self.last_restart_at
    }
}

/// The status computed from one round.
#[derive(Clone, Debug, PartialEq)]
pub struct ComputedStatus {
    pub summary: Summary,
    /// One per observation (per voter), in myid order.
    pub members: Vec<MemberStatus>,
    /// When the ensemble first formed a quorum.
    pub formed_at: Option<Timestamp>,
    /// The single leader's `mntr` from this round (synced followers, znode count), for the
    /// controller's metrics.
    pub leader_details: Option<MonitorStats>,
    /// One line that says why the phase is what it is, for the conditions and Events.
    pub message: String,
    /// What each voter answered this round, by myid, before any anti-flap hold. The status
    /// shows `members` (a serving member keeps its state through one lost probe), but a
    /// disruption must never be decided on a state held back: see `crate::decide`.
    pub answered: BTreeMap<Myid, MemberState>,
}

impl ComputedStatus {
    /// Writes the fields the rule owns (phase, ready, quorum, faultTolerance, leader, zxid,
    /// epoch, members, formedAt) into `status`; conditions, connect string and
    /// observedGeneration are the controller's.
    pub fn write_into(&self, status: &mut ZooKeeperEnsembleStatus) {
        let summary = &self.summary;
        status.phase = Some(summary.phase);
        status.ready = Some(summary.ready());
        status.quorum = Some(to_i32(summary.quorum));
        status.fault_tolerance = Some(to_i32(summary.fault_tolerance));
        status.leader = summary.leader.clone();
        status.zxid = summary.zxid.clone();
        status.epoch = summary.epoch;
        status.members = self.members.clone();
        status.formed_at = self.formed_at.map(Time);
    }
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The result of [`assess`]: what to show, and what to remember for the next round.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub status: ComputedStatus,
    pub memory: EnsembleMemory,
}

/// Reads back a zxid written by [`zxid_hex`].
fn parse_zxid_hex(hex: &str) -> Option<u64> {
    u64::from_str_radix(hex.trim().trim_start_matches("0x"), 16).ok()
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// The status rule (see the module documentation).
///
/// `voters` is the number of voters in the configuration (spec.replicas); `observations`
/// has one entry per voter, as [`super::probe::Prober::probe`] returns them.
///
/// Intended caller: the controller's status loop, after every probe round.
pub fn assess(
    memory: &EnsembleMemory,
    voters: usize,
    observations: &[Observation],
    now: Timestamp,
    settings: &RuleSettings,
) -> Assessment {
    let quorum = quorum_size(voters);
    let answering_leaders: Vec<&Observation> = observations
        .iter()
        .filter(|o| is_leader(o.state()))
        .collect();

    let a_leader_answers = !answering_leaders.is_empty();
    let members: BTreeMap<Myid, MemberMemory> = observations
        .iter()
        .map(|observation| {
            let previous = memory.members.get(&observation.myid);
            let next = next_member(previous, observation, a_leader_answers, settings);
            (observation.myid, next)
        })
        .collect();

    let serving = members
        .values()
        .filter(|m| is_serving_voter(m.state))
        .count();
    let alive = members.values().filter(|m| is_alive(m.state)).count();
    let leaders: Vec<(&Myid, &MemberMemory)> =
        members.iter().filter(|(_, m)| is_leader(m.state)).collect();
    let has_quorum = leaders.len() == 1 && serving >= quorum;

    let answering_serving = observations
        .iter()
        .filter(|o| is_serving_voter(o.state()))
        .count();
    let leaderless_since = if answering_leaders.len() == 1 && answering_serving >= quorum {
        None
    } else {
        memory.leaderless_since.or(Some(now))
    };
    let formed_at = memory.formed_at.or_else(|| has_quorum.then_some(now));

    let counts = |phase: Phase, fault_tolerance: usize| Summary {
        phase,
        serving,
        voters,
        quorum,
        fault_tolerance,
        leader: None,
        zxid: None,
        epoch: None,
    };
    let failing = || describe_failing(&members);

    let (summary, message) = if formed_at.is_none() {
        let message = format!(
            "waiting for a first quorum: {serving}/{voters} voters serving, a quorum needs {quorum}{}",
            failing()
        );
        (counts(Phase::Pending, 0), message)
    } else if has_quorum {
        let (_, leader) = leaders[0];
        let phase = if serving == voters {
            Phase::Active
        } else {
            Phase::Degraded
        };
        let zxid = leader.zxid;
        let summary = Summary {
            leader: Some(leader.pod.clone()),
            zxid: zxid.map(zxid_hex),
            epoch: zxid.map(|z| i64::from(zxid_epoch(z))),
            ..counts(phase, serving - quorum)
        };
        let message = if phase == Phase::Active {
            format!("all {voters} voters serving, {} leads", leader.pod)
        } else {
            format!(
                "{serving}/{voters} voters serving, {} leads; {} more may fail{}",
                leader.pod,
                serving - quorum,
                failing()
            )
        };
        (summary, message)
    } else {
        let without_leader = leaderless_since.map_or(Duration::ZERO, |since| elapsed(since, now));
        let in_grace = without_leader < settings.election_grace;
        let held = memory
            .summary
            .as_ref()
            .filter(|s| matches!(s.phase, Phase::Active | Phase::Degraded));
        match held {
            Some(held) if in_grace && alive >= quorum => {
                let grace = settings.election_grace.as_secs_f64();
                if leaders.len() >= 2 {
                    let pods: Vec<&str> = leaders.iter().map(|(_, m)| m.pod.as_str()).collect();
                    let message = format!(
                        "{} members answer leader ({}): an election is under way (grace {grace:.1} s){}",
                        leaders.len(),
                        pods.join(", "),
                        failing()
                    );
                    (
                        counts(Phase::Degraded, serving.saturating_sub(quorum)),
                        message,
                    )
                } else {
                    let message = format!(
                        "no single leader with a quorum: an election may be under way, {} kept for the election grace ({grace:.1} s); {serving}/{voters} voters serving{}",
                        held.phase,
                        failing()
                    );
                    (held.clone(), message)
                }
            }
            _ => {
                let message = if alive < quorum || serving < quorum {
                    format!(
                        "{serving}/{voters} voters serving, a quorum needs {quorum}{}",
                        failing()
                    )
                } else {
                    // No elapsed time in the text: the message is in the status, which would
                    // change every round. When it began is the conditions' lastTransitionTime.
                    format!(
                        "{serving}/{voters} voters serving but no single leader beyond the election grace ({:.1} s){}",
                        settings.election_grace.as_secs_f64(),
                        failing()
                    )
                };
                (counts(Phase::Down, 0), message)
            }
        }
    };

    let leader_details = match answering_leaders.as_slice() {
        [leader] if has_quorum => match &leader.answer {
            Answer::Serving { leader_details, .. } => leader_details.clone(),
            _ => None,
        },
        _ => None,
    };

    Assessment {
        status: ComputedStatus {
            members: members.iter().map(|(&myid, m)| m.to_status(myid)).collect(),
            summary: summary.clone(),
            formed_at,
            leader_details,
            message,
            answered: observations.iter().map(|o| (o.myid, o.state())).collect(),
        },
        memory: EnsembleMemory {
            summary: Some(summary),
            formed_at,
            leaderless_since,
            last_restart_at: memory.last_restart_at,
            members,
        },
    }
}

/// "; not serving: zk-1 (unreachable: timed out), ..." or "".
fn describe_failing(members: &BTreeMap<Myid, MemberMemory>) -> String {
    let failing: Vec<String> = members
        .values()
        .filter(|m| !is_serving_voter(m.state))
        .map(|m| match &m.reason {
            Some(reason) => format!("{} ({}: {reason})", m.pod, m.state),
            None => format!("{} ({})", m.pod, m.state),
        })
        .collect();
    if failing.is_empty() {
        String::new()
    } else {
        format!("; not serving: {}", failing.join(", "))
    }
}

/// One member's next memory: its answer, unless an unconfirmed failure of a serving member.
/// `a_leader_answers`: some member answered leader this round (a held leader is then
/// released, since it is no longer the leader).
fn next_member(
    previous: Option<&MemberMemory>,
    observation: &Observation,
    a_leader_answers: bool,
    settings: &RuleSettings,
) -> MemberMemory {
    let observed = observation.state();
    let restarts = previous.map_or(0, |p| p.restarts);
    let since_if_unchanged = previous
        .filter(|p| p.state == observed)
        .and_then(|p| p.since);

    if observed.is_serving() {
        return MemberMemory {
            pod: observation.pod.clone(),
            state: observed,
            reason: None,
            zxid: observation.zxid(),
            clients: observation.clients(),
            since: since_if_unchanged.or(Some(observation.at)),
            restarts,
            first_failure_at: None,
        };
    }

    let shown_serving = previous.filter(|p| p.state.is_serving());
    if let Some(previous) = shown_serving
        && observed != MemberState::Missing
    {
        let first_failure_at = previous.first_failure_at.unwrap_or(observation.at);
        let confirmed = elapsed(first_failure_at, observation.at) >= settings.failure_grace
            || (previous.state == MemberState::Leader && a_leader_answers);
        if !confirmed {
            return MemberMemory {
                first_failure_at: Some(first_failure_at),
                ..previous.clone()
            };
        }
        return MemberMemory {
            pod: observation.pod.clone(),
            state: observed,
            reason: observation.reason().map(str::to_owned),
            zxid: None,
            clients: ClientLoad::default(),
            since: Some(first_failure_at),
            restarts,
            first_failure_at: None,
        };
    }

    MemberMemory {
        pod: observation.pod.clone(),
        state: observed,
        reason: observation.reason().map(str::to_owned),
        zxid: None,
        clients: ClientLoad::default(),
        since: since_if_unchanged.or(Some(observation.at)),
        restarts,
        first_failure_at: None,
    }
}

#[cfg(test)]
mod tests;
