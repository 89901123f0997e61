//! The build step: a `ZooKeeperEnsemble` in, the Kubernetes objects that run it out.
//!
//! Everything here is pure. The controller reads the ensemble, calls [`children`], and applies
//! the result with server-side apply; this module never talks to the API server, so every
//! decision about what the objects look like is a unit-tested function of the spec. The output
//! is deterministic (maps are `BTreeMap`s, lists have a fixed order): building the same
//! ensemble twice gives equal objects, which lets the controller recognise a no-op reconcile.
//!
//! [`children`] validates the spec first ([`crate::api::validate::validate`]), so an ensemble the
//! servers could not run on never becomes objects. Each child is named after the ensemble
//! ([`names`]), carries the ensemble's labels, and is owned by the ensemble (a controller owner
//! reference), so deleting the ensemble deletes them and their changes wake the controller.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::ZooKeeperEnsemble;
use crate::api::validate::{self, ValidationError};

mod config_map;
pub mod names;
mod pod_disruption_budget;
mod services;
mod stateful_set;
pub mod zoo_cfg;

/// The DNS domain of a cluster unless it was set up with another one.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// Operator-wide settings the build step needs besides the ensemble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The cluster's DNS domain, which ends every server's host name in zoo.cfg.
    pub cluster_domain: String,
    /// Server image of ensembles that set no `spec.image`.
    pub default_image: String,
}

impl Settings {
    /// Settings for a cluster with the default DNS domain.
    pub fn new(default_image: impl Into<String>) -> Self {
        Self {
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            default_image: default_image.into(),
        }
    }
}

/// What the children depend on besides the spec: how many servers run and which membership
/// they start with. Scaling moves both one step at a time (see
/// [`crate::quorum::membership`]), so they are the controller's to decide, from what it
/// observes; a new ensemble starts with [`Topology::initial`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The StatefulSet's replicas: servers myid 1..=servers have pods.
    pub servers: u32,
    /// The bootstrap membership (the ConfigMap's `members`): the committed voters, plus the
    /// servers joining. It is written at version 0, below any version ZooKeeper commits, so
    /// that a server starting with it takes the ensemble's committed membership as soon as it
    /// reaches the others (ZooKeeper adopts a peer's membership only when it is newer).
    pub members: BTreeSet<u8>,
    /// How many voters the ensemble has now: the PodDisruptionBudget allows their fault
    /// tolerance, not that of the voters `spec.replicas` asks for.
    pub voters: u32,
}

impl Topology {
    /// A new ensemble: `replicas` servers, every one a voter.
    pub fn initial(replicas: u32) -> Self {
        Self {
            servers: replicas,
            members: (1..=replicas)
                .filter_map(|m| u8::try_from(m).ok())
                .collect(),
            voters: replicas,
        }
    }
}

/// Every object the operator keeps for one ensemble.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// `<name>-config`: zoo.cfg and the bootstrap membership.
    pub config_map: ConfigMap,
    /// `<name>-headless`: the servers' stable DNS names, for the quorum.
    pub headless_service: Service,
    /// `<name>-client`: where clients connect.
    pub client_service: Service,
    /// `<name>`: the servers.
    pub stateful_set: StatefulSet,
    /// `<name>`: how many servers voluntary evictions may take down at once.
    pub pod_disruption_budget: PodDisruptionBudget,
}

/// Why the children of an ensemble cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is invalid; the message names the field and the fix.
    #[error(transparent)]
    Invalid(#[from] ValidationError),

    /// The ensemble was not read from the API server, which always sets these fields.
    #[error(
        "metadata.{field} of the ensemble is not set; build children only from an ensemble read from the API server, which sets it"
    )]
    MissingMetadata { field: &'static str },
}

