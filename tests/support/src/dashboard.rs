//! The chart's Grafana dashboard (`charts/zooherd/files/dashboard.json`) as the tests read it:
//! every panel's queries, with Grafana's variables replaced by the values a test picks, so
//! that promtool can parse them and a real Prometheus can answer them.

use serde_json::Value;

/// The dashboard, relative to the repository root.
pub const DASHBOARD: &str = "charts/zooherd/files/dashboard.json";

/// One query of one panel.
#[derive(Clone, Debug)]
pub struct PanelQuery {
    /// The panel's title (a row's panels keep their own titles).
    pub panel: String,
    /// The query's legend, as Grafana formats it (`{{pod}} read`).
    pub legend: String,
    /// The PromQL, with the variables replaced.
    pub expr: String,
}

/// What the dashboard's variables stand for in a test.
#[derive(Clone, Copy, Debug)]
pub struct Variables<'a> {
    pub namespace: &'a str,
    pub ensemble: &'a str,
    /// Grafana's `$__rate_interval`, e.g. `1m`.
    pub rate_interval: &'a str,
}

impl Variables<'_> {
    fn substitute(&self, expr: &str) -> String {
        expr.replace("$__rate_interval", self.rate_interval)
            .replace("$namespace", self.namespace)
            .replace("$ensemble", self.ensemble)
    }
}

/// The dashboard's JSON.
pub fn load() -> Value {
    let path = super::repo_root().join(DASHBOARD);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// The panels that are not rows, in order, including those inside collapsed rows.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            found.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            found.push(panel);
        }
    }
    found
}

/// Every query of every panel, with `variables` put in.
pub fn queries(dashboard: &Value, variables: Variables) -> Vec<PanelQuery> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |target| PanelQuery {
                    panel: title.clone(),
                    legend: target["legendFormat"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    expr: variables.substitute(target["expr"].as_str().unwrap_or_else(|| {
                        panic!("{DASHBOARD}: a query of panel {title:?} has no expr")
                    })),
                })
        })
        .collect()
}

/// The series selectors of the dashboard's variables: `label_values(SELECTOR, LABEL)`
/// becomes `count by (LABEL) (SELECTOR)`, what Grafana asks Prometheus for the choices.
pub fn variable_queries(dashboard: &Value, variables: Variables) -> Vec<PanelQuery> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let definition = v["definition"]
                .as_str()
                .expect("a query variable's definition");
            let inner = definition
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{definition}: not label_values(SELECTOR, LABEL)"));
            let (selector, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("{definition}: not label_values(SELECTOR, LABEL)"));
            PanelQuery {
                panel: format!("variable {}", v["name"].as_str().unwrap_or_default()),
                legend: label.trim().to_owned(),
                expr: format!(
                    "count by ({}) ({})",
                    label.trim(),
                    variables.substitute(selector.trim())
                ),
            }
        })
        .collect()
}
