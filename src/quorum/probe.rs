//! One probe round: ask every voter's AdminServer `srvr` at once and write down what each said.
//!
//! This is the only IO of the status pipeline. It classifies, it does not decide: turning a
//! round of [`Observation`]s into a phase is [`super::rule`]'s job, so that the decision can be
//! tested without servers and this shell stays thin.
//!
//! A round costs one `srvr` request per voter that has an IP, all sent concurrently and each
//! bounded by [`ProbeSettings::timeout`], so a round takes about as long as the slowest voter
//! (at most the timeout). Only a member that says it leads is asked `mntr` as well (in the
//! same concurrent branch), for what only the leader knows: how many followers are in sync,
//! and the data size. A failed `mntr` never changes the member's classification.
//!
//! A member that keeps failing is asked less often ([`super::backoff`], when
//! [`ProbeSettings::backoff_max`] is set): its last failure stands in between.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::Myid;
use super::admin::{AdminClient, AdminError, ClientLoad, MonitorStats, ServerMode, SrvrAnswer};
use super::backoff::Backoff;

/// One voter to probe, as the controller knows it from the StatefulSet and its pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    pub myid: Myid,
    pub pod: String,
    /// The pod's IP; `None` when there is no pod or it has no IP yet.
    pub ip: Option<IpAddr>,
    /// The pod's resource version: a member whose pod changed is asked at once, even if it
    /// was being left alone for failing (see [`super::backoff`]).
    pub pod_version: Option<String>,
    /// The pod's AdminServer takes only HTTPS, from a client with a certificate of the
    /// ensemble's CA (the pod's quorum TLS stage says so).
    pub admin_tls: bool,
}

/// How a round probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Bounds each request, connect included. Default 1 s: an AdminServer on a healthy pod
    /// answers in milliseconds, and a round must finish well inside the probe interval.
    pub timeout: Duration,
    /// The AdminServer port (`admin.serverPort`). Default 8080.
    pub admin_port: u16,
    /// Ask the leader `mntr` too (synced followers, znode count). Default true.
    pub leader_details: bool,
    /// The longest a member that keeps failing is left alone between two probes. Default
    /// zero: every member is asked every round.
    pub backoff_max: Duration,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            admin_port: 8080,
            leader_details: true,
            backoff_max: Duration::ZERO,
        }
    }
}

/// What one voter's AdminServer (or the absence of one) said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `srvr` answered with a mode: the server serves clients.
    Serving {
        mode: ServerMode,
        /// `last_processed_zxid`.
        zxid: u64,
        /// The leader's `mntr`, when the member leads and [`ProbeSettings::leader_details`]
        /// is on and `mntr` answered.
        leader_details: Option<MonitorStats>,
        /// Its clients' latency and connections, from the same `srvr`.
        clients: ClientLoad,
    },
    /// The process answered but is not in a quorum, in the server's own words.
    NotServing(String),
    /// Refused, timed out, or an answer that could not be understood; the reason.
    Unreachable(String),
    /// Nothing to ask: no pod, no pod IP, or no client its AdminServer would answer (the
    /// operator's certificate for a TLS-only AdminServer, not issued yet). Never a reason to
    /// restart the member.
    Missing(String),
}

/// What one voter said, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub myid: Myid,
    pub pod: String,
    /// When the answer (or the failure) arrived.
    pub at: Timestamp,
    pub answer: Answer,
}

/// Every voter's observation from one round, with what the round cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRound {
    /// One per voter, in the order the voters were given.
    pub observations: Vec<Observation>,
    /// HTTP requests sent (`srvr` per voter with an IP, plus `mntr` per leader).
    pub requests: usize,
    /// Wall time of the whole round.
    pub elapsed: Duration,
}

/// What the probes cost, for the operator's metrics: requests sent, and requests waiting for
/// an answer now.
#[derive(Clone, Debug, Default)]
pub struct ProbeTraffic {
    pub requests: Counter,
    pub in_flight: Gauge,
}

/// Counts one request in flight while it lives.
struct InFlight<'a>(&'a ProbeTraffic);

