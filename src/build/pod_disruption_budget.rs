//! The PodDisruptionBudget: how many servers a node drain may evict at once.
//!
//! n voters tolerate floor((n-1)/2) failures, so evictions may take that many servers at once
//! and never the quorum. For 1 and 2 servers that is 0: any eviction would cost the quorum, so
//! a drain waits until someone moves or deletes the server deliberately. That blocks drains of
//! the node by design; run 3 servers or more where nodes are drained unattended.
//!
//! Only Ready (serving) servers count as healthy. A server that is already not serving may
//! always be evicted (`unhealthyPodEvictionPolicy: AlwaysAllow`): evicting it cannot lower the
//! number of serving servers, and under the default policy a broken single server would block
//! the drain for ever.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ValidatedEnsemble, names};

/// `<name>`, allowing the ensemble's fault tolerance in simultaneous evictions: that of the
/// fewer of `spec.replicas` and the `voters` there are now (while scaling up, the new servers
/// do not vote yet).
pub(super) fn build(parent: &ValidatedEnsemble, voters: u32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: parent.metadata(names::pod_disruption_budget(parent.ensemble())),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable(
                i32::from(parent.spec.replicas).min(i32::try_from(voters).unwrap_or(i32::MAX)),
            ))),
            min_available: None,
            selector: Some(parent.selector()),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
        }),
        status: None,
    }
}

/// The fault tolerance of `replicas` voters, floor((replicas-1)/2): 0 for 1 or 2.
fn max_unavailable(replicas: i32) -> i32 {
    (replicas - 1).max(0) / 2
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures;
    use super::*;

    #[test]
    fn max_unavailable_is_the_fault_tolerance() {
        // (replicas, maxUnavailable)
        let cases = [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (6, 2), (7, 3)];
        for (replicas, want) in cases {
            let pdb = fixtures::children(json!({"replicas": replicas})).pod_disruption_budget;
            let spec = pdb.spec.expect("spec");
            assert_eq!(
                spec.max_unavailable,
                Some(IntOrString::Int(want)),
                "{replicas} replicas"
            );
            assert_eq!(spec.min_available, None);
        }
    }

    #[test]
    fn evictions_always_leave_a_quorum() {
        for replicas in 1..=255 {
            let quorum = replicas / 2 + 1;
            assert!(replicas - max_unavailable(replicas) >= quorum, "{replicas}");
        }
    }

    #[test]
    fn selects_the_servers_and_lets_broken_ones_go() {
        let children = fixtures::children(json!({}));
        let pdb = children.pod_disruption_budget;
        assert_eq!(pdb.metadata.name.as_deref(), Some("zk"));
        let spec = pdb.spec.unwrap();
        assert_eq!(
            spec.selector,
            Some(children.stateful_set.spec.unwrap().selector)
        );
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
    }
}
