//! The control plane's components killed and restarted, and the watch
//! history compacted away, while a fleet converges.

use super::*;

/// A component killed mid-converge and started again after `down`: the
/// operator reports not ready while its watches fail (when they do), ready
/// again once they recover, converges, and then writes nothing.
async fn component_restart(component: Component, prefix: &str, down: Duration) {
    let plane = support::plane();
    let admin = plane.admin().await;
    let op = Operator::alone(&[], &[]);
    let mark = plane.audit_mark();
    let mut fleet = Fleet::create(&admin, prefix, 100 * soak()).await;
    let churn = Churn::start(&admin, &fleet, 7, true);
    let errors_before = op.counter("workspace_operator_watch_errors_total", "");
    // Mid-converge: some workspaces are Ready, most are not yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    plane.kill(component);
    let killed = Instant::now();
    // While it is down, /readyz says so as soon as a watch fails.
    let mut seen_unready = false;
    while killed.elapsed() < down {
        seen_unready |= !op.is_ready();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restarted = plane.audit_mark();
    plane.start_component(component);
    let api_back = plane.wait_api_ready(TIMEOUT);
    let ready_again = until("the operator to be ready again", TIMEOUT, || op.is_ready()).await;
    let watch_errors = op.counter("workspace_operator_watch_errors_total", "") - errors_before;
    let churned = churn.accepted.load(std::sync::atomic::Ordering::Relaxed);
    let deleted = churn.stop().await;
    forget(&mut fleet, &deleted);
    let settled = fleet.settle(&admin, SETTLE).await;
    wait_deleted(&admin, &deleted, SETTLE).await;
    assert!(op.is_running(), "the operator died: {}", op.log_tail(30));
    assert_idle_metrics(&op, &fleet).await;
    let since_restart = plane.writes_since(restarted, OPERATOR_USER).len();
    let writes = writes_and_quiet(mark).await;
    if component == Component::ApiServer {
        assert!(
            seen_unready,
            "/readyz stayed 200 while the API server was down"
        );
    }
    if seen_unready {
        assert!(watch_errors > 0.0, "not ready without a failing watch");
    }
    eprintln!(
        "chaos: {component:?} down {down:?}: /readyz false seen {seen_unready}, {watch_errors} watch errors, \
         API back {api_back:?} after start, operator ready {ready_again:?} later, \
         converged {settled:?} after that; {} workspaces, {} deleted, {churned} member changes; \
         {writes} operator writes in all, {since_restart} after the restart",
        fleet.workspaces.len(),
        deleted.len()
    );
}

/// Once converged, `/metrics` shows empty queues, nothing in flight, and
/// the caches holding the fleet.
async fn assert_idle_metrics(op: &Operator, fleet: &Fleet) {
    until("the queues to drain", TIMEOUT, || {
        op.metric("workspace_operator_queue_depth", "") == Some(0.0)
            && op.metric("workspace_operator_reconciles_in_flight", "") == Some(0.0)
    })
    .await;
    let cached = op.counter("workspace_operator_cached_objects", "watch=\"workspaces\"");
    assert!(
        cached >= fleet.workspaces.len() as f64,
        "{cached} workspaces cached, the fleet has {}",
        fleet.workspaces.len()
    );
    for series in [
        "workspace_operator_queue_delayed",
        "workspace_operator_watch_restarts_total",
        "workspace_operator_watch_errors_total",
        "workspace_operator_cached_objects{watch=\"namespaces\"}",
    ] {
        assert!(
            op.metric(series, "").is_some_and(|_| {
                op.get("/metrics")
                    .is_some_and(|(_, body)| body.contains(series))
            }),
            "{series} missing from /metrics"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_killed_and_restarted_mid_converge() {
    let _serial = SERIAL.lock().await;
    component_restart(Component::ApiServer, "api", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_and_restarted_mid_converge() {
    let _serial = SERIAL.lock().await;
    component_restart(Component::Etcd, "etcd", Duration::from_secs(5)).await;
}

/// Watch expiry: with the operator frozen, workspaces are deleted and
/// created, a member's role changes, another member goes, and the owner's
/// RoleBinding is deleted behind the operator's back; then etcd's history
/// is compacted and the API server killed; the operator is thawed and the
/// API server started again, so every watch resumes from a version that is
/// gone (`410 Gone`). The operator lists again and catches every change and
/// deletion made meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_expiry_relists_changes_and_deletions() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let op = Operator::alone(&[], &[]);
    let mut fleet = Fleet::create(&admin, "expiry", 20 * soak()).await;
    let ns = fleet.workspaces[1].clone();
    let members: Api<WorkspaceMember> = Api::namespaced(admin.clone(), &ns);
    fleet.settle(&admin, SETTLE).await;
    for (name, who) in [
        ("changed", "dev0@example.com"),
        ("removed", "dev1@example.com"),
    ] {
        apply(&admin, member(&ns, name, user(who), "Developer")).await;
        member_binding(&admin, &ns, name).await;
    }
    let restarts = op.counter("workspace_operator_watch_restarts_total", "");

    op.freeze();
    let gone: Vec<String> = fleet.workspaces[2..5].to_vec();
    let workspaces: Api<Workspace> = Api::all(admin.clone());
    for name in &gone {
        workspaces
            .delete(name, &Default::default())
            .await
            .expect("delete a workspace");
    }
    forget(&mut fleet, &gone);
    let added = support::unique("expiry-added");
    apply(
        &admin,
        workspace(&added, "User", "late@example.com", json!({})),
    )
    .await;
    fleet.workspaces.push(added);
    apply(
        &admin,
        member(&ns, "changed", user("dev0@example.com"), "Viewer"),
    )
    .await;
    members
        .delete("removed", &Default::default())
        .await
        .expect("delete a member");
    let owner_ns = fleet.workspaces[0].clone();
    Api::<RoleBinding>::namespaced(admin.clone(), &owner_ns)
        .delete("workspaces.dev:owner", &Default::default())
        .await
        .expect("delete the owner binding");
    let revision = plane.compact_etcd();
    plane.kill(Component::ApiServer);
    // Thawed while the API server is down: its connections close (a frozen
    // client would hold the API server's port for a minute), and its
    // watches retry until the API server is back, from versions that are
    // gone by then.
    let thawed = Instant::now();
    op.thaw();
    plane.start_component(Component::ApiServer);
    plane.wait_api_ready(TIMEOUT);
    let settled = fleet.settle(&admin, SETTLE).await;
    wait_deleted(&admin, &gone, SETTLE).await;
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &ns);
    let viewer = support::wait_for(
        "the member's binding to name the Viewer role",
        SETTLE,
        || {
            let (members, bindings) = (members.clone(), bindings.clone());
            async move {
                let m = members.get("changed").await.ok()?;
                let binding = m.status?.role_binding?;
                let rb = bindings.get(&binding).await.ok()?;
                rb.role_ref.name.contains("viewer").then_some(rb)
            }
        },
    )
    .await;
    let relists = op.counter("workspace_operator_watch_restarts_total", "") - restarts;
    assert!(relists > 0.0, "no watch listed again after the compaction");
    eprintln!(
        "chaos: watch expiry (compacted at revision {revision}): {relists} watches listed again; \
         3 deletions, 1 creation, a role change ({}), a member removal and a deleted owner binding \
         caught {:?} after the thaw (fleet settled in {settled:?})",
        viewer.role_ref.name,
        thawed.elapsed()
    );
}
