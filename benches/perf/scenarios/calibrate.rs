//! Calibration: how fast this API server takes the writes the operator needs.
//!
//! A bare client with the operator's own identity (its ServiceAccount token,
//! so the same authentication, RBAC checks and priority level) writes, for
//! `N` calibration workspaces, exactly the minimal set the operator writes
//! when it converges them: the finalizer patch, the namespace, the owner
//! RoleBinding and the status, and
//! per member its RoleBinding and its status; with the same request types
//! (server-side apply, merge patch) and the same concurrency (one pool for
//! workspaces, one for members, as the operator's two controllers). The
//! objects (Workspaces, namespaces to adopt, members) are created beforehand
//! by the admin, untimed, as in the cold-converge scenario.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};
use workspace_operator::api::{Workspace, WorkspaceMember};

use super::fixtures::{self, Population};
use crate::support::ControlPlane;

/// The field manager the operator writes with.
const MANAGER: &str = "workspace-operator";

/// The calibration's outcome.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Calibration {
    /// Whether it ran on a control plane of its own (an identical cluster),
    /// or on the benchmark's plane after the other scenarios.
    pub separate_plane: bool,
    pub workspaces: usize,
    pub members_per_workspace: usize,
    pub concurrency: usize,
    pub writes: u64,
    pub seconds: f64,
    /// R: writes per second.
    pub writes_per_second: f64,
    /// Writes the confinement policy refused because the API server's
    /// admission had not yet seen the namespace's annotation; retried after
    /// 50 ms, 100 ms, … (not counted in `writes`).
    pub stale_admission_refusals: u64,
}

/// A client acting with the operator's ServiceAccount token.
pub async fn operator_client(plane: &ControlPlane) -> Client {
    let path = tokio::task::block_in_place(|| crate::support::operator::operator_kubeconfig(plane));
    let kubeconfig = Kubeconfig::read_from(path).expect("operator kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("operator kubeconfig is usable");
    Client::try_from(config).expect("operator client")
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

fn condition(type_: &str, message: &str, generation: i64) -> Value {
    json!({"type": type_, "status": "True", "reason": "Provisioned", "message": message,
           "observedGeneration": generation, "lastTransitionTime": now()})
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name})
}

