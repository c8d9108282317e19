//! The integration-test harness: one real control plane per test binary,
//! clients that act as any user, and waiting on conditions with a timeout.
//!
//! By default the first test that asks for [`plane()`] starts etcd,
//! kube-apiserver and kube-controller-manager through
//! `tests/controlplane/up.sh` (building them once into the cache), and a
//! watchdog stops them when the test binary exits, however it exits. Set
//! `WORKSPACE_OPERATOR_TEST_KUBECONFIG` to run the same tests against an
//! existing cluster instead.
#![allow(dead_code)]

pub mod faults;
pub mod fleet;
pub mod fuzz;
pub mod invariants;
pub mod kubectl;
pub mod load;
pub mod objects;
pub mod operator;
pub mod plugin;

use std::future::Future;

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, Scope};
use kube::{Client, Config};

/// Environment variable naming a kubeconfig of an existing cluster to test against.
pub const EXISTING_CLUSTER_ENV: &str = "WORKSPACE_OPERATOR_TEST_KUBECONFIG";

/// Field manager the harness uses for everything it applies as the admin.
pub const HARNESS_MANAGER: &str = "workspace-operator-tests";

/// A running control plane (or an existing cluster) the tests talk to.
pub struct ControlPlane {
    kubeconfig: PathBuf,
    audit_log: Option<PathBuf>,
    dir: Option<PathBuf>,
    /// Whether the harness installed `crds/` and `deploy/` into it.
    installed: bool,
}

static PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The control plane shared by every test in this binary, started on first
/// use with what the project ships installed (`crds/` and `deploy/`). When
/// it cannot start, every test fails with the same message. In a binary
/// whose tests asked for [`bare_plane`] first, this is that bare plane.
pub fn plane() -> &'static ControlPlane {
    start_plane(true)
}

/// The control plane of a test binary that installs the project itself (the
/// Helm chart's tests): started with nothing of the project installed, so an
/// install under another release name or namespace does not meet the
/// cluster-scoped objects of `deploy/`. Every test of such a binary calls
/// this before anything else touches the plane. Needs the local plane: an
/// existing cluster may hold an install already.
pub fn bare_plane() -> &'static ControlPlane {
    assert!(
        std::env::var(EXISTING_CLUSTER_ENV).is_err(),
        "this test installs the project itself and needs the local control plane; unset {EXISTING_CLUSTER_ENV}"
    );
    let plane = start_plane(false);
    assert!(
        !plane.installed,
        "the control plane of this test binary was started with deploy/ installed; call bare_plane() first"
    );
    plane
}

fn start_plane(install_project: bool) -> &'static ControlPlane {
    let plane = PLANE.get_or_init(|| {
        std::panic::catch_unwind(|| {
            let mut plane = ControlPlane::start();
            if install_project {
                run_blocking(install(&plane));
                plane.installed = true;
            }
            plane
        })
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string())
        })
    });
    match plane {
        Ok(plane) => plane,
        Err(message) => panic!("the control plane is not available: {message}"),
    }
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl ControlPlane {
    fn start() -> Self {
        if let Ok(path) = std::env::var(EXISTING_CLUSTER_ENV) {
            return ControlPlane {
                kubeconfig: PathBuf::from(path),
                audit_log: None,
                dir: None,
                installed: false,
            };
        }
        let dir = std::env::temp_dir().join(format!(
            "workspace-operator-plane-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let script = repo_root().join("tests/controlplane/up.sh");
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(&script)
            .arg("--dir")
            .arg(&dir)
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .output()
            .expect("run tests/controlplane/up.sh");
        if !out.status.success() {
            panic!(
                "the control plane did not start ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!(
            "control plane up in {:.1}s at {}",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
        ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            audit_log: Some(dir.join("audit.log")),
            dir: Some(dir),
            installed: false,
        }
    }

    /// Path of the cluster-admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's audit log (every request, by user and user agent);
    /// `None` against an existing cluster.
    pub fn audit_log(&self) -> Option<&Path> {
        self.audit_log.as_deref()
    }

    /// Directory holding the local plane's data and logs; `None` against an existing cluster.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Client configuration for the cluster admin.
    pub async fn admin_config(&self) -> Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is usable")
    }

    /// A client acting as the cluster admin.
    pub async fn admin(&self) -> Client {
        Client::try_from(self.admin_config().await).expect("admin client")
    }

    /// A client acting as `user` in `groups` (impersonated by the admin), so
    /// that RBAC and admission judge the request as that user's own.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Client {
        let mut config = self.admin_config().await;
        config.auth_info.impersonate = Some(user.to_string());
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".to_string());
        }
        config.auth_info.impersonate_groups = Some(groups);
        Client::try_from(config).expect("impersonating client")
    }

    /// A client acting as the ServiceAccount `namespace/name`.
    pub async fn client_as_service_account(&self, namespace: &str, name: &str) -> Client {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let group = format!("system:serviceaccounts:{namespace}");
        self.client_as(&user, &["system:serviceaccounts", &group])
            .await
    }
}

