//! Client of ZooKeeper's AdminServer (`http://<server>:8080/commands/<name>`).
//!
//! The AdminServer is the one interface that tells whether a server is *in a quorum*: `srvr`
//! answers with the server's mode, or with an "error" when the server is not serving. The 4lw
//! `ruok` answers `imok` even without a quorum, so it is never used here.
//!
//! Answers are parsed leniently (unknown fields ignored, numbers accepted as JSON numbers or
//! strings) and every failure becomes an [`AdminError`]: nothing a server sends can panic.

use std::time::Duration;

use serde_json::Value;

/// The role a serving server reports in `server_stats.server_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMode {
    Leader,
    Follower,
    Observer,
    Standalone,
}

impl ServerMode {
    fn parse(state: &str) -> Option<Self> {
        match state {
            "leader" => Some(Self::Leader),
            "follower" => Some(Self::Follower),
            "observer" => Some(Self::Observer),
            "standalone" => Some(Self::Standalone),
            _ => None,
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
        let number = |key: &str| server_stats.get(key);
        let min = number("min_latency").and_then(as_u64);
        let avg = number("avg_latency")
            .and_then(Value::as_f64)
            .filter(|avg| avg.is_finite() && *avg >= 0.0);
        let max = number("max_latency").and_then(as_u64);
        Self {
            latency_ms: match (min, avg, max) {
                (Some(min), Some(avg), Some(max)) => Some(format!("{min}/{avg:.1}/{max}")),
                _ => None,
            },
            connections: number("num_alive_client_connections").and_then(as_u64),
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorStats {
    pub server_state: Option<String>,
    pub znode_count: Option<u64>,
    /// Voting members in the server's configuration (despite the name, not the majority).
    pub quorum_size: Option<u64>,
    pub synced_followers: Option<u64>,
    /// Of the synced followers, those that do not vote (servers the leader's membership does
    /// not list as voters: a removed voter still running, a server joining as a participant).
    pub synced_non_voting_followers: Option<u64>,
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
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(1)
            .build()
            .expect("an HTTP client without TLS or proxies always builds");
        Self { http }
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

/// The non-null `error` field of an AdminServer answer, if any.
fn error_field(answer: &Value) -> Option<String> {
    match answer.get("error") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// A non-negative integer, written as an integer, a whole float (`mntr` answers `2.0` when
/// the Prometheus metrics provider is on) or a string.
fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Interprets a `srvr` answer.
pub fn parse_srvr(answer: &Value) -> Result<SrvrAnswer, AdminError> {
    if !answer.is_object() {
        return Err(AdminError::Unexpected(
            "srvr answer is not a JSON object".into(),
        ));
    }
    if let Some(error) = error_field(answer) {
        return Ok(SrvrAnswer::NotServing(error));
    }
    let stats = answer
        .get("server_stats")
        .ok_or_else(|| AdminError::Unexpected("srvr answer has no server_stats".into()))?;
    let state = stats
        .get("server_state")
        .and_then(Value::as_str)
        .ok_or_else(|| AdminError::Unexpected("srvr answer has no server_state".into()))?;
    let mode = ServerMode::parse(state)
        .ok_or_else(|| AdminError::Unexpected(format!("unknown server_state {state:?}")))?;
    let last_zxid = stats
        .get("last_processed_zxid")
        .and_then(as_u64)
        .ok_or_else(|| AdminError::Unexpected("srvr answer has no last_processed_zxid".into()))?;
    Ok(SrvrAnswer::Serving(ServerStats {
        mode,
        last_zxid,
        version: answer
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_owned),
        clients: ClientLoad::parse(stats),
    }))
}

/// Interprets a `mntr` answer. A not-serving server answers `mntr` with an error too.
pub fn parse_mntr(answer: &Value) -> Result<MonitorStats, AdminError> {
    if !answer.is_object() {
        return Err(AdminError::Unexpected(
            "mntr answer is not a JSON object".into(),
        ));
    }
    if let Some(error) = error_field(answer) {
        return Err(AdminError::Unexpected(format!("mntr: {error}")));
    }
    let number = |key: &str| answer.get(key).and_then(as_u64);
    Ok(MonitorStats {
        server_state: answer
            .get("server_state")
            .and_then(Value::as_str)
            .map(str::to_owned),
        znode_count: number("znode_count"),
        quorum_size: number("quorum_size"),
        synced_followers: number("synced_followers"),
        synced_non_voting_followers: number("synced_non_voting_followers"),
        outstanding_requests: number("outstanding_requests"),
    })
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
