//! Which quorum TLS stage the servers are to run (see [`crate::build::tls`] for the
//! stages and why there are four).
//!
//! The stage lives in the ensemble's ConfigMap, beside the zoo.cfg that configures it, and goes
//! one step toward what `spec.tls.quorum` asks for only once every server runs it: every pod
//! of the StatefulSet carries the stage's annotation (so its zoo.cfg is the stage's, or the
//! next one's, which it is compatible with), is Ready and is not on its way out, and the last
//! round found the ensemble ACTIVE. So the servers running at any time are at most one stage
//! apart, which is what ZooKeeper's procedure needs: a server that refuses plaintext never runs
//! beside one that only speaks it. The decision reads only what is stored in the cluster, so an
//! operator restart in the middle of a migration resumes it where it stood. The roll that
//! follows a new stage is an ordinary roll ([`super::roll`]): one server at a time, followers
//! first, and only while every voter serves.

use crate::api::Phase;
use crate::build::tls::QuorumTls;

/// What the stage is decided from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumTlsFacts {
    /// `spec.tls.quorum`.
    pub wanted: bool,
    /// The ConfigMap's stage: None without a ConfigMap (a new ensemble, or one deleted by
    /// hand); `Some(Off)` for one that names no stage (written before quorum TLS existed).
    pub configured: Option<QuorumTls>,
    /// The StatefulSet's replicas (None: no StatefulSet).
    pub servers: Option<u32>,
    /// Each of the StatefulSet's pods: the stage its annotation names (absent: off), and
    /// whether it is Ready and not terminating.
    pub pods: Vec<(QuorumTls, bool)>,
    /// The phase the last round reported.
    pub phase: Option<Phase>,
}

/// The stage the servers are to run.
pub fn stage(facts: &QuorumTlsFacts) -> QuorumTls {
    // Without a ConfigMap (deleted by hand, or not yet written) the pods say what runs: a new
    // stage picked from the spec alone could be two away from theirs.
    let running = facts.pods.iter().map(|&(stage, _)| stage).max();
    let Some(configured) = facts.configured.or(running) else {
        return QuorumTls::target(facts.wanted);
    };
    let settled = facts.phase == Some(Phase::Active)
        && facts
            .servers
            .is_some_and(|servers| facts.pods.len() == servers as usize)
        && facts
            .pods
            .iter()
            .all(|&(stage, ready)| stage == configured && ready);
    if settled {
        configured.toward(facts.wanted)
    } else {
        configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use QuorumTls::*;

    fn facts(configured: Option<QuorumTls>, pods: &[(QuorumTls, bool)]) -> QuorumTlsFacts {
        QuorumTlsFacts {
            wanted: true,
            configured,
            servers: Some(3),
            pods: pods.to_vec(),
            phase: Some(Phase::Active),
        }
    }

    #[test]
    fn a_new_ensemble_starts_at_what_the_spec_asks() {
        assert_eq!(stage(&facts(None, &[])), On);
        let off = QuorumTlsFacts {
            wanted: false,
            ..facts(None, &[])
        };
        assert_eq!(stage(&off), Off);
    }

    #[test]
    fn without_a_config_map_the_running_pods_say_where_the_servers_stand() {
        let wanted_on = QuorumTlsFacts {
            phase: Some(Phase::Degraded),
            ..facts(None, &[(Off, true), (Off, true), (Off, false)])
        };
        assert_eq!(stage(&wanted_on), Off, "not two stages away from the pods");
        let mid_roll = facts(None, &[(Accepting, true), (Off, true), (Accepting, true)]);
        assert_eq!(stage(&mid_roll), Accepting);
    }

    #[test]
    fn a_stage_is_taken_only_once_every_server_runs_the_one_before() {
        let all = |s| [(s, true), (s, true), (s, true)];
        assert_eq!(stage(&facts(Some(Off), &all(Off))), Accepting);
        assert_eq!(stage(&facts(Some(Accepting), &all(Accepting))), Connecting);
        assert_eq!(stage(&facts(Some(Connecting), &all(Connecting))), On);
        assert_eq!(stage(&facts(Some(On), &all(On))), On);

        let cases: [(&str, QuorumTlsFacts); 5] = [
            (
                "a pod still runs the stage before",
                facts(
                    Some(Accepting),
                    &[(Accepting, true), (Off, true), (Accepting, true)],
                ),
            ),
            (
                "a pod is not Ready",
                facts(
                    Some(Accepting),
                    &[(Accepting, true), (Accepting, false), (Accepting, true)],
                ),
            ),
            (
                "a pod is missing",
                facts(Some(Accepting), &[(Accepting, true), (Accepting, true)]),
            ),
            (
                "the ensemble is not ACTIVE",
                QuorumTlsFacts {
                    phase: Some(Phase::Degraded),
                    ..facts(Some(Accepting), &all(Accepting))
                },
            ),
            (
                "no StatefulSet",
                QuorumTlsFacts {
                    servers: None,
                    ..facts(Some(Accepting), &[])
                },
            ),
        ];
        for (why, facts) in cases {
            assert_eq!(stage(&facts), Accepting, "{why}");
        }
    }

    #[test]
    fn switching_off_walks_back_one_stage_at_a_time() {
        let off = |configured, pods: &[(QuorumTls, bool)]| QuorumTlsFacts {
            wanted: false,
            ..facts(Some(configured), pods)
        };
        let all = |s| [(s, true), (s, true), (s, true)];
        assert_eq!(stage(&off(On, &all(On))), Connecting);
        assert_eq!(stage(&off(Connecting, &all(Connecting))), Accepting);
        assert_eq!(stage(&off(Accepting, &all(Accepting))), Off);
        assert_eq!(stage(&off(Off, &all(Off))), Off);
        // Turned off half-way through switching on: back from where it stands.
        assert_eq!(
            stage(&off(Connecting, &[(Connecting, true), (Accepting, true)])),
            Connecting
        );
    }
}
