//! Workspaces as a platform team uses them: created with `kubectl apply`,
//! provisioned by the operator (running as its own least-privilege identity),
//! checked as the users themselves.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::objects::{
    apply, can, events_about, may_change_workspace, may_delete_workspace, organization, wait_gone,
    wait_ready, workspace,
};
use workspace_operator::api::Workspace;

const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn personal_workspace_becomes_ready_with_namespace_and_owner_access() {
    let admin = support::operator::setup().await;
    let name = support::unique("personal");
    let owner = format!("{name}@example.com");
    let _dump = support::dump_on_failure(&[&name]);
    apply(
        &admin,
        workspace(
            &name,
            "User",
            &owner,
            json!({"spec": {"description": "my flows"}}),
        ),
    )
    .await;

    let ws = wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
    let status = ws.status.expect("status");
    assert_eq!(status.namespace.as_deref(), Some(name.as_str()));
    assert_eq!(status.handle.as_deref(), Some(name.as_str()));
    assert_eq!(status.observed_generation, ws.metadata.generation);
    for t in ["Ready", "NamespaceReady", "AccessReady"] {
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True"),
            "{t} is not True"
        );
    }

    let ns: Api<Namespace> = Api::all(admin.clone());
    let ns = ns.get(&name).await.expect("namespace exists");
    assert_eq!(ns.labels().get("workspaces.dev/workspace"), Some(&name));
    assert_eq!(
        ns.annotations().get("workspaces.dev/workspace-uid"),
        ws.metadata.uid.as_ref()
    );
    // An e-mail is not a valid label value: the owner is recorded as an annotation.
    assert_eq!(ns.annotations().get("workspaces.dev/owner"), Some(&owner));
    assert_eq!(
        ns.labels()
            .get("workspaces.dev/owner-kind")
            .map(String::as_str),
        Some("User")
    );

    // The owner holds Owner in the namespace and may edit and delete the Workspace.
    assert!(
        can(
            &owner,
            &[],
            "create",
            "workspacemembers.workspaces.dev",
            Some(&name),
            None
        )
        .await
    );
    assert!(can(&owner, &[], "create", "secrets", Some(&name), None).await);
    assert!(may_change_workspace(&owner, &[], &name).await);
    assert!(may_delete_workspace(&owner, &[], &name).await);
    // Someone else has nothing in the namespace, and may read the Workspace
    // by name (the install's workspace-reader role) but not change it.
    let stranger = format!("stranger-{name}@example.com");
    assert!(!can(&stranger, &[], "list", "pods", Some(&name), None).await);
    assert!(
        can(
            &stranger,
            &[],
            "get",
            "workspaces.workspaces.dev",
            None,
            Some(&name)
        )
        .await
    );
    assert!(!may_change_workspace(&stranger, &[], &name).await);
    assert!(!may_delete_workspace(&stranger, &[], &name).await);
}

#[tokio::test]
async fn organization_admins_hold_owner_and_a_removed_admin_loses_it() {
    let admin = support::operator::setup().await;
    let org = support::unique("acme");
    let name = support::unique("org-ws");
    let (alice, carol) = (format!("alice@{org}.io"), format!("carol@{org}.io"));
    let _dump = support::dump_on_failure(&[&name]);
    apply(&admin, organization(&org, &[&alice, &carol], json!({}))).await;
    apply(
        &admin,
        workspace(
            &name,
            "Organization",
            &org,
            json!({"spec": {"handle": "prod"}}),
        ),
    )
    .await;
    let ws = wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
    assert_eq!(ws.status.unwrap().handle.as_deref(), Some("prod"));
    for user in [&alice, &carol] {
        assert!(
            can(user, &[], "create", "deployments.apps", Some(&name), None).await,
            "{user}"
        );
        assert!(may_delete_workspace(user, &[], &name).await, "{user}");
    }

    apply(&admin, organization(&org, &[&alice], json!({}))).await;
    // Her RoleBinding in the namespace goes, and with it (and her
    // organization's admin role) her right to change the Workspace.
    support::wait_for("carol to lose access", TIMEOUT, || async {
        let ns_access = can(&carol, &[], "list", "pods", Some(&name), None).await;
        let ws_access = may_change_workspace(&carol, &[], &name).await;
        (!ns_access && !ws_access).then_some(())
    })
    .await;
    assert!(can(&alice, &[], "list", "pods", Some(&name), None).await);
}

