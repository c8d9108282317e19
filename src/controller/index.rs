//! Secondary indexes over the caches: the names of the cached
//! objects grouped by a key (a namespace, an owner, a role), kept current by
//! the watch that fills the store.
//!
//! Every event and every reconcile concerns a handful of objects: the members
//! of one namespace, the workspaces of one owner. Scanning the whole store for
//! them makes the operator's CPU grow with the square of the number of
//! workspaces; an index makes each lookup cost what it returns.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cache::Cache;

use crate::api::{AccountRef, SubjectKind, Workspace, WorkspaceMember, WorkspacePhase};

/// The keys an object is filed under.
pub type KeyFn<K> = fn(&K) -> Vec<String>;

/// `(namespace, name)` of a cached object, ordered so lookups are
/// deterministic. Boxed strings: an index holds one or more per cached
/// object, and most keys file one to three objects.
type Slot = (Option<Box<str>>, Box<str>);

/// Names of cached objects by key. Cloning shares the same index.
pub struct Index<K> {
    keys: Keys<K>,
    inner: Arc<RwLock<Inner>>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        Index {
            keys: self.keys.clone(),
            inner: self.inner.clone(),
        }
    }
}

/// The key functions of an index: an object is filed under the keys of
/// every one (the shared layer's, and those a controller registered).
struct Keys<K>(Arc<[KeyFn<K>]>);

impl<K> Clone for Keys<K> {
    fn clone(&self) -> Self {
        Keys(self.0.clone())
    }
}

impl<K> Keys<K> {
    fn of(&self, obj: &K) -> Vec<String> {
        match &*self.0 {
            [only] => only(obj),
            all => all.iter().flat_map(|keys| keys(obj)).collect(),
        }
    }
}

/// The slots filed under each key (sorted, no duplicates: a sorted vector
/// costs a fraction of a B-tree node for the few slots most keys hold), and
/// the keys of each slot (to refile or forget it).
#[derive(Default)]
struct Inner {
    by_key: HashMap<Box<str>, Vec<Slot>>,
    keys_of: HashMap<Slot, Box<[Box<str>]>>,
}

