//! `kubectl workspaces ls` at N workspaces (`--cli-ls`): what one user's
//! listing costs, end to end, with the plugin binary.
//!
//! On a fresh plane with the project installed and no operator, the admin
//! creates N Workspaces whose status names a namespace (as the operator
//! would write it): a tenth owned by Organizations of ten, the rest by users
//! of their own. The measured user owns two, administers one Organization
//! (its admin ClusterRole and binding, the shape the operator writes) and
//! is a member of five more (a RoleBinding to a workspace role in each
//! namespace). `ls -o json` is then run `samples` times as that user through
//! an impersonating kubeconfig; the wall time, the plugin's peak memory and
//! the entries it found are reported.

use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};
use workspace_operator::api::Workspace;

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
    pub p50_ms: f64,
    pub max_ms: f64,
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

/// Seeds `n` workspaces and times `samples` runs of `ls`.
pub async fn run(n: usize, samples: usize, concurrency: usize) -> ListCost {
    let plane = tokio::task::block_in_place(crate::support::plane);
    let admin = plane.admin().await;
    let started = Instant::now();
    seed(&admin, n, concurrency).await;
    eprintln!(
        "perf: {n} workspaces seeded in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let plugin = Plugin::as_user(USER, &[]);
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..samples.max(1) {
        let started = Instant::now();
        let listed = tokio::task::block_in_place(|| plugin.json(&["ls"]));
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        found = listed.as_array().map(Vec::len).unwrap_or_default();
    }
    ListCost {
        workspaces: n,
        samples: times.len(),
        p50_ms: percentile(&times, 50.0),
        max_ms: times.iter().cloned().fold(0.0, f64::max),
        found,
        expected: expected(n),
        peak_rss_mib: children_peak_rss_mib(),
    }
}
