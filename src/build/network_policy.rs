//! The NetworkPolicy of an ensemble: every server port admits its owner and nobody else.
//!
//! - 2888 and 3888 (quorum, election): the ensemble's own servers. A pod that reached them
//!   could take part in elections or sync as a follower.
//! - 8080 (AdminServer): the operator's pods, which probe every member each round, and the
//!   ensemble's own servers, whose agent asks the other voters before it moves a data directory
//!   aside (`agent::server::peers`). Nobody else: its commands include `snapshot`, `restore`
//!   and `dump`.
//! - 2181 (clients): `spec.networkPolicy.clientFrom` (default: every pod of the ensemble's
//!   namespace), and the operator, which changes the membership as a ZooKeeper client.
//! - 7000 (metrics): `spec.networkPolicy.metricsFrom`, nobody when it is empty.
//!
//! The operator's pods are named by namespace (the `kubernetes.io/metadata.name` label every
//! namespace carries) and labels, both from the operator's own settings, so an operator in its
//! own namespace still reaches ensembles in every other. Only ingress is restricted: the
//! servers' own connections (DNS, each other) are left to the cluster's other policies.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{OperatorPods, ValidatedEnsemble, names};

/// The label the API server puts on every namespace, holding its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// `<name>`, or None when `spec.networkPolicy.enabled` is false.
pub(super) fn build(parent: &ValidatedEnsemble, operator: &OperatorPods) -> Option<NetworkPolicy> {
    let spec = &parent.ensemble().spec.network_policy;
    if !spec.enabled {
        return None;
    }
    let servers = NetworkPolicyPeer {
        pod_selector: Some(parent.selector()),
        ..NetworkPolicyPeer::default()
    };
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(match_labels(BTreeMap::from([(
            NAMESPACE_NAME_LABEL.to_owned(),
            operator.namespace.clone(),
        )]))),
        pod_selector: Some(match_labels(operator.labels.clone())),
        ip_block: None,
    };
    let namespace_pods = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    };
    let mut clients = spec
        .client_from
        .clone()
        .unwrap_or_else(|| vec![namespace_pods]);
    clients.push(operator.clone());
    let mut client_ports = vec![names::CLIENT_PORT];
    if parent.ensemble().spec.tls.client {
        client_ports.push(names::SECURE_CLIENT_PORT);
    }
    let mut ingress = vec![
        rule(
            vec![servers.clone()],
            &[names::QUORUM_PORT, names::ELECTION_PORT],
        ),
        rule(vec![operator, servers], &[names::ADMIN_PORT]),
        rule(clients, &client_ports),
    ];
    if !spec.metrics_from.is_empty() {
        ingress.push(rule(spec.metrics_from.clone(), &[names::METRICS_PORT]));
    }
    Some(NetworkPolicy {
        metadata: parent.metadata(names::network_policy(parent.ensemble())),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(parent.selector()),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            egress: None,
        }),
    })
}

fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    }
}

/// Admits `from` to the TCP `ports`.
fn rule(from: Vec<NetworkPolicyPeer>, ports: &[i32]) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(from),
        ports: Some(
            ports
                .iter()
                .map(|&port| NetworkPolicyPort {
                    port: Some(IntOrString::Int(port)),
                    protocol: Some("TCP".to_owned()),
                    end_port: None,
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::fixtures;
    use super::*;

    /// The policy's ingress as (ports, peers) in JSON, the form `kubectl get -o json` shows.
    fn ingress(spec: Value) -> Vec<(Vec<i32>, Value)> {
        let policy = fixtures::children(spec)
            .network_policy
            .expect("a NetworkPolicy by default");
        policy
            .spec
            .expect("spec")
            .ingress
            .expect("ingress rules")
            .into_iter()
            .map(|rule| {
                let ports = rule
                    .ports
                    .expect("ports")
                    .into_iter()
                    .map(|p| {
                        assert_eq!(p.protocol.as_deref(), Some("TCP"));
                        match p.port {
                            Some(IntOrString::Int(port)) => port,
                            other => panic!("a numbered port, not {other:?}"),
                        }
                    })
                    .collect();
                (
                    ports,
                    serde_json::to_value(rule.from.expect("from")).unwrap(),
                )
            })
            .collect()
    }

    fn servers() -> Value {
        json!({"podSelector": {"matchLabels": {
            "app.kubernetes.io/component": "server",
            "app.kubernetes.io/instance": "zk",
            "app.kubernetes.io/managed-by": "zooherd",
            "app.kubernetes.io/name": "zookeeper",
        }}})
    }

    fn operator() -> Value {
        json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "zooherd-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "zooherd", "app.kubernetes.io/instance": "ops"}},
        })
    }

    #[test]
    fn every_port_admits_its_owner_only() {
        assert_eq!(
            ingress(json!({})),
            [
                (vec![2888, 3888], json!([servers()])),
                (vec![8080], json!([operator(), servers()])),
                // Default clients: every pod of the ensemble's namespace.
                (vec![2181], json!([{"podSelector": {}}, operator()])),
            ]
        );
    }

    #[test]
    fn the_tls_client_port_admits_the_clients() {
        let rules = ingress(json!({"tls": {"client": true}}));
        assert_eq!(
            rules[2],
            (vec![2181, 2281], json!([{"podSelector": {}}, operator()]))
        );
    }

    #[test]
    fn selects_the_servers_for_ingress_only() {
        let children = fixtures::children(json!({"placement": {"podLabels": {"team": "a"}}}));
        let policy = children.network_policy.unwrap();
        assert_eq!(policy.metadata.name.as_deref(), Some("zk"));
        let spec = policy.spec.unwrap();
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
        assert_eq!(spec.egress, None);
        assert_eq!(
            spec.pod_selector,
            Some(children.stateful_set.spec.unwrap().selector)
        );
    }

    #[test]
    fn client_and_metrics_peers_come_from_the_spec() {
        let monitoring = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}});
        let apps = json!({"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {"role": "client"}}});
        let block = json!({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}});
        let rules = ingress(json!({"networkPolicy": {
            "clientFrom": [apps, block],
            "metricsFrom": [monitoring],
        }}));
        assert_eq!(rules.len(), 4, "{rules:?}");
        assert_eq!(rules[2], (vec![2181], json!([apps, block, operator()])));
        assert_eq!(rules[3], (vec![7000], json!([monitoring])));
    }

    #[test]
    fn disabled_builds_no_policy() {
        let children = fixtures::children(json!({"networkPolicy": {"enabled": false}}));
        assert_eq!(children.network_policy, None);
    }
}
