//! `kubectl workspaces`: the everyday workspace flows, one command each.
//!
//! A kubectl plugin (kubectl runs `kubectl-workspaces` for `kubectl
//! workspaces ...`). It talks only to the API server, with the caller's own
//! kubeconfig and identity: every answer comes from the API server's own
//! authorization (see `docs/cli.md` and "Finding a user's workspaces" in
//! `docs/security.md`).

mod access;
mod directory;
mod error;
mod invitations;
mod kubeconfig;
mod list;
mod output;
mod transfers;
mod workspaces;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use error::{Error, Result};
use output::Format;

/// List your workspaces, switch to one, answer invitations and transfers.
#[derive(Parser, Debug)]
#[command(name = "kubectl workspaces", version)]
struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// The namespace of the operator's workspace directory (empty: always
    /// scan every workspace, as against an install without one).
    #[arg(
        long,
        global = true,
        value_name = "NAMESPACE",
        env = "KUBECTL_WORKSPACES_DIRECTORY",
        default_value = workspace_operator::config::DEFAULT_DIRECTORY_NAMESPACE
    )]
    directory_namespace: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The user and groups the API server sees, and the accounts you administer.
    Whoami {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// The workspaces you belong to: owner, handle, your role, phase and namespace.
    #[command(alias = "list")]
    Ls {
        /// Every Workspace in the cluster (for platform admins).
        #[arg(short = 'A', long)]
        all: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Point the kubeconfig at a workspace's namespace (NAME or OWNER/HANDLE).
    Use {
        /// The Workspace's name, or OWNER/HANDLE (for example acme/prod).
        workspace: String,
        /// Create (or update) a context named `workspace-<name>` for it and
        /// switch to it, instead of changing the current context's namespace.
        #[arg(long)]
        new_context: bool,
    },
    /// Your open invitations to personal workspaces.
    Invitations {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Accept the invitation to a workspace (NAME or OWNER/HANDLE).
    Accept { workspace: String },
    /// Decline the invitation to a workspace (NAME or OWNER/HANDLE).
    Decline { workspace: String },
    /// Propose moving a workspace to another account.
    Transfer {
        /// The Workspace's name, or OWNER/HANDLE.
        workspace: String,
        /// The target account: org/NAME or user/NAME.
        #[arg(long, value_name = "org/NAME|user/NAME")]
        to: String,
        /// A new handle for the workspace in the target account.
        #[arg(long, value_name = "H")]
        handle: Option<String>,
        /// The WorkspaceTransfer's name (default: WORKSPACE-to-TARGET).
        #[arg(long)]
        name: Option<String>,
    },
    /// The open transfers you can see, and whether one waits for your answer.
    Transfers {
        /// Also the transfers that have ended (that you can still read).
        #[arg(long)]
        all: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Show a transfer's impact and approve it for the side you answer for.
    Approve {
        name: String,
        /// Approve without asking (the impact is printed all the same).
        #[arg(short, long)]
        yes: bool,
        /// The side to answer for when you may answer for both.
        #[arg(long, value_enum)]
        side: Option<transfers::Side>,
    },
    /// Refuse a transfer for the side you answer for.
    Reject {
        name: String,
        /// Why, recorded in the approval's comment.
        #[arg(long)]
        reason: String,
        /// The side to answer for when you may answer for both.
        #[arg(long, value_enum)]
        side: Option<transfers::Side>,
    },
}

/// The client for `--kubeconfig`/`--context`, else the usual inference
/// ($KUBECONFIG, ~/.kube/config, in-cluster).
async fn client(cli: &Cli) -> Result<Client> {
    let config = if cli.kubeconfig.is_some() || cli.context.is_some() {
        let kubeconfig = match &cli.kubeconfig {
            Some(path) => Kubeconfig::read_from(path),
            None => Kubeconfig::read(),
        }
        .map_err(|e| Error::msg(format!("cannot read the kubeconfig: {e}")))?;
        let options = KubeConfigOptions {
            context: cli.context.clone(),
            ..KubeConfigOptions::default()
        };
        Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| Error::msg(format!("cannot use the kubeconfig: {e}")))?
    } else {
        Config::infer()
            .await
            .map_err(|e| Error::msg(format!("no usable kubeconfig: {e}")))?
    };
    Client::try_from(config).map_err(|e| Error::msg(format!("cannot build a client: {e}")))
}

async fn run(cli: Cli) -> Result<()> {
    let client = client(&cli).await?;
    directory::set_namespace(cli.directory_namespace.clone());
    let files = kubeconfig::Files::locate(cli.kubeconfig.as_deref());
    match cli.command {
        Command::Whoami { output } => access::whoami(&client, output).await,
        Command::Ls { all, output } => list::ls(&client, all, output).await,
        Command::Use {
            workspace,
            new_context,
        } => {
            let target = kubeconfig::Target {
                files,
                context: cli.context.clone(),
                new_context,
            };
            kubeconfig::use_workspace(&client, &workspace, &target).await
        }
        Command::Invitations { output } => invitations::list(&client, output).await,
        Command::Accept { workspace } => invitations::answer(&client, &workspace, true).await,
        Command::Decline { workspace } => invitations::answer(&client, &workspace, false).await,
        Command::Transfer {
            workspace,
            to,
            handle,
            name,
        } => transfers::propose(&client, &workspace, &to, handle, name).await,
        Command::Transfers { all, output } => transfers::list(&client, all, output).await,
        Command::Approve { name, yes, side } => {
            transfers::answer(&client, &name, transfers::Answer::Approve { yes }, side).await
        }
        Command::Reject { name, reason, side } => {
            transfers::answer(&client, &name, transfers::Answer::Reject { reason }, side).await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
