//! The pure part of the WorkspaceMember controller: from a member and the
//! cached world, decide whether its subject may hold its role and build the
//! RoleBinding that grants it, and compute the status to report. No IO here;
//! everything is unit-tested without a cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject as RbacSubject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::conditions::reason;
use crate::api::{
    AccountKind, Organization, OrganizationSubjectKind, Subject, SubjectKind, Workspace,
    WorkspaceMember, WorkspacePhase, WorkspaceRole,
};
use crate::controller::labels;

use super::invitation::{self, Invitation};
pub use super::status::{compute_status, same_status};

/// Every member RoleBinding's name starts with this.
pub const BINDING_PREFIX: &str = "wsm-";

/// Longest object name the operator generates.
const MAX_NAME: usize = 253;

/// Longest label value Kubernetes accepts.
const MAX_LABEL_VALUE: usize = 63;

/// Whether two subjects are the same identity: same kind and name, and for a
/// ServiceAccount the same namespace.
pub fn same_subject(a: &Subject, b: &Subject) -> bool {
    a.kind == b.kind
        && a.name == b.name
        && (a.kind != SubjectKind::ServiceAccount || a.namespace_name() == b.namespace_name())
}

/// The subject for people: `User bob@acme.io`, `ServiceAccount ci/runner`.
pub fn describe(subject: &Subject) -> String {
    match subject.namespace_name() {
        Some(ns) if subject.kind == SubjectKind::ServiceAccount => {
            format!("ServiceAccount {ns}/{}", subject.name)
        }
        _ => format!("{} {}", subject.kind, subject.name),
    }
}

/// FNV-1a, 64 bits: a stable hash for shortening generated names (not a
/// security boundary; names are also checked by ownerReference).
pub(crate) fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The part of a binding name that names the role: `developer` for a
/// built-in role, a readable slug plus a hash of the exact name for a custom
/// ClusterRole (so `a:b` and `a-b` never share a binding).
pub fn role_slug(cluster_role: &str) -> String {
    if let Some(role) = WorkspaceRole::ALL
        .iter()
        .find(|r| r.cluster_role() == cluster_role)
    {
        return role.to_string().to_ascii_lowercase();
    }
    let mut slug = String::new();
    for c in cluster_role.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = labels::truncate(&slug, 40).trim_end_matches('-');
    let slug = if slug.is_empty() { "custom" } else { slug };
    format!("{slug}-{:08x}", fnv64(cluster_role) >> 32)
}

/// The deterministic name of the RoleBinding that gives `member` the
/// ClusterRole `cluster_role`: `wsm-<member>-<role>`. The role is part of the
/// name because a RoleBinding's roleRef cannot change: a role change creates
/// the new binding before the old one is removed. Names too long for
/// Kubernetes are cut and end with a hash of the full name.
pub fn binding_name(member: &str, cluster_role: &str) -> String {
    let full = format!("{BINDING_PREFIX}{member}-{}", role_slug(cluster_role));
    if full.len() <= MAX_NAME {
        return full;
    }
    format!(
        "{}-{:016x}",
        labels::truncate(&full, MAX_NAME - 17),
        fnv64(&full)
    )
}

/// The value of the `workspaces.dev/member` label: the member's name, or a
/// cut name with a hash when the name is not a valid label value (longer than
/// 63 characters).
pub fn member_label(member: &str) -> String {
    if labels::is_label_value(member) {
        return member.to_string();
    }
    format!(
        "{}-{:016x}",
        labels::truncate(member, MAX_LABEL_VALUE - 17),
        fnv64(member)
    )
}

/// The namespace a Workspace provisions: the one it reports, else the one its
/// spec names.
fn namespace_of(ws: &Workspace) -> String {
    let name = ws.name_any();
    ws.status
        .as_ref()
        .and_then(|s| s.namespace.clone())
        .unwrap_or_else(|| ws.spec.effective_namespace(&name).to_string())
}

/// The Workspace whose namespace is `namespace`, proven by the namespace's
/// `workspaces.dev/workspace-uid` annotation (which only the operator and
/// cluster admins write) matching the Workspace's UID, and the Workspace
/// naming that namespace. Labels alone are never trusted.
pub fn workspace_of<'a>(
    namespace: &str,
    meta: Option<&PartialObjectMeta<Namespace>>,
    workspaces: &'a [Arc<Workspace>],
) -> Option<&'a Arc<Workspace>> {
    let meta = meta?;
    workspaces.iter().find(|ws| {
        labels::carries_uid(meta, ws.uid().as_deref())
            && (namespace_of(ws) == namespace
                || ws.spec.effective_namespace(&ws.name_any()) == namespace)
    })
}

