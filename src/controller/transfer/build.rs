//! The pure part of the WorkspaceTransfer controller: from a transfer and
//! the cached world, decide what happens next (end it, keep it Pending,
//! start it, carry on), preview its impact, compute its status and build the
//! per-transfer read grant. No IO here; everything is unit-tested without a
//! cluster.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::Subject as RbacSubject;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::api::conditions::{self, reason};
use crate::api::{
    AccountKind, AffectedSubject, Approval, Organization, SubjectKind, TransferImpact,
    TransferPhase, Workspace, WorkspacePhase, WorkspaceTransfer, WorkspaceUsage,
};
use crate::controller::member::build::owned_by;
use crate::controller::workspace::build::owner_subjects;

mod grant;
mod status;
#[cfg(test)]
mod tests;

pub use grant::{grant_name, reader_binding, reader_role, readers};
pub use status::{Facts, State, compute_status, same_status};

/// The finalizer that lets a transfer's deletion cancel it (events, grants
/// removed) and makes a transfer that is running finish before it goes.
pub const FINALIZER: &str = "workspaces.dev/transfer";

/// Prefix of the per-transfer ClusterRole and ClusterRoleBinding that let
/// both sides read the transfer while it is open.
pub const GRANT_PREFIX: &str = "workspaces.dev:transfer:";

/// The phase a transfer is in (Pending before the operator reported one).
pub fn phase_of(t: &WorkspaceTransfer) -> TransferPhase {
    t.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(TransferPhase::Pending)
}

/// One side's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Not given yet.
    Waiting,
    /// Approved by this user.
    Approved(String),
    /// Refused by this user.
    Rejected(String),
}

/// The answer an approval gives.
pub fn answer(approval: Option<&Approval>) -> Answer {
    match approval {
        Some(Approval {
            rejected_by: Some(by),
            ..
        }) => Answer::Rejected(by.clone()),
        Some(Approval {
            approved_by: Some(by),
            ..
        }) => Answer::Approved(by.clone()),
        _ => Answer::Waiting,
    }
}

fn answers(t: &WorkspaceTransfer) -> (Answer, Answer) {
    let approvals = t.spec.approvals.as_ref();
    (
        answer(approvals.and_then(|a| a.source.as_ref())),
        answer(approvals.and_then(|a| a.target.as_ref())),
    )
}

/// Why a transfer cannot run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// PascalCase reason.
    pub reason: &'static str,
    /// One human sentence.
    pub message: String,
    /// Whether a person must act (`Stalled`), rather than a wait that ends by itself.
    pub stalled: bool,
}

/// How a transfer ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ending {
    /// The final phase.
    pub phase: TransferPhase,
    /// PascalCase reason.
    pub reason: &'static str,
    /// One human sentence.
    pub message: String,
}

/// What happens to a transfer in this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It ends now.
    End(Ending),
    /// It stays Pending: waiting for approvals, or for `problem` to go.
    Pending(Option<Problem>),
    /// Both sides approved and validation passed: execution starts.
    Start,
    /// Execution goes on from the recorded step.
    Execute,
}

/// What the operator knows when it decides about one transfer.
pub struct Inputs<'a> {
    /// The transfer.
    pub transfer: &'a WorkspaceTransfer,
    /// Its Workspace, when cached.
    pub workspace: Option<&'a Workspace>,
    /// Every transfer of the same Workspace (this one included).
    pub siblings: &'a [Arc<WorkspaceTransfer>],
    /// The target Organization, when the target is one and it exists.
    pub target_org: Option<&'a Organization>,
    /// The Organization that owns the Workspace, when one does and it exists.
    pub source_org: Option<&'a Organization>,
    /// The target account's Workspaces.
    pub target_workspaces: &'a [Arc<Workspace>],
    /// `--max-workspaces-per-user` (None: unlimited).
    pub user_limit: Option<u32>,
    /// Members that would lose access (see `member::access::losing_access`).
    pub losing: &'a [AffectedSubject],
    /// `--transfer-ttl`.
    pub ttl: Duration,
    /// The time of this reconcile.
    pub now: Timestamp,
}

fn deleting<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

fn age_key(t: &WorkspaceTransfer) -> (Option<Timestamp>, String) {
    (t.creation_timestamp().map(|c| c.0), t.name_any())
}

