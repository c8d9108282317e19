//! The WorkspaceMember controller: each member becomes one RoleBinding in its
//! workspace's namespace, giving its subject its workspace role.
//!
//! observe (the cached world) -> validate and build ([`build::plan`], pure)
//! -> apply (only what differs; the new binding before the old one goes)
//! -> status (only when it changed).
//!
//! The binding's name contains the role because a RoleBinding's roleRef is
//! immutable: a role change applies the new binding first and removes the
//! old one only after that succeeded, so the subject is never without access
//! and holds two roles only for that moment. A member that is blocked
//! (duplicate subject, not in the organization, role not assignable, no
//! workspace) loses its binding; a member that merely waits (workspace not
//! ready, member limit) keeps what it holds. Deleting a member deletes its
//! binding through the ownerReference. The owner's access lives in the
//! Workspace's own binding and is never touched here.

pub mod access;
pub mod build;
pub mod invitation;
mod notices;
mod status;
mod triggers;

use std::sync::Arc;

use futures::channel::mpsc::UnboundedReceiver;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use self::access::{Gathered, is_assignable};
use self::build::Plan;
use super::apply::{apply, apply_if_changed, delete_if_present, needs_write};
use super::{Action, Context, ReconcileError};
use crate::api::{Workspace, WorkspaceMember, WorkspaceMemberStatus};

/// Metric label of this controller.
const CONTROLLER: &str = "member";

/// What went wrong in one reconcile; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Server-side apply of the member's RoleBinding failed.
    #[error("applying the RoleBinding failed: {0}")]
    Apply(#[source] kube::Error),
    /// Deleting a stale or revoked RoleBinding failed.
    #[error("deleting a RoleBinding failed: {0}")]
    Delete(#[source] kube::Error),
    /// Writing status failed.
    #[error("writing status failed: {0}")]
    Status(#[source] kube::Error),
}

impl super::ReconcileError for Error {
    /// A bounded, PascalCase reason for conditions, events and metrics.
    fn reason(&self) -> &'static str {
        match self {
            Error::Apply(_) => "ApplyFailed",
            Error::Delete(_) => "DeleteFailed",
            Error::Status(_) => "StatusFailed",
        }
    }
}

/// The WorkspaceMember controller, as [`super::run`] registers it.
pub struct Members;

impl super::Controller for Members {
    type Kind = WorkspaceMember;
    const NAME: &'static str = "the member controller";

    fn register(routes: &mut super::Routes, queue: &super::Queue<WorkspaceMember>) {
        triggers::register(routes, queue);
    }

    fn run(
        ctx: Arc<Context>,
        triggers: UnboundedReceiver<ObjectRef<WorkspaceMember>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let store = ctx.world.members.clone();
        super::runner::run(ctx, store, triggers, CONTROLLER, reconcile)
    }
}

/// The transfer rules on top of a member's own plan. While a transfer of
/// its workspace runs, a member must belong to the target account too, or
/// it is revoked (`RevokedByTransfer`, phase `Revoked`); once the transfer
/// has run, a member it revoked keeps that reason for as long as it does
/// not belong to the new owner.
fn under_transfer(
    ctx: &Context,
    member: &WorkspaceMember,
    workspace: Option<&Workspace>,
    plan: Plan,
) -> Plan {
    use crate::api::conditions::{READY, find_condition, reason};
    let Some(ws) = workspace else { return plan };
    let running = || {
        crate::controller::transfer::triggers::transfers_of(&ctx.world, &ws.name_any())
            .into_iter()
            .find(|t| {
                t.status.as_ref().and_then(|s| s.phase)
                    == Some(crate::api::TransferPhase::Transferring)
            })
    };
    if matches!(plan, Plan::Invite(_)) {
        // A change of owner ends every open invitation: it was made on
        // behalf of the account the workspace is leaving.
        return match running() {
            Some(t) => invitation::revoked(member, Some((&t.name_any(), &t.spec.to.to_string()))),
            None => plan,
        };
    }
    if matches!(plan, Plan::Grant(_)) {
        let Some(transfer) = running() else {
            return plan;
        };
        let namespace = member.namespace().unwrap_or_default();
        let moved = build::owned_by(ws, &transfer.spec.to);
        let gathered = Gathered::read(ctx, &namespace, Some(&moved));
        let assignable = |name: &str| is_assignable(ctx, name);
        let inputs = gathered.inputs(member, Some(&moved), None, &assignable);
        return match build::decide(&inputs, &moved) {
            Plan::Blocked(blocked) if blocked.revoke => Plan::Blocked(build::Blocked {
                reason: reason::REVOKED_BY_TRANSFER,
                message: format!(
                    "Revoked by WorkspaceTransfer {}, which moves workspace {} to {}: {}",
                    transfer.name_any(),
                    ws.name_any(),
                    transfer.spec.to,
                    blocked.message
                ),
                stalled: true,
                revoke: true,
            }),
            _ => plan,
        };
    }
    let previous = member
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, READY))
        .filter(|c| c.reason == reason::REVOKED_BY_TRANSFER);
    match (plan, previous) {
        (Plan::Blocked(blocked), Some(before))
            if blocked.revoke && blocked.reason == reason::NOT_AN_ORGANIZATION_MEMBER =>
        {
            Plan::Blocked(build::Blocked {
                reason: reason::REVOKED_BY_TRANSFER,
                message: before.message.clone(),
                ..blocked
            })
        }
        (plan, _) => plan,
    }
}

