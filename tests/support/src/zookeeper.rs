//! Real Apache ZooKeeper ensembles of 1, 3, 5... servers on this machine, for the tests.
//!
//! Every member gets its own loopback address `127.<a>.<b>.<myid>`, so every server uses the
//! standard ports (client 2181, quorum 2888, election 3888, AdminServer 8080, metrics 7000).
//! The block `127.<a>.<b>.0/24` is claimed with a lock file (`$TMPDIR/zooherd-zk-ips/`), so
//! parallel tests, test binaries and checkouts never share one, and it is checked by binding
//! every port first. Members are indexed from 0: member `i` has myid `i + 1`.
//!
//! ```ignore
//! let mut zk = ZkEnsemble::start(3)?;
//! let leader = zk.wait_for_quorum(Duration::from_secs(60)).await?;
//! zk.kill(leader)?;
//! ```
//!
//! Members run `java ... QuorumPeerMain zoo.cfg` from [`zookeeper_home()`] by default; a
//! [`Launcher`] replaces that command (to run members through `zooherd server`, say).
//! Processes die with the test process (see [`super::process`]); dropping the ensemble kills
//! them and removes their directories (set `ZOOHERD_KEEP_TEST_DIRS=1` to keep them). When the
//! drop happens during a panic, the tail of every member's log is printed.
//!
//! Nothing a server answers makes these helpers panic: probes return [`Probe`], waits return
//! [`WaitTimeout`].

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;
use serde_json::Value;
use tempfile::TempDir;
use zooherd::quorum::Myid;

use super::member_networks::{self, MemberNetworks};
use super::process;

pub const CLIENT_PORT: u16 = 2181;
pub const QUORUM_PORT: u16 = 2888;
pub const ELECTION_PORT: u16 = 3888;
pub const ADMIN_PORT: u16 = 8080;
pub const METRICS_PORT: u16 = 7000;
const PORTS: [u16; 5] = [
    CLIENT_PORT,
    QUORUM_PORT,
    ELECTION_PORT,
    ADMIN_PORT,
    METRICS_PORT,
];

/// How long [`ZkEnsemble::stop`] waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// The ZooKeeper home that `tests/cluster/setup.sh` lays out (`lib/*.jar`,
/// `conf/logback.xml`): `ZOOHERD_ZOOKEEPER_HOME`, or `~/.cache/zooherd/zookeeper-<version>`.
pub fn zookeeper_home() -> PathBuf {
    super::tool_path(
        "ZOOHERD_ZOOKEEPER_HOME",
        format!("zookeeper-{}", super::version("ZOOKEEPER_VERSION")),
    )
}

/// `$JAVA_HOME/bin/java` if there is one, else `java` from the PATH.
pub fn java_path() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| Path::new(&home).join("bin/java"))
        .filter(|java| java.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// Runs ZooKeeper's own command-line client (`ZooKeeperMain`, what `zkCli.sh` runs) with
/// `command` against the TLS client port `server` (`host:port`), as a Java client configured
/// for TLS does: the Netty socket, `zookeeper.client.secure`, and a trust store holding only
/// `ca_file`, checking the server's host name if `verify_host`; with `identity` (a PEM key
/// store: key and certificate), it presents that certificate. Returns whether it exited 0, and
/// what it printed.
pub fn java_tls_client(
    ca_file: &Path,
    identity: Option<&Path>,
    server: &str,
    verify_host: bool,
    command: &[&str],
) -> (bool, String) {
    let home = zookeeper_home();
    let mut class_path = home.join("lib").into_os_string();
    class_path.push("/*:");
    class_path.push(home.join("conf"));
    let mut java = Command::new("timeout");
    java.arg("30")
        .arg(java_path())
        .arg("-cp")
        .arg(class_path)
        .arg("-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty")
        .arg("-Dzookeeper.client.secure=true")
        .arg(format!(
            "-Dzookeeper.ssl.trustStore.location={}",
            ca_file.display()
        ))
        .arg("-Dzookeeper.ssl.trustStore.type=PEM")
        .arg(format!(
            "-Dzookeeper.ssl.hostnameVerification={verify_host}"
        ));
    if let Some(key_store) = identity {
        java.arg(format!(
            "-Dzookeeper.ssl.keyStore.location={}",
            key_store.display()
        ))
        .arg("-Dzookeeper.ssl.keyStore.type=PEM");
    }
    let output = java
        .arg("org.apache.zookeeper.ZooKeeperMain")
        .args(["-timeout", "5000", "-server", server])
        .args(command)
        .stdin(Stdio::null())
        .output()
        .expect("run ZooKeeperMain");
    super::outcome(&output)
}

/// Voters needed for a quorum of `voters`.
pub fn quorum_size(voters: usize) -> usize {
    voters / 2 + 1
}

/// Writes a hosts file (the format of /etc/hosts) mapping each name to its address, plus
/// `localhost` and this machine's hostname to 127.0.0.1. Give it to a JVM with
/// `-Djdk.net.hosts.file=<path>` to resolve names such as
/// `zk-0.zk-headless.ns.svc.cluster.local` without DNS.
pub fn write_hosts_file(path: &Path, entries: &[(String, Ipv4Addr)]) -> io::Result<()> {
    let mut text = String::from("127.0.0.1 localhost\n");
    if let Ok(hostname) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let hostname = hostname.trim();
        if !hostname.is_empty() && hostname != "localhost" {
            text.push_str(&format!("127.0.0.1 {hostname}\n"));
        }
    }
    for (name, ip) in entries {
        text.push_str(&format!("{ip} {name}\n"));
    }
    fs::write(path, text)
}

