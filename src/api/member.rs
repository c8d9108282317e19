//! `WorkspaceMember`: one subject holding one workspace role in one
//! workspace, backed by one RoleBinding in the workspace's namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a WorkspaceMember.
// kube's `printcolumn(...)` entries repeat `type_ = "string"` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "workspaces.dev",
    version = "v1alpha1",
    kind = "WorkspaceMember",
    plural = "workspacemembers",
    namespaced,
    shortname = "wsm",
    category = "workspaces-dev",
    status = "WorkspaceMemberStatus",
    derive = "PartialEq",
    doc = "A WorkspaceMember gives one subject (a user, a group or a ServiceAccount) one workspace role in the workspace whose namespace it lives in. The operator backs it with one RoleBinding. In a personal workspace a user is invited first and gets access after answering with spec.response: Accepted.",
    printcolumn(
        name = "Subject Kind",
        type_ = "string",
        json_path = ".spec.subject.kind",
        priority = 1,
        description = "User, Group or ServiceAccount"
    ),
    printcolumn(
        name = "Subject",
        type_ = "string",
        json_path = ".spec.subject.name",
        description = "Who is a member"
    ),
    printcolumn(
        name = "Role",
        type_ = "string",
        json_path = ".spec.role",
        description = "The built-in workspace role"
    ),
    printcolumn(
        name = "Cluster Role",
        type_ = "string",
        json_path = ".spec.clusterRole",
        priority = 1,
        description = "The custom ClusterRole, instead of a built-in role"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Invited, Active, Declined, Expired, Revoked or Pending"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the role is granted"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.subject.kind",
    selectable = ".spec.subject.name"
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.role) || (has(self.clusterRole) && self.clusterRole != '')")
        .message("a WorkspaceMember needs a role: set spec.role to Owner, Developer, Runner, Viewer or Worker, or name an assignable ClusterRole in spec.clusterRole.")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.role) || !has(self.clusterRole) || self.clusterRole == ''")
        .message("spec.role and spec.clusterRole are mutually exclusive; set only one of them.")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.response) || self.subject.kind == 'User'")
        .message("spec.response answers an invitation and only User subjects are invited; remove spec.response for a Group or ServiceAccount.")
        .reason(Reason::FieldValueForbidden)
        .field_path(".response"),
)]
pub struct WorkspaceMemberSpec {
    /// Who gets the role. Immutable: to give the role to someone else, create
    /// another WorkspaceMember. A subject holds at most one role per
    /// workspace; a second WorkspaceMember for the same subject reports
    /// `DuplicateSubject` and grants nothing.
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.subject cannot change; delete this WorkspaceMember and create a new one for the other subject.")
        .reason(Reason::FieldValueForbidden))]
    pub subject: Subject,

    /// The built-in workspace role to grant: `Viewer` (read everything except
    /// Secrets), `Runner` (Viewer + start Jobs), `Developer` (Runner + edit
    /// workloads, config and Secrets), `Owner` (Developer + manage members and
    /// transfers, edit or delete the Workspace) or `Worker` (what an agent
    /// that runs work needs). Exactly one of `role` and `clusterRole` is set.
    /// Changing it swaps the RoleBinding without a gap in access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<WorkspaceRole>,

    /// Instead of `role`: the name of a custom ClusterRole that a cluster
    /// admin labelled `workspaces.dev/assignable: "true"` and allowed in the
    /// operator's install. Exactly one of `role` and `clusterRole` is set; an
    /// empty string counts as unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub cluster_role: Option<String>,

    /// The invitee's answer to an invitation (personal workspaces only):
    /// `Accepted` grants the role, `Declined` refuses it. Only the invited
    /// user may set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<InvitationResponse>,
}

impl WorkspaceMemberSpec {
    /// The custom ClusterRole, treating an empty string as unset.
    pub fn cluster_role_name(&self) -> Option<&str> {
        self.cluster_role.as_deref().filter(|name| !name.is_empty())
    }
}

/// A user, group or ServiceAccount, as in an RBAC RoleBinding.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[x_kube(
    validation = Rule::new("self.kind != 'ServiceAccount' || (has(self.__namespace__) && self.__namespace__ != '')")
        .message("a ServiceAccount subject needs subject.namespace: set it to the namespace the ServiceAccount lives in.")
        .reason(Reason::FieldValueRequired)
        .field_path(".namespace"),
    validation = Rule::new("self.kind == 'ServiceAccount' || !has(self.__namespace__) || self.__namespace__ == ''")
        .message("subject.namespace is only for ServiceAccount subjects; remove it for a User or Group.")
        .reason(Reason::FieldValueForbidden)
        .field_path(".namespace"),
    validation = Rule::new("self.kind != 'ServiceAccount' || self.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("a ServiceAccount subject's name must be the ServiceAccount's metadata.name (lowercase letters, digits, '-' and '.'), without the 'system:serviceaccount:' prefix.")
        .field_path(".name"),
)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: SubjectKind,

    /// The username or group name exactly as the cluster's authenticator
    /// reports it, or the ServiceAccount's name.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self != ''")
        .message("subject.name must not be empty: give the username, group name or ServiceAccount name.")
        .reason(Reason::FieldValueRequired))]
    pub name: String,

    /// The ServiceAccount's namespace. Required for a ServiceAccount, and must
    /// be empty or absent for a User or Group.
    #[serde(default, rename = "namespace", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self == '' || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("subject.namespace must be a namespace name: a DNS-1123 label of at most 63 lowercase letters, digits or '-'."))]
    pub namespace: Option<String>,
}

