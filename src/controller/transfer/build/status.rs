//! The status of a transfer: phase, the approvals, validation, the kstatus
//! conditions and the facts recorded once (pure).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;

use super::{Answer, Ending, Problem, answers};
use crate::api::conditions::{self, ConditionStatus, NewCondition, reason};
use crate::api::{
    AccountKind, AccountRef, TransferImpact, TransferPhase, TransferSource, TransferStep,
    WorkspaceTransfer, WorkspaceTransferStatus,
};

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