/// Runs a future to completion on a fresh runtime in its own thread, so it can
/// be called from synchronous code and from inside a test's runtime alike.
pub fn run_blocking<F, T>(fut: F) -> T
where
    F: Future<Output = T> + Send,
    T: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(fut)
        })
        .join()
        .expect("harness thread panicked")
    })
}

/// Installs what the project ships (the CRDs, then every manifest under
/// `deploy/`: the built-in roles, the operator's RBAC, the admission
/// policies), as the admin, and waits until the CRDs are served.
async fn install(plane: &ControlPlane) {
    let client = plane.admin().await;
    let crds = yaml_files(&repo_root().join("crds"));
    for file in crds
        .iter()
        .chain(yaml_files(&repo_root().join("deploy")).iter())
    {
        let text = std::fs::read_to_string(file).expect("read manifest");
        apply_yaml(&client, &text).await;
    }
    wait_for_aggregated_roles(&client).await;
    for file in &crds {
        let text = std::fs::read_to_string(file).expect("read CRD file");
        let crd: serde_yaml::Value = serde_yaml::from_str(&text).expect("CRD yaml");
        let name = crd["metadata"]["name"]
            .as_str()
            .expect("CRD name")
            .to_string();
        let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client.clone());
        wait_for(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}

/// Waits until the controller-manager has filled every aggregated workspace
/// role, down to the end of the chain (Owner holds what Viewer holds).
async fn wait_for_aggregated_roles(client: &Client) {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let api: Api<ClusterRole> = Api::all(client.clone());
    for (role, resource) in [
        ("workspaces:viewer", "pods"),
        ("workspaces:runner", "pods"),
        ("workspaces:developer", "pods"),
        ("workspaces:owner", "pods"),
        ("workspaces:owner", "workspacemembers"),
        ("workspaces:worker", "pods"),
    ] {
        let api = api.clone();
        let what = format!("{role} to aggregate the rules for {resource}");
        wait_for(&what, Duration::from_secs(60), move || {
            let api = api.clone();
            async move {
                let role = match api.get_opt(role).await {
                    Ok(Some(role)) => role,
                    // Not shipped (yet): nothing to wait for.
                    Ok(None) => return Some(()),
                    Err(_) => return None,
                };
                role.rules
                    .unwrap_or_default()
                    .iter()
                    .any(|r| r.resources.iter().flatten().any(|x| x == resource))
                    .then_some(())
            }
        })
        .await;
    }
}

/// The `.yaml` files of a directory, sorted; none when it does not exist.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    files
}

/// A position in the API server's audit log; requests after it can be listed.
#[derive(Clone, Copy, Debug)]
pub struct AuditMark(u64);

/// One request from the audit log.
#[derive(Clone, Debug)]
pub struct AuditedRequest {
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub code: i64,
    /// The client's User-Agent (the operator's names its replica).
    pub agent: String,
    /// When the API server received it (RFC 3339, UTC).
    pub at: String,
}

impl std::fmt::Display for AuditedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.subresource.is_empty() {
            write!(f, "/{}", self.subresource)?;
        }
        write!(f, " {}/{} -> {}", self.namespace, self.name, self.code)
    }
}

impl ControlPlane {
    /// The current end of the audit log.
    pub fn audit_mark(&self) -> AuditMark {
        let log = self
            .audit_log()
            .expect("the audit log exists only on the local control plane");
        AuditMark(std::fs::metadata(log).map(|m| m.len()).unwrap_or(0))
    }

    /// Every completed request `user` made after `mark`. The log is read line
    /// by line, and lines that cannot be `user`'s are skipped before parsing,
    /// so this stays cheap when the log holds millions of requests.
    pub fn requests_since(&self, mark: AuditMark, user: &str) -> Vec<AuditedRequest> {
        use std::io::{BufRead, BufReader, Seek, SeekFrom};
        let log = self
            .audit_log()
            .expect("the audit log exists only on the local control plane");
        let mut file = std::fs::File::open(log).expect("open audit log");
        file.seek(SeekFrom::Start(mark.0)).expect("seek audit log");
        // The API server writes compact JSON; a username that JSON leaves
        // as it is can be looked for as text first.
        let plain = user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":@.-_".contains(c));
        let needle = format!("\"username\":\"{user}\"");
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|line| !plain || line.contains(&needle))
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == user)
            .map(|e| {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                AuditedRequest {
                    verb: s(&e["verb"]),
                    resource: s(&e["objectRef"]["resource"]),
                    subresource: s(&e["objectRef"]["subresource"]),
                    namespace: s(&e["objectRef"]["namespace"]),
                    name: s(&e["objectRef"]["name"]),
                    code: e["responseStatus"]["code"].as_i64().unwrap_or_default(),
                    agent: s(&e["userAgent"]),
                    at: s(&e["requestReceivedTimestamp"]),
                }
            })
            .collect()
    }

    /// The writes (create, update, patch, delete) `user` made after `mark`,
    /// leader-election Lease renewals and reviews (a SelfSubjectReview is a
    /// question, not a stored object) excepted.
    pub fn writes_since(&self, mark: AuditMark, user: &str) -> Vec<AuditedRequest> {
        self.requests_since(mark, user)
            .into_iter()
            .filter(|r| {
                matches!(
                    r.verb.as_str(),
                    "create" | "update" | "patch" | "delete" | "deletecollection"
                )
            })
            .filter(|r| r.resource != "leases" && !r.resource.ends_with("reviews"))
            .collect()
    }
}

