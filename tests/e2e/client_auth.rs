//! Issue 14: SASL client authentication switched on for a running ensemble on a real node, the
//! way the README tells users to: the users first (`saslUsersSecret`, one roll: clients may now
//! log in, anonymous ones still work; every operator replica is SIGKILLed in its middle, when
//! some servers take SASL logins and the others do not, and the restarted operator finishes
//! it), then `enforce` (a second roll: only logged-in sessions are
//! served). A writer runs through each roll, anonymous through the first and logged in as the
//! Secret's user through the second, and every write it saw acknowledged must be there after.
//!
//! What only a real node shows: the kubelet mounts the users Secret where the agent reads it, with
//! modes the server's user can read (a server that cannot would crash-loop, and the roll stop);
//! the operator's own SASL login (it reads the membership through the servers during each roll)
//! works through the Service network; and, once enforced, an anonymous session or a wrong
//! password is refused by every server while the user's session is served.
//!
//! Then client certificates, still enforced: the TLS client port and the CA of the clients'
//! certificates (`x509ClientCaSecret`) in one roll; on every server, ZooKeeper's own Java client
//! with a certificate of that CA writes as `x509:<subject DN>`, and without one is refused.
//! Last, the users Secret removed with `enforce` kept (certificates the clients' only login):
//! the servers take the operator's SASL login alone, and a certificate still writes.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use nix::sys::signal::Signal;
use serde_json::json;

use zookeeper_client as zk;

use zooherd::api::{Phase, ZooKeeperEnsemble};
use zooherd::build::names::{
    CLIENT_SASL_ANNOTATION, CLIENT_X509_CA_ANNOTATION, SECURE_CLIENT_PORT,
};
use zooherd::build::tls::CA_KEY;
use zooherd::quorum::reconfig::{Login, Reconfigurer};
use zooherd::tls::{admin_client, issue};

use super::drain::is_ready;
use super::support::local_cluster::{LocalCluster, OPERATOR_NAMESPACE, OPERATOR_SELECTOR};
use super::support::zookeeper::java_tls_client;
use super::{
    SaslLogin, Writer, assert_not_restarted, container_restarts, secs, selector,
    three_servers_active, verify_writes,
};

