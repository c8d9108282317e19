//! The Organization controller: keeps each organization's admin access
//! object and its status.
//!
//! For an Organization `<org>` it maintains the ClusterRole
//! `workspaces.dev:organization:<org>:admin` (`get`, `update`, `patch` and the
//! custom verb `administer` on `organizations/<org>`) and the
//! ClusterRoleBinding of the same name to the organization's admins. The
//! `administer` verb is what admission asks the authorizer about ("may this
//! requester create a Workspace for this organization?"), so admin rights are
//! judged from the requester's identity by the API server itself.

use std::sync::Arc;

use futures::channel::mpsc::UnboundedReceiver;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::apply::{Finalizers, apply_if_changed};
use super::world::watch;
use super::{Action, Context, labels};
use crate::api::conditions::{self, NewCondition, reason};
use crate::api::{
    AccountKind, AccountRef, Organization, OrganizationStatus, OrganizationSubjectKind, Workspace,
};

/// Metric label of this controller.
const CONTROLLER: &str = "organization";

/// The custom verb that marks an organization admin, checked by admission.
pub const ADMINISTER: &str = "administer";

/// Name of the admin ClusterRole (and its binding) of an organization.
pub fn admin_role_name(org: &str) -> String {
    format!("workspaces.dev:organization:{org}:admin")
}

/// What went wrong in one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Server-side apply of the admin role or binding failed.
    #[error("applying the {kind} failed: {source}")]
    Apply {
        /// Which child.
        kind: &'static str,
        /// The API error.
        source: kube::Error,
    },
    /// Writing status failed.
    #[error("writing status failed: {0}")]
    Status(#[source] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("updating the finalizer failed: {0}")]
    Finalizer(#[source] kube::Error),
}

impl super::ReconcileError for Error {
    /// A bounded, PascalCase reason for metrics.
    fn reason(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "ApplyFailed",
            Error::Status(_) => "StatusFailed",
            Error::Finalizer(_) => "FinalizerFailed",
        }
    }
}

fn child_metadata(org: &Organization, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        labels: Some(
            [
                (
                    labels::MANAGED_BY.to_string(),
                    labels::MANAGED_BY_VALUE.to_string(),
                ),
                (labels::ORGANIZATION.to_string(), org.name_any()),
            ]
            .into(),
        ),
        owner_references: org.controller_owner_ref(&()).map(|r| vec![r]),
        ..Default::default()
    }
}

/// The admin ClusterRole of `org` (pure).
pub fn admin_role(org: &Organization) -> ClusterRole {
    let name = org.name_any();
    ClusterRole {
        metadata: child_metadata(org, admin_role_name(&name)),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![crate::api::GROUP.to_string()]),
            resources: Some(vec!["organizations".to_string()]),
            resource_names: Some(vec![name]),
            verbs: ["get", "update", "patch", ADMINISTER]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        }]),
        aggregation_rule: None,
    }
}

/// The binding of the admin ClusterRole to the organization's admins (pure).
pub fn admin_binding(org: &Organization) -> ClusterRoleBinding {
    let name = admin_role_name(&org.name_any());
    let mut subjects: Vec<Subject> = org
        .spec
        .admins
        .iter()
        .map(|a| Subject {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: match a.kind {
                OrganizationSubjectKind::User => "User",
                OrganizationSubjectKind::Group => "Group",
            }
            .to_string(),
            name: a.name.clone(),
            namespace: None,
        })
        .collect();
    subjects.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    subjects.dedup();
    ClusterRoleBinding {
        metadata: child_metadata(org, name.clone()),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "ClusterRole".to_string(),
            name,
        },
        subjects: Some(subjects),
    }
}

/// The status of `org` given every Workspace in the cache (pure).
pub fn compute_status(
    org: &Organization,
    workspaces: &[Arc<Workspace>],
    now: &Time,
) -> OrganizationStatus {
    let owner = AccountRef::organization(org.name_any());
    let count = workspaces
        .iter()
        .filter(|w| w.spec.owner == owner && w.meta().deletion_timestamp.is_none())
        .count();
    let generation = org.meta().generation;
    let mut status = org.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.workspaces = Some(count as i32);
    let limit = org.spec.limits.as_ref().and_then(|l| l.workspaces);
    let admins = org.spec.admins.len();
    let message = match limit {
        Some(limit) => {
            format!("{count} of at most {limit} workspaces; {admins} admins hold Owner in each.")
        }
        None => format!("{count} workspaces; {admins} admins hold Owner in each."),
    };
    conditions::set_condition(
        &mut status.conditions,
        NewCondition::new(conditions::READY, true, reason::PROVISIONED, message)
            .observed_generation(generation),
        now,
    );
    status
}

