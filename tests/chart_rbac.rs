//! The Helm chart against a real API server (tests/support/src/control_plane.rs):
//! - `helm lint` is clean, and what `helm template` renders passes a server-side dry run, with
//!   cluster-wide RBAC and with per-namespace RBAC;
//! - the PodMonitor selects the server pods the operator builds, at their metrics port;
//! - the operator binary, run with the identity of the chart's ServiceAccount (a TokenRequest
//!   token), does its whole job with nothing but the chart's RBAC: it takes the Lease,
//!   creates an ensemble's StatefulSet, Services, ConfigMap, PodDisruptionBudget and
//!   NetworkPolicy (admitting the chart's operator pods by their labels and namespace), writes
//!   `.status`, and never meets a "forbidden" on the way;
//! - `deploy/operator.yaml` installs, and its operator pods pass the restricted Pod Security
//!   Standard.
//!
//! The control plane has no node, so no pod runs: the ensemble stays PENDING, which is what its
//! status must then say. Run `bash tests/cluster/setup.sh` once first (tests/run.sh does).

use zooherd_test_support as support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, PodSpec, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use support::control_plane::{self, ControlPlane};
use zooherd::api::{Phase, ZooKeeperEnsemble};
use zooherd::build::names;

const CRD: &str = "zookeeperensembles.zooherd.dev";
/// Images that cannot be pulled: the pods would not run anyway (there is no node), and the
/// server image must reach the StatefulSet exactly as the chart configured it.
const OPERATOR_IMAGE: (&str, &str) = ("example.invalid/zooherd", "test");
const SERVER_IMAGE: (&str, &str) = ("example.invalid/zookeeper", "test");
/// How long the operator may take to create the children and write the first status.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

fn chart() -> PathBuf {
    support::repo_root().join("charts/zooherd")
}

