//! The Helm chart, driven by the real `helm` binary (built from Go modules and
//! cached like the control plane, by tests/tools/build.sh) on a real control
//! plane: `helm lint --strict` with every `ci/*-values.yaml`, the rendered
//! chart judged by the API server (`kubectl apply --dry-run=server`), and an
//! install that a platform engineer would do: `helm install`, the operator
//! running exactly as the chart's Deployment runs it (there is no kubelet
//! here, so the test runs the binary with the Deployment's arguments,
//! environment, user and read-only filesystem, and a token of the chart's
//! ServiceAccount), the examples converging with only the chart's RBAC,
//! `helm upgrade` with a second assignable role, and `helm uninstall`
//! leaving every Workspace and its namespace.
//!
//! This binary installs the project itself, so its plane starts bare
//! ([`support::bare_plane`]): nothing of `deploy/` is there to clash with
//! the release's cluster-scoped objects.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::Api;
use serde_json::json;
use support::kubectl::Kubectl;
use support::objects;
use support::operator::{Operator, free_port, service_account_kubeconfig};
use workspace_operator::api::{Workspace, WorkspaceMember};

const CHART: &str = "charts/workspace-operator";
/// The release and its namespace: not the plain manifests' names, so the
/// chart's names are shown to follow the release.
const RELEASE: &str = "wsop";
const NAMESPACE: &str = "platform-workspaces";
/// Custom roles a cluster admin makes assignable: the first at install, the
/// second with `helm upgrade`.
const AUDITOR: &str = "example:workspace-auditor";
const DEPLOYER: &str = "example:workspace-deployer";

/// The `helm` binary, built once per version into the cache.
fn helm_binary() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new("bash")
            .arg(support::repo_root().join("tests/tools/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/tools/build.sh");
        assert!(out.status.success(), "building helm failed");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("helm")
    })
}

/// What one `helm` run printed.
struct Run {
    line: String,
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn success(self) -> String {
        assert!(
            self.ok,
            "`{}` failed:\n{}{}",
            self.line, self.stdout, self.stderr
        );
        self.stdout
    }
}

/// Runs `helm ARGS` in the repository, with its own configuration and cache
/// directories, against the plane when `kubeconfig` is given.
fn helm(args: &[&str], kubeconfig: Option<&Path>) -> Run {
    let home = std::env::temp_dir().join(format!("workspace-operator-helm-{}", std::process::id()));
    let mut cmd = Command::new(helm_binary());
    cmd.current_dir(support::repo_root())
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    if let Some(kubeconfig) = kubeconfig {
        cmd.arg("--kubeconfig").arg(kubeconfig);
    }
    let out = cmd.output().expect("run helm");
    Run {
        line: format!("helm {}", args.join(" ")),
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The chart's `ci/*-values.yaml` files and the GitOps example's values,
/// relative to the repository.
fn ci_values_files() -> Vec<String> {
    let dir = support::repo_root().join(CHART).join("ci");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("the chart's ci/ directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with("-values.yaml"))
        .map(|name| format!("{CHART}/ci/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {CHART}/ci/*-values.yaml");
    // The values a platform team commits for GitOps (docs/install.md).
    files.push("examples/gitops/values.yaml".to_string());
    files
}

#[test]
fn the_chart_passes_helm_lint_strict_with_every_ci_values_file() {
    for values in ci_values_files() {
        helm(&["lint", "--strict", CHART, "-f", &values], None).success();
    }
    // values.schema.json is enforced: a misspelt key and a wrong type fail.
    for bad in [
        "replicas=2",
        "replicaCount=zero",
        "operator.podSecurity=open",
    ] {
        let run = helm(&["lint", "--strict", CHART, "--set", bad], None);
        assert!(!run.ok, "`{}` passed:\n{}", run.line, run.stdout);
    }
    // The admission policies need Kubernetes 1.30: older clusters are refused.
    let run = helm(&["template", CHART, "--kube-version", "1.29.9"], None);
    assert!(
        !run.ok && run.stderr.contains("kubeVersion"),
        "`{}`: {}",
        run.line,
        run.stderr
    );
    helm(&["template", CHART, "--kube-version", "1.30.0"], None).success();
    // Two replicas without leader election would both reconcile.
    let run = helm(
        &["template", CHART, "--set", "leaderElection.enabled=false"],
        None,
    );
    assert!(
        !run.ok && run.stderr.contains("needs leaderElection.enabled"),
        "`{}`: {}",
        run.line,
        run.stderr
    );
}

#[test]
fn the_rendered_chart_is_accepted_by_the_api_server() {
    let plane = support::bare_plane();
    let admin = Kubectl::as_user("system:admin", &["system:masters"]);
    for values in ci_values_files() {
        // The plane has no Prometheus Operator, so no ServiceMonitor kind.
        let rendered = helm(
            &[
                "template",
                RELEASE,
                CHART,
                "--namespace",
                "default",
                "-f",
                &values,
                "--set",
                "metrics.serviceMonitor.enabled=false",
                // A dry run creates no namespace, and the chart puts a Role
                // and RoleBinding in the directory's: use one that exists.
                "--set",
                "directory.namespace=default",
            ],
            Some(plane.kubeconfig()),
        )
        .success();
        // Server-side apply (a create or an update, whichever the cluster
        // needs), so the install test on the same plane cannot race it.
        let run = admin.run_with_input(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-f",
                "-",
            ],
            &rendered,
        );
        assert!(
            run.ok,
            "the API server refused the chart rendered with {values}:\n{}",
            run.stderr
        );
        for kind in [
            "customresourcedefinition",
            "validatingadmissionpolicy",
            "deployment",
        ] {
            assert!(
                run.stdout.contains(kind),
                "{values}: no {kind} in the dry run:\n{}",
                run.stdout
            );
        }
    }
}

/// Creates the custom ClusterRoles a cluster admin would label assignable.
async fn create_custom_roles(client: &Client) {
    for name in [AUDITOR, DEPLOYER] {
        objects::apply(
            client,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name, "labels": {"workspaces.dev/assignable": "true"}},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            }),
        )
        .await;
    }
}

