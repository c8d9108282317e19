//! Prometheus metrics, served as OpenMetrics text on `/metrics`.
//!
//! Every label value is a `&'static str` chosen by the code (controller name,
//! error reason, resource kind), never an object name, so cardinality stays
//! bounded.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    controller: &'static str,
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    watch: &'static str,
}

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 5 ms .. ~41 s
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The operator's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: HistogramFamily,
    writes: Family<WriteLabels, Counter>,
    runtime: Runtime,
    leader: Gauge,
}

/// The queues', watches' and caches' metrics.
#[derive(Debug, Default)]
struct Runtime {
    stale_writes: Family<ControllerLabels, Counter>,
    queue_depth: Family<ControllerLabels, Gauge>,
    queue_delayed: Family<ControllerLabels, Gauge>,
    in_flight: Family<ControllerLabels, Gauge>,
    watch_restarts: Family<WatchLabels, Counter>,
    watch_errors: Family<WatchLabels, Counter>,
    cached: Family<WatchLabels, Gauge>,
    notifications: Family<OutcomeLabels, Counter>,
}

impl Runtime {
    /// Creates them, registered in `registry`.
    fn register(registry: &mut Registry) -> Self {
        let runtime = Runtime::default();
        registry.register(
            "stale_status_writes",
            "Status writes refused because the object changed since it was cached (reconciled again from the newer copy), by controller",
            runtime.stale_writes.clone(),
        );
        registry.register(
            "queue_depth",
            "Objects waiting in a controller's queue",
            runtime.queue_depth.clone(),
        );
        registry.register(
            "queue_delayed",
            "Objects with a delayed reconcile (retry or requeue) pending, by controller",
            runtime.queue_delayed.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciliations running now, by controller",
            runtime.in_flight.clone(),
        );
        registry.register(
            "watch_restarts",
            "Relists of a watch after its first list (watch expired, 410 Gone, or not resumable), by watch",
            runtime.watch_restarts.clone(),
        );
        registry.register(
            "watch_errors",
            "Errors a watch reported (it retries with a backoff), by watch",
            runtime.watch_errors.clone(),
        );
        registry.register(
            "cached_objects",
            "Objects in a watch's cache, by watch (the watched kind)",
            runtime.cached.clone(),
        );
        registry.register(
            "notifications",
            "Outbound notifications, by outcome: delivered, retried (an attempt that will be repeated), failed (refused or out of attempts) and dropped (queue full)",
            runtime.notifications.clone(),
        );
        runtime
    }
}

/// The gauges of one controller's queue, set by its runner.
#[derive(Clone, Debug)]
pub struct QueueGauges {
    /// Objects waiting for their turn.
    pub depth: Gauge,
    /// Objects with a delayed reconcile (a retry or a requeue) pending.
    pub delayed: Gauge,
    /// Reconciles running now.
    pub in_flight: Gauge,
}

/// The metrics of one watch, updated by its driver.
#[derive(Clone, Debug, Default)]
pub struct WatchMetrics {
    restarts: Counter,
    errors: Counter,
    cached: Gauge,
}

impl WatchMetrics {
    /// The watch listed again after its first list (after a `410 Gone`, or
    /// when it could not resume from its last version).
    pub fn restarted(&self) {
        self.restarts.inc();
    }

    /// The watch reported an error (it retries with a backoff).
    pub fn failed(&self) {
        self.errors.inc();
    }

