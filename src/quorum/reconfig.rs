//! Reading and changing the committed membership through a ZooKeeper client session: the IO of
//! scaling (what to change is [`super::membership::next_step`]'s decision).
//!
//! A reconfiguration writes `/zookeeper/config`, which only a superuser may do (or every client,
//! with `skipACL`, which Zooherd never sets). The operator keeps the superuser's password in a
//! Secret; the servers get only its digest, as the JVM property
//! `zookeeper.DigestAuthenticationProvider.superDigest=zooherd:<digest>` ([`super_digest`]).
//!
//! Every change is conditional on the committed version the decision was made from (ZooKeeper
//! answers BadVersion otherwise), and is verified by reading the configuration back: when the
//! removed voter was the leader, ZooKeeper hands the lead to another voter and the session that
//! asked loses its connection before the answer arrives, so the answer cannot be relied on.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use sha1::Digest as _;
use zookeeper_client as zk;

use super::Myid;
use super::membership::{Membership, ParseError};
use crate::api::security::{OPERATOR_SASL_USER, operator_sasl_password};

/// The superuser's name in the digest scheme.
pub const SUPERUSER: &str = "zooherd";

/// The JVM property that names the superuser's digest.
pub const SUPER_DIGEST_PROPERTY: &str = "zookeeper.DigestAuthenticationProvider.superDigest";

/// `zooherd:<base64(sha1("zooherd:<password>"))>`: the value of [`SUPER_DIGEST_PROPERTY`], as
/// ZooKeeper's `DigestAuthenticationProvider.generateDigest` computes it.
pub fn super_digest(password: &str) -> String {
    let hash = sha1::Sha1::digest(format!("{SUPERUSER}:{password}").as_bytes());
    format!(
        "{SUPERUSER}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// How the operator's sessions log in: always as the digest superuser (with the password of
/// the ensemble's superuser Secret), and, when the servers run with SASL client authentication
/// (`spec.clientAuthentication`), also as the SASL user [`OPERATOR_SASL_USER`], whose password
/// is the superuser's digest (see `agent::server::sasl`): without it, servers that enforce
/// authentication would refuse every request of the session.
#[derive(Clone, Copy, Debug)]
pub struct Login<'a> {
    pub password: &'a str,
    pub sasl: bool,
}

impl<'a> Login<'a> {
    /// The superuser only (servers without SASL).
    pub fn superuser(password: &'a str) -> Self {
        Login {
            password,
            sasl: false,
        }
    }

    /// The superuser, and SASL as the operator's user.
    pub fn superuser_with_sasl(password: &'a str) -> Self {
        Login {
            password,
            sasl: true,
        }
    }
}

/// Why the membership could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum ReconfigError {
    #[error("no server address to connect to")]
    NoServers,
    #[error("connecting to {servers}: {source}")]
    Connect {
        servers: String,
        #[source]
        source: zk::Error,
    },
    #[error("reading /zookeeper/config: {0}")]
    Read(#[source] zk::Error),
    #[error("/zookeeper/config cannot be read: {0}")]
    Parse(#[from] ParseError),
    #[error(
        "{change} was refused: the superuser's digest is not the one the servers run with (NoAuth); \
         the servers get it from the ensemble's superuser Secret at start"
    )]
    NotAuthorized { change: String },
    #[error(
        "{change} was refused: the committed configuration changed since version {version:x} was read"
    )]
    Stale { change: String, version: u64 },
    #[error("{change} failed: {source}")]
    Change {
        change: String,
        #[source]
        source: zk::Error,
    },
    #[error(
        "{change} is not in the committed configuration (version {version:x}, voters {voters})"
    )]
    NotCommitted {
        change: String,
        version: u64,
        voters: String,
    },
    #[error("{what} took longer than {timeout:?}")]
    Timeout { what: String, timeout: Duration },
}

