//! Checks of the image definitions in deploy/images that need no container engine.
//!
//! The images themselves are built from these Dockerfiles, unchanged, by the end-to-end tier
//! (tests/e2e/dockerfiles.sh, with buildah) and run there. These tests check, in seconds, what
//! a build would trip over and what would go wrong only at run time: every file a Dockerfile
//! copies from the repository exists and is let through by its ignore file, every file the Rust
//! build reads is in the build context, the RUN scripts parse, the ZooKeeper download step
//! really refuses a release that does not match its published checksum (run against a local
//! stand-in for the archive), the entrypoints are real `zooherd` subcommands, the pods the
//! operator builds run on the server image, and the versions, ports and users match the rest
//! of the repository.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const ZOOHERD: &str = env!("CARGO_BIN_EXE_zooherd");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One instruction of a Dockerfile: the keyword (upper case) and the rest of the line, with
/// continued lines joined and comments dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    rest: String,
}

fn instructions(dockerfile: &str) -> Vec<Instruction> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            Instruction {
                keyword: keyword.to_uppercase(),
                rest: rest.trim().to_owned(),
            }
        })
        .collect()
}

/// An image definition: its Dockerfile and the instructions in it.
struct Image {
    dir: &'static str,
    instructions: Vec<Instruction>,
}

impl Image {
    fn load(dir: &'static str) -> Image {
        let path = repo().join(dir).join("Dockerfile");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Image {
            dir,
            instructions: instructions(&text),
        }
    }

    fn all(&self, keyword: &str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.rest.as_str())
    }

    /// The shell scripts of every RUN, without its flags (`--mount=...`).
    fn run_scripts(&self) -> impl Iterator<Item = &str> {
        self.all("RUN").map(|rest| {
            let mut script = rest;
            while let Some(flagged) = script.strip_prefix("--") {
                script = flagged
                    .split_once(char::is_whitespace)
                    .map_or("", |(_, after)| after)
                    .trim_start();
            }
            script
        })
    }

    /// The value the last stage's ENV instructions give `name` (`ENV A=1 B=2` form).
    fn final_env(&self, name: &str) -> Option<&str> {
        self.final_stage()
            .iter()
            .filter(|i| i.keyword == "ENV")
            .flat_map(|i| i.rest.split_whitespace())
            .filter_map(|pair| pair.split_once('='))
            .filter(|(key, _)| *key == name)
            .map(|(_, value)| value)
            .next_back()
    }

    /// The instructions of the last stage (the image itself).
    fn final_stage(&self) -> &[Instruction] {
        let start = self
            .instructions
            .iter()
            .rposition(|i| i.keyword == "FROM")
            .unwrap_or_else(|| panic!("{}: no FROM", self.dir));
        &self.instructions[start..]
    }

    fn final_one(&self, keyword: &str) -> Option<&str> {
        self.final_stage()
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
            .map(|i| i.rest.as_str())
    }

    /// The default of `ARG name=default` (the first one declared).
    fn arg_default(&self, name: &str) -> Option<String> {
        self.all("ARG").find_map(|rest| {
            let (key, value) = rest.split_once('=')?;
            (key == name).then(|| value.trim_matches('"').to_owned())
        })
    }

    /// `(sources, destination, from another stage)` of every COPY, in any stage.
    fn copies(&self) -> Vec<(Vec<String>, String, bool)> {
        self.all("COPY")
            .map(|rest| {
                assert!(
                    !rest.starts_with('['),
                    "{}: use the shell form of COPY",
                    self.dir
                );
                let words: Vec<&str> = rest.split_whitespace().collect();
                let from_stage = words.iter().any(|w| w.starts_with("--from="));
                let paths: Vec<String> = words
                    .iter()
                    .filter(|w| !w.starts_with("--"))
                    .map(|w| (*w).to_owned())
                    .collect();
                let (destination, sources) = paths.split_last().expect("COPY src dest");
                (sources.to_vec(), destination.clone(), from_stage)
            })
            .collect()
    }

    /// The repository paths that COPY takes from the build context (the repository root).
    fn context_sources(&self) -> Vec<String> {
        self.copies()
            .into_iter()
            .filter(|(_, _, from_stage)| !from_stage)
            .flat_map(|(sources, _, _)| sources)
            .collect()
    }

    /// The patterns that `Dockerfile.dockerignore` lets back in after excluding everything.
    fn let_through(&self) -> Vec<String> {
        let path = repo().join(self.dir).join("Dockerfile.dockerignore");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let patterns: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(
            patterns.first(),
            Some(&"*"),
            "{}: start by excluding everything",
            path.display()
        );
        patterns[1..]
            .iter()
            .map(|p| {
                p.strip_prefix('!')
                    .unwrap_or_else(|| panic!("{}: {p} excludes more", path.display()))
                    .trim_end_matches('/')
                    .to_owned()
            })
            .collect()
    }

    /// ENTRYPOINT followed by CMD, as JSON arrays (the exec form).
    fn command_line(&self) -> Vec<String> {
        let exec_form = |what: &str, rest: &str| -> Vec<String> {
            serde_json::from_str(rest).unwrap_or_else(|e| {
                panic!("{}: {what} is not in exec form ({e}): {rest}", self.dir)
            })
        };
        let mut argv = exec_form(
            "ENTRYPOINT",
            self.final_one("ENTRYPOINT").expect("an ENTRYPOINT"),
        );
        if let Some(cmd) = self.final_one("CMD") {
            argv.extend(exec_form("CMD", cmd));
        }
        argv
    }
}

