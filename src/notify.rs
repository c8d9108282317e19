//! Outbound notifications: CloudEvents 1.0 events, in structured JSON mode,
//! POSTed to `--notify-url` when an invitation or a transfer waits for a
//! person or has ended, so that person learns of it (Kubernetes has no
//! e-mail).
//!
//! Delivery never holds up a reconcile: [`Notifier::send`] puts the event in
//! a bounded queue and returns; one task delivers the queue in order,
//! retrying a failed delivery with exponential backoff. Delivery is
//! at-least-once while the operator runs: an event whose delivery was cut
//! short may be sent again with the same `id`, which receivers use to
//! de-duplicate. Nothing is stored in the cluster. Events are sent when the
//! operator records a change (a status it writes), so a restart sends
//! nothing for invitations and transfers that did not change; an event still
//! queued when the process stops is lost. Delivered, retried, failed and
//! dropped (queue full) events are counted on `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::metrics::Metrics;

/// Header carrying the body's HMAC-SHA256 signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-workspaces-signature";

/// Content type of a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// Prefix of every event's `type`.
const TYPE_PREFIX: &str = "dev.workspaces.";

/// Most delivery attempts of one event (about five minutes of retries).
const MAX_ATTEMPTS: u32 = 12;

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// One event to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The object's UID and the change, e.g. `<uid>:invitation.created`: the
    /// same change of the same object always has the same id.
    pub id: String,
    /// What happened, e.g. `invitation.created`; the event's `type` is
    /// `dev.workspaces.` followed by it.
    pub kind: &'static str,
    /// The object, as a path: `namespaces/acme/workspacemembers/bob` or
    /// `workspacetransfers/move-prod`.
    pub subject: String,
    /// The event's payload: the workspace, the person concerned, what to do.
    pub data: Value,
}

impl Notification {
    /// A notification about the object with `uid`; its id is derived from
    /// both, so a change is announced under one id however often it is sent.
    pub fn new(uid: &str, kind: &'static str, subject: String, data: Value) -> Self {
        Self {
            id: format!("{uid}:{kind}"),
            kind,
            subject,
            data,
        }
    }

    /// The CloudEvent (specversion 1.0, structured JSON) sent for it.
    pub fn cloud_event(&self, time: &str) -> Value {
        json!({
            "specversion": "1.0",
            "id": self.id,
            "source": "/apis/workspaces.dev/v1alpha1",
            "type": format!("{TYPE_PREFIX}{}", self.kind),
            "subject": self.subject,
            "time": time,
            "datacontenttype": "application/json",
            "data": self.data,
        })
    }
}

/// Why notifications could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The signing key file could not be read.
    #[error("reading the notification key {path}: {source}")]
    Key {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The signing key file is empty.
    #[error("the notification key {0} is empty")]
    EmptyKey(String),
    /// No TLS roots for https:// receivers.
    #[error("loading the system's TLS roots for notifications: {0}")]
    Tls(#[source] std::io::Error),
}

/// How many notification ids a process remembers having queued.
const REMEMBERED: usize = 10_000;

/// The ids this process queued, oldest first: a change is announced once
/// even when a reconcile starts from a cached copy that does not show the
/// status that announced it yet.
#[derive(Debug, Default)]
struct Sent {
    ids: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl Sent {
    /// Records `id`; false when it was recorded already.
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        true
    }
}

/// Sends notifications, or nothing when `--notify-url` is unset. Cheap to
/// clone; every clone feeds the same queue.
#[derive(Clone, Debug)]
pub struct Notifier {
    queue: Option<mpsc::Sender<Notification>>,
    sent: Arc<std::sync::Mutex<Sent>>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        Self {
            queue: None,
            sent: Arc::default(),
            metrics,
        }
    }

    /// The notifier `config` asks for: when `--notify-url` is set, starts the
    /// task that delivers the queue (it ends once every clone is dropped).
    pub fn start(config: &Config, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let Some(url) = config.notify_url.as_deref() else {
            return Ok(Self::disabled(metrics));
        };
        let key = match &config.notify_secret_file {
            Some(path) => Some(read_key(path)?),
            None => None,
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(Error::Tls)?
            .https_or_http()
            .enable_http1()
            .build();
        let delivery = Delivery {
            client: Client::builder(TokioExecutor::new()).build(connector),
            // `--notify-url` was checked to be a URL when the flags were parsed.
            url: url.parse().expect("--notify-url is a valid URL"),
            key,
            metrics: metrics.clone(),
        };
        let (queue, pending) = mpsc::channel(config.notify_queue as usize);
        tokio::spawn(delivery.run(pending));
        Ok(Self {
            queue: Some(queue),
            sent: Arc::default(),
            metrics,
        })
    }

    /// Queues `notification` for delivery, unless this process queued its
    /// id before; never waits. When the queue is full the notification is
    /// dropped and counted.
    pub fn send(&self, notification: Notification) {
        let Some(queue) = &self.queue else { return };
        let first = self
            .sent
            .lock()
            .map(|mut sent| sent.insert(&notification.id))
            .unwrap_or(true);
        if !first {
            return;
        }
        tracing::debug!(id = %notification.id, "queueing notification");
        if queue.try_send(notification).is_err() {
            self.metrics.notification("dropped");
            tracing::warn!("notification queue full; a notification was dropped");
        }
    }
}

fn read_key(path: &std::path::Path) -> Result<ring::hmac::Key, Error> {
    let shown = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| Error::Key {
        path: shown.clone(),
        source,
    })?;
    let key = text.trim_ascii();
    if key.is_empty() {
        return Err(Error::EmptyKey(shown));
    }
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key))
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &ring::hmac::Key, body: &[u8]) -> String {
    let tag = ring::hmac::sign(key, body);
    let hex: String = tag
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Delivered,
    /// Worth trying again: a 5xx, 408, 429, a timeout or a connection error.
    Retry(String),
    /// Refused for good (another 4xx): the receiver does not want it.
    Refused(String),
}

