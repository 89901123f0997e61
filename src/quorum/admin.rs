//! Client of ZooKeeper's AdminServer (`http://<server>:8080/commands/<name>`, or `https://`
//! with a client certificate of the ensemble's CA when the servers run quorum TLS).
//!
//! The AdminServer is the one interface that tells whether a server is *in a quorum*: `srvr`
//! answers with the server's mode, or with an "error" when the server is not serving. The 4lw
//! `ruok` answers `imok` even without a quorum, so it is never used here.
//!
//! Answers are read into typed views that take each field leniently (unknown fields ignored,
//! numbers accepted as JSON numbers or strings, a field of another type taken as absent), and
//! every failure becomes an [`AdminError`]: nothing a server sends can panic.

use std::time::Duration;

use serde::de::{Deserialize, DeserializeOwned, Deserializer};
use serde_json::Value;

use crate::api::MemberState;

/// The role a serving server reports in `server_stats.server_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::EnumString, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum ServerMode {
    Leader,
    Follower,
    Observer,
    Standalone,
}

impl From<ServerMode> for MemberState {
    fn from(mode: ServerMode) -> Self {
        match mode {
            ServerMode::Leader => Self::Leader,
            ServerMode::Follower => Self::Follower,
            ServerMode::Observer => Self::Observer,
            ServerMode::Standalone => Self::Standalone,
        }
    }
}

/// What `srvr` says about a serving server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerStats {
    pub mode: ServerMode,
    /// `server_stats.last_processed_zxid`: epoch in the high 32 bits, counter in the low 32.
    pub last_zxid: u64,
    pub version: Option<String>,
    pub clients: ClientLoad,
}

/// What `srvr` says about a serving server's clients, for people reading the status: counters
/// since the server started (or `srst` reset them), not a rate. Nothing decides on them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientLoad {
    /// Request latency, `min/avg/max` in ms as ZooKeeper's own `stat` prints it (the average
    /// to 0.1 ms); None unless all three were answered.
    pub latency_ms: Option<String>,
    /// `num_alive_client_connections`.
    pub connections: Option<u64>,
}

impl ClientLoad {
    fn parse(server_stats: &Value) -> Self {
        let SrvrStats {
            min_latency: min,
            avg_latency,
            max_latency: max,
            num_alive_client_connections: connections,
            ..
        } = SrvrStats::read(server_stats);
        let avg = avg_latency.filter(|avg| avg.is_finite() && *avg >= 0.0);
        Self {
            latency_ms: match (min, avg, max) {
                (Some(min), Some(avg), Some(max)) => Some(format!("{min}/{avg:.1}/{max}")),
                _ => None,
            },
            connections,
        }
    }
}

/// The answer of `srvr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrvrAnswer {
    /// The server is part of a quorum (or standalone) and serves clients.
    Serving(ServerStats),
    /// The process answers but is not serving, with the server's own words
    /// (normally "This ZooKeeper instance is not currently serving requests").
    NotServing(String),
}

/// Selected fields of `mntr` (the leader adds `synced_followers` and friends).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct MonitorStats {
    #[serde(default, deserialize_with = "lenient")]
    pub server_state: Option<String>,
    #[serde(default, deserialize_with = "whole_number")]
    pub znode_count: Option<u64>,
    /// Voting members in the server's configuration (despite the name, not the majority).
    #[serde(default, deserialize_with = "whole_number")]
    pub quorum_size: Option<u64>,
    #[serde(default, deserialize_with = "whole_number")]
    pub synced_followers: Option<u64>,
    /// Of the synced followers, those that do not vote (servers the leader's membership does
    /// not list as voters: a removed voter still running, a server joining as a participant).
    #[serde(default, deserialize_with = "whole_number")]
    pub synced_non_voting_followers: Option<u64>,
    #[serde(default, deserialize_with = "whole_number")]
    pub outstanding_requests: Option<u64>,
}

