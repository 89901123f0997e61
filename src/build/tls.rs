//! Quorum TLS: the stages a running ensemble goes through to switch mutual TLS on the quorum
//! and election ports on (or off), and the zoo.cfg keys of each.
//!
//! A server with `sslQuorum=true` opens its connections to peers with TLS; one with
//! `portUnification=true` accepts both TLS and plaintext connections. A plaintext ensemble cannot
//! turn TLS on in one roll: a server that only speaks TLS and one that only speaks plaintext
//! cannot connect, and a roll runs both for a while. ZooKeeper's administrator's guide
//! ("Upgrading existing non-TLS cluster with no downtime") gives three rolling restarts:
//! accept TLS while still connecting in plaintext, then connect with TLS, then stop accepting
//! plaintext. Those are the stages [`Off`](QuorumTls::Off) → [`Accepting`](QuorumTls::Accepting)
//! → [`Connecting`](QuorumTls::Connecting) → [`On`](QuorumTls::On). Any two neighbouring stages
//! can run side by side, so a roll from one to the next never splits the servers into groups
//! that cannot reach each other; switching TLS off walks them back. Which stage the servers run
//! is decided by [`crate::decide::quorum_tls`].
//!
//! The servers read the CA and their key store from the Secret [`super::names::tls_secret`]
//! (see [`crate::tls`]), mounted at [`DIR`]. The same certificate serves the TLS client port
//! ([`client_zoo_cfg_entries`]) when `spec.tls.client` asks for one.

use strum::{Display, EnumString};

use crate::api::ZooKeeperEnsembleSpec;

/// Where the quorum certificates are mounted in a server pod.
pub const DIR: &str = "/etc/zooherd-tls";
/// Key of the CA certificate in the Secret; the servers' trust store.
pub const CA_KEY: &str = "ca.crt";
/// Key of the CA's private key in the Secret; never mounted into a pod.
pub const CA_PRIVATE_KEY: &str = "ca.key";
/// Key of the servers' certificate in the Secret.
pub const CERTIFICATE_KEY: &str = "tls.crt";
/// Key of the servers' private key in the Secret.
pub const PRIVATE_KEY: &str = "tls.key";
/// Key of the servers' PEM key store (the private key, then the certificate) in the Secret.
pub const KEY_STORE_KEY: &str = "keystore.pem";

/// Which part of mutual TLS the servers of an ensemble run on 2888/3888.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Display, EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum QuorumTls {
    /// Plaintext only.
    Off,
    /// Accept TLS and plaintext, connect in plaintext.
    Accepting,
    /// Accept TLS and plaintext, connect with TLS.
    Connecting,
    /// TLS only: only a peer with a certificate of the ensemble's CA gets in.
    On,
}

impl QuorumTls {
    /// The stage a server runs when TLS is wanted (`true`) or not, with no running servers to
    /// migrate.
    pub fn target(wanted: bool) -> Self {
        if wanted { Self::On } else { Self::Off }
    }

    /// The next stage towards `wanted`, or `self` if it is there.
    pub fn toward(self, wanted: bool) -> Self {
        match (self, wanted) {
            (Self::Off, true) => Self::Accepting,
            (Self::Accepting, true) => Self::Connecting,
            (Self::Connecting | Self::On, true) => Self::On,
            (Self::On, false) => Self::Connecting,
            (Self::Connecting, false) => Self::Accepting,
            (Self::Accepting | Self::Off, false) => Self::Off,
        }
    }

    /// Whether the servers need the certificates.
    pub fn uses_certificates(self) -> bool {
        self != Self::Off
    }

    /// Whether the AdminServer of a server at this stage speaks only HTTPS to clients with a
    /// certificate of the ensemble's CA: in every stage that has the certificates.
    pub fn secures_admin_server(self) -> bool {
        self.uses_certificates()
    }

    /// The zoo.cfg keys of this stage (none when off). ZooKeeper reads `sslQuorum` and
    /// `portUnification` itself and the `ssl.quorum.*` keys as the system properties
    /// `zookeeper.ssl.quorum.*` (unknown zoo.cfg keys become `zookeeper.<key>`).
    pub fn zoo_cfg_entries(self) -> Vec<(&'static str, String)> {
        if !self.uses_certificates() {
            return Vec::new();
        }
        let ssl_quorum = matches!(self, Self::Connecting | Self::On);
        let port_unification = matches!(self, Self::Accepting | Self::Connecting);
        vec![
            ("sslQuorum", ssl_quorum.to_string()),
            ("portUnification", port_unification.to_string()),
            (
                "ssl.quorum.keyStore.location",
                format!("{DIR}/{KEY_STORE_KEY}"),
            ),
            ("ssl.quorum.keyStore.type", "PEM".to_owned()),
            ("ssl.quorum.trustStore.location", format!("{DIR}/{CA_KEY}")),
            ("ssl.quorum.trustStore.type", "PEM".to_owned()),
            // The ensemble's own CA is the identity (see crate::tls): host name checks would
            // add a reverse lookup of every peer's pod IP, which a server cannot rely on.
            ("ssl.quorum.hostnameVerification", "false".to_owned()),
            // The AdminServer answers only HTTPS, and only a client with a certificate of the
            // same CA: the operator, the pod's own probes, its peers. ZooKeeper's Jetty
            // AdminServer takes its key and trust stores from the ssl.quorum.* keys
            // (JettyAdminServer, 3.9), so it is secured exactly when quorum TLS has them.
            // Without this, dump, connections, watches_by_path and system_properties (which
            // holds the superuser's digest) answer anyone who reaches port 8080.
            ("admin.forceHttps", "true".to_owned()),
            ("admin.needClientAuth", "true".to_owned()),
        ]
    }
}

