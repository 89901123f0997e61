//! Certificates for quorum TLS: a certificate authority of the ensemble's own, and one
//! certificate, signed by it, that every server of the ensemble presents.
//!
//! Mutual TLS on the quorum and election ports (`sslQuorum`) makes a server accept a peer only
//! if the peer's certificate chains to a CA in its trust store. Each ensemble gets its own CA,
//! so the trust store is the membership test: a process with a certificate of another ensemble,
//! or none, cannot join as a learner and receive a copy of the data. That is also why the
//! servers do not verify host names (see [`crate::build::zoo_cfg`]): identity comes from the CA,
//! which only this ensemble's certificate chains to, and a reverse lookup of a peer's pod IP is
//! not something a server can rely on. The certificate still names the servers (wildcards over
//! the headless Service's domains), for clients and tools that do check.
//!
//! The same CA admits clients to the servers' AdminServers (see [`crate::http`]): the operator
//! issues itself a short-lived client certificate from it ([`admin_client`]), kept only in its
//! memory, and each server's in-pod agent shows the servers' own certificate.
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM, which ZooKeeper's PEM key store reads (`PemReader`
//! tries RSA, then EC, on a `BEGIN PRIVATE KEY` block).

use jiff::Timestamp;
use jiff::civil::Date;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::http::AdminTls;

/// How long the ensemble's CA is valid.
pub const CA_VALIDITY_DAYS: i32 = 3650;
/// How long the servers' certificate is valid.
pub const SERVER_VALIDITY_DAYS: i32 = 1825;
/// How long the operator's AdminServer client certificate is valid. It lives only in the
/// operator's memory and is issued again each time the ensemble's Secret is read (every few
/// minutes), so a few days cover any outage of the API server that leaves it in use.
pub const ADMIN_CLIENT_VALIDITY_DAYS: i32 = 7;

/// A new CA and the servers' certificate, all PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumCertificates {
    pub ca_certificate: String,
    pub ca_key: String,
    pub certificate: String,
    pub key: String,
    /// When the servers' certificate expires.
    pub not_after: Timestamp,
}

impl QuorumCertificates {
    /// What ZooKeeper's PEM key store reads: the private key, then the certificate.
    pub fn key_store(&self) -> String {
        format!("{}{}", self.key, self.certificate)
    }
}

/// Why certificates could not be issued.
#[derive(Debug, thiserror::Error)]
#[error("issuing {what} of {ensemble} failed: {source}")]
pub struct IssueError {
    what: &'static str,
    ensemble: String,
    source: rcgen::Error,
}

