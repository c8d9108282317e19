//! WorkspaceMembers as the people sharing a workspace use them: an owner adds
//! members with `kubectl apply`, the operator (running as its own
//! least-privilege identity) binds their roles, and what each member may do
//! is checked as that member, with SelfSubjectAccessReviews.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::objects::{
    self, apply, can, cluster_role, group, member, ready_of, service_account, user, workspace,
};
use support::operator::{OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, OPERATOR_USER, Operator};
use workspace_operator::api::{MemberPhase, Workspace, WorkspaceMember};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A custom ClusterRole a cluster admin made assignable: labelled, listed in
/// the operator's `--assignable-cluster-roles`, and the operator may bind it.
const CUSTOM_ROLE: &str = "member-tests:configmap-reader";
/// Listed in `--assignable-cluster-roles` but not labelled assignable.
const UNLABELLED_ROLE: &str = "member-tests:unlabelled";
/// Labelled assignable but not listed.
const UNLISTED_ROLE: &str = "member-tests:unlisted";

/// The operator of this test binary: the shared one (its own
/// ServiceAccount, least privilege), started with the assignable custom
/// roles the way an install would list them.
fn member_operator() -> &'static Operator {
    let roles = format!("--assignable-cluster-roles={CUSTOM_ROLE},{UNLABELLED_ROLE}");
    support::operator::operator_with(&[&roles])
}

/// The admin's client, once the plane and this binary's operator run.
async fn setup_with_roles() -> Client {
    member_operator();
    support::plane().admin().await
}

/// Waits until the Workspace is Ready (for whatever reason).
async fn wait_workspace(client: &Client, name: &str) -> Workspace {
    objects::wait_ready(client, name, "True", None, TIMEOUT).await
}

/// Waits until the Workspace counts `n` active members.
async fn wait_member_count(client: &Client, name: &str, n: i32) {
    let api: Api<Workspace> = Api::all(client.clone());
    support::wait_for(
        &format!("workspace {name} to count {n} members"),
        TIMEOUT,
        || {
            let api = api.clone();
            async move {
                let ws = api.get(name).await.ok()?;
                (ws.status?.members == Some(n)).then_some(())
            }
        },
    )
    .await
}

/// Waits until the member's Ready condition has `status` and `reason`.
async fn wait_member(
    client: &Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> WorkspaceMember {
    let api: Api<WorkspaceMember> = Api::namespaced(client.clone(), ns);
    let what = format!("member {ns}/{name} to be Ready={status} ({reason})");
    support::wait_for(&what, TIMEOUT, || {
        let api = api.clone();
        async move {
            let m = api.get(name).await.ok()?;
            let s = m.status.as_ref()?;
            let ready = ready_of(&s.conditions)?;
            (ready.status == status
                && ready.reason == reason
                && s.observed_generation == m.metadata.generation)
                .then_some(m)
        }
    })
    .await
}

/// Waits until the member is Active, and returns it. A User invited to a
/// personal workspace accepts first, as themself.
async fn wait_active(client: &Client, ns: &str, name: &str) -> WorkspaceMember {
    let api: Api<WorkspaceMember> = Api::namespaced(client.clone(), ns);
    let what = format!("member {ns}/{name} to be Active or Invited");
    let seen = support::wait_for(&what, TIMEOUT, || {
        let api = api.clone();
        async move {
            let m = api.get(name).await.ok()?;
            let s = m.status.as_ref()?;
            let current = s.observed_generation == m.metadata.generation;
            (current && matches!(s.phase, Some(MemberPhase::Active | MemberPhase::Invited)))
                .then_some(m)
        }
    })
    .await;
    if seen.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Invited) {
        let invitee = seen.spec.subject.name.clone();
        support::objects::accept(client, ns, name, &invitee, TIMEOUT).await;
    }
    let m = wait_member(client, ns, name, "True", "Provisioned").await;
    let status = m.status.as_ref().expect("status");
    assert_eq!(status.phase, Some(MemberPhase::Active));
    assert!(
        status.role_binding.is_some(),
        "an active member names its binding"
    );
    m
}

/// The RoleBindings of one member, by its label.
async fn bindings_of(client: &Client, ns: &str, member: &str) -> Vec<RoleBinding> {
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("workspaces.dev/member={member}")))
        .await
        .expect("list rolebindings")
        .items
}

