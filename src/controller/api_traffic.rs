//! Counting every request the operator sends to the API server, by verb and resource, the way
//! the API server's own `apiserver_request_total` names them: so that what one operator costs
//! the control plane (watches opened, reads, writes at rest) is visible from its own metrics,
//! without access to the API server's.
//!
//! The count is a layer on the kube client's service stack, so nothing escapes it: informer
//! lists and watches, applies, status writes, Events, the Lease.

use http::{Method, Request};
use kube::client::Body;

use super::telemetry::Metrics;

/// The verb and resource of a request, as Kubernetes names them: `get`, `list`, `watch`,
/// `create`, `update`, `patch`, `delete`, `deletecollection`; the resource in its plural,
/// with the subresource after a slash (`zookeeperensembles/status`), or `nonresource` for
/// paths such as `/version`.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return (verb(method, false, query), "nonresource".to_owned()),
    };
    // namespaces/<ns>/<resource>[/<name>[/<subresource>]], or a cluster-scoped
    // <resource>[/<name>[/<subresource>]] (namespaces themselves included).
    let rest = match rest {
        ["namespaces", _namespace, resource, tail @ ..] => {
            let mut named = vec![*resource];
            named.extend_from_slice(tail);
            named
        }
        other => other.to_vec(),
    };
    let (resource, named) = match rest.as_slice() {
        [] => return (verb(method, false, query), "nonresource".to_owned()),
        [resource] => ((*resource).to_owned(), false),
        [resource, _name] => ((*resource).to_owned(), true),
        [resource, _name, subresource, ..] => (format!("{resource}/{subresource}"), true),
    };
    (verb(method, named, query), resource)
}

fn verb(method: &Method, named: bool, query: Option<&str>) -> &'static str {
    let watching = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

/// The layer that counts each request in `metrics` as it is sent.
pub fn layer(
    metrics: Metrics,
) -> tower::util::MapRequestLayer<impl Fn(Request<Body>) -> Request<Body> + Clone> {
    tower::util::MapRequestLayer::new(move |request: Request<Body>| {
        let uri = request.uri();
        let (verb, resource) = classify(request.method(), uri.path(), uri.query());
        metrics.api_request(verb, resource);
        request
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(method: Method, uri: &str) -> (&'static str, String) {
        let uri: http::Uri = uri.parse().unwrap();
        classify(&method, uri.path(), uri.query())
    }

    #[test]
    fn requests_are_named_as_the_api_server_names_them() {
        let cases = [
            (
                Method::GET,
                "/api/v1/pods?labelSelector=a%3Db",
                "list",
                "pods",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ns/pods?watch=true&resourceVersion=5",
                "watch",
                "pods",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ns/secrets/zk-superuser",
                "get",
                "secrets",
            ),
            (
                Method::POST,
                "/api/v1/namespaces/ns/secrets",
                "create",
                "secrets",
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/ns/statefulsets/zk?fieldManager=zooherd",
                "patch",
                "statefulsets",
            ),
            (
                Method::PATCH,
                "/apis/zooherd.dev/v1alpha1/namespaces/ns/zookeeperensembles/zk/status",
                "patch",
                "zookeeperensembles/status",
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases/zooherd",
                "update",
                "leases",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns/pods/zk-1",
                "delete",
                "pods",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns/pods",
                "deletecollection",
                "pods",
            ),
            (Method::GET, "/api/v1/nodes?watch=1", "watch", "nodes"),
            (Method::GET, "/api/v1/namespaces/ns", "get", "namespaces"),
            (Method::GET, "/api/v1/namespaces", "list", "namespaces"),
            (Method::GET, "/version", "list", "nonresource"),
            (Method::GET, "/apis", "list", "nonresource"),
        ];
        for (method, uri, verb, resource) in cases {
            assert_eq!(
                classified(method, uri),
                (verb, resource.to_owned()),
                "{uri}"
            );
        }
    }
}