/// Runs `command`, fails the test unless it succeeds, and returns its stdout.
fn run(mut command: Command) -> String {
    let what = support::process::describe(&command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn helm_lint(args: &[&str]) -> String {
    let helm = support::helm_path();
    support::require_file(&helm, "helm").unwrap();
    let mut command = Command::new(helm);
    command.arg("lint").arg("--strict").arg(chart()).args(args);
    run(command)
}

#[test]
fn chart_lints_clean() {
    let value_sets: [&[&str]; 7] = [
        &[],
        &["--set", "watchNamespaces={team-a,team-b}"],
        &["--set", "serviceMonitor.enabled=true"],
        &["--set", "podMonitor.enabled=true"],
        &["--set", "prometheusRule.enabled=true"],
        &["--set", "grafanaDashboard.enabled=true"],
        &[
            "--set",
            "replicaCount=1",
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "logging.format=json",
        ],
    ];
    for args in value_sets {
        let output = helm_lint(args);
        for problem in ["[WARNING]", "[ERROR]"] {
            assert!(
                !output.contains(problem),
                "helm lint {args:?} reports a problem:\n{output}"
            );
        }
        assert!(output.contains("0 chart(s) failed"), "{output}");
    }
}

#[test]
fn values_schema_refuses_mistakes() {
    let cases: [(&[&str], &str); 4] = [
        (&["--set", "replicaCout=2"], "replicaCout"),
        (&["--set", "logging.format=xml"], "format"),
        (&["--set", "watchNamespaces={Team_A}"], "watchNamespaces"),
        (
            &[
                "--set",
                "replicaCount=2",
                "--set",
                "leaderElection.enabled=false",
            ],
            "leaderElection.enabled",
        ),
    ];
    for (args, mentioned) in cases {
        let helm = support::helm_path();
        support::require_file(&helm, "helm").unwrap();
        let output = Command::new(helm)
            .arg("template")
            .arg("zooherd")
            .arg(chart())
            .args(args)
            .output()
            .expect("running helm template");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "helm template {args:?} should fail"
        );
        assert!(
            stderr.contains(mentioned),
            "helm template {args:?} fails without naming {mentioned}: {stderr}"
        );
    }
}

/// The chart's PodMonitor (`podMonitor.enabled`) selects what the operator builds: its label
/// selector matches the labels of every server pod, and its port is the pod's container port
/// for ZooKeeper's metrics (7000). A rename on either side would silently scrape nothing.
#[test]
fn pod_monitor_scrapes_the_servers_metrics_port() {
    use zooherd::api::ZooKeeperEnsemble;
    use zooherd::build::{Settings, ValidatedEnsemble, children};

    let helm = support::helm_path();
    support::require_file(&helm, "helm").unwrap();
    let mut command = Command::new(helm);
    command
        .args(["template", "zooherd"])
        .arg(chart())
        .args(["--set", "podMonitor.enabled=true"])
        .args(["--show-only", "templates/podmonitor.yaml"]);
    let monitor: serde_json::Value =
        serde_yaml::from_str(&run(command)).expect("the PodMonitor is YAML");
    assert_eq!(monitor["kind"], "PodMonitor");
    assert_eq!(monitor["spec"]["namespaceSelector"]["any"], true);

    let mut ensemble = ZooKeeperEnsemble::new("zk", serde_json::from_str("{}").unwrap());
    ensemble.metadata.namespace = Some("team-a".to_owned());
    ensemble.metadata.uid = Some("0f6c9a7e-1111-4222-8333-944445555666".to_owned());
    let valid = ValidatedEnsemble::new(&ensemble).expect("the default ensemble is valid");
    let stateful_set = children(&valid, &Settings::new("zk:1"), None).stateful_set;
    let template = stateful_set.spec.unwrap().template;
    let pod_labels = template.metadata.unwrap().labels.unwrap();
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("a matchLabels selector");
    for (key, value) in selector {
        assert_eq!(
            pod_labels.get(key).map(String::as_str),
            value.as_str(),
            "the PodMonitor selects {key}={value}, the server pods carry {pod_labels:?}"
        );
    }
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    let port = template.spec.unwrap().containers[0]
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .find(|p| p.name.as_deref() == endpoint["port"].as_str())
        .unwrap_or_else(|| panic!("no container port named {}", endpoint["port"]));
    assert_eq!(port.container_port, names::METRICS_PORT);
    assert_eq!(endpoint["path"], "/metrics");
}

/// Applies the chart's CRDs as the documented upgrade path does, and waits until they are
/// served. CRDs are cluster-wide and the control plane may be shared: this is idempotent.
fn apply_crds(cp: &ControlPlane) {
    let mut apply = cp.kubectl();
    apply
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(chart().join("crds"));
    run(apply);
    support::operator::wait_established(cp, CRD);
}

/// `helm template <release> charts/zooherd --namespace <namespace> <args>`.
fn helm_template(cp: &ControlPlane, release: &str, namespace: &str, args: &[String]) -> String {
    let mut command = cp.helm();
    command
        .arg("template")
        .arg(release)
        .arg(chart())
        .args(["--namespace", namespace])
        .args(args);
    run(command)
}

/// (kind, namespace) of every object in a YAML stream.
fn kinds_and_namespaces(yaml: &str) -> Vec<(String, String)> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|document| {
            let value = Value::deserialize(document).expect("valid YAML");
            let kind = value["kind"].as_str()?.to_owned();
            let namespace = value["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Some((kind, namespace))
        })
        .collect()
}

