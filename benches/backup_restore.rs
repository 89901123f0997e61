//! What a backup and a restore cost (issue 16, item 5). Run it with:
//!
//! ```sh
//! cargo bench --bench backup_restore
//! ```
//!
//! `ZOOHERD_BENCH_ZNODES=10000,100000` (the default) chooses the tree sizes and
//! `ZOOHERD_BENCH_ZNODE_BYTES=1000` the data in each znode, so the larger tree is about 100 MB.
//!
//! Real parts, on this machine: three ZooKeeper servers with quorum TLS and the operator's
//! superuser, as the operator configures them (1 GiB heap each), and s3s-fs on loopback. For
//! each size, a new ensemble is filled with that many znodes (100 parents, pipelined creates),
//! then:
//!
//! - **backup**: the operator's own code ([`take::stream_snapshot`] with
//!   [`take::snapshot_client`]) streams a snapshot from a follower's TLS AdminServer to the
//!   store in parts, hashing it on the way, as a `ZooKeeperBackup` does; beside it, the time
//!   to read a snapshot from the same server and drop it (under the same writers), which is
//!   what ZooKeeper and TLS cost without the store; and, on its own, the time the snapshot
//!   reader (which counts the znodes and checks ZooKeeper's seals on the way) takes over the
//!   stored object;
//! - **writers**: two clients write 100-byte `setData`s one after another, one connected to
//!   the follower that streams (the worst place to be) and one to the leader; their latency is
//!   measured for 5 s before the backup and for as long as the backup runs;
//! - **restore**: the agent's own code ([`fetch_snapshot`]) downloads the snapshot into an
//!   empty data directory and checks its size, SHA-256 and magic, as every initial server of a
//!   restored ensemble does (each from its own pod, at once); then a server starts from it, and
//!   the time until it serves and reports the tree's znode count is measured.
//!
//! A measurement, not a test: nothing is asserted beyond the restored server holding the tree.

use zooherd_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::s3::S3Server;
use support::zookeeper::{JavaLauncher, ZkEnsemble, ZkEnsembleBuilder};
use zooherd::agent::server::{RestoreSource, fetch_snapshot};
use zooherd::api::S3Location;
use zooherd::backup::plan::S3Credentials;
use zooherd::backup::snapshot_file::SnapshotReader;
use zooherd::backup::take;
use zooherd::quorum::reconfig::super_digest;
use zookeeper_client as zk;

const BUCKET: &str = "zk-backups";
const PASSWORD: &str = "backup-bench-superuser";
/// Parents the znodes are spread under (ZooKeeper keeps each parent's children in one set).
const PARENTS: usize = 100;
/// Creates in flight at once while filling the tree.
const PIPELINE: usize = 500;
/// How long the writers are measured before the backup.
const BASELINE: Duration = Duration::from_secs(5);
const WRITER_PATH: &str = "/bench-writer";
const RATE_LIMIT: Duration = Duration::from_secs(1);

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("backup_restore: a benchmark; run `cargo bench --bench backup_restore`");
        return;
    }
    let sizes = support::env_list("ZOOHERD_BENCH_ZNODES", &[10_000, 100_000]);
    let bytes = support::env_list("ZOOHERD_BENCH_ZNODE_BYTES", &[1000])[0];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let s3 = S3Server::start(&[BUCKET]).expect("starting s3s-fs (run tests/cluster/setup.sh)");
    let mut rows = Vec::new();
    for &znodes in &sizes {
        println!("{znodes} znodes of {bytes} bytes:");
        rows.push(runtime.block_on(measure(&s3, znodes, bytes)));
    }
    print_table(&rows);
}

/// One size's figures.
struct Row {
    znodes: usize,
    fill: Duration,
    snapshot_mb: f64,
    drain: Duration,
    backup: Duration,
    fetch: Duration,
    start: Duration,
    writers_before: [Latencies; 2],
    writers_during: [Latencies; 2],
}

