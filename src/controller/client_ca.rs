//! The client CA Secret of `spec.clientAuthentication.x509ClientCaSecret`: the user's own
//! Secret (a cert-manager CA Issuer's, say), which the operator only reads. It is read at every
//! full apply (the operator watches no Secrets), its `ca.crt` checked to hold PEM certificates
//! the servers can load, and hashed into the pod template
//! ([`crate::build::names::CLIENT_X509_CA_ANNOTATION`]), so that a changed CA rolls the servers
//! (ZooKeeper reads its trust store once, at start). When its last CA certificate expires is
//! in the status and a metric, so that an alert asks for the rotation in time (the operator
//! never writes the user's Secret).
//!
//! A Secret that is missing, or whose `ca.crt` the servers could not use, fails the apply: the
//! ApplyFailed condition names the Secret and the problem, and nothing running changes. So does
//! a `ca.crt` whose every CA certificate has expired, unless the servers run with it already
//! (one that expires under running servers must not fail every later apply, and with it the
//! decisions that need one: the status and the alert say it instead).
//!
//! An expired CA certificate beside a current one (a rotation not finished) is taken, with a
//! Warning Event at each full apply: ZooKeeper goes on logging in the certificates an expired
//! CA issued (Java's PKIX validation, as RFC 5280 section 6.1, does not check the trust
//! anchor's own validity; tests/quorum_tls_real_zookeeper.rs shows it), so it is a door the
//! user should close. Refusing it instead would trap a late rotation: the new CA could then
//! only replace the old one at once, locking out every client not yet moved.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use sha2::{Digest, Sha256};

use kube::runtime::events::EventType;

use super::{Context, Error, observe, report};
use crate::api::ZooKeeperEnsemble;
use crate::build::names::CLIENT_X509_CA_ANNOTATION;
use crate::build::tls::CA_KEY;

/// What the operator took from the client CA Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCa {
    /// A hash of `ca.crt`, for the pod template.
    pub hash: String,
    /// When the last of its CA certificates expires.
    pub not_after: jiff::Timestamp,
    /// An expired CA certificate beside current ones: when it ended, and its subject.
    pub expired: Option<(jiff::Timestamp, String)>,
}

/// The client CA when the spec names its Secret (`None`: no client certificates).
pub async fn read(ensemble: &ZooKeeperEnsemble, ctx: &Context) -> Result<Option<ClientCa>, Error> {
    let Some(name) = &ensemble.spec.client_authentication.x509_client_ca_secret else {
        return Ok(None);
    };
    let secret = super::secrets::user_secret(ensemble, ctx, name)
        .await
        .map_err(|source| Error::ClientCa {
            name: name.clone(),
            source,
        })?;
    let ca = check(
        secret.as_ref(),
        jiff::Timestamp::now(),
        &running(ensemble, ctx),
    )
    .map_err(|problem| Error::ClientCaSecret {
        name: name.clone(),
        problem,
    })?;
    if let Some((ended, subject)) = &ca.expired {
        let note = format!(
            "the client CA Secret {name} (spec.clientAuthentication.x509ClientCaSecret) holds a \
             CA certificate that expired {ended} ({subject}); ZooKeeper still logs in the \
             certificates it issued (Java does not check a CA's own expiry): remove it from \
             {CA_KEY} once its clients have moved to the current CA"
        );
        report::publish(
            ensemble,
            ctx,
            EventType::Warning,
            "ExpiredClientCa",
            "Apply",
            note,
        )
        .await;
    }
    Ok(Some(ca))
}

/// The client CA hashes the servers run with: their pods' and the StatefulSet's pod
/// template's, which the StatefulSet controller creates pods with even while none exists (all
/// deleted at once, say), without the operator.
fn running(ensemble: &ZooKeeperEnsemble, ctx: &Context) -> Vec<String> {
    in_use(
        ctx.stores.stateful_set(ensemble).as_deref(),
        &observe::server_pods(ensemble, ctx),
    )
}

