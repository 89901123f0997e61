//! Annotations a user (or `kubectl zooherd restart`) puts on a `ZooKeeperEnsemble` to ask the
//! operator for a restart, or to confirm that a member's node is gone.
//!
//! A restart is a request, not an action: the operator carries it out with its own roll, one
//! server at a time and only while every voter serves, so asking can never cost the quorum.
//! Annotations rather than spec fields because, like `kubectl rollout restart`, a restart
//! changes nothing the ensemble should be: it must not bump the generation nor show in
//! `kubectl diff` of the manifest the user applies.

use std::collections::BTreeMap;

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

/// What is wrong with the ensemble's [`RESTART_MEMBER`] and [`REPLACE_MEMBER`] annotations, one
/// message per unreadable value, naming the annotation, its value and what to write instead. A
/// value that cannot be read asks for nothing, so the operator does nothing on its strength;
/// these messages are how the user learns that.
pub fn problems(annotations: &BTreeMap<String, String>) -> Vec<String> {
    [
        (
            RESTART_MEMBER,
            "nothing is restarted",
            "kubectl zooherd restart <ensemble> --member <pod> writes it",
        ),
        (
            REPLACE_MEMBER,
            "no member on a lost node is replaced on its strength",
            "the RestartHeld condition names the pod and its uid",
        ),
    ]
    .into_iter()
    .filter_map(|(key, consequence, hint)| {
        let value = annotations.get(key)?;
        MemberRestart::parse(value).is_none().then(|| {
            format!(
                "annotation {key} is {value:?}, not <pod>/<pod uid>: {consequence}. Write the pod's \
                 name and uid (kubectl get pod <pod> -o jsonpath='{{.metadata.uid}}'; {hint}), or \
                 remove the annotation"
            )
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_request_is_a_problem_that_names_the_annotation() {
        let mut annotations = BTreeMap::from([
            (RESTART_MEMBER.to_owned(), "zk-1/3f1c".to_owned()),
            (REPLACE_MEMBER.to_owned(), "zk-2/u2".to_owned()),
            (RESTARTED_AT.to_owned(), "anything".to_owned()),
        ]);
        assert!(problems(&annotations).is_empty());
        annotations.insert(RESTART_MEMBER.to_owned(), "zk-1".to_owned());
        annotations.insert(REPLACE_MEMBER.to_owned(), "zk-2/".to_owned());
        let found = problems(&annotations);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("annotation zooherd.dev/restartMember is \"zk-1\", not <pod>/<pod uid>: nothing is restarted"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("annotation zooherd.dev/replaceMember is \"zk-2/\""),
            "{}",
            found[1]
        );
        assert!(
            found
                .iter()
                .all(|p| p.ends_with("or remove the annotation"))
        );
    }

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
