//! Checks on a `ZooKeeperEnsemble` that the API server's CEL rules cannot make.
//!
//! CEL sees one object and knows nothing of quantities as numbers, so a manifest can pass
//! `kubectl apply` and still describe an ensemble that cannot run: a heap that does not fit in
//! the memory limit, a JVM option fighting the heap setting. The controller calls [`validate`]
//! before building anything and reports the error on the ensemble; every message names the
//! field and says what to change.
//!
//! [`validate`] returns what it parsed ([`Validated`]: the replicas as the highest server id, the
//! heap setting and the memory limit in bytes), and the builders take the numbers from there,
//! so a value is parsed once, by the code that checks it, and building cannot fail.
//! A few rules the API server also enforces (the name's length, owned config keys,
//! single-line values, the replicas range) are repeated because the builders rely on them and
//! an ensemble may reach the operator from a CRD version installed without them.

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::security::{is_security_key, security_property};
use super::{JvmSpec, ZooKeeperEnsemble, ZooKeeperEnsembleSpec, operator_owned_keys};
use crate::quorum::Myid;

/// Longest ensemble name. The StatefulSet is named after the ensemble and labels its pods
/// `controller-revision-hash=<name>-<hash>`, where the hash takes up to 10 characters and a
/// label value at most 63: 63 - 1 - 10 = 52. (Pod names, `<name>-<ordinal>`, and the
/// `<name>-headless` Service then fit in a 63-character DNS label as well.) The CRD's CEL rule
/// on `metadata.name` uses the same constant.
pub const MAX_NAME_LENGTH: usize = 52;

/// Smallest heap `spec.jvm.heap` may ask for; the JVM and ZooKeeper do not start with less.
const MIN_HEAP: &str = "16Mi";
const MIN_HEAP_BYTES: u64 = 16 << 20;

/// Smallest volume `spec.storage` may ask for.
const MIN_VOLUME: &str = "1Mi";
const MIN_VOLUME_BYTES: u64 = 1 << 20;

/// JVM options that size the heap, and so conflict with `spec.jvm.heap` and `heapPercent`.
const HEAP_SIZING_OPTIONS: &[&str] = &[
    "-Xmx",
    "-Xms",
    "-XX:MaxHeapSize",
    "-XX:InitialHeapSize",
    "-XX:MinHeapSize",
    "-XX:MaxRAM",
    "-XX:InitialRAM",
    "-XX:MinRAM",
];

/// Why an empty `spec.networkPolicy.clientFrom` is refused, here and by the CRD's CEL rule.
pub const NO_CLIENT_PEERS: &str = "spec.networkPolicy.clientFrom must not be empty (it would admit no client); leave it unset to admit the pods of the ensemble's namespace, or list the peers to admit";

/// Why `spec.backup.enabled` without `spec.tls.quorum` is refused, here and by the CRD's CEL
/// rule: the snapshot command streams the whole data tree, and only an AdminServer that takes
/// nothing but clients with a certificate of the ensemble's CA may offer it.
/// The CEL rule's message: spec.restore is set when the ensemble is created, and only then.
pub const RESTORE_ONLY_AT_CREATION: &str = "spec.restore can only be given when the ensemble is created, and cannot change afterwards: restoring into an existing ensemble would replace the data it serves; create a new ZooKeeperEnsemble with spec.restore instead";
/// The CEL rule's message: spec.restore names one source.
pub const RESTORE_NEEDS_ONE: &str = "spec.restore: give either backup (a ZooKeeperBackup in this namespace) or object (a snapshot in a bucket), exactly one";
/// The CEL rule's message: an object to restore is named by its whole key.
pub const RESTORE_OBJECT_PREFIX: &str = "spec.restore.object.s3.prefix is not used for a restore; give the whole key of the snapshot in spec.restore.object.key";
/// The CEL rule's message: a schedule needs backups on and a destination.
pub const SCHEDULE_NEEDS: &str = "spec.backup.schedule needs spec.backup.enabled: true and spec.backup.s3 (where the scheduled backups go)";
/// The CEL rule's message: a drill schedule needs backups on.
pub const DRILL_SCHEDULE_NEEDS: &str = "spec.backup.drillSchedule needs spec.backup.enabled: true (drills restore this ensemble's backups)";
/// The CEL rule's message: enforced authentication needs a way for clients to log in.
pub const ENFORCE_NEEDS_LOGIN: &str = "spec.clientAuthentication.enforce needs a way for clients to log in: spec.clientAuthentication.saslUsersSecret (SASL users) and/or x509ClientCaSecret (client certificates); name one, or switch enforce off";
/// The CEL rule's message: client certificates are asked for on the TLS client port only.
pub const X509_NEEDS_CLIENT_TLS: &str = "spec.clientAuthentication.x509ClientCaSecret needs spec.tls.client: true (client certificates are presented on the TLS client port, 2281); switch the TLS client port on, or remove the Secret's name";
pub const BACKUP_WITHOUT_QUORUM_TLS: &str = "spec.backup.enabled needs spec.tls.quorum: true (the AdminServer's snapshot command streams all data, and only the TLS AdminServer keeps everyone but the operator out); switch quorum TLS on, or backups off";

