//! `zooherd server` and `zooherd probe` on real ZooKeeper 3.9 servers.
//!
//! Every server here is started the way the image starts it: the built `zooherd` binary reads
//! the zoo.cfg the operator renders (`zooherd::build::zoo_cfg::render`), derives its myid from
//! a StatefulSet-style POD_NAME, claims its data directory and execs the JVM. The servers'
//! Kubernetes DNS names are mapped to loopback addresses with a hosts file that the JVM gets
//! through ZOOHERD_JVM_EXTRA_OPTS, and ZOOHERD_BIND_ADDRESS keeps each server's ports on its
//! own address. The only liberty taken with the pod is `--data-dir`, because the servers share
//! one filesystem. Run `bash tests/cluster/setup.sh` once first for the ZooKeeper home.

use zooherd_test_support as support;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::process;
use support::scaling::{Scaler, committed, names};
use support::writer::{lost_writes, write_until};
use support::zookeeper::{
    MemberSpec, Probe, ServerState, ZkEnsemble, quorum_leader, server_line, zookeeper_home,
};
use zooherd::agent::server::{
    ENSEMBLE_MARKER_FILE, EXIT_EXEC_FAILED, EXIT_FOREIGN_ENSEMBLE, EXIT_FOREIGN_MYID,
    EXIT_INVALID_INPUT, EXIT_RESTORE_FAILED, EnsembleMarker, MYID_FILE, bind_client_address,
};
use zooherd::build::names::server_host;
use zooherd::build::tls::QuorumTls;
use zooherd::build::{Topology, zoo_cfg};
use zooherd::quorum::Myid;
use zooherd::quorum::membership::Membership;
use zooherd::quorum::reconfig::{Login, super_digest};

const ZOOHERD: &str = env!("CARGO_BIN_EXE_zooherd");
const NAMESPACE: &str = "agents";
const CLUSTER_DOMAIN: &str = "cluster.local";
const QUORUM_TIMEOUT: Duration = Duration::from_secs(90);

/// The superuser's password in these tests; the servers get its digest.
const PASSWORD: &str = "agent-test-password";

/// The ensemble a group of `zooherd server` processes belongs to.
#[derive(Clone)]
struct Ensemble {
    name: &'static str,
    uid: &'static str,
    replicas: u32,
    /// The bootstrap membership the next server to start reads (the ConfigMap's `members`);
    /// `None`: the operator's for a new ensemble of `replicas`.
    members: Arc<std::sync::Mutex<Option<Membership>>>,
    /// Where the servers find the quorum TLS certificates (the pod's mount): with one, the
    /// operator's zoo.cfg runs quorum TLS (stage on, its AdminServer TLS-only).
    tls_dir: Option<PathBuf>,
    /// What the ConfigMap's `formed` says to the next server to start.
    formed: Arc<std::sync::atomic::AtomicBool>,
    /// The `ZOOHERD_RESTORE_*` variables the operator sets for spec.restore.
    restore: Vec<(String, String)>,
    /// The mounted SASL users Secret (spec.clientAuthentication.saslUsersSecret), and whether
    /// the servers refuse clients without a SASL login (its `enforce`).
    sasl_users: Option<PathBuf>,
    enforce_auth: bool,
}

impl Ensemble {
    fn new(name: &'static str, uid: &'static str, replicas: u32) -> Self {
        Ensemble {
            name,
            uid,
            replicas,
            members: Arc::default(),
            formed: Arc::default(),
            tls_dir: None,
            restore: Vec::new(),
            sasl_users: None,
            enforce_auth: false,
        }
    }

    /// zoo.cfg as the operator renders it for this ensemble, without quorum TLS (its
    /// certificates live at a path of the pod; tests/quorum_tls_real_zookeeper.rs covers it).
    fn operator_config(&self) -> String {
        let stage = if self.tls_dir.is_some() {
            QuorumTls::On
        } else {
            QuorumTls::Off
        };
        let cfg = zoo_cfg::render(
            self.name,
            NAMESPACE,
            &BTreeMap::new(),
            false,
            stage,
            zooherd::build::tls::ClientTls::Off,
            false,
        );
        match &self.tls_dir {
            Some(dir) => cfg.replace(zooherd::build::tls::DIR, &dir.display().to_string()),
            None => cfg,
        }
    }

    /// The bootstrap membership, as the ConfigMap holds it.
    fn operator_members(&self) -> String {
        let members = self.members.lock().unwrap().clone();
        members
            .unwrap_or_else(|| self.bootstrap(&Topology::initial(self.replicas)))
            .render()
    }

    /// The bootstrap membership the operator writes for `topology`.
    fn bootstrap(&self, topology: &Topology) -> Membership {
        zoo_cfg::bootstrap_membership(
            self.name,
            NAMESPACE,
            CLUSTER_DOMAIN,
            &topology.voters,
            &topology.joining,
        )
    }

    /// [`Self::bootstrap`] with each server's client address bound to its address in `ips`
    /// (see [`bound_members`]).
    fn bound_bootstrap(&self, ips: &BTreeMap<Myid, IpAddr>, topology: &Topology) -> Membership {
        let mut members = self.bootstrap(topology);
        for (myid, line) in &mut members.servers {
            *line = bind_client_address(line, ips[myid]).expect("a line with a client port");
        }
        members
    }

    /// The server's Kubernetes DNS name, as in the operator's server lines.
    fn host(&self, myid: u8) -> String {
        server_host(self.name, NAMESPACE, u32::from(myid) - 1, CLUSTER_DOMAIN)
    }

    /// A harness ensemble whose servers have this ensemble's DNS names (mapped to their
    /// loopback addresses in a hosts file) and run through `zooherd server`.
    fn builder(&self) -> support::zookeeper::ZkEnsembleBuilder {
        let this = self.clone();
        let launcher = self.clone();
        ZkEnsemble::builder(self.replicas as usize)
            .hostnames(move |myid| this.host(myid))
            .launcher(move |spec: &MemberSpec| launcher.server_command(spec))
    }

    /// `zooherd server` for a member, as the StatefulSet's container runs it: the operator's
    /// zoo.cfg at a path of its own (the ConfigMap mount), identity from the environment.
    fn server_command(&self, spec: &MemberSpec) -> io::Result<Command> {
        let home = zookeeper_home();
        support::require_file(&home.join("lib"), "ZooKeeper home")?;
        let hosts_file = spec
            .hosts_file
            .as_ref()
            .ok_or_else(|| io::Error::other("the ensemble was built without hostnames"))?;
        let mounted = spec.dir.join("configmap/zoo.cfg");
        let members = spec.dir.join("configmap/members");
        let formed = spec.dir.join("configmap/formed");
        fs::create_dir_all(mounted.parent().unwrap())?;
        fs::write(&mounted, self.operator_config())?;
        fs::write(&members, self.operator_members())?;
        let is_formed = self.formed.load(std::sync::atomic::Ordering::SeqCst);
        fs::write(&formed, if is_formed { "true" } else { "false" })?;
        let mut command = Command::new(ZOOHERD);
        command
            .arg("server")
            .arg("--config")
            .arg(&mounted)
            .arg("--members")
            .arg(&members)
            .arg("--formed")
            .arg(&formed)
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .env("POD_NAME", format!("{}-{}", self.name, spec.index))
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_IP", spec.ip.to_string())
            .env("ZOOHERD_ENSEMBLE_UID", self.uid)
            .env("ZOOHERD_SUPER_DIGEST", super_digest(PASSWORD))
            .env("ZOOHERD_BIND_ADDRESS", spec.ip.to_string())
            .env("ZOOKEEPER_HOME", &home)
            .env("ZOOHERD_JVM_HEAP", "128Mi")
            .env(
                "ZOOHERD_JVM_EXTRA_OPTS",
                format!(
                    "-Djdk.net.hosts.file={} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData",
                    hosts_file.display()
                ),
            )
            .env_remove("ZOOHERD_MEMORY_LIMIT")
            .env_remove("ZOOHERD_JVM_HEAP_PERCENT")
            .envs(self.restore.iter().cloned());
        if let Some(users) = &self.sasl_users {
            command.arg("--sasl-users").arg(users);
        }
        if self.enforce_auth {
            command.arg("--enforce-auth");
        }
        Ok(command)
    }
}

