//! The `workspace-operator` binary: parse the command line and dispatch.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use workspace_operator::config::Config;

#[derive(Parser)]
#[command(
    name = "workspace-operator",
    version,
    about = "Prefect-Cloud-style workspaces for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers, serving /metrics, /livez and /readyz (flags can also be set as
    /// WORKSPACE_OPERATOR_<FLAG> environment variables).
    Run(Config),
    /// Print the CustomResourceDefinitions as YAML, or write one file per kind into a directory.
    Crds {
        /// Directory to write `<plural>.workspaces.dev.yaml` files into; prints to stdout when absent.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Crds { out_dir } => {
            workspace_operator::api::crdgen::emit(out_dir.as_deref()).map_err(Into::into)
        }
        Command::Run(config) => run(config),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    workspace_operator::telemetry::init(config.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(workspace_operator::operator::run(config));
    if let Err(error) = &result {
        tracing::error!(%error, "operator stopped");
    }
    Ok(result?)
}
