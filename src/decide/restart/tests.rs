//! The restart decision, table-driven: which failed member is restarted, and every refusal.

use super::*;
use crate::quorum::myid::id;
use MemberState::{Follower, Leader, Missing, NotServing, Unreachable};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

fn now() -> Timestamp {
    Timestamp::from_second(1_750_000_000).unwrap()
}

fn ago(seconds: i64) -> Timestamp {
    now() - jiff::SignedDuration::from_secs(seconds)
}

fn pod_name(myid: i32) -> String {
    format!("zk-{}", myid - 1)
}

/// Member `myid` in `state` since `since_s` seconds ago.
fn m(myid: i32, state: MemberState, since_s: i64) -> MemberStatus {
    MemberStatus {
        pod: pod_name(myid),
        myid,
        state,
        reason: (!is_serving_voter(state)).then(|| "connection refused".to_string()),
        zxid: None,
        latency: None,
        connections: None,
        since: Some(Time(ago(since_s))),
        restarts: 0,
    }
}

fn pod(phase: PodPhase, age_s: i64) -> PodFacts {
    PodFacts {
        phase,
        restart_count: 0,
        waiting_reason: None,
        terminating: false,
        created_at: Some(ago(age_s)),
        ready: false,
        refuses_empty_voter: false,
        node_not_ready: None,
    }
}

const OLD: i64 = 3600;

fn running() -> PodFacts {
    pod(PodPhase::Running, OLD)
}

fn crash_looping(restarts: i32) -> PodFacts {
    PodFacts {
        restart_count: restarts,
        waiting_reason: Some(CRASH_LOOP_BACK_OFF.into()),
        ..running()
    }
}

fn terminating() -> PodFacts {
    PodFacts {
        terminating: true,
        ..running()
    }
}

