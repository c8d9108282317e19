//! `kubectl workspaces ls` at N workspaces (`--cli-ls`): what one user's
//! listing costs, end to end, with the plugin binary.
//!
//! On a fresh plane with the project installed and no operator, the admin
//! creates N Workspaces whose status names a namespace (as the operator
//! would write it): a tenth owned by Organizations of ten, the rest by users
//! of their own. The measured user owns two, administers one Organization
//! (its admin ClusterRole and binding, the shape the operator writes) and
//! is a member of five more (a RoleBinding to a workspace role in each
//! namespace). The workspace directory holds what the operator would write:
//! the user's entry (their five memberships) and one entry per other member
//! subject, N of them, each a Role and a RoleBinding built by the operator's
//! own code. `ls` (the table) and `ls -o json` (which also reads the five
//! WorkspaceMembers) are then run `samples` times each as that user through
//! an impersonating kubeconfig; the wall times, the plugin's peak memory and
//! the entries it found are reported. `--directory-namespace ''` on the
//! plugin (`scan: true`) times the scan an install without directory does.

use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};
use workspace_operator::api::{Subject, Workspace};
use workspace_operator::config::DEFAULT_DIRECTORY_NAMESPACE as DIRECTORY;
use workspace_operator::controller::directory::build;

use super::fixtures::{create, for_each_bounded, retry};
use super::report::percentile;
use crate::support::plugin::Plugin;

/// The user whose `ls` is timed.
const USER: &str = "lister@example.com";
/// Memberships the user holds besides what they own.
const MEMBERSHIPS: usize = 5;

/// What one `ls` run costs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ListCost {
    pub workspaces: usize,
    pub samples: usize,
    /// Where memberships came from: `directory` or `scan`.
    pub source: String,
    /// `ls` (the table).
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    /// `ls -o json`.
    pub json_p50_ms: f64,
    pub json_p95_ms: f64,
    /// Roles and RoleBindings in the directory namespace.
    pub directory_objects: usize,
    /// Entries `ls` printed.
    pub found: usize,
    /// Entries it should print: owned, administered and member of
    /// ([`expected`]).
    pub expected: usize,
    /// The plugin's peak resident memory over the runs.
    pub peak_rss_mib: f64,
}

fn workspace_object(i: usize, owner: (&str, &str)) -> Value {
    json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace",
           "metadata": {"name": format!("ls-{i}")},
           "spec": {"owner": {"kind": owner.0, "name": owner.1}}})
}

/// The owner of workspace `i`: the measured user for 0 and 1, Organization
/// `ls-org-<k>` for one in ten, else a user of its own.
fn owner_of(i: usize) -> (String, String) {
    match i {
        0 | 1 => ("User".into(), USER.into()),
        i if i % 10 == 2 => ("Organization".into(), format!("ls-org-{}", i / 100)),
        i => ("User".into(), format!("user-{i}@example.com")),
    }
}

/// The namespaces the user is a member in: five, spread over the population.
fn memberships(n: usize) -> Vec<String> {
    let step = (n.saturating_sub(4) / MEMBERSHIPS).max(1);
    (0..MEMBERSHIPS)
        .map(|m| 3 + m * step)
        .filter(|i| *i < n)
        .map(|i| format!("ls-{i}"))
        .collect()
}

/// How many workspaces `ls` must find among `n`: the user's own, those of
/// the Organization they administer, and their memberships.
pub fn expected(n: usize) -> usize {
    let owned = (0..n).filter(|i| {
        let (kind, name) = owner_of(*i);
        name == USER || (kind == "Organization" && name == "ls-org-0")
    });
    owned.count() + memberships(n).len()
}

/// Creates the population: N Workspaces with status, the user's
/// organization admin grant and their member RoleBindings.
async fn seed(admin: &Client, n: usize, concurrency: usize) {
    let workspaces = Api::<Workspace>::all(admin.clone());
    for_each_bounded((0..n).collect(), concurrency, |i| {
        let api = workspaces.clone();
        async move {
            let (kind, name) = owner_of(i);
            create(&api, workspace_object(i, (&kind, &name))).await;
            let name = format!("ls-{i}");
            let status = json!({"status": {"namespace": name, "phase": "Active"}});
            let patch = Patch::Merge(&status);
            let params = PatchParams::default();
            retry(&format!("status of {name}"), || {
                api.patch_status(&name, &params, &patch)
            })
            .await;
        }
    })
    .await;
    let role = json!({"metadata": {"name": "workspaces.dev:organization:ls-org-0:admin"},
        "rules": [{"apiGroups": ["workspaces.dev"], "resources": ["organizations"],
                   "resourceNames": ["ls-org-0"], "verbs": ["get", "administer"]}]});
    create(&Api::<ClusterRole>::all(admin.clone()), role).await;
    let binding = json!({"metadata": {"name": "workspaces.dev:organization:ls-org-0:admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "workspaces.dev:organization:ls-org-0:admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]});
    create(&Api::<ClusterRoleBinding>::all(admin.clone()), binding).await;
    for ns in memberships(n) {
        let namespace = json!({"metadata": {"name": ns}});
        create(&Api::<Namespace>::all(admin.clone()), namespace).await;
        let rb = json!({"metadata": {"name": "wsm-lister", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "workspaces:developer"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]});
        create(&Api::<RoleBinding>::namespaced(admin.clone(), &ns), rb).await;
    }
}

