//! Running the operator binary in the tests, as its own least-privilege
//! identity: the `workspace-operator` ServiceAccount bound by
//! `deploy/operator-rbac.yaml`, never the admin.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

use super::{ControlPlane, plane, repo_root, run_blocking};

/// Namespace the operator runs in.
pub const OPERATOR_NAMESPACE: &str = "workspace-operator-system";
/// The operator's ServiceAccount.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "workspace-operator";
/// The username the API server sees for the operator.
pub const OPERATOR_USER: &str =
    "system:serviceaccount:workspace-operator-system:workspace-operator";

/// One running operator process.
pub struct Operator {
    /// The supervisor that stops the operator when the test binary exits.
    supervisor: std::process::Child,
    pidfile: PathBuf,
    /// Where its logs go.
    pub log: PathBuf,
    /// Its `/metrics`, `/livez` and `/readyz` port on 127.0.0.1.
    pub port: u16,
}

static SHARED: OnceLock<(Vec<String>, Operator)> = OnceLock::new();

/// The operator shared by every test of this binary, started on first use
/// (after the control plane), and ready (all caches synced) when this returns.
pub fn operator() -> &'static Operator {
    operator_with(&[])
}

/// Like [`operator`], started with `extra` arguments after `run` (as an
/// install would set them). Every test of a binary asks for the same ones.
pub fn operator_with(extra: &[&str]) -> &'static Operator {
    let (args, op) = SHARED.get_or_init(|| {
        let op = Operator::start(extra);
        op.wait_ready(Duration::from_secs(60));
        (extra.iter().map(|a| a.to_string()).collect(), op)
    });
    assert_eq!(
        args, extra,
        "the tests of one binary share one operator, started with the same arguments"
    );
    op
}

/// The admin's client, once the control plane and the shared operator
/// ([`operator`]) run: the start of most tests.
pub async fn setup() -> kube::Client {
    operator();
    plane().admin().await
}

fn workdir(plane: &ControlPlane) -> PathBuf {
    plane.dir().map(PathBuf::from).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("workspace-operator-tests-{}", std::process::id()))
    })
}