#[tokio::test]
async fn missing_organization_is_reported_and_provisioning_follows_its_creation() {
    let admin = support::operator::setup().await;
    let org = support::unique("later");
    let name = support::unique("orphan");
    apply(&admin, workspace(&name, "Organization", &org, json!({}))).await;
    wait_ready(
        &admin,
        &name,
        "False",
        Some("OrganizationNotFound"),
        TIMEOUT,
    )
    .await;
    let ns: Api<Namespace> = Api::all(admin.clone());
    assert!(
        ns.get_opt(&name).await.unwrap().is_none(),
        "nothing is provisioned"
    );
    apply(&admin, organization(&org, &["dana@example.com"], json!({}))).await;
    wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
}

#[tokio::test]
async fn second_workspace_with_the_same_handle_reports_handle_conflict() {
    let admin = support::operator::setup().await;
    let owner = format!("{}@example.com", support::unique("handles"));
    let first = support::unique("hc-first");
    let second = support::unique("hc-second");
    apply(
        &admin,
        workspace(&first, "User", &owner, json!({"spec": {"handle": "prod"}})),
    )
    .await;
    wait_ready(&admin, &first, "True", Some("Provisioned"), TIMEOUT).await;
    apply(
        &admin,
        workspace(&second, "User", &owner, json!({"spec": {"handle": "prod"}})),
    )
    .await;
    let ws = wait_ready(&admin, &second, "False", Some("HandleConflict"), TIMEOUT).await;
    assert!(
        ws.status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    );
    let ns: Api<Namespace> = Api::all(admin.clone());
    assert!(
        ns.get_opt(&second).await.unwrap().is_none(),
        "the loser is not provisioned"
    );

    // Another owner may use the same handle.
    let other = support::unique("hc-other");
    apply(
        &admin,
        workspace(
            &other,
            "User",
            "someone-else@example.com",
            json!({"spec": {"handle": "prod"}}),
        ),
    )
    .await;
    wait_ready(&admin, &other, "True", Some("Provisioned"), TIMEOUT).await;

    // Freeing the handle lets the second one in.
    Api::<Workspace>::all(admin.clone())
        .delete(&first, &DeleteParams::default())
        .await
        .unwrap();
    wait_ready(&admin, &second, "True", Some("Provisioned"), TIMEOUT).await;
}

#[tokio::test]
async fn organization_limit_blocks_the_newest_and_freeing_a_slot_provisions_it() {
    let admin = support::operator::setup().await;
    let org = support::unique("limited");
    apply(
        &admin,
        organization(
            &org,
            &["erin@example.com"],
            json!({"spec": {"limits": {"workspaces": 1}}}),
        ),
    )
    .await;
    let first = support::unique("lim-a");
    let second = support::unique("lim-b");
    apply(&admin, workspace(&first, "Organization", &org, json!({}))).await;
    wait_ready(&admin, &first, "True", Some("Provisioned"), TIMEOUT).await;
    apply(&admin, workspace(&second, "Organization", &org, json!({}))).await;
    wait_ready(
        &admin,
        &second,
        "False",
        Some("WorkspaceLimitExceeded"),
        TIMEOUT,
    )
    .await;

    // Lowering the limit never tears down what exists: once the operator
    // has looked at the workspace again, it is still Ready.
    let operator = support::operator::operator();
    let since = operator.reconciled("workspace", "", &first).len();
    apply(
        &admin,
        organization(
            &org,
            &["erin@example.com"],
            json!({"spec": {"limits": {"workspaces": 0}}}),
        ),
    )
    .await;
    operator
        .wait_reconciled_since("workspace", "", &first, since, TIMEOUT)
        .await;
    wait_ready(&admin, &first, "True", Some("Provisioned"), TIMEOUT).await;

    // Raising it provisions the waiting one.
    apply(
        &admin,
        organization(
            &org,
            &["erin@example.com"],
            json!({"spec": {"limits": {"workspaces": 2}}}),
        ),
    )
    .await;
    wait_ready(&admin, &second, "True", Some("Provisioned"), TIMEOUT).await;
}