async fn delete_member(client: &Client, ns: &str, name: &str) {
    Api::<WorkspaceMember>::namespaced(client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete member");
}

/// Invariant after a scenario: every member RoleBinding in `ns` belongs to a
/// member that exists, is Active and names it, and no member holds two.
async fn assert_bindings_match_members(client: &Client, ns: &str) {
    let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    let members: Api<WorkspaceMember> = Api::namespaced(client.clone(), ns);
    support::wait_for(
        &format!("member bindings in {ns} to match active members"),
        TIMEOUT,
        || async {
            let bindings = rbs
                .list(&ListParams::default().labels("workspaces.dev/member"))
                .await
                .ok()?
                .items;
            let members = members.list(&ListParams::default()).await.ok()?.items;
            let expected: Vec<String> = {
                let mut names: Vec<String> = members
                    .iter()
                    .filter_map(|m| m.status.as_ref())
                    .filter(|s| s.phase == Some(MemberPhase::Active))
                    .filter_map(|s| s.role_binding.clone())
                    .collect();
                names.sort();
                names
            };
            let mut actual: Vec<String> = bindings.iter().map(|rb| rb.name_any()).collect();
            actual.sort();
            let owned = bindings.iter().all(|rb| {
                rb.owner_references().iter().any(|o| {
                    members
                        .iter()
                        .any(|m| m.metadata.uid.as_ref() == Some(&o.uid))
                })
            });
            (owned && actual == expected).then_some(())
        },
    )
    .await;
}

// ---------------------------------------------------------------------------

/// Where an action is checked.
#[derive(Clone, Copy)]
enum Scope {
    /// In the workspace's namespace.
    Workspace,
    /// In another workspace's namespace.
    Other,
    /// Cluster-wide, no name.
    Cluster,
    /// The Workspace object itself (cluster-scoped, by name).
    WorkspaceObject,
    /// Another Workspace object.
    OtherWorkspaceObject,
    /// The workspace's Namespace object.
    NamespaceObject,
}

/// The actions of the matrix and who may do them, from SPEC §1.2.
/// Columns: Owner, Developer, Runner, Viewer, Worker.
#[rustfmt::skip]
const MATRIX: &[(&str, &str, Scope, [bool; 5])] = &[
    //                                                                                 Owner  Dev    Runner Viewer Worker
    ("list",   "pods",                                   Scope::Workspace,            [true,  true,  true,  true,  true ]),
    ("get",    "pods/log",                               Scope::Workspace,            [true,  true,  true,  true,  true ]),
    ("create", "pods",                                   Scope::Workspace,            [true,  true,  false, false, true ]),
    ("delete", "pods",                                   Scope::Workspace,            [true,  true,  false, false, true ]),
    ("list",   "configmaps",                             Scope::Workspace,            [true,  true,  true,  true,  true ]),
    ("create", "configmaps",                             Scope::Workspace,            [true,  true,  false, false, false]),
    ("get",    "secrets",                                Scope::Workspace,            [true,  true,  false, false, true ]),
    ("list",   "secrets",                                Scope::Workspace,            [true,  true,  false, false, true ]),
    ("create", "secrets",                                Scope::Workspace,            [true,  true,  false, false, false]),
    ("create", "jobs.batch",                             Scope::Workspace,            [true,  true,  true,  false, true ]),
    ("list",   "jobs.batch",                             Scope::Workspace,            [true,  true,  true,  true,  true ]),
    ("create", "deployments.apps",                       Scope::Workspace,            [true,  true,  false, false, false]),
    ("delete", "deployments.apps",                       Scope::Workspace,            [true,  true,  false, false, false]),
    ("list",   "deployments.apps",                       Scope::Workspace,            [true,  true,  true,  true,  false]),
    // Owners read RoleBindings but grant roles only through WorkspaceMembers.
    ("list",   "rolebindings.rbac.authorization.k8s.io", Scope::Workspace,            [true,  false, false, false, false]),
    ("create", "rolebindings.rbac.authorization.k8s.io", Scope::Workspace,            [false, false, false, false, false]),
    ("list",   "workspacemembers.workspaces.dev",        Scope::Workspace,            [true,  true,  true,  true,  false]),
    ("create", "workspacemembers.workspaces.dev",        Scope::Workspace,            [true,  false, false, false, false]),
    ("delete", "workspacemembers.workspaces.dev",        Scope::Workspace,            [true,  false, false, false, false]),
    // Every authenticated user reads Workspaces (the install's
    // workspaces:workspace-reader); the workspace-access admission policy
    // lets only those who `administer` workspaces in its namespace (Owners)
    // change or delete it (tests/access.rs tries that with kubectl).
    ("get",    "workspaces.workspaces.dev",              Scope::WorkspaceObject,      [true,  true,  true,  true,  true ]),
    ("get",    "workspaces.workspaces.dev",              Scope::OtherWorkspaceObject, [true,  true,  true,  true,  true ]),
    ("administer", "workspaces.workspaces.dev",          Scope::Workspace,            [true,  false, false, false, false]),
    ("administer", "workspaces.workspaces.dev",          Scope::Other,                [false, false, false, false, false]),
    ("list",   "workspaces.workspaces.dev",              Scope::Cluster,              [true,  true,  true,  true,  true ]),
    ("list",   "pods",                                   Scope::Other,                [false, false, false, false, false]),
    ("get",    "secrets",                                Scope::Other,                [false, false, false, false, false]),
    ("list",   "pods",                                   Scope::Cluster,              [false, false, false, false, false]),
    ("delete", "namespaces",                             Scope::NamespaceObject,      [false, false, false, false, false]),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", Scope::Cluster,       [false, false, false, false, false]),
];

const ROLES: [&str; 5] = ["Owner", "Developer", "Runner", "Viewer", "Worker"];

#[tokio::test]
async fn each_built_in_role_allows_exactly_what_the_spec_says() {
    let admin = setup_with_roles().await;
    let ws = support::unique("matrix");
    let other = support::unique("matrix-other");
    let _dump = support::dump_on_failure(&[&ws]);
    apply(
        &admin,
        workspace(&ws, "User", &format!("owner-{ws}@example.com"), json!({})),
    )
    .await;
    apply(
        &admin,
        workspace(
            &other,
            "User",
            &format!("owner-{other}@example.com"),
            json!({}),
        ),
    )
    .await;
    wait_workspace(&admin, &ws).await;
    wait_workspace(&admin, &other).await;

    let users: Vec<String> = ROLES
        .iter()
        .map(|r| format!("{}-{ws}@example.com", r.to_lowercase()))
        .collect();
    for (role, user_name) in ROLES.iter().zip(&users) {
        apply(
            &admin,
            member(&ws, &role.to_lowercase(), user(user_name), *role),
        )
        .await;
    }
    for role in ROLES {
        let m = wait_active(&admin, &ws, &role.to_lowercase()).await;
        assert_eq!(
            m.status.unwrap().role_binding,
            Some(format!(
                "wsm-{}-{}",
                role.to_lowercase(),
                role.to_lowercase()
            ))
        );
    }
    // The Workspace counts them, after it let them read it.
    wait_member_count(&admin, &ws, 5).await;

    for (column, (role, user_name)) in ROLES.iter().zip(&users).enumerate() {
        let client = support::plane().client_as(user_name, &[]).await;
        let expected: Vec<(String, bool)> = MATRIX
            .iter()
            .map(|(verb, resource, scope, allowed)| {
                (attempt(verb, resource, *scope), allowed[column])
            })
            .collect();
        // RBAC caches in the API server catch up within moments: poll until
        // the whole row matches, then fail with the last difference.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut actual = Vec::new();
            for (verb, resource, scope, _) in MATRIX {
                let (ns, name) = match scope {
                    Scope::Workspace => (Some(ws.as_str()), None),
                    Scope::Other => (Some(other.as_str()), None),
                    Scope::Cluster => (None, None),
                    Scope::WorkspaceObject | Scope::NamespaceObject => (None, Some(ws.as_str())),
                    Scope::OtherWorkspaceObject => (None, Some(other.as_str())),
                };
                let allowed = support::can_i(&client, verb, resource, ns, name).await;
                actual.push((attempt(verb, resource, *scope), allowed));
            }
            if actual == expected {
                break;
            }
            if Instant::now() > deadline {
                let wrong: Vec<String> = actual
                    .iter()
                    .zip(&expected)
                    .filter(|(a, e)| a != e)
                    .map(|(a, e)| format!("{}: allowed={} expected={}", a.0, a.1, e.1))
                    .collect();
                panic!("{role} has the wrong permissions:\n{}", wrong.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_bindings_match_members(&admin, &ws).await;
}

fn attempt(verb: &str, resource: &str, scope: Scope) -> String {
    let place = match scope {
        Scope::Workspace => "in the workspace",
        Scope::Other => "in another workspace",
        Scope::Cluster => "cluster-wide",
        Scope::WorkspaceObject => "(the Workspace)",
        Scope::OtherWorkspaceObject => "(another Workspace)",
        Scope::NamespaceObject => "(the workspace's Namespace)",
    };
    format!("{verb} {resource} {place}")
}

#[tokio::test]
async fn role_change_swaps_the_binding_without_a_gap() {
    let admin = setup_with_roles().await;
    let ws = support::unique("swap");
    let _dump = support::dump_on_failure(&[&ws]);
    apply(
        &admin,
        workspace(&ws, "User", &format!("owner-{ws}@example.com"), json!({})),
    )
    .await;
    wait_workspace(&admin, &ws).await;
    let dana = format!("dana-{ws}@example.com");
    apply(&admin, member(&ws, "dana", user(&dana), "Viewer")).await;
    wait_active(&admin, &ws, "dana").await;
    objects::wait_can(&dana, &[], "list", "pods", Some(&ws), None, true).await;
    assert!(!can(&dana, &[], "create", "deployments.apps", Some(&ws), None).await);

    // Watch dana's access continuously while the role changes.
    let stop = Arc::new(AtomicBool::new(false));
    let denials = Arc::new(AtomicUsize::new(0));
    let checks = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, denials, checks) = (stop.clone(), denials.clone(), checks.clone());
        let client = support::plane().client_as(&dana, &[]).await;
        let ws = ws.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if !support::can_i(&client, "list", "pods", Some(&ws), None).await {
                    denials.fetch_add(1, Ordering::SeqCst);
                }
                checks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    Api::<WorkspaceMember>::namespaced(admin.clone(), &ws)
        .patch(
            "dana",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": "Developer"}})),
        )
        .await
        .expect("change the role");
    let m = wait_active(&admin, &ws, "dana").await;
    assert_eq!(
        m.status.unwrap().role_binding.as_deref(),
        Some("wsm-dana-developer")
    );
    objects::wait_can(
        &dana,
        &[],
        "create",
        "deployments.apps",
        Some(&ws),
        None,
        true,
    )
    .await;
    support::wait_for("the old binding to be gone", TIMEOUT, || async {
        let names: Vec<String> = bindings_of(&admin, &ws, "dana")
            .await
            .iter()
            .map(|rb| rb.name_any())
            .collect();
        (names == ["wsm-dana-developer"]).then_some(())
    })
    .await;
    // A few more checks after the old binding is gone, then stop watching.
    let seen = checks.load(Ordering::SeqCst);
    support::wait_for("more access checks after the change", TIMEOUT, || async {
        (checks.load(Ordering::SeqCst) >= seen + 3).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    watcher.await.expect("the watching task");

    assert!(
        checks.load(Ordering::SeqCst) >= 5,
        "the change was observed"
    );
    assert_eq!(
        denials.load(Ordering::SeqCst),
        0,
        "dana lost access during the role change ({} checks)",
        checks.load(Ordering::SeqCst)
    );
    let rb = &bindings_of(&admin, &ws, "dana").await[0];
    assert_eq!(rb.role_ref.name, "workspaces:developer");
    assert_bindings_match_members(&admin, &ws).await;
}

#[tokio::test]
async fn a_second_member_for_the_same_subject_is_a_duplicate_until_the_first_goes() {
    let admin = setup_with_roles().await;
    let ws = support::unique("dup");
    let _dump = support::dump_on_failure(&[&ws]);
    apply(
        &admin,
        workspace(&ws, "User", &format!("owner-{ws}@example.com"), json!({})),
    )
    .await;
    wait_workspace(&admin, &ws).await;
    let erin = format!("erin-{ws}@example.com");
    apply(&admin, member(&ws, "erin", user(&erin), "Viewer")).await;
    wait_active(&admin, &ws, "erin").await;
    apply(&admin, member(&ws, "erin-again", user(&erin), "Owner")).await;
    let dup = wait_member(&admin, &ws, "erin-again", "False", "DuplicateSubject").await;
    let status = dup.status.unwrap();
    assert_eq!(status.phase, Some(MemberPhase::Pending));
    assert_eq!(status.role_binding, None);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True"),
        "a person must act"
    );
    assert!(bindings_of(&admin, &ws, "erin-again").await.is_empty());
    assert!(
        !can(
            &erin,
            &[],
            "create",
            "workspacemembers.workspaces.dev",
            Some(&ws),
            None
        )
        .await
    );

    // The first one goes: the duplicate takes over.
    delete_member(&admin, &ws, "erin").await;
    wait_active(&admin, &ws, "erin-again").await;
    objects::wait_can(
        &erin,
        &[],
        "create",
        "workspacemembers.workspaces.dev",
        Some(&ws),
        None,
        true,
    )
    .await;
    assert_bindings_match_members(&admin, &ws).await;
}

#[tokio::test]
async fn a_service_account_from_another_namespace_gets_its_role() {
    let admin = setup_with_roles().await;
    let ws = support::unique("sa");
    let home = support::unique("sa-home");
    let _dump = support::dump_on_failure(&[&ws]);
    objects::create_namespace(&admin, json!({"name": home})).await;
    Api::<ServiceAccount>::namespaced(admin.clone(), &home)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "agent"}})).unwrap(),
        )
        .await
        .expect("create the ServiceAccount");
    apply(
        &admin,
        workspace(&ws, "User", &format!("owner-{ws}@example.com"), json!({})),
    )
    .await;
    wait_workspace(&admin, &ws).await;
    apply(
        &admin,
        member(&ws, "agent", service_account(&home, "agent"), "Worker"),
    )
    .await;
    wait_active(&admin, &ws, "agent").await;

    let rb = &bindings_of(&admin, &ws, "agent").await[0];
    let subject = &rb.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "agent", Some(home.as_str()))
    );
    let agent = support::plane()
        .client_as_service_account(&home, "agent")
        .await;
    support::wait_for("the agent to be able to create pods", TIMEOUT, || async {
        support::can_i(&agent, "create", "pods", Some(&ws), None)
            .await
            .then_some(())
    })
    .await;
    assert!(support::can_i(&agent, "get", "secrets", Some(&ws), None).await);
    assert!(!support::can_i(&agent, "create", "deployments.apps", Some(&ws), None).await);
    support::wait_for("the agent to read its Workspace", TIMEOUT, || async {
        support::can_i(&agent, "get", "workspaces.workspaces.dev", None, Some(&ws))
            .await
            .then_some(())
    })
    .await;
    // A ServiceAccount of the same name elsewhere is someone else.
    let impostor = support::plane()
        .client_as_service_account(&ws, "agent")
        .await;
    assert!(!support::can_i(&impostor, "create", "pods", Some(&ws), None).await);
    assert_bindings_match_members(&admin, &ws).await;
}

