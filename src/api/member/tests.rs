use serde_json::{Value, json};

use super::*;
use crate::api::testutil::{assert_accepted, assert_refused, property, round_trip, schema};

/// SPEC §1.3, verbatim except the status conditions, which the SPEC
/// abbreviates as `[Ready]`.
const SPEC_EXAMPLE: &str = r#"
apiVersion: workspaces.dev/v1alpha1
kind: WorkspaceMember
metadata:
  name: bob
  namespace: acme-prod
spec:
  subject:
    kind: User               # User | Group | ServiceAccount
    name: bob@acme.io
    namespace: ""            # ServiceAccount only
  role: Developer            # Owner | Developer | Runner | Viewer | Worker
  clusterRole: ""            # instead of role: an assignable custom ClusterRole
status:
  phase: Active              # Invited | Active | Declined | Expired | Revoked
  roleBinding: wsm-bob-...
  conditions:
  - {type: Ready, status: "True", reason: Provisioned, message: Developer access granted., lastTransitionTime: "2025-01-01T00:00:00Z"}
"#;

fn member(spec: Value) -> Value {
    json!({
        "apiVersion": "workspaces.dev/v1alpha1",
        "kind": "WorkspaceMember",
        "metadata": {"name": "m", "namespace": "acme-prod"},
        "spec": spec,
    })
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "name": name})
}

fn accepted(spec: Value) {
    assert_accepted::<WorkspaceMember>(&member(spec), None);
}

fn refused(spec: Value, fragment: &str) {
    assert_refused::<WorkspaceMember>(&member(spec), None, fragment);
}

#[test]
fn spec_example_round_trips_and_is_accepted() {
    let m: WorkspaceMember = round_trip(SPEC_EXAMPLE);
    assert_eq!(m.spec.subject.kind, SubjectKind::User);
    assert_eq!(m.spec.subject.namespace_name(), None);
    assert_eq!(m.spec.role, Some(WorkspaceRole::Developer));
    assert_eq!(m.spec.cluster_role_name(), None);
    assert_eq!(
        m.status.as_ref().and_then(|s| s.phase),
        Some(MemberPhase::Active)
    );
    assert_accepted::<WorkspaceMember>(&serde_json::to_value(&m).unwrap(), None);
}

#[test]
fn a_role_or_a_cluster_role_is_required() {
    let msg = "a WorkspaceMember needs a role";
    refused(json!({"subject": user("bob")}), msg);
    refused(json!({"subject": user("bob"), "clusterRole": ""}), msg);
    accepted(json!({"subject": user("bob"), "role": "Viewer"}));
    accepted(json!({"subject": user("bob"), "clusterRole": "acme:auditor"}));
}

#[test]
fn role_and_cluster_role_are_mutually_exclusive() {
    refused(
        json!({"subject": user("bob"), "role": "Viewer", "clusterRole": "acme:auditor"}),
        "spec.role and spec.clusterRole are mutually exclusive",
    );
    // An empty clusterRole next to a role is "unset", as in the SPEC example.
    accepted(json!({"subject": user("bob"), "role": "Viewer", "clusterRole": ""}));
}

#[test]
fn a_service_account_needs_a_namespace() {
    let msg = "a ServiceAccount subject needs subject.namespace";
    refused(
        json!({"subject": {"kind": "ServiceAccount", "name": "agent"}, "role": "Worker"}),
        msg,
    );
    refused(
        json!({"subject": {"kind": "ServiceAccount", "name": "agent", "namespace": ""}, "role": "Worker"}),
        msg,
    );
    accepted(json!({
        "subject": {"kind": "ServiceAccount", "name": "agent", "namespace": "acme-prod"},
        "role": "Worker",
    }));
}

#[test]
fn users_and_groups_have_no_namespace() {
    let msg = "subject.namespace is only for ServiceAccount subjects";
    for kind in ["User", "Group"] {
        refused(
            json!({"subject": {"kind": kind, "name": "bob", "namespace": "acme-prod"}, "role": "Viewer"}),
            msg,
        );
        accepted(
            json!({"subject": {"kind": kind, "name": "bob", "namespace": ""}, "role": "Viewer"}),
        );
        accepted(json!({"subject": {"kind": kind, "name": "bob"}, "role": "Viewer"}));
    }
}

#[test]
fn a_service_account_namespace_is_a_namespace_name() {
    for bad in ["Acme", "acme_prod", "acme.prod"] {
        refused(
            json!({"subject": {"kind": "ServiceAccount", "name": "agent", "namespace": bad}, "role": "Worker"}),
            "subject.namespace must be a namespace name",
        );
    }
    assert_eq!(
        property(&schema::<WorkspaceMember>(), "spec/subject/namespace")["maxLength"],
        63
    );
}

#[test]
fn a_service_account_is_named_by_its_object_name() {
    let msg = "a ServiceAccount subject's name must be the ServiceAccount's metadata.name";
    for bad in ["system:serviceaccount:acme-prod:agent", "Agent", "agent/x"] {
        refused(
            json!({"subject": {"kind": "ServiceAccount", "name": bad, "namespace": "acme-prod"}, "role": "Worker"}),
            msg,
        );
    }
    accepted(json!({
        "subject": {"kind": "ServiceAccount", "name": "flow.runner-1", "namespace": "acme-prod"},
        "role": "Worker",
    }));
    // Users and groups are named as the authenticator reports them.
    accepted(json!({"subject": user("system:serviceaccount:acme-prod:agent"), "role": "Viewer"}));
    accepted(json!({"subject": {"kind": "Group", "name": "Acme Engineers"}, "role": "Viewer"}));
}

