//! The StatefulSet built from an ensemble's spec: pod template, container, environment,
//! volumes, placement and the config hash.

use serde_json::{Value, json};

use super::super::fixtures;
use super::*;
use crate::api::{PlacementSpec, ZooKeeperEnsemble};
use crate::build::{ClientSecrets, Topology};

fn stateful_set(spec: Value) -> StatefulSetSpec {
    fixtures::children(spec).stateful_set.spec.expect("spec")
}

fn pod(spec: Value) -> (ObjectMeta, PodSpec) {
    let template = stateful_set(spec).template;
    (
        template.metadata.expect("metadata"),
        template.spec.expect("pod spec"),
    )
}

fn server(spec: Value) -> Container {
    let (_, pod) = pod(spec);
    assert_eq!(pod.containers.len(), 1);
    pod.containers.into_iter().next().unwrap()
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    let env = container.env.as_ref().expect("env");
    let matches: Vec<&EnvVar> = env.iter().filter(|var| var.name == name).collect();
    assert!(matches.len() <= 1, "{name} set twice");
    matches
        .first()
        .map(|var| var.value.clone().expect("a literal value"))
}

fn config_hash_of(spec: Value) -> String {
    let (metadata, _) = pod(spec);
    metadata.annotations.expect("annotations")[names::CONFIG_HASH_ANNOTATION].clone()
}

