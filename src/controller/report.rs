//! Report: the status, its conditions, and Events, from a round's observation, decision and
//! what was done.
//!
//! The one judgement here is about writes: a status that differs from the last one written only
//! by zxids (which move with every client write) and the members' client counters (latency and
//! connections, which move with every request) is written at most every
//! [`ZXID_ONLY_WRITE_INTERVAL`], so a busy ensemble does not turn into a stream of API writes.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::act::Acted;
use super::memory::{CredentialsStatus, Memory};
use super::observe::Observation;
use super::{Context, Error, FIELD_MANAGER, scale};
use crate::api::{
    MembershipStatus, Phase, ZooKeeperEnsemble, ZooKeeperEnsembleStatus, annotations,
};
use crate::build::names;
use crate::decide::conditions::{self, Facts};
use crate::decide::roll::RollStep;
use crate::decide::{Decision, Disruption, SpecOutcome};
use crate::quorum::membership::{Membership, ScaleStep};

/// How often a status that changed only in its zxids and client counters is written.
pub const ZXID_ONLY_WRITE_INTERVAL: Duration = Duration::from_secs(30);

/// Writes the status when it changed, remembers the round, and publishes the Events of phase
/// and condition changes.
pub async fn report(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    spec: &SpecOutcome,
    observation: Observation,
    decision: &Decision,
    acted: Acted,
) -> Result<(), Error> {
    let namespace = ensemble.namespace().unwrap_or_default();
    let name = ensemble.name_any();
    let Observation {
        now,
        mut memory,
        previous_phase,
        mut computed,
        recorded_membership,
        stateful_set,
        scale: scale_view,
        credentials,
        ..
    } = observation;
    let mut roll_step = decision.roll.clone();
    let mut scale_step = decision.scale.clone();
    let mut replacing = decision.replacing.clone();
    // What did not happen is decided again at the next round; until then, say why.
    match (&decision.disruption, acted.failure) {
        (Disruption::Restart { myid, .. }, None) => {
            memory.rule.record_restart(*myid, now);
            if let Some(member) = computed
                .members
                .iter_mut()
                .find(|m| m.myid == i32::from(*myid))
            {
                member.restarts += 1;
            }
        }
        (Disruption::Roll { .. }, Some(why)) => roll_step = Some(RollStep::Wait(why)),
        (Disruption::HandOver { .. }, Some(why)) => {
            roll_step = Some(RollStep::Wait(format!(
                "handing the lead over failed: {why}"
            )));
        }
        (Disruption::Replace { .. }, Some(why)) => {
            replacing = replacing.map(|step| format!("{step}; this step failed: {why}"));
        }
        (Disruption::AddVoter(_) | Disruption::RemoveVoter(_), Some(error)) => {
            if let Some(step) = &decision.scale {
                scale_step = Some(ScaleStep::Wait(format!("{step} failed: {error}")));
            }
        }
        _ => {}
    }
    let committed = acted.committed.as_ref().or(scale_view
        .committed
        .as_ref()
        .and_then(|read| read.as_ref().ok()));
    let membership = membership_status(
        recorded_membership,
        scale_step.as_ref(),
        committed,
        scale_view.committed.as_ref(),
    );

    let current = ensemble.status.clone().unwrap_or_default();
    let last_written = memory.written.clone();
    let previous_conditions = last_written
        .as_ref()
        .map_or(&current.conditions, |(s, _)| &s.conditions)
        .clone();
    let mut status = current;
    computed.write_into(&mut status);
    status.membership = membership;
    if let Some(CredentialsStatus {
        quorum_tls,
        client_ca_not_after,
    }) = credentials
    {
        let not_after = quorum_tls.certificate_not_after.as_ref().map(|at| at.0);
        ctx.metrics
            .quorum_certificate_expiry(&namespace, &name, not_after);
        status.quorum_tls = Some(quorum_tls);
        ctx.metrics
            .client_ca_expiry(&namespace, &name, client_ca_not_after);
        status.client_ca_not_after = client_ca_not_after.map(Time);
    }
    status.connect_string = Some(names::connect_string(
        &name,
        &namespace,
        u32::try_from(ensemble.spec.replicas).unwrap_or(0),
        &ctx.settings.build.cluster_domain,
    ));
    status.observed_generation = ensemble.meta().generation;
    let annotation_problems = annotations::problems(ensemble.annotations());
    status.conditions = conditions::conditions(
        &Facts {
            phase: computed.summary.phase,
            quorum_summary: &computed.message,
            spec,
            replicas: ensemble.spec.replicas,
            stateful_set: stateful_set.as_deref(),
            roll: roll_step.as_ref(),
            scale: scale_step.as_ref(),
            restart_held: decision.restart_held.as_deref(),
            replacing: replacing.as_deref(),
            annotation_problems: &annotation_problems,
            generation: ensemble.meta().generation,
        },
        &previous_conditions,
        &Time(now),
    );

    let baseline = last_written.or_else(|| {
        ensemble
            .status
            .clone()
            .map(|s| (s, Instant::now() - ZXID_ONLY_WRITE_INTERVAL))
    });
    let written = if should_write(&status, baseline.as_ref(), Instant::now()) {
        super::progress::at("writing the status");
        write_status(ensemble, ctx, &status).await?;
        Some((status.clone(), Instant::now()))
    } else {
        baseline
    };
    ctx.remember(ensemble, Memory { written, ..memory });

    let phase = computed.summary.phase;
    ctx.metrics.phase(&namespace, &name, phase);
    ctx.metrics
        .fault_tolerance(&namespace, &name, computed.summary.fault_tolerance);
    ctx.metrics.members(&namespace, &name, &status.members);
    if previous_phase != Some(phase) {
        publish_phase_event(ensemble, ctx, previous_phase, phase, &computed.message).await;
    }
    publish_condition_events(ensemble, ctx, &previous_conditions, &status.conditions).await;
    Ok(())
}

