//! `zooherd server`: the entrypoint of Zooherd's ZooKeeper image.
//!
//! ZooKeeper itself needs a few things a StatefulSet does not give it, and this is where they
//! are made, before the JVM starts. Each has a part of its own, whose module doc says more:
//!
//! - **Its myid** (`identity.rs`). Pods get ordinals, ZooKeeper wants `dataDir/myid`: the pod
//!   with ordinal `n` is myid `n + 1`, the same rule the operator uses to render the
//!   `server.<myid>` lines. The ensemble it belongs to (uid, namespace and name) marks its data.
//! - **A data directory that is really its own** (`data_dir.rs`). A volume left behind by
//!   another server or by another ensemble makes ZooKeeper crash-loop with "My id N not in the
//!   peer list", or worse, join with data that is not this ensemble's. The agent claims a fresh
//!   directory with the myid and a marker naming the ensemble; a directory that names another
//!   myid of this ensemble is moved aside (never deleted) and the server starts empty, but only
//!   when the other voters serve as a quorum without it ([`may_reinitialise`]); otherwise, and
//!   for another ensemble's directory, it refuses with an exit code of its own
//!   ([`EXIT_FOREIGN_MYID`], [`EXIT_FOREIGN_ENSEMBLE`]) instead of starting the JVM.
//! - **An empty volume never votes in a formed ensemble** (`data_dir.rs`, [`may_start`]): a
//!   voter whose volume holds no ZooKeeper data exits ([`EXIT_EMPTY_VOTER`]) once the ensemble
//!   has formed; the operator removes it from the voters, and it starts again as a joining server.
//! - **Names before the first formation** (`formation.rs`): until the ensemble has formed, the
//!   JVM starts only once every server's name resolves, so that no follower abandons its
//!   leader over a DNS answer cached from before the names were published.
//! - **A new ensemble from a backup** (`restore.rs`): with spec.restore, every initial server
//!   downloads the backup's snapshot into its empty volume, checked against the size and
//!   SHA-256 the backup recorded, before ZooKeeper first starts ([`EXIT_RESTORE_FAILED`]
//!   otherwise); once the ensemble has formed, no server loads it again.
//! - **Asking the other servers** (`peers.rs`): what the other voters' AdminServers answer,
//!   which is what decides whether another server's data may be moved aside.
//! - **A writable zoo.cfg, and the membership to start with** (`config.rs`). ZooKeeper rewrites
//!   its configuration file, and the operator's is a read-only ConfigMap mount: the agent writes
//!   the copy ZooKeeper runs with onto the data volume, and picks the membership to start with
//!   ([`choose_membership`]): the newest committed one on the volume that lists this server,
//!   else the operator's bootstrap membership, in which joining servers are observers.
//! - **The JVM** (`jvm.rs`): a heap that fits the container, from the memory limit the downward
//!   API passes; the superuser's digest (from a Secret through [`ENV_SUPER_DIGEST`]) as a JVM
//!   property, so that it is in no pod spec; and the exec.
//!
//! Then it *execs* the JVM: ZooKeeper replaces this process (PID 1 of the container), so the
//! kubelet's SIGTERM reaches ZooKeeper directly, with no shell or supervisor in between.
//!
//! Every decision is a pure function of the environment and the file contents ([`plan`],
//! [`check_data_dir`], [`decide_heap`], [`java_argv`], ...), tested beside it; [`run`] only
//! reads, writes a few small files (`files.rs`) and execs. Every failure is one [`StartError`]
//! line that names the variable, field or file and what to do, and maps to a documented exit
//! code (`error.rs`).

mod config;
mod data_dir;
mod error;
mod files;
mod formation;
mod identity;
mod jvm;
mod peers;
mod restore;
mod sasl;
#[cfg(test)]
mod test_support;