/// Decide what happens to `inputs.transfer` (not final) in this reconcile.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let t = inputs.transfer;
    if phase_of(t) == TransferPhase::Transferring {
        return running(inputs);
    }
    if let Some(ending) = refused(t).or_else(|| source_gone(inputs)) {
        return Decision::End(ending);
    }
    if let Some(left) = time_left(t, inputs.ttl, inputs.now)
        && left.is_zero()
    {
        return Decision::End(Ending {
            phase: TransferPhase::Expired,
            reason: reason::EXPIRED,
            message: format!(
                "Not approved by both sides within {}; create a new WorkspaceTransfer to try again.",
                describe_duration(inputs.ttl)
            ),
        });
    }
    match validate(inputs) {
        Some(problem) => Decision::Pending(Some(problem)),
        None => match answers(t) {
            (Answer::Approved(_), Answer::Approved(_)) => Decision::Start,
            _ => Decision::Pending(None),
        },
    }
}

/// How long until a Pending transfer expires (zero when it has), counted
/// from its creation; None when it has no creation time.
pub fn time_left(t: &WorkspaceTransfer, ttl: Duration, now: Timestamp) -> Option<Duration> {
    let created = t.creation_timestamp()?.0;
    let ttl = k8s_openapi::jiff::SignedDuration::try_from(ttl).ok()?;
    let deadline = created.checked_add(ttl).ok()?;
    let left = now.duration_until(deadline);
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A refusal from either side ends the transfer.
fn refused(t: &WorkspaceTransfer) -> Option<Ending> {
    let (source, target) = answers(t);
    let (side, by) = match (source, target) {
        (Answer::Rejected(by), _) => ("source", by),
        (_, Answer::Rejected(by)) => ("target", by),
        _ => return None,
    };
    Some(Ending {
        phase: TransferPhase::Rejected,
        reason: reason::REJECTED,
        message: format!(
            "Refused by {by} for the {side} side; workspace {} stays where it is.",
            t.spec.workspace
        ),
    })
}

/// The source side no longer holds: the workspace went away after the
/// transfer was seen, or it is not (any more) owned by the account the
/// transfer names or recorded.
fn source_gone(inputs: &Inputs<'_>) -> Option<Ending> {
    let t = inputs.transfer;
    let recorded = t.status.as_ref().and_then(|s| s.source.as_ref());
    let failed = |reason, message| {
        Some(Ending {
            phase: TransferPhase::Failed,
            reason,
            message,
        })
    };
    let Some(ws) = inputs.workspace.filter(|ws| !deleting(*ws)) else {
        return match recorded {
            Some(_) => failed(
                reason::TRANSFER_FAILED,
                format!(
                    "Workspace {} was deleted before the transfer ran; nothing was changed.",
                    t.spec.workspace
                ),
            ),
            None => None,
        };
    };
    if let Some(from) = t.spec.from.as_ref().filter(|f| **f != ws.spec.owner) {
        return failed(
            reason::SOURCE_MISMATCH,
            format!(
                "spec.from names {from}, but workspace {} belongs to {}; this transfer never runs: create a new one.",
                t.spec.workspace, ws.spec.owner
            ),
        );
    }
    // The recorded namespace is what admission judged the source's Owner
    // members by: it must be the namespace the workspace holds (a status
    // written by anyone but this controller would not be).
    let holds = ws
        .status
        .as_ref()
        .and_then(|s| s.namespace.as_deref())
        .unwrap_or_default();
    if let Some(source) = recorded.filter(|s| !s.namespace.is_empty() && s.namespace != holds) {
        return failed(
            reason::SOURCE_CHANGED,
            format!(
                "the transfer recorded namespace {} for workspace {}, which holds {}; its approvals no longer hold: create a new one.",
                source.namespace,
                t.spec.workspace,
                if holds.is_empty() { "none" } else { holds }
            ),
        );
    }
    if let Some(source) = recorded.filter(|s| s.account() != ws.spec.owner) {
        return failed(
            reason::SOURCE_CHANGED,
            format!(
                "Workspace {} moved from {} to {} since this transfer was proposed; its approvals no longer hold: create a new one.",
                t.spec.workspace,
                source.account(),
                ws.spec.owner
            ),
        );
    }
    None
}

/// A transfer that is executing goes on, unless its workspace or its target
/// Organization went away.
fn running(inputs: &Inputs<'_>) -> Decision {
    let t = inputs.transfer;
    if inputs.workspace.is_none_or(deleting) {
        return Decision::End(Ending {
            phase: TransferPhase::Failed,
            reason: reason::TRANSFER_FAILED,
            message: format!(
                "Workspace {} was deleted while the transfer ran.",
                t.spec.workspace
            ),
        });
    }
    if t.spec.to.kind == AccountKind::Organization && inputs.target_org.is_none_or(deleting) {
        return Decision::End(Ending {
            phase: TransferPhase::Failed,
            reason: reason::TARGET_NOT_FOUND,
            message: format!(
                "Organization {} was deleted while the transfer ran; workspace {} stays with {}.",
                t.spec.to.name,
                t.spec.workspace,
                t.status
                    .as_ref()
                    .and_then(|s| s.from.clone())
                    .map_or_else(|| "its owner".to_string(), |f| f.to_string())
            ),
        });
    }
    Decision::Execute
}

/// The handle the workspace will have in the target account.
pub fn target_handle(t: &WorkspaceTransfer, ws: &Workspace) -> String {
    t.spec
        .new_handle
        .clone()
        .unwrap_or_else(|| ws.spec.effective_handle(&ws.name_any()).to_string())
}

/// The target's workspaces besides this one, and its limit.
fn target_usage(inputs: &Inputs<'_>, ws: &Workspace) -> WorkspaceUsage {
    let name = ws.name_any();
    let used = inputs
        .target_workspaces
        .iter()
        .filter(|o| !deleting(&***o) && o.name_any() != name)
        .count();
    let limit = match inputs.transfer.spec.to.kind {
        AccountKind::Organization => inputs
            .target_org
            .and_then(|o| o.spec.limits.as_ref())
            .and_then(|l| l.workspaces),
        AccountKind::User => inputs.user_limit.map(|l| l.min(i32::MAX as u32) as i32),
    };
    WorkspaceUsage {
        used: used.min(i32::MAX as usize) as i32,
        limit,
    }
}

/// Whether the handle is free among the target's other workspaces.
fn handle_free(inputs: &Inputs<'_>, ws: &Workspace) -> bool {
    let handle = target_handle(inputs.transfer, ws);
    let name = ws.name_any();
    !inputs.target_workspaces.iter().any(|o| {
        let other = o.name_any();
        !deleting(&**o) && other != name && o.spec.effective_handle(&other) == handle
    })
}

/// The open transfer of the same workspace that goes first, if not this one:
/// one that is running, else the oldest.
fn ahead<'a>(inputs: &'a Inputs<'_>) -> Option<&'a Arc<WorkspaceTransfer>> {
    let t = inputs.transfer;
    let mine = age_key(t);
    inputs
        .siblings
        .iter()
        .filter(|o| o.name_any() != t.name_any() && !phase_of(o).is_final())
        .find(|o| phase_of(o) == TransferPhase::Transferring || age_key(o) < mine)
}

/// Validation, before approval and again right before execution.
pub fn validate(inputs: &Inputs<'_>) -> Option<Problem> {
    match workspace_problem(inputs) {
        Ok(ws) => target_problem(inputs, ws),
        Err(problem) => Some(problem),
    }
}

fn problem(reason: &'static str, stalled: bool, message: String) -> Problem {
    Problem {
        reason,
        message,
        stalled,
    }
}

/// The transfer's workspace, unless it is missing, not Ready or already
/// the target's.
fn workspace_problem<'a>(inputs: &Inputs<'a>) -> Result<&'a Workspace, Problem> {
    let t = inputs.transfer;
    let Some(ws) = inputs.workspace.filter(|ws| !deleting(*ws)) else {
        return Err(problem(
            reason::WORKSPACE_NOT_FOUND,
            true,
            format!("Workspace {} does not exist.", t.spec.workspace),
        ));
    };
    let status = ws.status.as_ref();
    if status.and_then(|s| s.phase) != Some(WorkspacePhase::Active)
        || !status.is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
    {
        return Err(problem(
            reason::WORKSPACE_NOT_READY,
            false,
            format!(
                "Workspace {} is not Ready; the transfer can run once it is.",
                t.spec.workspace
            ),
        ));
    }
    if ws.spec.owner == t.spec.to {
        return Err(problem(
            reason::ALREADY_OWNED,
            true,
            format!(
                "Workspace {} already belongs to {}.",
                t.spec.workspace, t.spec.to
            ),
        ));
    }
    Ok(ws)
}

