//! Fault injection for the resumability tests: with
//! `WORKSPACE_OPERATOR_FAULT_AFTER_TRANSFER_STEP=<step>` set, the operator
//! kills itself (SIGKILL, no cleanup, Lease not released) right after a
//! transfer finishes that step. Unset, this costs one environment lookup per
//! step. Steps: `Started`, `MembersRevoked`, `OwnerSwitched`, `Completed`
//! (docs/transfer.md).

/// The environment variable naming the step after which the process dies.
pub const FAULT_ENV: &str = "WORKSPACE_OPERATOR_FAULT_AFTER_TRANSFER_STEP";

/// Dies at once when the fault-injection setting names `step`.
pub fn after(step: &str) {
    if std::env::var(FAULT_ENV).is_ok_and(|s| s == step) {
        tracing::error!(step, "fault injection: the operator kills itself");
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .arg(std::process::id().to_string())
            .status();
        // No `kill` binary (a minimal image): abort, just as abrupt.
        std::process::abort();
    }
}