/// How long one roll of three servers may take on a loaded 2-core machine.
const ROLL_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn sasl_switched_on_then_enforced(cluster: &LocalCluster, client: &kube::Client) {
    let story = Instant::now();
    let (ns, ensembles, pods) = three_servers_active(cluster, client, "e2e-sasl").await;
    let name = "zk";
    let kafka = SaslLogin {
        user: "kafka".to_owned(),
        password: "kafka-e2e-password".to_owned(),
    };
    let users: Secret = serde_json::from_value(json!({
        "metadata": {"name": "zk-users"},
        "stringData": {&kafka.user: &kafka.password},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &users)
        .await
        .unwrap();

    // The users, not enforced: an anonymous writer keeps writing through the roll, and every
    // operator replica is killed in its middle, while some servers take SASL logins and the
    // others do not yet.
    let writer = Writer::start(pods.clone(), selector(name));
    writer.wait_for_writes("before the users").await;
    let t = Instant::now();
    let spec = json!({"clientAuthentication": {"saslUsersSecret": "zk-users"}});
    let with_users = annotated(CLIENT_SASL_ANNOTATION);
    patch_spec(&ensembles, spec).await;
    let killed = kill_operators_mid_roll(cluster, client, &pods, &with_users).await;
    rolled(cluster, &ensembles, &pods, name, with_users).await;
    assert_operators_restarted(cluster, client, &killed).await;
    eprintln!(
        "(sasl) users from the Secret: every server restarted with them, ACTIVE 3/3 after {} \
         (every operator replica SIGKILLed in the middle of the roll)",
        secs(t)
    );
    let report = writer.finish().await;
    eprintln!(
        "(sasl) anonymous writer through the roll: {}",
        verify_writes(&pods, &selector(name), &report).await
    );

    // Enforced, with a writer logged in as the Secret's user through the roll.
    let writer = Writer::start_as(pods.clone(), selector(name), Some(kafka.clone()));
    writer.wait_for_writes("logged in as kafka").await;
    let t = Instant::now();
    let spec = json!({"clientAuthentication": {"enforce": true}});
    let enforcing = |pod: &Pod| {
        pod.spec.as_ref().is_some_and(|spec| {
            let args = spec.containers[0].args.as_deref().unwrap_or_default();
            args.iter().any(|arg| arg == "--enforce-auth")
        })
    };
    roll_to(cluster, &ensembles, &pods, spec, enforcing).await;
    eprintln!(
        "(sasl) enforced: every server restarted enforcing, ACTIVE 3/3 after {}",
        secs(t)
    );
    let report = writer.finish().await;
    eprintln!(
        "(sasl) writer logged in as kafka through the roll: {}",
        verify_writes(&pods, &selector(name), &report).await
    );

    // Every server, asked alone: the user is served, an anonymous session and a wrong password
    // are not.
    let wrong = SaslLogin {
        password: "not-the-password".to_owned(),
        ..kafka.clone()
    };
    for (pod_name, ip) in pod_ips(&pods, name).await {
        let server = format!("{ip}:2181");
        let served = read_as(&server, Some(&kafka)).await;
        assert!(
            matches!(served, Ok(n) if n > 0),
            "{pod_name} ({server}): kafka: {served:?}\n{}",
            cluster.pod_log(&ns, &pod_name)
        );
        let anonymous = read_as(&server, None).await;
        assert!(anonymous.is_err(), "{server}: anonymous: {anonymous:?}");
        let wrong = read_as(&server, Some(&wrong)).await;
        assert!(wrong.is_err(), "{server}: a wrong password: {wrong:?}");
        eprintln!(
            "(sasl) {pod_name}: kafka served; anonymous refused ({}); a wrong password refused ({})",
            anonymous.unwrap_err(),
            wrong.unwrap_err()
        );
    }
    client_certificates(cluster, client, &ns, &ensembles, &pods, &kafka).await;
    eprintln!("(sasl) the story took {}", secs(story));
    cluster.api().delete_namespace(client, &ns).await.unwrap();
}

/// `tls.client` and `x509ClientCaSecret` switched on together (one roll) for the enforcing
/// ensemble of the story, whose SASL user is `user`; then each server is asked over 2281 by
/// ZooKeeper's Java client, with a certificate of the clients' CA and without.
async fn client_certificates(
    cluster: &LocalCluster,
    client: &kube::Client,
    ns: &str,
    ensembles: &Api<ZooKeeperEnsemble>,
    pods: &Api<Pod>,
    user: &SaslLogin,
) {
    let name = "zk";
    let now = jiff::Timestamp::now();
    let clients_ca = issue("clients", &[], &[], now).expect("the clients' CA");
    let kafka = admin_client(
        "clients",
        &clients_ca.ca_certificate,
        &clients_ca.ca_key,
        "kafka",
        now,
    )
    .unwrap();
    let files = tempfile::tempdir().unwrap();
    let key_store = files.path().join("kafka.pem");
    std::fs::write(&key_store, format!("{}{}", kafka.key, kafka.certificate)).unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "zk-clients-ca"},
        "stringData": {CA_KEY: clients_ca.ca_certificate},
    }))
    .unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let t = Instant::now();
    let spec = json!({
        "tls": {"client": true},
        "clientAuthentication": {"x509ClientCaSecret": "zk-clients-ca"},
    });
    let with_ca = annotated(CLIENT_X509_CA_ANNOTATION);
    roll_to(cluster, ensembles, pods, spec, with_ca).await;
    eprintln!(
        "(x509) TLS client port and the clients' CA: every server restarted with them, ACTIVE \
         3/3 after {}",
        secs(t)
    );
    // Clients trust the ensemble's CA; the servers' certificates name their DNS names, not the
    // pod IPs asked here, so the host name is not checked.
    let tls = secrets.get(&format!("{name}-zooherd-tls")).await.unwrap();
    let ensemble_ca = files.path().join("ca.crt");
    std::fs::write(&ensemble_ca, &tls.data.unwrap()[CA_KEY].0).unwrap();
    for (pod_name, ip) in pod_ips(pods, name).await {
        let server = format!("{ip}:{SECURE_CLIENT_PORT}");
        let path = format!("/x509-{pod_name}");
        let ask = |identity: Option<&std::path::Path>, command: &[&str]| {
            java_tls_client(&ensemble_ca, identity, &server, false, command).1
        };
        let output = ask(Some(&key_store), &["create", &path, "certificate"]);
        assert!(
            output.contains(&format!("Created {path}")),
            "{pod_name}: a certificate of the clients' CA:\n{output}\n{}",
            cluster.pod_log(ns, &pod_name)
        );
        let output = ask(None, &["get", &path]);
        assert!(
            output.contains("failed to authenticate"),
            "{pod_name}: no certificate:\n{output}"
        );
        eprintln!(
            "(x509) {pod_name}: a certificate of the clients' CA writes over TLS; none is \
             refused"
        );
    }
    certificates_alone(cluster, ns, ensembles, pods, &ensemble_ca, &key_store, user).await;
}