use std::convert::Infallible;
use std::ffi::OsString;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use config::{
    MembershipSource, RUNTIME_CONFIG_IN_DATA_DIR, bind_client_address, choose_membership,
    config_entries, config_value, data_dir, dynamic_config, dynamic_config_path,
    dynamic_config_version, per_pod_settings, read_dynamic_configs, runtime_config,
    runtime_config_path,
};
pub use data_dir::{
    DataDirState, ENSEMBLE_MARKER_FILE, MYID_FILE, STALE_PREFIX, check_data_dir, may_reinitialise,
    may_start, refusal,
};
pub use error::{
    EXIT_EMPTY_VOTER, EXIT_EXEC_FAILED, EXIT_FOREIGN_ENSEMBLE, EXIT_FOREIGN_MYID,
    EXIT_INVALID_INPUT, EXIT_IO, EXIT_RESTORE_FAILED, StartError,
};
pub use identity::{
    ENV_ENSEMBLE_UID, ENV_POD_NAME, ENV_POD_NAMESPACE, EnsembleMarker, Identity, identity,
};
pub use jvm::{
    DEFAULT_HEAP_PERCENT, DEFAULT_ZOOKEEPER_HOME, ENV_JAVA_HOME, ENV_JVM_EXTRA_OPTS, ENV_JVM_HEAP,
    ENV_JVM_HEAP_PERCENT, ENV_MEMORY_LIMIT, ENV_SUPER_DIGEST, ENV_ZOOKEEPER_HOME, Heap,
    JAVA_SECURITY_FILE, JAVA_SECURITY_PROPERTIES, MAIN_CLASS, MAX_HEAP_PERCENT, decide_heap,
    java_argv, java_program, parse_quantity,
};
pub use restore::{
    ENV_RESTORE_ACCESS_KEY_ID, ENV_RESTORE_BUCKET, ENV_RESTORE_CA, ENV_RESTORE_ENDPOINT,
    ENV_RESTORE_KEY, ENV_RESTORE_REGION, ENV_RESTORE_SECRET_ACCESS_KEY, ENV_RESTORE_SHA256,
    ENV_RESTORE_SIZE, ENV_RESTORE_VIRTUAL_HOSTED_STYLE, ENV_RESTORE_ZXID, RestoreSource,
    fetch_snapshot, restore_source,
};
pub use sasl::{ClientAuth, JAAS_FILE, client_auth};

use clap::builder::TypedValueParser as _;

use crate::build::names::{self, ZOO_CFG_PATH};
use crate::quorum::Myid;
use crate::quorum::membership::{Membership, list};
use data_dir::claim_data_dir;
use error::invalid;
use files::{read_if_present, write_atomically};

/// Address of the pod (downward API `status.podIP`). Optional; logged at start-up, to tell
/// which address the server's DNS name should resolve to.
pub const ENV_POD_IP: &str = "POD_IP";
/// An address to bind every server port to, instead of all interfaces. Unset in Kubernetes;
/// set when several servers share one host, as in the tests on loopback addresses.
pub const ENV_BIND_ADDRESS: &str = "ZOOHERD_BIND_ADDRESS";

/// Arguments of `zooherd server`. The pod itself (name, namespace, ensemble uid, heap) comes
/// from environment variables, which the StatefulSet fills from the downward API.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = "\
Environment:
  POD_NAME, POD_NAMESPACE     the pod (required; myid = ordinal in POD_NAME + 1)
  ZOOHERD_ENSEMBLE_UID        the ZooKeeperEnsemble's metadata.uid (required)
  POD_IP                      the pod's address (optional, logged)
  ZOOHERD_MEMORY_LIMIT        memory limit in bytes; the heap is a share of it
  ZOOHERD_JVM_HEAP            explicit heap (512Mi, 1Gi); wins over the share
  ZOOHERD_JVM_HEAP_PERCENT    the share, 1-90 (default 50)
  ZOOHERD_JVM_EXTRA_OPTS      more JVM options, after Zooherd's
  ZOOHERD_BIND_ADDRESS        bind every port to this address (default: all interfaces)
  ZOOHERD_SUPER_DIGEST        zooherd:<digest> of the superuser that may reconfigure the ensemble
  ZOOKEEPER_HOME, JAVA_HOME   ZooKeeper (default /opt/zookeeper) and the JRE (default: java on PATH)
  ZOOHERD_RESTORE_*           a snapshot to start a new ensemble from (set by the operator for
                              spec.restore): ENDPOINT, BUCKET, KEY, REGION, VIRTUAL_HOSTED_STYLE,
                              SIZE, SHA256, ZXID, ACCESS_KEY_ID, SECRET_ACCESS_KEY, CA

