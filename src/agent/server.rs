//! `zooherd server`: the entrypoint of Zooherd's ZooKeeper image.
//!
//! ZooKeeper itself needs a few things a StatefulSet does not give it, and this is where they
//! are made, before the JVM starts:
//!
//! - **Its myid.** Pods get ordinals, ZooKeeper wants `dataDir/myid`: the pod with ordinal `n`
//!   is myid `n + 1`, the same rule the operator uses to render the `server.<myid>` lines.
//! - **A data directory that is really its own.** A volume left behind by another server or by
//!   another ensemble (a retained PersistentVolumeClaim picked up again after a scale-down and
//!   up, or after an ensemble was deleted and re-created) makes ZooKeeper crash-loop with
//!   "My id N not in the peer list", or worse, join with data that is not this ensemble's. On
//!   first start the agent writes `myid` with a marker naming the ensemble (its uid, namespace
//!   and name). A later start on a directory that names another myid of this ensemble moves
//!   that data aside (`stale-<time>-myid-<n>`, never deleted) and starts empty, to sync from
//!   the leader, but only when the other voters serve as a quorum without this server
//!   ([`may_reinitialise`]): then the data is on them. Otherwise, and for a directory of
//!   another ensemble (possibly the only copy of its data), it refuses, with one log line
//!   saying what to do and an exit code of its own ([`EXIT_FOREIGN_MYID`],
//!   [`EXIT_FOREIGN_ENSEMBLE`]), instead of starting the JVM.
//! - **A writable zoo.cfg, and the membership to start with.** The operator's zoo.cfg is a
//!   read-only ConfigMap mount, and ZooKeeper rewrites its configuration file: with
//!   `reconfigEnabled=true` every committed reconfiguration makes it write the new membership
//!   to `<zoo.cfg>.dynamic.<version>` *beside the zoo.cfg it was started with* and point that
//!   zoo.cfg's `dynamicConfigFile` at it. So the agent writes the copy ZooKeeper runs with onto
//!   the data volume (`dataDir/zooherd/zoo.cfg`), where those files outlive the pod, and picks
//!   the membership to start with ([`choose_membership`]): the newest dynamic file on the volume
//!   that lists this server, else the operator's bootstrap membership (the ConfigMap's
//!   `members`: the committed voters as the operator last saw them, as participants, and the
//!   joining servers as observers, at version 0 so that the ensemble's committed membership
//!   replaces it as soon as the server reaches a voter). So a server whose volume holds no
//!   committed membership that lists it (a server joining) starts unable to vote, and syncs as
//!   a non-voting follower until the operator adds it. A server that neither lists is not a
//!   member and does not start.
//! - **An empty volume never votes in a formed ensemble** ([`may_start`]): a server whose volume
//!   holds no ZooKeeper data (a claim deleted or replaced, a local volume lost with its node, a
//!   stale directory moved aside) and whom the membership lists as a voter exits
//!   ([`EXIT_EMPTY_VOTER`]) once the ConfigMap says the ensemble has formed; the operator then
//!   removes it from the voters, and it starts again as a joining server.
//! - **The superuser.** The digest of the superuser the operator reconfigures the ensemble as
//!   comes from a Secret through [`ENV_SUPER_DIGEST`], and becomes a JVM property here, so
//!   that it is in no pod spec.
//! - **A heap that fits the container**, from the memory limit the downward API passes.
//!
//! Then it *execs* the JVM: ZooKeeper replaces this process (PID 1 of the container), so the
//! kubelet's SIGTERM reaches ZooKeeper directly, with no shell or supervisor in between.
//!
//! Every decision is a pure function of the environment and the file contents ([`plan`],
//! [`check_data_dir`], [`decide_heap`], [`java_argv`], ...), tested below; [`run`] only reads,
//! writes two small files and execs. Every failure is one [`StartError`] line that names the
//! variable, field or file and what to do, and maps to a documented exit code.

use std::convert::Infallible;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::names::{self, ZOO_CFG_PATH};
use std::collections::BTreeMap;

use crate::api::MemberState;
use crate::quorum::admin::{AdminClient, ServerMode, SrvrAnswer};
use crate::quorum::membership::{Membership, list};
use crate::quorum::reconfig::{SUPER_DIGEST_PROPERTY, SUPERUSER};
use crate::quorum::rule::{is_serving_voter, quorum_size};

/// Name of the pod, `<ensemble>-<ordinal>` (downward API `metadata.name`). Required.
pub const ENV_POD_NAME: &str = "POD_NAME";
/// Namespace of the pod (downward API `metadata.namespace`). Required.
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";
/// Address of the pod (downward API `status.podIP`). Optional; logged at start-up, to tell
/// which address the server's DNS name should resolve to.
pub const ENV_POD_IP: &str = "POD_IP";
/// `metadata.uid` of the ZooKeeperEnsemble: the identity the data directory is marked with.
/// Required.
pub const ENV_ENSEMBLE_UID: &str = "ZOOHERD_ENSEMBLE_UID";
/// An address to bind every server port to, instead of all interfaces. Unset in Kubernetes;
/// set when several servers share one host, as in the tests on loopback addresses.
pub const ENV_BIND_ADDRESS: &str = "ZOOHERD_BIND_ADDRESS";
/// The container's memory limit in bytes (downward API `resourceFieldRef: limits.memory`,
/// divisor 1). Optional.
pub const ENV_MEMORY_LIMIT: &str = "ZOOHERD_MEMORY_LIMIT";
/// An explicit heap size as a Kubernetes quantity (`512Mi`, `1Gi`). Wins over the share.
pub const ENV_JVM_HEAP: &str = "ZOOHERD_JVM_HEAP";
/// The heap as a share of the memory limit, in percent (1 to 90, default 50).
pub const ENV_JVM_HEAP_PERCENT: &str = "ZOOHERD_JVM_HEAP_PERCENT";
/// More JVM options, separated by whitespace, placed after Zooherd's (so they win).
pub const ENV_JVM_EXTRA_OPTS: &str = "ZOOHERD_JVM_EXTRA_OPTS";
/// Where ZooKeeper is installed (`lib/*.jar`, `conf/logback.xml`); default
/// [`DEFAULT_ZOOKEEPER_HOME`].
pub const ENV_ZOOKEEPER_HOME: &str = "ZOOKEEPER_HOME";
/// The JRE: `$JAVA_HOME/bin/java` when set, else `java` from the PATH.
pub const ENV_JAVA_HOME: &str = "JAVA_HOME";
/// `zooherd:<digest>` of the superuser that may reconfigure the ensemble (from the ensemble's
/// superuser Secret). Optional: without it no client can change the membership.
pub const ENV_SUPER_DIGEST: &str = names::SUPER_DIGEST_ENV;

/// A setting is missing or wrong: an environment variable, a flag, or zoo.cfg (including one
/// that cannot be read, or that does not list this server). Fix the pod spec or the ensemble.
pub const EXIT_INVALID_INPUT: u8 = 78;
/// The data directory or the runtime copy of zoo.cfg could not be read or written.
pub const EXIT_IO: u8 = 74;
/// The data directory holds another server's myid: it is another member's volume.
pub const EXIT_FOREIGN_MYID: u8 = 80;
/// The data directory is marked as another ensemble's.
pub const EXIT_FOREIGN_ENSEMBLE: u8 = 81;
/// Exit code: the data volume holds no ZooKeeper data, but the ensemble has formed and lists
/// this server as a voter (it must leave the voters and rejoin; the operator does that).
pub const EXIT_EMPTY_VOTER: u8 = 82;
/// The JVM could not be started (no `java` at `$JAVA_HOME/bin` or on the PATH).
pub const EXIT_EXEC_FAILED: u8 = 127;

/// Where ZooKeeper lives in Zooherd's image.
pub const DEFAULT_ZOOKEEPER_HOME: &str = "/opt/zookeeper";
/// Where, under the data directory, the copy of zoo.cfg that ZooKeeper runs with is written
/// (and ZooKeeper writes its dynamic configuration files beside it).
pub const RUNTIME_CONFIG_IN_DATA_DIR: &str = "zooherd/zoo.cfg";
/// The heap's share of the memory limit unless [`ENV_JVM_HEAP_PERCENT`] says otherwise: the
/// rest is for the JVM itself (metaspace, threads, direct buffers) and the page cache that
/// ZooKeeper's snapshots and transaction log go through.
pub const DEFAULT_HEAP_PERCENT: u8 = 50;
/// The largest share accepted: above it the JVM's own memory no longer fits beside the heap.
pub const MAX_HEAP_PERCENT: u8 = 90;
/// How long the agent waits for each other voter's AdminServer before deciding that a data
/// directory of another server may be moved aside.
const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Prefix of the directories that data moved aside goes to (see [`may_reinitialise`]).
pub const STALE_PREFIX: &str = "stale-";
/// File in the data directory naming the ensemble the data belongs to.
pub const ENSEMBLE_MARKER_FILE: &str = "zooherd-ensemble";
/// ZooKeeper's own file in the data directory.
pub const MYID_FILE: &str = "myid";
/// The class that runs a ZooKeeper server (standalone or in a quorum).
pub const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
/// JVM options Zooherd always passes (`jvm.extraOptions` come after them, so they can be
/// overridden): a JVM out of memory exits, so the kubelet restarts it, rather than limping on
/// with threads that died of OutOfMemoryError.
const BASE_JVM_OPTIONS: &[&str] = &["-XX:+ExitOnOutOfMemoryError"];

/// The file, beside the runtime zoo.cfg, that adds [`JAVA_SECURITY_PROPERTIES`] to the JDK's
/// own (`-Djava.security.properties`).
pub const JAVA_SECURITY_FILE: &str = "java.security";

/// How long the JVM caches name lookups: 5 s, and 1 s for names that did not resolve, instead
/// of the JDK's 30 s and 10 s. A replaced pod comes back with a new IP, and only the higher myid
/// of a pair opens their election connection, so a peer still holding the old address (or the
/// failure to resolve a pod that had no IP yet) keeps the server out of the quorum until the
/// cache expires. The end-to-end test caught it: a member restarted by the operator could not
/// rejoin before the next restart changed its IP again. These are security properties, not
/// system properties: the JDK's java.security sets the negative one, which wins over
/// `-Dsun.net.inetaddr.negative.ttl`.
pub const JAVA_SECURITY_PROPERTIES: &str = "\
# Written by `zooherd server`: name lookups of peers are cached briefly, pods change IPs.
networkaddress.cache.ttl=5
networkaddress.cache.negative.ttl=1
";

const MIB: u64 = 1024 * 1024;

