//! The report: every figure of a run, the targets of issue 7 judged against
//! them, a table for people and JSON for machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::audit::{Requests, Stage};
use super::calibrate::{Calibration, Floor};
use super::process::{Apf, Machine, ReadWait};

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub about: About,
    pub setup_seconds: f64,
    pub converge: Converge,
    pub idle: Idle,
    pub restart: Restart,
    pub latency: Latency,
    pub churn: Churn,
    pub transfer: TransferRun,
    pub memory: Memory,
    pub calibration: Calibration,
    pub authorization: super::authz::AuthorizationTax,
    pub targets: Vec<Target>,
}

/// What ran, and on what: the head of every report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct About {
    pub workspaces: usize,
    pub members_per_workspace: usize,
    pub workspaces_per_organization: usize,
    pub operator_binary: String,
    /// `git describe` of the tree the operator was built from.
    pub operator_commit: String,
    pub machine: Machine,
}

impl About {
    /// The title (`what` at N, M, P), the machine and the operator binary.
    pub fn header(&self, out: &mut String, what: &str) {
        let _ = writeln!(
            out,
            "\nworkspace-operator {what}: N={} workspaces, M={} members each, {} per organization",
            self.workspaces, self.members_per_workspace, self.workspaces_per_organization
        );
        let m = &self.machine;
        let _ = writeln!(
            out,
            "machine: {} CPUs ({}), {:.0} GiB, Linux {}; {}",
            m.cpus, m.cpu_model, m.memory_gib, m.kernel, m.control_plane
        );
        let _ = writeln!(
            out,
            "operator: {} (built from {})\n",
            self.operator_binary, self.operator_commit
        );
    }
}

/// The design's minimum of object writes for one workspace with `members`
/// members (events apart): the finalizer, the namespace, the owner
/// RoleBinding and the status; per member its RoleBinding and its status.
/// No cluster-scoped object per workspace. See `docs/performance.md`.
pub fn minimum_writes(members: usize) -> u64 {
    4 + 2 * members as u64
}

