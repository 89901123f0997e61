//! The client CA Secret of `spec.clientAuthentication.x509ClientCaSecret`: the user's own
//! Secret (a cert-manager CA Issuer's, say), which the operator only reads. It is read at every
//! full apply (the operator watches no Secrets), its `ca.crt` checked to hold PEM certificates
//! the servers can load, and hashed into the pod template
//! ([`crate::build::names::CLIENT_X509_CA_ANNOTATION`]), so that a changed CA rolls the servers
//! (ZooKeeper reads its trust store once, at start).
//!
//! A Secret that is missing, or whose `ca.crt` the servers could not use, fails the apply: the
//! ApplyFailed condition names the Secret and the problem, and nothing running changes.

use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

use super::{Context, Error};
use crate::api::ZooKeeperEnsemble;
use crate::build::tls::CA_KEY;

/// The hash of the client CA when the spec names its Secret (`None`: no client certificates).
pub async fn ca_hash(ensemble: &ZooKeeperEnsemble, ctx: &Context) -> Result<Option<String>, Error> {
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

/// The hash of `secret`'s CA certificates, or what makes them unusable.
fn check(secret: Option<&Secret>) -> Result<String, String> {
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
            block
                .parse_x509()
                .map(|_| Some(()))
                .map_err(|e| format!("holds a certificate that does not parse ({e})"))
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|problem| format!("{CA_KEY} {problem}"))?;
    if certificates.iter().flatten().next().is_none() {
        return Err(format!(
            "{CA_KEY} holds no PEM certificate (-----BEGIN CERTIFICATE-----): put the clients' \
             CA certificate there"
        ));
    }
    Ok(const_hex::encode(&Sha256::digest(&pem.0)[..8]))
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

    fn ca() -> String {
        crate::tls::issue("ns/zk", &[], &[], jiff::Timestamp::now())
            .expect("a CA")
            .ca_certificate
    }

    #[test]
    fn the_hash_follows_the_ca_certificate() {
        let (one, other) = (ca(), ca());
        let hash = check(Some(&secret(CA_KEY, &one))).unwrap();
        assert_eq!(hash.len(), 16);
        assert_eq!(hash, check(Some(&secret(CA_KEY, &one))).unwrap());
        assert_ne!(hash, check(Some(&secret(CA_KEY, &other))).unwrap());
        // A bundle of two CAs is taken too.
        check(Some(&secret(CA_KEY, &format!("{one}{other}")))).unwrap();
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
