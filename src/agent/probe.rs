//! `zooherd probe ready` and `zooherd probe live`: the kubelet's two questions, answered by
//! the server's AdminServer.
//!
//! - **Ready** means the server serves clients: `srvr` answers without an error, which a
//!   ZooKeeper server does only while it is in a quorum (or standalone). The 4lw `ruok` is no
//!   use here: it answers `imok` without a quorum. Only ready servers get client traffic
//!   through the client Service.
//! - **Live** means the AdminServer answers at all, serving or not. A server that lost its
//!   quorum is alive and looking for its peers: restarting it would not bring the quorum back.
//!   A JVM that is dead, hung or frozen answers nothing, and that is what a restart fixes.
//!
//! When the AdminServer takes only HTTPS with a client certificate of the ensemble's CA (quorum
//! TLS; see [`crate::build::tls`]), the probe is given the certificates' directory
//! (`--tls-dir`) and shows the servers' own certificate.
//!
//! Each probe is bounded by a timeout (default 3 s, under the StatefulSet's 4 s probe timeout)
//! and ends with an exit code and one line on stdout, which `kubectl describe pod` shows when
//! the probe fails. What the answer means is decided by the pure [`verdict`].

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::server::ENV_BIND_ADDRESS;
use crate::build::names::ADMIN_PORT;
use crate::quorum::admin::{AdminClient, AdminError, SrvrAnswer, zxid_hex};

/// The probe passed.
pub const EXIT_PASS: u8 = 0;
/// The probe failed; the line says why.
pub const EXIT_FAIL: u8 = 1;

/// Which probe to run.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum Which {
    /// Pass when this server serves clients: it is in a quorum, or standalone.
    Ready(Args),
    /// Pass when the AdminServer answers at all, serving or not.
    Live(Args),
}

/// Where to ask, and for how long.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The AdminServer's base URL [default: http://127.0.0.1:8080, or
    /// http://$ZOOHERD_BIND_ADDRESS:8080 when that is set; https:// with --tls-dir].
    #[arg(long, value_name = "URL")]
    pub admin_url: Option<String>,

    /// Speak HTTPS, trusting DIR/ca.crt and showing the certificate and key of
    /// DIR/keystore.pem (the servers' own, mounted from the ensemble's TLS Secret).
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<std::path::PathBuf>,

    /// Give up after this many seconds (keep it under the probe's timeoutSeconds).
    #[arg(long, value_name = "SECONDS", default_value = "3", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// The question a probe asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ready,
    Live,
}

/// A probe's outcome: whether it passed, and the one line that says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub pass: bool,
    pub line: String,
}

impl Verdict {
    pub fn exit_code(&self) -> u8 {
        if self.pass { EXIT_PASS } else { EXIT_FAIL }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|seconds| *seconds > 0.0)
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

/// The AdminServer of this pod: on the bind address when one is set, else on loopback (the
/// AdminServer listens on every interface); `https` when it takes only TLS.
pub fn default_admin_url(bind_address: Option<&str>, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    match bind_address.map(|a| (a, a.parse::<IpAddr>())) {
        None => format!("{scheme}://127.0.0.1:{ADMIN_PORT}"),
        Some((_, Ok(IpAddr::V6(v6)))) => format!("{scheme}://[{v6}]:{ADMIN_PORT}"),
        Some((address, _)) => format!("{scheme}://{address}:{ADMIN_PORT}"),
    }
}

/// The client that shows the servers' certificate from `dir` (see [`crate::build::tls`]'s
/// file names); the reason, on one line, when the files cannot be read or used.
pub fn servers_client(dir: &Path, timeout: Duration) -> Result<AdminClient, String> {
    use crate::build::tls::{CA_KEY, KEY_STORE_KEY};
    client_from_files(&dir.join(CA_KEY), &dir.join(KEY_STORE_KEY), timeout)
}

/// The client that trusts the CA in `ca` and shows the certificate and key of `key_store` (PEM,
/// the key then the certificate, as ZooKeeper's PEM key store reads it).
pub fn client_from_files(
    ca: &Path,
    key_store: &Path,
    timeout: Duration,
) -> Result<AdminClient, String> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let key_store_pem = read(key_store)?;
    let tls = crate::http::AdminTls {
        ca_certificate: read(ca)?,
        certificate: key_store_pem.clone(),
        key: key_store_pem,
    };
    AdminClient::with_tls(timeout, &tls).map_err(|e| format!("{}: {e}", key_store.display()))
}

