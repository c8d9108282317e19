//! `WorkspaceTransfer`: a one-shot request that moves a Workspace to another
//! owner once both sides approved it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::member::SubjectKind;
use super::workspace::AccountRef;

/// The desired state of a WorkspaceTransfer. Immutable after creation,
/// except that approvals may be added.
// kube's `printcolumn(...)` entries repeat `type_ = "string"` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "workspaces.dev",
    version = "v1alpha1",
    kind = "WorkspaceTransfer",
    plural = "workspacetransfers",
    shortname = "wst",
    category = "workspaces-dev",
    status = "WorkspaceTransferStatus",
    derive = "PartialEq",
    doc = "A WorkspaceTransfer is a one-shot request to move a Workspace to another owner (a user or an Organization). It runs once an admin of the workspace (source) and the target account (target) have both approved it, keeps everything in the namespace, switches the owner's access and revokes members who do not belong to the new owner. status.impact shows in advance who loses and gains access. Deleting a transfer that has not started cancels it.",
    printcolumn(
        name = "Workspace",
        type_ = "string",
        json_path = ".spec.workspace",
        description = "The Workspace being moved"
    ),
    printcolumn(
        name = "To Kind",
        type_ = "string",
        json_path = ".spec.to.kind",
        priority = 1,
        description = "User or Organization"
    ),
    printcolumn(
        name = "To",
        type_ = "string",
        json_path = ".spec.to.name",
        description = "The account receiving the workspace"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the transfer is"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.workspace"
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.newHandle) == has(oldSelf.newHandle) && (!has(self.newHandle) || self.newHandle == oldSelf.newHandle)")
        .message("spec.newHandle cannot change after the transfer is created; delete this WorkspaceTransfer and create a new one.")
        .reason(Reason::FieldValueForbidden)
        .field_path(".newHandle"),
    validation = Rule::new("has(self.from) == has(oldSelf.from) && (!has(self.from) || self.from == oldSelf.from)")
        .message("spec.from cannot change after the transfer is created; delete this WorkspaceTransfer and create a new one.")
        .reason(Reason::FieldValueForbidden)
        .field_path(".from"),
    validation = Rule::new("!has(oldSelf.approvals) || !has(oldSelf.approvals.source) || (has(self.approvals) && has(self.approvals.source) && self.approvals.source == oldSelf.approvals.source)")
        .message("approvals.source cannot be changed or withdrawn once given; delete the WorkspaceTransfer to cancel it.")
        .reason(Reason::FieldValueForbidden)
        .field_path(".approvals"),
    validation = Rule::new("!has(oldSelf.approvals) || !has(oldSelf.approvals.target) || (has(self.approvals) && has(self.approvals.target) && self.approvals.target == oldSelf.approvals.target)")
        .message("approvals.target cannot be changed or withdrawn once given; delete the WorkspaceTransfer to cancel it.")
        .reason(Reason::FieldValueForbidden)
        .field_path(".approvals"),
)]
pub struct WorkspaceTransferSpec {
    /// Name of the Workspace to move. Immutable.
    #[schemars(length(max = 63))]
    #[x_kube(
        validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
            .message("spec.workspace must be the name of a Workspace: a DNS-1123 label of at most 63 characters."),
        validation = Rule::new("self == oldSelf")
            .message("spec.workspace cannot change after the transfer is created; delete this WorkspaceTransfer and create a new one.")
            .reason(Reason::FieldValueForbidden),
    )]
    pub workspace: String,

    /// The account that receives the workspace: a User or an Organization.
    /// Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.to cannot change after the transfer is created; delete this WorkspaceTransfer and create a new one.")
        .reason(Reason::FieldValueForbidden))]
    pub to: AccountRef,

    /// The account that owns the workspace now, as the person creating the
    /// transfer states it. Required to give the source approval in the same
    /// request that creates the transfer (admission judges that approval
    /// against it); the operator checks it against the Workspace, and a
    /// transfer whose `from` is not the workspace's owner fails
    /// (`SourceMismatch`) and never runs. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<AccountRef>,

    /// Optional new handle for the workspace in the target account, for when
    /// its current handle is taken there. Same format as `Workspace.spec.handle`.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("spec.newHandle must be 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit."))]
    pub new_handle: Option<String>,

    /// The two approvals the transfer needs. Each is written by the person it
    /// names, and cannot be changed or withdrawn afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<TransferApprovals>,
}

/// The two sides' answers to a transfer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferApprovals {
    /// The answer of the current owner: a user holding the Owner role in the
    /// workspace, or an admin of its owning Organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Approval>,

    /// The answer of the receiving account: an admin of the target
    /// Organization, or the target user themself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Approval>,
}

/// One side's answer: exactly one of `approvedBy` and `rejectedBy`, set to the
/// username of the person answering (admission checks it is really them).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.approvedBy) || has(self.rejectedBy)")
        .message("an approval needs approvedBy (to approve) or rejectedBy (to refuse), set to your username.")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!(has(self.approvedBy) && has(self.rejectedBy))")
        .message("an approval cannot both approve and reject; set only one of approvedBy and rejectedBy.")
        .reason(Reason::FieldValueForbidden),
)]
pub struct Approval {
    /// Username of the person approving, as the cluster's authenticator
    /// reports it. Must be the user making the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub approved_by: Option<String>,

