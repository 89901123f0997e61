//! What may be disrupted now: the one place that picks a reconcile's single disruptive action.
//!
//! Every action that can cost an ensemble a server — deleting a failed member's pod, replacing
//! an outdated one in a roll, adding or removing a voter — is chosen here, by [`decide`], a pure
//! function of what one reconcile observed ([`Observed`]). The controller gathers the facts
//! (`controller::observe`), calls [`decide`], carries out the one [`Disruption`] it returns
//! (`controller::act`) and reports the [`Decision`] (`controller::report`). Nothing here does IO
//! or reads a clock: the time is an argument, so every rule is tested with tables below.
//!
//! The precedence keeps the quorum safe because at most one server is disrupted per round, and
//! every candidate is checked against this round's answers:
//! 1. nothing while the spec is invalid, `spec.paused` (the user asked for no change), or the
//!    children could not be applied (the operator cannot tell what the pods will run);
//! 2. a voter whose volume came back empty leaves the voters ([`empty_volume_step`]): it must
//!    never vote without what it acknowledged, and until it leaves it counts against the
//!    tolerance; once it is no longer a voter its pod is replaced, to start again as a joiner;
//! 3. a member on a node whose loss is confirmed is rebuilt elsewhere ([`lost_node::step`]):
//!    removed from the voters if its volume lives only there, then its pod and claims deleted;
//! 4. a failed member's restart ([`restart::decide_restart`]), which repairs the ensemble;
//! 5. else the next step of a roll ([`roll::next_step`]): a non-voter first, then followers,
//!    the leader last (with 4 voters or more it hands the lead over by leaving the voters,
//!    rather than forcing an election); once no pod is outdated, a restart of one member asked
//!    for on the ensemble ([`roll::requested_restart`]), under the same conditions;
//! 6. else, once no pod is outdated, the next step of a scale
//!    ([`crate::quorum::membership::next_step`]): one voter added or removed. Except when
//!    fewer than three voters are committed and the spec asks for more ([`voters_first`]): a
//!    roll step would then cost the quorum, so the voters are added first and the roll waits.
//!
//! The conditions the status shows are derived from the same decision ([`conditions`]).

pub mod conditions;
pub mod lost_node;
pub mod node;
pub mod quorum_tls;
pub mod restart;
pub mod roll;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use crate::api::{MemberState, Phase};
use crate::quorum::Myid;
use crate::quorum::membership::{self, Membership, ScaleStep};
use crate::quorum::rule::{ComputedStatus, is_serving_voter};
use lost_node::NodeLoss;
use restart::{PodFacts, RestartDecision, RestartPolicy, decide_restart};
use roll::{PodRevision, RollStep};

/// What the apply step did, for the decision and the status' conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecOutcome {
    /// The children match the spec (`changed`: this reconcile had to write some of them).
    Applied { changed: bool },
    /// `spec.paused`: the children were left alone.
    Paused,
    /// The spec cannot be turned into children; nothing was changed. The text names the field.
    Invalid(String),
    /// The children could not be applied (an API error, a child someone else owns, a damaged
    /// superuser Secret); the text names the object and what to do. Nothing is disrupted until
    /// they are, but the status keeps following the quorum.
    NotApplied(String),
}

/// What a scale step is decided from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScaleView {
    /// `spec.replicas`.
    pub desired: u32,
    /// The committed voters as recorded in the status (None: not read yet).
    pub recorded: Option<BTreeSet<Myid>>,
    /// The StatefulSet's replicas (None: no StatefulSet yet).
    pub servers: Option<u32>,
    /// The committed membership, read this round only while it may differ from the spec and a
    /// quorum serves to read it from (None: not read); Err says why it could not be read.
    pub committed: Option<Result<Membership, String>>,
    /// Servers whose pod refuses to start because the server would be a voter on an empty
    /// volume (the agent's exit code 82), by myid, with the pod's name.
    pub refusing_empty: BTreeMap<Myid, String>,
    /// What every server answered this round, voters and joiners, by myid: raw answers, never
    /// a state the status rule holds back, because a voter change is only safe on what is true
    /// now.
    pub states: BTreeMap<Myid, MemberState>,
}