/// `status.membership` after a round: what was read from ZooKeeper (or committed by this
/// round's change) with the step, else the recorded one with the step's news.
fn membership_status(
    recorded: Option<MembershipStatus>,
    step: Option<&ScaleStep>,
    committed: Option<&Membership>,
    read: Option<&Result<Membership, String>>,
) -> Option<MembershipStatus> {
    match (step, committed) {
        (Some(step), Some(committed)) => Some(scale::membership_status(committed, step)),
        (Some(ScaleStep::Steady), None) => {
            recorded.map(|m| MembershipStatus { scaling: None, ..m })
        }
        // Read or changed by a roll (its leader's hand-over) while no scale was under way:
        // recorded as it is, so the next round's voters are the committed ones.
        (None, Some(committed)) => Some(scale::membership_status(committed, &ScaleStep::Steady)),
        // The membership could not be read: the recorded one, with why.
        (Some(step), None) if matches!(read, Some(Err(_))) => recorded.map(|m| MembershipStatus {
            scaling: Some(step.to_string()),
            ..m
        }),
        _ => recorded,
    }
}

/// True when `new` differs from `old` in more than zxids and client counters.
fn differs_beyond_counters(old: &ZooKeeperEnsembleStatus, new: &ZooKeeperEnsembleStatus) -> bool {
    let strip = |status: &ZooKeeperEnsembleStatus| {
        let mut status = status.clone();
        status.zxid = None;
        for member in &mut status.members {
            member.zxid = None;
            member.latency = None;
            member.connections = None;
        }
        status
    };
    strip(old) != strip(new)
}

/// Whether to write `new`, given the status last written and when.
fn should_write(
    new: &ZooKeeperEnsembleStatus,
    last: Option<&(ZooKeeperEnsembleStatus, Instant)>,
    now: Instant,
) -> bool {
    match last {
        None => true,
        Some((old, _)) if old == new => false,
        Some((old, _)) if differs_beyond_counters(old, new) => true,
        Some((_, at)) => now.duration_since(*at) >= ZXID_ONLY_WRITE_INTERVAL,
    }
}

