//! Settings that decide who may connect to the servers and as whom. The operator owns them: a
//! `spec.config` key or a `-D` option in `spec.jvm.extraOptions` that set one is refused, with
//! a message naming it, so that no manifest can open a door the operator keeps shut (`skipACL`,
//! a second superuser, a login configuration of its own, the AdminServer's snapshot and
//! restore, TLS switched on half-way).
//!
//! ZooKeeper reads such settings from zoo.cfg and from system properties: every zoo.cfg key it
//! does not parse itself becomes the system property `zookeeper.<key>` (QuorumPeerConfig
//! `parseProperties`), so a zoo.cfg key and its `-Dzookeeper.` property are refused alike.

/// zoo.cfg keys (and, prefixed with `zookeeper.`, system properties) about authentication,
/// authorisation and encryption.
pub const SECURITY_CONFIG_KEYS: &[&str] = &[
    "skipACL",
    "superUser",
    "sslQuorum",
    "sslQuorumReloadCertFiles",
    "portUnification",
    "serverCnxnFactory",
    "sessionRequireClientSASLAuth",
    "client.secure",
    "client.portUnification",
    "client.certReload",
    "jaasLoginRenew",
];

/// Prefixes of such keys: TLS (`ssl.*`), authentication providers, quorum SASL, enforced
/// client authentication, the digest and x509 providers' superusers, and the AdminServer.
pub const SECURITY_CONFIG_PREFIXES: &[&str] = &[
    "ssl.",
    "authProvider.",
    "quorum.auth.",
    "enforce.auth.",
    "DigestAuthenticationProvider.",
    "X509AuthenticationProvider.",
    "kerberos.",
    "admin.",
];

/// System properties outside ZooKeeper's own namespace that change who may connect: the JVM's
/// security properties (`-Djava.security.properties` would replace the file the agent writes),
/// the SASL login configuration, and the JVM's default TLS stores.
const SECURITY_PROPERTY_PREFIXES: &[&str] = &["java.security.", "javax.net.ssl.", "sun.security."];

/// Whether a zoo.cfg key is one of the operator's security settings.
pub fn is_security_key(key: &str) -> bool {
    SECURITY_CONFIG_KEYS.contains(&key)
        || SECURITY_CONFIG_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

/// The system property a JVM option sets, when it is one of the operator's security settings
/// (`-Dzookeeper.skipACL=yes` sets `zookeeper.skipACL`).
pub fn security_property(option: &str) -> Option<&str> {
    let property = option.strip_prefix("-D")?;
    let key = property.split_once('=').map_or(property, |(key, _)| key);
    let owned = key.strip_prefix("zookeeper.").is_some_and(is_security_key)
        || SECURITY_PROPERTY_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix));
    owned.then_some(key)
}

/// The SASL user the operator authenticates as when `spec.clientAuthentication` turns SASL on
/// (so that it still reaches the servers once authentication is enforced). Its password is
/// the digest the servers already hold for the superuser, which only the operator can compute
/// from the password in its Secret; as a SASL user it has no rights of its own.
pub const OPERATOR_SASL_USER: &str = "zooherd";

/// The password of [`OPERATOR_SASL_USER`]: the hash part of the superuser's digest
/// (`zooherd:<hash>`, as `quorum::reconfig::super_digest` makes it), or `None` for a value
/// that is not a digest.
pub fn operator_sasl_password(super_digest: &str) -> Option<&str> {
    super_digest
        .split_once(':')
        .map(|(_, hash)| hash)
        .filter(|hash| !hash.is_empty())
}

