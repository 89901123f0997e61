//! `deploy/` stays in sync with the chart and with the API:
//! - `deploy/operator.yaml` is exactly what `deploy/generate.sh` renders from `charts/zooherd`;
//! - the chart's copy of the CRDs is `crds/`, which is what `zooherd crd` prints;
//! - every example under `deploy/examples/` is a `ZooKeeperEnsemble` the operator accepts, with
//!   no field the API does not know (serde ignores unknown fields, so a misspelt field would
//!   otherwise pass unnoticed and be silently dropped).
//!
//! `bash deploy/generate.sh` regenerates the CRDs (both copies) and `deploy/operator.yaml`.
//!
//! Needs helm (`bash tests/cluster/setup.sh` installs it); no cluster.

use zooherd_test_support as support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use zooherd::api::{ZooKeeperEnsemble, validate::validate};
use zooherd::build::names;

fn repo(path: &str) -> PathBuf {
    support::repo_root().join(path)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The first line where `got` and `want` differ, for a readable failure.
fn first_difference(got: &str, want: &str) -> String {
    let (got_lines, want_lines): (Vec<_>, Vec<_>) = (got.lines().collect(), want.lines().collect());
    for (i, (g, w)) in got_lines.iter().zip(&want_lines).enumerate() {
        if g != w {
            return format!("line {}:\n  committed: {g}\n  generated: {w}", i + 1);
        }
    }
    format!(
        "the files have {} and {} lines",
        got_lines.len(),
        want_lines.len()
    )
}

#[test]
fn operator_yaml_is_the_rendered_chart() {
    let helm = support::helm_path();
    support::require_file(&helm, "helm").unwrap();
    let out = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new("bash")
        .arg(repo("deploy/generate.sh"))
        .arg(out.path())
        .env("HELM", &helm)
        .output()
        .expect("running deploy/generate.sh");
    assert!(
        output.status.success(),
        "deploy/generate.sh failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = read(&out.path().join("operator.yaml"));
    let committed = read(&repo("deploy/operator.yaml"));
    assert!(
        committed == generated,
        "deploy/operator.yaml is stale: run `bash deploy/generate.sh` and commit the result\n{}",
        first_difference(&committed, &generated)
    );

    // What the plain install must contain, in the order kubectl has to create it: the CRDs
    // and the Namespace before anything that lives in them.
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&generated)
        .map(|document| {
            let value = Value::deserialize(document).expect("operator.yaml is valid YAML");
            value["kind"].as_str().unwrap_or_default().to_owned()
        })
        .filter(|kind| !kind.is_empty())
        .collect();
    assert_eq!(
        kinds,
        [
            // ZooKeeperEnsemble and ZooKeeperBackup.
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            // The operator's, and the one that reads nodes.
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
        ],
        "objects of deploy/operator.yaml"
    );
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let chart_crds = repo("charts/zooherd/crds");
    let mut names: Vec<_> = fs::read_dir(repo("crds"))
        .expect("reading crds/")
        .map(|entry| entry.expect("a crds/ entry").file_name())
        .collect();
    names.sort();
    let mut chart_names: Vec<_> = fs::read_dir(&chart_crds)
        .expect("reading charts/zooherd/crds/")
        .map(|entry| entry.expect("a chart crds/ entry").file_name())
        .collect();
    chart_names.sort();
    assert_eq!(
        chart_names, names,
        "charts/zooherd/crds/ must hold the files of crds/: run `bash deploy/generate.sh`"
    );
    for name in &names {
        let top = read(&repo("crds").join(name));
        let copy = read(&chart_crds.join(name));
        assert!(
            top == copy,
            "charts/zooherd/crds/{} differs from crds/: run `bash deploy/generate.sh`",
            name.to_string_lossy()
        );
    }
    assert_eq!(
        read(&chart_crds.join("zooherd.dev.yaml")),
        zooherd::api::crds_yaml(),
        "the chart's CRD is not what `zooherd crd` prints: run `bash deploy/generate.sh`"
    );
}

/// Where `written` has a field (or a value) that `parsed` lacks: the fields the API dropped.
fn unknown_fields(written: &Value, parsed: &Value, path: &str, found: &mut Vec<String>) {
    match (written, parsed) {
        (Value::Object(written), Value::Object(parsed)) => {
            for (key, value) in written {
                let path = format!("{path}.{key}");
                match parsed.get(key) {
                    Some(parsed_value) => unknown_fields(value, parsed_value, &path, found),
                    None => found.push(path),
                }
            }
        }
        (Value::Array(written), Value::Array(parsed)) if written.len() == parsed.len() => {
            for (i, (w, p)) in written.iter().zip(parsed).enumerate() {
                unknown_fields(w, p, &format!("{path}[{i}]"), found);
            }
        }
        (written, parsed) if written == parsed => {}
        (written, parsed) => found.push(format!("{path} (wrote {written}, read back {parsed})")),
    }
}

fn examples() -> BTreeMap<String, (Value, ZooKeeperEnsemble)> {
    let dir = repo("deploy/examples");
    let mut examples = BTreeMap::new();
    for entry in fs::read_dir(&dir).expect("reading deploy/examples") {
        let path = entry.expect("an example").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".yaml"),
            "deploy/examples/{name}: examples are .yaml files"
        );
        let text = read(&path);
        let written: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("deploy/examples/{name} is not YAML: {e}"));
        let ensemble: ZooKeeperEnsemble = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("deploy/examples/{name} is not a ZooKeeperEnsemble: {e}"));
        examples.insert(name, (written, ensemble));
    }
    examples
}