async fn write_status(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    status: &ZooKeeperEnsembleStatus,
) -> Result<(), Error> {
    let api: Api<ZooKeeperEnsemble> = Api::namespaced(
        ctx.client.clone(),
        &ensemble.namespace().unwrap_or_default(),
    );
    let patch = json!({
        "apiVersion": ZooKeeperEnsemble::api_version(&()),
        "kind": ZooKeeperEnsemble::kind(&()),
        "status": status,
    });
    api.patch_status(
        &ensemble.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Status)?;
    ctx.metrics.api_write("ZooKeeperEnsembleStatus");
    Ok(())
}

async fn publish_phase_event(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    previous: Option<Phase>,
    phase: Phase,
    message: &str,
) {
    let type_ = match phase {
        Phase::Degraded | Phase::Down => EventType::Warning,
        Phase::Pending | Phase::Active => EventType::Normal,
    };
    let from = previous.map_or_else(|| "none".to_owned(), |p| p.to_string());
    publish(
        ensemble,
        ctx,
        type_,
        match phase {
            Phase::Pending => "Pending",
            Phase::Active => "Active",
            Phase::Degraded => "Degraded",
            Phase::Down => "Down",
        },
        "ObserveQuorum",
        format!("{from} -> {phase}: {message}"),
    )
    .await;
}

/// Events for conditions that report a problem with the spec, when they appear.
async fn publish_condition_events(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    previous: &[Condition],
    current: &[Condition],
) {
    for condition in current {
        let is_new = !previous.iter().any(|p| {
            p.type_ == condition.type_
                && p.status == condition.status
                && p.message == condition.message
        });
        let warning = match condition.type_.as_str() {
            conditions::INVALID_SPEC | conditions::EVEN_REPLICAS | conditions::APPLY_FAILED => true,
            conditions::SCALING if condition.reason == conditions::SCALE_REFUSED => true,
            conditions::PAUSED => false,
            _ => continue,
        };
        if is_new && condition.status == "True" {
            let type_ = if warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            publish(
                ensemble,
                ctx,
                type_,
                &condition.reason,
                "ValidateSpec",
                condition.message.clone(),
            )
            .await;
        }
    }
}

/// Publishes an Event about the ensemble. A failed Event is logged, never fatal.
pub async fn publish(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    super::progress::at("publishing an Event");
    if let Err(error) = ctx.events.publish(&event, &ensemble.object_ref(&())).await {
        tracing::warn!(%error, reason, "could not publish an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MemberState, MemberStatus};

    fn status(zxid: &str, phase: Phase) -> ZooKeeperEnsembleStatus {
        ZooKeeperEnsembleStatus {
            phase: Some(phase),
            zxid: Some(zxid.into()),
            members: vec![MemberStatus {
                pod: "zk-0".into(),
                myid: 1,
                state: MemberState::Leader,
                reason: None,
                zxid: Some(zxid.into()),
                latency: Some("0/0.5/4".into()),
                connections: Some(2),
                since: None,
                restarts: 0,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn writes_only_real_changes_and_throttles_zxid_churn() {
        let start = Instant::now();
        let written = (status("0x100000001", Phase::Active), start);
        // Nothing changed: no write.
        assert!(!should_write(
            &status("0x100000001", Phase::Active),
            Some(&written),
            start
        ));
        // Only zxids moved: not before the interval, then yes.
        let moved = status("0x100000009", Phase::Active);
        assert!(!should_write(
            &moved,
            Some(&written),
            start + Duration::from_secs(1)
        ));
        assert!(should_write(
            &moved,
            Some(&written),
            start + ZXID_ONLY_WRITE_INTERVAL
        ));
        // So do the client counters.
        let mut busier = status("0x100000001", Phase::Active);
        busier.members[0].latency = Some("0/0.7/30".into());
        busier.members[0].connections = Some(40);
        assert!(!should_write(
            &busier,
            Some(&written),
            start + Duration::from_secs(1)
        ));
        assert!(should_write(
            &busier,
            Some(&written),
            start + ZXID_ONLY_WRITE_INTERVAL
        ));
        // A phase change is written at once, zxid moves or not.
        assert!(should_write(
            &status("0x100000009", Phase::Degraded),
            Some(&written),
            start
        ));
        // Nothing written yet: write.
        assert!(should_write(&moved, None, start));
    }
}