/// The znode the operator writes after removing a voter (see `Reconfigurer::commit_barrier`):
/// persistent, readable and writable by the superuser only.
pub const BARRIER_PATH: &str = "/zooherd-barrier";

/// Reads and changes the membership of ensembles, as their superuser.
#[derive(Clone, Debug)]
pub struct Reconfigurer {
    /// Bounds a session's setup, each request, and the wait for a change to show.
    pub timeout: Duration,
    /// Bounds each connection attempt to one server: a frozen server must not hold up the
    /// others (the client tries the next address).
    pub connect_timeout: Duration,
}

impl Default for Reconfigurer {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

impl Reconfigurer {
    async fn session(
        &self,
        servers: &[SocketAddr],
        login: Login<'_>,
    ) -> Result<zk::Client, ReconfigError> {
        if servers.is_empty() {
            return Err(ReconfigError::NoServers);
        }
        let cluster = servers
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let auth = format!("{SUPERUSER}:{}", login.password);
        let mut connector = zk::Client::connector()
            .with_session_timeout(self.timeout)
            .with_connection_timeout(self.connect_timeout)
            .with_auth("digest", auth.as_bytes());
        if login.sasl {
            let digest = super_digest(login.password);
            let hash = operator_sasl_password(&digest).expect("super_digest makes user:hash");
            connector = connector.with_sasl(zk::SaslOptions::digest_md5(
                OPERATOR_SASL_USER,
                hash.to_owned(),
            ));
        }
        let connect = connector.connect(&cluster);
        self.bounded(format!("connecting to {cluster}"), connect)
            .await?
            .map_err(|source| ReconfigError::Connect {
                servers: cluster,
                source,
            })
    }

    async fn bounded<T>(
        &self,
        what: String,
        future: impl Future<Output = T>,
    ) -> Result<T, ReconfigError> {
        tokio::time::timeout(self.timeout, future)
            .await
            .map_err(|_| ReconfigError::Timeout {
                what,
                timeout: self.timeout,
            })
    }

    async fn read(&self, client: &zk::Client) -> Result<Membership, ReconfigError> {
        // A session reads from the server it is connected to; `sync` first, so that the answer
        // includes every change the leader committed before it.
        let _ = self
            .bounded("sync".into(), client.sync("/zookeeper/config"))
            .await;
        let (data, _) = self
            .bounded("reading /zookeeper/config".into(), client.get_config())
            .await?
            .map_err(ReconfigError::Read)?;
        Ok(Membership::parse(&String::from_utf8_lossy(&data))?)
    }

    /// The committed membership, read through any of `servers` (client addresses).
    pub async fn committed(
        &self,
        servers: &[SocketAddr],
        login: Login<'_>,
    ) -> Result<Membership, ReconfigError> {
        let client = self.session(servers, login).await?;
        self.read(&client).await
    }

    /// Adds server `myid` as a voter (`line`: its `server.<myid>=` value) to the membership
    /// `from`; returns the committed membership that has it.
    pub async fn add_voter(
        &self,
        servers: &[SocketAddr],
        login: Login<'_>,
        from: &Membership,
        myid: Myid,
        line: &str,
    ) -> Result<Membership, ReconfigError> {
        let joining = format!("server.{myid}={line}");
        let update = zk::EnsembleUpdate::Incremental {
            joinings: vec![joining.as_str()].into_iter(),
            leavings: Vec::new().into_iter(),
        };
        let change = format!("adding server {myid} as a voter");
        self.change(servers, login, from, change, update, |m| {
            m.voters().contains(&myid)
        })
        .await
    }

    /// Removes voter `myid` from the membership `from`; returns the committed membership
    /// without it.
    pub async fn remove_voter(
        &self,
        servers: &[SocketAddr],
        login: Login<'_>,
        from: &Membership,
        myid: Myid,
    ) -> Result<Membership, ReconfigError> {
        let leaving = myid.to_string();
        let update = zk::EnsembleUpdate::Incremental {
            joinings: Vec::new().into_iter(),
            leavings: vec![leaving.as_str()].into_iter(),
        };
        let change = format!("removing voter {myid}");
        let committed = self
            .change(servers, login, from, change, update, |m| {
                !m.servers.contains_key(&myid)
            })
            .await?;
        self.commit_barrier(servers, login).await?;
        Ok(committed)
    }

