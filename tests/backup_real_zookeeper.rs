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
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::control_plane::shared;
use support::kafka_tree::{read_tree, write_tree};
use support::kubelet::{bind_named_pod, bind_pod, mount_certificates, mount_certificates_of};
use support::operator::{
    Operator, create_ensemble, eventually, eventually_within, install_crds, phase_is, status_where,
};
use support::s3::S3Server;
use support::zookeeper::ZkEnsemble;
use zooherd::api::{
    BackupMetadata, BackupPhase, Phase, RestoreStatus, ZooKeeperBackup, ZooKeeperBackupStatus,
    ZooKeeperEnsemble,
};
use zooherd::backup::drill::{DRILL_OF_LABEL, VERIFIED};
use zooherd::backup::schedule::SCHEDULED_BY_LABEL;
use zooherd::build::names::server_host;
use zooherd::build::tls::QuorumTls;
use zookeeper_client as zk;

const BUCKET: &str = "zk-backups";

/// Issue 16, item 1 (and the restorability item 4 asks for): a ZooKeeperBackup of an ensemble
/// with backups on streams a snapshot through the TLS AdminServer to S3, with its SHA-256,
/// size and zxid in the status and in a metadata object beside it; the stored snapshot, put
/// into an empty server's data directory, serves every znode written before the backup with
/// the same data, version, zxids and ACL. A backup whose Secret holds wrong credentials is
/// refused by the store and says so naming the Secret (without costing a server a snapshot);
/// one naming no ensemble waits and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_stores_a_snapshot_that_restores_every_znode() {
    let Setup {
        cp,
        client,
        ns,
        s3,
        operator,
        ensembles,
    } = setup("backup", 3).await;
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
        // ZooKeeper allows one snapshot per server every 5 minutes; the schedule below runs
        // every 3 seconds.
        .config("admin.rateLimiterIntervalInMS", "1000")
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

    // A tree shaped like Kafka's: ACLs, sequential and ephemeral znodes, data up to 1 MB.
    let writer = zk::Client::connect(&zookeeper.connect_string())
        .await
        .expect("connecting");
    let paths = write_tree(&writer).await;
    let before = read_tree(&writer, &paths).await;

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
    // Counted and checked on the way (the snapshot's own checksums), in both places.
    assert_eq!(
        metadata.znode_count.and_then(|n| i64::try_from(n).ok()),
        status.znode_count
    );
    assert_eq!(metadata.tree_digest, status.tree_digest);
    assert!(
        status.tree_digest.is_some(),
        "ZooKeeper 3.9 writes its tree digest into snapshots: {status:?}"
    );
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
        .reconfig(&digest, 1)
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
    // Read at once, before the restored sessions expire and take their ephemeral znodes.
    let mntr = restored.admin_command(0, "mntr").await.expect("mntr");
    assert_eq!(
        mntr["znode_count"].as_f64().map(|n| n as i64 - 1),
        status.znode_count,
        "the restored server holds the znodes counted in the snapshot (its count has the root twice)"
    );
    let reader = zk::Client::connect(&restored.connect_string())
        .await
        .expect("connecting to the restored server");
    // The membership in the snapshot is the backed-up ensemble's; the restored server's
    // first leader writes its own, which is the one the operator reads and reconfigures.
    let (config, _) = reader
        .get_config()
        .await
        .expect("reading /zookeeper/config");
    let config = String::from_utf8_lossy(&config);
    assert!(
        config.contains(&format!("server.1={}", restored.member(0).host()))
            && !config.contains("server.2="),
        "the restored server's /zookeeper/config is its own: {config}"
    );
    for (path, want) in &before {
        assert_eq!(
            &support::kafka_tree::read_znode(&reader, path).await,
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

    // spec.restore: never into an existing ensemble (the API server refuses the change) ...
    let refused = ensembles
        .patch(
            "zk",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"restore": {"backup": "first"}}})),
        )
        .await
        .expect_err("spec.restore added to a running ensemble");
    assert!(
        refused
            .to_string()
            .contains(zooherd::api::validate::RESTORE_ONLY_AT_CREATION),
        "{refused}"
    );
    // ... only from a backup that succeeded: until then no server is created, and the
    // condition says why ...
    let restoring_from = |name: &str, restore: serde_json::Value| {
        serde_json::from_value::<ZooKeeperEnsemble>(json!({
            "apiVersion": "zooherd.dev/v1beta1",
            "kind": "ZooKeeperEnsemble",
            "metadata": {"name": name},
            "spec": {"replicas": 3, "restore": restore},
        }))
        .unwrap()
    };
    let restoring = |name: &str, backup: &str| restoring_from(name, json!({"backup": backup}));
    let post = PostParams::default();
    ensembles
        .create(&post, &restoring("from-nothing", "missing"))
        .await
        .unwrap();
    let waiting = condition_naming(&ensembles, "from-nothing", "spec.restore.backup").await;
    assert!(
        waiting.contains("there is no ZooKeeperBackup missing in this namespace"),
        "{waiting:?}"
    );
    // ... and from the snapshot the backup recorded: the status names it, and the servers
    // get it with the figures to check it against and the backup's credentials.
    ensembles
        .create(&post, &restoring("from-first", "first"))
        .await
        .unwrap();
    let stateful_sets = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    let (stateful_set, resolved) =
        restore_when_built(&ensembles, &stateful_sets, "from-first").await;
    assert_eq!(
        (
            resolved.backup.as_deref(),
            Some(&resolved.location),
            Some(&resolved.zxid),
            Some(resolved.size_bytes),
            Some(&resolved.sha256),
        ),
        (
            Some("first"),
            status.location.as_ref(),
            status.zxid.as_ref(),
            status.size_bytes,
            status.sha256.as_ref(),
        )
    );
    let env = stateful_set.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value.clone())
    };
    assert_eq!(value("ZOOHERD_RESTORE_KEY"), Some(key.clone()));
    assert_eq!(value("ZOOHERD_RESTORE_SHA256"), Some(sha256.clone()));
    let credentials = env
        .iter()
        .find(|v| v.name == "ZOOHERD_RESTORE_SECRET_ACCESS_KEY")
        .and_then(|v| v.value_from.clone()?.secret_key_ref)
        .expect("the secret key from the backup's Secret");
    assert_eq!(credentials.name, "s3");

    // ... or from the snapshot's place in the bucket, as after the loss of the cluster that
    // took it: the figures come from the metadata object beside it.
    let object = |key: &str| {
        json!({"object": {
            "s3": {"endpoint": s3.endpoint(), "bucket": BUCKET, "credentialsSecret": "s3"},
            "key": key,
        }})
    };
    let both = ensembles
        .create(
            &post,
            &restoring_from(
                "from-both",
                json!({"backup": "first", "object": object(&key)["object"]}),
            ),
        )
        .await
        .expect_err("a restore naming a backup and an object");
    assert!(
        both.to_string()
            .contains(zooherd::api::validate::RESTORE_NEEDS_ONE),
        "{both}"
    );
    ensembles
        .create(&post, &restoring_from("from-object", object(&key)))
        .await
        .unwrap();
    ensembles
        .create(
            &post,
            &restoring_from("from-elsewhere", object("prod/gone/zk/old-u.snapshot")),
        )
        .await
        .unwrap();
    let (_, from_object) = restore_when_built(&ensembles, &stateful_sets, "from-object").await;
    assert_eq!(
        from_object,
        RestoreStatus {
            backup: None,
            s3: from_object.s3.clone(),
            ..resolved.clone()
        },
        "the metadata object gives the figures the backup recorded"
    );
    let missing_object =
        condition_naming(&ensembles, "from-elsewhere", "spec.restore.object.key").await;
    assert!(
        missing_object.contains("there is no metadata object prod/gone/zk/old-u.json"),
        "{missing_object:?}"
    );
    assert!(
        stateful_sets
            .get_opt("from-elsewhere")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ensembles
            .get("from-nothing")
            .await
            .unwrap()
            .status
            .is_none_or(|s| s.restore.is_none())
    );
    assert!(
        stateful_sets
            .get_opt("from-nothing")
            .await
            .unwrap()
            .is_none()
    );

    // Scheduled backups: a run every 3 s, two kept; the older ones go, objects first.
    let scheduled_to = json!({
        "endpoint": s3.endpoint(),
        "bucket": BUCKET,
        "prefix": "scheduled",
        "credentialsSecret": "s3",
    });
    ensembles
        .patch(
            "zk",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"backup": {
                "schedule": "*/3 * * * * *",
                "keep": 2,
                "s3": scheduled_to,
            }}})),
        )
        .await
        .unwrap();
    let runs = || async {
        let selector = format!("{SCHEDULED_BY_LABEL}=zk");
        let mut runs: Vec<(String, ZooKeeperBackupStatus)> = backups
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|backup| {
                let status = backup.status.clone()?;
                (status.phase == Some(BackupPhase::Succeeded)).then(|| (backup.name_any(), status))
            })
            .collect();
        runs.sort_by(|a, b| a.0.cmp(&b.0));
        runs
    };
    let (oldest, oldest_status) = eventually("a scheduled backup that succeeded", || async {
        runs().await.into_iter().next()
    })
    .await;
    assert!(oldest.starts_with("zk-"), "{oldest}");
    let oldest_key = oldest_status
        .location
        .as_deref()
        .and_then(|l| l.strip_prefix(&format!("s3://{BUCKET}/")))
        .expect("a location in the bucket")
        .to_owned();
    assert!(s3.object_file(BUCKET, &oldest_key).exists());
    let kept = eventually_within(
        "the oldest scheduled backup pruned, with its objects",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let runs = runs().await;
            let gone = backups.get_opt(&oldest).await.unwrap().is_none()
                && !s3.object_file(BUCKET, &oldest_key).exists()
                && !s3
                    .object_file(BUCKET, &oldest_key.replace(".snapshot", ".json"))
                    .exists();
            (gone && runs.len() <= 2).then_some(runs)
        },
    )
    .await;
    println!(
        "scheduled: {oldest} pruned; kept {:?}",
        kept.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    // Backups made by hand are never pruned.
    assert!(backups.get_opt("first").await.unwrap().is_some());
    // The latest run due is exported, for the missed-backup alert; and goes with the schedule.
    let run_series = format!(
        "zooherd_backup_last_scheduled_run_timestamp_seconds{{namespace=\"{ns}\",name=\"zk\"}}"
    );
    let metrics = operator.metrics().await;
    let exported: i64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{run_series} ")))
        .unwrap_or_else(|| panic!("no {run_series} in {metrics}"))
        .parse()
        .unwrap();
    let newest_run = kept
        .iter()
        .filter_map(|(name, _)| name.strip_prefix("zk-"))
        .max()
        .unwrap()
        .to_owned();
    let exported = jiff::Timestamp::from_second(exported).unwrap();
    assert!(
        exported.strftime("%Y%m%d-%H%M%S").to_string() >= newest_run,
        "{exported} before the newest kept run {newest_run}"
    );
    ensembles
        .patch(
            "zk",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"backup": {"schedule": null}}})),
        )
        .await
        .unwrap();
    eventually(
        "the scheduled-run series gone with the schedule",
        || async { (!operator.metrics().await.contains(&run_series)).then_some(()) },
    )
    .await;

    // A deleted ensemble's backup series go with it, and its backups, which outlive it, do
    // not bring them back when the operator restarts and sees every backup again; an ensemble
    // that exists gets its series back.
    let success_series = |name: &str| {
        format!(
            "zooherd_backup_last_success_timestamp_seconds{{namespace=\"{ns}\",name=\"{name}\"}}"
        )
    };
    ensembles.delete("zk", &Default::default()).await.unwrap();
    eventually("zk's backup series gone with it", || async {
        (!operator.metrics().await.contains(&success_series("zk"))).then_some(())
    })
    .await;
    drop(operator);
    create_backup(&backups, "of-from-first", "from-first", &s3, "s3").await;
    let stored = json!({"status": {
        "phase": "Succeeded",
        "completedAt": "2026-01-02T03:04:05Z",
        "conditions": [],
    }});
    backups
        .patch_status(
            "of-from-first",
            &PatchParams::default(),
            &Patch::Merge(stored),
        )
        .await
        .unwrap();
    let operator = Operator::start(cp, &ns);
    eventually(
        "the backup series of an ensemble that exists, after a restart",
        || async {
            let metrics = operator.try_metrics().await.ok()?;
            metrics
                .contains(&success_series("from-first"))
                .then_some(())
        },
    )
    .await;
    // Backups are reconciled in no particular order: give zk's a moment more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = operator.metrics().await;
    assert!(
        !metrics.contains(&success_series("zk")),
        "the deleted ensemble's series came back: {metrics}"
    );

    drop(reader);
    drop(restored);
    drop(operator);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// Issue 16, item 3: a backup with `spec.verify` is restored into a throwaway one-server