/// `zooherd probe <which>` as the kubelet runs it inside member `spec`'s container.
async fn probe(which: &str, spec: &MemberSpec) -> (i32, String) {
    let output = tokio::process::Command::new(ZOOHERD)
        .args(["probe", which])
        .env("ZOOHERD_BIND_ADDRESS", spec.ip.to_string())
        .output()
        .await
        .expect("run zooherd probe");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    (output.status.code().unwrap_or(-1), stdout.trim().to_owned())
}

/// The command line of a running process.
fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_quorum_from_the_operators_config_and_probes_that_tell_the_truth() {
    let ensemble = Ensemble::new("zk", "7d3c1a52-0000-4000-8000-000000000003", 3);
    let mut zk = ensemble.builder().start().expect("start 3 zooherd servers");
    zk.wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    for member in zk.members() {
        let spec = member.spec();
        // exec: the process the harness started is the JVM itself, with the heap asked for.
        let pid = member.pid().expect("running");
        let argv = cmdline(pid);
        assert!(
            argv.iter()
                .any(|a| a == "org.apache.zookeeper.server.quorum.QuorumPeerMain"),
            "pid {pid} is the JVM: {argv:?}"
        );
        assert!(argv.iter().any(|a| a == "-Xmx128m"), "{argv:?}");

        // The data directory was claimed for this ensemble.
        let marker = fs::read_to_string(spec.data_dir.join(ENSEMBLE_MARKER_FILE)).unwrap();
        let marker = EnsembleMarker::parse(&marker).expect("a marker");
        assert_eq!(marker.uid, ensemble.uid);
        assert_eq!(marker.ensemble, "agents/zk");
        let myid = fs::read_to_string(spec.data_dir.join(MYID_FILE)).unwrap();
        assert_eq!(myid.trim(), spec.myid.to_string());

        // The runtime copy is on the data volume, and ZooKeeper keeps the membership beside
        // it: once the first leader committed a version (the leader's own lines), every server
        // rewrote its copy to name the committed dynamic file. The operator's file is untouched.
        let runtime = fs::read_to_string(spec.data_dir.join("zooherd/zoo.cfg")).unwrap();
        // Beside it, the JVM's short name-lookup cache (pods change IPs).
        let security = fs::read_to_string(spec.data_dir.join("zooherd/java.security")).unwrap();
        assert!(
            security.contains("networkaddress.cache.negative.ttl=1"),
            "{security}"
        );
        let dynamic = runtime
            .lines()
            .find_map(|line| line.strip_prefix("dynamicConfigFile="))
            .unwrap_or_else(|| panic!("{runtime}"));
        let prefix = spec.data_dir.join("zooherd/zoo.cfg.dynamic.");
        let version = dynamic
            .strip_prefix(&prefix.display().to_string())
            .unwrap_or_else(|| panic!("{dynamic}"));
        assert_ne!(version, "0", "a version ZooKeeper committed");
        let servers = Membership::parse(&fs::read_to_string(dynamic).unwrap()).unwrap();
        assert_eq!(servers.voters(), Myid::up_to(3).collect());
        let mounted = fs::read_to_string(spec.dir.join("configmap/zoo.cfg")).unwrap();
        assert_eq!(mounted, ensemble.operator_config());

        let (code, line) = probe("ready", spec).await;
        assert_eq!(code, 0, "{line}");
        assert!(
            line.starts_with("ready: leader, zxid 0x")
                || line.starts_with("ready: follower, zxid 0x"),
            "{line}"
        );
        let (code, line) = probe("live", spec).await;
        assert_eq!(code, 0, "{line}");
        assert!(line.starts_with("live: "), "{line}");
    }

    // Stop two of three: the survivor is alive but serves nobody.
    zk.stop(0).expect("stop member 0");
    zk.stop(1).expect("stop member 1");
    zk.wait_for("member 2 not serving", QUORUM_TIMEOUT, |probes| {
        matches!(probes[2], Probe::NotServing(_)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let survivor = zk.member(2).spec().clone();
    let (code, line) = probe("ready", &survivor).await;
    assert_eq!(
        (code, line.as_str()),
        (
            1,
            "not ready: This ZooKeeper instance is not currently serving requests"
        )
    );
    let (code, line) = probe("live", &survivor).await;
    assert_eq!(code, 0, "{line}");
    assert_eq!(
        line,
        "live: answering, not serving: This ZooKeeper instance is not currently serving requests"
    );

    // A stopped server is neither ready nor live.
    let stopped = zk.member(0).spec().clone();
    let url = format!("http://{}:8080", stopped.ip);
    assert_eq!(
        probe("ready", &stopped).await,
        (1, format!("not ready: connection refused ({url})"))
    );
    assert_eq!(
        probe("live", &stopped).await,
        (1, format!("not live: connection refused ({url})"))
    );

    // Restarted on their own data directories, the two rejoin: the directories match.
    zk.start_member(0).expect("restart member 0");
    zk.start_member(1).expect("restart member 1");
    zk.wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, line) = probe("ready", &stopped).await;
    assert_eq!(code, 0, "{line}");
}

#[tokio::test]
async fn sigterm_reaches_zookeeper_through_exec() {
    let ensemble = Ensemble::new("solo", "7d3c1a52-0000-4000-8000-000000000001", 1);
    let zk = ensemble.builder().prepare().expect("prepare one server");
    let spec = zk.member(0).spec().clone();
    let mut command = ensemble.server_command(&spec).expect("command");
    let log = fs::File::create(&spec.log_file).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut child = process::spawn(command).expect("start zooherd server");

    let state = zk.wait_for_serving(0, QUORUM_TIMEOUT).await;
    let log_tail = || support::tail(&spec.log_file, 30);
    // Never standalone (standaloneEnabled=false): a quorum of one, which can take more voters.
    assert_eq!(state.ok(), Some(ServerState::Leader), "{}", log_tail());
    let (code, line) = probe("ready", &spec).await;
    assert_eq!(code, 0, "{line}");
    assert!(line.starts_with("ready: leader, zxid 0x"), "{line}");
    let log = fs::read_to_string(&spec.log_file).unwrap();
    assert!(
        log.contains("zooherd server: myid 1 of ensemble agents/solo"),
        "{}",
        log_tail()
    );

    // SIGTERM to the process we started, not to its group: only if zooherd became the JVM
    // does ZooKeeper get it, shut down, and exit with the JVM's 128 + 15.
    let sent = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = process::wait_timeout(&mut child, Duration::from_secs(10)).expect("wait");
    let elapsed = sent.elapsed();
    let status = status.unwrap_or_else(|| {
        let _ = process::terminate(&mut child, Signal::SIGKILL, Duration::from_secs(5));
        panic!("still running 10 s after SIGTERM\n{}", log_tail())
    });
    assert_eq!(status.code(), Some(143), "{status:?}\n{}", log_tail());
    println!("stopped {} ms after SIGTERM", elapsed.as_millis());
    assert!(matches!(zk.probe(0).await, Probe::Unreachable(_)));
}

/// The newest snapshot file in a server's data directory (`version-2/snapshot.<zxid>`).
fn newest_snapshot(data_dir: &Path) -> Option<PathBuf> {
    let snapshots = fs::read_dir(data_dir.join("version-2")).ok()?;
    snapshots
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("snapshot."))
        .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())
        .map(|entry| entry.path())
}

