//! What a restored ensemble starts from, decided from the backup it names: no IO here.
//!
//! `spec.restore.backup` names a ZooKeeperBackup; the operator resolves it once, before it
//! creates the servers, into a [`RestoreStatus`]: where the snapshot object is, its key, and
//! the size, SHA-256 and zxid the backup recorded when it stored it. The servers are given
//! exactly that (see `build::stateful_set`), so what they download is checked against figures
//! taken when the snapshot was stored, not against anything stored beside it later.

use crate::api::{BackupPhase, RestoreStatus, ZooKeeperBackup};

/// The snapshot `backup` (the ZooKeeperBackup named `name`, `None` when there is none) stored,
/// or what keeps the ensemble from starting from it, naming the field and what to do.
pub fn restore_source(
    name: &str,
    backup: Option<&ZooKeeperBackup>,
) -> Result<RestoreStatus, String> {
    let field = "spec.restore.backup";
    let backup = backup.ok_or_else(|| {
        format!(
            "{field}: there is no ZooKeeperBackup {name} in this namespace (kubectl get zkb lists them); \
             the servers are created once it exists and has succeeded"
        )
    })?;
    let status = backup.status.clone().unwrap_or_default();
    match status.phase {
        Some(BackupPhase::Succeeded) => {}
        Some(BackupPhase::Failed) => {
            return Err(format!(
                "{field}: the ZooKeeperBackup {name} failed and holds no snapshot; \
                 delete this ensemble and create it again naming a backup that succeeded"
            ));
        }
        phase => {
            let phase = phase.map_or_else(|| "not started".to_owned(), |p| p.to_string());
            return Err(format!(
                "{field}: the ZooKeeperBackup {name} is {phase}, not Succeeded; \
                 the servers are created once it has succeeded"
            ));
        }
    }
    let incomplete = |what: &str| {
        format!(
            "{field}: the ZooKeeperBackup {name} succeeded but its status has no {what}; \
             name another backup"
        )
    };
    let location = status.location.ok_or_else(|| incomplete("location"))?;
    let s3 = backup.spec.s3.clone();
    let key = location
        .strip_prefix(&format!("s3://{}/", s3.bucket))
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            format!(
                "{field}: the ZooKeeperBackup {name}'s location {location} is not in its bucket {}; \
                 name another backup",
                s3.bucket
            )
        })?
        .to_owned();
    let sha256 = status
        .sha256
        .filter(|sha| sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| incomplete("SHA-256"))?;
    let size_bytes = status
        .size_bytes
        .filter(|&size| size > 0)
        .ok_or_else(|| incomplete("size"))?;
    let zxid = status
        .zxid
        .filter(|zxid| super::plan::zxid(Some(zxid)).as_ref() == Ok(zxid))
        .ok_or_else(|| incomplete("zxid"))?;
    Ok(RestoreStatus {
        backup: name.to_owned(),
        location,
        s3,
        key,
        zxid,
        size_bytes,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{S3Location, ZooKeeperBackupSpec, ZooKeeperBackupStatus};

    const SHA: &str = "8da067f68800ffb54a18d1cf633a6e89c25f74d9683708f2f95318a81aec2681";

    fn backup(status: ZooKeeperBackupStatus) -> ZooKeeperBackup {
        let mut backup = ZooKeeperBackup::new(
            "nightly",
            ZooKeeperBackupSpec {
                ensemble: "zk".into(),
                s3: S3Location {
                    endpoint: "http://s3.storage:9000".into(),
                    bucket: "zk-backups".into(),
                    prefix: "prod".into(),
                    region: "us-east-1".into(),
                    virtual_hosted_style: false,
                    credentials_secret: "s3".into(),
                },
            },
        );
        backup.status = Some(status);
        backup
    }

    fn succeeded() -> ZooKeeperBackupStatus {
        ZooKeeperBackupStatus {
            phase: Some(BackupPhase::Succeeded),
            location: Some("s3://zk-backups/prod/ns/zk/nightly-1.snapshot".into()),
            size_bytes: Some(694_006),
            sha256: Some(SHA.into()),
            zxid: Some("0x10000012a".into()),
            ..ZooKeeperBackupStatus::default()
        }
    }

    #[test]
    fn a_succeeded_backup_gives_its_object_and_the_figures_it_recorded() {
        let source = restore_source("nightly", Some(&backup(succeeded()))).unwrap();
        assert_eq!(source.key, "prod/ns/zk/nightly-1.snapshot");
        assert_eq!(source.s3.credentials_secret, "s3");
        assert_eq!(
            (
                source.size_bytes,
                source.sha256.as_str(),
                source.zxid.as_str()
            ),
            (694_006, SHA, "0x10000012a")
        );
    }

    #[test]
    fn a_backup_that_is_missing_unfinished_failed_or_incomplete_is_named_with_what_to_do() {
        let with = |change: fn(&mut ZooKeeperBackupStatus)| {
            let mut status = succeeded();
            change(&mut status);
            restore_source("nightly", Some(&backup(status))).unwrap_err()
        };
        let cases = [
            (
                restore_source("nightly", None).unwrap_err(),
                "there is no ZooKeeperBackup nightly",
            ),
            (
                with(|s| s.phase = Some(BackupPhase::Running)),
                "is Running, not Succeeded",
            ),
            (with(|s| s.phase = None), "is not started, not Succeeded"),
            (
                with(|s| s.phase = Some(BackupPhase::Failed)),
                "failed and holds no snapshot",
            ),
            (with(|s| s.sha256 = Some("abc".into())), "has no SHA-256"),
            (with(|s| s.size_bytes = Some(0)), "has no size"),
            (with(|s| s.zxid = Some("12".into())), "has no zxid"),
            (with(|s| s.location = None), "has no location"),
            (
                with(|s| s.location = Some("s3://other/key".into())),
                "is not in its bucket zk-backups",
            ),
        ];
        for (error, expected) in cases {
            assert!(error.starts_with("spec.restore.backup: "), "{error}");
            assert!(error.contains(expected), "{error} should say {expected:?}");
        }
    }
}