#[tokio::test]
async fn existing_namespace_is_never_taken_over_unless_an_admin_allows_adoption() {
    let admin = support::operator::setup().await;
    let name = support::unique("taken");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name, "labels": {"team": "x"}}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &name);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "precious"}, "data": {"k": "v"}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let owner = format!("{name}@example.com");
    apply(&admin, workspace(&name, "User", &owner, json!({}))).await;
    wait_ready(&admin, &name, "False", Some("NamespaceConflict"), TIMEOUT).await;
    // The owner gets nothing in the namespace, but may see the blocked
    // Workspace (to learn why), change and delete it.
    assert!(
        can(
            &owner,
            &[],
            "get",
            "workspaces.workspaces.dev",
            None,
            Some(&name),
        )
        .await
    );
    assert!(may_change_workspace(&owner, &[], &name).await);
    assert!(may_delete_workspace(&owner, &[], &name).await);
    let ns = namespaces.get(&name).await.unwrap();
    assert!(
        ns.labels().get("workspaces.dev/workspace").is_none(),
        "the namespace was not touched"
    );
    assert!(!can(&owner, &[], "list", "pods", Some(&name), None).await);

    // A cluster admin allows adoption.
    namespaces
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"workspaces.dev/adopt": name}}})),
        )
        .await
        .unwrap();
    wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
    assert!(can(&owner, &[], "list", "pods", Some(&name), None).await);

    // An adopted namespace is retained even with deletionPolicy Delete.
    Api::<Workspace>::all(admin.clone())
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&Api::<Workspace>::all(admin.clone()), &name, TIMEOUT).await;
    let ns = namespaces.get(&name).await.expect("adopted namespace kept");
    assert!(ns.metadata.deletion_timestamp.is_none());
    assert_eq!(ns.labels().get("team").map(String::as_str), Some("x"));
    assert!(
        ns.labels().get("workspaces.dev/workspace").is_none(),
        "the operator's labels are removed"
    );
    assert!(cms.get_opt("precious").await.unwrap().is_some());
}

#[tokio::test]
async fn delete_policy_removes_the_namespace_and_owner_keeps_access_until_it_is_gone() {
    let admin = support::operator::setup().await;
    let name = support::unique("doomed");
    let owner = format!("{name}@example.com");
    apply(
        &admin,
        workspace(
            &name,
            "User",
            &owner,
            json!({"spec": {"deletionPolicy": "Delete"}}),
        ),
    )
    .await;
    wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
    // A finalizer on a ConfigMap holds the namespace in Terminating, so the
    // Workspace's wait is observable.
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &name);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "held", "finalizers": ["test.workspaces.dev/hold"]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();

    let workspaces: Api<Workspace> = Api::all(admin.clone());
    workspaces
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    let ws = wait_ready(&admin, &name, "False", Some("Deleting"), TIMEOUT).await;
    assert_eq!(
        ws.status
            .unwrap()
            .phase
            .map(|p| format!("{p:?}"))
            .as_deref(),
        Some("Terminating")
    );
    // Still there, and the owner may still change the Workspace object.
    assert!(may_change_workspace(&owner, &[], &name).await);

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_gone(&Api::<Namespace>::all(admin.clone()), &name, TIMEOUT).await;
    wait_gone(&workspaces, &name, TIMEOUT).await;
}