#[test]
fn runs_the_servers_in_parallel_and_leaves_rolls_to_the_operator() {
    let spec = stateful_set(json!({"replicas": 5}));
    assert_eq!(spec.replicas, Some(5));
    assert_eq!(spec.service_name.as_deref(), Some("zk-headless"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let strategy = spec.update_strategy.expect("update strategy");
    assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
    assert_eq!(strategy.rolling_update, None);
    let labels = names::labels(&fixtures::ensemble(json!({})));
    assert_eq!(spec.selector.match_labels, Some(labels));
    assert_eq!(spec.selector.match_expressions, None);
}

#[test]
fn volume_retention_follows_the_spec() {
    // (retention spec, whenDeleted, whenScaled)
    let cases = [
        (json!({}), "Retain", "Delete"),
        (json!({"whenDeleted": "Delete"}), "Delete", "Delete"),
        (json!({"whenScaled": "Retain"}), "Retain", "Retain"),
    ];
    for (retention, deleted, scaled) in cases {
        let spec = stateful_set(json!({"storage": {"retention": retention}}));
        let policy = spec.persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(policy.when_deleted.as_deref(), Some(deleted), "{retention}");
        assert_eq!(policy.when_scaled.as_deref(), Some(scaled), "{retention}");
    }
}

#[test]
fn volume_claim_templates_follow_the_storage_spec() {
    // (storage spec, [(claim, size, storage class)])
    let cases = [
        (json!({}), vec![("data", "10Gi", None)]),
        (
            json!({"data": {"size": "50Gi", "storageClassName": "fast"}}),
            vec![("data", "50Gi", Some("fast"))],
        ),
        (
            json!({"transactionLog": {"size": "5Gi", "storageClassName": "nvme"}}),
            vec![("data", "10Gi", None), ("log", "5Gi", Some("nvme"))],
        ),
    ];
    for (storage, want) in cases {
        let claims = stateful_set(json!({"storage": storage}))
            .volume_claim_templates
            .expect("claims");
        let got: Vec<_> = claims
            .iter()
            .map(|claim| {
                let spec = claim.spec.as_ref().expect("claim spec");
                assert_eq!(spec.access_modes, Some(strings(&["ReadWriteOnce"])));
                assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
                assert_eq!(
                    claim.metadata.labels,
                    Some(names::labels(&fixtures::ensemble(json!({}))))
                );
                let requests = spec.resources.as_ref().unwrap().requests.as_ref().unwrap();
                (
                    claim.metadata.name.as_deref().unwrap(),
                    requests["storage"].0.as_str(),
                    spec.storage_class_name.as_deref(),
                )
            })
            .collect();
        assert_eq!(got, want, "{storage}");
    }
}

#[test]
fn pod_labels_are_the_users_with_ours_winning() {
    let (metadata, _) = pod(json!({"placement": {"podLabels": {
        "team": "data",
        "app.kubernetes.io/instance": "hijacked",
        "app.kubernetes.io/name": "other",
    }}}));
    let labels = metadata.labels.expect("labels");
    assert_eq!(labels["team"], "data");
    for (key, value) in names::labels(&fixtures::ensemble(json!({}))) {
        assert_eq!(labels[&key], value, "{key}");
    }
    assert_eq!(labels.len(), 5);
}

#[test]
fn pod_annotations_are_the_users_plus_the_config_hash() {
    let (metadata, _) = pod(json!({"placement": {"podAnnotations": {
        "prometheus.io/scrape": "true",
        "zooherd.dev/config-hash": "forged",
    }}}));
    let annotations = metadata.annotations.expect("annotations");
    assert_eq!(annotations.len(), 4);
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations[names::QUORUM_TLS_ANNOTATION], "on");
    assert_eq!(annotations[names::ADMIN_TLS_ANNOTATION], "true");
    let hash = &annotations[names::CONFIG_HASH_ANNOTATION];
    assert_eq!(hash.len(), 64);
    assert!(
        hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{hash}"
    );
    assert_eq!(hash, &config_hash_of(json!({})));
}

#[test]
fn a_renewed_certificate_is_a_new_template_and_one_never_renewed_changes_nothing() {
    let template = |spec: Value, certificate_generation: u32| {
        let topology = crate::build::Topology {
            certificate_generation,
            ..crate::build::Topology::initial(3)
        };
        let children = fixtures::build(
            &fixtures::ensemble(spec),
            &fixtures::settings(),
            Some(&topology),
        );
        children.stateful_set.spec.unwrap().template
    };
    // Never renewed: the template every operator before renewal wrote, so an upgrade rolls
    // nothing.
    let never = template(json!({}), 0)
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert!(!never.contains_key(names::CERTIFICATE_GENERATION_ANNOTATION));
    let renewed = template(json!({}), 2)
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(renewed[names::CERTIFICATE_GENERATION_ANNOTATION], "2");
    assert_eq!(
        renewed[names::CONFIG_HASH_ANNOTATION],
        never[names::CONFIG_HASH_ANNOTATION],
        "the servers' configuration is unchanged"
    );
    // Servers that use no certificate are not rolled for one.
    let plain = json!({"tls": {"quorum": false}});
    assert_eq!(template(plain.clone(), 2), template(plain, 0));
    let client_only = json!({"tls": {"quorum": false, "client": true}});
    let annotations = template(client_only, 1).metadata.unwrap().annotations;
    assert_eq!(
        annotations.unwrap()[names::CERTIFICATE_GENERATION_ANNOTATION],
        "1"
    );
}

#[test]
fn a_restart_asked_on_the_ensemble_is_a_new_template() {
    let mut ensemble = fixtures::ensemble(json!({}));
    let template = |ensemble: &ZooKeeperEnsemble| {
        let children = fixtures::build(ensemble, &fixtures::settings(), None);
        children.stateful_set.spec.unwrap().template
    };
    let before = template(&ensemble);
    ensemble.annotations_mut().insert(
        annotations::RESTARTED_AT.into(),
        "2026-12-01T08:00:00Z".into(),
    );
    let after = template(&ensemble);
    assert_ne!(before, after);
    let copied = after.metadata.unwrap().annotations.unwrap();
    assert_eq!(copied[annotations::RESTARTED_AT], "2026-12-01T08:00:00Z");
    // Only the pods carry it: the servers' configuration is unchanged.
    assert_eq!(
        copied[names::CONFIG_HASH_ANNOTATION],
        config_hash_of(json!({}))
    );
}

#[test]
fn config_hash_changes_with_what_servers_read_at_start_only() {
    let base = config_hash_of(json!({}));
    // (spec change, whether the servers' configuration changed)
    let cases = [
        (json!({}), false),
        (json!({"config": {"tickTime": "2000"}}), false),
        (json!({"placement": {"podLabels": {"a": "b"}}}), false),
        (json!({"placement": {"podAnnotations": {"a": "b"}}}), false),
        (json!({"image": "zooherd/server:other"}), false),
        (
            json!({"placement": {"nodeSelector": {"disk": "ssd"}}}),
            false,
        ),
        (json!({"resources": {"requests": {"cpu": "1"}}}), false),
        (
            json!({"storage": {"retention": {"whenDeleted": "Delete"}}}),
            false,
        ),
        (
            json!({"failedMemberRestart": {"thresholdSeconds": 120}}),
            false,
        ),
        (json!({"paused": true}), false),
        (json!({"config": {"tickTime": "3000"}}), true),
        (json!({"config": {"maxClientCnxns": "100"}}), true),
        // Scaling changes the membership through ZooKeeper, never the pods' configuration.
        (json!({"replicas": 5}), false),
        (
            json!({"storage": {"transactionLog": {"size": "1Gi"}}}),
            true,
        ),
        (json!({"jvm": {"heap": "1Gi"}}), true),
        (json!({"jvm": {"extraOptions": ["-XX:+UseG1GC"]}}), true),
        (
            json!({"resources": {"limits": {"memory": "2Gi"}}, "jvm": {"heapPercent": 40}}),
            true,
        ),
    ];
    for (spec, changed) in cases {
        assert_eq!(config_hash_of(spec.clone()) != base, changed, "{spec}");
    }
}

#[test]
fn config_hash_tells_jvm_settings_apart() {
    let hashes = [
        config_hash_of(json!({"jvm": {"heap": "1Gi"}})),
        config_hash_of(json!({"jvm": {"heap": "2Gi"}})),
        config_hash_of(json!({"jvm": {"extraOptions": ["-Da=1", "-Db=2"]}})),
        config_hash_of(json!({"jvm": {"extraOptions": ["-Db=2", "-Da=1"]}})),
    ];
    for (i, a) in hashes.iter().enumerate() {
        for b in &hashes[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn pod_is_locked_down() {
    let (_, pod) = pod(json!({}));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.enable_service_links, Some(false));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    assert_eq!(pod.service_account_name, None);
    let security = pod.security_context.expect("pod security context");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(1000));
    assert_eq!(security.run_as_group, Some(1000));
    assert_eq!(security.fs_group, Some(1000));
    assert_eq!(
        security.fs_group_change_policy.as_deref(),
        Some("OnRootMismatch")
    );
    assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");

    let container = server(json!({}));
    let security = container
        .security_context
        .expect("container security context");
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.privileged, None);
    let capabilities = security.capabilities.expect("capabilities");
    assert_eq!(capabilities.drop, Some(strings(&["ALL"])));
    assert_eq!(capabilities.add, None);
}

#[test]
fn probes_ask_zooherd() {
    // Quorum TLS (the default) secures the AdminServer: the probes show the servers'
    // certificate.
    let with_tls = server(json!({}));
    let without = server(json!({"tls": {"quorum": false}}));
    for (container, tls_args) in [
        (with_tls, strings(&["--tls-dir", "/etc/zooherd-tls"])),
        (without, Vec::new()),
    ] {
        probes_ask_zooherd_with(container, &tls_args);
    }
}

fn probes_ask_zooherd_with(container: Container, tls_args: &[String]) {
    // (probe, command kind, initialDelay, period, timeout, failureThreshold)
    let cases = [
        (container.readiness_probe, "ready", None, 5, 4, 2),
        (container.liveness_probe, "live", Some(20), 10, 4, 6),
        (container.startup_probe, "live", None, 5, 4, 60),
    ];
    for (probe, kind, delay, period, timeout, failures) in cases {
        let probe = probe.expect("probe");
        let command = probe.exec.and_then(|exec| exec.command);
        let mut expected = strings(&["zooherd", "probe", kind]);
        expected.extend_from_slice(tls_args);
        assert_eq!(command, Some(expected));
        assert_eq!(probe.initial_delay_seconds, delay, "{kind}");
        assert_eq!(probe.period_seconds, Some(period), "{kind}");
        assert_eq!(probe.timeout_seconds, Some(timeout), "{kind}");
        assert_eq!(probe.failure_threshold, Some(failures), "{kind}");
        assert!(probe.http_get.is_none() && probe.tcp_socket.is_none());
    }
}

#[test]
fn container_runs_zooherd_server_on_the_named_ports() {
    let container = server(json!({}));
    assert_eq!(container.name, "zookeeper");
    assert_eq!(container.command, None);
    assert_eq!(
        container.args,
        Some(strings(&["server", "--config", "/etc/zooherd/zoo.cfg"]))
    );
    let ports: Vec<_> = container
        .ports
        .unwrap()
        .into_iter()
        .map(|p| {
            assert_eq!(p.protocol.as_deref(), Some("TCP"));
            assert_eq!(p.host_port, None);
            (p.name.unwrap(), p.container_port)
        })
        .collect();
    let want = [
        ("client", 2181),
        ("quorum", 2888),
        ("election", 3888),
        ("admin", 8080),
        ("metrics", 7000),
    ]
    .map(|(name, port)| (name.to_owned(), port));
    assert_eq!(ports, want);
}

#[test]
fn image_and_pull_settings_come_from_the_spec_or_the_operator() {
    let container = server(json!({}));
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/zooherd/server:0.1.0")
    );
    assert_eq!(container.image_pull_policy, None);
    assert_eq!(pod(json!({})).1.image_pull_secrets, None);

    let spec = json!({
        "image": "registry.example/zooherd:dev",
        "imagePullPolicy": "Always",
        "imagePullSecrets": [{"name": "registry"}],
    });
    let container = server(spec.clone());
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example/zooherd:dev")
    );
    assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
    let secrets = pod(spec).1.image_pull_secrets.expect("pull secrets");
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].name, "registry");
}

