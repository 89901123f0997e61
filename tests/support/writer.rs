//! A client that writes throughout a change to a local ensemble and records which writes were
//! acknowledged, so that a test can read every one of them back afterwards.

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