Exit codes (before ZooKeeper starts): 78 bad setting, 74 file error,
80 data volume of another server, 81 data volume of another ensemble,
82 empty data volume of a voter of a formed ensemble, 83 the backup to restore could not
be downloaded or did not match, 127 no java.")]
pub struct Args {
    /// zoo.cfg as the operator rendered it (the ConfigMap mount; only read).
    #[arg(long, value_name = "FILE", default_value = ZOO_CFG_PATH)]
    pub config: PathBuf,

    /// The bootstrap membership (the ConfigMap's `members`; only read).
    #[arg(long, value_name = "FILE", default_value = names::MEMBERS_PATH)]
    pub members: PathBuf,

    /// Whether the ensemble has formed (the ConfigMap's `formed`: "true"; a missing file
    /// means it has not).
    #[arg(long, value_name = "FILE", default_value = names::FORMED_PATH)]
    pub formed: PathBuf,

    /// Where to write the copy of zoo.cfg that ZooKeeper runs with, beside which ZooKeeper
    /// keeps its dynamic configuration files; must be writable and should persist
    /// [default: zooherd/zoo.cfg in the data directory].
    #[arg(long, value_name = "FILE")]
    pub runtime_config: Option<PathBuf>,

    /// This server's myid (1-255) [default: the ordinal in POD_NAME plus 1].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..).try_map(Myid::try_from))]
    pub myid: Option<Myid>,

    /// Use this data directory instead of zoo.cfg's dataDir (the copy says so), for servers
    /// that share a filesystem, as the tests' do.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Turn on SASL DIGEST-MD5 client authentication with the users in this directory (the
    /// mount of the Secret spec.clientAuthentication.saslUsersSecret names: one file per user,
    /// holding the password).
    #[arg(long, value_name = "DIR")]
    pub sasl_users: Option<PathBuf>,

    /// Refuse every client session that has not authenticated with SASL, or with a client
    /// certificate when --x509-clients is given. Without --sasl-users, the operator's user is
    /// the only SASL one (the clients log in with certificates).
    #[arg(long)]
    pub enforce_auth: bool,

    /// Clients may log in with a certificate on the TLS client port (zoo.cfg's
    /// authProvider.x509): enforced authentication counts such a login.
    #[arg(long)]
    pub x509_clients: bool,
}

/// Environment lookup: the value of a variable, `None` when unset or empty.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Everything decided before anything is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub identity: Identity,
    pub pod_ip: Option<IpAddr>,
    pub data_dir: PathBuf,
    pub heap: Heap,
    /// Where the runtime zoo.cfg goes, and its contents.
    pub runtime_config_path: PathBuf,
    pub runtime_config: String,
    /// The membership the server starts with, where it came from, and where its dynamic
    /// configuration file goes, with the file's contents.
    pub membership: Membership,
    pub membership_source: MembershipSource,
    pub dynamic_config_path: PathBuf,
    pub dynamic_config: String,
    /// The client authentication the server runs with (its JAAS file is written beside the
    /// runtime zoo.cfg), `None` without `--sasl-users`.
    pub client_auth: Option<ClientAuth>,
    pub argv: Vec<OsString>,
}