/// The Workspace that names `namespace` and may be about to take it: the
/// oldest one not being deleted. It proves nothing (no access is granted on
/// its account); it only tells a member that waits from one that is lost.
pub fn claimant<'a>(namespace: &str, naming: &'a [Arc<Workspace>]) -> Option<&'a Arc<Workspace>> {
    naming
        .iter()
        .filter(|ws| !deleting(&***ws))
        .filter(|ws| {
            ws.spec
                .effective_namespace(ws.meta().name.as_deref().unwrap_or_default())
                == namespace
        })
        .min_by_key(|ws| (ws.creation_timestamp().map(|t| t.0), ws.name_any()))
}

/// `ws` as it will be once `owner` owns it: what a transfer's member checks
/// are judged against (the same rules as for any workspace of `owner`).
pub fn owned_by(ws: &Workspace, owner: &crate::api::AccountRef) -> Workspace {
    let mut moved = ws.clone();
    moved.spec.owner = owner.clone();
    moved
}

/// Namespaces of the organization's provisioned workspaces: a ServiceAccount
/// in one of them belongs to the organization.
pub fn organization_namespaces(organization: &str, workspaces: &[Arc<Workspace>]) -> Vec<String> {
    let mut namespaces: Vec<String> = workspaces
        .iter()
        .filter(|ws| {
            ws.spec.owner.kind == AccountKind::Organization && ws.spec.owner.name == organization
        })
        .filter_map(|ws| ws.status.as_ref().and_then(|s| s.namespace.clone()))
        .collect();
    namespaces.sort();
    namespaces.dedup();
    namespaces
}

/// What the operator knows when it decides about one member.
pub struct Inputs<'a> {
    /// The member being reconciled.
    pub member: &'a WorkspaceMember,
    /// Its Workspace (see [`workspace_of`]), if any.
    pub workspace: Option<&'a Workspace>,
    /// When no Workspace holds the namespace: the one that names it and is
    /// about to take it (see [`claimant`]).
    pub claimant: Option<&'a Workspace>,
    /// The owning Organization, when the Workspace's owner is one and it exists.
    pub organization: Option<&'a Organization>,
    /// See [`organization_namespaces`].
    pub organization_namespaces: &'a [String],
    /// Every member in the member's namespace (itself included).
    pub members: &'a [Arc<WorkspaceMember>],
    /// The member RoleBindings in the member's namespace.
    pub bindings: &'a [Arc<RoleBinding>],
    /// Whether a custom ClusterRole may be assigned: listed in
    /// `--assignable-cluster-roles` and labelled `workspaces.dev/assignable: "true"`.
    pub is_assignable: &'a (dyn Fn(&str) -> bool + Sync),
    /// How long an invitation stays open (`--invitation-ttl`).
    pub invitation_ttl: std::time::Duration,
    /// The time the decision is taken at (invitations expire).
    pub now: k8s_openapi::jiff::Timestamp,
}

/// Why a member gets no (new) access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// PascalCase reason for the conditions.
    pub reason: &'static str,
    /// One human sentence.
    pub message: String,
    /// Whether a person must act (`Stalled`), as opposed to a wait that ends by itself.
    pub stalled: bool,
    /// Whether access the member holds must be taken away. When false, the
    /// member keeps whatever it holds but gets nothing new.
    pub revoke: bool,
}

/// The decision for one member.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Apply this RoleBinding, then remove the member's other bindings.
    Grant(Box<RoleBinding>),
    /// An open invitation: grant nothing but the invitee's answering grant.
    Invite(Box<Invitation>),
    /// Grant nothing; report why.
    Blocked(Blocked),
}

/// Whether the object is being deleted.
pub fn deleting<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// Older first: creation time, then name.
fn age_key(m: &WorkspaceMember) -> (Option<k8s_openapi::jiff::Timestamp>, String) {
    (m.creation_timestamp().map(|t| t.0), m.name_any())
}

/// The RoleBindings that belong to `member`: in its namespace, labelled as a
/// member binding, and owned by its UID.
pub fn own_bindings<'a>(
    member: &WorkspaceMember,
    bindings: &'a [Arc<RoleBinding>],
) -> Vec<&'a Arc<RoleBinding>> {
    let Some(uid) = member.uid() else {
        return Vec::new();
    };
    let ns = member.namespace();
    let mut own: Vec<&Arc<RoleBinding>> = bindings
        .iter()
        .filter(|rb| rb.namespace() == ns && rb.labels().contains_key(labels::MEMBER))
        .filter(|rb| rb.owner_references().iter().any(|o| o.uid == uid))
        .collect();
    own.sort_by_key(|rb| rb.name_any());
    own
}

