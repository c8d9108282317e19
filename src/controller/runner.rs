//! Runs one controller: a queue of objects to reconcile, fed by the
//! triggers its mapping functions send from the world's watches
//! ([`super::world::Routes`]), drained at most `--concurrency` at a time.
//!
//! The rules, as in kube-runtime's controller: an object is queued at most
//! once however often it is triggered; it is never reconciled twice at the
//! same time (a trigger during its reconcile runs it once more afterwards);
//! an object no longer in the cache is skipped; a failed reconcile is retried
//! after a growing delay ([`retry_delay`]), and an object has at most one
//! delayed reconcile pending, which any reconcile of it cancels. Objects are
//! read from the compact [`Cache`], decoded when their turn comes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc::{TryRecvError, UnboundedReceiver};
use futures::stream::FuturesUnordered;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::time::{DelayQueue, delay_queue};

use super::cache::Cache;
use super::{Context, ReconcileError};
use crate::metrics::QueueGauges;

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

/// How a reconcile ended, as the queue sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// It succeeded (or the object was gone); reconcile again after this
    /// long, if at all.
    Succeeded(Option<Duration>),
    /// It failed: retry after [`retry_delay`].
    Failed,
}

/// The bookkeeping of one controller's queue (no I/O, so it is unit-tested
/// on its own).
///
/// A delayed reconcile (a retry, or a requeue a reconcile asked for) is kept
/// at most once per object, the earliest asked for, as kube-runtime's
/// `scheduler` does; a reconcile of the object that starts for any other
/// reason (a watch event) cancels it, and its own outcome decides the next.
struct Queue<K: Resource> {
    waiting: VecDeque<ObjectRef<K>>,
    queued: HashSet<ObjectRef<K>>,
    running: HashSet<ObjectRef<K>>,
    /// Triggered while running: queued again when the reconcile ends.
    again: HashSet<ObjectRef<K>>,
    /// Consecutive failures per object; a success forgets them.
    failures: HashMap<ObjectRef<K>, u32>,
    /// Delayed reconciles, one per object at most.
    delayed: DelayQueue<ObjectRef<K>>,
    /// Where each object's delayed reconcile is in `delayed`.
    delay_keys: HashMap<ObjectRef<K>, delay_queue::Key>,
}

