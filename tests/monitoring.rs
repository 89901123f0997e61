//! Zooherd's alert rules (`charts/zooherd/files/alerts.yaml`) with promtool, built from the
//! Prometheus Go module by `tests/cluster/setup.sh`:
//! - `promtool check rules` accepts them;
//! - `promtool test rules` passes `tests/alerts/alerts_test.yaml`, synthetic series on which
//!   every alert is shown firing and not firing (too short, under its threshold, another
//!   ensemble, resolved);
//! - those unit tests can fail: with every alert's expression made to match nothing, each
//!   alert's firing case fails, and without the `for` durations, each delayed alert's "not yet"
//!   case fails;
//! - every alert has a severity, a summary, a description and a runbook_url naming its own
//!   section of the README;
//! - the chart's PrometheusRule (`prometheusRule.enabled`) carries exactly these rule groups,
//!   so the chart ships what was tested.
//!
//! And the Grafana dashboard (`charts/zooherd/files/dashboard.json`): promtool parses every
//! query, the operator has a row and every ensemble one of its own (repeated by the `ensemble`
//! variable, every query in it filtered by that ensemble), and the chart's ConfigMap
//! (`grafanaDashboard.enabled`) carries exactly this dashboard. The end-to-end tier runs the
//! queries against a real Prometheus.
//!
//! Needs promtool and helm: run `bash tests/cluster/setup.sh` once first (tests/run.sh does).

use zooherd_test_support as support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use support::dashboard::{self, Variables};

const RULES: &str = "charts/zooherd/files/alerts.yaml";
const UNIT_TESTS: &str = "tests/alerts/alerts_test.yaml";
/// Where the runbook_url annotations point: the README's sections, by their anchors.
const RUNBOOK_BASE: &str = "https://github.com/zooherd/zooherd/blob/main/README.md#";

fn repo_file(path: &str) -> PathBuf {
    support::repo_root().join(path)
}

fn promtool() -> PathBuf {
    let path = support::promtool_path();
    support::require_file(&path, "promtool").unwrap();
    path
}

fn helm() -> PathBuf {
    let path = support::helm_path();
    support::require_file(&path, "helm").unwrap();
    path
}

