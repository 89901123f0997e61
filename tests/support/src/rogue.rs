//! Rogue pods for the NetworkPolicy story: pods that are not members of an ensemble, nor the
//! operator, and try every door of a server.
//!
//! A rogue pod runs the toolbox image (static busybox) doing nothing but `sleep`; the test then
//! runs one shell script in it with `kubectl exec`, which knocks on every door of one server at
//! once and prints one line per door, `<door> open` or `<door> closed <why>`:
//!
//! - the AdminServer's `snapshot`, `restore`, `dump` and `connections` commands in plain HTTP
//!   (busybox `wget`): open when an HTTP status line came back, whatever the status (ZooKeeper
//!   answers a disabled `snapshot` too); with quorum TLS the AdminServer answers only HTTPS
//!   with a certificate of the ensemble's CA, and a plaintext request gets no HTTP answer at
//!   all ([`ADMIN_COMMANDS`]);
//! - the AdminServer (8080), quorum (2888, only the leader listens), election (3888) and
//!   metrics (7000) ports: a TCP connection (busybox `nc IP PORT -e PROG`, which exits 0 only
//!   once connected), so that a door is closed only if no connection was made;
//! - the client port: `ruok`, open when the server answers `imok`; the TLS client port (2281):
//!   a TCP connection.
//!
//! A closed door must say why in words of the network (refused, can't connect, timed out): a
//! knock that failed for another reason (a missing tool, a wrong option: this busybox's `wget
//! -T` crashes) would otherwise pass for a closed door. Every attempt is bounded (5 s) and they
//! run in parallel.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::control_plane::ControlPlane;

/// The doors, as the script names them.
pub const DOORS: [&str; 10] = [
    "admin-snapshot",
    "admin-restore",
    "admin-dump",
    "admin-connections",
    "admin-8080",
    "quorum-2888",
    "election-3888",
    "client-2181",
    "client-tls-2281",
    "metrics-7000",
];

/// Knocks on every door of the server at `$1`; one `<door> open|closed <why>` line each.
const KNOCK: &str = r#"
ip=$1
report() {
  out=$("$@" 2>&1); rc=$?
  case $rc:$out in
    0:*|*HTTP/1.*|*imok*) echo "$door open" ;;
    143:*) echo "$door closed timed out (killed after 5 s)" ;;
    *) echo "$door closed $(echo "$out" | tail -n 1) (exit $rc)" ;;
  esac
}
http() { busybox timeout 5 wget -S -O /dev/null "http://$ip:8080/commands/$1"; }
tcp() { busybox timeout 5 nc -w 3 "$ip" "$1" -e /bin/echo; }
ruok() { echo ruok | busybox timeout 5 nc -w 3 "$ip" 2181; }
door=admin-snapshot report http snapshot &
door=admin-restore report http restore &
door=admin-dump report http dump &
door=admin-connections report http connections &
door=admin-8080 report tcp 8080 &
door=quorum-2888 report tcp 2888 &
door=election-3888 report tcp 3888 &
door=client-2181 report ruok &
door=client-tls-2281 report tcp 2281 &
door=metrics-7000 report tcp 7000 &
wait
"#;

/// The doors of the AdminServer's commands: shut by quorum TLS even where the network lets a
/// knock through.
pub const ADMIN_COMMANDS: [&str; 4] = [
    "admin-snapshot",
    "admin-restore",
    "admin-dump",
    "admin-connections",
];

/// What a door closed by the network answers: refused, unreachable or timed out; or, for the
/// AdminServer's commands, no HTTP answer (TLS only: the plaintext request gets a TLS alert).
const REFUSALS: [&str; 5] = [
    "refused",
    "can't connect",
    "timed out",
    "unreachable",
    "error getting response",
];

/// Creates pod `name` in `namespace` running `image`, with `labels`, and waits until it runs.
pub async fn start(client: &kube::Client, namespace: &str, name: &str, image: &str) {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "rogue"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "rogue",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    }))
    .expect("a pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("creating a rogue pod");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let phase = pods
            .get(name)
            .await
            .expect("reading the rogue pod")
            .status
            .and_then(|s| s.phase);
        if phase.as_deref() == Some("Running") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rogue pod {namespace}/{name} is not Running after 60 s (phase {phase:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Which doors of the server at `ip` pod `namespace/name` finds open.
pub fn knock(api: &ControlPlane, namespace: &str, name: &str, ip: &str) -> BTreeMap<String, bool> {
    let mut command = api.kubectl();
    command.args([
        "-n", namespace, "exec", name, "--", "sh", "-c", KNOCK, "sh", ip,
    ]);
    // About 5 s of waiting on the doors: off the runtime's worker.
    let out = tokio::task::block_in_place(|| command.output()).expect("running kubectl exec");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl exec in {namespace}/{name}: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doors: BTreeMap<String, bool> = text
        .lines()
        .filter_map(|line| {
            let (door, state) = line.split_once(' ')?;
            if let Some(why) = state.strip_prefix("closed") {
                assert!(
                    REFUSALS.iter().any(|refusal| why.contains(refusal)),
                    "{namespace}/{name}: the knock on {door} failed for another reason than a closed door: {why}"
                );
            }
            Some((door.to_owned(), state == "open"))
        })
        .collect();
    assert_eq!(
        doors.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut all = DOORS.to_vec();
            all.sort_unstable();
            all
        },
        "one line per door from {namespace}/{name}: {text}"
    );
    doors
}

/// Knocks until the doors of `ip` that pod `namespace/name` finds open are exactly `open`
/// (a NetworkPolicy takes the enforcer a moment to apply), for at most `timeout`; returns how
/// long it took. Panics with the last answer.
pub async fn wait_doors(
    api: &ControlPlane,
    (namespace, name): (&str, &str),
    ip: &str,
    open: &[&str],
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let doors = knock(api, namespace, name, ip);
        let found: Vec<&str> = doors
            .iter()
            .filter(|&(_, &is_open)| is_open)
            .map(|(door, _)| door.as_str())
            .collect();
        let mut want = open.to_vec();
        want.sort_unstable();
        if found == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "{namespace}/{name} -> {ip}: open doors {found:?}, expected {want:?} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
