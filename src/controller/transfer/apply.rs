//! The transfer controller's writes: its finalizer, the Workspace's owner,
//! the per-transfer read grant, its status and its events. Each writes only
//! what differs from the cache.

use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::build::{self, Facts, State};
use super::{CONTROLLER, Error, Observed};
use crate::api::{AccountRef, Workspace, WorkspaceTransfer};
use crate::config::FIELD_MANAGER;
use crate::controller::apply::{apply_if_changed, delete_if_present};
use crate::controller::{Action, Context};

/// Deletes the transfer's read grant.
pub(super) async fn revoke_grant(t: &WorkspaceTransfer, ctx: &Context) -> Result<(), Error> {
    let name = build::grant_name(&t.name_any());
    let owned = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter().any(|r| Some(&r.uid) == t.uid().as_ref())
    };
    if let Some(binding) = ctx.world.cluster_role_bindings.get(&ObjectRef::new(&name))
        && owned(binding.owner_references())
    {
        ctx.metrics.write(CONTROLLER, "clusterrolebindings");
        let api = Api::<ClusterRoleBinding>::all(ctx.client.clone());
        delete_if_present(&api, &name, binding.uid())
            .await
            .map_err(Error::Grant)?;
    }
    if let Some(role) = ctx.world.cluster_roles.get(&ObjectRef::new(&name))
        && owned(role.owner_references())
    {
        ctx.metrics.write(CONTROLLER, "clusterroles");
        let api = Api::<ClusterRole>::all(ctx.client.clone());
        delete_if_present(&api, &name, role.uid())
            .await
            .map_err(Error::Grant)?;
    }
    Ok(())
}

/// Removes the transfer's finalizer.
pub(super) async fn release(t: &WorkspaceTransfer, ctx: &Context) -> Result<Action, Error> {
    if t.finalizers().iter().any(|f| f == build::FINALIZER) {
        let keep: Vec<String> = t
            .finalizers()
            .iter()
            .filter(|f| *f != build::FINALIZER)
            .cloned()
            .collect();
        return set_finalizers(t, keep, ctx).await;
    }
    Ok(Action::await_change())
}

/// Adds the finalizer; `Some` when the reconcile ends here.
pub(super) async fn ensure_finalizer(
    t: &WorkspaceTransfer,
    ctx: &Context,
) -> Result<Option<Action>, Error> {
    if t.finalizers().iter().any(|f| f == build::FINALIZER) {
        return Ok(None);
    }
    let mut finalizers = t.finalizers().to_vec();
    finalizers.push(build::FINALIZER.to_string());
    let action = set_finalizers(t, finalizers, ctx).await?;
    Ok((action != Action::await_change()).then_some(action))
}

/// Sets the transfer's finalizers (conditional on the cached version): a
/// stale copy or a transfer that is gone is not a failure.
pub(super) async fn set_finalizers(
    t: &WorkspaceTransfer,
    finalizers: Vec<String>,
    ctx: &Context,
) -> Result<Action, Error> {
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": t.resource_version()}});
    ctx.metrics.write(CONTROLLER, "workspacetransfers");
    let api: Api<WorkspaceTransfer> = Api::all(ctx.client.clone());
    match api
        .patch(
            &t.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::requeue(Duration::ZERO)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::requeue(STALE_REQUEUE)),
        Err(err) => Err(Error::Finalizer(err)),
    }
}

/// When to look again after a write refused for a stale cached copy, should
/// the newer version's watch event not come first.
pub(super) const STALE_REQUEUE: Duration = Duration::from_secs(1);

/// Changes the Workspace's `spec.owner` (and `spec.handle`) in one write,
/// conditional on the cached version: the only spec write the operator
/// makes, which the admission policies allow it and nobody else. `Some`
/// when the cached copy was stale.
pub(super) async fn set_owner(
    ws: &Workspace,
    owner: &AccountRef,
    handle: Option<&str>,
    ctx: &Context,
) -> Result<Option<Action>, Error> {
    let mut spec = json!({"owner": owner});
    if let Some(handle) = handle {
        spec["handle"] = json!(handle);
    }
    let patch = json!({"metadata": {"resourceVersion": ws.resource_version()}, "spec": spec});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    ctx.metrics.write(CONTROLLER, "workspaces");
    let api: Api<Workspace> = Api::all(ctx.client.clone());
    match api
        .patch(&ws.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Some(Action::requeue(STALE_REQUEUE))),
        Err(err) => Err(Error::Owner(err)),
    }
}

/// Keeps the read grant of an open transfer: a ClusterRole about this one
/// transfer, bound to both sides' approvers.
pub(super) async fn grant(
    t: &WorkspaceTransfer,
    ctx: &Context,
    inputs: &build::Inputs<'_>,
    observed: &Observed,
) -> Result<(), Error> {
    let world = &ctx.world;
    let role = build::reader_role(t);
    let binding = build::reader_binding(t, build::readers(inputs, &observed.owner_members));
    apply_if_changed(
        ctx,
        CONTROLLER,
        "clusterroles",
        &world.cluster_roles,
        &Api::all(ctx.client.clone()),
        &role,
    )
    .await
    .map_err(Error::Grant)?;
    apply_if_changed(
        ctx,
        CONTROLLER,
        "clusterrolebindings",
        &world.cluster_role_bindings,
        &Api::all(ctx.client.clone()),
        &binding,
    )
    .await
    .map_err(Error::Grant)?;
    Ok(())
}

/// Writes the status for `state` when it says something new; returns
/// whether it wrote (a transition is announced once, by the write that made it).
pub(super) async fn write(
    t: &WorkspaceTransfer,
    ctx: &Context,
    observed: &Observed,
    state: &State,
    facts: Facts,
) -> Result<bool, Error> {
    let summary = facts
        .impact
        .as_ref()
        .map(|impact| build::summary(t, observed.workspace.as_deref(), impact))
        .unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = build::compute_status(t, state, facts, &summary, &now);
    let previous = t.status.clone().unwrap_or_default();
    // Said already, or written by this process and not in the cache yet.
    if build::same_status(&previous, &status) || ctx.written.already(t, &status) {
        return Ok(false);
    }
    let api: Api<WorkspaceTransfer> = Api::all(ctx.client.clone());
    let change = crate::controller::StatusChange {
        status: &status,
        previous: &previous.conditions,
        current: &status.conditions,
    };
    crate::controller::apply_status(
        ctx,
        CONTROLLER,
        "workspacetransfers/status",
        &api,
        t,
        change,
    )
    .await
    .map_err(Error::Status)?;
    super::notices::announce(ctx, t, &previous, &status);
    Ok(true)
}

/// Records an event on the transfer, its Workspace and the Organizations
/// involved: the audit trail.
pub(super) async fn announce(
    ctx: &Context,
    t: &WorkspaceTransfer,
    observed: &Observed,
    type_: EventType,
    reason: &str,
    note: String,
) {
    crate::controller::publish(ctx, CONTROLLER, t, type_, reason, note.clone()).await;
    if let Some(ws) = observed.workspace.as_deref() {
        crate::controller::publish(ctx, CONTROLLER, ws, type_, reason, note.clone()).await;
    }
    for org in observed.organizations() {
        crate::controller::publish(ctx, CONTROLLER, &*org, type_, reason, note.clone()).await;
    }
}
