//! The pure part of the Workspace controller: from a Workspace and the cached
//! world, decide whether it may be provisioned and build the desired children.
//! No IO here; everything is unit-tested without a cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject as RbacSubject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PartialObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::conditions::reason;
use crate::api::{
    AccountKind, Organization, OrganizationSubjectKind, PodSecurityLevel, Workspace, WorkspaceRole,
};
use crate::controller::labels;

/// Name of the RoleBinding that gives the owner the Owner role in the namespace.
pub const OWNER_BINDING: &str = "workspaces.dev:owner";

/// Names of the per-workspace ClusterRoles (each with a ClusterRoleBinding of
/// the same name) that earlier versions of the operator created to give
/// members and owners access to the Workspace object. Access is now granted
/// by the install's constant roles and the `workspace-access` admission
/// policy; the operator deletes these where it finds them.
pub fn legacy_access_names(workspace: &str) -> [String; 2] {
    [
        format!("workspaces.dev:workspace:{workspace}:reader"),
        format!("workspaces.dev:workspace:{workspace}:owner"),
    ]
}

/// What the operator knows when it decides about one Workspace.
pub struct Inputs<'a> {
    /// The Workspace being reconciled.
    pub workspace: &'a Workspace,
    /// The Workspaces of the same owner, itself included (handles and limits
    /// are per owner; others are ignored).
    pub all: &'a [Arc<Workspace>],
    /// The owning Organization, when the owner is one and it exists.
    pub organization: Option<&'a Organization>,
    /// The namespace of that name, when it exists.
    pub namespace: Option<&'a PartialObjectMeta<Namespace>>,
    /// Whether a Workspace already holds its namespace (grandfathered under limits).
    pub is_provisioned: &'a (dyn Fn(&Workspace) -> bool + Sync),
    /// `--max-workspaces-per-user`, `None` for unlimited.
    pub user_limit: Option<u32>,
    /// `--pod-security`: the level enforced unless the Organization says otherwise.
    pub pod_security: PodSecurityLevel,
}

/// Why a Workspace is not provisioned (now).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// PascalCase reason for the conditions.
    pub reason: &'static str,
    /// One human sentence.
    pub message: String,
    /// Whether a person must act (`Stalled`), as opposed to a wait that ends by itself.
    pub stalled: bool,
}

/// The children a provisioned Workspace has.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The namespace, metadata only: name, labels, annotations.
    pub namespace: Namespace,
    /// Whether the namespace was adopted (never deleted by the operator).
    pub adopted: bool,
    /// The owner's RoleBinding to `workspaces:owner`.
    pub owner_binding: RoleBinding,
    /// The owning Organization's `workspaceDefaults` in the namespace.
    pub defaults: super::defaults::Defaults,
}

/// The decision for one Workspace.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Provision (or keep) these children.
    Provision(Box<Desired>),
    /// Do not provision; report why.
    Blocked(Blocked),
}

/// Whether the Workspace is in the middle of being deleted.
fn deleting(ws: &Workspace) -> bool {
    ws.meta().deletion_timestamp.is_some()
}

/// Older first: creation time, then name.
fn age_key(ws: &Workspace) -> (Option<k8s_openapi::jiff::Timestamp>, String) {
    (ws.creation_timestamp().map(|t| t.0), ws.name_any())
}

/// The Workspace of the same owner and effective handle that keeps the handle:
/// one that is Active with that handle already (a newer claim never takes a
/// handle away from a provisioned workspace), else the oldest one not being
/// deleted.
fn handle_winner<'a>(ws: &Workspace, all: &'a [Arc<Workspace>]) -> Option<&'a Arc<Workspace>> {
    let name = ws.name_any();
    let handle = ws.spec.effective_handle(&name);
    let claimants: Vec<&Arc<Workspace>> = all
        .iter()
        .filter(|o| !deleting(o) && o.spec.owner == ws.spec.owner)
        .filter(|o| {
            let other = o.name_any();
            o.spec.effective_handle(&other) == handle
        })
        .collect();
    let holds = |o: &Workspace| {
        o.status.as_ref().is_some_and(|s| {
            s.phase == Some(crate::api::WorkspacePhase::Active)
                && s.handle.as_deref() == Some(handle)
        })
    };
    claimants
        .iter()
        .filter(|o| holds(o))
        .min_by_key(|o| age_key(o))
        .or_else(|| claimants.iter().min_by_key(|o| age_key(o)))
        .copied()
}

