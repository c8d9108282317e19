//! The pure part of the WorkspaceTransfer controller: from a transfer and
//! the cached world, decide what happens next (end it, keep it Pending,
//! start it, carry on), preview its impact, compute its status and build the
//! per-transfer read grant. No IO here; everything is unit-tested without a
//! cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject as RbacSubject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::api::conditions::{self, ConditionStatus, NewCondition, reason};
use crate::api::{
    AccountKind, AccountRef, AffectedSubject, Approval, Organization, SubjectKind, TransferImpact,
    TransferPhase, TransferSource, TransferStep, Workspace, WorkspacePhase, WorkspaceTransfer,
    WorkspaceTransferStatus, WorkspaceUsage,
};
use crate::controller::labels;
use crate::controller::member::build::owned_by;
use crate::controller::workspace::build::owner_subjects;

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
    /// Members that would lose access (see `member::losing_access`).
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
    let t = inputs.transfer;
    let problem = |reason, stalled, message| {
        Some(Problem {
            reason,
            message,
            stalled,
        })
    };
    let Some(ws) = inputs.workspace.filter(|ws| !deleting(*ws)) else {
        return problem(
            reason::WORKSPACE_NOT_FOUND,
            true,
            format!("Workspace {} does not exist.", t.spec.workspace),
        );
    };
    let status = ws.status.as_ref();
    if status.and_then(|s| s.phase) != Some(WorkspacePhase::Active)
        || !status.is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
    {
        return problem(
            reason::WORKSPACE_NOT_READY,
            false,
            format!(
                "Workspace {} is not Ready; the transfer can run once it is.",
                t.spec.workspace
            ),
        );
    }
    if ws.spec.owner == t.spec.to {
        return problem(
            reason::ALREADY_OWNED,
            true,
            format!(
                "Workspace {} already belongs to {}.",
                t.spec.workspace, t.spec.to
            ),
        );
    }
    if t.spec.to.kind == AccountKind::Organization && inputs.target_org.is_none_or(deleting) {
        return problem(
            reason::TARGET_NOT_FOUND,
            true,
            format!("Organization {} does not exist.", t.spec.to.name),
        );
    }
    if let Some(first) = ahead(inputs) {
        return problem(
            reason::TRANSFER_IN_PROGRESS,
            false,
            format!(
                "WorkspaceTransfer {} of workspace {} is open; this one waits until it has ended.",
                first.name_any(),
                t.spec.workspace
            ),
        );
    }
    if !handle_free(inputs, ws) {
        return problem(
            reason::HANDLE_TAKEN,
            true,
            format!(
                "{} already has a workspace with handle {}; create a new transfer with another spec.newHandle.",
                t.spec.to,
                target_handle(t, ws)
            ),
        );
    }
    let usage = target_usage(inputs, ws);
    if let Some(limit) = usage.limit.filter(|l| usage.used >= *l) {
        return problem(
            reason::TARGET_LIMIT_REACHED,
            true,
            format!(
                "{} has {} of at most {limit} workspaces; it needs room before it can take this one.",
                t.spec.to, usage.used
            ),
        );
    }
    None
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

/// Where a transfer stands after this reconcile, for its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Pending: waiting for approvals, or for `problem` to go.
    Pending(Option<Problem>),
    /// Executing; `message` says what it waits for.
    Transferring {
        /// The last step that finished.
        step: TransferStep,
        /// One human sentence.
        message: String,
    },
    /// Ended.
    Ended(Ending),
}

/// What changes in a status besides the conditions.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The impact, recomputed while Pending (kept otherwise).
    pub impact: Option<TransferImpact>,
    /// The source as first seen (written once; an empty namespace filled).
    pub source: Option<TransferSource>,
    /// The owner at the start of execution.
    pub from: Option<AccountRef>,
}

fn side_condition(answer: &Answer, waiting_for: String) -> (ConditionStatus, &'static str, String) {
    match answer {
        Answer::Approved(by) => (
            ConditionStatus::True,
            reason::APPROVED,
            format!("Approved by {by}."),
        ),
        Answer::Rejected(by) => (
            ConditionStatus::False,
            reason::REJECTED,
            format!("Refused by {by}."),
        ),
        Answer::Waiting => (
            ConditionStatus::False,
            reason::AWAITING_APPROVAL,
            format!("Waiting for {waiting_for} to approve."),
        ),
    }
}

