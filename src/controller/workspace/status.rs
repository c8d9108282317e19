//! The status a Workspace reports, from the decision about it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};

use super::Error;
use super::build::{Blocked, Desired, Plan};
use crate::api::conditions::{self, ConditionStatus, NewCondition, Progress, reason};
use crate::api::{Workspace, WorkspacePhase, WorkspaceStatus};
use crate::controller::ReconcileError;

/// The status a Workspace should have after this reconcile.
pub(super) fn compute_status(
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
pub(super) fn same_status(a: &WorkspaceStatus, b: &WorkspaceStatus) -> bool {
    conditions::conditions_equal_ignoring_time(&a.conditions, &b.conditions)
        && a.observed_generation == b.observed_generation
        && a.phase == b.phase
        && a.namespace == b.namespace
        && a.handle == b.handle
        && a.owner == b.owner
        && a.members == b.members
}
