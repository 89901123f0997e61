//! Scheduled backups, decided from what was read: no IO here.
//!
//! `spec.backup.schedule` is a cron pattern in UTC. Each run is one ZooKeeperBackup whose name
//! comes from the run's time ([`backup_name`]), labelled with the ensemble
//! ([`SCHEDULED_BY_LABEL`]) and annotated with the run's time ([`SCHEDULED_AT_ANNOTATION`]).
//! The name makes creating a run idempotent: an operator that restarts, or a second replica,
//! asks for the same name, and the API server keeps one. The run due is the latest occurrence
//! of the pattern after the newest run there is ([`due`]), so runs missed while the operator
//! was away are taken once, as a CronJob with `concurrencyPolicy: Forbid` would catch up.
//!
//! `spec.backup.drillSchedule` is a second cron pattern: each run asks for a restore drill of the
//! ensemble's newest successful backup ([`drill_due`]) by setting the backup's
//! `zooherd.dev/drill-requested-at` to the run's time, which is also how the next round finds
//! the newest run.
//!
//! Retention ([`to_prune`]) keeps the `keep` newest runs that succeeded and as many failed
//! ones; runs still in progress are never pruned, and neither are backups created by hand (they
//! carry no label). The newest successful run is always kept, as `keep` is at least 1, and so
//! is the newest one a restore drill verified, so that pruning never leaves only backups that
//! are not known to restore when one was.

use std::collections::BTreeMap;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kube::ResourceExt;

use crate::api::{BackupPhase, ZooKeeperBackup};

/// Label on a scheduled backup: the ensemble whose schedule created it.
pub const SCHEDULED_BY_LABEL: &str = "zooherd.dev/scheduled-by";
/// Annotation on a scheduled backup: the run's time (RFC 3339, UTC).
pub const SCHEDULED_AT_ANNOTATION: &str = "zooherd.dev/scheduled-at";

/// The pattern, parsed: five fields, or six with seconds first; no year.
pub fn parse(schedule: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| e.to_string())
}

/// The run due at `now`: the latest occurrence of `cron` at or before `now` and after `since`
/// (the newest run's time, or the ensemble's creation). `None` when no run is due.
pub fn due(cron: &Cron, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let now = now.to_zoned(TimeZone::UTC);
    let latest = cron.find_previous_occurrence(&now, true).ok()?.timestamp();
    (latest > since).then_some(latest)
}

/// The next occurrence of `cron` after `now`.
pub fn next(cron: &Cron, now: Timestamp) -> Option<Timestamp> {
    let now = now.to_zoned(TimeZone::UTC);
    Some(cron.find_next_occurrence(&now, false).ok()?.timestamp())
}

/// The name of the run at `at` of `ensemble`'s schedule: `<ensemble>-<yyyymmdd-hhmmss>`.
pub fn backup_name(ensemble: &str, at: Timestamp) -> String {
    format!("{ensemble}-{}", at.strftime("%Y%m%d-%H%M%S"))
}

/// When a scheduled backup's run was, from its annotation.
pub fn scheduled_at(backup: &ZooKeeperBackup) -> Option<Timestamp> {
    backup
        .annotations()
        .get(SCHEDULED_AT_ANNOTATION)?
        .parse()
        .ok()
}

/// The newest run among `scheduled` (an ensemble's scheduled backups).
pub fn newest_run(scheduled: &[ZooKeeperBackup]) -> Option<Timestamp> {
    scheduled.iter().filter_map(scheduled_at).max()
}

/// The drill run due at `now` among `backups` (all of one ensemble's, scheduled or not), with
/// the backup to drill: its newest successful one, `None` when it has none. The newest run is
/// the latest drill request on any of them (or `created`, the ensemble's creation).
pub fn drill_due<'a>(
    cron: &Cron,
    backups: &'a [ZooKeeperBackup],
    created: Timestamp,
    now: Timestamp,
) -> Option<(Timestamp, Option<&'a ZooKeeperBackup>)> {
    // A request set by hand in the future is no run of the schedule: it must not hold the
    // schedule's runs back until then.
    let since = backups
        .iter()
        .filter_map(super::drill::drill_requested_at)
        .filter(|&at| at <= now)
        .max()
        .unwrap_or(created);
    let at = due(cron, since, now)?;
    let newest = backups
        .iter()
        .filter_map(|backup| {
            let status = backup.status.as_ref()?;
            let completed = status.completed_at.as_ref()?.0;
            (status.phase == Some(BackupPhase::Succeeded)).then_some((completed, backup))
        })
        .max_by_key(|(completed, _)| *completed)
        .map(|(_, backup)| backup);
    Some((at, newest))
}

