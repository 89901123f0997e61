//! Members that do not answer are asked less and less often.
//!
//! A member whose AdminServer times out costs a connection attempt and a pending request for
//! the whole timeout, every round. One operator may watch thousands of members; if many are
//! unreachable at once (a node gone, a namespace of ensembles whose pods never started), polling
//! each at the full rate would keep thousands of requests in flight for nothing. So after its
//! second consecutive failure a member is not asked again for a delay that doubles up to
//! [`Backoff::max`]; meanwhile its last answer stands.
//!
//! Detection is not slowed where it matters:
//! - a member that answered is always asked next round, so its death is seen at the first
//!   failed probe, as before (the backoff starts only once a member has already been seen
//!   failing twice);
//! - a member whose pod changes (restarted container, readiness flipped, new IP) is asked at
//!   once: the entry is keyed by the pod's resource version, so a new version starts afresh.
//!
//! What remains slower is the return of a member whose pod does not change at all (a healed
//! network partition between the operator and the member): seen within [`Backoff::max`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::probe::{Answer, Voter};

/// How long a member is left alone after its second failure; doubles with each further one.
const FIRST_DELAY: Duration = Duration::from_secs(2);

/// How often stale entries (members whose pod changed or went away) are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A member, as far as the backoff is concerned: the same pod, at the same IP, unchanged.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    pod: String,
    ip: IpAddr,
    pod_version: Option<String>,
}

impl Key {
    fn of(voter: &Voter) -> Option<Self> {
        Some(Self {
            pod: voter.pod.clone(),
            ip: voter.ip?,
            pod_version: voter.pod_version.clone(),
        })
    }
}

#[derive(Clone, Debug)]
struct Entry {
    failures: u32,
    /// Not asked before this.
    next: Instant,
    /// The last failure, repeated while the member is left alone.
    answer: Answer,
}

/// The consecutive failures of each member that does not answer.
#[derive(Debug)]
pub struct Backoff {
    /// The longest a member is left alone; zero turns the backoff off.
    pub max: Duration,
    entries: HashMap<Key, Entry>,
    swept: Instant,
}

impl Backoff {
    pub fn new(max: Duration, now: Instant) -> Self {
        Self {
            max,
            entries: HashMap::new(),
            swept: now,
        }
    }

    /// The delay after `failures` consecutive failures.
    fn delay(&self, failures: u32) -> Duration {
        if failures < 2 {
            return Duration::ZERO;
        }
        let doublings = (failures - 2).min(16);
        FIRST_DELAY.saturating_mul(1 << doublings).min(self.max)
    }

    /// The answer that stands for `voter` instead of asking it now, if it is left alone.
    pub fn standing(&self, voter: &Voter, now: Instant) -> Option<Answer> {
        let entry = self.entries.get(&Key::of(voter)?)?;
        (now < entry.next).then(|| match &entry.answer {
            Answer::Unreachable(reason) => Answer::Unreachable(format!(
                "{reason} (not asked again for {} s: {} failures in a row)",
                entry.next.saturating_duration_since(now).as_secs().max(1),
                entry.failures
            )),
            other => other.clone(),
        })
    }

    /// Records what `voter` answered when asked at `now`.
    pub fn record(&mut self, voter: &Voter, answer: &Answer, now: Instant) {
        let Some(key) = Key::of(voter) else { return };
        if self.max.is_zero() || !matches!(answer, Answer::Unreachable(_)) {
            self.entries.remove(&key);
            return;
        }
        let failures = self.entries.get(&key).map_or(0, |e| e.failures) + 1;
        let next = now + self.delay(failures);
        let answer = answer.clone();
        self.entries.insert(
            key,
            Entry {
                failures,
                next,
                answer,
            },
        );
        if now.saturating_duration_since(self.swept) >= SWEEP_EVERY {
            // An entry not renewed for several maximum delays belongs to a pod that changed
            // or is gone: its key is never asked for again.
            let stale = self.max.saturating_mul(4).max(SWEEP_EVERY);
            self.entries
                .retain(|_, e| now.saturating_duration_since(e.next) < stale);
            self.swept = now;
        }
    }

