//! The controllers, one folder per kind: observe -> validate -> build (pure)
//! -> apply -> status.
//!
//! Every kind the operator reads is watched exactly once ([`world`]): the
//! watch fills a compact cache ([`cache`]) that every controller reads
//! instead of the API server, and each event is routed, as a reconcile
//! trigger ([`runner`]), to the controllers whose mapping functions
//! ([`Controller::register`]) say it concerns them. Children are watched by
//! label, and `managedFields` are dropped before caching.

pub mod apply;
pub mod backoff;
pub mod cache;
pub mod directory;
pub mod events;
pub mod fault;
pub mod index;
pub mod labels;
pub mod member;
pub mod organization;
pub mod runner;
pub mod transfer;
pub mod workspace;
pub mod world;

use std::sync::Arc;

use futures::FutureExt;
use futures::channel::mpsc::UnboundedReceiver;
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::runtime::reflector::ObjectRef;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;

pub use runner::{Action, retry_delay};
pub use world::{Queue, Routes, World};

/// Name the operator reports events and writes objects under.
pub const CONTROLLER_NAME: &str = "workspace-operator";

/// What every controller shares: the client, the caches, configuration,
/// metrics and the event publisher. No globals.
pub struct Context {
    /// Client acting as the operator's own identity.
    pub client: Client,
    /// The caches of everything the operator watches.
    pub world: World,
    /// The operator's settings.
    pub config: Arc<Config>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes events.
    pub events: events::Events,
    /// Sends notifications to `--notify-url` (or nothing).
    pub notifier: crate::notify::Notifier,
    /// The statuses this process wrote that the cache does not show yet (a
    /// hash of each, timestamps left out): the cache can lag behind the
    /// operator's own write, and a reconcile in that window must not write
    /// the same status again.
    pub written: WrittenStatuses,
}

/// The statuses the operator wrote that its cache does not show yet, by
/// object (kind, namespace and name): each with the object's UID, a hash of
/// the status and the resourceVersion the write produced.
///
/// An entry lives only while the cache lags behind the write: the runner
/// drops it when it reads the object from the cache at that version or
/// later (or a different object under the name), and when the object is no
/// longer cached, so it holds at most one entry per object and is empty on a
/// converged cluster.
#[derive(Default)]
pub struct WrittenStatuses(std::sync::Mutex<std::collections::HashMap<String, Written>>);

/// One status write the cache has not shown yet.
struct Written {
    uid: String,
    hash: u64,
    version: u64,
}

