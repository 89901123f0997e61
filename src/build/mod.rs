//! The build step: a `ZooKeeperEnsemble` in, the Kubernetes objects that run it out.
//!
//! Everything here is pure. The controller reads the ensemble, validates it once
//! ([`ValidatedEnsemble::new`]), calls [`children`], and applies the result with server-side
//! apply; this module never talks to the API server, so every decision about what the objects
//! look like is a unit-tested function of the spec. The output is deterministic (maps are
//! `BTreeMap`s, lists have a fixed order): building the same ensemble twice gives equal
//! objects, which lets the controller recognise a no-op reconcile.
//!
//! [`children`] takes only a validated ensemble (its metadata checked, and its spec accepted and
//! parsed by [`crate::api::validate::validate`]), so an ensemble the servers could not run on
//! never becomes objects, and building cannot fail. Each child is named after the ensemble
//! ([`names`]), carries the ensemble's labels, and is owned by the ensemble (a controller owner
//! reference), so deleting the ensemble deletes them and their changes wake the controller.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::ZooKeeperEnsemble;
use crate::api::validate::{self, Validated, ValidationError};
use crate::quorum::Myid;
use tls::QuorumTls;

mod config_map;
pub mod names;
pub mod network_policy;
mod pod_disruption_budget;
mod services;
mod stateful_set;
pub mod tls;
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
    /// The operator's own pods, which the ensembles' NetworkPolicies admit to the AdminServer
    /// and the client port.
    pub operator: OperatorPods,
}

impl Settings {
    /// Settings for a cluster with the default DNS domain, and the operator's pods as the
    /// chart labels them in namespace `default`.
    pub fn new(default_image: impl Into<String>) -> Self {
        Self {
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            default_image: default_image.into(),
            operator: OperatorPods {
                namespace: "default".to_owned(),
                labels: parse_labels(DEFAULT_OPERATOR_POD_LABELS)
                    .expect("the default operator pod labels parse"),
            },
        }
    }
}

/// The labels the chart gives the operator's pods whatever the release is called (the chart
/// passes its exact selector labels, release included, in `ZOOHERD_OPERATOR_POD_LABELS`).
pub const DEFAULT_OPERATOR_POD_LABELS: &str =
    "app.kubernetes.io/name=zooherd,app.kubernetes.io/component=operator";

/// Where the operator's pods run and the labels they carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorPods {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// Parses `key=value,key=value` (a flag's label list); at least one label.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let labels = text
        .split(',')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), value.trim().to_owned()))
            }
            _ => Err(format!(
                "{pair:?} is not key=value; give labels as key=value,key=value"
            )),
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(labels)
}

/// What the children depend on besides the spec: how many servers run, and with which roles
/// they start. Scaling moves both one step at a time (see [`crate::quorum::membership`]), so
/// they follow what the controller observes ([`Topology::new`]); a new ensemble starts with
/// [`Topology::initial`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The StatefulSet's replicas: servers myid 1..=servers have pods.
    pub servers: u32,
    /// The voters: the participants of the bootstrap membership (the ConfigMap's `members`).
    /// The PodDisruptionBudget allows their fault tolerance, not that of the voters
    /// `spec.replicas` asks for.
    pub voters: BTreeSet<Myid>,
    /// The servers joining: the observers of the bootstrap membership, until the operator adds
    /// them as voters one at a time, each once it has synced.
    pub joining: BTreeSet<Myid>,
    /// The ensemble has formed a quorum at least once (the ConfigMap's `formed`): from then on
    /// a server with an empty volume never starts as a voter (see `agent::server::may_start`).
    pub formed: bool,
    /// The quorum TLS stage the servers are to run, as [`crate::decide::quorum_tls`] decided
    /// it (None: a new ensemble's, the one `spec.tls.quorum` asks for).
    pub quorum_tls: Option<QuorumTls>,
    /// How many times the servers' certificate has been renewed (see
    /// [`names::CERTIFICATE_GENERATION_ANNOTATION`]); 0 for a new ensemble's.
    pub certificate_generation: u32,
    /// What was read from the user's client authentication Secrets.
    pub client_secrets: ClientSecrets,
}

/// Hashes of the contents of the user's Secrets the servers read at start, so that a change
/// rolls them: each when the spec names the Secret and it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSecrets {
    /// `spec.clientAuthentication.saslUsersSecret` (see [`names::CLIENT_SASL_ANNOTATION`]).
    pub sasl_users: Option<String>,
    /// `spec.clientAuthentication.x509ClientCaSecret` (see
    /// [`names::CLIENT_X509_CA_ANNOTATION`]).
    pub x509_ca: Option<String>,
}

