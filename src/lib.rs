//! Zooherd: a Kubernetes operator that runs Apache ZooKeeper ensembles.
//!
//! The crate is split the way the work flows: [`api`] holds the custom resource a user writes,
//! [`build`] turns it into plain Kubernetes objects without IO, [`quorum`] asks the servers what
//! they are doing and decides the ensemble's phase, [`decide`] picks the one disruptive action a
//! reconcile may take, [`controller`] does the IO that applies the objects, carries the action
//! out and writes the status, [`backup`] takes `ZooKeeperBackup`s (snapshots streamed to object
//! storage), [`operator`] runs the controller as a service, [`agent`] runs
//! inside every server pod, and [`plugin`] is `kubectl zooherd`, for the people who run them.

pub mod agent;
pub mod api;
pub mod backup;
pub mod build;
pub mod controller;
pub mod decide;
pub mod http;
pub mod operator;
pub mod plugin;
pub mod quorum;
pub mod tls;
