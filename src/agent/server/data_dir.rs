//! A data directory that is really this server's, and a voter that never votes without its data.
//!
//! A volume left behind by another server or by another ensemble (a retained
//! PersistentVolumeClaim picked up again after a scale-down and up, or after an ensemble was
//! deleted and re-created) makes ZooKeeper crash-loop with "My id N not in the peer list", or
//! worse, join with data that is not this ensemble's. On first start the agent writes `myid`
//! with a marker naming the ensemble (its uid, namespace and name). A later start on a
//! directory that names another myid of this ensemble moves that data aside
//! (`stale-<time>-myid-<n>`, never deleted) and starts empty, to sync from the leader, but only
//! when the other voters serve as a quorum without this server ([`may_reinitialise`]): then
//! the data is on them. Otherwise, and for a directory of another ensemble (possibly the only
//! copy of its data), it refuses, with one log line saying what to do and an exit code of its
//! own ([`EXIT_FOREIGN_MYID`](super::EXIT_FOREIGN_MYID),
//! [`EXIT_FOREIGN_ENSEMBLE`](super::EXIT_FOREIGN_ENSEMBLE)), instead of starting the JVM.
//!
//! An empty volume never votes in a formed ensemble ([`may_start`]): a server whose volume
//! holds no ZooKeeper data (a claim deleted or replaced, a local volume lost with its node, a
//! stale directory moved aside) and whom the membership lists as a voter exits
//! ([`EXIT_EMPTY_VOTER`](super::EXIT_EMPTY_VOTER)) once the ConfigMap says the ensemble has
//! formed; the operator then removes it from the voters, and it starts again as a joining
//! server.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::Plan;
use super::error::{StartError, io_error};
use super::files::{read_if_present, write_atomically};
use super::identity::{EnsembleMarker, Identity};
use super::peers::peer_states;
use crate::api::MemberState;
use crate::quorum::Myid;
use crate::quorum::membership::{Membership, list};
use crate::quorum::rule::{is_serving_voter, quorum_size};

/// Prefix of the directories that data moved aside goes to (see [`may_reinitialise`]).
pub const STALE_PREFIX: &str = "stale-";
/// File in the data directory naming the ensemble the data belongs to.
pub const ENSEMBLE_MARKER_FILE: &str = "zooherd-ensemble";
/// ZooKeeper's own file in the data directory.
pub const MYID_FILE: &str = "myid";

/// What a data directory holds, compared with who this server is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataDirState {
    /// Not claimed by an ensemble yet: no marker, and no myid or this server's. Claim it by
    /// writing the marker and the myid.
    Fresh,
    /// This ensemble's marker and this server's myid.
    Matches,
    /// Another myid (`found` as the file says it).
    ForeignMyid { found: String },
    /// Another ensemble's marker (`found` describes it).
    ForeignEnsemble { found: String },
}

/// Compares the contents of `dataDir/myid` and of the marker (`None` when the file does not
/// exist) with `identity`. Another ensemble is checked first: it is the cause when both differ.
pub fn check_data_dir(
    myid_file: Option<&str>,
    marker_file: Option<&str>,
    identity: &Identity,
) -> DataDirState {
    if let Some(text) = marker_file {
        match EnsembleMarker::parse(text) {
            Some(marker) if marker.uid == identity.ensemble_uid => {}
            Some(marker) => {
                return DataDirState::ForeignEnsemble {
                    found: format!("{} (uid {})", marker.ensemble, marker.uid),
                };
            }
            None => {
                return DataDirState::ForeignEnsemble {
                    found: format!("unknown (the {ENSEMBLE_MARKER_FILE} file names no uid)"),
                };
            }
        }
    }
    if let Some(text) = myid_file {
        let found = text.trim();
        if found != identity.myid.to_string() {
            return DataDirState::ForeignMyid {
                found: found.to_owned(),
            };
        }
    }
    match (myid_file, marker_file) {
        (Some(_), Some(_)) => DataDirState::Matches,
        _ => DataDirState::Fresh,
    }
}

/// The refusal for a foreign data directory, `None` when the server may use it.
pub fn refusal(state: &DataDirState, data_dir: &Path, identity: &Identity) -> Option<StartError> {
    match state {
        DataDirState::Fresh | DataDirState::Matches => None,
        DataDirState::ForeignMyid { found } => Some(StartError::ForeignMyid {
            data_dir: data_dir.to_owned(),
            found: found.clone(),
            pod: identity.pod_name.clone(),
            myid: identity.myid,
            kept: "nothing showed that the ensemble serves without this server".to_owned(),
        }),
        DataDirState::ForeignEnsemble { found } => Some(StartError::ForeignEnsemble {
            data_dir: data_dir.to_owned(),
            found: found.clone(),
            ensemble: identity.ensemble(),
            uid: identity.ensemble_uid.clone(),
        }),
    }
}

