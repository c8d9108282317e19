//! Invitations in personal workspaces, as the people involved live them: the
//! owner invites with `kubectl apply`, the invitee reads and answers with
//! `kubectl`, strangers see nothing. The API server's authorizer
//! (SubjectAccessReviews as each user) says what everyone may do before and
//! after each step.

mod support;

use std::time::Duration;

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::kubectl::Kubectl;
use support::objects::{
    accept, apply, can, create, group, member, organization, patch_member, personal_workspace,
    response_patch, service_account, user, wait_gone, wait_member_phase, wait_ready, workspace,
};
use workspace_operator::api::WorkspaceMember;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A personal workspace of a new user, Ready; returns (workspace, owner).
async fn new_personal_workspace(admin: &Client, prefix: &str) -> (String, String) {
    let ws = support::unique(prefix);
    let owner = format!("owner-{ws}@example.com");
    personal_workspace(admin, &ws, &owner).await;
    (ws, owner)
}

/// The WorkspaceMember manifest an owner writes to invite `subject`.
fn invitation_yaml(ns: &str, name: &str, subject: &str, role: &str) -> String {
    format!(
        "apiVersion: workspaces.dev/v1alpha1\nkind: WorkspaceMember\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
         spec:\n  subject: {{kind: User, name: \"{subject}\"}}\n  role: {role}\n"
    )
}

/// What `user` may do in `ns`, as the authorizer answers: each check with
/// the expected answer.
async fn assert_may(user: &str, ns: &str, checks: &[(&str, &str, Option<&str>, bool)]) {
    for (verb, resource, name, want) in checks {
        let got = can(user, &[], verb, resource, Some(ns), *name).await;
        assert_eq!(
            got, *want,
            "{user} may {verb} {resource} {name:?} in {ns}: expected {want}, got {got}"
        );
    }
}

/// Waits until `user`'s answer to `verb` on `resource` `name` (none when
/// empty) in `ns` is `want`.
async fn wait_may(user: &str, ns: &str, verb: &str, resource: &str, name: &str, want: bool) {
    let name = Some(name).filter(|n| !n.is_empty());
    support::objects::wait_can(user, &[], verb, resource, Some(ns), name, want).await;
}

/// Waits until `user` may (`want`) answer, that is patch, the member `name`.
async fn wait_may_answer(user: &str, ns: &str, name: &str, want: bool) {
    wait_may(
        user,
        ns,
        "patch",
        "workspacemembers.workspaces.dev",
        name,
        want,
    )
    .await;
}

/// Waits until `user` may (`want`) read the member `name`.
async fn wait_may_read(user: &str, ns: &str, name: &str, want: bool) {
    wait_may(
        user,
        ns,
        "get",
        "workspacemembers.workspaces.dev",
        name,
        want,
    )
    .await;
}

async fn answering_grant_exists(admin: &Client, ns: &str, member: &str) -> (bool, bool) {
    let name = format!("wsi-{member}");
    let role = Api::<Role>::namespaced(admin.clone(), ns)
        .get_opt(&name)
        .await
        .unwrap();
    let binding = Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .get_opt(&name)
        .await
        .unwrap();
    (role.is_some(), binding.is_some())
}

#[tokio::test]
async fn an_invitee_reads_and_accepts_and_only_then_gets_the_role() {
    let admin = support::operator::setup().await;
    let (ws, owner) = new_personal_workspace(&admin, "invite").await;
    let _dump = support::dump_on_failure(&[&ws]);
    let bob = format!("bob-{ws}@example.com");
    let eve = format!("eve-{ws}@example.com");
    let alice = Kubectl::as_user(&owner, &[]);
    let as_bob = Kubectl::as_user(&bob, &[]);

    // The owner invites with kubectl apply.
    alice
        .apply(&invitation_yaml(&ws, "bob", &bob, "Developer"))
        .success();
    let invited = wait_member_phase(&admin, &ws, "bob", "Invited", TIMEOUT).await;
    let status = invited.status.clone().unwrap();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvitationPending")
    );
    let expires = status.invitation_expires_at.expect("invitationExpiresAt").0;
    let created = invited.creation_timestamp().unwrap().0;
    assert_eq!(
        expires.duration_since(created).as_secs(),
        7 * 24 * 3600,
        "the default TTL is 7 days"
    );
    assert!(status.role_binding.is_none());
    assert_eq!(
        answering_grant_exists(&admin, &ws, "bob").await,
        (true, true)
    );

    // While invited: bob may read and answer his own member, and nothing else.
    wait_may_answer(&bob, &ws, "bob", true).await;
    assert_may(
        &bob,
        &ws,
        &[
            ("get", "workspacemembers.workspaces.dev", Some("bob"), true),
            (
                "update",
                "workspacemembers.workspaces.dev",
                Some("bob"),
                false,
            ),
            (
                "delete",
                "workspacemembers.workspaces.dev",
                Some("bob"),
                false,
            ),
            ("list", "workspacemembers.workspaces.dev", None, false),
            (
                "get",
                "workspacemembers.workspaces.dev",
                Some("other"),
                false,
            ),
            ("get", "pods", None, false),
            ("create", "deployments.apps", None, false),
            ("get", "secrets", None, false),
        ],
    )
    .await;
    assert_may(
        &eve,
        &ws,
        &[("get", "workspacemembers.workspaces.dev", Some("bob"), false)],
    )
    .await;
    let out = as_bob.run(&["-n", &ws, "get", "wsm", "bob"]).success();
    assert!(out.stdout.contains("Invited"), "{}", out.stdout);
    as_bob.run(&["describe", "ws", &ws]).success();
    Kubectl::as_user(&eve, &[])
        .run(&["-n", &ws, "get", "wsm", "bob"])
        .refused(&["forbidden"]);

    // Nobody answers for bob; bob changes nothing but the answer.
    patch_member(&alice, &ws, "bob", &response_patch("Accepted"))
        .refused(&["only the invitee", &bob]);
    patch_member(&as_bob, &ws, "bob", r#"{"spec":{"role":"Owner"}}"#).refused(&["denied"]);
    patch_member(
        &as_bob,
        &ws,
        "bob",
        &json!({"spec": {"subject": {"kind": "User", "name": eve}}}).to_string(),
    )
    .refused(&["spec.subject cannot change"]);
    patch_member(
        &as_bob,
        &ws,
        "bob",
        r#"{"metadata":{"labels":{"team":"mine"}}}"#,
    )
    .refused(&["change nothing else"]);

    // bob accepts: Active, the role is his, the answering grant is gone.
    accept(&admin, &ws, "bob", &bob, TIMEOUT).await;
    wait_may(&bob, &ws, "create", "deployments.apps", "", true).await;
    wait_may_answer(&bob, &ws, "bob", false).await;
    assert_eq!(
        answering_grant_exists(&admin, &ws, "bob").await,
        (false, false)
    );
    // Without the grant, bob cannot touch his member any more; even as an
    // Owner, who may edit members, he cannot take his answer back.
    patch_member(&as_bob, &ws, "bob", &response_patch("Declined")).refused(&["forbidden"]);
    patch_member(&alice, &ws, "bob", r#"{"spec":{"role":"Owner"}}"#).success();
    wait_may_answer(&bob, &ws, "bob", true).await;
    patch_member(&as_bob, &ws, "bob", &response_patch("Declined")).refused(&["cannot change"]);

    // A role change needs no new invitation; a new subject is refused.
    patch_member(&alice, &ws, "bob", r#"{"spec":{"role":"Viewer"}}"#).success();
    wait_may(&bob, &ws, "create", "deployments.apps", "", false).await;
    let active = wait_member_phase(&admin, &ws, "bob", "Active", TIMEOUT).await;
    assert_eq!(
        active.status.unwrap().role_binding.as_deref(),
        Some("wsm-bob-viewer")
    );
    patch_member(
        &alice,
        &ws,
        "bob",
        &json!({"spec": {"subject": {"kind": "User", "name": eve}}}).to_string(),
    )
    .refused(&["spec.subject cannot change"]);
}

#[tokio::test]
async fn a_declined_invitation_grants_nothing_and_inviting_again_starts_over() {
    let admin = support::operator::setup().await;
    let (ws, owner) = new_personal_workspace(&admin, "decline").await;
    let _dump = support::dump_on_failure(&[&ws]);
    let carol = format!("carol-{ws}@example.com");
    let alice = Kubectl::as_user(&owner, &[]);
    alice
        .apply(&invitation_yaml(&ws, "carol", &carol, "Runner"))
        .success();
    wait_member_phase(&admin, &ws, "carol", "Invited", TIMEOUT).await;
    wait_may_answer(&carol, &ws, "carol", true).await;

    patch_member(
        &Kubectl::as_user(&carol, &[]),
        &ws,
        "carol",
        &response_patch("Declined"),
    )
    .success();
    let declined = wait_member_phase(&admin, &ws, "carol", "Declined", TIMEOUT).await;
    let ready = declined
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready.reason, "InvitationDeclined");
    assert!(
        ready.message.contains("delete workspacemember carol"),
        "{}",
        ready.message
    );
    wait_may_read(&carol, &ws, "carol", false).await;
    assert_may(&carol, &ws, &[("create", "jobs.batch", None, false)]).await;
    assert_eq!(
        answering_grant_exists(&admin, &ws, "carol").await,
        (false, false)
    );

    // The record stays until an Owner deletes it; a new invitation starts over.
    let members: Api<WorkspaceMember> = Api::namespaced(admin.clone(), &ws);
    alice
        .run(&["-n", &ws, "delete", "workspacemember", "carol"])
        .success();
    wait_gone(&members, "carol", TIMEOUT).await;
    alice
        .apply(&invitation_yaml(&ws, "carol", &carol, "Runner"))
        .success();
    wait_member_phase(&admin, &ws, "carol", "Invited", TIMEOUT).await;
    accept(&admin, &ws, "carol", &carol, TIMEOUT).await;
    wait_may(&carol, &ws, "create", "jobs.batch", "", true).await;
}

#[tokio::test]
async fn groups_service_accounts_and_organization_members_are_not_invited() {
    let admin = support::operator::setup().await;
    let (ws, _owner) = new_personal_workspace(&admin, "noinvite").await;
    let _dump = support::dump_on_failure(&[&ws]);
    apply(&admin, member(&ws, "eng", group("eng"), "Viewer")).await;
    apply(
        &admin,
        member(&ws, "agent", service_account(&ws, "agent"), "Worker"),
    )
    .await;
    wait_member_phase(&admin, &ws, "eng", "Active", TIMEOUT).await;
    wait_member_phase(&admin, &ws, "agent", "Active", TIMEOUT).await;

    let org = support::unique("inviteorg");
    let admin_user = format!("admin-{org}@example.com");
    let dan = format!("dan-{org}@example.com");
    create(
        &admin,
        organization(
            &org,
            &[&admin_user],
            json!({"spec": {"members": [user(&dan)]}}),
        ),
    )
    .await;
    let ows = support::unique("orgws");
    create(&admin, workspace(&ows, "Organization", &org, json!({}))).await;
    wait_ready(&admin, &ows, "True", Some("Provisioned"), TIMEOUT).await;
    apply(&admin, member(&ows, "dan", user(&dan), "Developer")).await;
    wait_member_phase(&admin, &ows, "dan", "Active", TIMEOUT).await;
    assert_eq!(
        answering_grant_exists(&admin, &ows, "dan").await,
        (false, false)
    );

    // Deleting an invitation removes its answering grant with it.
    let erin = format!("erin-{ws}@example.com");
    apply(&admin, member(&ws, "erin", user(&erin), "Viewer")).await;
    wait_member_phase(&admin, &ws, "erin", "Invited", TIMEOUT).await;
    wait_may_read(&erin, &ws, "erin", true).await;
    Api::<WorkspaceMember>::namespaced(admin.clone(), &ws)
        .delete("erin", &DeleteParams::default())
        .await
        .unwrap();
    wait_may_read(&erin, &ws, "erin", false).await;
    let roles: Api<Role> = Api::namespaced(admin.clone(), &ws);
    wait_gone(&roles, "wsi-erin", TIMEOUT).await;
}
