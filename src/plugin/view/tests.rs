//! The plugin's output for fixed inputs: a DEGRADED ensemble, its pods and its Events.

use serde_json::{Value, json};

use super::*;

const NOW: &str = "2026-11-21T12:14:18Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn member(myid: i32, state: &str, zxid: Option<&str>, extra: Value) -> Value {
    let mut m = json!({
        "pod": format!("zk-{}", myid - 1), "myid": myid, "state": state,
        "since": "2026-11-21T09:02:36Z", "restarts": 0,
    });
    if let Some(zxid) = zxid {
        m["zxid"] = json!(zxid);
    }
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn degraded() -> ZooKeeperEnsemble {
    serde_json::from_value(json!({
        "apiVersion": "zooherd.dev/v1beta1",
        "kind": "ZooKeeperEnsemble",
        "metadata": {"name": "zk", "namespace": "default", "uid": "e1"},
        "spec": {"replicas": 3},
        "status": {
            "phase": "DEGRADED", "ready": "2/3", "quorum": 2, "faultTolerance": 0,
            "leader": "zk-2", "zxid": "0x20000002b", "epoch": 2,
            "connectString": "zk-0.zk-headless.default.svc.cluster.local:2181,zk-1.zk-headless.default.svc.cluster.local:2181,zk-2.zk-headless.default.svc.cluster.local:2181",
            "membership": {"voters": [1, 2, 3], "version": "0x100000000"},
            "members": [
                member(1, "unreachable", None, json!({"reason": "connection refused",
                    "since": "2026-11-21T12:13:39Z", "restarts": 1})),
                member(2, "follower", Some("0x200000027"), json!({"latency": "0/0.4/12", "connections": 3})),
                member(3, "leader", Some("0x20000002b"), json!({"latency": "0/0.3/9", "connections": 5})),
            ],
            "conditions": [
                {"type": "Available", "status": "True", "reason": "QuorumServing",
                 "message": "2/3 voters serving, zk-2 leads; 0 more may fail; not serving: zk-0 (unreachable: connection refused)",
                 "lastTransitionTime": "2026-11-21T12:13:40Z"},
                {"type": "Degraded", "status": "True", "reason": "VotersNotServing",
                 "message": "2/3 voters serving", "lastTransitionTime": "2026-11-21T12:13:40Z"},
            ],
        },
    }))
    .unwrap()
}

fn pods() -> Vec<Pod> {
    (0..3)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("zk-{i}")},
                "spec": {"nodeName": format!("node-{}", ["a", "b", "c"][i]), "containers": []},
                "status": {"containerStatuses": [{"name": "zookeeper", "image": "", "imageID": "",
                    "ready": i != 0, "restartCount": if i == 0 { 4 } else { 0 }}]},
            }))
            .unwrap()
        })
        .collect()
}

fn event(name: &str, type_: &str, reason: &str, at: &str, message: &str) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "involvedObject": {"kind": "ZooKeeperEnsemble", "name": "zk"},
        "type": type_, "reason": reason, "eventTime": at, "message": message,
    }))
    .unwrap()
}

fn events() -> Vec<Event> {
    vec![
        event(
            "b",
            "Warning",
            "Degraded",
            "2026-11-21T12:13:40.000000Z",
            "ACTIVE -> DEGRADED: 2/3 voters serving",
        ),
        event(
            "a",
            "Normal",
            "Active",
            "2026-11-21T09:02:36.000000Z",
            "PENDING -> ACTIVE: all 3 voters serving, zk-2 leads",
        ),
    ]
}