#[tokio::test]
async fn rendered_chart_passes_a_server_side_dry_run() {
    let cp = control_plane::shared();
    let client = cp.client().await;
    apply_crds(cp);
    let namespace = cp.create_namespace(&client, "chart-dry-run").await.unwrap();
    let watched = [
        cp.create_namespace(&client, "chart-watched").await.unwrap(),
        cp.create_namespace(&client, "chart-watched").await.unwrap(),
    ];
    let dir = tempfile::tempdir().unwrap();

    // Per namespace, with the Grafana dashboard's ConfigMap (which the API server must take
    // as it is: a valid label, under the object size limit).
    let per_namespace = vec![
        "--set".to_owned(),
        format!("watchNamespaces={{{}}}", watched.join(",")),
        "--set".to_owned(),
        "grafanaDashboard.enabled=true".to_owned(),
    ];
    for (mode, args) in [("cluster-wide", vec![]), ("per-namespace", per_namespace)] {
        let release = support::unique_name("dry-run");
        let rendered = helm_template(cp, &release, &namespace, &args);
        let objects = kinds_and_namespaces(&rendered);
        let count = |kind: &str| objects.iter().filter(|(k, _)| k == kind).count();
        if mode == "cluster-wide" {
            // The operator's, and the one that reads nodes.
            assert_eq!((count("ClusterRole"), count("ClusterRoleBinding")), (2, 2));
            // Only the Lease's Role.
            assert_eq!(count("Role"), 1, "{mode}");
        } else {
            // Only the one that reads nodes (cluster-scoped objects).
            assert_eq!((count("ClusterRole"), count("ClusterRoleBinding")), (1, 1));
            assert_eq!(count("ConfigMap"), 1, "{mode}: the dashboard's ConfigMap");
            for ns in &watched {
                for kind in ["Role", "RoleBinding"] {
                    assert!(
                        objects.contains(&(kind.to_owned(), ns.clone())),
                        "{mode}: no {kind} in {ns}"
                    );
                }
            }
        }
        // Every namespaced object says where it goes, so the plain manifests work with any
        // current namespace.
        for (kind, ns) in &objects {
            let cluster_scoped = matches!(kind.as_str(), "ClusterRole" | "ClusterRoleBinding");
            assert_eq!(
                ns.is_empty(),
                cluster_scoped,
                "{mode}: {kind} namespace {ns:?}"
            );
        }

        let file = dir.path().join(format!("{mode}.yaml"));
        fs::write(&file, &rendered).unwrap();
        let mut apply = cp.kubectl();
        apply.args(["apply", "--dry-run=server", "-f"]).arg(&file);
        let output = run(apply);
        assert_eq!(
            output.matches("(server dry run)").count(),
            objects.len(),
            "{mode}: every object passes the dry run:\n{output}"
        );
    }

    // The examples pass the CRD's validation rules (CEL) on the real API server.
    let mut apply = cp.kubectl();
    apply
        .args(["apply", "--dry-run=server", "-n", &namespace, "-f"])
        .arg(support::repo_root().join("deploy/examples"));
    let output = run(apply);
    assert_eq!(output.matches("(server dry run)").count(), 3, "{output}");

    for ns in watched.iter().chain([&namespace]) {
        cp.delete_namespace(&client, ns).await.unwrap();
    }
}

/// `deploy/operator.yaml` installs for real, and its operator pods pass the restricted Pod
/// Security Standard that its Namespace enforces (the API server's PodSecurity admission).
#[tokio::test]
async fn plain_manifests_install_pods_of_the_restricted_standard() {
    const NAMESPACE: &str = "zooherd-system";
    let cp = control_plane::shared();
    let client = cp.client().await;
    let mut apply = cp.kubectl();
    // --force-conflicts: the CRD may already be there, applied by other tests.
    apply
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(support::repo_root().join("deploy/operator.yaml"));
    run(apply);

    let namespace = Api::<Namespace>::all(client.clone())
        .get(NAMESPACE)
        .await
        .unwrap();
    assert_eq!(
        namespace
            .metadata
            .labels
            .unwrap_or_default()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
    let selector = ListParams::default().labels("app.kubernetes.io/instance=zooherd");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // PodSecurity admission refuses a non-compliant pod at creation; the ReplicaSet then
        // reports the refusal in its ReplicaFailure condition.
        for replica_set in replica_sets.list(&selector).await.unwrap() {
            let refused = replica_set
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True");
            if let Some(condition) = refused {
                panic!("the operator pods are refused: {:?}", condition.message);
            }
        }
        let created = pods.list(&selector).await.unwrap().items.len();
        if created == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{created} of 2 operator pods created after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Everything but the CRD, which other tests of this control plane may be using.
    let mut delete = cp.kubectl();
    delete.args([
        "delete",
        &format!("namespace/{NAMESPACE}"),
        "clusterrole/zooherd",
        "clusterrolebinding/zooherd",
        "--wait=false",
    ]);
    run(delete);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rbac {
    ClusterWide,
    PerNamespace,
}

#[tokio::test]
async fn operator_runs_with_cluster_wide_chart_rbac() {
    operator_runs_with_chart_rbac(Rbac::ClusterWide).await;
}

#[tokio::test]
async fn operator_runs_with_per_namespace_chart_rbac() {
    operator_runs_with_chart_rbac(Rbac::PerNamespace).await;
}

/// The operator process; killed when dropped (a failed assertion must not leave it running).
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("polling the operator") {
            panic!(
                "the operator exited ({status}):\n{}",
                support::tail(&self.log, 80)
            );
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = support::process::terminate(&mut self.child, Signal::SIGKILL, Duration::ZERO);
    }
}

/// A kubeconfig for the API server of `cp` that authenticates with `token`.
fn token_kubeconfig(cp: &ControlPlane, token: &str, path: &Path) {
    let mut view = cp.kubectl();
    view.args([
        "config",
        "view",
        "--raw",
        "--minify",
        "--flatten",
        "-o",
        "json",
    ]);
    let admin: Value = serde_json::from_str(&run(view)).expect("kubectl config view prints JSON");
    let cluster = &admin["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().expect("a server URL");
    let ca = cluster["certificate-authority-data"]
        .as_str()
        .expect("the cluster's CA, inline");
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "operator",
    });
    fs::write(path, serde_json::to_vec_pretty(&kubeconfig).unwrap()).unwrap();
}

