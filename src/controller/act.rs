//! Act: carry out the one [`Disruption`] a round decided, with its Event and metric.
//!
//! Deciding is done (`crate::decide`); this is only the IO: a pod deleted (with its uid as a
//! precondition, so that a replacement is never the one deleted) or a voter added or removed
//! by reconfiguration, conditional on the committed membership observed this round.

use std::time::Instant;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, EvictParams, Preconditions};
use kube::runtime::events::EventType;

use super::observe::{self, Observation};
use super::report::publish;
use super::{Context, Error};
use crate::api::ZooKeeperEnsemble;
use crate::build::{names, zoo_cfg};
use crate::decide::Disruption;
use crate::decide::lost_node::Claim;
use crate::quorum::Myid;
use crate::quorum::membership::{Membership, ScaleStep, list};

/// How long a failed member gets to exit when the operator restarts it. A frozen or wedged
/// JVM would only use up the pod's whole grace period (30 s) before the kubelet kills it, and
/// ZooKeeper needs no clean shutdown for its data: its transaction log is synced on every write.
const FAILED_MEMBER_GRACE_SECONDS: u32 = 5;

/// What carrying out a disruption did, for the report.
#[derive(Debug, Default)]
pub struct Acted {
    /// The committed membership after a voter change that succeeded.
    pub committed: Option<Membership>,
    /// Why the disruption did not happen (a voter change failed, or the PodDisruptionBudget
    /// refused an eviction); it is decided again at the next round.
    pub failure: Option<String>,
}

impl Acted {
    fn failed(why: String) -> Self {
        Self {
            committed: None,
            failure: Some(why),
        }
    }
}

/// Carries out `disruption`. `password` is the superuser's (a voter change needs it).
pub async fn act(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    observation: &Observation,
    disruption: &Disruption,
    password: Option<&str>,
) -> Result<Acted, Error> {
    if *disruption == Disruption::Nothing {
        return Ok(Acted::default());
    }
    // Checked right before the step, not at the start of the reconcile: a probe round and the
    // membership read may have taken seconds.
    super::progress::at("checking the leader-election Lease");
    ctx.fence.check().await?;
    let uid = |pod: &str| observation.revisions.get(pod)?.uid.clone();
    match disruption {
        Disruption::Nothing => {}
        Disruption::Restart { pod, myid, reason } => {
            // The failure may rest on an answer that stood in for a probe (the member was left
            // alone for failing, `quorum::backoff`): ask it once more. One that serves again
            // is not restarted.
            let (member, _) = observe::server(ensemble, ctx, *myid);
            super::progress::at("asking a failed member once more");
            let asked = super::tls::prober(ensemble, ctx)
                .probe_now(std::slice::from_ref(&member))
                .await;
            if let Some(now) = asked.observations.first()
                && now.state().is_serving()
            {
                tracing::info!(%pod, "a failed member serves again; not restarted");
                return Ok(Acted::default());
            }
            let grace = Some(FAILED_MEMBER_GRACE_SECONDS);
            match evict_pod(ensemble, ctx, pod, uid(pod), grace).await? {
                Removal::Evicted => {
                    ctx.metrics.member_restarted(
                        &ensemble.namespace().unwrap_or_default(),
                        &ensemble.name_any(),
                    );
                    tracing::warn!(%pod, %reason, "restarted a failed member");
                    let note = format!("evicted pod {pod} so that it is recreated: {reason}");
                    let (type_, reason) = (EventType::Warning, "MemberRestarted");
                    publish(ensemble, ctx, type_, reason, "RestartMember", note).await;
                }
                Removal::Gone => {}
                Removal::Refused(why) => return Ok(refused(ensemble, ctx, pod, &why).await),
            }
        }
        Disruption::Roll { pod, reason } => {
            match evict_pod(ensemble, ctx, pod, uid(pod), None).await? {
                Removal::Evicted => {
                    tracing::info!(%pod, %reason, "rolling");
                    let note = reason.clone();
                    publish(
                        ensemble,
                        ctx,
                        EventType::Normal,
                        "RollingMember",
                        "Roll",
                        note,
                    )
                    .await;
                }
                Removal::Gone => {}
                Removal::Refused(why) => return Ok(refused(ensemble, ctx, pod, &why).await),
            }
        }
        Disruption::Replace {
            pod,
            uid,
            claims,
            reason,
        } => {
            // The claims first, then the pod (what Kubernetes' StatefulSet documentation asks
            // of a manual recovery): a claim in use stays until its pod is gone, and the pod's
            // replacement then waits for the claim the StatefulSet makes anew.
            for claim in claims {
                delete_claim(ensemble, ctx, claim).await?;
            }
            // Grace period 0: the node cannot run a shutdown, and the pod would stay
            // Terminating until it answers, which a lost node never does.
            match evict_pod(ensemble, ctx, pod, uid.clone(), Some(0)).await? {
                Removal::Evicted | Removal::Gone => {
                    tracing::warn!(%pod, %reason, "rebuilding a member on a lost node");
                    let names: Vec<&str> = claims.iter().map(|c| c.name.as_str()).collect();
                    let note = if names.is_empty() {
                        format!("evicted pod {pod}: {reason}")
                    } else {
                        format!(
                            "deleted claims {} and evicted pod {pod}: {reason}",
                            names.join(", ")
                        )
                    };
                    let (type_, reason) = (EventType::Warning, "ReplacingMember");
                    publish(ensemble, ctx, type_, reason, "ReplaceMember", note).await;
                }
                Removal::Refused(why) => return Ok(refused(ensemble, ctx, pod, &why).await),
            }
        }
        Disruption::AddVoter(_) | Disruption::RemoveVoter(_) | Disruption::HandOver { .. } => {
            // The decision saw the committed membership, and a password: the spec was applied.
            if let (Some(Ok(committed)), Some(password)) = (&observation.scale.committed, password)
            {
                return Ok(change_voters(
                    ensemble,
                    ctx,
                    observation,
                    disruption,
                    committed,
                    password,
                )
                .await);
            }
        }
    }
    Ok(Acted::default())
}

