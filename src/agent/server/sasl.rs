//! Client authentication with SASL DIGEST-MD5 (`spec.clientAuthentication`): the JAAS login
//! file ZooKeeper's server reads its users from, and the zoo.cfg keys that turn it on.
//!
//! The users come from the Secret the pod mounts (one file per key: the user, holding the
//! password) and are read once, at start: ZooKeeper's `DigestLoginModule` reads its options
//! when the server logs in, so a changed Secret takes effect when the server restarts (the
//! operator rolls the servers when the Secret's contents change). The operator's own user
//! ([`OPERATOR_SASL_USER`]) is added, its password the superuser's digest the pod already
//! holds, so that the operator still reaches the servers once authentication is enforced.
//!
//! The file holds passwords: it is written readable by its owner only, beside the runtime
//! zoo.cfg, and removed when a server starts without SASL.
//!
//! Enforcing authentication (ZooKeeper 3.7+, admin guide "enforce.auth.enabled") admits only
//! sessions authenticated by a scheme of `enforce.auth.schemes`. Only `sasl` is listed: the
//! `digest` scheme accepts any user and password it is given, so listing it would let every
//! client through.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::{StartError, io_error};
use crate::api::security::{
    OPERATOR_SASL_USER, jaas_quoted, operator_sasl_password, sasl_user_problem,
};

/// The JAAS login file, beside the runtime zoo.cfg.
pub const JAAS_FILE: &str = "jaas.conf";
/// The server-side provider of the `sasl` scheme.
const SASL_PROVIDER: &str = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider";

/// What `--sasl-users`, `--enforce-auth` and `--x509-clients` ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuth {
    /// Users and their passwords (the operator's included).
    pub users: BTreeMap<String, String>,
    pub enforce: bool,
    /// Clients may log in with a certificate on the TLS client port: enforcement takes it.
    pub x509: bool,
}

impl ClientAuth {
    /// The zoo.cfg keys (per-pod settings of the runtime copy).
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![("authProvider.sasl".to_owned(), SASL_PROVIDER.to_owned())];
        if self.enforce {
            settings.push(("enforce.auth.enabled".to_owned(), "true".to_owned()));
            let schemes = if self.x509 { "sasl,x509" } else { "sasl" };
            settings.push(("enforce.auth.schemes".to_owned(), schemes.to_owned()));
        }
        settings
    }

    /// The JAAS login file: ZooKeeper's server reads the `Server` section.
    pub fn jaas(&self) -> String {
        let mut file = String::from(
            "// Written by `zooherd server`: the SASL DIGEST-MD5 users of this server's clients.\n\
             Server {\n    org.apache.zookeeper.server.auth.DigestLoginModule required",
        );
        for (user, password) in &self.users {
            file.push_str(&format!("\n    user_{user}={}", jaas_quoted(password)));
        }
        file.push_str(";\n};\n");
        file
    }
}

/// SASL as the flags ask for it: the users in `users_dir` (`--sasl-users`) and the operator's,
/// or, when authentication is enforced without users (the clients log in with certificates,
/// `--x509-clients`), the operator's alone: its session must still be a login. The operator's
/// password is `super_digest`'s hash (`zooherd:<hash>`). None: the server runs without SASL.
pub fn client_auth(
    users_dir: Option<&Path>,
    super_digest: Option<&str>,
    enforce: bool,
    x509: bool,
) -> Result<Option<ClientAuth>, StartError> {
    let mut users = match users_dir {
        Some(dir) => read_users(dir)?,
        None if enforce => BTreeMap::new(),
        None => return Ok(None),
    };
    let hash = super_digest
        .and_then(operator_sasl_password)
        .ok_or(StartError::NoSuperDigest)?;
    users.insert(OPERATOR_SASL_USER.to_owned(), hash.to_owned());
    Ok(Some(ClientAuth {
        users,
        enforce,
        x509,
    }))
}

/// The users in `dir` (a Secret's mount: one file per key; the `..data` links and other dot
/// entries are the kubelet's). A user the operator would have refused is refused here too,
/// naming it.
fn read_users(dir: &Path) -> Result<BTreeMap<String, String>, StartError> {
    let refused = |problem: String| StartError::SaslUsers {
        path: dir.to_owned(),
        problem,
    };
    let entries = fs::read_dir(dir).map_err(|e| io_error("read", dir, &e))?;
    let mut users = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", dir, &e))?;
        let user = entry.file_name().to_string_lossy().into_owned();
        let path: PathBuf = entry.path();
        if user.starts_with('.') || path.is_dir() {
            continue;
        }
        let password = fs::read(&path).map_err(|e| io_error("read", &path, &e))?;
        if let Some(problem) = sasl_user_problem(&user, &password) {
            return Err(refused(problem));
        }
        users.insert(user, String::from_utf8(password).expect("checked above"));
    }
    if users.is_empty() {
        return Err(refused("holds no user".to_owned()));
    }
    Ok(users)
}