#[tokio::test]
async fn retain_policy_keeps_the_namespace_and_its_contents() {
    let admin = support::operator::setup().await;
    let name = support::unique("kept");
    let owner = format!("{name}@example.com");
    apply(
        &admin,
        workspace(
            &name,
            "User",
            &owner,
            json!({"spec": {"deletionPolicy": "Retain"}}),
        ),
    )
    .await;
    wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &name);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "history"}, "data": {"run": "42"}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let workspaces: Api<Workspace> = Api::all(admin.clone());
    workspaces
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&workspaces, &name, TIMEOUT).await;

    let ns = Api::<Namespace>::all(admin.clone())
        .get(&name)
        .await
        .expect("namespace kept");
    assert!(ns.metadata.deletion_timestamp.is_none());
    assert!(
        ns.labels()
            .keys()
            .all(|k| !k.starts_with("workspaces.dev/")),
        "labels removed: {:?}",
        ns.labels()
    );
    assert!(
        ns.annotations()
            .keys()
            .all(|k| !k.starts_with("workspaces.dev/"))
    );
    assert_eq!(
        cms.get("history")
            .await
            .unwrap()
            .data
            .unwrap()
            .get("run")
            .map(String::as_str),
        Some("42")
    );
    let rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), &name);
    assert!(
        rbs.get_opt("workspaces.dev:owner").await.unwrap().is_none(),
        "owner binding removed"
    );
    assert!(!can(&owner, &[], "list", "pods", Some(&name), None).await);
}

#[tokio::test]
async fn workspace_whose_namespace_never_existed_deletes_cleanly() {
    let admin = support::operator::setup().await;
    let name = support::unique("never");
    // Blocked: its organization does not exist, so nothing was provisioned.
    apply(
        &admin,
        workspace(&name, "Organization", &support::unique("ghost"), json!({})),
    )
    .await;
    wait_ready(
        &admin,
        &name,
        "False",
        Some("OrganizationNotFound"),
        TIMEOUT,
    )
    .await;
    let workspaces: Api<Workspace> = Api::all(admin.clone());
    workspaces
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&workspaces, &name, TIMEOUT).await;
}

