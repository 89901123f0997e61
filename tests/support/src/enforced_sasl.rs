//! Servers that enforce SASL logins the way the agent starts them for
//! `clientAuthentication: {saslUsersSecret, enforce: true}`, for tests whose servers run outside
//! pods ([`super::kubelet`]): the agent's zoo.cfg keys, the JVM options that read its login file,
//! and the login file itself, written by the agent's own function from the users a kubelet would
//! mount and the superuser digest the operator made. Only SASL: DIGEST-MD5 is not a FIPS
//! mechanism, so the JVMs run with FIPS mode off, as the agent runs them.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use zooherd::agent::server::{ClientAuth, JAAS_FILE, client_auth};

use super::zookeeper::{JavaLauncher, ZkEnsembleBuilder};

/// The users Secret's one user and the servers' login directory.
pub struct EnforcedSasl {
    user: (String, String),
    login_dir: tempfile::TempDir,
}

impl EnforcedSasl {
    /// Servers whose users Secret holds `user` (name, password).
    pub fn new(user: (&str, &str)) -> Self {
        EnforcedSasl {
            user: (user.0.to_owned(), user.1.to_owned()),
            login_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Creates the users Secret `name` in `ns`, with the one user.
    pub async fn create_users_secret(&self, client: &kube::Client, ns: &str, name: &str) {
        let users: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {&self.user.0: &self.user.1},
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &users)
            .await
            .unwrap();
    }

    /// `builder`'s servers as the agent configures them: its zoo.cfg keys, and the JVM options
    /// that read its login file.
    pub fn servers(&self, builder: ZkEnsembleBuilder) -> ZkEnsembleBuilder {
        let mut launcher = JavaLauncher::default();
        launcher.jvm_options.extend([
            format!(
                "-Djava.security.auth.login.config={}",
                self.login_dir.path().join(JAAS_FILE).display()
            ),
            "-Dzookeeper.fips-mode=false".to_owned(),
        ]);
        let enforced = ClientAuth {
            users: Default::default(),
            enforce: true,
            x509: false,
        };
        enforced
            .settings()
            .iter()
            .fold(builder.launcher(launcher), |builder, (key, value)| {
                builder.config(key, value)
            })
    }

    /// Writes the login file the agent writes from the users Secret's mount and the digest in
    /// the superuser Secret of the ensemble `zk` ([`super::kubelet`]'s; there once the operator
    /// has made it); before the servers start.
    pub async fn write_login_file(&self, client: &kube::Client, ns: &str) {
        let mounted = self.login_dir.path().join("users");
        std::fs::create_dir_all(&mounted).unwrap();
        std::fs::write(mounted.join(&self.user.0), &self.user.1).unwrap();
        let superuser = Api::<Secret>::namespaced(client.clone(), ns)
            .get("zk-zooherd-superuser")
            .await
            .unwrap();
        let digest = String::from_utf8(superuser.data.unwrap()["digest"].0.clone()).unwrap();
        let auth = client_auth(Some(&mounted), Some(&digest), true, false)
            .expect("the users")
            .expect("SASL");
        std::fs::write(self.login_dir.path().join(JAAS_FILE), auth.jaas()).unwrap();
    }
}
