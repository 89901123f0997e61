//! Membership: the ensemble's committed configuration, and the one step that moves it towards
//! `spec.replicas`.
//!
//! With `reconfigEnabled=true` the voters are not what zoo.cfg once said but what the ensemble
//! last committed: ZooKeeper keeps it in the znode `/zookeeper/config` (server lines and a
//! `version=<hex>` line, the zxid of the reconfiguration that committed it) and writes it next
//! to each server's zoo.cfg as `zoo.cfg.dynamic.<version>`. [`Membership`] reads and writes
//! that format.
//!
//! [`next_step`] decides, from the committed membership, what the members answer and the
//! StatefulSet's size, the next single step of a scale; it keeps nothing between calls, so a
//! scale interrupted by an operator restart resumes from what is observed:
//!
//! - **Up**: grow the StatefulSet first, then add the new servers as voters one at a time,
//!   lowest myid first, each once it serves. A new server starts with the committed voters as
//!   participants and itself and the other joining servers as observers
//!   ([`crate::build::Topology::new`]), so that joining servers can never elect a leader among
//!   themselves; at its first contact with a voter it adopts the committed membership, in which
//!   it is absent, and syncs from the leader as a non-voting follower (ZooKeeper's
//!   reconfiguration guide: listing joiners as observers "will not actually make them
//!   observers"). `reconfig -add` with its participant line then makes it a voter.
//! - **Down**: remove voters one at a time, highest myid first (ZooKeeper hands the lead to
//!   another voter when the leader is removed), then shrink the StatefulSet once the committed
//!   membership no longer lists the servers it would stop.
//!
//! A change needs a quorum of the old membership and of the new one to acknowledge it. A step
//! whose new membership would have fewer serving voters than its quorum is refused: ZooKeeper
//! would block the change until the servers come back, and a scale that waits in the middle of
//! a reconfiguration with the ensemble on the edge is worse than one that has not started.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::Myid;
use super::rule::{is_serving_voter, quorum_size};
use crate::api::MemberState;

/// A committed (or proposed) membership: the server lines by myid, and the version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// `version=` of `/zookeeper/config`: the zxid that committed it (0 for a configuration no
    /// reconfiguration has changed yet).
    pub version: u64,
    /// The value of each `server.<myid>=` line:
    /// `host:quorum port:election port[:role][;[client address:]client port]`.
    pub servers: BTreeMap<Myid, String>,
}

/// Why a configuration text could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line:?} is not server.<myid>=<address> or version=<hex>")]
    UnknownLine { line: String },
    #[error("server.{0} is not a myid from 1 to 255")]
    BadMyid(String),
    #[error("server.{0} appears twice")]
    Duplicate(Myid),
    #[error("version={0:?} is not a hexadecimal number")]
    BadVersion(String),
    #[error("the configuration lists no server")]
    Empty,
}

