//! The two Services of an ensemble.
//!
//! The headless Service gives every server the stable DNS name that zoo.cfg lists. It publishes
//! not-ready addresses: a server only becomes Ready once it serves, which needs a quorum, which
//! needs the servers to resolve each other first. The client Service routes to Ready servers
//! only, so clients are never sent to a server that cannot answer them.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CLIENT_TLS_PORT_NAME, ValidatedEnsemble, names, server_ports};

/// `<name>-headless`: every server port, DNS records for ready and not-ready servers alike.
pub(super) fn headless(parent: &ValidatedEnsemble) -> Service {
    Service {
        metadata: parent.metadata(names::headless_service(parent.ensemble())),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(parent.labels.clone()),
            ports: Some(
                server_ports(&parent.ensemble().spec)
                    .into_iter()
                    .map(|(name, port)| service_port(name, port))
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// `<name>-client`: a virtual IP for the client port (and the TLS one, if any) of the serving
/// servers.
pub(super) fn client(parent: &ValidatedEnsemble) -> Service {
    let mut ports = vec![service_port("client", names::CLIENT_PORT)];
    if parent.ensemble().spec.tls.client {
        ports.push(service_port(
            CLIENT_TLS_PORT_NAME,
            names::SECURE_CLIENT_PORT,
        ));
    }
    Service {
        metadata: parent.metadata(names::client_service(parent.ensemble())),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(parent.labels.clone()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A TCP port that forwards to the container port of the same name.
fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures;
    use super::*;

    fn ports(service: &Service) -> Vec<(String, i32, IntOrString)> {
        let spec = service.spec.as_ref().expect("spec");
        spec.ports
            .as_ref()
            .expect("ports")
            .iter()
            .map(|p| {
                assert_eq!(p.protocol.as_deref(), Some("TCP"));
                (
                    p.name.clone().expect("named"),
                    p.port,
                    p.target_port.clone().expect("target port"),
                )
            })
            .collect()
    }

    fn named(name: &str, port: i32) -> (String, i32, IntOrString) {
        (name.to_owned(), port, IntOrString::String(name.to_owned()))
    }

    #[test]
    fn headless_service_resolves_every_server_before_it_is_ready() {
        let children = fixtures::children(json!({}));
        let service = &children.headless_service;
        let spec = service.spec.as_ref().unwrap();
        assert_eq!(service.metadata.name.as_deref(), Some("zk-headless"));
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector, service.metadata.labels);
        assert_eq!(
            ports(service),
            [
                named("client", 2181),
                named("quorum", 2888),
                named("election", 3888),
                named("admin", 8080),
                named("metrics", 7000),
            ]
        );
    }

    #[test]
    fn client_service_exposes_the_client_port_of_ready_servers() {
        let children = fixtures::children(json!({}));
        let service = &children.client_service;
        let spec = service.spec.as_ref().unwrap();
        assert_eq!(service.metadata.name.as_deref(), Some("zk-client"));
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(spec.publish_not_ready_addresses, None);
        assert_eq!(spec.selector, service.metadata.labels);
        assert_eq!(ports(service), [named("client", 2181)]);
    }

    #[test]
    fn a_tls_client_port_is_exposed_beside_the_plaintext_one() {
        let children = fixtures::children(json!({"tls": {"client": true}}));
        assert_eq!(
            ports(&children.client_service),
            [named("client", 2181), named("client-tls", 2281)]
        );
        assert!(ports(&children.headless_service).contains(&named("client-tls", 2281)));
    }

    #[test]
    fn selectors_match_the_pod_template() {
        let children = fixtures::children(json!({"placement": {"podLabels": {"team": "a"}}}));
        let pod_labels = children
            .stateful_set
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels
            .unwrap();
        for service in [children.headless_service, children.client_service] {
            for (key, value) in service.spec.unwrap().selector.unwrap() {
                assert_eq!(pod_labels.get(&key), Some(&value), "{key}");
            }
        }
    }
}
