//! What the harness reads besides the audit log: the operator process in
//! /proc (memory, CPU), the operator's /metrics, the API server's priority
//! and fairness metrics, and a description of the machine.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::support::ControlPlane;
use crate::support::operator::Operator;

/// One process as /proc shows it.
#[derive(Clone, Copy, Debug)]
pub struct Proc(pub u32);

fn kib_field(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

impl Proc {
    fn status(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.0)).unwrap_or_default()
    }

    /// Resident set size now, MiB.
    pub fn rss_mib(&self) -> f64 {
        kib_field(&self.status(), "VmRSS:").unwrap_or(0) as f64 / 1024.0
    }

    /// The resident set split into anonymous memory (heap, stacks) and
    /// file-backed pages (the binary's code and data, libraries), MiB.
    pub fn rss_parts_mib(&self) -> (f64, f64) {
        let status = self.status();
        let mib = |field| kib_field(&status, field).unwrap_or(0) as f64 / 1024.0;
        (mib("RssAnon:"), mib("RssFile:") + mib("RssShmem:"))
    }

    /// Peak resident set size so far, MiB.
    pub fn hwm_mib(&self) -> f64 {
        kib_field(&self.status(), "VmHWM:").unwrap_or(0) as f64 / 1024.0
    }

    /// User plus system CPU time so far, seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0)).unwrap_or_default();
        // Fields after the command name (which may hold spaces) in parentheses.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
        let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
        (ticks(14).unwrap_or(0.0) + ticks(15).unwrap_or(0.0)) / clock_ticks()
    }
}

