//! Backups (issue 16) on a real API server, the operator binary, a real ZooKeeper ensemble with
//! quorum TLS, and a real S3-compatible server (s3s-fs, which checks request signatures).
//!
//! As in `operator_real_zookeeper.rs`, there is no kubelet: the test starts the servers on
//! loopback addresses with the operator's certificates and superuser, and writes their
//! addresses into the pods' status. The operator finds them through the pods' IPs.

use zooherd_test_support as support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::control_plane::shared;
use support::kubelet::{bind_pod, mount_certificates};
use support::operator::{
    Operator, create_ensemble, eventually, eventually_within, install_crds, phase_is, status_where,
};
use support::s3::S3Server;
use support::zookeeper::ZkEnsemble;
use zooherd::api::{BackupMetadata, BackupPhase, Phase, ZooKeeperBackup, ZooKeeperBackupStatus};
use zooherd::build::names::server_host;
use zooherd::build::tls::QuorumTls;
use zookeeper_client as zk;

const BUCKET: &str = "zk-backups";

/// The znodes the test writes, each with its data: a tree shaped like Kafka's (brokers,
/// topics with partitions, config), data of every size up to 256 KB.
fn tree() -> Vec<(String, Vec<u8>)> {
    let mut nodes = vec![
        ("/brokers".to_owned(), Vec::new()),
        ("/brokers/topics".to_owned(), Vec::new()),
        ("/config".to_owned(), b"{\"version\":1}".to_vec()),
    ];
    for topic in 0..40 {
        let path = format!("/brokers/topics/topic-{topic}");
        let assignment =
            format!("{{\"version\":3,\"partitions\":{{\"0\":[1,2,3]}},\"topic\":{topic}}}");
        nodes.push((path.clone(), assignment.into_bytes()));
        nodes.push((format!("{path}/partitions"), Vec::new()));
        for partition in 0..5 {
            let size = (topic * 997 + partition * 131) % 4096;
            nodes.push((
                format!("{path}/partitions/{partition}"),
                vec![b'a' + (partition as u8); size],
            ));
        }
    }
    nodes.push(("/large".to_owned(), vec![7u8; 256 << 10]));
    nodes
}

/// What a znode is, as compared before and after a restore.
#[derive(Debug, PartialEq)]
struct Znode {
    data: Vec<u8>,
    version: i32,
    czxid: i64,
    mzxid: i64,
    acl: String,
}

async fn read_znode(client: &zk::Client, path: &str) -> Znode {
    let (data, stat) = client
        .get_data(path)
        .await
        .unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let (acl, _) = client.get_acl(path).await.unwrap();
    Znode {
        data,
        version: stat.version,
        czxid: stat.czxid,
        mzxid: stat.mzxid,
        acl: format!("{acl:?}"),
    }
}

