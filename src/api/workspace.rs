//! `Workspace`: an isolated place for one team's or one environment's work,
//! backed by one namespace plus RBAC, owned by a user or an organization.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a Workspace.
// kube's `printcolumn(...)` entries repeat `type_ = "string"` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "workspaces.dev",
    version = "v1alpha1",
    kind = "Workspace",
    plural = "workspaces",
    shortname = "ws",
    category = "workspaces-dev",
    status = "WorkspaceStatus",
    derive = "PartialEq",
    doc = "A Workspace is an isolated place for one team's or one environment's work (dev, staging, prod). It is backed by one namespace and RBAC, is owned by a user or an Organization, is shared with WorkspaceMembers who each hold a workspace role, and can be moved to another owner with a WorkspaceTransfer without losing what is inside it.",
    printcolumn(name = "Owner Kind", type_ = "string", json_path = ".spec.owner.kind", description = "User or Organization"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner.name", description = "The owning account"),
    printcolumn(name = "Handle", type_ = "string", json_path = ".status.handle", description = "The effective handle, unique within the owner"),
    printcolumn(name = "Namespace", type_ = "string", json_path = ".status.namespace", description = "The namespace backing the workspace"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the workspace is provisioned and usable"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", priority = 1, description = "Lifecycle phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.owner.kind",
    selectable = ".spec.owner.name",
    validation = Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("Workspace name must be a DNS-1123 label (at most 63 lowercase letters, digits or '-', no dots) because it is the default namespace name; choose a shorter name."),
    validation = Rule::new("self.metadata.name != 'default' && !self.metadata.name.startsWith('kube-') && !self.metadata.name.startsWith('openshift-')")
        .message("Workspace name is reserved for the cluster ('default', 'kube-*', 'openshift-*'); choose another name.")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("has(oldSelf.spec.__namespace__) ? (has(self.spec.__namespace__) && self.spec.__namespace__ == oldSelf.spec.__namespace__) : (!has(self.spec.__namespace__) || self.spec.__namespace__ == oldSelf.metadata.name)")
        .message("spec.namespace cannot change after the Workspace is created because Kubernetes cannot rename a namespace; keep the namespace the workspace already uses.")
        .reason(Reason::FieldValueForbidden)
        .field_path(".spec.namespace"),
)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSpec {
    /// The account that owns and manages the workspace: a User (a personal
    /// workspace) or an Organization. The owner (the user, or every admin of
    /// the organization) holds the Owner workspace role without needing a
    /// WorkspaceMember. Changed only by a completed WorkspaceTransfer.
    pub owner: AccountRef,

    /// Short name of the workspace within its owner, as in
    /// `<owner>/<handle>`: lowercase letters, digits and '-', at most 63
    /// characters, unique among the owner's workspaces (on a clash the older
    /// Workspace keeps it and the newer one reports `HandleConflict`).
    /// Defaults to `metadata.name`; `status.handle` shows the effective value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("spec.handle must be 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit (for example 'prod-eu')."))]
    pub handle: Option<String>,

    /// Free text shown to people browsing workspaces, at most 5000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 5000))]
    pub description: Option<String>,

    /// Name of the namespace that backs the workspace. Defaults to
    /// `metadata.name`. Immutable once the Workspace exists (Kubernetes cannot
    /// rename namespaces). The operator creates the namespace; it never takes
    /// over an existing namespace unless a cluster admin annotated it
    /// `workspaces.dev/adopt=<workspace name>`.
    #[serde(default, rename = "namespace", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(
        validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
            .message("spec.namespace must be a DNS-1123 label: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit."),
        validation = Rule::new("self != 'default' && !self.startsWith('kube-') && !self.startsWith('openshift-')")
            .message("spec.namespace names a namespace reserved for the cluster ('default', 'kube-*', 'openshift-*'); choose another namespace.")
            .reason(Reason::FieldValueForbidden),
    )]
    pub namespace: Option<String>,

    /// What happens to the namespace when the Workspace is deleted. `Delete`
    /// (the default) deletes the namespace and everything in it; owners keep
    /// their access until it is gone. `Retain` removes only the operator's
    /// RoleBindings and labels and leaves the namespace and its contents.
    /// An adopted namespace is always retained.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// When true, deleting the Workspace is refused. Set it to false first to
    /// delete the workspace.
    #[serde(default)]
    pub deletion_protection: bool,
}

