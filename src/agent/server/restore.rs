//! A new ensemble that starts from a backup: the snapshot in the data directory before
//! ZooKeeper first starts.
//!
//! The operator resolves `spec.restore` into `status.restore` and passes it to every server as
//! the `ZOOHERD_RESTORE_*` variables (the credentials from the backup's Secret). The agent
//! downloads the snapshot only while the ensemble has not formed and the volume holds no
//! ZooKeeper data ([`wanted`]): every initial server then starts from the same snapshot, so any
//! quorum they form holds the restored data. Were only one to hold it, two empty servers could
//! form a quorum without it, elect a leader at zxid 0, and truncate the restored one to that
//! empty tree when it joined (ZAB's synchronisation follows the elected leader's history). Once
//! the ensemble has formed, an empty server is a newcomer or a replaced volume; it must sync
//! from the leader (or, as a voter, leave the voters first: `data_dir::may_start`), never load
//! an older snapshot.
//!
//! ZooKeeper loads the newest `snapshot.<zxid in hex>` in `dataDir/version-2` and replays
//! transaction logs after it; with no log it serves the snapshot's tree, and with no
//! `currentEpoch` file it takes the epoch from the snapshot's zxid (Learner and QuorumPeer,
//! "Data directory" in the administrator's guide). The first leader writes the new ensemble's
//! own membership to `/zookeeper/config`, replacing the backed-up ensemble's.
//!
//! The download goes to a hidden file beside the snapshot's place and becomes
//! `snapshot.<zxid>` only once its size, SHA-256 and ZooKeeper's snapshot magic are checked and
//! it is on disk: a server killed mid-download leaves no snapshot ZooKeeper would load, and
//! tries again on its next start. A snapshot that does not match is refused with
//! [`EXIT_RESTORE_FAILED`](super::EXIT_RESTORE_FAILED) and never loaded.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use sha2::{Digest, Sha256};

use super::Env;
use super::error::{StartError, invalid, io_error};
use crate::api::S3Location;
use crate::backup::plan::S3Credentials;

pub const ENV_RESTORE_ENDPOINT: &str = "ZOOHERD_RESTORE_ENDPOINT";
pub const ENV_RESTORE_BUCKET: &str = "ZOOHERD_RESTORE_BUCKET";
pub const ENV_RESTORE_KEY: &str = "ZOOHERD_RESTORE_KEY";
pub const ENV_RESTORE_REGION: &str = "ZOOHERD_RESTORE_REGION";
pub const ENV_RESTORE_VIRTUAL_HOSTED_STYLE: &str = "ZOOHERD_RESTORE_VIRTUAL_HOSTED_STYLE";
pub const ENV_RESTORE_SIZE: &str = "ZOOHERD_RESTORE_SIZE";
pub const ENV_RESTORE_SHA256: &str = "ZOOHERD_RESTORE_SHA256";
pub const ENV_RESTORE_ZXID: &str = "ZOOHERD_RESTORE_ZXID";
pub const ENV_RESTORE_ACCESS_KEY_ID: &str = "ZOOHERD_RESTORE_ACCESS_KEY_ID";
pub const ENV_RESTORE_SECRET_ACCESS_KEY: &str = "ZOOHERD_RESTORE_SECRET_ACCESS_KEY";
pub const ENV_RESTORE_CA: &str = "ZOOHERD_RESTORE_CA";

/// The first bytes of every ZooKeeper snapshot file ("ZKSN", FileSnap.SNAP_MAGIC).
const SNAPSHOT_MAGIC: &[u8; 4] = b"ZKSN";
/// Name of the download in progress, in `version-2`: not a name ZooKeeper loads.
const DOWNLOAD_FILE: &str = ".zooherd-restore.download";

/// The snapshot to start from, as the operator passed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreSource {
    pub s3: S3Location,
    pub key: String,
    pub credentials: S3Credentials,
    pub size: u64,
    pub sha256: String,
    /// Last zxid in the snapshot.
    pub zxid: u64,
}

impl RestoreSource {
    /// `s3://<bucket>/<key>`, as the status shows it.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.s3.bucket, self.key)
    }

    /// The file name ZooKeeper gives a snapshot whose last zxid is this one
    /// (`Util.makeSnapshotName`: lower-case hex, no padding).
    pub fn file_name(&self) -> String {
        format!("snapshot.{:x}", self.zxid)
    }
}