/// One server of the ensemble, as listed in every member's zoo.cfg.
#[derive(Clone, Debug)]
pub struct ServerAddress {
    pub myid: u8,
    /// The name in the `server.<myid>=` line: the address, or a name from
    /// [`ZkEnsembleBuilder::hostnames`].
    pub host: String,
    pub ip: Ipv4Addr,
}

/// Everything a [`Launcher`] needs to know about the member it starts.
#[derive(Clone, Debug)]
pub struct MemberSpec {
    /// Position in the ensemble, from 0.
    pub index: usize,
    pub myid: u8,
    pub ip: Ipv4Addr,
    /// This member's name in the server lines.
    pub host: String,
    /// The member's own directory (working directory of its process).
    pub dir: PathBuf,
    /// `dataDir`; holds the `myid` file.
    pub data_dir: PathBuf,
    /// The zoo.cfg written for this member.
    pub config_file: PathBuf,
    /// Where the process's stdout and stderr go (appended to across restarts).
    pub log_file: PathBuf,
    /// The hosts file that maps the server names to addresses, when names are used.
    pub hosts_file: Option<PathBuf>,
    /// All servers of the ensemble, this one included.
    pub servers: Vec<ServerAddress>,
    /// More JVM options for this member (the default launcher appends them).
    pub jvm_options: Vec<String>,
    /// With [`ZkEnsembleBuilder::reconfig`]: the dynamic configuration file that holds the
    /// server lines (zoo.cfg then names it instead of listing the servers).
    pub dynamic_config_file: Option<PathBuf>,
}

/// Makes the command that runs one member in the foreground. The ensemble then sets its
/// working directory (the member's dir), stdio (the member's log file), process group and
/// parent-death signal. Closures `Fn(&MemberSpec) -> io::Result<Command>` are launchers.
pub trait Launcher: Send + Sync {
    fn command(&self, member: &MemberSpec) -> io::Result<Command>;
}

impl<F> Launcher for F
where
    F: Fn(&MemberSpec) -> io::Result<Command> + Send + Sync,
{
    fn command(&self, member: &MemberSpec) -> io::Result<Command> {
        self(member)
    }
}

/// The default launcher:
/// `java <jvm options> -cp "<home>/lib/*:<home>/conf" QuorumPeerMain <zoo.cfg>`.
#[derive(Clone, Debug)]
pub struct JavaLauncher {
    pub java: PathBuf,
    pub home: PathBuf,
    pub jvm_options: Vec<String>,
}

impl Default for JavaLauncher {
    fn default() -> Self {
        JavaLauncher {
            java: java_path(),
            home: zookeeper_home(),
            jvm_options: [
                "-Xms32m",
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-XX:-UsePerfData",
                "-Djava.net.preferIPv4Stack=true",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl JavaLauncher {
    /// The class path of the home: its jars and its conf directory (logback.xml).
    pub fn class_path(&self) -> OsString {
        let mut cp = self.home.join("lib").into_os_string();
        cp.push("/*:");
        cp.push(self.home.join("conf"));
        cp
    }

    /// The JVM's arguments up to and including the main class.
    pub fn jvm_args(&self, member: &MemberSpec) -> Vec<OsString> {
        let mut args: Vec<OsString> = self
            .jvm_options
            .iter()
            .chain(&member.jvm_options)
            .map(OsString::from)
            .collect();
        if let Some(hosts) = &member.hosts_file {
            let mut property = OsString::from("-Djdk.net.hosts.file=");
            property.push(hosts);
            args.push(property);
        }
        args.push("-cp".into());
        args.push(self.class_path());
        args.push("org.apache.zookeeper.server.quorum.QuorumPeerMain".into());
        args
    }
}

impl Launcher for JavaLauncher {
    fn command(&self, member: &MemberSpec) -> io::Result<Command> {
        super::require_file(
            &self.home.join("lib"),
            &format!("ZooKeeper {} home", super::version("ZOOKEEPER_VERSION")),
        )?;
        let mut command = Command::new(&self.java);
        command.args(self.jvm_args(member)).arg(&member.config_file);
        Ok(command)
    }
}

/// What a server's AdminServer said its mode is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerState {
    Leader,
    Follower,
    Observer,
    Standalone,
    Other(String),
}

impl ServerState {
    fn parse(s: &str) -> ServerState {
        match s {
            "leader" => ServerState::Leader,
            "follower" => ServerState::Follower,
            "observer" => ServerState::Observer,
            "standalone" => ServerState::Standalone,
            other => ServerState::Other(other.to_string()),
        }
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerState::Leader => f.write_str("leader"),
            ServerState::Follower => f.write_str("follower"),
            ServerState::Observer => f.write_str("observer"),
            ServerState::Standalone => f.write_str("standalone"),
            ServerState::Other(s) => f.write_str(s),
        }
    }
}

/// The interesting part of a serving server's `srvr` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerStats {
    pub state: ServerState,
    /// `last_processed_zxid`: epoch in the high 32 bits, counter in the low 32 bits.
    pub last_processed_zxid: u64,
    pub version: String,
}

/// The outcome of asking one member's AdminServer for `srvr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    Serving(ServerStats),
    /// The server answered with an error, typically "This ZooKeeper instance is not currently
    /// serving requests" (not in a quorum).
    NotServing(String),
    /// No usable answer: refused, timed out, not HTTP 200, or not the expected JSON.
    Unreachable(String),
}