const IMAGES: [&str; 2] = ["deploy/images/zookeeper", "deploy/images/operator"];

fn is_let_through(path: &str, patterns: &[String]) -> bool {
    let path = path.trim_end_matches('/');
    patterns
        .iter()
        .any(|p| path == p || path.starts_with(&format!("{p}/")))
}

#[test]
fn every_copied_path_exists_and_is_in_the_build_context() {
    for dir in IMAGES {
        let image = Image::load(dir);
        let sources = image.context_sources();
        assert!(
            !sources.is_empty(),
            "{dir}: copies nothing from the repository"
        );
        let patterns = image.let_through();
        for source in &sources {
            assert!(
                repo().join(source).exists(),
                "{dir}/Dockerfile copies {source}, which is not in the repository"
            );
            assert!(
                is_let_through(source, &patterns),
                "{dir}/Dockerfile copies {source}, which Dockerfile.dockerignore keeps out"
            );
        }
        for pattern in &patterns {
            assert!(
                sources
                    .iter()
                    .any(|s| is_let_through(s, std::slice::from_ref(pattern))),
                "{dir}/Dockerfile.dockerignore lets {pattern} through, which nothing copies"
            );
        }
    }
}

/// The files that `include_str!` and `include_bytes!` in `src/` read, relative to the
/// repository root.
fn included_files(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            included_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).unwrap();
            for marker in ["include_str!(\"", "include_bytes!(\""] {
                for (at, _) in text.match_indices(marker) {
                    let rest = &text[at + marker.len()..];
                    let relative = &rest[..rest.find('"').unwrap()];
                    let file = path.parent().unwrap().join(relative);
                    let file = fs::canonicalize(&file)
                        .unwrap_or_else(|e| panic!("{}: {relative}: {e}", path.display()));
                    let repo = fs::canonicalize(repo()).unwrap();
                    let inside = file.strip_prefix(&repo).unwrap_or_else(|_| {
                        panic!(
                            "{} includes {}, outside the repository",
                            path.display(),
                            file.display()
                        )
                    });
                    found.insert(inside.to_string_lossy().into_owned());
                }
            }
        }
    }
}

/// The parts of a Cargo.toml these tests read.
#[derive(serde::Deserialize)]
struct Manifest {
    package: Package,
    #[serde(default)]
    bin: Vec<Target>,
    #[serde(default)]
    test: Vec<Target>,
    #[serde(default)]
    bench: Vec<Target>,
    #[serde(default)]
    example: Vec<Target>,
    workspace: Option<Workspace>,
}