/// Arguments of `zooherd server`. The pod itself (name, namespace, ensemble uid, heap) comes
/// from environment variables, which the StatefulSet fills from the downward API.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = "\
Environment:
  POD_NAME, POD_NAMESPACE     the pod (required; myid = ordinal in POD_NAME + 1)
  ZOOHERD_ENSEMBLE_UID        the ZooKeeperEnsemble's metadata.uid (required)
  POD_IP                      the pod's address (optional, logged)
  ZOOHERD_MEMORY_LIMIT        memory limit in bytes; the heap is a share of it
  ZOOHERD_JVM_HEAP            explicit heap (512Mi, 1Gi); wins over the share
  ZOOHERD_JVM_HEAP_PERCENT    the share, 1-90 (default 50)
  ZOOHERD_JVM_EXTRA_OPTS      more JVM options, after Zooherd's
  ZOOHERD_BIND_ADDRESS        bind every port to this address (default: all interfaces)
  ZOOHERD_SUPER_DIGEST        zooherd:<digest> of the superuser that may reconfigure the ensemble
  ZOOKEEPER_HOME, JAVA_HOME   ZooKeeper (default /opt/zookeeper) and the JRE (default: java on PATH)

Exit codes (before ZooKeeper starts): 78 bad setting, 74 file error,
80 data volume of another server, 81 data volume of another ensemble,
82 empty data volume of a voter of a formed ensemble, 127 no java.")]
pub struct Args {
    /// zoo.cfg as the operator rendered it (the ConfigMap mount; only read).
    #[arg(long, value_name = "FILE", default_value = ZOO_CFG_PATH)]
    pub config: PathBuf,

    /// The bootstrap membership (the ConfigMap's `members`; only read).
    #[arg(long, value_name = "FILE", default_value = names::MEMBERS_PATH)]
    pub members: PathBuf,

    /// Whether the ensemble has formed (the ConfigMap's `formed`: "true"; a missing file
    /// means it has not).
    #[arg(long, value_name = "FILE", default_value = names::FORMED_PATH)]
    pub formed: PathBuf,

    /// Where to write the copy of zoo.cfg that ZooKeeper runs with, beside which ZooKeeper
    /// keeps its dynamic configuration files; must be writable and should persist
    /// [default: zooherd/zoo.cfg in the data directory].
    #[arg(long, value_name = "FILE")]
    pub runtime_config: Option<PathBuf>,

    /// This server's myid (1-255) [default: the ordinal in POD_NAME plus 1].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    pub myid: Option<u8>,

    /// Use this data directory instead of zoo.cfg's dataDir (the copy says so), for servers
    /// that share a filesystem, as the tests' do.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Why the server was not started. The Display form is the one line to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("{var} is not set: {hint}")]
    MissingEnv {
        var: &'static str,
        hint: &'static str,
    },

    #[error("{var}={value:?} {problem}")]
    InvalidEnv {
        var: &'static str,
        value: String,
        problem: String,
    },

    #[error(
        "cannot read {path}: {error}; mount the ensemble's ConfigMap there, or pass --config and --members"
    )]
    UnreadableConfig { path: PathBuf, error: String },

    #[error("cannot read the membership in {path}: {error}")]
    BadMembership { path: PathBuf, error: String },

    #[error(
        "{path} has no server.{myid} line, so myid {myid} (pod {pod}) is not a member (it lists {listed}){volume}; \
         the pod's ordinal is beyond the ensemble's members: scale the ensemble with spec.replicas, which starts new servers as members"
    )]
    NotAMember {
        path: PathBuf,
        myid: u8,
        pod: String,
        listed: String,
        volume: String,
    },

    #[error("{path} sets no dataDir; render zoo.cfg with the operator, or pass --data-dir")]
    NoDataDir { path: PathBuf },

    #[error(
        "refusing to start: data directory {data_dir} holds myid {found}, but pod {pod} is myid {myid}, \
         and it is kept because {kept}; the volume is another server's and may hold data the others lack: \
         bring the other voters back (the directory is then moved aside, never deleted, and this server rejoins), \
         or give the volume back to the server it belongs to"
    )]
    ForeignMyid {
        data_dir: PathBuf,
        found: String,
        pod: String,
        myid: u8,
        /// Why the directory was not moved aside and the server re-initialised.
        kept: String,
    },

    #[error(
        "refusing to start: data directory {data_dir} belongs to ensemble {found}, not {ensemble} (uid {uid}); \
         the volume was left by another ensemble: delete this pod's PersistentVolumeClaim, or remove {data_dir}/{marker} to adopt its data",
        marker = ENSEMBLE_MARKER_FILE
    )]
    ForeignEnsemble {
        data_dir: PathBuf,
        found: String,
        ensemble: String,
        uid: String,
    },

    #[error(
        "refusing to start: data directory {data_dir} holds no ZooKeeper data, yet the ensemble has formed and \
         its membership lists myid {myid} (pod {pod}) as a voter; a voter must never vote without what it \
         acknowledged (ZAB assumes it keeps it), so the operator removes it from the voters, after which it \
         starts as a joining server, syncs from the leader and is added back"
    )]
    EmptyVoter {
        data_dir: PathBuf,
        myid: u8,
        pod: String,
    },

    #[error("cannot {action} {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: String,
    },

    #[error("cannot start {program}: {error}; set JAVA_HOME to a JRE, or put java on the PATH")]
    Exec { program: String, error: String },
}

impl StartError {
    /// The process exit code for this error (see the `EXIT_*` constants).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::MissingEnv { .. }
            | StartError::InvalidEnv { .. }
            | StartError::UnreadableConfig { .. }
            | StartError::NotAMember { .. }
            | StartError::BadMembership { .. }
            | StartError::NoDataDir { .. } => EXIT_INVALID_INPUT,
            StartError::ForeignMyid { .. } => EXIT_FOREIGN_MYID,
            StartError::ForeignEnsemble { .. } => EXIT_FOREIGN_ENSEMBLE,
            StartError::EmptyVoter { .. } => EXIT_EMPTY_VOTER,
            StartError::Io { .. } => EXIT_IO,
            StartError::Exec { .. } => EXIT_EXEC_FAILED,
        }
    }
}

/// Environment lookup: the value of a variable, `None` when unset or empty.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Who this server is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub pod_name: String,
    pub namespace: String,
    /// The StatefulSet's (and so the ensemble's) name: the pod name without `-<ordinal>`.
    pub ensemble_name: String,
    pub ensemble_uid: String,
    pub myid: u8,
}

impl Identity {
    /// `namespace/name` of the ensemble.
    pub fn ensemble(&self) -> String {
        format!("{}/{}", self.namespace, self.ensemble_name)
    }
}

fn required(env: Env, var: &'static str, hint: &'static str) -> Result<String, StartError> {
    env(var).ok_or(StartError::MissingEnv { var, hint })
}

fn invalid(var: &'static str, value: &str, problem: impl Into<String>) -> StartError {
    StartError::InvalidEnv {
        var,
        value: value.to_owned(),
        problem: problem.into(),
    }
}

/// Derives who this server is from the environment; `explicit_myid` (`--myid`) wins over the
/// pod ordinal.
pub fn identity(explicit_myid: Option<u8>, env: Env) -> Result<Identity, StartError> {
    let pod_name = required(
        env,
        ENV_POD_NAME,
        "set it from the downward API (fieldRef metadata.name)",
    )?;
    let namespace = required(
        env,
        ENV_POD_NAMESPACE,
        "set it from the downward API (fieldRef metadata.namespace)",
    )?;
    let ensemble_uid = required(
        env,
        ENV_ENSEMBLE_UID,
        "set it to the ZooKeeperEnsemble's metadata.uid (the operator's StatefulSet does)",
    )?;
    let ordinal = names::ordinal_from_pod_name(&pod_name);
    let ensemble_name = match (ordinal, pod_name.rsplit_once('-')) {
        (Some(_), Some((name, _))) => name.to_owned(),
        _ => pod_name.clone(),
    };
    let myid = match (explicit_myid, ordinal) {
        (Some(myid), _) => myid,
        (None, Some(ordinal)) => u8::try_from(names::myid(ordinal)).map_err(|_| {
            invalid(
                ENV_POD_NAME,
                &pod_name,
                format!("has ordinal {ordinal}, but myids end at 255: run at most 255 replicas"),
            )
        })?,
        (None, None) => {
            return Err(invalid(
                ENV_POD_NAME,
                &pod_name,
                "does not end in -<ordinal> as a StatefulSet pod's name does: pass --myid",
            ));
        }
    };
    Ok(Identity {
        pod_name,
        namespace,
        ensemble_name,
        ensemble_uid,
        myid,
    })
}

/// The `key=value` entries of a zoo.cfg, in file order, the way ZooKeeper (a Java properties
/// file) reads the lines the operator writes: blank lines and `#`/`!` comments skipped, the
/// key ending at the first `=`, `:` or whitespace, values trimmed. Escapes and continued lines
/// are not interpreted: the operator's renderer writes neither.
pub fn config_entries(cfg: &str) -> impl Iterator<Item = (&str, &str)> {
    cfg.lines().filter_map(|line| {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with(['#', '!']) {
            return None;
        }
        let end = line.find(['=', ':', ' ', '\t']).unwrap_or(line.len());
        let (key, rest) = line.split_at(end);
        let rest = rest.trim_start();
        let value = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim();
        Some((key, value))
    })
}

/// The value of `key` in a zoo.cfg (the last one, as for ZooKeeper).
pub fn config_value<'a>(cfg: &'a str, key: &str) -> Option<&'a str> {
    config_entries(cfg)
        .filter(|&(k, _)| k == key)
        .map(|(_, v)| v)
        .last()
}

/// The marker written into a data directory on first start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsembleMarker {
    /// The ensemble's metadata.uid: what decides whether the data is this ensemble's.
    pub uid: String,
    /// `namespace/name`, for people reading the file or a refusal.
    pub ensemble: String,
}

impl EnsembleMarker {
    pub fn of(identity: &Identity) -> Self {
        EnsembleMarker {
            uid: identity.ensemble_uid.clone(),
            ensemble: identity.ensemble(),
        }
    }

    pub fn render(&self) -> String {
        format!(
            "# Written by `zooherd server` on this data directory's first start: the data belongs to this ensemble.\n\
             uid={}\nensemble={}\n",
            self.uid, self.ensemble
        )
    }

    /// Reads a marker back; `None` if it has no uid.
    pub fn parse(text: &str) -> Option<Self> {
        let uid = config_value(text, "uid").filter(|uid| !uid.is_empty())?;
        Some(EnsembleMarker {
            uid: uid.to_owned(),
            ensemble: config_value(text, "ensemble").unwrap_or("?").to_owned(),
        })
    }
}

/// What a data directory holds, compared with who this server is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataDirState {
    /// Not claimed by an ensemble yet: no marker, and no myid or this server's. Claim it by
    /// writing the marker and the myid.
    Fresh,
    /// This ensemble's marker and this server's myid.
    Matches,
    /// Another myid (`found` as the file says it).
    ForeignMyid { found: String },
    /// Another ensemble's marker (`found` describes it).
    ForeignEnsemble { found: String },
}