#[tokio::test]
async fn the_admin_servers_snapshot_and_restore_are_switched_off() {
    use zookeeper_client as zk;
    let ensemble = Ensemble::new("admin", "7d3c1a52-0000-4000-8000-000000000007", 1);
    let zookeeper = ensemble.builder().start().expect("start 1 zooherd server");
    zookeeper
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let member = zookeeper.member(0);
    // A snapshot of the tree without /kept, taken by the server itself when it started: a
    // restore of it would drop /kept.
    let old_snapshot = newest_snapshot(member.data_dir()).expect("a snapshot on the volume");
    let old_snapshot = fs::read(&old_snapshot).unwrap();

    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .expect("connect a client");
    let create = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client
        .create("/kept", b"kept", &create)
        .await
        .expect("create /kept");

    // Any pod can send this: the digest provider accepts whatever user:password it is given,
    // and the commands check it against the ACL of /, which lets anyone do anything.
    let http = zooherd::http::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let commands = format!("{}/commands", member.admin_url());
    let snapshot = http
        .get(format!("{commands}/snapshot"))
        .header("Authorization", "digest x:y")
        .send()
        .await
        .expect("GET /commands/snapshot");
    let snapshot_status = snapshot.status().as_u16();
    let snapshot_bytes = snapshot.bytes().await.map(|b| b.len()).unwrap_or(0);
    let restore = http
        .post(format!("{commands}/restore"))
        .header("Authorization", "digest x:y")
        .body(old_snapshot)
        .send()
        .await
        .expect("POST /commands/restore");
    let restore_status = restore.status().as_u16();
    let restore_body = restore.text().await.unwrap_or_default();

    // A new session: the one that wrote /kept is refused by a server whose zxid went back.
    drop(client);
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .expect("connect a client");
    let kept = client.get_data("/kept").await.map(|(data, _)| data);
    println!(
        "snapshot: HTTP {snapshot_status}, {snapshot_bytes} bytes; restore: HTTP {restore_status} {restore_body}; /kept after: {kept:?}"
    );
    // 503 is the answer of a command switched off; an error JSON of a few bytes at most.
    assert_eq!(
        (snapshot_status, restore_status),
        (503, 503),
        "snapshot streamed {snapshot_bytes} bytes; restore answered {restore_body}"
    );
    assert!(
        snapshot_bytes < 512,
        "snapshot streamed {snapshot_bytes} bytes"
    );
    assert_eq!(
        kept.as_ref().ok().map(Vec::as_slice),
        Some(&b"kept"[..]),
        "/kept after the restore: {kept:?}"
    );
}

#[tokio::test]
async fn enforced_sasl_admits_the_secrets_users_and_the_operator_and_nobody_else() {
    use std::os::unix::fs::PermissionsExt;
    use zookeeper_client as zk;
    let users = tempfile::tempdir().unwrap();
    // The Secret's volume: one file per key, and the kubelet's dot entries beside them.
    fs::write(users.path().join("kafka"), "kafka-secret").unwrap();
    fs::create_dir(users.path().join("..2026_12_07_00_00_00.000000001")).unwrap();
    let mut ensemble = Ensemble::new("sasl", "7d3c1a52-0000-4000-8000-000000000019", 3);
    ensemble.sasl_users = Some(users.path().to_owned());
    ensemble.enforce_auth = true;
    // Under quorum TLS, as an ensemble runs by default: SASL switches ZooKeeper's FIPS mode
    // off, which changes how it checks its peers' certificates.
    let (zookeeper, _certificates) = start_under_quorum_tls(&mut ensemble).await;

    // The login file holds passwords: the server's user alone reads it.
    for member in zookeeper.members().iter() {
        let jaas = member.data_dir().join("zooherd/jaas.conf");
        let mode = fs::metadata(&jaas).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", jaas.display());
        let argv = cmdline(member.pid().expect("running"));
        let login = format!("-Djava.security.auth.login.config={}", jaas.display());
        assert!(argv.contains(&login), "{argv:?}");
    }

    let servers = zookeeper.connect_string();
    let connect = |sasl: Option<(&str, &str)>| {
        let connector = sasl_connector(sasl);
        let servers = servers.clone();
        async move { connector.connect(&servers).await }
    };
    let create = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());

    let kafka = connect(Some(("kafka", "kafka-secret")))
        .await
        .expect("kafka logs in");
    kafka
        .create("/kafka", b"brokers", &create)
        .await
        .expect("kafka writes");

    // Without a login the session opens, and every request is refused.
    let anonymous = connect(None).await;
    let anonymous_read = match &anonymous {
        Ok(client) => client.get_data("/kafka").await.map(|_| ()),
        Err(e) => Err(e.clone()),
    };
    let wrong = connect(Some(("kafka", "guess"))).await.map(|_| ());
    let stranger = connect(Some(("mallory", "kafka-secret"))).await.map(|_| ());
    // The digest scheme is no way around it: enforce.auth.schemes names sasl alone.
    let digest = {
        let connector = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .with_auth("digest", b"anyone:anything");
        match connector.connect(&servers).await {
            Ok(client) => client.get_data("/kafka").await.map(|_| ()),
            Err(e) => Err(e),
        }
    };
    println!(
        "anonymous: {anonymous_read:?}; wrong password: {wrong:?}; unknown user: {stranger:?}; digest: {digest:?}"
    );
    // The server closes each such session as it refuses it (AUTHFAILED).
    for (who, outcome) in [
        ("an anonymous client", &anonymous_read),
        ("a wrong password", &wrong),
        ("a user the Secret does not name", &stranger),
        ("a digest client", &digest),
    ] {
        assert!(
            matches!(outcome, Err(zk::Error::AuthFailed)),
            "{who}: {outcome:?}"
        );
    }

    // The operator's user, whose password is the superuser's digest, reads the membership;
    // without SASL, the operator would be refused as any other client.
    let addresses = operator_reads_the_membership(&zookeeper).await;
    let without = zooherd::quorum::reconfig::Reconfigurer::default()
        .committed(&addresses, Login::superuser(PASSWORD))
        .await;
    println!("the operator without SASL: {without:?}");
    assert!(
        matches!(
            without,
            Err(zooherd::quorum::reconfig::ReconfigError::Connect {
                source: zk::Error::AuthFailed,
                ..
            })
        ),
        "{without:?}"
    );
    drop(kafka);
}

