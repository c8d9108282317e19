//! Tenants staying inside what the platform allows: Pod Security, retained
//! namespaces, broad subjects, ServiceAccounts that would multiply limits,
//! Organization metadata and deletion, the operator's label, and Runners
//! reading Secrets through the work they start. Every attempt is made as
//! the tenant's own identity and followed by the invariant check.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use workspace_operator::api::{Organization, Workspace, WorkspaceMember};

use super::support;
use super::support::objects::{create, group, member, user, wait_gone, workspace};
use super::{
    EVERY_WAY, Invariants, TIMEOUT, apply, change, client_as, own_organization, own_workspace,
    post, ready_message, secured_setup,
};

fn pod(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn workspace_namespaces_enforce_pod_security() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-psa", json!({})).await;
    let _dump = support::dump_on_failure(&[&ws]);
    let ns = Api::<Namespace>::all(admin.clone()).get(&ws).await.unwrap();
    assert_eq!(
        ns.metadata
            .labels
            .unwrap_or_default()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("baseline")
    );
    // An Organization's platform-chosen level reaches its namespaces.
    let strict = own_organization(
        &admin,
        "sec-psa-org",
        &[&owner],
        &[],
        json!({"spec": {"workspaceDefaults": {"podSecurity": "restricted"}}}),
    )
    .await;
    let org_ws = support::unique("sec-psa-org-ws");
    create(
        &client_as(&owner, &[]).await,
        workspace(&org_ws, "Organization", &strict, json!({})),
    )
    .await;
    ready_message(&admin, &org_ws, "True", "Provisioned").await;
    let ns = Api::<Namespace>::all(admin.clone())
        .get(&org_ws)
        .await
        .unwrap();
    assert_eq!(
        ns.metadata
            .labels
            .unwrap_or_default()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    let pods: Api<Pod> = Api::namespaced(inv.attacker.clone(), &ws);
    let container = |extra: serde_json::Value| {
        let mut c = json!({"name": "c", "image": "busybox"});
        support::objects::merge(&mut c, extra);
        c
    };
    for (what, spec) in [
        (
            "a privileged container",
            json!({"containers": [container(json!({"securityContext": {"privileged": true}}))]}),
        ),
        (
            "a hostPath volume",
            json!({"containers": [container(json!({}))],
                   "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
        ),
        (
            "the host's network",
            json!({"hostNetwork": true, "containers": [container(json!({}))]}),
        ),
    ] {
        inv.refused(
            &format!("an Owner runs a pod with {what}"),
            post(&pods, pod(&support::unique("p"), spec)).await,
            403,
            "violates PodSecurity \"baseline:latest\"",
        )
        .await;
    }
    // An ordinary pod is admitted.
    post(
        &pods,
        pod("ordinary", json!({"containers": [container(json!({}))]})),
    )
    .await
    .expect("an ordinary pod is admitted");

    // Its admin cannot lower it.
    let orgs: Api<Organization> = Api::all(inv.attacker.clone());
    inv.refused(
        "an organization admin makes its workspaces privileged",
        orgs.patch(
            &strict,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workspaceDefaults": {"podSecurity": "privileged"}}})),
        )
        .await,
        403,
        "only a platform admin may set or change spec.workspaceDefaults",
    )
    .await;
}

#[tokio::test]
async fn only_platform_admins_retain_a_namespace() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-retain", json!({})).await;
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    let api: Api<Workspace> = Api::all(inv.attacker.clone());
    let admin_api: Api<Workspace> = Api::all(admin.clone());
    inv.refused(
        "a user creates a Workspace with deletionPolicy Retain",
        post(
            &api,
            workspace(
                &support::unique("sec-retain-new"),
                "User",
                &owner,
                json!({"spec": {"deletionPolicy": "Retain"}}),
            ),
        )
        .await,
        403,
        "only a platform admin may set deletionPolicy: Retain",
    )
    .await;
    for way in EVERY_WAY {
        inv.refused(
            &format!("an Owner switches their Workspace to Retain ({way:?})"),
            change(
                &api,
                &admin_api,
                &ws,
                way,
                json!({"spec": {"deletionPolicy": "Retain"}}),
            )
            .await,
            403,
            "only a platform admin may set deletionPolicy: Retain",
        )
        .await;
    }
    // A platform admin may.
    admin_api
        .patch(
            &ws,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"deletionPolicy": "Retain"}})),
        )
        .await
        .expect("a platform admin retains the namespace");
}