#[test]
fn resources_come_from_the_spec() {
    assert_eq!(server(json!({})).resources, None);
    let resources = server(json!({"resources": {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"memory": "2Gi"},
    }}))
    .resources
    .expect("resources");
    assert_eq!(resources.requests.unwrap()["cpu"].0, "500m");
    assert_eq!(resources.limits.unwrap()["memory"].0, "2Gi");
}

#[test]
fn environment_tells_the_server_who_it_is() {
    // Without a memory limit there is no ZOOHERD_MEMORY_LIMIT: the downward API would
    // report the node's memory.
    let unlimited = server(json!({}));
    assert!(env_value(&unlimited, "ZOOHERD_MEMORY_LIMIT").is_none());
    assert!(
        unlimited
            .env
            .as_ref()
            .unwrap()
            .iter()
            .all(|v| v.name != "ZOOHERD_MEMORY_LIMIT")
    );
    let container = server(json!({"resources": {"limits": {"memory": "1Gi"}}}));
    let env = container.env.as_ref().unwrap();
    let names: Vec<&str> = env.iter().map(|var| var.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "POD_NAME",
            "POD_NAMESPACE",
            "POD_IP",
            "ZOOHERD_ENSEMBLE_UID",
            "ZOOHERD_SUPER_DIGEST",
            "ZOOHERD_MEMORY_LIMIT",
            "ZOOHERD_JVM_HEAP_PERCENT",
        ]
    );
    // The superuser's digest comes from its Secret: it is in no pod spec.
    let digest = env
        .iter()
        .find(|v| v.name == "ZOOHERD_SUPER_DIGEST")
        .unwrap();
    assert_eq!(digest.value, None);
    let secret = digest
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str(), secret.optional),
        ("zk-zooherd-superuser", "digest", Some(false))
    );
    let fields = [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_IP", "status.podIP"),
    ];
    for (name, path) in fields {
        let var = env.iter().find(|var| var.name == name).unwrap();
        let field = var.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(field.field_path, path);
        assert_eq!(field.api_version.as_deref(), Some("v1"));
    }
    assert_eq!(
        env_value(&container, "ZOOHERD_ENSEMBLE_UID").as_deref(),
        Some(fixtures::UID)
    );
    let limit = env
        .iter()
        .find(|v| v.name == "ZOOHERD_MEMORY_LIMIT")
        .unwrap();
    let resource = limit
        .value_from
        .as_ref()
        .unwrap()
        .resource_field_ref
        .as_ref()
        .unwrap();
    assert_eq!(resource.resource, "limits.memory");
    assert_eq!(resource.container_name.as_deref(), Some("zookeeper"));
    assert_eq!(resource.divisor, Some(Quantity("1".to_owned())));
}

