use serde_json::{Value, json};

use super::*;
use crate::api::testutil::{assert_accepted, assert_refused, property, round_trip, schema};

/// SPEC §1.4, verbatim except the places the SPEC abbreviates: the `[...]`
/// lists of `status.impact` and the status conditions.
const SPEC_EXAMPLE: &str = r#"
apiVersion: workspaces.dev/v1alpha1
kind: WorkspaceTransfer
metadata:
  name: move-prod-to-globex
spec:                          # immutable after creation, except the approvals
  workspace: acme-prod
  to: {kind: Organization, name: globex}
  newHandle: prod-eu           # optional: change the handle during the transfer
  approvals:
    source: {approvedBy: alice@acme.io}    # an admin of the workspace (Owner, or admin of its owning organization)
    target: {approvedBy: carol@globex.io}  # an admin of the target account (the target user themself for a User)
status:
  phase: Pending               # Pending | Approved | Transferring | Completed | Rejected | Failed | Cancelled
  impact:                      # computed before anything happens, kept up to date while Pending
    membersLosingAccess: [{kind: User, name: bob@acme.io, reason: NotAnOrganizationMember}]
    serviceAccountsLosingAccess: [{kind: ServiceAccount, namespace: acme-prod, name: ci, reason: NotAnOrganizationMember}]
    ownersLosingAccess: [{kind: User, name: alice@acme.io}]  # admins of the source account
    ownersGainingAccess: [{kind: Group, name: globex-admins}]
    handleAvailable: true
    targetWorkspaces: {used: 4, limit: 10}
  conditions:
  - {type: Validated, status: "True", reason: Valid, message: The transfer can run., lastTransitionTime: "2025-01-01T00:00:00Z"}
  - {type: SourceApproved, status: "True", reason: Approved, message: Approved by alice@acme.io., lastTransitionTime: "2025-01-01T00:00:00Z"}
  - {type: TargetApproved, status: "True", reason: Approved, message: Approved by carol@globex.io., lastTransitionTime: "2025-01-01T00:00:00Z"}
  - {type: Complete, status: "False", reason: AwaitingApproval, message: The transfer has not run yet., lastTransitionTime: "2025-01-01T00:00:00Z"}
  - {type: Ready, status: "False", reason: AwaitingApproval, message: The transfer has not run yet., lastTransitionTime: "2025-01-01T00:00:00Z"}
"#;

fn transfer(spec: Value) -> Value {
    json!({
        "apiVersion": "workspaces.dev/v1alpha1",
        "kind": "WorkspaceTransfer",
        "metadata": {"name": "move"},
        "spec": spec,
    })
}