/// What is wrong with a user of `spec.clientAuthentication.saslUsersSecret` (the Secret's key
/// is the user, its value the password), if anything. The users go into the servers' JAAS
/// login file, whose parser ends a quoted value at a line break and expands `${...}` in it;
/// Kubernetes already limits keys to letters, digits, `-`, `_` and `.`, which that parser reads
/// as one word.
pub fn sasl_user_problem(user: &str, password: &[u8]) -> Option<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if user.is_empty() || !user.chars().all(word) {
        return Some(format!(
            "user {user:?} is not a valid name: use letters, digits, '-', '_' and '.'"
        ));
    }
    if user == OPERATOR_SASL_USER {
        return Some(format!(
            "user {user:?} is the operator's own: choose another name"
        ));
    }
    let Ok(password) = std::str::from_utf8(password) else {
        return Some(format!("the password of user {user:?} is not UTF-8 text"));
    };
    if password.is_empty() {
        return Some(format!("the password of user {user:?} is empty"));
    }
    if password.ends_with(['\n', '\r']) {
        return Some(format!(
            "the password of user {user:?} ends with a line break (as `echo` writes one): \
             create the Secret with --from-literal={user}=<password>"
        ));
    }
    if password.chars().any(char::is_control) {
        return Some(format!(
            "the password of user {user:?} holds a control character (a line break or tab)"
        ));
    }
    if password.contains("${") {
        return Some(format!(
            "the password of user {user:?} holds \"${{\", which the JAAS login file would expand"
        ));
    }
    None
}

/// `password` as a quoted value of a JAAS login file (whose parser takes `\\` and `\"` as
/// escapes); [`sasl_user_problem`] has refused what cannot be quoted.
pub fn jaas_quoted(password: &str) -> String {
    format!(
        "\"{}\"",
        password.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_logs_in_with_the_hash_part_of_the_superuser_digest() {
        assert_eq!(operator_sasl_password("zooherd:abc="), Some("abc="));
        assert_eq!(operator_sasl_password("zooherd:"), None);
        assert_eq!(operator_sasl_password("no-colon"), None);
    }

    #[test]
    fn security_keys_and_their_properties() {
        for key in [
            "skipACL",
            "ssl.keyStore.location",
            "ssl.quorum.trustStore.location",
            "authProvider.1",
            "quorum.auth.enableSasl",
            "enforce.auth.enabled",
            "DigestAuthenticationProvider.superDigest",
            "admin.snapshot.enabled",
        ] {
            assert!(is_security_key(key), "{key}");
            let option = format!("-Dzookeeper.{key}=x");
            assert_eq!(
                security_property(&option),
                Some(format!("zookeeper.{key}").as_str()),
                "{option}"
            );
        }
        for option in [
            "-Djava.security.auth.login.config=/tmp/jaas.conf",
            "-Djava.security.properties=/tmp/x",
            "-Djavax.net.ssl.trustStore=/tmp/t",
        ] {
            assert!(security_property(option).is_some(), "{option}");
        }
        // Tuning is not security: left alone.
        for key in [
            "tickTime",
            "snapCount",
            "autopurge.purgeInterval",
            "skipACLs",
        ] {
            assert!(!is_security_key(key), "{key}");
        }
        for option in [
            "-Dzookeeper.snapCount=50000",
            "-Dzookeeper.server.realm=EXAMPLE.COM",
            "-Dzookeeper.adminx=1",
            "-XX:+UseG1GC",
            "-DskipACL=yes",
        ] {
            assert_eq!(security_property(option), None, "{option}");
        }
    }

    #[test]
    fn validation_names_the_security_setting() {
        use crate::api::ZooKeeperEnsemble;
        use crate::api::validate::{ValidationError, validate};
        let ensemble = |spec: serde_json::Value| -> ZooKeeperEnsemble {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "zooherd.dev/v1beta1",
                "kind": "ZooKeeperEnsemble",
                "metadata": {"name": "zk", "namespace": "ns"},
                "spec": spec,
            }))
            .unwrap()
        };
        let error = validate(&ensemble(serde_json::json!({
            "config": {"skipACL": "yes", "ssl.quorum.keyStore.location": "/k", "tickTime": "2000"}
        })))
        .unwrap_err();
        assert_eq!(
            error,
            ValidationError::SecurityConfigKeys {
                keys: vec!["skipACL".into(), "ssl.quorum.keyStore.location".into()],
            }
        );
        assert!(error.to_string().starts_with(
            "spec.config: skipACL, ssl.quorum.keyStore.location are security settings"
        ));
        let error = validate(&ensemble(serde_json::json!({
            "jvm": {"extraOptions": ["-Djava.security.auth.login.config=/tmp/jaas.conf"]}
        })))
        .unwrap_err();
        assert!(
            error.to_string().starts_with(
                "spec.jvm.extraOptions \"-Djava.security.auth.login.config=/tmp/jaas.conf\" sets the system property java.security.auth.login.config, a security setting"
            ),
            "{error}"
        );
    }
}
