//! Status conditions: the condition types and reasons of this API as
//! constants, and small pure helpers that keep `lastTransitionTime` honest.
//!
//! Conventions (Kubernetes API conventions and kstatus):
//! - `Ready` is the summary condition of every kind; `Reconciling` and
//!   `Stalled` are set where they apply (`Reconciling=True` while work is in
//!   progress, `Stalled=True` when progress needs a person).
//! - Types and reasons are PascalCase constants from this module, so the set
//!   is bounded (they feed events and metric labels too).
//! - Messages are one human sentence, never an error dump; [`set_condition`]
//!   flattens line breaks and caps the length.
//! - `lastTransitionTime` moves only when a condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Summary condition of every kind: the object is fully reconciled and usable.
pub const READY: &str = "Ready";
/// Work towards the desired state is in progress (kstatus).
pub const RECONCILING: &str = "Reconciling";
/// Progress is blocked until a person changes something (kstatus).
pub const STALLED: &str = "Stalled";
/// Workspace: its namespace exists, is ours (UID-checked) and is labelled.
pub const NAMESPACE_READY: &str = "NamespaceReady";
/// Workspace: the owner's RoleBinding is in place. WorkspaceMember: its
/// RoleBinding is.
pub const ACCESS_READY: &str = "AccessReady";
/// WorkspaceTransfer: the workspace, target, handle and limits allow it.
pub const VALIDATED: &str = "Validated";
/// WorkspaceTransfer: the source side approved.
pub const SOURCE_APPROVED: &str = "SourceApproved";
/// WorkspaceTransfer: the target side approved.
pub const TARGET_APPROVED: &str = "TargetApproved";
/// WorkspaceTransfer: execution finished.
pub const COMPLETE: &str = "Complete";

/// Every condition type of this API.
pub const TYPES: &[&str] = &[
    READY,
    RECONCILING,
    STALLED,
    NAMESPACE_READY,
    ACCESS_READY,
    VALIDATED,
    SOURCE_APPROVED,
    TARGET_APPROVED,
    COMPLETE,
];

/// Condition reasons (PascalCase, bounded).
pub mod reason {
    /// Everything the object asks for is in place.
    pub const PROVISIONED: &str = "Provisioned";
    /// The operator is creating or updating what the object asks for.
    pub const PROVISIONING: &str = "Provisioning";
    /// The namespace exists and was not created by this Workspace, and no
    /// cluster admin allowed adopting it.
    pub const NAMESPACE_CONFLICT: &str = "NamespaceConflict";
    /// The namespace is reserved (for example the operator's own namespace).
    pub const NAMESPACE_RESERVED: &str = "NamespaceReserved";
    /// The namespace is being deleted.
    pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";
    /// An older Workspace of the same owner holds the handle.
    pub const HANDLE_CONFLICT: &str = "HandleConflict";
    /// The owner already has as many workspaces as it may.
    pub const WORKSPACE_LIMIT_EXCEEDED: &str = "WorkspaceLimitExceeded";
    /// The workspace already has as many members as its organization allows.
    pub const MEMBER_LIMIT_EXCEEDED: &str = "MemberLimitExceeded";
    /// The owning (or target) Organization does not exist.
    pub const ORGANIZATION_NOT_FOUND: &str = "OrganizationNotFound";
    /// The Workspace is being deleted.
    pub const DELETING: &str = "Deleting";
    /// Another WorkspaceMember already gives this subject a role here.
    pub const DUPLICATE_SUBJECT: &str = "DuplicateSubject";
    /// The subject does not belong to the workspace's organization.
    pub const NOT_AN_ORGANIZATION_MEMBER: &str = "NotAnOrganizationMember";
    /// The custom ClusterRole is missing or not labelled assignable.
    pub const ROLE_NOT_ASSIGNABLE: &str = "RoleNotAssignable";
    /// The namespace is not the namespace of any Workspace.
    pub const WORKSPACE_NOT_FOUND: &str = "WorkspaceNotFound";
    /// The Workspace exists but is not Ready.
    pub const WORKSPACE_NOT_READY: &str = "WorkspaceNotReady";
    /// The invitee has not answered yet.
    pub const INVITATION_PENDING: &str = "InvitationPending";
    /// The invitee accepted.
    pub const INVITATION_ACCEPTED: &str = "InvitationAccepted";
    /// The invitee declined.
    pub const INVITATION_DECLINED: &str = "InvitationDeclined";
    /// The invitation was not answered in time.
    pub const INVITATION_EXPIRED: &str = "InvitationExpired";
    /// An open invitation ended because its workspace changed owner.
    pub const INVITATION_REVOKED: &str = "InvitationRevoked";
    /// Access was taken away by a transfer.
    pub const REVOKED_BY_TRANSFER: &str = "RevokedByTransfer";
    /// The target account of a transfer does not exist.
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    /// The (new) handle is taken in the target account.
    pub const HANDLE_UNAVAILABLE: &str = "HandleUnavailable";
    /// The workspace already belongs to the target account.
    pub const ALREADY_OWNED: &str = "AlreadyOwned";
    /// A transfer validated successfully.
    pub const VALID: &str = "Valid";
    /// A side has not answered yet.
    pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
    /// A side approved.
    pub const APPROVED: &str = "Approved";
    /// A side refused.
    pub const REJECTED: &str = "Rejected";
    /// The transfer was not approved in time.
    pub const EXPIRED: &str = "Expired";
    /// The transfer was deleted before it started.
    pub const CANCELLED: &str = "Cancelled";
    /// Another transfer of the same workspace is already running.
    pub const TRANSFER_IN_PROGRESS: &str = "TransferInProgress";
    /// The transfer is being executed.
    pub const TRANSFERRING: &str = "Transferring";
    /// The transfer finished.
    pub const COMPLETED: &str = "Completed";
    /// A call to the API server failed; the operator retries.
    pub const API_ERROR: &str = "ApiError";
    /// An Organization being deleted still owns Workspaces: its deletion
    /// waits until they are deleted or transferred.
    pub const WORKSPACES_REMAIN: &str = "WorkspacesRemain";
    /// The (new) handle is taken among the target account's workspaces.
    pub const HANDLE_TAKEN: &str = "HandleTaken";
    /// The target account has as many workspaces as its limit allows.
    pub const TARGET_LIMIT_REACHED: &str = "TargetLimitReached";
    /// The transfer's `spec.from` is not the workspace's owner.
    pub const SOURCE_MISMATCH: &str = "SourceMismatch";
    /// The workspace changed owner since the transfer was proposed.
    pub const SOURCE_CHANGED: &str = "SourceChanged";
    /// Execution could not finish (the workspace or the target went away).
    pub const TRANSFER_FAILED: &str = "TransferFailed";

