//! The superuser the operator reconfigures an ensemble as.
//!
//! A reconfiguration writes `/zookeeper/config`, which only a superuser may do; Zooherd never
//! sets `skipACL`. Each ensemble gets its own superuser: the Secret `<name>-zooherd-superuser`
//! holds a random password (read only by the operator) and its digest (the servers' env, from
//! which `zooherd server` makes the JVM property). The operator creates the Secret once and
//! never changes it: a new password would not reach the running servers until they restart,
//! and until then no reconfiguration could be made. A Secret that lost a key, or whose digest
//! no longer matches its password, is reported, not repaired. A deleted Secret is created
//! again (with a new password: the servers pick its digest up as they restart). The Secret is
//! owned by the ensemble, so it goes with it.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::{Resource, ResourceExt};

use super::{Context, Error, secrets};
use crate::api::ZooKeeperEnsemble;
use crate::build::names;
use crate::quorum::reconfig::super_digest;

/// Random bytes in a new password.
const PASSWORD_BYTES: usize = 24;

/// A new superuser Secret for `ensemble` with `password`.
pub fn secret(ensemble: &ZooKeeperEnsemble, password: &str) -> Secret {
    let mut secret = Secret {
        data: Some(BTreeMap::from([
            (
                names::SUPERUSER_PASSWORD_KEY.to_owned(),
                ByteString(password.as_bytes().to_vec()),
            ),
            (
                names::SUPERUSER_DIGEST_KEY.to_owned(),
                ByteString(super_digest(password).into_bytes()),
            ),
        ])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    secret.metadata.name = Some(names::superuser_secret(ensemble));
    secret.metadata.namespace = ensemble.namespace();
    secret.metadata.labels = Some(names::labels(ensemble));
    secret.metadata.owner_references = ensemble.controller_owner_ref(&()).map(|o| vec![o]);
    secret
}

/// The password in a superuser Secret, or what is wrong with the Secret.
pub fn password(secret: &Secret) -> Result<String, String> {
    let value = |key: &str| -> Result<String, String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .ok_or_else(|| format!("has no key {key:?}"))?;
        String::from_utf8(bytes.0.clone()).map_err(|_| format!("key {key:?} is not UTF-8"))
    };
    let password = value(names::SUPERUSER_PASSWORD_KEY)?;
    let digest = value(names::SUPERUSER_DIGEST_KEY)?;
    if password.is_empty() || digest != super_digest(&password) {
        return Err(format!(
            "key {:?} is not the digest of key {:?}",
            names::SUPERUSER_DIGEST_KEY,
            names::SUPERUSER_PASSWORD_KEY
        ));
    }
    Ok(password)
}

fn new_password() -> String {
    let mut bytes = [0u8; PASSWORD_BYTES];
    getrandom::fill(&mut bytes).expect("the operating system's random numbers");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The ensemble's superuser password, from its Secret, which is created if it does not exist.
pub async fn ensure(ensemble: &ZooKeeperEnsemble, ctx: &Context) -> Result<String, Error> {
    let uid = ensemble.uid().unwrap_or_default();
    if let Some(password) = ctx.superusers.fresh(&uid) {
        return Ok(password);
    }
    let name = names::superuser_secret(ensemble);
    let existing = secrets::get_or_create(
        ensemble,
        ctx,
        &name,
        || Ok(secret(ensemble, &new_password())),
        |source| Error::Superuser {
            name: name.clone(),
            source,
        },
    )
    .await?;
    let password = password(&existing).map_err(|problem| Error::SuperuserSecret {
        name: name.clone(),
        problem,
    })?;
    ctx.superusers.insert(&uid, password.clone());
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controller::secrets::test_ensemble as ensemble;

    #[test]
    fn a_new_secret_holds_the_password_and_its_digest() {
        let secret = secret(&ensemble(), "secret");
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("zk-zooherd-superuser")
        );
        assert_eq!(secret.metadata.namespace.as_deref(), Some("data"));
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-1", Some(true))
        );
        let data = secret.data.as_ref().unwrap();
        assert_eq!(data["digest"].0, b"zooherd:u/lJX/7cIAvZtP9PqwTdm6krtSQ=");
        assert_eq!(password(&secret), Ok("secret".to_owned()));
    }

    #[test]
    fn a_damaged_secret_is_reported_not_repaired() {
        let mut secret = secret(&ensemble(), "secret");
        let data = secret.data.as_mut().unwrap();
        data.insert("password".into(), ByteString(b"other".to_vec()));
        assert_eq!(
            password(&secret),
            Err("key \"digest\" is not the digest of key \"password\"".to_owned())
        );
        secret.data.as_mut().unwrap().remove("digest");
        assert_eq!(password(&secret), Err("has no key \"digest\"".to_owned()));
    }

    #[test]
    fn passwords_are_random_and_printable() {
        let (a, b) = (new_password(), new_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