/// The users Secret removed, `enforce` kept: certificates are the clients' only login (one
/// roll). Each server then takes the operator's own SASL login, which the agent now writes
/// alone into the server's login file (without it, the operator could no longer read or change
/// the membership), refuses the former user (`former`), and still lets the certificate write.
async fn certificates_alone(
    cluster: &LocalCluster,
    ns: &str,
    ensembles: &Api<ZooKeeperEnsemble>,
    pods: &Api<Pod>,
    ensemble_ca: &std::path::Path,
    key_store: &std::path::Path,
    former: &SaslLogin,
) {
    let name = "zk";
    let t = Instant::now();
    let spec = json!({"clientAuthentication": {"saslUsersSecret": null}});
    let without_users = |pod: &Pod| {
        annotated(CLIENT_SASL_ANNOTATION)(pod)
            && pod.spec.as_ref().is_some_and(|spec| {
                let args = spec.containers[0].args.as_deref().unwrap_or_default();
                !args.iter().any(|arg| arg == "--sasl-users")
                    && args.iter().any(|arg| arg == "--enforce-auth")
            })
    };
    roll_to(cluster, ensembles, pods, spec, without_users).await;
    eprintln!(
        "(x509) certificates alone, still enforced: every server restarted without the users, \
         ACTIVE 3/3 after {}",
        secs(t)
    );
    let superuser = Api::<Secret>::namespaced(ensembles.clone().into_client(), ns)
        .get(&format!("{name}-zooherd-superuser"))
        .await
        .unwrap();
    let password = String::from_utf8(superuser.data.unwrap()["password"].0.clone()).unwrap();
    for (pod_name, ip) in pod_ips(pods, name).await {
        let address: std::net::SocketAddr = format!("{ip}:2181").parse().unwrap();
        let membership = Reconfigurer::default()
            .committed(&[address], Login::superuser_with_sasl(&password))
            .await;
        assert!(
            membership.as_ref().is_ok_and(|m| m.voters().len() == 3),
            "{pod_name}: the operator's login: {membership:?}\n{}",
            cluster.pod_log(ns, &pod_name)
        );
        let former = read_as(&address.to_string(), Some(former)).await;
        assert!(former.is_err(), "{pod_name}: the former user: {former:?}");
        let server = format!("{ip}:{SECURE_CLIENT_PORT}");
        let path = format!("/alone-{pod_name}");
        let output = java_tls_client(
            ensemble_ca,
            Some(key_store),
            &server,
            false,
            &["create", &path, "certificate"],
        )
        .1;
        assert!(
            output.contains(&format!("Created {path}")),
            "{pod_name}: a certificate of the clients' CA:\n{output}"
        );
        eprintln!(
            "(x509) {pod_name}: the operator's login reads the membership; the former user is \
             refused ({}); a certificate writes",
            former.unwrap_err()
        );
    }
}

/// How many znodes `/e2e-writes` has, read in a session with `server` alone, logged in as
/// `login`; or why not.
async fn read_as(server: &str, login: Option<&SaslLogin>) -> Result<usize, String> {
    let mut connector = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_connection_timeout(Duration::from_secs(5));
    if let Some(login) = login {
        connector = connector.with_sasl(zk::SaslOptions::digest_md5(
            login.user.clone(),
            login.password.clone(),
        ));
    }
    let session = tokio::time::timeout(Duration::from_secs(10), connector.connect(server))
        .await
        .map_err(|_| "no session within 10 s".to_owned())?
        .map_err(|e| format!("session refused: {e}"))?;
    let children = session.list_children("/e2e-writes").await;
    children
        .map(|c| c.len())
        .map_err(|e| format!("read refused: {e}"))
}

/// The name and IP of each of the ensemble's pods.
async fn pod_ips(pods: &Api<Pod>, name: &str) -> Vec<(String, String)> {
    let list = pods
        .list(&ListParams::default().labels(&selector(name)))
        .await
        .unwrap();
    list.items
        .iter()
        .map(|pod| {
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
            (pod.name_any(), ip.expect("a pod IP"))
        })
        .collect()
}