#[test]
fn jvm_settings_reach_the_environment() {
    // (spec, ZOOHERD_JVM_HEAP, ZOOHERD_JVM_HEAP_PERCENT, ZOOHERD_JVM_EXTRA_OPTS)
    let cases = [
        (json!({}), None, None, None),
        (json!({"jvm": {"heap": "1Gi"}}), Some("1024Mi"), None, None),
        (
            json!({"jvm": {"heap": "1.5Gi"}}),
            Some("1536Mi"),
            None,
            None,
        ),
        (
            json!({"jvm": {"heap": "100M"}}),
            Some("100000000"),
            None,
            None,
        ),
        (
            json!({"jvm": {"heapPercent": 30}, "resources": {"limits": {"memory": "1Gi"}}}),
            None,
            Some("30"),
            None,
        ),
        // A memory limit alone gets the documented default share.
        (
            json!({"resources": {"limits": {"memory": "1Gi"}}}),
            None,
            Some("50"),
            None,
        ),
        // A memory request is no limit: the JVM keeps its own default.
        (
            json!({"resources": {"requests": {"memory": "1Gi"}}}),
            None,
            None,
            None,
        ),
        (
            json!({"jvm": {"heap": "512Mi", "extraOptions": ["-XX:+UseG1GC", "-Dzookeeper.snapCount=50000"]},
                   "resources": {"limits": {"memory": "1Gi"}}}),
            Some("512Mi"),
            None,
            Some("-XX:+UseG1GC -Dzookeeper.snapCount=50000"),
        ),
        // Heap sized by an extra option: no default share on top.
        (
            json!({"jvm": {"extraOptions": ["-Xmx700m"]}, "resources": {"limits": {"memory": "1Gi"}}}),
            None,
            None,
            Some("-Xmx700m"),
        ),
    ];
    for (spec, heap, percent, extra) in cases {
        let container = server(spec.clone());
        assert_eq!(
            env_value(&container, "ZOOHERD_JVM_HEAP").as_deref(),
            heap,
            "{spec}"
        );
        assert_eq!(
            env_value(&container, "ZOOHERD_JVM_HEAP_PERCENT").as_deref(),
            percent,
            "{spec}"
        );
        assert_eq!(
            env_value(&container, "ZOOHERD_JVM_EXTRA_OPTS").as_deref(),
            extra,
            "{spec}"
        );
    }
}