impl WrittenStatuses {
    /// A hash of `status` that ignores `lastTransitionTime`.
    fn fingerprint<S: serde::Serialize>(status: &S) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut value = serde_json::to_value(status).unwrap_or_default();
        if let Some(conditions) = value.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for condition in conditions.iter_mut().filter_map(|c| c.as_object_mut()) {
                condition.remove("lastTransitionTime");
            }
            conditions.sort_by_key(|c| c.get("type").and_then(|t| t.as_str()).map(str::to_string));
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        value.to_string().hash(&mut hasher);
        hasher.finish()
    }

    fn key<K: kube::Resource<DynamicType = ()>>(namespace: Option<&str>, name: &str) -> String {
        format!("{}/{}/{name}", K::kind(&()), namespace.unwrap_or_default())
    }

    fn key_of<K: kube::Resource<DynamicType = ()>>(obj: &K) -> String {
        let meta = obj.meta();
        Self::key::<K>(
            meta.namespace.as_deref(),
            meta.name.as_deref().unwrap_or_default(),
        )
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Written>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The resourceVersion of `obj` as a number (the operator compares the
    /// versions of one object, as kube-apiserver with etcd hands them out).
    fn version_of<K: kube::Resource>(obj: &K) -> Option<u64> {
        obj.meta().resource_version.as_deref()?.parse().ok()
    }

    /// Whether this process wrote `status` for `cached` last and the cached
    /// copy is older than that write. When the cache has caught up, or
    /// someone wrote after the operator, the cache decides.
    pub fn already<K, S>(&self, cached: &K, status: &S) -> bool
    where
        K: kube::Resource<DynamicType = ()>,
        S: serde::Serialize,
    {
        let Some(version) = Self::version_of(cached) else {
            return false;
        };
        let uid = cached.meta().uid.as_deref().unwrap_or_default();
        self.entries().get(&Self::key_of(cached)).is_some_and(|w| {
            w.uid == uid && version < w.version && w.hash == Self::fingerprint(status)
        })
    }

    /// Records that `status` was written for `obj`, producing `written` (the
    /// object the API server returned).
    pub fn record<K, S>(&self, obj: &K, status: &S, written: &K)
    where
        K: kube::Resource<DynamicType = ()>,
        S: serde::Serialize,
    {
        let (Some(version), Some(uid)) = (Self::version_of(written), obj.meta().uid.clone()) else {
            return;
        };
        let hash = Self::fingerprint(status);
        self.entries()
            .insert(Self::key_of(obj), Written { uid, hash, version });
    }

    /// The cache holds `cached`: the write recorded for it is forgotten once
    /// the cache shows it (the cached resourceVersion reached the written
    /// one) or the name now holds another object.
    pub fn observe<K: kube::Resource<DynamicType = ()>>(&self, cached: &K) {
        let key = Self::key_of(cached);
        let mut entries = self.entries();
        let Some(w) = entries.get(&key) else {
            return;
        };
        let other = cached.meta().uid.as_deref() != Some(w.uid.as_str());
        if other || Self::version_of(cached).is_none_or(|v| v >= w.version) {
            entries.remove(&key);
        }
    }

    /// The object at `at` is no longer cached (deleted): its write is
    /// forgotten.
    pub fn forget<K: kube::Resource<DynamicType = ()>>(
        &self,
        at: &kube::runtime::reflector::ObjectRef<K>,
    ) {
        self.entries()
            .remove(&Self::key::<K>(at.namespace.as_deref(), &at.name));
    }

    /// How many writes the cache does not show yet.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether the cache shows every status write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs every controller until the first of them stops or `stop` completes,
/// then stops them all and waits until they have stopped: once this returns,
/// no watch, controller or reconcile it started is running, so none can send
/// another request (the caller may then hand the Lease over).
pub async fn run(
    client: Client,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    notifier: crate::notify::Notifier,
    health: Health,
    stop: impl Future<Output = ()>,
) {
    let controllers = Controllers::default()
        .with::<workspace::Workspaces>()
        .with::<member::Members>()
        .with::<organization::Organizations>()
        .with::<directory::Directory>()
        .with::<transfer::Transfers>();
    let (world, drivers) = World::start(client.clone(), &health, controllers.routes);
    let instance = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok();
    let events = events::Events::new(client.clone(), CONTROLLER_NAME, instance);
    let ctx = Arc::new(Context {
        client,
        world,
        config,
        metrics,
        events,
        notifier,
        written: WrittenStatuses::default(),
    });
    // The watches and each controller are tasks of their own, so they run
    // side by side on the runtime's workers and never hold back the Lease
    // renewals (the caller's task).
    let mut parts = JoinSet::new();
    parts.spawn(async move {
        drivers.await;
        "a watch"
    });
    for start in controllers.starts {
        parts.spawn(start(ctx.clone()));
    }
    supervise(parts, stop).await;
}

/// A controller: the kind it reconciles, the watch events that trigger it
/// (its mapping functions, registered with the world) and its loop. Adding
/// one is a folder of its own and one line in [`run`].
pub trait Controller {
    /// The kind it reconciles.
    type Kind: kube::Resource + Send + Sync + 'static;
    /// Its name in the log when it stops (`the … controller`).
    const NAME: &'static str;
    /// Registers its triggers and the index keys its lookups need.
    fn register(routes: &mut Routes, queue: &Queue<Self::Kind>);
    /// Runs it until `triggers` ends.
    fn run(
        ctx: Arc<Context>,
        triggers: UnboundedReceiver<ObjectRef<Self::Kind>>,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// A controller's loop, once the world it reads exists.
type Start = Box<dyn FnOnce(Arc<Context>) -> BoxFuture<'static, &'static str> + Send>;

/// The controllers to run: the routes they registered and how each starts.
#[derive(Default)]
struct Controllers {
    routes: Routes,
    starts: Vec<Start>,
}

impl Controllers {
    /// Adds the controller `C`: its triggers go into the routes, its loop
    /// starts with the others.
    fn with<C: Controller>(mut self) -> Self {
        let (queue, triggers) = Queue::open();
        C::register(&mut self.routes, &queue);
        self.starts.push(Box::new(move |ctx| {
            C::run(ctx, triggers).map(|()| C::NAME).boxed()
        }));
        self
    }
}

/// Waits for the first of `parts` to stop, or for `stop`; then aborts the
/// rest and waits until every one of them has finished. Aborting alone would
/// not do: an aborted task stops at its next await, and one being polled on
/// another worker at that moment still finishes that poll.
async fn supervise(mut parts: JoinSet<&'static str>, stop: impl Future<Output = ()>) {
    tokio::select! {
        first = parts.join_next() => match first {
            Some(Ok(stopped)) => tracing::error!("{stopped} stopped"),
            Some(Err(err)) => tracing::error!(error = %err, "a controller task failed"),
            None => {}
        },
        () = stop => {}
    }
    parts.shutdown().await;
}

/// An error a reconcile returns: it has a bounded reason for metrics, logs
/// and conditions.
pub trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// A bounded, PascalCase reason.
    fn reason(&self) -> &'static str;
}

/// Records a Kubernetes event about `obj`; a failure to record is logged,
/// never fatal.
pub async fn publish<K: kube::Resource<DynamicType = ()>>(
    ctx: &Context,
    controller: &'static str,
    obj: &K,
    type_: kube::runtime::events::EventType,
    reason: &str,
    note: String,
) {
    ctx.metrics.write(controller, "events");
    if let Err(err) = ctx
        .events
        .publish(obj.object_ref(&()), type_, reason, note)
        .await
    {
        tracing::warn!(error = %err, "could not record an event");
    }
}

/// A status about to be written, and the `Ready` conditions before and in it.
pub struct StatusChange<'a, S> {
    /// The status to write.
    pub status: &'a S,
    /// The conditions of the status the object has now.
    pub previous: &'a [Condition],
    /// The conditions of `status`.
    pub current: &'a [Condition],
}

/// Server-side applies a status to `obj`'s status subresource (through
/// `api`), as the operator's field manager, unless this process wrote that
/// same status last; `resource` labels the write in the metrics.
///
/// The status was computed from the cached copy `obj`, so the write carries
/// that copy's resourceVersion as a precondition: when the object changed
/// since (another writer, such as the transfer controller changing the
/// owner, or an admin), the API server refuses it with 409 and nothing is
/// written. That is not a failure: the newer version's watch event
/// reconciles the object again from a current copy (the runner runs an
/// object triggered during its reconcile once more afterwards), and the
/// status is computed from that.
///
/// When the write changed the `Ready` condition's status or reason, an event
/// says so. It is recorded after the status, so it is not on the way to
/// `Ready`.
pub async fn apply_status<K, S>(
    ctx: &Context,
    controller: &'static str,
    resource: &'static str,
    api: &kube::Api<K>,
    obj: &K,
    change: StatusChange<'_, S>,
) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    S: serde::Serialize,
{
    use kube::ResourceExt;
    if ctx.written.already(obj, change.status) {
        return Ok(());
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"resourceVersion": obj.meta().resource_version},
        "status": change.status,
    });
    fault::hold_status(&obj.name_any()).await;
    ctx.metrics.write(controller, resource);
    let params = kube::api::PatchParams::apply(crate::config::FIELD_MANAGER).force();
    let written = match api
        .patch_status(&obj.name_any(), &params, &kube::api::Patch::Apply(&body))
        .await
    {
        Ok(written) => written,
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::debug!(
                controller,
                name = obj.name_any(),
                "status computed from a stale copy not written"
            );
            ctx.metrics.stale_write(controller);
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    ctx.written.record(obj, change.status, &written);
    if let Some((type_, reason, message)) = ready_event(change.previous, change.current) {
        publish(ctx, controller, obj, type_, &reason, message).await;
    }
    Ok(())
}

/// When the `Ready` condition changed its status or reason between two
/// condition lists: the event to record (type, reason, message).
fn ready_event(
    previous: &[Condition],
    current: &[Condition],
) -> Option<(kube::runtime::events::EventType, String, String)> {
    use crate::api::conditions::{READY, find_condition};
    let now = find_condition(current, READY)?;
    let before = find_condition(previous, READY);
    if before.is_some_and(|b| b.status == now.status && b.reason == now.reason) {
        return None;
    }
    let type_ = if now.status == "True" {
        kube::runtime::events::EventType::Normal
    } else {
        kube::runtime::events::EventType::Warning
    };
    Some((type_, now.reason.clone(), now.message.clone()))
}

#[cfg(test)]
mod tests;