impl Inner {
    fn remove(&mut self, slot: &Slot) {
        for key in self.keys_of.remove(slot).unwrap_or_default() {
            if let Some(slots) = self.by_key.get_mut(&key) {
                if let Ok(at) = slots.binary_search(slot) {
                    slots.remove(at);
                }
                if slots.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    fn insert(&mut self, slot: Slot, keys: Vec<String>) {
        self.remove(&slot);
        if keys.is_empty() {
            return;
        }
        let keys: Box<[Box<str>]> = keys.into_iter().map(String::into_boxed_str).collect();
        for key in &keys {
            let slots = self.by_key.entry(key.clone()).or_default();
            if let Err(at) = slots.binary_search(&slot) {
                slots.insert(at, slot.clone());
            }
        }
        self.keys_of.insert(slot, keys);
    }
}

fn slot<K: Resource>(obj: &K) -> Slot {
    let meta = obj.meta();
    (
        meta.namespace.as_deref().map(Box::from),
        Box::from(meta.name.as_deref().unwrap_or_default()),
    )
}

impl<K> Index<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
{
    /// An empty index filing objects under `keys`.
    pub fn new(keys: KeyFn<K>) -> Self {
        Index::filing(vec![keys])
    }

    /// An empty index filing objects under the keys of every one of `keys`.
    pub fn filing(keys: Vec<KeyFn<K>>) -> Self {
        Index {
            keys: Keys(keys.into()),
            inner: Arc::default(),
        }
    }

    /// Files (or refiles) an object that was added or changed.
    pub fn apply(&self, obj: &K) {
        let keys = self.keys.of(obj);
        self.write().insert(slot(obj), keys);
    }

    /// Forgets a deleted object.
    pub fn delete(&self, obj: &K) {
        self.write().remove(&slot(obj));
    }

    /// A fresh index to fill with the objects of a (re)list as they arrive;
    /// [`Index::replace`] swaps it in when the list is complete.
    pub fn relist(&self) -> Relist<K> {
        Relist {
            keys: self.keys.clone(),
            fresh: Inner::default(),
        }
    }

    /// Replaces the whole index with a completed relist.
    pub fn replace(&self, relist: Relist<K>) {
        *self.write() = relist.fresh;
    }

    /// The cached objects filed under `key`, ordered by namespace and name.
    /// An object deleted from the store a moment ago is left out.
    pub fn lookup(&self, store: &Cache<K>, key: &str) -> Vec<Arc<K>> {
        let slots: Vec<Slot> = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .by_key
            .get(key)
            .cloned()
            .unwrap_or_default();
        slots
            .into_iter()
            .filter_map(|(namespace, name)| {
                let mut at = ObjectRef::new(&name);
                if let Some(ns) = namespace {
                    at = at.within(&ns);
                }
                store.get(&at)
            })
            .collect()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An index being built from a list, object by object (filing an object
/// from the list event costs no decode).
pub struct Relist<K> {
    keys: Keys<K>,
    fresh: Inner,
}

impl<K: Resource> Relist<K> {
    /// Files one listed object.
    pub fn add(&mut self, obj: &K) {
        self.fresh.insert(slot(obj), self.keys.of(obj));
    }
}

/// Key of the objects in (or naming) a namespace.
pub fn in_namespace(namespace: &str) -> String {
    format!("ns/{namespace}")
}

/// Key of the Workspaces of an owner.
pub fn owned_by(owner: &AccountRef) -> String {
    format!("owner/{:?}/{}", owner.kind, owner.name)
}

/// Key of the Workspaces of an owner that are not Active (waiting on a
/// handle, a limit, their namespace or their owner).
pub fn waiting_of(owner: &AccountRef) -> String {
    format!("waiting/{:?}/{}", owner.kind, owner.name)
}

/// Key of the members whose subject is a ServiceAccount of a namespace.
pub fn service_accounts_of(namespace: &str) -> String {
    format!("sa/{namespace}")
}

/// Key of the members given a custom ClusterRole.
pub fn given_role(cluster_role: &str) -> String {
    format!("role/{cluster_role}")
}

/// The namespaces of a Workspace: the one its spec names and the one its
/// status reports (the same once it is provisioned; spec.namespace is
/// immutable).
pub fn namespaces_of(ws: &Workspace) -> Vec<&str> {
    let name = ws.meta().name.as_deref().unwrap_or_default();
    let mut namespaces = vec![ws.spec.effective_namespace(name)];
    if let Some(ns) = ws.status.as_ref().and_then(|s| s.namespace.as_deref()) {
        if !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
    }
    namespaces
}

/// A Workspace is filed under its owner, its namespaces ([`namespaces_of`])
/// and, while it is not Active, under its owner's waiting workspaces.
pub fn workspace_keys(ws: &Workspace) -> Vec<String> {
    let active = ws.status.as_ref().and_then(|s| s.phase) == Some(WorkspacePhase::Active);
    std::iter::once(owned_by(&ws.spec.owner))
        .chain((!active).then(|| waiting_of(&ws.spec.owner)))
        .chain(namespaces_of(ws).into_iter().map(in_namespace))
        .collect()
}

/// A member is filed under its namespace, the namespace of its ServiceAccount
/// subject, and its custom ClusterRole.
pub fn member_keys(m: &WorkspaceMember) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Some(ns) = m.meta().namespace.as_deref() {
        keys.push(in_namespace(ns));
    }
    if m.spec.subject.kind == SubjectKind::ServiceAccount {
        if let Some(ns) = m.spec.subject.namespace_name() {
            keys.push(service_accounts_of(ns));
        }
    }
    if let Some(role) = m.spec.cluster_role_name() {
        keys.push(given_role(role));
    }
    keys
}

/// A namespaced object is filed under its namespace.
pub fn namespace_keys<K: Resource>(obj: &K) -> Vec<String> {
    obj.meta()
        .namespace
        .as_deref()
        .map(in_namespace)
        .into_iter()
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::controller::cache;
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use kube::runtime::watcher::Event;

    /// A RoleBinding with only a namespace and a name.
    pub(in crate::controller) fn binding(ns: &str, name: &str) -> RoleBinding {
        let mut rb = RoleBinding::default();
        rb.metadata.namespace = Some(ns.into());
        rb.metadata.name = Some(name.into());
        rb
    }

    /// The names of the bindings found, in order.
    pub(in crate::controller) fn names(found: &[Arc<RoleBinding>]) -> Vec<String> {
        found
            .iter()
            .map(|rb| rb.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn lookups_follow_adds_moves_and_deletes() {
        let (store, mut writer) = cache::cache::<RoleBinding>();
        let index = Index::new(namespace_keys::<RoleBinding>);
        for rb in [binding("a", "y"), binding("a", "x"), binding("b", "z")] {
            writer.apply(&Event::Apply(rb.clone()));
            index.apply(&rb);
        }
        assert_eq!(names(&index.lookup(&store, "ns/a")), ["x", "y"]);
        assert_eq!(names(&index.lookup(&store, "ns/b")), ["z"]);
        assert!(index.lookup(&store, "ns/c").is_empty());

        index.delete(&binding("a", "x"));
        writer.apply(&Event::Delete(binding("a", "x")));
        assert_eq!(names(&index.lookup(&store, "ns/a")), ["y"]);

        // Gone from the store but not yet from the index: left out.
        writer.apply(&Event::Delete(binding("a", "y")));
        assert!(index.lookup(&store, "ns/a").is_empty());

        // A relist replaces everything, once complete.
        let mut relist = index.relist();
        relist.add(&binding("c", "w"));
        assert_eq!(names(&index.lookup(&store, "ns/b")), ["z"]);
        index.replace(relist);
        writer.apply(&Event::Apply(binding("c", "w")));
        assert!(!index.inner.read().unwrap().by_key.contains_key("ns/a"));
        assert!(index.lookup(&store, "ns/b").is_empty());
        assert_eq!(names(&index.lookup(&store, "ns/c")), ["w"]);
    }

    #[test]
    fn a_workspace_waits_under_its_owner_until_it_is_active() {
        use crate::api::{WorkspaceSpec, WorkspaceStatus};
        let owner = AccountRef::organization("acme");
        let mut ws = Workspace::new("prod", WorkspaceSpec::owned_by(owner.clone()));
        let waiting = waiting_of(&owner);
        assert!(workspace_keys(&ws).contains(&waiting));
        ws.status = Some(WorkspaceStatus {
            phase: Some(WorkspacePhase::Pending),
            ..Default::default()
        });
        assert!(workspace_keys(&ws).contains(&waiting));
        ws.status = Some(WorkspaceStatus {
            phase: Some(WorkspacePhase::Active),
            ..Default::default()
        });
        assert_eq!(
            workspace_keys(&ws),
            [owned_by(&owner), in_namespace("prod")]
        );
    }

    #[test]
    fn a_changed_object_is_refiled() {
        let index = Index::new(|rb: &RoleBinding| {
            rb.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("k"))
                .map(|v| vec![v.clone()])
                .unwrap_or_default()
        });
        let mut rb = binding("a", "x");
        rb.metadata.labels = Some([("k".to_string(), "one".to_string())].into());
        index.apply(&rb);
        rb.metadata.labels = Some([("k".to_string(), "two".to_string())].into());
        index.apply(&rb);
        let inner = index.inner.read().unwrap();
        assert!(!inner.by_key.contains_key("one"));
        assert_eq!(inner.by_key["two"].len(), 1);
    }
}