/// Whether the member's status should wait: its Workspace is about to be
/// provisioned (it exists and has not reported yet), and the member has not
/// reported either (and holds nothing). Its first status is then the outcome, not a
/// `WorkspaceNotReady` that lasts a second; the Workspace's first status
/// triggers the member again.
fn first_status_can_wait(
    member: &WorkspaceMember,
    plan: &Plan,
    workspace: Option<&Workspace>,
) -> bool {
    let unreported =
        |conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
            !conditions
                .iter()
                .any(|c| c.type_ == crate::api::conditions::READY)
        };
    let waiting = matches!(plan, Plan::Blocked(b) if b.reason == crate::api::conditions::reason::WORKSPACE_NOT_READY);
    waiting
        && workspace.is_some_and(|ws| {
            !build::deleting(ws) && unreported(ws.status.as_ref().map_or(&[], |s| &s.conditions))
        })
        && unreported(member.status.as_ref().map_or(&[], |s| &s.conditions))
}

async fn reconcile(member: Arc<WorkspaceMember>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    if member.meta().deletion_timestamp.is_some() {
        // Garbage collection removes the binding through its ownerReference.
        return Ok(Action::await_change());
    }
    let Some(namespace) = member.namespace() else {
        return Ok(Action::await_change());
    };
    let world = &ctx.world;
    let naming = world.workspaces_naming(&namespace);
    let ns_meta = world.namespaces.get(&ObjectRef::new(&namespace));
    let workspace = build::workspace_of(&namespace, ns_meta.as_deref(), &naming).map(|ws| &**ws);
    let claimant = workspace
        .is_none()
        .then(|| build::claimant(&namespace, &naming).map(|ws| &**ws))
        .flatten();
    let gathered = Gathered::read(&ctx, &namespace, workspace);
    let assignable = |name: &str| is_assignable(&ctx, name);
    let inputs = gathered.inputs(&member, workspace, claimant, &assignable);
    let plan = under_transfer(&ctx, &member, workspace, build::plan(&inputs));
    let own: Vec<Arc<RoleBinding>> = build::own_bindings(&member, &gathered.bindings)
        .into_iter()
        .cloned()
        .collect();
    if own.is_empty() && first_status_can_wait(&member, &plan, workspace.or(claimant)) {
        return Ok(Action::await_change());
    }

    let outcome = match &plan {
        Plan::Grant(desired) => grant(&namespace, desired, &own, &ctx).await,
        Plan::Invite(invitation) => invite(&namespace, invitation, &own, &ctx).await,
        Plan::Blocked(blocked) if blocked.revoke => remove(&namespace, &own, None, &ctx).await,
        Plan::Blocked(_) => Ok(()),
    };
    let outcome = match (&outcome, &plan) {
        (Ok(()), Plan::Grant(_)) => end_invitation(&member, &ctx).await,
        (Ok(()), Plan::Blocked(blocked)) if blocked.revoke => end_invitation(&member, &ctx).await,
        _ => outcome,
    };
    // What the member holds now, for its status.
    let held: Vec<String> = match (&plan, &outcome) {
        (Plan::Grant(desired), Ok(())) => vec![desired.name_any()],
        (Plan::Invite(_), Ok(())) => Vec::new(),
        (Plan::Blocked(blocked), Ok(())) if blocked.revoke => Vec::new(),
        _ => own.iter().map(|rb| rb.name_any()).collect(),
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let failure = outcome.as_ref().err().map(Error::reason);
    let status = build::compute_status(&member, &plan, &held, failure, &now);
    write_status(&member, workspace, status, &ctx).await?;
    outcome?;
    Ok(match &plan {
        // The expiry is a timer, not a periodic write.
        Plan::Invite(invitation) => Action::requeue(until(&invitation.expires_at)),
        _ => Action::await_change(),
    })
}

/// How long until `at` (at least a second, so a clock a little behind the
/// API server's does not spin).
fn until(at: &Time) -> std::time::Duration {
    let left = at.0.duration_since(k8s_openapi::jiff::Timestamp::now());
    std::time::Duration::try_from(left)
        .unwrap_or_default()
        .max(std::time::Duration::from_secs(1))
}

/// An open invitation: the member holds no role binding yet (one it held
/// goes), and the invitee gets the Role and RoleBinding that let them read
/// and answer this one WorkspaceMember.
async fn invite(
    namespace: &str,
    invitation: &invitation::Invitation,
    own: &[Arc<RoleBinding>],
    ctx: &Context,
) -> Result<(), Error> {
    remove(namespace, own, None, ctx).await?;
    let roles: Api<Role> = Api::namespaced(ctx.client.clone(), namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), namespace);
    let world = &ctx.world;
    apply_if_changed(
        ctx,
        CONTROLLER,
        "roles",
        &world.roles,
        &roles,
        &invitation.role,
    )
    .await
    .map_err(Error::Apply)?;
    apply_if_changed(
        ctx,
        CONTROLLER,
        "rolebindings",
        &world.role_bindings,
        &bindings,
        &invitation.binding,
    )
    .await
    .map_err(Error::Apply)?;
    Ok(())
}

