//! The informer caches the operator reads instead of the API server: its children and their
//! pods (filtered by the managed-by label) in each watch scope, and every node.
//!
//! Each cached object is trimmed to what the operator reads before it is stored. Managed fields
//! are dropped everywhere: never read, they are often the largest part of an object (every
//! writer of every field is listed). A child is kept compact ([`Cached`]): it is compared
//! whole with what would be applied, but rarely. A pod keeps of its spec only its node (the
//! containers, volumes and the rest are the StatefulSet's), of its status only what the status
//! rule and the restart decision read; a node only its conditions and taints. With thousands
//! of members these caches are most of the operator's memory; the pods most of all, as they
//! outnumber every other kind (`cargo bench --bench scale`, heaptrack: 16.7 KB of heap per
//! cached pod before its volumes and container statuses were trimmed, 6.6 KB after, 3.2 KB of
//! which its one claim: a `Volume` is 3.2 KB however little of it is set, as k8s-openapi keeps
//! each of its thirty-odd sources inline).

use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerStatus, Node, Pod, PodSpec, PodStatus, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::cached::{Cached, Child};
use crate::api::ZooKeeperEnsemble;
use crate::build;

/// Informer caches of what the operator manages, within one watch scope.
#[derive(Clone)]
pub struct Stores {
    pub stateful_sets: Store<Cached<StatefulSet>>,
    pub config_maps: Store<Cached<ConfigMap>>,
    pub services: Store<Cached<Service>>,
    pub pod_disruption_budgets: Store<Cached<PodDisruptionBudget>>,
    pub network_policies: Store<Cached<NetworkPolicy>>,
    pub pods: Store<Pod>,
    /// Every node, shared by the watch scopes: whether a member's node is Ready. Not waited
    /// for: without it (no permission to list nodes) a pod's node is simply not known.
    pub nodes: Store<Node>,
}

impl Stores {
    /// The ensemble's StatefulSet as the cache keeps its facts (None: there is none yet).
    pub(super) fn stateful_set(&self, ensemble: &ZooKeeperEnsemble) -> Option<Arc<StatefulSet>> {
        let namespace = ensemble.namespace().unwrap_or_default();
        let key = ObjectRef::new(&build::names::stateful_set(ensemble)).within(&namespace);
        Some(self.stateful_sets.get(&key)?.facts.clone())
    }

    /// Whether every cache has listed once: until then, an absent child may only be absent
    /// from the cache (applying it would be a needless write), and an absent pod is not known
    /// to be gone. Checked, not awaited: reconciles that waited for the caches inside the
    /// controller stayed stuck until their deadline (`cargo bench --bench scale`, an operator
    /// restart with 100 ensembles: every first reconcile overran its 60 s, and no status was
    /// refreshed for a minute; with this check, every one within 1.5 s).
    pub(super) fn ready(&self) -> bool {
        use futures::FutureExt;
        let listed = |ready: Option<Result<(), reflector::store::WriterDropped>>| {
            matches!(ready, Some(Ok(())))
        };
        listed(self.stateful_sets.wait_until_ready().now_or_never())
            && listed(self.config_maps.wait_until_ready().now_or_never())
            && listed(self.services.wait_until_ready().now_or_never())
            && listed(
                self.pod_disruption_budgets
                    .wait_until_ready()
                    .now_or_never(),
            )
            && listed(self.network_policies.wait_until_ready().now_or_never())
            && listed(self.pods.wait_until_ready().now_or_never())
    }
}

pub(super) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch of what carries the managed-by label, of one kind, each object without its
/// managed fields.
fn watch_managed<K>(
    client: &Client,
    namespace: Option<&str>,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + 'static,
{
    let managed = watcher::Config::default().labels(&format!(
        "{}={}",
        build::names::MANAGED_BY_LABEL,
        build::names::MANAGED_BY
    ));
    watcher(scoped::<K>(client, namespace), managed)
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear())
}

