//! The controllers, one folder per kind: observe -> validate -> build (pure)
//! -> apply -> status.
//!
//! Every kind the operator reads is watched exactly once ([`world`]): the
//! watch fills a compact cache ([`cache`]) that every controller reads
//! instead of the API server, and each event is routed to the controllers it
//! concerns as a reconcile trigger ([`runner`]). Children are watched by
//! label, and `managedFields` are dropped before caching.

pub mod apply;
pub mod cache;
pub mod events;
pub mod index;
pub mod labels;
pub mod member;
pub mod organization;
pub mod runner;
pub mod workspace;
pub mod world;

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::http::Health;
use crate::metrics::Metrics;

pub use runner::{Action, retry_delay};
pub use world::World;

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
    /// The statuses this process wrote last, by object UID (a hash of each,
    /// timestamps left out): the cache can lag behind the operator's own
    /// write, and a reconcile in that window must not write the same status
    /// again.
    pub written: WrittenStatuses,
}

/// Hashes of the statuses the operator wrote last, with the resourceVersion
/// each write produced, by object UID.
#[derive(Default)]
pub struct WrittenStatuses(std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>);

impl WrittenStatuses {
    /// Entries kept at most; past that the memory starts over (at worst one
    /// repeated status write per object follows).
    const MAX: usize = 100_000;

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

    /// Whether this process wrote `status` for `uid` last and the cached
    /// object (at `cached_version`) is older than that write. When the cache
    /// has caught up, or someone wrote after the operator, the cache decides.
    pub fn already<S: serde::Serialize>(
        &self,
        uid: &str,
        status: &S,
        cached_version: Option<&str>,
    ) -> bool {
        let Some(cached) = cached_version.and_then(|v| v.parse::<u64>().ok()) else {
            return false;
        };
        let seen = self.0.lock().map(|m| m.get(uid).copied()).unwrap_or(None);
        seen.is_some_and(|(hash, written)| cached < written && hash == Self::fingerprint(status))
    }

    /// Records that `status` was written for `uid`, producing `version`.
    pub fn record<S: serde::Serialize>(&self, uid: &str, status: &S, version: Option<&str>) {
        let Some(version) = version.and_then(|v| v.parse::<u64>().ok()) else {
            return;
        };
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= Self::MAX {
                map.clear();
            }
            map.insert(uid.to_string(), (Self::fingerprint(status), version));
        }
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
    health: Health,
    stop: impl Future<Output = ()>,
) {
    let (world, drivers, triggers) = World::start(client.clone(), &health);
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
        written: WrittenStatuses::default(),
    });
    // The watches and each controller are tasks of their own, so they run
    // side by side on the runtime's workers and never hold back the Lease
    // renewals (the caller's task).
    let mut parts = JoinSet::new();
    parts.spawn(async move {
        drivers.await;
        "a watch stopped"
    });
    parts.spawn(
        workspace::run(ctx.clone(), triggers.workspaces)
            .map(|()| "the workspace controller stopped"),
    );
    parts.spawn(
        member::run(ctx.clone(), triggers.members).map(|()| "the member controller stopped"),
    );
    parts.spawn(
        organization::run(ctx, triggers.organizations)
            .map(|()| "the organization controller stopped"),
    );
    supervise(parts, stop).await;
}

/// Waits for the first of `parts` to stop, or for `stop`; then aborts the
/// rest and waits until every one of them has finished. Aborting alone would
/// not do: an aborted task stops at its next await, and one being polled on
/// another worker at that moment still finishes that poll.
async fn supervise(mut parts: JoinSet<&'static str>, stop: impl Future<Output = ()>) {
    tokio::select! {
        first = parts.join_next() => match first {
            Some(Ok(stopped)) => tracing::error!("{stopped}"),
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
    let uid = obj.uid().unwrap_or_default();
    if ctx
        .written
        .already(&uid, change.status, obj.resource_version().as_deref())
    {
        return Ok(());
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": change.status,
    });
    ctx.metrics.write(controller, resource);
    let params = kube::api::PatchParams::apply(crate::config::FIELD_MANAGER).force();
    let written = api
        .patch_status(&obj.name_any(), &params, &kube::api::Patch::Apply(&body))
        .await?;
    ctx.written
        .record(&uid, change.status, written.resource_version().as_deref());
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
mod tests {
    use super::runner::retry_delay;
    use super::{JoinSet, WrittenStatuses, supervise};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::time::Duration;

    #[test]
    fn retries_back_off_from_half_a_second_to_thirty() {
        let delays: Vec<Duration> = (1..=9).map(retry_delay).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            delays,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(16000),
                ms(30000),
                ms(30000),
                ms(30000)
            ]
        );
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(30));
        assert_eq!(retry_delay(0), ms(500));
    }

    /// A part that holds `alive` and keeps running, yielding between steps,
    /// until it is aborted.
    fn busy(alive: &Arc<()>, steps: &Arc<AtomicU64>) -> impl Future<Output = &'static str> + use<> {
        let (alive, steps) = (alive.clone(), steps.clone());
        async move {
            let _alive = alive;
            loop {
                steps.fetch_add(1, SeqCst);
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_waits_until_every_part_has_finished() {
        let alive = Arc::new(());
        let steps = Arc::new(AtomicU64::new(0));
        let mut parts = JoinSet::new();
        parts.spawn(busy(&alive, &steps));
        parts.spawn(busy(&alive, &steps));
        parts.spawn({
            let alive = alive.clone();
            async move {
                let _alive = alive;
                std::future::pending::<&'static str>().await
            }
        });
        let started = steps.clone();
        supervise(parts, async move {
            while started.load(SeqCst) < 10_000 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        // Every part has been dropped, and none takes another step.
        assert_eq!(Arc::strong_count(&alive), 1);
        let after = steps.load(SeqCst);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(steps.load(SeqCst), after);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_part_stopping_stops_the_others() {
        let alive = Arc::new(());
        let steps = Arc::new(AtomicU64::new(0));
        let mut parts = JoinSet::new();
        parts.spawn(busy(&alive, &steps));
        parts.spawn(async { "the test part stopped" });
        supervise(parts, std::future::pending()).await;
        assert_eq!(Arc::strong_count(&alive), 1);
    }

    use serde_json::json;

    fn status(time: &str) -> serde_json::Value {
        json!({"phase": "Active", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": time}]})
    }

    #[test]
    fn a_stale_cache_does_not_write_the_same_status_twice() {
        let written = WrittenStatuses::default();
        written.record("uid", &status("t1"), Some("10"));
        // The cache still shows version 9: same status (other timestamp) is skipped.
        assert!(written.already("uid", &status("t2"), Some("9")));
        // A different status is written.
        assert!(!written.already("uid", &json!({"phase": "Blocked"}), Some("9")));
        // Once the cache caught up (or someone wrote after), the cache decides.
        assert!(!written.already("uid", &status("t2"), Some("10")));
        assert!(!written.already("uid", &status("t2"), Some("12")));
        assert!(!written.already("other", &status("t2"), Some("9")));
    }
}
