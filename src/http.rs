//! The operator's HTTP endpoints: `/metrics`, `/livez` and `/readyz`.
//!
//! `/readyz` is `200` only when every registered watch has synced at least
//! once and none is currently failing; otherwise `503` with a short body that
//! names the watches that are not ready. Readiness does not depend on
//! leadership: a standby replica registers no watches and is ready, and the
//! body says whether this replica leads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::{self, Metrics};

/// Why the HTTP server could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

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
}

impl Health {
    /// A health with no watches registered (and so ready) and not leading.
    pub fn new() -> Self {
        Self::default()
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
    fn report(&self) -> (bool, String) {
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
}

impl WatchHealth {
    /// The watch completed a (re)list: ready as far as this watch goes.
    pub fn synced(&self) {
        self.health.set(self.name, WatchState::Synced);
    }

    /// The watch errored or stopped: not ready until [`Self::synced`] again.
    pub fn failed(&self) {
        self.health.set(self.name, WatchState::Failed);
    }

    /// The name this watch was registered under.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// The router with `/metrics`, `/livez` and `/readyz`.
pub fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// Answered as long as the runtime serves requests.
async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let (ready, body) = state.health.report();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

/// Binds the listener (start-up errors surface before anything else runs).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve_on(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /livez and /readyz");
    }
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}

/// Binds `addr` and serves until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = bind(addr).await?;
    serve_on(listener, metrics, health, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn serves_endpoints() {
        let metrics = Arc::new(Metrics::new());
        let health = Health::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, metrics.clone(), health.clone(), async {
            let _ = stopped.await;
        }));

        metrics.reconcile_started("workspace").finish();
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("workspace_operator_reconciles_total{controller=\"workspace\"} 1"),
            "{body}"
        );

        assert_eq!(get(addr, "/livez").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 200);

        let watch = health.watch("workspaces");
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.contains("watch workspaces: not synced yet"), "{body}");
        assert_eq!(get(addr, "/livez").await.0, 200);

        watch.synced();
        assert_eq!(get(addr, "/readyz").await.0, 200);
        watch.failed();
        assert_eq!(get(addr, "/readyz").await.0, 503);

        assert_eq!(get(addr, "/nope").await.0, 404);

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
