//! The JVM that becomes ZooKeeper: a heap that fits the container, Zooherd's options, and the
//! exec.
//!
//! The heap is sized from the memory limit the downward API passes, or set outright; both are
//! Kubernetes quantities, read by the operator's own parser. The digest of the superuser the
//! operator reconfigures the ensemble as comes from a Secret through [`ENV_SUPER_DIGEST`] and
//! becomes a JVM property here, so that it is in no pod spec. Then the agent *execs* the JVM:
//! ZooKeeper replaces this process (PID 1 of the container), so the kubelet's SIGTERM reaches
//! ZooKeeper directly, with no shell or supervisor in between.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Env;
use super::error::{StartError, invalid};
use crate::api::validate::{QuantityError, quantity_bytes};
use crate::build::names;
use crate::quorum::reconfig::{SUPER_DIGEST_PROPERTY, SUPERUSER};

/// The container's memory limit in bytes (downward API `resourceFieldRef: limits.memory`,
/// divisor 1). Optional.
pub const ENV_MEMORY_LIMIT: &str = "ZOOHERD_MEMORY_LIMIT";
/// An explicit heap size as a Kubernetes quantity (`512Mi`, `1Gi`). Wins over the share.
pub const ENV_JVM_HEAP: &str = "ZOOHERD_JVM_HEAP";
/// The heap as a share of the memory limit, in percent (1 to 90, default 50).
pub const ENV_JVM_HEAP_PERCENT: &str = "ZOOHERD_JVM_HEAP_PERCENT";
/// More JVM options, separated by whitespace, placed after Zooherd's (so they win).
pub const ENV_JVM_EXTRA_OPTS: &str = "ZOOHERD_JVM_EXTRA_OPTS";
/// Where ZooKeeper is installed (`lib/*.jar`, `conf/logback.xml`); default
/// [`DEFAULT_ZOOKEEPER_HOME`].
pub const ENV_ZOOKEEPER_HOME: &str = "ZOOKEEPER_HOME";
/// The JRE: `$JAVA_HOME/bin/java` when set, else `java` from the PATH.
pub const ENV_JAVA_HOME: &str = "JAVA_HOME";
/// `zooherd:<digest>` of the superuser that may reconfigure the ensemble (from the ensemble's
/// superuser Secret). Optional: without it no client can change the membership.
pub const ENV_SUPER_DIGEST: &str = names::SUPER_DIGEST_ENV;

/// Where ZooKeeper lives in Zooherd's image.
pub const DEFAULT_ZOOKEEPER_HOME: &str = "/opt/zookeeper";
/// The heap's share of the memory limit unless [`ENV_JVM_HEAP_PERCENT`] says otherwise: the
/// rest is for the JVM itself (metaspace, threads, direct buffers) and the page cache that
/// ZooKeeper's snapshots and transaction log go through.
pub const DEFAULT_HEAP_PERCENT: u8 = 50;
/// The largest share accepted: above it the JVM's own memory no longer fits beside the heap.
pub const MAX_HEAP_PERCENT: u8 = 90;
/// The class that runs a ZooKeeper server (standalone or in a quorum).
pub const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
/// JVM options Zooherd always passes (`jvm.extraOptions` come after them, so they can be
/// overridden): a JVM out of memory exits, so the kubelet restarts it, rather than limping on
/// with threads that died of OutOfMemoryError.
const BASE_JVM_OPTIONS: &[&str] = &["-XX:+ExitOnOutOfMemoryError"];

/// The file, beside the runtime zoo.cfg, that adds [`JAVA_SECURITY_PROPERTIES`] to the JDK's
/// own (`-Djava.security.properties`).
pub const JAVA_SECURITY_FILE: &str = "java.security";

