//! The status step: probe the members, run the status rule, write `.status` when it changed,
//! emit an Event on every phase change, restart (delete the pod of) a failed member, take the
//! next step of a roll, or else the next step of a scale.
//!
//! The decisions are pure and live elsewhere: the phase in `quorum::rule`, the restart in
//! `quorum::restart`, the conditions in `conditions`. What is here is the IO around them and
//! the one judgement about writes: a status that differs from the last one written only by
//! zxids (which move with every client write) is written at most every
//! [`ZXID_ONLY_WRITE_INTERVAL`], so a busy ensemble does not turn into a stream of API writes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::conditions::{self, Facts};
use super::reconcile::SpecOutcome;
use super::roll::{self, PodRevision, RollStep};
use super::{Context, Error, FIELD_MANAGER, scale};
use crate::api::{
    MemberState, MembershipStatus, Phase, ZooKeeperEnsemble, ZooKeeperEnsembleStatus,
};
use crate::build::{names, zoo_cfg};
use crate::quorum;
use crate::quorum::membership::{ScaleStep, list};
use crate::quorum::probe::Voter;
use crate::quorum::restart::{PodFacts, RestartDecision, RestartPolicy, decide_restart};
use crate::quorum::rule::{ComputedStatus, EnsembleMemory};

/// The label the StatefulSet controller puts on each pod: the revision it was created from.
const POD_REVISION_LABEL: &str = "controller-revision-hash";

/// How often a status that changed only in its zxids is written.
pub const ZXID_ONLY_WRITE_INTERVAL: Duration = Duration::from_secs(30);

/// What the operator remembers about one ensemble between reconciles.
#[derive(Clone, Debug)]
pub struct Memory {
    /// The ensemble this memory is about: a new ensemble of the same name starts afresh.
    uid: Option<String>,
    rule: EnsembleMemory,
    /// The status last written, and when. The informer's copy of the ensemble can lag behind
    /// our own writes; comparing with it would write the same status twice.
    written: Option<(ZooKeeperEnsembleStatus, Instant)>,
}

/// The server with `myid`, with the IP of its pod.
fn server(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    myid: u8,
) -> (Voter, Option<std::sync::Arc<Pod>>) {
    let namespace = ensemble.namespace().unwrap_or_default();
    let pod_name = names::pod(ensemble, u32::from(myid) - 1);
    let pod = ctx
        .stores
        .pods
        .get(&ObjectRef::new(&pod_name).within(&namespace));
    let ip = pod
        .as_ref()
        .and_then(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse().ok());
    let voter = Voter {
        myid: i32::from(myid),
        pod: pod_name,
        ip,
    };
    (voter, pod)
}

/// `status.membership` as this operator last wrote it, else as the ensemble shows it. The
/// informer's copy of the ensemble can lag behind our own writes, and the StatefulSet's size
/// must never follow a membership older than the one last read from ZooKeeper.
pub fn recorded_membership(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
) -> Option<MembershipStatus> {
    let written = ctx
        .memory
        .lock()
        .expect("status memory lock")
        .get(&ObjectRef::from(ensemble))
        .filter(|memory| memory.uid == ensemble.uid())
        .and_then(|memory| memory.written.as_ref()?.0.membership.clone());
    written.or_else(|| ensemble.status.as_ref()?.membership.clone())
}

/// The voters: the committed ones recorded, else (before the operator first read them)
/// servers 1..=replicas.
fn voter_ids(ensemble: &ZooKeeperEnsemble, recorded: Option<&MembershipStatus>) -> BTreeSet<u8> {
    scale::recorded_voters(recorded).unwrap_or_else(|| {
        let replicas = u32::try_from(ensemble.spec.replicas).unwrap_or(0);
        (1..=replicas)
            .filter_map(|m| u8::try_from(m).ok())
            .collect()
    })
}

