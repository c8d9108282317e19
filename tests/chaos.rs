//! The fault suite: the operator on a real control plane while things
//! break. Each scenario converges a fleet of workspaces with members
//! churning, injects a fault (a component killed and restarted, the watch
//! history compacted away, the operator killed, garbage applied), and then
//! checks the invariants (tests/support/invariants.rs) as the admin: every
//! Ready workspace has its namespace and exactly its owner's access, no
//! bystander namespace is touched, member bindings match Active members,
//! statuses observe their generation, no per-object cluster RBAC leaks.
//!
//! Every scenario prints one `chaos:` line (recovery time, writes) that
//! docs/reliability.md reports. The CI run is short; set
//! `WORKSPACE_OPERATOR_CHAOS_SOAK=<factor>` for a longer soak (the fleet,
//! the seeds and the bad-input count grow by that factor), and
//! `WORKSPACE_OPERATOR_CHAOS_SEED=<n>` to replay one seed of the kill -9
//! and bad-input scenarios.
//!
//! The scenarios kill the control plane's components, so they run one at a
//! time, each with its own operator.

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::json;
use support::faults::Component;
use support::fleet::{Churn, Fleet, forget, wait_deleted};
use support::fuzz;
use support::objects::{apply, member, user, wait_ready, workspace};
use support::operator::{OPERATOR_USER, Operator};
use tokio::sync::Mutex;
use workspace_operator::api::{MemberPhase, Workspace, WorkspaceMember, WorkspaceRole};

