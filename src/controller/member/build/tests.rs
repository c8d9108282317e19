use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::PartialObjectMeta;

use super::*;
use crate::api::conditions;
use crate::api::{
    AccountRef, OrganizationLimits, OrganizationSpec, OrganizationSubject, WorkspaceMemberSpec,
    WorkspaceSpec, WorkspaceStatus,
};
use crate::api::{InvitationResponse, MemberPhase, WorkspaceMemberStatus};

const NS: &str = "acme-prod";

/// `--invitation-ttl` in these tests: a day.
const TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The time decisions are taken at in these tests: an hour after the epoch.
fn now() -> Timestamp {
    Timestamp::from_second(3_600).unwrap()
}

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).unwrap())
}

fn workspace(owner: AccountRef, phase: WorkspacePhase) -> Workspace {
    let mut ws = Workspace::new(NS, WorkspaceSpec::owned_by(owner));
    ws.metadata.uid = Some("ws-uid".into());
    ws.status = Some(WorkspaceStatus {
        phase: Some(phase),
        namespace: Some(NS.into()),
        ..Default::default()
    });
    ws
}

fn personal() -> Workspace {
    workspace(AccountRef::user("alice@acme.io"), WorkspacePhase::Active)
}

fn org_workspace() -> Workspace {
    workspace(AccountRef::organization("acme"), WorkspacePhase::Active)
}

fn organization(members: &[OrganizationSubject], limit: Option<i32>) -> Organization {
    Organization::new(
        "acme",
        OrganizationSpec {
            admins: vec![OrganizationSubject::user("alice@acme.io")],
            members: members.to_vec(),
            limits: limit.map(|l| OrganizationLimits {
                workspaces: None,
                members_per_workspace: Some(l),
            }),
            ..Default::default()
        },
    )
}

/// A member created at `created` (seconds); a User has accepted its
/// invitation (invitations themselves are tested in `invitation/tests.rs`).
fn member(name: &str, subject: Subject, role: WorkspaceRole, created: i64) -> WorkspaceMember {
    let response = (subject.kind == SubjectKind::User).then_some(InvitationResponse::Accepted);
    let mut m = WorkspaceMember::new(
        name,
        WorkspaceMemberSpec {
            subject,
            role: Some(role),
            cluster_role: None,
            response,
        },
    );
    m.metadata.namespace = Some(NS.into());
    m.metadata.uid = Some(format!("uid-{name}"));
    m.metadata.generation = Some(1);
    m.metadata.creation_timestamp = Some(at(created));
    m
}

fn custom(name: &str, subject: Subject, cluster_role: &str) -> WorkspaceMember {
    let mut m = member(name, subject, WorkspaceRole::Viewer, 10);
    m.spec.role = None;
    m.spec.cluster_role = Some(cluster_role.into());
    m
}

/// The binding the operator would have created for `m` with `role`.
fn held(m: &WorkspaceMember, role: &str) -> Arc<RoleBinding> {
    Arc::new(role_binding(m, NS, role))
}

struct World {
    workspace: Option<Workspace>,
    claimant: Option<Workspace>,
    organization: Option<Organization>,
    org_namespaces: Vec<String>,
    members: Vec<Arc<WorkspaceMember>>,
    bindings: Vec<Arc<RoleBinding>>,
}

impl World {
    fn new(workspace: Workspace) -> Self {
        World {
            workspace: Some(workspace),
            claimant: None,
            organization: None,
            org_namespaces: Vec::new(),
            members: Vec::new(),
            bindings: Vec::new(),
        }
    }

    fn with_members(mut self, members: &[&WorkspaceMember]) -> Self {
        self.members = members.iter().map(|m| Arc::new((*m).clone())).collect();
        self
    }

