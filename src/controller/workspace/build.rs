//! The pure part of the Workspace controller: from a Workspace and the cached
//! world, decide whether it may be provisioned and build the desired children.
//! No IO here; everything is unit-tested without a cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject as RbacSubject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PartialObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::conditions::reason;
use crate::api::{
    AccountKind, Organization, OrganizationSubjectKind, Subject, SubjectKind, Workspace,
    WorkspaceRole,
};
use crate::controller::labels;

/// Name of the RoleBinding that gives the owner the Owner role in the namespace.
pub const OWNER_BINDING: &str = "workspaces.dev:owner";

/// Name of the per-workspace ClusterRole (and its binding) letting members read the Workspace.
pub fn reader_role_name(workspace: &str) -> String {
    format!("workspaces.dev:workspace:{workspace}:reader")
}

/// Name of the per-workspace ClusterRole (and its binding) letting owners edit and delete the Workspace.
pub fn owner_role_name(workspace: &str) -> String {
    format!("workspaces.dev:workspace:{workspace}:owner")
}

/// What the operator knows when it decides about one Workspace.
pub struct Inputs<'a> {
    /// The Workspace being reconciled.
    pub workspace: &'a Workspace,
    /// Every Workspace in the cache (for handle and limit decisions).
    pub all: &'a [Arc<Workspace>],
    /// The owning Organization, when the owner is one and it exists.
    pub organization: Option<&'a Organization>,
    /// The namespace of that name, when it exists.
    pub namespace: Option<&'a PartialObjectMeta<Namespace>>,
    /// Whether a Workspace already holds its namespace (grandfathered under limits).
    pub is_provisioned: &'a (dyn Fn(&Workspace) -> bool + Sync),
    /// Subjects of the workspace's active members.
    pub members: &'a [Subject],
    /// Subjects of the active members holding the built-in Owner role: like
    /// the owner, they may edit and delete the Workspace object (SPEC 1.2).
    pub owner_members: &'a [Subject],
    /// `--max-workspaces-per-user`, `None` for unlimited.
    pub user_limit: Option<u32>,
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
    /// `get` on this Workspace, for members.
    pub reader_role: ClusterRole,
    /// Binds the reader role to the active members.
    pub reader_binding: ClusterRoleBinding,
    /// `get`, `update`, `patch`, `delete` on this Workspace, for owners.
    pub owner_role: ClusterRole,
    /// Binds the owner role to the owners.
    pub owner_role_binding: ClusterRoleBinding,
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
/// the oldest one not being deleted.
fn handle_winner<'a>(ws: &Workspace, all: &'a [Arc<Workspace>]) -> Option<&'a Arc<Workspace>> {
    let name = ws.name_any();
    let handle = ws.spec.effective_handle(&name);
    all.iter()
        .filter(|o| !deleting(o) && o.spec.owner == ws.spec.owner)
        .filter(|o| {
            let other = o.name_any();
            o.spec.effective_handle(&other) == handle
        })
        .min_by_key(|o| age_key(o))
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
    let name = ws.name_any();
    let owner = &ws.spec.owner;
    let provisioned = (inputs.is_provisioned)(ws);

    if owner.kind == AccountKind::Organization && inputs.organization.is_none() {
        return Plan::Blocked(Blocked {
            reason: reason::ORGANIZATION_NOT_FOUND,
            message: format!(
                "Organization {:?} does not exist; create it or change the owner with a WorkspaceTransfer.",
                owner.name
            ),
            stalled: true,
        });
    }

    if let Some(winner) = loses_handle(ws, inputs.all) {
        return Plan::Blocked(Blocked {
            reason: reason::HANDLE_CONFLICT,
            message: format!(
                "Handle {:?} is already used by workspace {winner:?} of the same owner; choose another spec.handle.",
                ws.spec.effective_handle(&name)
            ),
            stalled: true,
        });
    }

    let limit = match owner.kind {
        AccountKind::Organization => inputs
            .organization
            .and_then(|o| o.spec.limits.as_ref())
            .and_then(|l| l.workspaces)
            .map(|l| l.max(0) as u32),
        AccountKind::User => inputs.user_limit,
    };
    if let (Some(limit), false) = (limit, provisioned) {
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
            return Plan::Blocked(Blocked {
                reason: reason::WORKSPACE_LIMIT_EXCEEDED,
                message: format!(
                    "{owner} may have at most {limit} workspaces and already has {ahead}; delete one or ask a platform admin to raise the limit."
                ),
                stalled: true,
            });
        }
    }

    let namespace = ws.spec.effective_namespace(&name).to_string();
    let uid = ws.uid().unwrap_or_default();
    let mut adopted = false;
    if let Some(ns) = inputs.namespace {
        let annotations = ns.annotations();
        let holder = annotations.get(labels::WORKSPACE_UID);
        if holder.is_some_and(|h| *h == uid) {
            adopted = annotations
                .get(labels::ADOPTED)
                .is_some_and(|v| v == "true");
        } else if holder.is_none() && annotations.get(labels::ADOPT).is_some_and(|a| *a == name) {
            adopted = true;
        } else {
            return Plan::Blocked(Blocked {
                reason: reason::NAMESPACE_CONFLICT,
                message: format!(
                    "Namespace {namespace:?} already exists and was not created by this workspace; choose another spec.namespace, or have a cluster admin annotate it workspaces.dev/adopt={name}."
                ),
                stalled: true,
            });
        }
        if ns.meta().deletion_timestamp.is_some() {
            return Plan::Blocked(Blocked {
                reason: reason::NAMESPACE_TERMINATING,
                message: format!(
                    "Namespace {namespace:?} is being deleted; it is created again once it is gone."
                ),
                stalled: false,
            });
        }
    }

    Plan::Provision(Box::new(desired(inputs, &namespace, adopted)))
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

