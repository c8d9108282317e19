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
    Run(Box<Config>),
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
        Command::Run(config) => run(*config),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Most tokio worker threads the operator runs: its work is waiting on the
/// API server, and each thread costs memory (glibc gives threads their own
/// allocation arenas).
const MAX_WORKERS: usize = 4;

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    workspace_operator::telemetry::init(config.log_format)?;
    limit_malloc_arenas();
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(MAX_WORKERS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    runtime.spawn(return_freed_memory());
    let result = runtime.block_on(workspace_operator::operator::run(config));
    if let Err(error) = &result {
        tracing::error!(%error, "operator stopped");
    }
    Ok(result?)
}

/// Gives glibc's malloc a single arena (as `MALLOC_ARENA_MAX=1` would): with
/// one arena per busy thread, memory freed after the initial lists stays
/// spread over arenas no thread reuses (two arenas held 2.3 MiB more than one
/// at 1,000 workspaces; the operator waits on the API server, so threads
/// rarely contend for the lock). An explicit `MALLOC_ARENA_MAX` wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called
        // before the runtime starts its threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// How often memory the allocator holds free is handed back to the system.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// glibc keeps what a burst freed (the initial lists, a converge) for reuse
/// and hands back only the top of the heap; `malloc_trim` returns the free
/// pages in the middle too, so the resident set follows what the caches hold.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
async fn return_freed_memory() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // SAFETY: malloc_trim only releases free memory of the allocator's
        // own arenas; it is safe to call from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
async fn return_freed_memory() {
    let _ = TRIM_EVERY;
}
