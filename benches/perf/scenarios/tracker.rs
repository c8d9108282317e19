//! Watches Workspaces and WorkspaceMembers (as the admin) and keeps what the
//! scenarios wait on: which are Ready, with how many members. Waiting is
//! event-driven, so a latency is measured to the watch event that reported
//! Ready, not to the next poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use workspace_operator::api::{Workspace, WorkspaceMember};

/// What the tracker knows about one Workspace.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkspaceView {
    /// `Ready=True` for the current generation.
    pub ready: bool,
    /// `status.members`.
    pub members: i32,
}

/// Everything the tracker knows.
#[derive(Debug, Default)]
pub struct State {
    pub workspaces: HashMap<String, WorkspaceView>,
    /// `namespace/name` → `Ready=True`.
    pub members: HashMap<String, bool>,
    synced: [bool; 2],
}

impl State {
    pub fn workspace_ready(&self, name: &str) -> bool {
        self.workspaces.get(name).is_some_and(|w| w.ready)
    }

    pub fn workspace_members(&self, name: &str) -> Option<i32> {
        self.workspaces.get(name).map(|w| w.members)
    }

    pub fn member_ready(&self, namespace: &str, name: &str) -> bool {
        self.members
            .get(&format!("{namespace}/{name}"))
            .copied()
            .unwrap_or(false)
    }

    /// How many of `names` are Ready with exactly `members` active members.
    pub fn converged(&self, names: &[String], members: usize) -> usize {
        names
            .iter()
            .filter(|n| {
                self.workspaces
                    .get(n.as_str())
                    .is_some_and(|w| w.ready && w.members as usize == members)
            })
            .count()
    }

    /// Whether every one of `names` is Ready with `members` active members,
    /// and every member in namespaces starting with `prefix` is Ready.
    pub fn all_ready(&self, names: &[String], members: usize, prefix: &str) -> bool {
        self.converged(names, members) == names.len()
            && self.members_ready(prefix) == names.len() * members
    }

    /// How many Workspaces and WorkspaceMembers exist.
    pub fn counts(&self) -> (usize, usize) {
        (self.workspaces.len(), self.members.len())
    }

    /// How many members in namespaces starting with `prefix` are Ready.
    pub fn members_ready(&self, prefix: &str) -> usize {
        self.members
            .iter()
            .filter(|(k, ready)| **ready && k.starts_with(prefix))
            .count()
    }
}

/// The running watches.
pub struct Tracker {
    state: Arc<Mutex<State>>,
    changed: watch::Receiver<u64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

impl Tracker {
    /// Starts both watches and returns once both have listed.
    pub async fn start(admin: &Client) -> Tracker {
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, changed) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let workspaces = spawn(
            Api::<Workspace>::all(admin.clone()),
            state.clone(),
            tx.clone(),
            0,
            |state, ws: &Workspace, deleted| {
                let name = ws.name_any();
                if deleted {
                    state.workspaces.remove(&name);
                    return;
                }
                let status = ws.status.as_ref();
                let current = status.and_then(|s| s.observed_generation) == ws.meta().generation;
                let view = WorkspaceView {
                    ready: current && status.is_some_and(|s| ready(&s.conditions)),
                    members: status.and_then(|s| s.members).unwrap_or(0),
                };
                state.workspaces.insert(name, view);
            },
        );
        let members = spawn(
            Api::<WorkspaceMember>::all(admin.clone()),
            state.clone(),
            tx,
            1,
            |state, m: &WorkspaceMember, deleted| {
                let key = format!("{}/{}", m.namespace().unwrap_or_default(), m.name_any());
                if deleted {
                    state.members.remove(&key);
                    return;
                }
                let is_ready = m.status.as_ref().is_some_and(|s| ready(&s.conditions));
                state.members.insert(key, is_ready);
            },
        );
        let tracker = Tracker {
            state,
            changed,
            tasks: vec![workspaces, members],
        };
        tracker
            .wait_until(Duration::from_secs(600), Duration::ZERO, |s| {
                s.synced.iter().all(|x| *x)
            })
            .await
            .expect("the tracker's watches listed");
        tracker
    }

    /// Reads the current state.
    pub fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().expect("tracker state"))
    }

    /// Waits until `done` holds; returns when it first did (as observed on a
    /// watch event), or `None` after `timeout`. `done` is checked on every
    /// change, but not more often than every `interval` (a costly check over
    /// thousands of objects must not compete with the operator for CPU).
    pub async fn wait_until(
        &self,
        timeout: Duration,
        interval: Duration,
        done: impl Fn(&State) -> bool,
    ) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.clone();
        loop {
            changed.borrow_and_update();
            if self.with(&done) {
                return Some(Instant::now());
            }
            if !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.with(&done).then(Instant::now),
            }
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn spawn<K>(
    api: Api<K>,
    state: Arc<Mutex<State>>,
    tx: Arc<watch::Sender<u64>>,
    index: usize,
    update: impl Fn(&mut State, &K, bool) + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            {
                let mut state = state.lock().expect("tracker state");
                match event {
                    Ok(Event::Apply(obj)) | Ok(Event::InitApply(obj)) => {
                        update(&mut state, &obj, false)
                    }
                    Ok(Event::Delete(obj)) => update(&mut state, &obj, true),
                    Ok(Event::InitDone) => state.synced[index] = true,
                    Ok(Event::Init) | Err(_) => continue,
                }
            }
            tx.send_modify(|v| *v += 1);
        }
    })
}