impl Topology {
    /// A new ensemble: `replicas` servers, every one a voter.
    pub fn initial(replicas: u32) -> Self {
        Self::new(replicas, None, None)
    }

    /// The topology for `replicas` voters wanted, given the `committed` voters (None: not read
    /// yet) and the StatefulSet's replicas now (None: no StatefulSet yet).
    ///
    /// The bootstrap membership is written at version 0, below any version ZooKeeper commits:
    /// a server that starts with it takes the ensemble's committed membership as soon as it
    /// reaches a voter (ZooKeeper adopts a peer's membership only when it is newer). Until then
    /// it must not be able to vote, or joining servers that reach each other but no voter (the
    /// voters frozen, partitioned away) would be a majority of it and elect a leader over an
    /// empty tree: a second quorum. So only the voters are participants and every joining
    /// server is an observer, as ZooKeeper's reconfiguration guide (zookeeperReconfig.md,
    /// "Adding servers") asks: "Never specify more than one joining server in the same initial
    /// configuration as participants [...] It is OK to list multiple joiners as observers in an
    /// initial config." Listed as an observer, a joining server adopts the committed membership
    /// at its first contact with a voter and follows the leader as a non-voting follower.
    ///
    /// - Voters known: they are the voters; the servers are `replicas`, or more while voters
    ///   beyond it are still committed.
    /// - Not known and no StatefulSet: a new ensemble, whose `replicas` servers form it together.
    /// - Not known but a StatefulSet: the servers it runs may have formed the ensemble, so they
    ///   stay participants (as the first reconcile wrote them); any server beyond it joins. It
    ///   does not shrink before the voters are known: it may run voters.
    pub fn new(
        replicas: u32,
        committed: Option<&BTreeSet<Myid>>,
        stateful_set: Option<u32>,
    ) -> Self {
        let up_to = |n: u32| -> BTreeSet<Myid> { Myid::up_to(n).collect() };
        let (voters, servers) = match (committed, stateful_set) {
            (Some(voters), _) => {
                let highest = voters.last().map_or(0, |&m| u32::from(m));
                (voters.clone(), replicas.max(highest))
            }
            (None, None) => (up_to(replicas), replicas),
            (None, Some(running)) => (up_to(running), replicas.max(running)),
        };
        let joining = up_to(replicas).difference(&voters).copied().collect();
        Self {
            servers,
            voters,
            joining,
            formed: false,
            quorum_tls: None,
            certificate_generation: 0,
            client_secrets: ClientSecrets::default(),
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
    /// `<name>`: who may reach which server port; None when `spec.networkPolicy.enabled` is
    /// false (the controller then deletes the one it made).
    pub network_policy: Option<NetworkPolicy>,
}

/// Why an ensemble cannot be built: the error of [`ValidatedEnsemble::new`].
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
    ensemble: &ValidatedEnsemble,
    settings: &Settings,
    topology: Option<&Topology>,
) -> Children {
    let topology = match topology {
        Some(topology) => topology.clone(),
        None => Topology::initial(u32::from(ensemble.spec.replicas)),
    };
    let spec = &ensemble.ensemble().spec;
    let name = ensemble.ensemble().name_any();
    let quorum_tls = topology
        .quorum_tls
        .unwrap_or(QuorumTls::target(spec.tls.quorum));
    let zoo_cfg = zoo_cfg::render(
        &name,
        &ensemble.namespace,
        &spec.config,
        spec.storage.transaction_log.is_some(),
        quorum_tls,
        tls::ClientTls::of(spec),
        spec.backup.enabled,
    );
    let members = zoo_cfg::bootstrap_membership(
        &name,
        &ensemble.namespace,
        &settings.cluster_domain,
        &topology.voters,
        &topology.joining,
    );
    Children {
        config_map: config_map::build(
            ensemble,
            &zoo_cfg,
            &members.render(),
            topology.formed,
            quorum_tls,
        ),
        headless_service: services::headless(ensemble),
        client_service: services::client(ensemble),
        stateful_set: stateful_set::build(
            ensemble,
            settings,
            &zoo_cfg,
            topology.servers,
            quorum_tls,
            topology.certificate_generation,
            &topology.client_secrets,
        ),
        pod_disruption_budget: pod_disruption_budget::build(
            ensemble,
            u32::try_from(topology.voters.len()).unwrap_or(u32::MAX),
        ),
        network_policy: network_policy::build(ensemble, &settings.operator),
    }
}

/// The ports of a server, by the name the container and the Services give them.
fn server_ports(spec: &crate::api::ZooKeeperEnsembleSpec) -> Vec<(&'static str, i32)> {
    let mut ports = vec![("client", names::CLIENT_PORT)];
    if spec.tls.client {
        ports.push((CLIENT_TLS_PORT_NAME, names::SECURE_CLIENT_PORT));
    }
    ports.extend([
        ("quorum", names::QUORUM_PORT),
        ("election", names::ELECTION_PORT),
        ("admin", names::ADMIN_PORT),
        ("metrics", names::METRICS_PORT),
    ]);
    ports
}

/// Name of the TLS client port in the container and the Services.
const CLIENT_TLS_PORT_NAME: &str = "client-tls";

/// An ensemble the children can be built from: read from the API server (it has a namespace, a
/// name and a uid, which the children's metadata and owner reference need) and with a spec
/// [`validate`](validate::validate) accepted.
#[derive(Clone, Debug)]
pub struct ValidatedEnsemble<'a> {
    /// The ensemble and the numbers of its spec, parsed.
    pub spec: Validated<'a>,
    namespace: String,
    owner_reference: OwnerReference,
    labels: BTreeMap<String, String>,
}

