//! The Workspace controller: each Workspace becomes a namespace and the
//! owner's Owner role in it. (Access to the Workspace object itself needs no
//! per-workspace object: the install's roles and the `workspace-access`
//! admission policy decide it from the requester's identity.)
//!
//! observe (the cached world) -> validate and build ([`build::plan`], pure)
//! -> apply (only what differs) -> status (only when it changed).

pub mod build;
pub mod defaults;

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use self::build::{Blocked, Desired, Plan};
use super::apply::{Finalizers, apply, apply_if_changed, delete_if_present, needs_write};
use super::{Action, Context, ReconcileError, labels};
use crate::api::conditions::{self, ConditionStatus, NewCondition, Progress, reason};
use crate::api::{Workspace, WorkspacePhase, WorkspaceStatus};
use crate::config::FIELD_MANAGER;

/// Metric label of this controller.
const CONTROLLER: &str = "workspace";

/// What went wrong in one reconcile; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Server-side apply of a child failed.
    #[error("applying the {kind} failed: {source}")]
    Apply {
        /// Which child.
        kind: &'static str,
        /// The API error.
        source: kube::Error,
    },
    /// Deleting a child (or the namespace) failed.
    #[error("deleting the {kind} failed: {source}")]
    Delete {
        /// Which child.
        kind: &'static str,
        /// The API error.
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed.
    #[error("updating the finalizer failed: {0}")]
    Finalizer(#[source] kube::Error),
    /// Writing status failed.
    #[error("writing status failed: {0}")]
    Status(#[source] kube::Error),
    /// Reading the namespace (before deleting or releasing it) failed.
    #[error("reading the namespace failed: {0}")]
    Read(#[source] kube::Error),
    /// Reading the Workspace CRD (to tell CRD removal from deletion) failed.
    #[error("reading the Workspace CRD failed: {0}")]
    Crd(#[source] kube::Error),
}

impl super::ReconcileError for Error {
    /// A bounded, PascalCase reason for conditions, events and metrics.
    fn reason(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "ApplyFailed",
            Error::Delete { .. } => "DeleteFailed",
            Error::Finalizer(_) => "FinalizerFailed",
            Error::Status(_) => "StatusFailed",
            Error::Crd(_) => "CrdReadFailed",
            Error::Read(_) => "ReadFailed",
        }
    }
}

/// Runs the Workspace controller until its trigger stream ends.
pub async fn run(ctx: Arc<Context>, triggers: UnboundedReceiver<ObjectRef<Workspace>>) {
    let store = ctx.world.workspaces.clone();
    super::runner::run(ctx, store, triggers, CONTROLLER, reconcile).await;
}

async fn reconcile(ws: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    if ws.meta().deletion_timestamp.is_some() {
        return cleanup(&ws, &ctx).await;
    }
    if let Some(done) = ensure_finalizer(&ws, &ctx).await? {
        // The Workspace changed (its finalizer, or someone else's write) or
        // is gone: provision nothing for this copy of it.
        return Ok(done);
    }

    // Handles and limits are per owner: the owner's workspaces are all a
    // decision needs.
    let all = ctx.world.workspaces_of_owner(&ws.spec.owner);
    let name = ws.name_any();
    let organization = match ws.spec.owner.kind {
        crate::api::AccountKind::Organization => ctx
            .world
            .organizations
            .get(&ObjectRef::new(&ws.spec.owner.name)),
        crate::api::AccountKind::User => None,
    };
    let namespace_name = ws.spec.effective_namespace(&name).to_string();
    let namespace = ctx.world.namespaces.get(&ObjectRef::new(&namespace_name));
    let is_provisioned = |w: &Workspace| holds_namespace(&ctx, w);
    let inputs = build::Inputs {
        workspace: &ws,
        all: &all,
        organization: organization.as_deref(),
        namespace: namespace.as_deref(),
        is_provisioned: &is_provisioned,
        user_limit: ctx.config.workspace_limit_per_user(),
        pod_security: ctx.config.pod_security,
    };
    let plan = build::plan(&inputs);
    // Members count only in a namespace the Workspace holds or adopts in this
    // pass; then they are the members the member controller grants, so the
    // count is final in the pass that provisions the Workspace.
    let members = match &plan {
        Plan::Provision(_) if namespace.is_some() => {
            super::member::granted(&ctx, &ws, &namespace_name).len()
        }
        _ => 0,
    };
    let outcome = match &plan {
        Plan::Provision(desired) => provision(desired, &ctx).await,
        Plan::Blocked(_) => Ok(false),
    };
    // Whatever the plan, access to the Workspace object comes from the
    // install's constant roles: per-workspace ClusterRoles of earlier
    // versions go.
    let outcome = match outcome {
        Ok(created) => remove_legacy_access(&ws, &ctx).await.map(|()| created),
        failed => failed,
    };
    let holds = holds_namespace(&ctx, &ws);
    let status = compute_status(&ws, &plan, outcome.as_ref().err(), members, holds);
    write_status(&ws, status, &ctx).await?;
    if let (Plan::Provision(desired), Ok(true)) = (&plan, &outcome) {
        // After the status, so the event is not on the way to Ready.
        publish(
            &ctx,
            &ws,
            EventType::Normal,
            "NamespaceCreated",
            format!("Created namespace {}.", desired.namespace.name_any()),
        )
        .await;
    }
    outcome.map(|_| Action::await_change())
}

/// Whether `ws` holds its namespace: the namespace carries its UID.
fn holds_namespace(ctx: &Context, ws: &Workspace) -> bool {
    let name = ws.name_any();
    let ns = ws.spec.effective_namespace(&name);
    ctx.world
        .namespaces
        .get(&ObjectRef::new(ns))
        .is_some_and(|n| labels::carries_uid(&*n, ws.uid().as_deref()))
}

/// Adds the cleanup finalizer. `Some` when the reconcile ends here, with
/// what follows: the finalizer was written (the write's watch event brings
/// the next pass, from a copy whose resourceVersion the status write can
/// carry as its precondition), the Workspace is gone, or the cached copy is
/// stale.
async fn ensure_finalizer(ws: &Workspace, ctx: &Context) -> Result<Option<Action>, Error> {
    if ws.finalizers().iter().any(|f| f == labels::FINALIZER) {
        return Ok(None);
    }
    let mut finalizers = ws.finalizers().to_vec();
    finalizers.push(labels::FINALIZER.to_string());
    Ok(match set_finalizers(ws, finalizers, ctx).await? {
        Finalizers::Written | Finalizers::Stale => Some(Action::requeue(STALE_REQUEUE)),
        Finalizers::Gone => Some(Action::await_change()),
    })
}

/// When to reconcile again after a write refused for a stale cached copy,
/// should the watch event of the newer version not come first (it cancels
/// this).
const STALE_REQUEUE: Duration = Duration::from_secs(1);

/// Sets the Workspace's finalizers.
async fn set_finalizers(
    ws: &Workspace,
    finalizers: Vec<String>,
    ctx: &Context,
) -> Result<Finalizers, Error> {
    ctx.metrics.write(CONTROLLER, "workspaces");
    super::apply::set_finalizers(&Api::all(ctx.client.clone()), ws, finalizers)
        .await
        .map_err(Error::Finalizer)
}

/// How long a pass that wrote the namespace waits for the namespace's watch
/// event before it writes into the namespace.
const NAMESPACE_SEEN_TIMEOUT: Duration = Duration::from_secs(2);

/// Applies each child whose cached copy differs from the desired one: the
/// namespace, then what lives in it. Returns whether the namespace was
/// created.
async fn provision(desired: &Desired, ctx: &Context) -> Result<bool, Error> {
    provision_namespace(desired, ctx).await
}

/// The namespace, then the owner's RoleBinding and the organization defaults
/// in it. Returns whether the namespace was created.
async fn provision_namespace(desired: &Desired, ctx: &Context) -> Result<bool, Error> {
    let (created, wrote) = write_namespace(desired, ctx).await?;
    if wrote {
        // Admission (operator-confinement) judges the operator's RoleBindings
        // on the namespace as the API server's own informer sees it, and that
        // informer is fed from the same watch cache as the operator's: write
        // into the namespace once the operator has seen it carry the
        // Workspace's UID, not before (that write would be refused).
        namespace_seen(ctx, &desired.namespace).await;
    }
    let world = &ctx.world;
    let ns_name = desired.namespace.name_any();
    let defaults = &desired.defaults;
    let (owner_binding, quota, limit_range, isolation) = futures::join!(
        owner_binding(desired, wrote, ctx),
        sync_optional(
            ctx,
            &world.quotas,
            &ns_name,
            defaults::DEFAULTS_NAME,
            defaults.quota.as_ref(),
            "resourcequotas",
        ),
        sync_optional(
            ctx,
            &world.limit_ranges,
            &ns_name,
            defaults::DEFAULTS_NAME,
            defaults.limit_range.as_ref(),
            "limitranges",
        ),
        sync_optional(
            ctx,
            &world.network_policies,
            &ns_name,
            defaults::ISOLATION_NAME,
            defaults.isolation.as_ref(),
            "networkpolicies",
        ),
    );
    owner_binding.and(quota).and(limit_range).and(isolation)?;
    Ok(created)
}

/// Creates the namespace when the cache does not hold it, applies it when
/// its metadata differs; returns (created, written).
async fn write_namespace(desired: &Desired, ctx: &Context) -> Result<(bool, bool), Error> {
    let namespaces = Api::<Namespace>::all(ctx.client.clone());
    let cached_ns = ctx
        .world
        .namespaces
        .get(&ObjectRef::new(&desired.namespace.name_any()));
    let created = cached_ns.is_none();
    let wrote = created || needs_write(cached_ns.as_deref(), &desired.namespace);
    let failed = |source| Error::Apply {
        kind: "namespace",
        source,
    };
    if created {
        // Not in the cache: create it, never apply. A namespace that exists
        // but has not reached the cache yet (or that another Workspace
        // created a moment ago) makes the create fail; the namespace's watch
        // event then brings the decision (ours, adoptable, or a conflict).
        ctx.metrics.write(CONTROLLER, "namespaces");
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        namespaces
            .create(&params, &desired.namespace)
            .await
            .map_err(failed)?;
    } else if wrote {
        ctx.metrics.write(CONTROLLER, "namespaces");
        apply(&namespaces, &desired.namespace)
            .await
            .map_err(failed)?;
    }
    Ok((created, wrote))
}

/// Applies the owner's RoleBinding when it differs. Right after the
/// namespace was written (`wrote`), the API server's copy of it can lag
/// behind the operator's: a refusal by the confinement policy is retried
/// briefly in this pass rather than reported as a failure that is not one.
async fn owner_binding(desired: &Desired, wrote: bool, ctx: &Context) -> Result<(), Error> {
    let bindings =
        Api::<RoleBinding>::namespaced(ctx.client.clone(), &desired.namespace.name_any());
    let mut pause = Duration::from_millis(50);
    loop {
        let result = apply_if_changed(
            ctx,
            CONTROLLER,
            "rolebindings",
            &ctx.world.role_bindings,
            &bindings,
            &desired.owner_binding,
        )
        .await;
        match result {
            Err(err) if wrote && refused_by_confinement(&err) && pause < STALE_NAMESPACE_RETRY => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            result => {
                return result.map(|_| ()).map_err(|source| Error::Apply {
                    kind: "owner RoleBinding",
                    source,
                });
            }
        }
    }
}

/// Longest pause between retries of a write into a namespace the API server's
/// admission does not yet see as the Workspace's (50 ms, doubling: about
/// 1.5 s in all).
const STALE_NAMESPACE_RETRY: Duration = Duration::from_millis(1000);

/// Whether the `operator-confinement` admission policy refused a write: in a
/// namespace written a moment ago, admission's copy of it is older.
fn refused_by_confinement(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status)
        if status.code == 403 && status.message.contains("operator-confinement"))
}

/// Waits (at most [`NAMESPACE_SEEN_TIMEOUT`]) until the cached namespace
/// carries the desired Workspace UID annotation, woken by the namespace
/// watch's changes. Past the timeout the writes go ahead; a refusal is
/// retried like any failed write.
async fn namespace_seen(ctx: &Context, desired: &Namespace) {
    let want = desired
        .annotations()
        .get(labels::WORKSPACE_UID)
        .map(String::as_str);
    let at = ObjectRef::new(&desired.name_any());
    ctx.world
        .namespaces
        .wait_for(&at, NAMESPACE_SEEN_TIMEOUT, |ns| {
            labels::carries_uid(ns, want)
        })
        .await;
}

/// Deletes the per-workspace ClusterRoles and ClusterRoleBindings that
/// earlier versions of the operator created for `ws` (an upgrade's
/// migration; on a cluster without them this reads the cache and writes
/// nothing). Only objects the operator's cache holds (its managed-by label)
/// under the Workspace's own names and owned by its UID are deleted, each
/// with a UID precondition.
async fn remove_legacy_access(ws: &Workspace, ctx: &Context) -> Result<(), Error> {
    let Some(uid) = ws.uid() else { return Ok(()) };
    let owned = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter().any(|r| r.uid == uid)
    };
    for name in build::legacy_access_names(&ws.name_any()) {
        if let Some(binding) = ctx.world.cluster_role_bindings.get(&ObjectRef::new(&name))
            && owned(binding.owner_references())
        {
            ctx.metrics.write(CONTROLLER, "clusterrolebindings");
            delete_if_present(
                &Api::<ClusterRoleBinding>::all(ctx.client.clone()),
                &name,
                binding.uid(),
            )
            .await
            .map_err(|source| Error::Delete {
                kind: "ClusterRoleBinding",
                source,
            })?;
        }
        if let Some(role) = ctx.world.cluster_roles.get(&ObjectRef::new(&name))
            && owned(role.owner_references())
        {
            ctx.metrics.write(CONTROLLER, "clusterroles");
            delete_if_present(
                &Api::<ClusterRole>::all(ctx.client.clone()),
                &name,
                role.uid(),
            )
            .await
            .map_err(|source| Error::Delete {
                kind: "ClusterRole",
                source,
            })?;
        }
    }
    Ok(())
}