#[test]
fn heap_sizes_are_quantities_the_agent_reads() {
    let cases = [
        (16 << 20, "16Mi"),
        (1 << 30, "1024Mi"),
        (100_000_000, "100000000"),
        ((1 << 20) + 1024, "1049600"),
    ];
    for (bytes, want) in cases {
        assert_eq!(heap_quantity(bytes), want, "{bytes}");
    }
}

#[test]
fn volumes_and_mounts_follow_the_storage_spec() {
    // (storage spec, [(volume, mount path, read-only)])
    let cases = [
        (
            json!({}),
            vec![
                ("config", "/etc/zooherd", Some(true)),
                ("data", "/var/lib/zookeeper/data", None),
                ("tmp", "/tmp", None),
                ("tls", "/etc/zooherd-tls", Some(true)),
            ],
        ),
        (
            json!({"transactionLog": {"size": "1Gi"}}),
            vec![
                ("config", "/etc/zooherd", Some(true)),
                ("data", "/var/lib/zookeeper/data", None),
                ("log", "/var/lib/zookeeper/log", None),
                ("tmp", "/tmp", None),
                ("tls", "/etc/zooherd-tls", Some(true)),
            ],
        ),
    ];
    for (storage, want) in cases {
        let container = server(json!({"storage": storage}));
        let mounts: Vec<_> = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(mounts, want, "{storage}");
    }

    let volumes = pod(json!({})).1.volumes.expect("volumes");
    assert_eq!(volumes.len(), 3);
    assert_eq!(volumes[0].name, "config");
    assert_eq!(volumes[0].config_map.as_ref().unwrap().name, "zk-config");
    assert_eq!(volumes[1].name, "tmp");
    assert!(volumes[1].empty_dir.is_some());
    let secret = volumes[2].secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("zk-zooherd-tls"));
    let items: Vec<_> = secret
        .items
        .iter()
        .flatten()
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(items, ["ca.crt", "keystore.pem"], "never the CA's key");
}

#[test]
fn a_tls_client_port_mounts_the_certificates_without_quorum_tls() {
    let (metadata, pod) = pod(json!({"tls": {"quorum": false, "client": true}}));
    let annotations = metadata.annotations.expect("annotations");
    assert!(!annotations.contains_key(names::QUORUM_TLS_ANNOTATION));
    assert!(pod.volumes.unwrap().iter().any(|v| v.secret.is_some()));
    let container = &pod.containers[0];
    let mounts = container.volume_mounts.clone().unwrap();
    assert!(mounts.iter().any(|m| m.mount_path == "/etc/zooherd-tls"));
    let ports: Vec<_> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert!(
        ports.contains(&("client-tls".to_owned(), 2281)),
        "{ports:?}"
    );
}