#[test]
fn a_degraded_ensemble_as_text() {
    let view = status_view(&degraded(), &pods(), &events());
    let text = render_status(&view, now(), false);
    let expected = "\
zk in default: DEGRADED, 2/3 voters serving, quorum 2, 0 more may fail
leader zk-2, zxid 0x20000002b, epoch 2
membership: voters 1, 2, 3 (version 0x100000000)
connect: zk-0.zk-headless.default.svc.cluster.local:2181,zk-1.zk-headless.default.svc.cluster.local:2181,zk-2.zk-headless.default.svc.cluster.local:2181

POD    NODE     MYID   STATE         ZXID          LAG   LATENCY    CONNS   SINCE   RESTARTS   EVICTED
zk-0   node-a   1      unreachable   -             -     -          -       39s     4          1
zk-1   node-b   2      follower      0x200000027   4     0/0.4/12   3       3h11m   0          0
zk-2   node-c   3      leader        0x20000002b   0     0/0.3/9    5       3h11m   0          0
zk-0: unreachable: connection refused

CONDITION   STATUS   REASON             MESSAGE
Available   True     QuorumServing      2/3 voters serving, zk-2 leads; 0 more may fail; not serving: zk-0 (unreachable: connection refused)
Degraded    True     VotersNotServing   2/3 voters serving

LAST SEEN   TYPE      REASON     COUNT   MESSAGE
3h11m       Normal    Active     1       PENDING -> ACTIVE: all 3 voters serving, zk-2 leads
38s         Warning   Degraded   1       ACTIVE -> DEGRADED: 2/3 voters serving
";
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn colour_marks_the_phase_the_states_and_warnings() {
    let view = status_view(&degraded(), &pods(), &events());
    let text = render_status(&view, now(), true);
    assert!(
        text.starts_with("zk in default: \x1b[33mDEGRADED\x1b[0m,"),
        "{text}"
    );
    assert!(text.contains("\x1b[31munreachable\x1b[0m"), "{text}");
    assert!(text.contains("\x1b[32mfollower\x1b[0m"), "{text}");
    assert!(text.contains("\x1b[1;32mleader\x1b[0m"), "{text}");
    assert!(text.contains("\x1b[33mWarning\x1b[0m"), "{text}");
    assert!(!render_status(&view, now(), false).contains('\x1b'));

    let mut down = degraded();
    down.status.as_mut().unwrap().phase = Some(Phase::Down);
    let text = render_status(&status_view(&down, &[], &[]), now(), true);
    assert!(
        text.starts_with("zk in default: \x1b[31mDOWN\x1b[0m,"),
        "{text}"
    );
}

#[test]
fn json_has_every_field_of_the_table() {
    let view = status_view(&degraded(), &pods(), &events());
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["phase"], "DEGRADED");
    assert_eq!(json["faultTolerance"], 0);
    assert_eq!(json["membership"]["version"], "0x100000000");
    assert_eq!(
        json["members"][1],
        json!({
            "pod": "zk-1", "node": "node-b", "myid": 2, "state": "follower", "reason": null,
            "zxid": "0x200000027", "lag": 4, "latency": "0/0.4/12", "connections": 3,
            "since": "2026-11-21T09:02:36Z", "restarts": 0, "operatorRestarts": 0,
        })
    );
    assert_eq!(json["members"][0]["reason"], "connection refused");
    assert_eq!(json["members"][0]["restarts"], 4);
    assert_eq!(json["members"][0]["operatorRestarts"], 1);
    assert_eq!(json["conditions"][1]["type"], "Degraded");
    // Oldest first.
    assert_eq!(json["events"][0]["reason"], "Active");
    assert_eq!(json["events"][1]["type"], "Warning");
}

#[test]
fn status_shows_the_newest_events_only() {
    let many: Vec<Event> = (0..15)
        .map(|i| {
            let at = format!("2026-11-21T12:00:{i:02}.000000Z");
            event(&format!("e{i}"), "Normal", &format!("R{i}"), &at, "m")
        })
        .collect();
    let view = status_view(&degraded(), &pods(), &many);
    let reasons: Vec<&str> = view.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons.len(), STATUS_EVENTS);
    assert_eq!((reasons[0], reasons[9]), ("R5", "R14"));
    // A repeated Event counts its series.
    let mut repeated = event("s", "Warning", "ScaleRefused", NOW, "m");
    repeated.series = Some(k8s_openapi::api::core::v1::EventSeries {
        count: Some(7),
        last_observed_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            now(),
        )),
    });
    assert_eq!(event_rows(&[repeated])[0].count, 7);
}