/// Keeps one optional namespaced child: applied when wanted and different
/// from the cache, deleted when not wanted and present.
async fn sync_optional<K>(
    ctx: &Context,
    store: &super::cache::Cache<K>,
    namespace: &str,
    name: &str,
    desired: Option<&K>,
    resource: &'static str,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + super::apply::UpToDate,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    match desired {
        Some(desired) => {
            apply_if_changed(ctx, CONTROLLER, resource, store, &api, desired)
                .await
                .map_err(|source| Error::Apply {
                    kind: resource,
                    source,
                })?;
        }
        None => {
            if let Some(stale) = store.get(&ObjectRef::new(name).within(namespace)) {
                ctx.metrics.write(CONTROLLER, resource);
                delete_if_present(&api, name, stale.uid())
                    .await
                    .map_err(|source| Error::Delete {
                        kind: resource,
                        source,
                    })?;
            }
        }
    }
    Ok(())
}

/// The status a Workspace should have after this reconcile.
fn compute_status(
    ws: &Workspace,
    plan: &Plan,
    failure: Option<&Error>,
    members: usize,
    holds_namespace: bool,
) -> WorkspaceStatus {
    let previous = ws.status.clone().unwrap_or_default();
    let generation = ws.meta().generation;
    let mut status = previous.clone();
    status.observed_generation = generation;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let (progress, why, message) = match (plan, failure) {
        (Plan::Provision(desired), None) => provisioned(&mut status, ws, desired, members, &now),
        (Plan::Provision(_), Some(err)) => {
            if status.phase != Some(WorkspacePhase::Active) {
                status.phase = Some(WorkspacePhase::Pending);
            }
            let message = format!(
                "The operator could not finish provisioning ({}); it retries.",
                err.reason()
            );
            (Progress::Progressing, reason::PROVISIONING, message)
        }
        (Plan::Blocked(blocked), _) => {
            blocked_status(&mut status, blocked, holds_namespace, generation, &now)
        }
    };
    conditions::set_outcome(
        &mut status.conditions,
        progress,
        why,
        &message,
        generation,
        &now,
    );
    status
}