/// Decides everything from the arguments, the environment, the operator's zoo.cfg and
/// bootstrap membership (`members`), the dynamic configuration files on the volume, and the
/// SASL users read from `--sasl-users`.
pub fn plan(
    args: &Args,
    env: Env,
    config: &str,
    members: &str,
    on_volume: &[Membership],
    client_auth: Option<ClientAuth>,
) -> Result<Plan, StartError> {
    let identity = identity(args.myid, env)?;
    let parse_ip = |var: &'static str| -> Result<Option<IpAddr>, StartError> {
        env(var)
            .map(|text| {
                text.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| invalid(var, &text, "is not an IP address"))
            })
            .transpose()
    };
    let pod_ip = parse_ip(ENV_POD_IP)?;
    let bind = parse_ip(ENV_BIND_ADDRESS)?;
    let bootstrap = Membership::parse(members).map_err(|e| StartError::BadMembership {
        path: args.members.clone(),
        error: e.to_string(),
    })?;
    let Some((membership, membership_source)) =
        choose_membership(identity.myid, &bootstrap, on_volume)
    else {
        let newest = on_volume.iter().max_by_key(|m| m.version);
        return Err(StartError::NotAMember {
            path: args.members.clone(),
            myid: identity.myid,
            pod: identity.pod_name.clone(),
            listed: format!("myids {}", list(bootstrap.servers.keys().copied())),
            volume: newest.map_or_else(String::new, |m| {
                format!(
                    ", nor does the newest configuration on the data volume (version {}, myids {})",
                    m.version_hex(),
                    list(m.servers.keys().copied())
                )
            }),
        });
    };
    let data_dir = data_dir(args, config)?;
    let runtime_config_path = runtime_config_path(args, config)?;
    let heap = decide_heap(env)?;
    let dynamic_config_path = dynamic_config_path(&runtime_config_path, &membership);
    let dynamic_config = dynamic_config(&membership, identity.myid, bind);
    let mut settings = per_pod_settings(bind, args.data_dir.as_deref(), &dynamic_config_path);
    settings.extend(client_auth.iter().flat_map(ClientAuth::settings));
    let runtime_config = runtime_config(config, &settings, &identity.pod_name);
    let argv = jvm::command_line(env, &heap, &runtime_config_path, client_auth.is_some())?;
    Ok(Plan {
        identity,
        pod_ip,
        data_dir,
        heap,
        runtime_config_path,
        runtime_config,
        membership,
        membership_source,
        dynamic_config_path,
        dynamic_config,
        client_auth,
        argv,
    })
}