#[tokio::test]
async fn only_an_assignable_custom_role_is_bound() {
    let admin = setup_with_roles().await;
    // What a cluster admin (and the chart, from its values) sets up: the
    // custom roles, and `bind` for the operator on the assignable one only.
    let role = |name: &str, labels: serde_json::Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})
    };
    apply(
        &admin,
        role(CUSTOM_ROLE, json!({"workspaces.dev/assignable": "true"})),
    )
    .await;
    apply(&admin, role(UNLABELLED_ROLE, json!({}))).await;
    apply(
        &admin,
        role(UNLISTED_ROLE, json!({"workspaces.dev/assignable": "true"})),
    )
    .await;
    apply(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "member-tests:operator-binds-custom-roles"},
               "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                          "verbs": ["bind"], "resourceNames": [CUSTOM_ROLE]}]}),
    )
    .await;
    apply(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "member-tests:operator-binds-custom-roles"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "member-tests:operator-binds-custom-roles"},
               "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SERVICE_ACCOUNT,
                             "namespace": OPERATOR_NAMESPACE}]}),
    )
    .await;

    let ws = support::unique("custom");
    let _dump = support::dump_on_failure(&[&ws]);
    apply(
        &admin,
        workspace(&ws, "User", &format!("owner-{ws}@example.com"), json!({})),
    )
    .await;
    wait_workspace(&admin, &ws).await;
    let frank = format!("frank-{ws}@example.com");
    apply(
        &admin,
        member(&ws, "frank", user(&frank), cluster_role(CUSTOM_ROLE)),
    )
    .await;
    let m = wait_active(&admin, &ws, "frank").await;
    let rb_name = m.status.unwrap().role_binding.unwrap();
    assert!(
        rb_name.starts_with("wsm-frank-member-tests-configmap-reader-"),
        "{rb_name}"
    );
    objects::wait_can(&frank, &[], "list", "configmaps", Some(&ws), None, true).await;
    assert!(!can(&frank, &[], "list", "pods", Some(&ws), None).await);

    for (name, cluster_role) in [
        ("admin", "cluster-admin"),
        ("unlabelled", UNLABELLED_ROLE),
        ("unlisted", UNLISTED_ROLE),
    ] {
        let who = format!("{name}-{ws}@example.com");
        apply(
            &admin,
            member(&ws, name, user(&who), objects::cluster_role(cluster_role)),
        )
        .await;
        let m = wait_member(&admin, &ws, name, "False", "RoleNotAssignable").await;
        assert_eq!(m.status.unwrap().role_binding, None);
        assert!(
            bindings_of(&admin, &ws, name).await.is_empty(),
            "{cluster_role}"
        );
        assert!(!can(&who, &[], "list", "configmaps", Some(&ws), None).await);
    }
    assert_bindings_match_members(&admin, &ws).await;
}

