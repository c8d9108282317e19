//! Invitations, the pure part: in a workspace owned by a user, a
//! WorkspaceMember for another user is an invitation. It grants nothing until
//! the invitee answers `spec.response: Accepted`; meanwhile the invitee may
//! read and answer that one WorkspaceMember (a Role and RoleBinding named
//! `wsi-<member>`, owned by the member), and nothing else. An invitation
//! ends accepted, declined, expired (`--invitation-ttl` after it was made)
//! or revoked (its workspace changed owner); only an accepted one grants.
//!
//! Who is not invited: Groups and ServiceAccounts (no single person to
//! consent; the owner grants them as a RoleBinding would), the owner
//! themself, and every member of an Organization's workspace (membership of
//! the organization is the consent). A member that already holds its role
//! (granted before invitations existed, or in an Organization's workspace
//! that moved to a user) keeps it: an invitation asks before access is
//! given, it does not take back access a person already has. Any member may
//! decline (`spec.response: Declined`), which removes its access.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Resource, ResourceExt};

use super::build::{Blocked, Plan, member_label, rbac_subject};
use crate::api::conditions::{READY, find_condition, reason};
use crate::api::{AccountKind, InvitationResponse, SubjectKind, Workspace, WorkspaceMember};
use crate::controller::labels;

/// Every answering grant's name (Role and RoleBinding) starts with this.
pub const PREFIX: &str = "wsi-";

/// An open invitation: what the invitee may do to answer it, and until when.
#[derive(Clone, Debug, PartialEq)]
pub struct Invitation {
    /// get and patch on the one WorkspaceMember.
    pub role: Role,
    /// Gives [`Invitation::role`] to the invitee.
    pub binding: RoleBinding,
    /// When the invitation expires unanswered.
    pub expires_at: Time,
}

/// Whether `member` of `ws` is an invitation: a User, not the owner, in a
/// workspace owned by a User.
pub fn is_invitation(ws: &Workspace, member: &WorkspaceMember) -> bool {
    ws.spec.owner.kind == AccountKind::User
        && member.spec.subject.kind == SubjectKind::User
        && member.spec.subject.name != ws.spec.owner.name
}

/// When the invitation `member` expires: as recorded in its status, else
/// `ttl` after it was created. Recorded once, so a later change of
/// `--invitation-ttl` applies to new invitations only.
pub fn expires_at(member: &WorkspaceMember, ttl: Duration, now: Timestamp) -> Time {
    if let Some(recorded) = member
        .status
        .as_ref()
        .and_then(|s| s.invitation_expires_at.clone())
    {
        return recorded;
    }
    let created = member.creation_timestamp().map_or(now, |t| t.0);
    let ttl = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX);
    Time(created.checked_add(ttl).unwrap_or(Timestamp::MAX))
}

/// The reason of the member's `Ready` condition as last reported.
fn reported_reason(member: &WorkspaceMember) -> Option<&str> {
    member
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, READY))
        .map(|c| c.reason.as_str())
}

fn ended(reason: &'static str, message: String) -> Plan {
    Plan::Blocked(Blocked {
        reason,
        message,
        stalled: true,
        revoke: true,
    })
}

/// How to invite again, for the messages of an ended invitation.
fn invite_again(member: &WorkspaceMember) -> String {
    format!(
        "To invite again, an Owner deletes this WorkspaceMember and creates it anew (kubectl -n {} delete workspacemember {}).",
        member.namespace().unwrap_or_default(),
        member.name_any()
    )
}

/// The invitation's decision for `member` of `ws`, once the member itself
/// is eligible (role assignable, no duplicate, ...): `None` when the role is
/// granted as for any member, else the invitation's plan. `holds` tells
/// whether the member holds its role now.
pub fn decide(
    member: &WorkspaceMember,
    ws: &Workspace,
    holds: bool,
    ttl: Duration,
    now: Timestamp,
) -> Option<Plan> {
    if let Some(ended) = ended_already(member, ttl, now) {
        return Some(ended);
    }
    if !is_invitation(ws, member)
        || holds
        || member.spec.response == Some(InvitationResponse::Accepted)
    {
        return None;
    }
    let expires = expires_at(member, ttl, now);
    if now >= expires.0 {
        return Some(expired(member, ttl, now));
    }
    Some(Plan::Invite(Box::new(Invitation {
        role: answering_role(member, &ws.name_any()),
        binding: answering_binding(member, &ws.name_any()),
        expires_at: expires,
    })))
}