/// What `kubectl auth can-i` answers for the identity of `kubeconfig`.
fn can_i(cp: &ControlPlane, kubeconfig: &Path, args: &[&str]) -> bool {
    let output = Command::new(support::kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["auth", "can-i"])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("running kubectl auth can-i");
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl auth can-i {args:?} ({:?}): {answer} {}",
            cp.kubeconfig(),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The pod template's spec of a Deployment the chart rendered.
fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .expect("the chart's Deployment has a pod template")
}

/// The environment the chart gives the operator container, with the downward-API fields
/// resolved as the kubelet would.
fn chart_environment(deployment: &Deployment, pod_name: &str) -> BTreeMap<String, String> {
    let namespace = deployment.metadata.namespace.clone().unwrap();
    let spec = pod_spec(deployment);
    let container = &spec.containers[0];
    assert_eq!(
        container.args.as_deref(),
        Some(&["operator".to_owned()][..])
    );
    container
        .env
        .iter()
        .flatten()
        .map(|var| {
            let value = match (&var.value, &var.value_from) {
                (Some(value), None) => value.clone(),
                (None, Some(from)) => {
                    match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                        Some("metadata.namespace") => namespace.clone(),
                        Some("metadata.name") => pod_name.to_owned(),
                        other => panic!("{}: unexpected valueFrom {other:?}", var.name),
                    }
                }
                other => panic!("{}: unexpected value {other:?}", var.name),
            };
            (var.name.clone(), value)
        })
        .collect()
}

/// The metadata of every child the operator creates for the ensemble `zk`, once all exist.
async fn child_metadata(
    client: &kube::Client,
    namespace: &str,
) -> Option<Vec<(String, ObjectMeta)>> {
    async fn get<K>(client: &kube::Client, namespace: &str, name: &str) -> Option<ObjectMeta>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let object = api.get_opt(name).await.expect("reading a child")?;
        Some(object.meta().clone())
    }
    Some(vec![
        (
            "StatefulSet zk".into(),
            get::<StatefulSet>(client, namespace, "zk").await?,
        ),
        (
            "Service zk-headless".into(),
            get::<Service>(client, namespace, "zk-headless").await?,
        ),
        (
            "Service zk-client".into(),
            get::<Service>(client, namespace, "zk-client").await?,
        ),
        (
            "ConfigMap zk-config".into(),
            get::<ConfigMap>(client, namespace, "zk-config").await?,
        ),
        (
            "PodDisruptionBudget zk".into(),
            get::<PodDisruptionBudget>(client, namespace, "zk").await?,
        ),
        (
            "NetworkPolicy zk".into(),
            get::<NetworkPolicy>(client, namespace, "zk").await?,
        ),
    ])
}

