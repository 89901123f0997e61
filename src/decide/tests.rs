//! The decision's precedence and every refusal, table-driven, without a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use super::restart::{PodFacts, PodPhase, RestartPolicy};
use super::roll::{PodRevision, RollStep};
use super::*;
use crate::api::{MemberState, MemberStatus, Phase};
use crate::quorum::admin::MonitorStats;
use crate::quorum::membership::{Membership, ScaleStep};
use crate::quorum::myid::id;
use crate::quorum::rule::{ComputedStatus, Summary, quorum_size};
use MemberState::{Follower as F, Leader as L, NotServing as N, Unreachable as U};

const NOW: i64 = 1_000_000;
const CURRENT: &str = "rev-new";
const OLD: &str = "rev-old";

/// One scenario: the voters' states and pods, the spec, and the scale view.
struct Scenario {
    spec: SpecOutcome,
    /// Per voter (myid 1..): state, pod phase, pod revision.
    voters: Vec<(MemberState, PodPhase, &'static str)>,
    /// How long every non-serving voter has been in its state.
    failing_for: Duration,
    restarts_enabled: bool,
    desired: u32,
    servers: u32,
    /// Committed voters read this round (None: not read; Some(Err) when reading failed).
    committed: Option<Result<&'static [u8], &'static str>>,
    /// States of servers beyond the voters.
    joiners: Vec<(u8, MemberState)>,
    /// Pods of servers beyond the voters: (myid, revision).
    non_voter_pods: Vec<(u8, &'static str)>,
    /// Servers whose pod refuses to start as a voter on an empty volume (myid, pod).
    refusing_empty: Vec<(u8, &'static str)>,
    /// Voters (myids) whose probe was lost this round: the status rule still shows them
    /// serving (anti-flap), but they did not answer.
    lost_probes: Vec<i32>,
    /// The ensemble's restartMember annotation (every pod's uid is `uid-<pod>`).
    restart_request: Option<&'static str>,
}

impl Scenario {
    /// A steady ACTIVE 3-server ensemble on the current revision.
    fn steady() -> Self {
        Scenario {
            spec: SpecOutcome::Applied { changed: false },
            voters: vec![
                (L, PodPhase::Running, CURRENT),
                (F, PodPhase::Running, CURRENT),
                (F, PodPhase::Running, CURRENT),
            ],
            failing_for: Duration::from_secs(60),
            restarts_enabled: true,
            desired: 3,
            servers: 3,
            committed: None,
            joiners: Vec::new(),
            non_voter_pods: Vec::new(),
            refusing_empty: Vec::new(),
            lost_probes: Vec::new(),
            restart_request: None,
        }
    }

    fn decide(&self) -> Decision {
        let now = Timestamp::from_second(NOW).unwrap();
        let since = now - self.failing_for;
        let members: Vec<MemberStatus> = self
            .voters
            .iter()
            .zip(1..)
            .map(|(&(state, _, _), myid)| MemberStatus {
                since: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(since)),
                ..MemberStatus::new(format!("zk-{}", myid - 1), myid, state)
            })
            .collect();
        let serving = members.iter().filter(|m| m.state.is_serving()).count();
        let leaders = members.iter().filter(|m| m.state == L).count();
        let quorum = quorum_size(members.len());
        let phase = match (leaders, serving) {
            (1, s) if s == members.len() => Phase::Active,
            (1, s) if s >= quorum => Phase::Degraded,
            _ => Phase::Down,
        };
        let computed = ComputedStatus {
            summary: Summary {
                phase,
                serving,
                voters: members.len(),
                quorum,
                fault_tolerance: serving.saturating_sub(quorum),
                leader: None,
                zxid: None,
                epoch: None,
            },
            leader_details: (leaders == 1).then(|| MonitorStats {
                synced_followers: Some(serving as u64 - 1),
                ..MonitorStats::default()
            }),
            members: members.clone(),
            formed_at: None,
            message: String::new(),
            answered: Myid::up_to(255)
                .zip(&members)
                .map(|(myid, m)| {
                    let lost = self.lost_probes.contains(&m.myid);
                    (myid, if lost { U } else { m.state })
                })
                .collect(),
        };
        let pods: BTreeMap<String, PodFacts> = members
            .iter()
            .zip(&self.voters)
            .map(|(m, &(_, phase, _))| {
                let facts = PodFacts {
                    phase,
                    restart_count: 0,
                    waiting_reason: None,
                    terminating: false,
                    created_at: Some(since),
                    ready: true,
                    refuses_empty_voter: false,
                    node_not_ready: None,
                };
                (m.pod.clone(), facts)
            })
            .collect();
        let voter_pods = members
            .iter()
            .zip(&self.voters)
            .map(|(m, &(_, _, revision))| (m.myid, revision));
        let non_voter_pods = self
            .non_voter_pods
            .iter()
            .map(|&(myid, revision)| (i32::from(myid), revision));
        let revisions: BTreeMap<String, PodRevision> = voter_pods
            .chain(non_voter_pods)
            .map(|(myid, revision)| {
                let pod = format!("zk-{}", myid - 1);
                let revision = PodRevision {
                    myid: Myid::try_from(myid).unwrap(),
                    revision: Some(revision.to_owned()),
                    terminating: false,
                    ready: true,
                    uid: Some(format!("uid-{pod}")),
                };
                (pod, revision)
            })
            .collect();
        let mut states = computed.answered.clone();
        states.extend(self.joiners.iter().map(|&(m, state)| (id(m), state)));
        let recorded: BTreeSet<Myid> =
            Myid::up_to(u32::try_from(self.voters.len()).unwrap()).collect();
        let scale = ScaleView {
            desired: self.desired,
            recorded: Some(recorded),
            servers: Some(self.servers),
            refusing_empty: self
                .refusing_empty
                .iter()
                .map(|&(myid, pod)| (id(myid), pod.to_owned()))
                .collect(),
            committed: self.committed.map(|read| {
                read.map(committed_membership)
                    .map_err(|error| error.to_owned())
            }),
            states,
        };
        let policy = RestartPolicy {
            enabled: self.restarts_enabled,
            threshold: Duration::from_secs(10),
        };
        decide(&Observed {
            now,
            spec: &self.spec,
            computed: &computed,
            pods: &pods,
            revisions: &revisions,
            update_revision: Some(CURRENT),
            restart_policy: &policy,
            last_restart_at: None,
            scale: &scale,
            restart_request: self.restart_request,
            node_losses: &BTreeMap::new(),
            lost_node_policy: &Default::default(),
            replace_request: None,
        })
    }
}

fn committed_membership(voters: &[u8]) -> Membership {
    let text: String = voters
        .iter()
        .map(|m| format!("server.{m}=zk-{}:2888:3888:participant;2181\n", m - 1))
        .chain(std::iter::once("version=100000003\n".to_owned()))
        .collect();
    Membership::parse(&text).unwrap()
}

fn roll_delete(decision: &Decision) -> Option<&str> {
    match &decision.disruption {
        Disruption::Roll { pod, .. } => Some(pod),
        _ => None,
    }
}

#[test]
fn an_unapplied_spec_disrupts_nothing_and_reports_no_step() {
    for spec in [SpecOutcome::Paused, SpecOutcome::Invalid("spec.x".into())] {
        let mut scenario = Scenario::steady();
        scenario.spec = spec.clone();
        // A failed member, an outdated pod and a scale pending: all left alone.
        scenario.voters[1] = (U, PodPhase::Failed, OLD);
        scenario.desired = 5;
        let decision = scenario.decide();
        assert_eq!(decision.disruption, Disruption::Nothing, "{spec:?}");
        assert_eq!((decision.roll, decision.scale), (None, None), "{spec:?}");
    }
}

#[test]
fn a_failed_members_restart_comes_before_a_roll_and_a_scale() {
    let mut scenario = Scenario::steady();
    scenario.voters[2] = (U, PodPhase::Failed, OLD);
    scenario.voters[1] = (F, PodPhase::Running, OLD);
    scenario.desired = 5;
    let decision = scenario.decide();
    assert!(
        matches!(&decision.disruption, Disruption::Restart { pod, myid, .. } if pod == "zk-2" && *myid == id(3)),
        "{decision:?}"
    );
    assert_eq!((decision.roll, decision.scale), (None, None));

    // Restarts disabled: the roll replaces the failed outdated member instead (DEGRADED).
    scenario.restarts_enabled = false;
    let decision = scenario.decide();
    assert_eq!(roll_delete(&decision), Some("zk-2"), "{decision:?}");
    assert_eq!(
        decision.scale,
        Some(ScaleStep::Wait("a roll is in progress".into()))
    );
}

#[test]
fn a_roll_goes_before_a_scale_followers_first() {
    let mut scenario = Scenario::steady();
    scenario.voters = vec![
        (L, PodPhase::Running, OLD),
        (F, PodPhase::Running, OLD),
        (F, PodPhase::Running, CURRENT),
    ];
    let decision = scenario.decide();
    assert_eq!(roll_delete(&decision), Some("zk-1"), "{decision:?}");
    // Steady membership: nothing to say about scaling while rolling.
    assert_eq!(decision.scale, None);

    scenario.desired = 5;
    scenario.committed = Some(Ok(&[1, 2, 3]));
    scenario.servers = 5;
    scenario.joiners = vec![(4, F), (5, F)];
    let decision = scenario.decide();
    assert_eq!(roll_delete(&decision), Some("zk-1"), "{decision:?}");
    assert_eq!(
        decision.scale,
        Some(ScaleStep::Wait("a roll is in progress".into()))
    );
}

#[test]
fn a_requested_restart_waits_for_the_roll_and_goes_before_a_scale() {
    let mut scenario = Scenario::steady();
    scenario.restart_request = Some("zk-0/uid-zk-0");
    let decision = scenario.decide();
    assert_eq!(roll_delete(&decision), Some("zk-0"), "{decision:?}");

    // An outdated pod: the roll goes first (it replaces zk-0 too, in its turn).
    scenario.voters[1].2 = OLD;
    assert_eq!(roll_delete(&scenario.decide()), Some("zk-1"));

    // A scale waits for it, as for any roll step.
    scenario.voters[1].2 = CURRENT;
    scenario.desired = 5;
    scenario.committed = Some(Ok(&[1, 2, 3]));
    scenario.servers = 5;
    scenario.joiners = vec![(4, F), (5, F)];
    let decision = scenario.decide();
    assert_eq!(roll_delete(&decision), Some("zk-0"), "{decision:?}");
    assert_eq!(
        decision.scale,
        Some(ScaleStep::Wait("a roll is in progress".into()))
    );

    // DEGRADED: asked, but not taken.
    let mut scenario = Scenario::steady();
    scenario.restart_request = Some("zk-0/uid-zk-0");
    scenario.voters[2].0 = N;
    scenario.failing_for = Duration::from_secs(1);
    let decision = scenario.decide();
    assert_eq!(decision.disruption, Disruption::Nothing, "{decision:?}");
    assert!(
        matches!(&decision.roll, Some(RollStep::Wait(why)) if why.contains("restart of zk-0")),
        "{decision:?}"
    );
}

#[test]
fn a_roll_waits_while_a_serving_member_is_outdated_and_the_ensemble_degraded() {
    let mut scenario = Scenario::steady();
    scenario.voters = vec![
        (L, PodPhase::Running, CURRENT),
        (F, PodPhase::Running, OLD),
        (N, PodPhase::Running, CURRENT),
    ];
    // Not failing long enough to be restarted.
    scenario.failing_for = Duration::from_secs(1);
    let decision = scenario.decide();
    assert_eq!(decision.disruption, Disruption::Nothing, "{decision:?}");
    assert!(
        matches!(decision.roll, Some(RollStep::Wait(_))),
        "{decision:?}"
    );
}

#[test]
fn scale_steps_follow_the_committed_membership() {
    // (desired, servers, committed, joiners, expected disruption, expected scale step)
    type Case = (
        u32,
        u32,
        Option<Result<&'static [u8], &'static str>>,
        Vec<(u8, MemberState)>,
        Disruption,
        Option<ScaleStep>,
    );
    let cases: Vec<Case> = vec![
        // Steady: nothing read, nothing to do.
        (3, 3, None, vec![], Disruption::Nothing, Some(ScaleStep::Steady)),
        // Up: a synced joiner is added.
        (
            5,
            5,
            Some(Ok(&[1, 2, 3])),
            vec![(4, F), (5, F)],
            Disruption::AddVoter(id(4)),
            Some(ScaleStep::AddVoter(id(4))),
        ),
        // Up: a joiner that does not serve yet is waited for.
        (
            5,
            5,
            Some(Ok(&[1, 2, 3])),
            vec![(4, N), (5, F)],
            Disruption::Nothing,
            Some(ScaleStep::Wait(
                "server 4 is not-serving; it becomes a voter once it has synced with the leader and serves".into(),
            )),
        ),
        // Down: the highest voter is removed first.
        (
            1,
            3,
            Some(Ok(&[1, 2, 3])),
            vec![],
            Disruption::RemoveVoter(id(3)),
            Some(ScaleStep::RemoveVoter(id(3))),
        ),
        // The membership could not be read: wait, and say why.
        (
            5,
            5,
            Some(Err("connection refused")),
            vec![],
            Disruption::Nothing,
            Some(ScaleStep::Wait(
                "cannot read the committed membership: connection refused".into(),
            )),
        ),
    ];
    for (desired, servers, committed, joiners, disruption, step) in cases {
        let mut scenario = Scenario::steady();
        scenario.desired = desired;
        scenario.servers = servers;
        scenario.committed = committed;
        scenario.joiners = joiners;
        let decision = scenario.decide();
        assert_eq!(decision.disruption, disruption, "{desired} {committed:?}");
        assert_eq!(decision.scale, step, "{desired} {committed:?}");
        assert_eq!(decision.roll, Some(RollStep::Done));
    }
}

#[test]
fn a_scale_step_that_would_cost_the_quorum_is_refused() {
    // 3 -> 1 while voter 2 is down: removing 3 leaves {1, 2} with 1 serving of a quorum of 2.
    let mut scenario = Scenario::steady();
    scenario.voters[1] = (U, PodPhase::Running, CURRENT);
    scenario.failing_for = Duration::from_secs(1);
    scenario.desired = 1;
    scenario.committed = Some(Ok(&[1, 2, 3]));
    let decision = scenario.decide();
    assert_eq!(decision.disruption, Disruption::Nothing, "{decision:?}");
    assert!(
        matches!(&decision.scale, Some(ScaleStep::Refuse(why)) if why.contains("removing voter 3")),
        "{decision:?}"
    );
}

#[test]
fn without_a_quorum_the_scale_waits_and_changes_nothing() {
    let mut scenario = Scenario::steady();
    scenario.voters = vec![
        (U, PodPhase::Running, CURRENT),
        (N, PodPhase::Running, CURRENT),
        (F, PodPhase::Running, CURRENT),
    ];
    scenario.failing_for = Duration::from_secs(1);
    scenario.desired = 5;
    let decision = scenario.decide();
    assert_eq!(decision.disruption, Disruption::Nothing);
    assert_eq!(
        decision.scale,
        Some(ScaleStep::Wait("the ensemble is DOWN".into()))
    );
}

#[test]
fn a_state_held_through_a_lost_probe_never_licenses_a_disruption() {
    // The status rule shows zk-1 following through one lost probe; it may be dead. A roll that
    // took zk-2 now could leave one of three serving.
    let mut scenario = Scenario::steady();
    scenario.voters[2].2 = OLD;
    scenario.lost_probes = vec![2];
    let decision = scenario.decide();
    assert_eq!(decision.disruption, Disruption::Nothing, "{decision:?}");
    assert!(
        matches!(decision.roll, Some(RollStep::Wait(_))),
        "{decision:?}"
    );
    // Answered: the roll goes on.
    scenario.lost_probes.clear();
    assert_eq!(roll_delete(&scenario.decide()), Some("zk-2"));

    // Removing voter 3 of 3 while voter 2 did not answer would leave {1, 2} with one serving.
    let mut scenario = Scenario::steady();
    scenario.desired = 1;
    scenario.committed = Some(Ok(&[1, 2, 3]));
    scenario.lost_probes = vec![2];
    let decision = scenario.decide();
    assert_eq!(decision.disruption, Disruption::Nothing, "{decision:?}");
    assert!(
        matches!(decision.scale, Some(ScaleStep::Refuse(_))),
        "{decision:?}"
    );
}

#[test]
fn a_voter_whose_volume_came_back_empty_leaves_the_voters_first() {
    // zk-2 refuses to start as a voter on an empty volume; a roll and a restart are pending too.
    let mut scenario = Scenario::steady();
    scenario.voters[2] = (U, PodPhase::Running, OLD);
    scenario.voters[1].2 = OLD;
    scenario.refusing_empty = vec![(3, "zk-2")];
    scenario.committed = Some(Ok(&[1, 2, 3]));
    let decision = scenario.decide();
    assert_eq!(
        decision.disruption,
        Disruption::RemoveVoter(id(3)),
        "{decision:?}"
    );
    assert_eq!(decision.scale, Some(ScaleStep::RemoveVoter(id(3))));

    // Not while the others would not keep a quorum: voter 2 is down too.
    let mut down = Scenario::steady();
    down.voters[1] = (U, PodPhase::Running, CURRENT);
    down.voters[2] = (U, PodPhase::Running, CURRENT);
    down.failing_for = Duration::from_secs(1);
    down.refusing_empty = vec![(3, "zk-2")];
    down.committed = Some(Ok(&[1, 2, 3]));
    let decision = down.decide();
    assert_eq!(decision.disruption, Disruption::Nothing, "{decision:?}");
    assert!(
        matches!(decision.scale, Some(ScaleStep::Refuse(_))),
        "{decision:?}"
    );

    // The membership could not be read: no voter change. The other steps go on (here the
    // stuck member's restart: it may be what brings a quorum back), and the scale says why it
    // waits.
    scenario.committed = Some(Err("timed out"));
    let decision = scenario.decide();
    assert!(
        matches!(&decision.disruption, Disruption::Restart { pod, .. } if pod == "zk-2"),
        "{decision:?}"
    );
    scenario.restarts_enabled = false;
    scenario.voters[1].2 = CURRENT;
    scenario.voters[2].2 = CURRENT;
    let decision = scenario.decide();
    assert_eq!(decision.disruption, Disruption::Nothing, "{decision:?}");
    assert!(
        matches!(decision.scale, Some(ScaleStep::Wait(_))),
        "{decision:?}"
    );

    // Removed: its pod is replaced, so that it starts again as a joining server.
    scenario.committed = Some(Ok(&[1, 2]));
    let decision = scenario.decide();
    assert!(
        matches!(&decision.disruption, Disruption::Restart { pod, myid, .. } if pod == "zk-2" && *myid == id(3)),
        "{decision:?}"
    );
}

#[test]
fn five_voters_roll_the_leader_by_handing_the_lead_over() {
    // Every follower runs the new revision; the leader (voter 5) does not.
    let mut scenario = Scenario::steady();
    scenario.voters = vec![
        (F, PodPhase::Running, CURRENT),
        (F, PodPhase::Running, CURRENT),
        (F, PodPhase::Running, CURRENT),
        (F, PodPhase::Running, CURRENT),
        (L, PodPhase::Running, OLD),
    ];
    scenario.desired = 5;
    scenario.servers = 5;
    scenario.committed = Some(Ok(&[1, 2, 3, 4, 5]));
    let decision = scenario.decide();
    assert!(
        matches!(&decision.disruption, Disruption::HandOver { myid, reason } if *myid == id(5) && reason.contains("zk-4")),
        "{decision:?}"
    );

    // Without the committed membership there is no voter change to make: it waits.
    scenario.committed = None;
    let decision = scenario.decide();
    assert_eq!(decision.disruption, Disruption::Nothing);
    assert!(
        matches!(&decision.roll, Some(RollStep::Wait(why)) if why.contains("committed membership")),
        "{decision:?}"
    );

    // Committed: voters 1-4, voter 4 leads, server 5 is an outdated non-voter, replaced first.
    scenario.voters = vec![
        (F, PodPhase::Running, CURRENT),
        (F, PodPhase::Running, CURRENT),
        (F, PodPhase::Running, CURRENT),
        (L, PodPhase::Running, CURRENT),
    ];
    scenario.committed = Some(Ok(&[1, 2, 3, 4]));
    scenario.non_voter_pods = vec![(5, OLD)];
    scenario.joiners = vec![(5, N)];
    let decision = scenario.decide();
    assert_eq!(roll_delete(&decision), Some("zk-4"), "{decision:?}");
    assert_eq!(
        decision.scale,
        Some(ScaleStep::Wait("a roll is in progress".into()))
    );

    // On the new revision and synced as a non-voting follower: added back.
    scenario.non_voter_pods = vec![(5, CURRENT)];
    scenario.joiners = vec![(5, F)];
    let decision = scenario.decide();
    assert_eq!(
        decision.disruption,
        Disruption::AddVoter(id(5)),
        "{decision:?}"
    );
}

#[test]
fn the_lead_is_not_handed_over_when_the_voters_left_would_have_no_quorum_serving() {
    // The status rule still shows voter 2 serving (one lost probe), but it did not answer this
    // round: the roll waits for ACTIVE as answered, and no voter change is made.
    let mut scenario = Scenario::steady();
    scenario.voters = vec![
        (F, PodPhase::Running, CURRENT),
        (F, PodPhase::Running, CURRENT),
        (F, PodPhase::Running, CURRENT),
        (L, PodPhase::Running, OLD),
    ];
    scenario.desired = 4;
    scenario.servers = 4;
    scenario.committed = Some(Ok(&[1, 2, 3, 4]));
    scenario.lost_probes = vec![2];
    let decision = scenario.decide();
    assert_eq!(decision.disruption, Disruption::Nothing, "{decision:?}");
    assert!(matches!(decision.roll, Some(RollStep::Wait(_))));
}

/// Found by the operator nemesis (issue 13): a volume wiped during a roll. Voter 3 left the
/// voters and joined again; the roll's last step, the leader, waited on the
/// PodDisruptionBudget (two voters tolerate no fault, so it allowed none) while the scale that
/// would add voter 3 back waited for the roll. The voters the spec asks for come first.
#[test]
fn with_two_voters_left_of_three_the_missing_voter_is_added_before_the_roll_goes_on() {
    let mut scenario = Scenario::steady();
    scenario.voters = vec![(F, PodPhase::Running, CURRENT), (L, PodPhase::Running, OLD)];
    scenario.committed = Some(Ok(&[1, 2]));
    scenario.non_voter_pods = vec![(3, CURRENT)];
    scenario.joiners = vec![(3, F)];
    let decision = scenario.decide();
    assert_eq!(
        decision.disruption,
        Disruption::AddVoter(id(3)),
        "{decision:?}"
    );
    assert!(
        matches!(&decision.roll, Some(RollStep::Wait(why)) if why.contains("voters 1, 2 cannot lose one")),
        "{decision:?}"
    );

    // Not synced yet: nothing is taken down meanwhile, and the scale says what it waits for.
    scenario.joiners = vec![(3, N)];
    let decision = scenario.decide();
    assert_eq!(decision.disruption, Disruption::Nothing, "{decision:?}");
    assert!(
        matches!(decision.roll, Some(RollStep::Wait(_))),
        "{decision:?}"
    );
    assert!(
        matches!(decision.scale, Some(ScaleStep::Wait(_))),
        "{decision:?}"
    );

    // Two voters by the spec: nothing to add, the roll goes on as before.
    scenario.desired = 2;
    scenario.servers = 2;
    scenario.non_voter_pods.clear();
    scenario.joiners.clear();
    let decision = scenario.decide();
    assert!(
        !matches!(decision.roll, Some(RollStep::Wait(_))),
        "{decision:?}"
    );

    // Three voters committed: the roll goes first, as ever.
    let mut scenario = Scenario::steady();
    scenario.voters[1].2 = OLD;
    scenario.desired = 5;
    scenario.servers = 5;
    scenario.committed = Some(Ok(&[1, 2, 3]));
    scenario.joiners = vec![(4, F), (5, F)];
    assert_eq!(roll_delete(&scenario.decide()), Some("zk-1"));
}