/// Why an ensemble cannot be built; each message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(
        "metadata.name {name:?} must be a DNS label (lowercase letters, digits and '-', starting with a letter and ending with a letter or digit) because it names the Services and the pods' hostnames; create the ensemble under such a name"
    )]
    NameNotDnsLabel { name: String },

    #[error(
        "metadata.name {name:?} is {length} characters long, but at most {MAX_NAME_LENGTH} fit (the StatefulSet labels its pods with the name, a '-' and a revision hash of up to 10 characters, and a label value holds 63); create the ensemble under a shorter name"
    )]
    NameTooLong { name: String, length: usize },

    #[error(
        "spec.replicas is {replicas}, but must be between 1 and 255 (ZooKeeper myids are 1..255); use an odd number such as 3 or 5"
    )]
    ReplicasOutOfRange { replicas: i32 },

    #[error(
        "spec.config: {} managed by Zooherd and cannot be set; remove them (membership, dataDir, ports, the AdminServer and metrics are configured by the operator)",
        keys.join(", ")
    )]
    OwnedConfigKeys { keys: Vec<String> },

    #[error(
        "spec.config: {} are security settings (TLS, authentication, superusers), which Zooherd owns; remove them",
        keys.join(", ")
    )]
    SecurityConfigKeys { keys: Vec<String> },

    #[error(
        "spec.config key {key:?} is not a zoo.cfg property name; use letters, digits, '.', '_' and '-' only, starting with a letter or digit"
    )]
    InvalidConfigKey { key: String },

    #[error("spec.config.{key}: the value must be a single line; remove the line break")]
    MultiLineConfigValue { key: String },

    #[error(
        "{field} {value:?} is not a quantity ({reason}); write a size such as \"10Gi\" or \"512Mi\""
    )]
    InvalidQuantity {
        field: &'static str,
        value: String,
        reason: QuantityError,
    },

    #[error("{field} {value:?} is too small; use at least {minimum}")]
    QuantityTooSmall {
        field: &'static str,
        value: String,
        minimum: &'static str,
    },

    #[error("spec.jvm: set either heap or heapPercent, not both")]
    HeapAndHeapPercent,

    #[error(
        "spec.jvm.heap {heap:?} must be smaller than spec.resources.limits.memory {limit:?}, since the JVM needs memory beyond its heap; lower the heap, raise the limit, or set spec.jvm.heapPercent instead"
    )]
    HeapNotBelowMemoryLimit { heap: String, limit: String },

    #[error(
        "spec.jvm.heapPercent is a share of the container's memory limit, but spec.resources.limits.memory is not set; set a memory limit, or a fixed spec.jvm.heap instead"
    )]
    HeapPercentWithoutMemoryLimit,

    #[error(
        "spec.jvm.extraOptions {option:?} sizes the heap, which spec.jvm.{setting} already does; remove the option or the {setting} setting"
    )]
    ExtraOptionSizesHeap {
        option: String,
        setting: &'static str,
    },

    #[error(
        "spec.jvm.extraOptions {option:?} sets the system property {key}, a security setting (TLS, authentication, superusers, the AdminServer) that Zooherd owns; remove the option"
    )]
    ExtraOptionSetsOwnedProperty { option: String, key: String },

    #[error(
        "spec.jvm.extraOptions {option:?} is empty or contains whitespace; the options reach the JVM joined by spaces, so give every option as its own list item without spaces"
    )]
    ExtraOptionNotOneWord { option: String },

    #[error("{NO_CLIENT_PEERS}")]
    NoClientPeers,

    #[error("{BACKUP_WITHOUT_QUORUM_TLS}")]
    BackupWithoutQuorumTls,

    #[error("{ENFORCE_NEEDS_LOGIN}")]
    EnforceNeedsLogin,

    #[error("{X509_NEEDS_CLIENT_TLS}")]
    X509NeedsClientTls,

    #[error("{RESTORE_NEEDS_ONE}")]
    RestoreNeedsOne,

    #[error("{RESTORE_OBJECT_PREFIX}")]
    RestoreObjectPrefix,

    #[error("{SCHEDULE_NEEDS}")]
    ScheduleNeeds,

    #[error("{DRILL_SCHEDULE_NEEDS}")]
    DrillScheduleNeeds,

    #[error(
        "{field} {schedule:?} is not a cron pattern ({problem}); write five fields, minute hour day-of-month month day-of-week, such as \"0 3 * * *\" for 03:00 UTC every day"
    )]
    InvalidSchedule {
        field: &'static str,
        schedule: String,
        problem: String,
    },

    #[error(
        "{field} sets none of podSelector, namespaceSelector and ipBlock; give one (a podSelector of {{}} means every pod of the ensemble's namespace)"
    )]
    EmptyPeer { field: String },

    #[error(
        "{field} sets ipBlock together with a selector; a NetworkPolicy peer is either an ipBlock or selectors, so make them two entries"
    )]
    IpBlockWithSelector { field: String },

    #[error(
        "{field} {value:?} is not a CIDR; write an address and a prefix length, such as \"10.0.0.0/8\" or \"fd00::/8\""
    )]
    InvalidCidr { field: String, value: String },
}

