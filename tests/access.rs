//! Access to the Workspace object, as people use it: the `kubectl` binary,
//! run as each user (client-side apply, server-side apply, create, edit,
//! patch, delete), for owners, organization admins, Owner members, other
//! members and strangers. The access costs no cluster-scoped RBAC object per
//! Workspace or member.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::kubectl::Kubectl;
use support::objects::{
    apply, create, member, organization, user, wait_gone, wait_ready, workspace,
};
use workspace_operator::api::Workspace;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A Workspace manifest as a user writes it.
fn workspace_yaml(name: &str, owner_kind: &str, owner: &str, description: &str) -> String {
    format!(
        "apiVersion: workspaces.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: {name}\n\
         spec:\n  owner: {{kind: {owner_kind}, name: \"{owner}\"}}\n  description: \"{description}\"\n"
    )
}

/// A WorkspaceMember manifest as an Owner writes it.
fn member_yaml(namespace: &str, name: &str, subject: &str, role: &str) -> String {
    format!(
        "apiVersion: workspaces.dev/v1alpha1\nkind: WorkspaceMember\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  subject: {{kind: User, name: \"{subject}\"}}\n  role: {role}\n"
    )
}

async fn description(admin: &Client, name: &str) -> Option<String> {
    Api::<Workspace>::all(admin.clone())
        .get(name)
        .await
        .expect("get the Workspace")
        .spec
        .description
}

#[tokio::test]
async fn a_user_creates_and_reapplies_their_workspace_with_kubectl() {
    let admin = support::operator::setup().await;
    let alice = format!("{}@example.com", support::unique("alice"));
    let kubectl = Kubectl::as_user(&alice, &[]);

    // Client-side apply: a GET (404), then a POST; re-applying an edited
    // file: a GET, then a PATCH.
    let csa = support::unique("csa");
    let _dump = support::dump_on_failure(&[&csa]);
    let out = kubectl
        .apply(&workspace_yaml(&csa, "User", &alice, "first"))
        .success();
    assert!(out.stdout.contains("created"), "{}", out.stdout);
    wait_ready(&admin, &csa, "True", Some("Provisioned"), TIMEOUT).await;
    let out = kubectl
        .apply(&workspace_yaml(&csa, "User", &alice, "second"))
        .success();
    assert!(out.stdout.contains("configured"), "{}", out.stdout);
    assert_eq!(description(&admin, &csa).await.as_deref(), Some("second"));
    // An unchanged file is unchanged.
    let out = kubectl
        .apply(&workspace_yaml(&csa, "User", &alice, "second"))
        .success();
    assert!(out.stdout.contains("unchanged"), "{}", out.stdout);

    // Server-side apply creates and re-applies (PATCH both times).
    let ssa = support::unique("ssa");
    kubectl
        .apply_server_side(&workspace_yaml(&ssa, "User", &alice, "first"))
        .success();
    wait_ready(&admin, &ssa, "True", Some("Provisioned"), TIMEOUT).await;
    kubectl
        .apply_server_side(&workspace_yaml(&ssa, "User", &alice, "second"))
        .success();
    assert_eq!(description(&admin, &ssa).await.as_deref(), Some("second"));

    // kubectl create, then get, describe, edit and patch.
    let made = support::unique("made");
    kubectl
        .create(&workspace_yaml(&made, "User", &alice, "first"))
        .success();
    wait_ready(&admin, &made, "True", Some("Provisioned"), TIMEOUT).await;
    let out = kubectl.run(&["get", "ws", &made]).success();
    assert!(out.stdout.contains(&made), "{}", out.stdout);
    kubectl.run(&["describe", "ws", &made]).success();
    kubectl
        .edit(
            &format!("workspace/{made}"),
            None,
            "description: first",
            "description: edited",
        )
        .success();
    assert_eq!(description(&admin, &made).await.as_deref(), Some("edited"));
    kubectl
        .run(&[
            "patch",
            "ws",
            &made,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"deletionProtection":true}}"#,
        ])
        .success();

    // Delete: refused while protected, then done by the owner.
    kubectl
        .run(&["delete", "ws", &made, "--wait=false"])
        .refused(&["deletionProtection"]);
    kubectl
        .run(&[
            "patch",
            "ws",
            &made,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"deletionProtection":false}}"#,
        ])
        .success();
    // A plain `kubectl delete` waits until the Workspace is gone.
    kubectl.run(&["delete", "ws", &csa]).success();
    for name in [&ssa, &made] {
        kubectl
            .run(&["delete", "ws", name.as_str(), "--wait=false"])
            .success();
    }
    for name in [&csa, &ssa, &made] {
        wait_gone(&Api::<Workspace>::all(admin.clone()), name, TIMEOUT).await;
    }
}

