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

/// An error a reconcile returns: it has a bounded reason for metrics, logs
/// and conditions.
pub trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// A bounded, PascalCase reason.
    fn reason(&self) -> &'static str;
}

/// Runs one controller for `K`: waits for the caches, reconciles every object
/// once, then every object its trigger stream names, at most
/// `--concurrency` at a time. A failed reconcile is counted and retried.
pub async fn run_controller<K, R, Fut, E>(
    ctx: Arc<Context>,
    store: kube::runtime::reflector::Store<K>,
    triggers: futures::channel::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<K>>,
    controller: &'static str,
    reconcile: R,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    R: FnMut(Arc<K>, Arc<Context>) -> Fut,
    Fut:
        std::future::Future<Output = Result<kube::runtime::controller::Action, E>> + Send + 'static,
    E: ReconcileError,
{
    use futures::StreamExt;
    use kube::ResourceExt;
    use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};

    ctx.world.synced().await;
    tracing::info!(controller, "caches synced; reconciling");
    let config = ControllerConfig::default().concurrency(ctx.config.concurrency);
    let error_policy = move |obj: Arc<K>, err: &E, ctx: Arc<Context>| {
        tracing::warn!(
            controller,
            namespace = obj.namespace().unwrap_or_default(),
            name = %obj.name_any(),
            reason = err.reason(),
            error = %err,
            "reconcile failed"
        );
        ctx.metrics.reconcile_failed(controller, err.reason());
        Action::requeue(std::time::Duration::from_secs(5))
    };
    Controller::for_stream(futures::stream::pending(), store)
        .reconcile_on(triggers)
        .reconcile_all_on(futures::stream::once(futures::future::ready(())))
        .with_config(config)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(err) = result {
                tracing::debug!(controller, error = %err, "reconcile did not complete");
            }
            futures::future::ready(())
        })
        .await;
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
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    ctx.metrics.write(controller, "events");
    if let Err(err) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %err, "could not record an event");
    }
}

/// Server-side applies `status` to the status subresource of `name` (through
/// `api`), as the operator's field manager; `resource` labels the write in
/// the metrics.
pub async fn apply_status<K, S>(
    ctx: &Context,
    controller: &'static str,
    resource: &'static str,
    api: &kube::Api<K>,
    name: &str,
    status: &S,
) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    S: serde::Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    ctx.metrics.write(controller, resource);
    let params = kube::api::PatchParams::apply(crate::config::FIELD_MANAGER).force();
    api.patch_status(name, &params, &kube::api::Patch::Apply(&body))
        .await
        .map(|_| ())
}

/// When the `Ready` condition changed its status or reason between two
/// condition lists: the event to record (type, reason, message).
pub fn ready_event(
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    current: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
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