impl Membership {
    /// Reads the text of `/zookeeper/config` or of a dynamic configuration file: `server.N=`
    /// lines, an optional `version=<hex>` line (a file carries its version in its name
    /// instead), blank lines and `#` comments.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut servers = BTreeMap::new();
        let mut version = 0;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let unknown = || ParseError::UnknownLine {
                line: line.to_owned(),
            };
            let (key, value) = line.split_once('=').ok_or_else(unknown)?;
            let (key, value) = (key.trim(), value.trim());
            if key == "version" {
                version = u64::from_str_radix(value, 16)
                    .map_err(|_| ParseError::BadVersion(value.to_owned()))?;
            } else if let Some(id) = key.strip_prefix("server.") {
                let myid: Myid = id.parse().map_err(|_| ParseError::BadMyid(id.to_owned()))?;
                if servers.insert(myid, value.to_owned()).is_some() {
                    return Err(ParseError::Duplicate(myid));
                }
            } else {
                return Err(unknown());
            }
        }
        if servers.is_empty() {
            return Err(ParseError::Empty);
        }
        Ok(Membership { version, servers })
    }

    /// The voters: servers whose role is `participant` (the default) rather than `observer`.
    pub fn voters(&self) -> BTreeSet<Myid> {
        self.servers
            .iter()
            .filter(|(_, line)| !is_observer(line))
            .map(|(&myid, _)| myid)
            .collect()
    }

    /// Each server's host: the first `:` field of its line (a name or an address).
    pub fn hosts(&self) -> impl Iterator<Item = (Myid, &str)> {
        self.servers
            .iter()
            .filter_map(|(&myid, line)| Some((myid, line.split(':').next()?)))
    }

    /// The version as ZooKeeper writes it (hex, no prefix), as in `zoo.cfg.dynamic.<version>`.
    pub fn version_hex(&self) -> String {
        format!("{:x}", self.version)
    }

    /// The server lines, in myid order: the contents of a dynamic configuration file.
    pub fn server_lines(&self) -> String {
        self.servers
            .iter()
            .map(|(myid, line)| format!("server.{myid}={line}\n"))
            .collect()
    }

    /// The text of `/zookeeper/config`: the server lines and `version=<hex>`.
    pub fn render(&self) -> String {
        format!("{}version={}\n", self.server_lines(), self.version_hex())
    }
}

/// Whether a server line's role (the fourth `:` field, before the `;` client part) is observer.
fn is_observer(line: &str) -> bool {
    let peer = line.split(';').next().unwrap_or(line);
    peer.rsplit(':').next().map(str::trim) == Some("observer")
}

/// `1, 2, 3` (or `none`).
pub fn list(myids: impl IntoIterator<Item = Myid>) -> String {
    let items: Vec<String> = myids.into_iter().map(|m| m.to_string()).collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// What [`next_step`] needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleFacts<'a> {
    /// `spec.replicas`: servers myid 1..=desired should be voters, and no other.
    pub desired: u8,
    /// The committed membership.
    pub committed: &'a Membership,
    /// The StatefulSet's `spec.replicas`: servers myid 1..=this have pods.
    pub stateful_set_replicas: u8,
    /// What each server with a pod answers, by myid (voters and joining servers alike). A
    /// server with no entry counts as missing.
    pub states: &'a BTreeMap<Myid, MemberState>,
}

/// The next step towards `desired` voters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleStep {
    /// The voters are servers 1..=desired and the StatefulSet runs exactly them.
    Steady,
    /// Set the StatefulSet's replicas to this many, starting the joining servers.
    Grow(u8),
    /// Add this server as a voter.
    AddVoter(Myid),
    /// Remove this voter.
    RemoveVoter(Myid),
    /// Set the StatefulSet's replicas to this many: the servers beyond it are no longer voters.
    Shrink(u8),
    /// Not now; why (a server starting, syncing).
    Wait(String),
    /// The step would leave the new membership without a quorum; why.
    Refuse(String),
}

impl fmt::Display for ScaleStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Steady => f.write_str("steady"),
            Self::Grow(n) => write!(f, "starting servers up to {n} (as non-voting followers)"),
            Self::AddVoter(m) => write!(f, "adding server {m} as a voter"),
            Self::RemoveVoter(m) => write!(f, "removing voter {m}"),
            Self::Shrink(n) => write!(f, "stopping the servers beyond {n}"),
            Self::Wait(why) => write!(f, "waiting: {why}"),
            Self::Refuse(why) => write!(f, "refused: {why}"),
        }
    }
}