/// Server-side applies every document of a multi-document YAML text as the
/// client's identity; panics with the API server's message when one is refused.
pub async fn apply_yaml(client: &Client, text: &str) {
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(text)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("valid YAML document"))
        .filter(|value| !value.is_null())
        .collect();
    for (i, value) in docs.into_iter().enumerate() {
        if let Err(err) = try_apply_value(client, value).await {
            panic!("document {i} was refused: {err}");
        }
    }
}

/// Server-side applies one object given as YAML or JSON value; returns the API error.
pub async fn try_apply_value(
    client: &Client,
    value: serde_yaml::Value,
) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject = serde_yaml::from_value(value).expect("a Kubernetes object");
    let types = obj.types.clone().expect("object has apiVersion and kind");
    let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let name = obj.metadata.name.clone().expect("object has a name");
    let api: Api<DynamicObject> =
        dynamic_api(client, &resource, &caps, obj.metadata.namespace.as_deref());
    api.patch(
        &name,
        &PatchParams::apply(HARNESS_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
}

fn dynamic_api(
    client: &Client,
    resource: &kube::discovery::ApiResource,
    caps: &ApiCapabilities,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match (&caps.scope, namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, resource),
        (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), resource),
        (Scope::Cluster, _) => Api::all_with(client.clone(), resource),
    }
}

/// Creates (POST) one object given as YAML; returns the API error, so a test
/// can assert on an admission message.
pub async fn try_create_yaml(client: &Client, text: &str) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject = serde_yaml::from_str(text).expect("a Kubernetes object");
    let types = obj.types.clone().expect("object has apiVersion and kind");
    let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api = dynamic_api(client, &resource, &caps, obj.metadata.namespace.as_deref());
    api.create(&PostParams::default(), &obj).await
}

/// A name no other test in this run uses: `<prefix>-<pid>-<n>`, a DNS-1123 label.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}-{n}", std::process::id() % 0xffff)
}

/// Polls `check` every 100 ms until it returns `Some`, and returns that value;
/// panics with `what` when `timeout` passes first.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the client's own identity may perform `verb` on `resource`,
/// written the way `kubectl auth can-i` takes it (`pods`, `pods/log`,
/// `deployments.apps`, `workspaces.workspaces.dev`), in `namespace`, as the
/// API server's authorizer answers it.
pub async fn can_i(
    client: &Client,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let (resource, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let (res, group) = resource.split_once('.').unwrap_or((resource, ""));
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_string()),
                resource: Some(res.to_string()),
                subresource: sub,
                verb: Some(verb.to_string()),
                namespace: namespace.map(str::to_string),
                name: name.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview");
    answer.status.map(|s| s.allowed).unwrap_or(false)
}

/// Prints the objects of the given namespaces (and the plane's log tails) when
/// the test that holds it panics: `let _dump = support::dump_on_failure(&[&ns]);`
pub fn dump_on_failure(namespaces: &[&str]) -> FailureDump {
    FailureDump {
        namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
    }
}

pub struct FailureDump {
    namespaces: Vec<String>,
}

impl Drop for FailureDump {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let plane = plane();
        let kubectl = |args: &[&str]| {
            let out = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(plane.kubeconfig())
                .args(args)
                .output();
            match out {
                Ok(o) => eprintln!(
                    "$ kubectl {}\n{}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => eprintln!("(kubectl unavailable: {e})"),
            }
        };
        eprintln!("==== state at failure ====");
        kubectl(&[
            "get",
            "workspaces.workspaces.dev,organizations.workspaces.dev",
            "-o",
            "yaml",
        ]);
        for ns in &self.namespaces {
            kubectl(&[
                "get",
                "all,rolebindings,configmaps,events",
                "-n",
                ns,
                "-o",
                "wide",
            ]);
        }
        if let Some(dir) = plane.dir() {
            for log in [
                "kube-apiserver.log",
                "kube-controller-manager.log",
                "operator.log",
            ] {
                if let Ok(text) = std::fs::read_to_string(dir.join(log)) {
                    let tail: Vec<&str> = text.lines().rev().take(20).collect();
                    eprintln!("==== tail of {log} ====");
                    for line in tail.iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}

/// The first line where two texts differ, for a readable failure.
pub fn first_difference(committed: &str, generated: &str) -> String {
    let mut committed_lines = committed.lines();
    let mut generated_lines = generated.lines();
    let mut line = 1;
    loop {
        match (committed_lines.next(), generated_lines.next()) {
            (Some(a), Some(b)) if a == b => line += 1,
            (None, None) => return "only line endings differ".to_string(),
            (a, b) => {
                return format!(
                    "line {line}: committed {:?}, generated {:?}",
                    a.unwrap_or("<end of file>"),
                    b.unwrap_or("<end of file>")
                );
            }
        }
    }
}