/// Issue 14: `enforce` with client certificates as the clients' only login
/// (`x509ClientCaSecret`, no `saslUsersSecret`). The servers still run SASL, with the
/// operator's user alone, so the operator's session is still a login; no other SASL user and
/// no anonymous client gets through.
#[tokio::test]
async fn enforced_without_users_admits_the_operator_alone() {
    use zookeeper_client as zk;
    let mut ensemble = Ensemble::new("certonly", "7d3c1a52-0000-4000-8000-000000000020", 3);
    ensemble.enforce_auth = true;
    let (zookeeper, _certificates) = start_under_quorum_tls(&mut ensemble).await;
    operator_reads_the_membership(&zookeeper).await;

    let servers = zookeeper.connect_string();
    let read_as = |sasl: Option<(&str, &str)>| {
        let connector = sasl_connector(sasl);
        let servers = servers.clone();
        async move {
            match connector.connect(&servers).await {
                Ok(client) => client.get_data("/zookeeper").await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
    };
    let anonymous = read_as(None).await;
    let guess = read_as(Some(("kafka", "kafka-secret"))).await;
    println!("anonymous: {anonymous:?}; a SASL user: {guess:?}");
    for (who, outcome) in [("an anonymous client", &anonymous), ("a SASL user", &guess)] {
        assert!(
            matches!(outcome, Err(zk::Error::AuthFailed)),
            "{who}: {outcome:?}"
        );
    }
}

/// A client with a 10 s session, logged in with SASL as `sasl` (user, password) when given.
fn sasl_connector(sasl: Option<(&str, &str)>) -> zookeeper_client::Connector {
    use zookeeper_client as zk;
    let connector = zk::Client::connector().with_session_timeout(Duration::from_secs(10));
    match sasl {
        Some((user, password)) => connector.with_sasl(zk::SaslOptions::digest_md5(
            user.to_owned(),
            password.to_owned(),
        )),
        None => connector,
    }
}

/// The operator's user, whose password is the superuser's digest, reads the membership
/// through the members of `zookeeper` (three voters); their client addresses.
async fn operator_reads_the_membership(zookeeper: &ZkEnsemble) -> Vec<std::net::SocketAddr> {
    let addresses: Vec<_> = zookeeper
        .members()
        .iter()
        .map(|member| member.client_address())
        .collect();
    let membership = zooherd::quorum::reconfig::Reconfigurer::default()
        .committed(&addresses, Login::superuser_with_sasl(PASSWORD))
        .await
        .expect("the operator reads the membership over SASL");
    assert_eq!(membership.voters(), Myid::up_to(3).collect());
    addresses
}

/// Runs `zooherd server` for pod `<name>-<ordinal>` of `ensemble` on `data_dir`, expecting it
/// to exit before starting any JVM (JAVA_HOME points nowhere, so a wrongful exec fails fast).
/// The ConfigMap says the ensemble has formed: the agent does not wait for the servers' names
/// (which resolve nowhere here) before the exec. Not for a restore, which is only made before
/// formation (and a refused one exits before that wait).
fn refused_start(ensemble: &Ensemble, ordinal: u32, data_dir: &Path, dir: &Path) -> Output {
    let config = dir.join("zoo.cfg");
    let members = dir.join("members");
    let formed = dir.join("formed");
    fs::write(&config, ensemble.operator_config()).unwrap();
    fs::write(&members, ensemble.operator_members()).unwrap();
    fs::write(&formed, ensemble.restore.is_empty().to_string()).unwrap();
    Command::new(ZOOHERD)
        .arg("server")
        .arg("--config")
        .arg(&config)
        .arg("--members")
        .arg(&members)
        .arg("--formed")
        .arg(&formed)
        .arg("--runtime-config")
        .arg(dir.join("runtime/zoo.cfg"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("POD_NAME", format!("{}-{ordinal}", ensemble.name))
        .env("POD_NAMESPACE", NAMESPACE)
        .env("ZOOHERD_ENSEMBLE_UID", ensemble.uid)
        .env("JAVA_HOME", dir.join("no-java"))
        .envs(ensemble.restore.iter().cloned())
        .stdin(Stdio::null())
        .output()
        .expect("run zooherd server")
}

fn stderr_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    stderr.trim().to_owned()
}

#[test]
fn foreign_data_directories_are_refused_with_distinct_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let ensemble = Ensemble::new("zk", "7d3c1a52-0000-4000-8000-00000000000a", 3);

    // The volume of the server with myid 3, mounted by ordinal 0 (myid 1).
    let other_server = tmp.path().join("other-server");
    fs::create_dir_all(&other_server).unwrap();
    fs::write(other_server.join(MYID_FILE), "3\n").unwrap();
    let output = refused_start(&ensemble, 0, &other_server, tmp.path());
    assert_eq!(output.status.code(), Some(i32::from(EXIT_FOREIGN_MYID)));
    let line = stderr_line(&output);
    assert!(
        line.starts_with(&format!(
            "zooherd server: refusing to start: data directory {} holds myid 3, but pod zk-0 is myid 1",
            other_server.display()
        )),
        "{line}"
    );
    assert_eq!(
        fs::read_to_string(other_server.join(MYID_FILE)).unwrap(),
        "3\n"
    );
    assert!(!other_server.join(ENSEMBLE_MARKER_FILE).exists());

    // A volume that an ensemble of the same name, since deleted, left behind.
    let old_ensemble = Ensemble::new("zk", "11111111-2222-4333-8444-555555555555", 3);
    let left_behind = tmp.path().join("left-behind");
    fs::create_dir_all(&left_behind).unwrap();
    let old_marker = EnsembleMarker {
        uid: old_ensemble.uid.to_owned(),
        ensemble: "agents/zk".to_owned(),
    }
    .render();
    fs::write(left_behind.join(ENSEMBLE_MARKER_FILE), &old_marker).unwrap();
    fs::write(left_behind.join(MYID_FILE), "2\n").unwrap();
    fs::create_dir_all(left_behind.join("version-2")).unwrap();
    fs::write(left_behind.join("version-2/snapshot.100000000"), "its data").unwrap();
    let output = refused_start(&ensemble, 1, &left_behind, tmp.path());
    assert_eq!(output.status.code(), Some(i32::from(EXIT_FOREIGN_ENSEMBLE)));
    let line = stderr_line(&output);
    assert!(
        line.starts_with(&format!(
            "zooherd server: refusing to start: data directory {} belongs to ensemble agents/zk (uid {}), not agents/zk (uid {})",
            left_behind.display(),
            old_ensemble.uid,
            ensemble.uid
        )),
        "{line}"
    );
    assert_eq!(
        fs::read_to_string(left_behind.join(ENSEMBLE_MARKER_FILE)).unwrap(),
        old_marker
    );

    // The ensemble that left it is let in, and gets as far as starting java.
    let output = refused_start(&old_ensemble, 1, &left_behind, tmp.path());
    assert_eq!(output.status.code(), Some(i32::from(EXIT_EXEC_FAILED)));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].contains(&format!(
                "data directory {} is this server's",
                left_behind.display()
            ))
            && lines[1].starts_with("zooherd server: cannot start "),
        "{stderr}"
    );

    // A pod beyond the configured members is bad input, named as such.
    let fresh = tmp.path().join("fresh");
    let output = refused_start(&ensemble, 3, &fresh, tmp.path());
    assert_eq!(output.status.code(), Some(i32::from(EXIT_INVALID_INPUT)));
    assert!(
        stderr_line(&output).contains("has no server.4 line, so myid 4 (pod zk-3) is not a member"),
        "{output:?}"
    );
    assert!(!fresh.exists(), "nothing claimed for a non-member");
}

#[test]
fn missing_identity_is_one_line_naming_the_variable() {
    let output = Command::new(ZOOHERD)
        .args(["server", "--config", "/nonexistent/zoo.cfg"])
        .env_clear()
        .output()
        .expect("run zooherd server");
    assert_eq!(output.status.code(), Some(i32::from(EXIT_INVALID_INPUT)));
    assert_eq!(
        stderr_line(&output),
        "zooherd server: cannot read /nonexistent/zoo.cfg: No such file or directory (os error 2); \
         mount the ensemble's ConfigMap there, or pass --config and --members"
    );

    let tmp = tempfile::tempdir().unwrap();
    let config: PathBuf = tmp.path().join("zoo.cfg");
    fs::write(&config, "server.1=a:2888:3888\ndataDir=/d\n").unwrap();
    let output = Command::new(ZOOHERD)
        .arg("server")
        .arg("--config")
        .arg(&config)
        .env_clear()
        .env("POD_NAME", "zk-0")
        .env("POD_NAMESPACE", NAMESPACE)
        .output()
        .expect("run zooherd server");
    assert_eq!(output.status.code(), Some(i32::from(EXIT_INVALID_INPUT)));
    assert_eq!(
        stderr_line(&output),
        "zooherd server: ZOOHERD_ENSEMBLE_UID is not set: set it to the ZooKeeperEnsemble's metadata.uid \
         (the operator's StatefulSet does)"
    );
}

/// The servers' loopback addresses, by myid.
fn addresses(zk: &ZkEnsemble) -> BTreeMap<Myid, IpAddr> {
    zk.members()
        .iter()
        .map(|m| (m.myid(), IpAddr::V4(m.ip())))
        .collect()
}

/// The membership of servers `myids` at `version`, each line with the server's own client
/// address, as the servers here bind it (ZOOHERD_BIND_ADDRESS): a reconfiguration gives every
/// server the committed lines, its own included, and it must keep its client port where it
/// is. (In Kubernetes every server binds all interfaces, and the operator's lines say so.)
fn bound_members(lines: &BTreeMap<Myid, String>, myids: &[Myid], version: u64) -> Membership {
    Membership {
        version,
        servers: myids.iter().map(|m| (*m, lines[m].clone())).collect(),
    }
}

/// Prepares the servers of `ensemble`, gives them a bootstrap membership of all of them with
/// the server lines `line` makes, starts them and waits until they all serve. Returns the
/// servers and the lines.
async fn start_with_lines(
    ensemble: &Ensemble,
    line: impl Fn(&support::zookeeper::Member) -> String,
) -> (ZkEnsemble, BTreeMap<Myid, String>) {
    let mut zk = ensemble.builder().prepare().expect("prepare the servers");
    let lines: BTreeMap<Myid, String> = zk.members().iter().map(|m| (m.myid(), line(m))).collect();
    let myids: Vec<Myid> = lines.keys().copied().collect();
    *ensemble.members.lock().unwrap() = Some(bound_members(&lines, &myids, 0));
    for i in 0..zk.size() {
        zk.start_member(i).expect("start a server");
    }
    zk.wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (zk, lines)
}

