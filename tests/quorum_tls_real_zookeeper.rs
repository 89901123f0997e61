//! Quorum TLS on real ZooKeeper ensembles (tests/support/src/zookeeper.rs): the certificates of
//! `zooherd::tls::issue` and the zoo.cfg keys of each stage of `QuorumTls`
//! (src/build/quorum_tls.rs), as the operator renders them, with the files in each member's
//! directory instead of the pod's mount. The tests prove that
//! - servers with the ensemble's certificate form a quorum over mutual TLS, and the election
//!   port then hangs up on a peer that speaks plaintext;
//! - a server with another CA's certificate, or none, never joins, while one with the ensemble's
//!   certificate does;
//! - a plaintext ensemble switches to TLS in three rolls (Accepting, Connecting, On), one server
//!   at a time, without losing an acknowledged write; and that skipping a stage leaves the
//!   restarted server out;
//! - the AdminServer of a server with quorum TLS answers only HTTPS, and only a client with a
//!   certificate of the ensemble's CA: the operator's prober and the pod's own probe get in;
//!   plain HTTP, no certificate and another CA's certificate get no answer;
//! - the TLS client port serves the ensemble's certificate beside the plaintext one: a client
//!   that trusts the ensemble's CA writes over it, one that trusts another CA gets no session;
//! - with client certificates of the user's CA and authentication enforced, a client with such
//!   a certificate is logged in as `x509:<subject DN>` and served; one with no certificate,
//!   one with another CA's certificate, or on the plaintext port, is refused every request.
//!
//! Run `bash tests/cluster/setup.sh` once first, then
//! `cargo test --test quorum_tls_real_zookeeper -- --nocapture` to see the figures (each
//! stage's duration and the longest time without an acknowledged write). The tests take turns
//! (one ensemble at a time on a 2-core machine).

use zooherd_test_support as support;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::writer::{lost_writes, write_until};
use support::zookeeper::{ELECTION_PORT, Probe, ServerState, ZkEnsemble, certificates_in};
use tokio::sync::Mutex;
use zooherd::build::names::SECURE_CLIENT_PORT;
use zooherd::build::tls::{CA_KEY, ClientTls, KEY_STORE_KEY, QuorumTls};
use zooherd::quorum::reconfig::super_digest;
use zooherd::tls::{CA_VALIDITY_DAYS, QuorumCertificates, admin_client, issue};
use zookeeper_client as zk;

const PASSWORD: &str = "quorum-tls-test-password";
/// Starting JVMs on a busy 2-core machine can be slow.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server that must not join is watched: several times what joining takes.
const LEFT_OUT_FOR: Duration = Duration::from_secs(30);
/// How long a server that skipped a stage is watched.
const SKIPPED_FOR: Duration = Duration::from_secs(20);

/// One ensemble at a time (see the module documentation).
static ONE_ENSEMBLE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Certificates of a new CA for the ensemble, naming its members' addresses.
fn certificates(zk: &ZkEnsemble) -> QuorumCertificates {
    let ips: Vec<IpAddr> = zk.members().iter().map(|m| IpAddr::V4(m.ip())).collect();
    issue("tests/quorum-tls", &[], &ips, jiff::Timestamp::now()).expect("issue certificates")
}

/// Lets the test into the AdminServers of members `indices` (quorum TLS secures them) with a
/// client certificate of `certificates`' CA, as the operator has one.
fn admit(
    zk: &mut ZkEnsemble,
    indices: impl IntoIterator<Item = usize>,
    certificates: &QuorumCertificates,
) {
    let client = admin_client(
        "tests/quorum-tls",
        &certificates.ca_certificate,
        &certificates.ca_key,
        "quorum TLS tests",
        jiff::Timestamp::now(),
    )
    .expect("issue a client certificate");
    zk.set_admin_tls(indices, &client)
        .expect("an AdminServer client");
}

/// Member `i`'s copy of the Secret's files that a server pod mounts at
/// [`zooherd::build::tls::DIR`].
fn tls_dir(zk: &ZkEnsemble, i: usize) -> PathBuf {
    zk.member(i).dir().join("tls")
}

