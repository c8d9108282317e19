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
                    "Namespace {namespace:?} is taken (this workspace did not create it); choose another spec.namespace, or have a cluster admin let this workspace adopt it with the annotation workspaces.dev/adopt={name}."
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
mod tests {
    use super::*;
    use crate::api::{
        AccountRef, OrganizationLimits, OrganizationSpec, WorkspacePhase, WorkspaceSpec,
        WorkspaceStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ws(name: &str, owner: AccountRef, handle: Option<&str>, age: i64) -> Arc<Workspace> {
        let mut w = Workspace::new(
            name,
            WorkspaceSpec {
                owner,
                handle: handle.map(str::to_string),
                description: None,
                namespace: None,
                deletion_policy: Default::default(),
                deletion_protection: false,
            },
        );
        w.metadata.uid = Some(format!("uid-{name}"));
        w.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + age).unwrap(),
        ));
        Arc::new(w)
    }

    fn active(w: &Arc<Workspace>) -> Arc<Workspace> {
        let mut w = (**w).clone();
        let name = w.name_any();
        w.status = Some(WorkspaceStatus {
            phase: Some(WorkspacePhase::Active),
            handle: Some(w.spec.effective_handle(&name).to_string()),
            ..Default::default()
        });
        Arc::new(w)
    }

    fn plan_for(
        w: &Workspace,
        all: &[Arc<Workspace>],
        org: Option<&Organization>,
        ns: Option<&PartialObjectMeta<Namespace>>,
        provisioned: &[&str],
        user_limit: Option<u32>,
    ) -> Plan {
        let provisioned: Vec<String> = provisioned.iter().map(|s| s.to_string()).collect();
        let is_provisioned = move |o: &Workspace| provisioned.contains(&o.name_any());
        plan(&Inputs {
            workspace: w,
            all,
            organization: org,
            namespace: ns,
            is_provisioned: &is_provisioned,
            user_limit,
            pod_security: PodSecurityLevel::Baseline,
        })
    }

    fn reason_of(plan: &Plan) -> &'static str {
        match plan {
            Plan::Provision(_) => "Provision",
            Plan::Blocked(b) => b.reason,
        }
    }

    fn namespace(annotations: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        let mut ns: PartialObjectMeta<Namespace> = PartialObjectMeta::default();
        ns.metadata.name = Some("ns".into());
        ns.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        ns
    }

    #[test]
    fn the_older_workspace_keeps_a_handle() {
        let alice = AccountRef::user("alice@example.com");
        let old = ws("old", alice.clone(), Some("prod"), 0);
        let new = ws("new", alice.clone(), Some("prod"), 10);
        let all = vec![old.clone(), new.clone()];
        assert_eq!(
            reason_of(&plan_for(&old, &all, None, None, &[], None)),
            "Provision"
        );
        assert_eq!(
            reason_of(&plan_for(&new, &all, None, None, &[], None)),
            reason::HANDLE_CONFLICT
        );
        // Another owner may use the same handle.
        let other = ws("other", AccountRef::user("bob"), Some("prod"), 20);
        let all = vec![old, new, other.clone()];
        assert_eq!(
            reason_of(&plan_for(&other, &all, None, None, &[], None)),
            "Provision"
        );
    }

    #[test]
    fn an_active_workspace_keeps_its_handle_against_an_older_claim() {
        let alice = AccountRef::user("alice");
        let older = ws("older", alice.clone(), Some("prod"), 0);
        let holder = active(&ws("holder", alice.clone(), Some("prod"), 10));
        let all = vec![older.clone(), holder.clone()];
        assert_eq!(
            reason_of(&plan_for(&holder, &all, None, None, &["holder"], None)),
            "Provision"
        );
        assert_eq!(
            reason_of(&plan_for(&older, &all, None, None, &["holder"], None)),
            reason::HANDLE_CONFLICT
        );
    }

    #[test]
    fn limits_admit_the_oldest_and_never_evict_the_provisioned() {
        let org = AccountRef::organization("acme");
        let mut acme = Organization::new("acme", OrganizationSpec::default());
        acme.spec.limits = Some(OrganizationLimits {
            workspaces: Some(1),
            members_per_workspace: None,
        });
        let a = ws("a", org.clone(), None, 0);
        let b = ws("b", org.clone(), None, 10);
        let all = vec![a.clone(), b.clone()];
        assert_eq!(
            reason_of(&plan_for(&a, &all, Some(&acme), None, &[], None)),
            "Provision"
        );
        assert_eq!(
            reason_of(&plan_for(&b, &all, Some(&acme), None, &[], None)),
            reason::WORKSPACE_LIMIT_EXCEEDED
        );
        // Limit lowered to 0: what is provisioned stays.
        acme.spec.limits = Some(OrganizationLimits {
            workspaces: Some(0),
            members_per_workspace: None,
        });
        assert_eq!(
            reason_of(&plan_for(&a, &all, Some(&acme), None, &["a"], None)),
            "Provision"
        );
        // Personal accounts use the operator's limit.
        let u = ws("u", AccountRef::user("carol"), None, 0);
        let v = ws("v", AccountRef::user("carol"), None, 5);
        let all = vec![u.clone(), v.clone()];
        assert_eq!(
            reason_of(&plan_for(&v, &all, None, None, &["u"], Some(1))),
            reason::WORKSPACE_LIMIT_EXCEEDED
        );
        assert_eq!(
            reason_of(&plan_for(&v, &all, None, None, &["u"], None)),
            "Provision"
        );
    }

    #[test]
    fn missing_organization_blocks() {
        let w = ws("w", AccountRef::organization("ghost"), None, 0);
        assert_eq!(
            reason_of(&plan_for(
                &w,
                std::slice::from_ref(&w),
                None,
                None,
                &[],
                None
            )),
            reason::ORGANIZATION_NOT_FOUND
        );
    }

    #[test]
    fn namespaces_are_ours_by_uid_adoptable_by_annotation_or_a_conflict() {
        let w = ws("w", AccountRef::user("alice"), None, 0);
        let all = vec![w.clone()];
        let foreign = namespace(&[]);
        assert_eq!(
            reason_of(&plan_for(&w, &all, None, Some(&foreign), &[], None)),
            reason::NAMESPACE_CONFLICT
        );
        let other_uid = namespace(&[(labels::WORKSPACE_UID, "uid-someone-else")]);
        assert_eq!(
            reason_of(&plan_for(&w, &all, None, Some(&other_uid), &[], None)),
            reason::NAMESPACE_CONFLICT
        );
        // A label naming the workspace proves nothing.
        let mut labelled = namespace(&[]);
        labelled.metadata.labels = Some([(labels::WORKSPACE.to_string(), "w".to_string())].into());
        assert_eq!(
            reason_of(&plan_for(&w, &all, None, Some(&labelled), &[], None)),
            reason::NAMESPACE_CONFLICT
        );
        // Another workspace's namespace cannot be adopted even with the annotation.
        let adopt_taken = namespace(&[(labels::ADOPT, "w"), (labels::WORKSPACE_UID, "uid-x")]);
        assert_eq!(
            reason_of(&plan_for(&w, &all, None, Some(&adopt_taken), &[], None)),
            reason::NAMESPACE_CONFLICT
        );
        let ours = namespace(&[(labels::WORKSPACE_UID, "uid-w")]);
        assert_eq!(
            reason_of(&plan_for(&w, &all, None, Some(&ours), &[], None)),
            "Provision"
        );
        let adoptable = namespace(&[(labels::ADOPT, "w")]);
        match plan_for(&w, &all, None, Some(&adoptable), &[], None) {
            Plan::Provision(d) => {
                assert!(d.adopted);
                assert_eq!(
                    d.namespace
                        .annotations()
                        .get(labels::ADOPTED)
                        .map(String::as_str),
                    Some("true")
                );
            }
            other => panic!("expected adoption, got {other:?}"),
        }
    }

    #[test]
    fn owner_names_that_are_not_label_values_become_annotations() {
        let w = ws("w", AccountRef::user("alice@example.com"), Some("prod"), 0);
        let ns = namespace_metadata(&w, "w", false, PodSecurityLevel::Baseline);
        assert_eq!(
            ns.annotations().get(labels::OWNER).map(String::as_str),
            Some("alice@example.com")
        );
        assert!(ns.labels().get(labels::OWNER).is_none());
        assert_eq!(
            ns.labels().get(labels::HANDLE).map(String::as_str),
            Some("prod")
        );
        assert_eq!(
            ns.annotations()
                .get(labels::WORKSPACE_UID)
                .map(String::as_str),
            Some("uid-w")
        );
        let w = ws("w", AccountRef::user("alice"), None, 0);
        let ns = namespace_metadata(&w, "w", false, PodSecurityLevel::Baseline);
        assert_eq!(
            ns.labels().get(labels::OWNER).map(String::as_str),
            Some("alice")
        );
    }
}
