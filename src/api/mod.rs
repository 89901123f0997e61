//! The `zooherd.dev/v1beta1` API.
//!
//! The types here are the contract with users: their doc comments become the descriptions that
//! `kubectl explain zke.spec` prints, and the validation rules attached to them run inside the
//! API server, so a bad manifest is refused at `kubectl apply` time with a message that names
//! the field and the fix, before it can reach a running ensemble.

pub mod annotations;
mod backup;
mod ensemble;
pub mod security;
mod status;
pub mod validate;

pub use backup::*;
pub use ensemble::*;
pub use status::*;

use kube::CustomResourceExt;

/// Every CustomResourceDefinition the operator serves, in the order `zooherd crd` prints them.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![ZooKeeperEnsemble::crd(), ZooKeeperBackup::crd()]
}

/// The CRDs as one multi-document YAML stream, exactly as committed under `crds/`.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| {
            let yaml = serde_yaml::to_string(crd).expect("a CRD always serializes to YAML");
            format!("---\n{yaml}")
        })
        .collect()
}
