//! Notifications about transfers ([`crate::notify`]): one per side when a
//! side's approval is awaited (naming who may approve and the command that
//! approves), and one when the transfer completed, was rejected or expired.
//! Sent when the operator records the change in the transfer's status.

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};

use crate::api::conditions::{COMPLETE, READY, SOURCE_APPROVED, TARGET_APPROVED, reason};
use crate::api::{
    AccountKind, AccountRef, TransferPhase, WorkspaceTransfer, WorkspaceTransferStatus,
};
use crate::controller::Context;
use crate::notify::Notification;

/// Whether `condition` says the side's approval is awaited.
fn awaiting(status: &WorkspaceTransferStatus, condition: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == condition && c.reason == reason::AWAITING_APPROVAL)
}

/// The people who may approve for `account`: the user, or the
/// organization's admins.
fn approvers(ctx: &Context, account: &AccountRef) -> Vec<Value> {
    match account.kind {
        AccountKind::User => vec![json!({"kind": "User", "name": account.name})],
        AccountKind::Organization => ctx
            .world
            .organizations
            .get(&ObjectRef::new(&account.name))
            .map(|org| {
                org.spec
                    .admins
                    .iter()
                    .map(|a| json!({"kind": a.kind, "name": a.name}))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The merge patch with which `who` signs `side` of `t`.
fn approve(t: &WorkspaceTransfer, side: &str, who: &str) -> String {
    format!(
        "kubectl patch workspacetransfer {} --type=merge -p '{{\"spec\":{{\"approvals\":{{\"{side}\":{{\"approvedBy\":\"{who}\"}}}}}}}}'",
        t.name_any()
    )
}

fn message(status: &WorkspaceTransferStatus) -> String {
    let ready = status.conditions.iter().find(|c| c.type_ == READY);
    let complete = status.conditions.iter().find(|c| c.type_ == COMPLETE);
    ready
        .or(complete)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The notifications for the change of `t`'s status from `before` to `now`.
pub fn notifications(
    ctx: &Context,
    t: &WorkspaceTransfer,
    before: &WorkspaceTransferStatus,
    now: &WorkspaceTransferStatus,
) -> Vec<Notification> {
    let uid = t.uid().unwrap_or_default();
    let subject = format!("workspacetransfers/{}", t.name_any());
    let base = json!({
        "transfer": t.name_any(),
        "workspace": t.spec.workspace,
        "to": {"kind": t.spec.to.kind, "name": t.spec.to.name},
        "message": message(now),
    });
    let with = |more: Value| {
        let mut data = base.clone();
        if let (Some(data), Value::Object(more)) = (data.as_object_mut(), more) {
            data.extend(more);
        }
        data
    };
    let mut out = Vec::new();
    let source_account = now.from.clone().or_else(|| {
        ctx.world
            .workspaces
            .get(&ObjectRef::new(&t.spec.workspace))
            .map(|ws| ws.spec.owner.clone())
    });
    let sides = [
        ("source", SOURCE_APPROVED, source_account),
        ("target", TARGET_APPROVED, Some(t.spec.to.clone())),
    ];
    for (side, condition, account) in sides {
        if !awaiting(now, condition) || awaiting(before, condition) {
            continue;
        }
        let people = account.map(|a| approvers(ctx, &a)).unwrap_or_default();
        let who = match people.as_slice() {
            [one] if one["kind"] == "User" => one["name"].as_str().unwrap_or_default().to_string(),
            _ => "<your username>".to_string(),
        };
        out.push(Notification::new(
            &format!("{uid}:{side}"),
            "transfer.approval.requested",
            subject.clone(),
            with(json!({
                "side": side,
                "approvers": people,
                "command": approve(t, side, &who),
            })),
        ));
    }
    let kind = match now.phase {
        phase if phase == before.phase => None,
        Some(TransferPhase::Completed) => Some("transfer.completed"),
        Some(TransferPhase::Rejected) => Some("transfer.rejected"),
        Some(TransferPhase::Expired) => Some("transfer.expired"),
        _ => None,
    };
    if let Some(kind) = kind {
        out.push(Notification::new(
            &uid,
            kind,
            subject,
            with(
                json!({"command": format!("kubectl describe workspacetransfer {}", t.name_any())}),
            ),
        ));
    }
    out
}

/// Sends the notifications for the change just written.
pub fn announce(
    ctx: &Context,
    t: &WorkspaceTransfer,
    before: &WorkspaceTransferStatus,
    now: &WorkspaceTransferStatus,
) {
    for notification in notifications(ctx, t, before, now) {
        ctx.notifier.send(notification);
    }
}
