//! The controller's status loop on a local ensemble: a probe round (src/quorum/probe.rs) fed to
//! the status rule (src/quorum/rule.rs), with the rule's memory in between, once per interval.
//! The real-ZooKeeper tests assert on it and the quorum_status benchmark times it.

use std::time::{Duration, Instant};

use tokio::time::{Interval, MissedTickBehavior};
use zooherd::api::Phase;
use zooherd::quorum::observe;
use zooherd::quorum::probe::{ProbeSettings, Prober, Voter};
use zooherd::quorum::rule::{ComputedStatus, EnsembleMemory, RuleSettings};

use super::zookeeper::{ADMIN_PORT, ZkEnsemble};

pub struct StatusLoop {
    pub prober: Prober,
    pub voters: Vec<Voter>,
    memory: EnsembleMemory,
    settings: RuleSettings,
    ticks: Interval,
    /// Every distinct phase shown, in order.
    phases: Vec<Phase>,
}

impl StatusLoop {
    /// A loop over `zk`'s members with the default settings, one round per `interval` (the
    /// first at once).
    pub fn new(zk: &ZkEnsemble, interval: Duration) -> Self {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            prober: Prober::new(ProbeSettings {
                admin_port: ADMIN_PORT,
                ..ProbeSettings::default()
            }),
            voters: zk.voters(),
            memory: EnsembleMemory::default(),
            settings: RuleSettings::default(),
            ticks,
            phases: Vec::new(),
        }
    }

    /// Waits for the next tick, then probes and assesses.
    pub async fn round(&mut self) -> ComputedStatus {
        self.ticks.tick().await;
        let status = observe(&self.prober, &self.voters, &mut self.memory, &self.settings).await;
        if self.phases.last() != Some(&status.summary.phase) {
            self.phases.push(status.summary.phase);
        }
        status
    }

    /// Rounds until `check` holds; panics after `timeout` with the last status.
    pub async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&ComputedStatus) -> bool,
    ) -> ComputedStatus {
        let started = Instant::now();
        loop {
            let status = self.round().await;
            if check(&status) {
                eprintln!("{what}: {} ({})", status.summary.phase, status.message);
                return status;
            }
            if started.elapsed() > timeout {
                panic!(
                    "no {what} after {timeout:?}; last: {} {}\n{:#?}",
                    status.summary.phase, status.message, status.members
                );
            }
        }
    }

    pub async fn until_phase(&mut self, phase: Phase, timeout: Duration) -> ComputedStatus {
        self.until(&phase.to_string(), timeout, |s| s.summary.phase == phase)
            .await
    }

    /// Every distinct phase shown so far, in order.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }
}

/// The index of the leader's member (pod `zk-<index>`), if the status names one.
pub fn leader_index(status: &ComputedStatus) -> Option<usize> {
    status
        .summary
        .leader
        .as_deref()
        .and_then(|pod| pod.strip_prefix("zk-"))
        .and_then(|i| i.parse().ok())
}