/// Gives member `i` the key store and trust store of `certificates`.
fn install(zk: &ZkEnsemble, i: usize, certificates: &QuorumCertificates) {
    let dir = tls_dir(zk, i);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(KEY_STORE_KEY), certificates.key_store()).unwrap();
    fs::write(dir.join(CA_KEY), &certificates.ca_certificate).unwrap();
}

/// The zoo.cfg keys of `stage` for member `i`, reading its own files instead of the pod's
/// mount.
fn stage_config(zk: &ZkEnsemble, i: usize, stage: QuorumTls) -> Vec<(String, Option<String>)> {
    member_files(zk, i, stage.zoo_cfg_entries())
}

/// `entries` with the pod's certificate paths replaced by member `i`'s own files.
fn member_files(
    zk: &ZkEnsemble,
    i: usize,
    entries: Vec<(&'static str, String)>,
) -> Vec<(String, Option<String>)> {
    certificates_in(entries, &tls_dir(zk, i))
}

/// Starts the first `members` members with quorum TLS on and the certificates of a new CA, and
/// waits until they serve; returns the certificates.
async fn start_with_tls(zk: &mut ZkEnsemble, members: usize) -> QuorumCertificates {
    let certificates = certificates(zk);
    admit(zk, 0..zk.size(), &certificates);
    for i in 0..members {
        install(zk, i, &certificates);
        restart_in(zk, i, QuorumTls::On);
    }
    zk.wait_for_all_serving(START_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    certificates
}

/// Stops member `i` if it runs, and starts it again in `stage`.
fn restart_in(zk: &mut ZkEnsemble, i: usize, stage: QuorumTls) {
    zk.stop(i).expect("stop a member");
    zk.rewrite_config(i, &stage_config(zk, i, stage))
        .expect("rewrite zoo.cfg");
    zk.start_member(i).expect("start a member");
}

/// What a server's election port did with a peer speaking plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PlaintextPeer {
    /// Kept the connection open for [`PLAINTEXT_PEER_WAIT`], waiting for the peer's votes: the
    /// port speaks plaintext.
    Kept,
    /// Closed it: the port wants a TLS handshake, and these bytes are not one.
    HungUp,
}

/// How long [`plaintext_peer`] waits for a hang-up.
const PLAINTEXT_PEER_WAIT: Duration = Duration::from_secs(5);

/// Opens a plaintext connection to the election port of the server at `ip` and sends the first
/// message of ZooKeeper's election protocol (protocol version, server id, election address;
/// `QuorumCnxManager.startConnection`), as a server with myid 200, above every member's, would.
/// A plaintext server keeps a connection from a higher id open for the votes that follow; a
/// TLS-only server reads the message as a malformed handshake and closes the connection.
fn plaintext_peer(ip: Ipv4Addr) -> PlaintextPeer {
    const PROTOCOL_VERSION: i64 = -65536;
    const MYID: i64 = 200;
    let mut stream = TcpStream::connect((ip, ELECTION_PORT)).expect("connect to the election port");
    let address = stream.local_addr().unwrap().to_string();
    let mut message = Vec::new();
    message.extend(PROTOCOL_VERSION.to_be_bytes());
    message.extend(MYID.to_be_bytes());
    message.extend((address.len() as i32).to_be_bytes());
    message.extend(address.as_bytes());
    stream.write_all(&message).expect("send the message");
    let deadline = Instant::now() + PLAINTEXT_PEER_WAIT;
    let mut answer = [0; 512];
    loop {
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return PlaintextPeer::Kept;
        };
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut answer) {
            // A TLS alert may come before the end of the stream.
            Ok(n) if n > 0 => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return PlaintextPeer::Kept;
            }
            // The end of the stream, or a reset.
            _ => return PlaintextPeer::HungUp,
        }
    }
}

/// What every member's election port does with a plaintext peer.
async fn plaintext_peers(zk: &ZkEnsemble) -> Vec<PlaintextPeer> {
    let ips: Vec<Ipv4Addr> = zk.members().iter().map(|m| m.ip()).collect();
    tokio::task::spawn_blocking(move || ips.into_iter().map(plaintext_peer).collect())
        .await
        .expect("the plaintext peer panicked")
}

