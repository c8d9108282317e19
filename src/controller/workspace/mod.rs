//! The Workspace controller: each Workspace becomes a namespace and the
//! owner's Owner role in it. (Access to the Workspace object itself needs no
//! per-workspace object: the install's roles and the `workspace-access`
//! admission policy decide it from the requester's identity.)
//!
//! observe (the cached world) -> validate and build ([`build::plan`], pure)
//! -> apply (only what differs) -> status (only when it changed).

pub mod build;
mod cleanup;
pub mod defaults;
mod status;
mod triggers;

use self::cleanup::{cleanup, remove_legacy_access};
use self::status::{compute_status, same_status};

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use self::build::{Desired, Plan};
use super::apply::{Finalizers, apply, apply_if_changed, delete_if_present, needs_write};
use super::{Action, Context, labels};
use crate::api::{Workspace, WorkspaceStatus};
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

/// The Workspace controller, as [`super::run`] registers it.
pub struct Workspaces;

impl super::Controller for Workspaces {
    type Kind = Workspace;
    const NAME: &'static str = "the workspace controller";

    fn register(routes: &mut super::Routes, queue: &super::Queue<Workspace>) {
        triggers::register(routes, queue);
    }

    fn run(
        ctx: Arc<Context>,
        triggers: UnboundedReceiver<ObjectRef<Workspace>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let store = ctx.world.workspaces.clone();
        super::runner::run(ctx, store, triggers, CONTROLLER, reconcile)
    }
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
            super::member::access::granted(&ctx, &ws, &namespace_name).len()
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