    /// Commits one write and waits for it. ZooKeeper's reconfiguration guide ("Progress
    /// guarantees"): a committed reconfig only means the leader sent the activation; to know
    /// that a quorum of the new configuration activated it, and so that the removed server may
    /// be shut down, invoke an update (not a `sync`) and wait for it to commit. The StatefulSet
    /// shrinks only after this returns. The write goes to [`BARRIER_PATH`], which only the
    /// superuser can touch.
    async fn commit_barrier(
        &self,
        servers: &[SocketAddr],
        login: Login<'_>,
    ) -> Result<(), ReconfigError> {
        let client = self.session(servers, login).await?;
        let what = format!("committing a write to {BARRIER_PATH} after the change");
        let stamp = jiff::Timestamp::now().to_string();
        let written = self
            .bounded(
                what.clone(),
                client.set_data(BARRIER_PATH, stamp.as_bytes(), None),
            )
            .await?;
        let result = match written {
            Err(zk::Error::NoNode) => {
                let options = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
                self.bounded(
                    what.clone(),
                    client.create(BARRIER_PATH, stamp.as_bytes(), &options),
                )
                .await?
                .map(|_| ())
            }
            other => other.map(|_| ()),
        };
        result.map_err(|source| ReconfigError::Change {
            change: what,
            source,
        })
    }

    async fn change<'a, I: Iterator<Item = &'a str> + Clone>(
        &self,
        servers: &[SocketAddr],
        login: Login<'_>,
        from: &Membership,
        change: String,
        update: zk::EnsembleUpdate<'a, I>,
        done: impl Fn(&Membership) -> bool,
    ) -> Result<Membership, ReconfigError> {
        let client = self.session(servers, login).await?;
        let version = i64::try_from(from.version).unwrap_or(-1);
        let answer = self
            .bounded(
                change.clone(),
                client.update_ensemble(update, Some(version)),
            )
            .await?;
        match answer {
            Ok((data, _)) => {
                let committed = Membership::parse(&String::from_utf8_lossy(&data))?;
                if done(&committed) {
                    return Ok(committed);
                }
            }
            Err(zk::Error::NoAuth) => return Err(ReconfigError::NotAuthorized { change }),
            Err(zk::Error::BadVersion) => {
                return Err(ReconfigError::Stale {
                    change,
                    version: from.version,
                });
            }
            // The session may have lost its server to the change itself (a removed leader).
            Err(zk::Error::ConnectionLoss | zk::Error::SessionExpired) => {}
            Err(source) => return Err(ReconfigError::Change { change, source }),
        }
        // Read back through a new session, until the change shows or the timeout.
        let started = tokio::time::Instant::now();
        loop {
            let read = match self.session(servers, login).await {
                Ok(client) => self.read(&client).await,
                Err(error) => Err(error),
            };
            match read {
                Ok(committed) if done(&committed) => return Ok(committed),
                Ok(committed) if started.elapsed() >= self.timeout => {
                    return Err(ReconfigError::NotCommitted {
                        change,
                        version: committed.version,
                        voters: super::membership::list(committed.voters()),
                    });
                }
                Err(error) if started.elapsed() >= self.timeout => return Err(error),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_as_zookeeper_computes_it() {
        // ZooKeeper's DigestAuthenticationProvider.generateDigest("zooherd:secret"), as
        // base64(sha1("zooherd:secret")).
        assert_eq!(
            super_digest("secret"),
            "zooherd:u/lJX/7cIAvZtP9PqwTdm6krtSQ="
        );
    }
}