/// The ClusterRole `member` asks for, if it may be assigned.
fn cluster_role(inputs: &Inputs<'_>, member: &WorkspaceMember) -> Result<String, Blocked> {
    match (member.spec.cluster_role_name(), member.spec.role) {
        (Some(name), _) if (inputs.is_assignable)(name) => Ok(name.to_string()),
        (Some(name), _) => Err(Blocked {
            reason: reason::ROLE_NOT_ASSIGNABLE,
            message: format!(
                "ClusterRole {name:?} is not assignable: a cluster admin must label it workspaces.dev/assignable=true and list it in the operator's assignable cluster roles; or use spec.role."
            ),
            stalled: true,
            revoke: true,
        }),
        (None, Some(role)) => Ok(role.cluster_role().to_string()),
        (None, None) => Err(Blocked {
            reason: reason::ROLE_NOT_ASSIGNABLE,
            message: "The member names no role; set spec.role or spec.clusterRole.".to_string(),
            stalled: true,
            revoke: true,
        }),
    }
}

/// Whether the subject belongs to the organization: listed in `members` or
/// `admins` (by kind and name), or a ServiceAccount of one of its workspaces.
fn in_organization(subject: &Subject, org: &Organization, namespaces: &[String]) -> bool {
    let listed = |kind: OrganizationSubjectKind| {
        org.spec
            .members
            .iter()
            .chain(org.spec.admins.iter())
            .any(|s| s.kind == kind && s.name == subject.name)
    };
    match subject.kind {
        SubjectKind::User => listed(OrganizationSubjectKind::User),
        SubjectKind::Group => listed(OrganizationSubjectKind::Group),
        SubjectKind::ServiceAccount => subject
            .namespace_name()
            .is_some_and(|ns| namespaces.iter().any(|n| n == ns)),
    }
}

/// The checks about the member itself (role, organization, duplicates),
/// without the member limit. Returns the ClusterRole to bind.
fn eligible(
    inputs: &Inputs<'_>,
    ws: &Workspace,
    member: &WorkspaceMember,
) -> Result<String, Blocked> {
    let role = cluster_role(inputs, member)?;
    let subject = &member.spec.subject;
    if ws.spec.owner.kind == AccountKind::Organization {
        let Some(org) = inputs.organization else {
            return Err(Blocked {
                reason: reason::WORKSPACE_NOT_READY,
                message: format!(
                    "Organization {:?} that owns workspace {} does not exist; the role is granted once it does.",
                    ws.spec.owner.name,
                    ws.name_any()
                ),
                stalled: false,
                revoke: false,
            });
        };
        if !in_organization(subject, org, inputs.organization_namespaces) {
            let hint = if subject.kind == SubjectKind::ServiceAccount {
                "use a ServiceAccount from one of the organization's workspaces"
            } else {
                "an organization admin must add it to spec.members"
            };
            return Err(Blocked {
                reason: reason::NOT_AN_ORGANIZATION_MEMBER,
                message: format!(
                    "{} does not belong to organization {}; {hint}.",
                    describe(subject),
                    org.name_any()
                ),
                stalled: true,
                revoke: true,
            });
        }
    }
    let name = member.name_any();
    let winner = inputs
        .members
        .iter()
        .map(|m| &**m)
        .filter(|m| !deleting(*m) && m.name_any() != name)
        .filter(|m| same_subject(&m.spec.subject, subject))
        .chain(std::iter::once(member))
        .min_by_key(|m| age_key(m));
    if let Some(winner) = winner.filter(|w| w.name_any() != name) {
        return Err(Blocked {
            reason: reason::DUPLICATE_SUBJECT,
            message: format!(
                "{} already holds a role here through WorkspaceMember {}; change that member's role or delete this one.",
                describe(subject),
                winner.name_any()
            ),
            stalled: true,
            revoke: true,
        });
    }
    Ok(role)
}

