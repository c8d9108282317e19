//! The `workspaces.dev/v1alpha1` API: the custom resource types, their
//! validation rules and the generated CustomResourceDefinitions.
//!
//! This module holds types only (no client, no IO besides [`crdgen`] writing
//! files on request). The doc comments on every field are what
//! `kubectl explain` prints, and the CEL rules (`x-kubernetes-validations`)
//! attached to the types are enforced by the API server itself, so bad input
//! is refused even while the operator is down. `docs/api.md` lists every rule.
//!
//! | Kind | Scope | Short name |
//! |---|---|---|
//! | [`Workspace`] | cluster | `ws` |
//! | [`WorkspaceMember`] | namespaced | `wsm` |
//! | [`WorkspaceTransfer`] | cluster | `wst` |
//! | [`Organization`] | cluster | `org` |

pub mod conditions;
pub mod crdgen;
pub mod member;
pub mod organization;
pub mod transfer;
pub mod workspace;

pub use member::{
    InvitationResponse, MemberPhase, Subject, SubjectKind, WorkspaceMember, WorkspaceMemberSpec,
    WorkspaceMemberStatus, WorkspaceRole,
};
pub use organization::{
    Organization, OrganizationLimits, OrganizationSpec, OrganizationStatus, OrganizationSubject,
    OrganizationSubjectKind, PodSecurityLevel, WorkspaceDefaults,
};
pub use transfer::{
    AffectedSubject, Approval, TransferApprovals, TransferImpact, TransferPhase, TransferSource,
    TransferStep, WorkspaceTransfer, WorkspaceTransferSpec, WorkspaceTransferStatus,
    WorkspaceUsage,
};
pub use workspace::{
    AccountKind, AccountRef, DeletionPolicy, Workspace, WorkspacePhase, WorkspaceSpec,
    WorkspaceStatus,
};

/// The API group of every kind in this module.
pub const GROUP: &str = "workspaces.dev";
/// The only served (and stored) version.
pub const VERSION: &str = "v1alpha1";
/// The category all kinds belong to: `kubectl get workspaces.dev` lists them all.
pub const CATEGORY: &str = "workspaces-dev";

/// Schema helpers shared by the kinds.
mod schema {
    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

    /// Schema for `status.conditions`: the `metav1.Condition` shape, as a
    /// list-map keyed by `type` (so server-side apply merges conditions by
    /// type) and bounded so it can never grow without limit.
    pub(crate) fn conditions(generator: &mut SchemaGenerator) -> Schema {
        let item =
            <k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as JsonSchema>::json_schema(
                generator,
            );
        json_schema!({
            "type": "array",
            "items": item,
            "maxItems": 16,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        })
    }
}

#[cfg(test)]
mod testutil;
