//! The configuration ZooKeeper starts with: a writable zoo.cfg, and the membership in it.
//!
//! The operator's zoo.cfg is a read-only ConfigMap mount, and ZooKeeper rewrites its
//! configuration file: with `reconfigEnabled=true` every committed reconfiguration makes it
//! write the new membership to `<zoo.cfg>.dynamic.<version>` *beside the zoo.cfg it was started
//! with* and point that zoo.cfg's `dynamicConfigFile` at it. So the agent writes the copy
//! ZooKeeper runs with onto the data volume (`dataDir/zooherd/zoo.cfg`), where those files
//! outlive the pod, and picks the membership to start with ([`choose_membership`]): the newest
//! dynamic file on the volume that lists this server, else the operator's bootstrap membership
//! (the ConfigMap's `members`: the committed voters as the operator last saw them, as
//! participants, and the joining servers as observers, at version 0 so that the ensemble's
//! committed membership replaces it as soon as the server reaches a voter). So a server whose
//! volume holds no committed membership that lists it (a server joining) starts unable to
//! vote, and syncs as a non-voting follower until the operator adds it. A server that neither
//! lists is not a member and does not start.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::Args;
use super::error::{StartError, io_error};
use crate::quorum::Myid;
use crate::quorum::membership::Membership;

/// Where, under the data directory, the copy of zoo.cfg that ZooKeeper runs with is written
/// (and ZooKeeper writes its dynamic configuration files beside it).
pub const RUNTIME_CONFIG_IN_DATA_DIR: &str = "zooherd/zoo.cfg";

/// The `key=value` entries of a zoo.cfg, in file order, the way ZooKeeper (a Java properties
/// file) reads the lines the operator writes: blank lines and `#`/`!` comments skipped, the
/// key ending at the first `=`, `:` or whitespace, values trimmed. Escapes and continued lines
/// are not interpreted: the operator's renderer writes neither.
pub fn config_entries(cfg: &str) -> impl Iterator<Item = (&str, &str)> {
    cfg.lines().filter_map(|line| {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with(['#', '!']) {
            return None;
        }
        let end = line.find(['=', ':', ' ', '\t']).unwrap_or(line.len());
        let (key, rest) = line.split_at(end);
        let rest = rest.trim_start();
        let value = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim();
        Some((key, value))
    })
}

/// The value of `key` in a zoo.cfg (the last one, as for ZooKeeper).
pub fn config_value<'a>(cfg: &'a str, key: &str) -> Option<&'a str> {
    config_entries(cfg)
        .filter(|&(k, _)| k == key)
        .map(|(_, v)| v)
        .last()
}

/// The zoo.cfg lines one pod needs besides the operator's file.
///
/// With a bind address every port binds there, so servers sharing a host do not collide: the
/// client port (`clientPortAddress`, and the client address in this server's own
/// `server.<myid>` line, which ZooKeeper insists must agree with it: see
/// [`dynamic_config`]), the AdminServer, the metrics endpoint, and the quorum and election
/// ports (on the address of this server's own line rather than on all interfaces). A data
/// directory given with `--data-dir` replaces dataDir. Last, `dynamicConfigFile` names the
/// membership the server starts with.
pub fn per_pod_settings(
    bind: Option<IpAddr>,
    data_dir: Option<&Path>,
    dynamic_config_file: &Path,
) -> Vec<(String, String)> {
    // A backslash is an escape character in a properties file.
    let path_value = |path: &Path| path.display().to_string().replace('\\', "\\\\");
    let mut settings = Vec::new();
    if let Some(address) = bind {
        for key in [
            "clientPortAddress",
            "admin.serverAddress",
            "metricsProvider.httpHost",
        ] {
            settings.push((key.to_owned(), address.to_string()));
        }
        settings.push(("quorumListenOnAllIPs".to_owned(), "false".to_owned()));
    }
    if let Some(dir) = data_dir {
        settings.push(("dataDir".to_owned(), path_value(dir)));
    }
    settings.push((
        "dynamicConfigFile".to_owned(),
        path_value(dynamic_config_file),
    ));
    settings
}

/// Where the membership a server starts with comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipSource {
    /// A dynamic configuration file ZooKeeper wrote on the data volume (a committed membership).
    Volume,
    /// The operator's bootstrap membership (the ConfigMap's `members`).
    Bootstrap,
}