/// Decide whether `inputs.member` may hold its role and, if so, build the
/// RoleBinding that grants it.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let member = inputs.member;
    let namespace = member.namespace().unwrap_or_default();
    let Some(ws) = inputs.workspace else {
        if let Some(claimant) = inputs.claimant {
            return Plan::Blocked(Blocked {
                reason: reason::WORKSPACE_NOT_READY,
                message: format!(
                    "Workspace {} has not taken namespace {namespace} yet; the role is granted once it has.",
                    claimant.name_any()
                ),
                stalled: false,
                revoke: true,
            });
        }
        return Plan::Blocked(Blocked {
            reason: reason::WORKSPACE_NOT_FOUND,
            message: format!(
                "Namespace {namespace} is not the namespace of any Workspace; create WorkspaceMembers in a workspace's namespace."
            ),
            stalled: true,
            revoke: true,
        });
    };
    let ws_name = ws.name_any();
    if deleting(ws) {
        return Plan::Blocked(Blocked {
            reason: reason::WORKSPACE_NOT_READY,
            message: format!("Workspace {ws_name} is being deleted."),
            stalled: false,
            revoke: true,
        });
    }
    if ws.status.as_ref().and_then(|s| s.phase) != Some(WorkspacePhase::Active) {
        return Plan::Blocked(Blocked {
            reason: reason::WORKSPACE_NOT_READY,
            message: format!(
                "Workspace {ws_name} is not ready; the role is granted once it is, and access already granted is kept."
            ),
            stalled: false,
            revoke: false,
        });
    }
    decide(inputs, ws)
}

/// The decision for `inputs.member` of `ws` as if `ws` were Active: the
/// checks about the member itself and the member limit. The Workspace
/// controller asks it too, to give the members it will hold read access to
/// the Workspace in the same pass.
pub fn decide(inputs: &Inputs<'_>, ws: &Workspace) -> Plan {
    let member = inputs.member;
    let ws_name = ws.name_any();
    if let Some(ended) = invitation::ended_already(member, inputs.invitation_ttl, inputs.now) {
        return ended;
    }
    let role = match eligible(inputs, ws, member) {
        Ok(role) => role,
        Err(blocked) => return Plan::Blocked(blocked),
    };
    let holds = |m: &WorkspaceMember| !own_bindings(m, inputs.bindings).is_empty();
    if let Some(plan) =
        invitation::decide(member, ws, holds(member), inputs.invitation_ttl, inputs.now)
    {
        return plan;
    }

    // The member limit: members that hold a binding keep it whatever the
    // limit says; others are let in oldest first.
    let limit = inputs
        .organization
        .filter(|_| ws.spec.owner.kind == AccountKind::Organization)
        .and_then(|o| o.spec.limits.as_ref())
        .and_then(|l| l.members_per_workspace)
        .map(|l| l.max(0) as usize);
    if let (Some(limit), false) = (limit, holds(member)) {
        let mine = age_key(member);
        let name = member.name_any();
        let ahead = inputs
            .members
            .iter()
            .filter(|o| !deleting(&***o) && o.name_any() != name)
            .filter(|o| holds(o) || (age_key(o) < mine && eligible(inputs, ws, o).is_ok()))
            .count();
        if ahead >= limit {
            return Plan::Blocked(Blocked {
                reason: reason::MEMBER_LIMIT_EXCEEDED,
                message: format!(
                    "Workspace {ws_name} may have at most {limit} members and already has {ahead}; remove a member or ask a platform admin to raise the limit."
                ),
                stalled: true,
                revoke: false,
            });
        }
    }
    Plan::Grant(Box::new(role_binding(member, &ws_name, &role)))
}

/// The RBAC subject of a member's subject.
pub fn rbac_subject(subject: &Subject) -> RbacSubject {
    let rbac = Some("rbac.authorization.k8s.io".to_string());
    match subject.kind {
        SubjectKind::User => RbacSubject {
            api_group: rbac,
            kind: "User".to_string(),
            name: subject.name.clone(),
            namespace: None,
        },
        SubjectKind::Group => RbacSubject {
            api_group: rbac,
            kind: "Group".to_string(),
            name: subject.name.clone(),
            namespace: None,
        },
        SubjectKind::ServiceAccount => RbacSubject {
            api_group: None,
            kind: "ServiceAccount".to_string(),
            name: subject.name.clone(),
            namespace: subject.namespace_name().map(str::to_string),
        },
    }
}

/// The RoleBinding giving `member` the ClusterRole `cluster_role`, labelled
/// and owned by the member (so it goes when the member goes).
pub fn role_binding(member: &WorkspaceMember, workspace: &str, cluster_role: &str) -> RoleBinding {
    let name = member.name_any();
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(binding_name(&name, cluster_role)),
            namespace: member.namespace(),
            labels: Some(BTreeMap::from([
                (
                    labels::MANAGED_BY.to_string(),
                    labels::MANAGED_BY_VALUE.to_string(),
                ),
                (labels::WORKSPACE.to_string(), workspace.to_string()),
                (labels::MEMBER.to_string(), member_label(&name)),
            ])),
            owner_references: Some(member.controller_owner_ref(&()).into_iter().collect()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "ClusterRole".to_string(),
            name: cluster_role.to_string(),
        },
        subjects: Some(vec![rbac_subject(&member.spec.subject)]),
    }
}

#[cfg(test)]
mod tests;