fn same_status(a: &OrganizationStatus, b: &OrganizationStatus) -> bool {
    conditions::conditions_equal_ignoring_time(&a.conditions, &b.conditions)
        && a.observed_generation == b.observed_generation
        && a.workspaces == b.workspaces
}

/// Registers the Organization controller's triggers: itself, the
/// Workspaces it owns (it counts them) and its children.
fn register(routes: &mut super::Routes, queue: &super::Queue<Organization>) {
    routes
        .on(watch::ORGANIZATIONS, queue, |_, org| {
            [ObjectRef::new(&org.name_any())]
        })
        .on(watch::WORKSPACES, queue, |_, ws| owners_of(ws))
        .on_children(queue, on_child);
}

/// The Organizations that own a Workspace: its owner, and the previous
/// owner while a change of owner is being applied.
fn owners_of(ws: &Workspace) -> Vec<ObjectRef<Organization>> {
    let previous = ws.status.as_ref().and_then(|s| s.owner.as_ref());
    std::iter::once(&ws.spec.owner)
        .chain(previous.filter(|p| **p != ws.spec.owner))
        .filter(|owner| owner.kind == AccountKind::Organization)
        .map(|owner| ObjectRef::new(&owner.name))
        .collect()
}

/// A child carries the name of its Organization as a label; grants to one
/// subject belong to their member.
fn on_child(child: &ObjectMeta) -> Option<ObjectRef<Organization>> {
    if labels::is_access_grant(child) {
        return None;
    }
    let name = child.labels.as_ref()?.get(labels::ORGANIZATION)?;
    Some(ObjectRef::new(name))
}

/// The Organization controller, as [`super::run`] registers it.
pub struct Organizations;

impl super::Controller for Organizations {
    type Kind = Organization;
    const NAME: &'static str = "the organization controller";

    fn register(routes: &mut super::Routes, queue: &super::Queue<Organization>) {
        register(routes, queue);
    }

    fn run(
        ctx: Arc<Context>,
        triggers: UnboundedReceiver<ObjectRef<Organization>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let store = ctx.world.organizations.clone();
        super::runner::run(ctx, store, triggers, CONTROLLER, reconcile)
    }
}

async fn reconcile(org: Arc<Organization>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let owned = ctx
        .world
        .workspaces_of_owner(&AccountRef::organization(org.name_any()));
    if org.meta().deletion_timestamp.is_some() {
        return deleting(&org, &owned, &ctx).await;
    }
    if !has_finalizer(&org) {
        let mut finalizers = org.finalizers().to_vec();
        finalizers.push(labels::ORGANIZATION_FINALIZER.to_string());
        // Written or not, this pass ends: the write's watch event brings
        // the next one, from a copy whose resourceVersion the status write
        // can carry as its precondition.
        return Ok(set_finalizers(&org, finalizers, &ctx)
            .await?
            .unwrap_or(Action::requeue(std::time::Duration::from_secs(1))));
    }
    let world = &ctx.world;
    let api = Api::all(ctx.client.clone());
    apply_if_changed(
        &ctx,
        CONTROLLER,
        "clusterroles",
        &world.cluster_roles,
        &api,
        &admin_role(&org),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: "admin ClusterRole",
        source,
    })?;
    let api = Api::all(ctx.client.clone());
    apply_if_changed(
        &ctx,
        CONTROLLER,
        "clusterrolebindings",
        &world.cluster_role_bindings,
        &api,
        &admin_binding(&org),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: "admin ClusterRoleBinding",
        source,
    })?;

    let now = Time(k8s_openapi::jiff::Timestamp::now());
    write_status(&org, compute_status(&org, &owned, &now), &ctx).await?;
    Ok(Action::await_change())
}

fn has_finalizer(org: &Organization) -> bool {
    org.finalizers()
        .iter()
        .any(|f| f == labels::ORGANIZATION_FINALIZER)
}

/// Writes the finalizers; `Some(action)` when the reconcile should stop
/// there (the Organization is gone, or the cached copy was stale).
async fn set_finalizers(
    org: &Organization,
    finalizers: Vec<String>,
    ctx: &Context,
) -> Result<Option<Action>, Error> {
    ctx.metrics.write(CONTROLLER, "organizations");
    let written = super::apply::set_finalizers(&Api::all(ctx.client.clone()), org, finalizers)
        .await
        .map_err(Error::Finalizer)?;
    Ok(match written {
        Finalizers::Written => None,
        Finalizers::Gone => Some(Action::await_change()),
        Finalizers::Stale => Some(Action::requeue(std::time::Duration::from_secs(1))),
    })
}