impl Probe {
    pub fn state(&self) -> Option<&ServerState> {
        match self {
            Probe::Serving(stats) => Some(&stats.state),
            _ => None,
        }
    }

    pub fn is_serving(&self) -> bool {
        matches!(self, Probe::Serving(_))
    }

    pub fn is_leader(&self) -> bool {
        self.state() == Some(&ServerState::Leader)
    }

    /// Serving as a voter (leader, follower or standalone).
    pub fn is_serving_voter(&self) -> bool {
        matches!(
            self.state(),
            Some(ServerState::Leader | ServerState::Follower | ServerState::Standalone)
        )
    }

    /// Interprets the JSON body of `/commands/srvr`.
    pub fn from_srvr(body: &Value) -> Probe {
        if let Some(error) = body.get("error").and_then(Value::as_str) {
            return Probe::NotServing(error.to_string());
        }
        let stats = body.get("server_stats");
        let Some(state) = stats
            .and_then(|s| s.get("server_state"))
            .and_then(Value::as_str)
        else {
            let mut text = body.to_string();
            text.truncate(200);
            return Probe::Unreachable(format!("unexpected srvr answer: {text}"));
        };
        let zxid = stats
            .and_then(|s| s.get("last_processed_zxid"))
            .and_then(|z| z.as_u64().or_else(|| z.as_i64().map(|z| z as u64)))
            .unwrap_or(0);
        let version = body
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Probe::Serving(ServerStats {
            state: ServerState::parse(state),
            last_processed_zxid: zxid,
            version,
        })
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Serving(stats) => {
                write!(f, "{} zxid {:#x}", stats.state, stats.last_processed_zxid)
            }
            Probe::NotServing(error) => write!(f, "not serving ({error})"),
            Probe::Unreachable(error) => write!(f, "unreachable ({error})"),
        }
    }
}

/// The index of the leader if the probes show a quorum: exactly one leader and at least
/// [`quorum_size`] of the `probes.len()` voters serving. A lone standalone server counts too.
pub fn quorum_leader(probes: &[Probe]) -> Option<usize> {
    if probes.len() == 1 && probes[0].state() == Some(&ServerState::Standalone) {
        return Some(0);
    }
    let leaders: Vec<usize> = (0..probes.len())
        .filter(|&i| probes[i].is_leader())
        .collect();
    let serving = probes.iter().filter(|p| p.is_serving_voter()).count();
    match leaders.as_slice() {
        [leader] if serving >= quorum_size(probes.len()) => Some(*leader),
        _ => None,
    }
}

/// A wait that ran out of time, with what the members said last.
#[derive(Debug)]
pub struct WaitTimeout {
    pub what: String,
    pub waited: Duration,
    pub last: Vec<Probe>,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:.1} s waiting for {}; last probes:",
            self.waited.as_secs_f64(),
            self.what
        )?;
        for (i, probe) in self.last.iter().enumerate() {
            write!(f, " [{i}] {probe};")?;
        }
        Ok(())
    }
}

impl std::error::Error for WaitTimeout {}

/// A member of an ensemble: its spec and, while it runs, its process.
pub struct Member {
    spec: MemberSpec,
    child: Option<Child>,
    frozen: bool,
    /// The client of its AdminServer when that takes only TLS ([`ZkEnsemble::set_admin_tls`]).
    https: Option<reqwest::Client>,
}

impl Member {
    pub fn spec(&self) -> &MemberSpec {
        &self.spec
    }
    pub fn index(&self) -> usize {
        self.spec.index
    }
    pub fn myid(&self) -> Myid {
        Myid::try_from(self.spec.myid).expect("members are numbered from 1")
    }
    pub fn ip(&self) -> Ipv4Addr {
        self.spec.ip
    }
    /// The name in the server lines (the address unless hostnames were given).
    pub fn host(&self) -> &str {
        &self.spec.host
    }
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }
    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }
    pub fn config_file(&self) -> &Path {
        &self.spec.config_file
    }
    pub fn log_file(&self) -> &Path {
        &self.spec.log_file
    }
    /// `http://<ip>:8080`, or `https://` when its zoo.cfg secures the AdminServer; commands
    /// are under `/commands/<name>`.
    pub fn admin_url(&self) -> String {
        let scheme = if self.admin_tls() { "https" } else { "http" };
        format!("{scheme}://{}:{ADMIN_PORT}", self.spec.ip)
    }
    /// Whether its zoo.cfg (as last written) lets only TLS clients with a certificate into its
    /// AdminServer (`admin.forceHttps`, which quorum TLS sets).
    pub fn admin_tls(&self) -> bool {
        fs::read_to_string(&self.spec.config_file)
            .is_ok_and(|cfg| cfg.lines().any(|l| l.trim() == "admin.forceHttps=true"))
    }
    /// `http://<ip>:7000/metrics` (Prometheus).
    pub fn metrics_url(&self) -> String {
        format!("http://{}:{METRICS_PORT}/metrics", self.spec.ip)
    }
    pub fn client_address(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.spec.ip, CLIENT_PORT))
    }
    /// The process id while the member was started and not stopped or killed since.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    /// Whether it was frozen ([`ZkEnsemble::freeze`]) and not thawed since.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }
}

