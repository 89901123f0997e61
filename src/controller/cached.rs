//! A child of an ensemble as the informer cache keeps it: its metadata, the rest of it as the
//! compact JSON it serializes to, and the few facts the operator reads of it every round.
//!
//! The rest of a child is read only to compare it with what the operator would apply (every
//! few minutes, or when something changed), so it need not be kept as k8s-openapi structs,
//! which keep every optional field inline whether set or not: a StatefulSet takes about 23 KB
//! of heap that way (a `Volume` alone is 3.2 KB), against the few KB of its JSON (`cargo bench
//! --bench scale`, heaptrack, 150 ensembles). With a thousand ensembles that difference is tens
//! of megabytes. The JSON is what the typed object serializes to, and [`Cached::object`] gives
//! the typed object back, so the comparison sees exactly what it saw when the whole object was
//! cached.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, PodTemplateSpec, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::names;

/// A kind of child the operator applies, and what it reads of one every round.
pub trait Child:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// What is read of this kind every round, kept beside the JSON so as not to parse it.
    type Facts: Clone + Debug + Send + Sync + 'static;
    fn facts(&self) -> Self::Facts;
}

impl Child for StatefulSet {
    /// Its replicas, generation and status: how many servers it runs, and how far the
    /// StatefulSet controller has got (what a roll and the conditions read); the names of
    /// its claim templates, which name each pod's claims; and the client CA its pod template
    /// holds (what the servers run with even while no pod exists,
    /// [`super::client_ca`]).
    type Facts = Arc<StatefulSet>;
    fn facts(&self) -> Arc<StatefulSet> {
        let spec = self.spec.as_ref();
        let claim_template = |claim: &PersistentVolumeClaim| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: claim.metadata.name.clone(),
                ..ObjectMeta::default()
            },
            ..PersistentVolumeClaim::default()
        };
        let template_client_ca = spec
            .and_then(|spec| spec.template.metadata.as_ref()?.annotations.as_ref())
            .and_then(|annotations| annotations.get(names::CLIENT_X509_CA_ANNOTATION));
        Arc::new(StatefulSet {
            metadata: ObjectMeta {
                generation: self.metadata.generation,
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: spec.and_then(|spec| spec.replicas),
                volume_claim_templates: spec
                    .and_then(|spec| spec.volume_claim_templates.as_ref())
                    .map(|claims| claims.iter().map(claim_template).collect()),
                template: PodTemplateSpec {
                    metadata: template_client_ca.map(|hash| ObjectMeta {
                        annotations: Some(
                            [(names::CLIENT_X509_CA_ANNOTATION.to_owned(), hash.clone())].into(),
                        ),
                        ..ObjectMeta::default()
                    }),
                    spec: None,
                },
                ..StatefulSetSpec::default()
            }),
            status: self.status.clone(),
        })
    }
}

impl Child for ConfigMap {
    /// Its entries that record the ensemble's state rather than configure its servers: whether
    /// it has formed, and the quorum TLS stage.
    type Facts = BTreeMap<String, String>;
    fn facts(&self) -> BTreeMap<String, String> {
        let data = self.data.iter().flatten();
        data.filter(|(key, _)| [names::FORMED_KEY, names::QUORUM_TLS_KEY].contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

macro_rules! nothing_read_every_round {
    ($($kind:ty),*) => {$(
        impl Child for $kind {
            type Facts = ();
            fn facts(&self) {}
        }
    )*};
}
nothing_read_every_round!(Service, PodDisruptionBudget, NetworkPolicy);

/// The claims of the StatefulSet's pod `pod`: one per claim template, named
/// `<template>-<pod>` ("Stable Storage" in the StatefulSet documentation).
pub fn claim_names(stateful_set: &StatefulSet, pod: &str) -> Vec<String> {
    let templates = stateful_set.spec.iter();
    let templates = templates.flat_map(|spec| spec.volume_claim_templates.iter().flatten());
    templates
        .filter_map(|claim| Some(format!("{}-{pod}", claim.metadata.name.as_deref()?)))
        .collect()
}

/// A cached child: see the module documentation.
#[derive(Clone, Debug)]
pub struct Cached<K: Child> {
    metadata: ObjectMeta,
    /// `K` without its metadata, as JSON.
    rest: Box<str>,
    pub facts: K::Facts,
}

impl<K: Child> Cached<K> {
    pub fn new(mut object: K) -> Self {
        let facts = object.facts();
        let metadata = std::mem::take(object.meta_mut());
        let rest = serde_json::to_string(&object)
            .expect("Kubernetes objects serialize to JSON")
            .into_boxed_str();
        Self {
            metadata,
            rest,
            facts,
        }
    }

    /// The typed object, as it was cached.
    pub fn object(&self) -> K {
        let mut object: K = serde_json::from_str(&self.rest)
            .expect("what a Kubernetes object serialized to reads back");
        *object.meta_mut() = self.metadata.clone();
        object
    }

    /// A watch event of the typed object, as one of the cached object.
    pub fn event(event: watcher::Event<K>) -> watcher::Event<Self> {
        use watcher::Event;
        match event {
            Event::Apply(object) => Event::Apply(Self::new(object)),
            Event::Delete(object) => Event::Delete(Self::new(object)),
            Event::Init => Event::Init,
            Event::InitApply(object) => Event::InitApply(Self::new(object)),
            Event::InitDone => Event::InitDone,
        }
    }
}

impl<K: Child> Resource for Cached<K> {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dynamic: &()) -> Cow<'_, str> {
        K::kind(dynamic)
    }
    fn group(dynamic: &()) -> Cow<'_, str> {
        K::group(dynamic)
    }
    fn version(dynamic: &()) -> Cow<'_, str> {
        K::version(dynamic)
    }
    fn plural(dynamic: &()) -> Cow<'_, str> {
        K::plural(dynamic)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    #[test]
    fn a_cached_child_gives_back_the_object_it_was_made_from() {
        let children = fixtures::children(serde_json::json!({"replicas": 5}));
        let mut stateful_set = children.stateful_set.clone();
        stateful_set.metadata.resource_version = Some("17".to_owned());
        let cached = Cached::new(stateful_set.clone());
        assert_eq!(cached.object(), stateful_set);
        let facts = &cached.facts;
        assert_eq!(facts.spec.as_ref().unwrap().replicas, Some(5));
        assert!(facts.spec.as_ref().unwrap().template.spec.is_none());
        assert_eq!(claim_names(facts, "zk-0"), ["data-zk-0"]);
        assert_eq!(cached.meta().resource_version.as_deref(), Some("17"));
        let rest: serde_json::Value = serde_json::from_str(&cached.rest).unwrap();
        assert_eq!(rest["metadata"], serde_json::json!({}), "kept apart");

        let mut config_map = children.config_map.clone();
        config_map
            .data
            .get_or_insert_default()
            .insert(names::FORMED_KEY.to_owned(), "true".to_owned());
        let cached = Cached::new(config_map.clone());
        assert_eq!(cached.facts[names::FORMED_KEY], "true");
        assert!(!cached.facts.contains_key(names::ZOO_CFG_KEY));
        assert_eq!(cached.object(), config_map);
    }
}