/// Runs the calibration on `population` (whose workspaces must not exist
/// yet), with the operator stopped.
pub async fn run(
    plane: &ControlPlane,
    admin: &Client,
    population: &Population,
    concurrency: usize,
    setup_concurrency: usize,
) -> Calibration {
    population.create(admin, setup_concurrency).await;
    if population.adopts() {
        fixtures::wait_namespaces_settled(admin, std::time::Duration::from_secs(1800)).await;
    }
    let all_ws: Vec<Workspace> = Api::<Workspace>::all(admin.clone())
        .list(&Default::default())
        .await
        .expect("list workspaces")
        .items
        .into_iter()
        .filter(|w| w.name_any().starts_with(population.prefix))
        .collect();
    let mut members: HashMap<String, Vec<WorkspaceMember>> = HashMap::new();
    for ws in &all_ws {
        if population.members == 0 {
            break;
        }
        let api = Api::<WorkspaceMember>::namespaced(admin.clone(), &ws.name_any());
        let list = api.list(&Default::default()).await.expect("members").items;
        members.insert(ws.name_any(), list);
    }

    // As in the operator, a workspace's members are granted once it is
    // provisioned (its namespace carries its UID; the admission policies
    // refuse the operator's RoleBindings anywhere else): the member pool
    // takes the members of each workspace the workspace pool finished.
    let client = operator_client(plane).await;
    let writes = Arc::new(AtomicU64::new(0));
    let refusals = fixtures::STALE_ADMISSION_REFUSALS.load(Ordering::Relaxed);
    let (done, provisioned) = futures::channel::mpsc::unbounded::<String>();
    let start = Instant::now();
    let workspaces = async {
        fixtures::for_each_bounded(all_ws, concurrency, |ws| {
            let (client, writes, done) = (client.clone(), writes.clone(), done.clone());
            async move {
                let n = provision(&client, &ws, population).await;
                writes.fetch_add(n, Ordering::Relaxed);
                let _ = done.unbounded_send(ws.name_any());
            }
        })
        .await;
        drop(done);
    };
    let members = provisioned
        .flat_map(|ns| futures::stream::iter(members.remove(&ns).unwrap_or_default()))
        .map(|m| {
            let (client, writes) = (client.clone(), writes.clone());
            async move {
                let n = grant(&client, &m).await;
                writes.fetch_add(n, Ordering::Relaxed);
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>();
    futures::join!(workspaces, members);
    let seconds = start.elapsed().as_secs_f64();
    let writes = writes.load(Ordering::Relaxed);
    Calibration {
        separate_plane: false,
        workspaces: population.workspaces,
        members_per_workspace: population.members,
        concurrency,
        writes,
        seconds,
        writes_per_second: writes as f64 / seconds,
        stale_admission_refusals: fixtures::STALE_ADMISSION_REFUSALS.load(Ordering::Relaxed)
            - refusals,
    }
}

async fn apply<K>(api: &Api<K>, name: &str, body: &Value)
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    fixtures::retry(&format!("apply {name}"), || async {
        api.patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
    })
    .await;
}

/// The writes the operator makes for one workspace, as requests ready to send.
struct Writes<'a> {
    client: &'a Client,
    ws: &'a Workspace,
    name: String,
    org: String,
    admin: String,
    members: usize,
    adopts: bool,
    owner_ref: Value,
    child: Value,
}

impl<'a> Writes<'a> {
    fn new(client: &'a Client, ws: &'a Workspace, members: usize, adopts: bool) -> Self {
        let name = ws.name_any();
        let org = ws.spec.owner.name.clone();
        let admin = Population::admin_user(
            org.rsplit('-')
                .next()
                .and_then(|k| k.parse().ok())
                .unwrap_or(0),
        );
        Writes {
            client,
            ws,
            owner_ref: serde_json::to_value(ws.controller_owner_ref(&())).expect("ownerReference"),
            child: json!({"app.kubernetes.io/managed-by": "workspace-operator",
                          "workspaces.dev/workspace": name}),
            name,
            org,
            admin,
            members,
            adopts,
        }
    }

    /// The finalizer, a merge patch made conditional by the resourceVersion.
    async fn finalizer(&self) {
        let patch = json!({"metadata": {"finalizers": ["workspaces.dev/cleanup"],
                                        "resourceVersion": self.ws.resource_version()}});
        let api = Api::<Workspace>::all(self.client.clone());
        fixtures::retry(&format!("finalizer on {}", self.name), || async {
            api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
        })
        .await;
    }

    /// The namespace's labels and annotations (created, or adopted).
    async fn namespace(&self) {
        let name = &self.name;
        let mut annotations = json!({"workspaces.dev/workspace-uid": self.ws.uid()});
        if self.adopts {
            annotations["workspaces.dev/adopted"] = json!("true");
        }
        let mut labels = self.child.clone();
        labels["workspaces.dev/owner-kind"] = json!("Organization");
        labels["workspaces.dev/owner"] = json!(self.org);
        labels["workspaces.dev/handle"] = json!(name);
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels, "annotations": annotations}});
        apply(
            &Api::<Namespace>::all(self.client.clone()),
            name,
            &namespace,
        )
        .await;
    }

    /// The owner's RoleBinding.
    async fn owner_binding(&self) {
        let mut labels = self.child.clone();
        labels["workspaces.dev/access"] = json!("owner");
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "workspaces.dev:owner", "namespace": self.name, "labels": labels,
                         "ownerReferences": [self.owner_ref]},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "workspaces:owner"},
            "subjects": [user(&self.admin)]});
        apply(
            &Api::<RoleBinding>::namespaced(self.client.clone(), &self.name),
            "workspaces.dev:owner",
            &binding,
        )
        .await;
    }

    /// The status.
    async fn status(&self) {
        let (name, org) = (&self.name, &self.org);
        let generation = self.ws.meta().generation.unwrap_or(1);
        let status = json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace",
        "status": {
            "observedGeneration": generation,
            "conditions": [
                condition("NamespaceReady", &format!("Namespace {name} is provisioned."), generation),
                condition("AccessReady", &format!("Organization/{org} holds the Owner role; {} members are active.", self.members), generation),
                condition("Ready", &format!("Workspace {name} is ready in namespace {name}."), generation),
            ],
            "phase": "Active", "namespace": name, "handle": name,
            "owner": {"kind": "Organization", "name": org}, "members": self.members,
        }});
        let api = Api::<Workspace>::all(self.client.clone());
        fixtures::retry(&format!("status of {name}"), || async {
            api.patch_status(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&status),
            )
            .await
        })
        .await;
    }

    /// All four, one after the other, in the operator's order.
    async fn sequential(&self) -> u64 {
        self.finalizer().await;
        self.namespace().await;
        self.owner_binding().await;
        self.status().await;
        4
    }

    /// All four; nothing of them is independent (the namespace, then the
    /// owner binding in it, then the status), so this is the sequence.
    async fn parallel(&self) -> u64 {
        self.sequential().await
    }
}

