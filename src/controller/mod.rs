//! The controllers, one folder per kind: observe -> validate -> build (pure)
//! -> apply -> status.

use std::sync::Arc;

use kube::Client;

use crate::config::Config;
use crate::http::Health;
use crate::metrics::Metrics;

/// Runs every controller until the first of them stops.
pub async fn run(client: Client, config: Arc<Config>, metrics: Arc<Metrics>, health: Health) {
    let _ = (client, config, metrics, health);
    std::future::pending::<()>().await
}