#[tokio::test]
async fn scaling_to_one_and_back_and_restarting_on_the_newest_committed_membership() {
    let ensemble = Ensemble::new("scale", "7d3c1a52-0000-4000-8000-000000000005", 3);
    let (mut zk, lines) =
        start_with_lines(&ensemble, |m| server_line(&m.spec().servers[m.index()])).await;

    // Before growing, the operator writes the bootstrap membership: the committed voters, and
    // the joining servers as observers.
    let operator = ensemble.clone();
    let ips = addresses(&zk);
    let mut before_grow = move |committed: &Membership, servers: u8| {
        let servers = u32::from(servers);
        let topology = Topology::new(servers, Some(&committed.voters()), Some(servers));
        *operator.members.lock().unwrap() = Some(operator.bound_bootstrap(&ips, &topology));
    };
    let add_lines = lines.clone();
    let line = move |_: &ZkEnsemble, myid: Myid| add_lines[&myid].clone();
    let mut scaler = Scaler {
        password: PASSWORD,
        line: &line,
        before_grow: &mut before_grow,
    };
    let mut replicas = 3;
    let steps = scaler.scale(&mut zk, &mut replicas, 1).await;
    assert_eq!(
        names(&steps),
        [
            "removing voter 3",
            "removing voter 2",
            "stopping the servers beyond 1"
        ]
    );
    let one = committed(&zk, 1, PASSWORD).await;
    assert_eq!(one.voters(), Myid::up_to(1).collect());
    assert_eq!(
        zk.wait_for_serving(0, QUORUM_TIMEOUT).await.ok(),
        Some(ServerState::Leader),
        "a quorum of one"
    );

    // Restarted, the server finds the operator's membership of three at version 0, and the
    // committed membership of one on its volume: it must start with the newest, or it would
    // wait forever for a quorum of two.
    zk.restart(0).expect("restart the last server");
    let state = zk.wait_for_serving(0, QUORUM_TIMEOUT).await;
    let log = fs::read_to_string(zk.member(0).log_file()).unwrap();
    assert_eq!(
        state.ok(),
        Some(ServerState::Leader),
        "{}",
        support::tail(zk.member(0).log_file(), 30)
    );
    let wanted = format!(
        "members 1 (version {}, committed, from the data volume)",
        one.version_hex()
    );
    assert_eq!(
        log.matches(&wanted).count(),
        1,
        "the restart logged {wanted:?}"
    );

    // Back to three: the removed servers come back on their volumes, which hold older
    // memberships, and start with the operator's (newer) one.
    let steps = scaler.scale(&mut zk, &mut replicas, 3).await;
    assert_eq!(
        names(&steps),
        [
            "starting servers up to 3 (as non-voting followers)",
            "adding server 2 as a voter",
            "adding server 3 as a voter",
        ]
    );
    let three = committed(&zk, 3, PASSWORD).await;
    assert_eq!(three.voters(), Myid::up_to(3).collect());
    zk.wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Copies directory `from` to `to` (which must not exist), files and subdirectories.
/// Replaces server 2's data directory by a copy of server 3's (both stopped for the copy), starts
/// server 3 again, then server 2, and waits until all serve; returns server 2's data directory.
async fn swap_in_a_copy_of_server_3(zookeeper: &mut ZkEnsemble) -> PathBuf {
    zookeeper.stop(1).unwrap();
    zookeeper.stop(2).unwrap();
    let data_2 = zookeeper.member(1).data_dir().to_owned();
    fs::rename(&data_2, zookeeper.member(1).dir().join("data-of-server-2")).unwrap();
    copy_dir(zookeeper.member(2).data_dir(), &data_2);
    zookeeper.start_member(2).unwrap();
    zookeeper
        .wait_for_serving(2, QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    zookeeper.start_member(1).unwrap();
    zookeeper
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    data_2
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_volume_of_another_server_is_reinitialised_only_while_the_others_hold_a_quorum() {
    use zookeeper_client as zk;
    let ensemble = Ensemble::new("reinit", "7d3c1a52-0000-4000-8000-000000000006", 3);
    // Server lines by address: the agent itself asks the other servers (through the system's
    // resolver, which knows nothing of the test's host names) before it moves data aside.
    let (mut zookeeper, _) = start_with_lines(&ensemble, |m| {
        format!("{0}:2888:3888:participant;{0}:2181", m.ip())
    })
    .await;
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .expect("connect a client");
    let create = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client
        .create("/before", b"kept", &create)
        .await
        .expect("create /before");
    drop(client);

    // Server 2's volume is replaced by a copy of server 3's (as if the volumes were swapped);
    // servers 1 and 3 hold the quorum: server 2 moves the copy aside and syncs from the leader.
    let data_2 = swap_in_a_copy_of_server_3(&mut zookeeper).await;
    let log = fs::read_to_string(zookeeper.member(1).log_file()).unwrap();
    assert!(
        log.contains(&format!(
            "zooherd server: data directory {} held myid 3, not 2 (pod reinit-1); voters 1, 3 serve, a quorum of 1, 2, 3 without this server, so it was moved to {}/stale-",
            data_2.display(),
            data_2.display()
        )),
        "{}",
        support::tail(zookeeper.member(1).log_file(), 20)
    );
    assert_eq!(fs::read_to_string(data_2.join(MYID_FILE)).unwrap(), "2\n");
    let stale: Vec<PathBuf> = fs::read_dir(&data_2)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("stale-")
        })
        .collect();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(fs::read_to_string(stale[0].join(MYID_FILE)).unwrap(), "3\n");
    let only_2 = zookeeper.member(1).client_address().to_string();
    let client = zk::Client::connect(&only_2)
        .await
        .expect("connect to server 2");
    let (data, _) = client
        .get_data("/before")
        .await
        .expect("read /before on server 2");
    assert_eq!(data, b"kept");
    drop(client);

    // Without a quorum of the others, another server's volume is refused as before.
    zookeeper.stop(0).unwrap();
    zookeeper.stop(2).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let swapped = tmp.path().join("swapped");
    fs::create_dir_all(&swapped).unwrap();
    fs::write(swapped.join(MYID_FILE), "3\n").unwrap();
    let output = refused_start(&ensemble, 1, &swapped, tmp.path());
    assert_eq!(output.status.code(), Some(i32::from(EXIT_FOREIGN_MYID)));
    let line = stderr_line(&output);
    assert!(
        line.contains("holds myid 3, but pod reinit-1 is myid 2, and it is kept because the other voters do not serve as a quorum without it (serving: none;"),
        "{line}"
    );
    assert_eq!(fs::read_to_string(swapped.join(MYID_FILE)).unwrap(), "3\n");
}

/// The check before moving another server's data aside under quorum TLS: this server's
/// AdminServer, and its peers', take only HTTPS with a certificate of the ensemble's CA, and
/// the agent asks them with the servers' certificate (the stores its zoo.cfg names). Without
/// that, the peers would not answer and the copy would be kept, the server never starting.
/// Starts the three servers of `ensemble` with quorum TLS on (the stage a new ensemble starts
/// at), from certificates the operator's code issues into the returned directory; the
/// harness's probes speak HTTPS with a client certificate of the CA, as the operator's.
async fn start_under_quorum_tls(ensemble: &mut Ensemble) -> (ZkEnsemble, tempfile::TempDir) {
    let certificates_dir = tempfile::tempdir().unwrap();
    let owner = format!("{NAMESPACE}/{}", ensemble.name);
    let issued =
        zooherd::tls::issue(&owner, &[], &[], jiff::Timestamp::now()).expect("issue certificates");
    let dir = certificates_dir.path();
    fs::write(dir.join("keystore.pem"), issued.key_store()).unwrap();
    fs::write(dir.join("ca.crt"), &issued.ca_certificate).unwrap();
    ensemble.tls_dir = Some(dir.to_owned());
    let mut zookeeper = ensemble.builder().prepare().expect("prepare the servers");
    let operator = zooherd::tls::admin_client(
        &owner,
        &issued.ca_certificate,
        &issued.ca_key,
        "tests",
        jiff::Timestamp::now(),
    )
    .unwrap();
    for i in 0..3 {
        zookeeper
            .configure_quorum_tls(i, QuorumTls::On, dir)
            .unwrap();
    }
    zookeeper.set_admin_tls(0..3, &operator).unwrap();
    let lines: BTreeMap<Myid, String> = zookeeper
        .members()
        .iter()
        .map(|m| {
            (
                m.myid(),
                format!("{0}:2888:3888:participant;{0}:2181", m.ip()),
            )
        })
        .collect();
    let myids: Vec<Myid> = lines.keys().copied().collect();
    *ensemble.members.lock().unwrap() = Some(bound_members(&lines, &myids, 0));
    for i in 0..3 {
        zookeeper.start_member(i).expect("start a server");
    }
    zookeeper
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (zookeeper, certificates_dir)
}

#[tokio::test]
async fn under_quorum_tls_a_volume_of_another_server_is_reinitialised_too() {
    let mut ensemble = Ensemble::new("reinit-tls", "7d3c1a52-0000-4000-8000-000000000009", 3);
    let (mut zookeeper, _certificates) = start_under_quorum_tls(&mut ensemble).await;

    // Server 2's volume is replaced by a copy of server 3's; servers 1 and 3 hold the quorum.
    let data_2 = swap_in_a_copy_of_server_3(&mut zookeeper).await;
    let log = fs::read_to_string(zookeeper.member(1).log_file()).unwrap();
    assert!(
        log.contains("held myid 3, not 2 (pod reinit-tls-1); voters 1, 3 serve, a quorum of 1, 2, 3 without this server, so it was moved to"),
        "{}",
        support::tail(zookeeper.member(1).log_file(), 20)
    );
    assert_eq!(fs::read_to_string(data_2.join(MYID_FILE)).unwrap(), "2\n");
}

/// The servers' states while `window` runs, probed about every 200 ms: the first state a
/// server that must not vote reported as a voter (leader or follower), with when.
async fn first_voting_state(
    zk: &ZkEnsemble,
    servers: &[usize],
    window: Duration,
) -> Option<(usize, ServerState, Duration)> {
    let started = Instant::now();
    while started.elapsed() < window {
        let probes = futures::future::join_all(servers.iter().map(|&i| zk.probe(i))).await;
        for (&i, probe) in servers.iter().zip(&probes) {
            if let Some(state @ (ServerState::Leader | ServerState::Follower)) = probe.state() {
                return Some((i, state.clone(), started.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Scales a new ensemble of `voters` servers up to `replicas` while the voters are out of the
/// joining servers' reach: `stopped` ones stopped, then `frozen` frozen (indices). The joining
/// servers start with the bootstrap membership the operator writes for the scale-up; if they
/// could vote in it and are a majority of it, they elect a leader of their own over an empty
/// tree (issue 20). They must wait, not voting, until the voters are back, then sync from the
/// leader and be added as voters one at a time.
async fn scale_up_while_the_voters_are_out_of_reach(
    ensemble: Ensemble,
    voters: usize,
    stopped: &[usize],
    frozen: usize,
) {
    use zookeeper_client as zk;
    let replicas = ensemble.replicas as usize;
    let mut zookeeper = ensemble.builder().prepare().expect("prepare the servers");
    let ips = addresses(&zookeeper);
    let lines: BTreeMap<Myid, String> = zookeeper
        .members()
        .iter()
        .map(|m| (m.myid(), server_line(&m.spec().servers[m.index()])))
        .collect();

    // A new ensemble of `voters`, with data.
    let initial = Topology::initial(voters as u32);
    *ensemble.members.lock().unwrap() = Some(ensemble.bound_bootstrap(&ips, &initial));
    for i in 0..voters {
        zookeeper.start_member(i).expect("start a voter");
    }
    zookeeper
        .wait_for("the voters serving", QUORUM_TIMEOUT, |probes| {
            quorum_leader(&probes[..voters])
                .filter(|_| probes[..voters].iter().all(Probe::is_serving))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .expect("connect a client");
    let create = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client
        .create("/before", b"the voters'", &create)
        .await
        .expect("create /before");
    drop(client);
    let committed_voters = committed(&zookeeper, voters, PASSWORD).await.voters();
    assert_eq!(committed_voters, initial.voters);

    // spec.replicas grows: the operator writes the bootstrap membership for the committed
    // voters and the joining servers, and grows the StatefulSet; the voters are out of reach.
    for &i in stopped {
        zookeeper.stop(i).expect("stop a voter");
    }
    zookeeper.freeze(frozen).expect("freeze a voter");
    let topology = Topology::new(
        replicas as u32,
        Some(&committed_voters),
        Some(voters as u32),
    );
    let bootstrap = ensemble.bound_bootstrap(&ips, &topology);
    println!(
        "bootstrap membership of the joining servers:\n{}",
        bootstrap.render()
    );
    *ensemble.members.lock().unwrap() = Some(bootstrap);
    let joining: Vec<usize> = (voters..replicas).collect();
    for &i in &joining {
        zookeeper.start_member(i).expect("start a joining server");
    }

    // Long enough for an election among them, and for a leader to wait initLimit ticks for
    // followers to sync (the operator's zoo.cfg: tickTime 2000 ms, initLimit 10).
    let window = Duration::from_secs(20 + 5);
    if let Some((i, state, after)) = first_voting_state(&zookeeper, &joining, window).await {
        let probes = futures::future::join_all(joining.iter().map(|&i| zookeeper.probe(i))).await;
        let probes: Vec<String> = probes.iter().map(Probe::to_string).collect();
        panic!(
            "split brain: joining server {} reported {state} {after:?} after starting, while the \
             voters were out of reach (joining servers now: {})",
            i + 1,
            probes.join(" / "),
        );
    }
    let probes = futures::future::join_all(joining.iter().map(|&i| zookeeper.probe(i))).await;
    let probes: Vec<String> = probes.iter().map(Probe::to_string).collect();
    println!(
        "{window:?} with the voters out of reach, the joining servers answer: {}",
        probes.join(" / ")
    );

    // The voters back: the joining servers sync from the leader and are added one at a time.
    zookeeper.thaw(frozen).expect("thaw a voter");
    for &i in stopped {
        zookeeper.start_member(i).expect("start a voter");
    }
    let back = Instant::now();
    let states = zookeeper
        .wait_for("the joining servers syncing", QUORUM_TIMEOUT, |probes| {
            let synced =
                quorum_leader(&probes[..voters]).is_some() && probes.iter().all(Probe::is_serving);
            synced.then(|| {
                probes[voters..]
                    .iter()
                    .map(Probe::to_string)
                    .collect::<Vec<_>>()
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{:?} after the voters are back, the joining servers serve: {}",
        back.elapsed(),
        states.join(" / ")
    );
    let line = move |_: &ZkEnsemble, myid: Myid| lines[&myid].clone();
    let mut no_grow = |_: &Membership, _: u8| {};
    let mut scaler = Scaler {
        password: PASSWORD,
        line: &line,
        before_grow: &mut no_grow,
    };
    let mut servers = replicas;
    let steps = scaler
        .scale(&mut zookeeper, &mut servers, replicas as u8)
        .await;
    let added: Vec<String> = (voters + 1..=replicas)
        .map(|myid| format!("adding server {myid} as a voter"))
        .collect();
    assert_eq!(names(&steps), added);
    let all = committed(&zookeeper, replicas, PASSWORD).await;
    assert_eq!(all.voters(), Topology::initial(replicas as u32).voters);
    let leader = zookeeper
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        leader < voters,
        "a first voter leads, not server {}",
        leader + 1
    );
    // One data tree: the voters', on every server.
    for i in 0..replicas {
        let address = zookeeper.member(i).client_address().to_string();
        let client = zk::Client::connect(&address).await.expect("connect");
        let (data, _) = client.get_data("/before").await.expect("read /before");
        assert_eq!(data, b"the voters'", "server {}", i + 1);
    }
}

/// 1 -> 3 while the only voter is frozen: two joining servers would be a majority of three.
#[tokio::test]
async fn joining_servers_cannot_elect_a_leader_of_their_own_while_the_voter_is_frozen() {
    let ensemble = Ensemble::new("grow", "7d3c1a52-0000-4000-8000-000000000007", 3);
    scale_up_while_the_voters_are_out_of_reach(ensemble, 1, &[], 0).await;
}

/// 3 -> 7 with two voters stopped and the third frozen: four joining servers would be a
/// majority of seven.
#[tokio::test]
async fn joining_servers_cannot_elect_a_leader_of_their_own_while_the_voters_are_down() {
    let ensemble = Ensemble::new("grow7", "7d3c1a52-0000-4000-8000-000000000008", 7);
    scale_up_while_the_voters_are_out_of_reach(ensemble, 3, &[1, 2], 0).await;
}

/// Issue 20, item 2, ordered so that it happens every time: write W while voter 2 is down
/// (acknowledged by voters 1 and 3), empty voter 3's volume, lose voter 1, and start 2 and 3.
/// - Where the ConfigMap does not say the ensemble formed (the old behaviour), the empty 3
///   starts as a voter, 2 and 3 elect 2, and W, acknowledged, is gone: the hazard is real.
/// - Where it says so (as the operator writes it once the ensemble formed), 3 refuses to start
///   as a voter (exit 82): 2 alone has no quorum, and once 1 is back W is there.
#[tokio::test]
async fn an_emptied_voter_never_votes_so_an_acknowledged_write_survives() {
    use zookeeper_client as zk;
    for formed in [false, true] {
        let ensemble = Ensemble::new("emptied", "7d3c1a52-0000-4000-8000-000000000009", 3);
        // Every server line binds its client port to the server's own address: servers on
        // one machine share port 2181, and a follower rebinds its client port to what the
        // leader's membership names for it.
        let (mut zookeeper, _) = start_with_lines(&ensemble, |m| {
            format!("{0}:2888:3888:participant;{0}:2181", m.ip())
        })
        .await;
        ensemble
            .formed
            .store(formed, std::sync::atomic::Ordering::SeqCst);
        let create = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        let client = zk::Client::connect(&zookeeper.connect_string())
            .await
            .expect("connect a client");
        client
            .create("/first", b"all three", &create)
            .await
            .unwrap();
        drop(client);

        // Voter 2 lags; W is acknowledged by voters 1 and 3 (once they have a leader: 2 may
        // have been it).
        zookeeper.stop(1).unwrap();
        for i in [0, 2] {
            zookeeper
                .wait_for_serving(i, QUORUM_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let to_1_and_3 = [0, 2]
            .map(|i| zookeeper.member(i).client_address().to_string())
            .join(",");
        let client = zk::Client::connect(&to_1_and_3).await.expect("connect");
        client
            .create("/acknowledged", b"W", &create)
            .await
            .expect("W is acknowledged");
        drop(client);

        // Voter 3's volume is lost and replaced by an empty one; voter 1 is lost.
        zookeeper.stop(0).unwrap();
        zookeeper.stop(2).unwrap();
        let data_3 = zookeeper.member(2).data_dir().to_owned();
        fs::remove_dir_all(&data_3).unwrap();
        fs::create_dir_all(&data_3).unwrap();
        zookeeper.start_member(1).unwrap();
        zookeeper.start_member(2).unwrap();

        if !formed {
            // The hazard: 2 and the empty 3 form a quorum, and W is gone.
            zookeeper
                .wait_for_serving(1, QUORUM_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let only_2 = zookeeper.member(1).client_address().to_string();
            let client = zk::Client::connect(&only_2).await.expect("connect to 2");
            assert_eq!(
                client.get_data("/acknowledged").await.err(),
                Some(zk::Error::NoNode),
                "without the refusal, the acknowledged write W is lost"
            );
            continue;
        }

        // The empty voter refuses to start, and says why.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while zookeeper.is_running(2) {
            assert!(std::time::Instant::now() < deadline, "server 3 still runs");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let log = fs::read_to_string(zookeeper.member(2).log_file()).unwrap();
        assert!(
            log.contains(&format!(
                "refusing to start: data directory {} holds no ZooKeeper data, yet the ensemble has formed and its membership lists myid 3 (pod emptied-2) as a voter",
                data_3.display()
            )),
            "{}",
            support::tail(zookeeper.member(2).log_file(), 10)
        );
        // Voter 2 alone has no quorum; with voter 1 back, W is there.
        assert!(!zookeeper.probe(1).await.is_serving());
        zookeeper.start_member(0).unwrap();
        zookeeper
            .wait_for_serving(1, QUORUM_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let only_2 = zookeeper.member(1).client_address().to_string();
        let client = zk::Client::connect(&only_2).await.expect("connect to 2");
        client.sync("/acknowledged").await.unwrap();
        let (data, _) = client.get_data("/acknowledged").await.expect("W survived");
        assert_eq!(data, b"W");
    }
}

/// Issue 18, item 2: what a roll's leader step does with 5 voters, on real servers started
/// by `zooherd server`. The leader is removed from the voters by reconfiguration (ZooKeeper
/// designates its successor, no election); its server is then stopped and started again as
/// the operator starts a replaced pod, with the ConfigMap's membership in which it joins as an
/// observer: the agent must prefer that to the older membership on its volume that lists it as
/// a voter, since the newest one on the volume no longer lists it. It syncs as a non-voting
/// follower, is added back, and no acknowledged write is lost. For comparison, the same
/// ensemble's leader is then stopped and restarted as before (an election). Prints the longest
/// time a client writing throughout went without an acknowledgement, in both.
#[tokio::test]
async fn a_leader_that_hands_over_rejoins_as_a_non_voter_and_no_write_is_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use zooherd::quorum::reconfig::Reconfigurer;
    use zookeeper_client as zk;

    let ensemble = Ensemble::new("handover", "7d3c1a52-0000-4000-8000-000000000010", 5);
    let (mut zookeeper, lines) = start_with_lines(&ensemble, |m| {
        format!("{0}:2888:3888:participant;{0}:2181", m.ip())
    })
    .await;
    ensemble.formed.store(true, Ordering::SeqCst);
    let create = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .expect("connect a client");
    client.create("/handover", b"", &create).await.unwrap();
    drop(client);
    let reconfigurer = Reconfigurer::default();
    let all: Vec<std::net::SocketAddr> = zookeeper.client_addresses(0..5);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(
        zookeeper.connect_string(),
        "/handover",
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The hand-over.
    let leader = zookeeper.leader().await.expect("a leader");
    let myid = zookeeper.member(leader).myid();
    let from = committed(&zookeeper, 5, PASSWORD).await;
    let started = Instant::now();
    let without = reconfigurer
        .remove_voter(&all, Login::superuser(PASSWORD), &from, myid)
        .await
        .unwrap_or_else(|e| panic!("removing the leader {myid}: {e}"));
    let removal = started.elapsed();
    let successor = zookeeper
        .wait_for_new_leader(leader, QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "hand-over: voter {myid} removed in {} ms, server {} leads after {} ms",
        removal.as_millis(),
        zookeeper.member(successor).myid(),
        started.elapsed().as_millis()
    );

    // Its pod is replaced: the ConfigMap now lists it as joining.
    zookeeper.stop(leader).unwrap();
    let ips = addresses(&zookeeper);
    let topology = Topology::new(5, Some(&without.voters()), Some(5));
    *ensemble.members.lock().unwrap() = Some(ensemble.bound_bootstrap(&ips, &topology));
    zookeeper.start_member(leader).unwrap();
    let state = zookeeper.wait_for_serving(leader, QUORUM_TIMEOUT).await;
    assert_eq!(
        state.ok(),
        Some(ServerState::Follower),
        "{}",
        support::tail(zookeeper.member(leader).log_file(), 30)
    );
    let log = fs::read_to_string(zookeeper.member(leader).log_file()).unwrap();
    let restart = log
        .rsplit("===== zooherd test: starting member")
        .next()
        .unwrap();
    assert!(
        restart.contains("version 0, from the operator"),
        "the removed leader must start with the operator's membership, in which it joins: {}",
        support::tail(zookeeper.member(leader).log_file(), 30)
    );
    let line = &lines[&myid];
    let back = reconfigurer
        .add_voter(&all, Login::superuser(PASSWORD), &without, myid, line)
        .await
        .unwrap_or_else(|e| panic!("adding {myid} back: {e}"));
    assert_eq!(back.voters(), Myid::up_to(5).collect());
    zookeeper
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stop.store(true, Ordering::SeqCst);
    let (handed_over, handover_gap) = writer.await.unwrap();

    // The same step as before the change: the leader stopped and started again.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(
        zookeeper.connect_string(),
        "/handover",
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = zookeeper.leader().await.expect("a leader");
    zookeeper.stop(leader).unwrap();
    zookeeper
        .wait_for_new_leader(leader, QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    zookeeper.start_member(leader).unwrap();
    zookeeper
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let (elected, election_gap) = writer.await.unwrap();

    for (what, acknowledged) in [("hand-over", &handed_over), ("election", &elected)] {
        assert!(acknowledged.len() > 50, "{what}: too few writes");
        let lost = lost_writes(&zookeeper.connect_string(), "/handover", acknowledged).await;
        assert!(
            lost.is_empty(),
            "{what}: acknowledged writes lost: {lost:?}"
        );
    }
    println!(
        "longest time without an acknowledged write: hand-over {} ms ({} writes), leader stopped {} ms ({} writes)",
        handover_gap.as_millis(),
        handed_over.len(),
        election_gap.as_millis(),
        elected.len()
    );
}

/// The `ZOOHERD_RESTORE_*` variables for `key` in `s3`'s bucket `restores`, with the size,
/// SHA-256 and zxid of `snapshot`, as the operator sets them from status.restore.
fn restore_env(
    s3: &support::s3::S3Server,
    key: &str,
    snapshot: &[u8],
    zxid: u64,
) -> Vec<(String, String)> {
    use sha2::{Digest, Sha256};
    [
        ("ZOOHERD_RESTORE_ENDPOINT", s3.endpoint().to_owned()),
        ("ZOOHERD_RESTORE_BUCKET", "restores".to_owned()),
        ("ZOOHERD_RESTORE_KEY", key.to_owned()),
        ("ZOOHERD_RESTORE_SIZE", snapshot.len().to_string()),
        (
            "ZOOHERD_RESTORE_SHA256",
            const_hex::encode(Sha256::digest(snapshot)),
        ),
        ("ZOOHERD_RESTORE_ZXID", format!("{zxid:#x}")),
        (
            "ZOOHERD_RESTORE_ACCESS_KEY_ID",
            support::s3::ACCESS_KEY_ID.to_owned(),
        ),
        (
            "ZOOHERD_RESTORE_SECRET_ACCESS_KEY",
            support::s3::SECRET_ACCESS_KEY.to_owned(),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// Issue 16, item 2: a new ensemble whose servers are given a stored snapshot (as the operator
/// gives them status.restore) starts from it: every server downloads it, checked, into its
/// empty volume, and the ensemble serves every persistent znode of a Kafka-shaped tree with
/// the same data, version, zxids and ACL, under its own membership. A truncated or corrupted
/// object is refused with exit code 83 naming the object and the mismatch, and leaves nothing
/// ZooKeeper would load. A server that restarts once it has data never downloads again (the
/// store may be gone by then).
#[tokio::test]
async fn a_new_ensemble_starts_from_a_stored_snapshot_and_refuses_a_damaged_one() {
    use object_store::{ObjectStoreExt, PutPayload, path::Path as ObjectPath};
    use support::kafka_tree::{read_tree, write_tree};
    use zookeeper_client as zk;

    // The snapshot: a server's tree, taken as ZooKeeper takes one when it starts
    // (ZooKeeperServer.loadData), so that it holds every write. (A plain server: the agent's
    // wait for names before formation would cost each start here 30 s.)
    let mut zookeeper = ZkEnsemble::builder(1)
        .start()
        .expect("start the source server");
    zookeeper
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .expect("connect a client");
    let paths = write_tree(&client).await;
    let before = read_tree(&client, &paths).await;
    drop(client);
    zookeeper.restart(0).unwrap();
    zookeeper
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let file = newest_snapshot(zookeeper.member(0).data_dir()).expect("a snapshot");
    let zxid = file
        .file_name()
        .and_then(|name| name.to_str()?.strip_prefix("snapshot."))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .expect("a snapshot named by its zxid");
    let snapshot = fs::read(&file).unwrap();
    drop(zookeeper);

    // The store, with the snapshot and two damaged copies of it.
    let s3 = support::s3::S3Server::start(&["restores"]).expect("start s3s-fs");
    let location = zooherd::api::S3Location {
        endpoint: s3.endpoint().to_owned(),
        bucket: "restores".to_owned(),
        prefix: String::new(),
        region: "us-east-1".to_owned(),
        virtual_hosted_style: false,
        credentials_secret: String::new(),
    };
    let credentials = zooherd::backup::plan::S3Credentials {
        access_key_id: support::s3::ACCESS_KEY_ID.to_owned(),
        secret_access_key: support::s3::SECRET_ACCESS_KEY.to_owned(),
        ca: None,
    };
    let store = zooherd::backup::take::object_store("s3", &location, &credentials).unwrap();
    let mut corrupted = snapshot.clone();
    corrupted[snapshot.len() / 2] ^= 0xff;
    let truncated = snapshot[..snapshot.len() / 2].to_vec();
    for (key, bytes) in [
        ("good.snapshot", snapshot.clone()),
        ("corrupted.snapshot", corrupted),
        ("truncated.snapshot", truncated),
    ] {
        store
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .expect("storing an object");
    }

    // Damaged: refused, and nothing left that ZooKeeper would load.
    let tmp = tempfile::tempdir().unwrap();
    for (key, expected) in [
        ("corrupted.snapshot", "its SHA-256 is"),
        (
            "truncated.snapshot",
            &*format!("bytes, the backup stored {}", snapshot.len()),
        ),
    ] {
        let mut damaged = Ensemble::new("damaged", "7d3c1a52-0000-4000-8000-000000000017", 3);
        damaged.restore = restore_env(&s3, key, &snapshot, zxid);
        let data_dir = tmp.path().join(key);
        let output = refused_start(&damaged, 0, &data_dir, tmp.path());
        let line = stderr_line(&output);
        assert_eq!(
            output.status.code(),
            Some(i32::from(EXIT_RESTORE_FAILED)),
            "{line}"
        );
        assert!(
            line.contains(&format!(
                "cannot restore s3://restores/{key} (spec.restore)"
            )) && line.contains(expected),
            "{line}"
        );
        let left: Vec<_> = fs::read_dir(data_dir.join("version-2"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{key} left {left:?}");
    }

    // Whole: three servers start from it and serve it under their own membership.
    let mut restored = Ensemble::new("restored", "7d3c1a52-0000-4000-8000-000000000018", 3);
    restored.restore = restore_env(&s3, "good.snapshot", &snapshot, zxid);
    let mut zookeeper = restored.builder().start().expect("start 3 zooherd servers");
    zookeeper
        .wait_for_all_serving(QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..3 {
        let log = fs::read_to_string(zookeeper.member(i).log_file()).unwrap_or_default();
        assert!(
            log.contains("zooherd server: restored s3://restores/good.snapshot"),
            "member {i} did not restore: {}",
            support::tail(zookeeper.member(i).log_file(), 20)
        );
    }
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .expect("connect to the restored ensemble");
    assert_eq!(read_tree(&client, &paths).await, before);
    let (config, _) = client.get_config().await.expect("/zookeeper/config");
    let config = String::from_utf8_lossy(&config);
    for myid in 1..=3 {
        assert!(config.contains(&restored.host(myid)), "{config}");
    }
    let servers = config.lines().filter(|line| line.starts_with("server."));
    assert_eq!(servers.count(), 3, "{config}");
    println!(
        "{} znodes of a {}-byte snapshot restored on 3 servers",
        before.len(),
        snapshot.len()
    );
    drop(client);

    // Once it has data, a server starts without the store.
    drop(s3);
    restored
        .formed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    zookeeper.restart(1).unwrap();
    zookeeper
        .wait_for_serving(1, QUORUM_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = zk::Client::connect(&zookeeper.connect_string_of([1]))
        .await
        .expect("connect to the restarted server");
    assert_eq!(read_tree(&client, &paths).await, before);
}
