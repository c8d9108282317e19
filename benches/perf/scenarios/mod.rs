//! The scenarios of the performance harness (issue 7), shared by the
//! benchmark (`make bench N=…`, `cargo bench --bench perf`) and its CI smoke
//! test (`tests/bench_smoke.rs`), which runs them small and checks only
//! correctness. `docs/performance.md` describes each scenario and what is
//! counted.
//!
//! Everything runs against the project's own control plane
//! ([`crate::support::plane`]) with the operator as its own process and its
//! own least-privilege identity ([`crate::support::operator::Operator`]).
//! Writes and reads are counted from the API server's audit log by the
//! operator's user; memory and CPU from /proc.

pub mod audit;
pub mod authz;
pub mod calibrate;
pub mod cli;
pub mod fixtures;
pub mod process;
pub mod report;
pub mod tracker;
pub mod transfer;
pub mod warm;

use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, DeleteParams};
use tokio::task::block_in_place;
use workspace_operator::api::{Workspace, WorkspaceMember};

use self::audit::Requests;
use self::fixtures::Population;
use self::process::{Proc, settle, wait_counters};
use self::report::{
    About, Change, Idle, Report, Restart, Steady, minimum_population_writes, percentile,
};
use self::tracker::Tracker;
use crate::support::operator::{OPERATOR_USER, Operator};
use crate::support::{self, ControlPlane};

/// What to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// N: Workspaces in the cold-converge population.
    pub workspaces: usize,
    /// M: WorkspaceMembers of each.
    pub members: usize,
    /// Workspaces per owning Organization.
    pub per_organization: usize,
    /// K: how long the converged operator is watched doing nothing.
    pub idle: Duration,
    /// Single creates timed at light load.
    pub latency_samples: usize,
    /// Members added (then removed), each in another workspace.
    pub churn: usize,
    /// Members of the workspace the transfer scenario moves.
    pub transfer_members: usize,
    /// Concurrency of the admin's untimed setup.
    pub setup_concurrency: usize,
    /// Concurrency of the calibration client (per pool; the operator's
    /// `--concurrency` per controller).
    pub calibration_concurrency: usize,
    /// A calibration already measured on a separate, fresh control plane
    /// with the same population ([`calibration_only`]); without it the
    /// calibration runs at the end, on this plane, with a population of its
    /// own (so on a cluster twice the size: R comes out lower).
    pub calibration: Option<calibrate::Calibration>,
    /// Record the operator's CPU profile (`perf record`) during the cold
    /// converge into this file.
    pub perf_record: Option<std::path::PathBuf>,
}

impl Settings {
    /// How long any one phase may take before the harness gives up on it:
    /// generous, growing with N (at N=10,000 the API server's cost per
    /// RBAC write grows with the ClusterRoleBindings it holds).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(600) + Duration::from_millis(1200) * self.workspaces as u32
    }
}

/// How long the operator must make no write and start no reconcile to count
/// as done with a phase.
const QUIET: Duration = Duration::from_secs(3);

fn requests_since(plane: &ControlPlane, mark: support::AuditMark) -> Requests {
    block_in_place(|| Requests::from_audit(&plane.requests_since(mark, OPERATOR_USER)))
}

/// The commit the working tree is at, `-dirty` when it has changes.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(support::repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn population_of(settings: &Settings, prefix: &'static str) -> Population {
    Population {
        prefix,
        workspaces: settings.workspaces,
        members: settings.members,
        per_organization: settings.per_organization,
    }
}

/// What this run is, on this machine, with this operator binary.
fn about(settings: &Settings) -> About {
    About {
        workspaces: settings.workspaces,
        members_per_workspace: settings.members,
        workspaces_per_organization: settings.per_organization,
        operator_binary: env!("CARGO_BIN_EXE_workspace-operator").to_string(),
        operator_commit: commit(),
        machine: process::machine(),
    }
}

/// The untimed setup: the admin creates `population` with the operator
/// stopped and waits until the controller-manager is done with its
/// namespaces; returns the tracker watching it and the seconds it took.
async fn set_up(admin: &Client, population: &Population, settings: &Settings) -> (Tracker, f64) {
    let (n, m) = (population.workspaces, population.members);
    eprintln!("perf: creating {n} workspaces with {m} members each (operator stopped)");
    let started = Instant::now();
    population.create(admin, settings.setup_concurrency).await;
    fixtures::wait_namespaces_settled(admin, settings.timeout()).await;
    let tracker = Tracker::start(admin).await;
    (tracker, started.elapsed().as_secs_f64())
}

