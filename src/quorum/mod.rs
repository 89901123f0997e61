//! Quorum status: ask every voter's AdminServer what it is doing, then decide the ensemble's
//! phase with the pure status rule, which is tested without a cluster.
//!
//! The controller's status loop, once per probe interval: [`observe`] (a probe round with
//! [`probe::Prober::probe`], then [`rule::assess`]) → [`rule::ComputedStatus::write_into`] the
//! status. What the operator may disrupt after it is `crate::decide`'s.
//!
//! Membership, for scaling: [`membership`] reads the committed configuration and decides the
//! next step of a scale (pure); [`reconfig`] reads and changes it through a ZooKeeper session
//! as the ensemble's superuser (the other IO here, besides the probes). Servers are named by
//! [`Myid`].

pub mod admin;
pub mod backoff;
pub mod membership;
pub mod myid;
pub mod probe;
pub mod reconfig;
pub mod rule;

use jiff::Timestamp;

pub use myid::Myid;

use probe::{Prober, Voter};
use rule::{ComputedStatus, EnsembleMemory, RuleSettings};

/// One step of the status loop: probes every voter, assesses the answers against what was
/// shown before, and moves `memory` on for the next step. The controller, the real-ZooKeeper
/// tests and the benchmark all run exactly this.
pub async fn observe(
    prober: &Prober,
    voters: &[Voter],
    memory: &mut EnsembleMemory,
    settings: &RuleSettings,
) -> ComputedStatus {
    let round = prober.probe(voters).await;
    let assessment = rule::assess(
        memory,
        voters.len(),
        &round.observations,
        Timestamp::now(),
        settings,
    );
    *memory = assessment.memory;
    assessment.status
}