/// What a server said, on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decides a probe from the `srvr` answer of the AdminServer at `url`.
pub fn verdict(kind: Kind, url: &str, answer: &Result<SrvrAnswer, AdminError>) -> Verdict {
    let (pass, line) = match (kind, answer) {
        (_, Ok(SrvrAnswer::Serving(stats))) => {
            let word = if kind == Kind::Ready { "ready" } else { "live" };
            let zxid = zxid_hex(stats.last_zxid);
            (true, format!("{word}: {}, zxid {zxid}", stats.mode))
        }
        (Kind::Ready, Ok(SrvrAnswer::NotServing(why))) => {
            (false, format!("not ready: {}", one_line(why)))
        }
        (Kind::Live, Ok(SrvrAnswer::NotServing(why))) => (
            true,
            format!("live: answering, not serving: {}", one_line(why)),
        ),
        (Kind::Ready, Err(AdminError::Unexpected(why))) => (
            false,
            format!("not ready: unexpected answer: {}", one_line(why)),
        ),
        (Kind::Live, Err(AdminError::Unexpected(why))) => (
            true,
            format!("live: answering, unexpectedly: {}", one_line(why)),
        ),
        (_, Err(AdminError::Unreachable(why))) => {
            let word = if kind == Kind::Ready {
                "not ready"
            } else {
                "not live"
            };
            (false, format!("{word}: {} ({url})", one_line(why)))
        }
    };
    Verdict { pass, line }
}

