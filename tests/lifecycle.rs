//! The operator as a process: it stays out of the API server's way once the
//! cluster has converged (zero writes, also across a restart), exposes
//! metrics and health, and runs as two replicas with one leader.
//!
//! These tests start and kill their own operator processes, so they live in a
//! binary of their own (with its own control plane) and run one at a time.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::objects::{
    DIRECTORY, apply, events_about, group, member, organization, user, wait_directory, wait_ready,
    workspace,
};
use support::operator::{OPERATOR_NAMESPACE, OPERATOR_USER, Operator};
use tokio::sync::Mutex;
use workspace_operator::api::{Organization, Subject, Workspace, WorkspaceMember};
use workspace_operator::controller::directory::build::entry_name;

const TIMEOUT: Duration = Duration::from_secs(90);

/// The tests of this binary each own the operator processes; one at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn reconciles(op: &Operator) -> f64 {
    op.counter(
        "workspace_operator_reconciles_total",
        "controller=\"workspace\"",
    )
}

async fn wait_all_ready(client: &Client, names: &[String]) {
    for name in names {
        wait_ready(client, name, "True", None, TIMEOUT).await;
    }
}

/// Waits until the operator has done everything it will do for `created`:
/// each workspace is Ready and the events it records after the status are
/// there, and the organization's status counts its workspaces and has its
/// own event. Only then is the cluster converged.
async fn wait_converged(client: &Client, created: &Created) {
    wait_all_ready(client, &created.workspaces).await;
    let has_events = |name: String, reasons: &'static [&'static str]| async move {
        support::wait_for(&format!("the events about {name}"), TIMEOUT, || async {
            let about = events_about(client, &name).await;
            reasons
                .iter()
                .all(|r| about.iter().any(|(reason, _, _)| reason == r))
                .then_some(())
        })
        .await
    };
    for name in &created.workspaces {
        has_events(name.clone(), &["NamespaceCreated", "Provisioned"]).await;
    }
    let orgs: Api<Organization> = Api::all(client.clone());
    let counted = created.workspaces.len() / 2;
    support::wait_for(
        &format!("organization {} to count {counted} workspaces", created.org),
        TIMEOUT,
        || async {
            let org = orgs.get(&created.org).await.ok()?;
            (org.status?.workspaces == Some(counted as i32)).then_some(())
        },
    )
    .await;
    has_events(created.org.clone(), &["Provisioned"]).await;
}

/// An organization and the workspaces created with it.
struct Created {
    org: String,
    /// Personal workspaces at even positions, the organization's at odd ones.
    workspaces: Vec<String>,
}

/// Creates an organization and a mix of personal and organization workspaces.
async fn create_workspaces(client: &Client, prefix: &str, n: usize) -> Created {
    let org = support::unique(&format!("{prefix}-org"));
    apply(
        client,
        organization(
            &org,
            &[],
            json!({"spec": {"displayName": null,
                            "admins": [user("admin@example.com"), group("ops")]}}),
        ),
    )
    .await;
    let mut names = Vec::new();
    for i in 0..n {
        let name = support::unique(prefix);
        let (kind, owner) = if i % 2 == 0 {
            ("User", format!("user{i}@example.com"))
        } else {
            ("Organization", org.clone())
        };
        apply(client, workspace(&name, kind, &owner, json!({}))).await;
        names.push(name);
    }
    Created {
        org,
        workspaces: names,
    }
}

fn listed(writes: &[support::AuditedRequest]) -> String {
    writes.iter().map(|w| format!("\n  {w}")).collect()
}

#[tokio::test]
async fn converged_cluster_sees_zero_writes_even_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let first = Operator::start(&[]);
    first.wait_ready(TIMEOUT);
    let created = create_workspaces(&admin, "quiet", 6).await;
    wait_converged(&admin, &created).await;
    let names = created.workspaces;

    // Make the operator look at every workspace again (an edit it does not
    // own), wait until it has, and count what it wrote meanwhile.
    let mark = plane.audit_mark();
    let api: Api<Workspace> = Api::all(admin.clone());
    for name in &names {
        let touched = api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"team": "blue"}}})),
            )
            .await
            .unwrap();
        first
            .wait_reconciled(
                "workspace",
                "",
                name,
                &touched.resource_version().unwrap(),
                TIMEOUT,
            )
            .await;
    }
    let writes = plane.writes_since(mark, OPERATOR_USER);
    assert!(
        writes.is_empty(),
        "a converged operator wrote:{}",
        listed(&writes)
    );

    // kill -9 and start again: it re-reads everything and writes nothing.
    first.kill9();
    let mark = plane.audit_mark();
    let second = Operator::start(&[]);
    support::wait_for(
        "the restarted operator to re-verify every workspace",
        TIMEOUT,
        || async { (reconciles(&second) >= names.len() as f64).then_some(()) },
    )
    .await;
    let writes = plane.writes_since(mark, OPERATOR_USER);
    assert!(
        writes.is_empty(),
        "a restarted operator wrote:{}",
        listed(&writes)
    );
    // Besides the Lease: the start-up check of the admission policies'
    // parameters (a SelfSubjectReview and one GET of their ConfigMap), then
    // only the initial lists and watches.
    let requests: Vec<_> = plane
        .requests_since(mark, OPERATOR_USER)
        .into_iter()
        .filter(|r| r.resource != "leases")
        .filter(|r| r.resource != "selfsubjectreviews")
        .filter(|r| !(r.resource == "configmaps" && r.verb == "get"))
        .collect();
    assert!(
        requests
            .iter()
            .all(|r| matches!(r.verb.as_str(), "list" | "watch")),
        "only reads after a restart: {}",
        listed(&requests)
    );
    second.stop();
}