/// Runs `command` and returns its output, stdout and stderr together, whatever its status.
fn output(command: &mut Command) -> (Output, String) {
    let what = support::process::describe(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

/// Runs `command`, fails the test unless it succeeds, and returns its stdout and stderr.
fn run(command: &mut Command) -> String {
    let what = support::process::describe(command);
    let (output, text) = output(command);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{text}",
        output.status
    );
    text
}

fn yaml_file(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The alerting rules of a rule file's groups.
fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_array()
        .expect("a rule file has groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("a group has rules"))
        .filter(|rule| rule.get("alert").is_some())
        .collect()
}

fn alert_names(rules: &Value) -> BTreeSet<String> {
    alerts(rules)
        .iter()
        .map(|rule| rule["alert"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn promtool_checks_the_rules() {
    let rules = yaml_file(&repo_file(RULES));
    let count = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["rules"].as_array().unwrap().len())
        .sum::<usize>();
    let text = run(Command::new(promtool())
        .args(["check", "rules"])
        .arg(repo_file(RULES)));
    assert!(
        text.contains(&format!("SUCCESS: {count} rules found")),
        "{text}"
    );
}

#[test]
fn promtool_unit_tests_pass() {
    let text = run(Command::new(promtool())
        .args(["test", "rules"])
        .arg(repo_file(UNIT_TESTS)));
    assert!(text.contains("SUCCESS"), "{text}");
}

/// Each alert has a case where it fires and one where it must not, and every alert the unit
/// tests name exists (a misspelt name would expect nothing of a rule that is not there).
#[test]
fn unit_tests_show_every_alert_firing_and_not() {
    let rules = yaml_file(&repo_file(RULES));
    let tests = yaml_file(&repo_file(UNIT_TESTS));
    let names = alert_names(&rules);
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for group in tests["tests"].as_array().expect("unit tests") {
        for case in group["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().expect("alertname").to_owned();
            assert!(
                names.contains(&name),
                "{UNIT_TESTS} tests {name}, which {RULES} does not have"
            );
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected == 0 {
                silent.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    let never_firing: Vec<_> = names.difference(&firing).collect();
    let never_silent: Vec<_> = names.difference(&silent).collect();
    assert!(
        never_firing.is_empty(),
        "never shown firing: {never_firing:?}"
    );
    assert!(
        never_silent.is_empty(),
        "never shown not firing: {never_silent:?}"
    );
}

/// Runs the unit tests against `rules` (a changed copy of the rule file) and returns
/// promtool's output, which must report failures.
fn unit_tests_against(rules: &Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let rule_file = dir.path().join("alerts.yaml");
    fs::write(&rule_file, serde_yaml::to_string(rules).unwrap()).unwrap();
    let mut tests = yaml_file(&repo_file(UNIT_TESTS));
    tests["rule_files"] = serde_json::json!(["alerts.yaml"]);
    let test_file = dir.path().join("alerts_test.yaml");
    fs::write(&test_file, serde_yaml::to_string(&tests).unwrap()).unwrap();
    let (output, text) = output(
        Command::new(promtool())
            .args(["test", "rules"])
            .arg(&test_file),
    );
    assert!(
        !output.status.success(),
        "the unit tests pass against broken rules:\n{text}"
    );
    text
}

/// The alerts promtool's output reports as failed.
fn failed_alerts(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("alertname: "))
        .filter_map(|rest| rest.split(',').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn unit_tests_fail_on_broken_rules() {
    let rules = yaml_file(&repo_file(RULES));
    let names = alert_names(&rules);

    // Expressions that match nothing: every alert misses a case where it must fire.
    let mut silenced = rules.clone();
    for group in silenced["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            rule["expr"] = Value::from("vector(0) > 1");
        }
    }
    let failed = failed_alerts(&unit_tests_against(&silenced));
    let missed: Vec<_> = names.difference(&failed).collect();
    assert!(
        missed.is_empty(),
        "no unit test fails when these never fire: {missed:?}"
    );

    // No `for`: every alert that waits fires too early, in a case where it must not yet.
    let mut hasty = rules.clone();
    let mut delayed = BTreeSet::new();
    for group in hasty["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            let rule = rule.as_object_mut().unwrap();
            if rule.remove("for").is_some() {
                delayed.insert(rule["alert"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(!delayed.is_empty());
    let failed = failed_alerts(&unit_tests_against(&hasty));
    let missed: Vec<_> = delayed.difference(&failed).collect();
    assert!(
        missed.is_empty(),
        "no unit test fails when these fire at once: {missed:?}"
    );
}

/// GitHub's anchor of a Markdown heading: lower case, spaces to hyphens, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_says_what_to_do_and_has_a_runbook() {
    let rules = yaml_file(&repo_file(RULES));
    let readme = fs::read_to_string(repo_file("README.md")).unwrap();
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter(|line| line.starts_with('#'))
        .map(|line| anchor(line.trim_start_matches('#')))
        .collect();
    for rule in alerts(&rules) {
        let name = rule["alert"].as_str().unwrap();
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: no {key}");
        }
        let runbook = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no runbook_url"));
        let section = runbook
            .strip_prefix(RUNBOOK_BASE)
            .unwrap_or_else(|| panic!("{name}: runbook_url {runbook} is not in the README"));
        assert_eq!(
            section,
            name.to_lowercase(),
            "{name}: its runbook is its own section"
        );
        assert!(
            anchors.contains(section),
            "{name}: the README has no section #{section}"
        );
    }
}

fn helm_template(args: &[&str]) -> String {
    run(Command::new(helm())
        .args(["template", "zooherd"])
        .arg(repo_file("charts/zooherd"))
        .args(args))
}

#[test]
fn chart_ships_exactly_the_tested_rules() {
    let rendered = helm_template(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "--show-only",
        "templates/prometheusrule.yaml",
    ]);
    let rule: Value = serde_yaml::from_str(&rendered).expect("the PrometheusRule is YAML");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(
        rule["metadata"]["labels"]["release"], "kube-prometheus-stack",
        "prometheusRule.labels are the PrometheusRule's labels"
    );
    let tested = yaml_file(&repo_file(RULES));
    assert_eq!(
        rule["spec"], tested,
        "the chart's PrometheusRule differs from {RULES}"
    );

    let by_default = helm_template(&[]);
    assert!(
        !by_default.contains("kind: PrometheusRule"),
        "prometheusRule.enabled is off by default"
    );
}

#[test]
fn values_schema_refuses_unknown_prometheus_rule_keys() {
    let (output, text) = output(
        Command::new(helm())
            .args(["template", "zooherd"])
            .arg(repo_file("charts/zooherd"))
            .args(["--set", "prometheusRule.enable=true"]),
    );
    assert!(
        !output.status.success(),
        "prometheusRule.enable (a typo) is accepted"
    );
    assert!(text.contains("enable"), "{text}");
}

/// The dashboard's variables, as the tests put them in.
const VARIABLES: Variables = Variables {
    namespace: "team-a",
    ensemble: "zk",
    rate_interval: "1m",
};

/// `promtool check rules` on a rule file with one recording rule per query: promtool parses
/// PromQL offline only as part of a rule file.
fn promtool_check_queries(exprs: &[String]) -> (Output, String) {
    let rules = json!({"groups": [{
        "name": "dashboard",
        "rules": exprs
            .iter()
            .enumerate()
            .map(|(i, expr)| json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
            .collect::<Vec<_>>(),
    }]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-queries.yaml");
    fs::write(&path, serde_yaml::to_string(&rules).unwrap()).unwrap();
    output(Command::new(promtool()).args(["check", "rules"]).arg(&path))
}

#[test]
fn promtool_parses_every_dashboard_query() {
    let board = dashboard::load();
    let exprs: Vec<String> = dashboard::queries(&board, VARIABLES)
        .into_iter()
        .chain(dashboard::variable_queries(&board, VARIABLES))
        .map(|q| q.expr)
        .collect();
    let (output, text) = promtool_check_queries(&exprs);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{text}"
    );

    // The check can fail: one query with a parenthesis missing.
    let mut broken = exprs.clone();
    broken[0].pop();
    let (output, text) = promtool_check_queries(&broken);
    assert!(!output.status.success(), "a broken query passed: {text}");
}

#[test]
fn dashboard_has_the_operator_and_a_row_per_ensemble() {
    let board = dashboard::load();
    let variables: Vec<(&str, &str)> = board["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        variables,
        [
            ("datasource", "datasource"),
            ("namespace", "query"),
            ("ensemble", "query")
        ]
    );

    // The top-level panels in order: the operator's row, then the ensemble's, repeated.
    let mut row = None;
    let mut titles = BTreeSet::new();
    for panel in board["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        if panel["type"] == "row" {
            row = Some(panel);
            continue;
        }
        titles.insert(title);
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: reads the chosen data source"
        );
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title}: says what it shows"
        );
        let row = row.unwrap_or_else(|| panic!("{title}: is in no row"));
        let per_ensemble = row["repeat"] == "ensemble";
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let filtered =
                expr.contains(r#"name="$ensemble""#) || expr.contains(r#"ensemble="$ensemble""#);
            assert_eq!(
                filtered, per_ensemble,
                "{title}: {expr}: a query in an ensemble's row reads that ensemble only, the operator's all"
            );
        }
    }
    for wanted in [
        "Reconciles",
        "Reconcile and probe round time (p50, p99)",
        "Phase",
        "Members",
        "Leader changes",
        "Request latency",
        "Outstanding requests",
        "Znodes",
        "Watches",
        "Connections",
        "Data size",
        "Follower sync",
    ] {
        assert!(titles.contains(wanted), "no panel {wanted:?}: {titles:?}");
    }
    assert!(
        board["panels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "row" && p["repeat"] == "ensemble"),
        "a row repeated per ensemble"
    );
}

#[test]
fn chart_ships_exactly_the_dashboard() {
    let rendered = helm_template(&[
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "grafanaDashboard.annotations.grafana_folder=ZooKeeper",
        "--show-only",
        "templates/grafana-dashboard.yaml",
    ]);
    let config_map: Value = serde_yaml::from_str(&rendered).expect("the ConfigMap is YAML");
    assert_eq!(config_map["kind"], "ConfigMap");
    assert_eq!(
        config_map["metadata"]["labels"]["grafana_dashboard"], "1",
        "the label Grafana's dashboard sidecar selects by default"
    );
    assert_eq!(
        config_map["metadata"]["annotations"]["grafana_folder"],
        "ZooKeeper"
    );
    let shipped: Value = serde_json::from_str(
        config_map["data"]["zooherd.json"]
            .as_str()
            .expect("data.zooherd.json"),
    )
    .expect("the shipped dashboard is JSON");
    assert_eq!(
        shipped,
        dashboard::load(),
        "the chart's dashboard differs from {}",
        dashboard::DASHBOARD
    );
    assert!(
        !helm_template(&[]).contains("grafana_dashboard"),
        "grafanaDashboard.enabled is off by default"
    );
}