/// Whether a data directory that holds another server's myid may be moved aside, so that this
/// server starts empty and takes the ensemble's data from the leader: only when the other
/// voters of `membership` serve under one leader and are a quorum of it without this server.
/// Then every committed transaction is on them (a quorum has each one), and the directory,
/// kept aside, is no one's only copy. `peers` is what the other voters answered. Ok says who
/// serves; Err says why not.
pub fn may_reinitialise(
    myid: Myid,
    membership: &Membership,
    peers: &BTreeMap<Myid, MemberState>,
) -> Result<String, String> {
    let voters = membership.voters();
    let serving: Vec<Myid> = voters
        .iter()
        .copied()
        .filter(|&m| m != myid)
        .filter(|m| peers.get(m).is_some_and(|s| is_serving_voter(*s)))
        .collect();
    let leaders = serving
        .iter()
        .filter(|m| peers.get(m) == Some(&MemberState::Leader))
        .count();
    let needed = quorum_size(voters.len());
    if leaders == 1 && serving.len() >= needed {
        Ok(format!(
            "voters {} serve, a quorum of {} without this server",
            list(serving),
            list(voters)
        ))
    } else {
        Err(format!(
            "the other voters do not serve as a quorum without it (serving: {}; needed {needed} of {} under one leader)",
            list(serving),
            list(voters)
        ))
    }
}

/// When the data directory holds another server's myid: moves it aside, with the
/// transaction-log directory `log_dir` when that is another, if the other voters serve as a
/// quorum without this server (asked now: [`may_reinitialise`]), and refuses otherwise. True
/// when it moved the data: the server then starts empty, and syncs from the leader.
pub(super) fn move_aside_if_foreign(
    plan: &Plan,
    log_dir: Option<&Path>,
) -> Result<bool, StartError> {
    let DataDirState::ForeignMyid { found } = inspect_data_dir(&plan.data_dir, &plan.identity)?
    else {
        return Ok(false);
    };
    let peers = peer_states(&plan.membership, plan.identity.myid, &plan.runtime_config);
    match may_reinitialise(plan.identity.myid, &plan.membership, &peers) {
        Err(kept) => Err(StartError::ForeignMyid {
            data_dir: plan.data_dir.clone(),
            found,
            pod: plan.identity.pod_name.clone(),
            myid: plan.identity.myid,
            kept,
        }),
        Ok(serving) => {
            let mut dirs = vec![plan.data_dir.as_path()];
            dirs.extend(log_dir.filter(|d| *d != plan.data_dir));
            let moved = move_aside(&dirs, &found)?;
            eprintln!(
                "zooherd server: data directory {} held myid {found}, not {} (pod {}); {serving}, so it was moved to {} and this server starts empty and syncs from the leader",
                plan.data_dir.display(),
                plan.identity.myid,
                plan.identity.pod_name,
                moved
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and "),
            );
            Ok(true)
        }
    }
}

/// Moves everything in `dirs` (the data directory, and the transaction-log directory when it
/// is another) into a new `stale-<unix time>-myid-<found>` directory inside each, never
/// deleting anything; returns the directories made.
fn move_aside(dirs: &[&Path], found: &str) -> Result<Vec<PathBuf>, StartError> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!(
        "{STALE_PREFIX}{seconds}-myid-{}",
        found.replace(['/', '.'], "_")
    );
    let mut moved = Vec::new();
    for dir in dirs {
        let stale = dir.join(&name);
        fs::create_dir_all(&stale).map_err(|e| io_error("create", &stale, &e))?;
        let entries = fs::read_dir(dir).map_err(|e| io_error("read", dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", dir, &e))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STALE_PREFIX)
            {
                continue;
            }
            let to = stale.join(entry.file_name());
            fs::rename(entry.path(), &to).map_err(|e| io_error("move", &entry.path(), &e))?;
        }
        moved.push(stale);
    }
    Ok(moved)
}