/// The minimum for a population: every workspace's, and per owning
/// Organization its finalizer, its admin ClusterRole, that role's binding
/// and its status.
pub fn minimum_population_writes(workspaces: usize, members: usize, organizations: usize) -> u64 {
    workspaces as u64 * minimum_writes(members) + 4 * organizations as u64
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Converge {
    /// Every Workspace Ready with all its members active, every member Ready.
    pub converged: bool,
    pub workspaces_ready: usize,
    pub members_ready: usize,
    /// From starting the process to all Ready.
    pub seconds: f64,
    /// From starting the process to holding the Lease.
    pub seconds_to_leader: f64,
    /// [`minimum_population_writes`] divided by the workspaces.
    pub minimum_writes_per_workspace: f64,
    /// Object writes (no events, no Lease) per workspace.
    pub writes_per_workspace: f64,
    pub writes_per_workspace_by_kind: BTreeMap<String, f64>,
    pub events_per_workspace: f64,
    pub requests: Requests,
    /// (N × minimum ÷ R) ÷ seconds; the product of the two factors below.
    pub efficiency: f64,
    /// Minimum ÷ observed object writes: how much of the work was needed.
    pub needed_fraction: f64,
    /// Observed object writes per second ÷ R: how close to the API server's
    /// pace the operator wrote.
    pub pace_fraction: f64,
    /// Object writes per second while converging, and with events.
    pub writes_per_second: f64,
    pub writes_and_events_per_second: f64,
    pub reconciles_per_workspace: f64,
    pub member_reconciles_per_member: f64,
    pub reconcile_errors: f64,
    pub cpu_seconds: f64,
    pub cpu_ms_per_workspace: f64,
    pub apf: Vec<Apf>,
    pub read_waits: Vec<ReadWait>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Idle {
    pub seconds: f64,
    pub requests: Requests,
    pub cpu_seconds: f64,
    pub rss_mib: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Restart {
    pub reverified: bool,
    /// From starting the new process: until it holds the Lease (the killed
    /// one's must expire first), and until every Workspace and member has been
    /// reconciled once.
    pub seconds_to_leader: f64,
    pub seconds_to_reverified: f64,
    pub requests: Requests,
    pub cpu_seconds: f64,
    pub rss_peak_mib: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub timeouts: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub writes_per_workspace: f64,
    pub writes_per_workspace_by_kind: BTreeMap<String, f64>,
    pub events_per_workspace: f64,
    /// Writes the API server refused (included above).
    pub failed_writes: u64,
    /// Where the time goes (p50 and p99 of each part, from the audit log).
    pub breakdown: Vec<Stage>,
    pub read_waits: Vec<ReadWait>,
    /// The same writes made by a bare client (operator stopped).
    pub floor: Floor,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Change {
    pub changes: usize,
    pub timeouts: usize,
    /// Until the member is Ready (add) or gone from the Workspace's status (remove).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Until the Workspace's status counts the change too.
    pub settled_p50_ms: f64,
    pub settled_p99_ms: f64,
    pub writes_per_change: f64,
    pub writes_per_change_by_kind: BTreeMap<String, f64>,
    pub events_per_change: f64,
}

/// One WorkspaceTransfer of a workspace with many members, timed from the
/// second approval.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TransferRun {
    pub members: usize,
    /// Members the transfer revokes (the target lists every other one).
    pub members_revoked: usize,
    pub completed: bool,
    pub ms_to_completed: f64,
    pub writes: u64,
    pub writes_by_kind: BTreeMap<String, u64>,
    pub events: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Churn {
    pub add: Change,
    pub remove: Change,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    #[serde(flatten)]
    pub steady: Steady,
    /// Highest resident set of the first process (cold converge), and of the
    /// restarted one.
    pub peak_mib: f64,
    pub restart_peak_mib: f64,
    /// Resident set of the restarted process at the end of the run.
    pub end_mib: f64,
}

/// The converged operator's memory, after the idle period.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Steady {
    /// Resident set.
    pub steady_mib: f64,
    /// Its anonymous part (heap) and file-backed part (the binary's pages).
    pub steady_anon_mib: f64,
    pub steady_file_mib: f64,
    /// The size, as JSON without `managedFields`, of everything the
    /// operator caches: what its caches hold, whatever the representation.
    pub cached_json_mib: f64,
}

impl Steady {
    /// What the operator caches, and the steady resident set's parts.
    pub fn lines(&self, out: &mut String) {
        line(
            out,
            "what it caches, as JSON",
            format!("{:.1} MiB", self.cached_json_mib),
        );
        line(
            out,
            "steady: anonymous (heap) / file (binary)",
            format!(
                "{:.1} / {:.1} MiB",
                self.steady_anon_mib, self.steady_file_mib
            ),
        );
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// p-th percentile (0..=100) of `samples`, nearest rank.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    /// Judges the run against the targets of issue 7.
    pub fn judge(&mut self) {
        let mut targets = Targets::default();
        let c = &self.converge;
        targets.add(
            "all Ready (cold converge)",
            format!("{} workspaces", self.about.workspaces),
            format!(
                "{} workspaces, {} members",
                c.workspaces_ready, c.members_ready
            ),
            c.converged,
        );
        targets.add(
            "writes per workspace (cold converge)",
            format!("= {:.2} (minimum)", c.minimum_writes_per_workspace),
            format!("{:.2}", c.writes_per_workspace),
            c.writes_per_workspace <= c.minimum_writes_per_workspace + 0.005,
        );
        let (p50, p99) = self.authorization.ratios();
        targets.add(
            "authorization tax (SAR, unrelated user)",
            "<= 1.10x empty".into(),
            format!("p50 {p50:.2}x, p99 {p99:.2}x"),
            p50 <= 1.10,
        );
        targets.add(
            "converge efficiency",
            ">= 0.80".into(),
            format!("{:.2}", c.efficiency),
            c.efficiency >= 0.8,
        );
        targets.idle(&self.idle.requests);
        targets.start("restart writes", &self.restart);
        let l = &self.latency;
        targets.add(
            "apply-to-Ready p50",
            "<= 50 ms".into(),
            format!("{:.0} ms", l.p50_ms),
            l.samples > 0 && l.timeouts == 0 && l.p50_ms <= 50.0,
        );
        targets.add(
            "apply-to-Ready p99",
            "<= 250 ms".into(),
            format!("{:.0} ms", l.p99_ms),
            l.samples > 0 && l.timeouts == 0 && l.p99_ms <= 250.0,
        );
        let m = &self.memory;
        targets.memory(
            self.about.workspaces,
            m.steady.steady_mib,
            m.peak_mib.max(m.restart_peak_mib),
        );
        self.targets = targets.0;
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.converge;
        self.about.header(&mut out, "performance");
        let w = line;
        let cal = &self.calibration;
        let _ = writeln!(out, "calibration");
        w(
            &mut out,
            "R (API server write rate, operator identity)",
            format!(
                "{:.0} writes/s ({} writes in {:.1} s, concurrency {}; {} stale-admission refusals retried; {})",
                cal.writes_per_second,
                cal.writes,
                cal.seconds,
                cal.concurrency,
                cal.stale_admission_refusals,
                if cal.separate_plane {
                    "identical fresh plane"
                } else {
                    "same plane, after the other scenarios"
                }
            ),
        );
        let _ = writeln!(out, "cold converge");
        w(
            &mut out,
            "time to all Ready",
            format!(
                "{:.1} s (Lease after {:.2} s){}",
                c.seconds,
                c.seconds_to_leader,
                if c.converged { "" } else { " NOT CONVERGED" }
            ),
        );
        w(
            &mut out,
            "efficiency",
            format!(
                "{:.2} = needed {:.2} (minimum / writes) x pace {:.2} ({:.0} writes/s, {:.0} with events, / R)",
                c.efficiency,
                c.needed_fraction,
                c.pace_fraction,
                c.writes_per_second,
                c.writes_and_events_per_second
            ),
        );
        w(
            &mut out,
            "writes per workspace",
            format!(
                "{:.2} (minimum {:.2}): {}",
                c.writes_per_workspace,
                c.minimum_writes_per_workspace,
                c.requests.describe_per(self.about.workspaces)
            ),
        );
        w(
            &mut out,
            "events per workspace",
            format!("{:.2}", c.events_per_workspace),
        );
        w(
            &mut out,
            "reads during converge",
            format!(
                "{} GET, {} LIST, {} failed writes",
                c.requests.gets, c.requests.lists, c.requests.failed_writes
            ),
        );
        w(
            &mut out,
            "reconciles per workspace / per member",
            format!(
                "{:.2} / {:.2} ({} errors)",
                c.reconciles_per_workspace, c.member_reconciles_per_member, c.reconcile_errors
            ),
        );
        w(
            &mut out,
            "CPU",
            format!(
                "{:.1} s, {:.2} ms per workspace",
                c.cpu_seconds, c.cpu_ms_per_workspace
            ),
        );
        for a in &c.apf {
            w(
                &mut out,
                &format!("APF {}", a.priority_level),
                format!(
                    "{:.0} dispatched, {:.0} rejected, mean queue wait {:.1} ms",
                    a.dispatched, a.rejected, a.mean_wait_ms
                ),
            );
        }
        for r in c
            .read_waits
            .iter()
            .filter(|r| r.reads >= 20.0 && r.mean_wait_ms >= 5.0)
        {
            w(
                &mut out,
                &format!("consistent reads of {}", r.resource),
                format!(
                    "{:.0}, mean wait for a fresh cache {:.1} ms",
                    r.reads, r.mean_wait_ms
                ),
            );
        }
        self.idle.lines(&mut out);
        let _ = writeln!(out, "restart (kill -9, start again)");
        self.restart.lines(&mut out, self.about.workspaces);
        let l = &self.latency;
        let _ = writeln!(
            out,
            "apply-to-Ready, {} single creates at light load",
            l.samples
        );
        w(
            &mut out,
            "p50 / p90 / p99 / max",
            format!(
                "{:.0} / {:.0} / {:.0} / {:.0} ms{}",
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.max_ms,
                if l.timeouts > 0 {
                    format!(" ({} timed out)", l.timeouts)
                } else {
                    String::new()
                }
            ),
        );
        for stage in &l.breakdown {
            let unit = if stage.stage.contains("requests") {
                ""
            } else {
                " ms"
            };
            w(
                &mut out,
                &format!("  {}", stage.stage),
                format!(
                    "{:.0} / {:.0}{unit} (p50 / p99)",
                    stage.p50_ms, stage.p99_ms
                ),
            );
        }
        for r in l
            .read_waits
            .iter()
            .filter(|r| r.reads >= 20.0 && r.mean_wait_ms >= 5.0)
        {
            w(
                &mut out,
                &format!("  consistent reads of {}", r.resource),
                format!(
                    "{:.0}, mean wait for a fresh cache {:.1} ms",
                    r.reads, r.mean_wait_ms
                ),
            );
        }
        w(
            &mut out,
            "floor: a bare client's writes, sequential",
            format!(
                "{:.0} / {:.0} ms (p50 / p99 of {})",
                l.floor.sequential_p50_ms, l.floor.sequential_p99_ms, l.floor.samples
            ),
        );
        w(
            &mut out,
            "floor: a bare client's writes, in parallel",
            format!(
                "{:.0} / {:.0} ms",
                l.floor.parallel_p50_ms, l.floor.parallel_p99_ms
            ),
        );
        w(
            &mut out,
            "writes per workspace (no members)",
            format!(
                "{:.2} (minimum {}), events {:.2}, {} refused",
                l.writes_per_workspace,
                minimum_writes(0),
                l.events_per_workspace,
                l.failed_writes
            ),
        );
        let a = &self.authorization;
        let _ = writeln!(
            out,
            "authorization tax (SubjectAccessReview, unrelated user)"
        );
        for (what, q) in [
            ("empty cluster", &a.empty),
            ("population converged", &a.populated),
        ] {
            w(
                &mut out,
                &format!("{what}: p50 / p90 / p99"),
                format!(
                    "{:.2} / {:.2} / {:.2} ms ({} samples, {} ClusterRoleBindings)",
                    q.p50_ms, q.p90_ms, q.p99_ms, q.samples, q.cluster_role_bindings
                ),
            );
        }
        let t = &self.transfer;
        let _ = writeln!(
            out,
            "transfer ({} members, {} revoked)",
            t.members, t.members_revoked
        );
        w(
            &mut out,
            "second approval to Completed",
            format!("{:.0} ms", t.ms_to_completed),
        );
        w(
            &mut out,
            "writes per transfer",
            format!("{} (events {}): {:?}", t.writes, t.events, t.writes_by_kind),
        );
        let _ = writeln!(out, "member churn");
        for (what, ch) in [("add", &self.churn.add), ("remove", &self.churn.remove)] {
            w(
                &mut out,
                &format!("{what}: latency p50 / p99"),
                format!(
                    "{:.0} / {:.0} ms; workspace status {:.0} / {:.0} ms{}",
                    ch.p50_ms,
                    ch.p99_ms,
                    ch.settled_p50_ms,
                    ch.settled_p99_ms,
                    if ch.timeouts > 0 {
                        format!(" ({} timed out)", ch.timeouts)
                    } else {
                        String::new()
                    }
                ),
            );
            w(
                &mut out,
                &format!("{what}: writes per change"),
                format!(
                    "{:.2}: {}; events {:.2}",
                    ch.writes_per_change,
                    ch.writes_per_change_by_kind
                        .iter()
                        .map(|(k, v)| format!("{k} {v:.2}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    ch.events_per_change
                ),
            );
        }
        let mem = &self.memory;
        let _ = writeln!(out, "memory (operator RSS)");
        w(
            &mut out,
            "steady / peak / restart peak / end",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} MiB",
                mem.steady.steady_mib, mem.peak_mib, mem.restart_peak_mib, mem.end_mib
            ),
        );
        mem.steady.lines(&mut out);
        targets_table(&mut out, &self.targets);
        out
    }
}

/// One `name  value` line of a table.
pub fn line(out: &mut String, name: &str, value: String) {
    let _ = writeln!(out, "  {name:<44} {value}");
}

/// The judged targets.
pub fn targets_table(out: &mut String, targets: &[Target]) {
    let _ = writeln!(out, "\ntargets");
    for t in targets {
        let _ = writeln!(
            out,
            "  {:<4} {:<38} target {:<18} measured {}",
            if t.met { "ok" } else { "MISS" },
            t.name,
            t.target,
            t.measured
        );
    }
}

/// The targets a run is judged against, as they are added.
#[derive(Default)]
pub struct Targets(pub Vec<Target>);

impl Targets {
    pub fn add(&mut self, name: &str, target: String, measured: String, met: bool) {
        self.0.push(Target {
            name: name.to_string(),
            target,
            measured,
            met,
        });
    }

    /// Zero writes and zero reads while idle.
    pub fn idle(&mut self, i: &Requests) {
        self.add(
            "idle writes",
            "0".into(),
            format!(
                "{} (+{} Lease renewals)",
                i.writes + i.events,
                i.lease_writes
            ),
            i.writes + i.events == 0,
        );
        self.add(
            "idle GETs and LISTs",
            "0".into(),
            format!("{} GET, {} LIST", i.gets, i.lists),
            i.gets + i.lists == 0,
        );
    }

    /// Zero writes by an operator starting on a converged cluster, which
    /// re-verified everything.
    pub fn start(&mut self, name: &str, start: &Restart) {
        let r = &start.requests;
        self.add(
            name,
            "0".into(),
            format!("{}", r.writes + r.events),
            start.reverified && r.writes + r.events == 0,
        );
    }

    /// The resident-set targets for `workspaces` (none above 10,000).
    pub fn memory(&mut self, workspaces: usize, steady_mib: f64, peak_mib: f64) {
        let limit = match workspaces {
            n if n <= 1_000 => 32.0,
            n if n <= 10_000 => 96.0,
            _ => return,
        };
        self.add(
            "RSS steady",
            format!("<= {limit:.0} MiB"),
            format!("{steady_mib:.1} MiB"),
            steady_mib <= limit,
        );
        self.add(
            "RSS peak",
            format!("<= {limit:.0} MiB"),
            format!("{peak_mib:.1} MiB"),
            peak_mib <= limit,
        );
    }
}

impl Idle {
    /// Writes, reads and CPU while idle.
    pub fn lines(&self, out: &mut String) {
        let _ = writeln!(out, "idle {:.0} s", self.seconds);
        let r = &self.requests;
        line(
            out,
            "writes / GET / LIST / watch restarts",
            format!(
                "{} / {} / {} / {}",
                r.writes + r.events,
                r.gets,
                r.lists,
                r.watches
            ),
        );
        line(
            out,
            "Lease renewals (writes / reads)",
            format!("{} / {}", r.lease_writes, r.lease_reads),
        );
        line(out, "CPU", format!("{:.2} s", self.cpu_seconds));
    }
}

impl Restart {
    /// Writes, reads, time to re-verified and CPU of a start on a
    /// converged cluster.
    pub fn lines(&self, out: &mut String, workspaces: usize) {
        let r = &self.requests;
        line(out, "writes", format!("{}", r.writes + r.events));
        line(
            out,
            "reads",
            format!("{} GET, {} LIST", r.gets + r.lease_reads, r.lists),
        );
        line(
            out,
            "time to every workspace re-verified",
            format!(
                "{:.1} s, of which {:.1} s waiting for the Lease{}",
                self.seconds_to_reverified,
                self.seconds_to_leader,
                if self.reverified {
                    ""
                } else {
                    " NOT REVERIFIED"
                }
            ),
        );
        line(
            out,
            "CPU",
            format!(
                "{:.1} s, {:.2} ms per workspace",
                self.cpu_seconds,
                self.cpu_seconds * 1000.0 / workspaces.max(1) as f64
            ),
        );
    }
}
