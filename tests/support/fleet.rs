//! A fleet of workspaces for the fault suite: an Organization, personal and
//! organization workspaces, namespaces the operator must never touch
//! (bystanders, one of them named by a Workspace that must not take it), and
//! members that churn while a fault is injected.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use workspace_operator::api::{Workspace, WorkspaceMember};

use super::invariants;
use super::objects::{apply, group, member, organization, user, workspace};

/// Roles a churning member is given.
const ROLES: [&str; 4] = ["Developer", "Viewer", "Runner", "Owner"];

/// What a scenario created.
pub struct Fleet {
    /// The Organization that owns every other workspace.
    pub org: String,
    /// The workspaces expected to become Ready (those not deleted since).
    pub workspaces: Vec<String>,
    /// Namespaces the operator did not create: they must survive.
    pub bystanders: Vec<String>,
    /// A Workspace naming a bystander namespace: it stays blocked.
    pub clash: String,
}

impl Fleet {
    /// Creates the Organization, two bystander namespaces, `n` workspaces
    /// (every second one the Organization's) and the Workspace that names a
    /// bystander namespace, as the admin, eight at a time.
    pub async fn create(admin: &Client, prefix: &str, n: usize) -> Fleet {
        let org = super::unique(&format!("{prefix}-org"));
        apply(
            admin,
            organization(
                &org,
                &[],
                json!({"spec": {"displayName": null,
                                "admins": [user("admin@example.com"), group("ops")],
                                "members": [user("dev0@example.com"), user("dev1@example.com"),
                                            user("dev2@example.com"), group("eng")]}}),
            ),
        )
        .await;
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        let mut bystanders = Vec::new();
        for i in 0..2 {
            let name = super::unique(&format!("{prefix}-bystander{i}"));
            let ns: Namespace =
                serde_json::from_value(json!({"metadata": {"name": name}})).expect("a namespace");
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .expect("create a bystander namespace");
            bystanders.push(name);
        }
        let clash = super::unique(&format!("{prefix}-clash"));
        apply(
            admin,
            workspace(
                &clash,
                "User",
                "clash@example.com",
                json!({"spec": {"namespace": bystanders[0]}}),
            ),
        )
        .await;
        let names: Vec<String> = (0..n)
            .map(|_| super::unique(&format!("{prefix}-ws")))
            .collect();
        futures::stream::iter(names.iter().enumerate())
            .for_each_concurrent(8, |(i, name)| {
                let (kind, owner) = if i % 2 == 0 {
                    ("User", format!("user{}@example.com", i % 7))
                } else {
                    ("Organization", org.clone())
                };
                async move { apply(admin, workspace(name, kind, &owner, json!({}))).await }
            })
            .await;
        Fleet {
            org,
            workspaces: names,
            bystanders,
            clash,
        }
    }

    /// Waits until every workspace of the fleet that still exists is Ready
    /// and every invariant holds; panics after `settle`. Returns how long
    /// it took.
    pub async fn settle(&self, admin: &Client, settle: Duration) -> Duration {
        let started = Instant::now();
        let api: Api<Workspace> = Api::all(admin.clone());
        super::wait_for("every workspace of the fleet to be Ready", settle, || {
            let api = api.clone();
            async move {
                let list = api.list(&Default::default()).await.ok()?;
                let not_ready: Vec<String> = list
                    .items
                    .iter()
                    .filter(|ws| self.workspaces.contains(&ws.name_any()))
                    .filter(|ws| ws.metadata.deletion_timestamp.is_none())
                    .filter(|ws| super::objects::ready(ws).is_none_or(|c| c.status != "True"))
                    .map(|ws| ws.name_any())
                    .collect();
                not_ready.is_empty().then_some(())
            }
        })
        .await;
        let left = settle.saturating_sub(started.elapsed());
        invariants::assert_hold(admin, &self.bystanders, left).await;
        started.elapsed()
    }
}

/// Members created, changed and deleted (and now and then a workspace
/// deleted) by a background task until stopped; every operation is allowed
/// to fail (the API server may be down).
pub struct Churn {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
    /// Operations the API server accepted.
    pub accepted: Arc<AtomicU64>,
}

impl Churn {
    /// Starts churning the members of `fleet`'s workspaces, with the
    /// generator seeded by `seed`; `delete_workspaces` lets it delete a
    /// workspace now and then (the names it deleted are returned by
    /// [`Churn::stop`]).
    pub fn start(admin: &Client, fleet: &Fleet, seed: u64, delete_workspaces: bool) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (admin, names) = (admin.clone(), fleet.workspaces.clone());
        let (halt, count) = (stop.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut deleted = Vec::new();
            while !halt.load(Ordering::Relaxed) {
                let ws = &names[rng.usize(..names.len())];
                if deleted.contains(ws) {
                    continue;
                }
                let ok = if delete_workspaces && rng.u8(..100) < 3 {
                    let api: Api<Workspace> = Api::all(admin.clone());
                    let ok = api.delete(ws, &DeleteParams::default()).await.is_ok();
                    if ok {
                        deleted.push(ws.clone());
                    }
                    ok
                } else {
                    churn_member(&admin, ws, &mut rng).await
                };
                if ok {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            deleted
        });
        Churn {
            stop,
            task,
            accepted,
        }
    }

    /// Stops the churn; returns the workspaces it deleted.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the churn task")
    }
}

/// One random change to a member of workspace `ws` (its namespace has the
/// same name): create or change its role (three in four), or delete it.
async fn churn_member(admin: &Client, ws: &str, rng: &mut fastrand::Rng) -> bool {
    let name = format!("m{}", rng.u8(..4));
    if rng.u8(..4) == 0 {
        let api: Api<WorkspaceMember> = Api::namespaced(admin.clone(), ws);
        return api.delete(&name, &DeleteParams::default()).await.is_ok();
    }
    let subject = match rng.u8(..3) {
        0 => user(&format!("dev{}@example.com", rng.u8(..4))),
        1 => group("eng"),
        _ => user(&format!("outsider{}@example.com", rng.u8(..2))),
    };
    let role = ROLES[rng.usize(..ROLES.len())];
    let value = member(ws, &name, subject, role);
    super::try_apply_value(admin, serde_json::from_value(value).expect("a member"))
        .await
        .is_ok()
}

/// Drops the deleted workspaces from `fleet` (they are not expected Ready).
pub fn forget(fleet: &mut Fleet, deleted: &[String]) {
    fleet.workspaces.retain(|w| !deleted.contains(w));
}

/// Waits until none of `names` exists any more (deletion finished, nothing
/// stuck Terminating); panics after `timeout`.
pub async fn wait_deleted(admin: &Client, names: &[String], timeout: Duration) {
    let api: Api<Workspace> = Api::all(admin.clone());
    super::wait_for("the deleted workspaces to be gone", timeout, || {
        let api = api.clone();
        async move {
            let list = api.list(&Default::default()).await.ok()?;
            (!list.items.iter().any(|ws| names.contains(&ws.name_any()))).then_some(())
        }
    })
    .await;
}
