//! What the decisions need to know about a pod's node: whether it is Ready, whether an
//! administrator has confirmed it gone, and whether a volume lives only on it.
//!
//! A node that stops reporting (kubelet dead, network cut, machine off) turns its Ready
//! condition to Unknown; one whose kubelet reports a problem turns it to False. Kubernetes'
//! node lifecycle controller then taints it `node.kubernetes.io/unreachable` or
//! `node.kubernetes.io/not-ready`. Either sign means the same for the operator: what runs there
//! cannot be confirmed stopped, so nothing there is deleted on the operator's own judgement.

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, PersistentVolume};

/// The taint of Kubernetes' non-graceful node shutdown: an administrator's word that the node
/// is off and what ran there has stopped (Kubernetes then force-deletes its pods and detaches
/// its volumes).
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// The label the kubelet puts on its node, and the key local volumes' node affinity uses.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

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

/// Whether an administrator tainted the node `node.kubernetes.io/out-of-service`.
pub fn out_of_service(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|taints| taints.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT))
}

/// Since when a node that is not Ready has been so: when its Ready condition left True, or, while
/// that still says True, when the lifecycle controller tainted it. None when not known (then no
/// delay can be said to have passed).
pub fn not_ready_since(node: &Node) -> Option<Timestamp> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"));
    if let Some(ready) = ready.filter(|c| c.status != "True") {
        return Some(ready.last_transition_time.as_ref()?.0);
    }
    let taints = node.spec.as_ref()?.taints.as_ref()?;
    let taint = taints
        .iter()
        .find(|t| NOT_READY_TAINTS.contains(&t.key.as_str()))?;
    Some(taint.time_added.as_ref()?.0)
}

/// The names a node goes by in a volume's node affinity: its name and its hostname label.
pub fn names(node: &Node) -> BTreeSet<String> {
    let labels = node.metadata.labels.iter().flatten();
    let hostname = labels
        .filter(|(key, _)| key.as_str() == HOSTNAME_LABEL)
        .map(|(_, value)| value.clone());
    node.metadata
        .name
        .clone()
        .into_iter()
        .chain(hostname)
        .collect()
}

/// The nodes a volume can only be used on, when its node affinity pins it to named nodes (a
/// local volume: `kubernetes.io/hostname In [...]` or `metadata.name In [...]` in every
/// term, as local-volume provisioners write it); None when it may be used elsewhere (network
/// or zonal storage) or its affinity is of another shape.
pub fn pinned_nodes(volume: &PersistentVolume) -> Option<BTreeSet<String>> {
    let terms = &volume
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    let mut pinned = BTreeSet::new();
    for term in terms {
        let by_label = term
            .match_expressions
            .iter()
            .flatten()
            .filter(|e| e.key == HOSTNAME_LABEL);
        let by_name = term
            .match_fields
            .iter()
            .flatten()
            .filter(|e| e.key == "metadata.name");
        let names = by_label
            .chain(by_name)
            .find(|e| e.operator == "In")?
            .values
            .as_ref()?;
        pinned.extend(names.iter().cloned());
    }
    (!pinned.is_empty()).then_some(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

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

    fn volume(affinity: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pv"},
            "spec": {"nodeAffinity": affinity},
        }))
        .unwrap()
    }

    #[test]
    fn a_local_volume_is_pinned_to_the_nodes_it_names() {
        let by_hostname = volume(serde_json::json!({"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n3"]}]},
        ]}}));
        assert_eq!(
            pinned_nodes(&by_hostname),
            Some(BTreeSet::from(["n3".into()]))
        );
        let by_name = volume(serde_json::json!({"required": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1", "n2"]}]},
        ]}}));
        assert_eq!(
            pinned_nodes(&by_name),
            Some(BTreeSet::from(["n1".into(), "n2".into()]))
        );
        // A zonal volume, a term that does not name nodes, and no affinity: not pinned.
        for affinity in [
            serde_json::json!({"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]},
            ]}}),
            serde_json::json!({"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n3"]}]},
                {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]},
            ]}}),
            serde_json::json!({"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["n3"]}]},
            ]}}),
            serde_json::Value::Null,
        ] {
            assert_eq!(pinned_nodes(&volume(affinity.clone())), None, "{affinity}");
        }
    }

    #[test]
    fn a_node_goes_by_its_name_and_hostname_and_may_be_out_of_service() {
        let mut n = node(
            Some(("Unknown", "NodeStatusUnknown")),
            Some(OUT_OF_SERVICE_TAINT),
        );
        n.metadata.labels =
            Some([("kubernetes.io/hostname".to_owned(), "host-1".to_owned())].into());
        assert_eq!(names(&n), BTreeSet::from(["n1".into(), "host-1".into()]));
        assert!(out_of_service(&n));
        assert!(!out_of_service(&node(
            None,
            Some("node.kubernetes.io/unreachable")
        )));
    }

    #[test]
    fn a_node_is_not_ready_since_its_condition_left_true_or_its_taint() {
        let at = |s| Some(Time(Timestamp::from_second(s).unwrap()));
        let mut n = node(Some(("Unknown", "NodeStatusUnknown")), None);
        n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time = at(100);
        assert_eq!(
            not_ready_since(&n),
            Some(Timestamp::from_second(100).unwrap())
        );
        // Still Ready=True (since long ago) by its last report, but tainted unreachable since
        // 500: since 500, not since it last became Ready.
        let mut n = node(
            Some(("True", "KubeletReady")),
            Some("node.kubernetes.io/unreachable"),
        );
        n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time = at(1);
        n.spec.as_mut().unwrap().taints.as_mut().unwrap()[0].time_added = at(500);
        assert_eq!(
            not_ready_since(&n),
            Some(Timestamp::from_second(500).unwrap())
        );
        n.spec.as_mut().unwrap().taints.as_mut().unwrap()[0].time_added = None;
        assert_eq!(not_ready_since(&n), None);
    }
}