/// Builds every child of `ensemble`, with `topology` (None: a new ensemble's,
/// [`Topology::initial`]).
pub fn children(
    ensemble: &ZooKeeperEnsemble,
    settings: &Settings,
    topology: Option<&Topology>,
) -> Result<Children, Error> {
    let parent = Parent::of(ensemble)?;
    validate::validate(ensemble)?;
    let topology = match topology {
        Some(topology) => topology.clone(),
        None => Topology::initial(validate::replicas(ensemble)?),
    };
    let zoo_cfg = zoo_cfg::render(
        &ensemble.name_any(),
        &parent.namespace,
        &ensemble.spec.config,
        ensemble.spec.storage.transaction_log.is_some(),
    );
    let members = zoo_cfg::membership(
        &ensemble.name_any(),
        &parent.namespace,
        &settings.cluster_domain,
        topology.members.iter().copied(),
        0,
    );
    Ok(Children {
        config_map: config_map::build(&parent, &zoo_cfg, &members.render()),
        headless_service: services::headless(&parent),
        client_service: services::client(&parent),
        stateful_set: stateful_set::build(&parent, settings, &zoo_cfg, topology.servers)?,
        pod_disruption_budget: pod_disruption_budget::build(&parent, topology.voters),
    })
}

/// The ports of a server, by the name the container and the Services give them.
const SERVER_PORTS: [(&str, i32); 5] = [
    ("client", names::CLIENT_PORT),
    ("quorum", names::QUORUM_PORT),
    ("election", names::ELECTION_PORT),
    ("admin", names::ADMIN_PORT),
    ("metrics", names::METRICS_PORT),
];

/// The ensemble as its children refer to it, checked once for the metadata they need.
struct Parent<'a> {
    ensemble: &'a ZooKeeperEnsemble,
    namespace: String,
    owner_reference: OwnerReference,
    labels: BTreeMap<String, String>,
}

impl<'a> Parent<'a> {
    fn of(ensemble: &'a ZooKeeperEnsemble) -> Result<Self, Error> {
        let missing = |field| Error::MissingMetadata { field };
        let namespace = ensemble.namespace().ok_or(missing("namespace"))?;
        if ensemble.meta().name.is_none() {
            return Err(missing("name"));
        }
        // Present once name and uid are, which makes the owner reference a controller one.
        let owner_reference = ensemble.controller_owner_ref(&()).ok_or(missing("uid"))?;
        Ok(Self {
            ensemble,
            namespace,
            owner_reference,
            labels: names::labels(ensemble),
        })
    }

    /// Metadata of the child called `name`.
    fn metadata(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels.clone()),
            owner_references: Some(vec![self.owner_reference.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Selects the ensemble's server pods.
    fn selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.labels.clone()),
            match_expressions: None,
        }
    }
}

#[cfg(test)]
mod fixtures {
    use super::*;

    pub const UID: &str = "6b1f4f5e-2a3c-4d8e-9f10-1234567890ab";

    /// An ensemble `zk` in namespace `data`, as read from the API server, with `spec` given
    /// as JSON (defaults filled in by serde, as the API server's defaulting would).
    pub fn ensemble(spec: serde_json::Value) -> ZooKeeperEnsemble {
        let mut ensemble = ZooKeeperEnsemble::new(
            "zk",
            serde_json::from_value(spec).expect("a valid spec in the test"),
        );
        ensemble.metadata.namespace = Some("data".to_owned());
        ensemble.metadata.uid = Some(UID.to_owned());
        ensemble
    }

    pub fn settings() -> Settings {
        Settings::new("ghcr.io/zooherd/server:0.1.0")
    }

