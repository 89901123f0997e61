use clap::{Parser, Subcommand};

/// Zooherd runs Apache ZooKeeper ensembles on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "zooherd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every CustomResourceDefinition the operator serves, as YAML.
    Crd,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print!("{}", zooherd::api::crds_yaml()),
    }
}