/// Leaves the operator `idle` and returns its requests and CPU in that
/// time, and its memory at the end.
async fn watch_idle(
    plane: &ControlPlane,
    admin: &Client,
    op: Proc,
    idle: Duration,
) -> (Idle, Steady) {
    eprintln!("perf: idle for {idle:?}");
    let mark = plane.audit_mark();
    let cpu = op.cpu_seconds();
    tokio::time::sleep(idle).await;
    let rss_mib = op.rss_mib();
    let (steady_anon_mib, steady_file_mib) = op.rss_parts_mib();
    let idle = Idle {
        seconds: idle.as_secs_f64(),
        requests: requests_since(plane, mark),
        cpu_seconds: op.cpu_seconds() - cpu,
        rss_mib,
    };
    let steady = Steady {
        steady_mib: rss_mib,
        steady_anon_mib,
        steady_file_mib,
        cached_json_mib: process::cached_json_bytes(admin).await as f64 / 1024.0 / 1024.0,
    };
    (idle, steady)
}

/// Starts the operator, with its own identity, on a converged cluster and
/// measures the start: until it holds the Lease, until it has reconciled
/// once every Workspace and member the tracker knows, and its requests, CPU
/// and peak memory until it is quiet.
async fn start_on_converged(
    plane: &ControlPlane,
    tracker: &Tracker,
    timeout: Duration,
) -> (Operator, Proc, Restart) {
    let (workspaces, members) = tracker.with(|s| s.counts());
    let mark = plane.audit_mark();
    let started = Instant::now();
    let op = block_in_place(|| Operator::start(&[]));
    let proc_ = Proc(op.pid());
    let leader = wait_counters(&op, timeout, |c| c.leader).await;
    let reverified = wait_counters(&op, timeout, |c| {
        c.workspace_reconciles >= workspaces as f64 && c.member_reconciles >= members as f64
    })
    .await;
    let seconds_to_reverified = started.elapsed().as_secs_f64();
    settle(&op, QUIET, timeout).await;
    let start = Restart {
        reverified: reverified.is_some(),
        seconds_to_leader: leader.unwrap_or_default().as_secs_f64(),
        seconds_to_reverified,
        requests: requests_since(plane, mark),
        cpu_seconds: proc_.cpu_seconds(),
        rss_peak_mib: proc_.hwm_mib(),
    };
    (op, proc_, start)
}

/// Measures R alone, on this process's control plane, with the very
/// population [`run`] converges (so on an identical cluster when this runs in
/// a process of its own).
pub async fn calibration_only(settings: &Settings) -> calibrate::Calibration {
    let plane = block_in_place(support::plane);
    let admin = plane.admin().await;
    calibrate::run(
        plane,
        &admin,
        &population_of(settings, "ws"),
        settings.calibration_concurrency,
        settings.setup_concurrency,
    )
    .await
}

/// SubjectAccessReviews timed for each authorization-tax measurement.
const AUTHZ_SAMPLES: usize = 500;