/// Compares the contents of `dataDir/myid` and of the marker (`None` when the file does not
/// exist) with `identity`. Another ensemble is checked first: it is the cause when both differ.
pub fn check_data_dir(
    myid_file: Option<&str>,
    marker_file: Option<&str>,
    identity: &Identity,
) -> DataDirState {
    if let Some(text) = marker_file {
        match EnsembleMarker::parse(text) {
            Some(marker) if marker.uid == identity.ensemble_uid => {}
            Some(marker) => {
                return DataDirState::ForeignEnsemble {
                    found: format!("{} (uid {})", marker.ensemble, marker.uid),
                };
            }
            None => {
                return DataDirState::ForeignEnsemble {
                    found: format!("unknown (the {ENSEMBLE_MARKER_FILE} file names no uid)"),
                };
            }
        }
    }
    if let Some(text) = myid_file {
        let found = text.trim();
        if found != identity.myid.to_string() {
            return DataDirState::ForeignMyid {
                found: found.to_owned(),
            };
        }
    }
    match (myid_file, marker_file) {
        (Some(_), Some(_)) => DataDirState::Matches,
        _ => DataDirState::Fresh,
    }
}

/// The refusal for a foreign data directory, `None` when the server may use it.
pub fn refusal(state: &DataDirState, data_dir: &Path, identity: &Identity) -> Option<StartError> {
    match state {
        DataDirState::Fresh | DataDirState::Matches => None,
        DataDirState::ForeignMyid { found } => Some(StartError::ForeignMyid {
            data_dir: data_dir.to_owned(),
            found: found.clone(),
            pod: identity.pod_name.clone(),
            myid: identity.myid,
            kept: "nothing showed that the ensemble serves without this server".to_owned(),
        }),
        DataDirState::ForeignEnsemble { found } => Some(StartError::ForeignEnsemble {
            data_dir: data_dir.to_owned(),
            found: found.clone(),
            ensemble: identity.ensemble(),
            uid: identity.ensemble_uid.clone(),
        }),
    }
}

/// Whether a data directory that holds another server's myid may be moved aside, so that this
/// server starts empty and takes the ensemble's data from the leader: only when the other
/// voters of `membership` serve under one leader and are a quorum of it without this server.
/// Then every committed transaction is on them (a quorum has each one), and the directory,
/// kept aside, is no one's only copy. `peers` is what the other voters answered. Ok says who
/// serves; Err says why not.
pub fn may_reinitialise(
    myid: u8,
    membership: &Membership,
    peers: &BTreeMap<u8, MemberState>,
) -> Result<String, String> {
    let voters = membership.voters();
    let serving: Vec<u8> = voters
        .iter()
        .copied()
        .filter(|&m| m != myid)
        .filter(|m| peers.get(m).is_some_and(|s| is_serving_voter(*s)))
        .collect();
    let leaders = serving
        .iter()
        .filter(|m| peers.get(m) == Some(&MemberState::Leader))
        .count();
    let needed = quorum_size(voters.len());
    if leaders == 1 && serving.len() >= needed {
        Ok(format!(
            "voters {} serve, a quorum of {} without this server",
            list(serving),
            list(voters)
        ))
    } else {
        Err(format!(
            "the other voters do not serve as a quorum without it (serving: {}; needed {needed} of {} under one leader)",
            list(serving),
            list(voters)
        ))
    }
}

/// What the other voters of `membership` answer (their AdminServers, at the hosts of their
/// server lines). One short round: a server that cannot be asked counts as not serving.
fn peer_states(membership: &Membership, myid: u8) -> BTreeMap<u8, MemberState> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(_) => return BTreeMap::new(),
    };
    let client = AdminClient::new(PEER_TIMEOUT);
    let others: Vec<(u8, String)> = membership
        .servers
        .iter()
        .filter(|&(&m, _)| m != myid)
        .filter_map(|(&m, line)| Some((m, line.split(':').next()?.to_owned())))
        .collect();
    runtime.block_on(async {
        let answers = futures::future::join_all(others.iter().map(|(_, host)| {
            let base = format!("http://{host}:{}", names::ADMIN_PORT);
            let client = client.clone();
            async move { client.srvr(&base).await }
        }))
        .await;
        others
            .iter()
            .zip(answers)
            .map(|((m, _), answer)| {
                let state = match answer {
                    Ok(SrvrAnswer::Serving(stats)) => match stats.mode {
                        ServerMode::Leader => MemberState::Leader,
                        ServerMode::Follower => MemberState::Follower,
                        ServerMode::Observer => MemberState::Observer,
                        ServerMode::Standalone => MemberState::Standalone,
                    },
                    Ok(SrvrAnswer::NotServing(_)) => MemberState::NotServing,
                    Err(_) => MemberState::Unreachable,
                };
                (*m, state)
            })
            .collect()
    })
}

/// Whether `dir` holds ZooKeeper data: a snapshot or a transaction log in its `version-2`.
fn has_zookeeper_data(dir: &Path) -> Result<bool, StartError> {
    let version_2 = dir.join("version-2");
    let entries = match fs::read_dir(&version_2) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("read", &version_2, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", &version_2, &e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snapshot.") || name.starts_with("log.") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a server may start with `membership`: not as a voter (a participant in it) of an
/// ensemble that has `formed` while its volume holds no ZooKeeper data (`has_data`).
///
/// ZAB's safety rests on a voter never forgetting what it acknowledged. With a write W
/// acknowledged by voters 1 and 3 while 2 lags, an emptied 3 that came back as a voter could,
/// once 1 is lost, elect 2 with it, and W would be gone though it was acknowledged. Such a
/// server must first leave the voters (the operator removes it by reconfiguration once the
/// others hold a quorum without it), then start as a joining server, sync from the leader and
/// be added back. Before the ensemble first formed, no voter has acknowledged anything, and the
/// initial servers form it with empty volumes.
pub fn may_start(membership: &Membership, myid: u8, formed: bool, has_data: bool) -> bool {
    !(formed && !has_data && membership.voters().contains(&myid))
}

/// Moves everything in `dirs` (the data directory, and the transaction-log directory when it
/// is another) into a new `stale-<unix time>-myid-<found>` directory inside each, never
/// deleting anything; returns the directories made.
fn move_aside(dirs: &[&Path], found: &str) -> Result<Vec<PathBuf>, StartError> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!(
        "{STALE_PREFIX}{seconds}-myid-{}",
        found.replace(['/', '.'], "_")
    );
    let mut moved = Vec::new();
    for dir in dirs {
        let stale = dir.join(&name);
        fs::create_dir_all(&stale).map_err(|e| io_error("create", &stale, &e))?;
        let entries = fs::read_dir(dir).map_err(|e| io_error("read", dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", dir, &e))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STALE_PREFIX)
            {
                continue;
            }
            let to = stale.join(entry.file_name());
            fs::rename(entry.path(), &to).map_err(|e| io_error("move", &entry.path(), &e))?;
        }
        moved.push(stale);
    }
    Ok(moved)
}

/// A Kubernetes quantity in bytes: an integer or decimal number with an optional binary
/// (`Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`) or decimal (`k`, `M`, `G`, `T`, `P`, `E`) suffix.
/// The error says what is wrong, for a message that names the variable.
pub fn parse_quantity(text: &str) -> Result<u64, String> {
    const SUFFIXES: [(&str, u128); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    const FORMS: &str = "is not a memory quantity: write bytes, or a number with Ki, Mi, Gi, Ti (or k, M, G, T), like 512Mi or 1.5Gi";
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let multiplier = if suffix.is_empty() {
        1
    } else {
        SUFFIXES
            .iter()
            .find(|(s, _)| *s == suffix)
            .map(|&(_, m)| m)
            .ok_or(FORMS)?
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let dangling_point = number.ends_with('.');
    if whole.is_empty()
        || dangling_point
        || !all_digits(whole)
        || !all_digits(fraction)
        || fraction.len() > 9
    {
        return Err(FORMS.to_owned());
    }
    let whole: u128 = whole.parse().map_err(|_| "is too large".to_owned())?;
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| FORMS.to_owned())?
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let bytes = whole
        .checked_mul(multiplier)
        .and_then(|b| b.checked_add(fraction_value * multiplier / scale))
        .ok_or("is too large")?;
    u64::try_from(bytes).map_err(|_| "is too large".to_owned())
}

/// How big the JVM heap is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heap {
    /// [`ENV_JVM_HEAP`] set it.
    Explicit { mib: u64 },
    /// `percent` of the memory limit [`ENV_MEMORY_LIMIT`] passed.
    ShareOfLimit {
        mib: u64,
        percent: u8,
        limit_bytes: u64,
    },
    /// No limit was passed: the JVM takes `percent` of the memory it sees (its cgroup's limit,
    /// or the machine's).
    ShareOfVisibleMemory { percent: u8 },
}

impl Heap {
    /// The JVM options that set this heap (initial and maximum alike: the heap is sized for
    /// the container up front instead of growing into the limit later).
    pub fn jvm_options(&self) -> Vec<String> {
        match *self {
            Heap::Explicit { mib } | Heap::ShareOfLimit { mib, .. } => {
                vec![format!("-Xms{mib}m"), format!("-Xmx{mib}m")]
            }
            Heap::ShareOfVisibleMemory { percent } => vec![
                format!("-XX:InitialRAMPercentage={percent}"),
                format!("-XX:MaxRAMPercentage={percent}"),
            ],
        }
    }

    /// For the start-up log line.
    pub fn describe(&self) -> String {
        match *self {
            Heap::Explicit { mib } => format!("heap {mib} MiB ({ENV_JVM_HEAP})"),
            Heap::ShareOfLimit {
                mib,
                percent,
                limit_bytes,
            } => format!(
                "heap {mib} MiB ({percent}% of the {} MiB memory limit)",
                limit_bytes / MIB
            ),
            Heap::ShareOfVisibleMemory { percent } => {
                format!("heap {percent}% of the memory the JVM sees (no {ENV_MEMORY_LIMIT})")
            }
        }
    }
}

/// Sizes the heap from [`ENV_JVM_HEAP`], else [`ENV_MEMORY_LIMIT`] and
/// [`ENV_JVM_HEAP_PERCENT`]. A bad value is an error even when another setting wins.
pub fn decide_heap(env: Env) -> Result<Heap, StartError> {
    let percent = match env(ENV_JVM_HEAP_PERCENT) {
        None => DEFAULT_HEAP_PERCENT,
        Some(text) => match text.trim().parse::<u8>() {
            Ok(p) if (1..=MAX_HEAP_PERCENT).contains(&p) => p,
            _ => {
                return Err(invalid(
                    ENV_JVM_HEAP_PERCENT,
                    &text,
                    format!("is not a whole percentage from 1 to {MAX_HEAP_PERCENT}"),
                ));
            }
        },
    };
    let quantity = |var: &'static str| -> Result<Option<(String, u64)>, StartError> {
        env(var)
            .map(|text| {
                parse_quantity(&text)
                    .map(|bytes| (text.clone(), bytes))
                    .map_err(|problem| invalid(var, &text, problem))
            })
            .transpose()
    };
    let explicit = quantity(ENV_JVM_HEAP)?;
    let limit = quantity(ENV_MEMORY_LIMIT)?;
    match (explicit, limit) {
        (Some((text, bytes)), _) => match bytes / MIB {
            0 => Err(invalid(
                ENV_JVM_HEAP,
                &text,
                "is less than 1 MiB: give the heap in Mi or Gi",
            )),
            mib => Ok(Heap::Explicit { mib }),
        },
        (None, Some((text, limit_bytes))) => {
            match (u128::from(limit_bytes) * u128::from(percent) / 100 / u128::from(MIB)) as u64 {
                0 => Err(invalid(
                    ENV_MEMORY_LIMIT,
                    &text,
                    format!(
                        "leaves less than 1 MiB for a {percent}% heap: raise the memory limit, or set {ENV_JVM_HEAP}"
                    ),
                )),
                mib => Ok(Heap::ShareOfLimit {
                    mib,
                    percent,
                    limit_bytes,
                }),
            }
        }
        (None, None) => Ok(Heap::ShareOfVisibleMemory { percent }),
    }
}