/// How long the operator is given to converge after a fault.
const SETTLE: Duration = Duration::from_secs(180);
/// How long a fault's effect (readiness dropping or coming back) may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// One scenario at a time: they kill parts of the shared control plane.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The soak factor (1 in CI).
fn soak() -> usize {
    std::env::var("WORKSPACE_OPERATOR_CHAOS_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// The seeds a seeded scenario runs: the replayed one, or `n` (times the
/// soak factor) fixed ones.
fn seeds(n: u64) -> Vec<u64> {
    match std::env::var("WORKSPACE_OPERATOR_CHAOS_SEED") {
        Ok(seed) => vec![seed.parse().expect("a numeric seed")],
        Err(_) => (1..=n * soak() as u64).collect(),
    }
}

/// An operator of the scenario's own: alone (no leader election), with
/// `env` added, ready.
fn own_operator(env: &[(&str, &str)]) -> Operator {
    let op = Operator::start_with_env(&["--leader-election=false"], env);
    op.wait_ready(TIMEOUT);
    op
}

/// Polls `check` every 100 ms until it holds; panics with `what` after
/// `timeout`. Returns how long it took.
async fn until(what: &str, timeout: Duration, check: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "{what}: not after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// The operator's writes since `mark`, and none in a quiet window after the
/// cluster converged: a fault leaves no write storm behind.
async fn writes_and_quiet(mark: support::AuditMark) -> usize {
    let plane = support::plane();
    let writes = plane.writes_since(mark, OPERATOR_USER).len();
    let quiet = plane.audit_mark();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = plane.writes_since(quiet, OPERATOR_USER);
    assert!(
        after.is_empty(),
        "the converged operator still writes: {}",
        after.iter().map(|w| format!("\n  {w}")).collect::<String>()
    );
    writes
}

/// A component killed mid-converge and started again after `down`: the
/// operator reports not ready while its watches fail (when they do), ready
/// again once they recover, converges, and then writes nothing.
async fn component_restart(component: Component, prefix: &str, down: Duration) {
    let plane = support::plane();
    let admin = plane.admin().await;
    let op = own_operator(&[]);
    let mark = plane.audit_mark();
    let mut fleet = Fleet::create(&admin, prefix, 100 * soak()).await;
    let churn = Churn::start(&admin, &fleet, 7, true);
    let errors_before = op.counter("workspace_operator_watch_errors_total", "");
    tokio::time::sleep(Duration::from_millis(500)).await;
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
    let deleted = churn.stop().await;
    forget(&mut fleet, &deleted);
    let settled = fleet.settle(&admin, SETTLE).await;
    wait_deleted(&admin, &deleted, SETTLE).await;
    assert!(op.is_running(), "the operator died: {}", op.log_tail(30));
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
         converged {settled:?} after that; {} workspaces, {} deleted, {writes} operator writes in all, \
         {since_restart} after the restart",
        fleet.workspaces.len(),
        deleted.len()
    );
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

/// The operator killed with SIGKILL at seeded random points of a converge,
/// a new one started each time: the last one converges everything, and the
/// invariants hold. The seed and the kill points are printed for a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_at_random_points_converges() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    for seed in seeds(3) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut fleet = Fleet::create(&admin, &format!("kill{seed}"), 60 * soak()).await;
        let churn = Churn::start(&admin, &fleet, seed, true);
        let mut points = Vec::new();
        for _ in 0..3 {
            let op = Operator::start_with_env(&["--leader-election=false"], &[]);
            let point = Duration::from_millis(rng.u64(200..4000));
            points.push(point);
            tokio::time::sleep(point).await;
            op.kill9();
            until("the killed operator to be gone", TIMEOUT, || {
                !op.is_running()
            })
            .await;
        }
        eprintln!(
            "chaos: seed {seed}: operator killed after {points:?} (replay: WORKSPACE_OPERATOR_CHAOS_SEED={seed})"
        );
        let op = own_operator(&[]);
        let deleted = churn.stop().await;
        forget(&mut fleet, &deleted);
        let settled = fleet.settle(&admin, SETTLE).await;
        wait_deleted(&admin, &deleted, SETTLE).await;
        assert!(op.is_running(), "the operator died: {}", op.log_tail(30));
        eprintln!(
            "chaos: seed {seed}: converged {settled:?} after the last start ({} workspaces)",
            fleet.workspaces.len()
        );
    }
}

/// A status computed from a cached copy that is older than the object on
/// the API server is not written over the newer one. A second writer
/// records a condition (which the operator's status carries along); the
/// spec changes and the operator, having read that version, holds its
/// status write (fault injection); meanwhile the second writer changes its
/// condition. Released, the write must not put back the old copy's
/// condition: the first version that observes the new generation carries
/// the second writer's latest verdict, and no reconcile failed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_computed_from_a_stale_copy_is_not_written() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let name = support::unique("stale");
    let gate = plane
        .dir()
        .expect("local plane")
        .join(format!("{name}.hold"));
    let setting = format!("{name}:{}", gate.display());
    let op = own_operator(&[("WORKSPACE_OPERATOR_FAULT_HOLD_STATUS", &setting)]);
    apply(
        &admin,
        workspace(&name, "User", "alice@example.com", json!({})),
    )
    .await;
    wait_ready(&admin, &name, "True", None, TIMEOUT).await;
    let api: Api<Workspace> = Api::all(admin.clone());
    // A second writer's condition, which the operator's status carries.
    let second = |status: &str| {
        json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace",
               "status": {"conditions": [{"type": "Audited", "status": status,
                   "reason": "Checked", "message": "checked by the auditor",
                   "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    };
    let params = PatchParams::apply("auditor");
    api.patch_status(&name, &params, &Patch::Apply(&second("False")))
        .await
        .expect("the auditor's first write");
    // A change of spec: the operator reads the Workspace and holds its
    // status write.
    std::fs::write(&gate, "held").expect("create the gate");
    let holds = || count_lines(&op, "fault injection: holding a status write");
    let before = holds();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"description": "changed"}})),
    )
    .await
    .expect("change the description");
    until("the operator to hold its status write", TIMEOUT, || {
        holds() > before
    })
    .await;
    // Behind the operator's back: the auditor's verdict changes.
    let audited = api
        .patch_status(&name, &params, &Patch::Apply(&second("True")))
        .await
        .expect("the auditor's second write");
    let generation = audited.metadata.generation;
    let since = audited.resource_version().expect("a resourceVersion");
    let mut versions = api
        .watch(
            &WatchParams::default().fields(&format!("metadata.name={name}")),
            &since,
        )
        .await
        .expect("watch the workspace")
        .boxed();
    std::fs::remove_file(&gate).expect("release the write");
    // The first version whose status observes the new generation: the
    // released write, had it gone through, or the one computed after it.
    let first = tokio::time::timeout(TIMEOUT, async {
        while let Some(event) = versions.try_next().await.expect("the watch") {
            if let WatchEvent::Modified(ws) = event
                && ws.status.as_ref().and_then(|s| s.observed_generation) == generation
            {
                return ws;
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("a status that observes the new generation");
    let verdict = first
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Audited"))
        .map(|c| c.status.clone());
    assert_eq!(
        verdict.as_deref(),
        Some("True"),
        "the status computed from the stale copy was written over the newer one"
    );
    assert_eq!(
        op.counter(
            "workspace_operator_reconcile_errors_total",
            "reason=\"StatusFailed\""
        ),
        0.0,
        "a refused stale write is not a reconcile error"
    );
    assert!(op.counter("workspace_operator_stale_status_writes_total", "") >= 1.0);
}

fn count_lines(op: &Operator, needle: &str) -> usize {
    std::fs::read_to_string(&op.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// A few thousand random and mutated Workspaces, WorkspaceMembers,
/// Organizations and WorkspaceTransfers sent as the admin through create,
/// update, merge patch and server-side apply: each is refused by the API
/// server with a message, or accepted and then reported by the operator
/// (a status with conditions that observes the object's generation). The
/// operator never stops, and the invariants hold; `default`, `kube-system`
/// and the operator's namespace are never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_or_reported() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let op = own_operator(&[]);
    let mut fleet = Fleet::create(&admin, "fuzzed", 4).await;
    fleet.settle(&admin, SETTLE).await;
    fleet.bystanders.extend(
        [
            "default",
            "kube-system",
            support::operator::OPERATOR_NAMESPACE,
        ]
        .map(String::from),
    );
    for seed in seeds(1) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let prefix = format!("fz{seed}");
        let count = 2000 * soak();
        let requests: Vec<fuzz::Request> = (0..count)
            .map(|n| {
                let (ns, ws) = (&fleet.workspaces[1], &fleet.workspaces[0]);
                fuzz::request(&mut rng, &prefix, n, ns, ws, &fleet.org)
            })
            .collect();
        let started = Instant::now();
        let outcomes: Vec<Result<(), kube::Error>> = futures::stream::iter(&requests)
            .map(|r| fuzz::send(&admin, r))
            .buffered(4)
            .collect()
            .await;
        let mut unclear = Vec::new();
        let (mut refused, mut typed) = (0, 0);
        for (request, outcome) in requests.iter().zip(&outcomes) {
            match outcome {
                Ok(()) => {}
                Err(kube::Error::Api(s))
                    if (400..500).contains(&s.code) && !s.message.trim().is_empty() =>
                {
                    refused += 1
                }
                // kube-apiserver answers a server-side apply whose fields
                // have the wrong type with 500 and a message naming the
                // field: a refusal with a clear message, under an odd code.
                Err(kube::Error::Api(s))
                    if s.code == 500
                        && s.message.starts_with("failed to create typed patch object") =>
                {
                    refused += 1;
                    typed += 1;
                }
                Err(err) => unclear.push(format!("{request:?}: {err}")),
            }
        }
        assert!(
            unclear.is_empty(),
            "seed {seed}: {} requests got no clear refusal:\n{}",
            unclear.len(),
            unclear
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        let reported = wait_reported(&admin, &prefix).await;
        assert!(op.is_running(), "the operator died: {}", op.log_tail(30));
        let log = std::fs::read_to_string(&op.log).unwrap_or_default();
        assert!(!log.contains("panicked"), "the operator panicked");
        let settled = fleet.settle(&admin, SETTLE).await;
        eprintln!(
            "chaos: bad input seed {seed}: {count} requests in {:?}, {refused} refused with a message \
             ({typed} of them server-side applies of mistyped fields, code 500), \
             {} accepted; {reported} objects left, each reported; invariants hold {settled:?} later",
            started.elapsed(),
            count - refused
        );
    }
}

/// Waits until every object named `<prefix>-…` of the generated kinds that
/// is not being deleted has a status with conditions observing its
/// generation; panics naming those that do not after [`SETTLE`]. Returns
/// how many there are.
async fn wait_reported(admin: &kube::Client, prefix: &str) -> usize {
    let started = Instant::now();
    loop {
        let mut total = 0;
        let mut unreported = Vec::new();
        for kind in fuzz::KINDS {
            for obj in fuzz::existing(admin, kind, prefix).await {
                total += 1;
                let status = &obj.data["status"];
                let observed = status["observedGeneration"].as_i64();
                let has_conditions = status["conditions"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty());
                if obj.metadata.deletion_timestamp.is_none()
                    && (!has_conditions || observed != obj.metadata.generation)
                {
                    unreported.push(format!("{kind} {}", obj.name_any()));
                }
            }
        }
        if unreported.is_empty() {
            return total;
        }
        assert!(
            started.elapsed() < SETTLE,
            "accepted but not reported after {SETTLE:?}: {unreported:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Watch expiry: with the operator frozen, workspaces are deleted and
/// created, a member's role changes, another member goes, and the owner's
/// RoleBinding is deleted behind the operator's back; then etcd's history
/// is compacted and the API server restarted, so every watch resumes from a
/// version that is gone (`410 Gone`). Thawed, the operator lists again and
/// catches every change and deletion made meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_expiry_relists_changes_and_deletions() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let op = own_operator(&[]);
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
    plane.start_component(Component::ApiServer);
    plane.wait_api_ready(TIMEOUT);

    let thawed = Instant::now();
    op.thaw();
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

/// The replica of `ops` that leads, once exactly one does.
async fn leader_of<'a>(ops: &[&'a Operator]) -> &'a Operator {
    support::wait_for("exactly one replica to lead", TIMEOUT, || async {
        let leading: Vec<&Operator> = ops
            .iter()
            .copied()
            .filter(|op| op.metric("workspace_operator_leader", "") == Some(1.0))
            .collect();
        (leading.len() == 1).then(|| leading[0])
    })
    .await
}

/// Two replicas with leader election: the leader is killed with SIGKILL
/// mid-converge; the standby takes over within the lease duration (15 s)
/// and finishes, and the audit log shows no write from the old leader after
/// the new leader's first. Then the new leader stops gracefully and a third
/// replica takes over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_from_a_killed_leader() {
    use k8s_openapi::jiff::Timestamp;
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let (a, b) = (Operator::start(&[]), Operator::start(&[]));
    let first = leader_of(&[&a, &b]).await;
    let standby = if std::ptr::eq(first, &a) { &b } else { &a };
    let mark = plane.audit_mark();
    let mut fleet = Fleet::create(&admin, "leader", 100 * soak()).await;
    let churn = Churn::start(&admin, &fleet, 11, false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = Timestamp::now();
    first.kill9();
    let killed = Instant::now();
    let second = leader_of(&[standby]).await;
    let takeover = killed.elapsed();
    assert!(
        takeover < Duration::from_secs(15 + 5),
        "the standby took {takeover:?} to take over (lease: 15 s)"
    );
    let deleted = churn.stop().await;
    forget(&mut fleet, &deleted);
    let settled = fleet.settle(&admin, SETTLE).await;

    let writes = plane.writes_with_agents_since(mark, OPERATOR_USER);
    let at = |w: &support::faults::AgentWrite| w.at.parse::<Timestamp>().expect("a timestamp");
    let old: std::collections::BTreeSet<&str> = writes
        .iter()
        .filter(|w| at(w) < killed_at)
        .map(|w| w.agent.as_str())
        .collect();
    assert_eq!(old.len(), 1, "writes before the kill from {old:?}");
    let new_first = writes
        .iter()
        .filter(|w| !old.contains(w.agent.as_str()))
        .map(at)
        .min()
        .expect("the new leader wrote");
    let late: Vec<&String> = writes
        .iter()
        .filter(|w| old.contains(w.agent.as_str()) && at(w) >= new_first)
        .map(|w| &w.request)
        .collect();
    assert!(
        late.is_empty(),
        "the old leader wrote after the new one: {late:?}"
    );

    // A graceful stop hands over at once: the Lease is released.
    let third = Operator::start(&[]);
    third.wait_ready(TIMEOUT);
    second.stop();
    let stopped = Instant::now();
    leader_of(&[&third]).await;
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(5),
        "graceful handover took {handover:?}"
    );
    eprintln!(
        "chaos: leader killed mid-converge: standby led {takeover:?} later, fleet of {} converged \
         {settled:?} after that; {} writes by the old leader, none after the new leader's first; \
         graceful stop handed over in {handover:?}",
        fleet.workspaces.len(),
        writes
            .iter()
            .filter(|w| old.contains(w.agent.as_str()))
            .count()
    );
}

/// Fifty users, each with their own identity, creating and deleting
/// personal workspaces and giving and changing members' roles in parallel
/// for a bounded time: afterwards no deleted workspace is stuck
/// Terminating, every kept one is Ready, the last role each user set is
/// the role the member's binding grants (no lost update), the invariants
/// hold, and the operator has stopped writing (no error left retrying).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_users_in_parallel_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let op = own_operator(&[]);
    let mark = plane.audit_mark();
    let prefix = support::unique("load");
    let duration = Duration::from_secs(20 * soak() as u64);
    let mut sessions = Vec::new();
    for n in 0..50 {
        let client = plane.client_as(&format!("load{n}@example.com"), &[]).await;
        let session = support::load::user_session(client, prefix.clone(), n, duration);
        sessions.push(tokio::spawn(session));
    }
    let mut outcomes = Vec::new();
    for session in sessions {
        outcomes.push(session.await.expect("a user session"));
    }
    let deleted: Vec<String> = outcomes.iter().flat_map(|o| o.deleted.clone()).collect();
    let kept: Vec<String> = outcomes.iter().flat_map(|o| o.kept.clone()).collect();
    let started = Instant::now();
    wait_deleted(&admin, &deleted, SETTLE).await;
    let fleet = Fleet {
        org: String::new(),
        workspaces: kept.clone(),
        bystanders: Vec::new(),
        clash: String::new(),
    };
    fleet.settle(&admin, SETTLE).await;
    let settled = started.elapsed();
    let mut checked = 0;
    for o in &outcomes {
        for ((ws, name), role) in &o.roles {
            let want: WorkspaceRole = serde_json::from_value(json!(role)).expect("a role");
            let members: Api<WorkspaceMember> = Api::namespaced(admin.clone(), ws);
            let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), ws);
            let what = format!("member {ws}/{name} to hold {role}");
            support::wait_for(&what, SETTLE, || {
                let (members, bindings) = (members.clone(), bindings.clone());
                async move {
                    let m = members.get(name).await.ok()?;
                    let binding = m.status?.role_binding?;
                    let rb = bindings.get(&binding).await.ok()?;
                    (rb.role_ref.name == want.cluster_role()).then_some(())
                }
            })
            .await;
            checked += 1;
        }
    }
    let writes = writes_and_quiet(mark).await;
    assert!(op.is_running(), "the operator died: {}", op.log_tail(30));
    let accepted: usize = outcomes.iter().map(|o| o.accepted).sum();
    let refused: usize = outcomes.iter().map(|o| o.refused).sum();
    let mut refusals = std::collections::BTreeMap::<String, usize>::new();
    for (key, n) in outcomes.iter().flat_map(|o| &o.refusals) {
        *refusals.entry(key.clone()).or_default() += n;
    }
    let errors = op.counter("workspace_operator_reconcile_errors_total", "") as u64;
    eprintln!(
        "chaos: load: 50 users for {duration:?}: {accepted} requests accepted, {refused} refused \
         ({refusals:?}); {} workspaces kept, {} deleted, \
         {checked} members' last roles checked; settled {settled:?} after the users stopped; \
         {errors} reconcile errors (retried), {writes} operator writes",
        kept.len(),
        deleted.len()
    );
}