impl ScaleView {
    /// Whether the membership or the StatefulSet's size is not yet what the spec asks.
    pub fn needs_reading(&self) -> bool {
        let wanted: BTreeSet<Myid> = Myid::up_to(self.desired).collect();
        self.recorded.as_ref() != Some(&wanted)
            || self.servers != Some(self.desired)
            || !self.refusing_empty.is_empty()
    }
}

/// Everything one reconcile observed that the decision reads. Plain data.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub now: Timestamp,
    pub spec: &'a SpecOutcome,
    /// The status rule's verdict on this round's probes of the voters.
    pub computed: &'a ComputedStatus,
    /// The voters' pods, by pod name (absent: no pod).
    pub pods: &'a BTreeMap<String, PodFacts>,
    /// The revision each voter's pod was created from, by pod name.
    pub revisions: &'a BTreeMap<String, PodRevision>,
    /// The StatefulSet's update revision: what every pod should run.
    pub update_revision: Option<&'a str>,
    pub restart_policy: &'a RestartPolicy,
    /// When the operator last deleted a failed member's pod.
    pub last_restart_at: Option<Timestamp>,
    pub scale: &'a ScaleView,
    /// The ensemble's [`crate::api::annotations::RESTART_MEMBER`] annotation, if any.
    pub restart_request: Option<&'a str>,
    /// Servers (voters or not) whose pod is on a node that is not Ready, or waits for a volume
    /// that lives only on such a node, by myid.
    pub node_losses: &'a BTreeMap<Myid, NodeLoss>,
    /// `spec.lostNode`.
    pub lost_node_policy: &'a lost_node::Policy,
    /// The ensemble's [`crate::api::annotations::REPLACE_MEMBER`] annotation, if any.
    pub replace_request: Option<&'a str>,
}

/// The one disruptive action of a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disruption {
    /// Leave every server alone.
    Nothing,
    /// Evict a failed member's pod so that it is recreated.
    Restart {
        pod: String,
        myid: Myid,
        reason: String,
    },
    /// Replace an outdated member's pod with the current revision.
    Roll { pod: String, reason: String },
    /// Remove the leader from the voters by reconfiguration, so that it hands the lead to a
    /// synced follower without an election: a roll's step for the leader.
    HandOver { myid: Myid, reason: String },
    /// Add this server to the voters by reconfiguration.
    AddVoter(Myid),
    /// Remove this voter by reconfiguration.
    RemoveVoter(Myid),
    /// Rebuild a member whose node is lost: evict its pod at once (the node cannot shut it
    /// down) and delete these claims, so that the StatefulSet recreates both elsewhere.
    Replace {
        pod: String,
        uid: Option<String>,
        claims: Vec<lost_node::Claim>,
        reason: String,
    },
}

/// A round's decision: the action, and where the roll and the scale stand (for the status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub disruption: Disruption,
    /// The roll's step, when the roll was looked at (not while the spec is not applied, nor in
    /// a round that restarts a member).
    pub roll: Option<RollStep>,
    /// The scale's step, when there is something to say about it.
    pub scale: Option<ScaleStep>,
    /// A failed member that is not restarted because it would not be safe, and why.
    pub restart_held: Option<String>,
    /// Where the rebuild of a member on a lost node stands, while one is under way.
    pub replacing: Option<String>,
}