/// Runs the entrypoint: plans, claims the data directory, writes the membership and the
/// runtime zoo.cfg and execs ZooKeeper. Returns only on failure.
pub fn run(args: &Args) -> Result<Infallible, StartError> {
    let env = |var: &str| std::env::var(var).ok().filter(|value| !value.is_empty());
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|e| StartError::UnreadableConfig {
            path: path.to_owned(),
            error: e.to_string(),
        })
    };
    let config = read(&args.config)?;
    // Who this is first: a pod without its identity is the first thing to fix.
    identity(args.myid, &env)?;
    let members = read(&args.members)?;
    let on_volume = read_dynamic_configs(&runtime_config_path(args, &config)?)?;
    let client_auth = sasl::client_auth(
        args.sasl_users.as_deref(),
        env(ENV_SUPER_DIGEST).as_deref(),
        args.enforce_auth,
        args.x509_clients,
    )?;
    let mut plan = plan(
        args,
        &env,
        &config,
        &members,
        &on_volume,
        client_auth.clone(),
    )?;
    let log_dir = config_value(&config, "dataLogDir").map(PathBuf::from);
    // A volume of another server is moved aside when the ensemble serves without this one:
    // the server then starts empty and syncs from the leader (see may_reinitialise).
    if data_dir::move_aside_if_foreign(&plan, log_dir.as_deref())? {
        plan = self::plan(args, &env, &config, &members, &[], client_auth)?;
    }
    let formed = read_if_present(&args.formed)?.is_some_and(|text| text.trim() == "true");
    data_dir::refuse_empty_voter(&plan, formed, log_dir.as_deref())?;
    let state = claim_data_dir(&plan.data_dir, &plan.identity)?;
    if let Some(source) = restore_source(&env)?
        && restore::wanted(
            formed,
            data_dir::volume_has_data(&plan, log_dir.as_deref())?,
        )
    {
        let started = std::time::Instant::now();
        let snapshot = fetch_snapshot(&source, &plan.data_dir)?;
        eprintln!(
            "zooherd server: restored {location} ({size} bytes, SHA-256 {sha}, zxid {zxid:#x}) to {path} in {secs:.1} s",
            location = source.location(),
            size = source.size,
            sha = source.sha256,
            zxid = source.zxid,
            path = snapshot.display(),
            secs = started.elapsed().as_secs_f64(),
        );
    }
    write_atomically(&plan.dynamic_config_path, &plan.dynamic_config)?;
    write_atomically(&plan.runtime_config_path, &plan.runtime_config)?;
    write_atomically(
        &plan.runtime_config_path.with_file_name(JAVA_SECURITY_FILE),
        JAVA_SECURITY_PROPERTIES,
    )?;
    sasl::write_or_remove(
        &plan.runtime_config_path.with_file_name(sasl::JAAS_FILE),
        plan.client_auth.as_ref(),
    )?;
    let names = formation::names_to_wait_for(&plan.membership, formed);
    if !names.is_empty() {
        let waiting = std::time::Instant::now();
        let unresolved = formation::wait_for_names(
            names,
            formation::FIRST_LOOKUP_AFTER,
            formation::NAME_WAIT,
            formation::resolves,
        );
        eprintln!(
            "zooherd server: the ensemble has not formed: waited {:.1} s for the servers' names \
             to resolve{}",
            waiting.elapsed().as_secs_f64(),
            if unresolved.is_empty() {
                String::new()
            } else {
                format!("; starting without {}", unresolved.join(", "))
            }
        );
    }
    eprintln!(
        "zooherd server: myid {myid} of ensemble {ensemble} (uid {uid}), pod {pod}{ip}; data directory {dir} {state}; \
         members {members} (version {version}, {source}); {heap}; starting ZooKeeper with {cfg}",
        myid = plan.identity.myid,
        ensemble = plan.identity.ensemble(),
        uid = plan.identity.ensemble_uid,
        pod = plan.identity.pod_name,
        ip = plan
            .pod_ip
            .map(|ip| format!(" at {ip}"))
            .unwrap_or_default(),
        dir = plan.data_dir.display(),
        state = match state {
            DataDirState::Fresh => "claimed",
            _ => "is this server's",
        },
        members = list(plan.membership.servers.keys().copied()),
        version = plan.membership.version_hex(),
        source = match plan.membership_source {
            MembershipSource::Volume => "committed, from the data volume",
            MembershipSource::Bootstrap => "from the operator",
        },
        heap = plan.heap.describe(),
        cfg = plan.runtime_config_path.display(),
    );
    Err(jvm::exec(&plan.argv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::server::test_support::{args, env_of, members, operator_cfg, pod_env};
    use crate::quorum::myid::{id, ids};

    #[test]
    fn help_lists_every_variable_and_exit_code() {
        use clap::CommandFactory as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let help = Cli::command().render_long_help().to_string();
        for var in [
            ENV_POD_NAME,
            ENV_POD_NAMESPACE,
            ENV_POD_IP,
            ENV_ENSEMBLE_UID,
            ENV_BIND_ADDRESS,
            ENV_MEMORY_LIMIT,
            ENV_JVM_HEAP,
            ENV_JVM_HEAP_PERCENT,
            ENV_JVM_EXTRA_OPTS,
            ENV_ZOOKEEPER_HOME,
            ENV_JAVA_HOME,
        ] {
            assert!(help.contains(var), "{var}");
        }
        for (code, what) in [
            (EXIT_INVALID_INPUT, "bad setting"),
            (EXIT_IO, "file error"),
            (EXIT_FOREIGN_MYID, "data volume of another server"),
            (EXIT_FOREIGN_ENSEMBLE, "data volume of another ensemble"),
            (EXIT_EXEC_FAILED, "no java"),
        ] {
            assert!(help.contains(&format!("{code} {what}")), "{code} {what}");
        }
        assert!(help.contains(&format!(
            "1-{MAX_HEAP_PERCENT} (default {DEFAULT_HEAP_PERCENT})"
        )));
        assert!(help.contains(DEFAULT_ZOOKEEPER_HOME));
    }

    #[test]
    fn a_joining_server_starts_unable_to_vote() {
        // 3 -> 4: the operator lists server 4 as an observer. Its volume holds the committed
        // membership it synced before a restart (without it), and the agent's copy of an older
        // bootstrap membership that listed it as a participant.
        let bootstrap = crate::build::zoo_cfg::bootstrap_membership(
            "zk",
            "ns",
            "cluster.local",
            &ids(&[1, 2, 3]),
            &ids(&[4]),
        );
        let on_volume = [members(&[1, 2, 3, 4], 0), members(&[1, 2, 3], 0x100000009)];
        for volume in [&on_volume[..], &[]] {
            let plan = plan(
                &args(),
                &env_of(&pod_env("zk-3")),
                &operator_cfg(),
                &bootstrap.render(),
                volume,
                None,
            )
            .unwrap();
            assert_eq!(plan.membership_source, MembershipSource::Bootstrap);
            assert_eq!(plan.membership.voters(), ids(&[1, 2, 3]));
            assert!(
                plan.dynamic_config.ends_with(
                    "server.4=zk-3.zk-headless.ns.svc.cluster.local:2888:3888:observer;2181\n"
                ),
                "{}",
                plan.dynamic_config
            );
        }
    }

    #[test]
    fn plan_for_a_pod() {
        let mut pairs = pod_env("zk-2");
        pairs.extend([
            (ENV_POD_IP, "10.1.2.3"),
            (ENV_MEMORY_LIMIT, "2147483648"),
            (ENV_JVM_EXTRA_OPTS, " -Dfoo=1   -Dbar=2 "),
            (ENV_JAVA_HOME, "/jre"),
        ]);
        pairs.push((ENV_SUPER_DIGEST, "zooherd:u/lJX/7cIAvZtP9PqwTdm6krtSQ="));
        let bootstrap = members(&[1, 2, 3], 0).render();
        let plan = plan(
            &args(),
            &env_of(&pairs),
            &operator_cfg(),
            &bootstrap,
            &[],
            None,
        )
        .unwrap();
        assert_eq!(plan.identity.myid, id(3));
        assert_eq!(plan.pod_ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(plan.data_dir, Path::new("/var/lib/zookeeper/data"));
        assert_eq!(
            plan.runtime_config_path,
            Path::new("/var/lib/zookeeper/data/zooherd/zoo.cfg"),
            "on the data volume, where ZooKeeper's dynamic files outlive the pod"
        );
        assert_eq!(
            plan.runtime_config,
            format!(
                "{}\n# Per-pod settings, added by `zooherd server` in pod zk-2.\n\
                 dynamicConfigFile=/var/lib/zookeeper/data/zooherd/zoo.cfg.dynamic.0\n",
                operator_cfg()
            ),
            "only the membership's file per pod in Kubernetes"
        );
        assert_eq!(plan.membership_source, MembershipSource::Bootstrap);
        assert_eq!(plan.dynamic_config, members(&[1, 2, 3], 0).server_lines());
        assert_eq!(
            plan.argv,
            [
                "/jre/bin/java",
                "-Xms1024m",
                "-Xmx1024m",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.security.properties=/var/lib/zookeeper/data/zooherd/java.security",
                "-Dzookeeper.DigestAuthenticationProvider.superDigest=zooherd:u/lJX/7cIAvZtP9PqwTdm6krtSQ=",
                "-Dfoo=1",
                "-Dbar=2",
                "-cp",
                "/opt/zookeeper/lib/*:/opt/zookeeper/conf",
                MAIN_CLASS,
                "/var/lib/zookeeper/data/zooherd/zoo.cfg",
            ]
        );
    }

    #[test]
    fn a_plan_with_sasl_users_turns_the_provider_on_and_names_the_login_file() {
        let auth = ClientAuth {
            users: [("kafka".to_owned(), "pw".to_owned())].into(),
            enforce: true,
            x509: false,
        };
        let bootstrap = members(&[1, 2, 3], 0).render();
        let env = env_of(&pod_env("zk-0"));
        let plan = plan(&args(), &env, &operator_cfg(), &bootstrap, &[], Some(auth)).unwrap();
        let cfg = &plan.runtime_config;
        assert_eq!(
            config_value(cfg, "authProvider.sasl"),
            Some("org.apache.zookeeper.server.auth.SASLAuthenticationProvider")
        );
        assert_eq!(config_value(cfg, "enforce.auth.enabled"), Some("true"));
        assert_eq!(config_value(cfg, "enforce.auth.schemes"), Some("sasl"));
        let login = "-Djava.security.auth.login.config=/var/lib/zookeeper/data/zooherd/jaas.conf";
        assert!(plan.argv.iter().any(|a| a == login), "{:?}", plan.argv);
        // DIGEST-MD5 is refused in ZooKeeper 3.9's default FIPS mode.
        let fips = "-Dzookeeper.fips-mode=false";
        assert!(plan.argv.iter().any(|a| a == fips), "{:?}", plan.argv);
        let plain = self::plan(&args(), &env, &operator_cfg(), &bootstrap, &[], None).unwrap();
        assert_eq!(
            config_value(&plain.runtime_config, "authProvider.sasl"),
            None
        );
        assert!(
            !plain
                .argv
                .iter()
                .any(|a| a.to_string_lossy().contains("login.config")
                    || a.to_string_lossy().contains("fips-mode"))
        );
    }

    #[test]
    fn plan_with_overrides() {
        let mut pairs = pod_env("zk-0");
        pairs.extend([(ENV_BIND_ADDRESS, "127.0.0.9"), (ENV_ZOOKEEPER_HOME, "/zk")]);
        let args = Args {
            data_dir: Some(PathBuf::from("/scratch/data")),
            runtime_config: Some(PathBuf::from("/scratch/zoo.cfg")),
            ..args()
        };
        let bootstrap = members(&[1, 2, 3], 0).render();
        let plan = plan(
            &args,
            &env_of(&pairs),
            &operator_cfg(),
            &bootstrap,
            &[],
            None,
        )
        .unwrap();
        assert_eq!(plan.data_dir, Path::new("/scratch/data"));
        assert_eq!(
            config_value(&plan.runtime_config, "dataDir"),
            Some("/scratch/data")
        );
        assert_eq!(
            config_value(&plan.runtime_config, "clientPortAddress"),
            Some("127.0.0.9")
        );
        assert_eq!(plan.argv[0], "java");
        assert_eq!(plan.argv.last().unwrap(), "/scratch/zoo.cfg");
        assert_eq!(
            plan.dynamic_config_path,
            Path::new("/scratch/zoo.cfg.dynamic.0")
        );
        assert!(plan.dynamic_config.contains("participant;127.0.0.9:2181\n"));
        assert!(plan.argv.contains(&OsString::from("/zk/lib/*:/zk/conf")));
    }

    #[test]
    fn plan_refuses_bad_input_with_one_line() {
        let cfg = operator_cfg();
        let with = |extra: (&'static str, &'static str)| {
            let mut pairs = pod_env("zk-0");
            pairs.push(extra);
            pairs
        };
        let cases = [
            (
                pod_env("zk-3"),
                cfg.clone(),
                "/etc/zooherd/members has no server.4 line, so myid 4 (pod zk-3) is not a member (it lists myids 1, 2, 3); the pod's ordinal",
            ),
            (
                pod_env("zk-0"),
                "clientPort=2181\n".to_owned(),
                "/etc/zooherd/zoo.cfg sets no dataDir",
            ),
            (
                with((ENV_SUPER_DIGEST, "u/lJX/7cIAvZtP9PqwTdm6krtSQ=")),
                cfg.clone(),
                "ZOOHERD_SUPER_DIGEST=\"(hidden)\" is not zooherd:<digest>",
            ),
            (
                with((ENV_POD_IP, "pod-ip")),
                cfg.clone(),
                "POD_IP=\"pod-ip\" is not an IP address",
            ),
            (
                with((ENV_BIND_ADDRESS, "localhost")),
                cfg.clone(),
                "ZOOHERD_BIND_ADDRESS=\"localhost\" is not an IP address",
            ),
            (
                with((ENV_JVM_HEAP, "big")),
                cfg.clone(),
                "ZOOHERD_JVM_HEAP=\"big\" is not a memory quantity",
            ),
        ];
        let bootstrap = members(&[1, 2, 3], 0).render();
        for (pairs, cfg, want) in cases {
            let error = plan(&args(), &env_of(&pairs), &cfg, &bootstrap, &[], None).unwrap_err();
            let line = error.to_string();
            assert!(line.starts_with(want), "{line}");
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(error.exit_code(), EXIT_INVALID_INPUT);
        }
    }
}
