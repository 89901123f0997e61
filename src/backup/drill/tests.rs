use super::*;
use crate::api::{S3Location, ZooKeeperBackupSpec, ZooKeeperBackupStatus};
use crate::api::{ZooKeeperEnsembleStatus, validate::validate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

const UID: &str = "0d5e1c2a-77aa-4b1e-9c3f-5a6b7c8d9e0f";

fn backup(name: &str, verify: bool, status: ZooKeeperBackupStatus) -> ZooKeeperBackup {
    let mut backup = ZooKeeperBackup::new(
        name,
        ZooKeeperBackupSpec {
            ensemble: "zk".into(),
            s3: super::super::test_location(""),
            verify,
        },
    );
    backup.metadata.namespace = Some("data".into());
    backup.metadata.uid = Some(UID.into());
    backup.status = Some(status);
    backup
}

fn stored() -> ZooKeeperBackupStatus {
    ZooKeeperBackupStatus {
        phase: Some(BackupPhase::Succeeded),
        persistent_znode_count: Some(5),
        content_hash: Some("dee9a5833a4f2cf2a1fc5d99cdc827b3".into()),
        ..ZooKeeperBackupStatus::default()
    }
}

fn source() -> ZooKeeperEnsemble {
    let mut source: ZooKeeperEnsemble = serde_json::from_value(serde_json::json!({
        "apiVersion": "zooherd.dev/v1beta1",
        "kind": "ZooKeeperEnsemble",
        "metadata": {"name": "zk", "namespace": "data"},
        "spec": {
            "replicas": 5,
            "image": "registry.example/zooherd-server:3.9.4",
            "storage": {"data": {"size": "20Gi", "storageClassName": "fast"}},
            "backup": {"enabled": true, "schedule": "0 3 * * *", "keep": 3, "verify": true,
                       "s3": {"endpoint": "http://s3:9000", "bucket": "b", "credentialsSecret": "s3"}},
            "paused": true,
            "placement": {"podLabels": {"app": "kafka-zookeeper"},
                          "podAnnotations": {"example.com/team": "data"}},
        },
    }))
    .unwrap();
    source.metadata.uid = Some("source-uid".into());
    source
}

fn stored_backup_s3() -> S3Location {
    backup("nightly", true, stored()).spec.s3
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// The drill ensemble as the API server returns it, created at `created`, with `status`.
fn created(
    backup: &ZooKeeperBackup,
    created: &str,
    status: ZooKeeperEnsembleStatus,
) -> ZooKeeperEnsemble {
    let name = drill_name(backup, at(created));
    let mut drill = drill_ensemble(backup, Some(&source()), &name);
    drill.metadata.creation_timestamp = Some(Time(at(created)));
    drill.status = Some(status);
    drill
}

#[test]
fn a_drill_name_fits_the_ensemble_name_limit_and_is_new_for_each_request() {
    let now = at("2026-12-06T10:00:00Z");
    let mut short = backup("nightly", true, stored());
    let first = drill_name(&short, now);
    let suffix = first.strip_prefix("nightly-drill-").expect(&first);
    assert!(
        suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{first}"
    );
    assert_eq!(
        drill_name(&short, now),
        first,
        "the same drill, the same name"
    );
    short.annotations_mut().insert(
        DRILL_REQUESTED_ANNOTATION.into(),
        "2026-12-06T09:00:00Z".into(),
    );
    let asked = drill_name(&short, now);
    assert_ne!(asked, first, "a drill asked for by annotation");
    short.annotations_mut().insert(
        DRILL_REQUESTED_ANNOTATION.into(),
        "2026-12-06T09:30:00Z".into(),
    );
    assert_ne!(drill_name(&short, now), asked, "asked for again");
    // A request in the future is not honoured: it names no drill.
    short.annotations_mut().insert(
        DRILL_REQUESTED_ANNOTATION.into(),
        "2030-01-01T00:00:00Z".into(),
    );
    assert_eq!(drill_name(&short, now), first);
    // Another backup of the same name (deleted and created again): another drill.
    let mut again = backup("nightly", true, stored());
    again.metadata.uid = Some("another-uid".into());
    assert_ne!(drill_name(&again, now), first);

    let long = backup(&format!("{}-x", "b".repeat(60)), true, stored());
    let name = drill_name(&long, now);
    assert_eq!(name.len(), MAX_NAME_LENGTH, "{name}");
    assert!(name.contains("b-drill-"), "{name}");
    // A cut that ends on a separator does not leave it doubled.
    let cut = backup(
        &format!("{}-{}", "c".repeat(36), "d".repeat(20)),
        true,
        stored(),
    );
    let name = drill_name(&cut, now);
    assert!(
        name.starts_with(&format!("{}-drill-", "c".repeat(36))),
        "{name}"
    );
}

#[test]
fn a_drill_ensemble_restores_the_backup_on_one_server_and_goes_with_it() {
    let backup = backup("nightly", true, stored());
    let DrillStep::Create(drill) =
        next_step(&backup, &[], Some(&source()), at("2026-12-06T10:00:00Z"))
    else {
        panic!("no drill ensemble to create");
    };
    assert_eq!(
        drill.name_any(),
        drill_name(&backup, at("2026-12-06T10:00:00Z"))
    );
    assert_eq!(drill.namespace().as_deref(), Some("data"));
    assert_eq!(drill.labels()[DRILL_OF_LABEL], "nightly");
    let owner = &drill.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("ZooKeeperBackup", "nightly", UID)
    );
    let spec = &drill.spec;
    assert_eq!(spec.replicas, 1);
    assert!(!spec.paused, "a paused source does not pause its drill");
    assert_eq!(
        spec.restore.as_ref().unwrap().backup.as_deref(),
        Some("nightly")
    );
    assert_eq!(
        spec.backup,
        BackupSpec {
            enabled: true,
            ..BackupSpec::default()
        },
        "the snapshot command on; no schedule, no drill of its own"
    );
    assert!(spec.tls.quorum);
    assert_eq!(spec.storage.retention.when_deleted, RetentionPolicy::Delete);
    assert_eq!(spec.image, source().spec.image, "the source's image");
    assert_eq!(
        spec.storage.data,
        source().spec.storage.data,
        "and storage class"
    );
    // No client selecting the source's servers by their labels reaches the drill's.
    assert!(spec.placement.pod_labels.is_empty());
    assert_eq!(
        spec.placement.pod_annotations,
        source().spec.placement.pod_annotations
    );
    validate(&drill).expect("the drill ensemble is valid");
}

#[test]
fn a_drill_waits_for_its_ensemble_to_serve_then_checks_then_removes_it() {
    let backup_at = |status| backup("nightly", true, status);
    let running = backup_at(stored());
    let forming = ZooKeeperEnsembleStatus {
        phase: Some(Phase::Down),
        ..ZooKeeperEnsembleStatus::default()
    };
    let drill = created(&running, "2026-12-06T10:00:00Z", forming.clone());
    let step = next_step(
        &running,
        std::slice::from_ref(&drill),
        None,
        at("2026-12-06T10:02:00Z"),
    );
    assert!(
        matches!(&step, DrillStep::Wait(why) if why.contains(&drill.name_any()) && why.contains("phase DOWN")),
        "{step:?}"
    );
    // ACTIVE is not enough until the restore is recorded: it is what was restored from.
    let active = ZooKeeperEnsembleStatus {
        phase: Some(Phase::Active),
        ..forming.clone()
    };
    let drill = created(&running, "2026-12-06T10:00:00Z", active.clone());
    assert!(matches!(
        next_step(
            &running,
            std::slice::from_ref(&drill),
            None,
            at("2026-12-06T10:02:00Z")
        ),
        DrillStep::Wait(_)
    ));
    let serving = ZooKeeperEnsembleStatus {
        restore: Some(crate::api::RestoreStatus {
            backup: Some("nightly".into()),
            location: "s3://b/k".into(),
            s3: stored_backup_s3(),
            key: "k".into(),
            zxid: "0x100000007".into(),
            size_bytes: 100,
            sha256: "00".into(),
        }),
        ..active
    };
    let drill = created(&running, "2026-12-06T10:00:00Z", serving);
    assert!(matches!(
        next_step(
            &running,
            std::slice::from_ref(&drill),
            None,
            at("2026-12-06T10:02:00Z")
        ),
        DrillStep::Check(_)
    ));
    // Too long without serving: a verdict, naming the drill and what its ensemble says.
    let stuck = created(&running, "2026-12-06T10:00:00Z", forming);
    let DrillStep::Conclude(timed_out) = next_step(
        &running,
        std::slice::from_ref(&stuck),
        None,
        at("2026-12-06T10:16:00Z"),
    ) else {
        panic!("no verdict after the drill limit");
    };
    assert!(!timed_out.verified);
    assert_eq!(timed_out.reason, "DrillTimedOut");
    assert!(
        timed_out.message.contains("within 15 minutes"),
        "{timed_out:?}"
    );
    // A verdict recorded: the drill ensemble goes, and then nothing is left to do.
    let mut done = stored();
    done.conditions
        .push(verified_condition("True", "Restored", String::new()));
    let done = backup_at(done);
    let step = next_step(
        &done,
        std::slice::from_ref(&drill),
        None,
        at("2026-12-06T10:03:00Z"),
    );
    assert!(
        matches!(&step, DrillStep::Remove(names) if *names == [drill.name_any()]),
        "{step:?}"
    );
    // On its way: nothing more.
    let mut going = drill.clone();
    going.metadata.deletion_timestamp = Some(Time(at("2026-12-06T10:03:01Z")));
    assert!(matches!(
        next_step(&done, &[going], None, at("2026-12-06T10:03:05Z")),
        DrillStep::Nothing
    ));
    assert!(matches!(
        next_step(&done, &[], Some(&source()), at("2026-12-06T10:03:00Z")),
        DrillStep::Nothing
    ));
    // While it runs, Unknown is no verdict.
    let mut drilling = stored();
    drilling
        .conditions
        .push(verified_condition("Unknown", "Drilling", String::new()));
    assert!(matches!(
        next_step(
            &backup_at(drilling),
            std::slice::from_ref(&drill),
            None,
            at("2026-12-06T10:02:00Z")
        ),
        DrillStep::Check(_)
    ));
}

#[test]
fn no_drill_unless_asked_for_and_stored_and_never_on_someone_elses_ensemble() {
    let now = at("2026-12-06T10:00:00Z");
    let not_asked = backup("nightly", false, stored());
    assert!(matches!(
        next_step(&not_asked, &[], Some(&source()), now),
        DrillStep::Nothing
    ));
    let running = backup(
        "nightly",
        true,
        ZooKeeperBackupStatus {
            phase: Some(BackupPhase::Running),
            ..stored()
        },
    );
    assert!(matches!(
        next_step(&running, &[], Some(&source()), now),
        DrillStep::Nothing
    ));
    let stored_backup = backup("nightly", true, stored());
    // An ensemble of the drill's name that is not the backup's child.
    let mut theirs = drill_ensemble(
        &stored_backup,
        Some(&source()),
        &drill_name(&stored_backup, now),
    );
    theirs.metadata.owner_references = Some(vec![OwnerReference {
        kind: "ZooKeeperBackup".into(),
        name: "nightly".into(),
        uid: "another-uid".into(),
        api_version: "zooherd.dev/v1beta1".into(),
        ..OwnerReference::default()
    }]);
    let DrillStep::Conclude(taken) =
        next_step(&stored_backup, std::slice::from_ref(&theirs), None, now)
    else {
        panic!("a drill on another's ensemble");
    };
    assert_eq!((taken.verified, taken.reason), (false, "NameTaken"));
    let mut done = stored();
    done.conditions
        .push(verified_condition("False", "NameTaken", String::new()));
    assert!(
        matches!(
            next_step(
                &backup("nightly", true, done),
                std::slice::from_ref(&theirs),
                None,
                now
            ),
            DrillStep::Nothing
        ),
        "and never deleted"
    );
    // The source gone: a drill with a new ensemble's defaults (a restore of it would need them).
    let DrillStep::Create(orphan) = next_step(&stored_backup, &[], None, now) else {
        panic!("no drill of a backup whose ensemble is gone");
    };
    assert_eq!(orphan.spec.image, None, "the operator's default image");
    assert_eq!(orphan.spec.storage.data.storage_class_name, None);
    assert_eq!(orphan.spec.replicas, 1);
    assert_eq!(
        orphan.spec.restore.as_ref().unwrap().backup.as_deref(),
        Some("nightly")
    );
    validate(&orphan).expect("the drill ensemble is valid");
    // A backup without the hash: nothing to compare with.
    let unhashed = backup(
        "old",
        true,
        ZooKeeperBackupStatus {
            content_hash: None,
            ..stored()
        },
    );
    let DrillStep::Conclude(old) = next_step(&unhashed, &[], Some(&source()), now) else {
        panic!("a drill of an unhashed backup");
    };
    assert_eq!(old.reason, "NotHashed");
}

#[test]
fn the_verdict_compares_count_and_hash() {
    let backup = backup("nightly", true, stored());
    let same = PersistentContents {
        znodes: 5,
        hash: 0xdee9_a583_3a4f_2cf2_a1fc_5d99_cdc8_27b3,
    };
    let found = verdict(&backup, "nightly-drill-0d5e1c2a", &same, "0x200000001");
    assert!(found.verified, "{found:?}");
    assert_eq!(found.reason, "Restored");
    assert!(found.message.contains("5 persistent znodes"), "{found:?}");
    for other in [
        PersistentContents { znodes: 4, ..same },
        PersistentContents {
            hash: same.hash + 1,
            ..same
        },
    ] {
        let found = verdict(&backup, "nightly-drill-0d5e1c2a", &other, "0x200000001");
        assert!(!found.verified);
        assert_eq!(found.reason, "Mismatch");
        assert!(
            found
                .message
                .contains("the backup 5 (hash dee9a5833a4f2cf2a1fc5d99cdc827b3)"),
            "{found:?}"
        );
    }
}

/// `backup`, with a verdict reached at `when` and a drill asked for at `requested`.
fn drilled(backup: &mut ZooKeeperBackup, when: &str, requested: Option<&str>) {
    let mut verdict = verified_condition("True", "Restored", "restored".into());
    verdict.last_transition_time = Time(at(when));
    backup.status.as_mut().unwrap().conditions = vec![verdict];
    backup.annotations_mut().clear();
    if let Some(requested) = requested {
        backup
            .annotations_mut()
            .insert(DRILL_REQUESTED_ANNOTATION.into(), requested.into());
    }
}

#[test]
fn a_drill_asked_for_after_the_last_verdict_runs_again_and_keeps_that_verdict_meanwhile() {
    // Not spec.verify: the annotation alone asks (a drill schedule, or by hand).
    let mut backup = backup("nightly", false, stored());
    let now = at("2026-12-13T05:00:10Z");
    drilled(&mut backup, "2026-12-06T05:03:00Z", None);
    let old_drill = created(&backup, "2026-12-06T05:00:00Z", Default::default());
    assert!(matches!(
        next_step(&backup, &[], Some(&source()), now),
        DrillStep::Nothing
    ));
    // Asked for before the verdict: that drill answered it.
    drilled(
        &mut backup,
        "2026-12-06T05:03:00Z",
        Some("2026-12-06T05:00:00Z"),
    );
    assert!(matches!(
        next_step(&backup, std::slice::from_ref(&old_drill), None, now),
        DrillStep::Remove(_)
    ));
    // Asked for after it: a new drill.
    drilled(
        &mut backup,
        "2026-12-06T05:03:00Z",
        Some("2026-12-13T05:00:00Z"),
    );
    assert!(wanted(&backup));
    let DrillStep::Create(drill) = next_step(&backup, &[], Some(&source()), now) else {
        panic!("no new drill");
    };
    assert_ne!(
        drill.name_any(),
        old_drill.name_any(),
        "a new drill, a new ensemble: never the last one's volume or Secrets"
    );
    // The last drill's ensemble still going: no matter, the new one goes ahead.
    let mut going = old_drill.clone();
    going.metadata.deletion_timestamp = Some(Time(at("2026-12-06T05:03:01Z")));
    assert!(matches!(
        next_step(&backup, std::slice::from_ref(&going), Some(&source()), now),
        DrillStep::Create(_)
    ));
    // Not yet removed (the operator restarted after the request): removed first, not checked.
    let serving = created(&backup, "2026-12-13T05:00:05Z", Default::default());
    let step = next_step(&backup, &[old_drill.clone(), serving.clone()], None, now);
    assert!(
        matches!(&step, DrillStep::Remove(names) if *names == [old_drill.name_any()]),
        "{step:?}"
    );
    // Asked for again while it runs (a frequent drill schedule): it answers that request too,
    // its verdict coming after it, rather than starting over.
    let mut asked_again = backup.clone();
    asked_again.annotations_mut().insert(
        DRILL_REQUESTED_ANNOTATION.into(),
        "2026-12-13T05:00:08Z".into(),
    );
    assert_ne!(drill_name(&asked_again, now), serving.name_any());
    let step = next_step(&asked_again, std::slice::from_ref(&serving), None, now);
    assert!(
        matches!(&step, DrillStep::Wait(why) if why.contains(&serving.name_any())),
        "{step:?}"
    );
    // The new one deleted by hand mid-drill: wait for it to be gone.
    let mut deleted = serving;
    deleted.metadata.deletion_timestamp = Some(Time(at("2026-12-13T05:00:08Z")));
    assert!(
        matches!(next_step(&backup, std::slice::from_ref(&deleted), None, now), DrillStep::Wait(why) if why.contains("deleted mid-drill"))
    );
    // While it runs, the last verdict stays: no Unknown written over it.
    assert_eq!(progress(&backup, "restoring".into()), None);
    assert_eq!(verified(&backup), Some(true));
    // A timeout names no old verdict as the last reason.
    let stuck = created(&backup, "2026-12-13T05:00:10Z", Default::default());
    let DrillStep::Conclude(timed_out) = next_step(
        &backup,
        std::slice::from_ref(&stuck),
        None,
        at("2026-12-13T05:16:00Z"),
    ) else {
        panic!("no verdict after the drill limit");
    };
    assert!(!timed_out.message.contains("last:"), "{timed_out:?}");
    // The new verdict, reached after the request: done until asked again.
    drilled(
        &mut backup,
        "2026-12-13T05:02:30Z",
        Some("2026-12-13T05:00:00Z"),
    );
    assert!(matches!(
        next_step(&backup, &[], Some(&source()), now),
        DrillStep::Nothing
    ));
}

#[test]
fn a_first_drill_says_it_runs_once_per_reason() {
    let mut backup = backup("nightly", true, stored());
    let first = progress(&backup, "restoring into nightly-drill-0d5e1c2a".into()).unwrap();
    assert_eq!(
        (first.status.as_str(), first.reason.as_str()),
        ("Unknown", "Drilling")
    );
    backup.status.as_mut().unwrap().conditions = vec![first];
    assert_eq!(
        progress(&backup, "restoring into nightly-drill-0d5e1c2a".into()),
        None
    );
    assert!(progress(&backup, "waiting for its volume".into()).is_some());
}

#[test]
fn a_drill_request_that_is_not_a_time_is_named_and_asks_for_nothing() {
    let now = at("2026-12-06T05:10:00Z");
    let mut backup = backup("nightly", false, stored());
    assert_eq!(invalid_request(&backup, now), None);
    backup
        .annotations_mut()
        .insert(DRILL_REQUESTED_ANNOTATION.into(), "now".into());
    let problem = invalid_request(&backup, now).unwrap();
    assert!(
        problem.contains("zooherd.dev/drill-requested-at \"now\" is not an RFC 3339 time"),
        "{problem}"
    );
    assert!(!wanted(&backup));
    backup.annotations_mut().insert(
        DRILL_REQUESTED_ANNOTATION.into(),
        "2026-12-06T05:00:00Z".into(),
    );
    assert_eq!(invalid_request(&backup, now), None);
    assert!(wanted(&backup));
}

#[test]
fn a_drill_requested_in_the_future_runs_once_not_until_then() {
    let now = at("2026-12-13T05:30:00Z");
    let mut backup = backup("nightly", false, stored());
    drilled(
        &mut backup,
        "2026-12-13T05:20:00Z",
        Some("2030-01-01T00:00:00Z"),
    );
    // Every verdict is older than 2030: honoured, the request would drill for ever.
    assert!(matches!(
        next_step(&backup, &[], Some(&source()), now),
        DrillStep::Nothing
    ));
    let problem = invalid_request(&backup, now).unwrap();
    assert!(problem.contains("is in the future"), "{problem}");
    // A clock a few seconds ahead is not the future.
    drilled(
        &mut backup,
        "2026-12-13T05:20:00Z",
        Some("2026-12-13T05:30:30Z"),
    );
    assert!(matches!(
        next_step(&backup, &[], Some(&source()), now),
        DrillStep::Create(_)
    ));
    assert_eq!(invalid_request(&backup, now), None);
}
