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

use super::routes::{Routes, Watch, watch};
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
/// index) and routing its events to the controllers that registered for
/// them ([`Routes`]).
pub(super) struct Watches<'a> {
    pub(super) client: Client,
    pub(super) health: &'a Health,
    pub(super) world: World,
    pub(super) routes: Routes,
    pub(super) drivers: Vec<Drivers>,
}

impl Watches<'_> {
    /// The watches of Workspaces, Organizations, WorkspaceMembers,
    /// namespaces and WorkspaceTransfers.
    pub(super) fn open_objects(&mut self, w: ObjectWriters) {
        let all = every();
        let world = self.world.clone();
        self.open(
            watch::WORKSPACES,
            &all,
            w.workspace,
            Some(world.workspace_index),
            trim,
        );
        self.open(watch::ORGANIZATIONS, &all, w.organization, None, trim);
        self.open(
            watch::MEMBERS,
            &all,
            w.member,
            Some(world.member_index),
            trim,
        );
        self.open(watch::NAMESPACES, &all, w.namespace, None, trim_namespace);
        self.open(
            watch::TRANSFERS,
            &all,
            w.transfer,
            Some(world.transfer_index),
            trim,
        );
    }

    /// The watches of what the operator manages, and of assignable roles.
    pub(super) fn open_children(&mut self, w: ChildWriters) {
        let managed = every().labels(labels::MANAGED_SELECTOR);
        let assignable = every().labels(labels::ASSIGNABLE_SELECTOR);
        let bindings = Some(self.world.role_binding_index.clone());
        self.open(
            watch::ROLE_BINDINGS,
            &managed,
            w.role_binding,
            bindings,
            trim,
        );
        self.open(watch::ROLES, &managed, w.role, None, trim);
        self.open(watch::CLUSTER_ROLES, &managed, w.cluster_role, None, trim);
        let crbs = w.cluster_role_binding;
        self.open(watch::CLUSTER_ROLE_BINDINGS, &managed, crbs, None, trim);
        self.open(
            watch::ASSIGNABLE_ROLES,
            &assignable,
            w.assignable,
            None,
            trim,
        );
        self.open(watch::QUOTAS, &managed, w.quota, None, trim);
        self.open(watch::LIMIT_RANGES, &managed, w.limit_range, None, trim);
        self.open(
            watch::NETWORK_POLICIES,
            &managed,
            w.network_policy,
            None,
            trim,
        );
    }

    /// Watches every `K` that `config` selects into `cache` (and `index`),
    /// trimmed by `trim`, and routes each event along the routes registered
    /// for `watch`.
    fn open<K: Watched>(
        &mut self,
        watch: Watch<K>,
        config: &watcher::Config,
        cache: cache::Writer<K>,
        index: Option<Index<K>>,
        trim: fn(&mut K),
    ) {
        let routes = self.routes.take(watch);
        let world = self.world.clone();
        self.drivers.push(drive(
            watcher(Api::all(self.client.clone()), config.clone()),
            cache,
            index,
            trim,
            self.health.watch(watch.name),
            move |object: &K| {
                for route in &routes {
                    route(&world, object);
                }
            },
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
    cache: cache::Writer<K>,
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
    let mut driver = Driver {
        cache,
        index,
        health,
        route: Arc::new(route),
        before_relist: None,
        relist: None,
    };
    Box::pin(async move {
        let mut events = std::pin::pin!(
            stream
                .backoff(crate::controller::backoff::watch())
                .modify(trim)
        );
        while let Some(event) = events.next().await {
            // A page of a list is handed out without waiting: let the
            // runtime's other tasks in between.
            tokio::task::consume_budget().await;
            match event {
                Ok(event) => driver.handle(event).await,
                Err(err) => {
                    tracing::warn!(error = %err, "watch failed; retrying");
                    driver.health.failed();
                }
            }
        }
    })
}

/// One watch's state between events: its cache, its index, and during a
/// relist the cache as it was before it and the index being rebuilt.
struct Driver<K: Watched, F> {
    cache: cache::Writer<K>,
    index: Option<Index<K>>,
    health: WatchHealth,
    route: Arc<F>,
    before_relist: Option<cache::Snapshot<K>>,
    relist: Option<index::Relist<K>>,
}

impl<K, F> Driver<K, F>
where
    K: Watched,
    F: Fn(&K) + Send + Sync + 'static,
{
    async fn handle(&mut self, event: Event<K>) {
        match &event {
            Event::Apply(obj) => {
                self.cache.apply(&event);
                if let Some(index) = &self.index {
                    index.apply(obj);
                }
                (self.route)(obj);
                self.health.synced_holding(self.cache.as_reader().len());
            }
            Event::Delete(obj) => {
                self.cache.apply(&event);
                if let Some(index) = &self.index {
                    index.delete(obj);
                }
                (self.route)(obj);
                // Events flowing again after an error: the watch resumed
                // from its last version and the cache is whole.
                self.health.synced_holding(self.cache.as_reader().len());
            }
            Event::Init => {
                self.before_relist = self
                    .cache
                    .listed()
                    .then(|| self.cache.as_reader().snapshot());
                self.cache.apply(&event);
                self.relist = self.index.as_ref().map(Index::relist);
            }
            Event::InitApply(obj) => {
                self.cache.apply(&event);
                if let Some(relist) = &mut self.relist {
                    relist.add(obj);
                }
            }
            Event::InitDone => self.listed(&event).await,
        }
    }

    /// A list is complete: the index and the cache swap it in, and after a
    /// relist every object cached before or after it is routed.
    async fn listed(&mut self, done: &Event<K>) {
        // The index first: the cache marks itself ready, and a controller
        // waiting for that must find the index whole.
        if let (Some(index), Some(fresh)) = (&self.index, self.relist.take()) {
            index.replace(fresh);
        }
        self.cache.apply(done);
        if let Some(before) = self.before_relist.take() {
            self.health.restarted();
            let after = self.cache.as_reader().snapshot();
            let route = self.route.clone();
            let routed = tokio::task::spawn_blocking(move || {
                for obj in before.chain(after) {
                    route(&obj);
                }
            });
            if let Err(err) = routed.await {
                tracing::error!(error = %err, "routing a relist failed");
            }
        }
        self.health.synced_holding(self.cache.as_reader().len());
    }
}