#[test]
fn the_pod_says_whether_its_admin_server_takes_only_tls() {
    let (metadata, _) = pod(json!({}));
    let annotations = metadata.annotations.expect("annotations");
    assert_eq!(annotations["zooherd.dev/admin-tls"], "true");
    assert_eq!(annotations["zooherd.dev/quorum-tls"], "on");
    let (metadata, _) = pod(json!({"tls": {"quorum": false}}));
    assert!(
        !metadata
            .annotations
            .expect("annotations")
            .contains_key("zooherd.dev/admin-tls")
    );
}

#[test]
fn without_quorum_tls_the_pod_has_no_certificates() {
    let (metadata, pod) = pod(json!({"tls": {"quorum": false}}));
    let annotations = metadata.annotations.expect("annotations");
    assert!(!annotations.contains_key(names::QUORUM_TLS_ANNOTATION));
    let volumes = pod.volumes.expect("volumes");
    assert!(volumes.iter().all(|v| v.secret.is_none()));
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    assert!(mounts.iter().all(|m| m.name != "tls"));
}

#[test]
fn default_placement_prefers_one_server_per_node() {
    let (_, pod) = pod(json!({}));
    let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
    assert_eq!(
        anti.required_during_scheduling_ignored_during_execution,
        None
    );
    let preferred = anti
        .preferred_during_scheduling_ignored_during_execution
        .unwrap();
    assert_eq!(preferred.len(), 1);
    assert_eq!(preferred[0].weight, 100);
    let term = &preferred[0].pod_affinity_term;
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    assert_eq!(
        term.label_selector.as_ref().unwrap().match_labels,
        Some(names::labels(&fixtures::ensemble(json!({}))))
    );
    assert_eq!(pod.node_selector, None);
    assert_eq!(pod.tolerations, None);
    assert_eq!(pod.topology_spread_constraints, None);
    assert_eq!(pod.priority_class_name, None);
}

#[test]
fn placement_comes_from_the_spec() {
    let placement = json!({
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]}
            ]}]
        }}},
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "zk"}},
        }],
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "zk", "effect": "NoSchedule"}],
        "priorityClassName": "critical",
    });
    let (_, pod) = pod(json!({"placement": placement.clone()}));
    let placement: PlacementSpec = serde_json::from_value(placement).unwrap();
    assert_eq!(pod.affinity, placement.affinity);
    assert_eq!(
        pod.topology_spread_constraints.as_deref(),
        Some(placement.topology_spread_constraints.as_slice())
    );
    assert_eq!(pod.node_selector.as_ref(), Some(&placement.node_selector));
    assert_eq!(
        pod.tolerations.as_deref(),
        Some(placement.tolerations.as_slice())
    );
    assert_eq!(pod.priority_class_name.as_deref(), Some("critical"));
}