/// Whether a pod's template carried the annotation `key`.
fn annotated(key: &'static str) -> impl Fn(&Pod) -> bool {
    move |pod| {
        pod.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(key))
    }
}

/// Merges `spec` into the ensemble `zk`'s spec and waits until the roll it starts is done
/// ([`rolled`]).
async fn roll_to(
    cluster: &LocalCluster,
    ensembles: &Api<ZooKeeperEnsemble>,
    pods: &Api<Pod>,
    spec: serde_json::Value,
    done: impl Fn(&Pod) -> bool,
) {
    patch_spec(ensembles, spec).await;
    rolled(cluster, ensembles, pods, "zk", done).await;
}

/// Merges `spec` into the ensemble `zk`'s spec.
async fn patch_spec(ensembles: &Api<ZooKeeperEnsemble>, spec: serde_json::Value) {
    ensembles
        .patch(
            "zk",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

/// The operator's pods (the chart's two replicas), by name, with their containers' restarts.
async fn operator_restarts(client: &kube::Client) -> Vec<(String, i32)> {
    let list = Api::<Pod>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await
        .unwrap();
    list.items
        .iter()
        .map(|pod| (pod.name_any(), container_restarts(pod)))
        .collect()
}

/// Once the roll is under way (at least one server rolled and serving, at least one not yet),
/// SIGKILLs every operator replica at once: a crash of the whole operator halfway, with the
/// servers' logins mixed. Returns the operator's pods and their restarts before the kill.
async fn kill_operators_mid_roll(
    cluster: &LocalCluster,
    client: &kube::Client,
    pods: &Api<Pod>,
    done: &impl Fn(&Pod) -> bool,
) -> Vec<(String, i32)> {
    let deadline = Instant::now() + ROLL_TIMEOUT;
    loop {
        let list = pods
            .list(&ListParams::default().labels(&selector("zk")))
            .await
            .unwrap();
        let rolled = list.items.iter().filter(|p| done(p) && is_ready(p)).count();
        if rolled >= 1 && list.items.iter().any(|p| !done(p)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the roll never got under way\n{}",
            cluster.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = operator_restarts(client).await;
    let operators = Api::<Pod>::namespaced(client.clone(), OPERATOR_NAMESPACE);
    for (pod, _) in &before {
        cluster
            .signal_container(&operators, pod, Signal::SIGKILL)
            .await;
    }
    eprintln!(
        "(sasl) every operator replica ({}) SIGKILLed in the middle of the roll",
        before.len()
    );
    before
}

/// Each of the operator's `killed` pods has restarted its container since the kill (the
/// kubelet restarts it; the roll finished with them).
async fn assert_operators_restarted(
    cluster: &LocalCluster,
    client: &kube::Client,
    killed: &[(String, i32)],
) {
    let now = operator_restarts(client).await;
    for (pod, restarts) in killed {
        let after = now.iter().find(|(name, _)| name == pod).map(|(_, r)| *r);
        assert!(
            after.is_some_and(|after| after > *restarts),
            "operator pod {pod}: {restarts} restarts before the kill, {after:?} after\n{}",
            cluster.operator_log()
        );
    }
}

/// Waits until the ensemble's three servers run in pods that `done` says are rolled, none being
/// deleted or ever restarted (a server that cannot read its users would crash-loop), every one
/// Ready (serving: see `agent::probe`), and the ensemble shows ACTIVE 3/3. The pods' readiness
/// counts too because the status may still be the one written before the last pod went.
async fn rolled(
    cluster: &LocalCluster,
    ensembles: &Api<ZooKeeperEnsemble>,
    pods: &Api<Pod>,
    name: &str,
    done: impl Fn(&Pod) -> bool,
) {
    let deadline = Instant::now() + ROLL_TIMEOUT;
    loop {
        let list = pods
            .list(&ListParams::default().labels(&selector(name)))
            .await
            .unwrap();
        for pod in &list.items {
            assert_not_restarted(pod, "during the roll");
        }
        let all_rolled = list.items.len() == 3
            && list
                .items
                .iter()
                .all(|p| done(p) && p.metadata.deletion_timestamp.is_none() && is_ready(p));
        let status = ensembles
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if all_rolled
            && status.phase == Some(Phase::Active)
            && status.ready.as_deref() == Some("3/3")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the roll did not finish: {status:?}\n{}",
            cluster.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
