//! The ConfigMap holding zoo.cfg.
//!
//! Every server mounts it read-only and reads it once, at start: a change reaches a server only
//! when its pod is replaced, which the config hash on the pod template (see
//! [`super::stateful_set`]) makes the operator do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::Parent;
use super::names;

/// `<name>-config`, with zoo.cfg under the key `zoo.cfg`.
pub(super) fn build(parent: &Parent, zoo_cfg: &str) -> ConfigMap {
    ConfigMap {
        metadata: parent.metadata(names::config_map(parent.ensemble)),
        data: Some(BTreeMap::from([(
            names::ZOO_CFG_KEY.to_owned(),
            zoo_cfg.to_owned(),
        )])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures;

    #[test]
    fn holds_zoo_cfg_only() {
        let config_map = fixtures::children(json!({})).config_map;
        assert_eq!(config_map.metadata.name.as_deref(), Some("zk-config"));
        let data = config_map.data.expect("data");
        assert_eq!(data.keys().collect::<Vec<_>>(), ["zoo.cfg"]);
        assert!(data["zoo.cfg"].contains("clientPort=2181\n"));
        assert_eq!(config_map.binary_data, None);
        assert_eq!(config_map.immutable, None);
    }

    #[test]
    fn follows_spec_config() {
        let cases = [
            (json!({}), "tickTime=2000\n"),
            (json!({"config": {"tickTime": "3000"}}), "tickTime=3000\n"),
            (json!({"replicas": 1}), "standaloneEnabled=true\n"),
        ];
        for (spec, line) in cases {
            let data = fixtures::children(spec.clone()).config_map.data.unwrap();
            assert!(data["zoo.cfg"].contains(line), "{spec}: {line}");
        }
    }
}
