//! Which step a reconcile is at, so that one abandoned at its deadline says where it hung.
//!
//! A reconcile's awaits are bounded together by one deadline (`reconcile::RECONCILE_DEADLINE`);
//! without this, an overrun only says that something hung, not whether it was a probe, the
//! membership read, the Lease, an eviction or the status write. Steps are recorded through a
//! task-local, so the IO shells name their step without it being passed down every call.

use std::sync::{Arc, Mutex, PoisonError};

tokio::task_local! {
    static CURRENT: Arc<Mutex<&'static str>>;
}

/// The step of one reconcile, readable after its future was dropped.
#[derive(Clone, Default)]
pub struct Progress(Arc<Mutex<&'static str>>);

impl Progress {
    /// Runs `reconcile`, recording the steps it enters through [`at`].
    pub async fn track<F: Future>(&self, reconcile: F) -> F::Output {
        CURRENT.scope(Arc::clone(&self.0), reconcile).await
    }

    /// The last step entered ("starting" before any).
    pub fn step(&self) -> &'static str {
        let step = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if step.is_empty() { "starting" } else { step }
    }
}

/// Records that the reconcile running on this task is now `step` (a phrase such as "reading the
/// committed membership"). Outside a tracked reconcile it does nothing.
pub fn at(step: &'static str) {
    let _ = CURRENT.try_with(|current| {
        *current.lock().unwrap_or_else(PoisonError::into_inner) = step;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_abandoned_reconcile_names_the_step_it_hung_in() {
        let progress = Progress::default();
        assert_eq!(progress.step(), "starting");
        let hangs = progress.track(async {
            at("reading the committed membership");
            at("evicting a pod");
            std::future::pending::<()>().await
        });
        let abandoned = tokio::time::timeout(Duration::from_millis(10), hangs).await;
        assert!(abandoned.is_err());
        assert_eq!(progress.step(), "evicting a pod");
        // Outside a tracked reconcile: nothing recorded, nothing fails.
        at("elsewhere");
        assert_eq!(progress.step(), "evicting a pod");
    }
}
