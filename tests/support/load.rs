//! Load for the fault suite: users, each with their own identity
//! (impersonated, as `kubectl --as` does), creating personal workspaces,
//! adding members and changing their roles, and deleting workspaces, in
//! parallel for a bounded time. Each user remembers the last role the API
//! server accepted for each member, so the test can tell a lost update.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use workspace_operator::api::Workspace;

use super::objects::{group, member, workspace};

/// Roles the users hand out.
const ROLES: [&str; 3] = ["Developer", "Viewer", "Runner"];

/// What one user left behind.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Workspaces the user deleted.
    pub deleted: Vec<String>,
    /// Workspaces still there.
    pub kept: Vec<String>,
    /// The last role accepted for each member (workspace, member).
    pub roles: BTreeMap<(String, String), String>,
    /// Requests the API server accepted, and refused.
    pub accepted: usize,
    pub refused: usize,
    /// The refusals by HTTP code and reason.
    pub refusals: BTreeMap<String, usize>,
}

impl Outcome {
    fn refuse(&mut self, err: &kube::Error) {
        self.refused += 1;
        let key = match err {
            kube::Error::Api(s) => format!("{} {}", s.code, s.reason),
            other => other.to_string(),
        };
        *self.refusals.entry(key).or_default() += 1;
    }
}

/// User `n` (`load{n}@example.com`) works for `duration`: keeps up to two
/// personal workspaces, gives colleagues roles in them, changes the roles,
/// and deletes a workspace now and then. Seeded by `n`.
pub async fn user_session(client: Client, prefix: String, n: usize, duration: Duration) -> Outcome {
    let me = format!("load{n}@example.com");
    let mut rng = fastrand::Rng::with_seed(n as u64);
    let mut out = Outcome::default();
    let workspaces: Api<Workspace> = Api::all(client.clone());
    let started = Instant::now();
    let mut serial = 0;
    while started.elapsed() < duration {
        let choice = rng.u8(..100);
        if out.kept.len() < 2 && (out.kept.is_empty() || choice < 10) {
            let name = format!("{prefix}-u{n}-{serial}");
            serial += 1;
            let ws = workspace(&name, "User", &me, json!({}));
            match super::try_apply_value(&client, serde_json::from_value(ws).expect("yaml")).await {
                Ok(_) => {
                    out.accepted += 1;
                    out.kept.push(name);
                }
                Err(err) => out.refuse(&err),
            }
        } else if choice < 4 && out.kept.len() == 2 {
            let name = out.kept.remove(rng.usize(..out.kept.len()));
            match workspaces.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    out.accepted += 1;
                    out.roles.retain(|(ws, _), _| *ws != name);
                    out.deleted.push(name);
                }
                Err(err) => {
                    out.refuse(&err);
                    out.kept.push(name);
                }
            }
        } else if !out.kept.is_empty() {
            let ws = out.kept[rng.usize(..out.kept.len())].clone();
            let colleague = format!("m{}", rng.u8(..3));
            let role = ROLES[rng.usize(..ROLES.len())];
            // A group: a user would be invited to the personal workspace
            // and hold nothing until they answered.
            let subject = group(&format!("{colleague}-of-{n}"));
            let value = member(&ws, &colleague, subject, role);
            // Refused until the namespace exists and the user's Owner role
            // in it is in place: that is part of the load.
            match super::try_apply_value(&client, serde_json::from_value(value).expect("yaml"))
                .await
            {
                Ok(_) => {
                    out.accepted += 1;
                    out.roles.insert((ws, colleague), role.to_string());
                }
                Err(err) => out.refuse(&err),
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(20..120))).await;
    }
    out
}
