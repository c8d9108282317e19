//! Faults the fault suite (tests/chaos.rs) injects into the local control
//! plane: a component killed (SIGKILL) and started again with the command
//! line `tests/controlplane/up.sh` used (`tests/controlplane/restart.sh`),
//! etcd's history compacted, and the operator frozen (SIGSTOP) and thawed.

use std::process::Command;
use std::time::{Duration, Instant};

use super::operator::Operator;
use super::{ControlPlane, repo_root};

/// A component of the local control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Etcd,
    ApiServer,
    ControllerManager,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
        }
    }
}

impl ControlPlane {
    fn restart_script(&self, component: Component, mode: Option<&str>) {
        let dir = self
            .dir()
            .expect("faults are injected only into the local control plane");
        let out = Command::new("bash")
            .arg(repo_root().join("tests/controlplane/restart.sh"))
            .arg(dir)
            .arg(component.name())
            .args(mode)
            .output()
            .expect("run tests/controlplane/restart.sh");
        assert!(
            out.status.success(),
            "restart.sh {} {mode:?} failed: {}",
            component.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills `component` with SIGKILL; it stays down until [`Self::start`].
    pub fn kill(&self, component: Component) {
        self.restart_script(component, Some("--kill-only"));
    }

    /// Starts `component` again after [`Self::kill`] (same ports, same data).
    pub fn start_component(&self, component: Component) {
        self.restart_script(component, Some("--start-only"));
    }

    /// Whether the API server answers `/readyz` with 200 to the admin.
    pub fn api_ready(&self) -> bool {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["get", "--raw", "/readyz", "--request-timeout=2s"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Waits until the API server is ready; returns how long that took.
    pub fn wait_api_ready(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        while !self.api_ready() {
            assert!(
                started.elapsed() < timeout,
                "the API server is not ready after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        started.elapsed()
    }

    /// etcd's client URL, from the plane's `env` file.
    fn etcd_url(&self) -> String {
        let env = std::fs::read_to_string(self.dir().expect("local plane").join("env"))
            .expect("the plane's env file");
        env.lines()
            .find_map(|l| l.strip_prefix("CONTROLPLANE_ETCD="))
            .expect("CONTROLPLANE_ETCD in the plane's env file")
            .to_string()
    }

    /// POSTs `body` to etcd's JSON gateway at `path`; the JSON answer.
    fn etcd_call(&self, path: &str, body: &str) -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sf", "-X", "POST", "--max-time", "30"])
            .arg(format!("{}{path}", self.etcd_url()))
            .args(["-d", body])
            .output()
            .expect("run curl");
        assert!(out.status.success(), "etcd {path} failed: {out:?}");
        serde_json::from_slice(&out.stdout).expect("etcd answers JSON")
    }

    /// Compacts etcd's history up to its current revision: every watch that
    /// resumes from an older resourceVersion gets `410 Gone` and must list
    /// again. Returns the revision compacted to.
    pub fn compact_etcd(&self) -> u64 {
        // "/registry" (base64): any key; the header carries the revision.
        let range = self.etcd_call("/v3/kv/range", r#"{"key":"L3JlZ2lzdHJ5","limit":1}"#);
        let revision: u64 = range["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("etcd's current revision");
        self.etcd_call(
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        );
        revision
    }
}

impl Operator {
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Freezes the process (SIGSTOP): its connections stay open, it reads
    /// and writes nothing until [`Operator::thaw`].
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}
