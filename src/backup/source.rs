//! What a restored ensemble starts from, decided from what it names: no IO here.
//!
//! `spec.restore.backup` names a ZooKeeperBackup, `spec.restore.object` a snapshot in a bucket;
//! the operator resolves either once, before it creates the servers, into a [`RestoreStatus`]:
//! where the snapshot object is, its key, and the size, SHA-256 and zxid recorded when it was
//! stored (the backup's status, or the metadata object the backup wrote beside the snapshot
//! after the whole snapshot was stored). The servers are given exactly that (see
//! `build::stateful_set`), so what they download is checked against figures taken when the
//! snapshot was stored.

use crate::api::{
    BACKUP_METADATA_FORMAT, BackupMetadata, BackupPhase, RestoreObject, RestoreStatus,
    ZooKeeperBackup,
};

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
    let (size_bytes, sha256, zxid) =
        figures(status.size_bytes, status.sha256, status.zxid).map_err(incomplete)?;
    Ok(RestoreStatus {
        backup: Some(name.to_owned()),
        location,
        s3,
        key,
        zxid,
        size_bytes,
        sha256,
    })
}

/// Metadata objects are a few hundred bytes; anything far larger is not one, and is not read.
pub const METADATA_LIMIT: u64 = 64 << 10;

/// The metadata object beside a snapshot, as the store answered.
#[derive(Clone, Copy, Debug)]
pub enum StoredMetadata<'a> {
    /// There is none.
    Missing,
    /// Its length, larger than [`METADATA_LIMIT`]: not read.
    TooLarge(u64),
    /// Its contents.
    Read(&'a [u8]),
}

/// The snapshot `object` names, from the metadata object beside it and the snapshot's stored
/// length (`snapshot_size`, `None` when there is no such object), or what is wrong, naming the
/// field and what to do.
pub fn object_source(
    object: &RestoreObject,
    metadata: StoredMetadata<'_>,
    snapshot_size: Option<u64>,
) -> Result<RestoreStatus, String> {
    let field = "spec.restore.object.key";
    let key = &object.key;
    let location = format!("s3://{}/{key}", object.s3.bucket);
    let metadata_key = super::plan::metadata_key(key);
    let metadata = match metadata {
        StoredMetadata::Read(metadata) => metadata,
        StoredMetadata::Missing => {
            return Err(format!(
                "{field}: there is no metadata object {metadata_key} beside {location}; \
                 name the .snapshot key of a backup Zooherd stored (its .json is written beside it)"
            ));
        }
        StoredMetadata::TooLarge(size) => {
            return Err(format!(
                "{field}: the metadata object {metadata_key} holds {size} bytes, more than a \
                 Zooherd backup's metadata ever does ({METADATA_LIMIT} at most), and was not read; \
                 name the .snapshot key of a backup Zooherd stored"
            ));
        }
    };
    let metadata: BackupMetadata = serde_json::from_slice(metadata).map_err(|e| {
        format!(
            "{field}: the metadata object {metadata_key} is not a Zooherd backup's metadata ({e}); \
             name the .snapshot key of a backup Zooherd stored"
        )
    })?;
    if metadata.format != BACKUP_METADATA_FORMAT {
        return Err(format!(
            "{field}: the metadata object {metadata_key} has format {:?}, this operator reads \
             {BACKUP_METADATA_FORMAT:?}; restore it with the Zooherd version that took it",
            metadata.format
        ));
    }
    if &metadata.snapshot_key != key {
        return Err(format!(
            "{field}: the metadata object {metadata_key} describes {}, not {key}; \
             name the snapshot it describes",
            metadata.snapshot_key
        ));
    }
    let size = i64::try_from(metadata.size_bytes).ok();
    let (size_bytes, sha256, zxid) = figures(size, Some(metadata.sha256), Some(metadata.zxid))
        .map_err(|what| {
            format!("{field}: the metadata object {metadata_key} has no valid {what}")
        })?;
    match snapshot_size {
        None => Err(format!(
            "{field}: there is no object {location} (its metadata {metadata_key} is there); \
             the snapshot was deleted or the key is wrong"
        )),
        Some(stored) if stored != metadata.size_bytes => Err(format!(
            "{field}: {location} holds {stored} bytes, its metadata {metadata_key} says {size_bytes}; \
             the snapshot is damaged or was replaced, name another"
        )),
        Some(_) => Ok(RestoreStatus {
            backup: None,
            location,
            s3: object.s3.clone(),
            key: key.clone(),
            zxid,
            size_bytes,
            sha256,
        }),
    }
}