/// Runs every scenario in order and returns the report, judged.
pub async fn run(settings: &Settings) -> Report {
    let plane = block_in_place(support::plane);
    let admin = plane.admin().await;
    let n = settings.workspaces;
    let m = settings.members;
    let timeout = settings.timeout();
    let population = population_of(settings, "ws");
    let mut report = Report {
        about: about(settings),
        ..Report::default()
    };
    eprintln!("perf: authorization tax before the population");
    report.authorization.empty = authz::measure(&admin, AUTHZ_SAMPLES).await;
    let tracker;
    (tracker, report.setup_seconds) = set_up(&admin, &population, settings).await;

    eprintln!("perf: cold converge");
    let names = population.workspace_names();
    let apf_before = block_in_place(|| process::apiserver_metrics(plane));
    let mark = plane.audit_mark();
    let started = Instant::now();
    let first = block_in_place(|| Operator::start(&[]));
    let first_proc = Proc(first.pid());
    let profiler = settings
        .perf_record
        .as_ref()
        .map(|out| process::perf_record(first_proc, out));
    let leader = wait_counters(&first, timeout, |c| c.leader).await;
    let prefix = format!("{}-", population.prefix);
    let done = tracker
        .wait_until(timeout, Duration::from_millis(200), |s| {
            s.all_ready(&names, m, &prefix)
        })
        .await;
    let settled = settle(&first, QUIET, timeout).await.unwrap_or_default();
    if let Some(profiler) = profiler {
        block_in_place(|| process::stop_perf_record(profiler));
    }
    let apf_after = block_in_place(|| process::apiserver_metrics(plane));
    let c = &mut report.converge;
    c.seconds = done
        .unwrap_or_else(Instant::now)
        .duration_since(started)
        .as_secs_f64();
    c.seconds_to_leader = leader.unwrap_or_default().as_secs_f64();
    (c.workspaces_ready, c.members_ready) =
        tracker.with(|s| (s.converged(&names, m), s.members_ready(&prefix)));
    c.converged = done.is_some();
    c.requests = requests_since(plane, mark);
    c.minimum_writes_per_workspace =
        minimum_population_writes(n, m, population.organizations()) as f64 / n as f64;
    c.writes_per_workspace = c.requests.writes as f64 / n as f64;
    c.writes_per_workspace_by_kind = c.requests.per(n);
    c.events_per_workspace = c.requests.events as f64 / n as f64;
    c.reconciles_per_workspace = settled.workspace_reconciles / n as f64;
    c.member_reconciles_per_member = settled.member_reconciles / (n * m).max(1) as f64;
    c.reconcile_errors = settled.errors + 0.0;
    c.cpu_seconds = first_proc.cpu_seconds();
    c.cpu_ms_per_workspace = c.cpu_seconds * 1000.0 / n as f64;
    c.apf = process::apf_delta(&apf_before, &apf_after);
    c.read_waits = process::read_waits(&apf_before, &apf_after);
    report.memory.peak_mib = first_proc.hwm_mib();

    eprintln!("perf: authorization tax with the population converged");
    report.authorization.populated = authz::measure(&admin, AUTHZ_SAMPLES).await;
    (report.idle, report.memory.steady) =
        watch_idle(plane, &admin, first_proc, settings.idle).await;
    report.memory.peak_mib = report.memory.peak_mib.max(first_proc.hwm_mib());

    eprintln!("perf: kill -9 and restart");
    first.kill9();
    while block_in_place(|| first.is_running()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first);
    let (second, second_proc, restart) = start_on_converged(plane, &tracker, timeout).await;
    report.restart = restart;
    report.memory.restart_peak_mib = report.restart.rss_peak_mib;

    eprintln!(
        "perf: apply-to-Ready latency, {} creates",
        settings.latency_samples
    );
    report.latency = latency(plane, &admin, &tracker, &second, settings).await;

    eprintln!("perf: member churn, {} adds and removes", settings.churn);
    report.churn.add = churn(
        plane,
        &admin,
        &tracker,
        &second,
        &population,
        true,
        settings,
    )
    .await;
    report.churn.remove = churn(
        plane,
        &admin,
        &tracker,
        &second,
        &population,
        false,
        settings,
    )
    .await;
    eprintln!(
        "perf: a transfer of a workspace with {} members",
        settings.transfer_members
    );
    report.transfer =
        transfer::run(plane, &admin, &second, settings.transfer_members, timeout).await;
    report.memory.end_mib = second_proc.rss_mib();
    report.memory.restart_peak_mib = second_proc.hwm_mib();
    block_in_place(|| second.stop());
    drop(second);
    drop(tracker);

    report.calibration = match &settings.calibration {
        Some(calibration) => calibration.clone(),
        None => {
            eprintln!("perf: calibration (operator stopped, on this plane)");
            calibrate::run(
                plane,
                &admin,
                &population_of(settings, "cal"),
                settings.calibration_concurrency,
                settings.setup_concurrency,
            )
            .await
        }
    };
    eprintln!("perf: latency floor (a bare client's writes, operator stopped)");
    // As many samples as the latency scenario takes, so that the two p99s
    // are the same rank of the same number of samples.
    report.latency.floor = calibrate::floor(plane, &admin, settings.latency_samples).await;
    let c = &mut report.converge;
    if c.seconds > 0.0 && report.calibration.writes_per_second > 0.0 {
        let ideal =
            n as f64 * c.minimum_writes_per_workspace / report.calibration.writes_per_second;
        c.efficiency = ideal / c.seconds;
        c.writes_per_second = c.requests.writes as f64 / c.seconds;
        c.writes_and_events_per_second = (c.requests.writes + c.requests.events) as f64 / c.seconds;
        c.needed_fraction = n as f64 * c.minimum_writes_per_workspace / c.requests.writes as f64;
        c.pace_fraction = c.writes_per_second / report.calibration.writes_per_second;
    }
    report.judge();
    report
}