/// The zoo.cfg lines one pod needs besides the operator's file.
///
/// With a bind address every port binds there, so servers sharing a host do not collide: the
/// client port (`clientPortAddress`, and the client address in this server's own
/// `server.<myid>` line, which ZooKeeper insists must agree with it: see
/// [`dynamic_config`]), the AdminServer, the metrics endpoint, and the quorum and election
/// ports (on the address of this server's own line rather than on all interfaces). A data
/// directory given with `--data-dir` replaces dataDir. Last, `dynamicConfigFile` names the
/// membership the server starts with.
pub fn per_pod_settings(
    bind: Option<IpAddr>,
    data_dir: Option<&Path>,
    dynamic_config_file: &Path,
) -> Vec<(String, String)> {
    // A backslash is an escape character in a properties file.
    let path_value = |path: &Path| path.display().to_string().replace('\\', "\\\\");
    let mut settings = Vec::new();
    if let Some(address) = bind {
        for key in [
            "clientPortAddress",
            "admin.serverAddress",
            "metricsProvider.httpHost",
        ] {
            settings.push((key.to_owned(), address.to_string()));
        }
        settings.push(("quorumListenOnAllIPs".to_owned(), "false".to_owned()));
    }
    if let Some(dir) = data_dir {
        settings.push(("dataDir".to_owned(), path_value(dir)));
    }
    settings.push((
        "dynamicConfigFile".to_owned(),
        path_value(dynamic_config_file),
    ));
    settings
}

/// Where the membership a server starts with comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipSource {
    /// A dynamic configuration file ZooKeeper wrote on the data volume (a committed membership).
    Volume,
    /// The operator's bootstrap membership (the ConfigMap's `members`).
    Bootstrap,
}

/// The membership to start with: the newest configuration on the volume that lists `myid`,
/// unless the bootstrap membership is newer (or as new: the agent's own copy of it); else the
/// bootstrap membership if it lists `myid`. `None` when neither lists it.
///
/// A configuration on the volume that does not list the server is one in which it was removed
/// (or not yet added); starting with it would make ZooKeeper run a server outside its own
/// membership, so it is passed over. An older one that lists it is harmless: ZooKeeper takes
/// a peer's newer membership at the first contact.
pub fn choose_membership(
    myid: u8,
    bootstrap: &Membership,
    on_volume: &[Membership],
) -> Option<(Membership, MembershipSource)> {
    let newest_on_volume = on_volume
        .iter()
        .filter(|m| m.servers.contains_key(&myid))
        .max_by_key(|m| m.version);
    match newest_on_volume {
        Some(volume) if volume.version > bootstrap.version => {
            Some((volume.clone(), MembershipSource::Volume))
        }
        _ if bootstrap.servers.contains_key(&myid) => {
            Some((bootstrap.clone(), MembershipSource::Bootstrap))
        }
        Some(volume) => Some((volume.clone(), MembershipSource::Volume)),
        None => None,
    }
}

/// The version of a dynamic configuration file ZooKeeper wrote beside `runtime_config`
/// (`<name>.dynamic.<hex version>`); `None` for other files (`<name>.dynamic.next` included:
/// a proposal, not a committed membership).
pub fn dynamic_config_version(runtime_config: &Path, file_name: &str) -> Option<u64> {
    let base = runtime_config.file_name()?.to_str()?;
    let version = file_name.strip_prefix(base)?.strip_prefix(".dynamic.")?;
    u64::from_str_radix(version, 16).ok()
}

/// The dynamic configuration file a membership is written to: `<runtime config>.dynamic.<hex
/// version>`, the name ZooKeeper itself gives it (ZooKeeper reads the version from the name).
pub fn dynamic_config_path(runtime_config: &Path, membership: &Membership) -> PathBuf {
    let mut path = runtime_config.as_os_str().to_owned();
    path.push(format!(".dynamic.{}", membership.version_hex()));
    PathBuf::from(path)
}

/// The dynamic configuration file's contents: the server lines, this server's own with its
/// client address set to the bind address, if any.
pub fn dynamic_config(membership: &Membership, myid: u8, bind: Option<IpAddr>) -> String {
    let mut membership = membership.clone();
    if let (Some(address), Some(own)) = (bind, membership.servers.get_mut(&myid))
        && let Some(bound) = bind_client_address(own, address)
    {
        *own = bound;
    }
    membership.server_lines()
}

/// A `server.<myid>` value (`host:quorum:election[:role][;[address:]port]`) with its client
/// address set to `address`; `None` when the line names no client port.
pub fn bind_client_address(server: &str, address: IpAddr) -> Option<String> {
    let (peer, client) = server.split_once(';')?;
    let port = client.rsplit(':').next().filter(|p| !p.trim().is_empty())?;
    let address = match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Some(format!("{peer};{address}:{}", port.trim()))
}

/// The zoo.cfg ZooKeeper runs with: the operator's file with every line of a key in
/// `settings` removed and the settings appended, under a comment naming the pod. Without
/// settings, the operator's file unchanged.
pub fn runtime_config(original: &str, settings: &[(String, String)], pod: &str) -> String {
    if settings.is_empty() {
        return original.to_owned();
    }
    let overridden = |line: &str| {
        config_entries(line)
            .next()
            .is_some_and(|(key, _)| settings.iter().any(|(k, _)| k == key))
    };
    let mut cfg: String = original
        .lines()
        .filter(|line| !overridden(line))
        .flat_map(|line| [line, "\n"])
        .collect();
    cfg.push_str(&format!(
        "\n# Per-pod settings, added by `zooherd server` in pod {pod}.\n"
    ));
    for (key, value) in settings {
        cfg.push_str(&format!("{key}={value}\n"));
    }
    cfg
}

/// `$JAVA_HOME/bin/java`, or `java` (looked up on the PATH) without a JAVA_HOME.
pub fn java_program(java_home: Option<&str>) -> PathBuf {
    match java_home {
        Some(home) => Path::new(home).join("bin/java"),
        None => PathBuf::from("java"),
    }
}

/// The JVM's whole command line: java, the heap, Zooherd's options (with the
/// [`JAVA_SECURITY_FILE`] beside `config`), the extra options (last, so they win), the class path (ZooKeeper's jars and its conf directory, where logback.xml
/// sends the log to stdout) and the main class with the runtime zoo.cfg.
pub fn java_argv(
    java: &Path,
    zookeeper_home: &Path,
    heap: &Heap,
    extra_options: &[String],
    config: &Path,
) -> Vec<OsString> {
    let mut class_path = zookeeper_home.join("lib").into_os_string();
    class_path.push("/*:");
    class_path.push(zookeeper_home.join("conf"));
    let mut security = OsString::from("-Djava.security.properties=");
    security.push(config.with_file_name(JAVA_SECURITY_FILE));
    let mut argv: Vec<OsString> = vec![java.into()];
    argv.extend(heap.jvm_options().into_iter().map(OsString::from));
    argv.extend(BASE_JVM_OPTIONS.iter().map(OsString::from));
    argv.push(security);
    argv.extend(extra_options.iter().map(OsString::from));
    argv.extend([
        "-cp".into(),
        class_path,
        MAIN_CLASS.into(),
        config.as_os_str().to_owned(),
    ]);
    argv
}

/// Everything decided before anything is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub identity: Identity,
    pub pod_ip: Option<IpAddr>,
    pub data_dir: PathBuf,
    pub heap: Heap,
    /// Where the runtime zoo.cfg goes, and its contents.
    pub runtime_config_path: PathBuf,
    pub runtime_config: String,
    /// The membership the server starts with, where it came from, and where its dynamic
    /// configuration file goes, with the file's contents.
    pub membership: Membership,
    pub membership_source: MembershipSource,
    pub dynamic_config_path: PathBuf,
    pub dynamic_config: String,
    pub argv: Vec<OsString>,
}

/// The data directory: `--data-dir`, else zoo.cfg's dataDir.
pub fn data_dir(args: &Args, config: &str) -> Result<PathBuf, StartError> {
    match (&args.data_dir, config_value(config, "dataDir")) {
        (Some(dir), _) => Ok(dir.clone()),
        (None, Some(dir)) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        (None, _) => Err(StartError::NoDataDir {
            path: args.config.clone(),
        }),
    }
}

/// Where the runtime zoo.cfg goes: `--runtime-config`, else on the data volume.
pub fn runtime_config_path(args: &Args, config: &str) -> Result<PathBuf, StartError> {
    match &args.runtime_config {
        Some(path) => Ok(path.clone()),
        None => Ok(data_dir(args, config)?.join(RUNTIME_CONFIG_IN_DATA_DIR)),
    }
}

