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

#[path = "../support/mod.rs"]
mod support;

mod input;
mod replicas;
mod restarts;
mod status;

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