/// The scheduled backups to delete: beyond the `keep` newest that succeeded (but for the newest
/// verified one), and beyond the `keep` newest that failed. Backups still pending or running
/// stay.
pub fn to_prune(scheduled: &[ZooKeeperBackup], keep: usize) -> Vec<&ZooKeeperBackup> {
    let mut finished: BTreeMap<bool, Vec<(Timestamp, &ZooKeeperBackup)>> = BTreeMap::new();
    for backup in scheduled {
        let phase = backup.status.as_ref().and_then(|s| s.phase);
        let Some(at) = scheduled_at(backup) else {
            continue;
        };
        match phase {
            Some(BackupPhase::Succeeded) => finished.entry(true).or_default().push((at, backup)),
            Some(BackupPhase::Failed) => finished.entry(false).or_default().push((at, backup)),
            _ => {}
        }
    }
    let mut prune = Vec::new();
    for (succeeded, mut runs) in finished {
        runs.sort_by_key(|run| std::cmp::Reverse(run.0));
        let newest_verified = runs
            .iter()
            .position(|(_, backup)| succeeded && super::drill::verified(backup) == Some(true));
        prune.extend(
            runs.into_iter()
                .enumerate()
                .skip(keep.max(1))
                .filter(|(i, _)| Some(*i) != newest_verified)
                .map(|(_, (_, backup))| backup),
        );
    }
    prune
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ZooKeeperBackupSpec, ZooKeeperBackupStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn run(at_text: &str, phase: Option<BackupPhase>) -> ZooKeeperBackup {
        let mut backup = ZooKeeperBackup::new(
            &backup_name("zk", at(at_text)),
            ZooKeeperBackupSpec {
                ensemble: "zk".into(),
                s3: super::super::test_location(""),
                verify: false,
            },
        );
        backup
            .annotations_mut()
            .insert(SCHEDULED_AT_ANNOTATION.into(), at_text.into());
        backup.status = Some(ZooKeeperBackupStatus {
            phase,
            ..ZooKeeperBackupStatus::default()
        });
        backup
    }

    #[test]
    fn patterns_have_five_fields_or_six_with_seconds() {
        assert!(parse("0 3 * * *").is_ok());
        assert!(parse("*/10 * * * * *").is_ok());
        for bad in ["", "every day", "0 3 * *", "61 * * * *", "0 0 3 * * * 2027"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_run_due_is_the_latest_occurrence_after_the_newest_run() {
        let daily = parse("0 3 * * *").unwrap();
        let created = at("2026-12-01T10:00:00Z");
        assert_eq!(due(&daily, created, at("2026-12-02T02:59:59Z")), None);
        assert_eq!(
            due(&daily, created, at("2026-12-02T03:00:00Z")),
            Some(at("2026-12-02T03:00:00Z"))
        );
        // Taken: nothing more due until the next day.
        let taken = at("2026-12-02T03:00:00Z");
        assert_eq!(due(&daily, taken, at("2026-12-02T23:00:00Z")), None);
        // An operator away for three days takes one run, the latest, not three.
        assert_eq!(
            due(&daily, taken, at("2026-12-05T12:00:00Z")),
            Some(at("2026-12-05T03:00:00Z"))
        );
        assert_eq!(
            next(&daily, at("2026-12-05T12:00:00Z")),
            Some(at("2026-12-06T03:00:00Z"))
        );
        assert_eq!(
            backup_name("zk", at("2026-12-05T03:00:00Z")),
            "zk-20261205-030000"
        );
    }

    #[test]
    fn retention_keeps_the_newest_that_succeeded_and_failed_and_every_unfinished_one() {
        use BackupPhase::{Failed, Running, Succeeded};
        let runs = [
            run("2026-12-01T03:00:00Z", Some(Succeeded)),
            run("2026-12-02T03:00:00Z", Some(Failed)),
            run("2026-12-03T03:00:00Z", Some(Succeeded)),
            run("2026-12-04T03:00:00Z", Some(Failed)),
            run("2026-12-05T03:00:00Z", Some(Succeeded)),
            run("2026-12-06T03:00:00Z", Some(Failed)),
            run("2026-12-07T03:00:00Z", Some(Running)),
            run("2026-11-01T03:00:00Z", None),
        ];
        let names = |keep| -> Vec<String> {
            let mut names: Vec<String> =
                to_prune(&runs, keep).iter().map(|b| b.name_any()).collect();
            names.sort();
            names
        };
        assert_eq!(
            names(2),
            ["zk-20261201-030000", "zk-20261202-030000"],
            "the oldest of each kind"
        );
        assert_eq!(names(3), Vec::<String>::new());
        // keep is at least 1: the newest that succeeded always stays.
        assert_eq!(
            names(0),
            [
                "zk-20261201-030000",
                "zk-20261202-030000",
                "zk-20261203-030000",
                "zk-20261204-030000"
            ]
        );
        assert_eq!(newest_run(&runs), Some(at("2026-12-07T03:00:00Z")));
    }

    #[test]
    fn a_drill_run_asks_for_a_drill_of_the_newest_successful_backup_once() {
        use super::super::drill::DRILL_REQUESTED_ANNOTATION;
        use BackupPhase::{Failed, Succeeded};
        let weekly = parse("0 5 * * 0").unwrap(); // Sundays 05:00
        let created = at("2026-11-01T00:00:00Z");
        let completed = |mut backup: ZooKeeperBackup, at_text: &str| {
            backup.status.as_mut().unwrap().completed_at = Some(Time(at(at_text)));
            backup
        };
        let mut backups = vec![
            completed(
                run("2026-12-04T03:00:00Z", Some(Succeeded)),
                "2026-12-04T03:01:00Z",
            ),
            // By hand, newer than the scheduled ones.
            completed(
                run("2026-12-05T03:00:00Z", Some(Succeeded)),
                "2026-12-05T09:30:00Z",
            ),
            completed(
                run("2026-12-06T03:00:00Z", Some(Failed)),
                "2026-12-06T03:05:00Z",
            ),
            run("2026-12-06T04:00:00Z", Some(BackupPhase::Running)),
        ];
        backups[1].annotations_mut().clear();
        // The last Sunday's run, before these backups, was never asked for: it is due now.
        assert_eq!(
            drill_due(&weekly, &backups, created, at("2026-12-06T04:59:00Z")).map(|d| d.0),
            Some(at("2026-11-29T05:00:00Z"))
        );
        let (run_at, target) =
            drill_due(&weekly, &backups, created, at("2026-12-06T05:10:00Z")).unwrap();
        assert_eq!(run_at, at("2026-12-06T05:00:00Z"));
        assert_eq!(target.unwrap().name_any(), "zk-20261205-030000");
        // Asked for: nothing more until next Sunday.
        backups[1]
            .annotations_mut()
            .insert(DRILL_REQUESTED_ANNOTATION.into(), run_at.to_string());
        assert!(drill_due(&weekly, &backups, created, at("2026-12-12T23:00:00Z")).is_none());
        assert_eq!(
            drill_due(&weekly, &backups, created, at("2026-12-13T05:00:00Z")).map(|d| d.0),
            Some(at("2026-12-13T05:00:00Z"))
        );
        // A request set by hand far ahead does not hold the schedule back.
        backups[1].annotations_mut().insert(
            DRILL_REQUESTED_ANNOTATION.into(),
            "2030-01-01T00:00:00Z".into(),
        );
        assert_eq!(
            drill_due(&weekly, &backups, created, at("2026-12-13T05:00:00Z")).map(|d| d.0),
            Some(at("2026-12-13T05:00:00Z"))
        );
        // No successful backup: the run is due with nothing to drill.
        let failed = [backups[2].clone()];
        let (_, nothing) =
            drill_due(&weekly, &failed, created, at("2026-12-06T05:10:00Z")).unwrap();
        assert!(nothing.is_none());
    }

    #[test]
    fn retention_keeps_the_newest_verified_backup_beyond_keep() {
        use BackupPhase::Succeeded;
        let verified = |at_text: &str, result: &str| {
            let mut backup = run(at_text, Some(Succeeded));
            let status = backup.status.as_mut().unwrap();
            status
                .conditions
                .push(super::super::drill::verified_condition(
                    result,
                    "Restored",
                    String::new(),
                ));
            backup
        };
        let runs = [
            verified("2026-12-01T03:00:00Z", "True"),
            verified("2026-12-02T03:00:00Z", "True"),
            verified("2026-12-03T03:00:00Z", "False"),
            run("2026-12-04T03:00:00Z", Some(Succeeded)),
        ];
        let pruned: Vec<String> = to_prune(&runs, 2).iter().map(|b| b.name_any()).collect();
        assert_eq!(
            pruned,
            ["zk-20261201-030000"],
            "the newest verified one stays, an older one goes"
        );
        // Once a newer one is verified, the older one may go.
        let runs = [runs[1].clone(), verified("2026-12-04T03:00:00Z", "True")];
        let pruned: Vec<String> = to_prune(&runs, 1).iter().map(|b| b.name_any()).collect();
        assert_eq!(pruned, ["zk-20261202-030000"]);
    }
}
