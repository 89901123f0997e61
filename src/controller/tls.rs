//! TLS in the controller: the facts [`crate::decide::quorum_tls`] decides the stage
//! from, and the Secret holding the ensemble's CA and its servers' certificate.
//!
//! The Secret `<name>-zooherd-tls` is created once, when the servers first need it, and
//! never rewritten: the servers trust exactly the CA it holds, so a new CA would cut every
//! server that starts with it off from the ones still running with the old one. For the same
//! reason a Secret that goes missing while the servers use it is reported, not created again,
//! unless no server can hold the old CA yet (a new ensemble, or one still plaintext). The
//! Secret is owned by the ensemble, so it goes with it.
//!
//! What the operator does rewrite is the servers' certificate, once it is due for renewal
//! ([`crate::tls::renewal_due`]): a new one from the same CA, written with the Secret's
//! resource version (another writer in between makes the write fail, and the next round
//! decides again), and a new generation that rolls the servers onto it. The roll is needed:
//! ZooKeeper 3.9 reloads quorum certificates only on a file event naming the key store itself
//! (`X509Util`'s file watcher, `sslQuorumReloadCertFiles`), which a Secret volume's update (a
//! swapped `..data` link) never raises, and its AdminServer reads its key store once, at start.
//! Servers holding the old certificate and the new one are peers: both chain to the same CA.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::{Context, Error, observe, scale, secrets};
use crate::api::{QuorumTlsStatus, ZooKeeperEnsemble};
use crate::build::names;
use crate::build::tls::{self, QuorumTls};
use crate::decide::quorum_tls::QuorumTlsFacts;
use crate::decide::restart::pod_is_ready;
use crate::quorum::admin::AdminClient;
use crate::quorum::probe::Prober;
use crate::tls::QuorumCertificates;

/// What the operator took from an ensemble's quorum TLS Secret.
#[derive(Clone, Debug)]
pub struct QuorumCredentials {
    /// When the servers' certificate expires.
    pub not_after: Timestamp,
    /// When the CA expires (None if its certificate cannot be read, which renewal reports).
    pub ca_not_after: Option<Timestamp>,
    /// How many times the servers' certificate has been renewed.
    pub generation: u32,
    /// The operator's client of the ensemble's AdminServers (which take only clients with a
    /// certificate of the ensemble's CA), with a certificate it issued itself from the CA.
    pub admin: AdminClient,
}

/// The prober for `ensemble`'s voters: with the operator's client of its AdminServers, when
/// the ensemble's TLS Secret has been read.
pub fn prober(ensemble: &ZooKeeperEnsemble, ctx: &Context) -> Prober {
    let uid = ensemble.uid().unwrap_or_default();
    let admin = ctx.quorum_certificates.last(&uid).map(|read| read.admin);
    ctx.prober.with_tls(admin)
}

/// The operator's client of the AdminServers of the ensemble whose quorum TLS Secret is
/// `secret`: a client certificate issued now from the CA the Secret holds; each request
/// bounded by `timeout`. What is wrong with the Secret, when it cannot be.
fn admin_client(
    ensemble: &ZooKeeperEnsemble,
    secret: &Secret,
    timeout: std::time::Duration,
) -> Result<AdminClient, String> {
    AdminClient::with_tls(timeout, &admin_tls(ensemble, secret)?)
        .map_err(|e| format!("cannot be used for the operator's AdminServer client: {e}"))
}

/// What the operator shows the AdminServers of the ensemble whose quorum TLS Secret is
/// `secret`: a client certificate issued now from the CA the Secret holds. What is wrong with
/// the Secret, when it cannot be.
pub(crate) fn admin_tls(
    ensemble: &ZooKeeperEnsemble,
    secret: &Secret,
) -> Result<crate::http::AdminTls, String> {
    crate::tls::admin_client(
        &ensemble_name(ensemble),
        &pem_text(secret, tls::CA_KEY)?,
        &pem_text(secret, tls::CA_PRIVATE_KEY)?,
        "zooherd operator",
        Timestamp::now(),
    )
    .map_err(|e| e.to_string())
}

/// The PEM text under `key` in the ensemble's TLS Secret, or what is wrong with it.
fn pem_text(secret: &Secret, key: &str) -> Result<String, String> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .and_then(|value| String::from_utf8(value.0.clone()).ok())
        .ok_or_else(|| format!("has no key {key:?} (or it is not PEM text)"))
}