#[tokio::test]
async fn organization_workspaces_admit_only_organization_members_and_follow_changes() {
    let admin = setup_with_roles().await;
    let org = support::unique("orgm");
    let ws = support::unique("orgm-ws");
    let elsewhere = support::unique("orgm-elsewhere");
    let _dump = support::dump_on_failure(&[&ws]);
    let alice = format!("alice@{org}.io");
    let bob = format!("bob@{org}.io");
    let team = format!("{org}-eng");
    apply(
        &admin,
        objects::organization_with(&org, &[&alice], vec![group(&team)], json!({})),
    )
    .await;
    apply(&admin, workspace(&ws, "Organization", &org, json!({}))).await;
    wait_workspace(&admin, &ws).await;

    // A group of the organization: its members get the role.
    apply(&admin, member(&ws, "eng", group(&team), "Developer")).await;
    wait_active(&admin, &ws, "eng").await;
    let someone = format!("someone@{org}.io");
    objects::wait_can(
        &someone,
        &[&team],
        "create",
        "deployments.apps",
        Some(&ws),
        None,
        true,
    )
    .await;

    // bob is not in the organization.
    apply(&admin, member(&ws, "bob", user(&bob), "Viewer")).await;
    let m = wait_member(&admin, &ws, "bob", "False", "NotAnOrganizationMember").await;
    assert_eq!(m.status.unwrap().phase, Some(MemberPhase::Pending));
    assert!(bindings_of(&admin, &ws, "bob").await.is_empty());
    assert!(!can(&bob, &[], "list", "pods", Some(&ws), None).await);

    // A ServiceAccount of one of the organization's workspaces belongs; one
    // from elsewhere does not.
    apply(
        &admin,
        member(&ws, "ci", service_account(&ws, "ci"), "Runner"),
    )
    .await;
    wait_active(&admin, &ws, "ci").await;
    apply(
        &admin,
        member(
            &ws,
            "outside-ci",
            service_account(&elsewhere, "ci"),
            "Runner",
        ),
    )
    .await;
    wait_member(
        &admin,
        &ws,
        "outside-ci",
        "False",
        "NotAnOrganizationMember",
    )
    .await;

    // Adding bob to the organization makes his member Active by itself.
    apply(
        &admin,
        objects::organization_with(&org, &[&alice], vec![group(&team), user(&bob)], json!({})),
    )
    .await;
    wait_active(&admin, &ws, "bob").await;
    objects::wait_can(&bob, &[], "list", "pods", Some(&ws), None, true).await;
    wait_member_count(&admin, &ws, 3).await;

    // Removing him takes the access away again.
    apply(
        &admin,
        objects::organization_with(&org, &[&alice], vec![group(&team)], json!({})),
    )
    .await;
    wait_member(&admin, &ws, "bob", "False", "NotAnOrganizationMember").await;
    objects::wait_can(&bob, &[], "list", "pods", Some(&ws), None, false).await;
    // The organization's admin kept Owner throughout.
    assert!(
        can(
            &alice,
            &[],
            "create",
            "workspacemembers.workspaces.dev",
            Some(&ws),
            None
        )
        .await
    );
    assert_bindings_match_members(&admin, &ws).await;
}

