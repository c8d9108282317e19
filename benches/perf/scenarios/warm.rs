//! Warm start: the operator's own cost on a cluster that is already
//! converged, at sizes where building that cluster through the operator's
//! identity is out of reach.
//!
//! Every ClusterRole and ClusterRoleBinding write by a user without
//! `escalate`/`bind` makes the API server list every ClusterRoleBinding (its
//! RBAC escalation check), so converging N workspaces with the operator's
//! least-privilege identity costs the API server O(N²): at N=10,000 on two
//! cores it takes hours (`docs/performance.md`). Members of `system:masters`
//! skip that check. So this scenario:
//!
//! 1. creates the population as the cluster admin (untimed), as the cold
//!    converge does;
//! 2. seeds it: runs the operator itself with the cluster admin's
//!    credentials until everything is Ready, then stops it. Every child is
//!    the operator's own output, written with its field manager: nothing is
//!    imitated;
//! 3. starts the operator with its least-privilege identity on that
//!    converged cluster and measures what matters at scale: writes (target
//!    zero), time until every object is re-verified, CPU, peak and steady
//!    memory, and the idle cost.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::block_in_place;

use super::process::settle;
use super::report::{self, About, Idle, Restart, Steady, Target, Targets};
use super::{QUIET, Settings, about, population_of, set_up, start_on_converged, watch_idle};
use crate::support;
use crate::support::operator::Operator;

#[derive(Clone, Debug, Default, Serialize)]
pub struct WarmReport {
    #[serde(flatten)]
    pub about: About,
    pub setup_seconds: f64,
    /// Whether the operator, run as the cluster admin, brought every
    /// workspace and member to Ready, and how long it took (not a figure of
    /// merit: the admin skips the API server's escalation check).
    pub seeded: bool,
    pub seed_seconds: f64,
    /// The operator, with its own identity, started on the converged cluster.
    pub start: Restart,
    pub idle: Idle,
    /// Memory after the idle period, and the peak since the start.
    #[serde(flatten)]
    pub steady: Steady,
    pub peak_mib: f64,
    pub targets: Vec<Target>,
}

/// Runs the warm-start scenario and returns its report, judged.
pub async fn run(settings: &Settings) -> WarmReport {
    let plane = block_in_place(support::plane);
    let admin = plane.admin().await;
    let m = settings.members;
    let timeout = settings.timeout();
    let population = population_of(settings, "warm");
    let mut report = WarmReport {
        about: about(settings),
        ..WarmReport::default()
    };
    let tracker;
    (tracker, report.setup_seconds) = set_up(&admin, &population, settings).await;

    eprintln!("perf: seeding: the operator, as the cluster admin, converges them");
    let names = population.workspace_names();
    let prefix = format!("{}-", population.prefix);
    let started = Instant::now();
    // The seed is preparation, not a measurement: no Lease to renew while
    // the API server is at its busiest.
    let seeder = block_in_place(|| {
        Operator::start_as(
            plane.kubeconfig(),
            &["--leader-election=false", "--verify-confinement=false"],
        )
    });
    let seeded = tokio::select! {
        seeded = tracker.wait_until(timeout, Duration::from_millis(500), |s| {
            s.all_ready(&names, m, &prefix)
        }) => seeded,
        () = exited(&seeder) => None,
    };
    report.seeded = seeded.is_some();
    report.seed_seconds = started.elapsed().as_secs_f64();
    if !block_in_place(|| seeder.is_running()) {
        // Nothing to start on: the population is not converged.
        eprintln!(
            "perf: the seeding operator exited before everything was Ready; its log ends:\n{}",
            seeder.log_tail(20)
        );
        report.judge();
        return report;
    }
    settle(&seeder, QUIET, timeout).await;
    block_in_place(|| seeder.stop());
    while block_in_place(|| seeder.is_running()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(seeder);

    // The start re-verifies this population and whatever else the plane
    // holds: everything the tracker knows.
    eprintln!("perf: warm start, with the operator's own identity");
    let (op, proc_, start) = start_on_converged(plane, &tracker, timeout).await;
    report.start = start;
    (report.idle, report.steady) = watch_idle(plane, &admin, proc_, settings.idle).await;
    report.peak_mib = proc_.hwm_mib();
    block_in_place(|| op.stop());
    drop(op);
    drop(tracker);
    report.judge();
    report
}

impl WarmReport {
    /// Judges the run against the targets of issue 7 that a warm start
    /// measures.
    pub fn judge(&mut self) {
        let mut targets = Targets::default();
        targets.add(
            "seeded (all Ready)",
            format!("{} workspaces", self.about.workspaces),
            format!("{:.0} s", self.seed_seconds),
            self.seeded,
        );
        if !self.seeded {
            // The run stopped there: nothing else was measured.
            self.targets = targets.0;
            return;
        }
        targets.start("start writes (converged cluster)", &self.start);
        targets.idle(&self.idle.requests);
        targets.memory(self.about.workspaces, self.steady.steady_mib, self.peak_mib);
        self.targets = targets.0;
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        self.about.header(&mut out, "warm start");
        let w = report::line;
        w(
            &mut out,
            "setup (admin creates the population)",
            format!("{:.0} s", self.setup_seconds),
        );
        w(
            &mut out,
            "seed (operator as cluster admin)",
            format!(
                "{:.0} s{}",
                self.seed_seconds,
                if self.seeded { "" } else { " NOT CONVERGED" }
            ),
        );
        let _ = writeln!(out, "start on the converged cluster (own identity)");
        self.start.lines(&mut out, self.about.workspaces);
        self.idle.lines(&mut out);
        let _ = writeln!(out, "memory (operator RSS)");
        w(
            &mut out,
            "steady / peak",
            format!("{:.1} / {:.1} MiB", self.steady.steady_mib, self.peak_mib),
        );
        self.steady.lines(&mut out);
        report::targets_table(&mut out, &self.targets);
        out
    }
}

/// Returns once `op` has exited (checked every second).
async fn exited(op: &Operator) {
    while block_in_place(|| op.is_running()) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