/// The status of a Workspace provisioned in this pass (its namespace,
/// handle, owner and member count), and its outcome.
fn provisioned(
    status: &mut WorkspaceStatus,
    ws: &Workspace,
    desired: &Desired,
    members: usize,
    now: &Time,
) -> (Progress, &'static str, String) {
    let generation = ws.meta().generation;
    let name = ws.name_any();
    let ns = desired.namespace.name_any();
    let mut set = |type_: &'static str, message: String| {
        conditions::set_condition(
            &mut status.conditions,
            NewCondition::new(type_, ConditionStatus::True, reason::PROVISIONED, message)
                .observed_generation(generation),
            now,
        );
    };
    set(
        conditions::NAMESPACE_READY,
        format!(
            "Namespace {ns} is provisioned{}.",
            if desired.adopted { " (adopted)" } else { "" }
        ),
    );
    set(
        conditions::ACCESS_READY,
        format!(
            "{} holds the Owner role; {members} members are active.",
            ws.spec.owner
        ),
    );
    status.phase = Some(WorkspacePhase::Active);
    status.namespace = Some(ns.clone());
    status.handle = Some(ws.spec.effective_handle(&name).to_string());
    status.owner = Some(ws.spec.owner.clone());
    status.members = Some(members as i32);
    (
        Progress::Ready,
        reason::PROVISIONED,
        format!("Workspace {name} is ready in namespace {ns}."),
    )
}