/// A cached watch of one kind of child: the store, and the stream that fills it (which also
/// triggers reconciles). Each child is kept as a [`Cached`] one.
pub(super) fn reflect_children<K: Child>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<Cached<K>>,
    impl futures::Stream<Item = Result<Cached<K>, watcher::Error>> + Send + 'static,
) {
    let (store, writer) = reflector::store();
    let stream = watch_managed::<K>(client, namespace)
        .map_ok(Cached::event)
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// A cached watch of the members' pods, each trimmed by [`trim_pod`].
pub(super) fn reflect_pods(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<Pod>,
    impl futures::Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
) {
    let (store, writer) = reflector::store();
    let stream = watch_managed::<Pod>(client, namespace)
        .modify(trim_pod)
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// A cached watch of every node, keeping only what the operator reads (name, conditions,
/// taints): a node's image list and managed fields are most of its size.
pub(super) fn reflect_nodes(
    client: &Client,
) -> (
    Store<Node>,
    impl futures::Stream<Item = Result<Node, watcher::Error>> + Send + 'static,
) {
    let (store, writer) = reflector::store();
    let stream = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|node| {
            node.managed_fields_mut().clear();
            node.annotations_mut().clear();
            if let Some(status) = node.status.as_mut() {
                let conditions = status.conditions.take();
                *status = k8s_openapi::api::core::v1::NodeStatus {
                    conditions,
                    ..Default::default()
                };
            }
        })
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// Keeps of a pod what the operator reads: of its spec its node (its claims are named by the
/// StatefulSet's claim templates, [`super::cached::claim_names`]); of its status its phase,
/// IP, conditions and, of each container, its state, last state and restart count
/// (`decide::restart::PodFacts`).
fn trim_pod(pod: &mut Pod) {
    if let Some(spec) = pod.spec.as_mut() {
        *spec = PodSpec {
            node_name: spec.node_name.take(),
            ..PodSpec::default()
        };
    }
    if let Some(status) = pod.status.as_mut() {
        let containers = |statuses: Option<Vec<ContainerStatus>>| {
            statuses.map(|statuses| {
                statuses
                    .into_iter()
                    .map(|container| ContainerStatus {
                        name: container.name,
                        restart_count: container.restart_count,
                        ready: container.ready,
                        state: container.state,
                        last_state: container.last_state,
                        ..ContainerStatus::default()
                    })
                    .collect()
            })
        };
        *status = PodStatus {
            phase: status.phase.take(),
            pod_ip: status.pod_ip.take(),
            conditions: status.conditions.take(),
            container_statuses: containers(status.container_statuses.take()),
            init_container_statuses: containers(status.init_container_statuses.take()),
            ..PodStatus::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_pod_keeps_its_node_and_what_its_status_is_read_for() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "zk-0", "labels": {"a": "b"}},
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": "zookeeper", "image": "zk", "env": [{"name": "X", "value": "1"}]}],
                "volumes": [
                    {"name": "config", "configMap": {"name": "zk-config"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-zk-0"}},
                    {"name": "tls", "secret": {"secretName": "zk-zooherd-tls"}},
                ],
                "tolerations": [{"key": "k", "operator": "Exists"}],
            },
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.1",
                "hostIP": "10.1.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{
                    "name": "init", "image": "zk", "imageID": "sha256:1", "ready": true,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0}},
                }],
                "containerStatuses": [{
                    "name": "zookeeper", "image": "zk", "imageID": "sha256:1",
                    "containerID": "containerd://1", "ready": false, "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 80}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }],
            },
        }))
        .unwrap();
        let facts_before = crate::decide::restart::PodFacts::from_pod(&pod);
        trim_pod(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert!(spec.containers.is_empty() && spec.tolerations.is_none());
        assert!(spec.volumes.is_none());
        assert_eq!(pod.labels()["a"], "b");
        // What the restart decision reads is what it read before the trim.
        assert_eq!(
            crate::decide::restart::PodFacts::from_pod(&pod),
            facts_before
        );
        let status = pod.status.unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.host_ip.is_none());
        let container = &status.container_statuses.unwrap()[0];
        assert!(container.image.is_empty() && container.volume_mounts.is_none());
        assert_eq!(status.init_container_statuses.unwrap()[0].name, "init");
    }
}