/// Whether another, older Workspace of the same owner holds this handle.
pub fn loses_handle(ws: &Workspace, all: &[Arc<Workspace>]) -> Option<String> {
    handle_winner(ws, all)
        .filter(|winner| winner.name_any() != ws.name_any())
        .map(|winner| winner.name_any())
}

/// Decide whether `inputs.workspace` may be provisioned and, if so, build its children.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let ws = inputs.workspace;
    let namespace = ws.spec.effective_namespace(&ws.name_any()).to_string();
    let adopted = account_allows(inputs).and_then(|()| namespace_allows(inputs, &namespace));
    match adopted {
        Ok(adopted) => Plan::Provision(Box::new(desired(inputs, &namespace, adopted))),
        Err(blocked) => Plan::Blocked(blocked),
    }
}

/// The owner's rules: the owning Organization exists, the handle is the
/// Workspace's among the owner's, and the owner's workspace limit has room
/// (a provisioned Workspace keeps its place whatever the limit says).
fn account_allows(inputs: &Inputs<'_>) -> Result<(), Blocked> {
    let ws = inputs.workspace;
    let name = ws.name_any();
    let owner = &ws.spec.owner;
    let blocked = |reason, message| Blocked {
        reason,
        message,
        stalled: true,
    };
    if owner.kind == AccountKind::Organization && inputs.organization.is_none() {
        return Err(blocked(
            reason::ORGANIZATION_NOT_FOUND,
            format!(
                "Organization {:?} does not exist; create it or change the owner with a WorkspaceTransfer.",
                owner.name
            ),
        ));
    }
    if let Some(winner) = loses_handle(ws, inputs.all) {
        return Err(blocked(
            reason::HANDLE_CONFLICT,
            format!(
                "Handle {:?} is already used by workspace {winner:?} of the same owner; choose another spec.handle.",
                ws.spec.effective_handle(&name)
            ),
        ));
    }
    let limit = match owner.kind {
        AccountKind::Organization => inputs
            .organization
            .and_then(|o| o.spec.limits.as_ref())
            .and_then(|l| l.workspaces)
            .map(|l| l.max(0) as u32),
        AccountKind::User => inputs.user_limit,
    };
    let Some(limit) = limit.filter(|_| !(inputs.is_provisioned)(ws)) else {
        return Ok(());
    };
    let mine = age_key(ws);
    let ahead = inputs
        .all
        .iter()
        .filter(|o| !deleting(o) && o.spec.owner == *owner && o.name_any() != name)
        .filter(|o| {
            (inputs.is_provisioned)(o)
                || (age_key(o) < mine && loses_handle(o, inputs.all).is_none())
        })
        .count();
    if ahead >= limit as usize {
        return Err(blocked(
            reason::WORKSPACE_LIMIT_EXCEEDED,
            format!(
                "{owner} may have at most {limit} workspaces and already has {ahead}; delete one or ask a platform admin to raise the limit."
            ),
        ));
    }
    Ok(())
}

/// The namespace's rules: it is free, the Workspace's own (UID annotation)
/// or offered to it for adoption, and not being deleted. Returns whether the
/// Workspace adopted it.
fn namespace_allows(inputs: &Inputs<'_>, namespace: &str) -> Result<bool, Blocked> {
    let Some(ns) = inputs.namespace else {
        return Ok(false);
    };
    let ws = inputs.workspace;
    let name = ws.name_any();
    let uid = ws.uid().unwrap_or_default();
    let annotations = ns.annotations();
    let holder = annotations.get(labels::WORKSPACE_UID);
    let adopted = if holder.is_some_and(|h| *h == uid) {
        annotations
            .get(labels::ADOPTED)
            .is_some_and(|v| v == "true")
    } else if holder.is_none() && annotations.get(labels::ADOPT).is_some_and(|a| *a == name) {
        true
    } else {
        return Err(Blocked {
            reason: reason::NAMESPACE_CONFLICT,
            message: format!(
                "Namespace {namespace:?} is taken (this workspace did not create it); choose another spec.namespace, or have a cluster admin let this workspace adopt it with the annotation workspaces.dev/adopt={name}."
            ),
            stalled: true,
        });
    };
    if ns.meta().deletion_timestamp.is_some() {
        return Err(Blocked {
            reason: reason::NAMESPACE_TERMINATING,
            message: format!(
                "Namespace {namespace:?} is being deleted; it is created again once it is gone."
            ),
            stalled: false,
        });
    }
    Ok(adopted)
}

