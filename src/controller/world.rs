//! The operator's view of the cluster: one watch per kind, each filling a
//! compact cache, and each event routed to the controllers that registered
//! for it ([`Routes`]).
//!
//! Controllers read these caches instead of the API server, so a reconcile
//! makes no reads, and a converged cluster costs nothing but open watches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::future;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::PartialObjectMeta;

use super::cache::{self, Cache};
use super::index::{self, Index};
use crate::api::{
    AccountRef, Organization, Workspace, WorkspaceMember, WorkspacePhase, WorkspaceTransfer,
};
use crate::health::Health;

mod routes;
mod watches;

pub use self::routes::{Queue, Routes, Watch, watch};
pub use self::watches::Watched;
use self::watches::{ChildWriters, ObjectWriters, Watches, Writers};
/// Read-only caches of everything the operator watches.
#[derive(Clone)]
pub struct World {
    /// Every Workspace.
    pub workspaces: Cache<Workspace>,
    /// Every Organization.
    pub organizations: Cache<Organization>,
    /// Every WorkspaceMember.
    pub members: Cache<WorkspaceMember>,
    /// Metadata of every namespace (to see conflicts and adoption requests).
    pub namespaces: Cache<PartialObjectMeta<Namespace>>,
    /// RoleBindings the operator manages.
    pub role_bindings: Cache<RoleBinding>,
    /// Roles the operator manages (an invitee's answering grant).
    pub roles: Cache<Role>,
    /// Per-workspace ClusterRoles the operator manages.
    pub cluster_roles: Cache<ClusterRole>,
    /// Per-workspace ClusterRoleBindings the operator manages.
    pub cluster_role_bindings: Cache<ClusterRoleBinding>,
    /// ClusterRoles a cluster admin labelled `workspaces.dev/assignable=true`
    /// (only those are watched: reading every ClusterRole would be costly).
    pub assignable_roles: Cache<ClusterRole>,
    /// ResourceQuotas the operator manages (organization defaults).
    pub quotas: Cache<ResourceQuota>,
    /// LimitRanges the operator manages (organization defaults).
    pub limit_ranges: Cache<LimitRange>,
    /// NetworkPolicies the operator manages (organization defaults).
    pub network_policies: Cache<NetworkPolicy>,
    /// Every WorkspaceTransfer.
    pub transfers: Cache<WorkspaceTransfer>,
    /// Transfers by the keys the controllers registered ([`Routes::file`]).
    transfer_index: Index<WorkspaceTransfer>,
    /// Workspaces by owner and by namespace ([`index::workspace_keys`]).
    workspace_index: Index<Workspace>,
    /// Members by namespace, ServiceAccount namespace, custom role
    /// ([`index::member_keys`]), and the keys the controllers registered.
    member_index: Index<WorkspaceMember>,
    /// Managed RoleBindings by namespace.
    role_binding_index: Index<RoleBinding>,
}

impl World {
    /// The Workspaces of `owner`.
    pub fn workspaces_of_owner(&self, owner: &AccountRef) -> Vec<Arc<Workspace>> {
        self.workspace_index
            .lookup(&self.workspaces, &index::owned_by(owner))
            .into_iter()
            .filter(|ws| &ws.spec.owner == owner)
            .collect()
    }

    /// The Workspaces of `owner` that are not Active.
    pub fn waiting_workspaces_of(&self, owner: &AccountRef) -> Vec<Arc<Workspace>> {
        self.workspace_index
            .lookup(&self.workspaces, &index::waiting_of(owner))
            .into_iter()
            .filter(|ws| &ws.spec.owner == owner)
            .filter(|ws| ws.status.as_ref().and_then(|s| s.phase) != Some(WorkspacePhase::Active))
            .collect()
    }

    /// The Workspaces whose spec names `namespace` or whose status reports it.
    pub fn workspaces_naming(&self, namespace: &str) -> Vec<Arc<Workspace>> {
        self.workspace_index
            .lookup(&self.workspaces, &index::in_namespace(namespace))
    }

    /// The WorkspaceMembers in `namespace`.
    pub fn members_in(&self, namespace: &str) -> Vec<Arc<WorkspaceMember>> {
        self.member_index
            .lookup(&self.members, &index::in_namespace(namespace))
    }

    /// The WorkspaceMembers, anywhere, whose subject is a ServiceAccount of `namespace`.
    pub fn members_for_service_accounts_of(&self, namespace: &str) -> Vec<Arc<WorkspaceMember>> {
        self.member_index
            .lookup(&self.members, &index::service_accounts_of(namespace))
    }

    /// The WorkspaceMembers given the custom ClusterRole `name`.
    pub fn members_given(&self, name: &str) -> Vec<Arc<WorkspaceMember>> {
        self.member_index
            .lookup(&self.members, &index::given_role(name))
    }

    /// The WorkspaceMembers filed under `key` (a key a controller
    /// registered with [`Routes::file`]).
    pub fn members_filed_under(&self, key: &str) -> Vec<Arc<WorkspaceMember>> {
        self.member_index.lookup(&self.members, key)
    }

