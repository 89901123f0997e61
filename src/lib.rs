//! Zooherd: a Kubernetes operator that runs Apache ZooKeeper ensembles.
//!
//! The crate is split the way the work flows: [`api`] holds the custom resource a user writes,
//! [`build`] turns it into plain Kubernetes objects without IO, [`quorum`] asks the servers what
//! they are doing and decides the ensemble's phase, [`controller`] does the IO that applies the
//! objects and writes the status, and [`agent`] runs inside every server pod.

pub mod agent;
pub mod api;
pub mod build;
pub mod controller;
pub mod quorum;