    fn plan(&self, m: &WorkspaceMember) -> Plan {
        let assignable = |name: &str| name == "platform:deployer";
        plan(&Inputs {
            member: m,
            workspace: self.workspace.as_ref(),
            claimant: self.claimant.as_ref(),
            organization: self.organization.as_ref(),
            organization_namespaces: &self.org_namespaces,
            members: &self.members,
            bindings: &self.bindings,
            is_assignable: &assignable,
            invitation_ttl: TTL,
            now: now(),
        })
    }
}

fn blocked(plan: &Plan) -> &Blocked {
    match plan {
        Plan::Blocked(b) => b,
        Plan::Grant(rb) => panic!("expected a block, got a grant of {}", rb.name_any()),
        Plan::Invite(_) => panic!("expected a block, got an invitation"),
    }
}

fn granted(plan: &Plan) -> &RoleBinding {
    match plan {
        Plan::Grant(rb) => rb,
        Plan::Blocked(b) => panic!("expected a grant, got {b:?}"),
        Plan::Invite(_) => panic!("expected a grant, got an invitation"),
    }
}

#[test]
fn a_member_of_a_personal_workspace_gets_one_labelled_owned_binding() {
    let bob = member(
        "bob",
        Subject::user("bob@acme.io"),
        WorkspaceRole::Developer,
        10,
    );
    let world = World::new(personal()).with_members(&[&bob]);
    let rb = granted(&world.plan(&bob)).clone();
    assert_eq!(rb.name_any(), "wsm-bob-developer");
    assert_eq!(rb.namespace().as_deref(), Some(NS));
    assert_eq!(rb.role_ref.name, "workspaces:developer");
    assert_eq!(rb.role_ref.kind, "ClusterRole");
    let subjects = rb.subjects.clone().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "User");
    assert_eq!(subjects[0].name, "bob@acme.io");
    assert_eq!(
        subjects[0].api_group.as_deref(),
        Some("rbac.authorization.k8s.io")
    );
    let labels = rb.labels();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("workspace-operator")
    );
    assert_eq!(
        labels.get("workspaces.dev/workspace").map(String::as_str),
        Some(NS)
    );
    assert_eq!(
        labels.get("workspaces.dev/member").map(String::as_str),
        Some("bob")
    );
    let owner = &rb.owner_references()[0];
    assert_eq!(owner.kind, "WorkspaceMember");
    assert_eq!(owner.uid, "uid-bob");
    assert_eq!(owner.controller, Some(true));
}

#[test]
fn each_built_in_role_binds_its_cluster_role() {
    for role in WorkspaceRole::ALL {
        let m = member("m", Subject::group("eng"), role, 10);
        let world = World::new(personal()).with_members(&[&m]);
        let rb = granted(&world.plan(&m)).clone();
        assert_eq!(rb.role_ref.name, role.cluster_role());
        assert_eq!(
            rb.name_any(),
            format!("wsm-m-{}", role.to_string().to_lowercase())
        );
        assert_eq!(rb.subjects.unwrap()[0].kind, "Group");
    }
}

#[test]
fn a_service_account_subject_keeps_its_namespace_and_has_no_api_group() {
    let sa = member(
        "ci",
        Subject::service_account("ci-system", "runner"),
        WorkspaceRole::Runner,
        10,
    );
    let rb = granted(&World::new(personal()).with_members(&[&sa]).plan(&sa)).clone();
    let subject = &rb.subjects.unwrap()[0];
    assert_eq!(subject.kind, "ServiceAccount");
    assert_eq!(subject.name, "runner");
    assert_eq!(subject.namespace.as_deref(), Some("ci-system"));
    assert_eq!(subject.api_group, None);
}

