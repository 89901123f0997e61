//! Scaling a [`ZkEnsemble`] the way the controller does: plan one step from the committed
//! membership and what the members answer (`zooherd::quorum::membership::next_step`), make it
//! (a reconfiguration as the superuser, or starting and stopping members where the controller
//! would resize the StatefulSet), and plan again, until the ensemble is steady.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use zooherd::api::MemberState;
use zooherd::quorum::Myid;
use zooherd::quorum::membership::{Membership, ScaleFacts, ScaleStep, next_step};
use zooherd::quorum::probe::{ProbeSettings, Prober};
use zooherd::quorum::reconfig::{Login, Reconfigurer};

use super::zookeeper::{ADMIN_PORT, ZkEnsemble};

/// How long a whole scale may take.
const SCALE_TIMEOUT: Duration = Duration::from_secs(240);

/// What the first `replicas` members (those with a "pod") answer, by myid.
pub async fn states(zk: &ZkEnsemble, replicas: usize) -> BTreeMap<Myid, MemberState> {
    let prober = Prober::new(ProbeSettings {
        admin_port: ADMIN_PORT,
        ..ProbeSettings::default()
    });
    let voters: Vec<_> = zk.voters().into_iter().take(replicas).collect();
    prober
        .probe(&voters)
        .await
        .observations
        .iter()
        .map(|o| (o.myid, o.state()))
        .collect()
}

/// The committed membership, read through the first `replicas` members.
pub async fn committed(zk: &ZkEnsemble, replicas: usize, password: &str) -> Membership {
    Reconfigurer::default()
        .committed(
            &zk.client_addresses(0..replicas),
            Login::superuser(password),
        )
        .await
        .unwrap_or_else(|e| panic!("reading the committed membership: {e}"))
}

/// How one scale goes in a test ensemble.
pub struct Scaler<'a> {
    pub password: &'a str,
    /// The `server.<myid>=` value a joining server is added with.
    pub line: &'a dyn Fn(&ZkEnsemble, Myid) -> String,
    /// Called before joining members are started, with the committed membership and the new
    /// number of members: where the operator writes the bootstrap membership.
    pub before_grow: &'a mut dyn FnMut(&Membership, u8),
}

impl Scaler<'_> {
    /// Scales the ensemble's first `replicas` members to `desired` voters; returns every step
    /// taken (waits left out) and how long it took, and prints them.
    pub async fn scale(
        &mut self,
        zk: &mut ZkEnsemble,
        replicas: &mut usize,
        desired: u8,
    ) -> Vec<(ScaleStep, Duration)> {
        let reconfigurer = Reconfigurer::default();
        let started = Instant::now();
        let mut steps = Vec::new();
        loop {
            assert!(
                started.elapsed() < SCALE_TIMEOUT,
                "scaling to {desired} took too long; steps so far: {steps:?}"
            );
            let servers = zk.client_addresses(0..*replicas);
            let committed = committed(zk, *replicas, self.password).await;
            let states = states(zk, *replicas).await;
            let step = next_step(&ScaleFacts {
                desired,
                committed: &committed,
                stateful_set_replicas: *replicas as u8,
                states: &states,
            });
            let began = Instant::now();
            match &step {
                ScaleStep::Steady => return steps,
                ScaleStep::Wait(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                ScaleStep::Refuse(why) => panic!("refused: {why}"),
                ScaleStep::Grow(n) => {
                    (self.before_grow)(&committed, *n);
                    for i in *replicas..usize::from(*n) {
                        zk.start_member(i).expect("start a joining member");
                    }
                    *replicas = usize::from(*n);
                }
                ScaleStep::Shrink(n) => {
                    for i in usize::from(*n)..*replicas {
                        zk.stop(i).expect("stop a removed member");
                    }
                    *replicas = usize::from(*n);
                }
                ScaleStep::AddVoter(myid) => {
                    let line = (self.line)(zk, *myid);
                    let now = reconfigurer
                        .add_voter(
                            &servers,
                            Login::superuser(self.password),
                            &committed,
                            *myid,
                            &line,
                        )
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert!(now.voters().contains(myid));
                    assert!(now.version > committed.version);
                }
                ScaleStep::RemoveVoter(myid) => {
                    let now = reconfigurer
                        .remove_voter(&servers, Login::superuser(self.password), &committed, *myid)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert!(!now.servers.contains_key(myid));
                    assert!(now.version > committed.version);
                }
            }
            let took = began.elapsed();
            eprintln!("{step}: {took:?}");
            steps.push((step, took));
        }
    }
}

/// The steps' descriptions.
pub fn names(steps: &[(ScaleStep, Duration)]) -> Vec<String> {
    steps.iter().map(|(s, _)| s.to_string()).collect()
}