/// The status of a blocked Workspace, and its outcome. `status.namespace`
/// names only a namespace the Workspace holds: the workspace-access
/// admission policy lets the Owners of that namespace edit the Workspace.
fn blocked_status(
    status: &mut WorkspaceStatus,
    blocked: &Blocked,
    holds_namespace: bool,
    generation: Option<i64>,
    now: &Time,
) -> (Progress, &'static str, String) {
    if blocked.reason != reason::NAMESPACE_TERMINATING {
        conditions::set_condition(
            &mut status.conditions,
            NewCondition::new(
                conditions::NAMESPACE_READY,
                ConditionStatus::False,
                blocked.reason,
                blocked.message.clone(),
            )
            .observed_generation(generation),
            now,
        );
    }
    if !holds_namespace {
        status.namespace = None;
    }
    let (progress, phase) = if blocked.stalled {
        (Progress::Stalled, WorkspacePhase::Blocked)
    } else {
        (Progress::Progressing, WorkspacePhase::Pending)
    };
    status.phase = Some(phase);
    (progress, blocked.reason, blocked.message.clone())
}

/// Whether two statuses say the same thing, ignoring condition timestamps.
fn same_status(a: &WorkspaceStatus, b: &WorkspaceStatus) -> bool {
    conditions::conditions_equal_ignoring_time(&a.conditions, &b.conditions)
        && a.observed_generation == b.observed_generation
        && a.phase == b.phase
        && a.namespace == b.namespace
        && a.handle == b.handle
        && a.owner == b.owner
        && a.members == b.members
}

