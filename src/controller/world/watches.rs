//! The watches: one per kind, each filling its cache and index and routing
//! its events.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{Organization, Workspace, WorkspaceMember, WorkspaceTransfer};
use crate::controller::cache::{self};
use crate::controller::index::{self, Index};
use crate::controller::labels;
use crate::health::{Health, WatchHealth};

use super::router::Router;
use super::{Drivers, World};

/// The writers of the caches of [`World`], handed to the watches.
pub(super) struct Writers {
    pub(super) objects: ObjectWriters,
    pub(super) children: ChildWriters,
}

/// The kinds the controllers reconcile, and namespaces.
pub(super) struct ObjectWriters {
    pub(super) workspace: cache::Writer<Workspace>,
    pub(super) organization: cache::Writer<Organization>,
    pub(super) member: cache::Writer<WorkspaceMember>,
    pub(super) namespace: cache::Writer<PartialObjectMeta<Namespace>>,
    pub(super) transfer: cache::Writer<WorkspaceTransfer>,
}

/// What the operator creates (by its managed-by label), and the
/// ClusterRoles a cluster admin made assignable.
pub(super) struct ChildWriters {
    pub(super) role_binding: cache::Writer<RoleBinding>,
    pub(super) role: cache::Writer<Role>,
    pub(super) cluster_role: cache::Writer<ClusterRole>,
    pub(super) cluster_role_binding: cache::Writer<ClusterRoleBinding>,
    pub(super) assignable: cache::Writer<ClusterRole>,
    pub(super) quota: cache::Writer<ResourceQuota>,
    pub(super) limit_range: cache::Writer<LimitRange>,
    pub(super) network_policy: cache::Writer<NetworkPolicy>,
}

/// Lists and watches of everything of a kind, 100 objects a page.
pub(super) fn every() -> watcher::Config {
    watcher::Config::default()
        .any_semantic()
        .page_size(LIST_PAGE)
}

/// What a watched kind is: a cluster object the caches can hold.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// The watches being opened: one per kind, each filling its cache (and
/// index) and routing its events through the [`Router`].
pub(super) struct Watches<'a> {
    pub(super) client: Client,
    pub(super) health: &'a Health,
    pub(super) router: Router,
    pub(super) drivers: Vec<Drivers>,
}

impl Watches<'_> {
    /// The watches of Workspaces, Organizations, WorkspaceMembers,
    /// namespaces and WorkspaceTransfers.
    pub(super) fn open_objects(&mut self, world: &World, w: ObjectWriters) {
        let all = every();
        let (workspaces, members) = (&world.workspace_index, &world.member_index);
        let transfers = &world.transfer_index;
        self.add(
            &all,
            w.workspace,
            Some(workspaces.clone()),
            "workspaces",
            Router::on_workspace,
        );
        self.add(
            &all,
            w.organization,
            None,
            "organizations",
            Router::on_organization,
        );
        self.add(
            &all,
            w.member,
            Some(members.clone()),
            "workspacemembers",
            Router::on_member,
        );
        self.add_trimmed(
            &all,
            w.namespace,
            trim_namespace,
            "namespaces",
            Router::on_namespace,
        );
        self.add(
            &all,
            w.transfer,
            Some(transfers.clone()),
            "workspacetransfers",
            Router::on_transfer,
        );
    }

    /// The watches of what the operator manages, and of assignable roles.
    pub(super) fn open_children(&mut self, world: &World, w: ChildWriters) {
        let managed = every().labels(labels::MANAGED_SELECTOR);
        let assignable = every().labels(labels::ASSIGNABLE_SELECTOR);
        let bindings = Some(world.role_binding_index.clone());
        self.add(
            &managed,
            w.role_binding,
            bindings,
            "rolebindings",
            Router::on_role_binding,
        );
        self.add(&managed, w.role, None, "roles", Router::on_role);
        self.add(
            &managed,
            w.cluster_role,
            None,
            "clusterroles",
            Router::on_child::<ClusterRole>,
        );
        self.add(
            &managed,
            w.cluster_role_binding,
            None,
            "clusterrolebindings",
            Router::on_child::<ClusterRoleBinding>,
        );
        self.add(
            &assignable,
            w.assignable,
            None,
            "assignable-clusterroles",
            Router::on_assignable_role,
        );
        self.add(
            &managed,
            w.quota,
            None,
            "resourcequotas",
            Router::on_child::<ResourceQuota>,
        );
        self.add(
            &managed,
            w.limit_range,
            None,
            "limitranges",
            Router::on_child::<LimitRange>,
        );
        self.add(
            &managed,
            w.network_policy,
            None,
            "networkpolicies",
            Router::on_child::<NetworkPolicy>,
        );
    }

    /// Watches every `K` that `config` selects, into `cache`.
    pub(super) fn add<K>(
        &mut self,
        config: &watcher::Config,
        cache: cache::Writer<K>,
        index: Option<Index<K>>,
        name: &'static str,
        route: fn(&Router, &K),
    ) where
        K: Watched,
    {
        self.open(config, cache, index, trim, name, route);
    }

    /// Like [`Watches::add`], with a trim of its own and no index.
    pub(super) fn add_trimmed<K>(
        &mut self,
        config: &watcher::Config,
        cache: cache::Writer<K>,
        trim: fn(&mut K),
        name: &'static str,
        route: fn(&Router, &K),
    ) where
        K: Watched,
    {
        self.open(config, cache, None, trim, name, route);
    }

    pub(super) fn open<K>(
        &mut self,
        config: &watcher::Config,
        cache: cache::Writer<K>,
        index: Option<Index<K>>,
        trim: fn(&mut K),
        name: &'static str,
        route: fn(&Router, &K),
    ) where
        K: Watched,
    {
        let router = self.router.clone();
        self.drivers.push(drive(
            watcher(Api::all(self.client.clone()), config.clone()),
            cache,
            index,
            trim,
            self.health.watch(name),
            move |object: &K| route(&router, object),
        ));
    }
}

