//! Which watch events concern which Workspaces: the Workspace controller's
//! mapping functions, registered with the world.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;

use crate::api::{AccountRef, Organization, Workspace, WorkspaceMember};
use crate::controller::labels;
use crate::controller::world::{Queue, Routes, World, watch};

/// Registers the Workspace controller's triggers.
pub fn register(routes: &mut Routes, queue: &Queue<Workspace>) {
    routes
        .on(watch::WORKSPACES, queue, on_workspace)
        .on(watch::ORGANIZATIONS, queue, on_organization)
        .on(watch::MEMBERS, queue, on_member)
        .on(watch::NAMESPACES, queue, on_namespace)
        .on_children(queue, on_child);
}

fn refs(names: impl IntoIterator<Item = String>) -> Vec<ObjectRef<Workspace>> {
    names
        .into_iter()
        .map(|name| ObjectRef::new(&name))
        .collect()
}

/// A Workspace concerns itself, and the workspaces of its owner (and of
/// the previous owner while a change of owner is being applied) that wait
/// on a handle or a limit: they may fit now.
fn on_workspace(world: &World, ws: &Workspace) -> Vec<ObjectRef<Workspace>> {
    let previous = ws.status.as_ref().and_then(|s| s.owner.as_ref());
    let owners = std::iter::once(&ws.spec.owner).chain(previous.filter(|p| **p != ws.spec.owner));
    let waiting = owners.flat_map(|owner| world.waiting_workspaces_of(owner));
    refs(std::iter::once(ws.name_any()).chain(waiting.map(|w| w.name_any())))
}

/// An Organization concerns its workspaces.
fn on_organization(world: &World, org: &Organization) -> Vec<ObjectRef<Workspace>> {
    let owner = AccountRef::organization(org.name_any());
    refs(
        world
            .workspaces_of_owner(&owner)
            .iter()
            .map(|ws| ws.name_any()),
    )
}

/// A member concerns the workspaces of its namespace (they count members).
fn on_member(world: &World, member: &WorkspaceMember) -> Vec<ObjectRef<Workspace>> {
    let Some(ns) = member.namespace() else {
        return Vec::new();
    };
    let cached = world.namespaces.get(&ObjectRef::new(&ns));
    let named = cached.as_deref().map(named_by).unwrap_or_default();
    refs(of_namespace(world, &ns, named))
}

/// A namespace concerns the workspaces it belongs to, found from the
/// event's own copy: after a deletion the cache no longer holds it.
fn on_namespace(world: &World, ns: &PartialObjectMeta<Namespace>) -> Vec<ObjectRef<Workspace>> {
    refs(of_namespace(world, &ns.name_any(), named_by(ns)))
}

/// A child carries the name of its Workspace as a label; grants to one
/// subject belong to their member, not to the Workspace.
fn on_child(child: &ObjectMeta) -> Option<ObjectRef<Workspace>> {
    if labels::is_access_grant(child) {
        return None;
    }
    let name = child.labels.as_ref()?.get(labels::WORKSPACE)?;
    Some(ObjectRef::new(name))
}

/// The Workspaces that a namespace belongs to: those `named` (by the
/// namespace's own metadata), and those whose spec names it (a namespace
/// about to be created, adopted, or one whose label someone removed).
fn of_namespace(
    world: &World,
    namespace: &str,
    named: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut names: Vec<String> = world
        .workspaces_naming(namespace)
        .iter()
        .filter(|ws| ws.spec.effective_namespace(&ws.name_any()) == namespace)
        .map(|ws| ws.name_any())
        .collect();
    for name in named {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The Workspaces a namespace's own metadata names: its workspace label and
/// an admin's adoption request.
fn named_by(ns: &PartialObjectMeta<Namespace>) -> Vec<String> {
    [
        ns.labels().get(labels::WORKSPACE),
        ns.annotations().get(labels::ADOPT),
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_namespace_is_routed_to_the_workspace_its_label_names() {
        // The delete event's copy: the cache has dropped the namespace
        // already, and no cached Workspace names it in its spec.
        let mut ns = PartialObjectMeta::<Namespace>::default();
        ns.metadata.name = Some("team-ns".into());
        ns.metadata.labels = Some([(labels::WORKSPACE.to_string(), "team".to_string())].into());
        let routed = on_namespace(&World::empty(), &ns);
        assert_eq!(routed, [ObjectRef::new("team")]);
    }

    #[test]
    fn a_members_binding_is_its_members_not_its_workspaces() {
        let mut rb = k8s_openapi::api::rbac::v1::RoleBinding::default();
        rb.metadata.labels = Some([(labels::WORKSPACE.to_string(), "team".to_string())].into());
        assert_eq!(on_child(&rb.metadata), Some(ObjectRef::new("team")));
        rb.labels_mut()
            .insert(labels::MEMBER.to_string(), "alice".to_string());
        assert_eq!(on_child(&rb.metadata), None);
    }
}
