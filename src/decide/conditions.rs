//! The status conditions, derived purely from the phase, the apply outcome and the StatefulSet.
//!
//! Conditions follow the Kubernetes convention: a condition's `lastTransitionTime` moves only
//! when its `status` flips, so `kubectl describe` tells how long the ensemble has been degraded,
//! not when the operator last looked.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::SpecOutcome;
use super::roll::RollStep;
use crate::api::Phase;
use crate::quorum::membership::ScaleStep;

pub const AVAILABLE: &str = "Available";
pub const DEGRADED: &str = "Degraded";
pub const PROGRESSING: &str = "Progressing";
pub const PAUSED: &str = "Paused";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const EVEN_REPLICAS: &str = "EvenReplicas";
pub const SCALING: &str = "Scaling";
/// The children could not be applied; the message names the object and what to do.
pub const APPLY_FAILED: &str = "ApplyFailed";
/// The Scaling condition's reason when the next step would lose the quorum.
pub const SCALE_REFUSED: &str = "ScaleRefused";
/// A failed member is not restarted because it would not be safe; the message says why and
/// what an administrator may confirm.
pub const RESTART_HELD: &str = "RestartHeld";
/// A member on a lost node is being rebuilt elsewhere; the message says which, why, and the
/// step it is at.
pub const MEMBER_REPLACEMENT: &str = "MemberReplacement";
/// True while a `zooherd.dev/restartMember` or `zooherd.dev/replaceMember` annotation cannot
/// be read (see `api::annotations::problems`).
pub const INVALID_ANNOTATION: &str = "InvalidAnnotation";

/// What the conditions are computed from.
pub struct Facts<'a> {
    pub phase: Phase,
    /// e.g. "2 of 3 voters serving; zk-1 unreachable (connection refused)".
    pub quorum_summary: &'a str,
    pub spec: &'a SpecOutcome,
    pub replicas: i32,
    pub stateful_set: Option<&'a StatefulSet>,
    /// This reconcile's step of the operator-driven roll, if it looked at one.
    pub roll: Option<&'a RollStep>,
    /// This reconcile's step of a scale, if it looked at one.
    pub scale: Option<&'a ScaleStep>,
    /// Why a failed member is not restarted, when that is for safety.
    pub restart_held: Option<&'a str>,
    /// Where the rebuild of a member on a lost node stands.
    pub replacing: Option<&'a str>,
    /// The ensemble's annotations that cannot be read, each with the fix.
    pub annotation_problems: &'a [String],
    pub generation: Option<i64>,
}

