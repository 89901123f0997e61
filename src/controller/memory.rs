//! What the operator remembers about one ensemble between reconciles, and the membership the
//! StatefulSet's size follows.
//!
//! Memory is a cache of what the operator itself saw and wrote; losing it (an operator restart)
//! costs nothing but a few rounds: the status rule starts again from the status, and the status
//! is compared with the informer's copy instead of the last write.

use std::time::Instant;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use super::reconcile::ApplyInputs;
use crate::api::{MembershipStatus, QuorumTlsStatus, ZooKeeperEnsemble, ZooKeeperEnsembleStatus};
use crate::quorum::rule::EnsembleMemory;

/// What the operator remembers about one ensemble between reconciles.
#[derive(Clone, Debug)]
pub struct Memory {
    /// The ensemble this memory is about: a new ensemble of the same name starts afresh.
    pub uid: Option<String>,
    pub rule: EnsembleMemory,
    /// The status last written, and when. The informer's copy of the ensemble can lag behind
    /// our own writes; comparing with it would write the same status twice.
    pub written: Option<(ZooKeeperEnsembleStatus, Instant)>,
    /// The last full apply of the children (see `reconcile`).
    pub applied: Option<LastApply>,
}

/// A full apply of an ensemble's children: what it started from, when, and what the status
/// shows of the credentials it configured.
#[derive(Clone, Debug)]
pub struct LastApply {
    pub inputs: ApplyInputs,
    pub at: Instant,
    pub credentials: CredentialsStatus,
}

/// What the status shows of the credentials the servers are configured with: quorum TLS, and
/// when the CA of the clients' certificates expires.
#[derive(Clone, Debug, PartialEq)]
pub struct CredentialsStatus {
    pub quorum_tls: QuorumTlsStatus,
    pub client_ca_not_after: Option<jiff::Timestamp>,
}

impl Memory {
    /// A new ensemble's memory, started from its status.
    fn fresh(ensemble: &ZooKeeperEnsemble) -> Self {
        Self {
            uid: ensemble.uid(),
            rule: EnsembleMemory::from_status(&ensemble.status.clone().unwrap_or_default()),
            written: None,
            applied: None,
        }
    }
}

impl Context {
    /// What is remembered about `ensemble`, or a fresh memory started from its status.
    pub(crate) fn memory_of(&self, ensemble: &ZooKeeperEnsemble) -> Memory {
        self.memory
            .lock()
            .expect("status memory lock")
            .get(&ObjectRef::from(ensemble))
            .filter(|memory| memory.uid == ensemble.uid())
            .cloned()
            .unwrap_or_else(|| Memory::fresh(ensemble))
    }

    /// The last full apply of `ensemble`'s children, if one is remembered.
    pub(crate) fn last_apply(&self, ensemble: &ZooKeeperEnsemble) -> Option<LastApply> {
        self.memory
            .lock()
            .expect("status memory lock")
            .get(&ObjectRef::from(ensemble))
            .filter(|memory| memory.uid == ensemble.uid())?
            .applied
            .clone()
    }

    /// Remembers a full apply of `ensemble`'s children at once, in the stored memory: the
    /// round's observe takes its copy after the apply, so the round remembers it again with
    /// the rest, and a round that fails later keeps it too.
    pub(crate) fn remember_apply(&self, ensemble: &ZooKeeperEnsemble, apply: LastApply) {
        let mut memories = self.memory.lock().expect("status memory lock");
        let memory = memories
            .entry(ObjectRef::from(ensemble))
            .or_insert_with(|| Memory::fresh(ensemble));
        if memory.uid != ensemble.uid() {
            *memory = Memory::fresh(ensemble);
        }
        memory.applied = Some(apply);
    }

    pub(crate) fn remember(&self, ensemble: &ZooKeeperEnsemble, memory: Memory) {
        self.memory
            .lock()
            .expect("status memory lock")
            .insert(ObjectRef::from(ensemble), memory);
    }
}

/// `status.membership` as this operator last wrote it, else as the ensemble shows it. The
/// informer's copy of the ensemble can lag behind our own writes, and the StatefulSet's size
/// must never follow a membership older than the one last read from ZooKeeper.
pub fn recorded_membership(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
) -> Option<MembershipStatus> {
    let written = ctx
        .memory_of(ensemble)
        .written
        .and_then(|(status, _)| status.membership);
    written.or_else(|| ensemble.status.as_ref()?.membership.clone())
}