/// Why changing the committed `voters` to `new` would cost the quorum, if it would: a change
/// needs a quorum of the old voters serving (to commit it) and of the new ones (to go on).
/// `states`: what each server answered this round, by myid (absent: missing).
pub fn quorum_refusal(
    change: &str,
    voters: &BTreeSet<Myid>,
    new: &BTreeSet<Myid>,
    states: &BTreeMap<Myid, MemberState>,
) -> Option<String> {
    let serving = |members: &BTreeSet<Myid>| -> BTreeSet<Myid> {
        members
            .iter()
            .copied()
            .filter(|m| states.get(m).is_some_and(|&s| is_serving_voter(s)))
            .collect()
    };
    let old_serving = serving(voters);
    if old_serving.len() < quorum_size(voters.len()) {
        return Some(format!(
            "{change}: the committed voters ({}) have no quorum serving (serving: {})",
            list(voters.iter().copied()),
            list(old_serving)
        ));
    }
    let new_serving = serving(new);
    let needed = quorum_size(new.len());
    (new_serving.len() < needed).then(|| {
        format!(
            "{change} would leave voters {} with {} serving ({}), fewer than their quorum of {needed}",
            list(new.iter().copied()),
            new_serving.len(),
            list(new_serving.iter().copied()),
        )
    })
}

