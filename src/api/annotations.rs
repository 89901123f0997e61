//! Annotations a user (or `kubectl zooherd restart`) puts on a `ZooKeeperEnsemble` to ask the
//! operator for a restart, or to confirm that a member's node is gone.
//!
//! A restart is a request, not an action: the operator carries it out with its own roll, one
//! server at a time and only while every voter serves, so asking can never cost the quorum.
//! Annotations rather than spec fields because, like `kubectl rollout restart`, a restart
//! changes nothing the ensemble should be: it must not bump the generation nor show in
//! `kubectl diff` of the manifest the user applies.

/// Restart every server: the value (any string; `kubectl zooherd restart` writes the time) is
/// copied into the pod template, so a new value is a new revision that the operator rolls out,
/// followers first and the leader last.
pub const RESTARTED_AT: &str = "zooherd.dev/restartedAt";

/// Restart one server: `<pod>/<uid>` asks for the pod of that name to be replaced while it is
/// still the pod with that uid. Once it has been replaced (its uid changed) the request is
/// done, so a request is carried out at most once and may stay on the object.
pub const RESTART_MEMBER: &str = "zooherd.dev/restartMember";

/// Confirm that one server's node is gone for good: `<pod>/<uid>`, in the same form as
/// [`RESTART_MEMBER`], approves rebuilding that pod's member on another node (see
/// `spec.lostNode`) while its node is not Ready. The uid ties the approval to the pod the
/// administrator looked at: a later pod of the same name on another node is not covered by it.
pub const REPLACE_MEMBER: &str = "zooherd.dev/replaceMember";

/// A request about one server's pod, from the [`RESTART_MEMBER`] or [`REPLACE_MEMBER`]
/// annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRestart {
    pub pod: String,
    /// The uid of the pod to replace: a pod of the same name with another uid is its
    /// replacement.
    pub uid: String,
}

impl MemberRestart {
    /// The annotation's value.
    pub fn value(&self) -> String {
        format!("{}/{}", self.pod, self.uid)
    }

    /// Reads the annotation's value; None when it is not `<pod>/<uid>`.
    pub fn parse(value: &str) -> Option<Self> {
        let (pod, uid) = value.trim().split_once('/')?;
        (!pod.is_empty() && !uid.is_empty() && !uid.contains('/')).then(|| Self {
            pod: pod.to_owned(),
            uid: uid.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_restart_round_trips_and_refuses_garbage() {
        let request = MemberRestart {
            pod: "zk-1".into(),
            uid: "3f1c-77".into(),
        };
        assert_eq!(request.value(), "zk-1/3f1c-77");
        assert_eq!(MemberRestart::parse(" zk-1/3f1c-77\n"), Some(request));
        for bad in ["", "zk-1", "zk-1/", "/uid", "zk-1/a/b"] {
            assert_eq!(MemberRestart::parse(bad), None, "{bad:?}");
        }
    }
}
