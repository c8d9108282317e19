//! `Organization`: an account that owns workspaces, with admins, members,
//! limits and defaults for its workspaces.

use k8s_openapi::api::core::v1::{LimitRangeSpec, ResourceQuotaSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of an Organization.
// kube's `printcolumn(...)` entries repeat `type_ = "string"` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "workspaces.dev",
    version = "v1alpha1",
    kind = "Organization",
    plural = "organizations",
    shortname = "org",
    category = "workspaces-dev",
    status = "OrganizationStatus",
    derive = "PartialEq",
    doc = "An Organization is an account that owns workspaces. Its admins hold the Owner role in every workspace it owns; its members may be added to those workspaces with WorkspaceMembers. Platform admins set its limits and the defaults applied to every workspace it owns.",
    printcolumn(name = "Display Name", type_ = "string", json_path = ".spec.displayName", priority = 1, description = "Human-readable name"),
    printcolumn(name = "Workspaces", type_ = "integer", json_path = ".status.workspaces", description = "Workspaces the organization owns"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the organization is reconciled"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("Organization name must be a DNS-1123 label (at most 63 lowercase letters, digits or '-', no dots) because Workspaces refer to it in spec.owner.name; choose a shorter name."),
)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationSpec {
    /// Human-readable name, for example `Acme Inc.`; at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,

    /// Users and groups who administer the organization. They hold the Owner
    /// role in every workspace the organization owns, approve transfers for
    /// it, and may edit `admins`, `members` and `displayName`. At most 100
    /// entries, each kind/name once; use a Group for more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["kind".into(), "name".into()]))]
    pub admins: Vec<OrganizationSubject>,

    /// Users and groups who belong to the organization. Only they (and the
    /// admins, and ServiceAccounts of the organization's workspaces) can be
    /// given roles in its workspaces. At most 1000 entries, each kind/name
    /// once; use a Group for more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["kind".into(), "name".into()]))]
    pub members: Vec<OrganizationSubject>,

    /// Limits on the organization, set by platform admins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<OrganizationLimits>,

    /// Settings applied to every workspace the organization owns, set by
    /// platform admins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_defaults: Option<WorkspaceDefaults>,
}

/// A user or group of an Organization.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub struct OrganizationSubject {
    /// `User` or `Group`.
    pub kind: OrganizationSubjectKind,

    /// The username or group name exactly as the cluster's authenticator
    /// reports it.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self != ''")
        .message("an organization admin or member needs a name: give the username or group name.")
        .reason(Reason::FieldValueRequired))]
    pub name: String,
}

impl OrganizationSubject {
    /// A user, by username.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            kind: OrganizationSubjectKind::User,
            name: name.into(),
        }
    }

    /// A group, by group name.
    pub fn group(name: impl Into<String>) -> Self {
        Self {
            kind: OrganizationSubjectKind::Group,
            name: name.into(),
        }
    }
}

/// The kind of an Organization's admin or member.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum OrganizationSubjectKind {
    /// A user, as the cluster's authenticator reports it.
    User,
    /// A group, as the cluster's authenticator reports it.
    Group,
}

/// Limits on an Organization.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationLimits {
    /// The most workspaces the organization may own; absent means unlimited.
    /// Over the limit the newest Workspaces report `WorkspaceLimitExceeded`
    /// and are not provisioned; lowering it never tears down what exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub workspaces: Option<i32>,

    /// The most active WorkspaceMembers per workspace (owners not counted);
    /// absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub members_per_workspace: Option<i32>,
}

/// Settings applied to every workspace of an Organization.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceDefaults {
    /// A ResourceQuota created in every workspace namespace (`hard`,
    /// `scopes`, `scopeSelector` as in a ResourceQuota's spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_quota: Option<ResourceQuotaSpec>,

    /// A LimitRange created in every workspace namespace (`limits` as in a
    /// LimitRange's spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range: Option<LimitRangeSpec>,

    /// When true, every workspace namespace gets a NetworkPolicy that refuses
    /// ingress from other namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_isolation: Option<bool>,

    /// The Pod Security Standard enforced in every workspace namespace
    /// (label `pod-security.kubernetes.io/enforce`): `baseline` or
    /// `restricted`, or `privileged` to enforce nothing. Absent: the
    /// operator's `--pod-security` setting (default `baseline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurityLevel>,
}

/// A Pod Security Standard level, as Pod Security Admission names it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// No restriction: privileged pods, host namespaces and hostPath allowed.
    Privileged,
    /// Known privilege escalations refused (privileged containers, host
    /// namespaces, hostPath, added capabilities, ...).
    #[default]
    Baseline,
    /// Baseline, plus the hardening best practices (non-root, no privilege
    /// escalation, seccomp, dropped capabilities).
    Restricted,
}

impl PodSecurityLevel {
    /// The value of the `pod-security.kubernetes.io/enforce` label.
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        }
    }
}

/// The observed state of an Organization, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions; `Ready` is the summary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::conditions")]
    pub conditions: Vec<Condition>,

    /// Number of Workspaces the organization owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspaces: Option<i32>,
}

#[cfg(test)]
mod tests;