impl<K: Resource<DynamicType = ()>> Queue<K> {
    fn new() -> Self {
        Queue {
            waiting: VecDeque::new(),
            queued: HashSet::new(),
            running: HashSet::new(),
            again: HashSet::new(),
            failures: HashMap::new(),
            delayed: DelayQueue::new(),
            delay_keys: HashMap::new(),
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

    /// The next object to reconcile, now counted as running. Its delayed
    /// reconcile, if any, is cancelled: this is the reconcile it waited for.
    fn start(&mut self) -> Option<ObjectRef<K>> {
        let at = self.waiting.pop_front()?;
        self.queued.remove(&at);
        if let Some(key) = self.delay_keys.remove(&at) {
            self.delayed.remove(&key);
        }
        self.running.insert(at.clone());
        Some(at)
    }

    /// A reconcile ended (or was skipped): the object runs again at once when
    /// it was triggered meanwhile, else after the delay its outcome asks for.
    /// Returns the number of consecutive failures of the object so far (0
    /// after a success).
    fn finish(&mut self, at: &ObjectRef<K>, ended: Ended) -> u32 {
        self.running.remove(at);
        let (failures, delay) = match ended {
            Ended::Succeeded(delay) => {
                self.failures.remove(at);
                (0, delay)
            }
            Ended::Failed => {
                let n = self.failures.entry(at.clone()).or_insert(0);
                *n = n.saturating_add(1);
                (*n, Some(retry_delay(*n)))
            }
        };
        if self.again.remove(at) {
            // That reconcile decides what follows.
            self.push(at.clone());
        } else if let Some(delay) = delay {
            self.delay(at.clone(), delay);
        }
        failures
    }

    /// Reconciles `at` after `delay`, unless it is queued already or a
    /// delayed reconcile of it is due sooner: the earliest request wins.
    fn delay(&mut self, at: ObjectRef<K>, delay: Duration) {
        if self.queued.contains(&at) {
            return;
        }
        let when = Instant::now() + delay.min(MAX_DELAY);
        match self.delay_keys.get(&at) {
            Some(key) if self.delayed.deadline(key) <= when => {}
            Some(key) => self.delayed.reset_at(key, when),
            None => {
                let key = self.delayed.insert_at(at.clone(), when);
                self.delay_keys.insert(at, key);
            }
        }
    }

    /// Sets the queue's gauges: waiting, delayed and running objects.
    fn report(&self, gauges: &QueueGauges, in_flight: usize) {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauges.depth.set(count(self.waiting.len()));
        gauges.delayed.set(count(self.delay_keys.len()));
        gauges.in_flight.set(count(in_flight));
    }

    /// Waits until a delayed reconcile falls due and hands out its object;
    /// pending for ever while none is delayed (a delay added later is seen
    /// when this is awaited again).
    async fn next_due(&mut self) -> ObjectRef<K> {
        std::future::poll_fn(|cx| match self.delayed.poll_expired(cx) {
            Poll::Ready(Some(due)) => {
                let at = due.into_inner();
                self.delay_keys.remove(&at);
                Poll::Ready(at)
            }
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        })
        .await
    }
}

/// The longest delay kept (a `DelayQueue` refuses deadlines about two years
/// ahead); no reconcile asks for more than minutes.
const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);

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
    let mut triggers = triggers;
    let mut in_flight = FuturesUnordered::new();
    let gauges = ctx.metrics.queue(controller);
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
        while in_flight.len() < concurrency {
            let Some(at) = queue.start() else { break };
            let Some(obj) = cache.get(&at) else {
                // Deleted since it was queued: nothing to reconcile.
                ctx.written.forget(&at);
                queue.finish(&at, Ended::Succeeded(None));
                continue;
            };
            ctx.written.observe(&*obj);
            // One span per reconcile: every line logged inside it names the
            // object it is about.
            let meta = obj.meta();
            let span = tracing::info_span!(
                "reconcile",
                controller,
                namespace = meta.namespace.as_deref().unwrap_or_default(),
                name = meta.name.as_deref().unwrap_or_default(),
                resource_version = meta.resource_version.as_deref().unwrap_or_default(),
            );
            let run = tracing::Instrument::instrument(reconcile(obj.clone(), ctx.clone()), span);
            in_flight.push(async move { (at, obj, run.await) });
        }
        queue.report(&gauges, in_flight.len());
        tokio::select! {
            biased;
            Some((at, obj, result)) = in_flight.next() => {
                let ended = report(&ctx, controller, &*obj, result);
                queue.finish(&at, ended);
            }
            // One trigger wakes the loop; its top takes any that follow.
            at = triggers.next() => match at {
                Some(at) => queue.push(at),
                None => {
                    while in_flight.next().await.is_some() {}
                    return;
                }
            },
            at = queue.next_due() => queue.push(at),
        }
    }
}

