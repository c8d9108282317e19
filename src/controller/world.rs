//! The operator's view of the cluster: one watch per kind, each filling a
//! compact cache, and each event routed to the controllers it concerns.
//!
//! Controllers read these caches instead of the API server, so a reconcile
//! makes no reads, and a converged cluster costs nothing but open watches.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cache::{self, Cache};
use super::index::{self, Index};
use super::{directory, labels, member, transfer};
use crate::api::{
    AccountRef, MemberPhase, Organization, Workspace, WorkspaceMember, WorkspacePhase,
    WorkspaceTransfer,
};
use crate::health::{Health, WatchHealth};

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
    /// Open transfers by workspace and by account
    /// ([`transfer::triggers::index_keys`]).
    transfer_index: Index<WorkspaceTransfer>,
    /// Workspaces by owner and by namespace ([`index::workspace_keys`]).
    workspace_index: Index<Workspace>,
    /// Members by namespace, ServiceAccount namespace, custom role
    /// ([`index::member_keys`]) and directory entry ([`directory::member_keys`]).
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

    /// The WorkspaceMembers whose subject the directory entry `name` lists.
    pub fn members_listed_as(&self, name: &str) -> Vec<Arc<WorkspaceMember>> {
        self.member_index
            .lookup(&self.members, name)
            .into_iter()
            .filter(|m| directory::index_key(m) == name)
            .collect()
    }

    /// The open WorkspaceTransfers filed under `key` ([`transfer::triggers`]).
    pub fn transfers_under(&self, key: &str) -> Vec<Arc<WorkspaceTransfer>> {
        self.transfer_index.lookup(&self.transfers, key)
    }

    /// The open WorkspaceTransfers of the Workspace `workspace`.
    pub fn transfers_of(&self, workspace: &str) -> Vec<Arc<WorkspaceTransfer>> {
        self.transfers_under(&transfer::triggers::of_workspace(workspace))
            .into_iter()
            .filter(|t| t.spec.workspace == workspace)
            .collect()
    }

    /// The managed RoleBindings in `namespace`.
    pub fn role_bindings_in(&self, namespace: &str) -> Vec<Arc<RoleBinding>> {
        self.role_binding_index
            .lookup(&self.role_bindings, &index::in_namespace(namespace))
    }
}

/// Reconcile triggers, one stream per controller.
pub struct Triggers {
    /// Workspaces to reconcile.
    pub workspaces: UnboundedReceiver<ObjectRef<Workspace>>,
    /// WorkspaceMembers to reconcile.
    pub members: UnboundedReceiver<ObjectRef<WorkspaceMember>>,
    /// Organizations to reconcile.
    pub organizations: UnboundedReceiver<ObjectRef<Organization>>,
    /// WorkspaceTransfers to reconcile.
    pub transfers: UnboundedReceiver<ObjectRef<WorkspaceTransfer>>,
    /// Directory entries to reconcile (by name).
    pub directory: UnboundedReceiver<ObjectRef<Role>>,
}

/// The future that drives every watch; it ends only if a watch ends.
pub type Drivers = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a watch event should trigger reconciles.
#[derive(Clone)]
struct Router {
    world: World,
    to_workspaces: UnboundedSender<ObjectRef<Workspace>>,
    to_members: UnboundedSender<ObjectRef<WorkspaceMember>>,
    to_organizations: UnboundedSender<ObjectRef<Organization>>,
    to_transfers: UnboundedSender<ObjectRef<WorkspaceTransfer>>,
    to_directory: UnboundedSender<ObjectRef<Role>>,
}

impl Router {
    /// Queues the transfer controller's reconciles of `names`.
    fn transfers(&self, names: Vec<String>) {
        for name in names {
            let _ = self.to_transfers.unbounded_send(ObjectRef::new(&name));
        }
    }