/// Decides this round's single disruptive action (see the module documentation).
pub fn decide(observed: &Observed) -> Decision {
    let nothing = Decision {
        disruption: Disruption::Nothing,
        roll: None,
        scale: None,
        restart_held: None,
        replacing: None,
    };
    if !matches!(observed.spec, SpecOutcome::Applied { .. }) {
        return nothing;
    }
    if let Some(decision) = empty_volume_step(observed.scale) {
        return decision;
    }
    if let Some(replacement) = lost_node::step(
        observed.node_losses,
        observed.lost_node_policy,
        observed.replace_request,
        observed.scale,
        observed.now,
    ) {
        return Decision {
            disruption: replacement.disruption,
            scale: replacement.scale,
            replacing: Some(replacement.status),
            ..nothing
        };
    }
    let computed = observed.computed;
    let synced_voting_followers = computed
        .leader_details
        .as_ref()
        .and_then(|d| d.synced_voting_followers());
    let followers = computed.members.len().saturating_sub(1) as u64;
    let restart_held = match decide_restart(
        &computed.members,
        observed.pods,
        observed.restart_policy,
        observed.last_restart_at,
        synced_voting_followers.is_some_and(|synced| synced >= followers),
        observed.now,
    ) {
        RestartDecision::Delete { pod, myid, reason } => {
            return Decision {
                disruption: Disruption::Restart { pod, myid, reason },
                ..nothing
            };
        }
        RestartDecision::Held { why } => Some(why),
        RestartDecision::Keep { .. } => None,
    };
    let phase = phase_now(computed);
    let committed_voters = match &observed.scale.committed {
        Some(Ok(committed)) => Some(committed.voters()),
        _ => None,
    };
    let roll = match roll::next_step(
        phase,
        &computed.members,
        observed.revisions,
        observed.update_revision,
        synced_voting_followers,
        committed_voters.as_ref(),
    ) {
        RollStep::HandOver { myid, pod, reason } => {
            hand_over_step(myid, pod, reason, committed_voters.as_ref(), observed.scale)
        }
        RollStep::Done => roll::requested_restart(
            phase,
            &computed.members,
            observed.revisions,
            observed.restart_request,
            synced_voting_followers,
        ),
        step => step,
    };
    let voters_first = voters_first(committed_voters.as_ref(), observed.scale.desired);
    let roll = match (&voters_first, &roll) {
        (Some(why), RollStep::Delete { pod, .. })
            if observed.revisions.get(pod).is_some_and(|p| {
                committed_voters
                    .as_ref()
                    .is_some_and(|v| v.contains(&p.myid))
            }) =>
        {
            RollStep::Wait(why.clone())
        }
        (Some(why), RollStep::HandOver { .. }) => RollStep::Wait(why.clone()),
        _ => roll,
    };
    let scale = match roll {
        RollStep::Done => scale_step(computed.summary.phase, observed.scale),
        _ if voters_first.is_some() => scale_step(computed.summary.phase, observed.scale),
        _ => observed
            .scale
            .needs_reading()
            .then(|| ScaleStep::Wait("a roll is in progress".into())),
    };
    let disruption = match (&roll, &scale) {
        (RollStep::Delete { pod, reason }, _) => Disruption::Roll {
            pod: pod.clone(),
            reason: reason.clone(),
        },
        (RollStep::HandOver { myid, reason, .. }, _) => Disruption::HandOver {
            myid: *myid,
            reason: reason.clone(),
        },
        (_, Some(ScaleStep::AddVoter(myid))) => Disruption::AddVoter(*myid),
        (_, Some(ScaleStep::RemoveVoter(myid))) => Disruption::RemoveVoter(*myid),
        _ => Disruption::Nothing,
    };
    Decision {
        disruption,
        roll: Some(roll),
        scale,
        restart_held,
        replacing: None,
    }
}

/// A server that refuses to start as a voter on an empty volume (see `agent::server::may_start`)
/// is removed from the voters, when the others keep a quorum without it; once it is no longer
/// a voter, its pod is replaced so that it starts again with the membership in which it joins
/// (the ConfigMap's, applied before this step), syncs, and is added back by the scale.
fn empty_volume_step(view: &ScaleView) -> Option<Decision> {
    let (&myid, pod) = view.refusing_empty.iter().next()?;
    let decision = |disruption, scale| Decision {
        disruption,
        roll: None,
        scale,
        restart_held: None,
        replacing: None,
    };
    // Without the committed membership (no quorum to read it from) nothing can be removed;
    // the other steps go on: a failed member's restart may be what brings the quorum back.
    let Some(Ok(committed)) = &view.committed else {
        return None;
    };
    let voters = committed.voters();
    if !voters.contains(&myid) {
        let reason = format!(
            "pod {pod} refused to start as a voter on an empty volume; it is no longer a voter, so it starts again as a joining server"
        );
        let restart = Disruption::Restart {
            pod: pod.clone(),
            myid,
            reason,
        };
        return Some(decision(restart, None));
    }
    let mut new = voters.clone();
    new.remove(&myid);
    let change = format!("removing voter {myid}, whose volume is empty");
    Some(
        match membership::quorum_refusal(&change, &voters, &new, &view.states) {
            Some(why) => decision(Disruption::Nothing, Some(ScaleStep::Refuse(why))),
            None => decision(
                Disruption::RemoveVoter(myid),
                Some(ScaleStep::RemoveVoter(myid)),
            ),
        },
    )
}