/// Why a string is not a Kubernetes quantity of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("expected a number followed by an optional suffix such as Ki, Mi, Gi, k, M, G or e3")]
    Malformed,
    #[error("it is negative")]
    Negative,
    #[error("it is larger than 2^63-1")]
    TooLarge,
}

/// An ensemble [`validate`] accepted, with the numbers of its spec parsed: the builders take it
/// and cannot fail. What needs no parsing (placement, storage, the image, ...) they read from
/// [`Validated::ensemble`].
#[derive(Clone, Copy, Debug)]
pub struct Validated<'a> {
    /// The ensemble as it was read.
    pub ensemble: &'a ZooKeeperEnsemble,
    /// `spec.replicas` as the highest server: the ensemble asks for servers 1..=this as voters.
    pub replicas: Myid,
    /// How `spec.jvm` sizes the heap.
    pub heap: JvmHeap,
    /// `spec.resources.limits.memory` in bytes, when set.
    pub memory_limit: Option<u64>,
}

/// How `spec.jvm` sizes the heap: by `heap` or by `heapPercent`, never both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JvmHeap {
    /// `spec.jvm.heap` in bytes: at least 16Mi, and below the memory limit when there is one.
    Fixed(u64),
    /// `spec.jvm.heapPercent` of the memory limit, which is set.
    ShareOfLimit(i32),
    /// Neither is set; `sized_by_options` when `spec.jvm.extraOptions` size the heap themselves.
    Unset { sized_by_options: bool },
}

/// Checks everything about `ensemble` that the builders rely on and CEL cannot see, and returns
/// what the builders need of it, parsed.
pub fn validate(ensemble: &ZooKeeperEnsemble) -> Result<Validated<'_>, ValidationError> {
    validate_name(&ensemble.name_any())?;
    let replicas = replicas(ensemble)?;
    validate_config(ensemble)?;

    let storage = &ensemble.spec.storage;
    check_volume_size("spec.storage.data.size", &storage.data.size)?;
    if let Some(log) = &storage.transaction_log {
        check_volume_size("spec.storage.transactionLog.size", &log.size)?;
    }

    let (heap, memory_limit) = validate_jvm(ensemble)?;
    validate_network_policy(ensemble)?;
    validate_backup(&ensemble.spec)?;
    let auth = &ensemble.spec.client_authentication;
    if auth.enforce && auth.sasl_users_secret.is_none() && auth.x509_client_ca_secret.is_none() {
        return Err(ValidationError::EnforceNeedsLogin);
    }
    if auth.x509_client_ca_secret.is_some() && !ensemble.spec.tls.client {
        return Err(ValidationError::X509NeedsClientTls);
    }
    validate_restore(&ensemble.spec)?;
    Ok(Validated {
        ensemble,
        replicas,
        heap,
        memory_limit,
    })
}