struct Desired {
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

fn rollout_in_progress(sts: Option<&StatefulSet>, replicas: i32) -> Option<String> {
    let Some(sts) = sts else {
        return Some("creating the StatefulSet".into());
    };
    // While a scale runs the StatefulSet has more or fewer pods than spec.replicas voters.
    let replicas = sts
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(replicas);
    let status = sts.status.clone().unwrap_or_default();
    if status.observed_generation < sts.metadata.generation {
        return Some("the StatefulSet controller has not seen the latest spec yet".into());
    }
    let ready = status.ready_replicas.unwrap_or(0);
    if status.replicas != replicas || ready < replicas {
        return Some(format!("{ready} of {replicas} server pods ready"));
    }
    // Not currentRevision == updateRevision: with the OnDelete strategy the StatefulSet
    // controller never moves currentRevision, even once every pod is updated.
    let updated = status.updated_replicas.unwrap_or(0);
    if updated < replicas {
        return Some(format!(
            "{updated} of {replicas} server pods run the latest template"
        ));
    }
    None
}

fn desired(facts: &Facts) -> Vec<Desired> {
    let serving = matches!(facts.phase, Phase::Active | Phase::Degraded);
    let mut conditions = vec![
        Desired {
            type_: AVAILABLE,
            status: serving,
            reason: match facts.phase {
                Phase::Pending => "QuorumNotFormed",
                Phase::Active | Phase::Degraded => "QuorumServing",
                Phase::Down => "QuorumLost",
            },
            message: facts.quorum_summary.to_owned(),
        },
        Desired {
            type_: DEGRADED,
            status: matches!(facts.phase, Phase::Degraded | Phase::Down),
            reason: match facts.phase {
                Phase::Pending => "NotFormed",
                Phase::Active => "AllVotersServing",
                Phase::Degraded => "VotersNotServing",
                Phase::Down => "QuorumLost",
            },
            message: facts.quorum_summary.to_owned(),
        },
    ];
    let progressing = match facts.spec {
        SpecOutcome::Invalid(_) => Desired {
            type_: PROGRESSING,
            status: false,
            reason: "InvalidSpec",
            message: "the spec is invalid; see the InvalidSpec condition".into(),
        },
        SpecOutcome::Paused => Desired {
            type_: PROGRESSING,
            status: false,
            reason: "Paused",
            message: "spec.paused is true; the children are left alone".into(),
        },
        SpecOutcome::NotApplied(_) => Desired {
            type_: PROGRESSING,
            status: false,
            reason: APPLY_FAILED,
            message: "the children could not be applied; see the ApplyFailed condition".into(),
        },
        SpecOutcome::Applied { changed } => match facts.roll {
            Some(RollStep::Delete { reason, .. } | RollStep::HandOver { reason, .. }) => Desired {
                type_: PROGRESSING,
                status: true,
                reason: "RollingMember",
                message: reason.clone(),
            },
            Some(RollStep::Wait(why)) => Desired {
                type_: PROGRESSING,
                status: true,
                reason: "RollWaiting",
                message: format!("servers run an older template; waiting: {why}"),
            },
            Some(RollStep::Done) | None => {
                match rollout_in_progress(facts.stateful_set, facts.replicas) {
                    Some(message) => Desired {
                        type_: PROGRESSING,
                        status: true,
                        reason: "RollingOut",
                        message,
                    },
                    None if *changed => Desired {
                        type_: PROGRESSING,
                        status: true,
                        reason: "Applied",
                        message: "applied a changed spec".into(),
                    },
                    None => Desired {
                        type_: PROGRESSING,
                        status: false,
                        reason: "UpToDate",
                        message: "every server runs the current spec".into(),
                    },
                }
            }
        },
    };
    conditions.push(progressing);
    if let SpecOutcome::Invalid(problem) = facts.spec {
        conditions.push(Desired {
            type_: INVALID_SPEC,
            status: true,
            reason: "InvalidSpec",
            message: problem.clone(),
        });
    }
    if let SpecOutcome::NotApplied(problem) = facts.spec {
        conditions.push(Desired {
            type_: APPLY_FAILED,
            status: true,
            reason: APPLY_FAILED,
            message: problem.clone(),
        });
    }
    if matches!(facts.spec, SpecOutcome::Paused) {
        conditions.push(Desired {
            type_: PAUSED,
            status: true,
            reason: "Paused",
            message: "spec.paused is true: the operator does not change the StatefulSet, Services, ConfigMap or PodDisruptionBudget, and restarts no member; status is still reported".into(),
        });
    }
    if let Some(step) = facts.scale {
        let (status, reason) = match step {
            ScaleStep::Steady => (false, "Steady"),
            ScaleStep::Grow(_) => (true, "Growing"),
            ScaleStep::AddVoter(_) => (true, "AddingVoter"),
            ScaleStep::RemoveVoter(_) => (true, "RemovingVoter"),
            ScaleStep::Shrink(_) => (true, "Shrinking"),
            ScaleStep::Wait(_) => (true, "ScaleWaiting"),
            ScaleStep::Refuse(_) => (true, SCALE_REFUSED),
        };
        conditions.push(Desired {
            type_: SCALING,
            status,
            reason,
            message: match step {
                ScaleStep::Steady => format!("the voters are servers 1 to {}", facts.replicas),
                other => format!("scaling to {} voters: {other}", facts.replicas),
            },
        });
    }
    if let Some(why) = facts.restart_held {
        conditions.push(Desired {
            type_: RESTART_HELD,
            status: true,
            reason: "RestartUnsafe",
            message: why.to_owned(),
        });
    }
    if let Some(step) = facts.replacing {
        conditions.push(Desired {
            type_: MEMBER_REPLACEMENT,
            status: true,
            reason: "ReplacingMember",
            message: step.to_owned(),
        });
    }
    if !facts.annotation_problems.is_empty() {
        conditions.push(Desired {
            type_: INVALID_ANNOTATION,
            status: true,
            reason: "InvalidAnnotation",
            message: facts.annotation_problems.join("; "),
        });
    }
    if facts.replicas % 2 == 0 {
        conditions.push(Desired {
            type_: EVEN_REPLICAS,
            status: true,
            reason: "EvenReplicas",
            message: format!(
                "{} voters tolerate {} failures, like {}; use an odd spec.replicas",
                facts.replicas,
                (facts.replicas - 1) / 2,
                facts.replicas - 1
            ),
        });
    }
    conditions
}

/// The new condition list: `lastTransitionTime` is kept from `previous` unless `status` flipped.
/// Conditions that no longer apply (InvalidSpec once fixed, Paused once resumed) are dropped.
pub fn conditions(facts: &Facts, previous: &[Condition], now: &Time) -> Vec<Condition> {
    desired(facts)
        .into_iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_owned();
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: d.type_.to_owned(),
                status,
                reason: d.reason.to_owned(),
                message: d.message,
                observed_generation: facts.generation,
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;

    fn time(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn settled_sts(replicas: i32) -> StatefulSet {
        let mut sts = StatefulSet::default();
        sts.metadata.generation = Some(2);
        sts.status = Some(StatefulSetStatus {
            observed_generation: Some(2),
            replicas,
            ready_replicas: Some(replicas),
            updated_replicas: Some(replicas),
            current_revision: Some("r1".into()),
            update_revision: Some("r1".into()),
            ..Default::default()
        });
        sts
    }

    fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
        conditions.iter().find(|c| c.type_ == type_)
    }

    /// An ACTIVE 3-voter ensemble whose spec is applied and whose StatefulSet is settled.
    fn settled<'a>(spec: &'a SpecOutcome, sts: &'a StatefulSet) -> Facts<'a> {
        Facts {
            phase: Phase::Active,
            quorum_summary: "s",
            spec,
            replicas: 3,
            stateful_set: Some(sts),
            roll: Some(&RollStep::Done),
            scale: None,
            restart_held: None,
            replacing: None,
            annotation_problems: &[],
            generation: Some(1),
        }
    }

    #[test]
    fn phases_map_to_available_and_degraded() {
        let sts = settled_sts(3);
        let spec = SpecOutcome::Applied { changed: false };
        for (phase, available, degraded) in [
            (Phase::Pending, "False", "False"),
            (Phase::Active, "True", "False"),
            (Phase::Degraded, "True", "True"),
            (Phase::Down, "False", "True"),
        ] {
            let facts = Facts {
                phase,
                quorum_summary: "summary",
                spec: &spec,
                replicas: 3,
                stateful_set: Some(&sts),
                roll: None,
                scale: None,
                restart_held: None,
                replacing: None,
                annotation_problems: &[],
                generation: Some(4),
            };
            let c = conditions(&facts, &[], &time(10));
            assert_eq!(find(&c, AVAILABLE).unwrap().status, available, "{phase}");
            assert_eq!(find(&c, DEGRADED).unwrap().status, degraded, "{phase}");
            assert_eq!(find(&c, PROGRESSING).unwrap().status, "False", "{phase}");
            assert!(c.iter().all(|c| c.observed_generation == Some(4)));
            assert!(find(&c, EVEN_REPLICAS).is_none());
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let sts = settled_sts(3);
        let spec = SpecOutcome::Applied { changed: false };
        let facts = |phase| Facts {
            phase,
            quorum_summary: "s",
            spec: &spec,
            replicas: 3,
            stateful_set: Some(&sts),
            roll: None,
            scale: None,
            restart_held: None,
            replacing: None,
            annotation_problems: &[],
            generation: Some(1),
        };
        let first = conditions(&facts(Phase::Active), &[], &time(10));
        let same = conditions(&facts(Phase::Active), &first, &time(20));
        assert_eq!(first, same);
        let degraded = conditions(&facts(Phase::Degraded), &same, &time(30));
        assert_eq!(
            find(&degraded, DEGRADED).unwrap().last_transition_time,
            time(30)
        );
        assert_eq!(
            find(&degraded, AVAILABLE).unwrap().last_transition_time,
            time(10)
        );
    }

    #[test]
    fn spec_outcomes() {
        let sts = settled_sts(4);
        let invalid = SpecOutcome::Invalid("spec.jvm.heap: bad".into());
        let facts = Facts {
            phase: Phase::Active,
            quorum_summary: "s",
            spec: &invalid,
            replicas: 4,
            stateful_set: Some(&sts),
            roll: None,
            scale: None,
            restart_held: None,
            replacing: None,
            annotation_problems: &[],
            generation: Some(1),
        };
        let c = conditions(&facts, &[], &time(1));
        assert_eq!(
            find(&c, INVALID_SPEC).unwrap().message,
            "spec.jvm.heap: bad"
        );
        assert_eq!(find(&c, PROGRESSING).unwrap().reason, "InvalidSpec");
        assert!(
            find(&c, EVEN_REPLICAS)
                .unwrap()
                .message
                .contains("4 voters tolerate 1 failures, like 3")
        );

        let paused = SpecOutcome::Paused;
        let c = conditions(
            &Facts {
                spec: &paused,
                ..facts
            },
            &[],
            &time(1),
        );
        assert_eq!(find(&c, PAUSED).unwrap().status, "True");
        assert!(find(&c, INVALID_SPEC).is_none());
    }

    #[test]
    fn progressing_names_the_member_being_rolled() {
        let applied = SpecOutcome::Applied { changed: false };
        let sts = settled_sts(3);
        let step = RollStep::Delete {
            pod: "zk-2".into(),
            reason: "replacing zk-2 (follower) with revision r2".into(),
        };
        let facts = Facts {
            phase: Phase::Active,
            quorum_summary: "s",
            spec: &applied,
            replicas: 3,
            stateful_set: Some(&sts),
            roll: Some(&step),
            scale: None,
            restart_held: None,
            replacing: None,
            annotation_problems: &[],
            generation: Some(1),
        };
        let c = conditions(&facts, &[], &time(1));
        let progressing = find(&c, PROGRESSING).unwrap();
        assert_eq!(progressing.reason, "RollingMember");
        assert!(progressing.message.contains("zk-2"));
        let wait = RollStep::Wait("the ensemble is DEGRADED".into());
        let c = conditions(
            &Facts {
                roll: Some(&wait),
                ..facts
            },
            &[],
            &time(1),
        );
        assert_eq!(find(&c, PROGRESSING).unwrap().reason, "RollWaiting");
    }

    #[test]
    fn a_held_restart_is_a_condition_until_it_no_longer_applies() {
        let applied = SpecOutcome::Applied { changed: false };
        let sts = settled_sts(3);
        let why =
            "not restarting: zk-2 is unreachable, but its pod is on node n1, which is NotReady";
        let facts = Facts {
            phase: Phase::Degraded,
            restart_held: Some(why),
            ..settled(&applied, &sts)
        };
        let held = conditions(&facts, &[], &time(1));
        let condition = find(&held, RESTART_HELD).unwrap();
        assert_eq!(
            (condition.status.as_str(), condition.message.as_str()),
            ("True", why)
        );
        let cleared = Facts {
            restart_held: None,
            replacing: None,
            ..facts
        };
        assert!(find(&conditions(&cleared, &held, &time(2)), RESTART_HELD).is_none());
    }

    #[test]
    fn an_unreadable_annotation_is_a_condition_until_it_is_fixed() {
        let applied = SpecOutcome::Applied { changed: false };
        let sts = settled_sts(3);
        let problems = vec!["annotation zooherd.dev/restartMember is \"zk-1\", ...".to_owned()];
        let facts = Facts {
            annotation_problems: &problems,
            ..settled(&applied, &sts)
        };
        let shown = conditions(&facts, &[], &time(1));
        let condition = find(&shown, INVALID_ANNOTATION).unwrap();
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", "InvalidAnnotation")
        );
        assert_eq!(condition.message, problems[0]);
        let fixed = Facts {
            annotation_problems: &[],
            ..facts
        };
        assert!(find(&conditions(&fixed, &shown, &time(2)), INVALID_ANNOTATION).is_none());
    }

    #[test]
    fn scaling_says_the_step_and_a_refusal() {
        let applied = SpecOutcome::Applied { changed: false };
        let sts = settled_sts(3);
        let facts = Facts {
            replicas: 1,
            ..settled(&applied, &sts)
        };
        let cases = [
            (
                ScaleStep::Steady,
                "False",
                "Steady",
                "the voters are servers 1 to 1",
            ),
            (
                ScaleStep::RemoveVoter(crate::quorum::myid::id(3)),
                "True",
                "RemovingVoter",
                "scaling to 1 voters: removing voter 3",
            ),
            (
                ScaleStep::Refuse("removing voter 3 would leave voters 1, 2 with 1 serving".into()),
                "True",
                SCALE_REFUSED,
                "scaling to 1 voters: refused: removing voter 3 would leave voters 1, 2 with 1 serving",
            ),
        ];
        for (step, status, reason, message) in cases {
            let with_step = Facts {
                scale: Some(&step),
                ..facts
            };
            let c = conditions(&with_step, &[], &time(1));
            let scaling = find(&c, SCALING).unwrap();
            assert_eq!(
                (
                    scaling.status.as_str(),
                    scaling.reason.as_str(),
                    scaling.message.as_str()
                ),
                (status, reason, message)
            );
        }
        assert!(find(&conditions(&facts, &[], &time(1)), SCALING).is_none());
    }

    #[test]
    fn progressing_follows_the_rollout() {
        let applied = SpecOutcome::Applied { changed: false };
        let mut rolling = settled_sts(3);
        rolling.status.as_mut().unwrap().update_revision = Some("r2".into());
        rolling.status.as_mut().unwrap().updated_replicas = Some(1);
        let facts = Facts {
            phase: Phase::Active,
            quorum_summary: "s",
            spec: &applied,
            replicas: 3,
            stateful_set: Some(&rolling),
            roll: None,
            scale: None,
            restart_held: None,
            replacing: None,
            annotation_problems: &[],
            generation: Some(1),
        };
        let c = conditions(&facts, &[], &time(1));
        let progressing = find(&c, PROGRESSING).unwrap();
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("True", "RollingOut")
        );
        assert_eq!(
            progressing.message,
            "1 of 3 server pods run the latest template"
        );

        // OnDelete never moves currentRevision: every pod updated means the rollout is done.
        let mut updated = settled_sts(3);
        updated.status.as_mut().unwrap().update_revision = Some("r2".into());
        let c = conditions(
            &Facts {
                stateful_set: Some(&updated),
                ..facts
            },
            &[],
            &time(1),
        );
        assert_eq!(find(&c, PROGRESSING).unwrap().status, "False");

        let c = conditions(
            &Facts {
                stateful_set: None,
                ..facts
            },
            &[],
            &time(1),
        );
        assert_eq!(
            find(&c, PROGRESSING).unwrap().message,
            "creating the StatefulSet"
        );

        let changed = SpecOutcome::Applied { changed: true };
        let settled = settled_sts(3);
        let c = conditions(
            &Facts {
                spec: &changed,
                stateful_set: Some(&settled),
                ..facts
            },
            &[],
            &time(1),
        );
        assert_eq!(find(&c, PROGRESSING).unwrap().reason, "Applied");
    }
}