#[tokio::test]
async fn broad_subjects_are_for_platform_admins() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-broad", json!({})).await;
    let org = own_organization(&admin, "sec-broad-org", &[&owner], &[], json!({})).await;
    let _dump = support::dump_on_failure(&[&ws]);
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    let members: Api<WorkspaceMember> = Api::namespaced(inv.attacker.clone(), &ws);
    for (i, subject) in [
        group("system:authenticated"),
        group("system:unauthenticated"),
        group("system:serviceaccounts"),
        group("system:masters"),
        user("system:anonymous"),
        user("system:kube-controller-manager"),
    ]
    .into_iter()
    .enumerate()
    {
        inv.refused(
            &format!("an Owner makes {subject} a member"),
            post(
                &members,
                member(&ws, &format!("broad-{i}"), subject.clone(), "Viewer"),
            )
            .await,
            403,
            "names a built-in group or system identity",
        )
        .await;
    }
    let orgs: Api<Organization> = Api::all(inv.attacker.clone());
    for field in ["admins", "members"] {
        inv.refused(
            &format!("an organization admin adds system:authenticated to its {field}"),
            orgs.patch(
                &org,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {field: [
                    {"kind": "User", "name": owner},
                    {"kind": "Group", "name": "system:authenticated"},
                ]}})),
            )
            .await,
            403,
            "Group/system:authenticated names a built-in group",
        )
        .await;
    }
    // A ServiceAccount by name is someone, and a platform admin may grant a
    // broad group deliberately.
    post(
        &members,
        member(
            &ws,
            "agent",
            json!({"kind": "ServiceAccount", "name": "agent", "namespace": ws}),
            "Worker",
        ),
    )
    .await
    .expect("a ServiceAccount member");
    apply(
        &admin,
        member(
            &ws,
            "namespace-agents",
            group(&format!("system:serviceaccounts:{ws}")),
            "Viewer",
        ),
    )
    .await;
}

#[tokio::test]
async fn service_accounts_do_not_own_personal_workspaces() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-sa", json!({})).await;
    let sa = format!("system:serviceaccount:{ws}:minted");
    let groups = [
        "system:serviceaccounts",
        &format!("system:serviceaccounts:{ws}"),
    ];
    let inv = Invariants::capture(&admin, &sa, &groups, &[&ws]).await;
    let api: Api<Workspace> = Api::all(inv.attacker.clone());
    inv.refused(
        "a ServiceAccount creates a personal Workspace",
        post(
            &api,
            workspace(&support::unique("sec-sa-ws"), "User", &sa, json!({})),
        )
        .await,
        403,
        "ServiceAccounts do not own personal Workspaces",
    )
    .await;
}