    /// How long until one of `voters` is to be asked again: zero if one is due now, `None` if
    /// none has an address.
    pub fn due_in(&self, voters: &[Voter], now: Instant) -> Option<Duration> {
        voters
            .iter()
            .filter_map(Key::of)
            .map(|key| {
                self.entries
                    .get(&key)
                    .map_or(Duration::ZERO, |e| e.next.saturating_duration_since(now))
            })
            .min()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::Myid;

    fn voter(ordinal: u32, version: &str) -> Voter {
        Voter {
            myid: Myid::from_ordinal(ordinal).unwrap(),
            pod: format!("zk-{ordinal}"),
            ip: Some(IpAddr::from([127, 0, 0, 1])),
            pod_version: Some(version.into()),
        }
    }

    fn timeout() -> Answer {
        Answer::Unreachable("timed out".into())
    }

    fn serving() -> Answer {
        Answer::NotServing("This ZooKeeper instance is not currently serving requests".into())
    }

    #[test]
    fn a_member_is_asked_every_round_until_it_fails_twice() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10), t0);
        let zk0 = voter(0, "1");
        backoff.record(&zk0, &timeout(), t0);
        assert_eq!(
            backoff.standing(&zk0, t0),
            None,
            "the first failure is asked again"
        );
        backoff.record(&zk0, &timeout(), t0);
        let standing = backoff.standing(&zk0, t0 + Duration::from_secs(1));
        assert!(
            matches!(&standing, Some(Answer::Unreachable(r)) if r.starts_with("timed out (not asked again for 1 s: 2 failures")),
            "{standing:?}"
        );
        assert_eq!(backoff.standing(&zk0, t0 + FIRST_DELAY), None);
    }

    #[test]
    fn the_delay_doubles_up_to_the_maximum() {
        let backoff = Backoff::new(Duration::from_secs(10), Instant::now());
        let delays: Vec<u64> = (1..=6).map(|f| backoff.delay(f).as_secs()).collect();
        assert_eq!(delays, [0, 2, 4, 8, 10, 10]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn an_answer_or_a_changed_pod_ends_the_backoff() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10), t0);
        let zk0 = voter(0, "1");
        for _ in 0..5 {
            backoff.record(&zk0, &timeout(), t0);
        }
        assert!(backoff.standing(&zk0, t0).is_some());
        // The pod changed (its container restarted, say): the new version is asked at once.
        assert_eq!(backoff.standing(&voter(0, "2"), t0), None);
        // Any answer, even "not serving", means the member is there.
        backoff.record(&zk0, &serving(), t0);
        assert_eq!(backoff.standing(&zk0, t0), None);
        assert_eq!(backoff.len(), 0);
    }

    #[test]
    fn a_zero_maximum_turns_it_off() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::ZERO, t0);
        let zk0 = voter(0, "1");
        for _ in 0..5 {
            backoff.record(&zk0, &timeout(), t0);
        }
        assert_eq!(backoff.standing(&zk0, t0), None);
        assert_eq!(
            backoff.due_in(std::slice::from_ref(&zk0), t0),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn due_in_is_the_soonest_member_and_none_without_addresses() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10), t0);
        let (zk0, zk1) = (voter(0, "1"), voter(1, "1"));
        for _ in 0..4 {
            backoff.record(&zk0, &timeout(), t0); // 8 s
        }
        for _ in 0..3 {
            backoff.record(&zk1, &timeout(), t0); // 4 s
        }
        let both = [zk0.clone(), zk1];
        assert_eq!(backoff.due_in(&both, t0), Some(Duration::from_secs(4)));
        let unaddressed = Voter { ip: None, ..zk0 };
        assert_eq!(backoff.due_in(&[unaddressed], t0), None);
    }

    #[test]
    fn entries_of_pods_that_changed_are_swept() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10), t0);
        for _ in 0..3 {
            backoff.record(&voter(0, "1"), &timeout(), t0);
        }
        let later = t0 + Duration::from_secs(300);
        backoff.record(&voter(1, "1"), &timeout(), later);
        assert_eq!(backoff.len(), 1, "zk-0's old version was swept");
    }
}
