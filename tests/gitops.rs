//! What GitOps tools see: the status of live workspaces.dev objects judged
//! by Flux's health library (kstatus, `sigs.k8s.io/cli-utils`) and by the
//! project's Argo CD health checks (`examples/gitops/argocd-cm-health.yaml`,
//! run by gopher-lua, the Lua engine Argo CD embeds), through the small Go
//! program in tests/tools/health. For every state the two must agree:
//! Current and Healthy when Ready (a Workspace, a member, an Organization, a
//! completed transfer), InProgress and Progressing while work is under way or
//! the operator has not seen the latest spec, Failed and Degraded when a
//! person must act (a handle or namespace conflict, a member outside the
//! organization, a refused transfer).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use support::kubectl::Kubectl;
use support::objects;
use support::operator::Operator;

/// The health judge, built once into the cache.
fn health_binary() -> &'static Path {
    static HEALTH: OnceLock<PathBuf> = OnceLock::new();
    HEALTH.get_or_init(|| {
        let out = Command::new("bash")
            .arg(support::repo_root().join("tests/tools/build.sh"))
            .arg("health")
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/tools/build.sh health");
        assert!(out.status.success(), "building the health judge failed");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("health")
    })
}

/// One object, as `kubectl get` names it.
#[derive(Clone, Copy)]
struct Object<'a> {
    resource: &'a str,
    namespace: Option<&'a str>,
    name: &'a str,
}

impl<'a> Object<'a> {
    fn cluster(resource: &'a str, name: &'a str) -> Self {
        Object {
            resource,
            namespace: None,
            name,
        }
    }

    fn workspace(name: &'a str) -> Self {
        Object::cluster("workspaces.workspaces.dev", name)
    }

    fn member(namespace: &'a str, name: &'a str) -> Self {
        Object {
            resource: "workspacemembers.workspaces.dev",
            namespace: Some(namespace),
            name,
        }
    }

    fn transfer(name: &'a str) -> Self {
        Object::cluster("workspacetransfers.workspaces.dev", name)
    }

    fn organization(name: &'a str) -> Self {
        Object::cluster("organizations.workspaces.dev", name)
    }
}