/// The delay before retry number `attempt` (1-based): 0.5 s doubling to 30 s.
fn backoff(attempt: u32) -> Duration {
    let millis = 500u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(6));
    Duration::from_millis(millis.min(30_000))
}

fn classify(status: http::StatusCode) -> Attempt {
    if status.is_success() {
        Attempt::Delivered
    } else if status.is_server_error()
        || status == http::StatusCode::REQUEST_TIMEOUT
        || status == http::StatusCode::TOO_MANY_REQUESTS
    {
        Attempt::Retry(format!("the receiver answered {status}"))
    } else {
        Attempt::Refused(format!("the receiver answered {status}"))
    }
}

struct Delivery {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: http::Uri,
    key: Option<ring::hmac::Key>,
    metrics: Arc<Metrics>,
}

impl Delivery {
    async fn run(self, mut pending: mpsc::Receiver<Notification>) {
        while let Some(notification) = pending.recv().await {
            self.deliver(&notification).await;
        }
    }

    /// Delivers one notification, retrying until it is delivered, refused,
    /// or out of attempts.
    async fn deliver(&self, notification: &Notification) {
        let time = k8s_openapi::jiff::Timestamp::now().to_string();
        let body = Bytes::from(notification.cloud_event(&time).to_string());
        for attempt in 1..=MAX_ATTEMPTS {
            match self.attempt(&body).await {
                Attempt::Delivered => {
                    self.metrics.notification("delivered");
                    tracing::debug!(id = %notification.id, "notification delivered");
                    return;
                }
                Attempt::Refused(why) => {
                    self.metrics.notification("failed");
                    tracing::warn!(id = %notification.id, %why, "notification refused");
                    return;
                }
                Attempt::Retry(why) if attempt < MAX_ATTEMPTS => {
                    self.metrics.notification("retried");
                    let delay = backoff(attempt);
                    tracing::info!(id = %notification.id, %why, ?delay, "notification not delivered; retrying");
                    tokio::time::sleep(delay).await;
                }
                Attempt::Retry(why) => {
                    self.metrics.notification("failed");
                    tracing::warn!(id = %notification.id, %why, "notification not delivered; giving up");
                }
            }
        }
    }

    async fn attempt(&self, body: &Bytes) -> Attempt {
        let mut request = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(http::header::USER_AGENT, crate::config::USER_AGENT);
        if let Some(key) = &self.key {
            request = request.header(SIGNATURE_HEADER, signature(key, body));
        }
        let request = match request.body(Full::new(body.clone())) {
            Ok(request) => request,
            Err(error) => return Attempt::Refused(format!("building the request: {error}")),
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request)).await {
            Ok(Ok(response)) => classify(response.status()),
            Ok(Err(error)) => Attempt::Retry(format!("sending failed: {error}")),
            Err(_) => Attempt::Retry(format!("no answer within {ATTEMPT_TIMEOUT:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_remembered_once_and_the_oldest_are_forgotten() {
        let mut sent = Sent::default();
        assert!(sent.insert("a"));
        assert!(!sent.insert("a"));
        for i in 0..REMEMBERED {
            assert!(sent.insert(&i.to_string()));
        }
        assert_eq!(sent.order.len(), REMEMBERED);
        assert!(sent.insert("a"), "the oldest id was forgotten");
    }

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(7), Duration::from_secs(30));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }

    #[test]
    fn server_errors_are_retried_client_errors_are_not() {
        assert_eq!(classify(http::StatusCode::OK), Attempt::Delivered);
        assert_eq!(classify(http::StatusCode::ACCEPTED), Attempt::Delivered);
        assert!(matches!(
            classify(http::StatusCode::INTERNAL_SERVER_ERROR),
            Attempt::Retry(_)
        ));
        assert!(matches!(
            classify(http::StatusCode::TOO_MANY_REQUESTS),
            Attempt::Retry(_)
        ));
        assert!(matches!(
            classify(http::StatusCode::BAD_REQUEST),
            Attempt::Refused(_)
        ));
    }

    #[test]
    fn the_same_change_has_the_same_id() {
        let a = Notification::new("u1", "invitation.created", "x".into(), json!({}));
        let b = Notification::new("u1", "invitation.created", "x".into(), json!({"a": 1}));
        assert_eq!(a.id, b.id);
        let c = Notification::new("u1", "invitation.accepted", "x".into(), json!({}));
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn a_cloud_event_has_the_required_attributes() {
        let n = Notification::new(
            "u1",
            "invitation.created",
            "namespaces/a/workspacemembers/b".into(),
            json!({"workspace": "a"}),
        );
        let event = n.cloud_event("2026-01-01T00:00:00Z");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["id"], "u1:invitation.created");
        assert_eq!(event["type"], "dev.workspaces.invitation.created");
        assert_eq!(event["source"], "/apis/workspaces.dev/v1alpha1");
        assert_eq!(event["subject"], "namespaces/a/workspacemembers/b");
        assert_eq!(event["data"]["workspace"], "a");
    }

    #[test]
    fn the_signature_is_the_hex_hmac_of_the_body() {
        // RFC 4231, test case 2.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            signature(&key, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