/// Writes `status` when it says something new, and records an event when the
/// `Ready` condition changed its status or reason.
async fn write_status(ws: &Workspace, status: WorkspaceStatus, ctx: &Context) -> Result<(), Error> {
    let previous = ws.status.clone().unwrap_or_default();
    if same_status(&previous, &status) {
        return Ok(());
    }
    let api: Api<Workspace> = Api::all(ctx.client.clone());
    let change = super::StatusChange {
        status: &status,
        previous: &previous.conditions,
        current: &status.conditions,
    };
    super::apply_status(ctx, CONTROLLER, "workspaces/status", &api, ws, change)
        .await
        .map_err(Error::Status)
}

async fn publish(ctx: &Context, ws: &Workspace, type_: EventType, reason: &str, note: String) {
    super::publish(ctx, CONTROLLER, ws, type_, reason, note).await;
}

/// Whether the Workspace CRD itself is being removed: then namespaces are
/// retained, whatever the deletion policy says.
async fn crd_terminating(ctx: &Context) -> Result<bool, Error> {
    let api: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let name = format!("{}.{}", Workspace::plural(&()), Workspace::group(&()));
    match api.get_opt(&name).await {
        Ok(crd) => Ok(crd.is_none_or(|c| c.metadata.deletion_timestamp.is_some())),
        Err(err) => Err(Error::Crd(err)),
    }
}

