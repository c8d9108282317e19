//! Kubernetes events (`events.k8s.io/v1`) about the objects the operator
//! reconciles.
//!
//! The operator records an event when an object's `Ready` condition changes,
//! and when it creates a namespace: rare, and never the same one twice in a
//! row for an object, so every event is a new Event object and none is
//! remembered. (kube-runtime's `Recorder` keeps each event it published for
//! six minutes to count repeats in a series, and scans that cache on every
//! publish: memory and CPU that grow with the number of workspaces.)

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;

/// Publishes events as one controller instance.
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
}

impl Events {
    /// Events reported by `controller` (the reporting controller), from
    /// `instance` (the pod name; the controller's name when unknown).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Events {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
        }
    }

    /// Creates one event about `regarding`, in its namespace (`default` for a
    /// cluster-scoped object).
    pub async fn publish(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let event = event(
            &self.controller,
            &self.instance,
            regarding,
            type_,
            reason,
            note,
        );
        let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        api.create(&PostParams::default(), &event).await.map(|_| ())
    }
}

/// The Event object (pure; the name is unique per object and nanosecond).
fn event(
    controller: &str,
    instance: &str,
    regarding: ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) -> Event {
    let now = k8s_openapi::jiff::Timestamp::now();
    let namespace = regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let name = format!(
        "{}.{:x}",
        regarding.name.as_deref().unwrap_or(controller),
        now.as_nanosecond()
    );
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            ..Default::default()
        },
        action: Some("Reconcile".to_string()),
        reason: Some(reason.to_string()),
        // The API server limits notes to 1 KiB.
        note: Some(super::labels::truncate(&note, 1024).to_string()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding),
        reporting_controller: Some(controller.to_string()),
        reporting_instance: Some(instance.to_string()),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_object_controller_and_namespace() {
        let regarding = ObjectReference {
            kind: Some("Workspace".into()),
            name: Some("analytics".into()),
            ..Default::default()
        };
        let e = event(
            "workspace-operator",
            "pod-1",
            regarding,
            EventType::Warning,
            "HandleConflict",
            "é".repeat(600),
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert!(
            e.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("analytics.")
        );
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("HandleConflict"));
        assert_eq!(
            e.reporting_controller.as_deref(),
            Some("workspace-operator")
        );
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-1"));
        let note = e.note.unwrap();
        assert!(note.len() <= 1024 && note.chars().all(|c| c == 'é'));

        let namespaced = ObjectReference {
            namespace: Some("team-a".into()),
            name: Some("bob".into()),
            ..Default::default()
        };
        let e = event(
            "c",
            "c",
            namespaced,
            EventType::Normal,
            "Ready",
            String::new(),
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
    }
}
