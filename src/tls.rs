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
//! The servers' certificate is renewed from the same CA ([`renew_servers`]) a third of its life
//! before it ends ([`renewal_due`]); the CA itself is never replaced, since every running server
//! trusts exactly it.
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

    let servers = server_certificate(
        ensemble,
        &ca,
        dns_names,
        ip_addresses,
        today,
        SERVER_VALIDITY_DAYS,
    )
    .map_err(error)?;
    Ok(QuorumCertificates {
        ca_certificate: ca.pem(),
        ca_key: ca_key_pem,
        ..servers
    })
}

/// Days before its expiry that the servers' certificate is renewed: a third of its validity
/// (608 days), as cert-manager renews at two thirds of a certificate's life. Renewing rolls the
/// servers (see `controller::tls`), and a roll can be held up (a member down, the ensemble
/// paused): the margin leaves months to notice before anything expires.
pub const RENEW_DAYS_BEFORE_EXPIRY: i32 = SERVER_VALIDITY_DAYS / 3;

/// Whether the servers' certificate, valid until `not_after`, is to be renewed at `now`, its
/// CA being valid until `ca_not_after`: when fewer than [`RENEW_DAYS_BEFORE_EXPIRY`] days are
/// left and a new certificate would be valid for longer, and beyond today. A new one is valid no
/// longer than its CA, so a CA about to expire gives at most one renewal, not one per round (each
/// would roll the servers), and an ended CA none.
pub fn renewal_due(not_after: Timestamp, ca_not_after: Timestamp, now: Timestamp) -> bool {
    let days = |n: i32| jiff::SignedDuration::from_hours(24 * i64::from(n));
    let due = not_after.duration_since(now) < days(RENEW_DAYS_BEFORE_EXPIRY);
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let renewed = renewed_until(ca_not_after, today);
    due && renewed > today && midnight(renewed) > not_after
}

/// The last day of a certificate issued on `today` by a CA valid until `ca_not_after`.
fn renewed_until(ca_not_after: Timestamp, today: Date) -> Date {
    let full = today
        .checked_add(jiff::Span::new().days(SERVER_VALIDITY_DAYS))
        .expect("a date within jiff's range");
    let ca_last_day = ca_not_after
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .expect("a date after jiff's minimum");
    full.min(ca_last_day)
}

fn midnight(date: Date) -> Timestamp {
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .expect("midnight UTC exists")
        .timestamp()
}

/// When the CA certificate `ca_certificate` (PEM) expires; what is wrong with it otherwise.
pub fn ca_not_after(ca_certificate: &str) -> Result<Timestamp, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(ca_certificate.as_bytes()).map_err(|e| e.to_string())?;
    let certificate = pem.parse_x509().map_err(|e| e.to_string())?;
    not_after(&certificate)
}

/// When `certificate` expires, as a timestamp; what is wrong with its date otherwise.
pub fn not_after(
    certificate: &x509_parser::certificate::X509Certificate,
) -> Result<Timestamp, String> {
    Timestamp::from_second(certificate.validity().not_after.timestamp()).map_err(|e| e.to_string())
}

/// A new certificate for the servers of `ensemble`, signed by its CA (`ca_certificate` and
/// `ca_key`, PEM, as the ensemble's Secret holds them), valid from a day before `now` for
/// [`SERVER_VALIDITY_DAYS`], or until the day before the CA expires if that comes first. The
/// CA is kept: the running servers trust it, and a server with the new certificate is a peer
/// of one still holding the old.
pub fn renew_servers(
    ensemble: &str,
    ca_certificate: &str,
    ca_key: &str,
    dns_names: &[String],
    now: Timestamp,
) -> Result<QuorumCertificates, IssueError> {
    let error = |source| IssueError {
        what: "a renewed server certificate",
        ensemble: ensemble.to_owned(),
        source,
    };
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let last_day = renewed_until(
        ca_not_after(ca_certificate).map_err(|_| error(rcgen::Error::CouldNotParseCertificate))?,
        today,
    );
    let days = (last_day - today).get_days();
    let ca = Issuer::from_ca_cert_pem(ca_certificate, KeyPair::from_pem(ca_key).map_err(error)?)
        .map_err(error)?;
    let servers = server_certificate(ensemble, &ca, dns_names, &[], today, days).map_err(error)?;
    Ok(QuorumCertificates {
        ca_certificate: ca_certificate.to_owned(),
        ca_key: ca_key.to_owned(),
        ..servers
    })
}

