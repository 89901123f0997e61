//! Quorum status: ask every voter's AdminServer what it is doing, then decide the ensemble's
//! phase, and which failed member (if any) to restart, with pure functions that can be tested
//! without a cluster.
//!
//! The controller's status loop, once per probe interval: [`probe::Prober::probe`] (the only
//! IO here) → [`rule::assess`] → [`rule::ComputedStatus::write_into`] the status →
//! [`restart::decide_restart`] → at most one pod delete, noted with
//! [`rule::EnsembleMemory::record_restart`].

pub mod admin;
pub mod probe;
pub mod restart;
pub mod rule;