/// The size, SHA-256 and zxid a stored snapshot was recorded with, when each is well formed;
/// otherwise which is not.
fn figures(
    size_bytes: Option<i64>,
    sha256: Option<String>,
    zxid: Option<String>,
) -> Result<(i64, String, String), &'static str> {
    let sha256 = sha256
        .filter(|sha| sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or("SHA-256")?;
    let size_bytes = size_bytes.filter(|&size| size > 0).ok_or("size")?;
    let zxid = zxid
        .filter(|zxid| super::plan::zxid(Some(zxid)).as_ref() == Ok(zxid))
        .ok_or("zxid")?;
    Ok((size_bytes, sha256, zxid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ZooKeeperBackupSpec, ZooKeeperBackupStatus};

    const SHA: &str = "8da067f68800ffb54a18d1cf633a6e89c25f74d9683708f2f95318a81aec2681";

    fn backup(status: ZooKeeperBackupStatus) -> ZooKeeperBackup {
        let mut backup = ZooKeeperBackup::new(
            "nightly",
            ZooKeeperBackupSpec {
                ensemble: "zk".into(),
                s3: super::super::test_location("prod"),
                verify: false,
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

    /// The figures of the backup the fixtures describe, which every source must carry.
    fn assert_recorded_figures(source: &RestoreStatus) {
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
    fn a_succeeded_backup_gives_its_object_and_the_figures_it_recorded() {
        let source = restore_source("nightly", Some(&backup(succeeded()))).unwrap();
        assert_eq!(source.backup.as_deref(), Some("nightly"));
        assert_eq!(source.key, "prod/ns/zk/nightly-1.snapshot");
        assert_eq!(source.s3.credentials_secret, "s3");
        assert_recorded_figures(&source);
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

    const KEY: &str = "prod/ns/zk/nightly-u.snapshot";

    fn object() -> RestoreObject {
        RestoreObject {
            s3: backup(succeeded()).spec.s3,
            key: KEY.into(),
        }
    }

    fn metadata() -> serde_json::Value {
        serde_json::json!({
            "format": BACKUP_METADATA_FORMAT,
            "namespace": "ns", "ensemble": "zk", "ensembleUid": "e", "backup": "nightly",
            "backupUid": "u", "member": "zk-1", "zookeeperVersion": "3.9.4",
            "zxid": "0x10000012a", "sizeBytes": 694_006, "sha256": SHA, "snapshotKey": KEY,
            "startedAt": "2026-12-05T03:00:00Z", "completedAt": "2026-12-05T03:00:01Z",
        })
    }

    #[test]
    fn an_object_gives_the_figures_of_the_metadata_beside_it() {
        let json = serde_json::to_vec(&metadata()).unwrap();
        let source = object_source(&object(), StoredMetadata::Read(&json), Some(694_006)).unwrap();
        assert_eq!(source.backup, None);
        assert_eq!(source.location, format!("s3://zk-backups/{KEY}"));
        assert_eq!(
            (source.key.as_str(), source.s3.bucket.as_str()),
            (KEY, "zk-backups")
        );
        assert_recorded_figures(&source);
    }

    #[test]
    fn an_object_without_sound_metadata_or_snapshot_is_named_with_what_to_do() {
        use StoredMetadata::{Missing, Read, TooLarge};
        let with = |change: fn(&mut serde_json::Value)| {
            let mut metadata = metadata();
            change(&mut metadata);
            let json = serde_json::to_vec(&metadata).unwrap();
            object_source(&object(), Read(&json), Some(694_006)).unwrap_err()
        };
        let json = serde_json::to_vec(&metadata()).unwrap();
        let cases = [
            (
                object_source(&object(), Missing, Some(694_006)).unwrap_err(),
                "there is no metadata object prod/ns/zk/nightly-u.json",
            ),
            (
                object_source(&object(), Read(b"{}"), Some(694_006)).unwrap_err(),
                "is not a Zooherd backup's metadata",
            ),
            (
                object_source(&object(), TooLarge(1 << 20), Some(694_006)).unwrap_err(),
                "holds 1048576 bytes, more than a Zooherd backup's metadata ever does (65536 at most)",
            ),
            (
                with(|m| m["format"] = "zooherd.dev/backup-metadata/v9".into()),
                "restore it with the Zooherd version that took it",
            ),
            (
                with(|m| m["snapshotKey"] = "prod/ns/zk/other.snapshot".into()),
                "describes prod/ns/zk/other.snapshot, not",
            ),
            (with(|m| m["sha256"] = "x".into()), "has no valid SHA-256"),
            (with(|m| m["sizeBytes"] = 0.into()), "has no valid size"),
            (with(|m| m["zxid"] = "7".into()), "has no valid zxid"),
            (
                object_source(&object(), Read(&json), None).unwrap_err(),
                "there is no object s3://zk-backups/prod/ns/zk/nightly-u.snapshot",
            ),
            (
                object_source(&object(), Read(&json), Some(5)).unwrap_err(),
                "holds 5 bytes, its metadata prod/ns/zk/nightly-u.json says 694006",
            ),
        ];
        for (error, expected) in cases {
            assert!(error.starts_with("spec.restore.object.key: "), "{error}");
            assert!(error.contains(expected), "{error} should say {expected:?}");
        }
    }
}
