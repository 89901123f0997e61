//! A real S3-compatible server for the backup tests: `s3s-fs` (the s3s project's file-system
//! backed server, built from its crate by `tests/cluster/setup.sh`), on a loopback port, with a
//! temporary root directory whose subdirectories are the buckets.
//!
//! It checks AWS Signature V4 against the one access key it is started with, so a client
//! with other credentials is refused as by a real store. The process is killed when the value
//! is dropped, and with the test process (parent-death signal).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::process;

/// The access key the server accepts.
pub const ACCESS_KEY_ID: &str = "zooherd-tests";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "zooherd-tests-secret-key";

/// The s3s-fs binary: `ZOOHERD_S3S_FS`, or the one setup.sh built.
pub fn s3s_fs_path() -> PathBuf {
    let dir = format!("bin/s3s-fs-{}/bin", super::version("S3S_FS_VERSION"));
    super::tool_path("ZOOHERD_S3S_FS", Path::new(&dir).join("s3s-fs"))
}

/// A running S3-compatible server.
pub struct S3Server {
    child: Child,
    endpoint: String,
    dir: TempDir,
}

impl S3Server {
    /// Starts a server with the buckets `buckets` (empty) on loopback; returns once it accepts
    /// connections.
    pub fn start(buckets: &[&str]) -> std::io::Result<S3Server> {
        Self::start_at(std::net::Ipv4Addr::LOCALHOST, buckets)
    }

    /// [`start`](Self::start) on the address `ip` of this host, e.g. its address on the local
    /// cluster's bridge, which pods reach.
    pub fn start_at(ip: std::net::Ipv4Addr, buckets: &[&str]) -> std::io::Result<S3Server> {
        let binary = s3s_fs_path();
        super::require_file(&binary, "s3s-fs (run tests/cluster/setup.sh)")?;
        let dir = super::owned_temp_dir("zooherd-s3-")?;
        let root = dir.path().join("root");
        for bucket in buckets {
            fs::create_dir_all(root.join(bucket))?;
        }
        let port = std::net::TcpListener::bind((ip, 0))?.local_addr()?.port();
        let log = fs::File::create(dir.path().join("s3s-fs.log"))?;
        let mut command = Command::new(&binary);
        command
            .args(["--host", &ip.to_string(), "--port", &port.to_string()])
            .args([
                "--access-key",
                ACCESS_KEY_ID,
                "--secret-key",
                SECRET_ACCESS_KEY,
            ])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = process::spawn_with_death_signal(command, Signal::SIGKILL)?;
        let server = S3Server {
            child,
            endpoint: format!("http://{ip}:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect((ip, port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "s3s-fs did not listen on {port} within 30 s: {}",
                    super::tail(&server.dir.path().join("s3s-fs.log"), 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// `http://<ip>:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Where the server keeps `key` of `bucket` (a plain file).
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.path().join("root").join(bucket).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = process::terminate(&mut self.child, Signal::SIGKILL, Duration::from_secs(10));
    }
}