#[tokio::test]
async fn the_member_limit_lets_the_oldest_in_and_raising_it_lets_the_next() {
    let admin = setup_with_roles().await;
    let org = support::unique("orgl");
    let ws = support::unique("orgl-ws");
    let _dump = support::dump_on_failure(&[&ws]);
    let (gil, hal) = (format!("gil@{org}.io"), format!("hal@{org}.io"));
    apply(
        &admin,
        objects::organization_with(
            &org,
            &[&format!("alice@{org}.io")],
            vec![user(&gil), user(&hal)],
            objects::members_per_workspace(1),
        ),
    )
    .await;
    apply(&admin, workspace(&ws, "Organization", &org, json!({}))).await;
    wait_workspace(&admin, &ws).await;
    apply(&admin, member(&ws, "gil", user(&gil), "Viewer")).await;
    wait_active(&admin, &ws, "gil").await;
    apply(&admin, member(&ws, "hal", user(&hal), "Viewer")).await;
    wait_member(&admin, &ws, "hal", "False", "MemberLimitExceeded").await;
    assert!(bindings_of(&admin, &ws, "hal").await.is_empty());

    // Lowering the limit takes nothing away (once the operator has looked at
    // gil again, gil is still Active); raising it lets hal in.
    let since = member_operator().reconciled("member", &ws, "gil").len();
    apply(
        &admin,
        objects::organization_with(
            &org,
            &[&format!("alice@{org}.io")],
            vec![user(&gil), user(&hal)],
            objects::members_per_workspace(0),
        ),
    )
    .await;
    member_operator()
        .wait_reconciled_since("member", &ws, "gil", since, TIMEOUT)
        .await;
    wait_active(&admin, &ws, "gil").await;
    assert!(!bindings_of(&admin, &ws, "gil").await.is_empty());
    apply(
        &admin,
        objects::organization_with(
            &org,
            &[&format!("alice@{org}.io")],
            vec![user(&gil), user(&hal)],
            objects::members_per_workspace(2),
        ),
    )
    .await;
    wait_active(&admin, &ws, "hal").await;
    assert_bindings_match_members(&admin, &ws).await;
}