#[test]
fn binding_names_change_with_the_role_and_stay_valid_when_long() {
    assert_eq!(binding_name("bob", "workspaces:viewer"), "wsm-bob-viewer");
    assert_ne!(
        binding_name("bob", "workspaces:viewer"),
        binding_name("bob", "workspaces:developer")
    );
    // Custom roles: readable, and distinct even when they slug alike.
    let a = binding_name("bob", "platform:deployer");
    let b = binding_name("bob", "platform-deployer");
    assert!(a.starts_with("wsm-bob-platform-deployer-"), "{a}");
    assert_ne!(a, b);
    // A custom role called like a built-in one does not share its binding.
    assert_ne!(
        binding_name("bob", "viewer"),
        binding_name("bob", "workspaces:viewer")
    );
    // Deterministic.
    assert_eq!(a, binding_name("bob", "platform:deployer"));

    let long = "m".repeat(250);
    let name = binding_name(&long, "workspaces:owner");
    assert!(name.len() <= 253, "{} bytes", name.len());
    assert_ne!(name, binding_name(&long, "workspaces:viewer"));
    assert_eq!(name, binding_name(&long, "workspaces:owner"));
}

#[test]
fn member_label_is_a_valid_label_value_for_any_member_name() {
    assert_eq!(member_label("bob"), "bob");
    assert_eq!(member_label("bob.smith"), "bob.smith");
    let long = format!("{}.example", "a".repeat(100));
    let label = member_label(&long);
    assert!(labels::is_label_value(&label), "{label}");
    assert_ne!(label, member_label(&format!("{}.other", "a".repeat(100))));
}

#[test]
fn subjects_are_the_same_identity_by_kind_name_and_service_account_namespace() {
    assert!(same_subject(&Subject::user("bob"), &Subject::user("bob")));
    assert!(!same_subject(&Subject::user("bob"), &Subject::group("bob")));
    assert!(!same_subject(
        &Subject::service_account("a", "ci"),
        &Subject::service_account("b", "ci")
    ));
    assert!(same_subject(
        &Subject::service_account("a", "ci"),
        &Subject::service_account("a", "ci")
    ));
    let mut empty_ns = Subject::user("bob");
    empty_ns.namespace = Some(String::new());
    assert!(same_subject(&empty_ns, &Subject::user("bob")));
}

mod decisions;

#[test]
fn own_bindings_are_those_owned_by_the_members_uid() {
    let bob = member("bob", Subject::user("bob"), WorkspaceRole::Viewer, 10);
    let carol = member("carol", Subject::user("carol"), WorkspaceRole::Viewer, 10);
    let mine_old = held(&bob, "workspaces:viewer");
    let mine_new = held(&bob, "workspaces:developer");
    let hers = held(&carol, "workspaces:viewer");
    let mut unlabelled = (*held(&bob, "workspaces:owner")).clone();
    unlabelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove(labels::MEMBER);
    let mut elsewhere = (*held(&bob, "workspaces:runner")).clone();
    elsewhere.metadata.namespace = Some("other".into());
    let all = vec![
        mine_new.clone(),
        hers,
        mine_old.clone(),
        Arc::new(unlabelled),
        Arc::new(elsewhere),
    ];
    let own: Vec<String> = own_bindings(&bob, &all)
        .iter()
        .map(|rb| rb.name_any())
        .collect();
    assert_eq!(own, ["wsm-bob-developer", "wsm-bob-viewer"]);
}

#[test]
fn status_of_a_grant_is_active_with_the_binding_and_ready() {
    let bob = member("bob", Subject::user("bob"), WorkspaceRole::Developer, 10);
    let plan = World::new(personal()).with_members(&[&bob]).plan(&bob);
    let status = compute_status(&bob, &plan, &["wsm-bob-developer".into()], None, &at(100));
    assert_eq!(status.phase, Some(MemberPhase::Active));
    assert_eq!(status.role_binding.as_deref(), Some("wsm-bob-developer"));
    assert_eq!(status.observed_generation, Some(1));
    let ready = conditions::find_condition(&status.conditions, conditions::READY).unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(ready.reason, reason::PROVISIONED);
    assert_eq!(ready.observed_generation, Some(1));
    assert!(ready.message.contains("Developer"), "{}", ready.message);
    assert!(conditions::find_condition(&status.conditions, conditions::STALLED).is_none());

    // Computing it again later changes nothing but would keep the time.
    let mut again = bob.clone();
    again.status = Some(status.clone());
    let next = compute_status(&again, &plan, &["wsm-bob-developer".into()], None, &at(200));
    assert!(same_status(&status, &next));
    assert_eq!(next.conditions, status.conditions);
}