impl<'a> InFlight<'a> {
    fn start(traffic: &'a ProbeTraffic) -> Self {
        traffic.requests.inc();
        traffic.in_flight.inc();
        Self(traffic)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Asks voters' AdminServers what they are doing. Cheap to clone (clones share the connection
/// pool and the backoff); keeps idle connections to the servers between rounds, so a
/// steady-state round costs no TCP handshakes.
///
/// Intended caller: the controller's status loop, once per probe interval per ensemble.
#[derive(Clone, Debug)]
pub struct Prober {
    client: AdminClient,
    /// The client of the AdminServers that take only TLS, for one ensemble ([`Self::with_tls`]).
    tls_client: Option<AdminClient>,
    settings: ProbeSettings,
    backoff: Arc<Mutex<Backoff>>,
    traffic: ProbeTraffic,
}

impl Prober {
    pub fn new(settings: ProbeSettings) -> Self {
        Self::counted(settings, ProbeTraffic::default())
    }

    /// A prober that counts its requests in `traffic`.
    pub fn counted(settings: ProbeSettings, traffic: ProbeTraffic) -> Self {
        Self {
            client: AdminClient::new(settings.timeout),
            tls_client: None,
            backoff: Arc::new(Mutex::new(Backoff::new(
                settings.backoff_max,
                Instant::now(),
            ))),
            settings,
            traffic,
        }
    }

    /// This prober, asking the voters whose AdminServer takes only TLS with `tls_client` (see
    /// [`AdminClient::with_tls`]): one ensemble's, whose CA only its servers trust. Shares the
    /// connection pool, the backoff and the counters.
    pub fn with_tls(&self, tls_client: Option<AdminClient>) -> Self {
        Self {
            tls_client,
            ..self.clone()
        }
    }

    /// How long until one of `voters` is to be asked again (zero: now); `None` when none has
    /// an address, so that there is nothing to ask until a pod changes.
    pub fn due_in(&self, voters: &[Voter]) -> Option<Duration> {
        self.backoff
            .lock()
            .expect("probe backoff lock")
            .due_in(voters, Instant::now())
    }

    /// Probes every voter concurrently, except those left alone for failing (their last
    /// failure stands). Never fails: every problem is an [`Answer`].
    pub async fn probe(&self, voters: &[Voter]) -> ProbeRound {
        self.round(voters, true).await
    }

    /// Probes every voter now, whatever the backoff says: before a disruption decided on
    /// their answers.
    pub async fn probe_now(&self, voters: &[Voter]) -> ProbeRound {
        self.round(voters, false).await
    }

    async fn round(&self, voters: &[Voter], backing_off: bool) -> ProbeRound {
        let started = Instant::now();
        let answers =
            futures::future::join_all(voters.iter().map(|voter| self.ask(voter, backing_off)))
                .await;
        let mut requests = 0;
        let observations = voters
            .iter()
            .zip(answers)
            .map(|(voter, (answer, sent, at))| {
                requests += sent;
                Observation {
                    myid: voter.myid,
                    pod: voter.pod.clone(),
                    at,
                    answer,
                }
            })
            .collect();
        ProbeRound {
            observations,
            requests,
            elapsed: started.elapsed(),
        }
    }

    /// One voter's answer, unless `backing_off` and it is being left alone (then its last
    /// failure stands).
    async fn ask(&self, voter: &Voter, backing_off: bool) -> (Answer, usize, Timestamp) {
        let standing = self
            .backoff
            .lock()
            .expect("probe backoff lock")
            .standing(voter, Instant::now())
            .filter(|_| backing_off);
        if let Some(answer) = standing {
            return (answer, 0, Timestamp::now());
        }
        let asked = self.probe_voter(voter).await;
        self.backoff
            .lock()
            .expect("probe backoff lock")
            .record(voter, &asked.0, Instant::now());
        asked
    }

    /// One voter's answer, the number of requests it took, and when it was taken.
    async fn probe_voter(&self, voter: &Voter) -> (Answer, usize, Timestamp) {
        let Some(ip) = voter.ip else {
            let reason = format!(
                "pod {} has no IP (not created, or not started yet)",
                voter.pod
            );
            return (Answer::Missing(reason), 0, Timestamp::now());
        };
        let (client, base) = if voter.admin_tls {
            let Some(client) = &self.tls_client else {
                let reason = "its AdminServer takes only TLS clients with a certificate of the \
                              ensemble's CA, and the operator has none yet (it issues one when \
                              it reads the ensemble's TLS Secret)";
                return (Answer::Missing(reason.to_owned()), 0, Timestamp::now());
            };
            (client, admin_base("https", ip, self.settings.admin_port))
        } else {
            (
                &self.client,
                admin_base("http", ip, self.settings.admin_port),
            )
        };
        let srvr = {
            let _counted = InFlight::start(&self.traffic);
            client.srvr(&base).await
        };
        let (answer, requests) = match srvr {
            Ok(SrvrAnswer::Serving(stats)) => {
                let leads = stats.mode == ServerMode::Leader;
                let leader_details = if leads && self.settings.leader_details {
                    let _counted = InFlight::start(&self.traffic);
                    client.mntr(&base).await.ok()
                } else {
                    None
                };
                let requests = if leads && self.settings.leader_details {
                    2
                } else {
                    1
                };
                let answer = Answer::Serving {
                    mode: stats.mode,
                    zxid: stats.last_zxid,
                    leader_details,
                    clients: stats.clients,
                };
                (answer, requests)
            }
            Ok(SrvrAnswer::NotServing(message)) => (Answer::NotServing(message), 1),
            Err(AdminError::Unreachable(reason)) => (Answer::Unreachable(reason), 1),
            Err(AdminError::Unexpected(reason)) => (
                Answer::Unreachable(format!("unexpected answer: {reason}")),
                1,
            ),
        };
        (answer, requests, Timestamp::now())
    }
}

/// `<scheme>://<ip>:<port>`, with an IPv6 address in brackets.
fn admin_base(scheme: &str, ip: IpAddr, port: u16) -> String {
    format!("{scheme}://{}", SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    /// An AdminServer stand-in on a loopback port: `/commands/<name>` answers `body(name)`
    /// with 200 OK; `None` means never answer (a frozen server).
    async fn fake_admin_server(
        body: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> (IpAddr, u16) {
        use axum::extract::Path;
        let body = Arc::new(body);
        let app = axum::Router::new().route(
            "/commands/{name}",
            axum::routing::get(move |Path(name): Path<String>| {
                let body = body.clone();
                async move {
                    match body(&name) {
                        Some(text) => text,
                        None => std::future::pending().await,
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    fn srvr(state: &str, zxid: u64) -> String {
        format!(
            r#"{{"version":"3.9.6","server_stats":{{"server_state":"{state}","last_processed_zxid":{zxid}}},"command":"srvr","error":null}}"#
        )
    }

    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Each fake server needs its own port, so probe one voter per round here.
    async fn probe_one(port: u16, ip: Option<IpAddr>, timeout: Duration) -> (Answer, usize) {
        let prober = Prober::new(ProbeSettings {
            timeout,
            admin_port: port,
            ..ProbeSettings::default()
        });
        let voter = Voter {
            myid: crate::quorum::myid::id(1),
            pod: "zk-0".into(),
            ip,
            pod_version: None,
            admin_tls: false,
        };
        let round = prober.probe(std::slice::from_ref(&voter)).await;
        assert_eq!(round.observations.len(), 1);
        assert_eq!(round.observations[0].pod, "zk-0");
        (round.observations[0].answer.clone(), round.requests)
    }

    #[tokio::test]
    async fn a_follower_costs_one_request() {
        let (ip, port) = fake_admin_server(|command| match command {
            "srvr" => Some(srvr("follower", 0x2_0000_0005)),
            _ => Some(r#"{"error":"only srvr expected"}"#.into()),
        })
        .await;
        let (answer, requests) = probe_one(port, Some(ip), Duration::from_secs(1)).await;
        assert_eq!(
            answer,
            Answer::Serving {
                mode: ServerMode::Follower,
                zxid: 0x2_0000_0005,
                leader_details: None,
                clients: ClientLoad::default(),
            }
        );
        assert_eq!(requests, 1);
    }

    #[tokio::test]
    async fn the_leader_is_asked_mntr_too() {
        let (ip, port) = fake_admin_server(|command| match command {
            "srvr" => Some(srvr("leader", 7)),
            "mntr" => Some(
                r#"{"server_state":"leader","znode_count":9,"quorum_size":2,"synced_followers":2,"error":null}"#
                    .into(),
            ),
            _ => None,
        })
        .await;
        let (answer, requests) = probe_one(port, Some(ip), Duration::from_secs(1)).await;
        let Answer::Serving {
            mode: ServerMode::Leader,
            zxid: 7,
            leader_details: Some(details),
            ..
        } = answer
        else {
            panic!("{answer:?}");
        };
        assert_eq!(details.synced_followers, Some(2));
        assert_eq!(details.znode_count, Some(9));
        assert_eq!(requests, 2);
    }

    #[tokio::test]
    async fn a_failed_mntr_keeps_the_leader_a_leader() {
        let (ip, port) = fake_admin_server(|command| match command {
            "srvr" => Some(srvr("leader", 7)),
            _ => Some("not json".into()),
        })
        .await;
        let (answer, _) = probe_one(port, Some(ip), Duration::from_secs(1)).await;
        assert!(
            matches!(
                answer,
                Answer::Serving {
                    mode: ServerMode::Leader,
                    leader_details: None,
                    ..
                }
            ),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn not_serving_keeps_the_servers_words() {
        let (ip, port) = fake_admin_server(|_| {
            Some(r#"{"command":"srvr","error":"This ZooKeeper instance is not currently serving requests"}"#.into())
        })
        .await;
        let (answer, _) = probe_one(port, Some(ip), Duration::from_secs(1)).await;
        assert_eq!(
            answer,
            Answer::NotServing("This ZooKeeper instance is not currently serving requests".into())
        );
    }

    #[tokio::test]
    async fn refused_timed_out_and_garbled_are_unreachable_with_the_reason() {
        let (answer, _) = probe_one(
            closed_port(),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(answer, Answer::Unreachable("connection refused".into()));

        let (ip, port) = fake_admin_server(|_| None).await;
        let (answer, _) = probe_one(port, Some(ip), Duration::from_millis(300)).await;
        assert_eq!(answer, Answer::Unreachable("timed out".into()));

        let (ip, port) = fake_admin_server(|_| Some("imok".into())).await;
        let (answer, _) = probe_one(port, Some(ip), Duration::from_secs(1)).await;
        let Answer::Unreachable(reason) = answer else {
            panic!("{answer:?}");
        };
        assert!(reason.starts_with("unexpected answer: "), "{reason}");
    }

    #[tokio::test]
    async fn no_ip_is_missing_and_costs_nothing() {
        let (answer, requests) = probe_one(8080, None, Duration::from_secs(1)).await;
        assert!(
            matches!(answer, Answer::Missing(ref why) if why.contains("zk-0")),
            "{answer:?}"
        );
        assert_eq!(requests, 0);
    }

    #[test]
    fn admin_urls() {
        assert_eq!(
            admin_base("http", "10.0.0.7".parse().unwrap(), 8080),
            "http://10.0.0.7:8080"
        );
        assert_eq!(
            admin_base("https", "fd00::7".parse().unwrap(), 8080),
            "https://[fd00::7]:8080"
        );
    }

    #[tokio::test]
    async fn voters_are_probed_concurrently_and_kept_in_order() {
        // Six frozen voters (one fake server stands in for all of them): one after the other
        // they would take six timeouts, 3 s; concurrently about one.
        let (ip, port) = fake_admin_server(|_| None).await;
        let prober = Prober::new(ProbeSettings {
            timeout: Duration::from_millis(500),
            admin_port: port,
            ..ProbeSettings::default()
        });
        let voters: Vec<Voter> = Myid::up_to(6)
            .map(|myid| Voter {
                myid,
                pod: format!("zk-{}", myid.ordinal()),
                ip: Some(ip),
                pod_version: None,
                admin_tls: false,
            })
            .collect();
        let round = prober.probe(&voters).await;
        assert!(
            round.elapsed < Duration::from_millis(2500),
            "{:?}",
            round.elapsed
        );
        assert_eq!(round.requests, 6);
        let myids: Vec<i32> = round.observations.iter().map(|o| o.myid.into()).collect();
        assert_eq!(myids, [1, 2, 3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn probes_are_counted_while_in_flight_and_after() {
        let (ip, port) = fake_admin_server(|_| None).await;
        let traffic = ProbeTraffic::default();
        let prober = Prober::counted(
            ProbeSettings {
                timeout: Duration::from_millis(100),
                admin_port: port,
                backoff_max: Duration::from_secs(10),
                ..ProbeSettings::default()
            },
            traffic.clone(),
        );
        let voter = Voter {
            myid: crate::quorum::myid::id(1),
            pod: "zk-0".into(),
            ip: Some(ip),
            pod_version: Some("7".into()),
            admin_tls: false,
        };
        let voters = std::slice::from_ref(&voter);
        let round = {
            let round = prober.probe(voters);
            tokio::pin!(round);
            // Poll until the request is out, then look at the gauge.
            tokio::select! {
                _ = &mut round => unreachable!("a frozen server answers nothing"),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            assert_eq!(traffic.in_flight.get(), 1);
            round.await
        };
        assert_eq!(round.requests, 1);
        assert_eq!(prober.probe_now(voters).await.requests, 1);
        assert_eq!(traffic.requests.get(), 2);
        assert_eq!(traffic.in_flight.get(), 0);
        // Failing for less than the backoff's start: asked next round.
        assert_eq!(prober.due_in(voters), Some(Duration::ZERO));
    }
}