/// How long the JVM caches name lookups: 5 s, and 1 s for names that did not resolve, instead
/// of the JDK's 30 s and 10 s. A replaced pod comes back with a new IP, and only the higher myid
/// of a pair opens their election connection, so a peer still holding the old address (or the
/// failure to resolve a pod that had no IP yet) keeps the server out of the quorum until the
/// cache expires. The end-to-end test caught it: a member restarted by the operator could not
/// rejoin before the next restart changed its IP again. These are security properties, not
/// system properties: the JDK's java.security sets the negative one, which wins over
/// `-Dsun.net.inetaddr.negative.ttl`.
pub const JAVA_SECURITY_PROPERTIES: &str = "\
# Written by `zooherd server`: name lookups of peers are cached briefly, pods change IPs.
networkaddress.cache.ttl=5
networkaddress.cache.negative.ttl=1
";

const MIB: u64 = 1024 * 1024;

/// A memory size in bytes, as the environment gives one: a Kubernetes quantity, read by the
/// operator's own parser ([`quantity_bytes`]), in the plain forms a memory size is written in:
/// digits with an optional fraction (`1048576`, `512Mi`, `1.5Gi`), no sign or exponent, and no
/// suffix below a byte (`m` is a thousandth to Kubernetes, and a mebibyte to the JVM).
/// Whitespace around it is ignored. The error says what is wrong, for a message that names the
/// variable.
pub fn parse_quantity(text: &str) -> Result<u64, String> {
    const FORMS: &str = "is not a memory quantity: write bytes, or a number with Ki, Mi, Gi, Ti (or k, M, G, T), like 512Mi or 1.5Gi";
    let text = text.trim();
    let number = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let plain_number = number
        .split('.')
        .all(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    let below_a_byte = matches!(&text[number.len()..], "m" | "u" | "n");
    if !plain_number || below_a_byte {
        return Err(FORMS.to_owned());
    }
    quantity_bytes(&Quantity(text.to_owned())).map_err(|error| match error {
        QuantityError::TooLarge => "is too large".to_owned(),
        QuantityError::Malformed | QuantityError::Negative => FORMS.to_owned(),
    })
}

/// How big the JVM heap is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heap {
    /// [`ENV_JVM_HEAP`] set it.
    Explicit { mib: u64 },
    /// `percent` of the memory limit [`ENV_MEMORY_LIMIT`] passed.
    ShareOfLimit {
        mib: u64,
        percent: u8,
        limit_bytes: u64,
    },
    /// No limit was passed: the JVM takes `percent` of the memory it sees (its cgroup's limit,
    /// or the machine's).
    ShareOfVisibleMemory { percent: u8 },
}

impl Heap {
    /// The JVM options that set this heap (initial and maximum alike: the heap is sized for
    /// the container up front instead of growing into the limit later).
    pub fn jvm_options(&self) -> Vec<String> {
        match *self {
            Heap::Explicit { mib } | Heap::ShareOfLimit { mib, .. } => {
                vec![format!("-Xms{mib}m"), format!("-Xmx{mib}m")]
            }
            Heap::ShareOfVisibleMemory { percent } => vec![
                format!("-XX:InitialRAMPercentage={percent}"),
                format!("-XX:MaxRAMPercentage={percent}"),
            ],
        }
    }

    /// For the start-up log line.
    pub fn describe(&self) -> String {
        match *self {
            Heap::Explicit { mib } => format!("heap {mib} MiB ({ENV_JVM_HEAP})"),
            Heap::ShareOfLimit {
                mib,
                percent,
                limit_bytes,
            } => format!(
                "heap {mib} MiB ({percent}% of the {} MiB memory limit)",
                limit_bytes / MIB
            ),
            Heap::ShareOfVisibleMemory { percent } => {
                format!("heap {percent}% of the memory the JVM sees (no {ENV_MEMORY_LIMIT})")
            }
        }
    }
}

