//! Configuration of `workspace-operator run`.
//!
//! Every flag can also be set through an environment variable named
//! `WORKSPACE_OPERATOR_<FLAG>` (upper case, dashes as underscores), e.g.
//! `WORKSPACE_OPERATOR_MAX_WORKSPACES_PER_USER=3`. A flag on the command line
//! wins over its variable. A few defaults come from the conventional variables
//! a Deployment sets: `POD_NAMESPACE` (lease and operator namespace) and
//! `LOG_FORMAT`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::api::PodSecurityLevel;

/// The single server-side-apply field manager every write of the operator uses.
pub const FIELD_MANAGER: &str = "workspace-operator";

/// The `User-Agent` the operator's Kubernetes client sends.
pub const USER_AGENT: &str = concat!("workspace-operator/", env!("CARGO_PKG_VERSION"));

/// Namespace used for the lease and as the operator's own namespace when
/// neither a flag nor `POD_NAMESPACE` says otherwise.
pub const DEFAULT_NAMESPACE: &str = "workspace-operator-system";

/// The directory's namespace when `--directory-namespace` is not given.
pub const DEFAULT_DIRECTORY_NAMESPACE: &str = "workspaces-directory";

/// Default lifetime of invitations and transfers: seven days.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Log output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Flags of `workspace-operator run`.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address of the HTTP server for /metrics, /livez and /readyz.
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_addr: SocketAddr,

    /// Most Workspaces a user may own personally; 0 means unlimited.
    /// Workspaces over the limit report `WorkspaceLimitExceeded`; lowering the
    /// limit never tears down existing Workspaces. Organizations use their own
    /// `spec.limits.workspaces` instead.
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_MAX_WORKSPACES_PER_USER",
        default_value_t = 0
    )]
    pub max_workspaces_per_user: u32,

    /// How long an invitation stays valid, e.g. `7d`, `168h`, `1d12h`
    /// (units: s, m, h, d, w).
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_INVITATION_TTL",
        default_value = "7d",
        value_parser = parse_duration
    )]
    pub invitation_ttl: Duration,

    /// How long a transfer offer stays valid, e.g. `7d`, `168h`
    /// (units: s, m, h, d, w).
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_TRANSFER_TTL",
        default_value = "7d",
        value_parser = parse_duration
    )]
    pub transfer_ttl: Duration,

    /// Most reconciles each controller runs in parallel (at least 1).
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_CONCURRENCY",
        default_value_t = 8,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub concurrency: u16,

    /// Elect a leader on a coordination.k8s.io Lease so several replicas can
    /// run; only the leader reconciles. Turn off (`--leader-election=false`)
    /// for a single replica: the operator then makes no periodic writes.
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_LEADER_ELECTION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub leader_election: bool,

    /// Name of the Lease used for leader election.
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_LEASE_NAME",
        default_value = "workspace-operator"
    )]
    pub lease_name: String,

    /// Namespace of the Lease used for leader election
    /// [default: $POD_NAMESPACE, else workspace-operator-system].
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_LEASE_NAMESPACE",
        default_value = env_default("POD_NAMESPACE", DEFAULT_NAMESPACE),
        hide_default_value = true
    )]
    pub lease_namespace: String,

    /// Namespace the operator runs in; no Workspace may use it (the
    /// admission policies reserve it through the ConfigMap
    /// workspace-operator-policy of this namespace, which the operator reads
    /// at start) [default: $POD_NAMESPACE, else workspace-operator-system].
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_OPERATOR_NAMESPACE",
        default_value = env_default("POD_NAMESPACE", DEFAULT_NAMESPACE),
        hide_default_value = true
    )]
    pub operator_namespace: String,

    /// Namespace of the workspace directory: one Role and RoleBinding per
    /// subject that is a member somewhere, which `kubectl workspaces ls`
    /// reads with one SelfSubjectRulesReview (docs/security.md). It must
    /// exist; an empty value turns the directory off.
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_DIRECTORY_NAMESPACE",
        default_value = DEFAULT_DIRECTORY_NAMESPACE
    )]
    pub directory_namespace: String,

    /// At start, check that the admission policies' parameters
    /// (ConfigMap workspace-operator-policy in the operator's namespace)
    /// name this operator's identity and reserve its namespace, and refuse
    /// to run otherwise. Turn off only for an operator run by a cluster
    /// admin outside an install (the policies then confine nothing).
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_VERIFY_CONFINEMENT",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub verify_confinement: bool,

    /// Log format [default: $LOG_FORMAT, else plain]. The level comes from
    /// RUST_LOG (default `info,kube=warn`).
    #[arg(
        long,
        value_enum,
        env = "WORKSPACE_OPERATOR_LOG_FORMAT",
        default_value = env_default("LOG_FORMAT", "plain"),
        hide_default_value = true
    )]
    pub log_format: LogFormat,

    /// The Pod Security Standard enforced in workspace namespaces
    /// (`baseline`, `restricted` or `privileged`), unless the owning
    /// Organization's `workspaceDefaults.podSecurity` (which only platform
    /// admins set) says otherwise.
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_POD_SECURITY",
        default_value = "baseline",
        value_parser = parse_pod_security
    )]
    pub pod_security: PodSecurityLevel,

    /// Comma-separated custom ClusterRoles that a WorkspaceMember may name,
    /// besides the built-in workspace roles (empty: only the built-in ones).
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_ASSIGNABLE_CLUSTER_ROLES",
        value_delimiter = ',',
        value_parser = parse_role_name
    )]
    pub assignable_cluster_roles: Vec<String>,

    /// Where to POST notifications (CloudEvents 1.0, JSON) about invitations
    /// and transfers that wait for someone, and how they ended, e.g.
    /// `https://hooks.example.com/workspaces`; unset sends nothing. See
    /// docs/notifications.md.
    #[arg(long, env = "WORKSPACE_OPERATOR_NOTIFY_URL", value_parser = parse_notify_url)]
    pub notify_url: Option<String>,

    /// A file holding the key that signs each notification (HMAC-SHA256 of
    /// the body, hex, in the `X-Workspaces-Signature: sha256=<hex>` header);
    /// surrounding whitespace is ignored. Unset: notifications are unsigned.
    #[arg(long, env = "WORKSPACE_OPERATOR_NOTIFY_SECRET_FILE")]
    pub notify_secret_file: Option<std::path::PathBuf>,

    /// Most notifications waiting for delivery; when the receiver is down
    /// long enough for the queue to fill, further ones are dropped (and
    /// counted) rather than slow the operator down.
    #[arg(
        long,
        env = "WORKSPACE_OPERATOR_NOTIFY_QUEUE",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub notify_queue: u32,
}

