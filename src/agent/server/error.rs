//! Why the server was not started. Every failure is one [`StartError`] line that names the
//! variable, field or file and what to do, and maps to an exit code of its own (the `EXIT_*`
//! constants): the pod's last state tells what went wrong before anyone reads the log, and the
//! operator tells a voter that must leave the voters ([`EXIT_EMPTY_VOTER`]) from a crash.

use std::io;
use std::path::{Path, PathBuf};

use super::ENSEMBLE_MARKER_FILE;
use crate::quorum::Myid;

/// A setting is missing or wrong: an environment variable, a flag, or zoo.cfg (including one
/// that cannot be read, or that does not list this server). Fix the pod spec or the ensemble.
pub const EXIT_INVALID_INPUT: u8 = 78;
/// The data directory or the runtime copy of zoo.cfg could not be read or written.
pub const EXIT_IO: u8 = 74;
/// The data directory holds another server's myid: it is another member's volume.
pub const EXIT_FOREIGN_MYID: u8 = 80;
/// The data directory is marked as another ensemble's.
pub const EXIT_FOREIGN_ENSEMBLE: u8 = 81;
/// Exit code: the data volume holds no ZooKeeper data, but the ensemble has formed and lists
/// this server as a voter (it must leave the voters and rejoin; the operator does that).
pub const EXIT_EMPTY_VOTER: u8 = 82;
/// The backup to start from (spec.restore) could not be downloaded, or was not the snapshot
/// the backup stored; nothing was loaded.
pub const EXIT_RESTORE_FAILED: u8 = 83;
/// The JVM could not be started (no `java` at `$JAVA_HOME/bin` or on the PATH).
pub const EXIT_EXEC_FAILED: u8 = 127;

/// Why the server was not started. The Display form is the one line to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("{var} is not set: {hint}")]
    MissingEnv {
        var: &'static str,
        hint: &'static str,
    },

    #[error("{var}={value:?} {problem}")]
    InvalidEnv {
        var: &'static str,
        value: String,
        problem: String,
    },

    #[error(
        "cannot read {path}: {error}; mount the ensemble's ConfigMap there, or pass --config and --members"
    )]
    UnreadableConfig { path: PathBuf, error: String },

    #[error("cannot read the membership in {path}: {error}")]
    BadMembership { path: PathBuf, error: String },

    #[error(
        "{path} has no server.{myid} line, so myid {myid} (pod {pod}) is not a member (it lists {listed}){volume}; \
         the pod's ordinal is beyond the ensemble's members: scale the ensemble with spec.replicas, which starts new servers as members"
    )]
    NotAMember {
        path: PathBuf,
        myid: Myid,
        pod: String,
        listed: String,
        volume: String,
    },

    #[error("{path} sets no dataDir; render zoo.cfg with the operator, or pass --data-dir")]
    NoDataDir { path: PathBuf },

    #[error(
        "refusing to start: data directory {data_dir} holds myid {found}, but pod {pod} is myid {myid}, \
         and it is kept because {kept}; the volume is another server's and may hold data the others lack: \
         bring the other voters back (the directory is then moved aside, never deleted, and this server rejoins), \
         or give the volume back to the server it belongs to"
    )]
    ForeignMyid {
        data_dir: PathBuf,
        found: String,
        pod: String,
        myid: Myid,
        /// Why the directory was not moved aside and the server re-initialised.
        kept: String,
    },

    #[error(
        "refusing to start: data directory {data_dir} belongs to ensemble {found}, not {ensemble} (uid {uid}); \
         the volume was left by another ensemble: delete this pod's PersistentVolumeClaim, or remove {data_dir}/{marker} to adopt its data",
        marker = ENSEMBLE_MARKER_FILE
    )]
    ForeignEnsemble {
        data_dir: PathBuf,
        found: String,
        ensemble: String,
        uid: String,
    },

    #[error(
        "refusing to start: data directory {data_dir} holds no ZooKeeper data, yet the ensemble has formed and \
         its membership lists myid {myid} (pod {pod}) as a voter; a voter must never vote without what it \
         acknowledged (ZAB assumes it keeps it), so the operator removes it from the voters, after which it \
         starts as a joining server, syncs from the leader and is added back"
    )]
    EmptyVoter {
        data_dir: PathBuf,
        myid: Myid,
        pod: String,
    },

    #[error(
        "cannot restore {location} (spec.restore): {problem}; nothing was loaded and the server retries when it \
         restarts: check the object and the backup's credentials Secret, or delete this ensemble and create it \
         again naming another backup"
    )]
    Restore { location: String, problem: String },

    #[error(
        "the SASL users in {path} cannot be used: {problem}; fix the Secret spec.clientAuthentication.saslUsersSecret names"
    )]
    SaslUsers { path: PathBuf, problem: String },

    #[error(
        "client authentication needs the superuser's digest (ZOOHERD_SUPER_DIGEST) for the operator's own \
         SASL login, and it is not set: run the server in a pod the operator made"
    )]
    NoSuperDigest,

    #[error("cannot {action} {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: String,
    },

    #[error("cannot start {program}: {error}; set JAVA_HOME to a JRE, or put java on the PATH")]
    Exec { program: String, error: String },
}

impl StartError {
    /// The process exit code for this error (see the `EXIT_*` constants).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::MissingEnv { .. }
            | StartError::InvalidEnv { .. }
            | StartError::UnreadableConfig { .. }
            | StartError::NotAMember { .. }
            | StartError::BadMembership { .. }
            | StartError::NoDataDir { .. }
            | StartError::SaslUsers { .. }
            | StartError::NoSuperDigest => EXIT_INVALID_INPUT,
            StartError::ForeignMyid { .. } => EXIT_FOREIGN_MYID,
            StartError::ForeignEnsemble { .. } => EXIT_FOREIGN_ENSEMBLE,
            StartError::EmptyVoter { .. } => EXIT_EMPTY_VOTER,
            StartError::Restore { .. } => EXIT_RESTORE_FAILED,
            StartError::Io { .. } => EXIT_IO,
            StartError::Exec { .. } => EXIT_EXEC_FAILED,
        }
    }
}

pub(super) fn invalid(var: &'static str, value: &str, problem: impl Into<String>) -> StartError {
    StartError::InvalidEnv {
        var,
        value: value.to_owned(),
        problem: problem.into(),
    }
}

pub(super) fn io_error(action: &'static str, path: &Path, error: &io::Error) -> StartError {
    StartError::Io {
        action,
        path: path.to_owned(),
        error: error.to_string(),
    }
}
