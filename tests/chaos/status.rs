//! Writes that must not be lost, and the invariant checker's own check.

use super::*;

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
    let op = Operator::alone(&[], &[("WORKSPACE_OPERATOR_FAULT_HOLD_STATUS", &setting)]);
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
    let op = Operator::alone(&[], &[]);
    let mut fleet = Fleet::create(&admin, "broken", 2).await;
    let ns = fleet.workspaces[1].clone();
    fleet.settle(&admin, SETTLE).await;
    apply(
        &admin,
        member(&ns, "dev", user("dev0@example.com"), "Developer"),
    )
    .await;
    let binding = member_binding(&admin, &ns, "dev").await;
    fleet.settle(&admin, SETTLE).await;
    drop(op);

    let bindings = |ns: &str| Api::<RoleBinding>::namespaced(admin.clone(), ns);
    let none = Default::default();
    let owner_ns = &fleet.workspaces[0];
    bindings(owner_ns)
        .delete("workspaces.dev:owner", &none)
        .await
        .expect("delete");
    bindings(&ns).delete(&binding, &none).await.expect("delete");
    let bystander = fleet.bystanders[1].clone();
    Api::<Namespace>::all(admin.clone())
        .delete(&bystander, &none)
        .await
        .expect("delete");
    let stray = format!(
        "workspaces.dev:workspace:{}:reader",
        support::unique("gone")
    );
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
    roles
        .delete(&stray, &none)
        .await
        .expect("delete the stray role");
    fleet.bystanders.remove(1);
    let _op = Operator::alone(&[], &[]);
    let repaired = fleet.settle(&admin, SETTLE).await;
    eprintln!(
        "chaos: the checker reported {} violations of a broken cluster; repaired {repaired:?} after a restart",
        found.len()
    );
}