impl<'a> ValidatedEnsemble<'a> {
    /// Checks the metadata the children need, then the spec; the error names the field and the
    /// fix.
    pub fn new(ensemble: &'a ZooKeeperEnsemble) -> Result<Self, Error> {
        let missing = |field| Error::MissingMetadata { field };
        let namespace = ensemble.namespace().ok_or(missing("namespace"))?;
        if ensemble.meta().name.is_none() {
            return Err(missing("name"));
        }
        // Present once name and uid are, which makes the owner reference a controller one.
        let owner_reference = ensemble.controller_owner_ref(&()).ok_or(missing("uid"))?;
        Ok(Self {
            spec: validate::validate(ensemble)?,
            namespace,
            owner_reference,
            labels: names::labels(ensemble),
        })
    }

    /// The ensemble as it was read.
    fn ensemble(&self) -> &'a ZooKeeperEnsemble {
        self.spec.ensemble
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
pub(crate) mod fixtures {
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

    /// The operator runs in its own namespace, not the ensemble's.
    pub fn settings() -> Settings {
        Settings {
            operator: OperatorPods {
                namespace: "zooherd-system".to_owned(),
                labels: parse_labels(
                    "app.kubernetes.io/name=zooherd,app.kubernetes.io/instance=ops",
                )
                .unwrap(),
            },
            ..Settings::new("ghcr.io/zooherd/server:0.1.0")
        }
    }

    /// The children of `ensemble`, which must be valid.
    pub fn build(
        ensemble: &ZooKeeperEnsemble,
        settings: &Settings,
        topology: Option<&Topology>,
    ) -> Children {
        let valid = ValidatedEnsemble::new(ensemble).expect("a valid ensemble");
        super::children(&valid, settings, topology)
    }

    pub fn children(spec: serde_json::Value) -> Children {
        build(&ensemble(spec), &settings(), None)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::fixtures::{UID, build, ensemble, settings};
    use super::*;
    use crate::quorum::myid::ids;
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
            ("zk", &children.network_policy.as_ref().unwrap().metadata),
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
        let children = build(&ensemble, &settings(), None);
        let want = zoo_cfg::render(
            "zk",
            "data",
            &ensemble.spec.config,
            false,
            tls::QuorumTls::On,
            tls::ClientTls::Off,
            false,
        );
        let data = children.config_map.data.expect("data");
        assert_eq!(data.len(), 4);
        assert_eq!(data[names::ZOO_CFG_KEY], want);
        assert_eq!(data[names::FORMED_KEY], "false");
        let members = zoo_cfg::bootstrap_membership(
            "zk",
            "data",
            "cluster.local",
            &ids(&[1, 2, 3]),
            &ids(&[]),
        );
        assert_eq!(data[names::MEMBERS_KEY], members.render());
    }

    #[test]
    fn topology_sets_the_servers_and_the_bootstrap_membership() {
        let topology = Topology::new(5, Some(&ids(&[1, 2, 3])), Some(3));
        let children = build(&ensemble(json!({})), &settings(), Some(&topology));
        let sts = children.stateful_set.spec.unwrap();
        assert_eq!(sts.replicas, Some(5));
        let members = &children.config_map.data.unwrap()[names::MEMBERS_KEY];
        assert!(
            members.contains(
                "server.3=zk-2.zk-headless.data.svc.cluster.local:2888:3888:participant;2181\n"
            ),
            "{members}"
        );
        assert!(members.ends_with("server.5=zk-4.zk-headless.data.svc.cluster.local:2888:3888:observer;2181\nversion=0\n"), "{members}");
        // The membership is not in the pod template: changing it rolls nothing.
        let initial = fixtures::children(json!({})).stateful_set.spec.unwrap();
        assert_eq!(sts.template, initial.template);
        // Evictions may take what the 3 voters tolerate, not what 5 would.
        let pdb = children.pod_disruption_budget.spec.unwrap();
        assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    }