/// Whether `dir` holds ZooKeeper data: a snapshot or a transaction log in its `version-2`.
pub(super) fn has_zookeeper_data(dir: &Path) -> Result<bool, StartError> {
    let version_2 = dir.join("version-2");
    let entries = match fs::read_dir(&version_2) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("read", &version_2, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", &version_2, &e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snapshot.") || name.starts_with("log.") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the server's volume holds ZooKeeper data: in the data directory, or in the
/// transaction log directory when it has one of its own.
pub(super) fn volume_has_data(plan: &Plan, log_dir: Option<&Path>) -> Result<bool, StartError> {
    Ok(has_zookeeper_data(&plan.data_dir)? || log_dir.map_or(Ok(false), has_zookeeper_data)?)
}

/// Whether a server may start with `membership`: not as a voter (a participant in it) of an
/// ensemble that has `formed` while its volume holds no ZooKeeper data (`has_data`).
///
/// ZAB's safety rests on a voter never forgetting what it acknowledged. With a write W
/// acknowledged by voters 1 and 3 while 2 lags, an emptied 3 that came back as a voter could,
/// once 1 is lost, elect 2 with it, and W would be gone though it was acknowledged. Such a
/// server must first leave the voters (the operator removes it by reconfiguration once the
/// others hold a quorum without it), then start as a joining server, sync from the leader and
/// be added back. Before the ensemble first formed, no voter has acknowledged anything, and the
/// initial servers form it with empty volumes.
pub fn may_start(membership: &Membership, myid: Myid, formed: bool, has_data: bool) -> bool {
    !(formed && !has_data && membership.voters().contains(&myid))
}

/// Refuses a voter of a formed ensemble whose volume (the data directory, or the
/// transaction-log directory `log_dir`) holds no ZooKeeper data: see [`may_start`].
pub(super) fn refuse_empty_voter(
    plan: &Plan,
    formed: bool,
    log_dir: Option<&Path>,
) -> Result<(), StartError> {
    if may_start(
        &plan.membership,
        plan.identity.myid,
        formed,
        volume_has_data(plan, log_dir)?,
    ) {
        return Ok(());
    }
    Err(StartError::EmptyVoter {
        data_dir: plan.data_dir.clone(),
        myid: plan.identity.myid,
        pod: plan.identity.pod_name.clone(),
    })
}

/// Reads the myid and the marker and compares them with `identity`.
fn inspect_data_dir(data_dir: &Path, identity: &Identity) -> Result<DataDirState, StartError> {
    let myid = read_if_present(&data_dir.join(MYID_FILE))?;
    let marker = read_if_present(&data_dir.join(ENSEMBLE_MARKER_FILE))?;
    Ok(check_data_dir(myid.as_deref(), marker.as_deref(), identity))
}

/// Refuses a foreign directory, and claims a fresh one.
pub(super) fn claim_data_dir(
    data_dir: &Path,
    identity: &Identity,
) -> Result<DataDirState, StartError> {
    let state = inspect_data_dir(data_dir, identity)?;
    if let Some(error) = refusal(&state, data_dir, identity) {
        return Err(error);
    }
    if state == DataDirState::Fresh {
        // The marker first: a start interrupted between the two files then finds this
        // ensemble's marker without a myid, which is still Fresh.
        let marker = EnsembleMarker::of(identity).render();
        write_atomically(&data_dir.join(ENSEMBLE_MARKER_FILE), &marker)?;
        write_atomically(&data_dir.join(MYID_FILE), &format!("{}\n", identity.myid))?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::server::test_support::{UID, identity_of, members};
    use crate::agent::server::{
        EXIT_EMPTY_VOTER, EXIT_EXEC_FAILED, EXIT_FOREIGN_ENSEMBLE, EXIT_FOREIGN_MYID,
        EXIT_INVALID_INPUT, EXIT_IO,
    };
    use crate::quorum::myid::id;

    #[test]
    fn data_dir_states() {
        let me = identity_of("zk-1");
        let mine = EnsembleMarker::of(&me).render();
        let other = EnsembleMarker {
            uid: "another-uid".into(),
            ensemble: "prod/zk".into(),
        }
        .render();
        let foreign_ensemble = DataDirState::ForeignEnsemble {
            found: "prod/zk (uid another-uid)".into(),
        };
        let cases = [
            (None, None, DataDirState::Fresh),
            (Some("2\n"), None, DataDirState::Fresh),
            (None, Some(mine.as_str()), DataDirState::Fresh),
            (Some("2"), Some(mine.as_str()), DataDirState::Matches),
            (Some(" 2 \n"), Some(mine.as_str()), DataDirState::Matches),
            (
                Some("3\n"),
                Some(mine.as_str()),
                DataDirState::ForeignMyid { found: "3".into() },
            ),
            (
                Some("3\n"),
                None,
                DataDirState::ForeignMyid { found: "3".into() },
            ),
            (
                Some("junk"),
                None,
                DataDirState::ForeignMyid {
                    found: "junk".into(),
                },
            ),
            (None, Some(other.as_str()), foreign_ensemble.clone()),
            (Some("2"), Some(other.as_str()), foreign_ensemble.clone()),
            (Some("3"), Some(other.as_str()), foreign_ensemble),
            (
                Some("2"),
                Some("garbage"),
                DataDirState::ForeignEnsemble {
                    found: "unknown (the zooherd-ensemble file names no uid)".into(),
                },
            ),
        ];
        for (myid, marker, want) in cases {
            assert_eq!(
                check_data_dir(myid, marker, &me),
                want,
                "{myid:?} {marker:?}"
            );
        }
    }

    #[test]
    fn refusals_say_what_to_do_with_distinct_exit_codes() {
        let me = identity_of("zk-1");
        let dir = Path::new("/var/lib/zookeeper/data");
        assert_eq!(refusal(&DataDirState::Fresh, dir, &me), None);
        assert_eq!(refusal(&DataDirState::Matches, dir, &me), None);

        let foreign_myid =
            refusal(&DataDirState::ForeignMyid { found: "3".into() }, dir, &me).unwrap();
        assert_eq!(foreign_myid.exit_code(), EXIT_FOREIGN_MYID);
        assert_eq!(
            foreign_myid.to_string(),
            "refusing to start: data directory /var/lib/zookeeper/data holds myid 3, but pod zk-1 is myid 2, \
             and it is kept because nothing showed that the ensemble serves without this server; \
             the volume is another server's and may hold data the others lack: bring the other voters back (the directory is then moved aside, never deleted, and this server rejoins), or give the volume back to the server it belongs to"
        );

        let state = DataDirState::ForeignEnsemble {
            found: "prod/zk (uid x)".into(),
        };
        let foreign_ensemble = refusal(&state, dir, &me).unwrap();
        assert_eq!(foreign_ensemble.exit_code(), EXIT_FOREIGN_ENSEMBLE);
        let line = foreign_ensemble.to_string();
        assert!(
            line.starts_with(&format!(
                "refusing to start: data directory /var/lib/zookeeper/data belongs to ensemble prod/zk (uid x), not ns/zk (uid {UID})"
            )),
            "{line}"
        );
        assert!(line.contains("remove /var/lib/zookeeper/data/zooherd-ensemble"));
        assert!(!line.contains('\n'));
        let codes = [
            EXIT_INVALID_INPUT,
            EXIT_IO,
            EXIT_FOREIGN_MYID,
            EXIT_FOREIGN_ENSEMBLE,
            EXIT_EXEC_FAILED,
        ];
        for (i, code) in codes.iter().enumerate() {
            assert!(*code != 0 && !codes[i + 1..].contains(code), "{code}");
        }
    }

    #[test]
    fn another_servers_volume_is_reinitialised_only_while_a_quorum_serves_without_it() {
        use MemberState::{Follower as F, Leader as L, NotServing as N, Unreachable as U};
        let three = members(&[1, 2, 3], 0x100000004);
        let five = members(&[1, 2, 3, 4, 5], 0x100000004);
        // myid, membership, answers of the others by myid, allowed.
        type Case<'a> = (u8, &'a Membership, Vec<(u8, MemberState)>, bool);
        let cases: Vec<Case> = vec![
            (2, &three, vec![(1, F), (3, L)], true),
            (2, &three, vec![(1, N), (3, L)], false),
            (2, &three, vec![(1, U), (3, U)], false),
            (2, &three, vec![(1, F), (3, F)], false),
            (2, &three, vec![(1, L), (3, L)], false),
            (2, &five, vec![(1, F), (3, L), (4, F), (5, U)], true),
            (2, &five, vec![(1, F), (3, L), (4, U), (5, U)], false),
            // A joining server (not a voter yet): the voters' own quorum.
            (4, &three, vec![(1, F), (2, F), (3, L)], true),
        ];
        for (myid, membership, answers, allowed) in cases {
            let peers: BTreeMap<Myid, MemberState> =
                answers.iter().map(|&(m, state)| (id(m), state)).collect();
            let decision = may_reinitialise(id(myid), membership, &peers);
            assert_eq!(
                decision.is_ok(),
                allowed,
                "{myid} {answers:?}: {decision:?}"
            );
        }
        assert_eq!(
            may_reinitialise(id(2), &three, &BTreeMap::from([(id(1), F), (id(3), L)])),
            Ok("voters 1, 3 serve, a quorum of 1, 2, 3 without this server".to_owned())
        );
        assert_eq!(
            may_reinitialise(id(2), &three, &BTreeMap::from([(id(1), U), (id(3), L)])),
            Err("the other voters do not serve as a quorum without it (serving: 3; needed 2 of 1, 2, 3 under one leader)".to_owned())
        );
    }

    #[test]
    fn moving_aside_keeps_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir_all(data.join("version-2")).unwrap();
        fs::write(data.join("myid"), "3\n").unwrap();
        fs::write(data.join("version-2/snapshot.0"), "snap").unwrap();
        fs::create_dir_all(data.join("stale-1-myid-5")).unwrap();
        let moved = move_aside(&[&data], "3").unwrap();
        assert_eq!(moved.len(), 1);
        let stale = &moved[0];
        assert!(
            stale
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("stale-")
        );
        assert!(stale.to_string_lossy().ends_with("-myid-3"));
        assert_eq!(fs::read_to_string(stale.join("myid")).unwrap(), "3\n");
        assert_eq!(
            fs::read_to_string(stale.join("version-2/snapshot.0")).unwrap(),
            "snap"
        );
        assert!(
            data.join("stale-1-myid-5").is_dir(),
            "an earlier one stays where it was"
        );
        let left: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "only the stale directories: {left:?}");
    }

    #[test]
    fn claiming_a_data_dir_writes_myid_and_marker_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let me = identity_of("zk-1");
        assert_eq!(claim_data_dir(&dir, &me), Ok(DataDirState::Fresh));
        assert_eq!(fs::read_to_string(dir.join(MYID_FILE)).unwrap(), "2\n");
        let marker = fs::read_to_string(dir.join(ENSEMBLE_MARKER_FILE)).unwrap();
        assert_eq!(
            EnsembleMarker::parse(&marker),
            Some(EnsembleMarker::of(&me))
        );
        assert_eq!(claim_data_dir(&dir, &me), Ok(DataDirState::Matches));

        let other_server = identity_of("zk-2");
        let error = claim_data_dir(&dir, &other_server).unwrap_err();
        assert_eq!(error.exit_code(), EXIT_FOREIGN_MYID);
        let other_ensemble = Identity {
            ensemble_uid: "new-uid".into(),
            ..me
        };
        let error = claim_data_dir(&dir, &other_ensemble).unwrap_err();
        assert_eq!(error.exit_code(), EXIT_FOREIGN_ENSEMBLE);
        assert_eq!(
            fs::read_to_string(dir.join(MYID_FILE)).unwrap(),
            "2\n",
            "untouched"
        );
    }

    #[test]
    fn an_unwritable_data_dir_is_an_io_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, "").unwrap();
        let error = claim_data_dir(&file.join("data"), &identity_of("zk-0")).unwrap_err();
        assert_eq!(error.exit_code(), EXIT_IO);
        assert!(error.to_string().starts_with("cannot "), "{error}");
    }

    #[test]
    fn an_empty_volume_never_starts_as_a_voter_of_a_formed_ensemble() {
        let membership = Membership::parse(
            "server.1=a:2888:3888:participant;2181\nserver.2=b:2888:3888:participant;2181\n\
             server.3=c:2888:3888:observer;2181\nversion=0\n",
        )
        .unwrap();
        // (myid, formed, has data, may start)
        let cases = [
            (2, true, false, false),
            (2, true, true, true),
            // Not formed yet: the initial servers form it with empty volumes.
            (2, false, false, true),
            // A joining server (an observer here) starts empty and syncs.
            (3, true, false, true),
        ];
        for (myid, formed, has_data, want) in cases {
            assert_eq!(
                may_start(&membership, id(myid), formed, has_data),
                want,
                "myid {myid} formed {formed} data {has_data}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_zookeeper_data(dir.path()).unwrap());
        fs::create_dir_all(dir.path().join("version-2")).unwrap();
        fs::write(dir.path().join("version-2/acceptedEpoch"), "1").unwrap();
        assert!(
            !has_zookeeper_data(dir.path()).unwrap(),
            "epoch files are not data"
        );
        fs::write(dir.path().join("version-2/log.100000001"), "x").unwrap();
        assert!(has_zookeeper_data(dir.path()).unwrap());
        assert_eq!(
            StartError::EmptyVoter {
                data_dir: dir.path().to_owned(),
                myid: id(2),
                pod: "zk-1".into()
            }
            .exit_code(),
            EXIT_EMPTY_VOTER
        );
    }
}
