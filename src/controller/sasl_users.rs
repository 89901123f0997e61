//! The users Secret of `spec.clientAuthentication.saslUsersSecret`: the user's own Secret,
//! which the operator only reads. It is read at every full apply (the operator watches no
//! Secrets), checked with the rules the servers' agent applies, and hashed into the pod
//! template ([`crate::build::names::CLIENT_SASL_ANNOTATION`]), so that changed users roll the servers (each
//! reads its users once, at start).
//!
//! A Secret that is missing or holds a user the servers could not take fails the apply: the
//! ApplyFailed condition names the Secret and the problem, and nothing running changes (a
//! server restarted meanwhile starts from the template it already had).

use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

use super::{Context, Error};
use crate::api::ZooKeeperEnsemble;
use crate::api::security::sasl_user_problem;

/// The hash of the users Secret's contents when the spec names one (`None`: SASL is off).
pub async fn users_hash(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let Some(name) = &ensemble.spec.client_authentication.sasl_users_secret else {
        return Ok(None);
    };
    let secret = super::secrets::user_secret(ensemble, ctx, name)
        .await
        .map_err(|source| Error::SaslUsers {
            name: name.clone(),
            source,
        })?;
    check(secret.as_ref())
        .map(Some)
        .map_err(|problem| Error::SaslUsersSecret {
            name: name.clone(),
            problem,
        })
}

/// The hash of `secret`'s users, or what makes it unusable.
fn check(secret: Option<&Secret>) -> Result<String, String> {
    let Some(secret) = secret else {
        return Err(
            "does not exist: create it with one key per user, the password its value \
             (kubectl create secret generic <name> --from-literal=<user>=<password>)"
                .to_owned(),
        );
    };
    let users = secret.data.clone().unwrap_or_default();
    if users.is_empty() {
        return Err("holds no user: add one key per user, the password its value".to_owned());
    }
    let mut hash = Sha256::new();
    for (user, password) in &users {
        if let Some(problem) = sasl_user_problem(user, &password.0) {
            return Err(problem);
        }
        for part in [user.as_bytes(), &password.0] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
    }
    Ok(const_hex::encode(&hash.finalize()[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(users: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                users
                    .iter()
                    .map(|(u, p)| (u.to_string(), ByteString(p.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn the_users_hash_changes_with_any_user_or_password() {
        let one = check(Some(&secret(&[("kafka", "a")]))).unwrap();
        assert_eq!(one.len(), 16);
        assert_eq!(one, check(Some(&secret(&[("kafka", "a")]))).unwrap());
        for other in [
            secret(&[("kafka", "b")]),
            secret(&[("kafkb", "a")]),
            secret(&[("kafka", "a"), ("admin", "a")]),
            // Not the same as user "kafkaa" with password "": lengths are hashed.
            secret(&[("kafk", "aa")]),
        ] {
            assert_ne!(one, check(Some(&other)).unwrap());
        }
    }

    #[test]
    fn a_secret_the_servers_could_not_use_is_named_with_the_fix() {
        let problem = check(None).unwrap_err();
        assert!(problem.starts_with("does not exist"), "{problem}");
        assert!(
            check(Some(&secret(&[])))
                .unwrap_err()
                .contains("holds no user")
        );
        let problem = check(Some(&secret(&[("kafka", "pw\n")]))).unwrap_err();
        assert!(
            problem.contains("--from-literal=kafka=<password>"),
            "{problem}"
        );
        let problem = check(Some(&secret(&[(
            crate::api::security::OPERATOR_SASL_USER,
            "pw",
        )])))
        .unwrap_err();
        assert!(problem.contains("the operator's own"), "{problem}");
    }
}
