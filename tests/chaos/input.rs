//! Bad input and load: a seeded generator of broken objects, and fifty
//! users at once.

use super::*;

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
    let op = Operator::alone(&[], &[]);
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
    let op = Operator::alone(&[], &[]);
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