/// How Flux and Argo CD judge an object now: (kstatus, Argo CD health,
/// Argo CD message, whether the operator has written its status).
fn judge(object: Object<'_>) -> Option<(String, String, String, bool)> {
    let mut args = vec!["get", object.resource, object.name, "-o", "json"];
    if let Some(ns) = object.namespace {
        args.extend(["-n", ns]);
    }
    let run = Kubectl::as_user("system:admin", &["system:masters"]).run(&args);
    if !run.ok {
        return None;
    }
    let checks = support::repo_root().join("examples/gitops/argocd-cm-health.yaml");
    let mut child = Command::new(health_binary())
        .arg(checks)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the health judge");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(run.stdout.as_bytes())
        .expect("write the object");
    let out = child.wait_with_output().expect("the health judge finished");
    assert!(
        out.status.success(),
        "the health judge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let observed = serde_json::from_str::<serde_json::Value>(&run.stdout).expect("kubectl's JSON")
        ["status"]["observedGeneration"]
        .is_i64();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let fields: Vec<&str> = line.splitn(4, '\t').collect();
    assert!(fields.len() >= 3, "unexpected output {line:?}");
    Some((
        fields[1].to_string(),
        fields[2].to_string(),
        fields.get(3).unwrap_or(&"").to_string(),
        observed,
    ))
}

/// Waits until kstatus says `kstatus` about `object` with a status the
/// operator wrote, then checks that the Argo CD health check agrees. (Before
/// the operator's first status write the two differ on purpose: kstatus
/// calls an object without status Current, the Argo CD check Progressing.)
async fn wait_health(object: Object<'_>, kstatus: &str) {
    let argo = match kstatus {
        "Current" => "Healthy",
        "InProgress" => "Progressing",
        "Failed" => "Degraded",
        other => panic!("no Argo CD counterpart for {other}"),
    };
    let what = format!("{} {} to be {kstatus}", object.resource, object.name);
    let (_, health, message, _) = support::wait_for(&what, Duration::from_secs(60), || async {
        judge(object).filter(|(status, _, _, observed)| status == kstatus && *observed)
    })
    .await;
    assert_eq!(
        health, argo,
        "kstatus says {kstatus} about {} {}, the Argo CD check {health} ({message})",
        object.resource, object.name
    );
}

/// The tests of this binary each run their own operator, and one stops it to
/// show a spec it has not seen: they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn flux_and_argo_cd_agree_on_the_health_of_live_objects() {
    let _one = ONE_AT_A_TIME.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let org = support::unique("gitops-org");
    let prod = support::unique("gitops-prod");
    let rival = support::unique("gitops-rival");
    let taken = support::unique("gitops-taken");
    let squatter = support::unique("gitops-squat");
    let moving = support::unique("gitops-moving");
    let fresh = support::unique("gitops-fresh");
    let _dump = support::dump_on_failure(&[&prod, &moving]);
    let operator = Operator::start(&[]);
    operator.wait_ready(Duration::from_secs(60));

    // Ready objects are Current and Healthy.
    objects::apply(
        &admin,
        objects::organization(
            &org,
            &["alice@example.com"],
            json!({"spec": {"members": [{"kind": "User", "name": "bob@example.com"}]}}),
        ),
    )
    .await;
    for name in [&prod, &moving] {
        objects::apply(
            &admin,
            objects::workspace(
                name,
                "Organization",
                &org,
                json!({"spec": {"handle": name}}),
            ),
        )
        .await;
    }
    wait_health(Object::organization(&org), "Current").await;
    wait_health(Object::workspace(&prod), "Current").await;
    objects::apply(
        &admin,
        objects::member(&prod, "bob", objects::user("bob@example.com"), "Developer"),
    )
    .await;
    wait_health(Object::member(&prod, "bob"), "Current").await;

    // What a person must resolve is Failed and Degraded: a handle taken by an
    // older Workspace of the same owner, a namespace the Workspace did not
    // create, a member outside the organization.
    objects::apply(
        &admin,
        objects::workspace(
            &rival,
            "Organization",
            &org,
            json!({"spec": {"handle": prod}}),
        ),
    )
    .await;
    wait_health(Object::workspace(&rival), "Failed").await;
    Kubectl::as_user("system:admin", &["system:masters"])
        .run(&["create", "namespace", &taken])
        .success();
    objects::apply(
        &admin,
        objects::workspace(
            &squatter,
            "Organization",
            &org,
            json!({"spec": {"namespace": taken}}),
        ),
    )
    .await;
    wait_health(Object::workspace(&squatter), "Failed").await;
    objects::apply(
        &admin,
        objects::member(
            &prod,
            "mallory",
            objects::user("mallory@example.com"),
            "Viewer",
        ),
    )
    .await;
    wait_health(Object::member(&prod, "mallory"), "Failed").await;

    // Work under way is InProgress and Progressing: the namespace of a
    // Workspace deleted behind the operator's back, held by a finalizer,
    // until it is gone and provisioned again.
    wait_health(Object::workspace(&moving), "Current").await;
    let kubectl = Kubectl::as_user("system:admin", &["system:masters"]);
    kubectl
        .run_with_input(
            &["apply", "-f", "-"],
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "held", "namespace": moving,
                                 "finalizers": ["example.com/hold"]}})
            .to_string(),
        )
        .success();
    kubectl
        .run(&["delete", "namespace", &moving, "--wait=false"])
        .success();
    wait_health(Object::workspace(&moving), "InProgress").await;
    kubectl
        .run(&[
            "patch",
            "configmap",
            "held",
            "-n",
            &moving,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ])
        .success();
    wait_health(Object::workspace(&moving), "Current").await;

    // Transfers: one both sides approved completes (Current, Healthy); one
    // the target refuses is Rejected (Failed, Degraded). A platform admin
    // may answer for either side; an answer is signed by whoever writes it.
    let completed = support::unique("gitops-done");
    let refused = support::unique("gitops-refused");
    let admin_user = "platform-admin@example.com";
    let platform = Kubectl::as_user(admin_user, &["system:masters"]);
    for (name, from_ws, target) in [
        (&completed, &moving, json!({"approvedBy": admin_user})),
        (&refused, &prod, json!({"rejectedBy": admin_user})),
    ] {
        platform
            .create(
                &json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "WorkspaceTransfer",
                        "metadata": {"name": name},
                        "spec": {"workspace": from_ws,
                                 "from": {"kind": "Organization", "name": org},
                                 "to": {"kind": "User", "name": "zed@example.com"},
                                 "approvals": {"source": {"approvedBy": admin_user}, "target": target}}})
                .to_string(),
            )
            .success();
    }
    wait_health(Object::transfer(&completed), "Current").await;
    wait_health(Object::transfer(&refused), "Failed").await;

    // A spec change the operator has not seen yet (it is stopped) is
    // InProgress and Progressing, until it has.
    operator.stop();
    support::wait_for("the operator to stop", Duration::from_secs(30), || async {
        (!operator.is_running()).then_some(())
    })
    .await;
    objects::apply(
        &admin,
        objects::workspace(
            &prod,
            "Organization",
            &org,
            json!({"spec": {"handle": prod, "description": "changed while the operator was away"}}),
        ),
    )
    .await;
    wait_health(Object::workspace(&prod), "InProgress").await;
    // A Workspace the operator has not seen at all has no status: kstatus
    // calls that Current, the Argo CD check (deliberately) Progressing.
    objects::apply(
        &admin,
        objects::workspace(
            &fresh,
            "Organization",
            &org,
            json!({"spec": {"handle": fresh}}),
        ),
    )
    .await;
    let (status, health, _, observed) =
        judge(Object::workspace(&fresh)).expect("the new Workspace");
    assert_eq!(
        (status.as_str(), health.as_str(), observed),
        ("Current", "Progressing", false)
    );
    let operator = Operator::start(&[]);
    operator.wait_ready(Duration::from_secs(60));
    wait_health(Object::workspace(&prod), "Current").await;
    wait_health(Object::workspace(&fresh), "Current").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenants_a_platform_team_commits_apply_and_become_healthy() {
    let _one = ONE_AT_A_TIME.lock().await;
    support::plane();
    let _dump = support::dump_on_failure(&["globex-dev", "globex-prod"]);
    let operator = Operator::start(&[]);
    operator.wait_ready(Duration::from_secs(60));
    let gitops = support::repo_root().join("examples/gitops");
    let kubectl = Kubectl::as_user("system:admin", &["system:masters"]);

    // What Flux's tenants Kustomization (or Argo CD's first sync wave) does.
    kubectl
        .run(&["apply", "-k", &gitops.join("tenants").to_string_lossy()])
        .success();
    wait_health(Object::organization("globex"), "Current").await;
    for ws in ["globex-dev", "globex-prod"] {
        wait_health(Object::workspace(ws), "Current").await;
    }
    // Then the members, once the Workspaces are healthy (dependsOn, or
    // the next sync wave).
    kubectl
        .run(&["apply", "-k", &gitops.join("members").to_string_lossy()])
        .success();
    wait_health(Object::member("globex-prod", "frank"), "Current").await;
    wait_health(Object::member("globex-dev", "engineering"), "Current").await;

    // Every path the Flux and Argo CD objects name exists in the repository.
    for file in [
        "flux/workspace-operator.yaml",
        "flux/tenants.yaml",
        "argocd/workspace-operator.yaml",
        "argocd/tenants.yaml",
    ] {
        let text = std::fs::read_to_string(gitops.join(file)).expect("read the GitOps object");
        for line in text.lines() {
            let line = line.trim().trim_start_matches("- ");
            let Some(path) = line
                .strip_prefix("path: ")
                .or_else(|| line.strip_prefix("chart: "))
                .or_else(|| line.ends_with("values.yaml").then_some(line))
            else {
                continue;
            };
            let path = path.trim_start_matches("./");
            let resolved = if path.starts_with("../") {
                support::repo_root()
                    .join("charts/workspace-operator")
                    .join(path)
            } else {
                support::repo_root().join(path)
            };
            assert!(
                resolved.exists(),
                "{file} names {path}, which is not in the repository"
            );
        }
    }
}
