//! The performance harness (`benches/perf`, `make bench`) run small, so it
//! never rots: every scenario at N=50 on this binary's own control plane.
//! It checks what the operator must get right at any size (everything
//! converges, zero writes when idle and after a restart, every latency and
//! churn step completes), never wall-clock figures, which depend on the
//! machine and on whatever else it runs.

mod support;

// Shared with the benchmark, which uses some parts this test does not.
#[allow(dead_code)]
#[path = "../benches/perf/scenarios/mod.rs"]
mod scenarios;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn performance_scenarios_converge_and_stay_quiet_at_n_50() {
    let settings = scenarios::Settings {
        workspaces: 50,
        members: 2,
        per_organization: 10,
        idle: Duration::from_secs(10),
        latency_samples: 10,
        churn: 5,
        transfer_members: 20,
        setup_concurrency: 8,
        calibration_concurrency: 8,
        // On this plane, at the end: the smoke run checks no figures.
        calibration: None,
        perf_record: None,
    };
    let report = scenarios::run(&settings).await;
    eprintln!("{}", report.table());

    let c = &report.converge;
    assert!(
        c.converged,
        "cold converge: {} of 50 workspaces and {} of 100 members Ready",
        c.workspaces_ready, c.members_ready
    );
    let idle = &report.idle.requests;
    assert_eq!(
        idle.writes + idle.events,
        0,
        "writes while idle: {:?}",
        idle.writes_by_kind
    );
    let restart = &report.restart;
    assert!(
        restart.reverified,
        "the restarted operator re-verified everything"
    );
    assert_eq!(
        restart.requests.writes + restart.requests.events,
        0,
        "writes after a restart: {:?}",
        restart.requests.writes_by_kind
    );
    assert_eq!(
        report.latency.samples, 10,
        "every single create became Ready"
    );
    assert_eq!(
        report.churn.add.timeouts, 0,
        "every added member became Ready"
    );
    assert_eq!(
        report.churn.remove.timeouts, 0,
        "every removal was reported"
    );
    assert!(report.transfer.completed, "the transfer completed");
    assert_eq!(
        report.transfer.members_revoked, 10,
        "the target lists every other member"
    );
    assert!(report.calibration.writes > 0, "the calibration ran");
}
