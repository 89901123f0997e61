//! What the agent's unit tests share: ensemble `zk` in namespace `ns` as the operator renders
//! it, and the environment of its pods.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::{Args, ENV_ENSEMBLE_UID, ENV_POD_NAME, ENV_POD_NAMESPACE, Identity, identity};
use crate::build::names::{self, ZOO_CFG_PATH};
use crate::quorum::membership::Membership;
use crate::quorum::myid::ids;

pub(super) const UID: &str = "0f6c9a7e-1111-4222-8333-944445555666";

/// The operator's zoo.cfg for ensemble `zk` in namespace `ns`.
pub(super) fn operator_cfg() -> String {
    crate::build::zoo_cfg::render(
        "zk",
        "ns",
        &BTreeMap::new(),
        false,
        crate::build::tls::QuorumTls::On,
        crate::build::tls::ClientTls::Off,
        false,
    )
}

/// The operator's bootstrap membership of voters `myids`, at `version` (as ZooKeeper
/// writes a committed one).
pub(super) fn members(myids: &[u8], version: u64) -> Membership {
    let voters = ids(myids);
    let bootstrap = crate::build::zoo_cfg::bootstrap_membership(
        "zk",
        "ns",
        "cluster.local",
        &voters,
        &BTreeSet::new(),
    );
    Membership {
        version,
        ..bootstrap
    }
}

pub(super) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    move |var: &str| map.get(var).cloned()
}

pub(super) fn pod_env(pod: &str) -> Vec<(&str, &str)> {
    vec![
        (ENV_POD_NAME, pod),
        (ENV_POD_NAMESPACE, "ns"),
        (ENV_ENSEMBLE_UID, UID),
    ]
}

pub(super) fn args() -> Args {
    Args {
        config: PathBuf::from(ZOO_CFG_PATH),
        members: PathBuf::from(names::MEMBERS_PATH),
        formed: PathBuf::from(names::FORMED_PATH),
        runtime_config: None,
        myid: None,
        data_dir: None,
        sasl_users: None,
        enforce_auth: false,
        x509_clients: false,
    }
}

pub(super) fn identity_of(pod: &str) -> Identity {
    identity(None, &env_of(&pod_env(pod))).unwrap()
}
