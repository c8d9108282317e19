//! Notifications about invitations ([`crate::notify`]): sent when the
//! operator records a change of an invitation's phase, naming the person who
//! should act and the command they would type.

use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::{MemberPhase, Workspace, WorkspaceMember, WorkspaceMemberStatus};
use crate::controller::Context;
use crate::notify::Notification;

/// The merge patch that answers an invitation.
fn answer(member: &WorkspaceMember, response: &str) -> String {
    format!(
        "kubectl -n {} patch workspacemember {} --type=merge -p '{{\"spec\":{{\"response\":\"{response}\"}}}}'",
        member.namespace().unwrap_or_default(),
        member.name_any()
    )
}

/// The notification for a member whose phase went from `before` to
/// `status.phase`, if that change is one people are told about.
pub fn notification(
    member: &WorkspaceMember,
    workspace: Option<&Workspace>,
    before: Option<MemberPhase>,
    status: &WorkspaceMemberStatus,
) -> Option<Notification> {
    let now = status.phase?;
    if before == Some(now) {
        return None;
    }
    let namespace = member.namespace().unwrap_or_default();
    let name = member.name_any();
    let invitee = &member.spec.subject;
    let owner = workspace.map(|ws| &ws.spec.owner);
    let role = member
        .spec
        .cluster_role_name()
        .map(str::to_string)
        .or_else(|| member.spec.role.map(|r| r.to_string()))
        .unwrap_or_default();
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::conditions::READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let owner_person = owner.map_or(Value::Null, |o| json!({"kind": o.kind, "name": o.name}));
    let (kind, person, command, more) = match now {
        MemberPhase::Invited => (
            "invitation.created",
            json!({"kind": "User", "name": invitee.name}),
            answer(member, "Accepted"),
            json!({
                "declineCommand": answer(member, "Declined"),
                "expiresAt": status.invitation_expires_at.as_ref().map(|t| t.0.to_string()),
            }),
        ),
        MemberPhase::Active if before == Some(MemberPhase::Invited) => (
            "invitation.accepted",
            owner_person,
            format!("kubectl -n {namespace} get workspacemember {name}"),
            json!({}),
        ),
        MemberPhase::Declined => (
            "invitation.declined",
            owner_person,
            format!("kubectl -n {namespace} delete workspacemember {name}"),
            json!({}),
        ),
        MemberPhase::Expired => (
            "invitation.expired",
            owner_person,
            format!("kubectl -n {namespace} delete workspacemember {name}"),
            json!({}),
        ),
        _ => return None,
    };
    let mut data = json!({
        "workspace": workspace.map(|ws| ws.name_any()),
        "namespace": namespace,
        "member": name,
        "invitee": {"kind": invitee.kind, "name": invitee.name},
        "role": role,
        "person": person,
        "command": command,
        "message": message,
    });
    if let (Some(data), Value::Object(more)) = (data.as_object_mut(), more) {
        data.extend(more);
    }
    Some(Notification::new(
        &member.uid().unwrap_or_default(),
        kind,
        format!("namespaces/{namespace}/workspacemembers/{name}"),
        data,
    ))
}

/// Sends the notification for the change just written, if any.
pub fn announce(
    ctx: &Context,
    member: &WorkspaceMember,
    workspace: Option<&Workspace>,
    status: &WorkspaceMemberStatus,
) {
    let before = member.status.as_ref().and_then(|s| s.phase);
    if let Some(notification) = notification(member, workspace, before, status) {
        ctx.notifier.send(notification);
    }
}