/// `spec.replicas` as the highest server id, checked to be 1..=255.
fn replicas(ensemble: &ZooKeeperEnsemble) -> Result<Myid, ValidationError> {
    let replicas = ensemble.spec.replicas;
    Myid::try_from(replicas).map_err(|_| ValidationError::ReplicasOutOfRange { replicas })
}

/// `spec.jvm.heap` in bytes, checked to be a quantity of at least 16Mi.
fn heap_bytes(jvm: &JvmSpec) -> Result<Option<u64>, ValidationError> {
    let Some(heap) = &jvm.heap else {
        return Ok(None);
    };
    let bytes = bytes_of("spec.jvm.heap", heap)?;
    if bytes < MIN_HEAP_BYTES {
        return Err(ValidationError::QuantityTooSmall {
            field: "spec.jvm.heap",
            value: heap.0.clone(),
            minimum: MIN_HEAP,
        });
    }
    Ok(Some(bytes))
}

/// Whether `key` can be written as a zoo.cfg property name: a Java properties key with no
/// separator, whitespace, comment marker or escape in it.
pub(crate) fn is_config_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether a JVM option sets the heap size (`-Xmx1g`, `-XX:MaxRAMPercentage=50`, ...).
fn sizes_heap(option: &str) -> bool {
    HEAP_SIZING_OPTIONS
        .iter()
        .any(|prefix| option.starts_with(prefix))
}

/// Parses a Kubernetes quantity as a number of bytes ("10Gi", "512M", "1.5e9"), rounding a
/// fraction of a byte up as the API server does. `zooherd server` reads the heap and the
/// memory limit with it too (`agent::server::parse_quantity`), so the pod reads a size as the
/// operator checked it.
pub fn quantity_bytes(quantity: &Quantity) -> Result<u64, QuantityError> {
    let text = quantity.0.as_str();
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = unsigned
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(QuantityError::Malformed);
    }
    let (binary_power, mut decimal_exponent) = suffix_scale(suffix)?;

    // The number as an integer mantissa times a power of ten.
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or(QuantityError::TooLarge)?;
    }
    decimal_exponent -= i32::try_from(fraction.len()).map_err(|_| QuantityError::Malformed)?;
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative);
    }

    let scaled = mantissa
        .checked_mul(1u128 << binary_power)
        .ok_or(QuantityError::TooLarge)?;
    let power_of_ten = |exponent: u32| 10u128.checked_pow(exponent);
    let bytes = if decimal_exponent >= 0 {
        power_of_ten(decimal_exponent.unsigned_abs())
            .and_then(|p| scaled.checked_mul(p))
            .ok_or(QuantityError::TooLarge)?
    } else {
        match power_of_ten(decimal_exponent.unsigned_abs()) {
            Some(p) => scaled.div_ceil(p),
            // Smaller than any u128 power of ten can divide: a fraction of a byte at most.
            None => u128::from(scaled != 0),
        }
    };
    // The API server caps quantities at 2^63-1.
    u64::try_from(bytes)
        .ok()
        .filter(|&bytes| bytes <= i64::MAX.unsigned_abs())
        .ok_or(QuantityError::TooLarge)
}

/// A quantity suffix as (power of two, power of ten).
fn suffix_scale(suffix: &str) -> Result<(u32, i32), QuantityError> {
    let scale = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .ok_or(QuantityError::Malformed)?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Malformed);
            }
            // Beyond a few hundred an exponent only overflows or rounds to one byte; capping it
            // keeps the arithmetic in range.
            let magnitude = digits.parse::<i32>().unwrap_or(i32::MAX).min(1000);
            let exponent = if exponent.starts_with('-') {
                -magnitude
            } else {
                magnitude
            };
            (0, exponent)
        }
    };
    Ok(scale)
}

