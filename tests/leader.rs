//! Leader election's failure paths on the real API server: a Lease taken
//! over or deleted under the leader, a leader that cannot renew, a release
//! on stop, and Leases written by replicas whose clocks are wrong. The
//! operator processes' own election (kill -9, graceful hand-over) is in
//! tests/chaos/replicas.rs.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::objects;
use workspace_operator::leader::{Error, LeaderElector, Leadership, LeaseSettings};

/// Short timings, so each failure shows within seconds.
fn fast() -> LeaseSettings {
    LeaseSettings {
        lease_duration: Duration::from_secs(4),
        renew_interval: Duration::from_millis(500),
        renew_deadline: Duration::from_secs(2),
        retry_interval: Duration::from_millis(250),
    }
}

/// A namespace of its own for one test's Lease.
async fn namespace(admin: &Client, prefix: &str) -> String {
    let name = support::unique(prefix);
    objects::create_namespace(admin, json!({"name": name})).await;
    name
}

fn elector(client: &Client, ns: &str, identity: &str, settings: LeaseSettings) -> LeaderElector {
    LeaderElector::new(client.clone(), ns, "lead", identity.to_string(), settings)
}

/// Leadership, or a failure when it is not won within `within`.
async fn acquire(elector: &LeaderElector, within: Duration) -> Leadership {
    tokio::time::timeout(within, elector.acquire())
        .await
        .unwrap_or_else(|_| panic!("{} did not lead within {within:?}", elector.identity()))
}

/// Why `leadership` ended, or a failure when it still holds after `within`.
async fn lost(leadership: &mut Leadership, within: Duration) -> Error {
    tokio::time::timeout(within, leadership.hold())
        .await
        .unwrap_or_else(|_| panic!("leadership still held after {within:?}"))
}

async fn lease(admin: &Client, ns: &str) -> Lease {
    Api::<Lease>::namespaced(admin.clone(), ns)
        .get("lead")
        .await
        .expect("the Lease")
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref()?.holder_identity.clone()
}

#[tokio::test]
async fn a_leader_steps_down_when_another_replica_took_the_lease() {
    let plane = support::bare_plane();
    let admin = plane.admin().await;
    let ns = namespace(&admin, "lead-taken").await;
    let mut leadership = acquire(&elector(&admin, &ns, "a", fast()), Duration::from_secs(15)).await;
    Api::<Lease>::namespaced(admin.clone(), &ns)
        .patch(
            "lead",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "b"}})),
        )
        .await
        .unwrap();
    match lost(&mut leadership, Duration::from_secs(10)).await {
        Error::TakenOver { holder } => assert_eq!(holder, "b"),
        other => panic!("expected TakenOver, got {other:?}"),
    }
    // It stepped down without writing: the Lease is still b's.
    assert_eq!(holder(&lease(&admin, &ns).await).as_deref(), Some("b"));
}

#[tokio::test]
async fn a_leader_steps_down_when_its_lease_is_deleted() {
    let plane = support::bare_plane();
    let admin = plane.admin().await;
    let ns = namespace(&admin, "lead-deleted").await;
    let mut leadership = acquire(&elector(&admin, &ns, "a", fast()), Duration::from_secs(15)).await;
    Api::<Lease>::namespaced(admin.clone(), &ns)
        .delete("lead", &DeleteParams::default())
        .await
        .unwrap();
    let error = lost(&mut leadership, Duration::from_secs(10)).await;
    assert!(matches!(error, Error::Deleted), "{error:?}");
}

