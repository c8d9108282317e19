//! Runs one controller: a queue of objects to reconcile, fed by the watch
//! router's triggers, drained at most `--concurrency` at a time.
//!
//! The rules, as in kube-runtime's controller: an object is queued at most
//! once however often it is triggered; it is never reconciled twice at the
//! same time (a trigger during its reconcile runs it once more afterwards);
//! an object no longer in the cache is skipped; a failed reconcile is retried
//! after a growing delay ([`retry_delay`]). Objects are read from the
//! compact [`Cache`], decoded when their turn comes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::{TryRecvError, UnboundedReceiver, unbounded};
use futures::stream::FuturesUnordered;
use futures::{StreamExt, select_biased};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cache::Cache;
use super::{Context, ReconcileError};

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile again after `duration`, unless a watch event does sooner.
    pub const fn requeue(duration: Duration) -> Self {
        Action {
            requeue_after: Some(duration),
        }
    }

    /// Reconcile again only when a watch event asks for it.
    pub const fn await_change() -> Self {
        Action {
            requeue_after: None,
        }
    }

    /// When to reconcile again without a watch event, if ever.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// When to retry after the `attempt`-th consecutive failure of one object:
/// 0.5 s, doubling, at most 30 s. A watch event about the object reconciles
/// it at once whatever the delay.
pub fn retry_delay(attempt: u32) -> Duration {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);
    FIRST
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX)
}

/// The bookkeeping of one controller's queue (no I/O, so it is unit-tested
/// on its own).
struct Queue<K: Resource> {
    waiting: VecDeque<ObjectRef<K>>,
    queued: HashSet<ObjectRef<K>>,
    running: HashSet<ObjectRef<K>>,
    /// Triggered while running: queued again when the reconcile ends.
    again: HashSet<ObjectRef<K>>,
    /// Consecutive failures per object; a success forgets them.
    failures: HashMap<ObjectRef<K>, u32>,
}

impl<K: Resource<DynamicType = ()>> Queue<K> {
    fn new() -> Self {
        Queue {
            waiting: VecDeque::new(),
            queued: HashSet::new(),
            running: HashSet::new(),
            again: HashSet::new(),
            failures: HashMap::new(),
        }
    }

    fn push(&mut self, at: ObjectRef<K>) {
        if self.running.contains(&at) {
            self.again.insert(at);
        } else if self.queued.insert(at.clone()) {
            self.waiting.push_back(at);
        }
    }

    /// Queues every object sent on `rx` so far; returns whether `rx` is
    /// closed.
    fn take_all(&mut self, rx: &mut UnboundedReceiver<ObjectRef<K>>) -> bool {
        loop {
            match rx.try_recv() {
                Ok(at) => self.push(at),
                Err(TryRecvError::Closed) => return true,
                Err(TryRecvError::Empty) => return false,
            }
        }
    }

    /// The next object to reconcile, now counted as running.
    fn start(&mut self) -> Option<ObjectRef<K>> {
        let at = self.waiting.pop_front()?;
        self.queued.remove(&at);
        self.running.insert(at.clone());
        Some(at)
    }