fn validate_restore(spec: &ZooKeeperEnsembleSpec) -> Result<(), ValidationError> {
    let Some(restore) = &spec.restore else {
        return Ok(());
    };
    match (&restore.backup, &restore.object) {
        (Some(_), None) => Ok(()),
        (None, Some(object)) if object.s3.prefix.is_empty() => Ok(()),
        (None, Some(_)) => Err(ValidationError::RestoreObjectPrefix),
        _ => Err(ValidationError::RestoreNeedsOne),
    }
}

fn validate_backup(spec: &ZooKeeperEnsembleSpec) -> Result<(), ValidationError> {
    let backup = &spec.backup;
    if backup.enabled && !spec.tls.quorum {
        return Err(ValidationError::BackupWithoutQuorumTls);
    }
    if let Some(schedule) = &backup.schedule {
        if !backup.enabled || backup.s3.is_none() {
            return Err(ValidationError::ScheduleNeeds);
        }
        parse_schedule("spec.backup.schedule", schedule)?;
    }
    if let Some(schedule) = &backup.drill_schedule {
        if !backup.enabled {
            return Err(ValidationError::DrillScheduleNeeds);
        }
        parse_schedule("spec.backup.drillSchedule", schedule)?;
    }
    Ok(())
}

fn parse_schedule(field: &'static str, schedule: &str) -> Result<(), ValidationError> {
    crate::backup::schedule::parse(schedule)
        .map(drop)
        .map_err(|problem| ValidationError::InvalidSchedule {
            field,
            schedule: schedule.to_owned(),
            problem,
        })
}

fn validate_name(name: &str) -> Result<(), ValidationError> {
    let bytes = name.as_bytes();
    let dns_label = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !dns_label {
        return Err(ValidationError::NameNotDnsLabel {
            name: name.to_owned(),
        });
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(ValidationError::NameTooLong {
            name: name.to_owned(),
            length: name.len(),
        });
    }
    Ok(())
}

fn validate_config(ensemble: &ZooKeeperEnsemble) -> Result<(), ValidationError> {
    let config = &ensemble.spec.config;
    let owned = operator_owned_keys(config);
    if !owned.is_empty() {
        return Err(ValidationError::OwnedConfigKeys {
            keys: owned.into_iter().map(str::to_owned).collect(),
        });
    }
    let security: Vec<String> = config
        .keys()
        .filter(|key| is_security_key(key))
        .cloned()
        .collect();
    if !security.is_empty() {
        return Err(ValidationError::SecurityConfigKeys { keys: security });
    }
    for (key, value) in config {
        if !is_config_key(key) {
            return Err(ValidationError::InvalidConfigKey { key: key.clone() });
        }
        if value.contains(['\n', '\r']) {
            return Err(ValidationError::MultiLineConfigValue { key: key.clone() });
        }
    }
    Ok(())
}

/// `spec.jvm` and the memory limit: how the heap is sized, and the limit in bytes.
fn validate_jvm(ensemble: &ZooKeeperEnsemble) -> Result<(JvmHeap, Option<u64>), ValidationError> {
    let jvm = &ensemble.spec.jvm;
    let heap_bytes = heap_bytes(jvm)?;
    let limit = memory_limit(ensemble);
    let limit_bytes = limit
        .map(|limit| bytes_of("spec.resources.limits.memory", limit))
        .transpose()?;

    if let Some(option) = jvm
        .extra_options
        .iter()
        .find(|option| option.is_empty() || option.contains(char::is_whitespace))
    {
        return Err(ValidationError::ExtraOptionNotOneWord {
            option: option.clone(),
        });
    }
    if let Some((option, key)) = jvm
        .extra_options
        .iter()
        .find_map(|option| Some((option, security_property(option)?)))
    {
        return Err(ValidationError::ExtraOptionSetsOwnedProperty {
            option: option.clone(),
            key: key.to_owned(),
        });
    }

    let sized_by_options = jvm.extra_options.iter().find(|option| sizes_heap(option));
    let (heap, setting) = match (heap_bytes, jvm.heap_percent) {
        (Some(_), Some(_)) => return Err(ValidationError::HeapAndHeapPercent),
        (Some(bytes), None) => (JvmHeap::Fixed(bytes), "heap"),
        (None, Some(percent)) => (JvmHeap::ShareOfLimit(percent), "heapPercent"),
        (None, None) => {
            let sized_by_options = sized_by_options.is_some();
            return Ok((JvmHeap::Unset { sized_by_options }, limit_bytes));
        }
    };
    if let Some(option) = sized_by_options {
        return Err(ValidationError::ExtraOptionSizesHeap {
            option: option.clone(),
            setting,
        });
    }

    if jvm.heap_percent.is_some() && limit.is_none() {
        return Err(ValidationError::HeapPercentWithoutMemoryLimit);
    }
    if let (Some(heap), Some(heap_bytes), Some(limit), Some(limit_bytes)) =
        (&jvm.heap, heap_bytes, limit, limit_bytes)
        && heap_bytes >= limit_bytes
    {
        return Err(ValidationError::HeapNotBelowMemoryLimit {
            heap: heap.0.clone(),
            limit: limit.0.clone(),
        });
    }
    Ok((heap, limit_bytes))
}

