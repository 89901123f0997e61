//! Issue 19, item 3: every query of the chart's Grafana dashboard
//! (`charts/zooherd/files/dashboard.json`) answered by the real Prometheus that scrapes the
//! local cluster, for a running ensemble: it parses, and returns at least one series.
//!
//! Run at the end of the three-server story, so that the answers cover a DEGRADED spell, a
//! member restarted by the operator and a client writing throughout. The range answers of the
//! whole story are written to a JSON file (its path is printed), from which
//! `tests/e2e/render-dashboard.py` draws the README's picture of the dashboard.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::secs;
use super::support::dashboard::{self, Variables};
use super::support::prometheus::Prometheus;

/// How long a query may take to return a series: a rate needs two scrapes in its window,
/// and a server's summaries appear with its first request of the kind.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(90);

/// Seconds since the Unix epoch, as Prometheus' API takes them.
pub(super) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// Asks Prometheus every query of the dashboard for ensemble `namespace/name`; panics naming
/// the panel and the query of any that returns no series in time. Then writes every query's
/// answers since `story_started` (Unix seconds) to a file for the picture.
pub(super) async fn dashboard_answers(
    prometheus: &Prometheus,
    namespace: &str,
    name: &str,
    story_started: f64,
) {
    let board = dashboard::load();
    let variables = Variables {
        namespace,
        ensemble: name,
        rate_interval: "1m",
    };
    let queries: Vec<_> = dashboard::variable_queries(&board, variables)
        .into_iter()
        .chain(dashboard::queries(&board, variables))
        .collect();
    let t = Instant::now();
    for query in &queries {
        let series = prometheus
            .wait_series(&query.expr, 1, ANSWER_TIMEOUT)
            .await
            .len();
        eprintln!(
            "(dashboard) {} / {}: {series} series",
            query.panel, query.legend
        );
    }
    eprintln!(
        "(dashboard) all {} queries of {} answered for {namespace}/{name} after {}",
        queries.len(),
        dashboard::DASHBOARD,
        secs(t)
    );

    // The operator's phase metric follows the status it wrote: ACTIVE, as the story left it.
    // A few seconds more, so that the saved answers show the end of the story too.
    let active = format!(
        r#"zooherd_ensemble_phase{{namespace="{namespace}",name="{name}",phase="ACTIVE"}} == 1"#
    );
    prometheus.wait_series(&active, 1, ANSWER_TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let end = unix_now();
    let mut panels = Vec::new();
    for query in dashboard::queries(&board, variables) {
        let result = prometheus
            .query_range(&query.expr, story_started, end, 2.0)
            .await;
        panels.push(json!({
            "panel": query.panel,
            "legend": query.legend,
            "expr": query.expr,
            "result": result,
        }));
    }
    let dir = super::support::target_tmp_dir().join("dashboard");
    std::fs::create_dir_all(&dir).expect("creating the dashboard directory");
    let path = dir.join(format!("{namespace}-{name}.json"));
    let answers: Value = json!({
        "ensemble": format!("{namespace}/{name}"),
        "start": story_started,
        "end": end,
        "queries": panels,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&answers).unwrap())
        .expect("writing the dashboard's answers");
    eprintln!(
        "(dashboard) the story's answers: {} (draw them with: tests/e2e/render-dashboard.py {} charts/zooherd/dashboard.png)",
        path.display(),
        path.display()
    );
}