/// Starts the operator binary the way the release's Deployment runs it: its
/// container's arguments and environment (the downward API resolved as the
/// kubelet would), a token of its ServiceAccount, user 65532 (when the test
/// runs as root), a working directory it cannot write, and no PATH. Only the
/// address of the metrics port changes, to a free port on loopback.
async fn run_as_deployment(client: &Client, pod: &str) -> Operator {
    let deployment = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .get(RELEASE)
        .await
        .expect("the release's Deployment");
    let pod_spec = deployment.spec.template.spec.expect("a pod template");
    let container = &pod_spec.containers[0];
    let port = free_port();
    let args: Vec<String> = container
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|arg| match arg.strip_prefix("--metrics-addr=") {
            Some(_) => format!("--metrics-addr=127.0.0.1:{port}"),
            None => arg,
        })
        .collect();
    assert!(
        args.iter()
            .any(|a| a.starts_with("--metrics-addr=127.0.0.1:")),
        "the Deployment sets --metrics-addr: {args:?}"
    );
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container.env.clone().unwrap_or_default() {
        let value = match (var.value, var.value_from) {
            (Some(value), _) => value,
            (None, Some(from)) => match from.field_ref.map(|f| f.field_path).as_deref() {
                Some("metadata.namespace") => NAMESPACE.to_string(),
                Some("metadata.name") => pod.to_string(),
                other => panic!("the test cannot resolve {} from {other:?}", var.name),
            },
            (None, None) => String::new(),
        };
        env.push((var.name, value));
    }
    let account = pod_spec
        .service_account_name
        .expect("the Deployment names its ServiceAccount");
    let kubeconfig = service_account_kubeconfig(support::plane(), NAMESPACE, &account);
    Operator::launch_confined(&kubeconfig, &args, &env, port)
}

async fn wait_member_ready(client: &Client, ns: &str, name: &str, status: &str, reason: &str) {
    let api: Api<WorkspaceMember> = Api::namespaced(client.clone(), ns);
    let what = format!("member {ns}/{name} to be Ready={status} ({reason})");
    support::wait_for(&what, Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let member = api.get(name).await.ok()?;
            let conditions = member.status?.conditions;
            let ready = objects::ready_of(&conditions)?;
            (ready.status == status && ready.reason == reason).then_some(())
        }
    })
    .await;
}

