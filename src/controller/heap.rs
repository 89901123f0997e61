//! Giving back to the system the memory a burst of work freed.
//!
//! glibc's malloc keeps the pages of freed chunks that are not at the top of a heap: after a
//! thousand ensembles are created at once (their children, pods and first reconciles), the
//! operator held 229 MB of heap for 127 MB in use, and its resident size stayed at 240 MiB
//! for as long as it ran; `malloc_trim(0)`, called by hand in the idle operator (gdb), brought
//! it to 171 MiB (`cargo bench --bench scale`, 1,000 ensembles). `MALLOC_ARENA_MAX=2` only took
//! it from 234 to 220 MiB, and mimalloc kept more at 100 and 300 ensembles (68 and 117 MiB
//! against glibc's 43 and 87). So the operator trims its heap once a minute: one walk of the
//! free lists, a few milliseconds off the runtime's threads.

use std::time::Duration;

/// How often freed memory is given back.
const EVERY: Duration = Duration::from_secs(60);

/// Gives freed heap pages back to the system every [`EVERY`], for ever.
pub async fn give_back_freed_memory() {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // A walk of every arena's free lists under its lock: done where blocking is allowed.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointer and only locks and walks glibc's own arenas
    // (malloc_trim(3) marks it MT-Safe), so it may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl's) give freed pages back by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