/// ensemble, whose snapshot the operator compares with the backup's persistent znodes: Verified
/// True (the operator restarted mid-drill), and the drill ensemble deleted. The ensemble's
/// `drillSchedule` drills it again in a new drill ensemble, the first verdict kept until the
/// new one. A drill whose restored server does not hold the backup's tree (here: started from
/// an older snapshot, as a restore that silently lost writes would be) is Verified False,
/// naming both counts. The ephemeral znodes of the Kafka-shaped tree, which a restored server
/// expires, do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_drill_proves_a_backup_restores_and_catches_one_that_does_not() {
    let Setup {
        cp,
        client,
        ns,
        s3,
        operator,
        ensembles,
    } = setup("drill", 1).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &credentials_secret("s3", support::s3::SECRET_ACCESS_KEY),
        )
        .await
        .unwrap();
    // The kubelet's part, for the ensemble `name` with `myids` servers; `snapshot`: the file a
    // restore puts into the data directory.
    let start = |name: String, snapshot: Option<(String, Vec<u8>)>| {
        let (secrets, pods, ns) = (secrets.clone(), pods.clone(), ns.clone());
        async move {
            let superuser = eventually(&format!("{name}: the superuser Secret"), || async {
                secrets
                    .get_opt(&format!("{name}-zooherd-superuser"))
                    .await
                    .unwrap()
            })
            .await;
            let digest = String::from_utf8(superuser.data.unwrap()["digest"].0.clone()).unwrap();
            eventually(&format!("{name}: the quorum TLS Secret"), || async {
                secrets
                    .get_opt(&format!("{name}-zooherd-tls"))
                    .await
                    .unwrap()
            })
            .await;
            let (host_name, host_ns) = (name.clone(), ns.clone());
            let mut zookeeper = ZkEnsemble::builder(1)
                .hostnames(move |myid| {
                    server_host(&host_name, &host_ns, u32::from(myid) - 1, "cluster.local")
                })
                .reconfig(&digest, 1)
                .config("admin.snapshot.enabled", "true")
                .config("admin.restore.enabled", "false")
                .config("admin.rateLimiterIntervalInMS", "1000")
                .prepare()
                .expect("preparing ZooKeeper");
            if let Some((zxid, bytes)) = snapshot {
                let version_2 = zookeeper.member(0).data_dir().join("version-2");
                std::fs::create_dir_all(&version_2).unwrap();
                let zxid = zxid.trim_start_matches("0x");
                std::fs::write(version_2.join(format!("snapshot.{zxid}")), bytes).unwrap();
            }
            let tls_dir = zookeeper.dir().join("tls");
            mount_certificates_of(&secrets, &name, &tls_dir, &mut zookeeper).await;
            zookeeper
                .configure_quorum_tls(0, QuorumTls::On, &tls_dir)
                .unwrap();
            zookeeper.start_member(0).unwrap();
            zookeeper
                .wait_for_quorum(Duration::from_secs(90))
                .await
                .expect("a serving server");
            bind_named_pod(&pods, &format!("{name}-0"), zookeeper.member(0).ip()).await;
            zookeeper
        }
    };
    let source = start("zk".to_owned(), None).await;
    status_where(&ensembles, "ACTIVE", phase_is(Phase::Active)).await;
    // A Kafka-shaped tree, ephemeral znodes among them, whose session stays open.
    let writer = zk::Client::connect(&source.connect_string())
        .await
        .expect("connecting");
    write_tree(&writer).await;

    let backups = Api::<ZooKeeperBackup>::namespaced(client.clone(), &ns);
    let drilled = |name: &str| {
        serde_json::from_value::<ZooKeeperBackup>(json!({
            "apiVersion": "zooherd.dev/v1beta1",
            "kind": "ZooKeeperBackup",
            "metadata": {"name": name},
            "spec": {"ensemble": "zk", "verify": true, "s3": {
                "endpoint": s3.endpoint(),
                "bucket": BUCKET,
                "prefix": "drills",
                "credentialsSecret": "s3",
            }},
        }))
        .unwrap()
    };
    let started = std::time::Instant::now();
    backups
        .create(&PostParams::default(), &drilled("checked"))
        .await
        .unwrap();
    let stored = backup_where(&backups, "checked", "Succeeded", |s| {
        s.phase == Some(BackupPhase::Succeeded)
    })
    .await;
    let persistent = stored.persistent_znode_count.expect("persistentZnodeCount");
    assert!(
        persistent > 100 && Some(persistent) < stored.znode_count,
        "the tree's persistent znodes, fewer than all: {stored:?}"
    );
    let key = stored.location.clone().unwrap();
    let key = key.strip_prefix(&format!("s3://{BUCKET}/")).unwrap();
    let metadata: BackupMetadata = serde_json::from_slice(
        &std::fs::read(s3.object_file(BUCKET, &key.replace(".snapshot", ".json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            metadata.persistent_znode_count,
            metadata.content_hash.as_ref()
        ),
        (u64::try_from(persistent).ok(), stored.content_hash.as_ref())
    );
    let snapshot = std::fs::read(s3.object_file(BUCKET, key)).unwrap();

    // The operator's drill ensemble: one server, restoring this backup, the backup's child.
    let drill = drill_of(&backups, &ensembles, "checked").await;
    let drill_name = drill.name_any();
    assert_eq!(drill.spec.replicas, 1);
    assert_eq!(drill.labels()[DRILL_OF_LABEL], "checked");
    assert_eq!(
        drill
            .spec
            .restore
            .as_ref()
            .and_then(|r| r.backup.as_deref()),
        Some("checked")
    );
    // The operator restarts mid-drill: the next one finds the drill where it was, from what
    // it reads (the drill ensemble of the backup's name, no verdict yet).
    drop(operator);
    let operator = Operator::start(cp, &ns);
    // The kubelet starts its server as the restore does: from the stored snapshot.
    let restored = start(
        drill_name.clone(),
        Some((stored.zxid.clone().unwrap(), snapshot.clone())),
    )
    .await;
    let verified = verified_condition(&backups, "checked").await;
    println!("drill verdict {:?} after {:?}", verified, started.elapsed());
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("True", "Restored"),
        "{verified:?}"
    );
    assert!(
        verified
            .message
            .contains(&format!("{persistent} persistent znodes")),
        "{verified:?}"
    );
    deleted(&ensembles, &drill_name).await;
    let series = format!(
        "zooherd_backup_last_verified_timestamp_seconds{{namespace=\"{ns}\",name=\"zk\"}} {}\n",
        stored.completed_at.as_ref().unwrap().0.as_second()
    );
    let metrics = operator.metrics().await;
    assert!(metrics.contains(&series), "no {series} in {metrics}");
    // The backup's own condition stays beside the verdict.
    let conditions = backups
        .get("checked")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions;
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == zooherd::backup::COMPLETE && c.status == "True"),
        "{conditions:?}"
    );
    drop(restored);

    // A drill schedule asks for the newest successful backup to be drilled again: a new drill
    // ensemble, the last verdict kept meanwhile, then the new verdict in its place.
    let patch_drill_schedule = |schedule: serde_json::Value| {
        let ensembles = ensembles.clone();
        async move {
            ensembles
                .patch(
                    "zk",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"backup": {"drillSchedule": schedule}}})),
                )
                .await
                .unwrap();
        }
    };
    // Every two seconds: a run in the second of the last verdict is answered by it.
    patch_drill_schedule(json!("*/2 * * * * *")).await;
    let redrill = drill_of(&backups, &ensembles, "checked").await;
    patch_drill_schedule(serde_json::Value::Null).await;
    let redrill_name = redrill.name_any();
    assert_ne!(
        redrill_name, drill_name,
        "a drill of its own, never the last one's volume or Secrets"
    );
    let meanwhile = verified_condition(&backups, "checked").await;
    assert_eq!(
        meanwhile, verified,
        "the last verdict stays while the drill runs"
    );
    let restored = start(
        redrill_name.clone(),
        Some((stored.zxid.clone().unwrap(), snapshot.clone())),
    )
    .await;
    let again = eventually("checked: the new verdict", || async {
        let condition = verified_condition(&backups, "checked").await;
        (condition.last_transition_time != verified.last_transition_time).then_some(condition)
    })
    .await;
    let requested =
        zooherd::backup::drill::drill_requested_at(&backups.get("checked").await.unwrap())
            .expect("the schedule's request");
    assert!(
        again.last_transition_time.0 >= requested,
        "{again:?} {requested}"
    );
    println!("scheduled drill verdict {again:?} (asked for at {requested})");
    assert_eq!(
        (again.status.as_str(), again.reason.as_str()),
        ("True", "Restored")
    );
    deleted(&ensembles, &redrill_name).await;
    drop(restored);

    // Writes after the first backup; the second's drill server starts from the first's
    // snapshot, so it lacks them.
    writer
        .create(
            "/drill-later",
            b"x",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    backups
        .create(&PostParams::default(), &drilled("lossy"))
        .await
        .unwrap();
    backup_where(&backups, "lossy", "Succeeded", |s| {
        s.phase == Some(BackupPhase::Succeeded)
    })
    .await;
    let lossy_drill = drill_of(&backups, &ensembles, "lossy").await.name_any();
    let wrong = start(
        lossy_drill.clone(),
        Some((stored.zxid.clone().unwrap(), snapshot)),
    )
    .await;
    let refuted = verified_condition(&backups, "lossy").await;
    println!("lossy drill verdict {refuted:?}");
    assert_eq!(
        (refuted.status.as_str(), refuted.reason.as_str()),
        ("False", "Mismatch"),
        "{refuted:?}"
    );
    assert!(
        refuted
            .message
            .contains(&format!("its server holds {persistent} persistent znodes"))
            && refuted
                .message
                .contains(&format!("the backup {}", persistent + 1)),
        "{refuted:?}"
    );
    deleted(&ensembles, &lossy_drill).await;
    let drilled =
        format!("zooherd_backup_last_drill_verified{{namespace=\"{ns}\",name=\"zk\"}} 0\n");
    let metrics = operator.metrics().await;
    assert!(metrics.contains(&drilled), "no {drilled} in {metrics}");

    drop(wrong);
    drop(writer);
    drop(source);
    drop(operator);
    cp.delete_namespace(&client, &ns).await.unwrap();
}