/// The peers of `spec.networkPolicy` must be ones the API server takes in a NetworkPolicy:
/// otherwise the policy could not be applied, and the ensemble would run without it.
fn validate_network_policy(ensemble: &ZooKeeperEnsemble) -> Result<(), ValidationError> {
    let policy = &ensemble.spec.network_policy;
    if policy.client_from.as_ref().is_some_and(Vec::is_empty) {
        return Err(ValidationError::NoClientPeers);
    }
    let client = policy.client_from.iter().flatten();
    let lists = [
        ("spec.networkPolicy.clientFrom", client.collect::<Vec<_>>()),
        (
            "spec.networkPolicy.metricsFrom",
            policy.metrics_from.iter().collect(),
        ),
    ];
    for (list, peers) in lists {
        for (index, peer) in peers.into_iter().enumerate() {
            check_peer(&format!("{list}[{index}]"), peer)?;
        }
    }
    Ok(())
}

fn check_peer(field: &str, peer: &NetworkPolicyPeer) -> Result<(), ValidationError> {
    let selects = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    let Some(block) = &peer.ip_block else {
        return if selects {
            Ok(())
        } else {
            Err(ValidationError::EmptyPeer {
                field: field.to_owned(),
            })
        };
    };
    if selects {
        return Err(ValidationError::IpBlockWithSelector {
            field: field.to_owned(),
        });
    }
    let cidrs = std::iter::once((format!("{field}.ipBlock.cidr"), &block.cidr)).chain(
        block
            .except
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, cidr)| (format!("{field}.ipBlock.except[{index}]"), cidr)),
    );
    for (field, value) in cidrs {
        if !is_cidr(value) {
            return Err(ValidationError::InvalidCidr {
                field,
                value: value.clone(),
            });
        }
    }
    Ok(())
}

/// Whether `text` is an IPv4 or IPv6 address with a prefix length that fits it.
fn is_cidr(text: &str) -> bool {
    let Some((address, length)) = text.split_once('/') else {
        return false;
    };
    let Ok(address) = address.parse::<std::net::IpAddr>() else {
        return false;
    };
    let bits = if address.is_ipv4() { 32 } else { 128 };
    length.bytes().all(|b| b.is_ascii_digit())
        && length.parse::<u8>().is_ok_and(|length| length <= bits)
}

fn memory_limit(ensemble: &ZooKeeperEnsemble) -> Option<&Quantity> {
    ensemble
        .spec
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
}

fn bytes_of(field: &'static str, quantity: &Quantity) -> Result<u64, ValidationError> {
    quantity_bytes(quantity).map_err(|reason| ValidationError::InvalidQuantity {
        field,
        value: quantity.0.clone(),
        reason,
    })
}

/// Checks a volume size: a quantity of at least 1Mi (no provisioner hands out less).
fn check_volume_size(field: &'static str, size: &Quantity) -> Result<(), ValidationError> {
    if bytes_of(field, size)? < MIN_VOLUME_BYTES {
        return Err(ValidationError::QuantityTooSmall {
            field,
            value: size.0.clone(),
            minimum: MIN_VOLUME,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
