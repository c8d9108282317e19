//! The operator's cache of what it watches. Each object is kept as its
//! JSON, compressed against a dictionary, and decoded when it is read.
//!
//! A typed object in a reflector store costs about 2 KiB of heap whatever
//! its content (the inline `ObjectMeta`, a B-tree node for its labels, one
//! allocation per string, and a store key repeating name, namespace, UID and
//! resourceVersion). The objects the operator writes are small and alike:
//! compressed with LZ4 against the JSON of the first object of the same kind
//! the cache held, a RoleBinding takes about 170 bytes. Reading one costs a
//! decompression and a JSON decode (a few microseconds): the operator reads
//! objects by name or a handful at a time through its indexes.
//!
//! The cache holds exactly what it was given: objects are trimmed before
//! they are cached (`world::trim`), not here.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock, RwLock};

use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest dictionary kept: an object larger than this contributes its
/// first bytes (LZ4 looks back at most 64 KiB).
const MAX_DICTIONARY: usize = 16 * 1024;

/// Encoded objects by `namespace/name` (or `name` for a cluster-scoped kind:
/// neither part of a key can hold a `/`).
type Objects = HashMap<Box<str>, Arc<[u8]>>;

struct Shared {
    objects: RwLock<Objects>,
    /// The JSON of the first object encoded; every object is compressed
    /// against it, so it never changes.
    dictionary: OnceLock<Box<[u8]>>,
    /// True once a complete list has been cached.
    ready: tokio::sync::watch::Sender<bool>,
    /// Counts the changes applied (an object added, changed or deleted, a
    /// list swapped in): what [`Cache::wait_for`] wakes on.
    changes: tokio::sync::watch::Sender<u64>,
}

/// Read side of a compact cache. Cloning shares the same cache.
pub struct Cache<K> {
    shared: Arc<Shared>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            shared: self.shared.clone(),
            kind: PhantomData,
        }
    }
}

/// Write side of a compact cache: applies watch events.
pub struct Writer<K> {
    cache: Cache<K>,
    /// Objects of a list in progress; swapped in whole when it completes.
    listing: Option<Objects>,
}

/// The cache and its writer.
pub fn cache<K>() -> (Cache<K>, Writer<K>) {
    let cache = Cache {
        shared: Arc::new(Shared {
            objects: RwLock::default(),
            dictionary: OnceLock::new(),
            ready: tokio::sync::watch::Sender::new(false),
            changes: tokio::sync::watch::Sender::new(0),
        }),
        kind: PhantomData,
    };
    let writer = Writer {
        cache: cache.clone(),
        listing: None,
    };
    (cache, writer)
}

fn key(namespace: Option<&str>, name: &str) -> Box<str> {
    match namespace {
        Some(ns) => format!("{ns}/{name}").into_boxed_str(),
        None => Box::from(name),
    }
}