/// A kubeconfig holding a fresh token of the operator's ServiceAccount: the
/// operator's own identity, for the operator and for anything that must act
/// exactly as it does.
pub fn operator_kubeconfig(plane: &ControlPlane) -> PathBuf {
    service_account_kubeconfig(plane, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
}

/// A kubeconfig holding a fresh token of the ServiceAccount
/// `namespace/name`, as a pod running as it would hold one.
pub fn service_account_kubeconfig(plane: &ControlPlane, namespace: &str, name: &str) -> PathBuf {
    let path = if (namespace, name) == (OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT) {
        workdir(plane).join("operator.kubeconfig")
    } else {
        workdir(plane).join(format!("{namespace}.{name}.kubeconfig"))
    };
    if path.exists() {
        return path;
    }
    let token = run_blocking(async {
        let admin = plane.admin().await;
        let api: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(24 * 3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        api.create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|err| {
                panic!("a token for the ServiceAccount {namespace}/{name}: {err}")
            })
            .status
            .expect("token status")
            .token
    });
    let admin: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(plane.kubeconfig()).expect("read kubeconfig"),
    )
    .expect("kubeconfig");
    let cluster = admin["clusters"][0]["cluster"].clone();
    let config = serde_yaml::to_string(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": serde_json::to_value(cluster).expect("cluster")}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": "operator"}}],
        "current-context": "operator",
    }))
    .expect("kubeconfig yaml");
    std::fs::create_dir_all(workdir(plane)).expect("workdir");
    std::fs::write(&path, config).expect("write operator kubeconfig");
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Operator {
    /// Starts another operator process with `extra` arguments after `run`,
    /// as the operator's own ServiceAccount.
    pub fn start(extra: &[&str]) -> Operator {
        Operator::start_as(&operator_kubeconfig(plane()), extra)
    }

    /// An operator of a test's own, ready: alone (no leader election), with
    /// `extra` arguments and `env` added (fault injection).
    pub fn alone(extra: &[&str], env: &[(&str, &str)]) -> Operator {
        let mut args = vec!["--leader-election=false"];
        args.extend_from_slice(extra);
        let op = Operator::start_with_env(&args, env);
        op.wait_ready(Duration::from_secs(60));
        op
    }

    /// Starts another operator process with `extra` arguments after `run`,
    /// authenticating with `kubeconfig`.
    pub fn start_as(kubeconfig: &std::path::Path, extra: &[&str]) -> Operator {
        Operator::start_as_with_env(kubeconfig, extra, &[])
    }

    /// Starts another operator process with `extra` arguments after `run`
    /// and the environment variables `env`, as the operator's own
    /// ServiceAccount (fault injection, for instance).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Operator {
        Operator::start_as_with_env(&operator_kubeconfig(plane()), extra, env)
    }

    fn start_as_with_env(
        kubeconfig: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = free_port();
        let mut args = vec![
            "run".to_string(),
            "--metrics-addr".to_string(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut vars = vec![
            (
                "RUST_LOG".to_string(),
                "info,workspace_operator=debug,kube=warn".to_string(),
            ),
            ("HOSTNAME".to_string(), format!("operator-{n}")),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Operator::launch(kubeconfig, &args, &vars, port)
    }

    /// Starts the operator binary with exactly `args` (from the subcommand
    /// on) and `env` added to the test's environment, authenticating with
    /// `kubeconfig`; `port` is where `args` make it serve `/readyz` on
    /// 127.0.0.1.
    pub fn launch(
        kubeconfig: &std::path::Path,
        args: &[String],
        env: &[(String, String)],
        port: u16,
    ) -> Operator {
        let mut command = vec![env!("CARGO_BIN_EXE_workspace-operator").to_string()];
        command.extend(args.iter().cloned());
        let mut env = env.to_vec();
        env.push(("KUBECONFIG".to_string(), kubeconfig.display().to_string()));
        Operator::launch_command(&command, &env, port)
    }

    /// Runs `command` (the operator, possibly wrapped) under the supervisor
    /// with `env` added to the test's environment.
    fn launch_command(command: &[String], env: &[(String, String)], port: u16) -> Operator {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let plane = plane();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = workdir(plane);
        std::fs::create_dir_all(&dir).expect("workdir");
        let log = dir.join(format!("operator-{n}.log"));
        let pidfile = dir.join(format!("operator-{n}.pid"));
        let supervisor = Command::new("bash")
            .arg(repo_root().join("tests/controlplane/supervise.sh"))
            .arg(std::process::id().to_string())
            .arg(&pidfile)
            .arg(&log)
            .arg("--")
            .args(command)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the operator");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pidfile.exists() {
            assert!(Instant::now() < deadline, "the operator did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Operator {
            supervisor,
            pidfile,
            log,
            port,
        }
    }

    /// Like [`Operator::launch`], confined the way a container of the
    /// chart's Deployment confines it: exactly `env` (and `KUBECONFIG`), no
    /// PATH and so no shell, a working directory it cannot write, and, when
    /// the tests run as root, the chart's unprivileged user 65532. A binary
    /// that needed a writable filesystem, a shell or a home directory would
    /// fail here as it would in the pod.
    pub fn launch_confined(
        kubeconfig: &std::path::Path,
        args: &[String],
        env: &[(String, String)],
        port: u16,
    ) -> Operator {
        use std::os::unix::fs::PermissionsExt;
        let root = workdir(plane()).join(format!("confined-{port}"));
        let cwd = root.join("cwd");
        std::fs::create_dir_all(&cwd).expect("the confined working directory");
        // Readable by the unprivileged user: the token, as the kubelet
        // mounts it.
        let config = root.join("kubeconfig");
        std::fs::copy(kubeconfig, &config).expect("copy the kubeconfig");
        for (path, mode) in [(&root, 0o755), (&cwd, 0o555), (&config, 0o644)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .expect("set permissions");
        }
        let mut wrapped: Vec<String> = Vec::new();
        // The effective user, as `id -u` prints it.
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if is_root {
            wrapped.extend(
                [
                    "setpriv",
                    "--reuid=65532",
                    "--regid=65532",
                    "--clear-groups",
                    "--",
                ]
                .map(String::from),
            );
        }
        wrapped.extend(["env", "-i", "-C"].map(String::from));
        wrapped.push(cwd.display().to_string());
        wrapped.push(format!("KUBECONFIG={}", config.display()));
        wrapped.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        wrapped.push(env!("CARGO_BIN_EXE_workspace-operator").to_string());
        wrapped.extend(args.iter().cloned());
        Operator::launch_command(&wrapped, &[], port)
    }

    /// Whether the supervisor (and so the operator) has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.supervisor.try_wait(), Ok(Some(_)))
    }

    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .expect("operator pid")
    }

    /// GETs `path` from the operator's HTTP server: `(status code, body)`.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// The value of a counter or gauge in `/metrics`, summed over the series
    /// whose line starts with `name` and contains `label_filter` (e.g.
    /// `controller="workspace"`, or `""` for all); `None` when `/metrics`
    /// does not answer 200.
    pub fn metric(&self, name: &str, label_filter: &str) -> Option<f64> {
        let (code, body) = self.get("/metrics")?;
        if code != 200 {
            return None;
        }
        let sum = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(name) && l.contains(label_filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Some(sum)
    }

    /// Like [`Operator::metric`], 0 when `/metrics` does not answer.
    pub fn counter(&self, name: &str, label_filter: &str) -> f64 {
        self.metric(name, label_filter).unwrap_or(0.0)
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        matches!(self.get("/readyz"), Some((200, _)))
    }

    /// Waits until `/readyz` answers 200; panics with the log tail otherwise.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.is_ready() {
            if Instant::now() > deadline {
                panic!(
                    "the operator is not ready after {timeout:?}; log:\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The resourceVersions at which `controller` finished reconciling the
    /// object `namespace/name` (`namespace` empty for a cluster-scoped one),
    /// oldest first: the operator logs every reconcile that succeeded, at
    /// debug level, which the tests turn on.
    pub fn reconciled(&self, controller: &str, namespace: &str, name: &str) -> Vec<u64> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(" reconciled"))
            .filter(|l| {
                log_field(l, "controller") == Some(controller)
                    && log_field(l, "namespace").unwrap_or_default() == namespace
                    && log_field(l, "name") == Some(name)
            })
            .filter_map(|l| log_field(l, "resource_version")?.parse().ok())
            .collect()
    }

    /// The reasons of the reconciles of `namespace/name` by `controller`
    /// that failed, oldest first (the operator logs every failure).
    pub fn failures(&self, controller: &str, namespace: &str, name: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(" reconcile failed"))
            .filter(|l| {
                log_field(l, "controller") == Some(controller)
                    && log_field(l, "namespace").unwrap_or_default() == namespace
                    && log_field(l, "name") == Some(name)
            })
            .map(|l| log_field(l, "reason").unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until `controller` has reconciled `namespace/name` as of
    /// `resource_version` or later: anything that reconcile wrote has been
    /// written.
    pub async fn wait_reconciled(
        &self,
        controller: &str,
        namespace: &str,
        name: &str,
        resource_version: &str,
        timeout: Duration,
    ) {
        let version: u64 = resource_version.parse().expect("a numeric resourceVersion");
        let what =
            format!("the {controller} controller to reconcile {namespace}/{name} at {version}");
        super::wait_for(&what, timeout, || async {
            let done = self.reconciled(controller, namespace, name);
            done.iter().any(|&v| v >= version).then_some(())
        })
        .await;
    }

    /// Waits until `controller` has finished more than `since` reconciles of
    /// `namespace/name` (`since`: the length of [`Operator::reconciled`]
    /// taken before a change that does not touch the object itself, such as
    /// a change to its Organization).
    pub async fn wait_reconciled_since(
        &self,
        controller: &str,
        namespace: &str,
        name: &str,
        since: usize,
        timeout: Duration,
    ) {
        let what = format!("the {controller} controller to reconcile {namespace}/{name} again");
        super::wait_for(&what, timeout, || async {
            (self.reconciled(controller, namespace, name).len() > since).then_some(())
        })
        .await;
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kills the process with SIGKILL (no cleanup, no lease release).
    pub fn kill9(&self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.pid().to_string())
            .status();
    }

    /// Stops the process with SIGTERM (graceful: releases the lease).
    pub fn stop(&self) {
        // A process that is gone already (killed, or it killed itself) is
        // stopped: no message about it.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status();
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        Command::new("kill")
            .arg("-0")
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Operator {
    /// An operator a test started stops with the test, even when it panics.
    fn drop(&mut self) {
        self.stop();
        let _ = self.supervisor.wait();
    }
}

/// The value of `key` in a log line of the plain format (`key=value` or
/// `key="value"`).
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split_whitespace().next(),
    }
}
