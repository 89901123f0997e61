//! HTTP clients: reqwest over rustls on ring, and the TLS that ZooKeeper's AdminServer takes.
//!
//! kube's client runs rustls on ring; reqwest's own default provider (aws-lc) beside it would
//! leave rustls with two providers and no default, so every client is built here, with ring
//! named explicitly ([`builder`]).
//!
//! An AdminServer of an ensemble with quorum TLS speaks only HTTPS and only to a client with a
//! certificate of the ensemble's CA (`admin.forceHttps`, `admin.needClientAuth`; see
//! [`crate::build::tls`]). The client side ([`AdminTls`]) trusts that CA alone and does not
//! check the name the server was reached by: servers are asked at their pod IPs, which no
//! certificate can name in advance, and the ensemble's own CA is the identity, as between the
//! servers (`ssl.quorum.hostnameVerification=false`, see [`crate::tls`]).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A reqwest client builder on ring, trusting no CA: the operator's HTTP clients speak plain
/// HTTP, or TLS with an [`AdminTls`] ([`admin_builder`]).
pub fn builder() -> reqwest::ClientBuilder {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(config)
}

/// A reqwest client builder for an object storage endpoint: trusts the public web's CAs
/// (webpki-roots), or, when `ca` (PEM) is given, that CA alone, as a private MinIO or Ceph
/// with its own CA needs. Fails, saying why, on PEM that holds no certificate.
pub fn object_storage_builder(ca: Option<&str>) -> Result<reqwest::ClientBuilder, String> {
    let roots = match ca {
        None => RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(pem) => roots(pem)?,
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// What a client shows and trusts to be let into an ensemble's AdminServer, all PEM: the
/// ensemble's CA certificate, and a certificate it signed with its private key (`key` may be a
/// file holding both, as the servers' `keystore.pem` does: only its key is read from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminTls {
    pub ca_certificate: String,
    pub certificate: String,
    pub key: String,
}

/// A reqwest client builder that speaks TLS to the AdminServers of the ensemble whose CA
/// `tls` holds, showing `tls`'s certificate. Fails, saying which part, on PEM that does not
/// hold a certificate or a key.
pub fn admin_builder(tls: &AdminTls) -> Result<reqwest::ClientBuilder, String> {
    let roots = roots(&tls.ca_certificate)?;
    let chain = CertificateDer::pem_slice_iter(tls.certificate.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the client certificate: {e}"))?;
    if chain.is_empty() {
        return Err("the client certificate: no PEM certificate".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key.as_bytes())
        .map_err(|e| format!("the client key: {e}"))?;
    let ca = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("the CA certificate: {e}"))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(EnsembleCa(ca)))
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the client certificate and key: {e}"))?;
    // The operator holds one such client per ensemble. rustls' default session cache makes
    // room for 256 servers up front (15 KB, measured with heaptrack: more than a cached
    // ensemble's pods); an ensemble has a handful, and its connections are kept alive anyway.
    config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_ENSEMBLE);
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}

/// The certificates of PEM text `ca`, as trust anchors; what is wrong with it otherwise.
fn roots(ca: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        let certificate = certificate.map_err(|e| format!("the CA certificate: {e}"))?;
        roots
            .add(certificate)
            .map_err(|e| format!("the CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the CA certificate: no PEM certificate".to_owned());
    }
    Ok(roots)
}

/// The TLS sessions an AdminServer client keeps for resumption: one per server of a 7-server
/// ensemble. A larger ensemble's client does a full handshake when it reconnects to a server
/// whose session was evicted, nothing more.
const SESSIONS_PER_ENSEMBLE: usize = 7;

/// Accepts a server certificate that chains to the ensemble's CA, whatever names it holds.
#[derive(Debug)]
struct EnsembleCa(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for EnsembleCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain (to the ensemble's CA, in its validity) before the name, so
        // a name error means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
