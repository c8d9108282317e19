//! The performance harness's warm-start scenario (`make bench-warm`) run
//! small, so it never rots: the operator seeds 20 workspaces as the cluster
//! admin, then starts with its own identity on the converged cluster. It
//! checks what must hold at any size (seeding converges, the start writes
//! nothing, the idle operator makes no request), never wall-clock figures.

mod support;

// Shared with the benchmark, which uses some parts this test does not.
#[allow(dead_code)]
#[path = "../benches/perf/scenarios/mod.rs"]
mod scenarios;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_start_on_a_converged_cluster_writes_nothing() {
    let settings = scenarios::Settings {
        workspaces: 20,
        members: 2,
        per_organization: 10,
        idle: Duration::from_secs(10),
        latency_samples: 0,
        churn: 0,
        transfer_members: 0,
        setup_concurrency: 8,
        calibration_concurrency: 8,
        calibration: None,
        perf_record: None,
    };
    let report = scenarios::warm::run(&settings).await;
    eprintln!("{}", report.table());

    assert!(
        report.seeded,
        "the operator, as the cluster admin, converged all 20"
    );
    let start = &report.start;
    assert!(start.reverified, "the operator re-verified everything");
    assert_eq!(
        start.requests.writes + start.requests.events,
        0,
        "writes when starting on a converged cluster: {:?}",
        start.requests.writes_by_kind
    );
    let idle = &report.idle.requests;
    assert_eq!(
        idle.writes + idle.events + idle.gets + idle.lists,
        0,
        "requests while idle: {:?}",
        idle.writes_by_kind
    );
    assert!(
        report.steady.steady_mib > 0.0,
        "the operator's memory was read"
    );
}
