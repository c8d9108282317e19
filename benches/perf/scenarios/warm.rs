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

use super::fixtures;
use super::process::{self, Machine, Proc, settle, wait_counters};
use super::report::{self, Idle, Restart, Target};
use super::tracker::Tracker;
use super::{QUIET, Settings, commit, population_of, requests_since};
use crate::support;
use crate::support::operator::Operator;

#[derive(Clone, Debug, Default, Serialize)]
pub struct WarmReport {
    pub workspaces: usize,
    pub members_per_workspace: usize,
    pub workspaces_per_organization: usize,
    pub operator_binary: String,
    pub operator_commit: String,
    pub machine: Machine,
    pub setup_seconds: f64,
    /// Whether the operator, run as the cluster admin, brought every
    /// workspace and member to Ready, and how long it took (not a figure of
    /// merit: the admin skips the API server's escalation check).
    pub seeded: bool,
    pub seed_seconds: f64,
    /// The operator, with its own identity, started on the converged cluster.
    pub start: Restart,
    pub idle: Idle,
    /// Resident set after the idle period, and its anonymous (heap) and
    /// file-backed parts; the peak since the start.
    pub steady_mib: f64,
    pub steady_anon_mib: f64,
    pub steady_file_mib: f64,
    pub peak_mib: f64,
    /// The size, as JSON without `managedFields`, of everything the
    /// operator caches.
    pub cached_json_mib: f64,
    pub targets: Vec<Target>,
}

/// Runs the warm-start scenario and returns its report, judged.
pub async fn run(settings: &Settings) -> WarmReport {
    let plane = block_in_place(support::plane);
    let admin = plane.admin().await;
    let n = settings.workspaces;
    let m = settings.members;
    let timeout = settings.timeout();
    let population = population_of(settings, "warm");
    let mut report = WarmReport {
        workspaces: n,
        members_per_workspace: m,
        workspaces_per_organization: settings.per_organization,
        operator_binary: env!("CARGO_BIN_EXE_workspace-operator").to_string(),
        operator_commit: commit(),
        machine: process::machine(),
        ..WarmReport::default()
    };

    eprintln!("perf: creating {n} workspaces with {m} members each (operator stopped)");
    let started = Instant::now();
    population.create(&admin, settings.setup_concurrency).await;
    fixtures::wait_namespaces_settled(&admin, timeout).await;
    let tracker = Tracker::start(&admin).await;
    report.setup_seconds = started.elapsed().as_secs_f64();

    eprintln!("perf: seeding: the operator, as the cluster admin, converges them");
    let names = population.workspace_names();
    let prefix = format!("{}-", population.prefix);
    let started = Instant::now();
    let seeder = block_in_place(|| Operator::start_as(plane.kubeconfig(), &[]));
    let seeded = tracker
        .wait_until(timeout, Duration::from_millis(500), |s| {
            s.converged(&names, m) == n && s.members_ready(&prefix) == n * m
        })
        .await;
    report.seeded = seeded.is_some();
    report.seed_seconds = started.elapsed().as_secs_f64();
    settle(&seeder, QUIET, timeout).await;
    block_in_place(|| seeder.stop());
    while block_in_place(|| seeder.is_running()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(seeder);

    // Everything the operator re-verifies: this population, and whatever
    // else the plane holds (the smoke test runs this after the others).
    let (all_workspaces, all_members) = tracker.with(|s| s.counts());
    eprintln!("perf: warm start, with the operator's own identity");
    let mark = plane.audit_mark();
    let started = Instant::now();
    let op = block_in_place(|| Operator::start(&[]));
    let proc_ = Proc(op.pid());
    let leader = wait_counters(&op, timeout, |c| c.leader).await;
    let reverified = wait_counters(&op, timeout, |c| {
        c.workspace_reconciles >= all_workspaces as f64 && c.member_reconciles >= all_members as f64
    })
    .await;
    let s = &mut report.start;
    s.reverified = reverified.is_some();
    s.seconds_to_leader = leader.unwrap_or_default().as_secs_f64();
    s.seconds_to_reverified = started.elapsed().as_secs_f64();
    settle(&op, QUIET, timeout).await;
    s.requests = requests_since(plane, mark);
    s.cpu_seconds = proc_.cpu_seconds();
    s.rss_peak_mib = proc_.hwm_mib();

    eprintln!("perf: idle for {:?}", settings.idle);
    let mark = plane.audit_mark();
    let cpu = proc_.cpu_seconds();
    tokio::time::sleep(settings.idle).await;
    let i = &mut report.idle;
    i.seconds = settings.idle.as_secs_f64();
    i.requests = requests_since(plane, mark);
    i.cpu_seconds = proc_.cpu_seconds() - cpu;
    i.rss_mib = proc_.rss_mib();
    report.steady_mib = i.rss_mib;
    (report.steady_anon_mib, report.steady_file_mib) = proc_.rss_parts_mib();
    report.peak_mib = proc_.hwm_mib();
    report.cached_json_mib = process::cached_json_bytes(&admin).await as f64 / 1024.0 / 1024.0;
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
        let mut targets = Vec::new();
        let mut add = |name: &str, target: String, measured: String, met: bool| {
            targets.push(Target {
                name: name.to_string(),
                target,
                measured,
                met,
            })
        };
        add(
            "seeded (all Ready)",
            format!("{} workspaces", self.workspaces),
            format!("{:.0} s", self.seed_seconds),
            self.seeded,
        );
        let r = &self.start.requests;
        add(
            "start writes (converged cluster)",
            "0".into(),
            format!("{}", r.writes + r.events),
            self.start.reverified && r.writes + r.events == 0,
        );
        report::idle_targets(&self.idle.requests, &mut add);
        report::memory_targets(self.workspaces, self.steady_mib, self.peak_mib, &mut add);
        self.targets = targets;
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        report::header(
            &mut out,
            &format!(
                "warm start: N={} workspaces, M={} members each, {} per organization",
                self.workspaces, self.members_per_workspace, self.workspaces_per_organization
            ),
            &self.machine,
            &self.operator_binary,
            &self.operator_commit,
        );
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
        self.start.lines(&mut out, self.workspaces);
        self.idle.lines(&mut out);
        let _ = writeln!(out, "memory (operator RSS)");
        w(
            &mut out,
            "what it caches, as JSON",
            format!("{:.1} MiB", self.cached_json_mib),
        );
        w(
            &mut out,
            "steady / peak",
            format!("{:.1} / {:.1} MiB", self.steady_mib, self.peak_mib),
        );
        w(
            &mut out,
            "steady: anonymous (heap) / file (binary)",
            format!(
                "{:.1} / {:.1} MiB",
                self.steady_anon_mib, self.steady_file_mib
            ),
        );
        report::targets_table(&mut out, &self.targets);
        out
    }
}
