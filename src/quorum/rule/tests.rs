//! The status rule for 1–7 voters: every mix of member states, the graces, elections and
//! restarts of the operator, without a cluster.

use super::*;
use crate::quorum::admin::ServerMode;
use crate::quorum::myid::id;
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
fn observation(server: Myid, state: MemberState, at: Timestamp) -> Observation {
    let myid = i32::from(server);
    let serving = |mode| Answer::Serving {
        mode,
        zxid: zxid_of(myid),
        leader_details: (mode == ServerMode::Leader).then(|| MonitorStats {
            synced_followers: Some(2),
            ..MonitorStats::default()
        }),
        clients: ClientLoad {
            latency_ms: Some(format!("0/0.{myid}/9")),
            connections: Some(myid as u64),
        },
    };
    let answer = match state {
        Leader => serving(ServerMode::Leader),
        Follower => serving(ServerMode::Follower),
        Observer => serving(ServerMode::Observer),
        Standalone => serving(ServerMode::Standalone),
        NotServing => {
            Answer::NotServing("This ZooKeeper instance is not currently serving requests".into())
        }
        Unreachable => Answer::Unreachable("connection refused".into()),
        Missing => Answer::Missing("pod has no IP".into()),
    };
    Observation {
        myid: server,
        pod: pod(myid),
        at,
        answer,
    }
}

fn observations(states: &[MemberState], at: Timestamp) -> Vec<Observation> {
    Myid::up_to(255)
        .zip(states)
        .map(|(myid, &state)| observation(myid, state, at))
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
    for (server, member) in Myid::up_to(255).zip(&status.members) {
        let myid = i32::from(server);
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
                let has_quorum = matches!(a.status.summary.phase, Phase::Active | Phase::Degraded);
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

/// Latency and connections are shown while a member serves (held through one lost probe, like
/// its state), and dropped once it is confirmed not to.
#[test]
fn serving_members_show_their_clients() {
    let mut r = Rounds::healthy(3);
    let status = r.at(0, &[Leader, Follower, Follower]);
    let shown = |status: &ComputedStatus, i: usize| {
        let m = &status.members[i];
        (m.latency.clone(), m.connections)
    };
    assert_eq!(shown(&status, 2), (Some("0/0.3/9".into()), Some(3)));
    let lost = [Leader, Follower, Unreachable];
    let held = r.at(1000, &lost);
    assert_eq!(held.members[2].state, Follower);
    assert_eq!(shown(&held, 2), (Some("0/0.3/9".into()), Some(3)));
    let confirmed = r.at(2000, &lost);
    assert_eq!(confirmed.members[2].state, Unreachable);
    assert_eq!(shown(&confirmed, 2), (None, None));
    assert_eq!(shown(&confirmed, 0), (Some("0/0.1/9".into()), Some(1)));
}

// ---- across operator restarts -----------------------------------------------------------

#[test]
fn the_status_carries_what_the_rule_needs_across_a_restart() {
    let mut r = Rounds::healthy(3);
    let dead = [Leader, Follower, Unreachable];
    r.at(0, &dead);
    let before = r.at(1000, &dead);
    r.memory.record_restart(id(3), t(1500));
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
