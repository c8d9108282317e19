//! The status a WorkspaceMember reports, computed from the decision about it
//! (pure, unit-tested with the decision in `build/tests.rs`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};

use super::build::{Plan, describe};
use crate::api::conditions::{self, Progress, reason};
use crate::api::{MemberPhase, WorkspaceMember, WorkspaceMemberStatus};
use crate::controller::labels;

/// The role for people: `the Developer role`, `the ClusterRole x`.
fn describe_role(member: &WorkspaceMember) -> String {
    match (member.spec.cluster_role_name(), member.spec.role) {
        (Some(name), _) => format!("ClusterRole {name}"),
        (None, Some(role)) => format!("the {role} role"),
        (None, None) => "no role".to_string(),
    }
}

/// What the status says, before it is written into conditions.
struct Outcome {
    progress: Progress,
    reason: &'static str,
    message: String,
    phase: MemberPhase,
}

/// The phase a blocked member is in, by the reason it is blocked.
fn blocked_phase(reason: &str) -> MemberPhase {
    match reason {
        reason::REVOKED_BY_TRANSFER | reason::INVITATION_REVOKED => MemberPhase::Revoked,
        reason::INVITATION_DECLINED => MemberPhase::Declined,
        reason::INVITATION_EXPIRED => MemberPhase::Expired,
        _ => MemberPhase::Pending,
    }
}

fn outcome(
    member: &WorkspaceMember,
    plan: &Plan,
    failure: Option<&'static str>,
    previous: Option<MemberPhase>,
) -> Outcome {
    let subject = describe(&member.spec.subject);
    match (plan, failure) {
        (Plan::Grant(binding), None) => Outcome {
            progress: Progress::Ready,
            reason: reason::PROVISIONED,
            message: format!(
                "{subject} holds {} in workspace {} through RoleBinding {}.",
                describe_role(member),
                binding
                    .labels()
                    .get(labels::WORKSPACE)
                    .map_or("", String::as_str),
                binding.name_any()
            ),
            phase: MemberPhase::Active,
        },
        (Plan::Grant(_), Some(failed)) => Outcome {
            progress: Progress::Progressing,
            reason: reason::PROVISIONING,
            message: format!("The operator could not grant the role yet ({failed}); it retries."),
            phase: match previous {
                Some(MemberPhase::Active) => MemberPhase::Active,
                _ => MemberPhase::Pending,
            },
        },
        (Plan::Invite(invitation), _) => Outcome {
            progress: Progress::Progressing,
            reason: reason::INVITATION_PENDING,
            message: format!(
                "{subject} is invited to {} and gets it after answering spec.response: Accepted (kubectl -n {} patch workspacemember {} --type=merge -p '{{\"spec\":{{\"response\":\"Accepted\"}}}}'); the invitation expires at {}.",
                describe_role(member),
                member.namespace().unwrap_or_default(),
                member.name_any(),
                invitation.expires_at.0
            ),
            phase: MemberPhase::Invited,
        },
        (Plan::Blocked(blocked), _) => Outcome {
            progress: if blocked.stalled {
                Progress::Stalled
            } else {
                Progress::Progressing
            },
            reason: blocked.reason,
            message: blocked.message.clone(),
            phase: blocked_phase(blocked.reason),
        },
    }
}

/// The status a member should have after this reconcile. `held` are the
/// names of the bindings the member holds now (after a successful grant or
/// revoke, what the operator left in place); `failure` is the bounded reason
/// of a failed write.
pub fn compute_status(
    member: &WorkspaceMember,
    plan: &Plan,
    held: &[String],
    failure: Option<&'static str>,
    now: &Time,
) -> WorkspaceMemberStatus {
    let previous = member.status.clone().unwrap_or_default();
    let generation = member.meta().generation;
    let outcome = outcome(member, plan, failure, previous.phase);
    let mut status = previous.clone();
    status.observed_generation = generation;
    conditions::set_outcome(
        &mut status.conditions,
        outcome.progress,
        outcome.reason,
        &outcome.message,
        generation,
        now,
    );
    status.phase = Some(outcome.phase);
    status.role_binding = match plan {
        Plan::Grant(binding) if failure.is_none() => Some(binding.name_any()),
        _ => previous
            .role_binding
            .filter(|rb| held.contains(rb))
            .or_else(|| held.first().cloned()),
    };
    if let Plan::Invite(invitation) = plan {
        status.invitation_expires_at = Some(invitation.expires_at.clone());
    }
    status
}

/// Whether two statuses say the same thing, ignoring condition timestamps.
pub fn same_status(a: &WorkspaceMemberStatus, b: &WorkspaceMemberStatus) -> bool {
    conditions::conditions_equal_ignoring_time(&a.conditions, &b.conditions)
        && a.observed_generation == b.observed_generation
        && a.phase == b.phase
        && a.role_binding == b.role_binding
        && a.invitation_expires_at == b.invitation_expires_at
}
