//! The objects the scenarios create, and creating many of them with bounded
//! concurrency as the cluster admin (setup is never timed as operator work).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use workspace_operator::api::{Organization, Workspace, WorkspaceMember};

/// Domain of every user name the scenarios invent.
pub const DOMAIN: &str = "bench.example";
/// The subject the member-churn scenario adds and removes; every
/// Organization lists it, so it may join any of their workspaces.
pub const CHURN_USER: &str = "churn@bench.example";
/// Name of the WorkspaceMember the churn scenario adds.
pub const CHURN_MEMBER: &str = "churn";
/// Annotation a cluster admin sets on a namespace to let a Workspace adopt it.
pub const ADOPT: &str = "workspaces.dev/adopt";

/// Roles the members of each workspace hold, in turn. Owner is left out so
/// that members never change who may edit the Workspace object.
const ROLES: [&str; 4] = ["Developer", "Viewer", "Runner", "Worker"];

/// The population of one run: `workspaces` Workspaces with `members`
/// WorkspaceMembers each, owned `per_organization` at a time by
/// Organizations.
#[derive(Clone, Debug)]
pub struct Population {
    pub prefix: &'static str,
    pub workspaces: usize,
    pub members: usize,
    pub per_organization: usize,
}

impl Population {
    pub fn workspace(&self, i: usize) -> String {
        format!("{}-{i:05}", self.prefix)
    }

    pub fn workspace_names(&self) -> Vec<String> {
        (0..self.workspaces).map(|i| self.workspace(i)).collect()
    }

    pub fn organizations(&self) -> usize {
        self.workspaces.div_ceil(self.per_organization.max(1))
    }

    pub fn organization(&self, k: usize) -> String {
        format!("bench-org-{k:05}")
    }

    pub fn organization_of(&self, i: usize) -> String {
        self.organization(i / self.per_organization.max(1))
    }

    /// Members need their namespace to exist; with the operator stopped it
    /// can only exist if a cluster admin created it and marked it for
    /// adoption, which is what the population does when it has members.
    pub fn adopts(&self) -> bool {
        self.members > 0
    }

    pub fn member_name(j: usize) -> String {
        format!("m{j}")
    }

    pub fn member_user(j: usize) -> String {
        format!("member-{j}@{DOMAIN}")
    }

    pub fn admin_user(k: usize) -> String {
        format!("admin-{k}@{DOMAIN}")
    }

    pub fn organization_object(&self, k: usize) -> Value {
        let mut members: Vec<Value> = (0..self.members)
            .map(|j| json!({"kind": "User", "name": Self::member_user(j)}))
            .collect();
        members.push(json!({"kind": "User", "name": CHURN_USER}));
        json!({
            "apiVersion": "workspaces.dev/v1alpha1", "kind": "Organization",
            "metadata": {"name": self.organization(k)},
            "spec": {"admins": [{"kind": "User", "name": Self::admin_user(k)}], "members": members},
        })
    }

    pub fn namespace_object(&self, i: usize) -> Value {
        let name = self.workspace(i);
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "annotations": {ADOPT: name}}})
    }

    pub fn workspace_object(&self, i: usize) -> Value {
        json!({
            "apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace",
            "metadata": {"name": self.workspace(i)},
            "spec": {"owner": {"kind": "Organization", "name": self.organization_of(i)},
                     "description": "created by the performance harness"},
        })
    }

    pub fn member_object(&self, i: usize, j: usize) -> Value {
        member_object(
            &self.workspace(i),
            &Self::member_name(j),
            &Self::member_user(j),
            ROLES[j % ROLES.len()],
        )
    }

    /// Creates everything, operator stopped: Organizations, the namespaces to
    /// adopt (when there are members), Workspaces, WorkspaceMembers.
    pub async fn create(&self, admin: &Client, concurrency: usize) {
        let orgs = Api::<Organization>::all(admin.clone());
        create_all(
            &orgs,
            (0..self.organizations()).map(|k| self.organization_object(k)),
            concurrency,
        )
        .await;
        if self.adopts() {
            let namespaces = Api::<Namespace>::all(admin.clone());
            create_all(
                &namespaces,
                (0..self.workspaces).map(|i| self.namespace_object(i)),
                concurrency,
            )
            .await;
        }
        let workspaces = Api::<Workspace>::all(admin.clone());
        create_all(
            &workspaces,
            (0..self.workspaces).map(|i| self.workspace_object(i)),
            concurrency,
        )
        .await;
        let pairs: Vec<(usize, usize)> = (0..self.workspaces)
            .flat_map(|i| (0..self.members).map(move |j| (i, j)))
            .collect();
        for_each_bounded(pairs, concurrency, |(i, j)| async move {
            let api = Api::<WorkspaceMember>::namespaced(admin.clone(), &self.workspace(i));
            create(&api, self.member_object(i, j)).await;
        })
        .await;
    }
}