/// A leader whose renewals fail (here: its permission on Leases is taken
/// away) gives up after the renew deadline, before the Lease it last
/// renewed expires, so it has stopped before any standby may take over.
#[tokio::test]
async fn a_leader_that_cannot_renew_stops_before_its_lease_expires() {
    let plane = support::bare_plane();
    let admin = plane.admin().await;
    let ns = namespace(&admin, "lead-renew").await;
    let user = "leader-renew-test";
    let rules = json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]);
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "leases"}, "rules": rules}))
                .unwrap(),
        )
        .await
        .unwrap();
    let bindings = Api::<RoleBinding>::namespaced(admin.clone(), &ns);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "leases"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leases"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let client = plane.client_as(user, &[]).await;
    // A lease long enough that a loaded machine's scheduling delays do not
    // blur the order: the deadline (2 s) comes 4 s before the expiry.
    let settings = LeaseSettings {
        lease_duration: Duration::from_secs(6),
        ..fast()
    };
    let mut leadership = acquire(
        &elector(&client, &ns, "a", settings.clone()),
        Duration::from_secs(15),
    )
    .await;
    let holding = tokio::spawn(async move { leadership.hold().await });
    // Renewals go through for a while, then are forbidden.
    let renewed = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.clone());
    let first = renewed(&lease(&admin, &ns).await);
    support::wait_for("a renewal", Duration::from_secs(5), || async {
        (renewed(&lease(&admin, &ns).await) != first).then_some(())
    })
    .await;
    bindings
        .delete("leases", &DeleteParams::default())
        .await
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), holding)
        .await
        .expect("leadership given up within 10 s")
        .unwrap();
    let stopped = Timestamp::now();
    let since = match error {
        Error::RenewDeadlineExceeded(since) => since,
        other => panic!("expected RenewDeadlineExceeded, got {other:?}"),
    };
    assert!(since >= settings.renew_deadline, "gave up after {since:?}");
    let last = renewed(&lease(&admin, &ns).await).expect("a renewTime").0;
    let expires = last + SignedDuration::try_from(settings.lease_duration).unwrap();
    assert!(
        stopped < expires,
        "stopped at {stopped}, after the Lease renewed at {last} expired ({expires})"
    );
}

/// A released Lease is taken at the standby's next poll, not after the
/// lease duration.
#[tokio::test]
async fn a_released_lease_is_taken_at_the_next_poll() {
    let plane = support::bare_plane();
    let admin = plane.admin().await;
    let ns = namespace(&admin, "lead-release").await;
    let settings = LeaseSettings {
        lease_duration: Duration::from_secs(30),
        ..fast()
    };
    let leadership = acquire(
        &elector(&admin, &ns, "a", settings.clone()),
        Duration::from_secs(15),
    )
    .await;
    let standby = elector(&admin, &ns, "b", settings);
    let waiting = tokio::spawn(async move { standby.acquire().await });
    // b has seen a's live Lease and stands by.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!waiting.is_finished(), "b took a live Lease");
    leadership.release().await.expect("release");
    let released = Instant::now();
    // Well before the 30 s the Lease would take to expire.
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("b took the released Lease at its next poll")
        .unwrap();
    assert!(released.elapsed() < Duration::from_secs(10));
    let taken = lease(&admin, &ns).await;
    let spec = taken.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

/// The Lease of a replica whose clock is an hour behind or ahead: a
/// candidate judges it by how long it has seen it unchanged on its own
/// clock, so it neither takes it at once (the renewTime looks an hour old)
/// nor waits an hour (it looks renewed in the future).
#[tokio::test]
async fn a_skewed_clock_in_the_lease_changes_nothing() {
    let plane = support::bare_plane();
    let admin = plane.admin().await;
    for (skew, label) in [(-3600, "behind"), (3600, "ahead")] {
        let ns = namespace(&admin, &format!("lead-skew-{label}")).await;
        let renewed = Timestamp::now() + SignedDuration::from_secs(skew);
        Api::<Lease>::namespaced(admin.clone(), &ns)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "lead"},
                    "spec": {
                        "holderIdentity": "ghost",
                        "leaseDurationSeconds": 4,
                        "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                    }
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let started = Instant::now();
        acquire(&elector(&admin, &ns, "b", fast()), Duration::from_secs(30)).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(4) && waited < Duration::from_secs(20),
            "a clock {label}: took the Lease after {waited:?} (its duration is 4 s)"
        );
    }
}