    /// replicas, committed voters, StatefulSet replicas; servers, voters, joining servers.
    type TopologyCase = (
        u32,
        Option<&'static [u8]>,
        Option<u32>,
        (u32, &'static [u8], &'static [u8]),
    );

    #[test]
    fn only_the_voters_are_participants_of_the_bootstrap_membership() {
        let cases: [TopologyCase; 14] = [
            // A new ensemble: every server forms it.
            (3, None, None, (3, &[1, 2, 3], &[])),
            (1, None, None, (1, &[1], &[])),
            // Steady.
            (3, Some(&[1, 2, 3]), Some(3), (3, &[1, 2, 3], &[])),
            // Up: every new server at once, each an observer until it is added.
            (3, Some(&[1]), Some(1), (3, &[1], &[2, 3])),
            (5, Some(&[1, 2, 3]), Some(3), (5, &[1, 2, 3], &[4, 5])),
            (5, Some(&[1, 2, 3, 4]), Some(5), (5, &[1, 2, 3, 4], &[5])),
            (7, Some(&[1, 2, 3]), Some(7), (7, &[1, 2, 3], &[4, 5, 6, 7])),
            // Down: the servers stay until the committed membership drops them.
            (
                3,
                Some(&[1, 2, 3, 4, 5]),
                Some(5),
                (5, &[1, 2, 3, 4, 5], &[]),
            ),
            (1, Some(&[1, 2]), Some(2), (2, &[1, 2], &[])),
            // Joining servers not yet added when the spec goes back down: they stop.
            (3, Some(&[1, 2, 3]), Some(5), (3, &[1, 2, 3], &[])),
            // Voters not read yet, but servers run: those may have formed the ensemble; the
            // servers beyond them join, and none stops before the voters are known.
            (3, None, Some(3), (3, &[1, 2, 3], &[])),
            (3, None, Some(1), (3, &[1], &[2, 3])),
            (5, None, Some(3), (5, &[1, 2, 3], &[4, 5])),
            (3, None, Some(5), (5, &[1, 2, 3, 4, 5], &[])),
        ];
        for (replicas, committed, stateful_set, (servers, voters, joining)) in cases {
            let committed = committed.map(ids);
            let topology = Topology::new(replicas, committed.as_ref(), stateful_set);
            let case = format!("{replicas} {committed:?} {stateful_set:?}");
            assert_eq!(topology.servers, servers, "{case}");
            assert_eq!(topology.voters, ids(voters), "{case}");
            assert_eq!(topology.joining, ids(joining), "{case}");
            // Never more than the voters as participants: joining servers cannot vote.
            assert!(topology.voters.is_disjoint(&topology.joining), "{case}");
        }
        assert_eq!(Topology::initial(3), Topology::new(3, None, None));
    }

    #[test]
    fn cluster_domain_reaches_zoo_cfg() {
        let settings = Settings {
            cluster_domain: "corp.example".to_owned(),
            ..settings()
        };
        let children = build(&ensemble(json!({})), &settings, None);
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
            let error = ValidatedEnsemble::new(&ensemble).unwrap_err();
            assert!(
                matches!(error, Error::MissingMetadata { field: f } if f == field),
                "{field}: {error}"
            );
            assert!(error.to_string().contains(&format!("metadata.{field}")));
        }
    }

    #[test]
    fn an_invalid_spec_builds_nothing() {
        let error = ValidatedEnsemble::new(&ensemble(json!({"replicas": 0}))).unwrap_err();
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
        assert_eq!(settings.operator.namespace, "default");
        assert_eq!(
            settings.operator.labels,
            BTreeMap::from([
                (
                    "app.kubernetes.io/component".to_owned(),
                    "operator".to_owned()
                ),
                ("app.kubernetes.io/name".to_owned(), "zooherd".to_owned()),
            ])
        );
    }

    #[test]
    fn labels_parse_from_a_flag() {
        assert_eq!(
            parse_labels("a=1, b.io/c = x").unwrap(),
            BTreeMap::from([
                ("a".to_owned(), "1".to_owned()),
                ("b.io/c".to_owned(), "x".to_owned())
            ])
        );
        assert_eq!(parse_labels("a=").unwrap()["a"], "");
        for bad in ["", "a", "a=1,", "=1"] {
            let error = parse_labels(bad).unwrap_err();
            assert!(error.contains("is not key=value"), "{bad}: {error}");
        }
    }
}