#[derive(Debug)]
enum Expect {
    Delete(i32, &'static str),
    Keep(&'static str),
    /// Refused for safety: a condition shows it.
    Held(&'static str),
}

struct Case {
    name: &'static str,
    members: Vec<MemberStatus>,
    /// The pod of each member, by position; `None`: no pod.
    pods: Vec<Option<PodFacts>>,
    enabled: bool,
    last_restart_s: Option<i64>,
    expect: Expect,
}

fn case(
    name: &'static str,
    members: Vec<MemberStatus>,
    pods: Vec<Option<PodFacts>>,
    expect: Expect,
) -> Case {
    Case {
        name,
        members,
        pods,
        enabled: true,
        last_restart_s: None,
        expect,
    }
}

fn all_running(n: usize) -> Vec<Option<PodFacts>> {
    vec![Some(running()); n]
}

fn healthy(n: i32) -> Vec<MemberStatus> {
    (1..=n)
        .map(|myid| m(myid, if myid == 1 { Leader } else { Follower }, OLD))
        .collect()
}

/// `healthy(n)` with some members replaced.
fn with(n: i32, changes: &[(i32, MemberState, i64)]) -> Vec<MemberStatus> {
    let mut members = healthy(n);
    for &(myid, state, since) in changes {
        members[(myid - 1) as usize] = m(myid, state, since);
    }
    members
}

fn set(
    mut pods: Vec<Option<PodFacts>>,
    myid: i32,
    facts: Option<PodFacts>,
) -> Vec<Option<PodFacts>> {
    pods[(myid - 1) as usize] = facts;
    pods
}

fn cases() -> Vec<Case> {
    use Expect::{Delete, Held, Keep};
    vec![
        case(
            "all serving",
            healthy(3),
            all_running(3),
            Keep("no member needs a restart"),
        ),
        case(
            "running but unreachable past the threshold, others hold a quorum",
            with(3, &[(3, Unreachable, 61)]),
            all_running(3),
            Delete(
                3,
                "pod zk-2 is Running but the member has been unreachable (connection refused) for 61 s (threshold 60 s)",
            ),
        ),
        case(
            "running but not serving past the threshold",
            with(3, &[(3, NotServing, 120)]),
            all_running(3),
            Delete(3, "not-serving"),
        ),
        case(
            "not yet past the threshold",
            with(3, &[(3, Unreachable, 59)]),
            all_running(3),
            Keep("not yet: zk-2 unreachable (connection refused) for 59 s (threshold 60 s)"),
        ),
        Case {
            enabled: false,
            ..case(
                "disabled",
                with(3, &[(3, Unreachable, 600)]),
                all_running(3),
                Keep("disabled"),
            )
        },
        case(
            "another pod is terminating",
            with(3, &[(3, Unreachable, 600)]),
            set(all_running(3), 2, Some(terminating())),
            Keep("pod zk-1 is terminating"),
        ),
        case(
            "its own pod is already terminating",
            with(3, &[(3, Unreachable, 600)]),
            set(all_running(3), 3, Some(terminating())),
            Keep("pod zk-2 is terminating"),
        ),
        case(
            "the others do not hold a quorum",
            with(3, &[(2, Unreachable, 600), (3, NotServing, 600)]),
            all_running(3),
            Held("the other voters do not hold a quorum without it (1 serving, 2 needed)"),
        ),
        case(
            "the longest failing goes first",
            with(5, &[(4, Unreachable, 100), (5, Unreachable, 200)]),
            all_running(5),
            Delete(5, "200 s"),
        ),
        case(
            "ties go to the lowest myid",
            with(5, &[(4, Unreachable, 100), (5, Unreachable, 100)]),
            all_running(5),
            Delete(4, "zk-3"),
        ),
        case(
            "a recreated pod gets the whole threshold",
            with(3, &[(3, Unreachable, 600)]),
            set(all_running(3), 3, Some(pod(PodPhase::Running, 30))),
            Keep("zk-2 unreachable (connection refused) for 30 s"),
        ),
        case(
            "another member's young pod is not serving yet",
            with(5, &[(4, NotServing, 10), (5, Unreachable, 600)]),
            set(all_running(5), 4, Some(pod(PodPhase::Running, 10))),
            Held("pod zk-3 was created less than 60 s ago and is not serving yet"),
        ),
        case(
            "a young pod that serves does not block",
            with(5, &[(4, Follower, 10), (5, Unreachable, 600)]),
            set(all_running(5), 4, Some(pod(PodPhase::Running, 10))),
            Delete(5, "zk-4"),
        ),
        case(
            "a Failed pod goes at once",
            with(3, &[(3, Unreachable, 5)]),
            set(all_running(3), 3, Some(pod(PodPhase::Failed, OLD))),
            Delete(3, "pod zk-2 has Failed"),
        ),
        case(
            "a Failed pod of a member out of the quorum goes even without a quorum",
            with(3, &[(2, Unreachable, 300), (3, Unreachable, 200)]),
            set(
                set(all_running(3), 2, Some(pod(PodPhase::Failed, OLD))),
                3,
                Some(pod(PodPhase::Failed, OLD)),
            ),
            Delete(2, "pod zk-1 has Failed"),
        ),
        case(
            "a Failed pod still counted serving keeps the quorum",
            with(3, &[(2, Unreachable, 300)]),
            set(all_running(3), 3, Some(pod(PodPhase::Failed, OLD))),
            Held("(1 serving, 2 needed)"),
        ),
        case(
            "a Failed pod still counted serving, with a quorum elsewhere",
            healthy(3),
            set(all_running(3), 3, Some(pod(PodPhase::Failed, OLD))),
            Delete(3, "has Failed"),
        ),
        case(
            "crash-looping past the threshold",
            with(3, &[(3, Unreachable, 90)]),
            set(all_running(3), 3, Some(crash_looping(7))),
            Delete(
                3,
                "pod zk-2 is crash-looping (7 restarts) and the member has not served for 90 s (threshold 60 s)",
            ),
        ),
        case(
            "crash-looping, not yet past the threshold",
            with(3, &[(3, Unreachable, 30)]),
            set(all_running(3), 3, Some(crash_looping(2))),
            Keep("not yet"),
        ),
        case(
            "crash-looping members of a lost quorum go one by one",
            with(3, &[(2, Unreachable, 90), (3, Unreachable, 90)]),
            set(
                set(all_running(3), 2, Some(crash_looping(4))),
                3,
                Some(crash_looping(4)),
            ),
            Delete(2, "crash-looping"),
        ),
        Case {
            last_restart_s: Some(20),
            ..case(
                "a pod deleted moments ago has not been recreated yet",
                with(5, &[(2, Missing, 20), (5, Unreachable, 600)]),
                set(all_running(5), 2, None),
                Keep("pod zk-1 does not exist yet"),
            )
        },
        Case {
            last_restart_s: Some(90),
            ..case(
                "a pod missing long after the last restart does not block",
                with(5, &[(2, Missing, 90), (5, Unreachable, 600)]),
                set(all_running(5), 2, None),
                Delete(5, "zk-4"),
            )
        },
        case(
            "a Pending pod is left to the scheduler",
            with(3, &[(3, Missing, 600)]),
            set(all_running(3), 3, Some(pod(PodPhase::Pending, 600))),
            Keep("no member needs a restart"),
        ),
        case(
            "a single server is never deleted for not serving",
            vec![m(1, Unreachable, 600)],
            all_running(1),
            Held("(0 serving, 1 needed)"),
        ),
        case(
            "a single server whose pod Failed is",
            vec![m(1, Unreachable, 600)],
            vec![Some(pod(PodPhase::Failed, OLD))],
            Delete(1, "Failed"),
        ),
        case(
            "a member without since is not judged",
            vec![
                m(1, Leader, OLD),
                m(2, Follower, OLD),
                MemberStatus {
                    since: None,
                    ..m(3, Unreachable, 0)
                },
            ],
            all_running(3),
            Keep("no member needs a restart"),
        ),
    ]
}

#[test]
fn restart_decisions() {
    for case in cases() {
        let pods: BTreeMap<String, PodFacts> = case
            .members
            .iter()
            .zip(case.pods)
            .filter_map(|(member, pod)| Some((member.pod.clone(), pod?)))
            .collect();
        let policy = RestartPolicy {
            enabled: case.enabled,
            threshold: Duration::from_secs(60),
        };
        let decision = decide_restart(
            &case.members,
            &pods,
            &policy,
            case.last_restart_s.map(ago),
            false,
            now(),
        );
        match (&case.expect, &decision) {
            (
                Expect::Delete(myid, words),
                RestartDecision::Delete {
                    pod,
                    myid: got,
                    reason,
                },
            ) => {
                assert_eq!(
                    (i32::from(*got), pod),
                    (*myid, &pod_name(*myid)),
                    "{}: {reason}",
                    case.name
                );
                assert!(
                    reason.contains(words),
                    "{}: {reason:?} lacks {words:?}",
                    case.name
                );
            }
            (Expect::Keep(words), RestartDecision::Keep { why })
            | (Expect::Held(words), RestartDecision::Held { why }) => {
                assert!(
                    why.contains(words),
                    "{}: {why:?} lacks {words:?}",
                    case.name
                );
            }
            (expect, decision) => {
                panic!("{}: expected {expect:?}, got {decision:?}", case.name)
            }
        }
    }
}

/// A held restart's reason is the RestartHeld condition's message: while nothing changes it
/// must read the same from one reconcile to the next, or the status is written every round.
#[test]
fn a_held_restart_reads_the_same_a_second_later() {
    let members = with(3, &[(2, Unreachable, 600), (3, NotServing, 600)]);
    let pods: BTreeMap<String, PodFacts> =
        members.iter().map(|m| (m.pod.clone(), running())).collect();
    let policy = RestartPolicy {
        enabled: true,
        threshold: Duration::from_secs(60),
    };
    let at = |now| decide_restart(&members, &pods, &policy, None, false, now);
    match (at(now()), at(now() + jiff::SignedDuration::from_secs(1))) {
        (RestartDecision::Held { why: first }, RestartDecision::Held { why: second }) => {
            assert_eq!(first, second);
            assert!(first.contains("since 2025-06-15T14:56:40Z"), "{first}");
        }
        other => panic!("expected two held restarts, got {other:?}"),
    }
}

/// Whatever the mix, a delete never leaves fewer serving voters than a quorum when the
/// deleted member was counted serving, and never happens while a pod terminates.
#[test]
fn never_costs_the_quorum_nor_two_at_a_time() {
    let states = [Leader, Follower, NotServing, Unreachable, Missing];
    let pod_kinds = [
        running(),
        pod(PodPhase::Failed, OLD),
        crash_looping(3),
        terminating(),
        pod(PodPhase::Running, 10),
    ];
    let policy = RestartPolicy {
        enabled: true,
        threshold: Duration::from_secs(60),
    };
    let mut deletes = 0;
    // Three voters: every state and pod kind for each (5^3 x 5^3 combinations).
    for s in 0..125 {
        let members: Vec<MemberStatus> = (0..3)
            .map(|i| m(i + 1, states[(s / 5usize.pow(i as u32)) % 5], 600))
            .collect();
        for p in 0..125 {
            let pods: BTreeMap<String, PodFacts> = (0..3)
                .map(|i| {
                    (
                        pod_name(i + 1),
                        pod_kinds[(p / 5usize.pow(i as u32)) % 5].clone(),
                    )
                })
                .collect();
            let decision = decide_restart(&members, &pods, &policy, None, false, now());
            let RestartDecision::Delete { myid, .. } = decision else {
                continue;
            };
            deletes += 1;
            assert!(
                pods.values().all(|p| !p.terminating),
                "{members:?} {pods:?}"
            );
            let myid = i32::from(myid);
            let victim = members.iter().find(|m| m.myid == myid).unwrap();
            let serving_after = members
                .iter()
                .filter(|m| m.myid != myid && is_serving_voter(m.state))
                .count();
            if is_serving_voter(victim.state) {
                assert!(serving_after >= 2, "{members:?} {pods:?}");
            }
        }
    }
    assert!(deletes > 100, "{deletes}");
}

#[test]
fn facts_from_a_pod() {
    let waiting = |reason: &str| ContainerStatus {
        name: "zookeeper".into(),
        restart_count: 5,
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    };
    let pod = Pod {
        metadata: ObjectMeta {
            creation_timestamp: Some(Time(ago(100))),
            deletion_timestamp: Some(Time(now())),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            phase: Some("Running".into()),
            init_container_statuses: Some(vec![ContainerStatus {
                restart_count: 1,
                ..ContainerStatus::default()
            }]),
            container_statuses: Some(vec![waiting(CRASH_LOOP_BACK_OFF)]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    assert_eq!(
        PodFacts::from_pod(&pod),
        PodFacts {
            phase: PodPhase::Running,
            restart_count: 5,
            waiting_reason: Some(CRASH_LOOP_BACK_OFF.into()),
            terminating: true,
            created_at: Some(ago(100)),
            ready: false,
            refuses_empty_voter: false,
            node_not_ready: None,
        }
    );
    let bare = PodFacts::from_pod(&Pod::default());
    assert_eq!(
        (bare.phase, bare.restart_count, bare.terminating),
        (PodPhase::Unknown, 0, false)
    );
    for phase in ["Pending", "Running", "Succeeded", "Failed"] {
        let pod = Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        assert_eq!(format!("{:?}", PodFacts::from_pod(&pod).phase), phase);
    }
}

#[test]
fn policy_from_the_spec() {
    let spec = FailedMemberRestartSpec::default();
    assert_eq!(
        RestartPolicy::from(&spec),
        RestartPolicy {
            enabled: true,
            threshold: Duration::from_secs(60)
        }
    );
}

#[test]
fn a_member_only_the_operator_cannot_reach_is_not_restarted() {
    let members = with(3, &[(3, Unreachable, OLD)]);
    let policy = RestartPolicy {
        enabled: true,
        threshold: Duration::from_secs(60),
    };
    let decide = |ready: bool, synced: bool| {
        let pods: BTreeMap<String, PodFacts> = members
            .iter()
            .map(|m| (m.pod.clone(), PodFacts { ready, ..running() }))
            .collect();
        decide_restart(&members, &pods, &policy, None, synced, now())
    };
    // Its pod is Ready and the leader counts every follower in sync: the operator's path
    // to it is at fault. Kept, and the reason says so.
    match decide(true, true) {
        RestartDecision::Held { why } => {
            assert!(why.contains("path from the operator"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // Either sign missing: it is really out of the quorum, and restarted.
    for (ready, synced) in [(false, true), (true, false)] {
        assert!(
            matches!(
                decide(ready, synced),
                RestartDecision::Delete { myid, .. } if myid == id(3)
            ),
            "ready {ready}, synced {synced}"
        );
    }
}

#[test]
fn a_member_on_a_node_that_is_not_ready_is_never_restarted() {
    let policy = RestartPolicy {
        enabled: true,
        threshold: Duration::from_secs(60),
    };
    let on_lost_node = PodFacts {
        node_not_ready: Some(
            "node n1, which is NotReady (Ready=Unknown: NodeStatusUnknown)".into(),
        ),
        ..running()
    };
    let decide = |members: &[MemberStatus], pods: Vec<Option<PodFacts>>| {
        let pods: BTreeMap<String, PodFacts> = members
            .iter()
            .zip(pods)
            .filter_map(|(m, p)| Some((m.pod.clone(), p?)))
            .collect();
        decide_restart(members, &pods, &policy, None, false, now())
    };
    // Unreachable for an hour, crash-looping, or Failed: all would be restarted on a Ready
    // node; on one that is not Ready, none is, and the reason names the node and what to do.
    let unreachable = with(3, &[(3, Unreachable, OLD)]);
    let kinds = [
        on_lost_node.clone(),
        PodFacts {
            waiting_reason: Some(CRASH_LOOP_BACK_OFF.into()),
            ..on_lost_node.clone()
        },
        PodFacts {
            phase: PodPhase::Failed,
            ..on_lost_node.clone()
        },
    ];
    for facts in kinds {
        let ready_node = PodFacts {
            node_not_ready: None,
            ..facts.clone()
        };
        assert!(
            matches!(
                decide(&unreachable, set(all_running(3), 3, Some(ready_node))),
                RestartDecision::Delete { myid, .. } if myid == id(3)
            ),
            "{facts:?}"
        );
        match decide(&unreachable, set(all_running(3), 3, Some(facts.clone()))) {
            RestartDecision::Held { why } => {
                assert!(
                    why.contains("its pod is on node n1, which is NotReady"),
                    "{why}"
                );
                assert!(why.contains("node.kubernetes.io/out-of-service"), "{why}");
            }
            other => panic!("{facts:?}: {other:?}"),
        }
    }
    // A serving member on such a node needs nothing, and another failed member on a Ready
    // node is still restarted.
    let two_failed = with(5, &[(2, Unreachable, OLD), (3, Unreachable, OLD)]);
    let pods = set(all_running(5), 2, Some(on_lost_node.clone()));
    assert!(matches!(
        decide(&two_failed, pods),
        RestartDecision::Delete { myid, .. } if myid == id(3)
    ));
    assert!(matches!(
        decide(&healthy(3), set(all_running(3), 2, Some(on_lost_node))),
        RestartDecision::Keep { .. }
    ));
}