    /// Every reason of this API.
    pub const ALL: &[&str] = &[
        WORKSPACES_REMAIN,
        PROVISIONED,
        PROVISIONING,
        NAMESPACE_CONFLICT,
        NAMESPACE_RESERVED,
        NAMESPACE_TERMINATING,
        HANDLE_CONFLICT,
        WORKSPACE_LIMIT_EXCEEDED,
        MEMBER_LIMIT_EXCEEDED,
        ORGANIZATION_NOT_FOUND,
        DELETING,
        DUPLICATE_SUBJECT,
        NOT_AN_ORGANIZATION_MEMBER,
        ROLE_NOT_ASSIGNABLE,
        WORKSPACE_NOT_FOUND,
        WORKSPACE_NOT_READY,
        INVITATION_PENDING,
        INVITATION_ACCEPTED,
        INVITATION_DECLINED,
        INVITATION_EXPIRED,
        INVITATION_REVOKED,
        REVOKED_BY_TRANSFER,
        TARGET_NOT_FOUND,
        HANDLE_UNAVAILABLE,
        ALREADY_OWNED,
        VALID,
        AWAITING_APPROVAL,
        APPROVED,
        REJECTED,
        EXPIRED,
        CANCELLED,
        TRANSFER_IN_PROGRESS,
        TRANSFERRING,
        COMPLETED,
        API_ERROR,
        HANDLE_TAKEN,
        TARGET_LIMIT_REACHED,
        SOURCE_MISMATCH,
        SOURCE_CHANGED,
        TRANSFER_FAILED,
    ];
}

/// Longest condition message [`set_condition`] writes, in bytes; longer
/// messages are cut at a character boundary and end with `…`.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell (yet).
    Unknown,
}

impl ConditionStatus {
    /// The wire value: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds { Self::True } else { Self::False }
    }
}

/// A condition to set, without a timestamp: [`set_condition`] decides the
/// `lastTransitionTime`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition {
    /// One of the type constants of this module.
    pub type_: &'static str,
    /// Whether the condition holds.
    pub status: ConditionStatus,
    /// One of the [`reason`] constants.
    pub reason: &'static str,
    /// One human sentence.
    pub message: String,
    /// The `metadata.generation` the condition was computed from.
    pub observed_generation: Option<i64>,
}

