//! Who holds which role in which workspace, and why: one answer, from the
//! same decision ([`build::decide`]) and the same cached inputs, read by the
//! member controller (to bind), the Workspace controller ([`granted`]: to
//! count members and grant them read access in the pass that provisions)
//! and the transfer controller ([`losing_access`]: the impact preview, and
//! the revocations it waits for).

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::build::{self, Plan};
use crate::api::{AccountKind, AccountRef, Organization, Workspace, WorkspaceMember};
use crate::controller::{Context, labels};

/// Whether `name` may be given to members: listed in the operator's
/// configuration and labelled assignable by a cluster admin.
pub(super) fn is_assignable(ctx: &Context, name: &str) -> bool {
    ctx.config.is_assignable_cluster_role(name)
        && ctx
            .world
            .assignable_roles
            .get(&ObjectRef::new(name))
            .is_some_and(|cr| {
                cr.labels()
                    .get(labels::ASSIGNABLE)
                    .is_some_and(|v| v == "true")
            })
}

/// What a decision about the members of one namespace reads from the caches.
pub(super) struct Gathered {
    organization: Option<Arc<Organization>>,
    organization_namespaces: Vec<String>,
    members: Vec<Arc<WorkspaceMember>>,
    pub(super) bindings: Vec<Arc<RoleBinding>>,
    invitation_ttl: std::time::Duration,
    now: k8s_openapi::jiff::Timestamp,
}

impl Gathered {
    /// Reads what deciding about the members of `namespace`, a namespace of
    /// `workspace`, needs.
    pub(super) fn read(ctx: &Context, namespace: &str, workspace: Option<&Workspace>) -> Gathered {
        let world = &ctx.world;
        let organization = workspace
            .filter(|ws| ws.spec.owner.kind == AccountKind::Organization)
            .and_then(|ws| {
                world
                    .organizations
                    .get(&ObjectRef::new(&ws.spec.owner.name))
            });
        // The workspace itself counts among the owner's, also when it is
        // the copy of a workspace a transfer is about to give to the owner.
        let organization_namespaces = workspace
            .filter(|_| organization.is_some())
            .map(|ws| {
                let mut of_owner = world.workspaces_of_owner(&ws.spec.owner);
                if !of_owner.iter().any(|o| o.uid() == ws.uid()) {
                    of_owner.push(Arc::new(ws.clone()));
                }
                build::organization_namespaces(&ws.spec.owner.name, &of_owner)
            })
            .unwrap_or_default();
        let bindings = world
            .role_bindings_in(namespace)
            .into_iter()
            .filter(|rb| rb.labels().contains_key(labels::MEMBER))
            .collect();
        Gathered {
            organization,
            organization_namespaces,
            members: world.members_in(namespace),
            bindings,
            invitation_ttl: ctx.config.invitation_ttl,
            now: k8s_openapi::jiff::Timestamp::now(),
        }
    }

    pub(super) fn inputs<'a>(
        &'a self,
        member: &'a WorkspaceMember,
        workspace: Option<&'a Workspace>,
        claimant: Option<&'a Workspace>,
        is_assignable: &'a (dyn Fn(&str) -> bool + Sync),
    ) -> build::Inputs<'a> {
        build::Inputs {
            member,
            workspace,
            claimant,
            organization: self.organization.as_deref(),
            organization_namespaces: &self.organization_namespaces,
            members: &self.members,
            bindings: &self.bindings,
            is_assignable,
            invitation_ttl: self.invitation_ttl,
            now: self.now,
        }
    }
}

/// The members in `namespace` that hold their role in `ws`, or will as soon
/// as `ws` is Active: the same decision the member controller takes. The
/// Workspace controller gives them read access to the Workspace (and counts
/// them) in the pass that provisions it, instead of once more as each member
/// turns Active.
pub fn granted(ctx: &Context, ws: &Workspace, namespace: &str) -> Vec<Arc<WorkspaceMember>> {
    let gathered = Gathered::read(ctx, namespace, Some(ws));
    let assignable = |name: &str| is_assignable(ctx, name);
    gathered
        .members
        .iter()
        .filter(|m| !build::deleting(&***m))
        .filter(|m| {
            let inputs = gathered.inputs(m, Some(ws), None, &assignable);
            matches!(build::decide(&inputs, ws), Plan::Grant(_))
        })
        .cloned()
        .collect()
}

/// The members in `namespace` that hold their role in `ws` now and would
/// lose it were `ws` owned by `owner`, each with why: the same decision
/// ([`build::decide`]) the member controller takes once the owner changed.
/// A transfer previews them and waits for their bindings to go.
pub fn losing_access(
    ctx: &Context,
    ws: &Workspace,
    namespace: &str,
    owner: &AccountRef,
) -> Vec<(Arc<WorkspaceMember>, build::Blocked)> {
    let moved = build::owned_by(ws, owner);
    let now = Gathered::read(ctx, namespace, Some(ws));
    let then = Gathered::read(ctx, namespace, Some(&moved));
    let assignable = |name: &str| is_assignable(ctx, name);
    now.members
        .iter()
        .filter(|m| !build::deleting(&***m))
        .filter(|m| {
            let inputs = now.inputs(m, Some(ws), None, &assignable);
            matches!(build::decide(&inputs, ws), Plan::Grant(_))
        })
        .filter_map(|m| {
            let inputs = then.inputs(m, Some(&moved), None, &assignable);
            match build::decide(&inputs, &moved) {
                Plan::Blocked(blocked) if blocked.revoke => Some((m.clone(), blocked)),
                _ => None,
            }
        })
        .collect()
}