/// What keeps the target from taking `ws` now: it is missing, another
/// transfer of `ws` is ahead, the handle is taken or the limit reached.
fn target_problem(inputs: &Inputs<'_>, ws: &Workspace) -> Option<Problem> {
    let t = inputs.transfer;
    if t.spec.to.kind == AccountKind::Organization && inputs.target_org.is_none_or(deleting) {
        return Some(problem(
            reason::TARGET_NOT_FOUND,
            true,
            format!("Organization {} does not exist.", t.spec.to.name),
        ));
    }
    if let Some(first) = ahead(inputs) {
        return Some(problem(
            reason::TRANSFER_IN_PROGRESS,
            false,
            format!(
                "WorkspaceTransfer {} of workspace {} is open; this one waits until it has ended.",
                first.name_any(),
                t.spec.workspace
            ),
        ));
    }
    if !handle_free(inputs, ws) {
        return Some(problem(
            reason::HANDLE_TAKEN,
            true,
            format!(
                "{} already has a workspace with handle {}; create a new transfer with another spec.newHandle.",
                t.spec.to,
                target_handle(t, ws)
            ),
        ));
    }
    let usage = target_usage(inputs, ws);
    let limit = usage.limit.filter(|l| usage.used >= *l)?;
    Some(problem(
        reason::TARGET_LIMIT_REACHED,
        true,
        format!(
            "{} has {} of at most {limit} workspaces; it needs room before it can take this one.",
            t.spec.to, usage.used
        ),
    ))
}