/// A loopback block 127.a.b.0/24, held while the lock file stays locked.
struct IpBlock {
    a: u8,
    b: u8,
    _lock: Flock<File>,
}

impl IpBlock {
    const FIRST_A: u8 = 100;

    fn ip(&self, myid: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.a, self.b, myid)
    }

    /// Claims a block whose first `size` addresses have all the ports free.
    fn claim(size: usize) -> io::Result<IpBlock> {
        const ATTEMPTS: u32 = 256;
        let dir = std::env::temp_dir().join("zooherd-zk-ips");
        fs::create_dir_all(&dir)?;
        // Scan from the first block: the lock files stay few, one per concurrent ensemble.
        let mut last_problem = String::from("every block was locked");
        for n in 0..ATTEMPTS {
            let (a, b) = ((u32::from(Self::FIRST_A) + n / 256) as u8, (n % 256) as u8);
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("127.{a}.{b}.lock")))?;
            let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            let block = IpBlock { a, b, _lock: lock };
            let busy = (1..=size as u8).find_map(|myid| {
                PORTS.iter().find_map(|&port| {
                    let addr = SocketAddrV4::new(block.ip(myid), port);
                    TcpListener::bind(addr)
                        .err()
                        .map(|e| format!("{addr}: {e}"))
                })
            });
            match busy {
                None => return Ok(block),
                Some(problem) => last_problem = problem,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "no free loopback block for {size} ZooKeeper servers after {ATTEMPTS} tries; last: {last_problem}"
            ),
        ))
    }
}

/// Configures an ensemble before it starts; see [`ZkEnsemble::builder`].
pub struct ZkEnsembleBuilder {
    size: usize,
    launcher: Arc<dyn Launcher>,
    hostnames: Option<Box<dyn Fn(u8) -> String + Send + Sync>>,
    config: Vec<(String, Option<String>)>,
    reconfig: Option<Reconfig>,
    member_networks: bool,
}

/// Dynamic reconfiguration settings of an ensemble.
struct Reconfig {
    super_digest: String,
    initial_voters: usize,
}

impl ZkEnsembleBuilder {
    /// Replaces the default [`JavaLauncher`].
    pub fn launcher(mut self, launcher: impl Launcher + 'static) -> Self {
        self.launcher = Arc::new(launcher);
        self
    }

    /// Names the servers (myid -> hostname) in the server lines instead of their addresses,
    /// and writes a hosts file mapping the names to the addresses (see [`write_hosts_file`]);
    /// the default launcher passes it to the JVM.
    pub fn hostnames(mut self, name: impl Fn(u8) -> String + Send + Sync + 'static) -> Self {
        self.hostnames = Some(Box::new(name));
        self
    }

    /// Sets (or overrides) a zoo.cfg key for every member.
    pub fn config(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.config.push((key.to_string(), Some(value.to_string())));
        self
    }

    /// Runs the ensemble with dynamic reconfiguration: `reconfigEnabled=true`, the server lines
    /// in a dynamic configuration file beside zoo.cfg (`zoo.cfg.dynamic.0`, version 0 as for a
    /// new ensemble), and `super_digest` (`zooherd:<digest>`) as the superuser. The first
    /// `initial_voters` members are the voters; each later member starts with them plus itself
    /// as an observer, as the operator starts a joining server (it cannot vote until it is
    /// added with a reconfiguration), and follows the leader as a non-voting follower.
    pub fn reconfig(mut self, super_digest: &str, initial_voters: usize) -> Self {
        self.reconfig = Some(Reconfig {
            super_digest: super_digest.to_owned(),
            initial_voters,
        });
        self
    }

    /// Runs each member in its own network namespace, on the address
    /// `10.213.<block>.<myid>` instead of a loopback one, so that
    /// [`ZkEnsemble::partition`] can cut members off from each other (see
    /// [`super::member_networks`]). Needs root and `ip`/`iptables`.
    pub fn member_networks(mut self) -> Self {
        self.member_networks = true;
        self
    }

    /// Leaves a key out of zoo.cfg (e.g. `metricsProvider.className`).
    pub fn without_config(mut self, key: &str) -> Self {
        self.config.push((key.to_string(), None));
        self
    }