/// Why the roll must wait for the scale, if it must: a roll step takes a voter down, and with
/// fewer than three voters committed that costs the quorum. When the spec asks for more voters
/// (a member being rebuilt, its volume lost: it left the voters and joins again; or a scale
/// up), they are added first. Otherwise the roll would wait on the PodDisruptionBudget, which
/// allows no disruption then, while the scale waited for the roll. An ensemble of one or two
/// voters by its spec has no such way out, and rolls as before.
fn voters_first(committed: Option<&BTreeSet<Myid>>, desired: u32) -> Option<String> {
    let voters = committed?;
    let count = u32::try_from(voters.len()).unwrap_or(u32::MAX);
    (count < 3 && count < desired).then(|| {
        format!(
            "voters {} cannot lose one and keep a quorum: the {} voters the spec asks for are added first",
            membership::list(voters.iter().copied()),
            desired
        )
    })
}

/// The roll's hand-over of the lead, as a voter change: only from the committed membership read
/// this round (the change is conditional on its version), and only when the voters without the
/// leader keep a quorum serving.
fn hand_over_step(
    myid: Myid,
    pod: String,
    reason: String,
    committed_voters: Option<&BTreeSet<Myid>>,
    view: &ScaleView,
) -> RollStep {
    let Some(voters) = committed_voters else {
        return RollStep::Wait(format!(
            "the leader {pod} hands the lead over by leaving the voters, which needs the committed membership; it could not be read this round"
        ));
    };
    let mut new = voters.clone();
    new.remove(&myid);
    let change = format!("removing the leader {pod} (voter {myid})");
    match membership::quorum_refusal(&change, voters, &new, &view.states) {
        Some(why) => RollStep::Wait(why),
        None => RollStep::HandOver { myid, pod, reason },
    }
}

/// The phase a disruption may go by: ACTIVE only while every voter also *answered* serving this
/// round. The status rule holds a serving member's state through one lost probe so that the
/// phase does not flap; a roll that took a server on the strength of a held state could take a
/// second one down while the first is already dead.
fn phase_now(computed: &ComputedStatus) -> Phase {
    let every_voter_answers = computed.members.iter().all(|m| {
        Myid::try_from(m.myid)
            .ok()
            .and_then(|myid| computed.answered.get(&myid))
            .is_some_and(|&state| is_serving_voter(state))
    });
    match computed.summary.phase {
        Phase::Active if !every_voter_answers => Phase::Degraded,
        phase => phase,
    }
}

/// The scale's step once no pod is outdated.
fn scale_step(phase: Phase, view: &ScaleView) -> Option<ScaleStep> {
    if !view.needs_reading() {
        return Some(ScaleStep::Steady);
    }
    if !matches!(phase, Phase::Active | Phase::Degraded) {
        // Nothing to read the membership from, and nothing it could be changed with. (A new
        // ensemble that has not formed yet has nothing to report.)
        return view
            .recorded
            .is_some()
            .then(|| ScaleStep::Wait(format!("the ensemble is {phase}")));
    }
    Some(match &view.committed {
        None => ScaleStep::Wait("the committed membership was not read".into()),
        Some(Err(error)) => {
            ScaleStep::Wait(format!("cannot read the committed membership: {error}"))
        }
        Some(Ok(committed)) => membership::next_step(&membership::ScaleFacts {
            desired: u8::try_from(view.desired).unwrap_or(0),
            committed,
            stateful_set_replicas: view
                .servers
                .map_or(0, |s| u8::try_from(s).unwrap_or(u8::MAX)),
            states: &view.states,
        }),
    })
}

#[cfg(test)]
mod tests;
