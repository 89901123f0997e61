//! The series of ZooKeeperBackups: when each ensemble's newest backup completed (and the
//! newest one a drill verified), when its schedule's latest run was due, and what its latest
//! drill found. Backups are seen in any order (at start every one of them is), so each series
//! keeps the newest, not the last seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::EnsembleLabels;

#[derive(Clone)]
pub struct BackupMetrics {
    last_success: Family<EnsembleLabels, Gauge>,
    last_verified: Family<EnsembleLabels, Gauge>,
    last_scheduled_run: Family<EnsembleLabels, Gauge>,
    last_drill_verified: Family<EnsembleLabels, Gauge>,
    /// When the verdict that last_drill_verified shows for each ensemble was reached.
    last_drill_at: Arc<Mutex<HashMap<EnsembleLabels, i64>>>,
}

impl BackupMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            last_success: Family::default(),
            last_verified: Family::default(),
            last_scheduled_run: Family::default(),
            last_drill_verified: Family::default(),
            last_drill_at: Arc::default(),
        };
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When the newest successful ZooKeeperBackup of each ensemble completed (Unix time); its age is time() minus it",
            metrics.last_success.clone(),
        );
        registry.register(
            "backup_last_verified_timestamp_seconds",
            "When the newest ZooKeeperBackup of each ensemble that a restore drill verified (spec.verify, condition Verified True) completed (Unix time)",
            metrics.last_verified.clone(),
        );
        registry.register(
            "backup_last_scheduled_run_timestamp_seconds",
            "When the latest run of each ensemble's spec.backup.schedule was due (Unix time); a run succeeded once backup_last_success_timestamp_seconds is later",
            metrics.last_scheduled_run.clone(),
        );
        registry.register(
            "backup_last_drill_verified",
            "1 when the latest restore drill of each ensemble's backups restored its backup (Verified True), 0 when it did not (Verified False)",
            metrics.last_drill_verified.clone(),
        );
        metrics
    }

    /// A backup of the ensemble that completed at `completed_at`: kept when it is the newest.
    pub fn succeeded(&self, namespace: &str, name: &str, completed_at: jiff::Timestamp) {
        keep_newest(&self.last_success, namespace, name, completed_at);
    }

    /// A backup of the ensemble, completed at `completed_at`, that a restore drill verified:
    /// kept when it is the newest.
    pub fn verified(&self, namespace: &str, name: &str, completed_at: jiff::Timestamp) {
        keep_newest(&self.last_verified, namespace, name, completed_at);
    }

    /// The time the latest run of the ensemble's backup schedule was due; `None` without one.
    pub fn scheduled(&self, namespace: &str, name: &str, at: Option<jiff::Timestamp>) {
        let ensemble = labels(namespace, name);
        match at {
            Some(at) => {
                self.last_scheduled_run
                    .get_or_create(&ensemble)
                    .set(at.as_second());
            }
            None => {
                self.last_scheduled_run.remove(&ensemble);
            }
        }
    }

    /// A drill of one of the ensemble's backups reached a verdict at `at`: shown when it is the
    /// latest.
    pub fn drill_verdict(&self, namespace: &str, name: &str, at: jiff::Timestamp, verified: bool) {
        let ensemble = labels(namespace, name);
        let mut latest = self.last_drill_at.lock().expect("drill verdicts lock");
        let seen = latest.entry(ensemble.clone()).or_insert(i64::MIN);
        if *seen <= at.as_second() {
            *seen = at.as_second();
            self.last_drill_verified
                .get_or_create(&ensemble)
                .set(i64::from(verified));
        }
    }

    /// Drops the series of a deleted ensemble.
    pub(super) fn forget(&self, ensemble: &EnsembleLabels) {
        self.last_success.remove(ensemble);
        self.last_verified.remove(ensemble);
        self.last_scheduled_run.remove(ensemble);
        self.last_drill_verified.remove(ensemble);
        self.last_drill_at
            .lock()
            .expect("drill verdicts lock")
            .remove(ensemble);
    }
}

fn labels(namespace: &str, name: &str) -> EnsembleLabels {
    EnsembleLabels {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// Sets the ensemble's series of `family` to `at` unless it holds a later time.
fn keep_newest(
    family: &Family<EnsembleLabels, Gauge>,
    namespace: &str,
    name: &str,
    at: jiff::Timestamp,
) {
    let gauge = family.get_or_create(&labels(namespace, name));
    if gauge.get() < at.as_second() {
        gauge.set(at.as_second());
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;

    #[test]
    fn the_newest_successful_backup_is_exported_until_the_ensemble_goes() {
        let metrics = Metrics::default();
        let newer: jiff::Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let older: jiff::Timestamp = "2026-12-04T12:00:00Z".parse().unwrap();
        let series = "zooherd_backup_last_success_timestamp_seconds{namespace=\"ns\",name=\"zk\"}";
        metrics.backups.succeeded("ns", "zk", newer);
        // Seen in any order (at start every backup is), the newest stays.
        metrics.backups.succeeded("ns", "zk", older);
        let text = metrics.encode();
        assert!(
            text.contains(&format!("{series} {}\n", newer.as_second())),
            "{text}"
        );
        // Verified ones apart: none yet.
        let verified =
            "zooherd_backup_last_verified_timestamp_seconds{namespace=\"ns\",name=\"zk\"}";
        assert!(!text.contains(verified), "{text}");
        metrics.backups.verified("ns", "zk", older);
        assert!(
            metrics
                .encode()
                .contains(&format!("{verified} {}\n", older.as_second()))
        );
        metrics.forget_ensemble("ns", "zk");
        let text = metrics.encode();
        assert!(!text.contains(series) && !text.contains(verified), "{text}");
    }

    #[test]
    fn the_latest_drill_verdict_and_scheduled_run_are_exported_until_they_go() {
        let metrics = Metrics::default();
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
        let drilled = "zooherd_backup_last_drill_verified{namespace=\"ns\",name=\"zk\"}";
        metrics
            .backups
            .drill_verdict("ns", "zk", at("2026-12-06T05:00:00Z"), false);
        // An older verdict seen later (at start, backups come in any order) does not hide it.
        metrics
            .backups
            .drill_verdict("ns", "zk", at("2026-12-05T05:00:00Z"), true);
        assert!(metrics.encode().contains(&format!("{drilled} 0\n")));
        metrics
            .backups
            .drill_verdict("ns", "zk", at("2026-12-07T05:00:00Z"), true);
        assert!(metrics.encode().contains(&format!("{drilled} 1\n")));
        let run =
            "zooherd_backup_last_scheduled_run_timestamp_seconds{namespace=\"ns\",name=\"zk\"}";
        let due = at("2026-12-07T03:00:00Z");
        metrics.backups.scheduled("ns", "zk", Some(due));
        assert!(
            metrics
                .encode()
                .contains(&format!("{run} {}\n", due.as_second()))
        );
        metrics.backups.scheduled("ns", "zk", None);
        assert!(!metrics.encode().contains(run));
        metrics.backups.scheduled("ns", "zk", Some(due));
        metrics.forget_ensemble("ns", "zk");
        let text = metrics.encode();
        assert!(!text.contains(run) && !text.contains(drilled), "{text}");
    }
}
