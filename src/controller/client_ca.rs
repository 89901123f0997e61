//! The client CA Secret of `spec.clientAuthentication.x509ClientCaSecret`: the user's own
//! Secret (a cert-manager CA Issuer's, say), which the operator only reads. It is read at every
//! full apply (the operator watches no Secrets), its `ca.crt` checked to hold PEM certificates
//! the servers can load, and hashed into the pod template
//! ([`crate::build::names::CLIENT_X509_CA_ANNOTATION`]), so that a changed CA rolls the servers
//! (ZooKeeper reads its trust store once, at start). When its last CA certificate expires,
//! no client certificate logs in any more: the status and a metric show when, so that an alert
//! comes before clients are locked out (the operator never writes the user's Secret).
//!
//! A Secret that is missing, or whose `ca.crt` the servers could not use, fails the apply: the
//! ApplyFailed condition names the Secret and the problem, and nothing running changes.

use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

use super::{Context, Error};
use crate::api::ZooKeeperEnsemble;
use crate::build::tls::CA_KEY;

/// What the operator took from the client CA Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCa {
    /// A hash of `ca.crt`, for the pod template.
    pub hash: String,
    /// When the last of its CA certificates expires: after that, no client certificate
    /// chains to a valid CA.
    pub not_after: jiff::Timestamp,
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
    check(secret.as_ref())
        .map(Some)
        .map_err(|problem| Error::ClientCaSecret {
            name: name.clone(),
            problem,
        })
}

/// `secret`'s CA certificates, or what makes them unusable.
fn check(secret: Option<&Secret>) -> Result<ClientCa, String> {
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
    let certificates = x509_parser::pem::Pem::iter_from_buffer(&pem.0)
        .map(|block| {
            let block = block.map_err(|e| format!("is not PEM ({e})"))?;
            if block.label != "CERTIFICATE" {
                return Ok(None);
            }
            let certificate = block
                .parse_x509()
                .map_err(|e| format!("holds a certificate that does not parse ({e})"))?;
            crate::tls::not_after(&certificate)
                .map(Some)
                .map_err(|e| format!("holds a certificate with an unusable expiry ({e})"))
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|problem| format!("{CA_KEY} {problem}"))?;
    let Some(not_after) = certificates.into_iter().flatten().max() else {
        return Err(format!(
            "{CA_KEY} holds no PEM certificate (-----BEGIN CERTIFICATE-----): put the clients' \
             CA certificate there"
        ));
    };
    Ok(ClientCa {
        hash: const_hex::encode(&Sha256::digest(&pem.0)[..8]),
        not_after,
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

    fn ca() -> String {
        ca_issued(jiff::Timestamp::now())
    }

    #[test]
    fn the_hash_follows_the_ca_certificate() {
        let (one, other) = (ca(), ca());
        let hash = check(Some(&secret(CA_KEY, &one))).unwrap().hash;
        assert_eq!(hash.len(), 16);
        assert_eq!(hash, check(Some(&secret(CA_KEY, &one))).unwrap().hash);
        assert_ne!(hash, check(Some(&secret(CA_KEY, &other))).unwrap().hash);
    }

    #[test]
    fn the_expiry_is_the_last_cas_of_a_bundle() {
        let now = jiff::Timestamp::now();
        let older = ca_issued(now - jiff::SignedDuration::from_hours(24 * 400));
        let newer = ca_issued(now);
        let expiry = |pem: &str| check(Some(&secret(CA_KEY, pem))).unwrap().not_after;
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
        let problem = check(None).unwrap_err();
        assert!(problem.starts_with("does not exist"), "{problem}");
        let problem = check(Some(&secret("tls.crt", &ca()))).unwrap_err();
        assert!(problem.contains("has no key ca.crt"), "{problem}");
        let problem = check(Some(&secret(CA_KEY, "not a certificate"))).unwrap_err();
        assert!(problem.contains("holds no PEM certificate"), "{problem}");
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let problem = check(Some(&secret(CA_KEY, broken))).unwrap_err();
        assert!(problem.contains("does not parse"), "{problem}");
    }
}