/// The operator's writes for one workspace; returns how many it made.
async fn provision(client: &Client, ws: &Workspace, population: &Population) -> u64 {
    Writes::new(client, ws, population.members, population.adopts())
        .sequential()
        .await
}

/// What a bare client needs, at light load, to make one workspace's writes:
/// the floor under the operator's apply-to-Ready latency.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Floor {
    pub samples: usize,
    /// The eight writes one after the other, as the operator makes them.
    pub sequential_p50_ms: f64,
    pub sequential_p99_ms: f64,
    /// Independent writes in parallel (see `Writes::parallel`).
    pub parallel_p50_ms: f64,
    pub parallel_p99_ms: f64,
}

/// Times `samples` single workspaces' writes each way, with the operator's
/// identity, pausing between them as the latency scenario does.
pub async fn floor(plane: &ControlPlane, admin: &Client, samples: usize) -> Floor {
    let client = operator_client(plane).await;
    let api = Api::<Workspace>::all(admin.clone());
    let mut floor = Floor {
        samples,
        ..Floor::default()
    };
    for parallel in [false, true] {
        let mut times = Vec::new();
        for i in 0..samples {
            let name = format!("floor-{}-{i:05}", if parallel { "par" } else { "seq" });
            let mut object = fixtures::personal_workspace(&name);
            object["spec"]["owner"] = json!({"kind": "Organization", "name": "bench-org-00000"});
            let ws: Workspace = fixtures::create(&api, object).await;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let writes = Writes::new(&client, &ws, 0, false);
            let start = Instant::now();
            if parallel {
                writes.parallel().await;
            } else {
                writes.sequential().await;
            }
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let p = |q| super::report::percentile(&times, q);
        if parallel {
            (floor.parallel_p50_ms, floor.parallel_p99_ms) = (p(50.0), p(99.0));
        } else {
            (floor.sequential_p50_ms, floor.sequential_p99_ms) = (p(50.0), p(99.0));
        }
    }
    floor
}

/// The operator's writes for one member; returns how many it made.
async fn grant(client: &Client, member: &WorkspaceMember) -> u64 {
    let namespace = member.namespace().unwrap_or_default();
    let name = member.name_any();
    let role = member
        .spec
        .role
        .map(|r| r.cluster_role().to_string())
        .unwrap_or_default();
    let binding_name = format!("wsm-{name}-{}", role.trim_start_matches("workspaces:"));
    let owner_ref = serde_json::to_value(member.controller_owner_ref(&())).expect("ownerReference");
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": binding_name, "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "workspace-operator",
                       "workspaces.dev/workspace": namespace, "workspaces.dev/member": name},
            "ownerReferences": [owner_ref]},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [user(&member.spec.subject.name)]});
    apply(
        &Api::<RoleBinding>::namespaced(client.clone(), &namespace),
        &binding_name,
        &binding,
    )
    .await;
    let generation = member.meta().generation.unwrap_or(1);
    let status = json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "WorkspaceMember",
        "status": {"observedGeneration": generation, "phase": "Active", "roleBinding": binding_name,
                   "conditions": [condition("Ready", "The role is granted.", generation)]}});
    let api = Api::<WorkspaceMember>::namespaced(client.clone(), &namespace);
    fixtures::retry(&format!("status of member {namespace}/{name}"), || async {
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
    })
    .await;
    2
}