/// Writes the JAAS file at `path` readable by its owner only, or removes one a start with SASL
/// left there (so that no password outlives the setting).
pub fn write_or_remove(path: &Path, auth: Option<&ClientAuth>) -> Result<(), StartError> {
    match auth {
        Some(auth) => super::files::write_private(path, &auth.jaas()),
        None => match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", path, &e)),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::reconfig::super_digest;

    fn secret_mount(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        // The kubelet's layout: the data in a timestamped directory, `..data` linking to it,
        // and one link per key.
        let data = dir.path().join("..2026_12_07_12_00_00.1");
        fs::create_dir(&data).unwrap();
        for (user, password) in files {
            fs::write(data.join(user), password).unwrap();
            std::os::unix::fs::symlink(Path::new("..data").join(user), dir.path().join(user))
                .unwrap();
        }
        std::os::unix::fs::symlink(data.file_name().unwrap(), dir.path().join("..data")).unwrap();
        dir
    }

    #[test]
    fn the_secrets_users_and_the_operators_go_into_the_login_file() {
        let dir = secret_mount(&[("kafka", "s3cret \"quoted\" \\ back"), ("admin", "pw")]);
        let digest = super_digest("operator-password");
        let auth = client_auth(Some(dir.path()), Some(&digest), true, false)
            .unwrap()
            .unwrap();
        let hash = digest.split_once(':').unwrap().1;
        assert_eq!(
            auth.jaas(),
            format!(
                "// Written by `zooherd server`: the SASL DIGEST-MD5 users of this server's clients.\n\
                 Server {{\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n    \
                 user_admin=\"pw\"\n    user_kafka=\"s3cret \\\"quoted\\\" \\\\ back\"\n    \
                 user_zooherd=\"{hash}\";\n}};\n"
            )
        );
        assert_eq!(
            auth.settings(),
            [
                ("authProvider.sasl", SASL_PROVIDER),
                ("enforce.auth.enabled", "true"),
                ("enforce.auth.schemes", "sasl"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let with_certificates = ClientAuth {
            x509: true,
            ..auth.clone()
        };
        assert!(
            with_certificates
                .settings()
                .contains(&("enforce.auth.schemes".to_owned(), "sasl,x509".to_owned()))
        );
        let lax = ClientAuth {
            enforce: false,
            ..auth
        };
        assert_eq!(lax.settings().len(), 1, "the provider only");
    }

    #[test]
    fn a_user_that_cannot_be_written_is_refused_naming_it() {
        let digest = super_digest("p");
        let refused = |files: &[(&str, &str)]| {
            let dir = secret_mount(files);
            let error = client_auth(Some(dir.path()), Some(&digest), false, false).unwrap_err();
            assert_eq!(error.exit_code(), super::super::EXIT_INVALID_INPUT);
            error.to_string()
        };
        let line = refused(&[("kafka", "pw\n")]);
        assert!(
            line.contains("user \"kafka\" ends with a line break"),
            "{line}"
        );
        assert!(line.contains("--from-literal=kafka=<password>"), "{line}");
        assert!(refused(&[("zooherd", "pw")]).contains("is the operator's own"));
        assert!(refused(&[("a", "${user.home}")]).contains("would expand"));
        assert!(refused(&[("a", "")]).contains("is empty"));
        assert!(refused(&[]).contains("holds no user"));
        let dir = secret_mount(&[("a", "b")]);
        let line = client_auth(Some(dir.path()), None, false, false)
            .unwrap_err()
            .to_string();
        assert!(line.contains("ZOOHERD_SUPER_DIGEST"), "{line}");
    }

    #[test]
    fn enforced_without_users_logs_in_the_operator_alone() {
        let digest = super_digest("operator-password");
        let hash = digest.split_once(':').unwrap().1;
        let auth = client_auth(None, Some(&digest), true, true)
            .unwrap()
            .expect("SASL for the operator's login");
        assert_eq!(
            auth.users,
            BTreeMap::from([(OPERATOR_SASL_USER.to_owned(), hash.to_owned())])
        );
        assert!(
            auth.settings()
                .contains(&("enforce.auth.schemes".to_owned(), "sasl,x509".to_owned()))
        );
        // Neither users nor enforcement: no SASL at all, whatever the digest.
        assert_eq!(client_auth(None, Some(&digest), false, true).unwrap(), None);
        let line = client_auth(None, None, true, true).unwrap_err().to_string();
        assert!(line.contains("ZOOHERD_SUPER_DIGEST"), "{line}");
    }

    #[test]
    fn the_login_file_is_private_and_goes_when_sasl_does() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JAAS_FILE);
        let auth = ClientAuth {
            users: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
            enforce: false,
            x509: false,
        };
        write_or_remove(&path, Some(&auth)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        write_or_remove(&path, None).unwrap();
        assert!(!path.exists());
        write_or_remove(&path, None).unwrap();
    }
}
