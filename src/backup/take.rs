//! One attempt at a backup: stream a snapshot from a member's AdminServer into object
//! storage, hashing it on the way, then write the metadata beside it.
//!
//! ZooKeeper 3.9's `snapshot` command (`GET /commands/snapshot?streaming=true`) makes the
//! server write a fresh snapshot of its data tree to its own disk and stream that file; the
//! answer's `last_zxid` header names the last transaction in it and `snapshot_size` its length
//! (Commands.SnapshotCommand). The command needs an authenticated caller whose identity may
//! do everything on `/`: the operator sends the ensemble superuser's digest credentials, which
//! pass any ACL. The server rate-limits the command (one per `admin.rateLimiterIntervalInMS`,
//! 5 minutes by default) and answers 429 meanwhile, so the caller goes on to the next member.
//!
//! The snapshot is uploaded in parts (S3 multipart, 8 MiB each, two in flight), so memory
//! stays bounded whatever the data size; a part that fails aborts the upload, which leaves no
//! object behind. The metadata object is written only after the snapshot completed and its
//! length matched the header and it passed ZooKeeper's own checksums (read on the way by
//! [`super::snapshot_file`], which also counts its znodes), so a metadata object always
//! describes a whole snapshot.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpClient, HttpConnector};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};

use super::plan::S3Credentials;
use super::snapshot_file::{SnapshotReader, SnapshotSummary};
use crate::api::S3Location;
use crate::http::AdminTls;
use crate::quorum::reconfig::SUPERUSER;

/// Bytes per uploaded part; S3 takes parts of 5 MiB and more (but the last).
const PART_SIZE: usize = 8 << 20;
/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;
/// How long a stalled read of the snapshot or of the storage's answer may last.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a stored snapshot is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub zxid: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// What the snapshot holds, read on the way.
    pub contents: SnapshotSummary,
}

/// An object store client for `location` (the spec field `field`), signing with `credentials`.
pub fn object_store(
    field: &str,
    location: &S3Location,
    credentials: &S3Credentials,
) -> Result<Arc<dyn ObjectStore>, String> {
    let store = AmazonS3Builder::new()
        .with_endpoint(location.endpoint.trim_end_matches('/'))
        .with_allow_http(location.endpoint.starts_with("http://"))
        .with_bucket_name(&location.bucket)
        .with_region(&location.region)
        .with_virtual_hosted_style_request(location.virtual_hosted_style)
        .with_access_key_id(&credentials.access_key_id)
        .with_secret_access_key(&credentials.secret_access_key)
        .with_http_connector(Connector {
            ca: credentials.ca.clone(),
        })
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
            ..RetryConfig::default()
        })
        .build()
        .map_err(|e| format!("{field}: {e}"))?;
    Ok(Arc::new(store))
}

/// The operator's HTTP client for object storage (rustls on ring, see [`crate::http`]),
/// trusting the Secret's CA when it has one.
#[derive(Debug)]
struct Connector {
    ca: Option<String>,
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = crate::http::object_storage_builder(self.ca.as_deref())
            .and_then(|builder| {
                builder
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: format!(
                    "the endpoint's TLS ({} in the credentials Secret): {e}",
                    crate::api::ENDPOINT_CA_KEY
                )
                .into(),
            })?;
        Ok(HttpClient::new(client))
    }
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// The member could not give a snapshot: the next member may.
    #[error("{member}: {message}")]
    Member { member: String, message: String },
    /// The storage refused or failed: another member would not help.
    #[error("object storage: {0}")]
    Storage(String),
}

/// The client that asks the AdminServers for snapshots, as the operator (`tls`): no overall
/// timeout, since a large tree streams for minutes, but one on each read, so that a member
/// frozen mid-stream fails the attempt instead of holding it for ever.
pub fn snapshot_client(tls: &AdminTls) -> Result<reqwest::Client, String> {
    crate::http::admin_builder(tls)
        .and_then(|builder| {
            builder
                .no_proxy()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(READ_TIMEOUT)
                .build()
                .map_err(|e| e.to_string())
        })
        .map_err(|e| format!("the operator's AdminServer client: {e}"))
}