#[tokio::test]
async fn a_deleted_member_loses_access_and_the_owner_never_does() {
    let admin = setup_with_roles().await;
    let ws = support::unique("gone");
    let _dump = support::dump_on_failure(&[&ws]);
    let owner = format!("owner-{ws}@example.com");
    let ivy = format!("ivy-{ws}@example.com");
    apply(&admin, workspace(&ws, "User", &owner, json!({}))).await;
    wait_workspace(&admin, &ws).await;
    apply(&admin, member(&ws, "ivy", user(&ivy), "Developer")).await;
    // The owner listed as a mere Viewer member too.
    apply(
        &admin,
        member(&ws, "owner-as-viewer", user(&owner), "Viewer"),
    )
    .await;
    wait_active(&admin, &ws, "ivy").await;
    wait_active(&admin, &ws, "owner-as-viewer").await;
    wait_member_count(&admin, &ws, 2).await;
    objects::wait_can(
        &ivy,
        &[],
        "create",
        "deployments.apps",
        Some(&ws),
        None,
        true,
    )
    .await;
    delete_member(&admin, &ws, "ivy").await;
    objects::wait_can(&ivy, &[], "list", "pods", Some(&ws), None, false).await;
    wait_member_count(&admin, &ws, 1).await;
    delete_member(&admin, &ws, "owner-as-viewer").await;
    wait_member_count(&admin, &ws, 0).await;
    assert_bindings_match_members(&admin, &ws).await;
    assert!(
        can(
            &owner,
            &[],
            "create",
            "workspacemembers.workspaces.dev",
            Some(&ws),
            None
        )
        .await
    );
    assert!(can(&owner, &[], "create", "secrets", Some(&ws), None).await);
    assert!(
        can(
            &owner,
            &[],
            "administer",
            "workspaces.workspaces.dev",
            Some(&ws),
            Some(&ws)
        )
        .await
    );
}

