//! The performance harness of issue 7: `make bench N=1000`, or
//! `cargo bench --bench perf -- --workspaces 1000 [--members 2] …`.
//!
//! Starts the project's control plane, runs every scenario against the
//! operator binary (built by `cargo bench` in the release-like bench
//! profile), prints a table and writes `target/bench/perf-<N>.json`.
//! `docs/performance.md` explains the scenarios, what is counted and the
//! latest figures. Under `cargo test --all-targets` (no `--bench` argument)
//! it does nothing: `tests/bench_smoke.rs` is its test.

#[path = "../../tests/support/mod.rs"]
mod support;

mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

use scenarios::Settings;

const USAGE: &str = "\
usage: cargo bench --bench perf -- [options]   (or: make bench N=1000)
  --workspaces N             workspaces in the cold-converge population (default 100)
  --members M                WorkspaceMembers per workspace (default 2)
  --per-organization K       workspaces per owning Organization (default 10)
  --idle SECONDS             how long the converged operator is watched idle (default 120)
  --latency-samples L        single creates timed at light load (default 200)
  --churn C                  members added and then removed (default 100)
  --transfer-members T       members of the workspace the transfer scenario moves (default 100)
  --setup-concurrency X      concurrency of the admin's untimed setup (default 16)
  --calibration-concurrency Y  concurrency of the calibration client per pool (default 8,
                             the operator's --concurrency per controller)
  --out PATH                 JSON report (default target/bench/perf-<N>.json)
  --warm-start               instead of the scenarios above: the operator's cost when it
                             starts on a cluster already converged (seeded by the operator
                             running as the cluster admin); the way to measure N=10,000
                             (report: target/bench/warm-<N>.json)
  --keep-logs                copy the audit log and the operator's logs next to the report
  --perf-record              record the operator's CPU profile during the cold converge
                             (perf record, next to the report: perf report -i …)
  --authorization-only       instead of the scenarios above: the authorization tax for N
                             workspaces (SubjectAccessReviews on a fresh plane before and
                             after creating the cluster-scoped RBAC objects N workspaces
                             hold: one admin role and binding per Organization)
  --cli-ls                   instead of the scenarios above: `kubectl workspaces ls` as one
                             user among N workspaces, read from the workspace directory
                             (seeded as the operator writes it; no operator; report
                             target/bench/cli-ls-<N>.json)
  --scan                     with --cli-ls: the plugin scans every workspace instead, as
                             against an install without directory (cli-ls-scan-<N>.json)";

/// `ls` runs timed per output format with --cli-ls.
const CLI_SAMPLES: usize = 20;

struct Run {
    settings: Settings,
    out: PathBuf,
    keep_logs: bool,
    calibration_only: bool,
    warm_start: bool,
    authorization_only: bool,
    cli_ls: bool,
    cli_scan: bool,
}

fn parse() -> Result<Option<Run>, String> {
    let mut settings = Settings {
        workspaces: 100,
        members: 2,
        per_organization: 10,
        idle: Duration::from_secs(120),
        latency_samples: 200,
        churn: 100,
        transfer_members: 100,
        setup_concurrency: 16,
        calibration_concurrency: 8,
        calibration: None,
        perf_record: None,
    };
    let mut out = None;
    let mut bench = false;
    let mut keep_logs = false;
    let mut calibration_only = false;
    let mut warm_start = false;
    let mut perf_record = false;
    let mut authorization_only = false;
    let mut cli_ls = false;
    let mut cli_scan = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value"))
                .and_then(|v| v.parse::<usize>().map_err(|e| format!("{arg} {v}: {e}")))
        };
        match arg.as_str() {
            // cargo bench passes --bench; cargo test --all-targets does not.
            "--bench" => bench = true,
            "--workspaces" | "-n" => settings.workspaces = value()?,
            "--members" => settings.members = value()?,
            "--per-organization" => settings.per_organization = value()?.max(1),
            "--idle" => settings.idle = Duration::from_secs(value()? as u64),
            "--latency-samples" => settings.latency_samples = value()?,
            "--churn" => settings.churn = value()?,
            "--transfer-members" => settings.transfer_members = value()?,
            "--setup-concurrency" => settings.setup_concurrency = value()?.max(1),
            "--calibration-concurrency" => settings.calibration_concurrency = value()?.max(1),
            "--keep-logs" => keep_logs = true,
            "--warm-start" => warm_start = true,
            "--perf-record" => perf_record = true,
            "--authorization-only" => authorization_only = true,
            "--cli-ls" => cli_ls = true,
            "--scan" => cli_scan = true,
            // Internal: how the harness runs the calibration in a process
            // (and so on a control plane) of its own.
            "--calibration-only" => calibration_only = true,
            "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a path")?)),
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !bench {
        return Ok(None);
    }
    if settings.workspaces == 0 {
        return Err("--workspaces must be at least 1".into());
    }
    let out = out.unwrap_or_else(|| {
        let kind = match (warm_start, cli_ls) {
            (true, _) => "warm",
            (_, true) if cli_scan => "cli-ls-scan",
            (_, true) => "cli-ls",
            _ => "perf",
        };
        support::repo_root().join(format!("target/bench/{kind}-{}.json", settings.workspaces))
    });
    if perf_record {
        settings.perf_record = Some(out.with_extension("perf.data"));
    }
    Ok(Some(Run {
        settings,
        out,
        keep_logs,
        calibration_only,
        warm_start,
        authorization_only,
        cli_ls,
        cli_scan,
    }))
}

