//! The health of the process, as `/readyz` reports it.
//!
//! Ready only when every registered watch has synced at least once and none
//! is currently failing; otherwise the report names the watches that are
//! not ready. Readiness does not depend on leadership: a standby replica
//! registers no watches and is ready, and the report says whether this
//! replica leads. The watches (the shared controller layer) and the HTTP
//! endpoints both use it; neither knows the other.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::metrics::{Metrics, WatchMetrics};

/// State of one watch as seen by readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchState {
    /// Registered, initial list not complete yet.
    Starting,
    /// Has synced; events are flowing.
    Synced,
    /// The watch reported an error; not ready until it syncs again.
    Failed,
}

impl WatchState {
    fn as_str(self) -> &'static str {
        match self {
            WatchState::Starting => "not synced yet",
            WatchState::Synced => "synced",
            WatchState::Failed => "failing",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    watches: BTreeMap<&'static str, WatchState>,
    leader: bool,
}

/// Shared health of the process: the watches' states and leadership.
#[derive(Clone, Debug, Default)]
pub struct Health {
    inner: Arc<Mutex<Inner>>,
    /// Where the watches count their restarts, errors and cached objects.
    metrics: Option<Arc<Metrics>>,
}

impl Health {
    /// A health with no watches registered (and so ready) and not leading.
    pub fn new() -> Self {
        Self::default()
    }

    /// Like [`Health::new`]; each watch also reports its restarts, errors
    /// and cache size to `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        Health {
            metrics: Some(metrics),
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave Inner inconsistent
        // (every update is a single assignment), so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a watch named `name` (unique per process, e.g. the watched
    /// kind) in the `Starting` state. Registering a name again resets it.
    pub fn watch(&self, name: &'static str) -> WatchHealth {
        self.lock().watches.insert(name, WatchState::Starting);
        WatchHealth {
            health: self.clone(),
            name,
            metrics: self
                .metrics
                .as_ref()
                .map(|m| m.watch(name))
                .unwrap_or_default(),
        }
    }

    /// True when every registered watch is synced (vacuously true when none is).
    pub fn is_ready(&self) -> bool {
        self.lock()
            .watches
            .values()
            .all(|state| *state == WatchState::Synced)
    }

    /// Records whether this replica currently leads; shown in `/readyz`.
    pub fn set_leader(&self, leader: bool) {
        self.lock().leader = leader;
    }

    /// Whether this replica currently leads.
    pub fn is_leader(&self) -> bool {
        self.lock().leader
    }

    /// The registered watches and their states, sorted by name.
    pub fn watches(&self) -> Vec<(&'static str, WatchState)> {
        self.lock()
            .watches
            .iter()
            .map(|(name, state)| (*name, *state))
            .collect()
    }

    fn set(&self, name: &'static str, state: WatchState) {
        self.lock().watches.insert(name, state);
    }

    /// Readiness and the `/readyz` body.
    pub fn report(&self) -> (bool, String) {
        let inner = self.lock();
        let not_ready: Vec<_> = inner
            .watches
            .iter()
            .filter(|(_, state)| **state != WatchState::Synced)
            .collect();
        let mut body = String::new();
        if not_ready.is_empty() {
            body.push_str("ok\n");
        } else {
            body.push_str("not ready\n");
            for (name, state) in &not_ready {
                let _ = writeln!(body, "watch {name}: {}", state.as_str());
            }
        }
        let _ = writeln!(
            body,
            "watches: {} registered, {} not ready",
            inner.watches.len(),
            not_ready.len()
        );
        let _ = writeln!(body, "leader: {}", inner.leader);
        (not_ready.is_empty(), body)
    }
}

/// Handle through which one watch reports its state.
#[derive(Clone, Debug)]
pub struct WatchHealth {
    health: Health,
    name: &'static str,
    metrics: WatchMetrics,
}

impl WatchHealth {
    /// The watch completed a (re)list: ready as far as this watch goes.
    pub fn synced(&self) {
        self.health.set(self.name, WatchState::Synced);
    }

    /// The watch errored or stopped: not ready until [`Self::synced`] again.
    pub fn failed(&self) {
        self.metrics.failed();
        self.health.set(self.name, WatchState::Failed);
    }

    /// The watch lists again after its first list: it could not resume
    /// (its version expired, `410 Gone`).
    pub fn restarted(&self) {
        self.metrics.restarted();
    }

    /// Like [`Self::synced`], with the number of objects its cache holds now.
    pub fn synced_holding(&self, objects: usize) {
        self.metrics.cached(objects);
        self.synced();
    }

    /// The name this watch was registered under.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_without_watches() {
        assert!(Health::new().is_ready());
    }

    #[test]
    fn ready_only_when_all_watches_synced() {
        let health = Health::new();
        let a = health.watch("workspaces");
        let b = health.watch("namespaces");
        assert!(!health.is_ready());
        a.synced();
        assert!(!health.is_ready());
        b.synced();
        assert!(health.is_ready());
        b.failed();
        assert!(!health.is_ready());
        let (ready, body) = health.report();
        assert!(!ready);
        assert!(body.contains("watch namespaces: failing"), "{body}");
        assert!(!body.contains("watch workspaces"), "{body}");
        b.synced();
        assert!(health.is_ready());
        assert_eq!(
            health.watches(),
            [
                ("namespaces", WatchState::Synced),
                ("workspaces", WatchState::Synced)
            ]
        );
    }

    #[test]
    fn failure_before_first_sync_stays_not_ready() {
        let health = Health::new();
        let w = health.watch("members");
        w.failed();
        assert!(!health.is_ready());
        w.synced();
        assert!(health.is_ready());
    }

    #[test]
    fn leadership_does_not_change_readiness() {
        let health = Health::new();
        health.set_leader(false);
        assert!(health.is_ready());
        assert!(health.report().1.contains("leader: false"));
        health.set_leader(true);
        assert!(health.is_leader());
        assert!(health.report().1.contains("leader: true"));
        let w = health.watch("workspaces");
        assert!(!health.is_ready());
        w.synced();
        assert!(health.is_ready());
    }
}