/// What no reconcile reads, dropped from every cached object:
/// `managedFields` and kubectl's copy of the last applied object.
pub(super) fn trim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A namespace is cached with only the labels and annotations the operator
/// reads (its own, the admin's adopt request, managed-by): a cluster's
/// namespaces carry many others, and every namespace is cached.
pub(super) fn trim_namespace(ns: &mut PartialObjectMeta<Namespace>) {
    let meta = &mut ns.metadata;
    meta.managed_fields = None;
    let read = |key: &String| {
        labels::is_operator_key(key) || key == labels::ADOPT || key == labels::MANAGED_BY
    };
    for map in [meta.labels.as_mut(), meta.annotations.as_mut()]
        .into_iter()
        .flatten()
    {
        map.retain(|key, _| read(key));
    }
}

/// Objects per page of an initial list. Every watch lists at once at start,
/// and a page is held whole (its JSON, then its typed objects) until each
/// object is cached: kube's default of 500 made the pages in flight the
/// largest part of the operator's peak memory.
pub(super) const LIST_PAGE: u32 = 100;

/// kubectl's client-side apply annotation.
pub(super) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Runs one watch: keeps its cache current (trimmed: [`trim`]) and its
/// index, reports its health, and routes every added, changed or deleted
/// object.
///
/// A list is indexed as it arrives, and the cache and the index swap in the
/// complete list together. The first list is not routed: no controller runs
/// before every cache holds one, and each then queues every object it
/// reconciles. A later relist (the watch restarted) routes the objects cached
/// before it and after it, so objects changed or deleted while the watch was
/// down are not missed; that routing decodes the whole cache twice, so it runs
/// on a blocking thread, and the runtime's workers keep serving reconciles and
/// Lease renewals meanwhile.
pub(super) fn drive<K, S, F>(
    stream: S,
    mut cache: cache::Writer<K>,
    index: Option<Index<K>>,
    trim: fn(&mut K),
    health: WatchHealth,
    route: F,
) -> Drivers
where
    K: Watched,
    S: futures::Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
    F: Fn(&K) + Send + Sync + 'static,
{
    let route = Arc::new(route);
    Box::pin(async move {
        let mut events = std::pin::pin!(
            stream
                .backoff(crate::controller::backoff::watch())
                .modify(trim)
        );
        let mut before_relist: Option<cache::Snapshot<K>> = None;
        let mut relist: Option<index::Relist<K>> = None;
        while let Some(event) = events.next().await {
            // A page of a list is handed out without waiting: let the
            // runtime's other tasks in between.
            tokio::task::consume_budget().await;
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    tracing::warn!(error = %err, "watch failed; retrying");
                    health.failed();
                    continue;
                }
            };
            match &event {
                Event::Apply(obj) => {
                    cache.apply(&event);
                    if let Some(index) = &index {
                        index.apply(obj);
                    }
                    route(obj);
                    health.synced_holding(cache.as_reader().len());
                }
                Event::Delete(obj) => {
                    cache.apply(&event);
                    if let Some(index) = &index {
                        index.delete(obj);
                    }
                    route(obj);
                    // Events flowing again after an error: the watch
                    // resumed from its last version and the cache is whole.
                    health.synced_holding(cache.as_reader().len());
                }
                Event::Init => {
                    before_relist = cache.listed().then(|| cache.as_reader().snapshot());
                    cache.apply(&event);
                    relist = index.as_ref().map(Index::relist);
                }
                Event::InitApply(obj) => {
                    cache.apply(&event);
                    if let Some(relist) = &mut relist {
                        relist.add(obj);
                    }
                }
                Event::InitDone => {
                    // The index first: the cache marks itself ready, and a
                    // controller waiting for that must find the index whole.
                    if let (Some(index), Some(fresh)) = (&index, relist.take()) {
                        index.replace(fresh);
                    }
                    cache.apply(&event);
                    if let Some(before) = before_relist.take() {
                        health.restarted();
                        let after = cache.as_reader().snapshot();
                        let route = route.clone();
                        let routed = tokio::task::spawn_blocking(move || {
                            for obj in before.chain(after) {
                                route(&obj);
                            }
                        });
                        if let Err(err) = routed.await {
                            tracing::error!(error = %err, "routing a relist failed");
                        }
                    }
                    health.synced_holding(cache.as_reader().len());
                }
            }
        }
    })
}