/// Issue 16, item 1 (and the restorability item 4 asks for): a ZooKeeperBackup of an ensemble
/// with backups on streams a snapshot through the TLS AdminServer to S3, with its SHA-256,
/// size and zxid in the status and in a metadata object beside it; the stored snapshot, put
/// into an empty server's data directory, serves every znode written before the backup with
/// the same data, version, zxids and ACL. A backup whose Secret holds wrong credentials is
/// refused by the store and says so naming the Secret (without costing a server a snapshot);
/// one naming no ensemble waits and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_stores_a_snapshot_that_restores_every_znode() {
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, "backup").await.unwrap();
    let s3 = S3Server::start(&[BUCKET]).expect("starting s3s-fs");
    let operator = Operator::start(cp, &ns);

    let ensembles = create_ensemble(
        &client,
        &ns,
        json!({"replicas": 3, "backup": {"enabled": true}}),
    )
    .await;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let superuser = eventually("the superuser Secret", || async {
        secrets.get_opt("zk-zooherd-superuser").await.unwrap()
    })
    .await;
    let digest = String::from_utf8(superuser.data.unwrap()["digest"].0.clone()).unwrap();
    eventually("the quorum TLS Secret", || async {
        secrets.get_opt("zk-zooherd-tls").await.unwrap()
    })
    .await;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let zoo_cfg = eventually("the ConfigMap", || async {
        config_maps.get_opt("zk-config").await.unwrap()
    })
    .await
    .data
    .unwrap()["zoo.cfg"]
        .clone();
    assert!(
        zoo_cfg.contains("admin.snapshot.enabled=true")
            && zoo_cfg.contains("admin.restore.enabled=false")
            && zoo_cfg.contains("admin.needClientAuth=true"),
        "{zoo_cfg}"
    );

    // The kubelet's part: the servers as the operator configured them.
    let names_ns = ns.clone();
    let mut zookeeper = ZkEnsemble::builder(3)
        .hostnames(move |myid| server_host("zk", &names_ns, u32::from(myid) - 1, "cluster.local"))
        .reconfig(&digest, 3)
        .config("admin.snapshot.enabled", "true")
        .config("admin.restore.enabled", "false")
        .prepare()
        .expect("preparing ZooKeeper");
    let tls_dir = zookeeper.dir().join("tls");
    mount_certificates(&secrets, &tls_dir, &mut zookeeper).await;
    for i in 0..3 {
        zookeeper
            .configure_quorum_tls(i, QuorumTls::On, &tls_dir)
            .unwrap();
        zookeeper.start_member(i).unwrap();
    }
    zookeeper
        .wait_for_quorum(Duration::from_secs(90))
        .await
        .expect("a quorum");
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    for i in 0..3 {
        bind_pod(&pods, i, zookeeper.member(i).ip()).await;
    }
    status_where(&ensembles, "ACTIVE", phase_is(Phase::Active)).await;

    // Data, including a znode only a digest user may change, and znodes changed twice.
    let writer = zk::Client::connect(&zookeeper.connect_string())
        .await
        .expect("connecting");
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for (path, data) in tree() {
        writer.create(&path, &data, &open).await.unwrap();
    }
    let guarded_acl = [
        zk::Acl::new(
            zk::Permission::ALL,
            zk::AuthId::new("digest", "kafka:0y9b4uTSW4r6QrXnh1ch4CJtLc4="),
        ),
        zk::Acl::new(zk::Permission::READ, zk::AuthId::new("world", "anyone")),
    ];
    let guarded = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&guarded_acl));
    writer
        .create("/config/users", b"SCRAM credentials", &guarded)
        .await
        .unwrap();
    for topic in 0..5 {
        let path = format!("/brokers/topics/topic-{topic}");
        writer.set_data(&path, b"moved", None).await.unwrap();
        writer.set_data(&path, b"moved again", None).await.unwrap();
    }
    let mut paths: Vec<String> = tree().into_iter().map(|(path, _)| path).collect();
    paths.push("/config/users".to_owned());
    let mut before = BTreeMap::new();
    for path in &paths {
        before.insert(path.clone(), read_znode(&writer, path).await);
    }

    secrets
        .create(
            &PostParams::default(),
            &credentials_secret("s3", support::s3::SECRET_ACCESS_KEY),
        )
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &credentials_secret("wrong", "not-the-secret-key"),
        )
        .await
        .unwrap();
    let backups = Api::<ZooKeeperBackup>::namespaced(client.clone(), &ns);
    let started = std::time::Instant::now();
    create_backup(&backups, "first", "zk", &s3, "s3").await;
    let status = backup_where(&backups, "first", "Succeeded", |s| {
        s.phase == Some(BackupPhase::Succeeded)
    })
    .await;
    println!("backup stored after {:?}: {status:?}", started.elapsed());
    let completed_at = status.completed_at.clone().expect("completedAt").0;
    let metrics = operator.metrics().await;
    let series = format!(
        "zooherd_backup_last_success_timestamp_seconds{{namespace=\"{ns}\",name=\"zk\"}} {}\n",
        completed_at.as_second()
    );
    assert!(metrics.contains(&series), "no {series} in {metrics}");

    // The object is what the status says.
    let key = status
        .location
        .as_deref()
        .and_then(|location| location.strip_prefix(&format!("s3://{BUCKET}/")))
        .expect("an s3:// location in the bucket")
        .to_owned();
    assert!(key.starts_with(&format!("prod/{ns}/zk/first-")), "{key}");
    let snapshot = std::fs::read(s3.object_file(BUCKET, &key)).expect("the stored snapshot");
    assert_eq!(Some(snapshot.len() as i64), status.size_bytes);
    let sha256 = const_hex::encode(Sha256::digest(&snapshot));
    assert_eq!(Some(&sha256), status.sha256.as_ref());
    let metadata_key = key.replace(".snapshot", ".json");
    let metadata: BackupMetadata = serde_json::from_slice(
        &std::fs::read(s3.object_file(BUCKET, &metadata_key)).expect("the metadata object"),
    )
    .unwrap();
    assert_eq!(metadata.sha256, sha256);
    assert_eq!(metadata.size_bytes, snapshot.len() as u64);
    assert_eq!(Some(&metadata.zxid), status.zxid.as_ref());
    assert_eq!(metadata.snapshot_key, key);
    assert_eq!(metadata.ensemble, "zk");
    assert!(
        metadata
            .zookeeper_version
            .as_deref()
            .is_some_and(|v| v.starts_with("3.9")),
        "{metadata:?}"
    );
    let member = status.member.clone().expect("the member that took it");
    assert_ne!(
        Some(member.as_str()),
        ensembles
            .get("zk")
            .await
            .unwrap()
            .status
            .unwrap()
            .leader
            .as_deref(),
        "a follower takes the snapshot"
    );

    // Restore: the snapshot in an empty server's data directory, as a restore will put it.
    let mut restored = ZkEnsemble::builder(1)
        .prepare()
        .expect("preparing a server");
    let version_2 = restored.member(0).data_dir().join("version-2");
    std::fs::create_dir_all(&version_2).unwrap();
    let zxid = metadata.zxid.trim_start_matches("0x");
    std::fs::write(version_2.join(format!("snapshot.{zxid}")), &snapshot).unwrap();
    restored.start_member(0).unwrap();
    restored
        .wait_for_quorum(Duration::from_secs(60))
        .await
        .expect("the restored server serves");
    let reader = zk::Client::connect(&restored.connect_string())
        .await
        .expect("connecting to the restored server");
    for (path, want) in &before {
        assert_eq!(
            &read_znode(&reader, path).await,
            want,
            "{path} after a restore"
        );
    }
    println!("{} znodes restored as written", before.len());

    // Wrong credentials: refused by the store, the Secret named, no member asked.
    create_backup(&backups, "refused", "zk", &s3, "wrong").await;
    let refused = backup_where(
        &backups,
        "refused",
        "an attempt refused by the store",
        |s| {
            s.attempts >= 1
                && s.conditions
                    .iter()
                    .any(|c| c.message.contains("credentials from the Secret wrong"))
        },
    )
    .await;
    println!("refused: {:?}", refused.conditions);
    assert_ne!(refused.phase, Some(BackupPhase::Succeeded));
    // The next attempt waits its pause out, though every status write wakes the controller.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refused = backups.get("refused").await.unwrap().status.unwrap();
    assert_eq!(refused.attempts, 1, "{refused:?}");
    // Nothing but the first backup's two objects is in the bucket.
    let mut stored = Vec::new();
    collect_files(&s3.object_file(BUCKET, ""), &mut stored);
    assert_eq!(stored.len(), 2, "{stored:?}");

    // No such ensemble: the backup waits, saying why.
    create_backup(&backups, "orphan", "nope", &s3, "s3").await;
    let orphan = backup_where(&backups, "orphan", "waiting for its ensemble", |s| {
        s.conditions.iter().any(|c| c.reason == "EnsembleNotFound")
    })
    .await;
    assert_eq!(orphan.phase, Some(BackupPhase::Pending));
    // Waiting writes nothing more while the reason stays the same.
    let version = backups
        .get("orphan")
        .await
        .unwrap()
        .metadata
        .resource_version;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        backups
            .get("orphan")
            .await
            .unwrap()
            .metadata
            .resource_version,
        version
    );

    drop(reader);
    drop(restored);
    drop(operator);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

