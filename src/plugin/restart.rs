//! `kubectl zooherd restart`: whether to ask the operator for a restart, and what to write.
//!
//! The plugin never deletes a pod. It writes a request on the ensemble (see
//! [`crate::api::annotations`]) and the operator carries it out with its roll: one server at a
//! time, only while every voter serves and the leader counts every follower in sync, followers
//! first and the leader last. The operator would wait while the ensemble is not ACTIVE; the
//! plugin refuses outright instead, so that a restart asked during an incident does not go off
//! by surprise once the ensemble recovers, and says why.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::api::annotations::{self, MemberRestart};
use crate::api::{Phase, ZooKeeperEnsemble};

/// The annotation to write on the ensemble: key and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub key: &'static str,
    pub value: String,
}

/// Decides whether a restart of `ensemble` (or of its member `member`, a pod name) may be
/// asked, given its server pods and the time (`now`, RFC 3339); the annotation to write, or
/// why not.
pub fn request(
    ensemble: &ZooKeeperEnsemble,
    pods: &[Pod],
    member: Option<&str>,
    now: &str,
) -> Result<Request, String> {
    let name = ensemble.name_any();
    if ensemble.spec.paused {
        return Err(format!(
            "refusing to restart {name}: it is paused (spec.paused), so the operator would change nothing; resume it first"
        ));
    }
    let status = ensemble.status.clone().unwrap_or_default();
    let why_not = |what: &str| {
        let summary = status
            .conditions
            .iter()
            .find(|c| c.type_ == crate::decide::conditions::AVAILABLE)
            .map(|c| format!(" ({})", c.message))
            .unwrap_or_default();
        format!(
            "refusing to restart {name}: it is {what}{summary}. A restart takes one server out \
             at a time, which is only safe while every voter serves; restarting now could cost \
             the quorum. See `kubectl zooherd status {name}`."
        )
    };
    match status.phase {
        Some(Phase::Active) => {}
        Some(phase) => return Err(why_not(phase.as_str())),
        None => return Err(why_not("without a status yet (is the operator running?)")),
    }
    let Some(member) = member else {
        return Ok(Request {
            key: annotations::RESTARTED_AT,
            value: now.to_owned(),
        });
    };
    let uid_of = |pod: &str| {
        pods.iter()
            .find(|p| p.name_any() == pod)
            .and_then(|p| p.uid())
    };
    let members: Vec<&str> = status.members.iter().map(|m| m.pod.as_str()).collect();
    if !members.contains(&member) {
        return Err(format!(
            "{member} is not a member of {name}; its members are {}",
            members.join(", ")
        ));
    }
    let Some(uid) = uid_of(member) else {
        return Err(format!("pod {member} does not exist"));
    };
    // One request at a time: a second one would replace the first before it was carried out.
    if let Some(pending) = ensemble
        .annotations()
        .get(annotations::RESTART_MEMBER)
        .and_then(|value| MemberRestart::parse(value))
        .filter(|p| p.pod != member && uid_of(&p.pod).as_deref() == Some(p.uid.as_str()))
    {
        return Err(format!(
            "refusing to restart {member}: the restart of {} asked earlier has not happened yet",
            pending.pod
        ));
    }
    Ok(Request {
        key: annotations::RESTART_MEMBER,
        value: MemberRestart {
            pod: member.to_owned(),
            uid,
        }
        .value(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MemberState, MemberStatus, ZooKeeperEnsembleStatus};
    use serde_json::json;

    fn ensemble(phase: Option<Phase>, paused: bool) -> ZooKeeperEnsemble {
        let mut ensemble: ZooKeeperEnsemble = serde_json::from_value(json!({
            "apiVersion": "zooherd.dev/v1beta1",
            "kind": "ZooKeeperEnsemble",
            "metadata": {"name": "zk", "namespace": "data"},
            "spec": {"paused": paused},
        }))
        .unwrap();
        let members = (1..=3)
            .map(|myid| MemberStatus::new(format!("zk-{}", myid - 1), myid, MemberState::Follower))
            .collect();
        ensemble.status = phase.map(|phase| ZooKeeperEnsembleStatus {
            phase: Some(phase),
            members,
            ..Default::default()
        });
        ensemble
    }

    fn pods() -> Vec<Pod> {
        (0..3)
            .map(|i| {
                serde_json::from_value(
                    json!({"metadata": {"name": format!("zk-{i}"), "uid": format!("u{i}")}}),
                )
                .unwrap()
            })
            .collect()
    }

    const NOW: &str = "2026-12-01T08:00:00Z";

    #[test]
    fn asks_only_while_active() {
        let active = ensemble(Some(Phase::Active), false);
        assert_eq!(
            request(&active, &pods(), None, NOW),
            Ok(Request {
                key: annotations::RESTARTED_AT,
                value: NOW.into()
            })
        );
        assert_eq!(
            request(&active, &pods(), Some("zk-1"), NOW),
            Ok(Request {
                key: annotations::RESTART_MEMBER,
                value: "zk-1/u1".into()
            })
        );
        for phase in [Phase::Degraded, Phase::Down, Phase::Pending] {
            for member in [None, Some("zk-1")] {
                let refused = request(&ensemble(Some(phase), false), &pods(), member, NOW);
                let why = refused.unwrap_err();
                assert!(why.starts_with("refusing to restart zk: it is "), "{why}");
                assert!(why.contains(phase.as_str()), "{why}");
                assert!(why.contains("cost the quorum"), "{why}");
            }
        }
        let why = request(&ensemble(None, false), &pods(), None, NOW).unwrap_err();
        assert!(why.contains("without a status"), "{why}");
        let why = request(&ensemble(Some(Phase::Active), true), &pods(), None, NOW).unwrap_err();
        assert!(why.contains("paused"), "{why}");
    }

    #[test]
    fn a_member_must_be_one_and_one_request_at_a_time() {
        let active = ensemble(Some(Phase::Active), false);
        let why = request(&active, &pods(), Some("zk-7"), NOW).unwrap_err();
        assert_eq!(
            why,
            "zk-7 is not a member of zk; its members are zk-0, zk-1, zk-2"
        );
        let why = request(&active, &pods()[..2], Some("zk-2"), NOW).unwrap_err();
        assert_eq!(why, "pod zk-2 does not exist");

        let mut asked = active.clone();
        asked
            .annotations_mut()
            .insert(annotations::RESTART_MEMBER.into(), "zk-0/u0".into());
        let why = request(&asked, &pods(), Some("zk-1"), NOW).unwrap_err();
        assert!(why.contains("restart of zk-0 asked earlier"), "{why}");
        // The same member again, or once the earlier one happened (zk-0 has another uid now).
        assert!(request(&asked, &pods(), Some("zk-0"), NOW).is_ok());
        asked.annotations_mut().insert(
            annotations::RESTART_MEMBER.into(),
            "zk-0/an-older-uid".into(),
        );
        assert!(request(&asked, &pods(), Some("zk-1"), NOW).is_ok());
    }
}