/// Streams a snapshot from the AdminServer at `base` (`https://<pod IP>:8080`) of `member` to
/// `key` in `store`, with `password` the superuser's.
pub async fn stream_snapshot(
    http: &reqwest::Client,
    member: &str,
    base: &str,
    password: &str,
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Stored, TakeError> {
    // The upload is opened first: wrong credentials or a missing bucket show here, before a
    // server spends a snapshot (and its rate limit) on them.
    let upload = store
        .put_multipart(&Path::from(key))
        .await
        .map_err(|e| TakeError::Storage(e.to_string()))?;
    let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    match copy(http, base, password, Some(&mut upload)).await {
        Ok(stored) => {
            upload
                .finish()
                .await
                .map_err(|e| TakeError::Storage(e.to_string()))?;
            Ok(stored)
        }
        Err(error) => {
            // Nothing of a broken stream may stay behind as if it were a snapshot.
            if let Err(abort) = upload.abort().await {
                tracing::warn!(%key, error = %abort, "aborting the upload of a broken snapshot");
            }
            Err(error.of(member))
        }
    }
}

/// Reads a snapshot from the AdminServer at `base` of `member` as [`stream_snapshot`] does, and
/// stores it nowhere: what a restore drill asks of the server it restored.
pub async fn read_snapshot(
    http: &reqwest::Client,
    member: &str,
    base: &str,
    password: &str,
) -> Result<Stored, TakeError> {
    copy(http, base, password, None)
        .await
        .map_err(|error| error.of(member))
}

/// Why copying a snapshot into an upload stopped.
enum Copy {
    Member(String),
    Storage(String),
}

impl Copy {
    /// The error of an attempt on `member`.
    fn of(self, member: &str) -> TakeError {
        match self {
            Copy::Member(message) => TakeError::Member {
                member: member.to_owned(),
                message,
            },
            Copy::Storage(message) => TakeError::Storage(message),
        }
    }
}

/// The request for a streamed snapshot from the AdminServer at `base`, as the superuser whose
/// password is `password`.
pub fn snapshot_request(
    http: &reqwest::Client,
    base: &str,
    password: &str,
) -> reqwest::RequestBuilder {
    http.get(format!("{base}/commands/snapshot?streaming=true"))
        .header(
            reqwest::header::AUTHORIZATION,
            format!("digest {SUPERUSER}:{password}"),
        )
}

/// Asks the AdminServer at `base` for a snapshot and writes it into `upload`, if any, hashing
/// it.
async fn copy(
    http: &reqwest::Client,
    base: &str,
    password: &str,
    mut upload: Option<&mut WriteMultipart>,
) -> Result<Stored, Copy> {
    let response = snapshot_request(http, base, password)
        .send()
        .await
        .map_err(|e| Copy::Member(format!("asking for a snapshot: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let why = match status.as_u16() {
            429 => {
                "took a snapshot within the last admin.rateLimiterIntervalInMS (5 minutes by default)"
            }
            503 => {
                "has the snapshot command off (it runs without spec.backup.enabled, or without quorum TLS)"
            }
            401 | 403 => {
                "refused the superuser's credentials (it runs with another superuser digest)"
            }
            _ => "could not take a snapshot",
        };
        return Err(Copy::Member(format!("HTTP {status}: {why}")));
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let zxid = super::plan::zxid(header("last_zxid").as_deref()).map_err(Copy::Member)?;
    let announced: Option<u64> = header("snapshot_size").and_then(|size| size.parse().ok());
    let mut hash = Sha256::new();
    let mut contents = SnapshotReader::default();
    let mut size_bytes = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Copy::Member(format!("reading the snapshot: {e}")))?;
        hash.update(&chunk);
        contents.push(&chunk);
        size_bytes += chunk.len() as u64;
        if let Some(upload) = upload.as_deref_mut() {
            upload
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| Copy::Storage(e.to_string()))?;
            upload.put(chunk);
        }
    }
    if size_bytes == 0 {
        return Err(Copy::Member("the snapshot was empty".to_owned()));
    }
    if let Some(announced) = announced.filter(|&announced| announced != size_bytes) {
        return Err(Copy::Member(format!(
            "the snapshot ended after {size_bytes} of {announced} bytes"
        )));
    }
    // A snapshot that is not whole by its own checksums (a server that broke off, a disk or
    // a proxy that changed bytes) is never stored as a backup.
    let contents = contents
        .finish()
        .map_err(|e| Copy::Member(format!("the snapshot it streamed is not whole: {e}")))?;
    Ok(Stored {
        zxid,
        size_bytes,
        sha256: const_hex::encode(hash.finalize()),
        contents,
    })
}

/// Writes `metadata` as JSON at `key`.
pub async fn put_metadata(
    store: &dyn ObjectStore,
    key: &str,
    metadata: &crate::api::BackupMetadata,
) -> Result<(), TakeError> {
    let json = serde_json::to_vec_pretty(metadata).expect("metadata serializes to JSON");
    store
        .put(&Path::from(key), json.into())
        .await
        .map_err(|e| TakeError::Storage(e.to_string()))?;
    Ok(())
}
