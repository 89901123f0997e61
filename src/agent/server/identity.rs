//! Who this server is: its myid, and the ensemble its data belongs to.
//!
//! Pods get ordinals, ZooKeeper wants `dataDir/myid`: the pod with ordinal `n` is myid `n + 1`,
//! the same rule the operator uses to render the `server.<myid>` lines. The ensemble is its
//! uid, namespace and name, from the environment; the agent marks a data directory with them
//! on its first start ([`EnsembleMarker`]), so that a later start can tell whose data a volume
//! holds.

use super::Env;
use super::config::config_value;
use super::error::{StartError, invalid};
use crate::build::names;
use crate::quorum::Myid;

/// Name of the pod, `<ensemble>-<ordinal>` (downward API `metadata.name`). Required.
pub const ENV_POD_NAME: &str = "POD_NAME";
/// Namespace of the pod (downward API `metadata.namespace`). Required.
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";
/// `metadata.uid` of the ZooKeeperEnsemble: the identity the data directory is marked with.
/// Required.
pub const ENV_ENSEMBLE_UID: &str = "ZOOHERD_ENSEMBLE_UID";

/// Who this server is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub pod_name: String,
    pub namespace: String,
    /// The StatefulSet's (and so the ensemble's) name: the pod name without `-<ordinal>`.
    pub ensemble_name: String,
    pub ensemble_uid: String,
    pub myid: Myid,
}

impl Identity {
    /// `namespace/name` of the ensemble.
    pub fn ensemble(&self) -> String {
        format!("{}/{}", self.namespace, self.ensemble_name)
    }
}

fn required(env: Env, var: &'static str, hint: &'static str) -> Result<String, StartError> {
    env(var).ok_or(StartError::MissingEnv { var, hint })
}

/// Derives who this server is from the environment; `explicit_myid` (`--myid`) wins over the
/// pod ordinal.
pub fn identity(explicit_myid: Option<Myid>, env: Env) -> Result<Identity, StartError> {
    let pod_name = required(
        env,
        ENV_POD_NAME,
        "set it from the downward API (fieldRef metadata.name)",
    )?;
    let namespace = required(
        env,
        ENV_POD_NAMESPACE,
        "set it from the downward API (fieldRef metadata.namespace)",
    )?;
    let ensemble_uid = required(
        env,
        ENV_ENSEMBLE_UID,
        "set it to the ZooKeeperEnsemble's metadata.uid (the operator's StatefulSet does)",
    )?;
    let ordinal = names::ordinal_from_pod_name(&pod_name);
    let ensemble_name = match (ordinal, pod_name.rsplit_once('-')) {
        (Some(_), Some((name, _))) => name.to_owned(),
        _ => pod_name.clone(),
    };
    let myid = match (explicit_myid, ordinal) {
        (Some(myid), _) => myid,
        (None, Some(ordinal)) => Myid::from_ordinal(ordinal).ok_or_else(|| {
            invalid(
                ENV_POD_NAME,
                &pod_name,
                format!("has ordinal {ordinal}, but myids end at 255: run at most 255 replicas"),
            )
        })?,
        (None, None) => {
            return Err(invalid(
                ENV_POD_NAME,
                &pod_name,
                "does not end in -<ordinal> as a StatefulSet pod's name does: pass --myid",
            ));
        }
    };
    Ok(Identity {
        pod_name,
        namespace,
        ensemble_name,
        ensemble_uid,
        myid,
    })
}

/// The marker written into a data directory on first start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsembleMarker {
    /// The ensemble's metadata.uid: what decides whether the data is this ensemble's.
    pub uid: String,
    /// `namespace/name`, for people reading the file or a refusal.
    pub ensemble: String,
}

impl EnsembleMarker {
    pub fn of(identity: &Identity) -> Self {
        EnsembleMarker {
            uid: identity.ensemble_uid.clone(),
            ensemble: identity.ensemble(),
        }
    }

    pub fn render(&self) -> String {
        format!(
            "# Written by `zooherd server` on this data directory's first start: the data belongs to this ensemble.\n\
             uid={}\nensemble={}\n",
            self.uid, self.ensemble
        )
    }

    /// Reads a marker back; `None` if it has no uid.
    pub fn parse(text: &str) -> Option<Self> {
        let uid = config_value(text, "uid").filter(|uid| !uid.is_empty())?;
        Some(EnsembleMarker {
            uid: uid.to_owned(),
            ensemble: config_value(text, "ensemble").unwrap_or("?").to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::server::EXIT_INVALID_INPUT;
    use crate::agent::server::test_support::{UID, env_of, identity_of, pod_env};
    use crate::quorum::myid::id;

    #[test]
    fn myid_is_the_ordinal_plus_one() {
        let cases = [
            ("zk-0", "zk", 1),
            ("zk-2", "zk", 3),
            ("kafka-zk-10", "kafka-zk", 11),
            ("zk-254", "zk", 255),
        ];
        for (pod, ensemble, myid) in cases {
            let identity = identity_of(pod);
            assert_eq!(identity.myid, id(myid), "{pod}");
            assert_eq!(identity.ensemble_name, ensemble, "{pod}");
            assert_eq!(identity.ensemble(), format!("ns/{ensemble}"));
            assert_eq!(identity.ensemble_uid, UID);
        }
    }

    #[test]
    fn explicit_myid_wins_and_allows_names_without_ordinal() {
        let env = env_of(&pod_env("zk-0"));
        assert_eq!(identity(Some(id(7)), &env).unwrap().myid, id(7));
        let env = env_of(&pod_env("standalone"));
        let identity = identity(Some(id(1)), &env).unwrap();
        assert_eq!(
            (identity.myid, identity.ensemble_name.as_str()),
            (id(1), "standalone")
        );
    }

    #[test]
    fn bad_identity_names_the_variable() {
        let cases: [(Vec<(&str, &str)>, &str); 6] = [
            (vec![], "POD_NAME is not set"),
            (vec![(ENV_POD_NAME, "zk-0")], "POD_NAMESPACE is not set"),
            (
                vec![(ENV_POD_NAME, "zk-0"), (ENV_POD_NAMESPACE, "ns")],
                "ZOOHERD_ENSEMBLE_UID is not set",
            ),
            (pod_env("zk"), "POD_NAME=\"zk\" does not end in -<ordinal>"),
            (
                pod_env("zk-01"),
                "POD_NAME=\"zk-01\" does not end in -<ordinal>",
            ),
            (pod_env("zk-255"), "POD_NAME=\"zk-255\" has ordinal 255"),
        ];
        for (pairs, want) in cases {
            let error = identity(None, &env_of(&pairs)).unwrap_err();
            assert!(error.to_string().starts_with(want), "{error}");
            assert_eq!(error.exit_code(), EXIT_INVALID_INPUT);
        }
    }

    #[test]
    fn marker_round_trips() {
        let marker = EnsembleMarker::of(&identity_of("zk-0"));
        assert_eq!(marker.ensemble, "ns/zk");
        assert_eq!(EnsembleMarker::parse(&marker.render()), Some(marker));
        assert_eq!(EnsembleMarker::parse("uid=\n"), None);
    }
}