/// Whether the servers need the certificates: for the quorum at `quorum`, or for the TLS
/// client port.
pub fn uses_certificates(quorum: QuorumTls, client: bool) -> bool {
    quorum.uses_certificates() || client
}

/// The TLS client port (`spec.tls.client`), and whether it takes client certificates
/// (`spec.clientAuthentication.x509ClientCaSecret`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTls {
    Off,
    /// Clients are not asked for a certificate: the port encrypts and proves the servers'
    /// identity, and who a client is stays a matter of ZooKeeper authentication.
    On,
    /// Clients are asked for a certificate of the user's CA, which logs them in as
    /// `x509:<subject DN>`.
    ClientCertificates,
}

impl ClientTls {
    pub fn of(spec: &ZooKeeperEnsembleSpec) -> Self {
        match (
            spec.tls.client,
            spec.client_authentication.x509_client_ca_secret.is_some(),
        ) {
            (false, _) => Self::Off,
            (true, false) => Self::On,
            (true, true) => Self::ClientCertificates,
        }
    }

    /// The zoo.cfg keys of the port (none when off). Only the Netty connection factory speaks
    /// TLS. ZooKeeper reads the `ssl.*` keys as `zookeeper.ssl.*` system properties; they are
    /// the secure client port's alone (the quorum and the AdminServer use `ssl.quorum.*`).
    ///
    /// With client certificates, clients are asked for one (`ssl.clientAuth=want`: a client
    /// without one still connects, and `enforce.auth` decides what it may do), and ZooKeeper's
    /// `X509AuthenticationProvider`, built from the same `zookeeper.ssl.*` keys, logs in as
    /// `x509:<subject DN>` a client whose certificate chains to the trust store, the user's CA
    /// only (administrator's guide, "Authentication"); another CA's certificate logs nobody
    /// in (tests/quorum_tls_real_zookeeper.rs). Clients check the servers against the
    /// ensemble's CA, which the servers' key store chains to; the servers need not trust it
    /// for that.
    pub fn zoo_cfg_entries(self) -> Vec<(&'static str, String)> {
        let (trust_store, client_auth) = match self {
            Self::Off => return Vec::new(),
            Self::On => (format!("{DIR}/{CA_KEY}"), "none"),
            Self::ClientCertificates => (
                format!("{}/{CA_KEY}", super::names::X509_CLIENT_CA_DIR),
                "want",
            ),
        };
        let mut entries = vec![
            (
                "secureClientPort",
                super::names::SECURE_CLIENT_PORT.to_string(),
            ),
            (
                "serverCnxnFactory",
                "org.apache.zookeeper.server.NettyServerCnxnFactory".to_owned(),
            ),
            ("ssl.keyStore.location", format!("{DIR}/{KEY_STORE_KEY}")),
            ("ssl.keyStore.type", "PEM".to_owned()),
            ("ssl.trustStore.location", trust_store),
            ("ssl.trustStore.type", "PEM".to_owned()),
            ("ssl.clientAuth", client_auth.to_owned()),
        ];
        if self == Self::ClientCertificates {
            entries.push((
                "authProvider.x509",
                "org.apache.zookeeper.server.auth.X509AuthenticationProvider".to_owned(),
            ));
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::QuorumTls::{self, *};

    #[test]
    fn switching_on_and_off_walks_every_stage_in_order() {
        let walk = |from: QuorumTls, wanted: bool| {
            let mut stages = vec![from];
            while stages.last().unwrap().toward(wanted) != *stages.last().unwrap() {
                stages.push(stages.last().unwrap().toward(wanted));
            }
            stages
        };
        assert_eq!(walk(Off, true), [Off, Accepting, Connecting, On]);
        assert_eq!(walk(On, false), [On, Connecting, Accepting, Off]);
        assert_eq!(walk(Accepting, false), [Accepting, Off]);
        assert_eq!(walk(Connecting, true), [Connecting, On]);
        assert_eq!(QuorumTls::target(true), On);
        assert_eq!(QuorumTls::target(false), Off);
    }

    #[test]
    fn each_stage_renders_the_administrators_guide_keys() {
        let keys = |stage: QuorumTls| {
            let entries = stage.zoo_cfg_entries();
            let get = |key| {
                entries
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone())
            };
            (get("sslQuorum"), get("portUnification"))
        };
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(keys(Off), (None, None));
        assert_eq!(keys(Accepting), (some("false"), some("true")));
        assert_eq!(keys(Connecting), (some("true"), some("true")));
        assert_eq!(keys(On), (some("true"), some("false")));
        assert!(On.zoo_cfg_entries().contains(&(
            "ssl.quorum.keyStore.location",
            "/etc/zooherd-tls/keystore.pem".to_owned()
        )));
        for stage in [Accepting, Connecting, On] {
            let entries = stage.zoo_cfg_entries();
            assert!(entries.contains(&("admin.forceHttps", "true".to_owned())));
            assert!(entries.contains(&("admin.needClientAuth", "true".to_owned())));
            assert!(stage.secures_admin_server());
        }
        assert!(!Off.secures_admin_server());
        assert_eq!("connecting".parse::<QuorumTls>(), Ok(Connecting));
        assert_eq!(Accepting.to_string(), "accepting");
    }
}