fn credentials_secret(name: &str, secret_key: &str) -> Secret {
    let mut secret = Secret {
        data: Some(BTreeMap::from([
            (
                "AWS_ACCESS_KEY_ID".to_owned(),
                ByteString(support::s3::ACCESS_KEY_ID.as_bytes().to_vec()),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                ByteString(secret_key.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.to_owned());
    secret
}

async fn create_backup(
    backups: &Api<ZooKeeperBackup>,
    name: &str,
    ensemble: &str,
    s3: &S3Server,
    credentials: &str,
) {
    let backup: ZooKeeperBackup = serde_json::from_value(json!({
        "apiVersion": "zooherd.dev/v1beta1",
        "kind": "ZooKeeperBackup",
        "metadata": {"name": name},
        "spec": {"ensemble": ensemble, "s3": {
            "endpoint": s3.endpoint(),
            "bucket": BUCKET,
            "prefix": "prod",
            "credentialsSecret": credentials,
        }},
    }))
    .unwrap();
    backups
        .create(&PostParams::default(), &backup)
        .await
        .unwrap();
}

async fn backup_where(
    backups: &Api<ZooKeeperBackup>,
    name: &str,
    what: &str,
    check: impl Fn(&ZooKeeperBackupStatus) -> bool,
) -> ZooKeeperBackupStatus {
    eventually_within(
        &format!("backup {name}: {what}"),
        Duration::from_secs(120),
        Duration::from_millis(250),
        || async {
            let status = backups.get(name).await.unwrap().status.unwrap_or_default();
            check(&status).then_some(status)
        },
    )
    .await
}

fn collect_files(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, found);
        } else {
            found.push(path);
        }
    }
}
