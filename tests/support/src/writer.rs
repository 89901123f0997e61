//! A client that writes throughout a change to a local ensemble and records which writes were
//! acknowledged, and the read-back that finds any of them lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

/// How long a session may go on failing before a writer gives it up for a new one. Until then it
/// keeps it, as real clients do: the client reconnects by itself to another server when its
/// server goes away or drops its clients at a change of leader, and resuming a session is
/// quicker than opening one (a new session is a write the new leader must commit).
const SESSION_GIVEN_UP_AFTER: Duration = Duration::from_secs(2);

/// How long a writer's session waits for one server to take it (back) before it tries the
/// next. Short, because a server that took the connection while its quorum changes leader
/// may hold the session's revalidation until it follows the new one: with 2 s, a roll's
/// hand-over cost the writer 1.5–2.0 s without an acknowledged write, with 0.5 s 0.66–1.2 s
/// (`a_leader_that_hands_over_rejoins_as_a_non_voter_and_no_write_is_lost`), while the servers
/// served again 0.2 s after the reconfiguration committed.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether a writer gives up the session of `client` after a failed write: when the session is
/// over, when the write hung (`timed_out`: its server may be frozen), or when the session has
/// been failing since `failing_since` for [`SESSION_GIVEN_UP_AFTER`].
pub fn give_up_session(client: &zk::Client, timed_out: bool, failing_since: Instant) -> bool {
    timed_out || client.state().is_terminated() || failing_since.elapsed() >= SESSION_GIVEN_UP_AFTER
}

/// Writes persistent sequential znodes `<parent>/w-` every 10 ms through `connect_string` (every
/// server, as real clients connect) until `stop`, keeping its session through failures as
/// [`give_up_session`] says; returns the acknowledged names (`w-<sequence>`, the children of
/// `parent`) and the longest time without an acknowledgement. `parent` must exist. A write that
/// failed or timed out is not counted: it may or may not have happened.
pub async fn write_until(
    connect_string: String,
    parent: &'static str,
    stop: Arc<AtomicBool>,
) -> (Vec<String>, Duration) {
    let mode = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let path = format!("{parent}/w-");
    let (mut acknowledged, mut longest) = (Vec::new(), Duration::ZERO);
    let mut last = Instant::now();
    let mut client: Option<zk::Client> = None;
    let mut failing_since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if client.is_none() {
            let connector = zk::Client::connector()
                .with_session_timeout(Duration::from_secs(10))
                .with_connection_timeout(CONNECTION_TIMEOUT);
            let connecting = connector.connect(&connect_string);
            client = tokio::time::timeout(Duration::from_secs(5), connecting)
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some(c) = &client {
            let write = c.create(&path, b"", &mode);
            match tokio::time::timeout(Duration::from_secs(5), write).await {
                Ok(Ok((_, sequence))) => {
                    acknowledged.push(format!("w-{:010}", sequence.into_i64()));
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                    failing_since = None;
                }
                outcome => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if give_up_session(c, outcome.is_err(), since) {
                        client = None;
                        failing_since = None;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (acknowledged, longest)
}

/// The acknowledged writes of `acknowledged` that are not among the children of `parent`, read
/// in a new session through `connect_string` after a `sync` (the server it reaches may have
/// been restarted and still be catching up).
pub async fn lost_writes(
    connect_string: &str,
    parent: &str,
    acknowledged: &[String],
) -> Vec<String> {
    let client = zk::Client::connect(connect_string)
        .await
        .expect("connect to read back");
    client.sync(parent).await.expect("sync");
    let written: BTreeSet<String> = client
        .list_children(parent)
        .await
        .expect("list the writes")
        .into_iter()
        .collect();
    acknowledged
        .iter()
        .filter(|w| !written.contains(*w))
        .cloned()
        .collect()
}