/// Deletion: with `Delete`, remove the namespace the operator created and wait
/// until it is gone; otherwise remove only what the operator added. Then drop
/// the finalizer. Never wedges: a namespace that
/// is gone or was never created is simply skipped.
async fn cleanup(ws: &Workspace, ctx: &Context) -> Result<Action, Error> {
    if !ws.finalizers().iter().any(|f| f == labels::FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ws.name_any();
    let ns_name = ws
        .status
        .as_ref()
        .and_then(|s| s.namespace.clone())
        .unwrap_or_else(|| ws.spec.effective_namespace(&name).to_string());
    // Read live, not from the cache: a namespace created a moment ago must
    // not be missed (deletion runs once per Workspace, so the read is cheap).
    let namespace = Api::<Namespace>::all(ctx.client.clone())
        .get_metadata_opt(&ns_name)
        .await
        .map_err(Error::Read)?;
    let ours = namespace
        .as_ref()
        .filter(|ns| labels::carries_uid(*ns, ws.uid().as_deref()));

    if let Some(ns) = ours {
        let adopted = ns
            .annotations()
            .get(labels::ADOPTED)
            .is_some_and(|v| v == "true");
        let delete = ws.spec.deletion_policy == crate::api::DeletionPolicy::Delete && !adopted;
        if delete && !crd_terminating(ctx).await? {
            return delete_namespace(ws, ns, ctx).await;
        }
        retain(ws, ns, ctx).await?;
    }

    remove_legacy_access(ws, ctx).await?;
    let finalizers: Vec<String> = ws
        .finalizers()
        .iter()
        .filter(|f| *f != labels::FINALIZER)
        .cloned()
        .collect();
    if set_finalizers(ws, finalizers, ctx).await? == Finalizers::Stale {
        return Ok(Action::requeue(STALE_REQUEUE));
    }
    Ok(Action::await_change())
}

/// `Delete`: deletes the Workspace's namespace (once) and reports
/// `Terminating` until it is gone; the namespace's deletion event brings the
/// next step.
async fn delete_namespace(
    ws: &Workspace,
    ns: &PartialObjectMeta<Namespace>,
    ctx: &Context,
) -> Result<Action, Error> {
    let ns_name = ns.name_any();
    if ns.meta().deletion_timestamp.is_none() {
        ctx.metrics.write(CONTROLLER, "namespaces");
        delete_if_present(
            &Api::<Namespace>::all(ctx.client.clone()),
            &ns_name,
            ns.uid(),
        )
        .await
        .map_err(|source| Error::Delete {
            kind: "namespace",
            source,
        })?;
        publish(
            ctx,
            ws,
            EventType::Normal,
            "NamespaceDeleting",
            format!("Deleting namespace {ns_name} and everything in it."),
        )
        .await;
    }
    let mut status = ws.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let message =
        format!("Namespace {ns_name} is being deleted; the Workspace goes once it is gone.");
    conditions::set_condition(
        &mut status.conditions,
        NewCondition::new(conditions::READY, false, reason::DELETING, message.clone()),
        &now,
    );
    conditions::set_condition(
        &mut status.conditions,
        NewCondition::new(conditions::RECONCILING, true, reason::DELETING, message),
        &now,
    );
    status.phase = Some(WorkspacePhase::Terminating);
    write_status(ws, status, ctx).await?;
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// Removes the Roles that let invitees answer their invitations in
/// `namespace` (their bindings are gone already).
async fn remove_answering_roles(namespace: &str, ctx: &Context) -> Result<(), Error> {
    let api: Api<Role> = Api::namespaced(ctx.client.clone(), namespace);
    for member in ctx.world.members_in(namespace) {
        let name = super::member::invitation::grant_name(&member.name_any());
        let Some(role) = ctx
            .world
            .roles
            .get(&ObjectRef::new(&name).within(namespace))
        else {
            continue;
        };
        if role
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == member.uid().as_ref())
        {
            ctx.metrics.write(CONTROLLER, "roles");
            delete_if_present(&api, &name, role.uid())
                .await
                .map_err(|source| Error::Delete {
                    kind: "Role",
                    source,
                })?;
        }
    }
    Ok(())
}

/// `Retain`: remove the operator's RoleBindings and its labels and
/// annotations from the namespace; leave the namespace and its contents.
async fn retain(
    ws: &Workspace,
    ns: &PartialObjectMeta<Namespace>,
    ctx: &Context,
) -> Result<(), Error> {
    let ns_name = &ns.name_any();
    remove_bindings(ws, ns_name, ctx).await?;
    remove_answering_roles(ns_name, ctx).await?;
    remove_defaults(ns_name, ctx).await?;
    if ns.meta().deletion_timestamp.is_none() {
        release(ns, ctx).await?;
    }
    publish(
        ctx,
        ws,
        EventType::Normal,
        "NamespaceRetained",
        format!("Namespace {ns_name} and its contents were kept."),
    )
    .await;
    Ok(())
}

/// Deletes the operator's RoleBindings in `ns_name`: those owned by `ws`
/// (the owner's) or by one of its WorkspaceMembers; anything else is
/// someone else's.
async fn remove_bindings(ws: &Workspace, ns_name: &str, ctx: &Context) -> Result<(), Error> {
    let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), ns_name);
    let owners: Vec<String> = ws
        .uid()
        .into_iter()
        .chain(ctx.world.members_in(ns_name).iter().filter_map(|m| m.uid()))
        .collect();
    let ours: Vec<Arc<RoleBinding>> = ctx
        .world
        .role_bindings_in(ns_name)
        .into_iter()
        .filter(|rb| {
            rb.owner_references()
                .iter()
                .any(|o| owners.contains(&o.uid))
        })
        .collect();
    for rb in ours {
        ctx.metrics.write(CONTROLLER, "rolebindings");
        delete_if_present(&api, &rb.name_any(), rb.uid())
            .await
            .map_err(|source| Error::Delete {
                kind: "RoleBinding",
                source,
            })?;
    }
    Ok(())
}