#[tokio::test]
async fn organization_metadata_and_deletion_are_the_platforms() {
    let admin = secured_setup().await;
    let olga = format!("{}@example.com", support::unique("olga"));
    let org = own_organization(&admin, "sec-org-meta", &[&olga], &[], json!({})).await;
    let inv = Invariants::capture(&admin, &olga, &[], &[]).await;
    let orgs: Api<Organization> = Api::all(inv.attacker.clone());
    inv.refused(
        "an organization admin hands the Organization to the garbage collector",
        orgs.patch(
            &org,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "doomed",
                "uid": "00000000-0000-4000-8000-000000000000"
            }]}})),
        )
        .await,
        403,
        "ownerReferences of Organization",
    )
    .await;
    inv.refused(
        "an organization admin adds a finalizer",
        orgs.patch(
            &org,
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "add", "path": "/metadata/finalizers/-", "value": "example.com/never"}
                ]))
                .unwrap(),
            ),
        )
        .await,
        403,
        "finalizers of Organization",
    )
    .await;

    // Deleting an Organization that owns a Workspace waits for it.
    let ws = support::unique("sec-org-meta-ws");
    create(
        &client_as(&olga, &[]).await,
        workspace(&ws, "Organization", &org, json!({})),
    )
    .await;
    ready_message(&admin, &ws, "True", "Provisioned").await;
    let admin_orgs: Api<Organization> = Api::all(admin.clone());
    admin_orgs
        .delete(&org, &DeleteParams::default())
        .await
        .expect("a platform admin deletes the Organization");
    support::wait_for(
        "the Organization to wait for its workspace",
        TIMEOUT,
        || async {
            let o = admin_orgs.get_opt(&org).await.ok()??;
            let ready = o
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.reason == "WorkspacesRemain"
                && ready.message.contains("still owns 1 workspaces"))
            .then_some(())
        },
    )
    .await;
    // The Workspace keeps its admins meanwhile.
    assert!(support::objects::may_change_workspace(&olga, &[], &ws).await);
    Api::<Workspace>::all(admin.clone())
        .delete(&ws, &DeleteParams::default())
        .await
        .expect("delete the workspace");
    wait_gone(&admin_orgs, &org, TIMEOUT).await;
}

#[tokio::test]
async fn only_the_operator_writes_objects_labelled_as_its_own() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let dev = format!("{}@example.com", support::unique("dev"));
    let org = own_organization(
        &admin,
        "sec-label-org",
        &[&owner],
        &[&dev],
        json!({"spec": {"workspaceDefaults": {"networkIsolation": true}}}),
    )
    .await;
    let ws = support::unique("sec-label");
    create(
        &client_as(&owner, &[]).await,
        workspace(&ws, "Organization", &org, json!({})),
    )
    .await;
    ready_message(&admin, &ws, "True", "Provisioned").await;
    create(
        &client_as(&owner, &[]).await,
        member(&ws, "dev", user(&dev), "Developer"),
    )
    .await;
    support::wait_for("the Developer's binding", TIMEOUT, || async {
        support::objects::can(
            &dev,
            &[],
            "create",
            "networkpolicies.networking.k8s.io",
            Some(&ws),
            None,
        )
        .await
        .then_some(())
    })
    .await;
    let _dump = support::dump_on_failure(&[&ws]);
    let inv = Invariants::capture(&admin, &dev, &[], &[&ws]).await;
    let policies: Api<NetworkPolicy> = Api::namespaced(inv.attacker.clone(), &ws);
    inv.refused(
        "a Developer creates a look-alike of the operator's objects",
        post(
            &policies,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "look-alike", "labels": {"app.kubernetes.io/managed-by": "workspace-operator"}},
                   "spec": {"podSelector": {}}}),
        )
        .await,
        403,
        "belong to the workspace operator",
    )
    .await;
    inv.refused(
        "a Developer opens the operator's isolation policy",
        policies
            .patch(
                "workspaces.dev-isolation",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"ingress": [{}]}})),
            )
            .await,
        403,
        "belong to the workspace operator",
    )
    .await;
}

fn job(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"template": {"spec": spec}}})
}

