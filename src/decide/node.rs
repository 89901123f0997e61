//! What the decisions need to know about a pod's node: whether it is Ready.
//!
//! A node that stops reporting (kubelet dead, network cut, machine off) turns its Ready
//! condition to Unknown; one whose kubelet reports a problem turns it to False. Kubernetes'
//! node lifecycle controller then taints it `node.kubernetes.io/unreachable` or
//! `node.kubernetes.io/not-ready`. Either sign means the same for the operator: what runs there
//! cannot be confirmed stopped, so nothing there is deleted on the operator's own judgement.

use k8s_openapi::api::core::v1::Node;

/// The taints the node lifecycle controller puts on a node that is not Ready.
const NOT_READY_TAINTS: [&str; 2] = [
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/not-ready",
];

/// Describes why `node` is not Ready (e.g. `node n1, which is NotReady (Ready=Unknown:
/// NodeStatusUnknown, Kubelet stopped posting node status.)`), or None when it is Ready.
pub fn not_ready(node: &Node) -> Option<String> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"));
    let taint = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|taints| {
            taints
                .iter()
                .find(|t| NOT_READY_TAINTS.contains(&t.key.as_str()))
        });
    match (ready, taint) {
        (Some(ready), _) if ready.status != "True" => {
            let reason = ready.reason.as_deref().unwrap_or("no reason given");
            let message = ready
                .message
                .as_deref()
                .map(|m| format!(", {m}"))
                .unwrap_or_default();
            Some(format!(
                "node {name}, which is NotReady (Ready={}: {reason}{message})",
                ready.status
            ))
        }
        (None, _) => Some(format!(
            "node {name}, which is NotReady (it has never reported a Ready condition)"
        )),
        (_, Some(taint)) => Some(format!(
            "node {name}, which is NotReady (tainted {})",
            taint.key
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(ready: Option<(&str, &str)>, taint: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: taint.map(|key| {
                    vec![Taint {
                        key: key.into(),
                        effect: "NoSchedule".into(),
                        ..Taint::default()
                    }]
                }),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|(status, reason)| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        reason: Some(reason.into()),
                        message: Some("Kubelet stopped posting node status.".into()),
                        ..NodeCondition::default()
                    }]
                }),
                ..NodeStatus::default()
            }),
        }
    }

    #[test]
    fn a_node_is_not_ready_by_its_condition_or_its_taint() {
        assert_eq!(not_ready(&node(Some(("True", "KubeletReady")), None)), None);
        assert_eq!(
            not_ready(&node(Some(("Unknown", "NodeStatusUnknown")), None)).as_deref(),
            Some(
                "node n1, which is NotReady (Ready=Unknown: NodeStatusUnknown, Kubelet stopped posting node status.)"
            )
        );
        assert!(
            not_ready(&node(Some(("False", "KubeletNotReady")), None))
                .is_some_and(|why| why.contains("Ready=False"))
        );
        // Ready by its last report, but the lifecycle controller has already tainted it.
        assert_eq!(
            not_ready(&node(
                Some(("True", "KubeletReady")),
                Some("node.kubernetes.io/unreachable")
            ))
            .as_deref(),
            Some("node n1, which is NotReady (tainted node.kubernetes.io/unreachable)")
        );
        // Another taint says nothing about readiness.
        assert_eq!(
            not_ready(&node(Some(("True", "KubeletReady")), Some("dedicated"))),
            None
        );
        assert!(not_ready(&node(None, None)).is_some_and(|why| why.contains("never reported")));
    }
}