/// The certificate every server of the ensemble presents, signed by `ca`, valid for `days`
/// from `today`; without the CA's certificate and key (empty).
fn server_certificate<S: rcgen::SigningKey>(
    ensemble: &str,
    ca: &Issuer<'_, S>,
    dns_names: &[String],
    ip_addresses: &[std::net::IpAddr],
    today: Date,
    days: i32,
) -> Result<QuorumCertificates, rcgen::Error> {
    let mut server = CertificateParams::new(dns_names.to_vec())?;
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
    let not_after = valid_for(&mut server, today, days);
    let key = KeyPair::generate()?;
    let certificate = server.signed_by(&key, ca)?;
    Ok(QuorumCertificates {
        ca_certificate: String::new(),
        ca_key: String::new(),
        certificate: certificate.pem(),
        key: key.serialize_pem(),
        not_after: midnight(not_after),
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
    fn the_servers_certificate_is_renewed_a_third_of_its_life_before_expiry_and_never_past_its_ca()
    {
        let at = |t: &str| -> Timestamp { t.parse().unwrap() };
        let ca_until = at("2036-11-29T00:00:00Z");
        // Issued 2026-12-02 for five years: due from 608 days before 2031-12-01.
        let not_after = at("2031-12-01T00:00:00Z");
        assert!(!renewal_due(
            not_after,
            ca_until,
            at("2026-12-02T18:00:00Z")
        ));
        assert!(!renewal_due(
            not_after,
            ca_until,
            at("2030-04-01T23:59:59Z")
        ));
        assert!(renewal_due(not_after, ca_until, at("2030-04-02T00:00:01Z")));
        assert!(
            renewal_due(not_after, ca_until, at("2032-01-01T00:00:00Z")),
            "expired"
        );
        // A renewal that can only last as long as the CA: due once, then no longer, as a new
        // certificate would end on the same day.
        let clamped = at("2036-11-28T00:00:00Z");
        assert!(renewal_due(
            at("2036-06-01T00:00:00Z"),
            ca_until,
            at("2035-06-01T00:00:00Z")
        ));
        assert!(!renewal_due(clamped, ca_until, at("2035-06-02T00:00:00Z")));
        // Nor from a CA that has ended (or ends tomorrow): no certificate could be valid.
        let expired = at("2036-11-01T00:00:00Z");
        assert!(!renewal_due(expired, ca_until, at("2036-11-28T12:00:00Z")));
        assert!(!renewal_due(expired, ca_until, at("2037-01-01T00:00:00Z")));
        assert!(renewal_due(expired, ca_until, at("2036-11-27T12:00:00Z")));
    }

    #[test]
    fn a_renewed_certificate_comes_from_the_same_ca_and_lasts_five_years_or_until_the_ca_ends() {
        let issued_at: Timestamp = "2026-12-02T18:00:00Z".parse().unwrap();
        let names = vec!["*.zk-headless.data.svc.cluster.local".to_owned()];
        let issued = issue("data/zk", &names, &[], issued_at).unwrap();
        let ca_until = ca_not_after(&issued.ca_certificate).unwrap();
        assert_eq!(ca_until, "2036-11-29T00:00:00Z".parse().unwrap());

        let now: Timestamp = "2030-06-01T12:00:00Z".parse().unwrap();
        let renewed = renew_servers(
            "data/zk",
            &issued.ca_certificate,
            &issued.ca_key,
            &names,
            now,
        )
        .unwrap();
        assert_eq!(renewed.ca_certificate, issued.ca_certificate);
        assert_eq!(renewed.ca_key, issued.ca_key);
        assert_ne!(renewed.certificate, issued.certificate);
        assert_ne!(renewed.key, issued.key);
        assert_eq!(renewed.not_after, "2035-05-31T00:00:00Z".parse().unwrap());
        assert!(!renewal_due(renewed.not_after, ca_until, now));
        // A peer that trusts only the ensemble's CA takes the new certificate, as a server
        // still holding the old one does.
        assert_eq!(
            verify(&issued.ca_certificate, &renewed.certificate, now),
            Ok(())
        );
        let other = issue("data/other", &names, &[], issued_at).unwrap();
        assert!(verify(&other.ca_certificate, &renewed.certificate, now).is_err());

        let late: Timestamp = "2034-01-10T00:00:00Z".parse().unwrap();
        let last = renew_servers(
            "data/zk",
            &issued.ca_certificate,
            &issued.ca_key,
            &names,
            late,
        );
        assert_eq!(
            last.unwrap().not_after,
            "2036-11-28T00:00:00Z".parse().unwrap(),
            "no later than the day before the CA ends"
        );
        let garbage = renew_servers("data/zk", "not a certificate", &issued.ca_key, &names, now);
        assert!(
            garbage
                .unwrap_err()
                .to_string()
                .starts_with("issuing a renewed server certificate of data/zk failed"),
        );
    }

    /// Whether a TLS peer trusting only `ca` (PEM) takes `certificate` (PEM) at `now`.
    fn verify(ca: &str, certificate: &str, now: Timestamp) -> Result<(), rustls::Error> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, UnixTime};
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .unwrap();
        let leaf = CertificateDer::from_pem_slice(certificate.as_bytes()).unwrap();
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            now.as_second().unsigned_abs(),
        ));
        verifier.verify_client_cert(&leaf, &[], at).map(|_| ())
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