#[tokio::test]
async fn deleted_binding_and_edited_label_are_repaired() {
    let admin = support::operator::setup().await;
    let name = support::unique("drift");
    let owner = format!("{name}@example.com");
    apply(&admin, workspace(&name, "User", &owner, json!({}))).await;
    wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;

    let rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), &name);
    rbs.delete("workspaces.dev:owner", &DeleteParams::default())
        .await
        .unwrap();
    support::wait_for("the owner binding to come back", TIMEOUT, || async {
        rbs.get_opt("workspaces.dev:owner")
            .await
            .ok()
            .flatten()
            .map(|_| ())
    })
    .await;
    assert!(can(&owner, &[], "list", "pods", Some(&name), None).await);

    // A subject slipped into the owner binding is removed again.
    rbs.patch(
        "workspaces.dev:owner",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(json!([{"op": "add", "path": "/subjects/-", "value": {"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}}])).unwrap()),
    )
    .await
    .unwrap();
    support::wait_for(
        "mallory to be removed from the owner binding",
        TIMEOUT,
        || async {
            let rb = rbs.get("workspaces.dev:owner").await.ok()?;
            (!rb.subjects
                .unwrap_or_default()
                .iter()
                .any(|s| s.name == "mallory"))
            .then_some(())
        },
    )
    .await;

    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"workspaces.dev/workspace": "someone-else"}}}),
            ),
        )
        .await
        .unwrap();
    support::wait_for("the workspace label to be restored", TIMEOUT, || async {
        let ns = namespaces.get(&name).await.ok()?;
        (ns.labels().get("workspaces.dev/workspace") == Some(&name)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn namespace_never_inherits_gitops_tracking_labels() {
    let admin = support::operator::setup().await;
    let name = support::unique("gitops");
    let mut ws = workspace(&name, "User", "flux@example.com", json!({}));
    ws["metadata"]["labels"] = json!({"app.kubernetes.io/instance": "platform", "kustomize.toolkit.fluxcd.io/name": "tenants"});
    ws["metadata"]["annotations"] =
        json!({"argocd.argoproj.io/tracking-id": "platform:workspaces.dev/Workspace:/x"});
    apply(&admin, ws).await;
    wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
    let ns = Api::<Namespace>::all(admin.clone())
        .get(&name)
        .await
        .unwrap();
    for key in ns.labels().keys().chain(ns.annotations().keys()) {
        assert!(
            !key.contains("argocd")
                && !key.contains("fluxcd")
                && key != "app.kubernetes.io/instance",
            "{key}"
        );
    }
}

#[tokio::test]
async fn provisioning_records_namespace_created_and_ready_events() {
    let admin = support::operator::setup().await;
    let name = support::unique("evented");
    let _dump = support::dump_on_failure(&[&name]);
    apply(
        &admin,
        workspace(&name, "User", &format!("{name}@example.com"), json!({})),
    )
    .await;
    wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;

    let reasons = support::wait_for("the workspace's events", TIMEOUT, || async {
        let about = events_about(&admin, &name).await;
        (about.len() >= 2).then_some(about)
    })
    .await;
    assert_eq!(
        reasons,
        [
            (
                "NamespaceCreated".to_string(),
                "Normal".to_string(),
                "workspace-operator".to_string()
            ),
            (
                "Provisioned".to_string(),
                "Normal".to_string(),
                "workspace-operator".to_string()
            ),
        ],
        "one event per change, reported by the operator"
    );
}

/// Adding the finalizer from a cached copy of the Workspace that has changed
/// since fails the write's resourceVersion precondition (409 Conflict): the
/// operator reconciles the newer copy, and no reconcile fails for it.
#[tokio::test]
async fn a_stale_copy_when_adding_the_finalizer_is_reconciled_again_not_a_failure() {
    let admin = support::operator::setup().await;
    let plane = support::plane();
    let op = support::operator::operator();
    let api: Api<Workspace> = Api::all(admin.clone());
    let mut names = Vec::new();
    let mut conflicted = false;
    // The conflict is a race with the operator's first reconcile: a few
    // Workspaces make sure it is met at least once.
    while !conflicted && names.len() < 10 {
        let name = support::unique("stale-finalizer");
        let _dump = support::dump_on_failure(&[&name]);
        let mark = plane.audit_mark();
        let owner = format!("{name}@example.com");
        apply(&admin, workspace(&name, "User", &owner, json!({}))).await;
        // Someone changes the Workspace while the operator adds its finalizer.
        for n in 0..40 {
            let touch = json!({"metadata": {"labels": {"touched": n.to_string()}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&touch))
                .await
                .expect("label the workspace");
        }
        let ws = wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
        assert!(
            ws.finalizers()
                .iter()
                .any(|f| f == "workspaces.dev/cleanup"),
            "{name} has no finalizer"
        );
        conflicted = plane
            .requests_since(mark, support::operator::OPERATOR_USER)
            .iter()
            .any(|r| {
                r.verb == "patch"
                    && r.resource == "workspaces"
                    && r.subresource.is_empty()
                    && r.name == name
                    && r.code == 409
            });
        names.push(name);
    }
    assert!(
        conflicted,
        "no finalizer write of the operator met a newer Workspace in {} tries",
        names.len()
    );
    for name in &names {
        assert_eq!(
            op.failures("workspace", "", name),
            Vec::<String>::new(),
            "reconciles of {name} failed"
        );
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete the workspace");
    }
}