#[test]
fn a_restored_ensemble_passes_the_resolved_snapshot_that_the_agent_reads_back() {
    use crate::agent::server::{ENV_RESTORE_KEY, RestoreSource, restore_source};
    use crate::api::{RestoreStatus, S3Location, ZooKeeperEnsembleStatus};
    let restore = RestoreStatus {
        backup: Some("nightly".into()),
        location: "s3://zk-backups/prod/data/zk/nightly-1.snapshot".into(),
        s3: S3Location {
            endpoint: "https://s3.storage:9000".into(),
            bucket: "zk-backups".into(),
            prefix: "prod".into(),
            region: "eu-west-1".into(),
            virtual_hosted_style: true,
            credentials_secret: "s3-credentials".into(),
        },
        key: "prod/data/zk/nightly-1.snapshot".into(),
        zxid: "0x10000012a".into(),
        size_bytes: 694_006,
        sha256: "8da067f68800ffb54a18d1cf633a6e89c25f74d9683708f2f95318a81aec2681".into(),
    };
    let container = |spec: Value, status: Option<RestoreStatus>| {
        let mut ensemble = fixtures::ensemble(spec);
        ensemble.status = Some(ZooKeeperEnsembleStatus {
            restore: status,
            ..ZooKeeperEnsembleStatus::default()
        });
        let children = fixtures::build(&ensemble, &fixtures::settings(), None);
        let pod = children.stateful_set.spec.unwrap().template.spec.unwrap();
        pod.containers.into_iter().next().unwrap()
    };
    let restoring = json!({"restore": {"backup": "nightly"}});
    // Not before the operator resolved it, and never without spec.restore.
    for server in [
        container(restoring.clone(), None),
        container(json!({}), Some(restore.clone())),
    ] {
        assert_eq!(env_value(&server, ENV_RESTORE_KEY), None);
    }
    let server = container(restoring, Some(restore.clone()));
    // What the kubelet gives the agent: literals as they are, the Secret's keys by reference.
    let env = server.env.unwrap();
    let secret_keys: Vec<(&str, &str, bool)> = env
        .iter()
        .filter_map(|var| {
            let selector = var.value_from.as_ref()?.secret_key_ref.as_ref()?;
            (selector.name == "s3-credentials").then_some((
                var.name.as_str(),
                selector.key.as_str(),
                selector.optional == Some(true),
            ))
        })
        .collect();
    assert_eq!(
        secret_keys,
        [
            ("ZOOHERD_RESTORE_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID", false),
            (
                "ZOOHERD_RESTORE_SECRET_ACCESS_KEY",
                "AWS_SECRET_ACCESS_KEY",
                false
            ),
            ("ZOOHERD_RESTORE_CA", "ca.crt", true),
        ]
    );
    let lookup = |name: &str| {
        let var = env.iter().find(|var| var.name == name)?;
        match &var.value_from {
            Some(source) => source.secret_key_ref.as_ref().and_then(|selector| {
                (selector.key != "ca.crt").then(|| format!("secret {}", selector.key))
            }),
            None => var.value.clone(),
        }
    };
    let source: RestoreSource = restore_source(&lookup).unwrap().expect("a restore");
    assert_eq!(source.location(), restore.location);
    assert_eq!(source.s3.endpoint, restore.s3.endpoint);
    assert_eq!(
        (source.s3.region.as_str(), source.s3.virtual_hosted_style),
        ("eu-west-1", true)
    );
    assert_eq!(
        (source.size, source.sha256.as_str(), source.zxid),
        (694_006, restore.sha256.as_str(), 0x1_0000_012a)
    );
    assert_eq!(source.credentials.access_key_id, "secret AWS_ACCESS_KEY_ID");
}

#[test]
fn a_backup_schedule_changes_nothing_the_servers_run() {
    let enabled = json!({"backup": {"enabled": true}});
    let scheduled = json!({"backup": {
        "enabled": true,
        "schedule": "0 3 * * *",
        "keep": 3,
        "s3": {"endpoint": "http://s3:9000", "bucket": "zk-backups", "credentialsSecret": "s3"},
    }});
    let (enabled, scheduled) = (fixtures::children(enabled), fixtures::children(scheduled));
    assert_eq!(enabled.stateful_set, scheduled.stateful_set);
    assert_eq!(enabled.config_map, scheduled.config_map);
}

/// The pod of ensemble `spec` whose SASL users Secret hashed to `users`.
fn pod_with_sasl_users(spec: Value, users: Option<&str>) -> (ObjectMeta, PodSpec) {
    let ensemble = fixtures::ensemble(spec);
    let topology = Topology {
        client_secrets: ClientSecrets {
            sasl_users: users.map(str::to_owned),
            x509_ca: None,
        },
        ..Topology::initial(3)
    };
    let template = fixtures::build(&ensemble, &fixtures::settings(), Some(&topology))
        .stateful_set
        .spec
        .expect("spec")
        .template;
    (template.metadata.unwrap(), template.spec.unwrap())
}

#[test]
fn a_sasl_users_secret_is_mounted_read_only_and_its_contents_roll_the_servers() {
    let spec = json!({"clientAuthentication": {"saslUsersSecret": "kafka-users", "enforce": true}});
    let (metadata, pod) = pod_with_sasl_users(spec.clone(), Some("0123456789abcdef"));
    assert_eq!(
        metadata.annotations.unwrap()[names::CLIENT_SASL_ANNOTATION],
        "0123456789abcdef"
    );
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "sasl-users")
        .expect("a sasl-users volume");
    let secret = volume.secret.as_ref().expect("from a Secret");
    assert_eq!(secret.secret_name.as_deref(), Some("kafka-users"));
    assert_eq!(secret.default_mode, Some(0o440), "readable by fsGroup only");
    assert_eq!(secret.optional, Some(false), "no server starts without it");
    let container = &pod.containers[0];
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "sasl-users")
        .expect("mounted");
    assert_eq!(mount.mount_path, names::SASL_USERS_DIR);
    assert_eq!(mount.read_only, Some(true));
    let args = container.args.clone().unwrap();
    assert!(
        args.ends_with(&strings(&[
            "--sasl-users",
            names::SASL_USERS_DIR,
            "--enforce-auth"
        ])),
        "{args:?}"
    );

    // Other contents, another template revision.
    let (other, _) = pod_with_sasl_users(spec, Some("fedcba9876543210"));
    assert_eq!(
        other.annotations.unwrap()[names::CLIENT_SASL_ANNOTATION],
        "fedcba9876543210"
    );

    // Users without enforcement: SASL is offered, anonymous clients still served.
    let (_, pod) = pod_with_sasl_users(
        json!({"clientAuthentication": {"saslUsersSecret": "kafka-users"}}),
        Some("0123456789abcdef"),
    );
    let args = pod.containers[0].args.clone().unwrap();
    assert!(args.contains(&"--sasl-users".to_owned()), "{args:?}");
    assert!(!args.contains(&"--enforce-auth".to_owned()), "{args:?}");
}