    /// A transfer: the transfer controller decides which transfers it
    /// concerns; the members of its workspace are judged against its target
    /// while it runs.
    fn on_transfer(&self, t: &WorkspaceTransfer) {
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
    fn directory(&self, entry: ObjectRef<Role>) {
        let _ = self.to_directory.unbounded_send(entry);
    }

    /// A managed Role: a directory entry's, or an invitee's answering grant.
    fn on_role(&self, role: &Role) {
        match directory::entry_of(role) {
            Some(entry) => self.directory(entry),
            None => self.on_invitation_grant(role),
        }
    }

    fn organization(&self, name: &str) {
        let _ = self.to_organizations.unbounded_send(ObjectRef::new(name));
    }

    fn workspace(&self, name: &str) {
        // A closed channel means the controller is stopping; nothing to do.
        let _ = self.to_workspaces.unbounded_send(ObjectRef::new(name));
    }

    fn member(&self, namespace: &str, name: &str) {
        let _ = self
            .to_members
            .unbounded_send(ObjectRef::new(name).within(namespace));
    }

    /// Triggers the members in `namespace` that `pick` selects.
    fn members_in(&self, namespace: &str, pick: impl Fn(&WorkspaceMember) -> bool) {
        for m in self.world.members_in(namespace) {
            if pick(&m) {
                self.member(namespace, &m.name_any());
            }
        }
    }

    /// Members of a workspace, and ServiceAccount members anywhere whose
    /// ServiceAccount lives in it (organization membership of a ServiceAccount
    /// depends on which workspaces its namespace belongs to).
    fn members_of_workspace(&self, ws: &Workspace) {
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
    fn workspaces_of_namespace(
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
    fn blocked_workspaces_of(&self, owner: &AccountRef) -> Vec<String> {
        self.world
            .waiting_workspaces_of(owner)
            .iter()
            .map(|ws| ws.name_any())
            .collect()
    }

    fn on_workspace(&self, ws: &Workspace) {
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

    fn on_organization(&self, org: &Organization) {
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
    fn on_namespace(&self, ns: &PartialObjectMeta<Namespace>) {
        let name = ns.name_any();
        for ws in self.workspaces_of_namespace(&name, named_by(ns)) {
            self.workspace(&ws);
        }
        self.members_in(&name, |_| true);
    }

    /// A member, the other members of the same subject (one of them may win
    /// or lose `DuplicateSubject` now) and the members of the namespace still
    /// waiting for access (a slot under the member limit may have opened).
    fn on_member(&self, changed: &WorkspaceMember) {
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
    fn on_role_binding(&self, rb: &RoleBinding) {
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
    fn on_invitation_grant<K: Resource>(&self, grant: &K) {
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
    fn on_assignable_role(&self, role: &ClusterRole) {
        for m in self.world.members_given(&role.name_any()) {
            if let Some(ns) = m.meta().namespace.as_deref() {
                self.member(ns, &m.name_any());
            }
        }
    }

    /// A child carries the name of its Workspace (or Organization) as a label.
    fn on_child<K: Resource>(&self, child: &K) {
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

impl World {
    /// Opens one watch per kind. Returns the caches, the future that drives
    /// the watches (it must be polled for anything to happen) and the trigger
    /// streams of the controllers.
    pub fn start(client: Client, health: &Health) -> (World, Drivers, Triggers) {
        let (workspaces, ws_writer) = cache::cache::<Workspace>();
        let (organizations, org_writer) = cache::cache::<Organization>();
        let (members, member_writer) = cache::cache::<WorkspaceMember>();
        let (namespaces, ns_writer) = cache::cache::<PartialObjectMeta<Namespace>>();
        let (role_bindings, rb_writer) = cache::cache::<RoleBinding>();
        let (roles, role_writer) = cache::cache::<Role>();
        let (cluster_roles, cr_writer) = cache::cache::<ClusterRole>();
        let (cluster_role_bindings, crb_writer) = cache::cache::<ClusterRoleBinding>();
        let (assignable_roles, assignable_writer) = cache::cache::<ClusterRole>();
        let (quotas, quota_writer) = cache::cache::<ResourceQuota>();
        let (limit_ranges, limit_range_writer) = cache::cache::<LimitRange>();
        let (network_policies, network_policy_writer) = cache::cache::<NetworkPolicy>();
        let (transfers, transfer_writer) = cache::cache::<WorkspaceTransfer>();
        let (to_transfers, transfer_triggers) = unbounded();
        let (to_workspaces, workspace_triggers) = unbounded();
        let (to_members, member_triggers) = unbounded();
        let (to_organizations, organization_triggers) = unbounded();
        let (to_directory, directory_triggers) = unbounded();
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
            transfer_index: Index::new(transfer::triggers::index_keys),
            workspace_index: Index::new(index::workspace_keys),
            member_index: Index::new(directory::member_keys),
            role_binding_index: Index::new(index::namespace_keys::<RoleBinding>),
        };
        let router = Router {
            world: world.clone(),
            to_workspaces,
            to_members,
            to_organizations,
            to_transfers,
            to_directory,
        };

        let all = watcher::Config::default()
            .any_semantic()
            .page_size(LIST_PAGE);
        let managed = watcher::Config::default()
            .any_semantic()
            .page_size(LIST_PAGE)
            .labels(labels::MANAGED_SELECTOR);
        let assignable = watcher::Config::default()
            .any_semantic()
            .page_size(LIST_PAGE)
            .labels(labels::ASSIGNABLE_SELECTOR);

        let all_transfers = all.clone();
        let drivers: Vec<Drivers> = vec![
            drive(
                watcher(Api::all(client.clone()), all.clone()),
                ws_writer,
                Some(world.workspace_index.clone()),
                trim,
                health.watch("workspaces"),
                {
                    let r = router.clone();
                    move |ws: &Workspace| r.on_workspace(ws)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), all.clone()),
                org_writer,
                None,
                trim,
                health.watch("organizations"),
                {
                    let r = router.clone();
                    move |org: &Organization| r.on_organization(org)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), all.clone()),
                member_writer,
                Some(world.member_index.clone()),
                trim,
                health.watch("workspacemembers"),
                {
                    let r = router.clone();
                    move |m: &WorkspaceMember| r.on_member(m)
                },
            ),
            drive(
                watcher(
                    Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                    all,
                ),
                ns_writer,
                None,
                trim_namespace,
                health.watch("namespaces"),
                {
                    let r = router.clone();
                    move |ns: &PartialObjectMeta<Namespace>| r.on_namespace(ns)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), managed.clone()),
                rb_writer,
                Some(world.role_binding_index.clone()),
                trim,
                health.watch("rolebindings"),
                {
                    let r = router.clone();
                    move |rb: &RoleBinding| r.on_role_binding(rb)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), managed.clone()),
                role_writer,
                None,
                trim,
                health.watch("roles"),
                {
                    let r = router.clone();
                    move |role: &Role| r.on_role(role)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), managed.clone()),
                cr_writer,
                None,
                trim,
                health.watch("clusterroles"),
                {
                    let r = router.clone();
                    move |cr: &ClusterRole| r.on_child(cr)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), managed.clone()),
                crb_writer,
                None,
                trim,
                health.watch("clusterrolebindings"),
                {
                    let r = router.clone();
                    move |crb: &ClusterRoleBinding| r.on_child(crb)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), assignable),
                assignable_writer,
                None,
                trim,
                health.watch("assignable-clusterroles"),
                {
                    let r = router.clone();
                    move |cr: &ClusterRole| r.on_assignable_role(cr)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), managed.clone()),
                quota_writer,
                None,
                trim,
                health.watch("resourcequotas"),
                {
                    let r = router.clone();
                    move |q: &ResourceQuota| r.on_child(q)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), managed.clone()),
                limit_range_writer,
                None,
                trim,
                health.watch("limitranges"),
                {
                    let r = router.clone();
                    move |l: &LimitRange| r.on_child(l)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), managed.clone()),
                network_policy_writer,
                None,
                trim,
                health.watch("networkpolicies"),
                {
                    let r = router.clone();
                    move |n: &NetworkPolicy| r.on_child(n)
                },
            ),
            drive(
                watcher(Api::all(client.clone()), all_transfers),
                transfer_writer,
                Some(world.transfer_index.clone()),
                trim,
                health.watch("workspacetransfers"),
                {
                    let r = router.clone();
                    move |t: &WorkspaceTransfer| r.on_transfer(t)
                },
            ),
        ];
        let drivers: Drivers = Box::pin(async move {
            future::select_all(drivers).await;
        });
        (
            world,
            drivers,
            Triggers {
                workspaces: workspace_triggers,
                members: member_triggers,
                organizations: organization_triggers,
                transfers: transfer_triggers,
                directory: directory_triggers,
            },
        )
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

/// What no reconcile reads, dropped from every cached object:
/// `managedFields` and kubectl's copy of the last applied object.
fn trim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A namespace is cached with only the labels and annotations the operator
/// reads (its own, the admin's adopt request, managed-by): a cluster's
/// namespaces carry many others, and every namespace is cached.
fn trim_namespace(ns: &mut PartialObjectMeta<Namespace>) {
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
const LIST_PAGE: u32 = 100;

/// kubectl's client-side apply annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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
fn drive<K, S, F>(
    stream: S,
    mut cache: cache::Writer<K>,
    index: Option<Index<K>>,
    trim: fn(&mut K),
    health: WatchHealth,
    route: F,
) -> Drivers
where
    K: Resource<DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    S: futures::Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
    F: Fn(&K) + Send + Sync + 'static,
{
    let route = Arc::new(route);
    Box::pin(async move {
        let mut events = std::pin::pin!(stream.default_backoff().modify(trim));
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
                    health.synced();
                }
                Event::Delete(obj) => {
                    cache.apply(&event);
                    if let Some(index) = &index {
                        index.delete(obj);
                    }
                    route(obj);
                    // Events flowing again after an error: the watch
                    // resumed from its last version and the cache is whole.
                    health.synced();
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
                    health.synced();
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    use crate::controller::index::tests::{binding, names};

    /// Feeds `events` to a watch driver; returns what it routed, and the
    /// cache and index it filled.
    async fn drive_events(
        events: Vec<Event<RoleBinding>>,
    ) -> (Vec<String>, Cache<RoleBinding>, Index<RoleBinding>) {
        let (reader, writer) = cache::cache::<RoleBinding>();
        let index = Index::new(index::namespace_keys::<RoleBinding>);
        let routed = Arc::new(Mutex::new(Vec::new()));
        let health = Health::new();
        let driver = drive(
            futures::stream::iter(events.into_iter().map(Ok)),
            writer,
            Some(index.clone()),
            trim,
            health.watch("rolebindings"),
            {
                let routed = routed.clone();
                move |rb: &RoleBinding| routed.lock().unwrap().push(rb.name_any())
            },
        );
        driver.await;
        let mut routed = routed.lock().unwrap().clone();
        routed.sort();
        (routed, reader, index)
    }

    #[tokio::test]
    async fn a_long_run_of_events_lets_other_tasks_in() {
        // A page of a list, or a burst of changes, arrives without the
        // stream ever waiting; the driver must still yield to the runtime
        // (on this single-threaded runtime, the other task runs only then).
        let other_ran = Arc::new(AtomicBool::new(false));
        tokio::spawn({
            let other_ran = other_ran.clone();
            async move { other_ran.store(true, SeqCst) }
        });
        let seen_before_last = Arc::new(AtomicBool::new(false));
        let (_, writer) = cache::cache::<RoleBinding>();
        let events = (0..1_000).map(|i| Ok(Event::Apply(binding("a", &format!("rb-{i}")))));
        let driver = drive(
            futures::stream::iter(events),
            writer,
            None,
            trim,
            Health::new().watch("rolebindings"),
            {
                let (other_ran, seen) = (other_ran.clone(), seen_before_last.clone());
                move |rb: &RoleBinding| {
                    if rb.name_any() == "rb-999" {
                        seen.store(other_ran.load(SeqCst), SeqCst);
                    }
                }
            },
        );
        driver.await;
        assert!(
            seen_before_last.load(SeqCst),
            "the other task never ran while the driver worked through 1,000 events"
        );
    }

    #[tokio::test]
    async fn the_first_list_is_indexed_but_not_routed() {
        let (routed, cache, index) = drive_events(vec![
            Event::Init,
            Event::InitApply(binding("a", "x")),
            Event::InitApply(binding("b", "y")),
            Event::InitDone,
            Event::Apply(binding("a", "z")),
        ])
        .await;
        assert_eq!(routed, ["z"], "only what changed after the list");
        assert_eq!(
            names(&index.lookup(&cache, &index::in_namespace("a"))),
            ["x", "z"]
        );
    }

    #[tokio::test]
    async fn a_relist_routes_what_was_cached_before_and_after_it() {
        let (routed, cache, index) = drive_events(vec![
            Event::Init,
            Event::InitApply(binding("a", "gone")),
            Event::InitApply(binding("a", "kept")),
            Event::InitDone,
            // The watch restarts: "gone" was deleted while it was down.
            Event::Init,
            Event::InitApply(binding("a", "kept")),
            Event::InitApply(binding("b", "new")),
            Event::InitDone,
        ])
        .await;
        assert_eq!(routed, ["gone", "kept", "kept", "new"]);
        assert!(cache.get(&ObjectRef::new("gone").within("a")).is_none());
        assert_eq!(
            names(&index.lookup(&cache, &index::in_namespace("b"))),
            ["new"]
        );
    }

    /// A World with nothing cached, and no watch behind it.
    fn empty_world() -> World {
        World {
            workspaces: cache::cache().0,
            organizations: cache::cache().0,
            members: cache::cache().0,
            namespaces: cache::cache().0,
            role_bindings: cache::cache().0,
            roles: cache::cache().0,
            cluster_roles: cache::cache().0,
            cluster_role_bindings: cache::cache().0,
            assignable_roles: cache::cache().0,
            quotas: cache::cache().0,
            limit_ranges: cache::cache().0,
            network_policies: cache::cache().0,
            transfers: cache::cache().0,
            transfer_index: Index::new(transfer::triggers::index_keys),
            workspace_index: Index::new(index::workspace_keys),
            member_index: Index::new(directory::member_keys),
            role_binding_index: Index::new(index::namespace_keys::<RoleBinding>),
        }
    }

    #[test]
    fn a_deleted_namespace_is_routed_to_the_workspace_its_label_names() {
        let (to_workspaces, mut workspaces) = unbounded();
        let router = Router {
            world: empty_world(),
            to_workspaces,
            to_members: unbounded().0,
            to_organizations: unbounded().0,
            to_transfers: unbounded().0,
            to_directory: unbounded().0,
        };
        // The delete event's copy: the cache has dropped the namespace
        // already, and no cached Workspace names it in its spec.
        let mut ns = PartialObjectMeta::<Namespace>::default();
        ns.metadata.name = Some("team-ns".into());
        ns.metadata.labels = Some([(labels::WORKSPACE.to_string(), "team".to_string())].into());
        router.on_namespace(&ns);
        let routed: Vec<String> = std::iter::from_fn(|| workspaces.try_recv().ok())
            .map(|at| at.name)
            .collect();
        assert_eq!(routed, ["team"]);
    }
}