#[test]
fn subject_name_must_not_be_empty() {
    for kind in ["User", "Group"] {
        refused(
            json!({"subject": {"kind": kind, "name": ""}, "role": "Viewer"}),
            "subject.name must not be empty",
        );
    }
    assert_eq!(
        property(&schema::<WorkspaceMember>(), "spec/subject/name")["maxLength"],
        253
    );
}

#[test]
fn only_users_answer_invitations() {
    accepted(json!({"subject": user("bob"), "role": "Viewer", "response": "Accepted"}));
    accepted(json!({"subject": user("bob"), "role": "Viewer", "response": "Declined"}));
    refused(
        json!({"subject": {"kind": "Group", "name": "eng"}, "role": "Viewer", "response": "Accepted"}),
        "spec.response answers an invitation and only User subjects are invited",
    );
}

#[test]
fn subject_is_immutable_but_role_is_not() {
    let old = member(json!({"subject": user("bob"), "role": "Viewer"}));
    let promoted = member(json!({"subject": user("bob"), "role": "Developer"}));
    assert_accepted::<WorkspaceMember>(&promoted, Some(&old));
    let custom = member(json!({"subject": user("bob"), "clusterRole": "acme:auditor"}));
    assert_accepted::<WorkspaceMember>(&custom, Some(&old));
    let answered =
        member(json!({"subject": user("bob"), "role": "Viewer", "response": "Accepted"}));
    assert_accepted::<WorkspaceMember>(&answered, Some(&old));

    let msg = "spec.subject cannot change";
    let renamed = member(json!({"subject": user("carol"), "role": "Viewer"}));
    assert_refused::<WorkspaceMember>(&renamed, Some(&old), msg);
    let regrouped = member(json!({"subject": {"kind": "Group", "name": "bob"}, "role": "Viewer"}));
    assert_refused::<WorkspaceMember>(&regrouped, Some(&old), msg);
}

#[test]
fn enums_are_closed_in_the_schema() {
    let schema = schema::<WorkspaceMember>();
    assert_eq!(
        property(&schema, "spec/subject/kind")["enum"],
        json!(["User", "Group", "ServiceAccount"])
    );
    assert_eq!(
        property(&schema, "spec/role")["enum"],
        json!(["Owner", "Developer", "Runner", "Viewer", "Worker"])
    );
    assert_eq!(
        property(&schema, "spec/response")["enum"],
        json!(["Accepted", "Declined"])
    );
    assert_eq!(
        property(&schema, "status/phase")["enum"],
        json!([
            "Pending", "Invited", "Active", "Declined", "Expired", "Revoked"
        ])
    );
    assert_eq!(property(&schema, "spec/clusterRole")["maxLength"], 253);
    // Field docs, not the enum's, are what `kubectl explain` shows.
    let role_doc = property(&schema, "spec/role")["description"]
        .as_str()
        .unwrap();
    assert!(
        role_doc.starts_with("The built-in workspace role to grant"),
        "{role_doc}"
    );
    assert!(
        serde_json::from_value::<WorkspaceMemberSpec>(
            json!({"subject": user("b"), "role": "Admin"})
        )
        .is_err()
    );
}

#[test]
fn crd_is_namespaced_with_columns_and_selectable_subject() {
    let crd = crate::api::crdgen::crd::<WorkspaceMember>();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("workspacemembers.workspaces.dev")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["wsm".to_string()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec![crate::api::CATEGORY.to_string()])
    );
    let version = &crd.spec.versions[0];
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Subject", "Role", "Phase", "Ready", "Age"]);
    let selectable: Vec<&str> = version
        .selectable_fields
        .iter()
        .flatten()
        .map(|f| f.json_path.as_str())
        .collect();
    assert_eq!(selectable, [".spec.subject.kind", ".spec.subject.name"]);
}

#[test]
fn roles_map_to_the_shipped_cluster_roles() {
    let names: Vec<&str> = WorkspaceRole::ALL
        .iter()
        .map(|r| r.cluster_role())
        .collect();
    assert_eq!(
        names,
        [
            "workspaces:owner",
            "workspaces:developer",
            "workspaces:runner",
            "workspaces:viewer",
            "workspaces:worker",
        ]
    );
    assert_eq!(WorkspaceRole::Runner.to_string(), "Runner");
}

#[test]
fn subject_constructors() {
    assert_eq!(Subject::user("bob").kind, SubjectKind::User);
    assert_eq!(Subject::group("eng").kind, SubjectKind::Group);
    let sa = Subject::service_account("acme-prod", "agent");
    assert_eq!(sa.kind, SubjectKind::ServiceAccount);
    assert_eq!(sa.namespace_name(), Some("acme-prod"));
    assert_eq!(SubjectKind::ServiceAccount.to_string(), "ServiceAccount");
}