#[test]
fn a_client_ca_secret_mounts_its_certificate_only_and_its_contents_roll_the_servers() {
    let spec = json!({
        "clientAuthentication": {"x509ClientCaSecret": "clients-ca"},
        "tls": {"client": true},
    });
    let ensemble = fixtures::ensemble(spec);
    let template = |ca: &str| {
        let topology = Topology {
            client_secrets: ClientSecrets {
                sasl_users: None,
                x509_ca: Some(ca.to_owned()),
            },
            ..Topology::initial(3)
        };
        fixtures::build(&ensemble, &fixtures::settings(), Some(&topology))
            .stateful_set
            .spec
            .expect("spec")
            .template
    };
    let first = template("0123456789abcdef");
    let annotations = first.metadata.unwrap().annotations.unwrap();
    assert_eq!(
        annotations[names::CLIENT_X509_CA_ANNOTATION],
        "0123456789abcdef"
    );
    assert!(!annotations.contains_key(names::CLIENT_SASL_ANNOTATION));
    let pod = first.spec.unwrap();
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "client-ca")
        .expect("a client-ca volume");
    let secret = volume.secret.as_ref().expect("from a Secret");
    assert_eq!(secret.secret_name.as_deref(), Some("clients-ca"));
    // Never the CA's key, which a CA Issuer's Secret holds beside it.
    let items: Vec<&str> = secret
        .items
        .iter()
        .flatten()
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(items, ["ca.crt"]);
    assert_eq!(secret.default_mode, Some(0o440));
    assert_eq!(secret.optional, Some(false));
    let container = &pod.containers[0];
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "client-ca")
        .expect("mounted");
    assert_eq!(mount.mount_path, names::X509_CLIENT_CA_DIR);
    assert_eq!(mount.read_only, Some(true));
    let args = container.args.clone().unwrap();
    assert!(args.contains(&"--x509-clients".to_owned()), "{args:?}");

    let other = template("fedcba9876543210");
    assert_eq!(
        other.metadata.unwrap().annotations.unwrap()[names::CLIENT_X509_CA_ANNOTATION],
        "fedcba9876543210"
    );
}

#[test]
fn enforced_with_certificates_alone_runs_sasl_for_the_operator_without_a_users_volume() {
    let spec = json!({
        "clientAuthentication": {"x509ClientCaSecret": "clients-ca", "enforce": true},
        "tls": {"client": true},
    });
    let (metadata, pod) = pod_with_sasl_users(spec, None);
    // The operator logs in with SASL to these servers: the annotation says so.
    assert_eq!(
        metadata.annotations.unwrap()[names::CLIENT_SASL_ANNOTATION],
        ""
    );
    assert!(
        !pod.volumes
            .iter()
            .flatten()
            .any(|v| v.name == SASL_USERS_VOLUME)
    );
    let args = pod.containers[0].args.clone().unwrap();
    assert!(args.contains(&"--enforce-auth".to_owned()), "{args:?}");
    assert!(args.contains(&"--x509-clients".to_owned()), "{args:?}");
    assert!(!args.contains(&"--sasl-users".to_owned()), "{args:?}");
}

#[test]
fn without_client_authentication_the_pod_has_no_users() {
    let (metadata, pod) = pod_with_sasl_users(json!({}), None);
    assert!(
        !metadata
            .annotations
            .unwrap()
            .contains_key(names::CLIENT_SASL_ANNOTATION)
    );
    assert!(pod.volumes.iter().flatten().all(|v| v.name != "sasl-users"));
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--sasl") || a == "--enforce-auth")
    );
}