fn rbac_subject(kind: &str, name: &str, namespace: Option<&str>) -> RbacSubject {
    RbacSubject {
        api_group: (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".to_string()),
        kind: kind.to_string(),
        name: name.to_string(),
        namespace: namespace.map(str::to_string),
    }
}

/// The subjects holding Owner: the user, or every admin of the organization.
pub fn owner_subjects(ws: &Workspace, organization: Option<&Organization>) -> Vec<RbacSubject> {
    match ws.spec.owner.kind {
        AccountKind::User => vec![rbac_subject("User", &ws.spec.owner.name, None)],
        AccountKind::Organization => {
            let mut subjects: Vec<RbacSubject> = organization
                .map(|o| {
                    o.spec
                        .admins
                        .iter()
                        .map(|a| {
                            let kind = match a.kind {
                                OrganizationSubjectKind::User => "User",
                                OrganizationSubjectKind::Group => "Group",
                            };
                            rbac_subject(kind, &a.name, None)
                        })
                        .collect()
                })
                .unwrap_or_default();
            subjects.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
            subjects.dedup();
            subjects
        }
    }
}

/// Labels on every child of a Workspace.
pub fn child_labels(workspace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (labels::WORKSPACE.to_string(), workspace.to_string()),
    ])
}

fn owner_reference(ws: &Workspace) -> Vec<OwnerReference> {
    ws.controller_owner_ref(&()).into_iter().collect()
}

/// The Pod Security level of a Workspace's namespace: the owning
/// Organization's `workspaceDefaults.podSecurity`, else the operator's setting.
pub fn pod_security(
    organization: Option<&Organization>,
    fallback: PodSecurityLevel,
) -> PodSecurityLevel {
    organization
        .and_then(|o| o.spec.workspace_defaults.as_ref())
        .and_then(|d| d.pod_security)
        .unwrap_or(fallback)
}

/// The namespace metadata the operator keeps: labels naming the workspace,
/// owner and handle, the Pod Security level it enforces, and the annotation
/// proving which Workspace created it.
pub fn namespace_metadata(
    ws: &Workspace,
    namespace: &str,
    adopted: bool,
    pod_security: PodSecurityLevel,
) -> Namespace {
    let name = ws.name_any();
    let mut labels_ = child_labels(&name);
    labels_.insert(
        labels::POD_SECURITY_ENFORCE.to_string(),
        pod_security.as_str().to_string(),
    );
    let mut annotations = BTreeMap::from([(
        labels::WORKSPACE_UID.to_string(),
        ws.uid().unwrap_or_default(),
    )]);
    labels_.insert(
        labels::OWNER_KIND.to_string(),
        ws.spec.owner.kind.to_string(),
    );
    let owner_key = labels::OWNER.to_string();
    if labels::is_label_value(&ws.spec.owner.name) {
        labels_.insert(owner_key, ws.spec.owner.name.clone());
    } else {
        annotations.insert(owner_key, ws.spec.owner.name.clone());
    }
    labels_.insert(
        labels::HANDLE.to_string(),
        ws.spec.effective_handle(&name).to_string(),
    );
    if adopted {
        annotations.insert(labels::ADOPTED.to_string(), "true".to_string());
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_string()),
            labels: Some(labels_),
            annotations: Some(annotations),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn desired(inputs: &Inputs<'_>, namespace: &str, adopted: bool) -> Desired {
    let ws = inputs.workspace;
    let name = ws.name_any();
    let owners = owner_subjects(ws, inputs.organization);
    let mut binding_labels = child_labels(&name);
    binding_labels.insert(labels::ACCESS.to_string(), "owner".to_string());
    Desired {
        namespace: namespace_metadata(
            ws,
            namespace,
            adopted,
            pod_security(inputs.organization, inputs.pod_security),
        ),
        adopted,
        owner_binding: RoleBinding {
            metadata: ObjectMeta {
                name: Some(OWNER_BINDING.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(binding_labels),
                owner_references: Some(owner_reference(ws)),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".to_string()),
                kind: "ClusterRole".to_string(),
                name: WorkspaceRole::Owner.cluster_role().to_string(),
            },
            subjects: Some(owners.clone()),
        },
        defaults: super::defaults::build(inputs.organization, namespace, &child_labels(&name)),
    }
}

#[cfg(test)]
mod tests;