/// A reference to an account: a user or an Organization.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[x_kube(validation = Rule::new("self.kind != 'Organization' || self.name == '' || self.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
    .message("an Organization account is named by the Organization's metadata.name, a DNS-1123 label of at most 63 characters; check the organization name."))]
pub struct AccountRef {
    /// `User` for a personal account, `Organization` for an Organization
    /// object of this API.
    pub kind: AccountKind,

    /// For a User, the username exactly as the cluster's authenticator
    /// reports it (for example `alice@acme.io`); for an Organization, the name
    /// of the Organization object.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self != ''")
        .message("account name must not be empty: give the username or the Organization name.")
        .reason(Reason::FieldValueRequired))]
    pub name: String,
}

impl AccountRef {
    /// A personal account.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            kind: AccountKind::User,
            name: name.into(),
        }
    }

    /// An Organization account.
    pub fn organization(name: impl Into<String>) -> Self {
        Self {
            kind: AccountKind::Organization,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for AccountRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// The kind of account that can own a workspace.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum AccountKind {
    /// A personal account: a username as the cluster's authenticator reports it.
    User,
    /// An Organization object of this API.
    Organization,
}

impl std::fmt::Display for AccountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::User => "User",
            Self::Organization => "Organization",
        })
    }
}

/// What happens to the namespace when its Workspace is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeletionPolicy {
    /// Delete the namespace the operator created, and everything in it.
    #[default]
    Delete,
    /// Keep the namespace and its contents; remove only the operator's
    /// RoleBindings and labels.
    Retain,
}

// Lifecycle phase of a Workspace, for people; automation should read the
// conditions.
// (A plain comment, not `///`: kube's schema transform for `Option<enum>`
// fields would put a type doc in place of the field's description, which is
// what `kubectl explain` shows.)
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkspacePhase {
    /// Accepted, not provisioned yet; the `Ready` condition says what it waits for.
    Pending,
    /// The namespace and access are provisioned.
    Active,
    /// Not provisioned because of a problem a person must fix (for example
    /// `NamespaceConflict`, `HandleConflict`, `WorkspaceLimitExceeded`); the
    /// `Ready` condition gives the reason.
    Blocked,
    /// The Workspace is being deleted; with `deletionPolicy: Delete` it stays
    /// until its namespace is gone.
    Terminating,
}

/// The observed state of a Workspace, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: `Ready` (summary), `NamespaceReady`,
    /// `AccessReady`, `Reconciling` and `Stalled`. Each type appears once;
    /// `lastTransitionTime` moves only when a condition's status flips.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::conditions")]
    pub conditions: Vec<Condition>,

    /// Lifecycle phase, for people; automation should read the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WorkspacePhase>,

    /// The namespace backing the workspace.
    #[serde(default, rename = "namespace", skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// The effective handle (`spec.handle`, or `metadata.name` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,

    /// The owner whose access is applied now. It differs from `spec.owner`
    /// only while a change of owner is being applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<AccountRef>,

    /// Number of active WorkspaceMembers (the owner not included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i32>,
}

impl WorkspaceSpec {
    /// A spec owned by `owner`, everything else left to its default.
    pub fn owned_by(owner: AccountRef) -> Self {
        Self {
            owner,
            handle: None,
            description: None,
            namespace: None,
            deletion_policy: Default::default(),
            deletion_protection: false,
        }
    }

    /// The handle in effect: `spec.handle`, or the Workspace name when unset.
    pub fn effective_handle<'a>(&'a self, name: &'a str) -> &'a str {
        match self.handle.as_deref() {
            Some(handle) if !handle.is_empty() => handle,
            _ => name,
        }
    }

    /// The namespace in effect: `spec.namespace`, or the Workspace name when unset.
    pub fn effective_namespace<'a>(&'a self, name: &'a str) -> &'a str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => name,
        }
    }
}

#[cfg(test)]
mod tests;