/// Decides everything from the arguments, the environment, the operator's zoo.cfg and
/// bootstrap membership (`members`), and the dynamic configuration files on the volume.
pub fn plan(
    args: &Args,
    env: Env,
    config: &str,
    members: &str,
    on_volume: &[Membership],
) -> Result<Plan, StartError> {
    let identity = identity(args.myid, env)?;
    let parse_ip = |var: &'static str| -> Result<Option<IpAddr>, StartError> {
        env(var)
            .map(|text| {
                text.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| invalid(var, &text, "is not an IP address"))
            })
            .transpose()
    };
    let pod_ip = parse_ip(ENV_POD_IP)?;
    let bind = parse_ip(ENV_BIND_ADDRESS)?;
    let bootstrap = Membership::parse(members).map_err(|e| StartError::BadMembership {
        path: args.members.clone(),
        error: e.to_string(),
    })?;
    let Some((membership, membership_source)) =
        choose_membership(identity.myid, &bootstrap, on_volume)
    else {
        let newest = on_volume.iter().max_by_key(|m| m.version);
        return Err(StartError::NotAMember {
            path: args.members.clone(),
            myid: identity.myid,
            pod: identity.pod_name.clone(),
            listed: format!("myids {}", list(bootstrap.servers.keys().copied())),
            volume: newest.map_or_else(String::new, |m| {
                format!(
                    ", nor does the newest configuration on the data volume (version {}, myids {})",
                    m.version_hex(),
                    list(m.servers.keys().copied())
                )
            }),
        });
    };
    let data_dir = data_dir(args, config)?;
    let runtime_config_path = runtime_config_path(args, config)?;
    let heap = decide_heap(env)?;
    let mut jvm_options = Vec::new();
    if let Some(digest) = env(ENV_SUPER_DIGEST) {
        if !digest.starts_with(&format!("{SUPERUSER}:")) || digest.contains(char::is_whitespace) {
            return Err(invalid(
                ENV_SUPER_DIGEST,
                "(hidden)",
                format!("is not {SUPERUSER}:<digest>: set it from the ensemble's superuser Secret"),
            ));
        }
        jvm_options.push(format!("-D{SUPER_DIGEST_PROPERTY}={digest}"));
    }
    jvm_options.extend(
        env(ENV_JVM_EXTRA_OPTS)
            .map(|opts| {
                opts.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    let dynamic_config_path = dynamic_config_path(&runtime_config_path, &membership);
    let dynamic_config = dynamic_config(&membership, identity.myid, bind);
    let settings = per_pod_settings(bind, args.data_dir.as_deref(), &dynamic_config_path);
    let runtime_config = runtime_config(config, &settings, &identity.pod_name);
    let zookeeper_home =
        PathBuf::from(env(ENV_ZOOKEEPER_HOME).unwrap_or_else(|| DEFAULT_ZOOKEEPER_HOME.into()));
    let java = java_program(env(ENV_JAVA_HOME).as_deref());
    let argv = java_argv(
        &java,
        &zookeeper_home,
        &heap,
        &jvm_options,
        &runtime_config_path,
    );
    Ok(Plan {
        identity,
        pod_ip,
        data_dir,
        heap,
        runtime_config_path,
        runtime_config,
        membership,
        membership_source,
        dynamic_config_path,
        dynamic_config,
        argv,
    })
}

/// Runs the entrypoint: plans, claims the data directory, writes the membership and the
/// runtime zoo.cfg and execs ZooKeeper. Returns only on failure.
pub fn run(args: &Args) -> Result<Infallible, StartError> {
    let env = |var: &str| std::env::var(var).ok().filter(|value| !value.is_empty());
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|e| StartError::UnreadableConfig {
            path: path.to_owned(),
            error: e.to_string(),
        })
    };
    let config = read(&args.config)?;
    // Who this is first: a pod without its identity is the first thing to fix.
    identity(args.myid, &env)?;
    let members = read(&args.members)?;
    let on_volume = read_dynamic_configs(&runtime_config_path(args, &config)?)?;
    let mut plan = plan(args, &env, &config, &members, &on_volume)?;
    // A volume of another server is moved aside when the ensemble serves without this one:
    // the server then starts empty and syncs from the leader (see may_reinitialise).
    if let DataDirState::ForeignMyid { found } = inspect_data_dir(&plan.data_dir, &plan.identity)? {
        let peers = peer_states(&plan.membership, plan.identity.myid);
        match may_reinitialise(plan.identity.myid, &plan.membership, &peers) {
            Err(kept) => {
                return Err(StartError::ForeignMyid {
                    data_dir: plan.data_dir.clone(),
                    found,
                    pod: plan.identity.pod_name.clone(),
                    myid: plan.identity.myid,
                    kept,
                });
            }
            Ok(serving) => {
                let log_dir = config_value(&config, "dataLogDir").map(PathBuf::from);
                let mut dirs = vec![plan.data_dir.as_path()];
                dirs.extend(log_dir.as_deref().filter(|d| *d != plan.data_dir));
                let moved = move_aside(&dirs, &found)?;
                eprintln!(
                    "zooherd server: data directory {} held myid {found}, not {} (pod {}); {serving}, so it was moved to {} and this server starts empty and syncs from the leader",
                    plan.data_dir.display(),
                    plan.identity.myid,
                    plan.identity.pod_name,
                    moved
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" and "),
                );
                plan = self::plan(args, &env, &config, &members, &[])?;
            }
        }
    }
    let formed = read_if_present(&args.formed)?.is_some_and(|text| text.trim() == "true");
    let log_dir = config_value(&config, "dataLogDir").map(PathBuf::from);
    let has_data = has_zookeeper_data(&plan.data_dir)?
        || log_dir.as_deref().map_or(Ok(false), has_zookeeper_data)?;
    if !may_start(&plan.membership, plan.identity.myid, formed, has_data) {
        return Err(StartError::EmptyVoter {
            data_dir: plan.data_dir.clone(),
            myid: plan.identity.myid,
            pod: plan.identity.pod_name.clone(),
        });
    }
    let state = claim_data_dir(&plan.data_dir, &plan.identity)?;
    write_atomically(&plan.dynamic_config_path, &plan.dynamic_config)?;
    write_atomically(&plan.runtime_config_path, &plan.runtime_config)?;
    write_atomically(
        &plan.runtime_config_path.with_file_name(JAVA_SECURITY_FILE),
        JAVA_SECURITY_PROPERTIES,
    )?;
    eprintln!(
        "zooherd server: myid {myid} of ensemble {ensemble} (uid {uid}), pod {pod}{ip}; data directory {dir} {state}; \
         members {members} (version {version}, {source}); {heap}; starting ZooKeeper with {cfg}",
        myid = plan.identity.myid,
        ensemble = plan.identity.ensemble(),
        uid = plan.identity.ensemble_uid,
        pod = plan.identity.pod_name,
        ip = plan
            .pod_ip
            .map(|ip| format!(" at {ip}"))
            .unwrap_or_default(),
        dir = plan.data_dir.display(),
        state = match state {
            DataDirState::Fresh => "claimed",
            _ => "is this server's",
        },
        members = list(plan.membership.servers.keys().copied()),
        version = plan.membership.version_hex(),
        source = match plan.membership_source {
            MembershipSource::Volume => "committed, from the data volume",
            MembershipSource::Bootstrap => "from the operator",
        },
        heap = plan.heap.describe(),
        cfg = plan.runtime_config_path.display(),
    );
    let program = plan.argv[0].clone();
    let error = Command::new(&program).args(&plan.argv[1..]).exec();
    Err(StartError::Exec {
        program: program.to_string_lossy().into_owned(),
        error: error.to_string(),
    })
}

/// The dynamic configuration files ZooKeeper wrote beside `runtime_config`, each with the
/// version from its name. A file that cannot be parsed is passed over: it was never a
/// committed membership ZooKeeper could start with either.
fn read_dynamic_configs(runtime_config: &Path) -> Result<Vec<Membership>, StartError> {
    let Some(dir) = runtime_config.parent() else {
        return Ok(Vec::new());
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("read", dir, &e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", dir, &e))?;
        let name = entry.file_name();
        let Some(version) = name
            .to_str()
            .and_then(|name| dynamic_config_version(runtime_config, name))
        else {
            continue;
        };
        let path = entry.path();
        let text = fs::read_to_string(&path).map_err(|e| io_error("read", &path, &e))?;
        if let Ok(membership) = Membership::parse(&text) {
            found.push(Membership {
                version,
                ..membership
            });
        }
    }
    Ok(found)
}

/// Reads the myid and the marker and compares them with `identity`.
fn inspect_data_dir(data_dir: &Path, identity: &Identity) -> Result<DataDirState, StartError> {
    let myid = read_if_present(&data_dir.join(MYID_FILE))?;
    let marker = read_if_present(&data_dir.join(ENSEMBLE_MARKER_FILE))?;
    Ok(check_data_dir(myid.as_deref(), marker.as_deref(), identity))
}

/// Refuses a foreign directory, and claims a fresh one.
fn claim_data_dir(data_dir: &Path, identity: &Identity) -> Result<DataDirState, StartError> {
    let state = inspect_data_dir(data_dir, identity)?;
    if let Some(error) = refusal(&state, data_dir, identity) {
        return Err(error);
    }
    if state == DataDirState::Fresh {
        // The marker first: a start interrupted between the two files then finds this
        // ensemble's marker without a myid, which is still Fresh.
        let marker = EnsembleMarker::of(identity).render();
        write_atomically(&data_dir.join(ENSEMBLE_MARKER_FILE), &marker)?;
        write_atomically(&data_dir.join(MYID_FILE), &format!("{}\n", identity.myid))?;
    }
    Ok(state)
}

fn read_if_present(path: &Path) -> Result<Option<String>, StartError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, &e)),
    }
}

/// Writes `contents` to a temporary file beside `path`, syncs it and renames it over `path`,
/// so a crash never leaves a half-written file. Creates the parent directory.
fn write_atomically(path: &Path, contents: &str) -> Result<(), StartError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| io_error("create", parent, &e))?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|e| io_error("write", &temporary, &e))?;
    fs::rename(&temporary, path).map_err(|e| io_error("write", path, &e))
}