impl Subject {
    /// A user, by username.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            kind: SubjectKind::User,
            name: name.into(),
            namespace: None,
        }
    }

    /// A group, by group name.
    pub fn group(name: impl Into<String>) -> Self {
        Self {
            kind: SubjectKind::Group,
            name: name.into(),
            namespace: None,
        }
    }

    /// A ServiceAccount, by namespace and name.
    pub fn service_account(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: SubjectKind::ServiceAccount,
            name: name.into(),
            namespace: Some(namespace.into()),
        }
    }

    /// The ServiceAccount namespace, treating an empty string as unset.
    pub fn namespace_name(&self) -> Option<&str> {
        self.namespace.as_deref().filter(|ns| !ns.is_empty())
    }
}

/// The kind of an RBAC subject.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum SubjectKind {
    /// A user, as the cluster's authenticator reports it.
    User,
    /// A group, as the cluster's authenticator reports it.
    Group,
    /// A ServiceAccount in a namespace.
    ServiceAccount,
}

impl std::fmt::Display for SubjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::ServiceAccount => "ServiceAccount",
        })
    }
}

// A built-in workspace role. Viewer ⊂ Runner ⊂ Developer ⊂ Owner; Worker
// stands apart.
// (A plain comment, not `///`: kube's schema transform for `Option<enum>`
// fields would put a type doc in place of the field's description, which is
// what `kubectl explain` shows.)
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum WorkspaceRole {
    /// Developer, plus manage members and transfers, edit and delete the Workspace.
    Owner,
    /// Runner, plus create, update and delete workloads, configuration and Secrets.
    Developer,
    /// Viewer, plus start work (create Jobs, also from CronJobs).
    Runner,
    /// Read everything in the namespace except Secrets.
    Viewer,
    /// What an agent that runs work needs: manage Pods and Jobs, read
    /// ConfigMaps and Secrets.
    Worker,
}

impl WorkspaceRole {
    /// Every built-in role.
    pub const ALL: [WorkspaceRole; 5] = [
        Self::Owner,
        Self::Developer,
        Self::Runner,
        Self::Viewer,
        Self::Worker,
    ];

    /// The aggregated ClusterRole the install ships for this role.
    pub fn cluster_role(self) -> &'static str {
        match self {
            Self::Owner => "workspaces:owner",
            Self::Developer => "workspaces:developer",
            Self::Runner => "workspaces:runner",
            Self::Viewer => "workspaces:viewer",
            Self::Worker => "workspaces:worker",
        }
    }
}

impl std::fmt::Display for WorkspaceRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Owner => "Owner",
            Self::Developer => "Developer",
            Self::Runner => "Runner",
            Self::Viewer => "Viewer",
            Self::Worker => "Worker",
        })
    }
}

// The invitee's answer to an invitation.
// (A plain comment, not `///`: kube's schema transform for `Option<enum>`
// fields would put a type doc in place of the field's description, which is
// what `kubectl explain` shows.)
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvitationResponse {
    /// Grant the role.
    Accepted,
    /// Refuse the role.
    Declined,
}

// Lifecycle phase of a WorkspaceMember.
// (A plain comment, not `///`: kube's schema transform for `Option<enum>`
// fields would put a type doc in place of the field's description, which is
// what `kubectl explain` shows.)
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberPhase {
    /// Accepted by the API but no access granted (yet): the `Ready` condition
    /// says why (for example `DuplicateSubject`, `NotAnOrganizationMember`,
    /// `RoleNotAssignable`).
    Pending,
    /// Invited to a personal workspace; waiting for the invitee to answer
    /// with `spec.response`.
    Invited,
    /// The role is granted.
    Active,
    /// The invitee declined; nothing is granted.
    Declined,
    /// The invitation was not answered in time; nothing is granted.
    Expired,
    /// Access was taken away (for example by a transfer to an organization the
    /// subject does not belong to); the object is kept as a record.
    Revoked,
}

/// The observed state of a WorkspaceMember, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceMemberStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: `Ready` is true when the role is granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::conditions")]
    pub conditions: Vec<Condition>,

    /// Lifecycle phase: Pending, Invited, Active, Declined, Expired or Revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MemberPhase>,

    /// Name of the RoleBinding that grants the role, in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_binding: Option<String>,

    /// When an open invitation expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_expires_at: Option<Time>,
}

#[cfg(test)]
mod tests;