impl<K> Cache<K>
where
    K: Resource + Serialize + DeserializeOwned,
{
    fn encode(&self, obj: &K) -> Option<Arc<[u8]>> {
        let json = match serde_json::to_vec(obj) {
            Ok(json) => json,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode an object to cache it");
                return None;
            }
        };
        let dictionary = self
            .shared
            .dictionary
            .get_or_init(|| json[..json.len().min(MAX_DICTIONARY)].into());
        Some(lz4_flex::block::compress_prepend_size_with_dict(&json, dictionary).into())
    }

    fn decode(&self, blob: &[u8]) -> Option<K> {
        let dictionary = self.shared.dictionary.get()?;
        let decoded = lz4_flex::block::decompress_size_prepended_with_dict(blob, dictionary)
            .map_err(|err| err.to_string())
            .and_then(|json| serde_json::from_slice(&json).map_err(|err| err.to_string()));
        match decoded {
            Ok(obj) => Some(obj),
            Err(error) => {
                // Cannot happen for what `encode` wrote; reading it as absent
                // makes the operator apply the object again, never delete.
                tracing::error!(%error, "cannot decode a cached object");
                None
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Objects> {
        self.shared
            .objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached object at `at`, if any.
    pub fn get(&self, at: &ObjectRef<K>) -> Option<Arc<K>> {
        let blob = self
            .read()
            .get(&*key(at.namespace.as_deref(), &at.name))
            .cloned()?;
        self.decode(&blob).map(Arc::new)
    }

    /// Where every cached object is.
    pub fn refs(&self) -> Vec<ObjectRef<K>>
    where
        K: Resource<DynamicType = ()>,
    {
        self.read()
            .keys()
            .map(|key| match key.split_once('/') {
                Some((ns, name)) => ObjectRef::new(name).within(ns),
                None => ObjectRef::new(key),
            })
            .collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every cached object as it is now, decoded one at a time as the
    /// snapshot is iterated (taking it copies no object).
    pub fn snapshot(&self) -> Snapshot<K> {
        Snapshot {
            cache: self.clone(),
            blobs: self
                .read()
                .values()
                .cloned()
                .collect::<Vec<_>>()
                .into_iter(),
        }
    }

    /// Waits until the cache holds a complete list.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.shared.ready.subscribe();
        // The sender lives as long as this cache.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Waits until the object at `at` is cached and `check` holds for it, at
    /// most `timeout`; returns whether it did. The object is read again only
    /// when a change is applied to the cache, never polled.
    pub async fn wait_for(
        &self,
        at: &ObjectRef<K>,
        timeout: std::time::Duration,
        check: impl Fn(&K) -> bool,
    ) -> bool {
        // Subscribed before the first look, so no change in between is missed.
        let mut changes = self.shared.changes.subscribe();
        let holds = || self.get(at).is_some_and(|obj| check(&obj));
        let wait = async {
            while !holds() {
                // The sender lives as long as this cache.
                if changes.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Bytes held by the encoded objects (not counting the map itself).
    pub fn encoded_bytes(&self) -> usize {
        self.read().values().map(|blob| blob.len()).sum()
    }
}

/// The objects of a cache at one moment, decoded as they are iterated.
pub struct Snapshot<K> {
    cache: Cache<K>,
    blobs: std::vec::IntoIter<Arc<[u8]>>,
}

impl<K> Iterator for Snapshot<K>
where
    K: Resource + Serialize + DeserializeOwned,
{
    type Item = Arc<K>;

    fn next(&mut self) -> Option<Arc<K>> {
        loop {
            let blob = self.blobs.next()?;
            if let Some(obj) = self.cache.decode(&blob) {
                return Some(Arc::new(obj));
            }
        }
    }
}

impl<K> Writer<K>
where
    K: Resource + Serialize + DeserializeOwned,
{
    /// The cache this writer fills.
    pub fn as_reader(&self) -> Cache<K> {
        self.cache.clone()
    }

    /// Whether a complete list has been cached (so the next list is a
    /// relist).
    pub fn listed(&self) -> bool {
        *self.cache.shared.ready.borrow()
    }

    /// Applies one watch event, as a reflector store does: an object added,
    /// changed or deleted; or a (re)list, whose objects replace the whole
    /// cache when it completes.
    pub fn apply(&mut self, event: &Event<K>) {
        match event {
            Event::Apply(obj) => {
                if let Some(blob) = self.cache.encode(obj) {
                    self.write().insert(key_of(obj), blob);
                    self.changed();
                }
            }
            Event::Delete(obj) => {
                self.write().remove(&key_of(obj));
                self.changed();
            }
            Event::Init => self.listing = Some(Objects::new()),
            Event::InitApply(obj) => {
                if let Some(blob) = self.cache.encode(obj) {
                    self.listing
                        .get_or_insert_default()
                        .insert(key_of(obj), blob);
                }
            }
            Event::InitDone => {
                let mut listed = self.listing.take().unwrap_or_default();
                listed.shrink_to_fit();
                *self.write() = listed;
                self.changed();
                self.cache.shared.ready.send_replace(true);
            }
        }
    }

    /// Wakes whoever waits for a change ([`Cache::wait_for`]).
    fn changed(&self) {
        self.cache
            .shared
            .changes
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        self.cache
            .shared
            .objects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn key_of<K: Resource>(obj: &K) -> Box<str> {
    let meta = obj.meta();
    key(
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn binding(ns: &str, name: &str, user: &str) -> RoleBinding {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                uid: Some(format!("uid-{ns}-{name}")),
                resource_version: Some("42".into()),
                labels: Some(
                    [
                        ("app.kubernetes.io/managed-by", "workspace-operator"),
                        ("workspaces.dev/workspace", ns),
                    ]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into(),
                ),
                owner_references: Some(vec![OwnerReference {
                    api_version: "workspaces.dev/v1alpha1".into(),
                    kind: "Workspace".into(),
                    name: ns.into(),
                    uid: format!("uid-{ns}"),
                    controller: Some(true),
                    block_owner_deletion: None,
                }]),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "workspaces:owner".into(),
            },
            subjects: Some(vec![Subject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "User".into(),
                name: user.into(),
                namespace: None,
            }]),
        }
    }

    fn at(ns: &str, name: &str) -> ObjectRef<RoleBinding> {
        ObjectRef::new(name).within(ns)
    }

    #[test]
    fn an_object_reads_back_as_it_was_cached() {
        let (cache, mut writer) = cache::<RoleBinding>();
        let first = binding("team-a", "owner", "alice@example.com");
        let second = binding("team-b", "owner", "bob@example.com");
        writer.apply(&Event::Apply(first.clone()));
        writer.apply(&Event::Apply(second.clone()));
        assert_eq!(cache.get(&at("team-a", "owner")).as_deref(), Some(&first));
        assert_eq!(cache.get(&at("team-b", "owner")).as_deref(), Some(&second));
        assert!(cache.get(&at("team-c", "owner")).is_none());
        assert!(cache.get(&ObjectRef::new("owner")).is_none());
        // Compressed against the first binding, the second costs a fraction
        // of its JSON.
        let json = serde_json::to_vec(&second).unwrap().len();
        assert!(
            cache.encoded_bytes() < json / 2,
            "{} bytes",
            cache.encoded_bytes()
        );
    }

    #[test]
    fn changes_and_deletes_replace_and_forget() {
        let (cache, mut writer) = cache::<RoleBinding>();
        writer.apply(&Event::Apply(binding("a", "x", "alice")));
        let changed = binding("a", "x", "mallory");
        writer.apply(&Event::Apply(changed.clone()));
        assert_eq!(cache.get(&at("a", "x")).as_deref(), Some(&changed));
        assert_eq!(cache.len(), 1);
        writer.apply(&Event::Delete(changed));
        assert!(cache.get(&at("a", "x")).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_relist_replaces_everything_when_it_completes() {
        let (cache, mut writer) = cache::<RoleBinding>();
        writer.apply(&Event::Apply(binding("a", "gone", "alice")));
        writer.apply(&Event::Init);
        writer.apply(&Event::InitApply(binding("a", "kept", "bob")));
        // Until the list completes, readers see the old contents.
        assert!(cache.get(&at("a", "gone")).is_some());
        assert!(cache.get(&at("a", "kept")).is_none());
        writer.apply(&Event::InitDone);
        assert!(cache.get(&at("a", "gone")).is_none());
        assert!(cache.get(&at("a", "kept")).is_some());
        let names: Vec<String> = cache
            .snapshot()
            .map(|rb| rb.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["kept"]);
    }

    #[test]
    fn cluster_scoped_objects_are_keyed_by_name() {
        let (cache, mut writer) = cache::<ClusterRole>();
        let role = ClusterRole {
            metadata: ObjectMeta {
                name: Some("workspaces.dev:workspace:w:reader".into()),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                verbs: vec!["get".into()],
                ..Default::default()
            }]),
            ..Default::default()
        };
        writer.apply(&Event::Apply(role.clone()));
        let found = cache.get(&ObjectRef::new("workspaces.dev:workspace:w:reader"));
        assert_eq!(found.as_deref(), Some(&role));
    }

    #[tokio::test]
    async fn ready_once_a_list_completes() {
        let (cache, mut writer) = cache::<RoleBinding>();
        let waiting = tokio::spawn({
            let cache = cache.clone();
            async move { cache.wait_until_ready().await }
        });
        writer.apply(&Event::Init);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(!writer.listed());
        writer.apply(&Event::InitDone);
        assert!(writer.listed());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("ready after the list")
            .unwrap();
    }

    #[tokio::test]
    async fn a_wait_for_an_object_ends_with_the_change_that_brings_it() {
        let (cache, mut writer) = cache::<RoleBinding>();
        let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waiting = tokio::spawn({
            let (cache, checks) = (cache.clone(), checks.clone());
            async move {
                let long = std::time::Duration::from_secs(3600);
                cache
                    .wait_for(&at("a", "owner"), long, |rb| {
                        checks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        rb.subjects.iter().flatten().any(|s| s.name == "bob")
                    })
                    .await
            }
        });
        tokio::task::yield_now().await;
        writer.apply(&Event::Apply(binding("b", "owner", "bob")));
        writer.apply(&Event::Apply(binding("a", "owner", "alice")));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        writer.apply(&Event::Apply(binding("a", "owner", "bob")));
        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the change ends the wait")
            .unwrap();
        assert!(seen);
        // Read once per change at most, never in between.
        assert!(checks.load(std::sync::atomic::Ordering::SeqCst) <= 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_an_object_that_never_comes_gives_up_without_polling() {
        let (cache, mut writer) = cache::<RoleBinding>();
        writer.apply(&Event::Apply(binding("a", "owner", "alice")));
        let checks = std::sync::atomic::AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let seen = cache
            .wait_for(&at("a", "owner"), std::time::Duration::from_secs(2), |_| {
                checks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                false
            })
            .await;
        assert!(!seen);
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(2));
        assert_eq!(checks.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