/// Starts `perf record` on `proc` (call graphs from DWARF, 99 Hz) into `out`.
pub fn perf_record(proc: Proc, out: &std::path::Path) -> std::process::Child {
    Command::new("perf")
        .args(["record", "-F", "99", "--call-graph", "dwarf,32768", "-o"])
        .arg(out)
        .args(["-p", &proc.0.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start perf record (is perf installed?)")
}

/// Stops `perf record` (SIGINT, so it writes its file) and waits for it.
pub fn stop_perf_record(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The sum of a counter or gauge over the label sets that contain `labels`.
pub fn metric(body: &str, name: &str, labels: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The operator's counters the scenarios follow.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OperatorCounters {
    pub workspace_reconciles: f64,
    pub member_reconciles: f64,
    pub writes: f64,
    pub errors: f64,
    pub leader: bool,
}

pub fn counters(op: &Operator) -> Option<OperatorCounters> {
    let (code, body) = op.get("/metrics")?;
    if code != 200 {
        return None;
    }
    let reconciles = "workspace_operator_reconciles_total";
    Some(OperatorCounters {
        workspace_reconciles: metric(&body, reconciles, "controller=\"workspace\""),
        member_reconciles: metric(&body, reconciles, "controller=\"member\""),
        writes: metric(&body, "workspace_operator_writes_total", ""),
        errors: metric(&body, "workspace_operator_reconcile_errors_total", ""),
        leader: metric(&body, "workspace_operator_leader", "") == 1.0,
    })
}

/// Waits until the operator has made no write and started no reconcile for
/// `quiet`; returns its counters then, or `None` after `timeout`.
pub async fn settle(op: &Operator, quiet: Duration, timeout: Duration) -> Option<OperatorCounters> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    let mut since = Instant::now();
    loop {
        let now = counters(op);
        if now.is_some() && now == last {
            if since.elapsed() >= quiet {
                return now;
            }
        } else {
            last = now;
            since = Instant::now();
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `check` holds on the operator's counters, polling; returns the
/// time it took, or `None` after `timeout`.
pub async fn wait_counters(
    op: &Operator,
    timeout: Duration,
    check: impl Fn(&OperatorCounters) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if counters(op).is_some_and(|c| check(&c)) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// API Priority and Fairness at one priority level, between two scrapes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Apf {
    pub priority_level: String,
    /// Requests the level dispatched.
    pub dispatched: f64,
    /// Requests it rejected (HTTP 429).
    pub rejected: f64,
    /// Mean time a request waited in the level's queues, ms.
    pub mean_wait_ms: f64,
}

/// The API server's /metrics, as the admin sees them.
pub fn apiserver_metrics(plane: &ControlPlane) -> String {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig())
        .args(["get", "--raw", "/metrics"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn by_level(body: &str, name: &str) -> BTreeMap<String, f64> {
    by_label(body, name, "priority_level")
}

/// A series summed by the value of one label.
fn by_label(body: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with(name)) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with('{') {
            continue;
        }
        let level = rest
            .split(&format!("{label}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *out.entry(level.to_string()).or_default() += v;
        }
    }
    out
}

/// What changed per priority level between two scrapes of the API server's
/// metrics, levels with traffic only.
pub fn apf_delta(before: &str, after: &str) -> Vec<Apf> {
    let series = |name: &str| (by_level(before, name), by_level(after, name));
    let delta = |(b, a): &(BTreeMap<String, f64>, BTreeMap<String, f64>), level: &str| {
        a.get(level).copied().unwrap_or(0.0) - b.get(level).copied().unwrap_or(0.0)
    };
    let dispatched = series("apiserver_flowcontrol_dispatched_requests_total");
    let rejected = series("apiserver_flowcontrol_rejected_requests_total");
    let wait_sum = series("apiserver_flowcontrol_request_wait_duration_seconds_sum");
    let wait_count = series("apiserver_flowcontrol_request_wait_duration_seconds_count");
    dispatched
        .1
        .keys()
        .map(|level| {
            let waits = delta(&wait_count, level);
            Apf {
                priority_level: level.clone(),
                dispatched: delta(&dispatched, level),
                rejected: delta(&rejected, level),
                mean_wait_ms: if waits > 0.0 {
                    delta(&wait_sum, level) / waits * 1000.0
                } else {
                    0.0
                },
            }
        })
        .filter(|a| a.dispatched > 0.0 || a.rejected > 0.0)
        .collect()
}

/// Consistent reads the API server served from its watch cache for one
/// resource, and how long they waited for the cache to be fresh.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReadWait {
    pub resource: String,
    pub reads: f64,
    pub mean_wait_ms: f64,
}

/// What changed per resource in the watch cache's read waits between two
/// scrapes of the API server's metrics; resources that waited only.
pub fn read_waits(before: &str, after: &str) -> Vec<ReadWait> {
    let name = "apiserver_watch_cache_read_wait_seconds";
    let series = |suffix: &str| {
        let metric = format!("{name}_{suffix}");
        (
            by_label(before, &metric, "resource"),
            by_label(after, &metric, "resource"),
        )
    };
    let (sum_before, sum_after) = series("sum");
    let (count_before, count_after) = series("count");
    count_after
        .iter()
        .map(|(resource, count)| {
            let reads = count - count_before.get(resource).copied().unwrap_or(0.0);
            let wait = sum_after.get(resource).copied().unwrap_or(0.0)
                - sum_before.get(resource).copied().unwrap_or(0.0);
            ReadWait {
                resource: resource.clone(),
                reads,
                mean_wait_ms: if reads > 0.0 {
                    wait / reads * 1000.0
                } else {
                    0.0
                },
            }
        })
        .filter(|r| r.reads > 0.0)
        .collect()
}

/// The machine and the control plane, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub control_plane: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let versions = std::fs::read_to_string(
        crate::support::repo_root().join("tests/controlplane/versions.env"),
    )
    .unwrap_or_default();
    let version = |key: &str| {
        versions
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default(),
        memory_gib: kib_field(&meminfo, "MemTotal:").unwrap_or(0) as f64 / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        control_plane: format!(
            "kube-apiserver + kube-controller-manager {}, etcd {} (audit log on, blocking)",
            version("K8S_VERSION"),
            version("ETCD_VERSION")
        ),
    }
}

/// The size, as JSON without `managedFields`, of everything the operator
/// caches (as the admin lists it): the floor its caches' memory sits on.
pub async fn cached_json_bytes(admin: &kube::Client) -> u64 {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
    use kube::api::{Api, ListParams};
    use workspace_operator::api::{Organization, Workspace, WorkspaceMember};

    async fn size<K>(api: Api<K>, params: ListParams) -> u64
    where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Serialize,
    {
        let Ok(list) = api.list(&params).await else {
            return 0;
        };
        list.items
            .into_iter()
            .map(|mut item| {
                item.meta_mut().managed_fields = None;
                serde_json::to_vec(&item).map_or(0, |v| v.len() as u64)
            })
            .sum()
    }
    let all = ListParams::default();
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=workspace-operator");
    let namespaces = match Api::<Namespace>::all(admin.clone())
        .list_metadata(&all)
        .await
    {
        Ok(list) => list
            .items
            .into_iter()
            .map(|mut item| {
                item.metadata.managed_fields = None;
                serde_json::to_vec(&item).map_or(0, |v| v.len() as u64)
            })
            .sum(),
        Err(_) => 0,
    };
    namespaces
        + size(Api::<Workspace>::all(admin.clone()), all.clone()).await
        + size(Api::<WorkspaceMember>::all(admin.clone()), all.clone()).await
        + size(Api::<Organization>::all(admin.clone()), all.clone()).await
        + size(Api::<RoleBinding>::all(admin.clone()), managed.clone()).await
        + size(Api::<ClusterRole>::all(admin.clone()), managed.clone()).await
        + size(Api::<ClusterRoleBinding>::all(admin.clone()), managed).await
}
