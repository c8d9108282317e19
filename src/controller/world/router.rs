//! Where each watch event goes: the reconciles it triggers.

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use crate::api::{
    AccountRef, MemberPhase, Organization, Workspace, WorkspaceMember, WorkspaceTransfer,
};
use crate::controller::index::{self};
use crate::controller::{directory, labels, member, transfer};

use super::World;

/// Where a watch event should trigger reconciles.
#[derive(Clone)]
pub(super) struct Router {
    pub(super) world: World,
    pub(super) to_workspaces: UnboundedSender<ObjectRef<Workspace>>,
    pub(super) to_members: UnboundedSender<ObjectRef<WorkspaceMember>>,
    pub(super) to_organizations: UnboundedSender<ObjectRef<Organization>>,
    pub(super) to_transfers: UnboundedSender<ObjectRef<WorkspaceTransfer>>,
    pub(super) to_directory: UnboundedSender<ObjectRef<Role>>,
}

impl Router {
    /// Queues the transfer controller's reconciles of `names`.
    pub(super) fn transfers(&self, names: Vec<String>) {
        for name in names {
            let _ = self.to_transfers.unbounded_send(ObjectRef::new(&name));
        }
    }

    /// A transfer: the transfer controller decides which transfers it
    /// concerns; the members of its workspace are judged against its target
    /// while it runs.
    pub(super) fn on_transfer(&self, t: &WorkspaceTransfer) {
        self.transfers(transfer::triggers::on_transfer(&self.world, t));
        if let Some(ws) = self
            .world
            .workspaces
            .get(&ObjectRef::new(&t.spec.workspace))
        {
            self.members_of_workspace(&ws);
        }
    }

    /// Queues the directory entry `entry`.
    pub(super) fn directory(&self, entry: ObjectRef<Role>) {
        let _ = self.to_directory.unbounded_send(entry);
    }

    /// A managed Role: a directory entry's, or an invitee's answering grant.
    pub(super) fn on_role(&self, role: &Role) {
        match directory::entry_of(role) {
            Some(entry) => self.directory(entry),
            None => self.on_invitation_grant(role),
        }
    }

    pub(super) fn organization(&self, name: &str) {
        let _ = self.to_organizations.unbounded_send(ObjectRef::new(name));
    }

    pub(super) fn workspace(&self, name: &str) {
        // A closed channel means the controller is stopping; nothing to do.
        let _ = self.to_workspaces.unbounded_send(ObjectRef::new(name));
    }

    pub(super) fn member(&self, namespace: &str, name: &str) {
        let _ = self
            .to_members
            .unbounded_send(ObjectRef::new(name).within(namespace));
    }

    /// Triggers the members in `namespace` that `pick` selects.
    pub(super) fn members_in(&self, namespace: &str, pick: impl Fn(&WorkspaceMember) -> bool) {
        for m in self.world.members_in(namespace) {
            if pick(&m) {
                self.member(namespace, &m.name_any());
            }
        }
    }

    /// Members of a workspace, and ServiceAccount members anywhere whose
    /// ServiceAccount lives in it (organization membership of a ServiceAccount
    /// depends on which workspaces its namespace belongs to).
    pub(super) fn members_of_workspace(&self, ws: &Workspace) {
        for namespace in index::namespaces_of(ws) {
            let inside = self.world.members_in(namespace);
            let service_accounts = self.world.members_for_service_accounts_of(namespace);
            for m in inside.iter().chain(&service_accounts) {
                if let Some(ns) = m.meta().namespace.as_deref() {
                    self.member(ns, &m.name_any());
                }
            }
        }
    }