/// Logs how the reconcile of `obj` ended and counts a failure; returns the
/// outcome for the queue.
fn report<K: Resource, E: ReconcileError>(
    ctx: &Context,
    controller: &'static str,
    obj: &K,
    result: Result<Action, E>,
) -> Ended {
    let meta = obj.meta();
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    match result {
        Ok(action) => {
            tracing::debug!(
                controller,
                namespace,
                name,
                resource_version = meta.resource_version.as_deref().unwrap_or_default(),
                "reconciled"
            );
            Ended::Succeeded(action.requeue_after())
        }
        Err(err) => {
            tracing::warn!(
                controller,
                namespace,
                name,
                reason = err.reason(),
                error = %err,
                "reconcile failed"
            );
            ctx.metrics.reconcile_failed(controller, err.reason());
            Ended::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Workspace;
    use futures::channel::mpsc::unbounded;

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
        q.finish(&at("a"), Ended::Succeeded(None));
        assert_eq!(q.start(), Some(at("a")));
        q.finish(&at("a"), Ended::Succeeded(None));
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

    #[tokio::test(start_paused = true)]
    async fn failures_count_until_a_success() {
        let mut q = Queue::new();
        for expected in 1..=3 {
            q.push(at("a"));
            q.start();
            assert_eq!(q.finish(&at("a"), Ended::Failed), expected);
        }
        q.push(at("a"));
        q.start();
        assert_eq!(q.finish(&at("a"), Ended::Succeeded(None)), 0);
        q.push(at("a"));
        q.start();
        assert_eq!(q.finish(&at("a"), Ended::Failed), 1);
    }

    /// Waits (in paused time) for the next delayed reconcile: the object and
    /// how long after now it fell due; `None` when none falls due within a
    /// day.
    async fn due(q: &mut Queue<Workspace>) -> Option<(ObjectRef<Workspace>, Duration)> {
        let asked = Instant::now();
        let at = tokio::time::timeout(MAX_DELAY, q.next_due()).await.ok()?;
        Some((at, asked.elapsed()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_events_during_a_failing_reconcile_leaves_one_pending_retry() {
        let mut q = Queue::new();
        q.push(at("a"));
        let mut failures = 0;
        for _ in 0..5 {
            assert_eq!(q.start(), Some(at("a")));
            // Watch events about the object while its reconcile fails: it
            // runs again at once, and no retry is left behind.
            q.push(at("a"));
            q.push(at("a"));
            q.finish(&at("a"), Ended::Failed);
            assert_eq!(q.delay_keys.len(), 0);
            assert_eq!(q.start(), Some(at("a")));
            // Failing again with nothing pending: one retry.
            failures = q.finish(&at("a"), Ended::Failed);
            assert_eq!((q.delayed.len(), q.delay_keys.len()), (1, 1));
            // An event before the retry is due reconciles it now; the
            // retry is dropped, not added to.
            q.push(at("a"));
        }
        assert_eq!(failures, 10);
        assert_eq!(q.start(), Some(at("a")));
        assert_eq!(q.delayed.len(), 0, "the reconcile cancels its retry");
        failures = q.finish(&at("a"), Ended::Failed);
        assert_eq!(q.delayed.len(), 1);
        // One retry, after the backoff of eleven consecutive failures, and
        // nothing after it.
        assert_eq!(due(&mut q).await, Some((at("a"), retry_delay(failures))));
        assert_eq!(due(&mut q).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_that_awaits_a_change_leaves_nothing_pending() {
        let mut q = Queue::new();
        q.push(at("a"));
        q.start();
        q.finish(&at("a"), Ended::Failed);
        assert_eq!(q.delayed.len(), 1);
        // A watch event reconciles it before the retry; it succeeds.
        q.push(at("a"));
        q.start();
        assert_eq!(q.finish(&at("a"), Ended::Succeeded(None)), 0);
        assert_eq!(due(&mut q).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_runs_once_after_its_delay() {
        let mut q = Queue::new();
        q.push(at("a"));
        q.start();
        q.finish(&at("a"), Ended::Succeeded(Some(Duration::from_secs(30))));
        assert_eq!(due(&mut q).await, Some((at("a"), Duration::from_secs(30))));
        q.push(at("a"));
        assert_eq!(q.start(), Some(at("a")));
        assert_eq!(due(&mut q).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_delay_wins() {
        let mut q = Queue::new();
        let s = Duration::from_secs;
        q.delay(at("a"), s(10));
        q.delay(at("a"), s(5));
        q.delay(at("a"), s(20));
        q.delay(at("b"), s(7));
        assert_eq!(q.delayed.len(), 2);
        assert_eq!(due(&mut q).await, Some((at("a"), s(5))));
        assert_eq!(due(&mut q).await, Some((at("b"), s(2))));
        assert_eq!(due(&mut q).await, None);
        // A queued object needs no delayed reconcile.
        q.push(at("c"));
        q.delay(at("c"), s(1));
        assert_eq!(due(&mut q).await, None);
    }
}