    /// The watch's cache holds `n` objects.
    pub fn cached(&self, n: usize) {
        self.cached.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metrics, registered under the `workspace_operator_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("workspace_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let durations: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let writes = Family::<WriteLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciliations started, by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by controller and bounded reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconciliation took, by controller",
            durations.clone(),
        );
        registry.register(
            "writes",
            "Writes to the Kubernetes API made by reconciliations, by controller and resource kind",
            writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or leader election is off), else 0",
            leader.clone(),
        );
        let runtime = Runtime::register(&mut registry);
        Self {
            registry,
            reconciles,
            errors,
            durations,
            writes,
            runtime,
            leader,
        }
    }

    /// Counts a status write refused for a stale cached copy.
    pub fn stale_write(&self, controller: &'static str) {
        self.runtime
            .stale_writes
            .get_or_create(&ControllerLabels { controller })
            .inc();
    }

    /// The queue gauges of `controller`.
    pub fn queue(&self, controller: &'static str) -> QueueGauges {
        let labels = ControllerLabels { controller };
        QueueGauges {
            depth: self.runtime.queue_depth.get_or_create_owned(&labels),
            delayed: self.runtime.queue_delayed.get_or_create_owned(&labels),
            in_flight: self.runtime.in_flight.get_or_create_owned(&labels),
        }
    }

    /// The metrics of the watch named `watch`.
    pub fn watch(&self, watch: &'static str) -> WatchMetrics {
        let labels = WatchLabels { watch };
        WatchMetrics {
            restarts: self.runtime.watch_restarts.get_or_create_owned(&labels),
            errors: self.runtime.watch_errors.get_or_create_owned(&labels),
            cached: self.runtime.cached.get_or_create_owned(&labels),
        }
    }

    /// Counts a reconciliation of `controller` and starts timing it; the
    /// duration is recorded when the returned timer is finished or dropped.
    pub fn reconcile_started(&self, controller: &'static str) -> ReconcileTimer {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        ReconcileTimer {
            histogram: self.durations.get_or_create_owned(&labels),
            start: Instant::now(),
        }
    }

    /// Counts a failed reconciliation of `controller` with a bounded `reason`.
    pub fn reconcile_failed(&self, controller: &'static str, reason: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { controller, reason })
            .inc();
    }

    /// Counts one write (create, apply, patch, delete) of a `resource` kind.
    pub fn write(&self, controller: &'static str, resource: &'static str) {
        self.writes
            .get_or_create(&WriteLabels {
                controller,
                resource,
            })
            .inc();
    }

    /// Counts one notification outcome (`delivered`, `retried`, `failed`,
    /// `dropped`).
    pub fn notification(&self, outcome: &'static str) {
        self.runtime
            .notifications
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Records whether this replica currently leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Renders all metrics as OpenMetrics text ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String cannot fail; keep whatever was encoded.
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}

/// Times one reconciliation; records on [`ReconcileTimer::finish`] or drop.
#[must_use = "the duration is recorded when the timer is dropped"]
#[derive(Debug)]
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl ReconcileTimer {
    /// Records the elapsed time now.
    pub fn finish(self) {}
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn counts_reconciles_errors_and_writes() {
        let metrics = Metrics::new();
        metrics.reconcile_started("workspace").finish();
        drop(metrics.reconcile_started("workspace"));
        metrics.reconcile_failed("workspace", "NamespaceConflict");
        metrics.write("workspace", "Namespace");
        metrics.write("workspace", "Namespace");
        metrics.set_leader(true);
        let text = metrics.render();
        assert_eq!(
            line(&text, "workspace_operator_reconciles_total{"),
            Some("workspace_operator_reconciles_total{controller=\"workspace\"} 2"),
            "{text}"
        );
        assert_eq!(
            line(&text, "workspace_operator_reconcile_errors_total{"),
            Some(
                "workspace_operator_reconcile_errors_total{controller=\"workspace\",reason=\"NamespaceConflict\"} 1"
            )
        );
        assert_eq!(
            line(&text, "workspace_operator_writes_total{"),
            Some(
                "workspace_operator_writes_total{controller=\"workspace\",resource=\"Namespace\"} 2"
            )
        );
        assert_eq!(
            line(
                &text,
                "workspace_operator_reconcile_duration_seconds_count{"
            ),
            Some("workspace_operator_reconcile_duration_seconds_count{controller=\"workspace\"} 2")
        );
        assert_eq!(
            line(&text, "workspace_operator_leader "),
            Some("workspace_operator_leader 1")
        );
        assert!(text.contains("# TYPE workspace_operator_reconcile_duration_seconds histogram"));
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn reports_queues_watches_and_caches() {
        let metrics = Metrics::new();
        let queue = metrics.queue("workspace");
        queue.depth.set(7);
        queue.delayed.set(2);
        queue.in_flight.set(3);
        let watch = metrics.watch("namespaces");
        watch.restarted();
        watch.failed();
        watch.failed();
        watch.cached(120);
        metrics.stale_write("workspace");
        let text = metrics.render();
        for expected in [
            "workspace_operator_queue_depth{controller=\"workspace\"} 7",
            "workspace_operator_queue_delayed{controller=\"workspace\"} 2",
            "workspace_operator_reconciles_in_flight{controller=\"workspace\"} 3",
            "workspace_operator_watch_restarts_total{watch=\"namespaces\"} 1",
            "workspace_operator_watch_errors_total{watch=\"namespaces\"} 2",
            "workspace_operator_cached_objects{watch=\"namespaces\"} 120",
            "workspace_operator_stale_status_writes_total{controller=\"workspace\"} 1",
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected}\n{text}");
        }
    }

    #[test]
    fn fresh_registry_has_no_series() {
        let text = Metrics::new().render();
        assert!(line(&text, "workspace_operator_reconciles_total{").is_none());
        assert_eq!(
            line(&text, "workspace_operator_leader "),
            Some("workspace_operator_leader 0")
        );
    }
}
