use super::router::Router;
use super::watches::{drive, trim};
use super::*;
use crate::controller::labels;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
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

/// A World with nothing cached, and no watch behind it.
fn empty_world() -> World {
    World {
        workspaces: cache::cache().0,
        organizations: cache::cache().0,
        members: cache::cache().0,
        namespaces: cache::cache().0,
        role_bindings: cache::cache().0,
        roles: cache::cache().0,
        cluster_roles: cache::cache().0,
        cluster_role_bindings: cache::cache().0,
        assignable_roles: cache::cache().0,
        quotas: cache::cache().0,
        limit_ranges: cache::cache().0,
        network_policies: cache::cache().0,
        transfers: cache::cache().0,
        transfer_index: Index::new(transfer::triggers::index_keys),
        workspace_index: Index::new(index::workspace_keys),
        member_index: Index::new(directory::member_keys),
        role_binding_index: Index::new(index::namespace_keys::<RoleBinding>),
    }
}

#[test]
fn a_deleted_namespace_is_routed_to_the_workspace_its_label_names() {
    let (to_workspaces, mut workspaces) = unbounded();
    let router = Router {
        world: empty_world(),
        to_workspaces,
        to_members: unbounded().0,
        to_organizations: unbounded().0,
        to_transfers: unbounded().0,
        to_directory: unbounded().0,
    };
    // The delete event's copy: the cache has dropped the namespace
    // already, and no cached Workspace names it in its spec.
    let mut ns = PartialObjectMeta::<Namespace>::default();
    ns.metadata.name = Some("team-ns".into());
    ns.metadata.labels = Some([(labels::WORKSPACE.to_string(), "team".to_string())].into());
    router.on_namespace(&ns);
    let routed: Vec<String> = std::iter::from_fn(|| workspaces.try_recv().ok())
        .map(|at| at.name)
        .collect();
    assert_eq!(routed, ["team"]);
}