/// The members `directory_costs_nothing...` gives each personal workspace:
/// an invited user, a group and a ServiceAccount (both Active).
fn directory_members(tag: &str) -> [(Subject, &'static str, &'static str); 3] {
    [
        (
            Subject::user(format!("{tag}-invitee@example.com")),
            "Developer",
            "invited",
        ),
        (
            Subject::group(format!("{tag}-team")),
            "Viewer",
            "member-viewer",
        ),
        (
            Subject::service_account("ci", format!("{tag}-agent")),
            "Worker",
            "member-worker",
        ),
    ]
}

#[tokio::test]
async fn the_directory_costs_no_writes_when_converged_or_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let first = Operator::start(&[]);
    first.wait_ready(TIMEOUT);
    let created = create_workspaces(&admin, "dirq", 4).await;
    wait_converged(&admin, &created).await;
    let tag = created.org.clone();
    let personal: Vec<&String> = created.workspaces.iter().step_by(2).collect();
    for ws in &personal {
        for (i, (subject, role, _)) in directory_members(&tag).into_iter().enumerate() {
            let value = serde_json::to_value(&subject).unwrap();
            apply(&admin, member(ws, &format!("m{i}"), value, role)).await;
        }
    }
    for ws in &personal {
        for (subject, _, verb) in directory_members(&tag) {
            wait_directory(&admin, &subject, ws, Some(verb)).await;
        }
    }
    let entries: Vec<String> = directory_members(&tag)
        .iter()
        .map(|(subject, _, _)| entry_name(subject))
        .collect();

    // Converged: touching every member makes the directory look again, and
    // it writes nothing.
    let mark = plane.audit_mark();
    for ws in &personal {
        let members: Api<WorkspaceMember> = Api::namespaced(admin.clone(), ws);
        for (i, entry) in entries.iter().enumerate() {
            let touched = members
                .patch(
                    &format!("m{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"touched": "1"}}})),
                )
                .await
                .unwrap();
            first
                .wait_reconciled(
                    "directory",
                    DIRECTORY,
                    entry,
                    &touched.resource_version().unwrap(),
                    TIMEOUT,
                )
                .await;
        }
    }
    let in_directory = |mark| -> Vec<support::AuditedRequest> {
        plane
            .writes_since(mark, OPERATOR_USER)
            .into_iter()
            .filter(|w| w.namespace == DIRECTORY)
            .collect()
    };
    let writes = in_directory(mark);
    assert!(
        writes.is_empty(),
        "a converged directory wrote:{}",
        listed(&writes)
    );

    // kill -9 and start again: every entry is checked, none is written.
    first.kill9();
    let mark = plane.audit_mark();
    let second = Operator::start(&[]);
    for entry in &entries {
        support::wait_for(
            &format!("the restarted operator to check {entry}"),
            TIMEOUT,
            || async {
                (!second.reconciled("directory", DIRECTORY, entry).is_empty()).then_some(())
            },
        )
        .await;
    }
    let writes = in_directory(mark);
    assert!(
        writes.is_empty(),
        "a restarted directory wrote:{}",
        listed(&writes)
    );
    second.stop();
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_the_standby_takes_over() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let a = Operator::start(&[]);
    let b = Operator::start(&[]);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);

    let is_leader = |op: &Operator| op.metric("workspace_operator_leader", "") == Some(1.0);
    let leader_is_a = support::wait_for("one replica to lead", TIMEOUT, || async {
        match (is_leader(&a), is_leader(&b)) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    })
    .await;
    let (leader, standby) = if leader_is_a { (&a, &b) } else { (&b, &a) };
    // Both serve health (a standby is ready too); only the leader reconciles.
    support::wait_for("both replicas to be ready", TIMEOUT, || async {
        (leader.is_ready() && standby.is_ready()).then_some(())
    })
    .await;
    let lease = leases
        .get("workspace-operator")
        .await
        .expect("the Lease exists");
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(!holder.is_empty(), "the Lease names its holder");

    let names = create_workspaces(&admin, "led", 2).await.workspaces;
    wait_all_ready(&admin, &names).await;
    assert_eq!(reconciles(standby), 0.0, "the standby does not reconcile");

    // The leader steps down (graceful stop releases the Lease); the standby leads.
    leader.stop();
    support::wait_for("the standby to take over", TIMEOUT, || async {
        is_leader(standby).then_some(())
    })
    .await;
    let more = create_workspaces(&admin, "after", 1).await.workspaces;
    wait_all_ready(&admin, &more).await;
    let lease = leases.get("workspace-operator").await.unwrap();
    assert_ne!(
        lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default(),
        holder
    );
    standby.stop();
}

#[tokio::test]
async fn metrics_and_health_endpoints_tell_the_truth() {
    let _serial = SERIAL.lock().await;
    let plane = support::plane();
    let admin = plane.admin().await;
    let op = Operator::start(&[]);
    op.wait_ready(TIMEOUT);
    assert!(matches!(op.get("/livez"), Some((200, _))));
    let names = create_workspaces(&admin, "metered", 1).await.workspaces;
    wait_all_ready(&admin, &names).await;
    let (code, body) = op.get("/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    for series in [
        "workspace_operator_reconciles_total",
        "workspace_operator_reconcile_duration_seconds",
        "workspace_operator_writes_total",
    ] {
        assert!(body.contains(series), "{series} missing from /metrics");
    }
    // No object names in metric labels.
    assert!(
        !body.contains(&names[0]),
        "metrics must not carry object names"
    );
    let ws: Api<Workspace> = Api::all(admin);
    assert!(ws.get(&names[0]).await.unwrap().uid().is_some());
    op.stop();
}