/// Removes the invitee's answering grant, if the cache shows one: the
/// binding first, so the invitee never holds a binding to a missing role
/// that a later role of the same name would fill.
async fn end_invitation(member: &WorkspaceMember, ctx: &Context) -> Result<(), Error> {
    let (Some(namespace), Some(uid)) = (member.namespace(), member.uid()) else {
        return Ok(());
    };
    let name = invitation::grant_name(&member.name_any());
    let at_binding = ObjectRef::new(&name).within(&namespace);
    let owned = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter().any(|o| o.uid == uid)
    };
    if let Some(rb) = ctx.world.role_bindings.get(&at_binding)
        && owned(rb.owner_references())
    {
        ctx.metrics.write(CONTROLLER, "rolebindings");
        let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &namespace);
        delete_if_present(&api, &name, rb.uid())
            .await
            .map_err(Error::Delete)?;
    }
    if let Some(role) = ctx
        .world
        .roles
        .get(&ObjectRef::new(&name).within(&namespace))
        && owned(role.owner_references())
    {
        ctx.metrics.write(CONTROLLER, "roles");
        let api: Api<Role> = Api::namespaced(ctx.client.clone(), &namespace);
        delete_if_present(&api, &name, role.uid())
            .await
            .map_err(Error::Delete)?;
    }
    Ok(())
}

/// Applies the member's binding when the cached copy differs, then removes
/// every other binding of the member (a previous role).
async fn grant(
    namespace: &str,
    desired: &RoleBinding,
    own: &[Arc<RoleBinding>],
    ctx: &Context,
) -> Result<(), Error> {
    let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), namespace);
    let name = desired.name_any();
    let cached = ctx
        .world
        .role_bindings
        .get(&ObjectRef::new(&name).within(namespace));
    let wrong_role = cached.as_ref().filter(|c| c.role_ref != desired.role_ref);
    if let Some(wrong) = wrong_role {
        // Someone recreated the binding with another role; roleRef cannot
        // change, so it must go first.
        ctx.metrics.write(CONTROLLER, "rolebindings");
        delete_if_present(&api, &name, wrong.uid())
            .await
            .map_err(Error::Delete)?;
    }
    if wrong_role.is_some() || needs_write(cached.as_deref(), desired) {
        ctx.metrics.write(CONTROLLER, "rolebindings");
        apply(&api, desired).await.map_err(Error::Apply)?;
    }
    remove(namespace, own, Some(&name), ctx).await
}

/// Deletes the member's bindings, except `keep`.
async fn remove(
    namespace: &str,
    own: &[Arc<RoleBinding>],
    keep: Option<&str>,
    ctx: &Context,
) -> Result<(), Error> {
    let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), namespace);
    for rb in own {
        let name = rb.name_any();
        if Some(name.as_str()) == keep {
            continue;
        }
        ctx.metrics.write(CONTROLLER, "rolebindings");
        delete_if_present(&api, &name, rb.uid())
            .await
            .map_err(Error::Delete)?;
    }
    Ok(())
}

/// Writes `status` when it says something new, and records an event when the
/// `Ready` condition changed its status or reason.
/// Changes of an invitation's phase are announced ([`notices`]) once written.
async fn write_status(
    member: &WorkspaceMember,
    workspace: Option<&Workspace>,
    status: WorkspaceMemberStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let previous = member.status.clone().unwrap_or_default();
    // Said already, or written by this process and not in the cache yet.
    if build::same_status(&previous, &status) || ctx.written.already(member, &status) {
        return Ok(());
    }
    let api: Api<WorkspaceMember> =
        Api::namespaced(ctx.client.clone(), &member.namespace().unwrap_or_default());
    let change = super::StatusChange {
        status: &status,
        previous: &previous.conditions,
        current: &status.conditions,
    };
    super::apply_status(
        ctx,
        CONTROLLER,
        "workspacemembers/status",
        &api,
        member,
        change,
    )
    .await
    .map_err(Error::Status)?;
    notices::announce(ctx, member, workspace, &status);
    Ok(())
}