fn io_error(action: &'static str, path: &Path, error: &io::Error) -> StartError {
    StartError::Io {
        action,
        path: path.to_owned(),
        error: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const UID: &str = "0f6c9a7e-1111-4222-8333-944445555666";

    /// The operator's zoo.cfg for ensemble `zk` in namespace `ns`.
    fn operator_cfg() -> String {
        crate::build::zoo_cfg::render("zk", "ns", &BTreeMap::new(), false)
    }

    /// The operator's bootstrap membership of voters `myids`, at `version` (as ZooKeeper
    /// writes a committed one).
    fn members(myids: &[u8], version: u64) -> Membership {
        let voters = myids.iter().copied().collect();
        let bootstrap = crate::build::zoo_cfg::bootstrap_membership(
            "zk",
            "ns",
            "cluster.local",
            &voters,
            &BTreeSet::new(),
        );
        Membership {
            version,
            ..bootstrap
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        move |var: &str| map.get(var).cloned()
    }

    fn pod_env(pod: &str) -> Vec<(&str, &str)> {
        vec![
            (ENV_POD_NAME, pod),
            (ENV_POD_NAMESPACE, "ns"),
            (ENV_ENSEMBLE_UID, UID),
        ]
    }

    fn args() -> Args {
        Args {
            config: PathBuf::from(ZOO_CFG_PATH),
            members: PathBuf::from(names::MEMBERS_PATH),
            formed: PathBuf::from(names::FORMED_PATH),
            runtime_config: None,
            myid: None,
            data_dir: None,
        }
    }

    fn identity_of(pod: &str) -> Identity {
        identity(None, &env_of(&pod_env(pod))).unwrap()
    }

    #[test]
    fn myid_is_the_ordinal_plus_one() {
        let cases = [
            ("zk-0", "zk", 1),
            ("zk-2", "zk", 3),
            ("kafka-zk-10", "kafka-zk", 11),
            ("zk-254", "zk", 255),
        ];
        for (pod, ensemble, myid) in cases {
            let identity = identity_of(pod);
            assert_eq!(identity.myid, myid, "{pod}");
            assert_eq!(identity.ensemble_name, ensemble, "{pod}");
            assert_eq!(identity.ensemble(), format!("ns/{ensemble}"));
            assert_eq!(identity.ensemble_uid, UID);
        }
    }

    #[test]
    fn explicit_myid_wins_and_allows_names_without_ordinal() {
        let env = env_of(&pod_env("zk-0"));
        assert_eq!(identity(Some(7), &env).unwrap().myid, 7);
        let env = env_of(&pod_env("standalone"));
        let identity = identity(Some(1), &env).unwrap();
        assert_eq!(
            (identity.myid, identity.ensemble_name.as_str()),
            (1, "standalone")
        );
    }

    #[test]
    fn bad_identity_names_the_variable() {
        let cases: [(Vec<(&str, &str)>, &str); 6] = [
            (vec![], "POD_NAME is not set"),
            (vec![(ENV_POD_NAME, "zk-0")], "POD_NAMESPACE is not set"),
            (
                vec![(ENV_POD_NAME, "zk-0"), (ENV_POD_NAMESPACE, "ns")],
                "ZOOHERD_ENSEMBLE_UID is not set",
            ),
            (pod_env("zk"), "POD_NAME=\"zk\" does not end in -<ordinal>"),
            (
                pod_env("zk-01"),
                "POD_NAME=\"zk-01\" does not end in -<ordinal>",
            ),
            (pod_env("zk-255"), "POD_NAME=\"zk-255\" has ordinal 255"),
        ];
        for (pairs, want) in cases {
            let error = identity(None, &env_of(&pairs)).unwrap_err();
            assert!(error.to_string().starts_with(want), "{error}");
            assert_eq!(error.exit_code(), EXIT_INVALID_INPUT);
        }
    }

    #[test]
    fn config_is_read_like_a_properties_file() {
        let cfg = "# comment\n! also a comment\n\n  dataDir = /data \nclientPort:2181\nkey value\n\
                   server.1=a:2888:3888;2181\ntickTime=1\ntickTime=2\nempty=\n";
        let entries: Vec<_> = config_entries(cfg).collect();
        assert_eq!(
            entries,
            [
                ("dataDir", "/data"),
                ("clientPort", "2181"),
                ("key", "value"),
                ("server.1", "a:2888:3888;2181"),
                ("tickTime", "1"),
                ("tickTime", "2"),
                ("empty", ""),
            ]
        );
        assert_eq!(config_value(cfg, "tickTime"), Some("2"));
        assert_eq!(config_value(cfg, "missing"), None);
    }

    #[test]
    fn data_dir_states() {
        let me = identity_of("zk-1");
        let mine = EnsembleMarker::of(&me).render();
        let other = EnsembleMarker {
            uid: "another-uid".into(),
            ensemble: "prod/zk".into(),
        }
        .render();
        let foreign_ensemble = DataDirState::ForeignEnsemble {
            found: "prod/zk (uid another-uid)".into(),
        };
        let cases = [
            (None, None, DataDirState::Fresh),
            (Some("2\n"), None, DataDirState::Fresh),
            (None, Some(mine.as_str()), DataDirState::Fresh),
            (Some("2"), Some(mine.as_str()), DataDirState::Matches),
            (Some(" 2 \n"), Some(mine.as_str()), DataDirState::Matches),
            (
                Some("3\n"),
                Some(mine.as_str()),
                DataDirState::ForeignMyid { found: "3".into() },
            ),
            (
                Some("3\n"),
                None,
                DataDirState::ForeignMyid { found: "3".into() },
            ),
            (
                Some("junk"),
                None,
                DataDirState::ForeignMyid {
                    found: "junk".into(),
                },
            ),
            (None, Some(other.as_str()), foreign_ensemble.clone()),
            (Some("2"), Some(other.as_str()), foreign_ensemble.clone()),
            (Some("3"), Some(other.as_str()), foreign_ensemble),
            (
                Some("2"),
                Some("garbage"),
                DataDirState::ForeignEnsemble {
                    found: "unknown (the zooherd-ensemble file names no uid)".into(),
                },
            ),
        ];
        for (myid, marker, want) in cases {
            assert_eq!(
                check_data_dir(myid, marker, &me),
                want,
                "{myid:?} {marker:?}"
            );
        }
    }

    #[test]
    fn marker_round_trips() {
        let marker = EnsembleMarker::of(&identity_of("zk-0"));
        assert_eq!(marker.ensemble, "ns/zk");
        assert_eq!(EnsembleMarker::parse(&marker.render()), Some(marker));
        assert_eq!(EnsembleMarker::parse("uid=\n"), None);
    }

    #[test]
    fn refusals_say_what_to_do_with_distinct_exit_codes() {
        let me = identity_of("zk-1");
        let dir = Path::new("/var/lib/zookeeper/data");
        assert_eq!(refusal(&DataDirState::Fresh, dir, &me), None);
        assert_eq!(refusal(&DataDirState::Matches, dir, &me), None);

        let foreign_myid =
            refusal(&DataDirState::ForeignMyid { found: "3".into() }, dir, &me).unwrap();
        assert_eq!(foreign_myid.exit_code(), EXIT_FOREIGN_MYID);
        assert_eq!(
            foreign_myid.to_string(),
            "refusing to start: data directory /var/lib/zookeeper/data holds myid 3, but pod zk-1 is myid 2, \
             and it is kept because nothing showed that the ensemble serves without this server; \
             the volume is another server's and may hold data the others lack: bring the other voters back (the directory is then moved aside, never deleted, and this server rejoins), or give the volume back to the server it belongs to"
        );

        let state = DataDirState::ForeignEnsemble {
            found: "prod/zk (uid x)".into(),
        };
        let foreign_ensemble = refusal(&state, dir, &me).unwrap();
        assert_eq!(foreign_ensemble.exit_code(), EXIT_FOREIGN_ENSEMBLE);
        let line = foreign_ensemble.to_string();
        assert!(
            line.starts_with(&format!(
                "refusing to start: data directory /var/lib/zookeeper/data belongs to ensemble prod/zk (uid x), not ns/zk (uid {UID})"
            )),
            "{line}"
        );
        assert!(line.contains("remove /var/lib/zookeeper/data/zooherd-ensemble"));
        assert!(!line.contains('\n'));
        let codes = [
            EXIT_INVALID_INPUT,
            EXIT_IO,
            EXIT_FOREIGN_MYID,
            EXIT_FOREIGN_ENSEMBLE,
            EXIT_EXEC_FAILED,
        ];
        for (i, code) in codes.iter().enumerate() {
            assert!(*code != 0 && !codes[i + 1..].contains(code), "{code}");
        }
    }

    #[test]
    fn help_lists_every_variable_and_exit_code() {
        use clap::CommandFactory as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let help = Cli::command().render_long_help().to_string();
        for var in [
            ENV_POD_NAME,
            ENV_POD_NAMESPACE,
            ENV_POD_IP,
            ENV_ENSEMBLE_UID,
            ENV_BIND_ADDRESS,
            ENV_MEMORY_LIMIT,
            ENV_JVM_HEAP,
            ENV_JVM_HEAP_PERCENT,
            ENV_JVM_EXTRA_OPTS,
            ENV_ZOOKEEPER_HOME,
            ENV_JAVA_HOME,
        ] {
            assert!(help.contains(var), "{var}");
        }
        for (code, what) in [
            (EXIT_INVALID_INPUT, "bad setting"),
            (EXIT_IO, "file error"),
            (EXIT_FOREIGN_MYID, "data volume of another server"),
            (EXIT_FOREIGN_ENSEMBLE, "data volume of another ensemble"),
            (EXIT_EXEC_FAILED, "no java"),
        ] {
            assert!(help.contains(&format!("{code} {what}")), "{code} {what}");
        }
        assert!(help.contains(&format!(
            "1-{MAX_HEAP_PERCENT} (default {DEFAULT_HEAP_PERCENT})"
        )));
        assert!(help.contains(DEFAULT_ZOOKEEPER_HOME));
    }

    #[test]
    fn quantities() {
        let cases = [
            ("1048576", 1 << 20),
            ("512Mi", 512 << 20),
            ("1Gi", 1 << 30),
            ("1.5Gi", 3 << 29),
            ("2Ki", 2048),
            ("1G", 1_000_000_000),
            ("500M", 500_000_000),
            ("1k", 1000),
            (" 256Mi ", 256 << 20),
            ("0.5Mi", 1 << 19),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_quantity(text), Ok(bytes), "{text}");
        }
        for text in [
            "", "Mi", "-1Gi", "1.Gi", ".5Gi", "1GB", "1gi", "1e9", "12x", "1.2.3", "100m",
        ] {
            assert!(parse_quantity(text).is_err(), "{text:?}");
        }
        assert_eq!(
            parse_quantity("20Ei"),
            Err("is too large".to_owned()),
            "beyond u64"
        );
    }

    #[test]
    fn heap_from_the_environment() {
        let gib = (1u64 << 30).to_string();
        let cases: [(Vec<(&str, &str)>, Heap); 6] = [
            (vec![], Heap::ShareOfVisibleMemory { percent: 50 }),
            (
                vec![(ENV_JVM_HEAP_PERCENT, "75")],
                Heap::ShareOfVisibleMemory { percent: 75 },
            ),
            (
                vec![(ENV_MEMORY_LIMIT, &gib)],
                Heap::ShareOfLimit {
                    mib: 512,
                    percent: 50,
                    limit_bytes: 1 << 30,
                },
            ),
            (
                vec![(ENV_MEMORY_LIMIT, &gib), (ENV_JVM_HEAP_PERCENT, "25")],
                Heap::ShareOfLimit {
                    mib: 256,
                    percent: 25,
                    limit_bytes: 1 << 30,
                },
            ),
            (
                vec![(ENV_MEMORY_LIMIT, &gib), (ENV_JVM_HEAP, "768Mi")],
                Heap::Explicit { mib: 768 },
            ),
            (vec![(ENV_JVM_HEAP, "1.5Gi")], Heap::Explicit { mib: 1536 }),
        ];
        for (pairs, want) in cases {
            assert_eq!(decide_heap(&env_of(&pairs)), Ok(want), "{pairs:?}");
        }
    }

    #[test]
    fn bad_heap_settings_name_the_variable() {
        let cases = [
            (
                (ENV_JVM_HEAP, "lots"),
                "ZOOHERD_JVM_HEAP=\"lots\" is not a memory quantity",
            ),
            (
                (ENV_JVM_HEAP, "1000"),
                "ZOOHERD_JVM_HEAP=\"1000\" is less than 1 MiB",
            ),
            (
                (ENV_MEMORY_LIMIT, "1Gb"),
                "ZOOHERD_MEMORY_LIMIT=\"1Gb\" is not a memory quantity",
            ),
            (
                (ENV_MEMORY_LIMIT, "1000"),
                "ZOOHERD_MEMORY_LIMIT=\"1000\" leaves less than 1 MiB",
            ),
            (
                (ENV_JVM_HEAP_PERCENT, "0"),
                "ZOOHERD_JVM_HEAP_PERCENT=\"0\" is not a whole percentage",
            ),
            (
                (ENV_JVM_HEAP_PERCENT, "95"),
                "ZOOHERD_JVM_HEAP_PERCENT=\"95\" is not a whole percentage",
            ),
            (
                (ENV_JVM_HEAP_PERCENT, "half"),
                "ZOOHERD_JVM_HEAP_PERCENT=\"half\" is not a whole percentage",
            ),
        ];
        for (pair, want) in cases {
            let error = decide_heap(&env_of(&[pair])).unwrap_err();
            assert!(error.to_string().starts_with(want), "{error}");
            assert_eq!(error.exit_code(), EXIT_INVALID_INPUT);
        }
    }

    #[test]
    fn heap_options() {
        assert_eq!(
            Heap::Explicit { mib: 512 }.jvm_options(),
            ["-Xms512m", "-Xmx512m"]
        );
        assert_eq!(
            Heap::ShareOfVisibleMemory { percent: 50 }.jvm_options(),
            ["-XX:InitialRAMPercentage=50", "-XX:MaxRAMPercentage=50"]
        );
    }

    #[test]
    fn per_pod_lines() {
        let cfg = operator_cfg();
        let dynamic = Path::new("/var/lib/zookeeper/data/zooherd/zoo.cfg.dynamic.0");
        assert_eq!(
            per_pod_settings(None, None, dynamic),
            [(
                "dynamicConfigFile".to_owned(),
                dynamic.display().to_string()
            )]
        );
        assert_eq!(runtime_config(&cfg, &[], "zk-1"), cfg);

        let bind: IpAddr = "127.1.2.3".parse().unwrap();
        let settings = per_pod_settings(Some(bind), Some(Path::new("/tmp/member-2/data")), dynamic);
        let runtime = runtime_config(&cfg, &settings, "zk-1");
        let want = [
            ("clientPortAddress", "127.1.2.3"),
            ("admin.serverAddress", "127.1.2.3"),
            ("metricsProvider.httpHost", "127.1.2.3"),
            ("quorumListenOnAllIPs", "false"),
            ("dataDir", "/tmp/member-2/data"),
            (
                "dynamicConfigFile",
                "/var/lib/zookeeper/data/zooherd/zoo.cfg.dynamic.0",
            ),
        ];
        for (key, value) in want {
            let values: Vec<_> = config_entries(&runtime)
                .filter(|&(k, _)| k == key)
                .collect();
            assert_eq!(values, [(key, value)], "{key} once, with the pod's value");
        }
        assert!(runtime.contains("# Per-pod settings, added by `zooherd server` in pod zk-1.\n"));
        // Everything else is the operator's, in the operator's order.
        let others = |cfg: &str| -> Vec<(String, String)> {
            config_entries(cfg)
                .filter(|(k, _)| !want.iter().any(|(w, _)| w == k))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        assert_eq!(others(&runtime), others(&cfg));
    }

    #[test]
    fn the_dynamic_file_binds_the_own_client_address() {
        let membership = members(&[1, 2], 0);
        let bind: IpAddr = "127.1.2.3".parse().unwrap();
        assert_eq!(
            dynamic_config(&membership, 2, Some(bind)),
            "server.1=zk-0.zk-headless.ns.svc.cluster.local:2888:3888:participant;2181\n\
             server.2=zk-1.zk-headless.ns.svc.cluster.local:2888:3888:participant;127.1.2.3:2181\n"
        );
        assert_eq!(
            dynamic_config(&membership, 2, None),
            membership.server_lines()
        );
    }

    #[test]
    fn the_newest_membership_that_lists_the_server() {
        use MembershipSource::{Bootstrap, Volume};
        // (myid, bootstrap myids and version, volume files as (myids, version), want)
        type Case = (
            u8,
            (&'static [u8], u64),
            Vec<(&'static [u8], u64)>,
            Option<(u64, MembershipSource)>,
        );
        let cases: Vec<Case> = vec![
            // A new server: the operator's membership.
            (1, (&[1, 2, 3], 0), vec![], Some((0, Bootstrap))),
            // Restarted on the agent's own copy of it: the same.
            (
                1,
                (&[1, 2, 3], 0),
                vec![(&[1, 2, 3], 0)],
                Some((0, Bootstrap)),
            ),
            // ZooKeeper committed newer ones: the newest.
            (
                1,
                (&[1, 2, 3], 0),
                vec![(&[1, 2, 3], 0x100000000), (&[1], 0x100000003)],
                Some((0x100000003, Volume)),
            ),
            // Joining: not yet added, it synced a membership that does not list it.
            (
                4,
                (&[1, 2, 3, 4], 0),
                vec![(&[1, 2, 3, 4], 0), (&[1, 2, 3], 0x100000009)],
                Some((0, Bootstrap)),
            ),
            // Removed, then added back: its last membership that lists it; the ensemble's
            // newer one replaces it at the first contact.
            (
                3,
                (&[1, 2, 3], 0),
                vec![(&[1, 2, 3], 0x100000000), (&[1, 2], 0x100000004)],
                Some((0x100000000, Volume)),
            ),
            // The operator's lists it no longer but the volume does: the volume's.
            (
                3,
                (&[1, 2], 0),
                vec![(&[1, 2, 3], 0x100000000)],
                Some((0x100000000, Volume)),
            ),
            // An operator's membership newer than the volume's wins (Zooherd writes version 0
            // today).
            (
                1,
                (&[1, 2, 3], 0x200000005),
                vec![(&[1, 2], 0x100000003)],
                Some((0x200000005, Bootstrap)),
            ),
            // Nobody lists it.
            (5, (&[1, 2, 3], 0), vec![(&[1, 2, 3], 0x100000004)], None),
        ];
        for (myid, (boot, boot_version), volume, want) in cases {
            let bootstrap = members(boot, boot_version);
            let on_volume: Vec<Membership> = volume.iter().map(|(m, v)| members(m, *v)).collect();
            let got = choose_membership(myid, &bootstrap, &on_volume).map(|(m, s)| (m.version, s));
            assert_eq!(
                got, want,
                "myid {myid}, bootstrap {boot:?}@{boot_version:x}, volume {volume:?}"
            );
        }
    }

    #[test]
    fn a_joining_server_starts_unable_to_vote() {
        // 3 -> 4: the operator lists server 4 as an observer. Its volume holds the committed
        // membership it synced before a restart (without it), and the agent's copy of an older
        // bootstrap membership that listed it as a participant.
        let bootstrap = crate::build::zoo_cfg::bootstrap_membership(
            "zk",
            "ns",
            "cluster.local",
            &BTreeSet::from([1, 2, 3]),
            &BTreeSet::from([4]),
        );
        let on_volume = [members(&[1, 2, 3, 4], 0), members(&[1, 2, 3], 0x100000009)];
        for volume in [&on_volume[..], &[]] {
            let plan = plan(
                &args(),
                &env_of(&pod_env("zk-3")),
                &operator_cfg(),
                &bootstrap.render(),
                volume,
            )
            .unwrap();
            assert_eq!(plan.membership_source, MembershipSource::Bootstrap);
            assert_eq!(plan.membership.voters(), BTreeSet::from([1, 2, 3]));
            assert!(
                plan.dynamic_config.ends_with(
                    "server.4=zk-3.zk-headless.ns.svc.cluster.local:2888:3888:observer;2181\n"
                ),
                "{}",
                plan.dynamic_config
            );
        }
    }

    #[test]
    fn dynamic_file_names() {
        let runtime = Path::new("/data/zooherd/zoo.cfg");
        let cases = [
            ("zoo.cfg.dynamic.100000003", Some(0x100000003)),
            ("zoo.cfg.dynamic.0", Some(0)),
            ("zoo.cfg.dynamic.next", None),
            ("zoo.cfg", None),
            ("zoo.cfg.tmp", None),
            ("other.cfg.dynamic.1", None),
            ("zoo.cfg.dynamic.1.tmp", None),
        ];
        for (name, want) in cases {
            assert_eq!(dynamic_config_version(runtime, name), want, "{name}");
        }
        assert_eq!(
            dynamic_config_path(runtime, &members(&[1], 0x100000003)),
            Path::new("/data/zooherd/zoo.cfg.dynamic.100000003")
        );
    }

    #[test]
    fn client_address_in_the_own_server_line() {
        let v4: IpAddr = "127.0.0.5".parse().unwrap();
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let cases = [
            ("h:2888:3888;2181", v4, Some("h:2888:3888;127.0.0.5:2181")),
            (
                "h:2888:3888:participant;0.0.0.0:2181",
                v4,
                Some("h:2888:3888:participant;127.0.0.5:2181"),
            ),
            ("h:2888:3888;2181", v6, Some("h:2888:3888;[fd00::5]:2181")),
            ("h:2888:3888", v4, None),
            ("h:2888:3888;", v4, None),
        ];
        for (server, address, want) in cases {
            assert_eq!(
                bind_client_address(server, address).as_deref(),
                want,
                "{server}"
            );
        }
    }

    #[test]
    fn java_command_line() {
        let argv = java_argv(
            &java_program(Some("/usr/lib/jvm/java-17")),
            Path::new("/opt/zookeeper"),
            &Heap::Explicit { mib: 512 },
            &[
                "-Dzookeeper.log.level=DEBUG".to_owned(),
                "-Xmx1g".to_owned(),
            ],
            Path::new("/tmp/zooherd/zoo.cfg"),
        );
        assert_eq!(
            argv,
            [
                "/usr/lib/jvm/java-17/bin/java",
                "-Xms512m",
                "-Xmx512m",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.security.properties=/tmp/zooherd/java.security",
                "-Dzookeeper.log.level=DEBUG",
                "-Xmx1g",
                "-cp",
                "/opt/zookeeper/lib/*:/opt/zookeeper/conf",
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                "/tmp/zooherd/zoo.cfg",
            ]
        );
        assert_eq!(java_program(None), Path::new("java"));
    }

    #[test]
    fn plan_for_a_pod() {
        let mut pairs = pod_env("zk-2");
        pairs.extend([
            (ENV_POD_IP, "10.1.2.3"),
            (ENV_MEMORY_LIMIT, "2147483648"),
            (ENV_JVM_EXTRA_OPTS, " -Dfoo=1   -Dbar=2 "),
            (ENV_JAVA_HOME, "/jre"),
        ]);
        pairs.push((ENV_SUPER_DIGEST, "zooherd:u/lJX/7cIAvZtP9PqwTdm6krtSQ="));
        let bootstrap = members(&[1, 2, 3], 0).render();
        let plan = plan(&args(), &env_of(&pairs), &operator_cfg(), &bootstrap, &[]).unwrap();
        assert_eq!(plan.identity.myid, 3);
        assert_eq!(plan.pod_ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(plan.data_dir, Path::new("/var/lib/zookeeper/data"));
        assert_eq!(
            plan.runtime_config_path,
            Path::new("/var/lib/zookeeper/data/zooherd/zoo.cfg"),
            "on the data volume, where ZooKeeper's dynamic files outlive the pod"
        );
        assert_eq!(
            plan.runtime_config,
            format!(
                "{}\n# Per-pod settings, added by `zooherd server` in pod zk-2.\n\
                 dynamicConfigFile=/var/lib/zookeeper/data/zooherd/zoo.cfg.dynamic.0\n",
                operator_cfg()
            ),
            "only the membership's file per pod in Kubernetes"
        );
        assert_eq!(plan.membership_source, MembershipSource::Bootstrap);
        assert_eq!(plan.dynamic_config, members(&[1, 2, 3], 0).server_lines());
        assert_eq!(
            plan.argv,
            [
                "/jre/bin/java",
                "-Xms1024m",
                "-Xmx1024m",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.security.properties=/var/lib/zookeeper/data/zooherd/java.security",
                "-Dzookeeper.DigestAuthenticationProvider.superDigest=zooherd:u/lJX/7cIAvZtP9PqwTdm6krtSQ=",
                "-Dfoo=1",
                "-Dbar=2",
                "-cp",
                "/opt/zookeeper/lib/*:/opt/zookeeper/conf",
                MAIN_CLASS,
                "/var/lib/zookeeper/data/zooherd/zoo.cfg",
            ]
        );
    }

    #[test]
    fn plan_with_overrides() {
        let mut pairs = pod_env("zk-0");
        pairs.extend([(ENV_BIND_ADDRESS, "127.0.0.9"), (ENV_ZOOKEEPER_HOME, "/zk")]);
        let args = Args {
            data_dir: Some(PathBuf::from("/scratch/data")),
            runtime_config: Some(PathBuf::from("/scratch/zoo.cfg")),
            ..args()
        };
        let bootstrap = members(&[1, 2, 3], 0).render();
        let plan = plan(&args, &env_of(&pairs), &operator_cfg(), &bootstrap, &[]).unwrap();
        assert_eq!(plan.data_dir, Path::new("/scratch/data"));
        assert_eq!(
            config_value(&plan.runtime_config, "dataDir"),
            Some("/scratch/data")
        );
        assert_eq!(
            config_value(&plan.runtime_config, "clientPortAddress"),
            Some("127.0.0.9")
        );
        assert_eq!(plan.argv[0], "java");
        assert_eq!(plan.argv.last().unwrap(), "/scratch/zoo.cfg");
        assert_eq!(
            plan.dynamic_config_path,
            Path::new("/scratch/zoo.cfg.dynamic.0")
        );
        assert!(plan.dynamic_config.contains("participant;127.0.0.9:2181\n"));
        assert!(plan.argv.contains(&OsString::from("/zk/lib/*:/zk/conf")));
    }

    #[test]
    fn plan_refuses_bad_input_with_one_line() {
        let cfg = operator_cfg();
        let with = |extra: (&'static str, &'static str)| {
            let mut pairs = pod_env("zk-0");
            pairs.push(extra);
            pairs
        };
        let cases = [
            (
                pod_env("zk-3"),
                cfg.clone(),
                "/etc/zooherd/members has no server.4 line, so myid 4 (pod zk-3) is not a member (it lists myids 1, 2, 3); the pod's ordinal",
            ),
            (
                pod_env("zk-0"),
                "clientPort=2181\n".to_owned(),
                "/etc/zooherd/zoo.cfg sets no dataDir",
            ),
            (
                with((ENV_SUPER_DIGEST, "u/lJX/7cIAvZtP9PqwTdm6krtSQ=")),
                cfg.clone(),
                "ZOOHERD_SUPER_DIGEST=\"(hidden)\" is not zooherd:<digest>",
            ),
            (
                with((ENV_POD_IP, "pod-ip")),
                cfg.clone(),
                "POD_IP=\"pod-ip\" is not an IP address",
            ),
            (
                with((ENV_BIND_ADDRESS, "localhost")),
                cfg.clone(),
                "ZOOHERD_BIND_ADDRESS=\"localhost\" is not an IP address",
            ),
            (
                with((ENV_JVM_HEAP, "big")),
                cfg.clone(),
                "ZOOHERD_JVM_HEAP=\"big\" is not a memory quantity",
            ),
        ];
        let bootstrap = members(&[1, 2, 3], 0).render();
        for (pairs, cfg, want) in cases {
            let error = plan(&args(), &env_of(&pairs), &cfg, &bootstrap, &[]).unwrap_err();
            let line = error.to_string();
            assert!(line.starts_with(want), "{line}");
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(error.exit_code(), EXIT_INVALID_INPUT);
        }
    }

    #[test]
    fn another_servers_volume_is_reinitialised_only_while_a_quorum_serves_without_it() {
        use MemberState::{Follower as F, Leader as L, NotServing as N, Unreachable as U};
        let three = members(&[1, 2, 3], 0x100000004);
        let five = members(&[1, 2, 3, 4, 5], 0x100000004);
        // myid, membership, answers of the others by myid, allowed.
        type Case<'a> = (u8, &'a Membership, Vec<(u8, MemberState)>, bool);
        let cases: Vec<Case> = vec![
            (2, &three, vec![(1, F), (3, L)], true),
            (2, &three, vec![(1, N), (3, L)], false),
            (2, &three, vec![(1, U), (3, U)], false),
            (2, &three, vec![(1, F), (3, F)], false),
            (2, &three, vec![(1, L), (3, L)], false),
            (2, &five, vec![(1, F), (3, L), (4, F), (5, U)], true),
            (2, &five, vec![(1, F), (3, L), (4, U), (5, U)], false),
            // A joining server (not a voter yet): the voters' own quorum.
            (4, &three, vec![(1, F), (2, F), (3, L)], true),
        ];
        for (myid, membership, answers, allowed) in cases {
            let peers: BTreeMap<u8, MemberState> = answers.iter().copied().collect();
            let decision = may_reinitialise(myid, membership, &peers);
            assert_eq!(
                decision.is_ok(),
                allowed,
                "{myid} {answers:?}: {decision:?}"
            );
        }
        assert_eq!(
            may_reinitialise(2, &three, &BTreeMap::from([(1, F), (3, L)])),
            Ok("voters 1, 3 serve, a quorum of 1, 2, 3 without this server".to_owned())
        );
        assert_eq!(
            may_reinitialise(2, &three, &BTreeMap::from([(1, U), (3, L)])),
            Err("the other voters do not serve as a quorum without it (serving: 3; needed 2 of 1, 2, 3 under one leader)".to_owned())
        );
    }

    #[test]
    fn moving_aside_keeps_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir_all(data.join("version-2")).unwrap();
        fs::write(data.join("myid"), "3\n").unwrap();
        fs::write(data.join("version-2/snapshot.0"), "snap").unwrap();
        fs::create_dir_all(data.join("stale-1-myid-5")).unwrap();
        let moved = move_aside(&[&data], "3").unwrap();
        assert_eq!(moved.len(), 1);
        let stale = &moved[0];
        assert!(
            stale
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("stale-")
        );
        assert!(stale.to_string_lossy().ends_with("-myid-3"));
        assert_eq!(fs::read_to_string(stale.join("myid")).unwrap(), "3\n");
        assert_eq!(
            fs::read_to_string(stale.join("version-2/snapshot.0")).unwrap(),
            "snap"
        );
        assert!(
            data.join("stale-1-myid-5").is_dir(),
            "an earlier one stays where it was"
        );
        let left: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "only the stale directories: {left:?}");
    }

    #[test]
    fn claiming_a_data_dir_writes_myid_and_marker_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let me = identity_of("zk-1");
        assert_eq!(claim_data_dir(&dir, &me), Ok(DataDirState::Fresh));
        assert_eq!(fs::read_to_string(dir.join(MYID_FILE)).unwrap(), "2\n");
        let marker = fs::read_to_string(dir.join(ENSEMBLE_MARKER_FILE)).unwrap();
        assert_eq!(
            EnsembleMarker::parse(&marker),
            Some(EnsembleMarker::of(&me))
        );
        assert_eq!(claim_data_dir(&dir, &me), Ok(DataDirState::Matches));

        let other_server = identity_of("zk-2");
        let error = claim_data_dir(&dir, &other_server).unwrap_err();
        assert_eq!(error.exit_code(), EXIT_FOREIGN_MYID);
        let other_ensemble = Identity {
            ensemble_uid: "new-uid".into(),
            ..me
        };
        let error = claim_data_dir(&dir, &other_ensemble).unwrap_err();
        assert_eq!(error.exit_code(), EXIT_FOREIGN_ENSEMBLE);
        assert_eq!(
            fs::read_to_string(dir.join(MYID_FILE)).unwrap(),
            "2\n",
            "untouched"
        );
    }

    #[test]
    fn an_unwritable_data_dir_is_an_io_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, "").unwrap();
        let error = claim_data_dir(&file.join("data"), &identity_of("zk-0")).unwrap_err();
        assert_eq!(error.exit_code(), EXIT_IO);
        assert!(error.to_string().starts_with("cannot "), "{error}");
    }

    #[test]
    fn an_empty_volume_never_starts_as_a_voter_of_a_formed_ensemble() {
        let membership = Membership::parse(
            "server.1=a:2888:3888:participant;2181\nserver.2=b:2888:3888:participant;2181\n\
             server.3=c:2888:3888:observer;2181\nversion=0\n",
        )
        .unwrap();
        // (myid, formed, has data, may start)
        let cases = [
            (2, true, false, false),
            (2, true, true, true),
            // Not formed yet: the initial servers form it with empty volumes.
            (2, false, false, true),
            // A joining server (an observer here) starts empty and syncs.
            (3, true, false, true),
        ];
        for (myid, formed, has_data, want) in cases {
            assert_eq!(
                may_start(&membership, myid, formed, has_data),
                want,
                "myid {myid} formed {formed} data {has_data}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_zookeeper_data(dir.path()).unwrap());
        fs::create_dir_all(dir.path().join("version-2")).unwrap();
        fs::write(dir.path().join("version-2/acceptedEpoch"), "1").unwrap();
        assert!(
            !has_zookeeper_data(dir.path()).unwrap(),
            "epoch files are not data"
        );
        fs::write(dir.path().join("version-2/log.100000001"), "x").unwrap();
        assert!(has_zookeeper_data(dir.path()).unwrap());
        assert_eq!(
            StartError::EmptyVoter {
                data_dir: dir.path().to_owned(),
                myid: 2,
                pod: "zk-1".into()
            }
            .exit_code(),
            EXIT_EMPTY_VOTER
        );
    }
}