pub fn member_object(namespace: &str, name: &str, user: &str, role: &str) -> Value {
    json!({
        "apiVersion": "workspaces.dev/v1alpha1", "kind": "WorkspaceMember",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"subject": {"kind": "User", "name": user}, "role": role},
    })
}

/// A personal Workspace (owned by a user of its own), as the latency
/// scenario creates them.
pub fn personal_workspace(name: &str) -> Value {
    json!({
        "apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace",
        "metadata": {"name": name},
        "spec": {"owner": {"kind": "User", "name": format!("{name}@{DOMAIN}")}},
    })
}

/// Runs `f` on every item, at most `concurrency` at a time.
pub async fn for_each_bounded<T, F, Fut>(items: Vec<T>, concurrency: usize, f: F)
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = ()>,
{
    futures::stream::iter(items.into_iter().map(f))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<()>>()
        .await;
}

async fn create_all<K>(api: &Api<K>, objects: impl Iterator<Item = Value>, concurrency: usize)
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    for_each_bounded(objects.collect(), concurrency, |obj| async move {
        create(api, obj).await;
    })
    .await;
}

/// Creates one object, retrying what a loaded API server may answer
/// (throttling, timeouts); an object that already exists counts as created.
pub async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let object: K = serde_json::from_value(object).expect("a valid object");
    let name = object.meta().name.clone().unwrap_or_default();
    retry(&format!("create {name}"), || async {
        match api.create(&PostParams::default(), &object).await {
            Err(kube::Error::Api(s)) if s.code == 409 => api.get(&name).await,
            other => other,
        }
    })
    .await
}

/// Requests refused because the API server's admission (the operator's
/// confinement policy) did not yet see a namespace's workspace-uid
/// annotation that was just written; retried, like the operator does.
pub static STALE_ADMISSION_REFUSALS: AtomicU64 = AtomicU64::new(0);

/// Whether a refusal is the admission policy judging a namespace by a copy
/// older than the write that annotated it.
fn stale_namespace(status: &kube::core::Status) -> bool {
    status.code == 403
        && status
            .message
            .contains("carries no workspaces.dev/workspace-uid")
}

/// Retries a request on errors a loaded API server gives (429, 5xx,
/// transport errors, a stale namespace in admission) with backoff; panics on
/// anything else, or after ten minutes of trying.
pub async fn retry<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let mut pause = Duration::from_millis(50);
    loop {
        match call().await {
            Ok(value) => return value,
            Err(kube::Error::Api(s)) if stale_namespace(&s) => {
                STALE_ADMISSION_REFUSALS.fetch_add(1, Ordering::Relaxed);
            }
            Err(kube::Error::Api(s)) if s.code != 429 && s.code < 500 => {
                panic!("{what} was refused: {} ({})", s.message, s.code)
            }
            Err(err) if std::time::Instant::now() > deadline => {
                panic!("{what} kept failing: {err}")
            }
            Err(_) => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} kept being refused"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Waits until the controller-manager has given every namespace its
/// `default` ServiceAccount and `kube-root-ca.crt` ConfigMap, so that setup
/// work does not spill into a timed phase.
pub async fn wait_namespaces_settled(admin: &Client, timeout: Duration) {
    let namespaces = Api::<Namespace>::all(admin.clone());
    let config_maps = Api::<ConfigMap>::all(admin.clone());
    let accounts = Api::<ServiceAccount>::all(admin.clone());
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let all = namespaces.list_metadata(&ListParams::default()).await;
        let roots = config_maps
            .list_metadata(&ListParams::default().fields("metadata.name=kube-root-ca.crt"))
            .await;
        let defaults = accounts
            .list_metadata(&ListParams::default().fields("metadata.name=default"))
            .await;
        if let (Ok(all), Ok(roots), Ok(defaults)) = (all, roots, defaults) {
            let all = all.items.len();
            if roots.items.len() >= all && defaults.items.len() >= all {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the controller-manager did not set up every namespace within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