async fn operator_runs_with_chart_rbac(rbac: Rbac) {
    let cp = control_plane::shared();
    let client = cp.client().await;
    apply_crds(cp);
    let prefix = match rbac {
        Rbac::ClusterWide => "rbac-cluster",
        Rbac::PerNamespace => "rbac-ns",
    };
    let release_ns = cp
        .create_namespace(&client, &format!("{prefix}-release"))
        .await
        .unwrap();
    let ensemble_ns = cp
        .create_namespace(&client, &format!("{prefix}-ensemble"))
        .await
        .unwrap();
    // Watched too (per-namespace RBAC), but holds no ensemble.
    let spare_ns = cp
        .create_namespace(&client, &format!("{prefix}-spare"))
        .await
        .unwrap();
    // Never watched with per-namespace RBAC.
    let other_ns = cp
        .create_namespace(&client, &format!("{prefix}-other"))
        .await
        .unwrap();
    let release = support::unique_name("zh");
    let dir = tempfile::tempdir().unwrap();

    // ---- install the chart ------------------------------------------------------------------
    let mut install = cp.helm();
    install
        .args(["install", &release])
        .arg(chart())
        .args(["--namespace", &release_ns])
        .args(["--set", &format!("image.repository={}", OPERATOR_IMAGE.0)])
        .args(["--set", &format!("image.tag={}", OPERATOR_IMAGE.1)])
        .args([
            "--set",
            &format!("serverImage.repository={}", SERVER_IMAGE.0),
        ])
        .args(["--set", &format!("serverImage.tag={}", SERVER_IMAGE.1)]);
    if rbac == Rbac::PerNamespace {
        install.args([
            "--set",
            &format!("watchNamespaces={{{ensemble_ns},{spare_ns}}}"),
        ]);
    }
    let notes = run(install);
    assert!(notes.contains("kubectl get zke"), "NOTES.txt: {notes}");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &release_ns);
    let listed = deployments
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1, "the chart installs one Deployment");
    let deployment = &listed.items[0];
    let deployment_name = deployment.metadata.name.clone().unwrap();
    let pod_spec = pod_spec(deployment);
    let service_account = pod_spec.service_account_name.clone().unwrap();
    assert_eq!(
        pod_spec.containers[0].image.as_deref(),
        Some(format!("{}:{}", OPERATOR_IMAGE.0, OPERATOR_IMAGE.1).as_str())
    );

    // ---- the operator's identity: the chart's ServiceAccount --------------------------------
    let mut create_token = cp.kubectl();
    create_token.args([
        "create",
        "token",
        &service_account,
        "-n",
        &release_ns,
        "--duration=1h",
    ]);
    let token = run(create_token).trim().to_owned();
    let kubeconfig = dir.path().join("operator.kubeconfig");
    token_kubeconfig(cp, &token, &kubeconfig);

    // What the chart grants, and what it must not.
    let cluster_wide = rbac == Rbac::ClusterWide;
    let lease_name = "zooherd-operator";
    let our_lease = format!("leases.coordination.k8s.io/{lease_name}");
    let expectations: Vec<(Vec<&str>, bool)> = vec![
        (
            vec![
                "watch",
                "zookeeperensembles.zooherd.dev",
                "-n",
                &ensemble_ns,
            ],
            true,
        ),
        (
            vec![
                "patch",
                "zookeeperensembles.zooherd.dev",
                "--subresource=status",
                "-n",
                &ensemble_ns,
            ],
            true,
        ),
        (vec!["patch", "statefulsets.apps", "-n", &ensemble_ns], true),
        // A drill schedule asks for a drill by annotating the backup.
        (
            vec!["patch", "zookeeperbackups.zooherd.dev", "-n", &ensemble_ns],
            true,
        ),
        (
            vec![
                "delete",
                "networkpolicies.networking.k8s.io",
                "-n",
                &ensemble_ns,
            ],
            true,
        ),
        // Pods are removed only through the Eviction API, which the PodDisruptionBudget governs.
        (
            vec![
                "create",
                "pods",
                "--subresource=eviction",
                "-n",
                &ensemble_ns,
            ],
            true,
        ),
        (vec!["delete", "pods", "-n", &ensemble_ns], false),
        (
            vec!["create", "events.events.k8s.io", "-n", &ensemble_ns],
            true,
        ),
        (vec!["list", "pods", "-n", &spare_ns], true),
        (
            vec!["create", "leases.coordination.k8s.io", "-n", &release_ns],
            true,
        ),
        (vec!["update", &our_lease, "-n", &release_ns], true),
        (
            vec![
                "get",
                "leases.coordination.k8s.io/another-lease",
                "-n",
                &release_ns,
            ],
            false,
        ),
        (
            vec!["create", "leases.coordination.k8s.io", "-n", &ensemble_ns],
            false,
        ),
        // The superuser and quorum TLS Secrets: read, or created once, and the quorum TLS one
        // updated to renew the servers' certificate; never listed, watched or deleted.
        (vec!["get", "secrets", "-n", &ensemble_ns], true),
        (vec!["create", "secrets", "-n", &ensemble_ns], true),
        (vec!["list", "secrets", "-n", &ensemble_ns], false),
        (vec!["watch", "secrets", "-n", &ensemble_ns], false),
        (vec!["update", "secrets", "-n", &ensemble_ns], true),
        (vec!["delete", "secrets", "-n", &ensemble_ns], false),
        (vec!["create", "pods", "-n", &ensemble_ns], false),
        (
            vec![
                "update",
                "zookeeperensembles.zooherd.dev",
                "-n",
                &ensemble_ns,
            ],
            false,
        ),
        // Nodes are read (a member on a node that is not Ready is never restarted), not changed.
        (vec!["list", "nodes"], true),
        (vec!["patch", "nodes"], false),
        // A member's volume is read, and its claim deleted, to rebuild it off a lost node.
        (vec!["get", "persistentvolumes"], true),
        (vec!["delete", "persistentvolumes"], false),
        (
            vec!["get", "persistentvolumeclaims", "-n", &ensemble_ns],
            true,
        ),
        (
            vec!["delete", "persistentvolumeclaims", "-n", &ensemble_ns],
            true,
        ),
        (
            vec!["create", "persistentvolumeclaims", "-n", &ensemble_ns],
            false,
        ),
        (
            vec!["update", "customresourcedefinitions.apiextensions.k8s.io"],
            false,
        ),
        (
            vec!["list", "zookeeperensembles.zooherd.dev", "--all-namespaces"],
            cluster_wide,
        ),
        (vec!["list", "pods", "-n", &other_ns], cluster_wide),
    ];
    for (args, expected) in &expectations {
        assert_eq!(
            can_i(cp, &kubeconfig, args),
            *expected,
            "{rbac:?}: can the operator {args:?}?"
        );
    }

    // ---- run the operator binary as the chart configures it ---------------------------------
    let pod_name = format!("{deployment_name}-test");
    let mut environment = chart_environment(deployment, &pod_name);
    match rbac {
        Rbac::PerNamespace => assert_eq!(
            environment.get("ZOOHERD_NAMESPACES"),
            Some(&format!("{ensemble_ns},{spare_ns}"))
        ),
        Rbac::ClusterWide => {
            assert_eq!(environment.get("ZOOHERD_NAMESPACES"), None);
            // The control plane may be shared with other tests that run operators and
            // ensembles of their own: stay out of their namespaces. The ClusterRoleBinding
            // covers any namespace, and can-i checked the all-namespaces list above.
            environment.insert("ZOOHERD_NAMESPACES".into(), ensemble_ns.clone());
        }
    }
    assert_eq!(
        environment.get("ZOOHERD_LEASE_NAME").map(String::as_str),
        Some(lease_name)
    );
    assert_eq!(environment.get("POD_NAMESPACE"), Some(&release_ns));
    // The ensembles' NetworkPolicies admit the operator's pods by the Deployment's selector.
    let selector = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap();
    assert_eq!(
        environment
            .get("ZOOHERD_OPERATOR_POD_LABELS")
            .map(|labels| zooherd::build::parse_labels(labels).unwrap()),
        Some(selector.clone())
    );
    // Several operators may run at once here: an ephemeral port for the endpoints.
    environment.insert("ZOOHERD_HTTP_ADDRESS".into(), "127.0.0.1:0".into());
    // Debug level for zooherd: a failed reconcile's cause is logged there.
    environment.insert("RUST_LOG".into(), "info,zooherd=debug,kube=warn".into());

    let log = dir.path().join("operator.log");
    let log_file = fs::File::create(&log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_zooherd"));
    command
        .arg("operator")
        .env_clear()
        .envs(&environment)
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    let mut operator = Operator {
        child: support::process::spawn(command).expect("starting the operator"),
        log,
    };

    // ---- an ensemble ------------------------------------------------------------------------
    let mut apply = cp.kubectl();
    apply
        .args(["apply", "-n", &ensemble_ns, "-f"])
        .arg(support::repo_root().join("deploy/examples/three-servers.yaml"));
    run(apply);
    let ensembles: Api<ZooKeeperEnsemble> = Api::namespaced(client.clone(), &ensemble_ns);

    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let (ensemble, children) = loop {
        operator.assert_running();
        let ensemble = ensembles.get("zk").await.expect("reading the ensemble");
        let has_status = ensemble
            .status
            .as_ref()
            .is_some_and(|s| s.observed_generation == ensemble.metadata.generation);
        if has_status && let Some(children) = child_metadata(&client, &ensemble_ns).await {
            break (ensemble, children);
        }
        assert!(
            Instant::now() < deadline,
            "{rbac:?}: no children or no status after {CONVERGE_TIMEOUT:?}; ensemble: {:?}\n\
             operator log:\n{}",
            ensemble.status,
            support::tail(&operator.log, 80)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let uid = ensemble.metadata.uid.clone().unwrap();
    for (child, meta) in &children {
        let owners = meta.owner_references.clone().unwrap_or_default();
        assert!(
            owners.iter().any(|owner| owner.uid == uid
                && owner.kind == "ZooKeeperEnsemble"
                && owner.api_version == "zooherd.dev/v1beta1"
                && owner.name == "zk"
                && owner.controller == Some(true)),
            "{child} is not owned by the ensemble: {owners:?}"
        );
    }
    // The AdminServer admits the chart's operator pods, in the release namespace.
    let policy = Api::<NetworkPolicy>::namespaced(client.clone(), &ensemble_ns)
        .get("zk")
        .await
        .unwrap();
    let admin = policy.spec.unwrap().ingress.unwrap()[1].clone();
    let operator_peer = &admin.from.unwrap()[0];
    assert_eq!(
        operator_peer
            .namespace_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            release_ns.clone()
        )]))
    );
    assert_eq!(
        operator_peer
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(selector)
    );
    let status = ensemble.status.clone().unwrap();
    assert_eq!(
        status.phase,
        Some(Phase::Pending),
        "no server runs (there is no node), so the ensemble has never formed a quorum: {status:?}"
    );
    assert!(!status.conditions.is_empty(), "conditions: {status:?}");

    // The server image the chart configured reached the StatefulSet.
    let stateful_set = Api::<StatefulSet>::namespaced(client.clone(), &ensemble_ns)
        .get("zk")
        .await
        .unwrap();
    let server = stateful_set
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .find(|c| c.name == names::CONTAINER)
        .expect("the server container");
    assert_eq!(
        server.image.as_deref(),
        Some(format!("{}:{}", SERVER_IMAGE.0, SERVER_IMAGE.1).as_str())
    );

    // The phase change to PENDING was recorded as an Event (events.k8s.io) on the ensemble.
    let events: Api<Event> = Api::namespaced(client.clone(), &ensemble_ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let recorded = events.list(&ListParams::default()).await.unwrap();
        let pending = recorded.items.iter().any(|event| {
            event.reason.as_deref() == Some("Pending")
                && event.reporting_controller.as_deref() == Some("zooherd")
                && event.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid.as_str())
        });
        if pending {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rbac:?}: no Pending Event for the ensemble: {:?}\n{}",
            recorded.items,
            support::tail(&operator.log, 40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The operator leads through the Lease of the release namespace.
    let lease = Api::<Lease>::namespaced(client.clone(), &release_ns)
        .get(lease_name)
        .await
        .expect("the leader-election Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(pod_name.as_str())
    );

    // A few more probe rounds (pods are watched and probed, Events recorded), then a clean
    // stop: SIGTERM releases the Lease, which needs the chart's RBAC too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    operator.assert_running();
    let exit = support::process::terminate(
        &mut operator.child,
        Signal::SIGTERM,
        Duration::from_secs(20),
    )
    .expect("stopping the operator");
    let log = operator.log();
    assert!(
        exit.success(),
        "{rbac:?}: the operator exited with {exit}:\n{log}"
    );
    let forbidden: Vec<&str> = log
        .lines()
        .filter(|line| line.to_ascii_lowercase().contains("forbidden"))
        .collect();
    assert!(
        forbidden.is_empty(),
        "{rbac:?}: the chart's RBAC forbids something the operator does:\n{}",
        forbidden.join("\n")
    );

    // ---- upgrade and uninstall --------------------------------------------------------------
    if rbac == Rbac::ClusterWide {
        // The documented upgrade path: CRDs first (Helm does not upgrade them), then the chart.
        apply_crds(cp);
        let mut upgrade = cp.helm();
        upgrade.args(["upgrade", &release]).arg(chart()).args([
            "--namespace",
            &release_ns,
            "--reuse-values",
        ]);
        run(upgrade);
    }
    let mut uninstall = cp.helm();
    uninstall.args(["uninstall", &release, "--namespace", &release_ns]);
    run(uninstall);
    // Helm never deletes what crds/ installed: the ensembles survive an uninstall.
    let mut crd = cp.kubectl();
    crd.args(["get", "crd", CRD]);
    run(crd);
    assert!(ensembles.get_opt("zk").await.unwrap().is_some());

    for ns in [&release_ns, &ensemble_ns, &spare_ns, &other_ns] {
        cp.delete_namespace(&client, ns).await.unwrap();
    }
}