async fn refused(ensemble: &ZooKeeperEnsemble, ctx: &Context, pod: &str, why: &str) -> Acted {
    let detail = super::budget::refusal_detail(ensemble, ctx).await;
    tracing::info!(%pod, %why, %detail, "eviction refused by the PodDisruptionBudget");
    Acted::failed(format!(
        "the PodDisruptionBudget refused the eviction of {pod} ({why}){detail}; waiting until \
         it allows one"
    ))
}

/// Adds or removes a voter (`disruption`: AddVoter, RemoveVoter or HandOver), conditional on
/// the `committed` membership's version, and publishes the outcome.
async fn change_voters(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    observation: &Observation,
    disruption: &Disruption,
    committed: &Membership,
    password: &str,
) -> Acted {
    let addresses = &observation.membership_access.addresses;
    let login = observation.membership_access.login(password);
    let started = Instant::now();
    super::progress::at("changing the voters");
    // (outcome, what was asked, the Event's reason when done and when failed, its action)
    let (result, what, (done, failed), action) = match disruption {
        Disruption::AddVoter(myid) => {
            let line = zoo_cfg::server_line(
                &ensemble.name_any(),
                &ensemble.namespace().unwrap_or_default(),
                myid.ordinal(),
                &ctx.settings.build.cluster_domain,
            );
            let result = ctx
                .reconfigurer
                .add_voter(addresses, login, committed, *myid, &line)
                .await;
            let what = voter_change(ensemble, &ScaleStep::AddVoter(*myid), *myid);
            (result, what, ("AddedVoter", "ScaleFailed"), "AddVoter")
        }
        Disruption::RemoveVoter(myid) => {
            let result = ctx
                .reconfigurer
                .remove_voter(addresses, login, committed, *myid)
                .await;
            let what = voter_change(ensemble, &ScaleStep::RemoveVoter(*myid), *myid);
            (result, what, ("RemovedVoter", "ScaleFailed"), "RemoveVoter")
        }
        Disruption::HandOver { myid, reason } => {
            let result = ctx
                .reconfigurer
                .remove_voter(addresses, login, committed, *myid)
                .await;
            let reasons = ("HandedOverLead", "HandOverFailed");
            (result, reason.clone(), reasons, "Roll")
        }
        Disruption::Nothing
        | Disruption::Restart { .. }
        | Disruption::Roll { .. }
        | Disruption::Replace { .. } => {
            return Acted::default();
        }
    };
    let took = started.elapsed();
    match result {
        Ok(now) => {
            let note = format!(
                "{what}: committed version 0x{}, voters {} ({} ms)",
                now.version_hex(),
                list(now.voters()),
                took.as_millis()
            );
            tracing::info!(%note, "membership changed");
            publish(ensemble, ctx, EventType::Normal, done, action, note).await;
            Acted {
                committed: Some(now),
                failure: None,
            }
        }
        Err(error) => {
            let note = format!("{what} failed: {error}");
            tracing::warn!(%note, "membership change failed");
            publish(ensemble, ctx, EventType::Warning, failed, action, note).await;
            Acted::failed(error.to_string())
        }
    }
}

