//! The WorkspaceTransfer controller: moves a Workspace to another account
//! once both sides approved it, keeping everything in its namespace.
//!
//! observe (the cached world) -> validate and decide ([`build::decide`],
//! pure) -> apply (the read grant; one execution step) -> status (only when
//! it changed).
//!
//! Execution is a sequence of steps, each recorded in `status.step` before
//! the next starts, so an operator killed at any point resumes where it
//! stopped: `Started` (`status.from` recorded; the member controller now
//! revokes members that do not belong to the target), `MembersRevoked`
//! (their bindings are gone; the operator then changes `spec.owner` and
//! `spec.handle` of the Workspace in one write, and the Workspace
//! controller switches the owner's RoleBinding to the target in one write),
//! then `Completed` once the Workspace reports the target as its owner. A
//! final transfer is never run again.

mod apply;
pub mod build;
pub mod fault;
mod notices;
pub mod triggers;

use self::apply::{announce, ensure_finalizer, grant, release, revoke_grant, set_owner, write};

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use k8s_openapi::api::rbac::v1::Subject as RbacSubject;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use self::build::{Decision, Ending, Facts, State};
use super::{Action, Context, ReconcileError};
use crate::api::conditions::reason;
use crate::api::{
    AccountKind, AccountRef, AffectedSubject, MemberPhase, Organization, SubjectKind,
    TransferPhase, TransferSource, TransferStep, Workspace, WorkspaceRole, WorkspaceTransfer,
};

/// Metric label of this controller.
const CONTROLLER: &str = "transfer";

/// When to look again while members are being revoked, should no watch
/// event (a member's status, its binding's deletion) come first.
const POLL: Duration = Duration::from_secs(5);

/// What a transfer's status says while members are being revoked.
const REVOKING: &str = "Revoking the members that do not belong to the target (status.impact lists them); the owner changes next.";