/// The plan of an invitation that has ended (declined, expired, revoked),
/// which stays ended whatever the workspace, its owner or the member's
/// eligibility now: checked before anything else about the member.
pub fn ended_already(member: &WorkspaceMember, ttl: Duration, now: Timestamp) -> Option<Plan> {
    match reported_reason(member) {
        Some(reason::INVITATION_EXPIRED) => return Some(expired(member, ttl, now)),
        Some(reason::INVITATION_REVOKED) => return Some(revoked(member, None)),
        _ => {}
    }
    (member.spec.response == Some(InvitationResponse::Declined)).then(|| {
        ended(
            reason::INVITATION_DECLINED,
            format!(
                "{} declined the invitation; nothing is granted. {}",
                member.spec.subject.name,
                invite_again(member)
            ),
        )
    })
}

fn expired(member: &WorkspaceMember, ttl: Duration, now: Timestamp) -> Plan {
    let at = expires_at(member, ttl, now);
    ended(
        reason::INVITATION_EXPIRED,
        format!(
            "The invitation of {} expired unanswered at {}; nothing is granted. {}",
            member.spec.subject.name,
            at.0,
            invite_again(member)
        ),
    )
}

/// The open invitation `member` ended because its workspace changed owner
/// (`transfer` names the transfer when it is known).
pub fn revoked(member: &WorkspaceMember, transfer: Option<(&str, &str)>) -> Plan {
    let why = match transfer {
        Some((name, to)) => format!(
            "WorkspaceTransfer {name} moved the workspace to {to}, which ended the open invitation of {}",
            member.spec.subject.name
        ),
        None => {
            let reported = member
                .status
                .as_ref()
                .and_then(|s| find_condition(&s.conditions, READY))
                .map(|c| c.message.clone())
                .unwrap_or_default();
            return ended(reason::INVITATION_REVOKED, reported);
        }
    };
    ended(
        reason::INVITATION_REVOKED,
        format!("{why}; nothing is granted. {}", invite_again(member)),
    )
}

/// The name of `member`'s answering grant (Role and RoleBinding):
/// `wsi-<member>`, cut with a hash when too long.
pub fn grant_name(member: &str) -> String {
    let full = format!("{PREFIX}{member}");
    if full.len() <= 253 {
        return full;
    }
    format!(
        "{}-{:016x}",
        labels::truncate(&full, 253 - 17),
        super::build::fnv64(&full)
    )
}

fn metadata(member: &WorkspaceMember, workspace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(grant_name(&member.name_any())),
        namespace: member.namespace(),
        labels: Some(BTreeMap::from([
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (labels::WORKSPACE.to_string(), workspace.to_string()),
            (
                labels::INVITATION.to_string(),
                member_label(&member.name_any()),
            ),
        ])),
        owner_references: Some(member.controller_owner_ref(&()).into_iter().collect()),
        ..Default::default()
    }
}

/// `get` and `patch` on `member` and nothing else: what reading
/// (`kubectl get`, `kubectl describe`) and answering the invitation need.
pub fn answering_role(member: &WorkspaceMember, workspace: &str) -> Role {
    Role {
        metadata: metadata(member, workspace),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["workspaces.dev".to_string()]),
            resources: Some(vec!["workspacemembers".to_string()]),
            resource_names: Some(vec![member.name_any()]),
            verbs: vec!["get".to_string(), "patch".to_string()],
            non_resource_urls: None,
        }]),
    }
}

/// Gives [`answering_role`] to the invitee.
pub fn answering_binding(member: &WorkspaceMember, workspace: &str) -> RoleBinding {
    let meta = metadata(member, workspace);
    RoleBinding {
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "Role".to_string(),
            name: meta.name.clone().unwrap_or_default(),
        },
        metadata: meta,
        subjects: Some(vec![rbac_subject(&member.spec.subject)]),
    }
}

#[cfg(test)]
mod tests;
