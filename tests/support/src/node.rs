//! A Node for tests whose control plane has no kubelet ([`super::kubelet`]): the pods the test
//! binds to it are deleted the way a kubelet's are. A pod on no node is deleted at once by the
//! API server; one on a node stays, terminating, until its kubelet has stopped its containers
//! and deletes it for good ([`finish_deletion`]). The disruption controller, the StatefulSet
//! controller and the operator see that terminating pod as they do on a real node (an evicted
//! pod seen terminating is dropped from the budget's disrupted pods at once, for instance).
//!
//! The node is kept Ready as a kubelet keeps it: its Lease in `kube-node-lease` is renewed
//! every few seconds, so that the node lifecycle controller neither marks it unreachable nor
//! has its pods evicted, and the operator never takes it for a lost node.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

/// How often the node's Lease is renewed (a kubelet's default is 10 s of a 40 s lease).
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// A registered node, kept Ready until dropped.
pub struct ReadyNode {
    pub name: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for ReadyNode {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl ReadyNode {
    /// Registers the node `name` (or takes it over, if a test before this one made it), Ready.
    pub async fn register(client: &kube::Client, name: &str) -> ReadyNode {
        let nodes = Api::<Node>::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        }))
        .unwrap();
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("registering node {name}: {e}"),
        }
        ready(&nodes, name).await;
        let (client, owned) = (client.clone(), name.to_owned());
        let heartbeat = tokio::spawn(async move {
            let leases = Api::<Lease>::namespaced(client, "kube-node-lease");
            loop {
                renew(&leases, &owned).await;
                tokio::time::sleep(RENEW_EVERY).await;
            }
        });
        ReadyNode {
            name: name.to_owned(),
            heartbeat,
        }
    }

    /// Binds the pod `pod` to this node, as the scheduler would. A pod already bound, or gone,
    /// is left as it is.
    pub async fn bind(&self, pods: &Api<Pod>, pod: &str) {
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.name},
        });
        let bound = pods
            .create_subresource::<_, serde_json::Value>(
                "binding",
                pod,
                &PostParams::default(),
                &binding,
            )
            .await;
        match bound {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if [404, 409].contains(&e.code) => {}
            Err(e) => panic!("binding pod {pod} to node {}: {e}", self.name),
        }
    }
}

/// The node's Ready condition and its room for pods; from then on its Lease says it lives
/// (the node lifecycle controller takes either).
async fn ready(nodes: &Api<Node>, name: &str) {
    let now = Time(jiff::Timestamp::now());
    let status = json!({"status": {
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "the test plays the kubelet",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
        "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap_or_else(|e| panic!("node {name} Ready: {e}"));
}

/// Renews (or creates) the node's Lease, as a kubelet does. An error is left to the next beat.
async fn renew(leases: &Api<Lease>, name: &str) {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_owned()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    let patched = leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&lease))
        .await;
    if matches!(patched, Err(kube::Error::Api(ref e)) if e.code == 404) {
        let _ = leases.create(&PostParams::default(), &lease).await;
    }
}

/// Deletes the terminating pod `pod` of uid `uid` for good, as its kubelet does once its
/// containers have stopped. A pod already gone, or replaced (another uid), is left alone.
pub async fn finish_deletion(pods: &Api<Pod>, pod: &str, uid: &str) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(pod, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if [404, 409].contains(&e.code) => {}
        Err(e) => panic!("deleting pod {pod} for good: {e}"),
    }
}