#[tokio::test]
async fn a_member_outside_any_workspace_reports_workspace_not_found() {
    let admin = setup_with_roles().await;
    let ns = support::unique("plain");
    objects::create_namespace(&admin, json!({"name": ns})).await;
    // A label alone does not make a namespace a workspace's.
    Api::<Namespace>::all(admin.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"workspaces.dev/workspace": ns}}})),
        )
        .await
        .unwrap();
    let who = format!("jo-{ns}@example.com");
    apply(&admin, member(&ns, "jo", user(&who), "Viewer")).await;
    wait_member(&admin, &ns, "jo", "False", "WorkspaceNotFound").await;
    assert!(bindings_of(&admin, &ns, "jo").await.is_empty());
}

#[tokio::test]
async fn a_deleted_or_edited_member_binding_is_repaired_and_a_converged_member_costs_no_writes() {
    let admin = setup_with_roles().await;
    let ws = support::unique("mdrift");
    let _dump = support::dump_on_failure(&[&ws]);
    apply(
        &admin,
        workspace(&ws, "User", &format!("owner-{ws}@example.com"), json!({})),
    )
    .await;
    wait_workspace(&admin, &ws).await;
    let kim = format!("kim-{ws}@example.com");
    apply(&admin, member(&ws, "kim", user(&kim), "Runner")).await;
    wait_active(&admin, &ws, "kim").await;
    let rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), &ws);

    rbs.delete("wsm-kim-runner", &DeleteParams::default())
        .await
        .unwrap();
    support::wait_for("the member binding to come back", TIMEOUT, || async {
        let rb = rbs.get_opt("wsm-kim-runner").await.ok().flatten()?;
        rb.metadata.deletion_timestamp.is_none().then_some(())
    })
    .await;
    objects::wait_can(&kim, &[], "create", "jobs.batch", Some(&ws), None, true).await;

    let operator = member_operator();
    let repairs_before = operator.reconciled("member", &ws, "kim").len();
    rbs.patch(
        "wsm-kim-runner",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(json!([{"op": "add", "path": "/subjects/-", "value": {"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}}])).unwrap()),
    )
    .await
    .unwrap();
    support::wait_for(
        "mallory to be removed from the member binding",
        TIMEOUT,
        || async {
            let rb = rbs.get("wsm-kim-runner").await.ok()?;
            (rb.subjects.unwrap_or_default().len() == 1).then_some(())
        },
    )
    .await;

    // Converged: touching the member and its Workspace makes the operator
    // look again, and it writes nothing in the namespace.
    // The reconcile that removed mallory has finished first.
    operator
        .wait_reconciled_since("member", &ws, "kim", repairs_before, TIMEOUT)
        .await;
    let members: Api<WorkspaceMember> = Api::namespaced(admin.clone(), &ws);
    let plane = support::plane();
    let mark = plane.audit_mark();
    let touched = json!({"metadata": {"annotations": {"touched": "1"}}});
    let kim_version = members
        .patch("kim", &PatchParams::default(), &Patch::Merge(&touched))
        .await
        .unwrap()
        .resource_version()
        .unwrap();
    let ws_version = Api::<Workspace>::all(admin.clone())
        .patch(&ws, &PatchParams::default(), &Patch::Merge(&touched))
        .await
        .unwrap()
        .resource_version()
        .unwrap();
    operator
        .wait_reconciled("member", &ws, "kim", &kim_version, TIMEOUT)
        .await;
    operator
        .wait_reconciled("workspace", "", &ws, &ws_version, TIMEOUT)
        .await;
    let writes: Vec<String> = plane
        .writes_since(mark, OPERATOR_USER)
        .into_iter()
        .filter(|w| w.namespace == ws)
        .map(|w| w.to_string())
        .collect();
    assert!(
        writes.is_empty(),
        "writes on a converged member: {writes:#?}"
    );
    assert_bindings_match_members(&admin, &ws).await;
}

#[tokio::test]
async fn a_member_created_with_its_workspace_reports_only_its_grant() {
    // A member whose workspace is still being provisioned waits for it
    // instead of reporting WorkspaceNotReady first: its first status is its
    // grant, and it is the only one.
    let admin = setup_with_roles().await;
    let name = support::unique("together");
    let owner = format!("owner-{name}@example.com");
    // A cluster admin prepared the namespace for adoption, so the member can
    // be created before the operator has provisioned anything.
    objects::create_namespace(
        &admin,
        json!({
                "name": name, "annotations": {"workspaces.dev/adopt": name}}),
    )
    .await;

    // Every Ready reason the member reports, in order, from a watch.
    let api: Api<WorkspaceMember> = Api::namespaced(admin.clone(), &name);
    let reasons = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let watching = {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let reasons = reasons.clone();
        let stream = watcher(api.clone(), watcher::Config::default()).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(m)) = stream.next().await {
                let reason = m
                    .status
                    .as_ref()
                    .and_then(|s| ready_of(&s.conditions))
                    .map(|c| c.reason.clone());
                if let Some(reason) = reason {
                    let mut seen = reasons.lock().unwrap();
                    if seen.last() != Some(&reason) {
                        seen.push(reason);
                    }
                }
            }
        })
    };

    apply(&admin, workspace(&name, "User", &owner, json!({}))).await;
    // A group: a user would be invited, and answer, first.
    apply(&admin, member(&name, "jo", group("jo-team"), "Viewer")).await;
    wait_active(&admin, &name, "jo").await;
    wait_workspace(&admin, &name).await;
    // The watch has seen the Active status too before we look.
    support::wait_for("the watch to see the member's grant", TIMEOUT, || {
        let reasons = reasons.clone();
        async move {
            let seen = reasons.lock().unwrap();
            seen.contains(&"Provisioned".to_string()).then_some(())
        }
    })
    .await;
    watching.abort();
    assert_eq!(
        *reasons.lock().unwrap(),
        ["Provisioned"],
        "the member reported something before its grant"
    );
}
