//! The `kubectl workspaces ls` benchmark (`cargo bench --bench perf --
//! --cli-ls`) run small, so it never rots: at N=30 on this binary's own
//! control plane, `ls` finds exactly the user's workspaces, from the
//! directory and by the scan. No time is checked.

mod support;

// Shared with the benchmark, which uses some parts this test does not.
#[allow(dead_code)]
#[path = "../benches/perf/scenarios/mod.rs"]
mod scenarios;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ls_benchmark_finds_exactly_the_users_workspaces_at_n_30() {
    let cost = scenarios::cli::run(30, 1, 8, false).await;
    assert_eq!(
        cost.expected, 10,
        "2 owned, 3 of the Organization, 5 memberships"
    );
    assert_eq!(cost.found, cost.expected, "{cost:?}");
    assert_eq!(cost.source, "directory", "{cost:?}");
    assert_eq!(cost.directory_objects, 62, "{cost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_finds_the_same_workspaces_without_a_directory() {
    // The seed is created once per plane: the second run finds it there.
    let cost = scenarios::cli::run(30, 1, 8, true).await;
    assert_eq!(cost.source, "scan", "{cost:?}");
    assert_eq!(cost.found, cost.expected, "{cost:?}");
}
