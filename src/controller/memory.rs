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
use crate::api::{MembershipStatus, ZooKeeperEnsemble, ZooKeeperEnsembleStatus};
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
            .unwrap_or_else(|| Memory {
                uid: ensemble.uid(),
                rule: EnsembleMemory::from_status(&ensemble.status.clone().unwrap_or_default()),
                written: None,
            })
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