/// Runs a probe against this pod's AdminServer.
pub async fn run(which: &Which) -> Verdict {
    let (kind, args) = match which {
        Which::Ready(args) => (Kind::Ready, args),
        Which::Live(args) => (Kind::Live, args),
    };
    let url = match &args.admin_url {
        Some(url) => url.clone(),
        None => {
            let bind = std::env::var(ENV_BIND_ADDRESS).ok();
            default_admin_url(
                bind.as_deref().filter(|a| !a.is_empty()),
                args.tls_dir.is_some(),
            )
        }
    };
    let client = match &args.tls_dir {
        None => AdminClient::new(args.timeout),
        Some(dir) => match servers_client(dir, args.timeout) {
            Ok(client) => client,
            Err(why) => {
                let error = AdminError::Unreachable(format!("no TLS client: {why}"));
                return verdict(kind, &url, &Err(error));
            }
        },
    };
    let answer = client.srvr(&url).await;
    verdict(kind, &url, &answer)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::quorum::admin::{ServerMode, ServerStats};

    const URL: &str = "http://127.0.0.1:8080";
    const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

    fn serving(mode: ServerMode) -> Result<SrvrAnswer, AdminError> {
        Ok(SrvrAnswer::Serving(ServerStats {
            mode,
            last_zxid: 0x1_0000_0003,
            version: None,
            clients: Default::default(),
        }))
    }

    #[test]
    fn verdicts() {
        let not_serving = Ok(SrvrAnswer::NotServing(NOT_SERVING.into()));
        let refused = Err(AdminError::Unreachable("connection refused".into()));
        let timed_out = Err(AdminError::Unreachable("timed out".into()));
        let odd = Err(AdminError::Unexpected("HTTP 404 Not Found from x".into()));
        let cases = [
            (
                Kind::Ready,
                serving(ServerMode::Follower),
                true,
                "ready: follower, zxid 0x100000003",
            ),
            (
                Kind::Ready,
                serving(ServerMode::Leader),
                true,
                "ready: leader, zxid 0x100000003",
            ),
            (
                Kind::Ready,
                serving(ServerMode::Standalone),
                true,
                "ready: standalone, zxid 0x100000003",
            ),
            (
                Kind::Ready,
                serving(ServerMode::Observer),
                true,
                "ready: observer, zxid 0x100000003",
            ),
            (
                Kind::Ready,
                not_serving.clone(),
                false,
                "not ready: This ZooKeeper instance is not currently serving requests",
            ),
            (
                Kind::Ready,
                refused.clone(),
                false,
                "not ready: connection refused (http://127.0.0.1:8080)",
            ),
            (
                Kind::Ready,
                odd.clone(),
                false,
                "not ready: unexpected answer: HTTP 404 Not Found from x",
            ),
            (
                Kind::Live,
                serving(ServerMode::Leader),
                true,
                "live: leader, zxid 0x100000003",
            ),
            (
                Kind::Live,
                not_serving,
                true,
                "live: answering, not serving: This ZooKeeper instance is not currently serving requests",
            ),
            (
                Kind::Live,
                odd,
                true,
                "live: answering, unexpectedly: HTTP 404 Not Found from x",
            ),
            (
                Kind::Live,
                refused,
                false,
                "not live: connection refused (http://127.0.0.1:8080)",
            ),
            (
                Kind::Live,
                timed_out,
                false,
                "not live: timed out (http://127.0.0.1:8080)",
            ),
        ];
        for (kind, answer, pass, line) in cases {
            let verdict = verdict(kind, URL, &answer);
            assert_eq!(verdict.line, line);
            assert_eq!(verdict.pass, pass, "{line}");
            assert_eq!(
                verdict.exit_code(),
                if pass { EXIT_PASS } else { EXIT_FAIL }
            );
        }
    }

    #[test]
    fn a_verdict_is_one_line() {
        let answer = Ok(SrvrAnswer::NotServing("first\nsecond\r\n third".into()));
        assert_eq!(
            verdict(Kind::Ready, URL, &answer).to_string(),
            "not ready: first second third"
        );
    }

    #[test]
    fn admin_url_follows_the_bind_address() {
        assert_eq!(default_admin_url(None, false), "http://127.0.0.1:8080");
        assert_eq!(default_admin_url(None, true), "https://127.0.0.1:8080");
        assert_eq!(
            default_admin_url(Some("127.3.4.5"), false),
            "http://127.3.4.5:8080"
        );
        assert_eq!(
            default_admin_url(Some("fd00::5"), false),
            "http://[fd00::5]:8080"
        );
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(parse_timeout("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_timeout("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "soon", "NaN", "inf"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_silent_admin_server_fails_within_the_timeout() {
        // Accepts connections (the kernel completes the handshake) but never answers, like a
        // frozen JVM.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let which = Which::Live(Args {
            admin_url: Some(url.clone()),
            tls_dir: None,
            timeout: Duration::from_millis(300),
        });
        let started = Instant::now();
        let verdict = run(&which).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(verdict.line, format!("not live: timed out ({url})"));
        assert!(!verdict.pass);
        drop(listener);
    }

    #[tokio::test]
    async fn missing_certificates_fail_the_probe_and_say_where() {
        let dir = tempfile::tempdir().unwrap();
        let which = Which::Ready(Args {
            admin_url: None,
            tls_dir: Some(dir.path().to_owned()),
            timeout: Duration::from_millis(300),
        });
        let verdict = run(&which).await;
        assert!(!verdict.pass);
        let expected = format!(
            "not ready: no TLS client: {}/keystore.pem: No such file or directory (os error 2) (https://127.0.0.1:8080)",
            dir.path().display()
        );
        assert_eq!(verdict.line, expected);
    }
}