/// Watches the ensemble for `window`: member `outsider` must never serve, and every other
/// member must serve throughout, one of them the leader.
async fn left_out(zk: &ZkEnsemble, outsider: usize, window: Duration, what: &str) {
    let started = Instant::now();
    while started.elapsed() < window {
        let probes = zk.probe_all().await;
        let insiders_serve = probes
            .iter()
            .enumerate()
            .all(|(i, probe)| i == outsider || probe.is_serving_voter());
        let leaders = probes.iter().filter(|p| p.is_leader()).count();
        assert!(
            !probes[outsider].is_serving() && insiders_serve && leaders == 1,
            "{what}: after {:.1} s, member {outsider} must stay out and the others serve: {}",
            started.elapsed().as_secs_f64(),
            describe(&probes)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The probes on one line, by member index.
fn describe(probes: &[Probe]) -> String {
    probes
        .iter()
        .enumerate()
        .map(|(i, probe)| format!("[{i}] {probe}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn servers_with_the_ensembles_certificate_form_a_quorum_over_mutual_tls() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = ZkEnsemble::builder(3)
        .prepare()
        .expect("prepare the ensemble");
    start_with_tls(&mut zk, 3).await;

    // Written through one member, read through each of the others: the write went to them
    // over the quorum port.
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let first = zk.member(0).client_address().to_string();
    let client = zk::Client::connect(&first).await.expect("connect to 0");
    client
        .create("/over-tls", b"mutual", &mode)
        .await
        .expect("write");
    for i in 1..3 {
        let address = zk.member(i).client_address().to_string();
        let client = zk::Client::connect(&address).await.expect("connect");
        client.sync("/over-tls").await.expect("sync");
        let (data, _) = client.get_data("/over-tls").await.expect("read back");
        assert_eq!(data, b"mutual", "through member {i}");
    }

    // And the servers talk TLS only: a plaintext peer is hung up on.
    assert_eq!(plaintext_peers(&zk).await, [PlaintextPeer::HungUp; 3]);
}

#[tokio::test]
async fn a_server_without_the_ensembles_certificate_cannot_join() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    // Three voters; the fourth starts as a server joining (an observer in its membership).
    let mut zk = ZkEnsemble::builder(4)
        .reconfig(&super_digest(PASSWORD), 3)
        .prepare()
        .expect("prepare the ensemble");
    let certificates = start_with_tls(&mut zk, 3).await;

    let another_ca = issue(
        "tests/another-ensemble",
        &[],
        &[IpAddr::V4(zk.member(3).ip())],
        jiff::Timestamp::now(),
    )
    .expect("issue certificates");
    install(&zk, 3, &another_ca);
    // Asked as its own CA admits: what it says of itself must stay readable.
    admit(&mut zk, [3], &another_ca);
    restart_in(&mut zk, 3, QuorumTls::On);
    left_out(&zk, 3, LEFT_OUT_FOR, "another CA's certificate").await;
    // Kept out by the certificates: the voters' do not chain to the CA it trusts.
    let log = fs::read_to_string(zk.member(3).log_file()).unwrap();
    let this_run = log
        .rsplit("===== zooherd test: starting member")
        .next()
        .unwrap();
    assert!(
        this_run.contains("PKIX path building failed"),
        "{}",
        support::tail(zk.member(3).log_file(), 30)
    );

    restart_in(&mut zk, 3, QuorumTls::Off);
    left_out(&zk, 3, LEFT_OUT_FOR, "plaintext").await;

    // With the ensemble's certificate it joins: nothing else kept it out.
    install(&zk, 3, &certificates);
    admit(&mut zk, [3], &certificates);
    let started = Instant::now();
    restart_in(&mut zk, 3, QuorumTls::On);
    let state = zk
        .wait_for_serving(3, STEP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "with the ensemble's certificate, the fourth server serves as a {state} after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        matches!(state, ServerState::Observer | ServerState::Follower),
        "it joins without a vote: {state}"
    );
    let leader = zk
        .wait_for_all_serving(STEP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(leader < 3, "a voter leads, not {leader}");
}

#[tokio::test]
async fn a_running_ensemble_switches_to_tls_in_three_rolls_without_losing_a_write() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = ZkEnsemble::start(3).expect("start the ensemble");
    zk.wait_for_all_serving(START_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The check of the first test, on plaintext servers: it tells the two apart.
    assert_eq!(plaintext_peers(&zk).await, [PlaintextPeer::Kept; 3]);
    let certificates = certificates(&zk);
    admit(&mut zk, 0..3, &certificates);
    for i in 0..3 {
        install(&zk, i, &certificates);
    }
    let client = zk::Client::connect(&zk.connect_string())
        .await
        .expect("connect a client");
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client
        .create("/tls-roll", b"", &mode)
        .await
        .expect("create the writer's parent");

    let mut acknowledged = Vec::new();
    for stage in [QuorumTls::Accepting, QuorumTls::Connecting, QuorumTls::On] {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(write_until(zk.connect_string(), "/tls-roll", stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        // Followers first, the leader last: one election per roll.
        let leader = zk
            .wait_for_all_serving(STEP_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let order = (0..3).filter(|&i| i != leader).chain([leader]);
        for i in order {
            restart_in(&mut zk, i, stage);
            zk.wait_for_all_serving(STEP_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("{stage}, member {i}: {e}"));
        }
        let rolled = started.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::SeqCst);
        let (written, longest_gap) = writer.await.expect("the writer panicked");
        println!(
            "{stage}: rolled in {:.1} s; {} writes acknowledged, longest time without one {} ms",
            rolled.as_secs_f64(),
            written.len(),
            longest_gap.as_millis()
        );
        assert!(written.len() > 50, "{stage}: too few writes");
        acknowledged.extend(written);
    }
    assert_eq!(plaintext_peers(&zk).await, [PlaintextPeer::HungUp; 3]);

    // A new session: the first one's server was restarted meanwhile.
    let lost = lost_writes(&zk.connect_string(), "/tls-roll", &acknowledged).await;
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // Every member serves, under one leader.
    zk.wait_for_all_serving(STEP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn skipping_a_stage_leaves_a_server_that_cannot_join() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = ZkEnsemble::start(3).expect("start the ensemble");
    let leader = zk
        .wait_for_all_serving(START_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let certificates = certificates(&zk);
    admit(&mut zk, 0..3, &certificates);
    let follower = (0..3).find(|&i| i != leader).unwrap();
    install(&zk, follower, &certificates);

    // From Off straight to On: it speaks TLS only, its peers plaintext only.
    restart_in(&mut zk, follower, QuorumTls::On);
    left_out(&zk, follower, SKIPPED_FOR, "Off to On").await;

    // The stage it skipped speaks both.
    restart_in(&mut zk, follower, QuorumTls::Accepting);
    zk.wait_for_all_serving(STEP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// ZooKeeper's own command-line client against the TLS client port of `ip`, checking the
/// servers' host name (the test certificates name the members' addresses).
fn java_tls_client(
    ca_file: &Path,
    identity: Option<&Path>,
    ip: Ipv4Addr,
    command: &[&str],
) -> (bool, String) {
    let server = format!("{ip}:{SECURE_CLIENT_PORT}");
    support::zookeeper::java_tls_client(ca_file, identity, &server, true, command)
}

/// Starts three members with quorum TLS on, `issued`'s certificates and the TLS client port
/// as `client_tls` renders it, each listening on its own address as each pod does; `adjust`
/// changes member `i`'s zoo.cfg keys before it starts. Waits until they serve.
async fn start_with_client_port(
    zk: &mut ZkEnsemble,
    issued: &QuorumCertificates,
    client_tls: ClientTls,
    adjust: impl Fn(&mut Vec<(String, Option<String>)>, usize),
) {
    admit(zk, 0..3, issued);
    for i in 0..3 {
        install(zk, i, issued);
        let mut config = stage_config(zk, i, QuorumTls::On);
        config.extend(member_files(zk, i, client_tls.zoo_cfg_entries()));
        config.push((
            "secureClientPortAddress".to_owned(),
            Some(zk.member(i).ip().to_string()),
        ));
        adjust(&mut config, i);
        zk.rewrite_config(i, &config).expect("rewrite zoo.cfg");
        zk.start_member(i).expect("start a member");
    }
    zk.wait_for_all_serving(START_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Issue 14, item 3: the TLS client port (`spec.tls.client`) serves the ensemble's certificate
/// beside the plaintext port: a client that trusts the ensemble's CA writes over it, and one
/// that trusts another CA cannot connect.
#[tokio::test]
async fn clients_reach_the_tls_client_port_with_the_ensembles_ca() {
    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = ZkEnsemble::builder(3)
        .prepare()
        .expect("prepare the ensemble");
    let issued = certificates(&zk);
    start_with_client_port(&mut zk, &issued, ClientTls::On, |_, _| ()).await;

    let ip = zk.member(0).ip();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    fs::write(&ca_file, &issued.ca_certificate).unwrap();
    let started = Instant::now();
    let (ok, output) = java_tls_client(&ca_file, None, ip, &["create", "/over-tls", "secret"]);
    assert!(ok, "a write over TLS with the ensemble's CA:\n{output}");
    println!(
        "ZooKeeperMain wrote over TLS to {ip}:{SECURE_CLIENT_PORT} in {:?}",
        started.elapsed()
    );
    // Plaintext stays for the clients (and the operator) that use it.
    let plain = zk::Client::connect(&zk.member(1).client_address().to_string())
        .await
        .expect("a plaintext session");
    plain.sync("/").await.unwrap();
    let (data, _) = plain.get_data("/over-tls").await.unwrap();
    assert_eq!(data, b"secret");

    let stranger = dir.path().join("stranger.crt");
    fs::write(&stranger, certificates(&zk).ca_certificate).unwrap();
    let (ok, output) = java_tls_client(&stranger, None, ip, &["create", "/stranger", "x"]);
    // Refused for the certificate, not for anything else.
    let refusal = output.lines().find(|line| line.contains("PKIX"));
    assert!(
        !ok && refusal.is_some() && !output.contains("Created /stranger"),
        "a client that trusts another CA must be refused the server's certificate:\n{output}"
    );
    println!(
        "a client that trusts another CA: {}",
        refusal.unwrap_or_default().trim()
    );
    assert!(
        plain.get_data("/stranger").await.is_err(),
        "nothing was written by a client that trusts another CA"
    );
}

/// Issue 14, item 3: client certificates (`spec.clientAuthentication.x509ClientCaSecret`) on
/// the TLS client port, with authentication enforced (`enforce: true`), as the operator renders
/// them: a client with a certificate of the user's CA is logged in as `x509:<subject DN>` and
/// writes; without a certificate, with another CA's, or on the plaintext port, every request
/// is refused. A certificate of an expired CA left in the CA file logs in too, which is why the
/// operator refuses such a file.
#[tokio::test]
async fn clients_with_a_certificate_of_the_users_ca_log_in_as_x509() {
    use zooherd::agent::server::ClientAuth;
    use zooherd::build::names::X509_CLIENT_CA_DIR;

    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = ZkEnsemble::builder(3)
        .prepare()
        .expect("prepare the ensemble");
    let issued = certificates(&zk);
    // The user's CA for clients (a cert-manager CA Issuer's, say), a client certificate from
    // it, and one from a CA the servers were not given.
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let users_ca = issue("clients", &[], &[], now).expect("the users' CA");
    // Beside it, a CA past its end (its CA_VALIDITY_DAYS ended two days ago), as a rotation
    // never finished leaves it.
    let long_ago = now - jiff::SignedDuration::from_hours(24 * (i64::from(CA_VALIDITY_DAYS) + 2));
    let expired_ca = issue("clients", &[], &[], long_ago).expect("an expired CA");
    let users_ca_file = dir.path().join("users-ca.crt");
    fs::write(
        &users_ca_file,
        format!("{}{}", users_ca.ca_certificate, expired_ca.ca_certificate),
    )
    .unwrap();
    let key_store = |ca: &QuorumCertificates, holder: &str| {
        let client = admin_client("clients", &ca.ca_certificate, &ca.ca_key, holder, now).unwrap();
        let path = dir.path().join(format!("{holder}.pem"));
        fs::write(&path, format!("{}{}", client.key, client.certificate)).unwrap();
        path
    };
    let kafka = key_store(&users_ca, "kafka");
    let stale = key_store(&expired_ca, "stale");
    let mallory = key_store(&issue("elsewhere", &[], &[], now).unwrap(), "mallory");
    // Enforced, with the schemes the agent sets when the pod takes client certificates.
    let enforced = ClientAuth {
        users: Default::default(),
        enforce: true,
        x509: true,
    };
    let users_ca_mount = format!("{X509_CLIENT_CA_DIR}/{CA_KEY}");
    let pod_files = |config: &mut Vec<(String, Option<String>)>, _: usize| {
        for (_, value) in config.iter_mut() {
            if value.as_deref() == Some(users_ca_mount.as_str()) {
                *value = Some(users_ca_file.display().to_string());
            }
        }
        config.extend(enforced.settings().into_iter().map(|(k, v)| (k, Some(v))));
    };
    start_with_client_port(&mut zk, &issued, ClientTls::ClientCertificates, pod_files).await;
    let ip = zk.member(0).ip();
    let ca_file = dir.path().join("ca.crt");
    fs::write(&ca_file, &issued.ca_certificate).unwrap();

    let started = Instant::now();
    let (_, output) = java_tls_client(
        &ca_file,
        Some(&kafka),
        ip,
        &["create", "/x509", "written with a certificate"],
    );
    assert!(
        output.contains("Created /x509"),
        "a client with a certificate of the users' CA:\n{output}"
    );
    println!(
        "ZooKeeperMain with a client certificate wrote over TLS in {:?}",
        started.elapsed()
    );
    let (_, output) = java_tls_client(&ca_file, Some(&kafka), ip, &["whoami"]);
    let identity = output.lines().find(|l| l.contains("x509"));
    assert!(
        identity.is_some_and(|l| l.contains("CN=kafka")),
        "logged in as x509:<subject DN>:\n{output}"
    );
    println!("whoami: {}", identity.unwrap().trim());

    // No certificate: the handshake takes it (clientAuth=want), enforcement refuses it.
    let (_, output) = java_tls_client(&ca_file, None, ip, &["create", "/anonymous", "x"]);
    assert!(
        !output.contains("Created /anonymous") && output.contains("failed to authenticate"),
        "a TLS client without a certificate:\n{output}"
    );
    // Another CA's certificate: no login (ZooKeeper's X509AuthenticationProvider checks it
    // against the users' CA), so refused as the one without.
    let (_, output) = java_tls_client(&ca_file, Some(&mallory), ip, &["create", "/mallory", "x"]);
    assert!(
        !output.contains("Created /mallory") && output.contains("failed to authenticate"),
        "a client with another CA's certificate:\n{output}"
    );
    // Nothing was written by those two.
    let (_, output) = java_tls_client(&ca_file, Some(&kafka), ip, &["ls", "/"]);
    let root = output
        .lines()
        .find(|l| l.starts_with('['))
        .unwrap_or_default();
    assert!(
        root.contains("x509") && !root.contains("anonymous") && !root.contains("mallory"),
        "the root's children: {root:?}\n{output}"
    );
    // A current certificate of the expired CA still logs in: Java's PKIX validation does not
    // check the trust anchor's own validity (RFC 5280, 6.1). This is why the operator refuses
    // a ca.crt that holds an expired CA certificate (controller::client_ca).
    let (_, output) = java_tls_client(&ca_file, Some(&stale), ip, &["create", "/stale", "x"]);
    assert!(
        output.contains("Created /stale"),
        "a certificate of the expired CA beside the users' CA:\n{output}"
    );
    // The plaintext port, anonymous: refused.
    let plain = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&zk.member(1).client_address().to_string())
        .await;
    let read = match &plain {
        Ok(session) => session.get_data("/x509").await.map(|_| ()),
        Err(e) => Err(e.clone()),
    };
    assert!(matches!(read, Err(zk::Error::AuthFailed)), "{read:?}");
}

/// Runs curl with `args`; whether it exited 0, and what it printed (stdout, then stderr).
fn curl(args: &[&str]) -> (bool, String) {
    support::outcome(
        &Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .args(args)
            .output()
            .expect("run curl"),
    )
}

/// Issue 14, item 1: with quorum TLS, the AdminServer (`dump`, `connections`,
/// `system_properties` and the rest) is shut to everyone without a certificate of the
/// ensemble's CA, and open to the operator's prober and the pod's own probe.
#[tokio::test]
async fn the_admin_server_answers_only_clients_with_the_ensembles_certificate() {
    use zooherd::agent::probe::{Args, Which, run};
    use zooherd::quorum::admin::AdminClient;
    use zooherd::quorum::probe::{Answer, ProbeSettings, Prober};

    let _turn = ONE_ENSEMBLE_AT_A_TIME.lock().await;
    let mut zk = ZkEnsemble::builder(3)
        .prepare()
        .expect("prepare the ensemble");
    let certificates = start_with_tls(&mut zk, 3).await;

    // The operator's way in: a client certificate it issues itself from the ensemble's CA.
    let operator = admin_client(
        "tests/quorum-tls",
        &certificates.ca_certificate,
        &certificates.ca_key,
        "zooherd operator",
        jiff::Timestamp::now(),
    )
    .unwrap();
    let timeout = Duration::from_secs(2);
    let prober = Prober::new(ProbeSettings::default())
        .with_tls(Some(AdminClient::with_tls(timeout, &operator).unwrap()));
    let voters = zk.voters();
    assert!(voters.iter().all(|v| v.admin_tls), "{voters:?}");
    let started = Instant::now();
    let round = prober.probe(&voters).await;
    println!(
        "a probe round of 3 AdminServers over HTTPS with a client certificate (new connections): {:?}",
        started.elapsed()
    );
    for observation in &round.observations {
        assert!(
            matches!(observation.answer, Answer::Serving { .. }),
            "{observation:?}"
        );
    }
    // Without its certificate the operator asks nothing, and says why; such an answer never
    // leads to a restart (see Answer::Missing).
    let without = Prober::new(ProbeSettings::default()).probe(&voters).await;
    assert!(
        matches!(&without.observations[0].answer, Answer::Missing(why) if why.contains("certificate")),
        "{:?}",
        without.observations[0]
    );

    // The pod's own probe shows the servers' certificate from the mounted files.
    let ip = zk.member(0).ip();
    let base = format!("https://{ip}:8080");
    let verdict = run(&Which::Ready(Args {
        admin_url: Some(base.clone()),
        tls_dir: Some(tls_dir(&zk, 0)),
        timeout,
    }))
    .await;
    assert!(verdict.pass, "{verdict}");

    // Everyone else: plain HTTP, HTTPS without a certificate, another CA's certificate.
    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.crt");
    fs::write(&ca, &certificates.ca_certificate).unwrap();
    let stranger = issue("tests/stranger", &[], &[], jiff::Timestamp::now()).unwrap();
    let (cert, key) = (files.path().join("s.crt"), files.path().join("s.key"));
    fs::write(&cert, &stranger.certificate).unwrap();
    fs::write(&key, &stranger.key).unwrap();
    let ca = ca.to_str().unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    for command in ["dump", "connections", "system_properties", "srvr"] {
        let plain = format!("http://{ip}:8080/commands/{command}");
        let secure = format!("{base}/commands/{command}");
        let attempts = [
            ("plain HTTP", curl(&[&plain])),
            ("no certificate", curl(&["--cacert", ca, &secure])),
            (
                "another CA's certificate",
                curl(&["--cacert", ca, "--cert", cert, "--key", key, &secure]),
            ),
        ];
        for (who, (ok, output)) in attempts {
            assert!(
                !ok && !output.contains("\"command\""),
                "{command} with {who} must get no answer:\n{output}"
            );
            println!("{command} with {who}: {}", output.trim());
        }
    }
    // The operator's certificate gets the command answered: the refusals are for the
    // certificate, not the command.
    let (operator_cert, operator_key) = (files.path().join("o.crt"), files.path().join("o.key"));
    fs::write(&operator_cert, &operator.certificate).unwrap();
    fs::write(&operator_key, &operator.key).unwrap();
    let (ok, output) = curl(&[
        "--cacert",
        ca,
        "--cert",
        operator_cert.to_str().unwrap(),
        "--key",
        operator_key.to_str().unwrap(),
        &format!("{base}/commands/dump"),
    ]);
    assert!(ok && output.contains("\"command\" : \"dump\""), "{output}");
}
