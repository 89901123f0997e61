//! What `validate` accepts and refuses, and that every message names the field and the fix.

use serde_json::{Value, json};

use super::*;

fn ensemble(name: &str, spec: Value) -> ZooKeeperEnsemble {
    ZooKeeperEnsemble::new(name, serde_json::from_value(spec).expect("a valid spec"))
}

fn validate_spec(spec: Value) -> Result<(), ValidationError> {
    validate(&ensemble("zk", spec)).map(|_| ())
}

#[test]
fn accepts_sound_ensembles() {
    let cases = [
        json!({}),
        json!({"replicas": 1}),
        json!({"replicas": 255}),
        json!({"config": {"tickTime": "3000", "autopurge.purgeInterval": "24", "maxClientCnxns": "0"}}),
        json!({"storage": {"data": {"size": "1Mi"}, "transactionLog": {"size": "1.5Gi"}}}),
        json!({"jvm": {"heap": "1Gi"}, "resources": {"limits": {"memory": "2Gi"}}}),
        json!({"jvm": {"heap": "16Mi"}}),
        json!({"jvm": {"heapPercent": 75}, "resources": {"limits": {"memory": "2G"}}}),
        json!({"jvm": {"extraOptions": ["-XX:+UseG1GC", "-Xss512k", "-Xmn128m"]}}),
        // System properties of ZooKeeper's own that the operator does not manage.
        json!({"jvm": {"extraOptions": ["-Dzookeeper.snapCount=50000", "-Dzookeeper.server.realm=EXAMPLE.COM", "-Dzookeeper.adminx=1"]}}),
        // With no heap setting, extra options may size the heap themselves.
        json!({"jvm": {"extraOptions": ["-Xmx1g", "-Xms1g"]}}),
        json!({"resources": {"limits": {"cpu": "2", "memory": "4Gi"}}}),
    ];
    for spec in cases {
        assert_eq!(validate_spec(spec.clone()), Ok(()), "{spec}");
    }
}

#[test]
fn names_must_fit_kubernetes_limits() {
    let longest = "z".repeat(MAX_NAME_LENGTH);
    let too_long = "z".repeat(MAX_NAME_LENGTH + 1);
    let not_label = |name: &str| {
        Err(ValidationError::NameNotDnsLabel {
            name: name.to_owned(),
        })
    };
    let cases = [
        ("zk", Ok(())),
        ("kafka-zk-2", Ok(())),
        (longest.as_str(), Ok(())),
        (
            too_long.as_str(),
            Err(ValidationError::NameTooLong {
                name: too_long.clone(),
                length: 53,
            }),
        ),
        ("", not_label("")),
        ("1zk", not_label("1zk")),
        ("zk-", not_label("zk-")),
        ("zk.prod", not_label("zk.prod")),
        ("ZK", not_label("ZK")),
    ];
    for (name, want) in cases {
        assert_eq!(
            validate(&ensemble(name, json!({}))).map(|_| ()),
            want,
            "{name:?}"
        );
    }
}

/// The API server refuses what [`validate`] refuses, by the same constant.
#[test]
fn the_crd_limits_the_name_to_the_same_length() {
    let crd = serde_json::to_value(&crate::api::crds()[0]).unwrap();
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let rules = root["x-kubernetes-validations"]
        .as_array()
        .expect("rules at the root");
    let rule = rules
        .iter()
        .find(|r| r["rule"].as_str().unwrap().contains("metadata.name"))
        .expect("a rule on metadata.name");
    assert_eq!(
        rule["rule"],
        format!("self.metadata.name.size() <= {MAX_NAME_LENGTH}")
    );
    let message = rule["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "metadata.name must be at most {MAX_NAME_LENGTH} characters long"
        )),
        "{message}"
    );
}

#[test]
fn longest_name_fits_pod_and_service_names() {
    let name = "z".repeat(MAX_NAME_LENGTH);
    let longest_pod = format!("{name}-254");
    let headless = format!("{name}-headless");
    assert!(longest_pod.len() <= 63 && headless.len() <= 63);
    // controller-revision-hash label: "<name>-" plus a hash of up to 10 characters.
    assert!(name.len() + 1 + 10 <= 63);
}