/// The membership to start with: the newest configuration on the volume, when it lists `myid`
/// and the bootstrap membership is not newer (or as new: the agent's own copy of it); else the
/// bootstrap membership if it lists `myid`; else the newest configuration on the volume that
/// lists `myid`. `None` when none lists it.
///
/// When the newest configuration on the volume does not list the server, the ensemble removed
/// it at that version (a roll's leader that handed over, a voter whose volume came back
/// empty, a scale-down) or had not added it yet: it is not a voter, and the operator's
/// bootstrap membership, which lists every server that is not a committed voter as an observer,
/// starts it unable to vote until it has synced and been added back. An older configuration
/// that still lists it as a participant would make it a voter of a membership the ensemble has
/// left behind until its first contact with a peer.
pub fn choose_membership(
    myid: Myid,
    bootstrap: &Membership,
    on_volume: &[Membership],
) -> Option<(Membership, MembershipSource)> {
    let lists = |m: &&Membership| m.servers.contains_key(&myid);
    match on_volume.iter().max_by_key(|m| m.version) {
        Some(newest) if lists(&newest) && newest.version > bootstrap.version => {
            Some((newest.clone(), MembershipSource::Volume))
        }
        _ if bootstrap.servers.contains_key(&myid) => {
            Some((bootstrap.clone(), MembershipSource::Bootstrap))
        }
        _ => on_volume
            .iter()
            .filter(lists)
            .max_by_key(|m| m.version)
            .map(|volume| (volume.clone(), MembershipSource::Volume)),
    }
}

/// The version of a dynamic configuration file ZooKeeper wrote beside `runtime_config`
/// (`<name>.dynamic.<hex version>`); `None` for other files (`<name>.dynamic.next` included:
/// a proposal, not a committed membership).
pub fn dynamic_config_version(runtime_config: &Path, file_name: &str) -> Option<u64> {
    let base = runtime_config.file_name()?.to_str()?;
    let version = file_name.strip_prefix(base)?.strip_prefix(".dynamic.")?;
    u64::from_str_radix(version, 16).ok()
}

/// The dynamic configuration file a membership is written to: `<runtime config>.dynamic.<hex
/// version>`, the name ZooKeeper itself gives it (ZooKeeper reads the version from the name).
pub fn dynamic_config_path(runtime_config: &Path, membership: &Membership) -> PathBuf {
    let mut path = runtime_config.as_os_str().to_owned();
    path.push(format!(".dynamic.{}", membership.version_hex()));
    PathBuf::from(path)
}

/// The dynamic configuration file's contents: the server lines, this server's own with its
/// client address set to the bind address, if any.
pub fn dynamic_config(membership: &Membership, myid: Myid, bind: Option<IpAddr>) -> String {
    let mut membership = membership.clone();
    if let (Some(address), Some(own)) = (bind, membership.servers.get_mut(&myid))
        && let Some(bound) = bind_client_address(own, address)
    {
        *own = bound;
    }
    membership.server_lines()
}

/// A `server.<myid>` value (`host:quorum:election[:role][;[address:]port]`) with its client
/// address set to `address`; `None` when the line names no client port.
pub fn bind_client_address(server: &str, address: IpAddr) -> Option<String> {
    let (peer, client) = server.split_once(';')?;
    let port = client.rsplit(':').next().filter(|p| !p.trim().is_empty())?;
    let address = match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Some(format!("{peer};{address}:{}", port.trim()))
}

/// The zoo.cfg ZooKeeper runs with: the operator's file with every line of a key in
/// `settings` removed and the settings appended, under a comment naming the pod. Without
/// settings, the operator's file unchanged.
pub fn runtime_config(original: &str, settings: &[(String, String)], pod: &str) -> String {
    if settings.is_empty() {
        return original.to_owned();
    }
    let overridden = |line: &str| {
        config_entries(line)
            .next()
            .is_some_and(|(key, _)| settings.iter().any(|(k, _)| k == key))
    };
    let mut cfg: String = original
        .lines()
        .filter(|line| !overridden(line))
        .flat_map(|line| [line, "\n"])
        .collect();
    cfg.push_str(&format!(
        "\n# Per-pod settings, added by `zooherd server` in pod {pod}.\n"
    ));
    for (key, value) in settings {
        cfg.push_str(&format!("{key}={value}\n"));
    }
    cfg
}

/// The data directory: `--data-dir`, else zoo.cfg's dataDir.
pub fn data_dir(args: &Args, config: &str) -> Result<PathBuf, StartError> {
    match (&args.data_dir, config_value(config, "dataDir")) {
        (Some(dir), _) => Ok(dir.clone()),
        (None, Some(dir)) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        (None, _) => Err(StartError::NoDataDir {
            path: args.config.clone(),
        }),
    }
}