#[tokio::test]
async fn only_owners_change_or_delete_a_workspace() {
    let admin = support::operator::setup().await;
    let alice = format!("{}@example.com", support::unique("alice"));
    let owner_member = format!("{}@example.com", support::unique("olga"));
    let developer = format!("{}@example.com", support::unique("dev"));
    let stranger = format!("{}@example.com", support::unique("mallory"));
    let name = support::unique("owned");
    let _dump = support::dump_on_failure(&[&name]);
    let as_alice = Kubectl::as_user(&alice, &[]);
    as_alice
        .apply(&workspace_yaml(&name, "User", &alice, "mine"))
        .success();
    wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
    // Alice shares her workspace: one Owner member, one Developer.
    as_alice
        .apply(&member_yaml(&name, "olga", &owner_member, "Owner"))
        .success();
    as_alice
        .apply_server_side(&member_yaml(&name, "dev", &developer, "Developer"))
        .success();
    // Both are invited, and accept.
    for (member, who) in [("olga", &owner_member), ("dev", &developer)] {
        support::objects::wait_member_phase(&admin, &name, member, "Invited", TIMEOUT).await;
        support::objects::accept(&admin, &name, member, who, TIMEOUT).await;
    }
    support::wait_for("the members' bindings", TIMEOUT, || async {
        (support::objects::can(
            &owner_member,
            &[],
            "create",
            "workspacemembers.workspaces.dev",
            Some(&name),
            None,
        )
        .await
            && support::objects::can(&developer, &[], "create", "secrets", Some(&name), None).await)
            .then_some(())
    })
    .await;

    let merge = |patch: &str| {
        vec![
            "patch".to_string(),
            "ws".to_string(),
            name.clone(),
            "--type".to_string(),
            "merge".to_string(),
            "-p".to_string(),
            patch.to_string(),
        ]
    };
    let run =
        |k: &Kubectl, args: &[String]| k.run(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // The stranger and the Developer may read the Workspace by name, and
    // change and delete nothing, through any verb.
    for who in [&stranger, &developer] {
        let k = Kubectl::as_user(who, &[]);
        k.run(&["get", "ws", &name]).success();
        k.apply(&workspace_yaml(&name, "User", &alice, "taken"))
            .refused(&["only the Owners of Workspace", who.as_str()]);
        k.apply_server_side(&workspace_yaml(&name, "User", &alice, "taken"))
            .refused(&["only the Owners of Workspace"]);
        // A server-side apply that changes no value would still make its
        // author a co-owner of the fields.
        k.run_with_input(
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "squatter",
                "-f",
                "-",
            ],
            &workspace_yaml(&name, "User", &alice, "mine"),
        )
        .refused(&["only the Owners of Workspace"]);
        run(&k, &merge(r#"{"spec":{"description":"taken"}}"#))
            .refused(&["only the Owners of Workspace"]);
        run(&k, &merge(r#"{"metadata":{"labels":{"x":"y"}}}"#))
            .refused(&["only the Owners of Workspace"]);
        // A finalizer of one's own would hold the Workspace's deletion.
        k.run(&[
            "patch",
            "ws",
            &name,
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/metadata/finalizers/-","value":"example.com/block"}]"#,
        ])
        .refused(&["only the Owners of Workspace"]);
        k.run(&[
            "patch",
            "ws",
            &name,
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/description","value":"taken"}]"#,
        ])
        .refused(&["only the Owners of Workspace"]);
        k.run(&["annotate", "ws", &name, "x=y"])
            .refused(&["only the Owners of Workspace"]);
        k.edit(
            &format!("workspace/{name}"),
            None,
            "description: mine",
            "description: taken",
        )
        .refused(&["only the Owners of Workspace"]);
        k.run(&["delete", "ws", &name, "--wait=false"])
            .refused(&["only the Owners of Workspace", "delete it"]);
        // Workspaces are readable (the install's workspace-reader role).
        let out = k.run(&["get", "ws"]).success();
        assert!(out.stdout.contains(&name), "{}", out.stdout);
    }
    assert_eq!(description(&admin, &name).await.as_deref(), Some("mine"));

    // An Owner member edits what Owners may edit.
    let olga = Kubectl::as_user(&owner_member, &[]);
    run(&olga, &merge(r#"{"spec":{"description":"olga's"}}"#)).success();
    assert_eq!(description(&admin, &name).await.as_deref(), Some("olga's"));
    // Nobody changes the owner directly.
    run(
        &olga,
        &merge(&format!(
            r#"{{"spec":{{"owner":{{"kind":"User","name":"{owner_member}"}}}}}}"#
        )),
    )
    .refused(&["WorkspaceTransfer"]);
    // And the Owner member deletes it.
    olga.run(&["delete", "ws", &name, "--wait=false"]).success();
    wait_gone(&Api::<Workspace>::all(admin.clone()), &name, TIMEOUT).await;
}

#[tokio::test]
async fn organization_admins_apply_the_organizations_workspaces() {
    let admin = support::operator::setup().await;
    let org = support::unique("org-apply");
    let carol = format!("{}@example.com", support::unique("carol"));
    let bob = format!("{}@example.com", support::unique("bob"));
    apply(
        &admin,
        organization(&org, &[&carol], json!({"spec": {"members": [user(&bob)]}})),
    )
    .await;
    support::wait_for("carol to administer the organization", TIMEOUT, || async {
        support::objects::can(
            &carol,
            &[],
            "administer",
            "organizations.workspaces.dev",
            None,
            Some(&org),
        )
        .await
        .then_some(())
    })
    .await;
    let name = support::unique("org-ws");
    let _dump = support::dump_on_failure(&[&name]);
    let as_carol = Kubectl::as_user(&carol, &[]);
    let as_bob = Kubectl::as_user(&bob, &[]);
    // A member of the organization is not one of its admins.
    as_bob
        .apply(&workspace_yaml(&name, "Organization", &org, "bob's"))
        .refused(&["not an admin of the Organization"]);
    as_carol
        .apply_server_side(&workspace_yaml(&name, "Organization", &org, "first"))
        .success();
    wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
    as_carol
        .apply_server_side(&workspace_yaml(&name, "Organization", &org, "second"))
        .success();
    as_bob
        .apply_server_side(&workspace_yaml(&name, "Organization", &org, "bob's"))
        .refused(&["only the Owners of Workspace"]);
    assert_eq!(description(&admin, &name).await.as_deref(), Some("second"));

    // Carol adds Bob with kubectl apply (her Owner role in the namespace).
    as_carol
        .apply(&member_yaml(&name, "bob", &bob, "Developer"))
        .success();
    support::wait_for("bob's Developer binding", TIMEOUT, || async {
        support::objects::can(&bob, &[], "create", "secrets", Some(&name), None)
            .await
            .then_some(())
    })
    .await;
    // A Developer cannot add members, with any verb.
    as_bob
        .apply(&member_yaml(&name, "eve", "eve@example.com", "Viewer"))
        .refused(&["forbidden"]);
    as_bob
        .apply_server_side(&member_yaml(&name, "eve", "eve@example.com", "Viewer"))
        .refused(&["forbidden"]);

    as_carol
        .run(&["delete", "ws", &name, "--wait=false"])
        .success();
    wait_gone(&Api::<Workspace>::all(admin.clone()), &name, TIMEOUT).await;
}

/// The cluster-scoped RBAC objects that exist, by name.
async fn cluster_rbac(admin: &Client) -> BTreeSet<String> {
    let roles = Api::<ClusterRole>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .expect("list ClusterRoles");
    let bindings = Api::<ClusterRoleBinding>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .expect("list ClusterRoleBindings");
    roles
        .into_iter()
        .map(|r| format!("ClusterRole {}", r.name_any()))
        .chain(
            bindings
                .into_iter()
                .map(|b| format!("ClusterRoleBinding {}", b.name_any())),
        )
        .collect()
}

#[tokio::test]
async fn workspaces_and_members_add_no_cluster_scoped_rbac() {
    let admin = support::operator::setup().await;
    let before = cluster_rbac(&admin).await;
    let owner = format!("{}@example.com", support::unique("grace"));
    let mut names = Vec::new();
    for _ in 0..3 {
        let name = support::unique("no-crb");
        create(
            &support::plane().client_as(&owner, &[]).await,
            workspace(&name, "User", &owner, json!({})),
        )
        .await;
        names.push(name);
    }
    // A Workspace refused for its handle creates nothing either.
    let refused = support::unique("no-crb-dup");
    create(
        &support::plane().client_as(&owner, &[]).await,
        workspace(
            &refused,
            "User",
            &owner,
            json!({"spec": {"handle": names[0]}}),
        ),
    )
    .await;
    for name in &names {
        wait_ready(&admin, name, "True", Some("Provisioned"), TIMEOUT).await;
        create(
            &support::plane().client_as(&owner, &[]).await,
            member(name, "m", user("member@example.com"), "Viewer"),
        )
        .await;
    }
    wait_ready(&admin, &refused, "False", Some("HandleConflict"), TIMEOUT).await;
    let after = cluster_rbac(&admin).await;
    let added: Vec<&String> = after
        .difference(&before)
        // Organizations (created by other tests of this binary) have one
        // pair each; nothing else may appear.
        .filter(|n| n.contains("workspaces.dev") && !n.contains(":organization:"))
        .collect();
    assert!(
        added.is_empty(),
        "Workspaces and members created cluster-scoped RBAC: {added:?}"
    );
}

#[tokio::test]
async fn per_workspace_cluster_roles_of_earlier_versions_are_removed() {
    let admin = support::operator::setup().await;
    let owner = format!("{}@example.com", support::unique("hank"));
    let name = support::unique("legacy");
    let _dump = support::dump_on_failure(&[&name]);
    create(
        &support::plane().client_as(&owner, &[]).await,
        workspace(&name, "User", &owner, json!({})),
    )
    .await;
    let ws = wait_ready(&admin, &name, "True", Some("Provisioned"), TIMEOUT).await;
    // What an earlier version left: the owner's pair, owned by the
    // Workspace and labelled as the operator's.
    let role_name = format!("workspaces.dev:workspace:{name}:owner");
    let owner_ref = json!([{
        "apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace",
        "name": name, "uid": ws.uid().expect("uid"), "controller": true
    }]);
    let labels = json!({
        "app.kubernetes.io/managed-by": "workspace-operator",
        "workspaces.dev/workspace": name,
    });
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": role_name, "labels": labels, "ownerReferences": owner_ref},
        "rules": [{"apiGroups": ["workspaces.dev"], "resources": ["workspaces"],
                   "resourceNames": [name], "verbs": ["get", "update", "patch", "delete"]}]
    }))
    .expect("a ClusterRole");
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": role_name, "labels": labels, "ownerReferences": owner_ref},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": owner}]
    }))
    .expect("a ClusterRoleBinding");
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("legacy role");
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("legacy binding");
    wait_gone(&bindings, &role_name, TIMEOUT).await;
    wait_gone(&roles, &role_name, TIMEOUT).await;
    // The owner keeps their access to the Workspace object.
    let kubectl = Kubectl::as_user(&owner, &[]);
    kubectl.run(&["get", "ws", &name]).success();
    kubectl
        .run(&[
            "patch",
            "ws",
            &name,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"description":"still mine"}}"#,
        ])
        .success();
}