async fn wait_established(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    support::wait_for(
        "the chart's CRDs to be established",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let list = api.list(&Default::default()).await.ok()?;
                let ours: Vec<_> = list
                    .items
                    .iter()
                    .filter(|c| c.spec.group == "workspaces.dev")
                    .collect();
                let established = ours.len() == 4
                    && ours.iter().all(|c| {
                        c.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c.type_ == "Established" && c.status == "True")
                            })
                    });
                established.then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn install_run_upgrade_and_uninstall_with_helm() {
    let plane = support::bare_plane();
    let _dump = support::dump_on_failure(&[NAMESPACE, "acme-prod", "acme-agents"]);
    let client = plane.admin().await;
    let kubeconfig = Some(plane.kubeconfig());
    let admin = Kubectl::as_user("system:admin", &["system:masters"]);
    create_custom_roles(&client).await;

    // helm install, as a platform engineer types it.
    helm(
        &[
            "install",
            RELEASE,
            CHART,
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--set",
            &format!("assignableClusterRoles={{{AUDITOR}}}"),
        ],
        kubeconfig,
    )
    .success();
    wait_established(&client).await;

    // The install names the release's identity and namespace where the
    // policies and the operator's start-up check look.
    let policy = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .get("workspace-operator-policy")
        .await
        .expect("the policies' ConfigMap in the release namespace");
    let data = policy.data.unwrap_or_default();
    assert_eq!(
        data.get("operator").map(String::as_str),
        Some(format!("system:serviceaccount:{NAMESPACE}:{RELEASE}").as_str())
    );
    assert!(
        data["reservedNamespaces"]
            .split(',')
            .any(|n| n == NAMESPACE),
        "the release namespace is reserved: {data:?}"
    );
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("workspaces.workspaces.dev")
        .await
        .expect("the Workspace CRD");
    assert_eq!(
        crd.metadata
            .annotations
            .unwrap_or_default()
            .get("helm.sh/resource-policy")
            .map(String::as_str),
        Some("keep")
    );
    assert_restricted_deployment(&client).await;

    // The operator, as the Deployment runs it.
    let operator = run_as_deployment(&client, &format!("{RELEASE}-0")).await;
    operator.wait_ready(Duration::from_secs(60));
    assert_eq!(operator.get("/livez").map(|(code, _)| code), Some(200));
    assert_confined(&operator);

    // The examples converge with only the chart's RBAC.
    let examples = support::repo_root().join("examples");
    for file in [
        "organization.yaml",
        "organization-workspace.yaml",
        "personal-workspace.yaml",
    ] {
        admin
            .run(&["apply", "-f", &examples.join(file).to_string_lossy()])
            .success();
    }
    for ws in ["acme-prod", "acme-agents", "alice-sandbox"] {
        objects::wait_ready(&client, ws, "True", None, Duration::from_secs(90)).await;
    }
    admin
        .run(&[
            "apply",
            "-f",
            &examples.join("members.yaml").to_string_lossy(),
        ])
        .success();
    wait_member_ready(&client, "acme-prod", "bob", "True", "Provisioned").await;

    // The chart's assignable role is bindable; the second is not yet.
    for (name, subject, role) in [
        ("auditor", "bob@example.com", AUDITOR),
        ("deployer", "carol@example.com", DEPLOYER),
    ] {
        objects::apply(
            &client,
            objects::member(
                "acme-agents",
                name,
                objects::user(subject),
                objects::cluster_role(role),
            ),
        )
        .await;
    }
    wait_member_ready(&client, "acme-agents", "auditor", "True", "Provisioned").await;
    wait_member_ready(
        &client,
        "acme-agents",
        "deployer",
        "False",
        "RoleNotAssignable",
    )
    .await;

    // helm upgrade: both roles, and a label on everything (the CRDs too).
    helm(
        &[
            "upgrade",
            RELEASE,
            CHART,
            "--namespace",
            NAMESPACE,
            "--reuse-values",
            "--set",
            &format!("assignableClusterRoles={{{AUDITOR},{DEPLOYER}}}"),
            "--set",
            "commonLabels.example\\.com/team=platform",
        ],
        kubeconfig,
    )
    .success();
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("workspaces.workspaces.dev")
        .await
        .expect("the Workspace CRD");
    assert_eq!(
        crd.metadata
            .labels
            .unwrap_or_default()
            .get("example.com/team")
            .map(String::as_str),
        Some("platform"),
        "helm upgrade updates the CRDs"
    );
    // A rollout replaces the pods: the new operator runs with the new
    // arguments and the new grant.
    drop(operator);
    let operator = run_as_deployment(&client, &format!("{RELEASE}-1")).await;
    operator.wait_ready(Duration::from_secs(60));
    wait_member_ready(&client, "acme-agents", "deployer", "True", "Provisioned").await;

    // helm uninstall: the operator goes with its pods; the Workspaces, their
    // namespaces and the CRDs stay.
    drop(operator);
    helm(
        &["uninstall", RELEASE, "--namespace", NAMESPACE],
        kubeconfig,
    )
    .success();
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    objects::wait_gone(&roles, "workspaces:owner", Duration::from_secs(30)).await;
    assert!(
        Api::<CustomResourceDefinition>::all(client.clone())
            .get_opt("workspaces.workspaces.dev")
            .await
            .expect("read the CRD")
            .is_some(),
        "the CRDs stay (crds.keep)"
    );
    let workspaces: Api<Workspace> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ws in ["acme-prod", "acme-agents", "alice-sandbox"] {
        let workspace = workspaces.get_opt(ws).await.expect("read the Workspace");
        assert!(workspace.is_some(), "Workspace {ws} stays");
        let namespace = namespaces
            .get_opt(ws)
            .await
            .expect("read the namespace")
            .unwrap_or_else(|| panic!("namespace {ws} stays"));
        assert!(
            namespace.metadata.deletion_timestamp.is_none(),
            "namespace {ws} is not being deleted"
        );
    }
}