    /// Username of the person refusing, as the cluster's authenticator
    /// reports it. Must be the user making the change. A refusal from either
    /// side ends the transfer as `Rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub rejected_by: Option<String>,

    /// Optional note for the other side and the audit trail, for example why
    /// the transfer is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
}

// Where a transfer is.
// (A plain comment, not `///`: kube's schema transform for `Option<enum>`
// fields would put a type doc in place of the field's description, which is
// what `kubectl explain` shows.)
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferPhase {
    /// Waiting for approvals, or for validation to pass (see the `Validated`
    /// condition).
    Pending,
    /// Both sides approved and validation passed; execution starts next.
    Approved,
    /// Being executed; resumes where it stopped if the operator restarts.
    Transferring,
    /// Done: the workspace belongs to the target account. Never re-run.
    Completed,
    /// One side refused.
    Rejected,
    /// Execution could not finish; the conditions say why.
    Failed,
    /// Deleted before it started.
    Cancelled,
    /// Not approved within the operator's transfer TTL.
    Expired,
}

impl TransferPhase {
    /// Whether the transfer has ended and will never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Rejected | Self::Failed | Self::Cancelled | Self::Expired
        )
    }
}

/// The observed state of a WorkspaceTransfer, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceTransferStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: `Validated`, `SourceApproved`, `TargetApproved`,
    /// `Complete` and the summary `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::conditions")]
    pub conditions: Vec<Condition>,

    /// Where the transfer is: Pending, Approved, Transferring, Completed,
    /// Rejected, Failed, Cancelled or Expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TransferPhase>,

    /// What the transfer will change, computed before anything happens and
    /// kept up to date while it is Pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<TransferImpact>,

    /// The owner the workspace had when execution started, kept so that an
    /// interrupted transfer resumes correctly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<AccountRef>,

    /// The source side as the operator found it when it first saw the
    /// transfer: the workspace's owner and namespace. Written once and never
    /// changed; admission judges source approvals against it, and a
    /// workspace whose owner is no longer this account fails the transfer
    /// (`SourceChanged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TransferSource>,

    /// The last execution step that finished: `Started`, `MembersRevoked`.
    /// An interrupted transfer resumes after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<TransferStep>,

    /// When execution started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the transfer reached a final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

/// The source side of a transfer: who owns the workspace, and its namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TransferSource {
    /// `User` or `Organization`.
    pub kind: super::workspace::AccountKind,
    /// The username or the Organization's name.
    pub name: String,
    /// The workspace's namespace (its Owner members answer for the source
    /// side too); empty while the workspace holds none.
    #[serde(default, rename = "namespace")]
    pub namespace: String,
}

impl TransferSource {
    /// The source account.
    pub fn account(&self) -> AccountRef {
        AccountRef {
            kind: self.kind,
            name: self.name.clone(),
        }
    }
}

// The execution steps of a transfer, in order (a plain comment: see
// `TransferPhase`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferStep {
    /// Execution started: `status.from` is recorded and members that do not
    /// belong to the target are being revoked.
    Started,
    /// Every member that does not belong to the target has lost its
    /// binding; next the workspace's owner (and handle) change.
    MembersRevoked,
}

impl TransferStep {
    /// The name used in `status.step` and in the fault-injection setting.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "Started",
            Self::MembersRevoked => "MembersRevoked",
        }
    }
}

/// Who loses and who gains access, and whether the target can take the
/// workspace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TransferImpact {
    /// Users and groups whose WorkspaceMembers will be revoked because they do
    /// not belong to the target account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members_losing_access: Vec<AffectedSubject>,

    /// ServiceAccounts whose WorkspaceMembers will be revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts_losing_access: Vec<AffectedSubject>,

    /// Owners of the source account (the user, or the Organization's admins)
    /// who lose the Owner role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners_losing_access: Vec<AffectedSubject>,

    /// Owners of the target account who gain the Owner role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners_gaining_access: Vec<AffectedSubject>,

    /// Whether the (new) handle is free among the target account's workspaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_available: Option<bool>,

    /// How many workspaces the target account has, and may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_workspaces: Option<WorkspaceUsage>,
}

/// A subject a transfer affects, and why.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct AffectedSubject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: SubjectKind,
    /// The username, group name or ServiceAccount name.
    pub name: String,
    /// The ServiceAccount's namespace (ServiceAccounts only).
    #[serde(default, rename = "namespace", skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Why the subject is affected, as a PascalCase reason such as
    /// `NotAnOrganizationMember`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Workspace count against a limit.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceUsage {
    /// Workspaces the account owns now.
    pub used: i32,
    /// The most workspaces the account may own; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i32>,
}

#[cfg(test)]
mod tests;
