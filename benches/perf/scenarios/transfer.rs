//! The transfer scenario: one Workspace with many members moves from one
//! Organization to another, half of its members belonging to the target.
//! Timed from the second approval to `Completed`; the operator's writes in
//! that window are counted from the audit log.

use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use workspace_operator::api::{MemberPhase, TransferPhase, WorkspaceMember, WorkspaceTransfer};

use super::process::settle;
use super::report::TransferRun;
use super::{QUIET, fixtures, requests_since};
use crate::support::operator::Operator;
use crate::support::{self, ControlPlane};

const SOURCE: &str = "bench-src";
const TARGET: &str = "bench-dst";
const SOURCE_ADMIN: &str = "src-admin@bench.example";
const TARGET_ADMIN: &str = "dst-admin@bench.example";
const WORKSPACE: &str = "bench-move";
const TRANSFER: &str = "bench-move-to-dst";

fn member_user(i: usize) -> String {
    format!("m{i:04}@bench.example")
}

/// The two Organizations (the target lists every other member), the
/// Workspace and its `members` WorkspaceMembers, all Active.
async fn set_up(admin: &Client, members: usize, timeout: Duration) {
    let users = |pick: fn(usize) -> bool| -> Vec<serde_json::Value> {
        (0..members)
            .filter(|i| pick(*i))
            .map(|i| json!({"kind": "User", "name": member_user(i)}))
            .collect()
    };
    for (org, admin_user, listed) in [
        (SOURCE, SOURCE_ADMIN, users(|_| true)),
        (TARGET, TARGET_ADMIN, users(|i| i % 2 == 0)),
    ] {
        let object = json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Organization",
            "metadata": {"name": org},
            "spec": {"admins": [{"kind": "User", "name": admin_user}], "members": listed}});
        support::apply_yaml(admin, &object.to_string()).await;
    }
    let ws = json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace",
        "metadata": {"name": WORKSPACE},
        "spec": {"owner": {"kind": "Organization", "name": SOURCE}}});
    support::apply_yaml(admin, &ws.to_string()).await;
    support::wait_for("the transfer's workspace to be Ready", timeout, || async {
        let ws = Api::<workspace_operator::api::Workspace>::all(admin.clone())
            .get(WORKSPACE)
            .await
            .ok()?;
        (ws.status?.namespace.is_some()).then_some(())
    })
    .await;
    let api = Api::<WorkspaceMember>::namespaced(admin.clone(), WORKSPACE);
    for i in 0..members {
        let object =
            fixtures::member_object(WORKSPACE, &format!("m{i:04}"), &member_user(i), "Viewer");
        fixtures::create(&api, object).await;
    }
    support::wait_for(
        "every member of the transfer's workspace to be Active",
        timeout,
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let active = list
                .items
                .iter()
                .filter(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Active))
                .count();
            (active == members).then_some(())
        },
    )
    .await;
}

/// Moves a Workspace with `members` members to another Organization and
/// measures it.
pub async fn run(
    plane: &ControlPlane,
    admin: &Client,
    op: &Operator,
    members: usize,
    timeout: Duration,
) -> TransferRun {
    set_up(admin, members, timeout).await;
    let source = plane.client_as(SOURCE_ADMIN, &[]).await;
    let target = plane.client_as(TARGET_ADMIN, &[]).await;
    let proposal: WorkspaceTransfer = serde_json::from_value(json!({
        "apiVersion": "workspaces.dev/v1alpha1", "kind": "WorkspaceTransfer",
        "metadata": {"name": TRANSFER},
        "spec": {"workspace": WORKSPACE,
                 "from": {"kind": "Organization", "name": SOURCE},
                 "to": {"kind": "Organization", "name": TARGET},
                 "approvals": {"source": {"approvedBy": SOURCE_ADMIN}}},
    }))
    .expect("a transfer");
    let all = Api::<WorkspaceTransfer>::all(admin.clone());
    Api::<WorkspaceTransfer>::all(source)
        .create(&PostParams::default(), &proposal)
        .await
        .expect("the source admin proposes the transfer");
    let revoked = support::wait_for("the transfer's impact preview", timeout, || async {
        let t = all.get(TRANSFER).await.ok()?;
        let impact = t.status?.impact?;
        Some(impact.members_losing_access.len())
    })
    .await;
    settle(op, QUIET, timeout).await;

    let mark = plane.audit_mark();
    let approve = json!({"spec": {"approvals": {"target": {"approvedBy": TARGET_ADMIN}}}});
    let started = Instant::now();
    Api::<WorkspaceTransfer>::all(target)
        .patch(TRANSFER, &PatchParams::default(), &Patch::Merge(&approve))
        .await
        .expect("the target admin approves");
    let completed = support::wait_for("the transfer to complete", timeout, || async {
        let t = all.get(TRANSFER).await.ok()?;
        (t.status?.phase == Some(TransferPhase::Completed)).then(Instant::now)
    })
    .await;
    settle(op, QUIET, timeout).await;
    let requests = requests_since(plane, mark);
    TransferRun {
        members,
        members_revoked: revoked,
        completed: true,
        ms_to_completed: completed.duration_since(started).as_secs_f64() * 1000.0,
        writes: requests.writes,
        writes_by_kind: requests.writes_by_kind.clone(),
        events: requests.events,
    }
}