/// The drill ensemble of the backup `name`, once the operator has created it.
async fn drill_of(
    backups: &Api<ZooKeeperBackup>,
    ensembles: &Api<ZooKeeperEnsemble>,
    name: &str,
) -> ZooKeeperEnsemble {
    let backup = backups.get(name).await.unwrap();
    let selector = format!("{DRILL_OF_LABEL}={name}");
    eventually(&format!("{name}: the drill ensemble"), || async {
        let drills = ensembles
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap();
        drills.items.into_iter().find(|drill| {
            drill.metadata.deletion_timestamp.is_none()
                && drill.owner_references()[0].uid == backup.uid().unwrap()
        })
    })
    .await
}

/// Waits until the ensemble `name` is gone.
async fn deleted(ensembles: &Api<ZooKeeperEnsemble>, name: &str) {
    eventually(&format!("{name} deleted"), || async {
        ensembles
            .get_opt(name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

/// The backup's `Verified` condition once it has a verdict (True or False).
async fn verified_condition(
    backups: &Api<ZooKeeperBackup>,
    name: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    eventually_within(
        &format!("backup {name}: a drill verdict"),
        Duration::from_secs(180),
        Duration::from_millis(250),
        || async {
            let status = backups.get(name).await.unwrap().status.unwrap_or_default();
            status
                .conditions
                .into_iter()
                .find(|c| c.type_ == VERIFIED && c.status != "Unknown")
        },
    )
    .await
}

/// A namespace with an S3 server, the operator, and the ensemble `zk` of `replicas` servers
/// with backups on (its servers not started).
struct Setup {
    cp: &'static support::control_plane::ControlPlane,
    client: kube::Client,
    ns: String,
    s3: S3Server,
    operator: Operator,
    ensembles: Api<ZooKeeperEnsemble>,
}

async fn setup(namespace: &str, replicas: usize) -> Setup {
    let cp = shared();
    install_crds(cp);
    let client = cp.client().await;
    let ns = cp.create_namespace(&client, namespace).await.unwrap();
    let s3 = S3Server::start(&[BUCKET]).expect("starting s3s-fs");
    let operator = Operator::start(cp, &ns);
    let ensembles = create_ensemble(
        &client,
        &ns,
        json!({"replicas": replicas, "backup": {"enabled": true}}),
    )
    .await;
    Setup {
        cp,
        client,
        ns,
        s3,
        operator,
        ensembles,
    }
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

/// Ensemble `name`'s StatefulSet once it exists, and the restore its status had resolved by
/// then (the operator writes status.restore before it builds anything).
async fn restore_when_built(
    ensembles: &Api<ZooKeeperEnsemble>,
    stateful_sets: &Api<StatefulSet>,
    name: &str,
) -> (StatefulSet, RestoreStatus) {
    let stateful_set = eventually(&format!("{name}: the StatefulSet"), || async {
        stateful_sets.get_opt(name).await.unwrap()
    })
    .await;
    let restore = ensembles
        .get(name)
        .await
        .unwrap()
        .status
        .and_then(|s| s.restore)
        .expect("status.restore before the StatefulSet");
    (stateful_set, restore)
}

/// The message of the first condition of ensemble `name` that names `field`, once there is one.
async fn condition_naming(ensembles: &Api<ZooKeeperEnsemble>, name: &str, field: &str) -> String {
    eventually(&format!("{name}: a condition naming {field}"), || async {
        let status = ensembles.get(name).await.unwrap().status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.message.contains(field))
            .map(|c| c.message)
    })
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
