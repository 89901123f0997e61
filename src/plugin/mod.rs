//! `kubectl zooherd`: a kubectl plugin (the `kubectl-zooherd` binary) for the people who run
//! ensembles: `status` shows an ensemble the way the operator sees it, `events` its Events, and
//! `restart` asks the operator for a quorum-safe restart.
//!
//! Everything the plugin shows comes from the API server: the status the operator computed
//! (which is what its decisions are made from), the pods and the Events. It needs no network
//! path to the servers, so it works wherever `kubectl` does. The pure parts are
//! [`view`] (what is shown), [`table`] (how) and [`restart`] (whether a restart may be asked);
//! this module only reads and writes through the API.

pub mod restart;
pub mod table;
pub mod view;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

use crate::api::ZooKeeperEnsemble;
use crate::build::names;

/// Exit code of a restart that was refused because it could cost the quorum (or the ensemble is
/// paused, or the member is not one).
pub const EXIT_REFUSED: u8 = 3;

/// Inspect and restart Zooherd's ZooKeeper ensembles.
#[derive(Parser, Debug)]
#[command(name = "kubectl zooherd", bin_name = "kubectl zooherd", version)]
pub struct Cli {
    /// The namespace of the ensemble (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The phase, every member (pod, node, myid, state, zxid and lag behind the leader,
    /// latency, connections, since, restarts), the membership, the conditions and the last
    /// Events.
    Status {
        /// The ZooKeeperEnsemble.
        name: String,
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Ask the operator to restart every server (followers first, the leader last), or one;
    /// refused unless the ensemble is ACTIVE.
    Restart {
        /// The ZooKeeperEnsemble.
        name: String,
        /// Restart only this member (a pod name, e.g. zk-1).
        #[arg(long, value_name = "POD")]
        member: Option<String>,
    },
    /// The ensemble's Events, oldest first.
    Events {
        /// The ZooKeeperEnsemble.
        name: String,
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
    },
}

/// What can go wrong, besides a refusal.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("reading the kubeconfig: {0}")]
    Config(String),
    #[error("no ZooKeeperEnsemble {name} in namespace {namespace}")]
    NotFound { name: String, namespace: String },
    #[error(
        "ZooKeeperEnsemble {0} changed while the restart was asked; run the command again to decide on its latest status"
    )]
    Conflict(String),
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Colour on a terminal, unless `NO_COLOR` is set (<https://no-color.org>).
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

async fn client(cli: &Cli) -> Result<(Client, String), Error> {
    let config = match &cli.context {
        None => Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
        Some(context) => {
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                ..KubeConfigOptions::default()
            };
            let kubeconfig = Kubeconfig::read().map_err(|e| Error::Config(e.to_string()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| Error::Config(e.to_string()))?
        }
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok((client, namespace))
}

async fn ensemble(
    api: &Api<ZooKeeperEnsemble>,
    name: &str,
    namespace: &str,
) -> Result<ZooKeeperEnsemble, Error> {
    api.get_opt(name).await?.ok_or_else(|| Error::NotFound {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
    })
}

async fn pods(client: &Client, ensemble: &ZooKeeperEnsemble) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &ensemble.namespace().unwrap_or_default());
    let selector = ListParams::default().labels(&names::label_selector(ensemble));
    Ok(api.list(&selector).await?.items)
}

/// The ensemble's Events: of this object (its uid), not of an earlier one of the same name.
async fn events(client: &Client, ensemble: &ZooKeeperEnsemble) -> Result<Vec<Event>, Error> {
    let api: Api<Event> =
        Api::namespaced(client.clone(), &ensemble.namespace().unwrap_or_default());
    let fields = format!(
        "involvedObject.kind=ZooKeeperEnsemble,involvedObject.name={},involvedObject.uid={}",
        ensemble.name_any(),
        ensemble.uid().unwrap_or_default()
    );
    Ok(api
        .list(&ListParams::default().fields(&fields))
        .await?
        .items)
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("plain data always serializes")
    );
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let (client, namespace) = client(&cli).await?;
    let ensembles: Api<ZooKeeperEnsemble> = Api::namespaced(client.clone(), &namespace);
    match &cli.command {
        Command::Status { name, output } => {
            let ensemble = ensemble(&ensembles, name, &namespace).await?;
            let pods = pods(&client, &ensemble).await?;
            let events = events(&client, &ensemble).await?;
            let view = view::status_view(&ensemble, &pods, &events);
            match output {
                Output::Json => print_json(&view),
                Output::Text => {
                    print!("{}", view::render_status(&view, Timestamp::now(), colour()))
                }
            }
        }
        Command::Events { name, output } => {
            let ensemble = ensemble(&ensembles, name, &namespace).await?;
            let rows = view::event_rows(&events(&client, &ensemble).await?);
            match output {
                Output::Json => print_json(&rows),
                Output::Text => {
                    print!("{}", view::render_events(&rows, Timestamp::now(), colour()))
                }
            }
        }
        Command::Restart { name, member } => {
            let ensemble = ensemble(&ensembles, name, &namespace).await?;
            let pods = pods(&client, &ensemble).await?;
            let now = Timestamp::now().to_string();
            let request = match restart::request(&ensemble, &pods, member.as_deref(), &now) {
                Ok(request) => request,
                Err(why) => {
                    eprintln!("{why}");
                    return Ok(ExitCode::from(EXIT_REFUSED));
                }
            };
            // Conditional on the version decided on: had the status changed since, the
            // decision would be on an old one.
            let patch = json!({"metadata": {
                "resourceVersion": ensemble.resource_version(),
                "annotations": {request.key: request.value},
            }});
            match ensembles
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    return Err(Error::Conflict(name.clone()));
                }
                result => result?,
            };
            let what = member.as_deref().unwrap_or("every server");
            println!(
                "asked the operator to restart {what} of {name} ({}={}): it replaces one server at a time, \
                 followers first and the leader last, each only while every voter serves.\n\
                 Follow it with: kubectl zooherd status {name} -n {namespace}",
                request.key, request.value
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