impl MonitorStats {
    /// Synced followers that vote: what a roll may count on. `synced_followers` counts
    /// non-voting followers too, which would let a roll take a voter that has not synced.
    pub fn synced_voting_followers(&self) -> Option<u64> {
        let non_voting = self.synced_non_voting_followers.unwrap_or(0);
        Some(self.synced_followers?.saturating_sub(non_voting))
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// No HTTP answer: connection refused or reset, or the timeout elapsed.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// An HTTP answer that is not the AdminServer JSON we expect.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// Asks AdminServers for `srvr` and `mntr`, each request bounded by one timeout.
#[derive(Clone, Debug)]
pub struct AdminClient {
    http: reqwest::Client,
}

impl AdminClient {
    /// `timeout` bounds each whole request, connect included. Servers are always asked
    /// directly: an `HTTP_PROXY` meant for the operator's other traffic must not carry (or
    /// break) requests to pod IPs.
    pub fn new(timeout: Duration) -> Self {
        Self::from_builder(crate::http::builder(), timeout)
            .expect("an HTTP client without proxies always builds")
    }

    /// A client of the AdminServers that take only TLS clients with a certificate of their
    /// ensemble's CA (`https://` bases): shows `tls`'s certificate, trusts its CA alone.
    pub fn with_tls(timeout: Duration, tls: &crate::http::AdminTls) -> Result<Self, String> {
        Self::from_builder(crate::http::admin_builder(tls)?, timeout)
    }

    fn from_builder(builder: reqwest::ClientBuilder, timeout: Duration) -> Result<Self, String> {
        let http = builder
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| describe_request_error(&e))?;
        Ok(Self { http })
    }

    /// `GET <base>/commands/srvr`. `base` is e.g. `http://10.0.0.7:8080`.
    pub async fn srvr(&self, base: &str) -> Result<SrvrAnswer, AdminError> {
        parse_srvr(&self.command(base, "srvr").await?)
    }

    /// `GET <base>/commands/mntr`.
    pub async fn mntr(&self, base: &str) -> Result<MonitorStats, AdminError> {
        parse_mntr(&self.command(base, "mntr").await?)
    }

    async fn command(&self, base: &str, name: &str) -> Result<Value, AdminError> {
        let url = format!("{}/commands/{name}", base.trim_end_matches('/'));
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| AdminError::Unreachable(describe_request_error(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| AdminError::Unreachable(describe_request_error(&e)))?;
        if !status.is_success() {
            return Err(AdminError::Unexpected(format!("HTTP {status} from {url}")));
        }
        serde_json::from_slice(&body)
            .map_err(|e| AdminError::Unexpected(format!("{name} answered invalid JSON: {e}")))
    }
}

fn describe_request_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection refused".to_string()
    } else {
        // reqwest's Display omits the cause ("error sending request"); the source says why.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        text
    }
}

/// The fields of a `srvr` answer that are read.
#[derive(serde::Deserialize)]
struct Srvr {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default, deserialize_with = "lenient")]
    version: Option<String>,
    #[serde(default)]
    server_stats: Option<Value>,
}

/// The fields of `srvr`'s `server_stats` that are read.
#[derive(Default, serde::Deserialize)]
struct SrvrStats {
    #[serde(default, deserialize_with = "lenient")]
    server_state: Option<String>,
    #[serde(default, deserialize_with = "whole_number")]
    last_processed_zxid: Option<u64>,
    #[serde(default, deserialize_with = "whole_number")]
    min_latency: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    avg_latency: Option<f64>,
    #[serde(default, deserialize_with = "whole_number")]
    max_latency: Option<u64>,
    #[serde(default, deserialize_with = "whole_number")]
    num_alive_client_connections: Option<u64>,
}

impl SrvrStats {
    /// Reads `server_stats`; one that is not an object has none of the fields.
    fn read(server_stats: &Value) -> Self {
        Self::deserialize(server_stats).unwrap_or_default()
    }
}

/// A `mntr` answer: its error, or the selected fields.
#[derive(serde::Deserialize)]
struct Mntr {
    #[serde(default)]
    error: Option<Value>,
    #[serde(flatten)]
    stats: MonitorStats,
}

/// A field of type `T`; `None` when it is null or of another type.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    field: D,
) -> Result<Option<T>, D::Error> {
    Ok(T::deserialize(Value::deserialize(field)?).ok())
}

/// A number as AdminServers write one: an integer, a float (`mntr` answers `2.0` when the
/// Prometheus metrics provider is on) or a string.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Number {
    Integer(u64),
    Float(f64),
    Text(String),
}

