use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zooherd::operator::{self, OperatorArgs};

/// Zooherd runs Apache ZooKeeper ensembles on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "zooherd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator against the current kubeconfig or the in-cluster config.
    Operator(OperatorArgs),
    /// Print every CustomResourceDefinition the operator serves, as YAML.
    Crd,
    /// Start this pod's ZooKeeper server (the server image's entrypoint).
    Server(zooherd::agent::server::Args),
    /// Probe this pod's ZooKeeper server, for the kubelet.
    Probe {
        #[command(subcommand)]
        probe: zooherd::agent::probe::Which,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Operator(args) => {
            operator::init_logging(args.log_format);
            let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
            match runtime.block_on(operator::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crd => {
            print!("{}", zooherd::api::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Server(args) => {
            let Err(error) = zooherd::agent::server::run(&args);
            eprintln!("zooherd server: {error}");
            ExitCode::from(error.exit_code())
        }
        Command::Probe { probe } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("starting the tokio runtime");
            let verdict = runtime.block_on(zooherd::agent::probe::run(&probe));
            println!("{verdict}");
            ExitCode::from(verdict.exit_code())
        }
    }
}