fn base(extra: Value) -> Value {
    let mut spec =
        json!({"workspace": "acme-prod", "to": {"kind": "Organization", "name": "globex"}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    transfer(spec)
}

fn update_refused(old: &Value, new: &Value, fragment: &str) {
    assert_refused::<WorkspaceTransfer>(new, Some(old), fragment);
}

fn update_accepted(old: &Value, new: &Value) {
    assert_accepted::<WorkspaceTransfer>(new, Some(old));
}

#[test]
fn spec_example_round_trips_and_is_accepted() {
    let t: WorkspaceTransfer = round_trip(SPEC_EXAMPLE);
    assert_eq!(t.spec.to, AccountRef::organization("globex"));
    let approvals = t.spec.approvals.as_ref().unwrap();
    assert_eq!(
        approvals
            .source
            .as_ref()
            .and_then(|a| a.approved_by.as_deref()),
        Some("alice@acme.io")
    );
    let status = t.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(TransferPhase::Pending));
    let impact = status.impact.as_ref().unwrap();
    assert_eq!(
        impact.members_losing_access[0].reason.as_deref(),
        Some("NotAnOrganizationMember")
    );
    assert_eq!(
        impact.target_workspaces,
        Some(WorkspaceUsage {
            used: 4,
            limit: Some(10)
        })
    );
    assert_accepted::<WorkspaceTransfer>(&serde_json::to_value(&t).unwrap(), None);
}

#[test]
fn workspace_is_a_workspace_name() {
    assert_accepted::<WorkspaceTransfer>(&base(json!({})), None);
    for bad in ["", "Acme", "acme.prod", "acme_prod"] {
        assert_refused::<WorkspaceTransfer>(
            &base(json!({"workspace": bad})),
            None,
            "spec.workspace must be the name of a Workspace",
        );
    }
    assert_eq!(
        property(&schema::<WorkspaceTransfer>(), "spec/workspace")["maxLength"],
        63
    );
}

#[test]
fn new_handle_has_the_handle_format() {
    assert_accepted::<WorkspaceTransfer>(&base(json!({"newHandle": "prod-eu"})), None);
    for bad in ["", "Prod", "prod eu", "-prod"] {
        assert_refused::<WorkspaceTransfer>(
            &base(json!({"newHandle": bad})),
            None,
            "spec.newHandle must be 1 to 63 lowercase letters",
        );
    }
}

#[test]
fn target_account_is_checked_like_an_owner() {
    assert_refused::<WorkspaceTransfer>(
        &transfer(json!({"workspace": "acme-prod", "to": {"kind": "User", "name": ""}})),
        None,
        "account name must not be empty",
    );
    assert_refused::<WorkspaceTransfer>(
        &transfer(
            json!({"workspace": "acme-prod", "to": {"kind": "Organization", "name": "Globex Inc"}}),
        ),
        None,
        "an Organization account is named by the Organization's metadata.name",
    );
}

#[test]
fn workspace_to_and_new_handle_are_immutable() {
    let old = base(json!({"newHandle": "prod-eu"}));
    update_accepted(&old, &old);
    update_refused(
        &old,
        &base(json!({"newHandle": "prod-eu", "workspace": "acme-dev"})),
        "spec.workspace cannot change after the transfer is created",
    );
    update_refused(
        &old,
        &base(json!({"newHandle": "prod-eu", "to": {"kind": "User", "name": "carol"}})),
        "spec.to cannot change after the transfer is created",
    );
    let msg = "spec.newHandle cannot change after the transfer is created";
    update_refused(&old, &base(json!({"newHandle": "prod-us"})), msg);
    update_refused(&old, &base(json!({})), msg);
    update_refused(&base(json!({})), &old, msg);
}

#[test]
fn approvals_can_be_added_but_not_changed_or_withdrawn() {
    let none = base(json!({}));
    let source = base(json!({"approvals": {"source": {"approvedBy": "alice"}}}));
    let both = base(json!({"approvals": {
        "source": {"approvedBy": "alice"},
        "target": {"rejectedBy": "carol", "comment": "We are not taking this one."},
    }}));
    update_accepted(&none, &source);
    update_accepted(&source, &both);
    update_accepted(&none, &both);

    let msg = "approvals.source cannot be changed or withdrawn once given";
    update_refused(&source, &none, msg);
    update_refused(&source, &base(json!({"approvals": {}})), msg);
    update_refused(
        &source,
        &base(json!({"approvals": {"source": {"approvedBy": "mallory"}}})),
        msg,
    );
    update_refused(
        &source,
        &base(json!({"approvals": {"source": {"rejectedBy": "alice"}}})),
        msg,
    );
    update_refused(
        &both,
        &base(
            json!({"approvals": {"source": {"approvedBy": "alice"}, "target": {"approvedBy": "carol"}}}),
        ),
        "approvals.target cannot be changed or withdrawn once given",
    );
}

#[test]
fn an_approval_approves_or_rejects() {
    let with_source = |source: Value| base(json!({"approvals": {"source": source}}));
    assert_accepted::<WorkspaceTransfer>(&with_source(json!({"approvedBy": "alice"})), None);
    assert_accepted::<WorkspaceTransfer>(
        &with_source(json!({"rejectedBy": "alice", "comment": "No."})),
        None,
    );
    assert_refused::<WorkspaceTransfer>(
        &with_source(json!({})),
        None,
        "an approval needs approvedBy (to approve) or rejectedBy (to refuse)",
    );
    assert_refused::<WorkspaceTransfer>(
        &with_source(json!({"comment": "ok"})),
        None,
        "an approval needs approvedBy (to approve) or rejectedBy (to refuse)",
    );
    assert_refused::<WorkspaceTransfer>(
        &with_source(json!({"approvedBy": "alice", "rejectedBy": "alice"})),
        None,
        "an approval cannot both approve and reject",
    );
    let schema = schema::<WorkspaceTransfer>();
    let approved_by = property(&schema, "spec/approvals/source/approvedBy");
    assert_eq!(approved_by["minLength"], 1);
    assert_eq!(approved_by["maxLength"], 253);
    assert_eq!(
        property(&schema, "spec/approvals/target/comment")["maxLength"],
        1024
    );
}

#[test]
fn phases_and_columns() {
    let schema = schema::<WorkspaceTransfer>();
    assert_eq!(
        property(&schema, "status/phase")["enum"],
        json!([
            "Pending",
            "Approved",
            "Transferring",
            "Completed",
            "Rejected",
            "Failed",
            "Cancelled",
            "Expired"
        ])
    );
    assert!(TransferPhase::Completed.is_final());
    assert!(!TransferPhase::Transferring.is_final());

    let crd = crate::api::crdgen::crd::<WorkspaceTransfer>();
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(crd.spec.names.short_names, Some(vec!["wst".to_string()]));
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
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Workspace", ".spec.workspace"),
            ("To", ".spec.to.name"),
            ("Phase", ".status.phase"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}