/// A non-negative integer, written as an integer, a whole float or a string; `None` for
/// anything else.
fn whole_number<'de, D: Deserializer<'de>>(field: D) -> Result<Option<u64>, D::Error> {
    Ok(match lenient(field)? {
        Some(Number::Integer(n)) => Some(n),
        Some(Number::Float(f)) => {
            (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64)
                .then_some(f as u64)
        }
        Some(Number::Text(s)) => s.parse().ok(),
        None => None,
    })
}

/// An answer's fields as `T`; an answer that is not a JSON object is unexpected.
fn read<T: DeserializeOwned>(answer: &Value, command: &str) -> Result<T, AdminError> {
    if !answer.is_object() {
        return Err(AdminError::Unexpected(format!(
            "{command} answer is not a JSON object"
        )));
    }
    T::deserialize(answer).map_err(|e| AdminError::Unexpected(format!("{command} answer: {e}")))
}

/// The text of a non-null `error` field.
fn error_text(error: Option<Value>) -> Option<String> {
    match error? {
        Value::String(text) => Some(text),
        other => Some(other.to_string()),
    }
}

/// Interprets a `srvr` answer.
pub fn parse_srvr(answer: &Value) -> Result<SrvrAnswer, AdminError> {
    let srvr: Srvr = read(answer, "srvr")?;
    if let Some(error) = error_text(srvr.error) {
        return Ok(SrvrAnswer::NotServing(error));
    }
    let stats = srvr
        .server_stats
        .ok_or_else(|| AdminError::Unexpected("srvr answer has no server_stats".into()))?;
    let SrvrStats {
        server_state,
        last_processed_zxid,
        ..
    } = SrvrStats::read(&stats);
    let state = server_state
        .ok_or_else(|| AdminError::Unexpected("srvr answer has no server_state".into()))?;
    let mode = state
        .parse()
        .map_err(|_| AdminError::Unexpected(format!("unknown server_state {state:?}")))?;
    let last_zxid = last_processed_zxid
        .ok_or_else(|| AdminError::Unexpected("srvr answer has no last_processed_zxid".into()))?;
    Ok(SrvrAnswer::Serving(ServerStats {
        mode,
        last_zxid,
        version: srvr.version,
        clients: ClientLoad::parse(&stats),
    }))
}

/// Interprets a `mntr` answer. A not-serving server answers `mntr` with an error too.
pub fn parse_mntr(answer: &Value) -> Result<MonitorStats, AdminError> {
    let mntr: Mntr = read(answer, "mntr")?;
    match error_text(mntr.error) {
        Some(error) => Err(AdminError::Unexpected(format!("mntr: {error}"))),
        None => Ok(mntr.stats),
    }
}

/// The epoch (high 32 bits) of a zxid.
pub fn zxid_epoch(zxid: u64) -> u32 {
    (zxid >> 32) as u32
}