/// Creates personal Workspaces one at a time and times each from the create
/// request to the watch event that shows it Ready.
async fn latency(
    plane: &ControlPlane,
    admin: &Client,
    tracker: &Tracker,
    op: &Operator,
    settings: &Settings,
) -> report::Latency {
    let api = Api::<Workspace>::all(admin.clone());
    let mark = plane.audit_mark();
    let log = plane.audit_log().map(|p| p.to_path_buf());
    let offset = log
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let metrics_before = block_in_place(|| process::apiserver_metrics(plane));
    let mut samples = Vec::new();
    let mut timed = Vec::new();
    let mut timeouts = 0;
    for i in 0..settings.latency_samples {
        let name = format!("lat-{i:05}");
        let sent = std::time::SystemTime::now();
        let started = Instant::now();
        fixtures::create(&api, fixtures::personal_workspace(&name)).await;
        match tracker
            .wait_until(Duration::from_secs(60), Duration::ZERO, |s| {
                s.workspace_ready(&name)
            })
            .await
        {
            Some(at) => {
                let seen = std::time::SystemTime::now();
                samples.push(at.duration_since(started).as_secs_f64() * 1000.0);
                timed.push(audit::Sample { name, sent, seen });
            }
            None => timeouts += 1,
        }
        // Light load: let the operator finish with this one first.
        settle(op, Duration::from_millis(300), Duration::from_secs(30)).await;
    }
    settle(op, QUIET, settings.timeout()).await;
    let metrics_after = block_in_place(|| process::apiserver_metrics(plane));
    let requests = requests_since(plane, mark);
    let count = settings.latency_samples.max(1);
    report::Latency {
        samples: samples.len(),
        timeouts,
        p50_ms: percentile(&samples, 50.0),
        p90_ms: percentile(&samples, 90.0),
        p99_ms: percentile(&samples, 99.0),
        max_ms: percentile(&samples, 100.0),
        writes_per_workspace: requests.writes as f64 / count as f64,
        writes_per_workspace_by_kind: requests.per(count),
        events_per_workspace: requests.events as f64 / count as f64,
        failed_writes: requests.failed_writes,
        breakdown: log
            .map(|log| block_in_place(|| audit::breakdown(&log, offset, OPERATOR_USER, &timed)))
            .unwrap_or_default(),
        read_waits: process::read_waits(&metrics_before, &metrics_after),
        floor: Default::default(),
    }
}

/// Adds (or removes) the churn member in each of the first workspaces, one
/// change at a time, timing each and counting the writes per change.
async fn churn(
    plane: &ControlPlane,
    admin: &Client,
    tracker: &Tracker,
    op: &Operator,
    population: &Population,
    add: bool,
    settings: &Settings,
) -> Change {
    let changes = settings.churn.min(population.workspaces);
    let m = population.members as i32;
    let mark = plane.audit_mark();
    let mut first = Vec::new();
    let mut settled = Vec::new();
    let mut timeouts = 0;
    let wait = Duration::from_secs(60);
    for k in 0..changes {
        let ns = population.workspace(k);
        let api = Api::<WorkspaceMember>::namespaced(admin.clone(), &ns);
        let started = Instant::now();
        let (done, counted) = if add {
            let object = fixtures::member_object(
                &ns,
                fixtures::CHURN_MEMBER,
                fixtures::CHURN_USER,
                "Viewer",
            );
            fixtures::create(&api, object).await;
            let ready = tracker
                .wait_until(wait, Duration::ZERO, |s| {
                    s.member_ready(&ns, fixtures::CHURN_MEMBER)
                })
                .await;
            let counted = tracker
                .wait_until(wait, Duration::ZERO, |s| {
                    s.workspace_members(&ns) == Some(m + 1)
                })
                .await;
            (ready, counted)
        } else {
            fixtures::retry("delete the churn member", || async {
                api.delete(fixtures::CHURN_MEMBER, &DeleteParams::default())
                    .await
                    .map(|_| ())
            })
            .await;
            let counted = tracker
                .wait_until(wait, Duration::ZERO, |s| {
                    s.workspace_members(&ns) == Some(m)
                })
                .await;
            (counted, counted)
        };
        match (done, counted) {
            (Some(d), Some(c)) => {
                first.push(d.duration_since(started).as_secs_f64() * 1000.0);
                settled.push(c.duration_since(started).as_secs_f64() * 1000.0);
            }
            _ => timeouts += 1,
        }
        settle(op, Duration::from_millis(300), Duration::from_secs(30)).await;
    }
    settle(op, QUIET, settings.timeout()).await;
    let requests = requests_since(plane, mark);
    let count = changes.max(1);
    Change {
        changes,
        timeouts,
        p50_ms: percentile(&first, 50.0),
        p99_ms: percentile(&first, 99.0),
        settled_p50_ms: percentile(&settled, 50.0),
        settled_p99_ms: percentile(&settled, 99.0),
        writes_per_change: requests.writes as f64 / count as f64,
        writes_per_change_by_kind: requests.per(count),
        events_per_change: requests.events as f64 / count as f64,
    }
}