    pub fn children(spec: serde_json::Value) -> Children {
        super::children(&ensemble(spec), &settings(), None).expect("a valid ensemble builds")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::fixtures::{UID, ensemble, settings};
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn every_child_is_named_labelled_and_owned() {
        let children = fixtures::children(json!({}));
        let metadata = [
            ("zk-config", &children.config_map.metadata),
            ("zk-headless", &children.headless_service.metadata),
            ("zk-client", &children.client_service.metadata),
            ("zk", &children.stateful_set.metadata),
            ("zk", &children.pod_disruption_budget.metadata),
        ];
        for (name, meta) in metadata {
            assert_eq!(meta.name.as_deref(), Some(name));
            assert_eq!(meta.namespace.as_deref(), Some("data"), "{name}");
            assert_eq!(
                meta.labels.as_ref(),
                Some(&names::labels(&ensemble(json!({})))),
                "{name}"
            );
            let owners = meta.owner_references.as_ref().expect("owned");
            assert_eq!(owners.len(), 1, "{name}");
            let owner = &owners[0];
            assert_eq!(owner.api_version, "zooherd.dev/v1beta1");
            assert_eq!(owner.kind, "ZooKeeperEnsemble");
            assert_eq!(owner.name, "zk");
            assert_eq!(owner.uid, UID);
            assert_eq!(owner.controller, Some(true));
        }
    }

    #[test]
    fn building_twice_gives_equal_children() {
        let spec = json!({
            "replicas": 5,
            "config": {"tickTime": "3000", "maxClientCnxns": "100"},
            "storage": {"transactionLog": {"size": "5Gi"}},
            "placement": {"podLabels": {"team": "data"}, "podAnnotations": {"a": "b"}},
        });
        assert_eq!(fixtures::children(spec.clone()), fixtures::children(spec));
    }

    #[test]
    fn config_map_holds_the_rendered_zoo_cfg() {
        let ensemble = ensemble(json!({"config": {"tickTime": "3000"}}));
        let children = children(&ensemble, &settings(), None).unwrap();
        let want = zoo_cfg::render("zk", "data", &ensemble.spec.config, false);
        let data = children.config_map.data.expect("data");
        assert_eq!(data.len(), 2);
        assert_eq!(data[names::ZOO_CFG_KEY], want);
        let members = zoo_cfg::membership("zk", "data", "cluster.local", [1, 2, 3], 0);
        assert_eq!(data[names::MEMBERS_KEY], members.render());
    }

    #[test]
    fn topology_sets_the_servers_and_the_bootstrap_membership() {
        let topology = Topology {
            servers: 5,
            members: BTreeSet::from([1, 2, 3, 4, 5]),
            voters: 3,
        };
        let children = children(&ensemble(json!({})), &settings(), Some(&topology)).unwrap();
        let sts = children.stateful_set.spec.unwrap();
        assert_eq!(sts.replicas, Some(5));
        let members = &children.config_map.data.unwrap()[names::MEMBERS_KEY];
        assert!(members.ends_with("server.5=zk-4.zk-headless.data.svc.cluster.local:2888:3888:participant;2181\nversion=0\n"), "{members}");
        // The membership is not in the pod template: changing it rolls nothing.
        let initial = fixtures::children(json!({})).stateful_set.spec.unwrap();
        assert_eq!(sts.template, initial.template);
        // Evictions may take what the 3 voters tolerate, not what 5 would.
        let pdb = children.pod_disruption_budget.spec.unwrap();
        assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    }

    #[test]
    fn cluster_domain_reaches_zoo_cfg() {
        let settings = Settings {
            cluster_domain: "corp.example".to_owned(),
            ..settings()
        };
        let children = children(&ensemble(json!({})), &settings, None).unwrap();
        let members = &children.config_map.data.unwrap()[names::MEMBERS_KEY];
        assert!(members.contains("server.1=zk-0.zk-headless.data.svc.corp.example:2888"));
    }

    #[test]
    fn missing_metadata_is_an_error_naming_the_field() {
        for field in ["namespace", "uid", "name"] {
            let mut ensemble = ensemble(json!({}));
            let metadata = &mut ensemble.metadata;
            match field {
                "namespace" => metadata.namespace = None,
                "uid" => metadata.uid = None,
                _ => metadata.name = None,
            }
            let error = children(&ensemble, &settings(), None).unwrap_err();
            assert!(
                matches!(error, Error::MissingMetadata { field: f } if f == field),
                "{field}: {error}"
            );
            assert!(error.to_string().contains(&format!("metadata.{field}")));
        }
    }

    #[test]
    fn an_invalid_spec_builds_nothing() {
        let error = children(&ensemble(json!({"replicas": 0})), &settings(), None).unwrap_err();
        assert!(matches!(
            error,
            Error::Invalid(ValidationError::ReplicasOutOfRange { replicas: 0 })
        ));
        assert!(error.to_string().starts_with("spec.replicas"));
    }

    #[test]
    fn settings_default_to_the_standard_cluster_domain() {
        let settings = Settings::new("image:1");
        assert_eq!(settings.cluster_domain, "cluster.local");
        assert_eq!(settings.default_image, "image:1");
    }
}