/// A zxid the way ZooKeeper's own tools print it: `0x` and lower-case hex.
pub fn zxid_hex(zxid: u64) -> String {
    format!("{zxid:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serving_follower() {
        let answer = json!({
            "version": "3.9.6-1", "read_only": false,
            "server_stats": {"server_state": "follower", "last_processed_zxid": 4294967299u64, "uptime": 10,
                "min_latency": 0, "avg_latency": 0.4286, "max_latency": 12, "num_alive_client_connections": 3},
            "node_count": 5, "command": "srvr", "error": null
        });
        assert_eq!(
            parse_srvr(&answer),
            Ok(SrvrAnswer::Serving(ServerStats {
                mode: ServerMode::Follower,
                last_zxid: 0x1_0000_0003,
                version: Some("3.9.6-1".into()),
                clients: ClientLoad {
                    latency_ms: Some("0/0.4/12".into()),
                    connections: Some(3),
                },
            }))
        );
    }

    #[test]
    fn client_load_is_optional_and_never_garbage() {
        let load = |stats: Value| ClientLoad::parse(&stats);
        assert_eq!(load(json!({})), ClientLoad::default());
        // A part missing or odd: no latency rather than a wrong one.
        for stats in [
            json!({"min_latency": 0, "max_latency": 3}),
            json!({"min_latency": 0, "avg_latency": -1.0, "max_latency": 3}),
            json!({"min_latency": "x", "avg_latency": 1.0, "max_latency": 3}),
        ] {
            assert_eq!(load(stats.clone()).latency_ms, None, "{stats}");
        }
        let floats = load(
            json!({"min_latency": 1.0, "avg_latency": 2, "max_latency": 7.0,
            "num_alive_client_connections": 0}),
        );
        assert_eq!(floats.latency_ms.as_deref(), Some("1/2.0/7"));
        assert_eq!(floats.connections, Some(0));
    }

    #[test]
    fn every_mode_is_recognised() {
        for (state, mode) in [
            ("leader", ServerMode::Leader),
            ("follower", ServerMode::Follower),
            ("observer", ServerMode::Observer),
            ("standalone", ServerMode::Standalone),
        ] {
            let answer =
                json!({"server_stats": {"server_state": state, "last_processed_zxid": "7"}});
            match parse_srvr(&answer) {
                Ok(SrvrAnswer::Serving(stats)) => {
                    assert_eq!(stats.mode, mode);
                    assert_eq!(stats.last_zxid, 7);
                }
                other => panic!("{state}: {other:?}"),
            }
        }
    }

    #[test]
    fn not_serving_answer_carries_the_servers_words() {
        let answer = json!({"command": "srvr",
            "error": "This ZooKeeper instance is not currently serving requests"});
        assert_eq!(
            parse_srvr(&answer),
            Ok(SrvrAnswer::NotServing(
                "This ZooKeeper instance is not currently serving requests".into()
            ))
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for answer in [
            json!([]),
            json!("imok"),
            json!({}),
            json!({"server_stats": {}}),
            json!({"server_stats": {"server_state": "looking", "last_processed_zxid": 1}}),
            json!({"server_stats": {"server_state": "leader"}}),
            json!({"server_stats": {"server_state": "leader", "last_processed_zxid": -1}}),
            json!({"server_stats": {"server_state": 3, "last_processed_zxid": 1}}),
        ] {
            assert!(
                matches!(parse_srvr(&answer), Err(AdminError::Unexpected(_))),
                "{answer}"
            );
        }
    }

    #[test]
    fn mntr_fields() {
        let answer = json!({"server_state": "leader", "znode_count": 12, "quorum_size": 3,
            "synced_followers": 3, "synced_non_voting_followers": 1, "outstanding_requests": 0,
            "command": "mntr", "error": null});
        let stats = parse_mntr(&answer).unwrap();
        assert_eq!(
            stats,
            MonitorStats {
                server_state: Some("leader".into()),
                znode_count: Some(12),
                quorum_size: Some(3),
                synced_followers: Some(3),
                synced_non_voting_followers: Some(1),
                outstanding_requests: Some(0),
            }
        );
        // A roll counts only the voters among the synced followers.
        assert_eq!(stats.synced_voting_followers(), Some(2));
        assert!(parse_mntr(&json!({"error": "not serving"})).is_err());
    }

    #[test]
    fn mntr_numbers_as_floats() {
        // ZooKeeper 3.9 with the Prometheus metrics provider answers every number as a float.
        let answer = json!({"server_state": "leader", "znode_count": 5.0, "quorum_size": 3.0,
            "synced_followers": 2.0, "outstanding_requests": 0.0, "command": "monitor", "error": null});
        let stats = parse_mntr(&answer).unwrap();
        assert_eq!(
            (stats.znode_count, stats.quorum_size, stats.synced_followers),
            (Some(5), Some(3), Some(2))
        );
        for odd in [json!(-1.0), json!(2.5), json!("NaN"), json!(1e300)] {
            let stats = parse_mntr(&json!({"synced_followers": odd})).unwrap();
            assert_eq!(stats.synced_followers, None, "{odd}");
        }
    }

    #[test]
    fn zxid_parts() {
        assert_eq!(zxid_epoch(0x0000_0005_0000_0010), 5);
        assert_eq!(zxid_hex(0x0000_0005_0000_0010), "0x500000010");
        assert_eq!(zxid_hex(0), "0x0");
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        // Bind then drop a listener so the port is known to be closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = AdminClient::new(Duration::from_millis(500));
        let result = client.srvr(&format!("http://127.0.0.1:{port}")).await;
        assert!(
            matches!(result, Err(AdminError::Unreachable(_))),
            "{result:?}"
        );
    }
}
