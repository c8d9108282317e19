//! What a watch event triggers, as each controller declares it.
//!
//! A controller registers, per watched kind, a mapping function from the
//! changed object to the objects it must reconcile (the idea of
//! controller-runtime's `Watches(kind, EnqueueRequestsFromMapFunc)` and
//! kube-runtime's `Controller::watches`), and the extra keys its lookups
//! need in the world's indexes. The world knows the watches; which
//! controller cares about which event is written only in the controller's
//! own folder.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use super::World;
use crate::controller::index::KeyFn;

/// One of the world's watches, of objects of kind `K`.
pub struct Watch<K> {
    /// The watch's name (in logs, health and metrics).
    pub name: &'static str,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Watch<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Watch<K> {}

impl<K> Watch<K> {
    pub(super) const fn named(name: &'static str) -> Self {
        Watch {
            name,
            kind: PhantomData,
        }
    }
}

/// The watches of the world, one per kind (two for ClusterRoles: the
/// operator's own and those a cluster admin made assignable).
pub mod watch {
    use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use kube::api::PartialObjectMeta;

    use super::Watch;
    use crate::api::{Organization, Workspace, WorkspaceMember, WorkspaceTransfer};

    /// Every Workspace.
    pub const WORKSPACES: Watch<Workspace> = Watch::named("workspaces");
    /// Every Organization.
    pub const ORGANIZATIONS: Watch<Organization> = Watch::named("organizations");
    /// Every WorkspaceMember.
    pub const MEMBERS: Watch<WorkspaceMember> = Watch::named("workspacemembers");
    /// The metadata of every namespace; a deleted one is routed from the
    /// event's own copy (the cache has dropped it already).
    pub const NAMESPACES: Watch<PartialObjectMeta<Namespace>> = Watch::named("namespaces");
    /// Every WorkspaceTransfer.
    pub const TRANSFERS: Watch<WorkspaceTransfer> = Watch::named("workspacetransfers");
    /// The RoleBindings the operator manages.
    pub const ROLE_BINDINGS: Watch<RoleBinding> = Watch::named("rolebindings");
    /// The Roles the operator manages.
    pub const ROLES: Watch<Role> = Watch::named("roles");
    /// The ClusterRoles the operator manages.
    pub const CLUSTER_ROLES: Watch<ClusterRole> = Watch::named("clusterroles");
    /// The ClusterRoleBindings the operator manages.
    pub const CLUSTER_ROLE_BINDINGS: Watch<ClusterRoleBinding> =
        Watch::named("clusterrolebindings");
    /// The ClusterRoles a cluster admin labelled assignable.
    pub const ASSIGNABLE_ROLES: Watch<ClusterRole> = Watch::named("assignable-clusterroles");
    /// The ResourceQuotas the operator manages.
    pub const QUOTAS: Watch<ResourceQuota> = Watch::named("resourcequotas");
    /// The LimitRanges the operator manages.
    pub const LIMIT_RANGES: Watch<LimitRange> = Watch::named("limitranges");
    /// The NetworkPolicies the operator manages.
    pub const NETWORK_POLICIES: Watch<NetworkPolicy> = Watch::named("networkpolicies");
}

/// A controller's queue: where its mapping functions send the objects to
/// reconcile. The receiving end is the controller's trigger stream.
pub struct Queue<C: kube::Resource>(UnboundedSender<ObjectRef<C>>);

impl<C: kube::Resource> Clone for Queue<C> {
    fn clone(&self) -> Self {
        Queue(self.0.clone())
    }
}

impl<C: kube::Resource> Queue<C> {
    /// A queue and the trigger stream it feeds.
    pub fn open() -> (Queue<C>, UnboundedReceiver<ObjectRef<C>>) {
        let (to, from) = unbounded();
        (Queue(to), from)
    }