#[tokio::test]
async fn a_runner_cannot_read_secrets_through_the_work_it_starts() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let runner = format!("{}@example.com", support::unique("runner"));
    let ws = own_workspace(&admin, &owner, "sec-runner", json!({})).await;
    create(
        &client_as(&owner, &[]).await,
        member(&ws, "runner", user(&runner), "Runner"),
    )
    .await;
    support::objects::wait_member_phase(&admin, &ws, "runner", "Invited", TIMEOUT).await;
    support::objects::accept(&admin, &ws, "runner", &runner, TIMEOUT).await;
    support::wait_for("the Runner's binding", TIMEOUT, || async {
        support::objects::can(&runner, &[], "create", "jobs.batch", Some(&ws), None)
            .await
            .then_some(())
    })
    .await;
    let _dump = support::dump_on_failure(&[&ws]);
    let inv = Invariants::capture(&admin, &runner, &[], &[&ws]).await;
    let jobs: Api<Job> = Api::namespaced(inv.attacker.clone(), &ws);
    let c = |extra: serde_json::Value| {
        let mut c = json!({"name": "c", "image": "busybox"});
        support::objects::merge(&mut c, extra);
        c
    };
    let never = json!({"restartPolicy": "Never"});
    let with = |extra: serde_json::Value| {
        let mut spec = never.clone();
        support::objects::merge(&mut spec, extra);
        spec
    };
    for (what, spec, fragment) in [
        (
            "a secret volume",
            with(
                json!({"containers": [c(json!({}))], "volumes": [{"name": "s", "secret": {"secretName": "payroll"}}]}),
            ),
            "reads a Secret",
        ),
        (
            "a projected secret",
            with(
                json!({"containers": [c(json!({}))], "volumes": [{"name": "s", "projected": {"sources": [{"secret": {"name": "payroll"}}]}}]}),
            ),
            "reads a Secret",
        ),
        (
            "an environment variable from a Secret",
            with(
                json!({"containers": [c(json!({"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "payroll", "key": "token"}}}]}))]}),
            ),
            "reads a Secret",
        ),
        (
            "envFrom a Secret",
            with(
                json!({"initContainers": [c(json!({"name": "init", "envFrom": [{"secretRef": {"name": "payroll"}}]}))], "containers": [c(json!({}))]}),
            ),
            "reads a Secret",
        ),
        (
            "another ServiceAccount",
            with(json!({"serviceAccountName": "deployer", "containers": [c(json!({}))]})),
            "runs as the ServiceAccount deployer",
        ),
    ] {
        inv.refused(
            &format!("a Runner starts a Job with {what}"),
            post(&jobs, job(&support::unique("j"), spec)).await,
            403,
            fragment,
        )
        .await;
    }
    // Work without Secrets starts; a Developer's work may read them.
    post(
        &jobs,
        job("plain", with(json!({"containers": [c(json!({}))]}))),
    )
    .await
    .expect("a Runner starts a plain Job");
    let owner_jobs: Api<Job> = Api::namespaced(client_as(&owner, &[]).await, &ws);
    post(
        &owner_jobs,
        job(
            "with-secret",
            with(json!({"containers": [c(json!({"envFrom": [{"secretRef": {"name": "payroll"}}]}))]})),
        ),
    )
    .await
    .expect("an Owner starts a Job that reads a Secret");
}

#[tokio::test]
async fn a_conflict_says_taken_and_nothing_more() {
    let admin = secured_setup().await;
    let mallory = format!("{}@example.com", support::unique("mallory"));
    let taken = super::victim().workspace.clone();
    let name = support::unique("sec-oracle");
    create(
        &client_as(&mallory, &[]).await,
        workspace(
            &name,
            "User",
            &mallory,
            json!({"spec": {"namespace": taken}}),
        ),
    )
    .await;
    let message = ready_message(&admin, &name, "False", "NamespaceConflict").await;
    assert!(message.contains("is taken"), "{message}");
    for leak in [super::victim().owner.as_str(), "Terminating"] {
        assert!(
            !message.contains(leak),
            "the conflict message tells {leak:?}: {message}"
        );
    }
    let ws = Api::<Workspace>::all(admin.clone())
        .get(&name)
        .await
        .unwrap();
    assert_eq!(ws.status.and_then(|s| s.namespace), None);
}