/// Issues a new CA for the ensemble `ensemble` (`<namespace>/<name>`, in the subjects) and a
/// certificate for its servers, valid from a day before `now` (clock skew between nodes) and
/// naming `dns_names` and `ip_addresses`.
pub fn issue(
    ensemble: &str,
    dns_names: &[String],
    ip_addresses: &[std::net::IpAddr],
    now: Timestamp,
) -> Result<QuorumCertificates, IssueError> {
    let error = |source| IssueError {
        what: "the quorum certificates",
        ensemble: ensemble.to_owned(),
        source,
    };
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();

    let mut ca = CertificateParams::default();
    ca.distinguished_name = subject(&format!("Zooherd quorum CA of {ensemble}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    valid_for(&mut ca, today, CA_VALIDITY_DAYS);
    let ca_key = KeyPair::generate().map_err(error)?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca, ca_key).map_err(error)?;

    let mut server = CertificateParams::new(dns_names.to_vec()).map_err(error)?;
    server
        .subject_alt_names
        .extend(ip_addresses.iter().map(|&ip| SanType::IpAddress(ip)));
    server.distinguished_name = subject(&format!("Zooherd quorum member of {ensemble}"));
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Each server is the TLS server of the connections it accepts and the client of those it
    // opens: one certificate plays both parts.
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let not_after = valid_for(&mut server, today, SERVER_VALIDITY_DAYS);
    let key = KeyPair::generate().map_err(error)?;
    let certificate = server.signed_by(&key, &ca).map_err(error)?;
    Ok(QuorumCertificates {
        ca_certificate: ca.pem(),
        ca_key: ca_key_pem,
        certificate: certificate.pem(),
        key: key.serialize_pem(),
        not_after: not_after
            .to_zoned(jiff::tz::TimeZone::UTC)
            .expect("midnight UTC exists")
            .timestamp(),
    })
}

/// A client certificate for `holder`, signed by the ensemble's CA (its certificate and key,
/// PEM, as the ensemble's Secret holds them), valid from a day before `now` for
/// [`ADMIN_CLIENT_VALIDITY_DAYS`]: what the AdminServers of the ensemble admit.
pub fn admin_client(
    ensemble: &str,
    ca_certificate: &str,
    ca_key: &str,
    holder: &str,
    now: Timestamp,
) -> Result<AdminTls, IssueError> {
    let error = |source| IssueError {
        what: "an AdminServer client certificate",
        ensemble: ensemble.to_owned(),
        source,
    };
    let ca_key = KeyPair::from_pem(ca_key).map_err(error)?;
    let ca = Issuer::from_ca_cert_pem(ca_certificate, ca_key).map_err(error)?;
    let mut client = CertificateParams::default();
    client.distinguished_name = subject(&format!("{holder} (AdminServer client of {ensemble})"));
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    valid_for(&mut client, today, ADMIN_CLIENT_VALIDITY_DAYS);
    let key = KeyPair::generate().map_err(error)?;
    let certificate = client.signed_by(&key, &ca).map_err(error)?;
    Ok(AdminTls {
        ca_certificate: ca_certificate.to_owned(),
        certificate: certificate.pem(),
        key: key.serialize_pem(),
    })
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Zooherd");
    name.push(DnType::CommonName, common_name);
    name
}

/// Makes `params` valid from the day before `today` (clock skew between nodes) until `days`
/// after it; returns that last day.
fn valid_for(params: &mut CertificateParams, today: Date, days: i32) -> Date {
    let (y, m, d) = ymd(yesterday(today));
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let not_after = today
        .checked_add(jiff::Span::new().days(days))
        .expect("a date within jiff's range");
    let (y, m, d) = ymd(not_after);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    not_after
}

fn yesterday(today: Date) -> Date {
    today.yesterday().expect("a date after jiff's minimum")
}

/// A date as [`rcgen::date_time_ymd`] takes it.
fn ymd(date: Date) -> (i32, u8, u8) {
    (
        i32::from(date.year()),
        date.month().unsigned_abs(),
        date.day().unsigned_abs(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_certificate_is_signed_by_the_ensembles_own_ca() {
        let now: Timestamp = "2026-12-02T18:00:00Z".parse().unwrap();
        let names = vec!["*.zk-headless.data.svc.cluster.local".to_owned()];
        let ip = "127.0.0.1".parse().unwrap();
        let issued = issue("data/zk", &names, &[ip], now).unwrap();
        assert!(
            issued
                .ca_certificate
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(
            issued
                .certificate
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        // PKCS#8, the only unencrypted form ZooKeeper's PemReader takes.
        assert!(issued.key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(issued.ca_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(issued.not_after, "2031-12-01T00:00:00Z".parse().unwrap());
        assert_eq!(
            issued.key_store(),
            format!("{}{}", issued.key, issued.certificate)
        );
        let other = issue("data/zk", &names, &[ip], now).unwrap();
        assert_ne!(issued.ca_key, other.ca_key, "every ensemble has its own CA");
    }

    #[test]
    fn the_operator_issues_itself_a_client_certificate_from_the_ensembles_ca() {
        let now: Timestamp = "2026-12-02T18:00:00Z".parse().unwrap();
        let issued = issue("data/zk", &[], &[], now).unwrap();
        let client = admin_client(
            "data/zk",
            &issued.ca_certificate,
            &issued.ca_key,
            "zooherd",
            now,
        )
        .unwrap();
        assert_eq!(client.ca_certificate, issued.ca_certificate);
        assert!(
            client
                .certificate
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(client.key.starts_with("-----BEGIN PRIVATE KEY-----"));
        crate::http::admin_builder(&client)
            .and_then(|b| b.build().map_err(|e| e.to_string()))
            .expect("a client from the issued certificate");
        let garbage = admin_client("data/zk", &issued.ca_certificate, "not a key", "x", now);
        assert!(
            garbage
                .unwrap_err()
                .to_string()
                .starts_with("issuing an AdminServer client certificate of data/zk failed"),
        );
    }
}
