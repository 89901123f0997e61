//! Quorum status: ask every voter's AdminServer what it is doing, then decide the ensemble's
//! phase with a pure rule that can be tested without a cluster.

pub mod admin;