/// Writes the directory entry of `subject` listing `workspaces` with `verb`,
/// as the operator would.
async fn entry(admin: &Client, subject: &Subject, workspaces: &[String], verb: &'static str) {
    let rules = build::rules(workspaces.iter().map(|ws| (ws.as_str(), verb)));
    let Some((role, binding)) = build::entry(subject, DIRECTORY, rules) else {
        return;
    };
    let role = serde_json::to_value(&role).expect("a Role as JSON");
    let binding = serde_json::to_value(&binding).expect("a RoleBinding as JSON");
    create(&Api::<Role>::namespaced(admin.clone(), DIRECTORY), role).await;
    create(
        &Api::<RoleBinding>::namespaced(admin.clone(), DIRECTORY),
        binding,
    )
    .await;
}

/// The directory: the user's entry, and one entry for each of `n` other
/// member subjects (each a Viewer somewhere). Returns how many objects it
/// holds.
async fn seed_directory(admin: &Client, n: usize, concurrency: usize) -> usize {
    entry(
        admin,
        &Subject::user(USER),
        &memberships(n),
        "member-developer",
    )
    .await;
    for_each_bounded((0..n).collect(), concurrency, |i| async move {
        let subject = Subject::user(format!("member-{i}@example.com"));
        entry(
            admin,
            &subject,
            &[format!("ls-{}", (i * 7 + 3) % n)],
            "member-viewer",
        )
        .await;
    })
    .await;
    2 * (n + 1)
}

/// The children's peak resident memory so far, in MiB.
fn children_peak_rss_mib() -> f64 {
    // SAFETY: rusage is plain old data (all zeroes is a valid value), and
    // getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the pointer is to a live, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    usage.ru_maxrss as f64 / 1024.0
}

/// Seeds `n` workspaces and the directory, and times `samples` runs of
/// `ls` (from the directory, or with `scan` by a review per workspace).
pub async fn run(n: usize, samples: usize, concurrency: usize, scan: bool) -> ListCost {
    let plane = tokio::task::block_in_place(crate::support::plane);
    let admin = plane.admin().await;
    let started = Instant::now();
    seed(&admin, n, concurrency).await;
    eprintln!(
        "perf: {n} workspaces seeded in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let directory_objects = seed_directory(&admin, n, concurrency).await;
    eprintln!(
        "perf: {directory_objects} directory objects seeded in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let plugin = Plugin::as_user(USER, &[]);
    let directory = if scan { "" } else { DIRECTORY };
    let timed = |args: &[&str]| {
        let mut all = vec!["--directory-namespace", directory];
        all.extend(args);
        let started = Instant::now();
        let run = tokio::task::block_in_place(|| plugin.run(&all).success());
        (started.elapsed().as_secs_f64() * 1000.0, run)
    };
    let (mut table, mut json, mut found) = (Vec::new(), Vec::new(), 0);
    for _ in 0..samples.max(1) {
        table.push(timed(&["ls"]).0);
        let (ms, run) = timed(&["ls", "-o", "json"]);
        json.push(ms);
        let listed: Value = serde_json::from_str(&run.stdout).unwrap_or_default();
        found = listed.as_array().map(Vec::len).unwrap_or_default();
    }
    let wide = timed(&["ls", "-o", "wide"]).1.stderr;
    ListCost {
        workspaces: n,
        samples: table.len(),
        source: if wide.contains("directory (") {
            "directory"
        } else {
            "scan"
        }
        .into(),
        p50_ms: percentile(&table, 50.0),
        p95_ms: percentile(&table, 95.0),
        max_ms: table.iter().cloned().fold(0.0, f64::max),
        json_p50_ms: percentile(&json, 50.0),
        json_p95_ms: percentile(&json, 95.0),
        directory_objects,
        found,
        expected: expected(n),
        peak_rss_mib: children_peak_rss_mib(),
    }
}