/// `<namespace>/<name>`, as the certificates' subjects name the ensemble.
fn ensemble_name(ensemble: &ZooKeeperEnsemble) -> String {
    format!(
        "{}/{}",
        ensemble.namespace().unwrap_or_default(),
        ensemble.name_any()
    )
}

/// Annotation of the Secret: when its certificate expires (RFC 3339), as the operator issued it.
pub const NOT_AFTER_ANNOTATION: &str = "zooherd.dev/not-after";

/// What the stage is decided from, out of the informer caches.
pub fn facts(ensemble: &ZooKeeperEnsemble, ctx: &Context) -> QuorumTlsFacts {
    let namespace = ensemble.namespace().unwrap_or_default();
    let stores = &ctx.stores;
    let configured = stores
        .config_maps
        .get(&ObjectRef::new(&names::config_map(ensemble)).within(&namespace))
        .map(|config_map| configured_stage(&config_map.facts));
    let servers = scale::stateful_set_replicas(stores, ensemble);
    let pods = observe::server_pods(ensemble, ctx)
        .into_iter()
        .map(|pod| {
            let stage = pod_stage(&pod);
            let ready = pod_is_ready(&pod) && pod.meta().deletion_timestamp.is_none();
            (stage, ready)
        })
        .collect();
    QuorumTlsFacts {
        wanted: ensemble.spec.tls.quorum,
        configured,
        servers,
        pods,
        phase: ensemble.status.as_ref().and_then(|status| status.phase),
    }
}

/// The quorum TLS stage a pod was created with (its annotation); Off when it has none.
fn pod_stage(pod: &Pod) -> QuorumTls {
    pod.annotations()
        .get(names::QUORUM_TLS_ANNOTATION)
        .and_then(|stage| stage.parse().ok())
        .unwrap_or(QuorumTls::Off)
}

/// The stage a ConfigMap's data names; Off when it names none (written before quorum TLS).
fn configured_stage(data: &BTreeMap<String, String>) -> QuorumTls {
    data.get(names::QUORUM_TLS_KEY)
        .and_then(|stage| stage.parse().ok())
        .unwrap_or(QuorumTls::Off)
}