impl Default for Config {
    /// The documented defaults, independent of the environment.
    fn default() -> Self {
        Self {
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_workspaces_per_user: 0,
            invitation_ttl: DEFAULT_TTL,
            transfer_ttl: DEFAULT_TTL,
            concurrency: 8,
            leader_election: true,
            lease_name: "workspace-operator".to_owned(),
            lease_namespace: DEFAULT_NAMESPACE.to_owned(),
            operator_namespace: DEFAULT_NAMESPACE.to_owned(),
            directory_namespace: DEFAULT_DIRECTORY_NAMESPACE.to_owned(),
            verify_confinement: true,
            log_format: LogFormat::Plain,
            pod_security: PodSecurityLevel::Baseline,
            assignable_cluster_roles: Vec::new(),
            notify_url: None,
            notify_secret_file: None,
            notify_queue: 1000,
        }
    }
}

impl Config {
    /// The per-user workspace limit, `None` when unlimited.
    pub fn workspace_limit_per_user(&self) -> Option<u32> {
        (self.max_workspaces_per_user > 0).then_some(self.max_workspaces_per_user)
    }

    /// The directory's namespace, `None` when the directory is off.
    pub fn directory(&self) -> Option<&str> {
        Some(self.directory_namespace.as_str()).filter(|ns| !ns.is_empty())
    }

    /// Whether members may be given the custom ClusterRole `name`.
    pub fn is_assignable_cluster_role(&self, name: &str) -> bool {
        self.assignable_cluster_roles
            .iter()
            .any(|role| role == name)
    }
}

/// An `http://` or `https://` URL with a host.
fn parse_notify_url(input: &str) -> Result<String, String> {
    let uri: http::Uri = input
        .trim()
        .parse()
        .map_err(|e| format!("{input:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(input.trim().to_owned()),
        _ => Err(format!(
            "{input:?} is not an http:// or https:// URL with a host"
        )),
    }
}

/// The value of the environment variable `name` when set and not empty,
/// `fallback` otherwise. Used for defaults evaluated once at start-up.
fn env_default(name: &str, fallback: &'static str) -> &'static str {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            Box::leak(value.trim().to_owned().into_boxed_str())
        }
        _ => fallback,
    }
}

/// Parses a duration written as a sequence of `<number><unit>` terms
/// (`humantime`'s format: units `s`, `m`, `h`, `d` (24 h), `w` (7 d) and
/// their long names): `7d`, `168h`, `1d12h`, `90s`, `2h 30min`. The result
/// must be positive.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(input.trim())
        .map_err(|e| format!("invalid duration {input:?}: {e}; write e.g. 7d, 168h or 30m"))?;
    if duration.is_zero() {
        return Err(format!(
            "invalid duration {input:?}: must be longer than zero"
        ));
    }
    Ok(duration)
}

/// Validates one entry of `--assignable-cluster-roles`: a non-empty RBAC
/// object name (surrounding spaces are ignored).
/// A Pod Security Standard level, by the name Pod Security Admission uses.
fn parse_pod_security(input: &str) -> Result<PodSecurityLevel, String> {
    serde_json::from_value(serde_json::Value::String(input.to_owned())).map_err(|_| {
        format!("{input:?} is not a Pod Security level: use baseline, restricted or privileged")
    })
}