/// Sizes the heap from [`ENV_JVM_HEAP`], else [`ENV_MEMORY_LIMIT`] and
/// [`ENV_JVM_HEAP_PERCENT`]. A bad value is an error even when another setting wins.
pub fn decide_heap(env: Env) -> Result<Heap, StartError> {
    let percent = match env(ENV_JVM_HEAP_PERCENT) {
        None => DEFAULT_HEAP_PERCENT,
        Some(text) => match text.trim().parse::<u8>() {
            Ok(p) if (1..=MAX_HEAP_PERCENT).contains(&p) => p,
            _ => {
                return Err(invalid(
                    ENV_JVM_HEAP_PERCENT,
                    &text,
                    format!("is not a whole percentage from 1 to {MAX_HEAP_PERCENT}"),
                ));
            }
        },
    };
    let quantity = |var: &'static str| -> Result<Option<(String, u64)>, StartError> {
        env(var)
            .map(|text| {
                parse_quantity(&text)
                    .map(|bytes| (text.clone(), bytes))
                    .map_err(|problem| invalid(var, &text, problem))
            })
            .transpose()
    };
    let explicit = quantity(ENV_JVM_HEAP)?;
    let limit = quantity(ENV_MEMORY_LIMIT)?;
    match (explicit, limit) {
        (Some((text, bytes)), _) => match bytes / MIB {
            0 => Err(invalid(
                ENV_JVM_HEAP,
                &text,
                "is less than 1 MiB: give the heap in Mi or Gi",
            )),
            mib => Ok(Heap::Explicit { mib }),
        },
        (None, Some((text, limit_bytes))) => {
            match (u128::from(limit_bytes) * u128::from(percent) / 100 / u128::from(MIB)) as u64 {
                0 => Err(invalid(
                    ENV_MEMORY_LIMIT,
                    &text,
                    format!(
                        "leaves less than 1 MiB for a {percent}% heap: raise the memory limit, or set {ENV_JVM_HEAP}"
                    ),
                )),
                mib => Ok(Heap::ShareOfLimit {
                    mib,
                    percent,
                    limit_bytes,
                }),
            }
        }
        (None, None) => Ok(Heap::ShareOfVisibleMemory { percent }),
    }
}

/// `$JAVA_HOME/bin/java`, or `java` (looked up on the PATH) without a JAVA_HOME.
pub fn java_program(java_home: Option<&str>) -> PathBuf {
    match java_home {
        Some(home) => Path::new(home).join("bin/java"),
        None => PathBuf::from("java"),
    }
}

/// The JVM's whole command line: java, the heap, Zooherd's options (with the
/// [`JAVA_SECURITY_FILE`] beside `config`), the extra options (last, so they win), the class path (ZooKeeper's jars and its conf directory, where logback.xml
/// sends the log to stdout) and the main class with the runtime zoo.cfg.
pub fn java_argv(
    java: &Path,
    zookeeper_home: &Path,
    heap: &Heap,
    extra_options: &[String],
    config: &Path,
) -> Vec<OsString> {
    let mut class_path = zookeeper_home.join("lib").into_os_string();
    class_path.push("/*:");
    class_path.push(zookeeper_home.join("conf"));
    let mut security = OsString::from("-Djava.security.properties=");
    security.push(config.with_file_name(JAVA_SECURITY_FILE));
    let mut argv: Vec<OsString> = vec![java.into()];
    argv.extend(heap.jvm_options().into_iter().map(OsString::from));
    argv.extend(BASE_JVM_OPTIONS.iter().map(OsString::from));
    argv.push(security);
    argv.extend(extra_options.iter().map(OsString::from));
    argv.extend([
        "-cp".into(),
        class_path,
        MAIN_CLASS.into(),
        config.as_os_str().to_owned(),
    ]);
    argv
}

/// ZooKeeper's switch for FIPS mode, a system property only.
const FIPS_MODE_PROPERTY: &str = "zookeeper.fips-mode";

