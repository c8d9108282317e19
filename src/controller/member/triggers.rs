//! Which watch events concern which WorkspaceMembers: the member
//! controller's mapping functions, registered with the world.

use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::build::same_subject;
use crate::api::{
    AccountRef, MemberPhase, Organization, Workspace, WorkspaceMember, WorkspaceTransfer,
};
use crate::controller::world::{Queue, Routes, World, watch};
use crate::controller::{index, labels};

type Members = Vec<ObjectRef<WorkspaceMember>>;

/// Registers the member controller's triggers.
pub fn register(routes: &mut Routes, queue: &Queue<WorkspaceMember>) {
    routes
        .on(watch::WORKSPACES, queue, of_workspace)
        .on(watch::ORGANIZATIONS, queue, on_organization)
        .on(watch::NAMESPACES, queue, |world, ns| {
            in_namespace(world, &ns.name_any(), |_| true)
        })
        .on(watch::MEMBERS, queue, on_member)
        .on(watch::TRANSFERS, queue, on_transfer)
        .on(watch::ROLE_BINDINGS, queue, |_, rb| on_binding(rb))
        .on(watch::ROLES, queue, |_, role| on_role(role))
        .on(watch::ASSIGNABLE_ROLES, queue, on_assignable_role);
}

fn member_ref(namespace: &str, name: &str) -> ObjectRef<WorkspaceMember> {
    ObjectRef::new(name).within(namespace)
}

fn refs<'a>(members: impl IntoIterator<Item = &'a std::sync::Arc<WorkspaceMember>>) -> Members {
    members
        .into_iter()
        .filter_map(|m| Some(member_ref(m.meta().namespace.as_deref()?, &m.name_any())))
        .collect()
}

/// The members in `namespace` that `pick` selects.
fn in_namespace(
    world: &World,
    namespace: &str,
    pick: impl Fn(&WorkspaceMember) -> bool,
) -> Members {
    refs(world.members_in(namespace).iter().filter(|m| pick(m)))
}

/// Members of a workspace, and ServiceAccount members anywhere whose
/// ServiceAccount lives in it (organization membership of a ServiceAccount
/// depends on which workspaces its namespace belongs to).
fn of_workspace(world: &World, ws: &Workspace) -> Members {
    let mut out = Vec::new();
    for namespace in index::namespaces_of(ws) {
        out.extend(refs(&world.members_in(namespace)));
        out.extend(refs(&world.members_for_service_accounts_of(namespace)));
    }
    out
}

/// An Organization concerns the members of its workspaces.
fn on_organization(world: &World, org: &Organization) -> Members {
    let owner = AccountRef::organization(org.name_any());
    world
        .workspaces_of_owner(&owner)
        .iter()
        .flat_map(|ws| of_workspace(world, ws))
        .collect()
}

/// A member concerns itself, the other members of the same subject (one of
/// them may win or lose `DuplicateSubject` now) and the members of the
/// namespace still waiting for access (a slot under the member limit may
/// have opened).
fn on_member(world: &World, changed: &WorkspaceMember) -> Members {
    let Some(ns) = changed.namespace() else {
        return Vec::new();
    };
    let subject = &changed.spec.subject;
    let mut out = vec![member_ref(&ns, &changed.name_any())];
    out.extend(in_namespace(world, &ns, |m| {
        same_subject(&m.spec.subject, subject)
            || m.status.as_ref().and_then(|s| s.phase) != Some(MemberPhase::Active)
    }));
    out
}

/// A transfer concerns the members of its workspace: they are judged
/// against its target while it runs.
fn on_transfer(world: &World, t: &WorkspaceTransfer) -> Members {
    world
        .workspaces
        .get(&ObjectRef::new(&t.spec.workspace))
        .map(|ws| of_workspace(world, &ws))
        .unwrap_or_default()
}

/// A member's RoleBinding concerns its member (named by the controller
/// ownerReference, else by its label); an invitee's answering grant its
/// member. Directory entries and the Workspace's own bindings concern no
/// member.
fn on_binding(rb: &RoleBinding) -> Members {
    let labels = rb.labels();
    if labels.contains_key(labels::DIRECTORY) {
        return Vec::new();
    }
    if labels.contains_key(labels::INVITATION) {
        return owner_of(rb);
    }
    let Some(label) = labels.get(labels::MEMBER) else {
        return Vec::new();
    };
    let name = controller_of(rb).map_or(label.as_str(), |o| o.name.as_str());
    rb.namespace()
        .map(|ns| member_ref(&ns, name))
        .into_iter()
        .collect()
}

/// An invitee's answering Role concerns its member; a directory entry's
/// Role none.
fn on_role(role: &Role) -> Members {
    if role.labels().contains_key(labels::DIRECTORY) {
        return Vec::new();
    }
    owner_of(role)
}

/// The WorkspaceMember that controls `obj`.
fn controller_of<K: Resource>(
    obj: &K,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    obj.owner_references().iter().find(|o| {
        o.controller == Some(true)
            && o.kind == WorkspaceMember::kind(&())
            && o.api_version == WorkspaceMember::api_version(&())
    })
}

/// The member that controls `grant`, in its namespace.
fn owner_of<K: Resource>(grant: &K) -> Members {
    match (controller_of(grant), grant.meta().namespace.as_deref()) {
        (Some(owner), Some(ns)) => vec![member_ref(ns, &owner.name)],
        _ => Vec::new(),
    }
}

/// An assignable ClusterRole concerns the members that name it.
fn on_assignable_role(world: &World, role: &ClusterRole) -> Members {
    refs(&world.members_given(&role.name_any()))
}
