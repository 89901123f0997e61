//! Observing a member on a lost node: its pod's node, and whether its volumes live only there.
//!
//! Read only where it can matter, so that a healthy ensemble costs no request: a pod on a node
//! the informer cache shows Ready, tainted or not, is skipped at once. The rest is read from
//! the API server: a Node missing from the cache is asked for by name (only the API server's
//! "not found" says that it was deleted; an empty cache, e.g. without permission to list
//! nodes, says nothing), and the claims' volumes for their node affinity.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use crate::decide::lost_node::{Claim, NodeLoss, NodeState};
use crate::decide::node;

/// What is lost of `pod`, whose volume claims `claims` names: None when its node is Ready (or
/// unknown), or it is not scheduled and none of its volumes lives only on a node that is not
/// Ready.
pub async fn node_loss(
    ctx: &Context,
    namespace: &str,
    pod: &Pod,
    claims: &[String],
) -> Option<NodeLoss> {
    let spec = pod.spec.as_ref()?;
    let (node_name, on_node, (state, names), claims) = match &spec.node_name {
        // The node first: a pod on a Ready node costs no read of its claims.
        Some(name) => {
            let state = node_state(ctx, name).await?;
            let claims = read_claims(ctx, namespace, claims).await;
            (name.clone(), true, state, claims)
        }
        // Waiting to be scheduled: only a volume pinned to a node can hold it back there.
        None => {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase != Some("Pending") {
                return None;
            }
            let claims = read_claims(ctx, namespace, claims).await;
            let pinned = claims
                .iter()
                .find_map(|(_, pinned)| pinned.as_ref()?.first())?
                .clone();
            let state = node_state(ctx, &pinned).await?;
            (pinned, false, state, claims)
        }
    };
    let claims = claims
        .into_iter()
        .map(|(claim, pinned)| Claim {
            pinned: pinned.is_some_and(|p| p.is_subset(&names)),
            ..claim
        })
        .collect();
    Some(NodeLoss {
        pod: pod.name_any(),
        uid: pod.uid(),
        on_node,
        node: node_name,
        state,
        claims,
    })
}

/// The state of a node that is not Ready, and the names it goes by; None when it is Ready or
/// cannot be read.
async fn node_state(ctx: &Context, name: &str) -> Option<(NodeState, BTreeSet<String>)> {
    let cached = ctx.stores.nodes.get(&ObjectRef::new(name)).or_else(|| {
        // A volume names its node by its hostname label, which may differ from its name.
        ctx.stores
            .nodes
            .state()
            .into_iter()
            .find(|n| node::names(n).contains(name))
    });
    let node = match cached {
        Some(node) => node,
        None => match Api::<Node>::all(ctx.client.clone()).get_opt(name).await {
            Ok(None) => return Some((NodeState::Deleted, BTreeSet::from([name.to_owned()]))),
            Ok(Some(node)) => Arc::new(node),
            Err(error) => {
                tracing::warn!(node = name, %error, "reading a member's node");
                return None;
            }
        },
    };
    let names = node::names(&node);
    if node::out_of_service(&node) {
        return Some((NodeState::OutOfService, names));
    }
    let why = node::not_ready(&node)?;
    let since = node::not_ready_since(&node);
    Some((NodeState::NotReady { why, since }, names))
}

/// The volume claims `claim_names`, each with the nodes its volume is pinned to (None: not
/// pinned, not bound, or unreadable; `pinned` is left false for the caller to set).
async fn read_claims(
    ctx: &Context,
    namespace: &str,
    claim_names: &[String],
) -> Vec<(Claim, Option<BTreeSet<String>>)> {
    let claims_api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace);
    let volumes_api = Api::<PersistentVolume>::all(ctx.client.clone());
    let mut claims = Vec::new();
    for name in claim_names {
        let claim = match claims_api.get_opt(name).await {
            Ok(Some(claim)) => claim,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(claim = name, %error, "reading a member's volume claim");
                continue;
            }
        };
        let volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
        let pinned = match volume {
            Some(volume) => match volumes_api.get_opt(&volume).await {
                Ok(volume) => volume.as_ref().and_then(node::pinned_nodes),
                Err(error) => {
                    tracing::warn!(%volume, %error, "reading a member's volume");
                    None
                }
            },
            None => None,
        };
        let entry = Claim {
            name: name.clone(),
            uid: claim.uid(),
            pinned: false,
            terminating: claim.metadata.deletion_timestamp.is_some(),
        };
        claims.push((entry, pinned));
    }
    claims
}
