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

use super::admin::{MonitorStats, ServerMode, zxid_epoch, zxid_hex};
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
            Answer::Serving { mode, .. } => match mode {
                ServerMode::Leader => MemberState::Leader,
                ServerMode::Follower => MemberState::Follower,
                ServerMode::Observer => MemberState::Observer,
                ServerMode::Standalone => MemberState::Standalone,
            },
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
    since: Option<Timestamp>,
    restarts: i32,
    /// The first failed probe of an unconfirmed failure, while the member is shown serving.
    first_failure_at: Option<Timestamp>,
}

impl MemberMemory {
    fn to_status(&self, myid: i32) -> MemberStatus {
        MemberStatus {
            pod: self.pod.clone(),
            myid,
            state: self.state,
            reason: self.reason.clone(),
            zxid: self.zxid.map(zxid_hex),
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
    members: BTreeMap<i32, MemberMemory>,
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
            .map(|m| {
                let memory = MemberMemory {
                    pod: m.pod.clone(),
                    state: m.state,
                    reason: m.reason.clone(),
                    zxid: m.zxid.as_deref().and_then(parse_zxid_hex),
                    since: m.since.as_ref().map(|t| t.0),
                    restarts: m.restarts,
                    first_failure_at: None,
                };
                (m.myid, memory)
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
    pub fn record_restart(&mut self, myid: i32, at: Timestamp) {
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
    pub answered: BTreeMap<i32, MemberState>,
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
    let members: BTreeMap<i32, MemberMemory> = observations
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
    let leaders: Vec<(&i32, &MemberMemory)> =
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
fn describe_failing(members: &BTreeMap<i32, MemberMemory>) -> String {
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
        since: since_if_unchanged.or(Some(observation.at)),
        restarts,
        first_failure_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberState::{Follower, Leader, Missing, NotServing, Observer, Standalone, Unreachable};

    const EPOCH: u64 = 3;

    /// `ms` milliseconds after a fixed instant.
    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_750_000_000_000 + ms).unwrap()
    }

    fn zxid_of(myid: i32) -> u64 {
        (EPOCH << 32) + 100 + myid as u64
    }

    fn pod(myid: i32) -> String {
        format!("zk-{}", myid - 1)
    }

    /// What a member in `state` answers.
    fn observation(myid: i32, state: MemberState, at: Timestamp) -> Observation {
        let serving = |mode| Answer::Serving {
            mode,
            zxid: zxid_of(myid),
            leader_details: (mode == ServerMode::Leader).then(|| MonitorStats {
                synced_followers: Some(2),
                ..MonitorStats::default()
            }),
        };
        let answer = match state {
            Leader => serving(ServerMode::Leader),
            Follower => serving(ServerMode::Follower),
            Observer => serving(ServerMode::Observer),
            Standalone => serving(ServerMode::Standalone),
            NotServing => Answer::NotServing(
                "This ZooKeeper instance is not currently serving requests".into(),
            ),
            Unreachable => Answer::Unreachable("connection refused".into()),
            Missing => Answer::Missing("pod has no IP".into()),
        };
        Observation {
            myid,
            pod: pod(myid),
            at,
            answer,
        }
    }

    fn observations(states: &[MemberState], at: Timestamp) -> Vec<Observation> {
        states
            .iter()
            .enumerate()
            .map(|(i, &state)| observation(i as i32 + 1, state, at))
            .collect()
    }

    fn summary(phase: Phase, serving: usize, voters: usize, leader: Option<i32>) -> Summary {
        let quorum = quorum_size(voters);
        Summary {
            phase,
            serving,
            voters,
            quorum,
            fault_tolerance: match phase {
                Phase::Active | Phase::Degraded => serving.saturating_sub(quorum),
                Phase::Down | Phase::Pending => 0,
            },
            leader: leader.map(pod),
            zxid: leader.map(|l| zxid_hex(zxid_of(l))),
            epoch: leader.map(|_| EPOCH as i64),
        }
    }

    /// Formed long ago, without a leader for long, no member known: no hold applies.
    fn steady_memory(voters: usize) -> EnsembleMemory {
        EnsembleMemory {
            summary: Some(summary(Phase::Active, voters, voters, Some(1))),
            formed_at: Some(t(-600_000)),
            leaderless_since: Some(t(-600_000)),
            ..EnsembleMemory::default()
        }
    }

    // ---- every mix of member states ---------------------------------------------------------

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Leadership {
        One,
        None,
        Two,
    }

    #[derive(Clone, Copy, Debug)]
    struct Mix {
        voters: usize,
        serving: usize,
        not_serving: usize,
        unreachable: usize,
        missing: usize,
        leadership: Leadership,
    }

    impl Mix {
        /// Leaders first, then followers, not-serving, unreachable, missing; rotated by
        /// `rotation` so that no position is special.
        fn states(&self, rotation: usize) -> Vec<MemberState> {
            let leaders = match self.leadership {
                Leadership::One => 1,
                Leadership::None => 0,
                Leadership::Two => 2,
            };
            let mut states = [Leader].repeat(leaders);
            states.extend([Follower].repeat(self.serving - leaders));
            states.extend([NotServing].repeat(self.not_serving));
            states.extend([Unreachable].repeat(self.unreachable));
            states.extend([Missing].repeat(self.missing));
            states.rotate_left(rotation % self.voters);
            states
        }
    }

    /// Every count of serving / not-serving / unreachable / missing for `voters`, serving
    /// members with one leader, none, or two.
    fn mixes(voters: usize) -> Vec<Mix> {
        let mut mixes = Vec::new();
        for serving in 0..=voters {
            for not_serving in 0..=voters - serving {
                for unreachable in 0..=voters - serving - not_serving {
                    let missing = voters - serving - not_serving - unreachable;
                    for leadership in [Leadership::One, Leadership::None, Leadership::Two] {
                        let leaders = match leadership {
                            Leadership::One => 1,
                            Leadership::None => 0,
                            Leadership::Two => 2,
                        };
                        if leaders <= serving {
                            mixes.push(Mix {
                                voters,
                                serving,
                                not_serving,
                                unreachable,
                                missing,
                                leadership,
                            });
                        }
                    }
                }
            }
        }
        mixes
    }

    fn leader_myid(states: &[MemberState]) -> Option<i32> {
        let leaders: Vec<i32> = (0..states.len())
            .filter(|&i| states[i] == Leader)
            .map(|i| i as i32 + 1)
            .collect();
        match leaders.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// The design's rule, stated directly, for an ensemble past any grace.
    fn expected_steady(mix: &Mix, states: &[MemberState]) -> Summary {
        let quorum = quorum_size(mix.voters);
        if mix.leadership == Leadership::One && mix.serving >= quorum {
            let phase = if mix.serving == mix.voters {
                Phase::Active
            } else {
                Phase::Degraded
            };
            summary(phase, mix.serving, mix.voters, leader_myid(states))
        } else {
            summary(Phase::Down, mix.serving, mix.voters, None)
        }
    }

    fn check_members(status: &ComputedStatus, states: &[MemberState], at: Timestamp, what: &str) {
        let shown: Vec<MemberState> = status.members.iter().map(|m| m.state).collect();
        assert_eq!(shown, states, "{what}");
        for (i, member) in status.members.iter().enumerate() {
            let myid = i as i32 + 1;
            assert_eq!(
                (member.myid, member.pod.as_str()),
                (myid, pod(myid).as_str()),
                "{what}"
            );
            assert_eq!(member.since, Some(Time(at)), "{what}");
            if member.state.is_serving() {
                assert_eq!(member.zxid, Some(zxid_hex(zxid_of(myid))), "{what}");
                assert_eq!(member.reason, None, "{what}");
            } else {
                assert_eq!(member.zxid, None, "{what}");
                assert!(member.reason.is_some(), "{what}");
            }
        }
    }

    #[test]
    fn every_mix_past_any_grace() {
        let settings = RuleSettings::default();
        let mut checked = 0;
        for voters in [1, 3, 5, 7] {
            for mix in mixes(voters) {
                for rotation in 0..voters {
                    let states = mix.states(rotation);
                    let what = format!("{mix:?} as {states:?}");
                    let now = t(0);
                    let a = assess(
                        &steady_memory(voters),
                        voters,
                        &observations(&states, now),
                        now,
                        &settings,
                    );
                    assert_eq!(a.status.summary, expected_steady(&mix, &states), "{what}");
                    assert!(!a.status.message.is_empty(), "{what}");
                    assert_eq!(a.status.formed_at, Some(t(-600_000)), "{what}");
                    check_members(&a.status, &states, now, &what);
                    let has_quorum =
                        matches!(a.status.summary.phase, Phase::Active | Phase::Degraded);
                    assert_eq!(a.status.leader_details.is_some(), has_quorum, "{what}");
                    checked += 1;
                }
            }
        }
        // 1 + 3 + 5 + 7 voters: enough mixes that a generator bug would show.
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn every_mix_of_a_new_ensemble() {
        let settings = RuleSettings::default();
        for voters in [1, 3, 5, 7] {
            for mix in mixes(voters) {
                let states = mix.states(0);
                let what = format!("{mix:?}");
                let now = t(0);
                let a = assess(
                    &EnsembleMemory::default(),
                    voters,
                    &observations(&states, now),
                    now,
                    &settings,
                );
                let steady = expected_steady(&mix, &states);
                if steady.phase == Phase::Down {
                    assert_eq!(
                        a.status.summary,
                        summary(Phase::Pending, mix.serving, voters, None),
                        "{what}"
                    );
                    assert_eq!(a.status.formed_at, None, "{what}");
                    assert!(
                        a.status.message.starts_with("waiting for a first quorum"),
                        "{what}"
                    );
                } else {
                    assert_eq!(a.status.summary, steady, "{what}");
                    assert_eq!(a.status.formed_at, Some(now), "{what}");
                }
                check_members(&a.status, &states, now, &what);
            }
        }
    }

    #[test]
    fn every_mix_within_the_election_grace() {
        let settings = RuleSettings::default();
        for voters in [1, 3, 5, 7] {
            let previous = summary(Phase::Active, voters, voters, Some(1));
            let memory = EnsembleMemory {
                leaderless_since: Some(t(-500)),
                ..steady_memory(voters)
            };
            for mix in mixes(voters) {
                let states = mix.states(0);
                let what = format!("{mix:?}");
                let now = t(0);
                let a = assess(&memory, voters, &observations(&states, now), now, &settings);
                let quorum = quorum_size(voters);
                let steady = expected_steady(&mix, &states);
                let alive = mix.serving + mix.not_serving;
                let expected = if steady.phase != Phase::Down {
                    steady
                } else if alive < quorum {
                    // Too few processes to elect anyone: nothing to wait for.
                    summary(Phase::Down, mix.serving, voters, None)
                } else if mix.leadership == Leadership::Two {
                    summary(Phase::Degraded, mix.serving, voters, None)
                } else {
                    previous.clone()
                };
                assert_eq!(a.status.summary, expected, "{what}");
                assert_ne!(
                    (mix.leadership, a.status.summary.phase),
                    (Leadership::Two, Phase::Active),
                    "{what}"
                );
                check_members(&a.status, &states, now, &what);
            }
        }
    }

    #[test]
    fn quorum_and_tolerance_by_size() {
        for (voters, quorum, tolerance) in [
            (1, 1, 0),
            (2, 2, 0),
            (3, 2, 1),
            (4, 3, 1),
            (5, 3, 2),
            (6, 4, 2),
            (7, 4, 3),
        ] {
            assert_eq!(quorum_size(voters), quorum, "{voters}");
            let mut states = vec![Follower; voters];
            states[0] = Leader;
            let a = assess(
                &steady_memory(voters),
                voters,
                &observations(&states, t(0)),
                t(0),
                &RuleSettings::default(),
            );
            assert_eq!(a.status.summary.phase, Phase::Active);
            assert_eq!(a.status.summary.fault_tolerance, tolerance, "{voters}");
            assert_eq!(a.status.summary.ready(), format!("{voters}/{voters}"));
        }
    }

    #[test]
    fn a_lone_standalone_server_is_active() {
        let a = assess(
            &EnsembleMemory::default(),
            1,
            &observations(&[Standalone], t(0)),
            t(0),
            &RuleSettings::default(),
        );
        assert_eq!(a.status.summary, summary(Phase::Active, 1, 1, Some(1)));
        assert_eq!(a.status.message, "all 1 voters serving, zk-0 leads");
    }

    #[test]
    fn an_observer_in_a_voter_slot_does_not_count() {
        let a = assess(
            &steady_memory(3),
            3,
            &observations(&[Leader, Follower, Observer], t(0)),
            t(0),
            &RuleSettings::default(),
        );
        assert_eq!(a.status.summary, summary(Phase::Degraded, 2, 3, Some(1)));
    }

    // ---- over time: anti-flap, election grace, recovery ------------------------------------

    /// Rounds over time, each fed the memory of the one before.
    struct Rounds {
        voters: usize,
        memory: EnsembleMemory,
        settings: RuleSettings,
    }

    impl Rounds {
        /// A formed ensemble whose every member has served since t(-60 s).
        fn healthy(voters: usize) -> Self {
            let mut states = vec![Follower; voters];
            states[0] = Leader;
            let mut rounds = Rounds {
                voters,
                memory: EnsembleMemory::default(),
                settings: RuleSettings::default(),
            };
            assert_eq!(rounds.at(-60_000, &states).summary.phase, Phase::Active);
            rounds
        }

        fn at(&mut self, ms: i64, states: &[MemberState]) -> ComputedStatus {
            self.observe(ms, observations(states, t(ms)))
        }

        fn observe(&mut self, ms: i64, observations: Vec<Observation>) -> ComputedStatus {
            let a = assess(
                &self.memory,
                self.voters,
                &observations,
                t(ms),
                &self.settings,
            );
            self.memory = a.memory;
            a.status
        }
    }

    fn states_of(status: &ComputedStatus) -> Vec<MemberState> {
        status.members.iter().map(|m| m.state).collect()
    }

    #[test]
    fn one_lost_probe_changes_nothing() {
        for lost in [Leader, Follower] {
            for failure in [Unreachable, NotServing] {
                let mut r = Rounds::healthy(3);
                let mut states = vec![Leader, Follower, Follower];
                let victim = states.iter().position(|&s| s == lost).unwrap();
                states[victim] = failure;
                let status = r.at(0, &states);
                assert_eq!(status.summary.phase, Phase::Active, "{lost} {failure}");
                assert_eq!(states_of(&status), [Leader, Follower, Follower]);
                assert_eq!(status.members[victim].since, Some(Time(t(-60_000))));
                let status = r.at(1000, &[Leader, Follower, Follower]);
                assert_eq!(status.summary.phase, Phase::Active);
                assert_eq!(status.members[victim].since, Some(Time(t(-60_000))));
                // The count starts again: another single loss is absorbed too.
                let status = r.at(2000, &states);
                assert_eq!(status.summary.phase, Phase::Active, "{lost} {failure}");
            }
        }
    }

    #[test]
    fn a_death_shows_at_the_second_failed_probe() {
        let mut r = Rounds::healthy(3);
        let dead = [Leader, Follower, Unreachable];
        assert_eq!(r.at(0, &dead).summary.phase, Phase::Active);
        let status = r.at(1000, &dead);
        assert_eq!(status.summary, summary(Phase::Degraded, 2, 3, Some(1)));
        assert_eq!(states_of(&status), dead);
        // `since` is the first failed probe: when the member stopped serving.
        assert_eq!(status.members[2].since, Some(Time(t(0))));
        assert_eq!(
            status.members[2].reason.as_deref(),
            Some("connection refused")
        );
        assert!(
            status
                .message
                .contains("zk-2 (unreachable: connection refused)"),
            "{}",
            status.message
        );
        // ... and it stays so, with the same since.
        let status = r.at(2000, &dead);
        assert_eq!(status.summary.phase, Phase::Degraded);
        assert_eq!(status.members[2].since, Some(Time(t(0))));
    }

    #[test]
    fn back_to_back_failed_probes_wait_for_the_failure_grace() {
        let mut r = Rounds::healthy(3);
        let dead = [Leader, Follower, Unreachable];
        assert_eq!(r.at(0, &dead).summary.phase, Phase::Active);
        assert_eq!(r.at(100, &dead).summary.phase, Phase::Active);
        assert_eq!(r.at(300, &dead).summary.phase, Phase::Active);
        assert_eq!(r.at(500, &dead).summary.phase, Phase::Degraded);
    }

    #[test]
    fn without_a_failure_grace_the_first_failed_probe_shows() {
        let mut r = Rounds::healthy(3);
        r.settings.failure_grace = Duration::ZERO;
        let status = r.at(0, &[Leader, Follower, NotServing]);
        assert_eq!(status.summary.phase, Phase::Degraded);
        assert_eq!(status.members[2].since, Some(Time(t(0))));
    }

    #[test]
    fn a_longer_failure_grace_holds_longer() {
        let mut r = Rounds::healthy(3);
        r.settings.failure_grace = Duration::from_millis(1500);
        let dead = [Leader, Follower, Unreachable];
        assert_eq!(r.at(0, &dead).summary.phase, Phase::Active);
        assert_eq!(r.at(1000, &dead).summary.phase, Phase::Active);
        assert_eq!(r.at(1500, &dead).summary.phase, Phase::Degraded);
    }

    #[test]
    fn a_missing_pod_shows_at_once() {
        let mut r = Rounds::healthy(3);
        let status = r.at(0, &[Leader, Follower, Missing]);
        assert_eq!(status.summary.phase, Phase::Degraded);
        assert_eq!(status.members[2].since, Some(Time(t(0))));
    }

    #[test]
    fn a_return_shows_at_once() {
        let mut r = Rounds::healthy(3);
        let dead = [Leader, Follower, Unreachable];
        r.at(0, &dead);
        assert_eq!(r.at(1000, &dead).summary.phase, Phase::Degraded);
        let status = r.at(2000, &[Leader, Follower, NotServing]);
        assert_eq!(status.summary.phase, Phase::Degraded);
        assert_eq!(status.members[2].state, NotServing);
        assert_eq!(status.members[2].since, Some(Time(t(2000))));
        let status = r.at(3000, &[Leader, Follower, Follower]);
        assert_eq!(status.summary, summary(Phase::Active, 3, 3, Some(1)));
        assert_eq!(status.members[2].since, Some(Time(t(3000))));
    }

    #[test]
    fn a_short_election_keeps_the_phase() {
        let mut r = Rounds::healthy(3);
        // The leader is killed; the followers look for a new one.
        let electing = [Unreachable, NotServing, NotServing];
        assert_eq!(r.at(0, &electing).summary.phase, Phase::Active);
        let status = r.at(1000, &electing);
        // Every failure is confirmed, but an election is under way: the summary is kept.
        assert_eq!(states_of(&status), electing);
        assert_eq!(status.summary, summary(Phase::Active, 3, 3, Some(1)));
        assert!(status.message.contains("election"), "{}", status.message);
        // The new leader: DEGRADED, since the old one is gone.
        let status = r.at(1900, &[Unreachable, Leader, Follower]);
        assert_eq!(status.summary, summary(Phase::Degraded, 2, 3, Some(2)));
    }

    #[test]
    fn an_election_longer_than_the_grace_is_down() {
        let mut r = Rounds::healthy(3);
        let electing = [Unreachable, NotServing, NotServing];
        assert_eq!(r.at(0, &electing).summary.phase, Phase::Active);
        assert_eq!(r.at(1000, &electing).summary.phase, Phase::Active);
        assert_eq!(r.at(1900, &electing).summary.phase, Phase::Active);
        // 2 s after the first round without a leader.
        let status = r.at(2000, &electing);
        assert_eq!(status.summary, summary(Phase::Down, 0, 3, None));
        assert!(
            status
                .message
                .contains("0/3 voters serving, a quorum needs 2"),
            "{}",
            status.message
        );
    }

    #[test]
    fn a_lost_quorum_is_down_without_waiting_for_an_election() {
        let mut r = Rounds::healthy(5);
        r.at(0, &[Leader, Follower, Follower, Follower, Follower]);
        let lost = [
            Unreachable,
            Unreachable,
            Unreachable,
            NotServing,
            NotServing,
        ];
        assert_eq!(r.at(100, &lost).summary.phase, Phase::Active);
        let status = r.at(1100, &lost);
        assert_eq!(status.summary, summary(Phase::Down, 0, 5, None));
        assert_eq!(status.summary.fault_tolerance, 0);
    }

    #[test]
    fn a_new_leader_releases_the_held_old_one() {
        let mut r = Rounds::healthy(3);
        // The old leader's probe fails once, and another member already answers leader.
        let status = r.at(0, &[Unreachable, Leader, Follower]);
        assert_eq!(states_of(&status), [Unreachable, Leader, Follower]);
        assert_eq!(status.summary, summary(Phase::Degraded, 2, 3, Some(2)));
    }

    #[test]
    fn two_leaders_are_never_active() {
        let mut r = Rounds::healthy(3);
        r.at(0, &[Leader, Follower, Follower]);
        let split = [Leader, Leader, Follower];
        let status = r.at(1000, &split);
        assert_eq!(status.summary, summary(Phase::Degraded, 3, 3, None));
        assert!(
            status
                .message
                .contains("2 members answer leader (zk-0, zk-1)"),
            "{}",
            status.message
        );
        let status = r.at(1500, &split);
        assert_eq!(status.summary.phase, Phase::Degraded);
        // Split answers since t(1000): past the grace, DOWN.
        let status = r.at(3000, &split);
        assert_eq!(status.summary, summary(Phase::Down, 3, 3, None));
        // One leader again.
        let status = r.at(3500, &[Follower, Leader, Follower]);
        assert_eq!(status.summary, summary(Phase::Active, 3, 3, Some(2)));
    }

    #[test]
    fn pending_until_a_first_quorum_then_never_again() {
        let mut r = Rounds {
            voters: 3,
            memory: EnsembleMemory::default(),
            settings: RuleSettings::default(),
        };
        let status = r.at(0, &[Missing, Missing, Missing]);
        assert_eq!(status.summary.phase, Phase::Pending);
        let status = r.at(1000, &[NotServing, NotServing, Unreachable]);
        assert_eq!(status.summary.phase, Phase::Pending);
        let status = r.at(2000, &[Follower, Leader, NotServing]);
        assert_eq!(status.summary, summary(Phase::Degraded, 2, 3, Some(2)));
        assert_eq!(status.formed_at, Some(t(2000)));
        r.at(3000, &[Unreachable, Unreachable, Unreachable]);
        let status = r.at(6000, &[Unreachable, Unreachable, Unreachable]);
        assert_eq!(status.summary.phase, Phase::Down);
        assert_eq!(status.formed_at, Some(t(2000)));
    }

    /// Every status write is an API write, and the operator aims for none at rest: an ensemble
    /// that stays as it is must show the same status, message included, round after round.
    /// (The message is also the Available and Degraded conditions' message.) When something
    /// started is in `members[].since` and the conditions' `lastTransitionTime`, not in a text
    /// that would change every second.
    #[test]
    fn an_unchanged_ensemble_shows_the_same_status_round_after_round() {
        let cases = [
            (Phase::Degraded, [Leader, Follower, Unreachable]),
            (Phase::Down, [Unreachable, NotServing, Unreachable]),
            // Serving voters, but no single leader: past the election grace, DOWN.
            (Phase::Down, [Follower, Follower, Follower]),
            (Phase::Down, [Leader, Leader, Follower]),
        ];
        for (phase, states) in cases {
            let mut r = Rounds::healthy(3);
            for ms in (0..10_000).step_by(1000) {
                r.at(ms, &states);
            }
            let first = r.at(10_000, &states);
            assert_eq!(first.summary.phase, phase, "{states:?}: {}", first.message);
            for ms in [11_000, 12_000, 13_000, 14_000] {
                r.at(ms, &states);
            }
            let later = r.at(15_000, &states);
            assert_eq!(later.message, first.message, "{states:?}");
            assert_eq!(later, first, "{states:?}");
            let (mut a, mut b) = (
                ZooKeeperEnsembleStatus::default(),
                ZooKeeperEnsembleStatus::default(),
            );
            first.write_into(&mut a);
            later.write_into(&mut b);
            assert_eq!(a, b, "{states:?}");
        }

        // Within the election grace too: the summary is held, and so is the message.
        let mut r = Rounds::healthy(3);
        let electing = [Unreachable, NotServing, NotServing];
        r.at(0, &electing);
        let first = r.at(700, &electing);
        let later = r.at(1900, &electing);
        assert_eq!(first.summary.phase, Phase::Active, "{}", first.message);
        assert!(first.message.contains("election"), "{}", first.message);
        assert_eq!(later, first);
    }

    // ---- across operator restarts -----------------------------------------------------------

    #[test]
    fn the_status_carries_what_the_rule_needs_across_a_restart() {
        let mut r = Rounds::healthy(3);
        let dead = [Leader, Follower, Unreachable];
        r.at(0, &dead);
        let before = r.at(1000, &dead);
        r.memory.record_restart(3, t(1500));
        assert_eq!(r.memory.last_restart_at(), Some(t(1500)));
        let before_restart = r.at(2000, &dead);
        assert_eq!(before_restart.members[2].restarts, 1);
        let mut status = ZooKeeperEnsembleStatus::default();
        before_restart.write_into(&mut status);
        assert_eq!(status.phase, Some(Phase::Degraded));
        assert_eq!(status.ready.as_deref(), Some("2/3"));
        assert_eq!((status.quorum, status.fault_tolerance), (Some(2), Some(0)));
        assert_eq!(status.leader.as_deref(), Some("zk-0"));
        assert_eq!(status.epoch, Some(EPOCH as i64));

        // Through JSON, as the API server stores it.
        let stored: ZooKeeperEnsembleStatus =
            serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
        let restored = EnsembleMemory::from_status(&stored);
        assert_eq!(restored.phase(), Some(Phase::Degraded));
        let a = assess(
            &restored,
            3,
            &observations(&dead, t(3000)),
            t(3000),
            &RuleSettings::default(),
        );
        assert_eq!(a.status.summary, before_restart.summary);
        assert_eq!(a.status.members, before_restart.members);
        assert_eq!(a.status.members[2].since, before.members[2].since);
        assert_eq!(a.status.formed_at, Some(t(-60_000)));
    }

    #[test]
    fn a_restart_during_an_election_keeps_the_phase() {
        let mut r = Rounds::healthy(3);
        let mut status = ZooKeeperEnsembleStatus::default();
        r.at(0, &[Leader, Follower, Follower])
            .write_into(&mut status);
        let electing = [Unreachable, NotServing, NotServing];
        let restored = EnsembleMemory::from_status(&status);
        // Unconfirmed at first (the counters were not kept), then confirmed, then DOWN
        // once the grace that started at the restart is over.
        let mut r = Rounds {
            voters: 3,
            memory: restored,
            settings: RuleSettings::default(),
        };
        assert_eq!(r.at(5000, &electing).summary.phase, Phase::Active);
        assert_eq!(r.at(6000, &electing).summary.phase, Phase::Active);
        assert_eq!(r.at(7000, &electing).summary.phase, Phase::Down);
    }

    #[test]
    fn a_status_from_an_older_operator_is_read_leniently() {
        let status = ZooKeeperEnsembleStatus {
            phase: Some(Phase::Active),
            ready: Some("garbage".into()),
            ..ZooKeeperEnsembleStatus::default()
        };
        let memory = EnsembleMemory::from_status(&status);
        assert_eq!(memory.phase(), Some(Phase::Active));
        assert_eq!(memory.formed_at, None);
        let a = assess(
            &memory,
            1,
            &observations(&[Leader], t(0)),
            t(0),
            &RuleSettings::default(),
        );
        assert_eq!(a.status.summary.phase, Phase::Active);
        assert_eq!(parse_zxid_hex("0x300000065"), Some(0x3_0000_0065));
        assert_eq!(parse_zxid_hex("zz"), None);
    }
}