/// The snapshot to start from, when the operator passed one (`ZOOHERD_RESTORE_KEY` is set):
/// then every other variable but the CA is required.
pub fn restore_source(env: Env) -> Result<Option<RestoreSource>, StartError> {
    let Some(key) = env(ENV_RESTORE_KEY) else {
        return Ok(None);
    };
    let required = |var: &'static str| {
        env(var).ok_or(StartError::MissingEnv {
            var,
            hint: "the operator sets every ZOOHERD_RESTORE_* variable from status.restore and the backup's Secret; \
                   check that the Secret has AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        })
    };
    let size_text = required(ENV_RESTORE_SIZE)?;
    let size = size_text
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&size| size > 0)
        .ok_or_else(|| invalid(ENV_RESTORE_SIZE, &size_text, "is not a positive byte count"))?;
    let sha256 = required(ENV_RESTORE_SHA256)?.trim().to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid(ENV_RESTORE_SHA256, &sha256, "is not a hex SHA-256"));
    }
    let zxid_text = required(ENV_RESTORE_ZXID)?;
    let zxid = zxid_text
        .trim()
        .strip_prefix("0x")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| invalid(ENV_RESTORE_ZXID, &zxid_text, "is not a hex zxid (0x...)"))?;
    let style = env(ENV_RESTORE_VIRTUAL_HOSTED_STYLE).unwrap_or_default();
    let virtual_hosted_style = match style.trim() {
        "" | "false" => false,
        "true" => true,
        other => {
            return Err(invalid(
                ENV_RESTORE_VIRTUAL_HOSTED_STYLE,
                other,
                "is not true or false",
            ));
        }
    };
    Ok(Some(RestoreSource {
        s3: S3Location {
            endpoint: required(ENV_RESTORE_ENDPOINT)?,
            bucket: required(ENV_RESTORE_BUCKET)?,
            prefix: String::new(),
            region: env(ENV_RESTORE_REGION).unwrap_or_else(|| "us-east-1".to_owned()),
            virtual_hosted_style,
            credentials_secret: String::new(),
        },
        key,
        credentials: S3Credentials {
            access_key_id: required(ENV_RESTORE_ACCESS_KEY_ID)?.trim().to_owned(),
            secret_access_key: required(ENV_RESTORE_SECRET_ACCESS_KEY)?.trim().to_owned(),
            ca: env(ENV_RESTORE_CA),
        },
        size,
        sha256,
        zxid,
    }))
}

/// Whether to download the snapshot: only into a volume with no ZooKeeper data, of an
/// ensemble that has not formed (see the module doc).
pub fn wanted(formed: bool, has_data: bool) -> bool {
    !formed && !has_data
}

/// Why a downloaded snapshot is not the one the backup stored; `None` when it is.
pub fn mismatch(source: &RestoreSource, size: u64, sha256: &str, head: &[u8]) -> Option<String> {
    if size < source.size {
        return Some(format!(
            "it is {size} bytes, the backup stored {} (truncated or replaced)",
            source.size
        ));
    }
    if size > source.size {
        return Some(format!(
            "it is longer than the {} bytes the backup stored (replaced)",
            source.size
        ));
    }
    if sha256 != source.sha256 {
        return Some(format!(
            "its SHA-256 is {sha256}, the backup stored {} (corrupted or replaced)",
            source.sha256
        ));
    }
    if !head.starts_with(SNAPSHOT_MAGIC) {
        return Some("it is not a ZooKeeper snapshot (no ZKSN magic; compressed snapshots are not supported)".to_owned());
    }
    None
}

/// Downloads the snapshot into `data_dir/version-2`, checked, under the name ZooKeeper loads;
/// returns its path. Nothing ZooKeeper would load is left behind on failure.
pub fn fetch_snapshot(source: &RestoreSource, data_dir: &Path) -> Result<PathBuf, StartError> {
    let version_2 = data_dir.join("version-2");
    fs::create_dir_all(&version_2).map_err(|e| io_error("create", &version_2, &e))?;
    let download = version_2.join(DOWNLOAD_FILE);
    let failed = |problem: String| StartError::Restore {
        location: source.location(),
        problem,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("starting the download: {e}")))?;
    let downloaded = runtime.block_on(download_to(source, &download));
    let (size, sha256, head) = match downloaded {
        Ok(figures) => figures,
        Err(error) => {
            let _ = fs::remove_file(&download);
            return Err(error);
        }
    };
    if let Some(problem) = mismatch(source, size, &sha256, &head) {
        let _ = fs::remove_file(&download);
        return Err(failed(format!("refused: {problem}")));
    }
    let snapshot = version_2.join(source.file_name());
    fs::rename(&download, &snapshot).map_err(|e| io_error("rename", &download, &e))?;
    File::open(&version_2)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error("sync", &version_2, &e))?;
    Ok(snapshot)
}