/// Decides the next step of a scale (see the module documentation).
pub fn next_step(facts: &ScaleFacts) -> ScaleStep {
    let voters = facts.committed.voters();
    let desired: BTreeSet<Myid> = Myid::up_to(u32::from(facts.desired)).collect();
    let state = |myid: Myid| {
        facts
            .states
            .get(&myid)
            .copied()
            .unwrap_or(MemberState::Missing)
    };
    let check =
        |change: &str, new: &BTreeSet<Myid>| quorum_refusal(change, &voters, new, facts.states);

    if let Some(&leaving) = voters.difference(&desired).last() {
        let mut new = voters.clone();
        new.remove(&leaving);
        if new.is_empty() {
            return ScaleStep::Refuse(format!("removing voter {leaving} would leave no voter"));
        }
        if let Some(why) = check(&format!("removing voter {leaving}"), &new) {
            return ScaleStep::Refuse(why);
        }
        // A scale-down while a voter that stays is down would end with fewer failures
        // tolerated than `desired` voters give (5 -> 3 with one of the three down leaves
        // none): wait for it instead of shrinking the margin further.
        if let Some(&down) = voters
            .intersection(&desired)
            .find(|&&m| !is_serving_voter(state(m)))
        {
            return ScaleStep::Wait(format!(
                "voter {down} stays and is {}; removing voters now would leave fewer serving than spec.replicas asks for",
                state(down)
            ));
        }
        return ScaleStep::RemoveVoter(leaving);
    }
    if let Some(&joining) = desired.difference(&voters).next() {
        if facts.stateful_set_replicas < facts.desired {
            return ScaleStep::Grow(facts.desired);
        }
        return match state(joining) {
            // A joining server that has synced with the leader serves as a non-voting
            // follower (not as the observer its bootstrap membership names: it took the
            // committed membership, which does not list it); as a voter it counts towards the
            // new quorum. An observer would not: ZooKeeper refuses a change whose new quorum
            // has too few synced followers (NewConfigNoQuorum).
            MemberState::Follower => {
                let mut new = voters.clone();
                new.insert(joining);
                match check(&format!("adding server {joining}"), &new) {
                    Some(why) => ScaleStep::Refuse(why),
                    None => ScaleStep::AddVoter(joining),
                }
            }
            other => ScaleStep::Wait(format!(
                "server {joining} is {other}; it becomes a voter once it has synced with the leader and serves"
            )),
        };
    }
    if facts.stateful_set_replicas > facts.desired {
        return ScaleStep::Shrink(facts.desired);
    }
    if facts.stateful_set_replicas < facts.desired {
        return ScaleStep::Grow(facts.desired);
    }
    ScaleStep::Steady
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::myid::{id, ids};
    use MemberState::{Follower as F, Leader as L, Missing as M, NotServing as N};

    fn line(myid: Myid) -> String {
        format!(
            "zk-{}.zk-headless.ns.svc.cluster.local:2888:3888:participant;2181",
            myid.ordinal()
        )
    }

    fn membership(voters: &[u8]) -> Membership {
        Membership {
            version: 0x1_0000_0003,
            servers: voters.iter().map(|&m| (id(m), line(id(m)))).collect(),
        }
    }

    #[test]
    fn parses_what_zookeeper_reports() {
        let text = "server.1=127.77.0.1:2888:3888:participant;127.77.0.1:2181\n\
                    server.2=127.77.0.2:2888:3888:participant;127.77.0.2:2181\n\
                    server.10=h:2888:3888:observer;2181\n\
                    version=100000003\n";
        let parsed = Membership::parse(text).unwrap();
        assert_eq!(parsed.version, 0x1_0000_0003);
        assert_eq!(parsed.version_hex(), "100000003");
        assert_eq!(
            parsed.servers.keys().copied().collect::<Vec<_>>(),
            [id(1), id(2), id(10)]
        );
        assert_eq!(parsed.voters(), ids(&[1, 2]));
        assert_eq!(parsed.render(), text);
        assert!(parsed.server_lines().ends_with("observer;2181\n"));
        let file = "# a comment\n\nserver.3=h:1:2\n";
        assert_eq!(Membership::parse(file).unwrap().version, 0);
        assert_eq!(Membership::parse(file).unwrap().voters(), ids(&[3]));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let cases = [
            ("", ParseError::Empty),
            ("version=1\n", ParseError::Empty),
            ("server.0=h:1:2\n", ParseError::BadMyid("0".into())),
            ("server.256=h:1:2\n", ParseError::BadMyid("256".into())),
            ("server.1=a\nserver.1=b\n", ParseError::Duplicate(id(1))),
            (
                "server.1=a\nversion=xyz\n",
                ParseError::BadVersion("xyz".into()),
            ),
            (
                "tickTime=2000\n",
                ParseError::UnknownLine {
                    line: "tickTime=2000".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Membership::parse(text), Err(want), "{text:?}");
        }
    }

    /// desired, voters, StatefulSet replicas, states by myid from 1, and the step.
    type Case = (u8, &'static [u8], u8, &'static [MemberState], ScaleStep);

    #[test]
    fn steps() {
        let refuse = |s: &str| ScaleStep::Refuse(s.to_owned());
        let cases: Vec<Case> = vec![
            // Steady.
            (3, &[1, 2, 3], 3, &[L, F, F], ScaleStep::Steady),
            (3, &[1, 2, 3], 3, &[L, N, F], ScaleStep::Steady),
            // Up: grow first, then add one by one, lowest first, each once it serves.
            (5, &[1, 2, 3], 3, &[L, F, F], ScaleStep::Grow(5)),
            (5, &[1, 2, 3], 5, &[L, F, F, M, M], ScaleStep::Wait(
                "server 4 is missing; it becomes a voter once it has synced with the leader and serves".into(),
            )),
            (5, &[1, 2, 3], 5, &[L, F, F, N, F], ScaleStep::Wait(
                "server 4 is not-serving; it becomes a voter once it has synced with the leader and serves".into(),
            )),
            (5, &[1, 2, 3], 5, &[L, F, F, F, M], ScaleStep::AddVoter(id(4))),
            (5, &[1, 2, 3, 4], 5, &[L, F, F, F, F], ScaleStep::AddVoter(id(5))),
            (5, &[1, 2, 3, 4, 5], 5, &[L, F, F, F, F], ScaleStep::Steady),
            (3, &[1], 1, &[L], ScaleStep::Grow(3)),
            (3, &[1], 3, &[L, F, M], ScaleStep::AddVoter(id(2))),
            // An add needs a quorum of the old voters and of the new ones: with 3 down, 1, 2 and
            // the joining 4 are 3 of 4; with 2 and 3 down the old voters have no quorum.
            (4, &[1, 2, 3], 4, &[L, F, N, F], ScaleStep::AddVoter(id(4))),
            (4, &[1, 2, 3], 4, &[L, N, N, F], refuse(
                "adding server 4: the committed voters (1, 2, 3) have no quorum serving (serving: 1)",
            )),
            // Down: remove highest first (the leader too), then shrink.
            (3, &[1, 2, 3, 4, 5], 5, &[F, F, F, F, L], ScaleStep::RemoveVoter(id(5))),
            (3, &[1, 2, 3, 4], 5, &[F, F, F, L, F], ScaleStep::RemoveVoter(id(4))),
            (3, &[1, 2, 3], 5, &[L, F, F, F, F], ScaleStep::Shrink(3)),
            (1, &[1, 2, 3], 3, &[F, F, L], ScaleStep::RemoveVoter(id(3))),
            (1, &[1, 2], 3, &[L, F, F], ScaleStep::RemoveVoter(id(2))),
            (1, &[1], 3, &[L, F, F], ScaleStep::Shrink(1)),
            // Removing a voter that is down is allowed when the rest keep a quorum.
            (3, &[1, 2, 3, 4, 5], 5, &[L, F, F, F, M], ScaleStep::RemoveVoter(id(5))),
            // A voter that stays is down: the scale-down waits for it.
            (3, &[1, 2, 3, 4, 5], 5, &[L, N, F, F, F], ScaleStep::Wait(
                "voter 2 stays and is not-serving; removing voters now would leave fewer serving than spec.replicas asks for".into(),
            )),
            // Refused: the remaining voters would not have a quorum serving.
            (1, &[1, 2, 3], 3, &[L, N, F], refuse(
                "removing voter 3 would leave voters 1, 2 with 1 serving (1), fewer than their quorum of 2",
            )),
            (3, &[1, 2, 3, 4, 5], 5, &[L, M, M, F, F], refuse(
                "removing voter 5 would leave voters 1, 2, 3, 4 with 2 serving (1, 4), fewer than their quorum of 3",
            )),
            (1, &[1, 2, 3], 3, &[N, N, F], refuse(
                "removing voter 3: the committed voters (1, 2, 3) have no quorum serving (serving: 3)",
            )),
        ];
        for (desired, voters, replicas, states, want) in cases {
            let states: BTreeMap<Myid, MemberState> =
                Myid::up_to(255).zip(states.iter().copied()).collect();
            let committed = membership(voters);
            let facts = ScaleFacts {
                desired,
                committed: &committed,
                stateful_set_replicas: replicas,
                states: &states,
            };
            assert_eq!(
                next_step(&facts),
                want,
                "desired {desired}, voters {voters:?}, replicas {replicas}, {states:?}"
            );
        }
    }

    #[test]
    fn a_scale_walks_to_the_end_one_step_at_a_time() {
        // 3 -> 5 -> 1, applying each step as the ensemble would.
        let mut committed = membership(&[1, 2, 3]);
        let mut replicas = 3u8;
        let mut steps = Vec::new();
        for desired in [5u8, 1] {
            loop {
                let states: BTreeMap<Myid, MemberState> = Myid::up_to(u32::from(replicas))
                    .map(|m| (m, if m == id(1) { L } else { F }))
                    .collect();
                let step = next_step(&ScaleFacts {
                    desired,
                    committed: &committed,
                    stateful_set_replicas: replicas,
                    states: &states,
                });
                match &step {
                    ScaleStep::Steady => break,
                    ScaleStep::Grow(n) | ScaleStep::Shrink(n) => replicas = *n,
                    ScaleStep::AddVoter(m) => {
                        committed.servers.insert(*m, line(*m));
                    }
                    ScaleStep::RemoveVoter(m) => {
                        committed.servers.remove(m);
                    }
                    other => panic!("{other}"),
                }
                steps.push(step.to_string());
            }
        }
        assert_eq!(
            steps,
            [
                "starting servers up to 5 (as non-voting followers)",
                "adding server 4 as a voter",
                "adding server 5 as a voter",
                "removing voter 5",
                "removing voter 4",
                "removing voter 3",
                "removing voter 2",
                "stopping the servers beyond 1",
            ]
        );
    }
}