impl NewCondition {
    /// A condition of `type_` with `status`, `reason` and `message`.
    pub fn new(
        type_: &'static str,
        status: impl Into<ConditionStatus>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: status.into(),
            reason,
            message: message.into(),
            observed_generation: None,
        }
    }

    /// Record the `metadata.generation` the condition was computed from.
    pub fn observed_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }
}

/// Set `new` in `conditions`, keeping one condition per type.
///
/// `lastTransitionTime` becomes `now` only when the condition is new or its
/// status flips; a changed reason, message or observed generation keeps the
/// previous time. The message is flattened to one line and capped at
/// [`MAX_MESSAGE_LEN`]. Returns whether anything other than a timestamp
/// changed, so callers can skip writing an unchanged status.
pub fn set_condition(conditions: &mut Vec<Condition>, new: NewCondition, now: &Time) -> bool {
    let message = one_line(&new.message);
    let mut first = None;
    let mut index = 0;
    let mut removed = false;
    conditions.retain(|c| {
        let keep = if c.type_ != new.type_ {
            true
        } else if first.is_none() {
            first = Some(index);
            true
        } else {
            removed = true;
            false
        };
        if keep {
            index += 1;
        }
        keep
    });
    let status = new.status.as_str();
    match first.and_then(|i| conditions.get_mut(i)) {
        Some(existing) => {
            let changed = existing.status != status
                || existing.reason != new.reason
                || existing.message != message
                || existing.observed_generation != new.observed_generation;
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status.to_string();
            existing.reason = new.reason.to_string();
            existing.message = message;
            existing.observed_generation = new.observed_generation;
            changed || removed
        }
        None => {
            conditions.push(Condition {
                type_: new.type_.to_string(),
                status: status.to_string(),
                reason: new.reason.to_string(),
                message,
                observed_generation: new.observed_generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// Remove the condition of `type_`; returns whether one was there.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// The condition of `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

/// Whether two condition lists say the same thing: the same types with the
/// same status, reason, message and observed generation, in any order.
/// `lastTransitionTime` is ignored.
pub fn conditions_equal_ignoring_time(a: &[Condition], b: &[Condition]) -> bool {
    let same = |x: &Condition, y: &Condition| {
        x.type_ == y.type_
            && x.status == y.status
            && x.reason == y.reason
            && x.message == y.message
            && x.observed_generation == y.observed_generation
    };
    a.len() == b.len()
        && a.iter().all(|x| b.iter().any(|y| same(x, y)))
        && b.iter().all(|y| a.iter().any(|x| same(x, y)))
}

/// Flatten a message to one line and cap its length.
fn one_line(message: &str) -> String {
    let flat = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.len() <= MAX_MESSAGE_LEN {
        return flat;
    }
    let ellipsis = '…';
    let mut cut = MAX_MESSAGE_LEN - ellipsis.len_utf8();
    while !flat.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut short = flat[..cut].trim_end().to_string();
    short.push(ellipsis);
    short
}

/// Where an object stands, as the kstatus conditions say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Done: `Ready=True`, neither `Reconciling` nor `Stalled`.
    Ready,
    /// Still at work, by the operator or someone it waits for:
    /// `Ready=False` and `Reconciling=True`.
    Progressing,
    /// A person must act: `Ready=False` and `Stalled=True`.
    Stalled,
}

/// Sets `Ready` and the one of `Reconciling` and `Stalled` that `progress`
/// calls for (removing the other), all with `reason` and `message` and
/// observed at `generation`.
pub fn set_outcome(
    conditions: &mut Vec<Condition>,
    progress: Progress,
    reason: &'static str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let condition = |type_: &'static str, holds: ConditionStatus| {
        NewCondition::new(type_, holds, reason, message.to_string()).observed_generation(generation)
    };
    let ready = ConditionStatus::from(progress == Progress::Ready);
    set_condition(conditions, condition(READY, ready), now);
    let (kept, dropped): (Option<&'static str>, &[&str]) = match progress {
        Progress::Ready => (None, &[RECONCILING, STALLED]),
        Progress::Progressing => (Some(RECONCILING), &[STALLED]),
        Progress::Stalled => (Some(STALLED), &[RECONCILING]),
    };
    if let Some(type_) = kept {
        set_condition(conditions, condition(type_, ConditionStatus::True), now);
    }
    for type_ in dropped {
        remove_condition(conditions, type_);
    }
}

#[cfg(test)]
mod tests;