fn parse_role_name(input: &str) -> Result<String, String> {
    let name = input.trim();
    if name.is_empty() {
        return Err("empty ClusterRole name in the list".to_owned());
    }
    if name == "."
        || name == ".."
        || name.contains(['/', '%'])
        || name.chars().any(char::is_whitespace)
    {
        return Err(format!("{name:?} is not a valid ClusterRole name"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .map(|cli| cli.config)
    }

    /// True when the test process itself carries a variable that would change
    /// a default; such tests are skipped rather than made unsafe with set_var.
    fn env_overrides_defaults() -> bool {
        std::env::vars().any(|(name, _)| {
            name.starts_with("WORKSPACE_OPERATOR_")
                || name == "POD_NAMESPACE"
                || name == "LOG_FORMAT"
        })
    }

    #[test]
    fn defaults_match_default_impl() {
        if env_overrides_defaults() {
            return;
        }
        assert_eq!(parse(&[]).unwrap(), Config::default());
    }

    #[test]
    fn parses_every_flag() {
        let config = parse(&[
            "--metrics-addr=127.0.0.1:9000",
            "--max-workspaces-per-user=3",
            "--invitation-ttl=36h",
            "--transfer-ttl",
            "2d",
            "--concurrency=2",
            "--leader-election=false",
            "--lease-name=lease",
            "--lease-namespace=ops",
            "--operator-namespace=ops2",
            "--log-format=json",
            "--assignable-cluster-roles=view, edit ,custom:role",
            "--notify-url=https://hooks.example.com/ws",
            "--notify-secret-file=/etc/notify/key",
            "--notify-queue=10",
        ])
        .unwrap();
        assert_eq!(config.metrics_addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.max_workspaces_per_user, 3);
        assert_eq!(config.workspace_limit_per_user(), Some(3));
        assert_eq!(config.invitation_ttl, Duration::from_secs(36 * 3600));
        assert_eq!(config.transfer_ttl, Duration::from_secs(2 * 86400));
        assert_eq!(config.concurrency, 2);
        assert!(!config.leader_election);
        assert_eq!(config.lease_name, "lease");
        assert_eq!(config.lease_namespace, "ops");
        assert_eq!(config.operator_namespace, "ops2");
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.assignable_cluster_roles,
            ["view", "edit", "custom:role"]
        );
        assert!(config.is_assignable_cluster_role("edit"));
        assert!(!config.is_assignable_cluster_role("admin"));
        assert_eq!(
            config.notify_url.as_deref(),
            Some("https://hooks.example.com/ws")
        );
        assert_eq!(
            config.notify_secret_file.as_deref(),
            Some(std::path::Path::new("/etc/notify/key"))
        );
        assert_eq!(config.notify_queue, 10);
    }

    #[test]
    fn unlimited_when_zero() {
        assert_eq!(Config::default().workspace_limit_per_user(), None);
    }

    #[test]
    fn leader_election_forms() {
        assert!(parse(&["--leader-election"]).unwrap().leader_election);
        assert!(parse(&["--leader-election=true"]).unwrap().leader_election);
        assert!(!parse(&["--leader-election=no"]).unwrap().leader_election);
        assert!(parse(&["--leader-election=maybe"]).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(&["--concurrency=0"]).is_err());
        assert!(parse(&["--max-workspaces-per-user=-1"]).is_err());
        assert!(parse(&["--invitation-ttl=7"]).is_err());
        assert!(parse(&["--transfer-ttl=0d"]).is_err());
        assert!(parse(&["--log-format=xml"]).is_err());
        assert!(parse(&["--assignable-cluster-roles=a,,b"]).is_err());
        assert!(parse(&["--assignable-cluster-roles=a/b"]).is_err());
        assert!(parse(&["--metrics-addr=localhost"]).is_err());
        assert!(parse(&["--notify-url=hooks.example.com"]).is_err());
        assert!(parse(&["--notify-url=ftp://hooks.example.com/"]).is_err());
        assert!(parse(&["--notify-queue=0"]).is_err());
    }

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap().as_secs();
        assert_eq!(ok("7d"), 7 * 86400);
        assert_eq!(ok("168h"), 7 * 86400);
        assert_eq!(ok("1w"), 7 * 86400);
        assert_eq!(ok("1d12h30m15s"), 86400 + 12 * 3600 + 30 * 60 + 15);
        assert_eq!(ok(" 90s "), 90);
        assert_eq!(ok("7 d"), 7 * 86400);
        assert_eq!(ok("2h 30min"), 2 * 3600 + 30 * 60);
        assert_eq!(ok("1.5h"), 5400);
        for bad in [
            "",
            "7",
            "d",
            "7x",
            "-1d",
            "0s",
            "99999999999999999999s",
            "18446744073709551615w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn every_flag_has_its_env_var() {
        let command = Cli::command();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            let expected = format!(
                "WORKSPACE_OPERATOR_{}",
                long.to_uppercase().replace('-', "_")
            );
            let env = arg.get_env().and_then(|e| e.to_str());
            assert_eq!(env, Some(expected.as_str()), "--{long}");
        }
    }

    #[test]
    fn help_is_documented() {
        Cli::command().debug_assert();
        for arg in Cli::command().get_arguments() {
            if arg.get_id() != "help" {
                assert!(
                    arg.get_help().is_some(),
                    "{} lacks a doc comment",
                    arg.get_id()
                );
            }
        }
    }
}
