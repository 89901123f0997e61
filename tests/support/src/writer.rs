//! A client that writes throughout a change to a local ensemble and records which writes were
//! acknowledged, and the read-back that finds any of them lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

/// Writes persistent sequential znodes `<parent>/w-` every 10 ms through `connect_string` (every
/// server, as real clients connect) until `stop`, reconnecting after any failure; returns the
/// acknowledged names (`w-<sequence>`, the children of `parent`) and the longest time without
/// an acknowledgement. `parent` must exist. A write that failed or timed out is not counted: it
/// may or may not have happened.
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
    while !stop.load(Ordering::SeqCst) {
        if client.is_none() {
            let connector = zk::Client::connector()
                .with_session_timeout(Duration::from_secs(10))
                .with_connection_timeout(Duration::from_secs(2));
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
                }
                _ => client = None,
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