    /// Queues a reconcile of `at`. A closed queue means its controller is
    /// stopping: nothing to do.
    pub fn send(&self, at: ObjectRef<C>) {
        let _ = self.0.unbounded_send(at);
    }
}

/// What a watch does with one event: the mapping functions of every
/// controller that registered one for it, each sending to its queue.
pub(super) type Route<K> = Box<dyn Fn(&World, &K) + Send + Sync>;

/// The routes and extra index keys the controllers registered, by watch.
#[derive(Default)]
pub struct Routes {
    routes: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
    keys: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl Routes {
    /// Registers `map` for the events of `watch`: every object it returns
    /// for a changed (or deleted) object is queued in `queue`.
    pub fn on<K, C, I>(
        &mut self,
        watch: Watch<K>,
        queue: &Queue<C>,
        map: impl Fn(&World, &K) -> I + Send + Sync + 'static,
    ) -> &mut Self
    where
        K: 'static,
        C: kube::Resource + 'static,
        I: IntoIterator<Item = ObjectRef<C>>,
    {
        let queue = queue.clone();
        let route: Route<K> = Box::new(move |world, obj| {
            for at in map(world, obj) {
                queue.send(at);
            }
        });
        entry::<Vec<Route<K>>>(&mut self.routes, watch.name).push(route);
        self
    }

    /// Registers `map` for the events of every watch of what the operator
    /// creates (RoleBindings, ClusterRoles, ClusterRoleBindings,
    /// ResourceQuotas, LimitRanges, NetworkPolicies): a child concerns
    /// its owner by its labels or ownerReferences, whatever its kind.
    pub fn on_children<C, I>(&mut self, queue: &Queue<C>, map: fn(&ObjectMeta) -> I) -> &mut Self
    where
        C: kube::Resource + 'static,
        I: IntoIterator<Item = ObjectRef<C>> + 'static,
    {
        self.on(watch::ROLE_BINDINGS, queue, move |_, c| map(c.meta()))
            .on(watch::CLUSTER_ROLES, queue, move |_, c| map(c.meta()))
            .on(watch::CLUSTER_ROLE_BINDINGS, queue, move |_, c| {
                map(c.meta())
            })
            .on(watch::QUOTAS, queue, move |_, c| map(c.meta()))
            .on(watch::LIMIT_RANGES, queue, move |_, c| map(c.meta()))
            .on(watch::NETWORK_POLICIES, queue, move |_, c| map(c.meta()))
    }

    /// Registers `keys`: the objects of `watch` are also filed under them
    /// in the world's index of that kind (the watches of Workspaces,
    /// WorkspaceMembers, managed RoleBindings and WorkspaceTransfers have
    /// one).
    pub fn file<K: 'static>(&mut self, watch: Watch<K>, keys: KeyFn<K>) -> &mut Self {
        entry::<Vec<KeyFn<K>>>(&mut self.keys, watch.name).push(keys);
        self
    }

    /// The routes registered for `watch`, taken out.
    pub(super) fn take<K: 'static>(&mut self, watch: Watch<K>) -> Vec<Route<K>> {
        take(&mut self.routes, watch.name)
    }

    /// The index keys registered for `watch`, taken out.
    pub(super) fn take_keys<K: 'static>(&mut self, watch: Watch<K>) -> Vec<KeyFn<K>> {
        take(&mut self.keys, watch.name)
    }

    /// The watches something was registered for that no watch took: a
    /// watch name the world does not open.
    pub(super) fn left_over(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .routes
            .keys()
            .chain(self.keys.keys())
            .copied()
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

fn entry<'a, V: Default + Send + Sync + 'static>(
    map: &'a mut HashMap<&'static str, Box<dyn Any + Send + Sync>>,
    name: &'static str,
) -> &'a mut V {
    map.entry(name)
        .or_insert_with(|| Box::new(V::default()))
        .downcast_mut::<V>()
        .expect("a watch's name names one kind")
}

fn take<V: Default + 'static>(
    map: &mut HashMap<&'static str, Box<dyn Any + Send + Sync>>,
    name: &'static str,
) -> V {
    map.remove(name)
        .map(|any| *any.downcast::<V>().expect("a watch's name names one kind"))
        .unwrap_or_default()
}