/// What went wrong in one reconcile; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Adding or removing the transfer's finalizer failed.
    #[error("updating the finalizer failed: {0}")]
    Finalizer(#[source] kube::Error),
    /// Applying or deleting the per-transfer read grant failed.
    #[error("writing the read grant failed: {0}")]
    Grant(#[source] kube::Error),
    /// Changing the Workspace's owner and handle failed.
    #[error("changing the workspace's owner failed: {0}")]
    Owner(#[source] kube::Error),
    /// Writing status failed.
    #[error("writing status failed: {0}")]
    Status(#[source] kube::Error),
}

impl ReconcileError for Error {
    /// A bounded, PascalCase reason for conditions, events and metrics.
    fn reason(&self) -> &'static str {
        match self {
            Error::Finalizer(_) => "FinalizerFailed",
            Error::Grant(_) => "GrantFailed",
            Error::Owner(_) => "OwnerChangeFailed",
            Error::Status(_) => "StatusFailed",
        }
    }
}

/// The WorkspaceTransfer controller, as [`super::run`] registers it.
pub struct Transfers;

impl super::Controller for Transfers {
    type Kind = WorkspaceTransfer;
    const NAME: &'static str = "the transfer controller";

    fn register(routes: &mut super::Routes, queue: &super::Queue<WorkspaceTransfer>) {
        triggers::register(routes, queue);
    }

    fn run(
        ctx: Arc<Context>,
        triggers: UnboundedReceiver<ObjectRef<WorkspaceTransfer>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let store = ctx.world.transfers.clone();
        super::runner::run(ctx, store, triggers, CONTROLLER, reconcile)
    }
}

/// What a decision about one transfer reads from the caches.
struct Observed {
    workspace: Option<Arc<Workspace>>,
    siblings: Vec<Arc<WorkspaceTransfer>>,
    source_org: Option<Arc<Organization>>,
    target_org: Option<Arc<Organization>>,
    target_workspaces: Vec<Arc<Workspace>>,
    losing: Vec<AffectedSubject>,
    owner_members: Vec<RbacSubject>,
}

fn organization(ctx: &Context, account: &AccountRef) -> Option<Arc<Organization>> {
    (account.kind == AccountKind::Organization)
        .then(|| ctx.world.organizations.get(&ObjectRef::new(&account.name)))
        .flatten()
}

impl Observed {
    fn read(ctx: &Context, t: &WorkspaceTransfer) -> Observed {
        let world = &ctx.world;
        let workspace = world.workspaces.get(&ObjectRef::new(&t.spec.workspace));
        let namespace = workspace
            .as_ref()
            .and_then(|ws| ws.status.as_ref()?.namespace.clone());
        let (losing, owner_members) = match (&workspace, &namespace) {
            (Some(ws), Some(ns)) => (
                super::member::access::losing_access(ctx, ws, ns, &t.spec.to)
                    .into_iter()
                    .map(|(m, blocked)| affected(&m.spec.subject, blocked.reason))
                    .collect(),
                owner_members(ctx, ns),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        Observed {
            source_org: workspace
                .as_ref()
                .and_then(|ws| organization(ctx, &ws.spec.owner)),
            target_org: organization(ctx, &t.spec.to),
            target_workspaces: world.workspaces_of_owner(&t.spec.to),
            siblings: triggers::transfers_of(world, &t.spec.workspace),
            workspace,
            losing,
            owner_members,
        }
    }

    fn inputs<'a>(&'a self, ctx: &Context, t: &'a WorkspaceTransfer) -> build::Inputs<'a> {
        build::Inputs {
            transfer: t,
            workspace: self.workspace.as_deref(),
            siblings: &self.siblings,
            target_org: self.target_org.as_deref(),
            source_org: self.source_org.as_deref(),
            target_workspaces: &self.target_workspaces,
            user_limit: ctx.config.workspace_limit_per_user(),
            losing: &self.losing,
            ttl: ctx.config.transfer_ttl,
            now: k8s_openapi::jiff::Timestamp::now(),
        }
    }

    /// The organizations to record the transfer's events on.
    fn organizations(&self) -> Vec<Arc<Organization>> {
        self.source_org
            .iter()
            .chain(self.target_org.iter())
            .cloned()
            .collect()
    }
}

fn affected(subject: &crate::api::Subject, why: &str) -> AffectedSubject {
    AffectedSubject {
        kind: subject.kind,
        name: subject.name.clone(),
        namespace: (subject.kind == SubjectKind::ServiceAccount)
            .then(|| subject.namespace_name().map(str::to_string))
            .flatten(),
        reason: Some(why.to_string()),
    }
}

/// The subjects of the active Owner members in `namespace`: they answer for
/// the source side too, so they may read the transfer.
fn owner_members(ctx: &Context, namespace: &str) -> Vec<RbacSubject> {
    ctx.world
        .members_in(namespace)
        .iter()
        .filter(|m| m.spec.role == Some(WorkspaceRole::Owner))
        .filter(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Active))
        .map(|m| super::member::build::rbac_subject(&m.spec.subject))
        .collect()
}

async fn reconcile(t: Arc<WorkspaceTransfer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let phase = build::phase_of(&t);
    if phase.is_final() {
        return finish(&t, &ctx).await;
    }
    let observed = Observed::read(&ctx, &t);
    if t.meta().deletion_timestamp.is_some() && phase != TransferPhase::Transferring {
        return cancel(&t, &ctx, &observed).await;
    }
    if let Some(done) = ensure_finalizer(&t, &ctx).await? {
        return Ok(done);
    }
    let inputs = observed.inputs(&ctx, &t);
    match build::decide(&inputs) {
        Decision::End(ending) => end(&t, &ctx, &observed, ending).await,
        Decision::Pending(problem) => {
            grant(&t, &ctx, &inputs, &observed).await?;
            let state = State::Pending(problem);
            write(&t, &ctx, &observed, &state, pending_facts(&inputs)).await?;
            let left = build::time_left(&t, inputs.ttl, inputs.now);
            Ok(left.map_or_else(Action::await_change, |d| {
                Action::requeue(d + Duration::from_millis(100))
            }))
        }
        Decision::Start => start(&t, &ctx, &inputs, &observed).await,
        Decision::Execute => execute(&t, &ctx, &observed).await,
    }
}

/// The impact and the source while Pending.
fn pending_facts(inputs: &build::Inputs<'_>) -> Facts {
    Facts {
        impact: Some(build::impact(inputs)),
        source: inputs.workspace.map(|ws| TransferSource {
            kind: ws.spec.owner.kind,
            name: ws.spec.owner.name.clone(),
            namespace: ws
                .status
                .as_ref()
                .and_then(|s| s.namespace.clone())
                .unwrap_or_default(),
        }),
        from: None,
    }
}

/// Both sides approved and validation passed again: record the start
/// (`status.from`, phase Transferring, step Started) and announce it.
async fn start(
    t: &WorkspaceTransfer,
    ctx: &Context,
    inputs: &build::Inputs<'_>,
    observed: &Observed,
) -> Result<Action, Error> {
    grant(t, ctx, inputs, observed).await?;
    let from = inputs.workspace.map(|ws| ws.spec.owner.clone());
    let state = State::Transferring {
        step: TransferStep::Started,
        message: REVOKING.to_string(),
    };
    let facts = Facts {
        from: from.clone(),
        ..pending_facts(inputs)
    };
    if !write(t, ctx, observed, &state, facts).await? {
        // Announced by the write that made the transition.
        return Ok(Action::await_change());
    }
    let note = format!(
        "Transfer {} of workspace {} from {} to {} started.",
        t.name_any(),
        t.spec.workspace,
        from.map_or_else(String::new, |f| f.to_string()),
        t.spec.to
    );
    announce(ctx, t, observed, EventType::Normal, "TransferStarted", note).await;
    fault::after(TransferStep::Started.as_str());
    Ok(Action::await_change())
}

/// One execution step, after the one recorded in `status.step`.
async fn execute(
    t: &WorkspaceTransfer,
    ctx: &Context,
    observed: &Observed,
) -> Result<Action, Error> {
    let Some(ws) = observed.workspace.as_deref() else {
        return Ok(Action::await_change());
    };
    let step = t.status.as_ref().and_then(|s| s.step);
    if step != Some(TransferStep::MembersRevoked) {
        let holding = still_holding(ctx, ws, &t.spec.to);
        if !holding.is_empty() {
            // The status says so since the start; it is not rewritten as
            // each member goes (that would be a write per member).
            tracing::debug!(waiting_for = ?holding, "members still hold their bindings");
            let state = State::Transferring {
                step: TransferStep::Started,
                message: REVOKING.to_string(),
            };
            write(t, ctx, observed, &state, Facts::default()).await?;
            return Ok(Action::requeue(POLL));
        }
        let state = State::Transferring {
            step: TransferStep::MembersRevoked,
            message: format!(
                "Changing the owner of workspace {} to {}.",
                ws.name_any(),
                t.spec.to
            ),
        };
        write(t, ctx, observed, &state, Facts::default()).await?;
        fault::after(TransferStep::MembersRevoked.as_str());
        return Ok(Action::await_change());
    }
    if ws.spec.owner != t.spec.to {
        if let Some(stale) = set_owner(ws, &t.spec.to, t.spec.new_handle.as_deref(), ctx).await? {
            return Ok(stale);
        }
        fault::after("OwnerSwitched");
        return Ok(Action::await_change());
    }
    let applied = ws.status.as_ref().is_some_and(|s| {
        s.owner.as_ref() == Some(&t.spec.to) && s.phase == Some(crate::api::WorkspacePhase::Active)
    });
    if !applied {
        let state = State::Transferring {
            step: TransferStep::MembersRevoked,
            message: format!(
                "Waiting for workspace {} to give {} the Owner role.",
                ws.name_any(),
                t.spec.to
            ),
        };
        write(t, ctx, observed, &state, Facts::default()).await?;
        return Ok(Action::await_change());
    }
    complete(t, ctx, observed).await
}

/// The members the transfer revokes that still hold a binding, described.
fn still_holding(ctx: &Context, ws: &Workspace, to: &AccountRef) -> Vec<String> {
    let Some(namespace) = ws.status.as_ref().and_then(|s| s.namespace.clone()) else {
        return Vec::new();
    };
    let bindings = ctx.world.role_bindings_in(&namespace);
    let losing = super::member::access::losing_access(ctx, ws, &namespace, to)
        .into_iter()
        .filter(|(m, _)| !super::member::build::own_bindings(m, &bindings).is_empty())
        .map(|(m, _)| super::member::build::describe(&m.spec.subject));
    // A change of owner ends the open invitations (made on behalf of the
    // account the workspace leaves): the owner changes once they are ended.
    let invited = ctx
        .world
        .members_in(&namespace)
        .into_iter()
        .filter(|m| m.meta().deletion_timestamp.is_none())
        .filter(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Invited))
        .map(|m| {
            format!(
                "the open invitation of {}",
                super::member::build::describe(&m.spec.subject)
            )
        });
    losing.chain(invited).collect()
}

/// The Workspace reports the target as its owner: the transfer is done.
async fn complete(
    t: &WorkspaceTransfer,
    ctx: &Context,
    observed: &Observed,
) -> Result<Action, Error> {
    let from = t
        .status
        .as_ref()
        .and_then(|s| s.from.clone())
        .map_or_else(|| "its previous owner".to_string(), |f| f.to_string());
    let ending = Ending {
        phase: TransferPhase::Completed,
        reason: reason::COMPLETED,
        message: format!(
            "Workspace {} moved from {from} to {}; everything in its namespace was kept.",
            t.spec.workspace, t.spec.to
        ),
    };
    let state = State::Ended(ending.clone());
    if write(t, ctx, observed, &state, Facts::default()).await? {
        let (type_, reason) = (EventType::Normal, "TransferCompleted");
        announce(ctx, t, observed, type_, reason, ending.message).await;
    }
    fault::after("Completed");
    // The watch event of this status reconciles the transfer as final
    // (grant and finalizer go) from a copy that is not stale.
    Ok(Action::await_change())
}

/// The transfer ends (rejected, expired, failed): a change of owner that
/// was already made is undone first, so nothing stays half-done.
async fn end(
    t: &WorkspaceTransfer,
    ctx: &Context,
    observed: &Observed,
    ending: Ending,
) -> Result<Action, Error> {
    let from = t.status.as_ref().and_then(|s| s.from.clone());
    if let (Some(ws), Some(from)) = (observed.workspace.as_deref(), from)
        && ws.meta().deletion_timestamp.is_none()
        && ws.spec.owner == t.spec.to
        && from != t.spec.to
        && let Some(stale) = set_owner(ws, &from, None, ctx).await?
    {
        return Ok(stale);
    }
    let (type_, event) = match ending.phase {
        TransferPhase::Rejected => (EventType::Normal, "TransferRejected"),
        TransferPhase::Expired => (EventType::Normal, "TransferExpired"),
        _ => (EventType::Warning, "TransferFailed"),
    };
    let state = State::Ended(ending.clone());
    if write(t, ctx, observed, &state, Facts::default()).await? {
        announce(ctx, t, observed, type_, event, ending.message).await;
    }
    Ok(Action::await_change())
}

/// A transfer deleted before it started: cancelled, with an event on the
/// Workspace and the accounts; its grant and finalizer go.
async fn cancel(
    t: &WorkspaceTransfer,
    ctx: &Context,
    observed: &Observed,
) -> Result<Action, Error> {
    if t.finalizers().iter().any(|f| f == build::FINALIZER) {
        let note = format!(
            "Transfer {} of workspace {} to {} was cancelled (deleted before it ran).",
            t.name_any(),
            t.spec.workspace,
            t.spec.to
        );
        announce(
            ctx,
            t,
            observed,
            EventType::Normal,
            "TransferCancelled",
            note,
        )
        .await;
    }
    // The grant goes with the transfer (garbage collection, through its
    // ownerReference), so `kubectl delete` can watch the transfer go.
    release(t, ctx).await
}

/// A final transfer keeps no grant and no finalizer.
async fn finish(t: &WorkspaceTransfer, ctx: &Context) -> Result<Action, Error> {
    revoke_grant(t, ctx).await?;
    release(t, ctx).await
}
