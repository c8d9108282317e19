//! The controllers, one folder per kind: observe -> validate -> build (pure)
//! -> apply -> status.
//!
//! Every kind the operator reads is watched exactly once ([`world`]): the
//! watch fills a reflector store that every controller reads instead of the
//! API server, and each event is routed to the controllers it concerns as a
//! reconcile trigger. Children are watched by label, and `managedFields` are
//! dropped before caching.

pub mod apply;
pub mod labels;
pub mod member;
pub mod organization;
pub mod workspace;
pub mod world;

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::config::Config;
use crate::http::Health;
use crate::metrics::Metrics;

pub use world::World;

/// Name the operator reports events and writes objects under.
pub const CONTROLLER_NAME: &str = "workspace-operator";

/// What every controller shares: the client, the caches, configuration,
/// metrics and the event recorder. No globals.
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
    pub recorder: Recorder,
}

/// Runs every controller until the first of them stops.
pub async fn run(client: Client, config: Arc<Config>, metrics: Arc<Metrics>, health: Health) {
    let (world, drivers, triggers) = World::start(client.clone(), &health);
    let instance = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER_NAME.to_string(),
            instance,
        },
    );
    let ctx = Arc::new(Context {
        client,
        world,
        config,
        metrics,
        recorder,
    });
    let workspaces = workspace::run(ctx.clone(), triggers.workspaces);
    let members = member::run(ctx.clone(), triggers.members);
    let organizations = organization::run(ctx.clone(), triggers.organizations);
    tokio::select! {
        _ = drivers => tracing::error!("a watch stopped"),
        _ = workspaces => tracing::error!("the workspace controller stopped"),
        _ = members => tracing::error!("the member controller stopped"),
        _ = organizations => tracing::error!("the organization controller stopped"),
    }
}