/// Where the runtime zoo.cfg goes: `--runtime-config`, else on the data volume.
pub fn runtime_config_path(args: &Args, config: &str) -> Result<PathBuf, StartError> {
    match &args.runtime_config {
        Some(path) => Ok(path.clone()),
        None => Ok(data_dir(args, config)?.join(RUNTIME_CONFIG_IN_DATA_DIR)),
    }
}

/// The dynamic configuration files ZooKeeper wrote beside `runtime_config`, each with the
/// version from its name. A file that cannot be parsed is passed over: it was never a
/// committed membership ZooKeeper could start with either.
pub fn read_dynamic_configs(runtime_config: &Path) -> Result<Vec<Membership>, StartError> {
    let Some(dir) = runtime_config.parent() else {
        return Ok(Vec::new());
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("read", dir, &e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", dir, &e))?;
        let name = entry.file_name();
        let Some(version) = name
            .to_str()
            .and_then(|name| dynamic_config_version(runtime_config, name))
        else {
            continue;
        };
        let path = entry.path();
        let text = fs::read_to_string(&path).map_err(|e| io_error("read", &path, &e))?;
        if let Ok(membership) = Membership::parse(&text) {
            found.push(Membership {
                version,
                ..membership
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::server::test_support::{members, operator_cfg};
    use crate::quorum::myid::id;

    #[test]
    fn config_is_read_like_a_properties_file() {
        let cfg = "# comment\n! also a comment\n\n  dataDir = /data \nclientPort:2181\nkey value\n\
                   server.1=a:2888:3888;2181\ntickTime=1\ntickTime=2\nempty=\n";
        let entries: Vec<_> = config_entries(cfg).collect();
        assert_eq!(
            entries,
            [
                ("dataDir", "/data"),
                ("clientPort", "2181"),
                ("key", "value"),
                ("server.1", "a:2888:3888;2181"),
                ("tickTime", "1"),
                ("tickTime", "2"),
                ("empty", ""),
            ]
        );
        assert_eq!(config_value(cfg, "tickTime"), Some("2"));
        assert_eq!(config_value(cfg, "missing"), None);
    }

    #[test]
    fn per_pod_lines() {
        let cfg = operator_cfg();
        let dynamic = Path::new("/var/lib/zookeeper/data/zooherd/zoo.cfg.dynamic.0");
        assert_eq!(
            per_pod_settings(None, None, dynamic),
            [(
                "dynamicConfigFile".to_owned(),
                dynamic.display().to_string()
            )]
        );
        assert_eq!(runtime_config(&cfg, &[], "zk-1"), cfg);

        let bind: IpAddr = "127.1.2.3".parse().unwrap();
        let settings = per_pod_settings(Some(bind), Some(Path::new("/tmp/member-2/data")), dynamic);
        let runtime = runtime_config(&cfg, &settings, "zk-1");
        let want = [
            ("clientPortAddress", "127.1.2.3"),
            ("admin.serverAddress", "127.1.2.3"),
            ("metricsProvider.httpHost", "127.1.2.3"),
            ("quorumListenOnAllIPs", "false"),
            ("dataDir", "/tmp/member-2/data"),
            (
                "dynamicConfigFile",
                "/var/lib/zookeeper/data/zooherd/zoo.cfg.dynamic.0",
            ),
        ];
        for (key, value) in want {
            let values: Vec<_> = config_entries(&runtime)
                .filter(|&(k, _)| k == key)
                .collect();
            assert_eq!(values, [(key, value)], "{key} once, with the pod's value");
        }
        assert!(runtime.contains("# Per-pod settings, added by `zooherd server` in pod zk-1.\n"));
        // Everything else is the operator's, in the operator's order.
        let others = |cfg: &str| -> Vec<(String, String)> {
            config_entries(cfg)
                .filter(|(k, _)| !want.iter().any(|(w, _)| w == k))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        assert_eq!(others(&runtime), others(&cfg));
    }

    #[test]
    fn the_dynamic_file_binds_the_own_client_address() {
        let membership = members(&[1, 2], 0);
        let bind: IpAddr = "127.1.2.3".parse().unwrap();
        assert_eq!(
            dynamic_config(&membership, id(2), Some(bind)),
            "server.1=zk-0.zk-headless.ns.svc.cluster.local:2888:3888:participant;2181\n\
             server.2=zk-1.zk-headless.ns.svc.cluster.local:2888:3888:participant;127.1.2.3:2181\n"
        );
        assert_eq!(
            dynamic_config(&membership, id(2), None),
            membership.server_lines()
        );
    }

    #[test]
    fn the_newest_membership_that_lists_the_server() {
        use MembershipSource::{Bootstrap, Volume};
        // (myid, bootstrap myids and version, volume files as (myids, version), want)
        type Case = (
            u8,
            (&'static [u8], u64),
            Vec<(&'static [u8], u64)>,
            Option<(u64, MembershipSource)>,
        );
        let cases: Vec<Case> = vec![
            // A new server: the operator's membership.
            (1, (&[1, 2, 3], 0), vec![], Some((0, Bootstrap))),
            // Restarted on the agent's own copy of it: the same.
            (
                1,
                (&[1, 2, 3], 0),
                vec![(&[1, 2, 3], 0)],
                Some((0, Bootstrap)),
            ),
            // ZooKeeper committed newer ones: the newest.
            (
                1,
                (&[1, 2, 3], 0),
                vec![(&[1, 2, 3], 0x100000000), (&[1], 0x100000003)],
                Some((0x100000003, Volume)),
            ),
            // Joining: not yet added, it synced a membership that does not list it.
            (
                4,
                (&[1, 2, 3, 4], 0),
                vec![(&[1, 2, 3, 4], 0), (&[1, 2, 3], 0x100000009)],
                Some((0, Bootstrap)),
            ),
            // Removed (a leader that handed over): the operator's, which lists every server
            // that is not a committed voter as an observer, not the older one in which it voted.
            (
                3,
                (&[1, 2, 3, 4], 0),
                vec![(&[1, 2, 3, 4], 0x100000000), (&[1, 2, 4], 0x100000004)],
                Some((0, Bootstrap)),
            ),
            // The operator's lists it no longer but the volume does: the volume's.
            (
                3,
                (&[1, 2], 0),
                vec![(&[1, 2, 3], 0x100000000)],
                Some((0x100000000, Volume)),
            ),
            // An operator's membership newer than the volume's wins (Zooherd writes version 0
            // today).
            (
                1,
                (&[1, 2, 3], 0x200000005),
                vec![(&[1, 2], 0x100000003)],
                Some((0x200000005, Bootstrap)),
            ),
            // Nobody lists it.
            (5, (&[1, 2, 3], 0), vec![(&[1, 2, 3], 0x100000004)], None),
        ];
        for (myid, (boot, boot_version), volume, want) in cases {
            let bootstrap = members(boot, boot_version);
            let on_volume: Vec<Membership> = volume.iter().map(|(m, v)| members(m, *v)).collect();
            let got =
                choose_membership(id(myid), &bootstrap, &on_volume).map(|(m, s)| (m.version, s));
            assert_eq!(
                got, want,
                "myid {myid}, bootstrap {boot:?}@{boot_version:x}, volume {volume:?}"
            );
        }
    }

    #[test]
    fn dynamic_file_names() {
        let runtime = Path::new("/data/zooherd/zoo.cfg");
        let cases = [
            ("zoo.cfg.dynamic.100000003", Some(0x100000003)),
            ("zoo.cfg.dynamic.0", Some(0)),
            ("zoo.cfg.dynamic.next", None),
            ("zoo.cfg", None),
            ("zoo.cfg.tmp", None),
            ("other.cfg.dynamic.1", None),
            ("zoo.cfg.dynamic.1.tmp", None),
        ];
        for (name, want) in cases {
            assert_eq!(dynamic_config_version(runtime, name), want, "{name}");
        }
        assert_eq!(
            dynamic_config_path(runtime, &members(&[1], 0x100000003)),
            Path::new("/data/zooherd/zoo.cfg.dynamic.100000003")
        );
    }

    #[test]
    fn client_address_in_the_own_server_line() {
        let v4: IpAddr = "127.0.0.5".parse().unwrap();
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let cases = [
            ("h:2888:3888;2181", v4, Some("h:2888:3888;127.0.0.5:2181")),
            (
                "h:2888:3888:participant;0.0.0.0:2181",
                v4,
                Some("h:2888:3888:participant;127.0.0.5:2181"),
            ),
            ("h:2888:3888;2181", v6, Some("h:2888:3888;[fd00::5]:2181")),
            ("h:2888:3888", v4, None),
            ("h:2888:3888;", v4, None),
        ];
        for (server, address, want) in cases {
            assert_eq!(
                bind_client_address(server, address).as_deref(),
                want,
                "{server}"
            );
        }
    }
}