#[test]
fn certificates_show_when_they_expire_and_warn_within_30_days() {
    let mut ensemble = degraded();
    let status = ensemble.status.as_mut().unwrap();
    let at = |rfc: &str| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(rfc.parse().unwrap());
    status.quorum_tls = Some(QuorumTlsStatus {
        stage: "on".into(),
        certificate_not_after: Some(at("2031-11-20T00:00:00Z")),
        ca_not_after: Some(at("2036-11-19T00:00:00Z")),
    });
    status.client_ca_not_after = Some(at("2026-12-01T00:00:00Z"));
    let view = status_view(&ensemble, &pods(), &events());
    let text = render_status(&view, now(), false);
    let line = text.lines().find(|l| l.starts_with("certificates: "));
    assert_eq!(
        line,
        Some(
            "certificates: servers' (quorum TLS on) until 2031-11-20 (in 1824d11h), its CA \
             until 2036-11-19 (in 3650d11h); clients' CA until 2026-12-01 (in 9d11h)"
        ),
        "\n{text}"
    );
    // Coloured: the clients' CA within the alerts' 30 days; once past, expired.
    let text = render_status(&view, now(), true);
    assert!(
        text.contains("clients' CA \x1b[33muntil 2026-12-01 (in 9d11h)\x1b[0m"),
        "{text}"
    );
    assert!(text.contains("quorum TLS on) until 2031-11-20"), "{text}");
    let status = ensemble.status.as_mut().unwrap();
    status.client_ca_not_after = Some(at("2026-11-20T00:00:00Z"));
    let text = render_status(&status_view(&ensemble, &[], &[]), now(), true);
    assert!(
        text.contains("clients' CA \x1b[31mexpired 2026-11-20\x1b[0m"),
        "{text}"
    );
    let json = serde_json::to_value(status_view(&ensemble, &[], &[])).unwrap();
    assert_eq!(json["quorumTls"]["stage"], "on");
    assert_eq!(json["clientCaNotAfter"], "2026-11-20T00:00:00Z");
}

#[test]
fn an_ensemble_without_a_status_yet() {
    let mut ensemble = degraded();
    ensemble.status = None;
    let view = status_view(&ensemble, &[], &[]);
    let text = render_status(&view, now(), false);
    assert!(
        text.starts_with("zk in default: no status yet\n\nPOD "),
        "{text}"
    );
    assert!(text.ends_with("No Events.\n"), "{text}");
}

#[test]
fn lag_counts_the_leaders_epoch_only() {
    assert_eq!(lag(Some("0x20000002b"), Some("0x200000027")), Some(4));
    assert_eq!(lag(Some("0x20000002b"), Some("0x20000002b")), Some(0));
    // Answered a little after the leader: no lag, not a negative one.
    assert_eq!(lag(Some("0x200000027"), Some("0x20000002b")), Some(0));
    // An older epoch: synced up to the leader's epoch (it serves), none of that epoch yet.
    assert_eq!(lag(Some("0x300000000"), Some("0x20000002b")), Some(0));
    assert_eq!(lag(Some("0x300000005"), Some("0x20000002b")), Some(5));
    assert_eq!(lag(Some("0x300000005"), Some("0x400000001")), Some(0));
    assert_eq!(lag(None, Some("0x20000002b")), None);
    assert_eq!(lag(Some("0x2"), Some("zz")), None);
}

#[test]
fn ages_read_like_kubectl() {
    let ago = |s: i64| {
        age(
            &(now() - jiff::SignedDuration::from_secs(s)).to_string(),
            now(),
        )
    };
    assert_eq!(ago(0), "0s");
    assert_eq!(ago(59), "59s");
    assert_eq!(ago(312), "5m12s");
    assert_eq!(ago(42 * 60 + 5), "42m");
    assert_eq!(ago(3 * 3600 + 12 * 60), "3h12m");
    assert_eq!(ago(2 * 86400 + 4 * 3600), "2d4h");
    // A clock behind the API server's: no negative ages.
    assert_eq!(ago(-5), "0s");
    assert_eq!(age("garbage", now()), "-");
}
