//! Why the PodDisruptionBudget refuses an eviction, when the reason is one the operator can
//! name: a pod the budget still counts as disrupted by the eviction of its predecessor.
//!
//! The Eviction API records each eviction it allows in the budget's `status.disruptedPods`,
//! keyed by the pod's name, and Kubernetes' disruption controller drops the entry once it sees
//! that pod being deleted, or two minutes after the eviction (`DeletionTimeout` in
//! pkg/controller/disruption). A StatefulSet's pods keep their names: when the evicted pod is
//! gone before the controller looks, the replacement takes over the entry and counts as
//! disrupted, however well it serves, and the budget allows no other disruption until the two
//! minutes are over. The operator must not step around the budget (it is what keeps a drain and
//! a roll from taking two servers at once), so it waits; the status says for what, and until
//! when. The operator nemesis met it as roll steps refused for about two minutes.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::Context;
use crate::api::ZooKeeperEnsemble;
use crate::build::names;

/// How long the disruption controller keeps an entry it has not seen deleted.
const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

/// The pods `budget` counts as disrupted by the eviction of a predecessor, with when the entry
/// lapses: an entry no newer than the pod it names (`created` gives a pod's creation time, `None`
/// for a pod that is gone or being deleted, whose entry is the controller's to drop).
pub fn inherited_disruptions(
    budget: &PodDisruptionBudget,
    created: impl Fn(&str) -> Option<Timestamp>,
    now: Timestamp,
) -> Vec<(String, Timestamp)> {
    let entries = budget
        .status
        .iter()
        .flat_map(|s| s.disrupted_pods.iter().flatten());
    entries
        .filter_map(|(pod, evicted)| {
            let lapses = evicted.0.checked_add(DELETION_TIMEOUT).ok()?;
            // Not before: both have whole seconds, and a replacement made within the second
            // of the eviction is as much a successor.
            (created(pod)? >= evicted.0 && lapses > now).then(|| (pod.clone(), lapses))
        })
        .collect()
}

/// What to add to the refusal of an eviction: the inherited entries of `ensemble`'s budget,
/// if any (empty when there are none or the budget cannot be read).
pub async fn refusal_detail(ensemble: &ZooKeeperEnsemble, ctx: &Context) -> String {
    let namespace = ensemble.namespace().unwrap_or_default();
    let budgets = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &namespace);
    let Ok(Some(budget)) = budgets
        .get_opt(&names::pod_disruption_budget(ensemble))
        .await
    else {
        return String::new();
    };
    let created = |pod: &str| {
        let pod = ctx
            .stores
            .pods
            .get(&ObjectRef::<Pod>::new(pod).within(&namespace))?;
        if pod.meta().deletion_timestamp.is_some() {
            return None;
        }
        Some(pod.creation_timestamp()?.0)
    };
    inherited_disruptions(&budget, created, Timestamp::now())
        .iter()
        .map(|(pod, lapses)| {
            format!(
                "; the budget still counts {pod} as disrupted by the eviction of the pod it \
                 replaced, until {lapses} (Kubernetes' disruption controller keeps such an \
                 entry up to two minutes when it did not see that pod deleted)"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn budget(entries: &[(&str, i64)]) -> PodDisruptionBudget {
        PodDisruptionBudget {
            status: Some(PodDisruptionBudgetStatus {
                disrupted_pods: Some(
                    entries
                        .iter()
                        .map(|&(pod, evicted)| (pod.to_owned(), Time(at(evicted))))
                        .collect(),
                ),
                ..PodDisruptionBudgetStatus::default()
            }),
            ..PodDisruptionBudget::default()
        }
    }

    #[test]
    fn a_replacement_created_after_its_predecessors_eviction_inherits_the_entry() {
        let budget = budget(&[("zk-2", 0), ("zk-0", 10)]);
        // zk-2 was recreated a second after its eviction; zk-0 is the pod that was evicted
        // (created long before), still shutting down: the controller drops that one itself.
        let created = |pod: &str| match pod {
            "zk-2" => Some(at(1)),
            "zk-0" => Some(at(-600)),
            _ => None,
        };
        assert_eq!(
            inherited_disruptions(&budget, created, at(30)),
            [("zk-2".to_owned(), at(120))]
        );
        // After two minutes the controller drops it, and so does the explanation.
        assert!(inherited_disruptions(&budget, created, at(121)).is_empty());
        // A pod that is gone (or being deleted) explains nothing.
        assert!(inherited_disruptions(&budget, |_| None, at(30)).is_empty());
        assert!(inherited_disruptions(&PodDisruptionBudget::default(), created, at(30)).is_empty());
    }

    #[test]
    fn a_replacement_created_in_the_second_of_the_eviction_inherits_it_too() {
        // Both times have whole seconds: a pod evicted and recreated within one second (the
        // operator nemesis: no kubelet holds the evicted pod while it terminates) has the
        // creation time of the entry. The entry cannot be its own: the operator evicts a pod
        // only once it is Ready, not in the second it was created.
        let budget = budget(&[("zk-1", 0)]);
        let created = |pod: &str| (pod == "zk-1").then(|| at(0));
        assert_eq!(
            inherited_disruptions(&budget, created, at(30)),
            [("zk-1".to_owned(), at(120))]
        );
    }
}