/// The invariant checker finds what it looks for. With the operator
/// stopped: the owner's binding of one workspace and an Active member's
/// binding are deleted, a bystander namespace is deleted, and a ClusterRole
/// labelled as the operator's names a workspace that does not exist; each
/// is reported. Started again, the operator repairs what is its to repair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invariant_checker_reports_a_broken_cluster() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let op = own_operator(&[]);
    let mut fleet = Fleet::create(&admin, "broken", 2).await;
    let ns = fleet.workspaces[1].clone();
    fleet.settle(&admin, SETTLE).await;
    apply(&admin, member(&ns, "dev", user("dev0@example.com"), "Developer")).await;
    let binding = member_binding(&admin, &ns, "dev").await;
    fleet.settle(&admin, SETTLE).await;
    drop(op);

    let bindings = |ns: &str| Api::<RoleBinding>::namespaced(admin.clone(), ns);
    let none = Default::default();
    let owner_ns = &fleet.workspaces[0];
    bindings(owner_ns).delete("workspaces.dev:owner", &none).await.expect("delete");
    bindings(&ns).delete(&binding, &none).await.expect("delete");
    let bystander = fleet.bystanders[1].clone();
    Api::<Namespace>::all(admin.clone()).delete(&bystander, &none).await.expect("delete");
    let stray = format!("workspaces.dev:workspace:{}:reader", support::unique("gone"));
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    apply(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": stray,
                            "labels": {"app.kubernetes.io/managed-by": "workspace-operator"}}}),
    )
    .await;
    let found = support::invariants::violations(&admin, &fleet.bystanders).await;
    for expected in [
        format!("Workspace {owner_ns} is Ready without its owner binding"),
        format!("member {ns}/dev is Active without a RoleBinding"),
        format!("namespace {bystander}, not the operator's, is"),
        format!("ClusterRole {stray} outlives"),
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(&expected)),
            "not reported: {expected}; found {found:#?}"
        );
    }
    roles.delete(&stray, &none).await.expect("delete the stray role");
    fleet.bystanders.remove(1);
    let _op = own_operator(&[]);
    let repaired = fleet.settle(&admin, SETTLE).await;
    eprintln!(
        "chaos: the checker reported {} violations of a broken cluster; repaired {repaired:?} after a restart",
        found.len()
    );
}

/// Waits until member `ns/name` is Active; returns its RoleBinding's name.
async fn member_binding(admin: &kube::Client, ns: &str, name: &str) -> String {
    let members: Api<WorkspaceMember> = Api::namespaced(admin.clone(), ns);
    support::wait_for(&format!("member {ns}/{name} to be Active"), TIMEOUT, || {
        let members = members.clone();
        async move {
            let status = members.get(name).await.ok()?.status?;
            (status.phase == Some(MemberPhase::Active))
                .then_some(status.role_binding)
                .flatten()
        }
    })
    .await
}