#[test]
fn status_of_a_block_is_pending_stalled_and_drops_a_revoked_binding() {
    let first = member("first", Subject::user("bob"), WorkspaceRole::Viewer, 10);
    let mut second = member("second", Subject::user("bob"), WorkspaceRole::Viewer, 20);
    second.status = Some(WorkspaceMemberStatus {
        phase: Some(MemberPhase::Active),
        role_binding: Some("wsm-second-viewer".into()),
        ..Default::default()
    });
    let plan = World::new(personal())
        .with_members(&[&first, &second])
        .plan(&second);
    let status = compute_status(&second, &plan, &[], None, &at(100));
    assert_eq!(status.phase, Some(MemberPhase::Pending));
    assert_eq!(status.role_binding, None);
    assert!(conditions::is_true(&status.conditions, conditions::STALLED));
    let ready = conditions::find_condition(&status.conditions, conditions::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::DUPLICATE_SUBJECT)
    );

    // A wait keeps the binding it holds and reports Reconciling, not Stalled.
    let mut waiting = second.clone();
    waiting.status = Some(status);
    let plan = World::new(workspace(
        AccountRef::user("alice"),
        WorkspacePhase::Pending,
    ))
    .with_members(&[&waiting])
    .plan(&waiting);
    let status = compute_status(
        &waiting,
        &plan,
        &["wsm-second-viewer".into()],
        None,
        &at(200),
    );
    assert_eq!(status.role_binding.as_deref(), Some("wsm-second-viewer"));
    assert!(conditions::is_true(
        &status.conditions,
        conditions::RECONCILING
    ));
    assert!(conditions::find_condition(&status.conditions, conditions::STALLED).is_none());
}

#[test]
fn a_failed_write_keeps_an_active_member_active_and_says_it_retries() {
    let mut bob = member("bob", Subject::user("bob"), WorkspaceRole::Developer, 10);
    bob.status = Some(WorkspaceMemberStatus {
        phase: Some(MemberPhase::Active),
        role_binding: Some("wsm-bob-viewer".into()),
        ..Default::default()
    });
    let plan = World::new(personal()).with_members(&[&bob]).plan(&bob);
    let status = compute_status(
        &bob,
        &plan,
        &["wsm-bob-viewer".into()],
        Some("ApplyFailed"),
        &at(100),
    );
    assert_eq!(status.phase, Some(MemberPhase::Active));
    assert_eq!(status.role_binding.as_deref(), Some("wsm-bob-viewer"));
    let ready = conditions::find_condition(&status.conditions, conditions::READY).unwrap();
    assert_eq!(ready.reason, reason::PROVISIONING);
    assert!(ready.message.contains("ApplyFailed"));
    assert!(conditions::is_true(
        &status.conditions,
        conditions::RECONCILING
    ));
}

#[test]
fn the_desired_binding_is_up_to_date_with_itself_only() {
    use crate::controller::apply::needs_write;
    let bob = member("bob", Subject::user("bob"), WorkspaceRole::Viewer, 10);
    let desired = role_binding(&bob, NS, "workspaces:viewer");
    assert!(!needs_write(Some(&desired.clone()), &desired));
    let mut edited = desired.clone();
    edited.subjects.as_mut().unwrap()[0].name = "mallory".into();
    assert!(needs_write(Some(&edited), &desired));
    let mut disowned = desired.clone();
    disowned.metadata.owner_references = None;
    assert!(needs_write(Some(&disowned), &desired));
    assert_eq!(desired.owner_references()[0].uid, bob.uid().unwrap());
}