fn affected(subject: &RbacSubject) -> AffectedSubject {
    AffectedSubject {
        kind: match subject.kind.as_str() {
            "Group" => SubjectKind::Group,
            "ServiceAccount" => SubjectKind::ServiceAccount,
            _ => SubjectKind::User,
        },
        name: subject.name.clone(),
        namespace: subject.namespace.clone(),
        reason: None,
    }
}

/// The owner subjects of `ws` as it is now and as it will be.
fn owners(inputs: &Inputs<'_>, ws: &Workspace) -> (Vec<RbacSubject>, Vec<RbacSubject>) {
    let now = owner_subjects(ws, inputs.source_org);
    let then = owner_subjects(&owned_by(ws, &inputs.transfer.spec.to), inputs.target_org);
    (now, then)
}

/// What the transfer will change, as far as the cache tells.
pub fn impact(inputs: &Inputs<'_>) -> TransferImpact {
    let Some(ws) = inputs.workspace else {
        return TransferImpact::default();
    };
    let (now, then) = owners(inputs, ws);
    let (service_accounts, members): (Vec<_>, Vec<_>) = inputs
        .losing
        .iter()
        .cloned()
        .partition(|s| s.kind == SubjectKind::ServiceAccount);
    TransferImpact {
        members_losing_access: members,
        service_accounts_losing_access: service_accounts,
        owners_losing_access: now
            .iter()
            .filter(|s| !then.contains(s))
            .map(affected)
            .collect(),
        owners_gaining_access: then
            .iter()
            .filter(|s| !now.contains(s))
            .map(affected)
            .collect(),
        handle_available: Some(handle_free(inputs, ws)),
        target_workspaces: Some(target_usage(inputs, ws)),
    }
}

fn list(subjects: &[AffectedSubject]) -> String {
    const SHOWN: usize = 5;
    let mut names: Vec<String> = subjects
        .iter()
        .take(SHOWN)
        .map(|s| match (&s.namespace, s.kind) {
            (Some(ns), SubjectKind::ServiceAccount) => format!("ServiceAccount {ns}/{}", s.name),
            _ => format!("{} {}", s.kind, s.name),
        })
        .collect();
    if subjects.len() > SHOWN {
        names.push(format!("{} more", subjects.len() - SHOWN));
    }
    names.join(", ")
}

/// The impact in one human sentence, as the `Validated` condition says it.
pub fn summary(t: &WorkspaceTransfer, ws: Option<&Workspace>, impact: &TransferImpact) -> String {
    let losing = [
        impact.members_losing_access.as_slice(),
        impact.service_accounts_losing_access.as_slice(),
    ]
    .concat();
    let who = match losing.len() {
        0 => "no member loses access".to_string(),
        n => format!("{n} member(s) lose access ({})", list(&losing)),
    };
    let owners = format!(
        "Owners losing access: {}; gaining: {}",
        none_if_empty(list(&impact.owners_losing_access)),
        none_if_empty(list(&impact.owners_gaining_access)),
    );
    let namespace = ws
        .and_then(|w| w.status.as_ref()?.namespace.clone())
        .unwrap_or_else(|| t.spec.workspace.clone());
    let handle = ws.map(|w| target_handle(t, w)).unwrap_or_default();
    format!(
        "Moving workspace {} to {}: {who}. {owners}. Handle {handle} in the target. Namespace {namespace} and everything in it (history, configuration, Secrets) are kept, and its name does not change, so kubeconfigs and CLI contexts keep working.",
        t.spec.workspace, t.spec.to
    )
}

fn none_if_empty(text: String) -> String {
    if text.is_empty() { "none".into() } else { text }
}