    /// Claims addresses, creates the directories and writes the configuration, without
    /// starting anything: then start members with [`ZkEnsemble::start_member`].
    pub fn prepare(self) -> io::Result<ZkEnsemble> {
        let size = self.size;
        if !(1..=255).contains(&size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an ensemble has 1 to 255 servers, not {size}"),
            ));
        }
        let block = IpBlock::claim(size)?;
        let myids: Vec<u8> = (1..=size as u8).collect();
        let networks = match self.member_networks {
            // The loopback block's lock holds the namespaces' names and addresses too.
            true if block.a == IpBlock::FIRST_A => Some(MemberNetworks::create(block.b, &myids)?),
            true => return Err(io::Error::other("no free block for member networks")),
            false => None,
        };
        let ip = |myid| match networks {
            Some(_) => member_networks::member_ip(block.b, myid),
            None => block.ip(myid),
        };
        let dir = super::owned_temp_dir("zooherd-zk-ensemble-")?;
        let servers: Vec<ServerAddress> = myids
            .iter()
            .map(|&myid| ServerAddress {
                myid,
                host: match &self.hostnames {
                    Some(name) => name(myid),
                    None => ip(myid).to_string(),
                },
                ip: ip(myid),
            })
            .collect();
        let hosts_file = match &self.hostnames {
            Some(_) => {
                let path = dir.path().join("hosts");
                let entries: Vec<(String, Ipv4Addr)> =
                    servers.iter().map(|s| (s.host.clone(), s.ip)).collect();
                write_hosts_file(&path, &entries)?;
                Some(path)
            }
            None => None,
        };
        let mut members = Vec::with_capacity(size);
        for (index, server) in servers.iter().enumerate() {
            let member_dir = dir.path().join(format!("member-{}", server.myid));
            let (jvm_options, dynamic_config_file) = match &self.reconfig {
                Some(reconfig) => (
                    vec![format!(
                        "-Dzookeeper.DigestAuthenticationProvider.superDigest={}",
                        reconfig.super_digest
                    )],
                    Some(member_dir.join("zoo.cfg.dynamic.0")),
                ),
                None => (Vec::new(), None),
            };
            let spec = MemberSpec {
                index,
                myid: server.myid,
                ip: server.ip,
                host: server.host.clone(),
                data_dir: member_dir.join("data"),
                config_file: member_dir.join("zoo.cfg"),
                log_file: member_dir.join("zookeeper.log"),
                dir: member_dir,
                hosts_file: hosts_file.clone(),
                servers: servers.clone(),
                jvm_options,
                dynamic_config_file,
            };
            fs::create_dir_all(&spec.data_dir)?;
            fs::write(spec.data_dir.join("myid"), format!("{}\n", spec.myid))?;
            fs::write(&spec.config_file, render_config(&spec, &self.config))?;
            if let (Some(reconfig), Some(file)) = (&self.reconfig, &spec.dynamic_config_file) {
                let voter = |s: &ServerAddress| s.myid as usize <= reconfig.initial_voters;
                let lines: String = servers
                    .iter()
                    .filter(|s| voter(s) || s.myid == server.myid)
                    .map(|s| {
                        let role = if voter(s) { "participant" } else { "observer" };
                        format!("server.{}={}\n", s.myid, line_with_role(s, role))
                    })
                    .collect();
                fs::write(file, lines)?;
            }
            members.push(Member {
                spec,
                child: None,
                frozen: false,
                https: None,
            });
        }
        let http = admin_client(zooherd::http::builder())?;
        Ok(ZkEnsemble {
            members,
            launcher: self.launcher,
            hosts_file,
            config: self.config,
            http,
            dir,
            networks,
            _block: block,
        })
    }

    /// Starts the servers so that they run quorum TLS as the operator's pods do (stage on: mutual
    /// TLS between them, an AdminServer for clients with a certificate of the ensemble's CA
    /// only), with the certificates of a new CA. Returns the ensemble, which asks its
    /// AdminServers with a client certificate of that CA, and the operator's credentials
    /// ([`zooherd::tls::admin_client`]). Does not wait.
    pub fn start_with_quorum_tls(self) -> io::Result<(ZkEnsemble, zooherd::http::AdminTls)> {
        use zooherd::build::tls::{CA_KEY, KEY_STORE_KEY, QuorumTls};
        let size = self.size;
        let mut zk = self.prepare()?;
        let ips: Vec<std::net::IpAddr> = zk.members.iter().map(|m| m.ip().into()).collect();
        let now = jiff::Timestamp::now();
        let issued = zooherd::tls::issue("tests/zk", &[], &ips, now).map_err(io::Error::other)?;
        let dir = zk.dir().join("tls");
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(KEY_STORE_KEY), issued.key_store())?;
        fs::write(dir.join(CA_KEY), &issued.ca_certificate)?;
        let operator = zooherd::tls::admin_client(
            "tests/zk",
            &issued.ca_certificate,
            &issued.ca_key,
            "zooherd operator",
            now,
        )
        .map_err(io::Error::other)?;
        zk.set_admin_tls(0..size, &operator)?;
        for i in 0..size {
            zk.configure_quorum_tls(i, QuorumTls::On, &dir)?;
            zk.start_member(i)?;
        }
        Ok((zk, operator))
    }

    /// [`prepare`](Self::prepare)s the ensemble and starts every member.
    pub fn start(self) -> io::Result<ZkEnsemble> {
        let mut ensemble = self.prepare()?;
        for i in 0..ensemble.size() {
            ensemble.start_member(i)?;
        }
        Ok(ensemble)
    }
}

/// A client of the members' AdminServers from `builder`: short timeouts, no proxy, and no
/// pooled connections (a restarted server must not get requests on a dead one).
fn admin_client(builder: reqwest::ClientBuilder) -> io::Result<reqwest::Client> {
    builder
        .no_proxy()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(io::Error::other)
}