fn source_approvers(t: &WorkspaceTransfer) -> String {
    format!("an Owner of workspace {}", t.spec.workspace)
}

fn target_approvers(t: &WorkspaceTransfer) -> String {
    match t.spec.to.kind {
        AccountKind::User => format!("user {}", t.spec.to.name),
        AccountKind::Organization => format!("an admin of Organization {}", t.spec.to.name),
    }
}

/// The conditions of a status being computed.
struct Conditions<'a> {
    list: &'a mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    generation: Option<i64>,
    now: &'a Time,
}

impl Conditions<'_> {
    fn set(
        &mut self,
        type_: &'static str,
        holds: ConditionStatus,
        reason: &'static str,
        message: String,
    ) {
        conditions::set_condition(
            self.list,
            NewCondition::new(type_, holds, reason, message).observed_generation(self.generation),
            self.now,
        );
    }

    fn remove(&mut self, type_: &str) {
        conditions::remove_condition(self.list, type_);
    }
}

/// The status `t` should have after this reconcile.
pub fn compute_status(
    t: &WorkspaceTransfer,
    state: &State,
    facts: Facts,
    summary: &str,
    now: &Time,
) -> WorkspaceTransferStatus {
    let previous = t.status.clone().unwrap_or_default();
    let generation = t.meta().generation;
    let mut status = previous.clone();
    status.observed_generation = generation;
    status.impact = facts.impact.or(previous.impact);
    status.source = match (previous.source, facts.source) {
        (Some(old), Some(new)) if old.namespace.is_empty() && old.account() == new.account() => {
            Some(new)
        }
        (old, new) => old.or(new),
    };
    status.from = previous.from.or(facts.from);
    match state {
        State::Transferring { step, .. } => {
            status.step = Some(*step);
            status.start_time = status.start_time.or_else(|| Some(now.clone()));
        }
        State::Ended(_) => {
            status.completion_time = status.completion_time.or_else(|| Some(now.clone()));
        }
        State::Pending(_) => {}
    }
    let mut conds = Conditions {
        list: &mut status.conditions,
        generation,
        now,
    };
    let (source, target) = answers(t);
    let (s, r, m) = side_condition(&source, source_approvers(t));
    conds.set(conditions::SOURCE_APPROVED, s, r, m);
    let (s, r, m) = side_condition(&target, target_approvers(t));
    conds.set(conditions::TARGET_APPROVED, s, r, m);
    let phase = state_conditions(t, state, summary, &mut conds);
    status.phase = Some(phase);
    status
}

/// Ready, Reconciling, Stalled, Complete and (while Pending) Validated for
/// `state`; returns the phase.
fn state_conditions(
    t: &WorkspaceTransfer,
    state: &State,
    summary: &str,
    conds: &mut Conditions<'_>,
) -> TransferPhase {
    let (phase, ready, reconciling, stalled) = match state {
        State::Pending(problem) => {
            pending_conditions(t, problem.as_ref(), summary, conds);
            let waiting = match problem {
                Some(p) => (ConditionStatus::False, p.reason, p.message.clone()),
                None => (
                    ConditionStatus::False,
                    reason::AWAITING_APPROVAL,
                    format!(
                        "Waiting for approval; the transfer runs once {} and {} have approved.",
                        source_approvers(t),
                        target_approvers(t)
                    ),
                ),
            };
            let stalled = problem.as_ref().is_some_and(|p| p.stalled);
            (TransferPhase::Pending, waiting, !stalled, stalled)
        }
        State::Transferring { message, .. } => {
            let running = (
                ConditionStatus::False,
                reason::TRANSFERRING,
                message.clone(),
            );
            conds.set(
                conditions::COMPLETE,
                running.0,
                running.1,
                running.2.clone(),
            );
            (TransferPhase::Transferring, running, true, false)
        }
        State::Ended(ending) => {
            let done = ending.phase == TransferPhase::Completed;
            let holds = if done {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            };
            conds.set(
                conditions::COMPLETE,
                holds,
                ending.reason,
                ending.message.clone(),
            );
            if matches!(
                ending.reason,
                reason::SOURCE_MISMATCH | reason::SOURCE_CHANGED
            ) {
                conds.set(
                    conditions::VALIDATED,
                    ConditionStatus::False,
                    ending.reason,
                    ending.message.clone(),
                );
            }
            let ready = (holds, ending.reason, ending.message.clone());
            (ending.phase, ready, false, !done)
        }
    };
    conds.set(conditions::READY, ready.0, ready.1, ready.2.clone());
    for (type_, on) in [
        (conditions::RECONCILING, reconciling),
        (conditions::STALLED, stalled),
    ] {
        if on {
            conds.set(type_, ConditionStatus::True, ready.1, ready.2.clone());
        } else {
            conds.remove(type_);
        }
    }
    phase
}