    /// The Workspaces that a namespace belongs to: those `named` (by the
    /// namespace's own metadata), and those whose spec names it (a namespace
    /// about to be created, adopted, or one whose label someone removed).
    pub(super) fn workspaces_of_namespace(
        &self,
        namespace: &str,
        named: impl IntoIterator<Item = String>,
    ) -> Vec<String> {
        let mut names: Vec<String> = self
            .world
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

    /// Workspaces of `owner` that are waiting on a handle or a limit: a change
    /// to any of the owner's workspaces may unblock them.
    pub(super) fn blocked_workspaces_of(&self, owner: &AccountRef) -> Vec<String> {
        self.world
            .waiting_workspaces_of(owner)
            .iter()
            .map(|ws| ws.name_any())
            .collect()
    }

    pub(super) fn on_workspace(&self, ws: &Workspace) {
        self.workspace(&ws.name_any());
        // The owner, and the previous owner while a change of owner is being
        // applied: their blocked workspaces may now fit, and an owning
        // Organization counts its workspaces.
        let previous = ws.status.as_ref().and_then(|s| s.owner.as_ref());
        for owner in
            std::iter::once(&ws.spec.owner).chain(previous.filter(|p| **p != ws.spec.owner))
        {
            for name in self.blocked_workspaces_of(owner) {
                self.workspace(&name);
            }
            if owner.kind == crate::api::AccountKind::Organization {
                self.organization(&owner.name);
            }
        }
        self.members_of_workspace(ws);
        self.transfers(transfer::triggers::on_workspace(&self.world, ws));
    }

    pub(super) fn on_organization(&self, org: &Organization) {
        self.organization(&org.name_any());
        self.transfers(transfer::triggers::on_organization(&self.world, org));
        let owner = AccountRef::organization(org.name_any());
        for ws in self.world.workspaces_of_owner(&owner) {
            self.workspace(&ws.name_any());
            self.members_of_workspace(&ws);
        }
    }

    /// Routed from the event's own copy of the namespace: after a deletion
    /// the cache no longer holds it.
    pub(super) fn on_namespace(&self, ns: &PartialObjectMeta<Namespace>) {
        let name = ns.name_any();
        for ws in self.workspaces_of_namespace(&name, named_by(ns)) {
            self.workspace(&ws);
        }
        self.members_in(&name, |_| true);
    }

    /// A member, the other members of the same subject (one of them may win
    /// or lose `DuplicateSubject` now) and the members of the namespace still
    /// waiting for access (a slot under the member limit may have opened).
    pub(super) fn on_member(&self, changed: &WorkspaceMember) {
        let Some(ns) = changed.namespace() else {
            return;
        };
        let cached = self.world.namespaces.get(&ObjectRef::new(&ns));
        let named = cached.as_deref().map(named_by).unwrap_or_default();
        for name in self.workspaces_of_namespace(&ns, named) {
            self.workspace(&name);
        }
        self.member(&ns, &changed.name_any());
        self.directory(ObjectRef::new(&directory::index_key(changed)));
        self.transfers(transfer::triggers::on_member(&self.world, changed));
        let subject = &changed.spec.subject;
        self.members_in(&ns, |m| {
            member::build::same_subject(&m.spec.subject, subject)
                || m.status.as_ref().and_then(|s| s.phase) != Some(MemberPhase::Active)
        });
    }

    /// A member's RoleBinding triggers its member (named by the controller
    /// ownerReference); the Workspace's own bindings trigger the Workspace.
    pub(super) fn on_role_binding(&self, rb: &RoleBinding) {
        if let Some(entry) = directory::entry_of(rb) {
            self.directory(entry);
            return;
        }
        if rb.labels().contains_key(labels::INVITATION) {
            self.on_invitation_grant(rb);
            return;
        }
        if rb.labels().contains_key(labels::MEMBER) {
            let owner = rb.owner_references().iter().find(|o| {
                o.controller == Some(true)
                    && o.kind == WorkspaceMember::kind(&())
                    && o.api_version == WorkspaceMember::api_version(&())
            });
            let name = owner
                .map(|o| o.name.as_str())
                .or_else(|| rb.labels().get(labels::MEMBER).map(String::as_str));
            if let (Some(name), Some(ns)) = (name, rb.namespace()) {
                self.member(&ns, name);
                self.transfers(transfer::triggers::on_member_binding(&self.world, &ns));
            }
            return;
        }
        self.on_child(rb);
    }

    /// An invitee's answering grant (its Role or RoleBinding) triggers its
    /// member, named by the controller ownerReference.
    pub(super) fn on_invitation_grant<K: Resource>(&self, grant: &K) {
        let owner = grant.owner_references().iter().find(|o| {
            o.controller == Some(true)
                && o.kind == WorkspaceMember::kind(&())
                && o.api_version == WorkspaceMember::api_version(&())
        });
        if let (Some(owner), Some(ns)) = (owner, grant.meta().namespace.as_deref()) {
            self.member(ns, &owner.name);
        }
    }

    /// An assignable ClusterRole triggers the members that name it.
    pub(super) fn on_assignable_role(&self, role: &ClusterRole) {
        for m in self.world.members_given(&role.name_any()) {
            if let Some(ns) = m.meta().namespace.as_deref() {
                self.member(ns, &m.name_any());
            }
        }
    }

    /// A child carries the name of its Workspace (or Organization) as a label.
    pub(super) fn on_child<K: Resource>(&self, child: &K) {
        self.transfers(transfer::triggers::on_child(child));
        if let Some(name) = child.labels().get(labels::WORKSPACE) {
            self.workspace(name);
        }
        if let Some(name) = child.labels().get(labels::ORGANIZATION) {
            self.organization(name);
        }
    }
}

/// The Workspaces a namespace's own metadata names: its workspace label and
/// an admin's adoption request.
pub(super) fn named_by(ns: &PartialObjectMeta<Namespace>) -> Vec<String> {
    [
        ns.labels().get(labels::WORKSPACE),
        ns.annotations().get(labels::ADOPT),
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect()
}