/// `adding server 4 as a voter (pod zk-3)`.
fn voter_change(ensemble: &ZooKeeperEnsemble, step: &ScaleStep, myid: Myid) -> String {
    format!("{step} (pod {})", names::pod(ensemble, myid.ordinal()))
}

/// What became of a pod the operator asked to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Evicted: it terminates and the StatefulSet recreates it.
    Evicted,
    /// Already gone or replaced: what the eviction was for has happened.
    Gone,
    /// The PodDisruptionBudget allows no disruption now (HTTP 429); why, as the API said.
    Refused(String),
}

/// Evicts a member's pod (the one with `uid`) so that the StatefulSet recreates it, with
/// `grace_period_seconds` instead of the pod's own when set.
///
/// Through the Eviction API rather than a delete, so that the PodDisruptionBudget holds against
/// everyone at once: a `kubectl drain` racing a roll can never take a second server, because
/// both go through the same budget, and whichever comes second gets a 429 and waits.
async fn evict_pod(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    pod: &str,
    uid: Option<String>,
    grace_period_seconds: Option<u32>,
) -> Result<Removal, Error> {
    let api: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        &ensemble.namespace().unwrap_or_default(),
    );
    // The uid precondition makes sure we evict the pod we judged, never its replacement.
    let params = EvictParams {
        delete_options: Some(DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            grace_period_seconds,
            ..DeleteParams::default()
        }),
        ..EvictParams::default()
    };
    super::progress::at("evicting a pod");
    match api.evict(pod, &params).await {
        Ok(_) => {
            ctx.metrics.api_write("Pod");
            Ok(Removal::Evicted)
        }
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Ok(Removal::Gone)
        }
        Err(kube::Error::Api(status)) if status.code == 429 => Ok(Removal::Refused(status.message)),
        Err(source) => Err(Error::RemovePod {
            pod: pod.to_owned(),
            source,
        }),
    }
}

/// Deletes a member's volume claim, while it is still the one the decision saw (its uid).
async fn delete_claim(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    claim: &Claim,
) -> Result<(), Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(
        ctx.client.clone(),
        &ensemble.namespace().unwrap_or_default(),
    );
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: claim.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    super::progress::at("deleting a volume claim");
    match api.delete(&claim.name, &params).await {
        Ok(_) => {
            ctx.metrics.api_write("PersistentVolumeClaim");
            Ok(())
        }
        // Gone, or another claim of that name by now: what the deletion was for has happened.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(source) => Err(Error::DeleteClaim {
            claim: claim.name.clone(),
            source,
        }),
    }
}
