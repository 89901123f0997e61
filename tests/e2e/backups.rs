//! Issue 16, items 3 and 4, on a real node: a backup of a three-server ensemble holding a
//! Kafka-shaped tree goes to a real S3-compatible server (s3s-fs on the host's address on the
//! nodes' bridge, which the operator's and the servers' pods reach), a restore drill restores
//! it into a throwaway ensemble whose pod downloads and checks it (Verified True, the drill
//! ensemble deleted), the ensemble is deleted, and a new one restored from the backup serves
//! every persistent znode with the same data, version, zxids and ACL. A client writes
//! throughout the backup: the restore holds every write acknowledged before it was asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use zooherd::api::{BackupPhase, Phase, ZooKeeperBackup, ZooKeeperBackupStatus};
use zooherd::backup::drill::{VERIFIED, drill_name};
use zookeeper_client as zk;

use super::support::kafka_tree::{read_tree, write_tree};
use super::support::local_cluster::LocalCluster;
use super::support::s3::{ACCESS_KEY_ID, S3Server, SECRET_ACCESS_KEY};
use super::{FORM_TIMEOUT, active_3_of_3, connect, secs, selector};

const BUCKET: &str = "zk-backups";
/// The znode a client sets over and over while the backup is taken.
const COUNTER: &str = "/e2e-backup-counter";
/// A backup, or a drill, on a loaded 2-core machine: a pod to start, an image to load.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn backed_up_drilled_and_restored(cluster: &LocalCluster, client: &kube::Client) {
    let s3 = S3Server::start_at(LocalCluster::HOST_IP, &[BUCKET]).expect("starting s3s-fs");
    let ns = cluster
        .api()
        .create_namespace(client, "e2e-backup")
        .await
        .unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let mut credentials = Secret::default();
    credentials.metadata.name = Some("backup-store".into());
    credentials.data = Some(
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), ByteString(value.as_bytes().to_vec())))
        .collect(),
    );
    secrets
        .create(&PostParams::default(), &credentials)
        .await
        .unwrap();
    let ensembles = Api::<zooherd::api::ZooKeeperEnsemble>::namespaced(client.clone(), &ns);
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns);
    cluster.apply(
        &ns,
        "apiVersion: zooherd.dev/v1beta1\nkind: ZooKeeperEnsemble\nmetadata: {name: zk}\n\
         spec: {replicas: 3, backup: {enabled: true}, storage: {retention: {whenDeleted: Delete}}}\n",
    );
    active_3_of_3(cluster, &ensembles, "zk", FORM_TIMEOUT).await;
    let writer = connect(&pods, &selector("zk"), None)
        .await
        .expect("a session with the ensemble");
    let paths = write_tree(&writer).await;
    let before = read_tree(&writer, &paths).await;
    // A client writing throughout the backup: a counter, set over and over.
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    writer.create(COUNTER, b"0", &open).await.unwrap();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let counting = tokio::spawn({
        let (client, acknowledged, stop) = (writer.clone(), acknowledged.clone(), stop.clone());
        async move {
            let mut next = 1u64;
            while !stop.load(Ordering::Relaxed) {
                if client
                    .set_data(COUNTER, next.to_string().as_bytes(), None)
                    .await
                    .is_ok()
                {
                    acknowledged.store(next, Ordering::Relaxed);
                }
                next += 1;
            }
        }
    });
    while acknowledged.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let t = Instant::now();
    let acknowledged_before = acknowledged.load(Ordering::Relaxed);
    let backups = Api::<ZooKeeperBackup>::namespaced(client.clone(), &ns);
    let backup: ZooKeeperBackup = serde_json::from_value(json!({
        "apiVersion": "zooherd.dev/v1beta1",
        "kind": "ZooKeeperBackup",
        "metadata": {"name": "before-upgrade"},
        "spec": {"ensemble": "zk", "verify": true, "s3": {
            "endpoint": s3.endpoint(),
            "bucket": BUCKET,
            "prefix": "e2e",
            "credentialsSecret": "backup-store",
        }},
    }))
    .unwrap();
    backups
        .create(&PostParams::default(), &backup)
        .await
        .unwrap();
    let stored = backup_where(&backups, "stored", |s| {
        s.phase == Some(BackupPhase::Succeeded)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    counting.await.unwrap();
    let acknowledged_after = acknowledged.load(Ordering::Relaxed);
    eprintln!(
        "(backup) {} bytes, {:?} znodes ({:?} persistent) at zxid {:?} from {:?}, after {}",
        stored.size_bytes.unwrap_or_default(),
        stored.znode_count,
        stored.persistent_znode_count,
        stored.zxid,
        stored.member,
        secs(t)
    );
    let drill = drill_name(
        &backups.get("before-upgrade").await.unwrap(),
        jiff::Timestamp::now(),
    );
    let t = Instant::now();
    let verified = backup_where(&backups, "a drill verdict", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == VERIFIED && c.status != "Unknown")
    })
    .await;
    let verdict = verified
        .conditions
        .iter()
        .find(|c| c.type_ == VERIFIED)
        .unwrap();
    assert_eq!(
        (verdict.status.as_str(), verdict.reason.as_str()),
        ("True", "Restored"),
        "{verdict:?}"
    );
    eventually_gone(&ensembles, &drill).await;
    eprintln!(
        "(backup) drill {drill}: {}, after {}; the drill ensemble deleted",
        verdict.message,
        secs(t)
    );

    // The ensemble lost; a new one from the backup.
    drop(writer);
    ensembles
        .delete("zk", &DeleteParams::default())
        .await
        .unwrap();
    eventually_gone(&ensembles, "zk").await;
    let t = Instant::now();
    cluster.apply(
        &ns,
        "apiVersion: zooherd.dev/v1beta1\nkind: ZooKeeperEnsemble\nmetadata: {name: zk-restored}\n\
         spec: {replicas: 3, restore: {backup: before-upgrade}}\n",
    );
    let status = active_3_of_3(cluster, &ensembles, "zk-restored", FORM_TIMEOUT).await;
    assert_eq!(
        status.restore.as_ref().map(|r| &r.zxid),
        stored.zxid.as_ref()
    );
    assert_eq!(status.phase, Some(Phase::Active));
    let reader = connect(&pods, &selector("zk-restored"), None)
        .await
        .expect("a session with the restored ensemble");
    assert_eq!(read_tree(&reader, &paths).await, before);
    // Every write acknowledged before the backup was asked for is in it; later ones may be.
    let (counter, _) = reader.get_data(COUNTER).await.unwrap();
    let counter: u64 = String::from_utf8(counter).unwrap().parse().unwrap();
    assert!(
        (acknowledged_before..=acknowledged_after).contains(&counter),
        "the restored counter {counter}: acknowledged {acknowledged_before} before the backup, \
         {acknowledged_after} by its end"
    );
    eprintln!(
        "(backup) a client wrote throughout: {acknowledged_before} writes acknowledged before the \
         backup, {acknowledged_after} by its end; the restore holds {counter}"
    );
    eprintln!(
        "(backup) zk-restored ACTIVE 3/3 from the backup after {}: {} persistent znodes as written",
        secs(t),
        paths.len()
    );
    drop(reader);
    cluster.api().delete_namespace(client, &ns).await.unwrap();
}

/// The status of the backup once `check` holds (`what` it waits for).
async fn backup_where(
    backups: &Api<ZooKeeperBackup>,
    what: &str,
    check: impl Fn(&ZooKeeperBackupStatus) -> bool,
) -> ZooKeeperBackupStatus {
    let deadline = Instant::now() + BACKUP_TIMEOUT;
    loop {
        let status = backups
            .get("before-upgrade")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if check(&status) {
            return status;
        }
        assert!(
            status.phase != Some(BackupPhase::Failed) && Instant::now() < deadline,
            "backup before-upgrade: no {what} within {BACKUP_TIMEOUT:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn eventually_gone(ensembles: &Api<zooherd::api::ZooKeeperEnsemble>, name: &str) {
    let deadline = Instant::now() + BACKUP_TIMEOUT;
    while ensembles.get_opt(name).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "{name} still there");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
