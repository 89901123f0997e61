//! Members that do not answer are asked less and less often.
//!
//! A member whose AdminServer times out costs a connection attempt and a pending request for
//! the whole timeout, every round. One operator may watch thousands of members; if many are
//! unreachable at once (a node gone, a namespace of ensembles whose pods never started), polling
//! each at the full rate would keep thousands of requests in flight for nothing. So once a
//! member has failed every probe for [`BACKOFF_AFTER`], it is asked after a delay that doubles
//! up to [`Backoff::max`]; meanwhile its last answer stands.
//!
//! Detection is not slowed where it matters:
//! - a member that answered is always asked next round, so its death is seen at the first
//!   failed probe, as before;
//! - a member that fails for less than [`BACKOFF_AFTER`] (a JVM starting, a server restarted
//!   by hand) is asked every round, so its return is seen at once;
//! - a member whose pod changes (restarted container, readiness flipped, new IP) is asked at
//!   once: the entry is keyed by the pod's resource version, so a new version starts afresh.
//!
//! What remains slower is the return of a member that failed for longer and whose pod does not
//! change (a healed network partition between the operator and the member): seen within
//! [`Backoff::max`]. No disruption rests on an answer that stood in for a probe: the operator
//! asks the member again before it restarts it (`controller::act`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::probe::{Answer, Voter};

/// How long a member must have failed every probe before it is asked less often: longer than
/// a server takes to start, so that formation and restarts are seen as fast as before.
pub const BACKOFF_AFTER: Duration = Duration::from_secs(30);

/// The first delay; doubles with each further failure.
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
    /// The first of the consecutive failures.
    since: Instant,
    /// Failures since the backoff began.
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

    /// The delay after the `failures`th failure since the backoff began.
    fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (failures - 1).min(16);
        FIRST_DELAY.saturating_mul(1 << doublings).min(self.max)
    }

    /// The answer that stands for `voter` instead of asking it now, if it is left alone: its
    /// last failure, word for word (the reason goes into the status, which is written only
    /// when it changes).
    pub fn standing(&self, voter: &Voter, now: Instant) -> Option<Answer> {
        let entry = self.entries.get(&Key::of(voter)?)?;
        (now < entry.next).then(|| entry.answer.clone())
    }

    /// Records what `voter` answered when asked at `now`.
    pub fn record(&mut self, voter: &Voter, answer: &Answer, now: Instant) {
        let Some(key) = Key::of(voter) else { return };
        if self.max.is_zero() || !matches!(answer, Answer::Unreachable(_)) {
            self.entries.remove(&key);
            return;
        }
        let since = self.entries.get(&key).map_or(now, |e| e.since);
        let failures = match self.entries.get(&key) {
            Some(e) if now.saturating_duration_since(since) >= BACKOFF_AFTER => e.failures + 1,
            _ => 0,
        };
        let next = now + self.delay(failures);
        let answer = answer.clone();
        self.entries.insert(
            key,
            Entry {
                since,
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
            admin_tls: false,
        }
    }

    fn timeout() -> Answer {
        Answer::Unreachable("timed out".into())
    }

    fn not_serving() -> Answer {
        Answer::NotServing("This ZooKeeper instance is not currently serving requests".into())
    }

    /// Probes `voter` every second from `from` for `until`, as the rounds would: a failure
    /// each time it is asked. Returns how many times it was asked.
    fn fail_every_second(
        backoff: &mut Backoff,
        voter: &Voter,
        from: Instant,
        until: Duration,
    ) -> usize {
        let mut asked = 0;
        let mut at = from;
        while at <= from + until {
            if backoff.standing(voter, at).is_none() {
                backoff.record(voter, &timeout(), at);
                asked += 1;
            }
            at += Duration::from_secs(1);
        }
        asked
    }

    #[test]
    fn a_member_is_asked_every_round_for_its_first_thirty_seconds_of_failure() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10), t0);
        let zk0 = voter(0, "1");
        let asked = fail_every_second(&mut backoff, &zk0, t0, Duration::from_secs(29));
        assert_eq!(asked, 30);
        backoff.record(&zk0, &timeout(), t0 + BACKOFF_AFTER);
        let standing = backoff.standing(&zk0, t0 + Duration::from_secs(31));
        assert_eq!(
            standing,
            Some(timeout()),
            "the last failure stands, word for word"
        );
        assert_eq!(backoff.standing(&zk0, t0 + Duration::from_secs(32)), None);
    }

    #[test]
    fn the_delay_doubles_up_to_the_maximum() {
        let backoff = Backoff::new(Duration::from_secs(10), Instant::now());
        let delays: Vec<u64> = (0..=5).map(|f| backoff.delay(f).as_secs()).collect();
        assert_eq!(delays, [0, 2, 4, 8, 10, 10]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(10));
        // Over ten minutes of failure: 30 asks, then one about every 10 s.
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10), t0);
        let asked = fail_every_second(&mut backoff, &voter(0, "1"), t0, Duration::from_secs(599));
        assert!((80..=90).contains(&asked), "{asked}");
    }

    #[test]
    fn an_answer_or_a_changed_pod_ends_the_backoff() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10), t0);
        let zk0 = voter(0, "1");
        fail_every_second(&mut backoff, &zk0, t0, Duration::from_secs(40));
        let now = t0 + Duration::from_secs(41);
        assert!(backoff.standing(&zk0, now).is_some());
        // The pod changed (its container restarted, say): the new version is asked at once.
        assert_eq!(backoff.standing(&voter(0, "2"), now), None);
        // Any answer, even "not serving", means the member is there.
        backoff.record(&zk0, &not_serving(), now);
        assert_eq!(backoff.standing(&zk0, now), None);
        assert_eq!(backoff.len(), 0);
    }

    #[test]
    fn a_zero_maximum_turns_it_off() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::ZERO, t0);
        let zk0 = voter(0, "1");
        let asked = fail_every_second(&mut backoff, &zk0, t0, Duration::from_secs(59));
        assert_eq!(asked, 60);
        let now = t0 + Duration::from_secs(60);
        assert_eq!(
            backoff.due_in(std::slice::from_ref(&zk0), now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn due_in_is_the_soonest_member_and_none_without_addresses() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10), t0);
        let (zk0, zk1) = (voter(0, "1"), voter(1, "1"));
        let later = t0 + BACKOFF_AFTER;
        backoff.record(&zk0, &timeout(), t0);
        backoff.record(&zk1, &timeout(), t0);
        for _ in 0..3 {
            backoff.record(&zk0, &timeout(), later); // 2, 4, then 8 s
        }
        backoff.record(&zk1, &timeout(), later); // 2 s
        let both = [zk0.clone(), zk1];
        assert_eq!(backoff.due_in(&both, later), Some(Duration::from_secs(2)));
        let unaddressed = Voter { ip: None, ..zk0 };
        assert_eq!(backoff.due_in(&[unaddressed], later), None);
    }

    #[test]
    fn entries_of_pods_that_changed_are_swept() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(10), t0);
        fail_every_second(&mut backoff, &voter(0, "1"), t0, Duration::from_secs(40));
        let later = t0 + Duration::from_secs(300);
        backoff.record(&voter(1, "1"), &timeout(), later);
        assert_eq!(backoff.len(), 1, "zk-0's old version was swept");
    }
}
