//! The first formation: every server's name resolves before any JVM starts.
//!
//! The servers of a new ensemble start together (the StatefulSet creates its pods in
//! parallel), and each JVM looks up the others' headless-Service names at once. A name asked
//! for before the EndpointSlice lists its pod gets NXDOMAIN, and the cluster DNS keeps that
//! answer for a while (CoreDNS: the kubernetes plugin's SOA minimum TTL, 5 s by default).
//! ZooKeeper resolves a leader's address once per attempt to follow it
//! (`Learner.findLeader` → `recreateSocketAddresses`), then connects to that same address 5
//! times, `leaderConnectDelayDuringRetryMs` (100 ms) apart. A follower that got NXDOMAIN gives
//! up within half a second and starts another election round, while the leader it left waits
//! initLimit × tickTime (20 s) for followers before it gives up too ("Timeout while waiting for
//! epoch from quorum"), and the new round after it often has the same trouble.
//!
//! So, while the ensemble has not formed, the agent waits until every server's name resolves
//! (bounded by [`NAME_WAIT`]) and only then starts ZooKeeper; the servers then elect and
//! connect with every name known. Once it has formed, a server starts at once: its peers'
//! names were published long ago, and a restarting server must never wait on a peer that is
//! down.
//!
//! Measured on the local cluster, three servers from `kubectl apply` to ACTIVE (`cargo bench
//! --bench end_to_end`, its formation table): without the wait 4.8–26.1 s, median 9.8 s, 3 of 12
//! stalled 24–26 s and 3 more 11–13 s (an election round lost to a cached NXDOMAIN); waiting
//! with the first lookup at once, 9.2–12.9 s (each lookup made too early costs the negative
//! TTL); with the first lookup after [`FIRST_LOOKUP_AFTER`], 6.4–7.7 s in 20 of 20, median 7.3.

use std::net::{IpAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::quorum::membership::Membership;

/// How long a server of an ensemble that has not formed waits for the other servers' names. A
/// peer that cannot be scheduled must not hold the others back for long: after this they start
/// anyway and form a quorum without it. It is six times CoreDNS's default negative TTL, for
/// clusters whose kubernetes plugin keeps answers longer.
pub const NAME_WAIT: Duration = Duration::from_secs(30);

/// Between two rounds of lookups.
const POLL: Duration = Duration::from_millis(200);

/// Before the first lookup. The kubelet reports a pod's IP in the same status update that
/// shows its containers started, and the EndpointSlice and the DNS follow within about a
/// second: asked at once, a peer that started at the same moment is not published yet, and its
/// absence is then cached for the DNS's negative TTL (measured: about 6 s more to ACTIVE).
pub const FIRST_LOOKUP_AFTER: Duration = Duration::from_millis(1500);

/// The names to wait for: every server's host that is a name (an address needs no lookup)
/// while the ensemble has not formed, none after.
pub fn names_to_wait_for(membership: &Membership, formed: bool) -> Vec<String> {
    if formed {
        return Vec::new();
    }
    membership
        .hosts()
        .filter(|(_, host)| host.parse::<IpAddr>().is_err())
        .map(|(_, host)| host.to_owned())
        .collect()
}

/// Asks `resolves` about every host still unresolved, after `first_after` and then every
/// [`POLL`], until all resolve or `limit` has passed; returns the hosts that never resolved.
pub fn wait_for_names(
    mut hosts: Vec<String>,
    first_after: Duration,
    limit: Duration,
    resolves: impl Fn(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    std::thread::sleep(first_after.min(limit));
    loop {
        hosts.retain(|host| !resolves(host));
        if hosts.is_empty() || Instant::now() >= deadline {
            return hosts;
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Whether `host` (a name or an address) resolves to an address now, through the system
/// resolver as the JVM's lookups go.
pub fn resolves(host: &str) -> bool {
    (host, 0)
        .to_socket_addrs()
        .is_ok_and(|mut a| a.next().is_some())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn membership() -> Membership {
        Membership::parse(
            "server.1=zk-0.h:2888:3888:participant;2181\n\
             server.2=zk-1.h:2888:3888:participant;2181\n\
             server.3=10.0.0.3:2888:3888:observer;2181\n",
        )
        .unwrap()
    }

    #[test]
    fn only_an_ensemble_that_has_not_formed_waits_for_every_servers_name() {
        assert_eq!(
            names_to_wait_for(&membership(), false),
            ["zk-0.h", "zk-1.h"]
        );
        assert!(names_to_wait_for(&membership(), true).is_empty());
    }

    #[test]
    fn waits_until_every_name_resolves_and_no_longer_than_the_limit() {
        // zk-1.h appears on the third round of lookups; zk-0.h at once.
        let rounds = Cell::new(0);
        let left = wait_for_names(
            vec!["zk-0.h".into(), "zk-1.h".into()],
            Duration::ZERO,
            Duration::from_secs(10),
            |host| {
                if host == "zk-1.h" {
                    rounds.set(rounds.get() + 1);
                }
                host == "zk-0.h" || rounds.get() >= 3
            },
        );
        assert!(left.is_empty());
        assert_eq!(rounds.get(), 3);

        let started = Instant::now();
        let left = wait_for_names(
            vec!["zk-0.h".into(), "never.h".into()],
            Duration::from_millis(100),
            Duration::from_millis(300),
            |host| host == "zk-0.h",
        );
        assert_eq!(left, ["never.h"]);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn an_address_resolves_as_itself() {
        assert!(resolves("127.0.0.1"));
    }
}