/// Streams the object to `path`, synced: its size, SHA-256 and first bytes.
async fn download_to(
    source: &RestoreSource,
    path: &Path,
) -> Result<(u64, String, Vec<u8>), StartError> {
    let failed = |problem: String| StartError::Restore {
        location: source.location(),
        problem,
    };
    let store =
        crate::backup::take::object_store("ZOOHERD_RESTORE_*", &source.s3, &source.credentials)
            .map_err(|e| failed(format!("the object store: {e}")))?;
    let object = store
        .get(&ObjectPath::from(source.key.as_str()))
        .await
        .map_err(|e| failed(format!("reading it: {e}")))?;
    let mut file = File::create(path).map_err(|e| io_error("create", path, &e))?;
    let mut stream = object.into_stream();
    let (mut size, mut hash, mut head) = (0u64, Sha256::new(), Vec::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| failed(format!("reading it after {size} bytes: {e}")))?;
        if head.len() < SNAPSHOT_MAGIC.len() {
            head.extend(chunk.iter().take(SNAPSHOT_MAGIC.len() - head.len()));
        }
        hash.update(&chunk);
        size += chunk.len() as u64;
        // The size is known: a longer object is refused before it fills the volume.
        if size > source.size {
            break;
        }
        file.write_all(&chunk)
            .map_err(|e| io_error("write", path, &e))?;
    }
    file.sync_all().map_err(|e| io_error("sync", path, &e))?;
    Ok((size, const_hex::encode(hash.finalize()), head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SHA: &str = "8da067f68800ffb54a18d1cf633a6e89c25f74d9683708f2f95318a81aec2681";

    fn full_env() -> HashMap<&'static str, String> {
        [
            (ENV_RESTORE_ENDPOINT, "http://s3.storage:9000"),
            (ENV_RESTORE_BUCKET, "zk-backups"),
            (ENV_RESTORE_KEY, "prod/ns/zk/nightly-1.snapshot"),
            (ENV_RESTORE_SIZE, "694006"),
            (ENV_RESTORE_SHA256, SHA),
            (ENV_RESTORE_ZXID, "0x10000012a"),
            (ENV_RESTORE_ACCESS_KEY_ID, "id"),
            (ENV_RESTORE_SECRET_ACCESS_KEY, "secret"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect()
    }

    fn parse(env: &HashMap<&'static str, String>) -> Result<Option<RestoreSource>, StartError> {
        restore_source(&|var: &str| env.get(var).cloned())
    }

    #[test]
    fn the_operators_variables_name_the_object_and_its_figures() {
        let source = parse(&full_env()).unwrap().unwrap();
        assert_eq!(
            source.location(),
            "s3://zk-backups/prod/ns/zk/nightly-1.snapshot"
        );
        assert_eq!(source.file_name(), "snapshot.10000012a");
        assert_eq!(
            (source.size, source.s3.region.as_str()),
            (694_006, "us-east-1")
        );
        assert_eq!(source.credentials.ca, None);
        assert_eq!(
            parse(&HashMap::new()).unwrap(),
            None,
            "no restore without a key"
        );
    }

    #[test]
    fn a_missing_or_bad_variable_is_named() {
        let mut env = full_env();
        env.remove(ENV_RESTORE_SECRET_ACCESS_KEY);
        let error = parse(&env).unwrap_err();
        assert!(
            error.to_string().starts_with(ENV_RESTORE_SECRET_ACCESS_KEY),
            "{error}"
        );
        for (var, value) in [
            (ENV_RESTORE_SIZE, "0"),
            (ENV_RESTORE_SHA256, "abc"),
            (ENV_RESTORE_ZXID, "10000012a"),
            (ENV_RESTORE_VIRTUAL_HOSTED_STYLE, "yes"),
        ] {
            let mut env = full_env();
            env.insert(var, value.to_owned());
            let error = parse(&env).unwrap_err();
            assert_eq!(error.exit_code(), super::super::EXIT_INVALID_INPUT);
            assert!(error.to_string().starts_with(var), "{error}");
        }
    }

    #[test]
    fn only_an_empty_volume_of_an_ensemble_that_has_not_formed_is_restored() {
        assert!(wanted(false, false));
        assert!(!wanted(false, true), "a server that has data keeps it");
        assert!(
            !wanted(true, false),
            "after formation an empty server syncs from the leader"
        );
        assert!(!wanted(true, true));
    }

    #[test]
    fn a_download_that_differs_in_size_hash_or_kind_is_refused() {
        let source = parse(&full_env()).unwrap().unwrap();
        assert_eq!(mismatch(&source, 694_006, SHA, b"ZKSN\0\0"), None);
        let truncated = mismatch(&source, 1000, SHA, b"ZKSN").unwrap();
        assert!(
            truncated.contains("1000 bytes, the backup stored 694006"),
            "{truncated}"
        );
        let corrupted = mismatch(&source, 694_006, &"0".repeat(64), b"ZKSN").unwrap();
        assert!(corrupted.contains("SHA-256"), "{corrupted}");
        let gzip = mismatch(&source, 694_006, SHA, b"\x1f\x8b").unwrap();
        assert!(gzip.contains("not a ZooKeeper snapshot"), "{gzip}");
    }
}
