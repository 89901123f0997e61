//! Asking the other servers. Before another server's data directory is moved aside
//! ([`may_reinitialise`](super::may_reinitialise)), the other voters' AdminServers must show
//! that they serve as a quorum without this one. One short round, with a timeout for each: a
//! server that cannot be asked counts as not serving, so doubt keeps the data where it is.
//!
//! When this server's own AdminServer takes only HTTPS (quorum TLS), a peer is asked with the
//! servers' certificate, the key and trust stores its zoo.cfg names; one that answers only
//! plain HTTP (the stage before, during a switch of quorum TLS) is asked that way.

use std::collections::BTreeMap;
use std::path::Path;

use super::config::config_value;
use crate::api::MemberState;
use crate::build::names;
use crate::quorum::Myid;
use crate::quorum::admin::{AdminClient, SrvrAnswer};
use crate::quorum::membership::Membership;

/// How long the agent waits for each other voter's AdminServer before deciding that a data
/// directory of another server may be moved aside.
const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The client that shows this server's certificate to its peers' AdminServers, when its zoo.cfg
/// (`config`, as the server runs it) secures its own: the quorum's key and trust stores, which
/// the AdminServer uses too. None otherwise, or when they cannot be read.
fn servers_client(config: &str) -> Option<AdminClient> {
    if config_value(config, "admin.forceHttps") != Some("true") {
        return None;
    }
    let ca = config_value(config, "ssl.quorum.trustStore.location")?;
    let key_store = config_value(config, "ssl.quorum.keyStore.location")?;
    crate::agent::probe::client_from_files(Path::new(ca), Path::new(key_store), PEER_TIMEOUT).ok()
}

/// What the other voters of `membership` answer (their AdminServers, at the hosts of their
/// server lines), asked as this server's zoo.cfg `config` allows. One short round: a server
/// that cannot be asked counts as not serving.
pub(super) fn peer_states(
    membership: &Membership,
    myid: Myid,
    config: &str,
) -> BTreeMap<Myid, MemberState> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(_) => return BTreeMap::new(),
    };
    let client = AdminClient::new(PEER_TIMEOUT);
    let tls_client = servers_client(config);
    let others: Vec<(Myid, String)> = membership
        .hosts()
        .filter(|&(m, _)| m != myid)
        .map(|(m, host)| (m, host.to_owned()))
        .collect();
    runtime.block_on(async {
        let answers = futures::future::join_all(others.iter().map(|(_, host)| {
            let address = format!("{host}:{}", names::ADMIN_PORT);
            let (client, tls_client) = (client.clone(), tls_client.clone());
            async move {
                if let Some(tls_client) = tls_client
                    && let Ok(answer) = tls_client.srvr(&format!("https://{address}")).await
                {
                    return Ok(answer);
                }
                client.srvr(&format!("http://{address}")).await
            }
        }))
        .await;
        others
            .iter()
            .zip(answers)
            .map(|((m, _), answer)| {
                let state = match answer {
                    Ok(SrvrAnswer::Serving(stats)) => stats.mode.into(),
                    Ok(SrvrAnswer::NotServing(_)) => MemberState::NotServing,
                    Err(_) => MemberState::Unreachable,
                };
                (*m, state)
            })
            .collect()
    })
}
