//! `workspace-operator run`: wires the client, metrics, health endpoints,
//! leader election and the controllers together.
//!
//! Life cycle:
//! 1. build the Kubernetes client (kubeconfig or in-cluster) and bind the
//!    metrics address, so start-up errors surface at once;
//! 2. serve `/metrics`, `/livez`, `/readyz` for the whole life of the process
//!    (a standby replica is live and ready);
//! 3. with leader election on, wait for the Lease; then run the controllers
//!    until SIGTERM/SIGINT, until leadership is lost, or until a controller
//!    stops;
//! 4. on a signal, stop the controllers, release the Lease so a standby takes
//!    over at once, then stop the HTTP server and return `Ok`. Losing
//!    leadership returns an error so the process exits non-zero and is
//!    restarted as a candidate.

use std::sync::Arc;

use axum::http::{HeaderValue, header};
use kube::Client;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, USER_AGENT};
use crate::health::Health;
use crate::http;
use crate::leader::{self, LeaderElector, LeaseSettings};
use crate::metrics::Metrics;

/// Why `run` stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    KubeConfig(#[source] kube::config::InferConfigError),
    #[error("building the Kubernetes client failed: {0}")]
    Client(#[source] kube::Error),
    #[error("installing signal handlers failed: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Http(#[from] http::Error),
    #[error("the HTTP server stopped unexpectedly")]
    HttpStopped,
    #[error("lost leadership: {0}")]
    LeadershipLost(#[source] leader::Error),
    #[error("releasing the Lease failed: {0}")]
    Release(#[source] leader::Error),
    #[error("the controllers stopped unexpectedly")]
    ControllersStopped,
    #[error("the admission policies do not confine this operator: {0}")]
    Confinement(#[source] crate::confinement::Error),
    #[error("setting up notifications: {0}")]
    Notify(#[source] crate::notify::Error),
}

/// Runs the operator until SIGTERM/SIGINT (`Ok`) or a fatal error.
pub async fn run(config: Config) -> Result<(), Error> {
    let config = Arc::new(config);
    let client = client().await?;
    if config.verify_confinement {
        crate::confinement::verify(&client, &config.operator_namespace, config.directory())
            .await
            .map_err(Error::Confinement)?;
    }
    let metrics = Arc::new(Metrics::new());
    let notifier =
        crate::notify::Notifier::start(&config, metrics.clone()).map_err(Error::Notify)?;
    let health = Health::with_metrics(metrics.clone());

    let listener = http::bind(config.metrics_addr).await?;
    let mut shutdown = Box::pin(shutdown_signal()?);

    let (stop_http, http_stop) = oneshot::channel::<()>();
    let mut server: JoinHandle<Result<(), http::Error>> = tokio::spawn(http::serve_on(
        listener,
        metrics.clone(),
        health.clone(),
        async {
            let _ = http_stop.await;
        },
    ));

    let result = tokio::select! {
        result = lead(client, config, metrics, notifier, health, &mut shutdown) => result,
        finished = &mut server => return Err(server_outcome(finished)),
    };

    let _ = stop_http.send(());
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "HTTP server failed while stopping"),
        Err(error) => tracing::warn!(%error, "HTTP server task failed while stopping"),
    }
    if result.is_ok() {
        tracing::info!("stopped");
    }
    result
}

fn server_outcome(finished: Result<Result<(), http::Error>, tokio::task::JoinError>) -> Error {
    match finished {
        Ok(Err(error)) => Error::Http(error),
        Ok(Ok(())) | Err(_) => Error::HttpStopped,
    }
}

/// Waits for leadership (when enabled), runs the controllers, and releases
/// the Lease on shutdown.
async fn lead(
    client: Client,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    notifier: crate::notify::Notifier,
    health: Health,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<(), Error> {
    let (stop, stopped) = oneshot::channel::<()>();
    let controllers = crate::controller::run(
        client.clone(),
        config.clone(),
        metrics.clone(),
        notifier,
        health.clone(),
        async {
            let _ = stopped.await;
        },
    );
    tokio::pin!(controllers);

    if !config.leader_election {
        tracing::info!("leader election disabled; running the controllers");
        health.set_leader(true);
        metrics.set_leader(true);
        let outcome = tokio::select! {
            () = &mut controllers => Err(Error::ControllersStopped),
            () = &mut *shutdown => {
                tracing::info!("shutdown signal received");
                Ok(())
            }
        };
        stop_controllers(&outcome, stop, controllers).await;
        return outcome;
    }

    let elector = LeaderElector::new(
        client,
        &config.lease_namespace,
        &config.lease_name,
        leader::default_identity(),
        LeaseSettings::default(),
    );
    let mut leadership = tokio::select! {
        leadership = elector.acquire() => leadership,
        () = &mut *shutdown => {
            tracing::info!("shutdown signal received while standing by");
            return Ok(());
        }
    };
    health.set_leader(true);
    metrics.set_leader(true);

    let outcome = tokio::select! {
        () = &mut controllers => Err(Error::ControllersStopped),
        lost = leadership.hold() => Err(Error::LeadershipLost(lost)),
        () = &mut *shutdown => {
            tracing::info!("shutdown signal received; releasing leadership");
            Ok(())
        }
    };
    // Nothing started under this leadership is still running after this, so
    // nothing of it can write once the Lease is released or taken over.
    stop_controllers(&outcome, stop, controllers).await;
    health.set_leader(false);
    metrics.set_leader(false);

    match outcome {
        Err(Error::LeadershipLost(lost)) => Err(Error::LeadershipLost(lost)),
        other => {
            // Shutting down or a controller failed: hand over at once.
            let released = leadership.release().await.map_err(Error::Release);
            other.and(released)
        }
    }
}

/// Stops the controllers, unless they stopped by themselves (`outcome`), and
/// waits until every watch, controller and reconcile has finished.
async fn stop_controllers(
    outcome: &Result<(), Error>,
    stop: oneshot::Sender<()>,
    controllers: std::pin::Pin<&mut impl Future<Output = ()>>,
) {
    if !matches!(outcome, Err(Error::ControllersStopped)) {
        let _ = stop.send(());
        controllers.await;
    }
}

/// The client from `KUBECONFIG`/`~/.kube/config` or the in-cluster
/// environment, identified by [`USER_AGENT`] and the replica (`POD_NAME`,
/// else `HOSTNAME`): the API server's audit log tells the replicas apart.
async fn client() -> Result<Client, Error> {
    let mut config = kube::Config::infer().await.map_err(Error::KubeConfig)?;
    let replica = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok();
    let agent = replica
        .and_then(|r| HeaderValue::from_str(&format!("{USER_AGENT} ({r})")).ok())
        .unwrap_or(HeaderValue::from_static(USER_AGENT));
    config.headers.push((header::USER_AGENT, agent));
    Client::try_from(config).map_err(Error::Client)
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, Error> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signal)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("received SIGTERM"),
                _ = interrupt.recv() => tracing::info!("received SIGINT"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