async fn measure(s3: &S3Server, znodes: usize, bytes: usize) -> Row {
    let digest = super_digest(PASSWORD);
    let (zookeeper, admin_tls) = servers(3, &digest)
        .config("admin.snapshot.enabled", "true")
        .config("admin.restore.enabled", "false")
        .config("admin.rateLimiterIntervalInMS", RATE_LIMIT.as_millis())
        .start_with_quorum_tls()
        .expect("starting ZooKeeper");
    let leader = zookeeper
        .wait_for_quorum(Duration::from_secs(90))
        .await
        .expect("a quorum");
    let follower = (0..3).find(|&i| i != leader).expect("a follower");

    let client = connect(&zookeeper.connect_string()).await;
    let filled = Instant::now();
    fill(&client, znodes, bytes).await;
    let fill_time = filled.elapsed();
    client
        .create(
            WRITER_PATH,
            b"",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .expect("creating the writers' znode");
    println!("  filled in {:.1} s", fill_time.as_secs_f64());

    let targets = [follower, leader].map(|i| zookeeper.connect_string_of([i]));
    let writers_before = write_while(&targets, async {
        tokio::time::sleep(BASELINE).await;
    })
    .await
    .0;

    let credentials = S3Credentials {
        access_key_id: support::s3::ACCESS_KEY_ID.to_owned(),
        secret_access_key: support::s3::SECRET_ACCESS_KEY.to_owned(),
        ca: None,
    };
    let location = S3Location {
        endpoint: s3.endpoint().to_owned(),
        bucket: BUCKET.to_owned(),
        prefix: String::new(),
        region: "us-east-1".to_owned(),
        virtual_hosted_style: false,
        credentials_secret: "unused".to_owned(),
    };
    let store = take::object_store("bench", &location, &credentials).expect("the store");
    let http = take::snapshot_client(&admin_tls).expect("the AdminServer client");
    let key = format!("bench/{znodes}.snapshot");
    let base = zookeeper.member(follower).admin_url();
    // Under the same writers as the backup, so that the two compare.
    let (_, drain) = write_while(&targets, drain_snapshot(&http, &base)).await;
    // The servers allow one snapshot per admin.rateLimiterIntervalInMS.
    tokio::time::sleep(RATE_LIMIT + Duration::from_millis(200)).await;
    let (writers_during, (stored, backup)) = write_while(&targets, async {
        let started = Instant::now();
        let stored =
            take::stream_snapshot(&http, "follower", &base, PASSWORD, store.as_ref(), &key)
                .await
                .expect("the backup");
        (stored, started.elapsed())
    })
    .await;
    let snapshot_mb = stored.size_bytes as f64 / 1e6;
    println!(
        "  backup: {snapshot_mb:.1} MB, {} znodes, in {:.2} s (read and dropped: {:.2} s), last zxid {}",
        stored.contents.znodes,
        backup.as_secs_f64(),
        drain.as_secs_f64(),
        stored.zxid
    );
    // What reading the snapshot on the way costs the operator, on its own: the stored object
    // through the reader in 64 KiB chunks.
    let object = std::fs::read(s3.object_file(BUCKET, &key)).expect("the stored snapshot");
    let reading = Instant::now();
    let mut reader = SnapshotReader::default();
    for chunk in object.chunks(64 << 10) {
        reader.push(chunk);
    }
    let summary = reader.finish().expect("a whole snapshot");
    let reading = reading.elapsed();
    assert_eq!(summary, stored.contents);
    println!(
        "  the snapshot reader alone: {:.3} s ({:.0} MB/s)",
        reading.as_secs_f64(),
        snapshot_mb / reading.as_secs_f64()
    );
    drop(client);
    drop(zookeeper);

    let mut restored = servers(1, &digest).prepare().expect("preparing a server");
    let source = RestoreSource {
        s3: location,
        key,
        credentials,
        size: stored.size_bytes,
        sha256: stored.sha256,
        zxid: u64::from_str_radix(stored.zxid.trim_start_matches("0x"), 16).expect("a zxid"),
    };
    let data_dir = restored.member(0).data_dir().to_owned();
    let fetched = Instant::now();
    tokio::task::spawn_blocking(move || fetch_snapshot(&source, &data_dir))
        .await
        .expect("the download thread")
        .expect("the download");
    let fetch = fetched.elapsed();
    let started = Instant::now();
    restored
        .start_member(0)
        .expect("starting the restored server");
    restored
        .wait_for_quorum(Duration::from_secs(300))
        .await
        .expect("the restored server serves");
    let start = started.elapsed();
    let mntr = restored.admin_command(0, "mntr").await.expect("mntr");
    let count = mntr["znode_count"].as_f64().unwrap_or(0.0) as u64;
    // The tree, its parents, the writers' znode, and ZooKeeper's own (/zookeeper/...).
    assert!(
        count as usize > znodes + PARENTS,
        "the restored server holds {count} znodes, fewer than the {znodes} written"
    );
    println!(
        "  restore: download and check {:.2} s, start to serving {:.2} s ({count} znodes)",
        fetch.as_secs_f64(),
        start.as_secs_f64()
    );
    Row {
        znodes,
        fill: fill_time,
        snapshot_mb,
        drain,
        backup,
        fetch,
        start,
        writers_before,
        writers_during,
    }
}

/// The time to read a snapshot from the AdminServer at `base` and drop it: what the server
/// and TLS cost, without the store.
async fn drain_snapshot(http: &reqwest::Client, base: &str) -> Duration {
    let started = Instant::now();
    let mut response = take::snapshot_request(http, base, PASSWORD)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("a snapshot");
    while response
        .chunk()
        .await
        .expect("the snapshot's bytes")
        .is_some()
    {}
    started.elapsed()
}

/// `size` servers as the operator runs them for this benchmark: its superuser, and a heap
/// large enough for the larger tree (the tests' default is 256 MiB).
fn servers(size: usize, digest: &str) -> ZkEnsembleBuilder {
    let mut launcher = JavaLauncher::default();
    launcher.jvm_options.retain(|o| !o.starts_with("-Xm"));
    launcher
        .jvm_options
        .extend(["-Xms1g".into(), "-Xmx1g".into()]);
    ZkEnsemble::builder(size)
        .launcher(launcher)
        .reconfig(digest, size)
}

async fn connect(connect_string: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(30))
        .connect(connect_string)
        .await
        .unwrap_or_else(|e| panic!("connecting to {connect_string}: {e}"))
}