/// The zoo.cfg keys `entries` (the operator's), with the paths under the pod's certificate
/// mount ([`zooherd::build::tls::DIR`]) moved to `dir`.
pub fn certificates_in(
    entries: Vec<(&'static str, String)>,
    dir: &Path,
) -> Vec<(String, Option<String>)> {
    entries
        .into_iter()
        .map(|(key, value)| {
            let value = match value.strip_prefix(zooherd::build::tls::DIR) {
                Some(file) => format!("{}{file}", dir.display()),
                None => value,
            };
            (key.to_owned(), Some(value))
        })
        .collect()
}

/// The zoo.cfg of one member: fast timings for tests, everything on the member's address,
/// the AdminServer and the Prometheus metrics on, then `overrides` (None removes a key).
pub fn render_config(spec: &MemberSpec, overrides: &[(String, Option<String>)]) -> String {
    fn kv(key: &str, value: impl fmt::Display) -> (String, String) {
        (key.to_string(), value.to_string())
    }
    let ip = spec.ip;
    let mut entries = vec![
        kv("tickTime", 500),
        kv("initLimit", 10),
        kv("syncLimit", 5),
        kv("dataDir", spec.data_dir.display()),
        kv("clientPort", CLIENT_PORT),
        kv("clientPortAddress", ip),
        kv("admin.enableServer", true),
        kv("admin.serverAddress", ip),
        kv("admin.serverPort", ADMIN_PORT),
        kv("4lw.commands.whitelist", "srvr,mntr,ruok"),
        kv("reconfigEnabled", spec.dynamic_config_file.is_some()),
        kv(
            "metricsProvider.className",
            "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider",
        ),
        kv("metricsProvider.httpHost", ip),
        kv("metricsProvider.httpPort", METRICS_PORT),
    ];
    if let Some(file) = &spec.dynamic_config_file {
        entries.push(kv("standaloneEnabled", false));
        entries.push(kv("dynamicConfigFile", file.display()));
    } else {
        if spec.servers.len() > 1 {
            entries.push(("standaloneEnabled".into(), "false".into()));
        }
        for server in &spec.servers {
            entries.push((
                format!("server.{}", server.myid),
                format!("{}:{QUORUM_PORT}:{ELECTION_PORT}", server.host),
            ));
        }
    }
    for (key, value) in overrides {
        let position = entries.iter().position(|(k, _)| k == key);
        match (position, value) {
            (Some(i), Some(value)) => entries[i].1 = value.clone(),
            (None, Some(value)) => entries.push((key.clone(), value.clone())),
            (Some(i), None) => {
                entries.remove(i);
            }
            (None, None) => {}
        }
    }
    entries
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
}

/// The `server.<myid>=` value of a server in a dynamic configuration: a participant, with its
/// client address (ZooKeeper binds the client port there when a reconfiguration names it).
pub fn server_line(server: &ServerAddress) -> String {
    line_with_role(server, "participant")
}

fn line_with_role(server: &ServerAddress, role: &str) -> String {
    format!(
        "{}:{QUORUM_PORT}:{ELECTION_PORT}:{role};{}:{CLIENT_PORT}",
        server.host, server.ip
    )
}

/// A local ZooKeeper ensemble; see the module documentation.
pub struct ZkEnsemble {
    members: Vec<Member>,
    launcher: Arc<dyn Launcher>,
    hosts_file: Option<PathBuf>,
    /// The builder's zoo.cfg keys, which [`ZkEnsemble::rewrite_config`] keeps.
    config: Vec<(String, Option<String>)>,
    http: reqwest::Client,
    dir: TempDir,
    /// With [`ZkEnsembleBuilder::member_networks`]; deleted once every process is gone.
    networks: Option<MemberNetworks>,
    /// Dropped last: the addresses stay claimed until every process is gone.
    _block: IpBlock,
}

impl ZkEnsemble {
    /// An ensemble of `size` servers with the defaults, to configure before starting it.
    pub fn builder(size: usize) -> ZkEnsembleBuilder {
        ZkEnsembleBuilder {
            size,
            launcher: Arc::new(JavaLauncher::default()),
            hostnames: None,
            config: Vec::new(),
            reconfig: None,
            member_networks: false,
        }
    }

    /// Starts `size` servers with the defaults. Does not wait: see [`Self::wait_for_quorum`].
    pub fn start(size: usize) -> io::Result<ZkEnsemble> {
        Self::builder(size).start()
    }

    /// [`ZkEnsembleBuilder::start_with_quorum_tls`] with the defaults.
    pub fn start_with_quorum_tls(size: usize) -> io::Result<(ZkEnsemble, zooherd::http::AdminTls)> {
        Self::builder(size).start_with_quorum_tls()
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Member `i` (myid `i + 1`). Panics if there is no such member.
    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// The ensemble's directory (one `member-<myid>` directory per member).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The hosts file, when the ensemble uses hostnames.
    pub fn hosts_file(&self) -> Option<&Path> {
        self.hosts_file.as_deref()
    }

    /// The members as the operator's prober sees voters: member `i` is pod `zk-<i>`.
    pub fn voters(&self) -> Vec<zooherd::quorum::probe::Voter> {
        self.members
            .iter()
            .map(|m| zooherd::quorum::probe::Voter {
                myid: m.myid(),
                pod: format!("zk-{}", m.index()),
                ip: Some(std::net::IpAddr::V4(m.ip())),
                pod_version: None,
                admin_tls: m.admin_tls(),
            })
            .collect()
    }

    /// Asks members `indices`, when their AdminServer takes only TLS (see
    /// [`Member::admin_tls`]), with a client that shows `tls`'s certificate.
    pub fn set_admin_tls(
        &mut self,
        indices: impl IntoIterator<Item = usize>,
        tls: &zooherd::http::AdminTls,
    ) -> io::Result<()> {
        let client = admin_client(zooherd::http::admin_builder(tls).map_err(io::Error::other)?)?;
        for i in indices {
            self.members[i].https = Some(client.clone());
        }
        Ok(())
    }

    /// The client addresses of members `indices`.
    pub fn client_addresses(&self, indices: impl IntoIterator<Item = usize>) -> Vec<SocketAddr> {
        indices
            .into_iter()
            .map(|i| self.members[i].client_address())
            .collect()
    }

    /// `ip:2181,ip:2181,...` for clients.
    pub fn connect_string(&self) -> String {
        self.connect_string_of(0..self.members.len())
    }

    /// The connect string of some members only.
    pub fn connect_string_of(&self, indices: impl IntoIterator<Item = usize>) -> String {
        self.client_addresses(indices)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i` if it is not running (its data directory is kept across restarts).
    pub fn start_member(&mut self, i: usize) -> io::Result<()> {
        if self.is_running(i) {
            return Ok(());
        }
        let spec = self.members[i].spec.clone();
        let mut command = self.launcher.command(&spec)?;
        if let Some(networks) = &self.networks {
            command = networks.wrap(spec.myid, &command);
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_file)?;
        writeln!(
            log,
            "===== zooherd test: starting member {} (myid {}, {}): {}",
            spec.index,
            spec.myid,
            spec.ip,
            process::describe(&command)
        )?;
        command
            .current_dir(&spec.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = process::spawn(command)?;
        let member = &mut self.members[i];
        member.child = Some(child);
        member.frozen = false;
        Ok(())
    }

    /// Writes member `i`'s zoo.cfg again: the builder's keys, then `overrides` (as in
    /// [`render_config`]). The file is read when the member starts, so rewrite it while the
    /// member is stopped: a restart then runs with the new configuration, as a rolled pod does.
    /// What ZooKeeper wrote into the file itself (after a reconfiguration, the dynamic file it
    /// names) is replaced.
    pub fn rewrite_config(
        &self,
        i: usize,
        overrides: &[(String, Option<String>)],
    ) -> io::Result<()> {
        let spec = &self.members[i].spec;
        let keys: Vec<(String, Option<String>)> =
            self.config.iter().chain(overrides).cloned().collect();
        fs::write(&spec.config_file, render_config(spec, &keys))
    }

    /// Rewrites member `i`'s zoo.cfg to run quorum TLS `stage` as the operator's pods do, with
    /// the files of the pod's certificate mount read from `dir` (`ca.crt`, `keystore.pem`).
    /// Takes effect at its next start.
    pub fn configure_quorum_tls(
        &self,
        i: usize,
        stage: zooherd::build::tls::QuorumTls,
        dir: &Path,
    ) -> io::Result<()> {
        self.rewrite_config(i, &certificates_in(stage.zoo_cfg_entries(), dir))
    }

    /// Whether member `i`'s process is alive (frozen counts as alive). Reaps it if it exited.
    pub fn is_running(&mut self, i: usize) -> bool {
        let member = &mut self.members[i];
        let Some(child) = member.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) | Err(_) => {
                member.child = None;
                member.frozen = false;
                false
            }
        }
    }

    /// Stops member `i` gracefully: SIGTERM (and SIGCONT, in case it is frozen), waits for
    /// it to exit, SIGKILL after 20 s. Does nothing if it is not running.
    pub fn stop(&mut self, i: usize) -> io::Result<()> {
        self.end(i, Signal::SIGTERM, STOP_GRACE)
    }

    /// Kills member `i` with SIGKILL (like `kill -9`) and reaps it.
    pub fn kill(&mut self, i: usize) -> io::Result<()> {
        self.end(i, Signal::SIGKILL, Duration::from_secs(10))
    }

    fn end(&mut self, i: usize, signal: Signal, grace: Duration) -> io::Result<()> {
        let member = &mut self.members[i];
        if let Some(mut child) = member.child.take() {
            member.frozen = false;
            process::terminate(&mut child, signal, grace)?;
        }
        Ok(())
    }

    /// Cuts member `i` off from members `peers`, both ways, leaving its clients connected
    /// (needs [`ZkEnsembleBuilder::member_networks`]); [`Self::heal_partition`] undoes it.
    pub fn partition(&self, i: usize, peers: &[usize]) -> io::Result<()> {
        let peers: Vec<u8> = peers.iter().map(|&p| self.members[p].spec.myid).collect();
        self.member_networks()?
            .cut(self.members[i].spec.myid, &peers)
    }

    /// Cuts member `i` off from its clients on this machine (their connections hang), while its
    /// peers and its AdminServer still reach it (needs [`ZkEnsembleBuilder::member_networks`]);
    /// [`Self::heal_partition`] undoes it.
    pub fn cut_clients(&self, i: usize) -> io::Result<()> {
        let member = &self.members[i];
        self.member_networks()?
            .cut_clients(member.spec.myid, member.client_address().port())
    }

    /// Undoes every [`Self::partition`] and [`Self::cut_clients`] of member `i`.
    pub fn heal_partition(&self, i: usize) -> io::Result<()> {
        self.member_networks()?.heal(self.members[i].spec.myid)
    }

    fn member_networks(&self) -> io::Result<&MemberNetworks> {
        self.networks.as_ref().ok_or_else(|| {
            io::Error::other("a partition needs an ensemble built with member_networks()")
        })
    }

    /// Freezes member `i` with SIGSTOP: the process stays, but answers nothing. Returns once
    /// all its threads are stopped.
    pub fn freeze(&mut self, i: usize) -> io::Result<()> {
        let member = &mut self.members[i];
        let child = member.child.as_ref().ok_or_else(|| not_running(i))?;
        process::set_stopped(child, true, Duration::from_secs(10))?;
        member.frozen = true;
        Ok(())
    }

    /// Resumes a frozen member `i` with SIGCONT. Returns once its threads run again.
    pub fn thaw(&mut self, i: usize) -> io::Result<()> {
        let member = &mut self.members[i];
        let child = member.child.as_ref().ok_or_else(|| not_running(i))?;
        process::set_stopped(child, false, Duration::from_secs(10))?;
        member.frozen = false;
        Ok(())
    }

    /// [`stop`](Self::stop)s member `i` and starts it again.
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        self.stop(i)?;
        self.start_member(i)
    }

    /// GETs `/commands/<command>` from member `i`'s AdminServer and returns the JSON.
    pub async fn admin_command(&self, i: usize, command: &str) -> Result<Value, String> {
        let member = &self.members[i];
        let url = format!("{}/commands/{command}", member.admin_url());
        let client = match (member.admin_tls(), &member.https) {
            (false, _) => &self.http,
            (true, Some(https)) => https,
            (true, None) => {
                return Err(format!(
                    "{url}: the AdminServer takes only TLS clients; set_admin_tls first"
                ));
            }
        };
        let response = client.get(&url).send().await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{url}: HTTP {status}"));
        }
        response
            .json::<Value>()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))
    }

    /// Asks member `i` for `srvr`.
    pub async fn probe(&self, i: usize) -> Probe {
        match self.admin_command(i, "srvr").await {
            Ok(body) => Probe::from_srvr(&body),
            Err(e) => Probe::Unreachable(e),
        }
    }

    /// Probes every member at once; the result is indexed like the members.
    pub async fn probe_all(&self) -> Vec<Probe> {
        futures::future::join_all((0..self.size()).map(|i| self.probe(i))).await
    }

    /// The member that says it is the leader, if exactly one does.
    pub async fn leader(&self) -> Option<usize> {
        let probes = self.probe_all().await;
        let leaders: Vec<usize> = (0..probes.len())
            .filter(|&i| probes[i].is_leader())
            .collect();
        match leaders.as_slice() {
            [leader] => Some(*leader),
            _ => None,
        }
    }

    /// Probes every member (about every 100 ms) until `check` returns a value, or `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[Probe]) -> Option<T>,
    ) -> Result<T, WaitTimeout> {
        let started = Instant::now();
        loop {
            let probes = self.probe_all().await;
            if let Some(value) = check(&probes) {
                return Ok(value);
            }
            if started.elapsed() >= timeout {
                return Err(WaitTimeout {
                    what: what.to_string(),
                    waited: started.elapsed(),
                    last: probes,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the ensemble has a quorum (see [`quorum_leader`]); returns the leader.
    pub async fn wait_for_quorum(&self, timeout: Duration) -> Result<usize, WaitTimeout> {
        self.wait_for("a quorum", timeout, quorum_leader).await
    }

    /// Waits until a quorum has a leader other than `old`; returns it.
    pub async fn wait_for_new_leader(
        &self,
        old: usize,
        timeout: Duration,
    ) -> Result<usize, WaitTimeout> {
        self.wait_for(
            &format!("a quorum led by another member than {old}"),
            timeout,
            |probes| quorum_leader(probes).filter(|&leader| leader != old),
        )
        .await
    }

    /// Waits until every member that runs serves, under one leader; returns the leader.
    pub async fn wait_for_all_serving(&self, timeout: Duration) -> Result<usize, WaitTimeout> {
        let running: Vec<bool> = self.members.iter().map(|m| m.child.is_some()).collect();
        self.wait_for("every running member serving", timeout, |probes| {
            let all = probes
                .iter()
                .zip(&running)
                .all(|(probe, &running)| !running || probe.is_serving());
            if all { quorum_leader(probes) } else { None }
        })
        .await
    }

    /// Waits until member `i` serves; returns its state.
    pub async fn wait_for_serving(
        &self,
        i: usize,
        timeout: Duration,
    ) -> Result<ServerState, WaitTimeout> {
        self.wait_for(&format!("member {i} serving"), timeout, |probes| {
            probes[i].state().cloned()
        })
        .await
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = process::signal_group(&child, Signal::SIGKILL);
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for member in &self.members {
                eprintln!(
                    "----- ZooKeeper member {} (myid {}, {}): last lines of {} -----\n{}",
                    member.index(),
                    member.myid(),
                    member.ip(),
                    member.log_file().display(),
                    super::tail(member.log_file(), 40)
                );
            }
        }
        if std::env::var_os("ZOOHERD_KEEP_TEST_DIRS").is_some_and(|v| v == "1") {
            self.dir.disable_cleanup(true);
            eprintln!("keeping {}", self.dir.path().display());
        }
    }
}

fn not_running(i: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("member {i} is not running"),
    )
}

/// An error and its sources, on one line ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
