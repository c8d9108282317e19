use super::runner::retry_delay;
use super::{JoinSet, WrittenStatuses, supervise};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

#[test]
fn retries_back_off_from_half_a_second_to_thirty() {
    let delays: Vec<Duration> = (1..=9).map(retry_delay).collect();
    let ms = |n| Duration::from_millis(n);
    assert_eq!(
        delays,
        [
            ms(500),
            ms(1000),
            ms(2000),
            ms(4000),
            ms(8000),
            ms(16000),
            ms(30000),
            ms(30000),
            ms(30000)
        ]
    );
    assert_eq!(retry_delay(u32::MAX), Duration::from_secs(30));
    assert_eq!(retry_delay(0), ms(500));
}

/// A part that holds `alive` and keeps running, yielding between steps,
/// until it is aborted.
fn busy(alive: &Arc<()>, steps: &Arc<AtomicU64>) -> impl Future<Output = &'static str> + use<> {
    let (alive, steps) = (alive.clone(), steps.clone());
    async move {
        let _alive = alive;
        loop {
            steps.fetch_add(1, SeqCst);
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_waits_until_every_part_has_finished() {
    let alive = Arc::new(());
    let steps = Arc::new(AtomicU64::new(0));
    let mut parts = JoinSet::new();
    parts.spawn(busy(&alive, &steps));
    parts.spawn(busy(&alive, &steps));
    parts.spawn({
        let alive = alive.clone();
        async move {
            let _alive = alive;
            std::future::pending::<&'static str>().await
        }
    });
    let started = steps.clone();
    supervise(parts, async move {
        while started.load(SeqCst) < 10_000 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Every part has been dropped, and none takes another step.
    assert_eq!(Arc::strong_count(&alive), 1);
    let after = steps.load(SeqCst);
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(steps.load(SeqCst), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_part_stopping_stops_the_others() {
    let alive = Arc::new(());
    let steps = Arc::new(AtomicU64::new(0));
    let mut parts = JoinSet::new();
    parts.spawn(busy(&alive, &steps));
    parts.spawn(async { "the test part stopped" });
    supervise(parts, std::future::pending()).await;
    assert_eq!(Arc::strong_count(&alive), 1);
}

/// The shared layer (watches, caches, indexes, the queue, writes,
/// events, labels) imports no controller: a controller is added
/// without touching it, and it reads as infrastructure.
#[test]
fn the_shared_layer_imports_no_controller() {
    const CONTROLLERS: [&str; 5] = [
        "workspace",
        "member",
        "organization",
        "transfer",
        "directory",
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/controller");
    let mut files: Vec<std::path::PathBuf> = [
        "world.rs",
        "cache.rs",
        "index.rs",
        "runner.rs",
        "apply.rs",
        "events.rs",
        "labels.rs",
        "backoff.rs",
        "fault.rs",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    for entry in std::fs::read_dir(dir.join("world")).unwrap() {
        files.push(entry.unwrap().path());
    }
    let mut imports = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            let path_of = |c: &str| {
                [
                    "controller::",
                    "super::",
                    "crate::controller::{",
                    "super::{",
                ]
                .iter()
                .any(|prefix| {
                    line.split(prefix).skip(1).any(|rest| {
                        let inside = rest.split('}').next().unwrap_or(rest);
                        inside
                            .split(|ch: char| !ch.is_alphanumeric() && ch != '_')
                            .next()
                            == Some(c)
                            || (prefix.ends_with('{')
                                && inside
                                    .split(|ch: char| !ch.is_alphanumeric() && ch != '_')
                                    .any(|word| word == c))
                    })
                })
            };
            if let Some(c) = CONTROLLERS.iter().find(|c| path_of(c)) {
                imports.push(format!("{}: {c}: {line}", file.display()));
            }
        }
    }
    assert!(files.len() > 9, "the shared layer's files: {files:?}");
    assert!(
        imports.is_empty(),
        "the shared layer imports a controller: {imports:#?}"
    );
}

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

fn status(time: &str) -> serde_json::Value {
    json!({"phase": "Active", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": time}]})
}

/// The object `name` (UID `uid-<name>`) as cached at `version`.
fn object(name: &str, version: &str) -> ConfigMap {
    let mut obj = ConfigMap::default();
    obj.metadata.name = Some(name.into());
    obj.metadata.namespace = Some("ns".into());
    obj.metadata.uid = Some(format!("uid-{name}"));
    obj.metadata.resource_version = Some(version.into());
    obj
}

#[test]
fn a_stale_cache_does_not_write_the_same_status_twice() {
    let written = WrittenStatuses::default();
    written.record(&object("a", "9"), &status("t1"), &object("a", "10"));
    // The cache still shows version 9: same status (other timestamp) is skipped.
    assert!(written.already(&object("a", "9"), &status("t2")));
    // A different status is written.
    assert!(!written.already(&object("a", "9"), &json!({"phase": "Blocked"})));
    // Once the cache caught up (or someone wrote after), the cache decides.
    assert!(!written.already(&object("a", "10"), &status("t2")));
    assert!(!written.already(&object("a", "12"), &status("t2")));
    assert!(!written.already(&object("b", "9"), &status("t2")));
    // Another object under the same name.
    let mut again = object("a", "9");
    again.metadata.uid = Some("uid-new".into());
    assert!(!written.already(&again, &status("t2")));
}

#[test]
fn a_write_is_forgotten_once_the_cache_shows_it_or_the_object_is_gone() {
    let written = WrittenStatuses::default();
    for name in ["a", "b", "c"] {
        written.record(&object(name, "9"), &status("t1"), &object(name, "10"));
    }
    assert_eq!(written.len(), 3);
    // The cache lags: kept.
    written.observe(&object("a", "9"));
    assert_eq!(written.len(), 3);
    // The cache shows the write, or a later version: forgotten.
    written.observe(&object("a", "10"));
    written.observe(&object("b", "11"));
    assert_eq!(written.len(), 1);
    assert!(!written.already(&object("a", "9"), &status("t1")));
    // Deleted: forgotten.
    written.forget(&ObjectRef::<ConfigMap>::new("c").within("ns"));
    assert!(written.is_empty());
    // A name that now holds another object forgets the old one's write.
    written.record(&object("d", "9"), &status("t1"), &object("d", "10"));
    let mut recreated = object("d", "3");
    recreated.metadata.uid = Some("uid-new".into());
    written.observe(&recreated);
    assert!(written.is_empty());
}