/// RBAC subjects for member subjects, sorted and without duplicates.
pub fn member_subjects(members: &[Subject]) -> Vec<RbacSubject> {
    let mut subjects: Vec<RbacSubject> = members
        .iter()
        .map(|m| match m.kind {
            SubjectKind::User => rbac_subject("User", &m.name, None),
            SubjectKind::Group => rbac_subject("Group", &m.name, None),
            SubjectKind::ServiceAccount => {
                rbac_subject("ServiceAccount", &m.name, m.namespace_name())
            }
        })
        .collect();
    subjects
        .sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
    subjects.dedup();
    subjects
}

/// Who may edit and delete the Workspace object: the owners and the members
/// holding the Owner role, sorted and without duplicates.
fn workspace_owners(owners: Vec<RbacSubject>, owner_members: &[Subject]) -> Vec<RbacSubject> {
    let mut subjects = owners;
    subjects.extend(member_subjects(owner_members));
    subjects
        .sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
    subjects.dedup();
    subjects
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

/// The namespace metadata the operator keeps: labels naming the workspace,
/// owner and handle, and the annotation proving which Workspace created it.
pub fn namespace_metadata(ws: &Workspace, namespace: &str, adopted: bool) -> Namespace {
    let name = ws.name_any();
    let mut labels_ = child_labels(&name);
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

fn workspace_rule(name: &str, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![crate::api::GROUP.to_string()]),
        resources: Some(vec!["workspaces".to_string()]),
        resource_names: Some(vec![name.to_string()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

fn cluster_role(ws: &Workspace, role_name: String, verbs: &[&str]) -> ClusterRole {
    let name = ws.name_any();
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(role_name),
            labels: Some(child_labels(&name)),
            owner_references: Some(owner_reference(ws)),
            ..Default::default()
        },
        rules: Some(vec![workspace_rule(&name, verbs)]),
        aggregation_rule: None,
    }
}

fn cluster_role_binding(
    ws: &Workspace,
    role_name: String,
    subjects: Vec<RbacSubject>,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(role_name.clone()),
            labels: Some(child_labels(&ws.name_any())),
            owner_references: Some(owner_reference(ws)),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "ClusterRole".to_string(),
            name: role_name,
        },
        subjects: Some(subjects),
    }
}

fn desired(inputs: &Inputs<'_>, namespace: &str, adopted: bool) -> Desired {
    let ws = inputs.workspace;
    let name = ws.name_any();
    let owners = owner_subjects(ws, inputs.organization);
    let mut binding_labels = child_labels(&name);
    binding_labels.insert(labels::ACCESS.to_string(), "owner".to_string());
    Desired {
        namespace: namespace_metadata(ws, namespace, adopted),
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
        reader_role: cluster_role(ws, reader_role_name(&name), &["get"]),
        reader_binding: cluster_role_binding(
            ws,
            reader_role_name(&name),
            member_subjects(inputs.members),
        ),
        owner_role: cluster_role(
            ws,
            owner_role_name(&name),
            &["get", "update", "patch", "delete"],
        ),
        owner_role_binding: cluster_role_binding(
            ws,
            owner_role_name(&name),
            workspace_owners(owners, inputs.owner_members),
        ),
        defaults: super::defaults::build(inputs.organization, namespace, &child_labels(&name)),
    }
}