fn in_use(stateful_set: Option<&StatefulSet>, pods: &[Arc<Pod>]) -> Vec<String> {
    let template = stateful_set
        .and_then(|stateful_set| stateful_set.spec.as_ref()?.template.metadata.as_ref());
    pods.iter()
        .map(|pod| &pod.metadata)
        .chain(template)
        .filter_map(|metadata| {
            metadata
                .annotations
                .as_ref()?
                .get(CLIENT_X509_CA_ANNOTATION)
                .cloned()
        })
        .collect()
}

/// `secret`'s CA certificates at `now`, or what makes them unusable. `running`: the hashes
/// of the CA files servers run with now.
fn check(
    secret: Option<&Secret>,
    now: jiff::Timestamp,
    running: &[String],
) -> Result<ClientCa, String> {
    let Some(secret) = secret else {
        return Err(format!(
            "does not exist: create it with the clients' CA certificate under the key {CA_KEY} \
             (kubectl create secret generic <name> --from-file={CA_KEY}=<file>), or point a \
             cert-manager CA Issuer's Secret"
        ));
    };
    let data = secret.data.clone().unwrap_or_default();
    let Some(pem) = data.get(CA_KEY) else {
        return Err(format!(
            "has no key {CA_KEY}: put the clients' CA certificate (PEM) there"
        ));
    };
    // Each certificate's expiry and subject.
    let certificates = x509_parser::pem::Pem::iter_from_buffer(&pem.0)
        .map(|block| {
            let block = block.map_err(|e| format!("is not PEM ({e})"))?;
            if block.label != "CERTIFICATE" {
                return Ok(None);
            }
            let certificate = block
                .parse_x509()
                .map_err(|e| format!("holds a certificate that does not parse ({e})"))?;
            let not_after = crate::tls::not_after(&certificate)
                .map_err(|e| format!("holds a certificate with an unusable expiry ({e})"))?;
            Ok(Some((not_after, certificate.subject().to_string())))
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|problem| format!("{CA_KEY} {problem}"))?;
    let certificates: Vec<_> = certificates.into_iter().flatten().collect();
    let Some(not_after) = certificates.iter().map(|(not_after, _)| *not_after).max() else {
        return Err(format!(
            "{CA_KEY} holds no PEM certificate (-----BEGIN CERTIFICATE-----): put the clients' \
             CA certificate there"
        ));
    };
    let hash = const_hex::encode(&Sha256::digest(&pem.0)[..8]);
    if not_after <= now && !running.contains(&hash) {
        return Err(format!(
            "{CA_KEY} holds only expired CA certificates (the last one ended {not_after}): put \
             the clients' current CA certificate there"
        ));
    }
    let expired = certificates
        .into_iter()
        .find(|(ended, _)| *ended <= now)
        .filter(|_| not_after > now);
    Ok(ClientCa {
        hash,
        not_after,
        expired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(key: &str, value: &str) -> Secret {
        Secret {
            data: Some([(key.to_owned(), ByteString(value.as_bytes().to_vec()))].into()),
            ..Secret::default()
        }
    }

    fn ca_issued(at: jiff::Timestamp) -> String {
        crate::tls::issue("ns/zk", &[], &[], at)
            .expect("a CA")
            .ca_certificate
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    fn ca() -> String {
        ca_issued(now())
    }

    #[test]
    fn the_hash_follows_the_ca_certificate() {
        let (one, other) = (ca(), ca());
        let hash = |pem: &str| check(Some(&secret(CA_KEY, pem)), now(), &[]).unwrap().hash;
        assert_eq!(hash(&one).len(), 16);
        assert_eq!(hash(&one), hash(&one));
        assert_ne!(hash(&one), hash(&other));
    }

    #[test]
    fn the_expiry_is_the_last_cas_of_a_bundle() {
        let now = jiff::Timestamp::now();
        let older = ca_issued(now - jiff::SignedDuration::from_hours(24 * 400));
        let newer = ca_issued(now);
        let expiry = |pem: &str| {
            check(Some(&secret(CA_KEY, pem)), now, &[])
                .unwrap()
                .not_after
        };
        let (old_expiry, new_expiry) = (expiry(&older), expiry(&newer));
        assert!(old_expiry < new_expiry);
        // The CA's own validity (crate::tls::CA_VALIDITY_DAYS from its issue).
        let days = new_expiry.duration_since(now).as_hours() / 24;
        assert!(
            (i64::from(crate::tls::CA_VALIDITY_DAYS) - 2..=i64::from(crate::tls::CA_VALIDITY_DAYS))
                .contains(&days),
            "{days}"
        );
        // A bundle (the old CA and its successor, while clients move over): the later one.
        assert_eq!(expiry(&format!("{older}{newer}")), new_expiry);
        assert_eq!(expiry(&format!("{newer}{older}")), new_expiry);
    }

    #[test]
    fn a_secret_the_servers_could_not_use_is_named_with_the_fix() {
        let problem = |secret: Option<&Secret>| check(secret, now(), &[]).unwrap_err();
        let missing = problem(None);
        assert!(missing.starts_with("does not exist"), "{missing}");
        let no_key = problem(Some(&secret("tls.crt", &ca())));
        assert!(no_key.contains("has no key ca.crt"), "{no_key}");
        let not_pem = problem(Some(&secret(CA_KEY, "not a certificate")));
        assert!(not_pem.contains("holds no PEM certificate"), "{not_pem}");
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let broken = problem(Some(&secret(CA_KEY, broken)));
        assert!(broken.contains("does not parse"), "{broken}");
    }

    #[test]
    fn a_file_of_expired_cas_is_refused_unless_the_servers_run_with_it_already() {
        let now = now();
        let days = |n: i64| jiff::SignedDuration::from_hours(24 * n);
        let validity = i64::from(crate::tls::CA_VALIDITY_DAYS);
        let expired = ca_issued(now - days(validity + 2));
        let problem = check(Some(&secret(CA_KEY, &expired)), now, &[]).unwrap_err();
        assert!(
            problem.starts_with("ca.crt holds only expired CA certificates (the last one ended"),
            "{problem}"
        );
        // One the servers run with already, expired under them: the apply goes on (the status
        // and the alert show it), and so does every decision that needs an apply.
        let before = check(Some(&secret(CA_KEY, &expired)), now - days(5), &[]).unwrap();
        assert_eq!(before.expired, None);
        let later = check(
            Some(&secret(CA_KEY, &expired)),
            now,
            std::slice::from_ref(&before.hash),
        );
        assert_eq!(later.map(|ca| ca.hash), Ok(before.hash));
    }

    #[test]
    fn the_servers_run_with_the_ca_of_their_pods_and_of_their_template() {
        use crate::controller::cached::Child;
        use k8s_openapi::api::apps::v1::StatefulSetSpec;
        use k8s_openapi::api::core::v1::PodTemplateSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let annotated = |hash: &str| ObjectMeta {
            annotations: Some([(CLIENT_X509_CA_ANNOTATION.to_owned(), hash.to_owned())].into()),
            ..ObjectMeta::default()
        };
        let stateful_set = StatefulSet {
            spec: Some(StatefulSetSpec {
                template: PodTemplateSpec {
                    metadata: Some(annotated("template")),
                    spec: None,
                },
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        };
        let pod = Arc::new(Pod {
            metadata: annotated("pod"),
            ..Pod::default()
        });
        // As the informer cache keeps it.
        let cached = stateful_set.facts();
        assert_eq!(in_use(Some(&cached), &[pod]), ["pod", "template"]);
        // Every pod gone at once: the StatefulSet recreates them with its template's CA.
        assert_eq!(in_use(Some(&cached), &[]), ["template"]);
        assert!(in_use(None, &[]).is_empty());
    }

    #[test]
    fn an_expired_ca_beside_a_current_one_is_taken_and_named() {
        let now = now();
        let validity = i64::from(crate::tls::CA_VALIDITY_DAYS);
        let expired = ca_issued(now - jiff::SignedDuration::from_hours(24 * (validity + 2)));
        let current = ca_issued(now);
        let bundle = check(
            Some(&secret(CA_KEY, &format!("{current}{expired}"))),
            now,
            &[],
        );
        let (ended, subject) = bundle.unwrap().expired.expect("the expired CA named");
        assert!(ended < now);
        assert_eq!(subject, "O=Zooherd, CN=Zooherd quorum CA of ns/zk");
        assert_eq!(
            check(Some(&secret(CA_KEY, &current)), now, &[])
                .unwrap()
                .expired,
            None
        );
    }
}