    /// A reconcile ended (or was skipped); returns the number of consecutive
    /// failures of the object so far (0 after a success).
    fn finish(&mut self, at: &ObjectRef<K>, failed: bool) -> u32 {
        self.running.remove(at);
        if self.again.remove(at) {
            self.push(at.clone());
        }
        if failed {
            let n = self.failures.entry(at.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        } else {
            self.failures.remove(at);
            0
        }
    }
}

/// Runs one controller for `K`: waits for the caches, reconciles every cached
/// object once, then every object its trigger stream names, at most
/// `--concurrency` at a time. Returns when the trigger stream ends and the
/// reconciles in flight are done.
pub async fn run<K, R, Fut, E>(
    ctx: Arc<Context>,
    cache: Cache<K>,
    triggers: UnboundedReceiver<ObjectRef<K>>,
    controller: &'static str,
    mut reconcile: R,
) where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Send + Sync + 'static,
    R: FnMut(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: ReconcileError,
{
    ctx.world.synced().await;
    tracing::info!(controller, "caches synced; reconciling");
    let concurrency = ctx.config.concurrency.max(1) as usize;
    let mut queue = Queue::new();
    for at in cache.refs() {
        queue.push(at);
    }
    let (later, mut requeued) = unbounded::<ObjectRef<K>>();
    let mut triggers = triggers;
    let mut in_flight = FuturesUnordered::new();
    loop {
        // On a converged cluster most reconciles finish without a request,
        // so this loop could run through the whole queue without ever
        // waiting: yield to the runtime now and then, or the watches, the
        // HTTP connections and the Lease renewals stall behind it.
        tokio::task::consume_budget().await;
        // Everything triggered so far joins the queue before anything
        // starts, so an object triggered many times (a relist routes every
        // object, often from several watches) is reconciled once.
        if queue.take_all(&mut triggers) {
            // The operator is stopping: finish what is in flight.
            while in_flight.next().await.is_some() {}
            return;
        }
        queue.take_all(&mut requeued);
        while in_flight.len() < concurrency {
            let Some(at) = queue.start() else { break };
            let Some(obj) = cache.get(&at) else {
                // Deleted since it was queued: nothing to reconcile.
                queue.finish(&at, false);
                continue;
            };
            let run = reconcile(obj.clone(), ctx.clone());
            in_flight.push(async move { (at, obj, run.await) });
        }
        select_biased! {
            done = in_flight.select_next_some() => {
                let (at, obj, result): (ObjectRef<K>, Arc<K>, Result<Action, E>) = done;
                let next = match result {
                    Ok(action) => {
                        tracing::debug!(
                            controller,
                            namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
                            name = obj.meta().name.as_deref().unwrap_or_default(),
                            resource_version =
                                obj.meta().resource_version.as_deref().unwrap_or_default(),
                            "reconciled"
                        );
                        queue.finish(&at, false);
                        action.requeue_after()
                    }
                    Err(err) => {
                        let attempt = queue.finish(&at, true);
                        tracing::warn!(
                            controller,
                            namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
                            name = obj.meta().name.as_deref().unwrap_or_default(),
                            reason = err.reason(),
                            error = %err,
                            "reconcile failed"
                        );
                        ctx.metrics.reconcile_failed(controller, err.reason());
                        Some(retry_delay(attempt))
                    }
                };
                if let Some(delay) = next {
                    let later = later.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        // A closed channel: the controller has stopped.
                        let _ = later.unbounded_send(at);
                    });
                }
            }
            // One trigger wakes the loop; its top takes any that follow.
            at = triggers.next() => match at {
                Some(at) => queue.push(at),
                None => {
                    while in_flight.next().await.is_some() {}
                    return;
                }
            },
            at = requeued.select_next_some() => queue.push(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Workspace;

    fn at(name: &str) -> ObjectRef<Workspace> {
        ObjectRef::new(name)
    }

    #[test]
    fn an_object_is_queued_once() {
        let mut q = Queue::new();
        q.push(at("a"));
        q.push(at("b"));
        q.push(at("a"));
        assert_eq!(q.start(), Some(at("a")));
        assert_eq!(q.start(), Some(at("b")));
        assert_eq!(q.start(), None);
    }

    #[test]
    fn a_trigger_while_running_runs_it_once_more_afterwards() {
        let mut q = Queue::new();
        q.push(at("a"));
        assert_eq!(q.start(), Some(at("a")));
        q.push(at("a"));
        q.push(at("a"));
        // Never twice at the same time.
        assert_eq!(q.start(), None);
        q.finish(&at("a"), false);
        assert_eq!(q.start(), Some(at("a")));
        q.finish(&at("a"), false);
        assert_eq!(q.start(), None);
    }

    #[test]
    fn a_burst_of_triggers_queues_each_object_once() {
        let mut q = Queue::new();
        let (tx, mut rx) = unbounded();
        for _ in 0..3 {
            for name in ["a", "b", "a", "c"] {
                tx.unbounded_send(at(name)).unwrap();
            }
        }
        assert!(!q.take_all(&mut rx));
        let started: Vec<_> = std::iter::from_fn(|| q.start()).collect();
        assert_eq!(started, [at("a"), at("b"), at("c")]);
        drop(tx);
        assert!(q.take_all(&mut rx), "a closed channel means stopping");
    }

    #[test]
    fn failures_count_until_a_success() {
        let mut q = Queue::new();
        for expected in 1..=3 {
            q.push(at("a"));
            q.start();
            assert_eq!(q.finish(&at("a"), true), expected);
        }
        q.push(at("a"));
        q.start();
        assert_eq!(q.finish(&at("a"), false), 0);
        q.push(at("a"));
        q.start();
        assert_eq!(q.finish(&at("a"), true), 1);
    }
}
