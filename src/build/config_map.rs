//! The ConfigMap holding zoo.cfg and the bootstrap membership.
//!
//! Every server mounts it read-only and reads it once, at start. A change of zoo.cfg reaches a
//! server only when its pod is replaced, which the config hash on the pod template (see
//! [`super::stateful_set`]) makes the operator do. The membership (`members`) is not hashed:
//! it changes with every reconfiguration, which the running servers learn from ZooKeeper
//! itself; only a server starting without a newer membership on its volume reads it. Nor is
//! `formed`, which turns true once, when the ensemble first forms a quorum.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::ValidatedEnsemble;
use super::names;
use super::tls::QuorumTls;

/// `<name>-config`, with zoo.cfg under the key `zoo.cfg`, the membership under `members`, and
/// whether the ensemble has formed under `formed`, and the quorum TLS stage zoo.cfg configures
/// under `quorumTls` (what the operator reads back to take the next stage).
pub(super) fn build(
    parent: &ValidatedEnsemble,
    zoo_cfg: &str,
    members: &str,
    formed: bool,
    quorum_tls: QuorumTls,
) -> ConfigMap {
    ConfigMap {
        metadata: parent.metadata(names::config_map(parent.ensemble())),
        data: Some(BTreeMap::from([
            (names::ZOO_CFG_KEY.to_owned(), zoo_cfg.to_owned()),
            (names::MEMBERS_KEY.to_owned(), members.to_owned()),
            (names::FORMED_KEY.to_owned(), formed.to_string()),
            (names::QUORUM_TLS_KEY.to_owned(), quorum_tls.to_string()),
        ])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures;

    #[test]
    fn holds_zoo_cfg_and_the_members() {
        let config_map = fixtures::children(json!({})).config_map;
        assert_eq!(config_map.metadata.name.as_deref(), Some("zk-config"));
        let data = config_map.data.expect("data");
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["formed", "members", "quorumTls", "zoo.cfg"]
        );
        assert_eq!(data["formed"], "false", "a new ensemble has not formed");
        assert_eq!(
            data["quorumTls"], "on",
            "a new ensemble starts with quorum TLS"
        );
        assert!(data["members"].ends_with("version=0\n"));
        assert!(data["zoo.cfg"].contains("clientPort=2181\n"));
        assert_eq!(config_map.binary_data, None);
        assert_eq!(config_map.immutable, None);
    }

    #[test]
    fn follows_spec_config() {
        let cases = [
            (json!({}), "tickTime=2000\n"),
            (json!({"config": {"tickTime": "3000"}}), "tickTime=3000\n"),
            (json!({"replicas": 1}), "standaloneEnabled=false\n"),
        ];
        for (spec, line) in cases {
            let data = fixtures::children(spec.clone()).config_map.data.unwrap();
            assert!(data["zoo.cfg"].contains(line), "{spec}: {line}");
        }
    }
}