/// An Organization being deleted: it goes once it owns no Workspace (its
/// admin role and binding carry an ownerReference, so garbage collection
/// removes them with it); until then its status says what it waits for.
async fn deleting(
    org: &Organization,
    owned: &[Arc<Workspace>],
    ctx: &Context,
) -> Result<Action, Error> {
    if !has_finalizer(org) {
        return Ok(Action::await_change());
    }
    // Workspaces being deleted count until they are gone: their cleanup
    // may still need the organization's admins.
    let remaining = owned.len();
    if remaining == 0 {
        let finalizers = org
            .finalizers()
            .iter()
            .filter(|f| *f != labels::ORGANIZATION_FINALIZER)
            .cloned()
            .collect();
        return Ok(set_finalizers(org, finalizers, ctx)
            .await?
            .unwrap_or_else(Action::await_change));
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    write_status(org, deletion_status(org, remaining, &now), ctx).await?;
    Ok(Action::await_change())
}

/// The status of an Organization whose deletion waits for `remaining`
/// Workspaces (pure).
pub fn deletion_status(org: &Organization, remaining: usize, now: &Time) -> OrganizationStatus {
    let mut status = org.status.clone().unwrap_or_default();
    status.observed_generation = org.meta().generation;
    let message = format!(
        "Organization {} is being deleted and still owns {remaining} workspaces; delete them or move them \
         to another owner with a WorkspaceTransfer, and the deletion completes.",
        org.name_any()
    );
    conditions::set_condition(
        &mut status.conditions,
        NewCondition::new(conditions::READY, false, reason::WORKSPACES_REMAIN, message)
            .observed_generation(org.meta().generation),
        now,
    );
    status
}

/// Applies `status` when it says something new.
async fn write_status(
    org: &Organization,
    status: OrganizationStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let previous = org.status.clone().unwrap_or_default();
    if same_status(&previous, &status) {
        return Ok(());
    }
    let api: Api<Organization> = Api::all(ctx.client.clone());
    let change = super::StatusChange {
        status: &status,
        previous: &previous.conditions,
        current: &status.conditions,
    };
    super::apply_status(ctx, CONTROLLER, "organizations/status", &api, org, change)
        .await
        .map_err(Error::Status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OrganizationLimits, OrganizationSpec, OrganizationSubject, WorkspaceSpec};

    fn org(admins: Vec<OrganizationSubject>, limit: Option<i32>) -> Organization {
        let mut org = Organization::new(
            "acme",
            OrganizationSpec {
                admins,
                limits: limit.map(|l| OrganizationLimits {
                    workspaces: Some(l),
                    members_per_workspace: None,
                }),
                ..Default::default()
            },
        );
        org.metadata.uid = Some("uid-acme".into());
        org.metadata.generation = Some(3);
        org
    }

    fn workspace(name: &str, owner: AccountRef) -> Arc<Workspace> {
        Arc::new(Workspace::new(name, WorkspaceSpec::owned_by(owner)))
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn admin_role_grants_administer_on_this_organization_only() {
        let role = admin_role(&org(vec![], None));
        assert_eq!(role.name_any(), "workspaces.dev:organization:acme:admin");
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["acme".to_string()][..])
        );
        assert!(rules[0].verbs.contains(&ADMINISTER.to_string()));
        assert!(!rules[0].verbs.contains(&"delete".to_string()));
        assert_eq!(role.metadata.owner_references.unwrap()[0].uid, "uid-acme");
    }

    #[test]
    fn admin_binding_lists_admins_sorted_without_duplicates() {
        let binding = admin_binding(&org(
            vec![
                OrganizationSubject::user("zed@acme.io"),
                OrganizationSubject::group("acme-admins"),
                OrganizationSubject::user("alice@acme.io"),
            ],
            None,
        ));
        let names: Vec<_> = binding
            .subjects
            .unwrap()
            .into_iter()
            .map(|s| (s.kind, s.name))
            .collect();
        assert_eq!(
            names,
            vec![
                ("Group".into(), "acme-admins".into()),
                ("User".into(), "alice@acme.io".into()),
                ("User".into(), "zed@acme.io".into())
            ]
        );
    }

    #[test]
    fn status_counts_the_organizations_workspaces_only() {
        let all = vec![
            workspace("a", AccountRef::organization("acme")),
            workspace("b", AccountRef::organization("acme")),
            workspace("c", AccountRef::organization("globex")),
            workspace("d", AccountRef::user("acme")),
        ];
        let status = compute_status(&org(vec![], Some(10)), &all, &now());
        assert_eq!(status.workspaces, Some(2));
        assert_eq!(status.observed_generation, Some(3));
        let ready = conditions::find_condition(&status.conditions, conditions::READY).unwrap();
        assert_eq!(ready.status, "True");
        assert!(ready.message.contains("2 of at most 10"));
    }

    #[test]
    fn unchanged_status_is_recognised_whatever_the_time() {
        let mut o = org(vec![], None);
        let first = compute_status(&o, &[], &now());
        o.status = Some(first.clone());
        let later = compute_status(&o, &[], &Time(k8s_openapi::jiff::Timestamp::now()));
        assert!(same_status(&first, &later));
    }
}