/// The `Validated` and `Complete` conditions of a Pending transfer.
fn pending_conditions(
    t: &WorkspaceTransfer,
    problem: Option<&Problem>,
    summary: &str,
    conds: &mut Conditions<'_>,
) {
    match problem {
        Some(p) => conds.set(
            conditions::VALIDATED,
            ConditionStatus::False,
            p.reason,
            p.message.clone(),
        ),
        None => conds.set(
            conditions::VALIDATED,
            ConditionStatus::True,
            reason::VALID,
            summary.to_string(),
        ),
    }
    conds.set(
        conditions::COMPLETE,
        ConditionStatus::False,
        reason::AWAITING_APPROVAL,
        format!(
            "The transfer of workspace {} has not run yet.",
            t.spec.workspace
        ),
    );
}

/// Whether two statuses say the same thing, ignoring condition timestamps.
pub fn same_status(a: &WorkspaceTransferStatus, b: &WorkspaceTransferStatus) -> bool {
    conditions::conditions_equal_ignoring_time(&a.conditions, &b.conditions)
        && a.observed_generation == b.observed_generation
        && a.phase == b.phase
        && a.impact == b.impact
        && a.from == b.from
        && a.source == b.source
        && a.step == b.step
        && a.start_time == b.start_time
        && a.completion_time == b.completion_time
}

/// FNV-1a, 64 bits, for shortening generated names.
fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The name of a transfer's read grant (ClusterRole and ClusterRoleBinding).
pub fn grant_name(transfer: &str) -> String {
    let full = format!("{GRANT_PREFIX}{transfer}");
    if full.len() <= 253 {
        return full;
    }
    format!(
        "{}-{:016x}",
        labels::truncate(&full, 253 - 17),
        fnv64(&full)
    )
}

fn grant_metadata(t: &WorkspaceTransfer) -> ObjectMeta {
    ObjectMeta {
        name: Some(grant_name(&t.name_any())),
        labels: Some(BTreeMap::from([(
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        )])),
        owner_references: Some(t.controller_owner_ref(&()).into_iter().collect()),
        ..Default::default()
    }
}

/// The ClusterRole that lets its subjects read this one transfer: `get`,
/// and `list`/`watch` by name (what `kubectl get`, `kubectl wait` and
/// `kubectl delete` ask for).
pub fn reader_role(t: &WorkspaceTransfer) -> ClusterRole {
    ClusterRole {
        metadata: grant_metadata(t),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![crate::api::GROUP.to_string()]),
            resources: Some(vec!["workspacetransfers".to_string()]),
            resource_names: Some(vec![t.name_any()]),
            verbs: ["get", "list", "watch"].map(String::from).to_vec(),
            ..Default::default()
        }]),
        aggregation_rule: None,
    }
}

/// The binding of [`reader_role`] to `readers`.
pub fn reader_binding(t: &WorkspaceTransfer, readers: Vec<RbacSubject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: grant_metadata(t),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "ClusterRole".to_string(),
            name: grant_name(&t.name_any()),
        },
        subjects: (!readers.is_empty()).then_some(readers),
    }
}

/// Who may read the transfer: both sides' approvers (the source's owners
/// and `owner_members`, the target's owners), sorted, without repeats.
pub fn readers(inputs: &Inputs<'_>, owner_members: &[RbacSubject]) -> Vec<RbacSubject> {
    let mut subjects: Vec<RbacSubject> = match inputs.workspace {
        Some(ws) => {
            let (now, then) = owners(inputs, ws);
            now.into_iter().chain(then).collect()
        }
        None => {
            let stub = Workspace::new(
                &inputs.transfer.spec.workspace,
                crate::api::WorkspaceSpec {
                    owner: inputs.transfer.spec.to.clone(),
                    handle: None,
                    description: None,
                    namespace: None,
                    deletion_policy: Default::default(),
                    deletion_protection: false,
                },
            );
            owner_subjects(&stub, inputs.target_org)
        }
    };
    subjects.extend(owner_members.iter().cloned());
    subjects
        .sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
    subjects.dedup();
    subjects
}

#[cfg(test)]
mod tests;