#[test]
fn rejects_specs_the_servers_cannot_run_on() {
    use ValidationError as E;
    let quantity = |field, value: &str, reason| E::InvalidQuantity {
        field,
        value: value.to_owned(),
        reason,
    };
    let cases = [
        (
            json!({"replicas": 0}),
            E::ReplicasOutOfRange { replicas: 0 },
        ),
        (
            json!({"replicas": 256}),
            E::ReplicasOutOfRange { replicas: 256 },
        ),
        (
            json!({"replicas": -1}),
            E::ReplicasOutOfRange { replicas: -1 },
        ),
        (
            json!({"config": {"dataDir": "/x", "server.1": "h:1:2", "tickTime": "1"}}),
            E::OwnedConfigKeys {
                keys: vec!["dataDir".to_owned(), "server.1".to_owned()],
            },
        ),
        (
            json!({"config": {"bad key": "1"}}),
            E::InvalidConfigKey {
                key: "bad key".to_owned(),
            },
        ),
        (
            json!({"config": {"tickTime": "2000\nserver.9=x"}}),
            E::MultiLineConfigValue {
                key: "tickTime".to_owned(),
            },
        ),
        (
            json!({"storage": {"data": {"size": "ten gigs"}}}),
            quantity(
                "spec.storage.data.size",
                "ten gigs",
                QuantityError::Malformed,
            ),
        ),
        (
            json!({"storage": {"data": {"size": "0"}}}),
            E::QuantityTooSmall {
                field: "spec.storage.data.size",
                value: "0".to_owned(),
                minimum: "1Mi",
            },
        ),
        (
            json!({"storage": {"transactionLog": {"size": "-1Gi"}}}),
            quantity(
                "spec.storage.transactionLog.size",
                "-1Gi",
                QuantityError::Negative,
            ),
        ),
        (
            json!({"jvm": {"heap": "1 GB"}}),
            quantity("spec.jvm.heap", "1 GB", QuantityError::Malformed),
        ),
        (
            json!({"jvm": {"heap": "1Mi"}}),
            E::QuantityTooSmall {
                field: "spec.jvm.heap",
                value: "1Mi".to_owned(),
                minimum: "16Mi",
            },
        ),
        (
            json!({"resources": {"limits": {"memory": "lots"}}}),
            quantity(
                "spec.resources.limits.memory",
                "lots",
                QuantityError::Malformed,
            ),
        ),
        (
            json!({"jvm": {"heap": "2Gi"}, "resources": {"limits": {"memory": "2Gi"}}}),
            E::HeapNotBelowMemoryLimit {
                heap: "2Gi".to_owned(),
                limit: "2Gi".to_owned(),
            },
        ),
        (
            json!({"jvm": {"heap": "1G"}, "resources": {"limits": {"memory": "900Mi"}}}),
            E::HeapNotBelowMemoryLimit {
                heap: "1G".to_owned(),
                limit: "900Mi".to_owned(),
            },
        ),
        (
            json!({"jvm": {"heapPercent": 50}}),
            E::HeapPercentWithoutMemoryLimit,
        ),
        (
            json!({"jvm": {"heapPercent": 50}, "resources": {"requests": {"memory": "1Gi"}}}),
            E::HeapPercentWithoutMemoryLimit,
        ),
        (
            json!({"jvm": {"heap": "1Gi", "heapPercent": 50}}),
            E::HeapAndHeapPercent,
        ),
        (
            json!({"jvm": {"heap": "1Gi", "extraOptions": ["-XX:+UseG1GC", "-Xmx2g"]}}),
            E::ExtraOptionSizesHeap {
                option: "-Xmx2g".to_owned(),
                setting: "heap",
            },
        ),
        (
            json!({"jvm": {"heapPercent": 40, "extraOptions": ["-XX:MaxRAMPercentage=80"]},
                   "resources": {"limits": {"memory": "1Gi"}}}),
            E::ExtraOptionSizesHeap {
                option: "-XX:MaxRAMPercentage=80".to_owned(),
                setting: "heapPercent",
            },
        ),
        (
            json!({"jvm": {"heap": "1Gi", "extraOptions": ["-Xms512m"]}}),
            E::ExtraOptionSizesHeap {
                option: "-Xms512m".to_owned(),
                setting: "heap",
            },
        ),
        (
            json!({"jvm": {"extraOptions": ["-Dfoo=a b"]}}),
            E::ExtraOptionNotOneWord {
                option: "-Dfoo=a b".to_owned(),
            },
        ),
        (
            json!({"jvm": {"extraOptions": [""]}}),
            E::ExtraOptionNotOneWord {
                option: String::new(),
            },
        ),
        (
            json!({"config": {"admin.snapshot.enabled": "true"}}),
            E::OwnedConfigKeys {
                keys: vec!["admin.snapshot.enabled".to_owned()],
            },
        ),
        (
            json!({"config": {"admin.restore.enabled": "true", "tickTime": "2000"}}),
            E::OwnedConfigKeys {
                keys: vec!["admin.restore.enabled".to_owned()],
            },
        ),
        (
            json!({"jvm": {"extraOptions": ["-XX:+UseG1GC", "-Dzookeeper.admin.snapshot.enabled=true"]}}),
            E::ExtraOptionSetsOwnedProperty {
                option: "-Dzookeeper.admin.snapshot.enabled=true".to_owned(),
                key: "zookeeper.admin.snapshot.enabled".to_owned(),
            },
        ),
        (
            json!({"jvm": {"extraOptions": ["-Dzookeeper.admin.restore.enabled"]}}),
            E::ExtraOptionSetsOwnedProperty {
                option: "-Dzookeeper.admin.restore.enabled".to_owned(),
                key: "zookeeper.admin.restore.enabled".to_owned(),
            },
        ),
        (
            json!({"jvm": {"heap": "1Gi", "extraOptions": ["-Dzookeeper.admin.serverPort=9090"]}}),
            E::ExtraOptionSetsOwnedProperty {
                option: "-Dzookeeper.admin.serverPort=9090".to_owned(),
                key: "zookeeper.admin.serverPort".to_owned(),
            },
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(validate_spec(spec.clone()), Err(want), "{spec}");
    }
}

#[test]
fn messages_name_the_field_and_the_fix() {
    use ValidationError as E;
    // (error, field it must name, fix it must suggest)
    let cases = [
        (
            E::NameTooLong {
                name: "x".repeat(60),
                length: 60,
            },
            "metadata.name",
            "shorter name",
        ),
        (
            E::NameNotDnsLabel {
                name: "a.b".to_owned(),
            },
            "metadata.name",
            "create the ensemble under such a name",
        ),
        (
            E::ReplicasOutOfRange { replicas: 0 },
            "spec.replicas",
            "use an odd number",
        ),
        (
            E::OwnedConfigKeys {
                keys: vec!["dataDir".to_owned(), "clientPort".to_owned()],
            },
            "spec.config: dataDir, clientPort",
            "remove them",
        ),
        (
            E::InvalidConfigKey {
                key: "a b".to_owned(),
            },
            "spec.config key \"a b\"",
            "use letters",
        ),
        (
            E::MultiLineConfigValue {
                key: "tickTime".to_owned(),
            },
            "spec.config.tickTime",
            "remove the line break",
        ),
        (
            E::InvalidQuantity {
                field: "spec.jvm.heap",
                value: "1 GB".to_owned(),
                reason: QuantityError::Malformed,
            },
            "spec.jvm.heap \"1 GB\"",
            "such as \"10Gi\"",
        ),
        (
            E::QuantityTooSmall {
                field: "spec.storage.data.size",
                value: "0".to_owned(),
                minimum: "1Mi",
            },
            "spec.storage.data.size",
            "at least 1Mi",
        ),
        (
            E::HeapAndHeapPercent,
            "spec.jvm",
            "either heap or heapPercent",
        ),
        (
            E::HeapNotBelowMemoryLimit {
                heap: "2Gi".to_owned(),
                limit: "1Gi".to_owned(),
            },
            "spec.resources.limits.memory",
            "lower the heap",
        ),
        (
            E::HeapPercentWithoutMemoryLimit,
            "spec.jvm.heapPercent",
            "set a memory limit",
        ),
        (
            E::ExtraOptionSizesHeap {
                option: "-Xmx1g".to_owned(),
                setting: "heap",
            },
            "spec.jvm.extraOptions \"-Xmx1g\"",
            "remove the option or the heap setting",
        ),
        (
            E::ExtraOptionNotOneWord {
                option: "a b".to_owned(),
            },
            "spec.jvm.extraOptions",
            "its own list item",
        ),
        (
            E::ExtraOptionSetsOwnedProperty {
                option: "-Dzookeeper.admin.snapshot.enabled=true".to_owned(),
                key: "zookeeper.admin.snapshot.enabled".to_owned(),
            },
            "spec.jvm.extraOptions \"-Dzookeeper.admin.snapshot.enabled=true\" sets the system property zookeeper.admin.snapshot.enabled",
            "remove the option",
        ),
    ];
    for (error, field, fix) in cases {
        let message = error.to_string();
        assert!(message.contains(field), "{message:?} names {field}");
        assert!(message.contains(fix), "{message:?} says {fix}");
    }
}

#[test]
fn quantities_parse_as_bytes() {
    let cases = [
        ("0", Ok(0)),
        ("1", Ok(1)),
        ("+1", Ok(1)),
        ("-0", Ok(0)),
        ("10Gi", Ok(10 << 30)),
        ("512Mi", Ok(512 << 20)),
        ("1.5Gi", Ok(1536 << 20)),
        ("1Ki", Ok(1024)),
        ("2Ti", Ok(2 << 40)),
        ("1Pi", Ok(1 << 50)),
        ("1Ei", Ok(1 << 60)),
        ("1k", Ok(1_000)),
        ("1M", Ok(1_000_000)),
        ("1G", Ok(1_000_000_000)),
        ("1T", Ok(1_000_000_000_000)),
        ("1P", Ok(1_000_000_000_000_000)),
        ("1E", Ok(1_000_000_000_000_000_000)),
        ("1e3", Ok(1_000)),
        ("1E3", Ok(1_000)),
        ("12e+2", Ok(1_200)),
        ("15e-1", Ok(2)),
        ("1500m", Ok(2)),
        ("1000m", Ok(1)),
        ("1n", Ok(1)),
        ("1u", Ok(1)),
        (".5Ki", Ok(512)),
        ("5.", Ok(5)),
        ("0.1", Ok(1)),
        ("1e-99999", Ok(1)),
        ("", Err(QuantityError::Malformed)),
        ("Gi", Err(QuantityError::Malformed)),
        (".", Err(QuantityError::Malformed)),
        ("1..2", Err(QuantityError::Malformed)),
        ("1.2.3", Err(QuantityError::Malformed)),
        ("1 Gi", Err(QuantityError::Malformed)),
        ("1gi", Err(QuantityError::Malformed)),
        ("1GB", Err(QuantityError::Malformed)),
        ("1e", Err(QuantityError::Malformed)),
        ("1e+", Err(QuantityError::Malformed)),
        ("1e1.5", Err(QuantityError::Malformed)),
        ("0x10", Err(QuantityError::Malformed)),
        ("-1", Err(QuantityError::Negative)),
        ("-1Gi", Err(QuantityError::Negative)),
        ("8Ei", Err(QuantityError::TooLarge)),
        ("1e19", Err(QuantityError::TooLarge)),
        ("1e99999", Err(QuantityError::TooLarge)),
        (
            "99999999999999999999999999999999999999999",
            Err(QuantityError::TooLarge),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(quantity_bytes(&Quantity(text.to_owned())), want, "{text:?}");
    }
}

#[test]
fn config_keys_are_plain_property_names() {
    let cases = [
        ("tickTime", true),
        ("autopurge.purgeInterval", true),
        ("4lw.commands.whitelist", true),
        ("ssl.quorum.keyStore_location-x", true),
        ("", false),
        (".hidden", false),
        ("-x", false),
        ("a b", false),
        ("a=b", false),
        ("a:b", false),
        ("#x", false),
        ("a\\b", false),
        ("tické", false),
    ];
    for (key, want) in cases {
        assert_eq!(is_config_key(key), want, "{key:?}");
    }
}

#[test]
fn heap_sizing_options_are_recognised() {
    let cases = [
        ("-Xmx1g", true),
        ("-Xms512m", true),
        ("-XX:MaxHeapSize=1g", true),
        ("-XX:InitialHeapSize=1g", true),
        ("-XX:MaxRAMPercentage=75", true),
        ("-XX:InitialRAMPercentage=75", true),
        ("-XX:MinRAMPercentage=75", true),
        ("-XX:MaxRAM=4g", true),
        ("-Xss1m", false),
        ("-Xmn256m", false),
        ("-XX:+UseG1GC", false),
        ("-Dzookeeper.snapCount=1000", false),
    ];
    for (option, want) in cases {
        assert_eq!(sizes_heap(option), want, "{option}");
    }
}

#[test]
fn validation_returns_the_parsed_numbers() {
    let parsed = |spec: Value| {
        let zk = ensemble("zk", spec);
        let valid = validate(&zk).expect("a valid spec");
        assert!(std::ptr::eq(valid.ensemble, &zk));
        (i32::from(valid.replicas), valid.heap, valid.memory_limit)
    };
    let limit = |memory: &str| json!({"limits": {"memory": memory}});
    let unset = JvmHeap::Unset {
        sized_by_options: false,
    };
    let cases = [
        (json!({}), (3, unset, None)),
        (
            json!({"replicas": 5, "jvm": {"heap": "1Gi"}, "resources": limit("2Gi")}),
            (5, JvmHeap::Fixed(1 << 30), Some(2 << 30)),
        ),
        (
            json!({"replicas": 1, "jvm": {"heapPercent": 75}, "resources": limit("2G")}),
            (1, JvmHeap::ShareOfLimit(75), Some(2_000_000_000)),
        ),
        (
            json!({"replicas": 255, "resources": limit("1.5Gi")}),
            (255, unset, Some(3 << 29)),
        ),
        (
            json!({"jvm": {"extraOptions": ["-XX:+UseG1GC", "-Xmx1g"]}}),
            (
                3,
                JvmHeap::Unset {
                    sized_by_options: true,
                },
                None,
            ),
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(parsed(spec.clone()), want, "{spec}");
    }
}

#[test]
fn network_policy_peers_must_be_ones_a_network_policy_takes() {
    let accepted = [
        json!({"networkPolicy": {"enabled": false}}),
        json!({"networkPolicy": {"clientFrom": [{"podSelector": {}}]}}),
        json!({"networkPolicy": {"clientFrom": [
            {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {"role": "client"}}},
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
            {"ipBlock": {"cidr": "fd00::/8"}},
        ]}}),
        json!({"networkPolicy": {"metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}}),
    ];
    for spec in accepted {
        assert_eq!(validate_spec(spec.clone()), Ok(()), "{spec}");
    }
    use ValidationError as E;
    let field = |f: &str| f.to_owned();
    let refused = [
        (
            json!({"networkPolicy": {"clientFrom": []}}),
            E::NoClientPeers,
            "spec.networkPolicy.clientFrom must not be empty",
        ),
        (
            json!({"networkPolicy": {"clientFrom": [{"podSelector": {}}, {}]}}),
            E::EmptyPeer {
                field: field("spec.networkPolicy.clientFrom[1]"),
            },
            "spec.networkPolicy.clientFrom[1] sets none of",
        ),
        (
            json!({"networkPolicy": {"metricsFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}}),
            E::IpBlockWithSelector {
                field: field("spec.networkPolicy.metricsFrom[0]"),
            },
            "make them two entries",
        ),
        (
            json!({"networkPolicy": {"clientFrom": [{"ipBlock": {"cidr": "10.0.0.0"}}]}}),
            E::InvalidCidr {
                field: field("spec.networkPolicy.clientFrom[0].ipBlock.cidr"),
                value: "10.0.0.0".to_owned(),
            },
            "spec.networkPolicy.clientFrom[0].ipBlock.cidr \"10.0.0.0\" is not a CIDR",
        ),
        (
            json!({"networkPolicy": {"clientFrom": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/33"]}}]}}),
            E::InvalidCidr {
                field: field("spec.networkPolicy.clientFrom[0].ipBlock.except[0]"),
                value: "10.1.0.0/33".to_owned(),
            },
            "such as \"10.0.0.0/8\"",
        ),
        (
            json!({"networkPolicy": {"metricsFrom": [{"ipBlock": {"cidr": "fd00::/+8"}}]}}),
            E::InvalidCidr {
                field: field("spec.networkPolicy.metricsFrom[0].ipBlock.cidr"),
                value: "fd00::/+8".to_owned(),
            },
            "metricsFrom[0].ipBlock.cidr",
        ),
    ];
    for (spec, want, message) in refused {
        let error = validate_spec(spec.clone()).unwrap_err();
        assert!(error.to_string().contains(message), "{error}");
        assert_eq!(error, want, "{spec}");
    }
}

#[test]
fn backups_need_the_tls_admin_server() {
    assert_eq!(validate_spec(json!({"backup": {"enabled": true}})), Ok(()));
    assert_eq!(
        validate_spec(json!({"backup": {"enabled": false}, "tls": {"quorum": false}})),
        Ok(())
    );
    let error =
        validate_spec(json!({"backup": {"enabled": true}, "tls": {"quorum": false}})).unwrap_err();
    assert_eq!(error, ValidationError::BackupWithoutQuorumTls);
    assert!(
        error
            .to_string()
            .contains("spec.backup.enabled needs spec.tls.quorum"),
        "{error}"
    );
}

#[test]
fn a_backup_schedule_is_a_cron_pattern_with_backups_on_and_a_destination() {
    let s3 =
        json!({"endpoint": "http://s3:9000", "bucket": "zk-backups", "credentialsSecret": "s3"});
    assert_eq!(
        validate_spec(json!({"backup": {"enabled": true, "schedule": "0 3 * * *", "s3": s3}})),
        Ok(())
    );
    assert_eq!(
        validate_spec(json!({"backup": {"enabled": false, "schedule": "0 3 * * *", "s3": s3}})),
        Err(ValidationError::ScheduleNeeds)
    );
    assert_eq!(
        validate_spec(json!({"backup": {"enabled": true, "schedule": "0 3 * * *"}})),
        Err(ValidationError::ScheduleNeeds)
    );
    let error = validate_spec(json!({"backup": {"enabled": true, "schedule": "daily", "s3": s3}}))
        .unwrap_err();
    assert!(
        matches!(&error, ValidationError::InvalidSchedule { schedule, .. } if schedule == "daily"),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("spec.backup.schedule \"daily\" is not a cron pattern"),
        "{error}"
    );
}

#[test]
fn a_drill_schedule_is_a_cron_pattern_with_backups_on() {
    // Drills restore backups taken by hand too: no destination needed.
    assert_eq!(
        validate_spec(json!({"backup": {"enabled": true, "drillSchedule": "0 5 * * 0"}})),
        Ok(())
    );
    assert_eq!(
        validate_spec(json!({"backup": {"drillSchedule": "0 5 * * 0"}})),
        Err(ValidationError::DrillScheduleNeeds)
    );
    let error =
        validate_spec(json!({"backup": {"enabled": true, "drillSchedule": "weekly"}})).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("spec.backup.drillSchedule \"weekly\" is not a cron pattern"),
        "{error}"
    );
}

#[test]
fn a_restore_names_a_backup_or_a_whole_object_key() {
    let s3 =
        json!({"endpoint": "http://s3:9000", "bucket": "zk-backups", "credentialsSecret": "s3"});
    let key = "prod/data/zk/nightly-u-1.snapshot";
    assert_eq!(
        validate_spec(json!({"restore": {"backup": "nightly"}})),
        Ok(())
    );
    assert_eq!(
        validate_spec(json!({"restore": {"object": {"s3": s3, "key": key}}})),
        Ok(())
    );
    assert_eq!(
        validate_spec(json!({"restore": {}})),
        Err(ValidationError::RestoreNeedsOne)
    );
    assert_eq!(
        validate_spec(json!({"restore": {"backup": "nightly", "object": {"s3": s3, "key": key}}})),
        Err(ValidationError::RestoreNeedsOne)
    );
    let mut prefixed = s3.clone();
    prefixed["prefix"] = json!("prod");
    let error =
        validate_spec(json!({"restore": {"object": {"s3": prefixed, "key": key}}})).unwrap_err();
    assert_eq!(error, ValidationError::RestoreObjectPrefix);
    assert!(
        error
            .to_string()
            .contains("give the whole key of the snapshot in spec.restore.object.key"),
        "{error}"
    );
}

#[test]
fn enforced_client_authentication_needs_a_login() {
    let refused = validate_spec(json!({"clientAuthentication": {"enforce": true}}));
    assert_eq!(refused, Err(ValidationError::EnforceNeedsLogin));
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("spec.clientAuthentication.saslUsersSecret")
            && message.contains("x509ClientCaSecret"),
        "{message}"
    );
    for spec in [
        json!({"clientAuthentication": {"saslUsersSecret": "users", "enforce": true}}),
        json!({"tls": {"client": true}, "clientAuthentication": {"x509ClientCaSecret": "ca", "enforce": true}}),
        json!({"clientAuthentication": {"saslUsersSecret": "users"}}),
        json!({"clientAuthentication": {}}),
    ] {
        assert_eq!(validate_spec(spec.clone()), Ok(()), "{spec}");
    }
}

#[test]
fn client_certificates_need_the_tls_client_port() {
    let refused = validate_spec(json!({"clientAuthentication": {"x509ClientCaSecret": "ca"}}));
    assert_eq!(refused, Err(ValidationError::X509NeedsClientTls));
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("spec.tls.client: true"), "{message}");
    let with_tls = json!({
        "clientAuthentication": {"x509ClientCaSecret": "ca"},
        "tls": {"client": true},
    });
    assert_eq!(validate_spec(with_tls), Ok(()));
}