/// A new quorum TLS Secret for `ensemble` holding `issued`.
pub fn secret(ensemble: &ZooKeeperEnsemble, issued: &QuorumCertificates) -> Secret {
    let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
    let mut secret = Secret {
        data: Some(BTreeMap::from([
            (tls::CA_KEY.to_owned(), bytes(&issued.ca_certificate)),
            (tls::CA_PRIVATE_KEY.to_owned(), bytes(&issued.ca_key)),
            (tls::CERTIFICATE_KEY.to_owned(), bytes(&issued.certificate)),
            (tls::PRIVATE_KEY.to_owned(), bytes(&issued.key)),
            (tls::KEY_STORE_KEY.to_owned(), bytes(&issued.key_store())),
        ])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    secret.metadata.name = Some(names::tls_secret(ensemble));
    secret.metadata.namespace = ensemble.namespace();
    secret.metadata.labels = Some(names::labels(ensemble));
    secret.metadata.annotations = Some(BTreeMap::from([(
        NOT_AFTER_ANNOTATION.to_owned(),
        issued.not_after.to_string(),
    )]));
    secret.metadata.owner_references = ensemble.controller_owner_ref(&()).map(|o| vec![o]);
    secret
}

/// When the certificate of a quorum TLS Secret expires, or what is wrong with the Secret.
pub fn not_after(secret: &Secret) -> Result<Timestamp, String> {
    let data = secret.data.as_ref();
    for key in [tls::CA_KEY, tls::KEY_STORE_KEY] {
        if data.is_none_or(|data| data.get(key).is_none_or(|v| v.0.is_empty())) {
            return Err(format!("has no key {key:?}"));
        }
    }
    secret
        .annotations()
        .get(NOT_AFTER_ANNOTATION)
        .and_then(|at| at.parse().ok())
        .ok_or_else(|| format!("has no valid annotation {NOT_AFTER_ANNOTATION:?}"))
}

/// How many times the certificate of a quorum TLS Secret has been renewed (0: never, or an
/// annotation that is not a number, which only a hand could have written).
fn generation(secret: &Secret) -> u32 {
    secret
        .annotations()
        .get(names::CERTIFICATE_GENERATION_ANNOTATION)
        .and_then(|generation| generation.parse().ok())
        .unwrap_or(0)
}

/// The quorum TLS Secret `secret` with the servers' certificate renewed, when it is due at
/// `now` ([`crate::tls::renewal_due`]): the same CA, a new certificate and key, the new expiry
/// and the next generation; the rest of the Secret (its resource version too) as it was. None
/// when no renewal is due; what is wrong with the Secret, when it cannot be read.
fn renewed(
    ensemble: &ZooKeeperEnsemble,
    secret: &Secret,
    cluster_domain: &str,
    now: Timestamp,
) -> Result<Option<Secret>, String> {
    let not_after = not_after(secret)?;
    let subject = ensemble_name(ensemble);
    let ca_certificate = pem_text(secret, tls::CA_KEY)?;
    let ca_not_after = crate::tls::ca_not_after(&ca_certificate)
        .map_err(|e| format!("has a CA certificate that cannot be read ({e})"))?;
    if !crate::tls::renewal_due(not_after, ca_not_after, now) {
        return Ok(None);
    }
    let issued = crate::tls::renew_servers(
        &subject,
        &ca_certificate,
        &pem_text(secret, tls::CA_PRIVATE_KEY)?,
        &server_names(ensemble, cluster_domain),
        now,
    )
    .map_err(|e| e.to_string())?;
    let mut renewed = secret.clone();
    let fresh = self::secret(ensemble, &issued);
    renewed.data = fresh.data;
    let annotations = renewed.annotations_mut();
    annotations.insert(
        NOT_AFTER_ANNOTATION.to_owned(),
        issued.not_after.to_string(),
    );
    annotations.insert(
        names::CERTIFICATE_GENERATION_ANNOTATION.to_owned(),
        (generation(secret) + 1).to_string(),
    );
    Ok(Some(renewed))
}

/// The DNS names of the ensemble's servers, for the certificate: each server's (a wildcard
/// over the headless Service) and the client Service's, so that the same certificate can serve
/// clients that check the name they connected to.
fn server_names(ensemble: &ZooKeeperEnsemble, cluster_domain: &str) -> Vec<String> {
    let namespace = ensemble.namespace().unwrap_or_default();
    let headless = names::headless_service(ensemble);
    let client = names::client_service(ensemble);
    vec![
        format!("*.{headless}.{namespace}.svc.{cluster_domain}"),
        format!("*.{headless}.{namespace}.svc"),
        format!("{client}.{namespace}.svc.{cluster_domain}"),
        format!("{client}.{namespace}.svc"),
        format!("{client}.{namespace}"),
    ]
}

/// Ensures the quorum TLS Secret while the servers use (or are about to use) certificates, and
/// the operator's client of their AdminServers: `stage` is the stage being applied,
/// `configured` the highest one the ConfigMap or a server's pod holds now. Renews the servers'
/// certificate when it is due. Returns what the status shows and the certificate's generation.
pub async fn ensure(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    stage: QuorumTls,
    configured: Option<QuorumTls>,
) -> Result<(QuorumTlsStatus, u32), Error> {
    let status = |read: Option<&QuorumCredentials>| QuorumTlsStatus {
        stage: stage.to_string(),
        certificate_not_after: read.map(|read| Time(read.not_after)),
        ca_not_after: read.and_then(|read| read.ca_not_after).map(Time),
    };
    let in_use = configured.is_some_and(QuorumTls::uses_certificates);
    if !tls::uses_certificates(stage, ensemble.spec.tls.client) && !in_use {
        return Ok((status(None), 0));
    }
    let uid = ensemble.uid().unwrap_or_default();
    if let Some(read) = ctx.quorum_certificates.fresh(&uid) {
        return Ok((status(Some(&read)), read.generation));
    }
    let name = names::tls_secret(ensemble);
    let new = || {
        if in_use {
            return Err(Error::QuorumTlsSecret {
                name: name.clone(),
                problem: format!(
                    "is missing, but the servers run quorum TLS (stage {}) and trust only the CA it held; \
                     the operator does not issue a new CA (servers started with it could not reach the running ones): \
                     restore the Secret from a backup",
                    configured.unwrap_or(QuorumTls::Off)
                ),
            });
        }
        let issued = crate::tls::issue(
            &ensemble_name(ensemble),
            &server_names(ensemble, &ctx.settings.build.cluster_domain),
            &[],
            Timestamp::now(),
        )?;
        Ok(secret(ensemble, &issued))
    };
    let existing = secrets::get_or_create(ensemble, ctx, &name, new, |source| Error::QuorumTls {
        name: name.clone(),
        source,
    })
    .await?;
    let not_after = not_after(&existing).map_err(|problem| Error::QuorumTlsSecret {
        name: name.clone(),
        problem: format!(
            "{problem}; the operator does not rewrite it (the servers trust the CA it holds): restore it from a backup"
        ),
    })?;
    let admin = admin_client(ensemble, &existing, ctx.settings.probe.timeout).map_err(|problem| Error::QuorumTlsSecret {
        name: name.clone(),
        problem: format!(
            "{problem}; the operator issues its AdminServer client certificate from the CA it holds: restore it from a backup"
        ),
    })?;
    // The renewed Secret keeps the CA, so the client issued from it stays good.
    let existing = renew_if_due(ensemble, ctx, existing).await?;
    let not_after = self::not_after(&existing).unwrap_or(not_after);
    let generation = generation(&existing);
    let read = QuorumCredentials {
        not_after,
        ca_not_after: pem_text(&existing, tls::CA_KEY)
            .ok()
            .and_then(|ca| crate::tls::ca_not_after(&ca).ok()),
        generation,
        admin,
    };
    let shown = status(Some(&read));
    ctx.quorum_certificates.insert(&uid, read);
    Ok((shown, generation))
}

/// The quorum TLS Secret `existing`, or the one written in its place when the servers'
/// certificate was due for renewal.
async fn renew_if_due(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    existing: Secret,
) -> Result<Secret, Error> {
    let name = existing.name_any();
    let renewed = renewed(
        ensemble,
        &existing,
        &ctx.settings.build.cluster_domain,
        Timestamp::now(),
    )
    .map_err(|problem| Error::QuorumTlsSecret {
        name: name.clone(),
        problem: format!("{problem}: the servers' certificate cannot be renewed from it"),
    })?;
    let Some(renewed) = renewed else {
        return Ok(existing);
    };
    // Written with the resource version it was read at: if anyone changed the Secret since,
    // the API server refuses (409) and the next round decides from what is there then.
    let api: Api<Secret> = Api::namespaced(
        ctx.client.clone(),
        &ensemble.namespace().unwrap_or_default(),
    );
    let written = api
        .replace(&name, &PostParams::default(), &renewed)
        .await
        .map_err(|source| Error::QuorumTls {
            name: name.clone(),
            source,
        })?;
    ctx.metrics.api_write("Secret");
    let at = |secret: &Secret| not_after(secret).map_or_else(|e| e, |at| at.to_string());
    let note = format!(
        "renewed the servers' certificate in Secret {name} (the old one expires {}, the new one {}; same CA); the servers are rolled onto it one at a time",
        at(&existing),
        at(&written)
    );
    super::report::publish(
        ensemble,
        ctx,
        EventType::Normal,
        "CertificateRenewed",
        "RenewCertificate",
        note,
    )
    .await;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controller::secrets::test_ensemble as ensemble;

    #[test]
    fn a_new_secret_holds_the_ca_and_the_key_store_and_says_when_it_expires() {
        let now: Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
        let names = server_names(&ensemble(), "cluster.local");
        assert_eq!(
            names,
            [
                "*.zk-headless.data.svc.cluster.local",
                "*.zk-headless.data.svc",
                "zk-client.data.svc.cluster.local",
                "zk-client.data.svc",
                "zk-client.data",
            ]
        );
        let issued = crate::tls::issue("data/zk", &names, &[], now).unwrap();
        let secret = secret(&ensemble(), &issued);
        assert_eq!(secret.metadata.name.as_deref(), Some("zk-zooherd-tls"));
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.uid, "uid-1");
        let data = secret.data.as_ref().unwrap();
        assert_eq!(data["keystore.pem"].0, issued.key_store().into_bytes());
        assert_eq!(data["ca.key"].0, issued.ca_key.clone().into_bytes());
        assert_eq!(not_after(&secret), Ok(issued.not_after));
    }

    #[test]
    fn a_secret_due_for_renewal_gets_a_new_certificate_from_its_ca_and_the_next_generation() {
        let issued_at: Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
        let names = server_names(&ensemble(), "cluster.local");
        let issued = crate::tls::issue("data/zk", &names, &[], issued_at).unwrap();
        let mut secret = secret(&ensemble(), &issued);
        secret.metadata.resource_version = Some("41".into());
        secret
            .annotations_mut()
            .insert("team.example/owner".into(), "kept".into());
        let renewed_from = |secret: &Secret, now: &str| {
            renewed(&ensemble(), secret, "cluster.local", now.parse().unwrap()).unwrap()
        };
        assert_eq!(renewed_from(&secret, "2026-12-03T00:00:00Z"), None);
        assert_eq!(generation(&secret), 0);

        let renewed = renewed_from(&secret, "2030-06-01T00:00:00Z").expect("due");
        let data = |s: &Secret, key: &str| s.data.as_ref().unwrap()[key].0.clone();
        for key in ["ca.crt", "ca.key"] {
            assert_eq!(data(&renewed, key), data(&secret, key), "{key} kept");
        }
        for key in ["tls.crt", "tls.key", "keystore.pem"] {
            assert_ne!(data(&renewed, key), data(&secret, key), "{key} renewed");
        }
        let key_store = [data(&renewed, "tls.key"), data(&renewed, "tls.crt")].concat();
        assert_eq!(data(&renewed, "keystore.pem"), key_store);
        assert_eq!(
            not_after(&renewed),
            Ok("2035-05-31T00:00:00Z".parse().unwrap())
        );
        assert_eq!(generation(&renewed), 1);
        assert_eq!(renewed.annotations()["team.example/owner"], "kept");
        assert_eq!(
            renewed.metadata.resource_version.as_deref(),
            Some("41"),
            "written only over the Secret it was decided from"
        );
        assert_eq!(renewed_from(&renewed, "2030-06-01T00:00:00Z"), None);
        let again = renewed_from(&renewed, "2034-01-01T00:00:00Z").expect("due again");
        assert_eq!(generation(&again), 2);

        let mut foreign = secret.clone();
        foreign
            .data
            .as_mut()
            .unwrap()
            .insert("ca.crt".into(), ByteString(b"not PEM".to_vec()));
        let error = super::renewed(&ensemble(), &foreign, "cluster.local", issued_at).unwrap_err();
        assert!(
            error.starts_with("has a CA certificate that cannot be read"),
            "{error}"
        );
    }

    #[test]
    fn a_damaged_secret_is_reported() {
        let now: Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
        let issued = crate::tls::issue("data/zk", &[], &[], now).unwrap();
        let mut secret = secret(&ensemble(), &issued);
        secret.data.as_mut().unwrap().remove("keystore.pem");
        assert_eq!(
            not_after(&secret),
            Err("has no key \"keystore.pem\"".to_owned())
        );
        let mut secret = super::secret(&ensemble(), &issued);
        secret.metadata.annotations = None;
        assert_eq!(
            not_after(&secret),
            Err("has no valid annotation \"zooherd.dev/not-after\"".to_owned())
        );
    }

    #[test]
    fn the_operators_admin_client_comes_from_the_secrets_ca_or_says_what_is_missing() {
        let now: Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
        let issued = crate::tls::issue("data/zk", &[], &[], now).unwrap();
        let timeout = std::time::Duration::from_secs(1);
        let secret = secret(&ensemble(), &issued);
        assert!(admin_client(&ensemble(), &secret, timeout).is_ok());
        let mut without_key = secret.clone();
        without_key.data.as_mut().unwrap().remove("ca.key");
        assert_eq!(
            admin_client(&ensemble(), &without_key, timeout).unwrap_err(),
            "has no key \"ca.key\" (or it is not PEM text)"
        );
        let mut garbage = secret;
        garbage
            .data
            .as_mut()
            .unwrap()
            .insert("ca.key".into(), ByteString(b"not a key".to_vec()));
        let error = admin_client(&ensemble(), &garbage, timeout).unwrap_err();
        assert!(
            error.starts_with("issuing an AdminServer client certificate of data/zk failed"),
            "{error}"
        );
    }

    #[test]
    fn a_config_map_without_a_stage_configures_none() {
        assert_eq!(configured_stage(&BTreeMap::new()), QuorumTls::Off);
        let data = BTreeMap::from([("quorumTls".to_owned(), "accepting".to_owned())]);
        assert_eq!(configured_stage(&data), QuorumTls::Accepting);
    }
}