/// Deletes the organization's defaults (quota, limit range, network
/// policy) in `ns_name`: they are the operator's too.
async fn remove_defaults(ns_name: &str, ctx: &Context) -> Result<(), Error> {
    let world = &ctx.world;
    sync_optional(
        ctx,
        &world.quotas,
        ns_name,
        defaults::DEFAULTS_NAME,
        None,
        "resourcequotas",
    )
    .await?;
    sync_optional(
        ctx,
        &world.limit_ranges,
        ns_name,
        defaults::DEFAULTS_NAME,
        None,
        "limitranges",
    )
    .await?;
    sync_optional(
        ctx,
        &world.network_policies,
        ns_name,
        defaults::ISOLATION_NAME,
        None,
        "networkpolicies",
    )
    .await?;
    Ok(())
}

/// Releases the namespace: the operator's labels and annotations go, and so
/// does an admin's adoption permission (it was good for one adoption);
/// everyone else's stay. A merge patch, so a namespace that is gone is never
/// created again.
async fn release(ns: &PartialObjectMeta<Namespace>, ctx: &Context) -> Result<(), Error> {
    let mut remove: serde_json::Map<String, serde_json::Value> = labels::OPERATOR_KEYS
        .iter()
        .map(|k| (k.to_string(), serde_json::Value::Null))
        .collect();
    let mut labels_ = remove.clone();
    if ns.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE) {
        labels_.insert(labels::MANAGED_BY.to_string(), serde_json::Value::Null);
    }
    remove.insert(labels::ADOPT.to_string(), serde_json::Value::Null);
    let release = json!({"metadata": {"labels": labels_, "annotations": remove}});
    ctx.metrics.write(CONTROLLER, "namespaces");
    match Api::<Namespace>::all(ctx.client.clone())
        .patch(
            &ns.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&release),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Apply {
            kind: "namespace",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::refused_by_confinement;

    fn api_error(code: u16, message: &str) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "code": code,
            "message": message,
        }))
        .expect("a Status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn only_the_confinement_policy_refusal_is_retried_in_the_pass() {
        assert!(refused_by_confinement(&api_error(
            403,
            "rolebindings.rbac.authorization.k8s.io \"workspaces.dev:owner\" is forbidden: ValidatingAdmissionPolicy 'operator-confinement.workspaces.dev' with binding 'operator-confinement.workspaces.dev' denied request",
        )));
        assert!(!refused_by_confinement(&api_error(
            403,
            "rolebindings is forbidden: User cannot patch",
        )));
        assert!(!refused_by_confinement(&api_error(
            409,
            "operator-confinement conflict"
        )));
    }
}