#[test]
fn examples_are_ensembles_the_operator_accepts() {
    let examples = examples();
    assert_eq!(
        examples.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "five-servers-production.yaml",
            "one-server-dev.yaml",
            "three-servers.yaml"
        ]
    );
    for (name, (written, ensemble)) in &examples {
        assert_eq!(written["apiVersion"], "zooherd.dev/v1beta1", "{name}");
        assert_eq!(written["kind"], "ZooKeeperEnsemble", "{name}");
        assert!(
            written["metadata"].get("namespace").is_none(),
            "{name}: examples go into the namespace given with kubectl -n"
        );
        let parsed = serde_json::to_value(ensemble).expect("an ensemble serializes");
        let mut found = Vec::new();
        unknown_fields(written, &parsed, "", &mut found);
        assert!(
            found.is_empty(),
            "deploy/examples/{name}: fields the API does not know: {found:?}"
        );
        if let Err(error) = validate(ensemble) {
            panic!("deploy/examples/{name} is refused by the operator: {error}");
        }
    }
}

#[test]
fn examples_show_what_they_promise() {
    let examples = examples();
    let spec = |name: &str| &examples[name].1.spec;

    assert_eq!(spec("three-servers.yaml").replicas, 3);
    assert_eq!(spec("one-server-dev.yaml").replicas, 1);

    let production = spec("five-servers-production.yaml");
    assert_eq!(production.replicas, 5);
    let limits = production
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("the production example sets resource limits");
    assert!(limits.contains_key("memory"), "a memory limit");
    assert!(production.jvm.heap_percent.is_some(), "jvm.heapPercent");
    assert!(
        production.storage.transaction_log.is_some(),
        "a separate transaction-log volume"
    );
    let keys: Vec<&str> = production
        .placement
        .topology_spread_constraints
        .iter()
        .map(|c| c.topology_key.as_str())
        .collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    // The spread counts the ensemble's own servers: the labels Zooherd puts on them.
    let server_labels = names::labels(&examples["five-servers-production.yaml"].1);
    for constraint in &production.placement.topology_spread_constraints {
        let labels = constraint
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .expect("spread constraints select the ensemble's pods");
        assert!(!labels.is_empty());
        for (key, value) in labels {
            assert_eq!(
                server_labels.get(key),
                Some(value),
                "the spread constraint's label {key}={value} is not on the ensemble's servers"
            );
        }
    }
    assert!(!production.config.is_empty(), "config tuning");
}