/// The JVM's command line for `heap` and the runtime zoo.cfg at `config`, with what the
/// environment adds: the superuser's digest ([`ENV_SUPER_DIGEST`], as a system property),
/// [`ENV_JVM_EXTRA_OPTS`], ZooKeeper's home and the JRE; with `sasl`, the JAAS login file
/// beside `config`.
pub(super) fn command_line(
    env: Env,
    heap: &Heap,
    config: &Path,
    sasl: bool,
) -> Result<Vec<OsString>, StartError> {
    let mut jvm_options = Vec::new();
    if sasl {
        jvm_options.push(format!(
            "-Djava.security.auth.login.config={}",
            config.with_file_name(super::sasl::JAAS_FILE).display()
        ));
        // ZooKeeper 3.9 runs in FIPS mode by default, which refuses DIGEST-MD5, the only SASL
        // mechanism of a login file (ZOOKEEPER-5043; "zookeeper.fips-mode" in the
        // administrator's guide). Off, ZooKeeper also wraps TLS trust in its ZKTrustManager,
        // which would check peers' host names: zoo.cfg switches that off for the quorum
        // (`ssl.quorum.hostnameVerification=false`, see build::tls), the CA being the identity.
        jvm_options.push(format!("-D{FIPS_MODE_PROPERTY}=false"));
    }
    if let Some(digest) = env(ENV_SUPER_DIGEST) {
        if !digest.starts_with(&format!("{SUPERUSER}:")) || digest.contains(char::is_whitespace) {
            return Err(invalid(
                ENV_SUPER_DIGEST,
                "(hidden)",
                format!("is not {SUPERUSER}:<digest>: set it from the ensemble's superuser Secret"),
            ));
        }
        jvm_options.push(format!("-D{SUPER_DIGEST_PROPERTY}={digest}"));
    }
    jvm_options.extend(
        env(ENV_JVM_EXTRA_OPTS)
            .map(|opts| {
                opts.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    let zookeeper_home =
        PathBuf::from(env(ENV_ZOOKEEPER_HOME).unwrap_or_else(|| DEFAULT_ZOOKEEPER_HOME.into()));
    let java = java_program(env(ENV_JAVA_HOME).as_deref());
    Ok(java_argv(
        &java,
        &zookeeper_home,
        heap,
        &jvm_options,
        config,
    ))
}

/// Replaces this process with the JVM `argv` names; returns only why it could not.
pub(super) fn exec(argv: &[OsString]) -> StartError {
    let program = &argv[0];
    let error = Command::new(program).args(&argv[1..]).exec();
    StartError::Exec {
        program: program.to_string_lossy().into_owned(),
        error: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::server::EXIT_INVALID_INPUT;
    use crate::agent::server::test_support::env_of;

    #[test]
    fn quantities() {
        let cases = [
            ("1048576", 1 << 20),
            ("512Mi", 512 << 20),
            ("1Gi", 1 << 30),
            ("1.5Gi", 3 << 29),
            ("2Ki", 2048),
            ("1G", 1_000_000_000),
            ("500M", 500_000_000),
            ("1k", 1000),
            (" 256Mi ", 256 << 20),
            ("0.5Mi", 1 << 19),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_quantity(text), Ok(bytes), "{text}");
        }
        for text in [
            "", "Mi", "-1Gi", "1.Gi", ".5Gi", "1GB", "1gi", "1e9", "12x", "1.2.3", "100m",
        ] {
            assert!(parse_quantity(text).is_err(), "{text:?}");
        }
        assert_eq!(
            parse_quantity("20Ei"),
            Err("is too large".to_owned()),
            "beyond u64"
        );
    }

    #[test]
    fn heap_from_the_environment() {
        let gib = (1u64 << 30).to_string();
        let cases: [(Vec<(&str, &str)>, Heap); 6] = [
            (vec![], Heap::ShareOfVisibleMemory { percent: 50 }),
            (
                vec![(ENV_JVM_HEAP_PERCENT, "75")],
                Heap::ShareOfVisibleMemory { percent: 75 },
            ),
            (
                vec![(ENV_MEMORY_LIMIT, &gib)],
                Heap::ShareOfLimit {
                    mib: 512,
                    percent: 50,
                    limit_bytes: 1 << 30,
                },
            ),
            (
                vec![(ENV_MEMORY_LIMIT, &gib), (ENV_JVM_HEAP_PERCENT, "25")],
                Heap::ShareOfLimit {
                    mib: 256,
                    percent: 25,
                    limit_bytes: 1 << 30,
                },
            ),
            (
                vec![(ENV_MEMORY_LIMIT, &gib), (ENV_JVM_HEAP, "768Mi")],
                Heap::Explicit { mib: 768 },
            ),
            (vec![(ENV_JVM_HEAP, "1.5Gi")], Heap::Explicit { mib: 1536 }),
        ];
        for (pairs, want) in cases {
            assert_eq!(decide_heap(&env_of(&pairs)), Ok(want), "{pairs:?}");
        }
    }

    #[test]
    fn bad_heap_settings_name_the_variable() {
        let cases = [
            (
                (ENV_JVM_HEAP, "lots"),
                "ZOOHERD_JVM_HEAP=\"lots\" is not a memory quantity",
            ),
            (
                (ENV_JVM_HEAP, "1000"),
                "ZOOHERD_JVM_HEAP=\"1000\" is less than 1 MiB",
            ),
            (
                (ENV_MEMORY_LIMIT, "1Gb"),
                "ZOOHERD_MEMORY_LIMIT=\"1Gb\" is not a memory quantity",
            ),
            (
                (ENV_MEMORY_LIMIT, "1000"),
                "ZOOHERD_MEMORY_LIMIT=\"1000\" leaves less than 1 MiB",
            ),
            (
                (ENV_JVM_HEAP_PERCENT, "0"),
                "ZOOHERD_JVM_HEAP_PERCENT=\"0\" is not a whole percentage",
            ),
            (
                (ENV_JVM_HEAP_PERCENT, "95"),
                "ZOOHERD_JVM_HEAP_PERCENT=\"95\" is not a whole percentage",
            ),
            (
                (ENV_JVM_HEAP_PERCENT, "half"),
                "ZOOHERD_JVM_HEAP_PERCENT=\"half\" is not a whole percentage",
            ),
        ];
        for (pair, want) in cases {
            let error = decide_heap(&env_of(&[pair])).unwrap_err();
            assert!(error.to_string().starts_with(want), "{error}");
            assert_eq!(error.exit_code(), EXIT_INVALID_INPUT);
        }
    }

    #[test]
    fn heap_options() {
        assert_eq!(
            Heap::Explicit { mib: 512 }.jvm_options(),
            ["-Xms512m", "-Xmx512m"]
        );
        assert_eq!(
            Heap::ShareOfVisibleMemory { percent: 50 }.jvm_options(),
            ["-XX:InitialRAMPercentage=50", "-XX:MaxRAMPercentage=50"]
        );
    }

    #[test]
    fn java_command_line() {
        let argv = java_argv(
            &java_program(Some("/usr/lib/jvm/java-17")),
            Path::new("/opt/zookeeper"),
            &Heap::Explicit { mib: 512 },
            &[
                "-Dzookeeper.log.level=DEBUG".to_owned(),
                "-Xmx1g".to_owned(),
            ],
            Path::new("/tmp/zooherd/zoo.cfg"),
        );
        assert_eq!(
            argv,
            [
                "/usr/lib/jvm/java-17/bin/java",
                "-Xms512m",
                "-Xmx512m",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.security.properties=/tmp/zooherd/java.security",
                "-Dzookeeper.log.level=DEBUG",
                "-Xmx1g",
                "-cp",
                "/opt/zookeeper/lib/*:/opt/zookeeper/conf",
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                "/tmp/zooherd/zoo.cfg",
            ]
        );
        assert_eq!(java_program(None), Path::new("java"));
    }
}