/// The running operator is the binary itself (no shell in between), with no
/// PATH, and, when the tests run as root, as the chart's user 65532 in a
/// working directory it cannot write.
fn assert_confined(operator: &Operator) {
    let proc = PathBuf::from(format!("/proc/{}", operator.pid()));
    let exe = std::fs::read_link(proc.join("exe")).expect("the operator's executable");
    assert!(
        exe.ends_with("workspace-operator"),
        "the process is {}",
        exe.display()
    );
    let environ = std::fs::read(proc.join("environ")).expect("the operator's environment");
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter_map(|kv| {
            String::from_utf8_lossy(kv)
                .split_once('=')
                .map(|(k, _)| k.to_string())
        })
        .collect();
    assert!(
        !names.iter().any(|n| n == "PATH" || n == "HOME"),
        "{names:?}"
    );
    let uid = |status: &Path| -> String {
        std::fs::read_to_string(status)
            .expect("a process status")
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .expect("the effective uid")
            .to_string()
    };
    if uid(Path::new("/proc/self/status")) == "0" {
        assert_eq!(uid(&proc.join("status")), "65532", "the chart's user");
    }
    let cwd = std::fs::read_link(proc.join("cwd")).expect("the operator's working directory");
    assert!(
        std::fs::metadata(&cwd).is_ok_and(|m| m.permissions().readonly()),
        "{} is read-only",
        cwd.display()
    );
}

/// The Deployment is what the restricted Pod Security Standard admits, with
/// the probes, replicas and leader election of the defaults.
async fn assert_restricted_deployment(client: &Client) {
    let deployment = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .get(RELEASE)
        .await
        .expect("the release's Deployment");
    let value = serde_json::to_value(&deployment).expect("json");
    let pod = &value["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(value["spec"]["replicas"], 2);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        container["args"]
            .as_array()
            .expect("args")
            .contains(&json!("--leader-election=true")),
        "{container}"
    );
    // The release namespace admits it when it enforces the restricted
    // level: a server-side dry run of a pod with the template's spec.
    let admin = Kubectl::as_user("system:admin", &["system:masters"]);
    admin
        .run(&[
            "label",
            "namespace",
            NAMESPACE,
            "pod-security.kubernetes.io/enforce=restricted",
        ])
        .success();
    let run = Kubectl::as_user("system:admin", &["system:masters"]).run_with_input(
        &["apply", "--dry-run=server", "-f", "-"],
        &serde_json::to_string(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "operator", "namespace": NAMESPACE},
            "spec": pod,
        }))
        .expect("json"),
    );
    assert!(
        run.ok,
        "the restricted Pod Security level refuses the operator's pod:\n{}",
        run.stderr
    );
}