    /// The WorkspaceTransfers filed under `key` (a key a controller
    /// registered with [`Routes::file`]).
    pub fn transfers_filed_under(&self, key: &str) -> Vec<Arc<WorkspaceTransfer>> {
        self.transfer_index.lookup(&self.transfers, key)
    }

    /// The managed RoleBindings in `namespace`.
    pub fn role_bindings_in(&self, namespace: &str) -> Vec<Arc<RoleBinding>> {
        self.role_binding_index
            .lookup(&self.role_bindings, &index::in_namespace(namespace))
    }
}

/// The future that drives every watch; it ends only if a watch ends.
pub type Drivers = Pin<Box<dyn Future<Output = ()> + Send>>;

impl World {
    /// Opens one watch per kind, each routing its events along `routes`.
    /// Returns the caches and the future that drives the watches (it must
    /// be polled for anything to happen).
    ///
    /// Panics when `routes` names a watch the world does not open: a
    /// controller registered for a kind nobody watches.
    pub fn start(client: Client, health: &Health, mut routes: Routes) -> (World, Drivers) {
        let (world, writers) = World::caches(&mut routes);
        let mut watches = Watches {
            client,
            health,
            world: world.clone(),
            routes,
            drivers: Vec::new(),
        };
        watches.open_objects(writers.objects);
        watches.open_children(writers.children);
        let left_over = watches.routes.left_over();
        assert!(
            left_over.is_empty(),
            "routes for watches nobody opens: {left_over:?}"
        );
        let drivers = watches.drivers;
        let drivers: Drivers = Box::pin(async move {
            future::select_all(drivers).await;
        });
        (world, drivers)
    }

    /// The empty caches and indexes, and the writers that fill them.
    fn caches(routes: &mut Routes) -> (World, Writers) {
        let (workspaces, workspace) = cache::cache::<Workspace>();
        let (organizations, organization) = cache::cache::<Organization>();
        let (members, member) = cache::cache::<WorkspaceMember>();
        let (namespaces, namespace) = cache::cache::<PartialObjectMeta<Namespace>>();
        let (transfers, transfer) = cache::cache::<WorkspaceTransfer>();
        let (role_bindings, role_binding) = cache::cache::<RoleBinding>();
        let (roles, role) = cache::cache::<Role>();
        let (cluster_roles, cluster_role) = cache::cache::<ClusterRole>();
        let (cluster_role_bindings, cluster_role_binding) = cache::cache::<ClusterRoleBinding>();
        let (assignable_roles, assignable) = cache::cache::<ClusterRole>();
        let (quotas, quota) = cache::cache::<ResourceQuota>();
        let (limit_ranges, limit_range) = cache::cache::<LimitRange>();
        let (network_policies, network_policy) = cache::cache::<NetworkPolicy>();
        let world = World {
            workspaces,
            organizations,
            members,
            namespaces,
            role_bindings,
            roles,
            cluster_roles,
            cluster_role_bindings,
            assignable_roles,
            quotas,
            limit_ranges,
            network_policies,
            transfers,
            transfer_index: Index::filing(routes.take_keys(watch::TRANSFERS)),
            workspace_index: filing(index::workspace_keys, routes, watch::WORKSPACES),
            member_index: filing(index::member_keys, routes, watch::MEMBERS),
            role_binding_index: filing(
                index::namespace_keys::<RoleBinding>,
                routes,
                watch::ROLE_BINDINGS,
            ),
        };
        let writers = Writers {
            objects: ObjectWriters {
                workspace,
                organization,
                member,
                namespace,
                transfer,
            },
            children: ChildWriters {
                role_binding,
                role,
                cluster_role,
                cluster_role_binding,
                assignable,
                quota,
                limit_range,
                network_policy,
            },
        };
        (world, writers)
    }

    /// Waits until every cache holds a complete list.
    pub async fn synced(&self) {
        let _ = future::join_all([
            Box::pin(self.workspaces.wait_until_ready())
                as Pin<Box<dyn Future<Output = ()> + Send>>,
            Box::pin(self.organizations.wait_until_ready()),
            Box::pin(self.members.wait_until_ready()),
            Box::pin(self.namespaces.wait_until_ready()),
            Box::pin(self.role_bindings.wait_until_ready()),
            Box::pin(self.roles.wait_until_ready()),
            Box::pin(self.cluster_roles.wait_until_ready()),
            Box::pin(self.cluster_role_bindings.wait_until_ready()),
            Box::pin(self.assignable_roles.wait_until_ready()),
            Box::pin(self.quotas.wait_until_ready()),
            Box::pin(self.limit_ranges.wait_until_ready()),
            Box::pin(self.network_policies.wait_until_ready()),
            Box::pin(self.transfers.wait_until_ready()),
        ])
        .await;
    }
}

#[cfg(test)]
impl World {
    /// A World with nothing cached, and no watch behind it.
    pub fn empty() -> World {
        World::caches(&mut Routes::default()).0
    }
}

/// An index filing under `own` keys and those registered for `watch`.
fn filing<K: Watched>(own: index::KeyFn<K>, routes: &mut Routes, watch: Watch<K>) -> Index<K> {
    let mut keys = vec![own];
    keys.extend(routes.take_keys(watch));
    Index::filing(keys)
}

#[cfg(test)]
mod tests;
