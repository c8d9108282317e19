//! Fault injection for the fault suite (tests/chaos.rs): with
//! `WORKSPACE_OPERATOR_FAULT_HOLD_STATUS=<name>:<path>` set, a status write
//! for an object named `<name>` waits while the file `<path>` exists (at
//! most a minute), after the reconcile read its cached copy and computed the
//! status. A test holds the write there, changes the object behind the
//! operator's back, and releases it: the write then races a newer version,
//! deterministically. Unset, this costs one environment lookup per status
//! write.

use std::time::Duration;

/// The environment variable naming the object and the file that holds its
/// status writes.
pub const HOLD_STATUS_ENV: &str = "WORKSPACE_OPERATOR_FAULT_HOLD_STATUS";

/// The longest a status write is held.
const LONGEST_HOLD: Duration = Duration::from_secs(60);

/// Waits while the fault-injection setting holds status writes for `name`.
pub async fn hold_status(name: &str) {
    let Ok(setting) = std::env::var(HOLD_STATUS_ENV) else {
        return;
    };
    let Some((held, path)) = setting.split_once(':') else {
        return;
    };
    if held != name {
        return;
    }
    let path = std::path::Path::new(path);
    if !path.exists() {
        return;
    }
    tracing::warn!(name, "fault injection: holding a status write");
    let deadline = tokio::time::Instant::now() + LONGEST_HOLD;
    while path.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(name, "fault injection: releasing a status write");
}