/// `znodes` znodes of `bytes` bytes under [`PARENTS`] parents, [`PIPELINE`] creates in flight.
async fn fill(client: &zk::Client, znodes: usize, bytes: usize) {
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.create("/bench", b"", &open).await.expect("/bench");
    for parent in 0..PARENTS {
        client
            .create(&format!("/bench/p-{parent:03}"), b"", &open)
            .await
            .expect("a parent");
    }
    let data: Vec<u8> = (0..bytes).map(|i| b'a' + (i % 26) as u8).collect();
    let paths: Vec<String> = (0..znodes)
        .map(|n| format!("/bench/p-{:03}/n-{n:07}", n % PARENTS))
        .collect();
    for chunk in paths.chunks(PIPELINE) {
        let creates = chunk.iter().map(|path| client.create(path, &data, &open));
        for (path, created) in chunk.iter().zip(futures::future::join_all(creates).await) {
            created.unwrap_or_else(|e| panic!("creating {path}: {e}"));
        }
    }
}

/// Runs `work` while one writer per connect string writes; their latencies, and its result.
async fn write_while<T>(
    targets: &[String; 2],
    work: impl Future<Output = T>,
) -> ([Latencies; 2], T) {
    let stop = Arc::new(AtomicBool::new(false));
    let writers = targets
        .clone()
        .map(|target| tokio::spawn(write_until(target, Arc::clone(&stop))));
    let result = work.await;
    stop.store(true, Ordering::SeqCst);
    let mut latencies = Vec::new();
    for writer in writers {
        latencies.push(writer.await.expect("a writer"));
    }
    let [first, second] = <[Latencies; 2]>::try_from(latencies)
        .ok()
        .expect("two writers");
    ([first, second], result)
}

/// `setData`s of 100 bytes one after another on [`WRITER_PATH`] until `stop`.
async fn write_until(target: String, stop: Arc<AtomicBool>) -> Latencies {
    let client = connect(&target).await;
    let data = [b'w'; 100];
    let mut samples = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        client
            .set_data(WRITER_PATH, &data, None)
            .await
            .expect("a writer's setData");
        samples.push(sent.elapsed());
    }
    Latencies::of(samples)
}

/// A writer's latencies.
struct Latencies {
    count: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Latencies {
    fn of(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        Latencies {
            count: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    fn cell(&self) -> String {
        format!(
            "{:.1} / {:.1} / {:.0} ms (n={})",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| znodes | fill | snapshot | read and dropped | backup | backup MB/s | download+check | MB/s | start to serving | restore total |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let restore = row.fetch + row.start;
        println!(
            "| {} | {:.1} s | {:.1} MB | {:.2} s | {:.2} s | {:.1} | {:.2} s | {:.1} | {:.2} s | {:.2} s |",
            row.znodes,
            row.fill.as_secs_f64(),
            row.snapshot_mb,
            row.drain.as_secs_f64(),
            row.backup.as_secs_f64(),
            row.snapshot_mb / row.backup.as_secs_f64(),
            row.fetch.as_secs_f64(),
            row.snapshot_mb / row.fetch.as_secs_f64(),
            row.start.as_secs_f64(),
            restore.as_secs_f64(),
        );
    }
    println!();
    println!("Writers' setData latency, p50 / p99 / max (samples):");
    println!(
        "| znodes | on the streaming follower, before | during the backup | on the leader, before | during the backup |"
    );
    println!("|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            row.znodes,
            row.writers_before[0].cell(),
            row.writers_during[0].cell(),
            row.writers_before[1].cell(),
            row.writers_during[1].cell(),
        );
    }
}