fn main() {
    let Run {
        mut settings,
        out,
        keep_logs,
        calibration_only,
        warm_start,
        authorization_only,
        cli_ls,
        cli_scan,
    } = match parse() {
        Ok(Some(run)) => run,
        Ok(None) => {
            println!("perf: not run under `cargo test` (use `make bench N=…`)");
            return;
        }
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if authorization_only {
        let tax = runtime.block_on(scenarios::authz::at_scale(
            settings.workspaces,
            settings.per_organization,
            500,
        ));
        let (p50, p99) = tax.ratios();
        for (what, q) in [("empty", &tax.empty), ("populated", &tax.populated)] {
            println!(
                "{what:<10} p50 / p90 / p99 {:.2} / {:.2} / {:.2} ms ({} samples, {} ClusterRoleBindings)",
                q.p50_ms, q.p90_ms, q.p99_ms, q.samples, q.cluster_role_bindings
            );
        }
        println!("populated / empty: p50 {p50:.2}x, p99 {p99:.2}x (target <= 1.10x)");
        return;
    }
    if cli_ls {
        let cost = runtime.block_on(scenarios::cli::run(
            settings.workspaces,
            CLI_SAMPLES,
            settings.setup_concurrency,
            cli_scan,
        ));
        println!(
            "kubectl workspaces ls at {} workspaces ({}, {} directory objects): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; -o json p50 {:.0} ms, p95 {:.0} ms ({} runs, {} of {} found), peak RSS {:.1} MiB",
            cost.workspaces,
            cost.source,
            cost.directory_objects,
            cost.p50_ms,
            cost.p95_ms,
            cost.max_ms,
            cost.json_p50_ms,
            cost.json_p95_ms,
            cost.samples,
            cost.found,
            cost.expected,
            cost.peak_rss_mib
        );
        write_report(&out, serde_json::to_string_pretty(&cost));
        return;
    }
    if calibration_only {
        let mut calibration = runtime.block_on(scenarios::calibration_only(&settings));
        calibration.separate_plane = true;
        let json = serde_json::to_string(&calibration).expect("calibration as JSON");
        println!("{CALIBRATION}{json}");
        return;
    }
    let (table, json) = if warm_start {
        let report = runtime.block_on(scenarios::warm::run(&settings));
        (report.table(), serde_json::to_string_pretty(&report))
    } else {
        settings.calibration = Some(calibrate_separately(&settings));
        let report = runtime.block_on(scenarios::run(&settings));
        (report.table(), serde_json::to_string_pretty(&report))
    };
    println!("{table}");
    write_report(&out, json);
    if keep_logs {
        keep(&out.with_extension("logs"));
    }
}

/// Writes the JSON report to `out`.
fn write_report(out: &std::path::Path, json: serde_json::Result<String>) {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).expect("create the report directory");
    }
    let json = json.expect("report as JSON");
    std::fs::write(out, json + "\n").expect("write the JSON report");
    println!("report written to {}", out.display());
}

/// Prefix of the line a `--calibration-only` process reports its result on.
const CALIBRATION: &str = "calibration: ";

/// Runs the calibration in a child process, so on a fresh control plane of
/// its own holding the same population the cold converge starts from: the
/// API server's cost of RBAC writes grows with the ClusterRoleBindings it
/// holds, so R must be measured on an identical cluster.
fn calibrate_separately(settings: &Settings) -> scenarios::calibrate::Calibration {
    eprintln!("perf: calibration, on a control plane of its own");
    let exe = std::env::current_exe().expect("the harness's own path");
    let output = std::process::Command::new(exe)
        .args(["--bench", "--calibration-only"])
        .args(["--workspaces", &settings.workspaces.to_string()])
        .args(["--members", &settings.members.to_string()])
        .args(["--per-organization", &settings.per_organization.to_string()])
        .args([
            "--setup-concurrency",
            &settings.setup_concurrency.to_string(),
        ])
        .args([
            "--calibration-concurrency",
            &settings.calibration_concurrency.to_string(),
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run the calibration");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(CALIBRATION))
        .unwrap_or_else(|| panic!("the calibration reported nothing ({})", output.status));
    serde_json::from_str(line).expect("the calibration's JSON")
}

/// Copies the audit log and the operator's and API server's logs to `dir`.
fn keep(dir: &std::path::Path) {
    let Some(plane) = support::plane().dir() else {
        return;
    };
    std::fs::create_dir_all(dir).expect("create the logs directory");
    let files = std::fs::read_dir(plane).expect("read the plane's directory");
    for file in files.filter_map(Result::ok) {
        let name = file.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            let _ = std::fs::copy(file.path(), dir.join(&name));
        }
    }
    println!("logs copied to {}", dir.display());
}
