use super::watches::{drive, trim};
use super::*;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use crate::controller::index::tests::{binding, names};

/// Feeds `events` to a watch driver; returns what it routed, and the
/// cache and index it filled.
async fn drive_events(
    events: Vec<Event<RoleBinding>>,
) -> (Vec<String>, Cache<RoleBinding>, Index<RoleBinding>) {
    let (reader, writer) = cache::cache::<RoleBinding>();
    let index = Index::new(index::namespace_keys::<RoleBinding>);
    let routed = Arc::new(Mutex::new(Vec::new()));
    let health = Health::new();
    let driver = drive(
        futures::stream::iter(events.into_iter().map(Ok)),
        writer,
        Some(index.clone()),
        trim,
        health.watch("rolebindings"),
        {
            let routed = routed.clone();
            move |rb: &RoleBinding| routed.lock().unwrap().push(rb.name_any())
        },
    );
    driver.await;
    let mut routed = routed.lock().unwrap().clone();
    routed.sort();
    (routed, reader, index)
}

#[tokio::test]
async fn a_long_run_of_events_lets_other_tasks_in() {
    // A page of a list, or a burst of changes, arrives without the
    // stream ever waiting; the driver must still yield to the runtime
    // (on this single-threaded runtime, the other task runs only then).
    let other_ran = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let other_ran = other_ran.clone();
        async move { other_ran.store(true, SeqCst) }
    });
    let seen_before_last = Arc::new(AtomicBool::new(false));
    let (_, writer) = cache::cache::<RoleBinding>();
    let events = (0..1_000).map(|i| Ok(Event::Apply(binding("a", &format!("rb-{i}")))));
    let driver = drive(
        futures::stream::iter(events),
        writer,
        None,
        trim,
        Health::new().watch("rolebindings"),
        {
            let (other_ran, seen) = (other_ran.clone(), seen_before_last.clone());
            move |rb: &RoleBinding| {
                if rb.name_any() == "rb-999" {
                    seen.store(other_ran.load(SeqCst), SeqCst);
                }
            }
        },
    );
    driver.await;
    assert!(
        seen_before_last.load(SeqCst),
        "the other task never ran while the driver worked through 1,000 events"
    );
}

#[tokio::test]
async fn the_first_list_is_indexed_but_not_routed() {
    let (routed, cache, index) = drive_events(vec![
        Event::Init,
        Event::InitApply(binding("a", "x")),
        Event::InitApply(binding("b", "y")),
        Event::InitDone,
        Event::Apply(binding("a", "z")),
    ])
    .await;
    assert_eq!(routed, ["z"], "only what changed after the list");
    assert_eq!(
        names(&index.lookup(&cache, &index::in_namespace("a"))),
        ["x", "z"]
    );
}

#[tokio::test]
async fn a_relist_routes_what_was_cached_before_and_after_it() {
    let (routed, cache, index) = drive_events(vec![
        Event::Init,
        Event::InitApply(binding("a", "gone")),
        Event::InitApply(binding("a", "kept")),
        Event::InitDone,
        // The watch restarts: "gone" was deleted while it was down.
        Event::Init,
        Event::InitApply(binding("a", "kept")),
        Event::InitApply(binding("b", "new")),
        Event::InitDone,
    ])
    .await;
    assert_eq!(routed, ["gone", "kept", "kept", "new"]);
    assert!(cache.get(&ObjectRef::new("gone").within("a")).is_none());
    assert_eq!(
        names(&index.lookup(&cache, &index::in_namespace("b"))),
        ["new"]
    );
}

/// A controller registered with the routes gets exactly what its mapping
/// function returns for the events of the watch it registered for, and the
/// keys it registered file the objects in the world's index; no other
/// controller's file is involved.
#[test]
fn a_registered_controller_gets_its_triggers_and_its_index_keys() {
    let (queue, mut triggers) = Queue::<Role>::open();
    let mut routes = Routes::default();
    routes
        .on(watch::ROLE_BINDINGS, &queue, |_, rb: &RoleBinding| {
            [ObjectRef::new(&format!("for-{}", rb.name_any()))]
        })
        .file(watch::ROLE_BINDINGS, |rb| {
            vec![format!("test/{}", rb.name_any())]
        });
    let (world, mut writers) = World::caches(&mut routes);
    let route = routes.take(watch::ROLE_BINDINGS);
    assert!(routes.left_over().is_empty());
    assert_eq!(route.len(), 1);
    route[0](&world, &binding("ns", "team"));
    let queued: Vec<String> = std::iter::from_fn(|| triggers.try_recv().ok())
        .map(|at| at.name)
        .collect();
    assert_eq!(queued, ["for-team"]);
    writers
        .children
        .role_binding
        .apply(&Event::Apply(binding("ns", "team")));
    world.role_binding_index.apply(&binding("ns", "team"));
    let filed = world
        .role_binding_index
        .lookup(&world.role_bindings, "test/team");
    assert_eq!(names(&filed), ["team"]);
    let mut routes = Routes::default();
    routes.on(watch::ROLES, &queue, |_, _: &Role| None);
    assert_eq!(routes.left_over(), ["roles"]);
}

#[test]
fn routes_for_a_watch_the_world_does_not_open_are_refused() {
    const NOBODY: Watch<Role> = Watch::named("roles-nobody-watches");
    let (queue, _triggers) = Queue::<Role>::open();
    let mut routes = Routes::default();
    routes.on(NOBODY, &queue, |_, _: &Role| None);
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        World::start(client, &Health::new(), routes)
    }));
    let refused = started.err().expect("the world refuses to start");
    let message = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("roles-nobody-watches"), "{message}");
}
