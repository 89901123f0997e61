//! Smoke tests of the real control plane (tests/support/src/control_plane.rs): the API server
//! serves custom resources to kube's Client and to kubectl, and the controller manager and
//! the scheduler do their work. Run `bash tests/cluster/setup.sh` once first (tests/run.sh does).

use zooherd_test_support as support;

use std::process::Output;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

const GROUP: &str = "smoke.zooherd.dev";
const CRD_NAME: &str = "widgets.smoke.zooherd.dev";

fn stdout_of(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `check` every 200 ms until it returns Some, for at most `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn custom_objects_through_kube_and_kubectl() {
    let started = Instant::now();
    let cp = support::control_plane::shared();
    println!(
        "control plane available after {} ms",
        started.elapsed().as_millis()
    );
    let client = cp.client().await;
    let ns = cp
        .create_namespace(&client, "smoke-crd")
        .await
        .expect("create a namespace");

    // A small test-local CRD. CRDs are cluster-scoped and the control plane may be shared
    // by several test binaries: server-side apply makes this idempotent.
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": CRD_NAME },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "properties": {
                            "size": { "type": "integer" },
                            "color": { "type": "string" }
                        }
                    }}
                }},
                "additionalPrinterColumns": [
                    { "name": "Size", "type": "integer", "jsonPath": ".spec.size" }
                ]
            }]
        }
    }))
    .expect("CRD json");
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.patch(
        CRD_NAME,
        &PatchParams::apply("zooherd-smoke-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the CRD");
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(crds, CRD_NAME, conditions::is_crd_established()),
    )
    .await
    .expect("CRD not established in time")
    .expect("watching the CRD");

    let gvk = GroupVersionKind::gvk(GROUP, "v1", "Widget");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let widget = DynamicObject::new("first", &resource)
        .data(json!({ "spec": { "size": 3, "color": "teal" } }));
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("create a Widget");
    let read = widgets.get("first").await.expect("read the Widget back");
    assert_eq!(read.data["spec"]["size"], 3);
    assert_eq!(read.data["spec"]["color"], "teal");

    let names = stdout_of(
        &cp.kubectl()
            .args(["get", "widgets", "-n", &ns, "-o", "name"])
            .output()
            .expect("run kubectl"),
        "kubectl get -o name",
    );
    assert_eq!(names.trim(), "widget.smoke.zooherd.dev/first");
    let table = stdout_of(
        &cp.kubectl()
            .args(["get", "widgets.smoke.zooherd.dev", "-n", &ns])
            .output()
            .expect("run kubectl"),
        "kubectl get",
    );
    println!("{table}");
    assert!(table.contains("SIZE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["first", "3"]),
        "{table}"
    );

    cp.delete_namespace(&client, &ns)
        .await
        .expect("delete the namespace");
}

#[tokio::test]
async fn controllers_scheduler_kubectl_and_helm_work() {
    let cp = support::control_plane::shared();
    let client = cp.client().await;
    let ns = cp
        .create_namespace(&client, "smoke-controllers")
        .await
        .expect("create a namespace");

    // Versions: the server is the one built from source, the clients the pinned ones.
    let version = client.apiserver_version().await.expect("server version");
    assert_eq!(
        version.git_version,
        format!("v{}", support::version("KUBERNETES_VERSION"))
    );
    let kubectl_version = stdout_of(
        &cp.kubectl()
            .args(["version", "-o", "json"])
            .output()
            .expect("run kubectl"),
        "kubectl version",
    );
    assert!(
        kubectl_version.contains(&format!("\"v{}\"", support::version("KUBECTL_VERSION"))),
        "{kubectl_version}"
    );
    let helm_version = stdout_of(
        &cp.helm().arg("version").output().expect("run helm"),
        "helm version",
    );
    assert!(
        helm_version.contains(&format!("v{}", support::version("HELM_VERSION"))),
        "{helm_version}"
    );
    stdout_of(
        &cp.helm()
            .args(["list", "-n", &ns])
            .output()
            .expect("run helm"),
        "helm list",
    );

    // The garbage collector deletes dependents of a deleted owner.
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let owner: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "owner" } })).expect("owner json");
    let owner = config_maps
        .create(&PostParams::default(), &owner)
        .await
        .expect("create the owner");
    let dependent: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "owner",
                "uid": owner.meta().uid.clone().expect("owner uid"),
            }]
        }
    }))
    .expect("dependent json");
    config_maps
        .create(&PostParams::default(), &dependent)
        .await
        .expect("create the dependent");
    config_maps
        .delete("owner", &DeleteParams::background())
        .await
        .expect("delete the owner");
    let collected = Instant::now();
    eventually(
        "the dependent to be collected",
        Duration::from_secs(60),
        || {
            let config_maps = config_maps.clone();
            async move {
                match config_maps.get_opt("dependent").await {
                    Ok(None) => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await;
    println!(
        "garbage collector removed the dependent in {} ms",
        collected.elapsed().as_millis()
    );

    // The statefulset controller creates the pod; the scheduler finds no node for it.
    let statefulset: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 1,
            "serviceName": "web",
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "main", "image": "zooherd.invalid/none:1" }] }
            }
        }
    }))
    .expect("statefulset json");
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &statefulset)
        .await
        .expect("create the StatefulSet");
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let reason = eventually(
        "pod web-0 to be marked unschedulable",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                let pod = pods.get_opt("web-0").await.ok()??;
                let conditions = pod.status?.conditions?;
                conditions
                    .into_iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                    .and_then(|c| c.reason)
            }
        },
    )
    .await;
    assert_eq!(reason, "Unschedulable");

    cp.delete_namespace(&client, &ns)
        .await
        .expect("delete the namespace");
}