/// `[workspace]`: Cargo loads every member's manifest and targets before it builds anything.
#[derive(serde::Deserialize)]
struct Workspace {
    #[serde(default)]
    members: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Package {
    build: Option<String>,
    rust_version: Option<String>,
}

/// A `[[bin]]`, `[[test]]`, `[[bench]]` or `[[example]]`.
#[derive(serde::Deserialize)]
struct Target {
    name: String,
    path: Option<String>,
}

impl Manifest {
    fn parse(text: &str) -> Self {
        toml::from_str(text).expect("Cargo.toml parses")
    }
}

/// The source files of the targets Cargo.toml declares (`[[bin]]`, `[[test]]`, `[[bench]]`,
/// `[[example]]`), its build script and the workspace's other members: Cargo reads the
/// manifest's every target and every member before it builds any, so each must be in the
/// build context.
fn declared_target_files(manifest: &str) -> BTreeSet<String> {
    let manifest = Manifest::parse(manifest);
    let mut found: BTreeSet<String> = manifest.package.build.into_iter().collect();
    found.extend(manifest.workspace.into_iter().flat_map(|w| w.members));
    if repo().join("build.rs").exists() {
        found.insert("build.rs".to_owned());
    }
    let kinds = [
        ("src/bin", manifest.bin),
        ("tests", manifest.test),
        ("benches", manifest.bench),
        ("examples", manifest.example),
    ];
    for (dir, targets) in kinds {
        for Target { name, path } in targets {
            found.insert(path.unwrap_or_else(|| {
                let file = format!("{dir}/{name}.rs");
                if repo().join(&file).exists() {
                    file
                } else {
                    format!("{dir}/{name}/main.rs")
                }
            }));
        }
    }
    found
}

#[test]
fn the_rust_build_reads_only_what_is_copied() {
    let manifest = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let mut included = declared_target_files(&manifest);
    included_files(&repo().join("src"), &mut included);
    for dir in IMAGES {
        let image = Image::load(dir);
        let sources = image.context_sources();
        for needed in ["Cargo.toml", "Cargo.lock", "src"]
            .iter()
            .map(|s| s.to_string())
        {
            assert!(
                sources.contains(&needed),
                "{dir}/Dockerfile does not copy {needed}"
            );
        }
        for file in &included {
            assert!(
                is_let_through(file, &sources),
                "the build reads {file} (a target in Cargo.toml, or included from src/), which {dir}/Dockerfile does not copy"
            );
        }
    }
}

/// Runs `zooherd <args> --help`: clap refuses unknown subcommands and flags before it gets to
/// `--help`, so success means the arguments name a real command.
fn assert_zooherd_accepts(args: &[String], context: &str) -> String {
    let output = Command::new(ZOOHERD)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{context}: `zooherd {}` is not a zooherd command: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn entrypoints_are_zooherd_subcommands() {
    let cases = [
        ("deploy/images/zookeeper", "server"),
        ("deploy/images/operator", "operator"),
    ];
    for (dir, subcommand) in cases {
        let image = Image::load(dir);
        // The entrypoint is the binary alone and the subcommand the CMD, so that a pod's args,
        // which name the subcommand, replace the CMD.
        let entrypoint: Vec<String> =
            serde_json::from_str(image.final_one("ENTRYPOINT").expect("ENTRYPOINT")).unwrap();
        assert_eq!(entrypoint, ["/usr/local/bin/zooherd"], "{dir}");
        let argv = image.command_line();
        assert_eq!(argv[1..], [subcommand], "{dir}: CMD");
        // The binary is installed where the entrypoint looks for it.
        assert!(
            image
                .copies()
                .iter()
                .any(|(_, destination, from_stage)| *from_stage && destination == &argv[0]),
            "{dir}: nothing copies the zooherd binary to {}",
            argv[0]
        );
        let help = assert_zooherd_accepts(&argv[1..], dir);
        assert!(
            help.contains(&format!("Usage: zooherd {subcommand}")),
            "{help}"
        );
    }
}

#[test]
fn the_operators_pods_run_on_the_server_image() {
    use k8s_openapi::api::core::v1::Probe;
    use zooherd::api::ZooKeeperEnsemble;
    use zooherd::build::{Settings, ValidatedEnsemble, children};

    let mut ensemble = ZooKeeperEnsemble::new("zk", serde_json::from_str("{}").unwrap());
    ensemble.metadata.namespace = Some("default".to_owned());
    ensemble.metadata.uid = Some("0f6c9a7e-1111-4222-8333-944445555666".to_owned());
    let settings = Settings::new(zooherd::agent::DEFAULT_SERVER_IMAGE);
    let valid = ValidatedEnsemble::new(&ensemble).expect("the default ensemble is valid");
    let children = children(&valid, &settings, None);
    let pod = children.stateful_set.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(zooherd::agent::DEFAULT_SERVER_IMAGE)
    );
    assert!(
        container.command.is_none(),
        "the pod keeps the image's entrypoint"
    );
    let args = container.args.clone().expect("args");
    assert_eq!(args[0], "server");
    assert_zooherd_accepts(&args, "the StatefulSet's args");

    let probes: [(&str, &Option<Probe>); 3] = [
        ("readiness", &container.readiness_probe),
        ("liveness", &container.liveness_probe),
        ("startup", &container.startup_probe),
    ];
    for (name, probe) in probes {
        let Some(probe) = probe else { continue };
        let command = probe
            .exec
            .as_ref()
            .and_then(|exec| exec.command.clone())
            .unwrap_or_else(|| panic!("the {name} probe runs a command"));
        // /usr/local/bin is on the PATH of the image's Debian base.
        assert_eq!(command[0], "zooherd", "{name} probe");
        assert_zooherd_accepts(&command[1..], &format!("the {name} probe"));
    }
}

#[test]
fn server_image_matches_the_repository() {
    let image = Image::load("deploy/images/zookeeper");

    let versions = fs::read_to_string(repo().join("tests/cluster/versions.env")).unwrap();
    let tested = versions
        .lines()
        .find_map(|l| l.strip_prefix("ZOOKEEPER_VERSION="))
        .expect("ZOOKEEPER_VERSION in tests/cluster/versions.env");
    assert_eq!(
        image.arg_default("ZOOKEEPER_VERSION").as_deref(),
        Some(tested),
        "the image ships the ZooKeeper the tests run"
    );

    let exposed: BTreeSet<u16> = image
        .final_one("EXPOSE")
        .expect("EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    use zooherd::build::names;
    let ports = [
        names::CLIENT_PORT,
        names::QUORUM_PORT,
        names::ELECTION_PORT,
        names::ADMIN_PORT,
        names::METRICS_PORT,
    ];
    let expected: BTreeSet<u16> = ports.iter().map(|&p| p as u16).collect();
    assert_eq!(exposed, expected);

    assert_eq!(image.final_one("USER"), Some("1000:1000"));
    assert_eq!(
        image.final_env("ZOOKEEPER_HOME"),
        Some(zooherd::agent::server::DEFAULT_ZOOKEEPER_HOME)
    );
    // The agent runs $JAVA_HOME/bin/java; the probes run `zooherd` from the PATH.
    let java_home = image.final_env("JAVA_HOME").expect("ENV JAVA_HOME");
    let path = image.final_env("PATH").expect("ENV PATH");
    assert!(path.split(':').any(|dir| dir == "/usr/local/bin"), "{path}");
    assert!(
        path.split(':').any(|dir| dir == format!("{java_home}/bin")),
        "{path}"
    );
}

#[test]
fn images_run_as_non_root_and_build_with_the_crates_rust() {
    let manifest = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let rust_version = Manifest::parse(&manifest)
        .package
        .rust_version
        .expect("rust-version in Cargo.toml");
    for dir in IMAGES {
        let image = Image::load(dir);
        let user = image
            .final_one("USER")
            .unwrap_or_else(|| panic!("{dir}: no USER"));
        let uid: u32 = user
            .split(':')
            .next()
            .unwrap()
            .parse()
            .expect("a numeric uid");
        assert_ne!(uid, 0, "{dir} runs as root");
        let rust_image = image.arg_default("RUST_IMAGE").expect("ARG RUST_IMAGE");
        assert!(
            rust_image.starts_with(&format!("rust:{rust_version}-")),
            "{dir}: {rust_image} is not Rust {rust_version}, the crate's rust-version"
        );
        let base = image.arg_default("BASE_IMAGE").expect("ARG BASE_IMAGE");
        // debian:bookworm-slim -> bookworm
        let tag = base.rsplit_once(':').map_or("", |(_, tag)| tag);
        let release = tag.split('-').next().unwrap();
        assert!(
            rust_image.ends_with(&format!("-{release}")),
            "{dir}: builder {rust_image} and runtime {base} are different Debian releases"
        );
    }
}

#[test]
fn dockerfile_parsing() {
    let parsed = instructions(
        "# comment\nARG A=1\n\nRUN one \\\n    two \\\n  # a comment line inside is dropped\n    three\nENTRYPOINT [\"x\"]\n",
    );
    let keywords: Vec<&str> = parsed.iter().map(|i| i.keyword.as_str()).collect();
    assert_eq!(keywords, ["ARG", "RUN", "ENTRYPOINT"]);
    assert_eq!(parsed[1].rest, "one  two  three");
    assert!(is_let_through("src/agent/mod.rs", &["src".to_owned()]));
    let manifest = "[package]\nname = \"x\"\n\n[[bin]]\nname = \"zooherd\"\npath = \"src/main.rs\"\n\n\
                    [dependencies]\nname = \"not a target\"\n\n[[bench]]\nname = \"speed\"\nharness = false\n";
    let files: Vec<String> = declared_target_files(manifest).into_iter().collect();
    assert!(
        files == ["benches/speed/main.rs", "src/main.rs"]
            || files == ["benches/speed.rs", "src/main.rs"],
        "{files:?}"
    );
    assert!(!is_let_through("srcs/x", &["src".to_owned()]));
}

#[test]
fn run_scripts_are_valid_shell() {
    for dir in IMAGES {
        let image = Image::load(dir);
        for script in image.run_scripts() {
            let output = Command::new("sh")
                .args(["-n", "-c", script])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{dir}: RUN {script}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// The server image's download step, run against a local stand-in for the release archive:
/// it installs a release whose checksum matches what is published beside it, and refuses a
/// tampered one, or one whose published checksum differs from a pinned `ZOOKEEPER_SHA512`.
#[test]
fn zookeeper_download_is_checked_against_the_published_checksum() {
    let image = Image::load("deploy/images/zookeeper");
    let version = image.arg_default("ZOOKEEPER_VERSION").unwrap();
    let script = image
        .all("RUN")
        .find(|script| script.contains("sha512sum"))
        .expect("a RUN that checks the SHA-512");
    assert!(script.contains("/opt/zookeeper"));

    let tmp = tempfile::tempdir().unwrap();
    let name = format!("apache-zookeeper-{version}-bin");
    let release = tmp.path().join(format!("dist/zookeeper-{version}"));
    let unpacked = tmp.path().join("src").join(&name);
    for dir in ["lib", "docs", "bin", "conf"] {
        fs::create_dir_all(unpacked.join(dir)).unwrap();
    }
    fs::write(unpacked.join(format!("lib/zookeeper-{version}.jar")), "jar").unwrap();
    fs::write(unpacked.join("bin/zkServer.cmd"), "rem").unwrap();
    fs::write(unpacked.join("docs/index.html"), "docs").unwrap();
    fs::create_dir_all(&release).unwrap();
    let tarball = release.join(format!("{name}.tar.gz"));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(tmp.path().join("src"))
        .arg(&name)
        .status()
        .unwrap();
    assert!(status.success());
    let sha512 = |path: &Path| -> String {
        let output = Command::new("sha512sum").arg(path).output().unwrap();
        String::from_utf8(output.stdout).unwrap()[..128].to_owned()
    };
    let good = sha512(&tarball);
    // The archive publishes `<hex>  <file name>` beside the release.
    let publish = |hex: &str| {
        fs::write(
            release.join(format!("{name}.tar.gz.sha512")),
            format!("{hex}  {name}.tar.gz\n"),
        )
        .unwrap()
    };
    let run = |pinned: &str, case: &str| -> (bool, PathBuf, String) {
        let dest = tmp.path().join(case).join("zookeeper");
        let work = tmp.path().join(case).join("download");
        fs::create_dir_all(&work).unwrap();
        let output = Command::new("sh")
            .arg("-c")
            .arg(script.replace("/opt/zookeeper", &dest.display().to_string()))
            .current_dir(&work)
            .env("ZOOKEEPER_VERSION", &version)
            .env(
                "ZOOKEEPER_DIST",
                format!("file://{}", tmp.path().join("dist").display()),
            )
            .env("ZOOKEEPER_SHA512", pinned)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), dest, stderr)
    };

    publish(&good);
    let (ok, dest, stderr) = run("", "published");
    assert!(ok, "{stderr}");
    assert!(dest.join(format!("lib/zookeeper-{version}.jar")).is_file());
    assert!(!dest.join("docs").exists() && !dest.join("bin/zkServer.cmd").exists());
    let (ok, _, stderr) = run(&good.to_uppercase(), "pinned");
    assert!(ok, "{stderr}");

    let (ok, _, stderr) = run(&"0".repeat(128), "pinned-other");
    assert!(!ok);
    assert!(stderr.contains("is not ZOOKEEPER_SHA512"), "{stderr}");

    publish(&"f".repeat(128));
    let (ok, dest, stderr) = run("", "tampered");
    assert!(
        !ok,
        "a release that does not match its published checksum was installed"
    );
    assert!(stderr.contains("did NOT match"), "{stderr}");
    assert!(!dest.exists());
}