/// True when `new` differs from `old` in more than zxids.
fn differs_beyond_zxids(old: &ZooKeeperEnsembleStatus, new: &ZooKeeperEnsembleStatus) -> bool {
    let strip = |status: &ZooKeeperEnsembleStatus| {
        let mut status = status.clone();
        status.zxid = None;
        for member in &mut status.members {
            member.zxid = None;
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
        Some((old, _)) if differs_beyond_zxids(old, new) => true,
        Some((_, at)) => now.duration_since(*at) >= ZXID_ONLY_WRITE_INTERVAL,
    }
}

/// `password`: the superuser's, when the spec was applied (scaling needs it).
pub async fn update(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    spec: &SpecOutcome,
    password: Option<&str>,
) -> Result<(), Error> {
    let namespace = ensemble.namespace().unwrap_or_default();
    let name = ensemble.name_any();
    let key = ObjectRef::from(ensemble);
    let current = ensemble.status.clone().unwrap_or_default();
    let recorded_membership = recorded_membership(ensemble, ctx);
    let voter_ids = voter_ids(ensemble, recorded_membership.as_ref());
    let voters: Vec<_> = voter_ids
        .iter()
        .map(|&myid| server(ensemble, ctx, myid))
        .collect();
    let memory = ctx
        .memory
        .lock()
        .expect("status memory lock")
        .get(&key)
        .filter(|memory| memory.uid == ensemble.uid())
        .cloned()
        .unwrap_or_else(|| Memory {
            uid: ensemble.uid(),
            rule: EnsembleMemory::from_status(&current),
            written: None,
        });
    let previous_phase = memory.rule.phase();
    let mut rule_memory = memory.rule.clone();
    let voter_list: Vec<Voter> = voters.iter().map(|(v, _)| v.clone()).collect();
    let mut computed = quorum::observe(
        &ctx.prober,
        &voter_list,
        &mut rule_memory,
        &ctx.settings.rule,
    )
    .await;
    let now = Timestamp::now();

    let stateful_set = ctx
        .stores
        .stateful_sets
        .get(&ObjectRef::new(&names::stateful_set(ensemble)).within(&namespace));
    // At most one pod is deleted per reconcile: a failed member's restart first, else the
    // next step of a roll. Neither happens while paused or with an invalid spec.
    let mut roll_step = None;
    if matches!(spec, SpecOutcome::Applied { .. }) {
        let pod_uid = |name: &str| {
            voters
                .iter()
                .find(|(v, _)| v.pod == name)
                .and_then(|(_, p)| p.as_ref()?.uid())
        };
        let pods: BTreeMap<String, PodFacts> = voters
            .iter()
            .filter_map(|(voter, pod)| Some((voter.pod.clone(), PodFacts::from_pod(pod.as_ref()?))))
            .collect();
        let decision = decide_restart(
            &computed.members,
            &pods,
            &RestartPolicy::from(&ensemble.spec.failed_member_restart),
            rule_memory.last_restart_at(),
            now,
        );
        if let RestartDecision::Delete { pod, myid, reason } = decision {
            if delete_pod(
                ensemble,
                ctx,
                &pod,
                pod_uid(&pod),
                Some(FAILED_MEMBER_GRACE_SECONDS),
            )
            .await?
            {
                ctx.metrics.member_restarted(&namespace, &name);
                tracing::warn!(%pod, %reason, "restarted a failed member");
                publish(
                    ensemble,
                    ctx,
                    EventType::Warning,
                    "MemberRestarted",
                    "RestartMember",
                    format!("deleted pod {pod} so that it is recreated: {reason}"),
                )
                .await;
            }
            rule_memory.record_restart(myid, now);
            if let Some(member) = computed.members.iter_mut().find(|m| m.myid == myid) {
                member.restarts += 1;
            }
        } else {
            let revisions: BTreeMap<String, PodRevision> = voters
                .iter()
                .filter_map(|(voter, pod)| {
                    let pod = pod.as_ref()?;
                    let revision = PodRevision {
                        revision: pod.labels().get(POD_REVISION_LABEL).cloned(),
                        terminating: pod.metadata.deletion_timestamp.is_some(),
                    };
                    Some((voter.pod.clone(), revision))
                })
                .collect();
            let update_revision = stateful_set
                .as_ref()
                .and_then(|sts| sts.status.as_ref()?.update_revision.clone());
            let step = roll::next_step(
                computed.summary.phase,
                &computed.members,
                &revisions,
                update_revision.as_deref(),
                computed
                    .leader_details
                    .as_ref()
                    .and_then(|d| d.synced_followers),
            );
            if let RollStep::Delete { pod, reason } = &step
                && delete_pod(ensemble, ctx, pod, pod_uid(pod), None).await?
            {
                tracing::info!(%pod, %reason, "rolling");
                publish(
                    ensemble,
                    ctx,
                    EventType::Normal,
                    "RollingMember",
                    "Roll",
                    reason.clone(),
                )
                .await;
            }
            roll_step = Some(step);
        }
    }

    // A scale goes only while no pod is being restarted or rolled: one change at a time.
    let replicas = u32::try_from(ensemble.spec.replicas).unwrap_or(0);
    let live_servers = stateful_set
        .as_ref()
        .and_then(|sts| sts.spec.as_ref()?.replicas)
        .and_then(|r| u32::try_from(r).ok());
    let recorded = scale::recorded_voters(recorded_membership.as_ref());
    let mut scale_step = None;
    let mut membership = recorded_membership;
    let has_quorum = matches!(computed.summary.phase, Phase::Active | Phase::Degraded);
    if let (Some(password), Some(RollStep::Done)) = (password, &roll_step) {
        if !scale::needs_reading(replicas, recorded.as_ref(), live_servers) {
            scale_step = Some(ScaleStep::Steady);
            if let Some(m) = membership.as_mut() {
                m.scaling = None;
            }
        } else if !has_quorum {
            // Nothing to read the membership from, and nothing it could be changed with. (A
            // new ensemble that has not formed yet has nothing to report.)
            let why = format!("the ensemble is {}", computed.summary.phase);
            scale_step = recorded.is_some().then_some(ScaleStep::Wait(why));
        } else {
            let outcome =
                scale_once(ensemble, ctx, password, &voter_ids, &computed, live_servers).await;
            // A failed change is tried again at the next round; until then, say why.
            let step = match &outcome.error {
                Some(error) => ScaleStep::Wait(format!("{} failed: {error}", outcome.step)),
                None => outcome.step,
            };
            membership = match &outcome.committed {
                Some(committed) => Some(scale::membership_status(committed, &step)),
                None => membership.map(|m| MembershipStatus {
                    scaling: Some(step.to_string()),
                    ..m
                }),
            };
            scale_step = Some(step);
        }
    } else if matches!(roll_step, Some(RollStep::Wait(_) | RollStep::Delete { .. }))
        && scale::needs_reading(replicas, recorded.as_ref(), live_servers)
    {
        scale_step = Some(ScaleStep::Wait("a roll is in progress".into()));
    }

    let last_written = memory.written.clone();
    let previous_conditions = last_written
        .as_ref()
        .map_or(&current.conditions, |(s, _)| &s.conditions)
        .clone();
    let mut status = current.clone();
    computed.write_into(&mut status);
    status.membership = membership;
    status.connect_string = Some(names::connect_string(
        &name,
        &namespace,
        replicas,
        &ctx.settings.build.cluster_domain,
    ));
    status.observed_generation = ensemble.meta().generation;
    status.conditions = conditions::conditions(
        &Facts {
            phase: computed.summary.phase,
            quorum_summary: &computed.message,
            spec,
            replicas: ensemble.spec.replicas,
            stateful_set: stateful_set.as_deref(),
            roll: roll_step.as_ref(),
            scale: scale_step.as_ref(),
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
        write_status(ensemble, ctx, &status).await?;
        Some((status.clone(), Instant::now()))
    } else {
        baseline
    };
    ctx.memory.lock().expect("status memory lock").insert(
        key,
        Memory {
            uid: ensemble.uid(),
            rule: rule_memory,
            written,
        },
    );

    let phase = computed.summary.phase;
    ctx.metrics.phase(&namespace, &name, phase);
    if previous_phase != Some(phase) {
        publish_phase_event(ensemble, ctx, previous_phase, phase, &computed.message).await;
    }
    publish_condition_events(ensemble, ctx, &previous_conditions, &status.conditions).await;
    Ok(())
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

/// How long a failed member gets to exit when the operator restarts it. A frozen or wedged
/// JVM would only use up the pod's whole grace period (30 s) before the kubelet kills it, and
/// ZooKeeper needs no clean shutdown for its data: its transaction log is synced on every write.
const FAILED_MEMBER_GRACE_SECONDS: u32 = 5;

/// Deletes a member's pod (the one with `uid`) so that the StatefulSet recreates it, with
/// `grace_period_seconds` instead of the pod's own when set. Returns false when the pod was
/// already gone or replaced: what the delete was for has happened.
async fn delete_pod(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    pod: &str,
    uid: Option<String>,
    grace_period_seconds: Option<u32>,
) -> Result<bool, Error> {
    let api: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        &ensemble.namespace().unwrap_or_default(),
    );
    // The uid precondition makes sure we delete the pod we judged, never its replacement.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        grace_period_seconds,
        ..DeleteParams::default()
    };
    match api.delete(pod, &params).await {
        Ok(_) => {
            ctx.metrics.api_write("Pod");
            Ok(true)
        }
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(source) => Err(Error::DeletePod {
            pod: pod.to_owned(),
            source,
        }),
    }
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
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    current: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) {
    for condition in current {
        let is_new = !previous.iter().any(|p| {
            p.type_ == condition.type_
                && p.status == condition.status
                && p.message == condition.message
        });
        let warning = match condition.type_.as_str() {
            conditions::INVALID_SPEC | conditions::EVEN_REPLICAS => true,
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

/// One scale step (see [`scale`]): the states of the voters (from this round) and of the
/// servers beyond them (probed here), then the step, with an Event for a voter change.
async fn scale_once(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    password: &str,
    voter_ids: &BTreeSet<u8>,
    computed: &ComputedStatus,
    live_servers: Option<u32>,
) -> scale::Outcome {
    let namespace = ensemble.namespace().unwrap_or_default();
    let name = ensemble.name_any();
    let servers = live_servers.unwrap_or(0);
    let others: Vec<Voter> = (1..=servers)
        .filter_map(|m| u8::try_from(m).ok())
        .filter(|m| !voter_ids.contains(m))
        .map(|m| server(ensemble, ctx, m).0)
        .collect();
    let round = ctx.prober.probe(&others).await;
    let mut states: BTreeMap<u8, MemberState> = computed
        .members
        .iter()
        .filter_map(|m| Some((u8::try_from(m.myid).ok()?, m.state)))
        .collect();
    for observation in &round.observations {
        if let Ok(myid) = u8::try_from(observation.myid) {
            states.insert(myid, observation.state());
        }
    }
    // The membership is read and changed through the servers that serve.
    let addresses: Vec<std::net::IpAddr> = states
        .iter()
        .filter(|(_, state)| state.is_serving())
        .filter_map(|(&m, _)| server(ensemble, ctx, m).0.ip)
        .collect();
    let desired = u8::try_from(ensemble.spec.replicas).unwrap_or(0);
    let started = Instant::now();
    let outcome = scale::step(
        &ctx.reconfigurer,
        password,
        &addresses,
        desired,
        u8::try_from(servers).unwrap_or(u8::MAX),
        &states,
        |myid| {
            zoo_cfg::server_line(
                &name,
                &namespace,
                u32::from(myid) - 1,
                &ctx.settings.build.cluster_domain,
            )
        },
    )
    .await;
    let took = started.elapsed();
    let change = match &outcome.step {
        ScaleStep::AddVoter(myid) => Some(("AddedVoter", "AddVoter", *myid)),
        ScaleStep::RemoveVoter(myid) => Some(("RemovedVoter", "RemoveVoter", *myid)),
        _ => None,
    };
    if let Some((reason, action, myid)) = change {
        let pod = names::pod(ensemble, u32::from(myid) - 1);
        match (&outcome.error, &outcome.committed) {
            (None, Some(committed)) => {
                let note = format!(
                    "{} (pod {pod}): committed version 0x{}, voters {} ({} ms)",
                    outcome.step,
                    committed.version_hex(),
                    list(committed.voters()),
                    took.as_millis()
                );
                tracing::info!(%note, "membership changed");
                publish(ensemble, ctx, EventType::Normal, reason, action, note).await;
            }
            (error, _) => {
                let note = format!(
                    "{} (pod {pod}) failed: {}",
                    outcome.step,
                    error.as_ref().map_or_else(String::new, ToString::to_string)
                );
                tracing::warn!(%note, "membership change failed");
                publish(
                    ensemble,
                    ctx,
                    EventType::Warning,
                    "ScaleFailed",
                    action,
                    note,
                )
                .await;
            }
        }
    }
    outcome
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
