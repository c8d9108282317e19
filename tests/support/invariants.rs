//! The invariants the fault suite checks after every fault, read from the
//! cluster as the admin (never from the operator's cache):
//!
//! - a Ready Workspace has its namespace (carrying the Workspace's UID), and
//!   exactly its owner's subjects hold the Owner role there: not two
//!   owners' access, not none;
//! - no namespace the operator did not create was deleted (the bystanders
//!   a scenario names);
//! - a member RoleBinding belongs to an Active member, and every Active
//!   member has one;
//! - every status observes its object's generation (after the settle
//!   time: [`assert_hold`] retries until then);
//! - no ClusterRole or ClusterRoleBinding of the operator outlives the
//!   Workspace, Organization or WorkspaceTransfer it was made for.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{Api, ListParams, ObjectMeta};
use kube::{Client, Resource, ResourceExt};
use workspace_operator::api::{
    AccountKind, MemberPhase, Organization, OrganizationSubjectKind, Workspace, WorkspaceMember,
    WorkspaceRole, WorkspaceTransfer,
};

/// Label of everything the operator creates.
const MANAGED: &str = "app.kubernetes.io/managed-by=workspace-operator";
/// Annotation of a namespace naming the Workspace that holds it.
const WORKSPACE_UID: &str = "workspaces.dev/workspace-uid";
/// Label of a member's RoleBinding.
const MEMBER_LABEL: &str = "workspaces.dev/member";
/// The owner's RoleBinding in a workspace's namespace.
const OWNER_BINDING: &str = "workspaces.dev:owner";

/// Everything the checker reads, listed once per check.
struct Snapshot {
    workspaces: Vec<Workspace>,
    organizations: Vec<Organization>,
    members: Vec<WorkspaceMember>,
    transfers: Vec<WorkspaceTransfer>,
    namespaces: HashMap<String, ObjectMeta>,
    bindings: Vec<RoleBinding>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

async fn list<K>(client: &Client, params: &ListParams) -> Result<Vec<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(Api::<K>::all(client.clone()).list(params).await?.items)
}

impl Snapshot {
    async fn read(client: &Client) -> Result<Snapshot, kube::Error> {
        let all = ListParams::default();
        let managed = ListParams::default().labels(MANAGED);
        let namespaces: Vec<Namespace> = list(client, &all).await?;
        Ok(Snapshot {
            workspaces: list(client, &all).await?,
            organizations: list(client, &all).await?,
            members: list(client, &all).await?,
            transfers: list(client, &all).await?,
            namespaces: namespaces
                .into_iter()
                .map(|ns| (ns.name_any(), ns.metadata))
                .collect(),
            bindings: list(client, &managed).await?,
            cluster_roles: list(client, &managed).await?,
            cluster_role_bindings: list(client, &managed).await?,
        })
    }
}

/// The subjects (kind, name) that should hold Owner in `ws`'s namespace.
fn expected_owners(ws: &Workspace, orgs: &[Organization]) -> Option<BTreeSet<(String, String)>> {
    match ws.spec.owner.kind {
        AccountKind::User => Some(BTreeSet::from([(
            "User".to_string(),
            ws.spec.owner.name.clone(),
        )])),
        AccountKind::Organization => {
            let org = orgs.iter().find(|o| o.name_any() == ws.spec.owner.name)?;
            Some(
                org.spec
                    .admins
                    .iter()
                    .map(|a| {
                        let kind = match a.kind {
                            OrganizationSubjectKind::User => "User",
                            OrganizationSubjectKind::Group => "Group",
                        };
                        (kind.to_string(), a.name.clone())
                    })
                    .collect(),
            )
        }
    }
}

fn is_ready(ws: &Workspace) -> bool {
    ws.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn check_workspaces(s: &Snapshot, out: &mut Vec<String>) {
    for ws in &s.workspaces {
        let name = ws.name_any();
        let observed = ws.status.as_ref().and_then(|st| st.observed_generation);
        if ws.meta().deletion_timestamp.is_none() && observed != ws.meta().generation {
            out.push(format!(
                "Workspace {name}: status observes generation {observed:?}, the object is at {:?}",
                ws.meta().generation
            ));
        }
        if !is_ready(ws) || ws.meta().deletion_timestamp.is_some() {
            continue;
        }
        let Some(ns) = ws.status.as_ref().and_then(|st| st.namespace.clone()) else {
            out.push(format!(
                "Workspace {name} is Ready without status.namespace"
            ));
            continue;
        };
        let uid = s
            .namespaces
            .get(&ns)
            .and_then(|m| m.annotations.as_ref()?.get(WORKSPACE_UID).cloned());
        if uid != ws.uid() {
            out.push(format!(
                "Workspace {name} is Ready but namespace {ns} carries UID {uid:?}, not {:?}",
                ws.uid()
            ));
        }
        let binding = s
            .bindings
            .iter()
            .find(|rb| rb.namespace().as_deref() == Some(&ns) && rb.name_any() == OWNER_BINDING);
        let Some(binding) = binding else {
            out.push(format!(
                "Workspace {name} is Ready without its owner binding in {ns}"
            ));
            continue;
        };
        if binding.role_ref.name != WorkspaceRole::Owner.cluster_role() {
            out.push(format!(
                "Workspace {name}: the owner binding refers to {}",
                binding.role_ref.name
            ));
        }
        let holders: BTreeSet<(String, String)> = binding
            .subjects
            .iter()
            .flatten()
            .map(|s| (s.kind.clone(), s.name.clone()))
            .collect();
        match expected_owners(ws, &s.organizations) {
            Some(want) if want == holders && !holders.is_empty() => {}
            want => out.push(format!(
                "Workspace {name} (owner {}): Owner is held by {holders:?}, expected {want:?}",
                ws.spec.owner.name
            )),
        }
    }
}

fn check_members(s: &Snapshot, out: &mut Vec<String>) {
    let terminating: HashSet<&str> = s
        .namespaces
        .iter()
        .filter(|(_, m)| m.deletion_timestamp.is_some())
        .map(|(n, _)| n.as_str())
        .collect();
    let by_uid: HashMap<String, &WorkspaceMember> = s
        .members
        .iter()
        .filter_map(|m| Some((m.uid()?, m)))
        .collect();
    let mut bound: HashSet<String> = HashSet::new();
    for rb in &s.bindings {
        if !rb.labels().contains_key(MEMBER_LABEL) {
            continue;
        }
        let ns = rb.namespace().unwrap_or_default();
        let owner = rb
            .owner_references()
            .iter()
            .find_map(|o| by_uid.get(&o.uid).copied());
        match owner {
            Some(m) if phase(m) == Some(MemberPhase::Active) => {
                bound.insert(m.uid().unwrap_or_default());
            }
            Some(m) if m.meta().deletion_timestamp.is_some() => {}
            Some(m) => out.push(format!(
                "RoleBinding {ns}/{} belongs to member {} in phase {:?}",
                rb.name_any(),
                m.name_any(),
                phase(m)
            )),
            None if terminating.contains(ns.as_str()) => {}
            None => out.push(format!(
                "RoleBinding {ns}/{} belongs to no WorkspaceMember",
                rb.name_any()
            )),
        }
    }
    for m in &s.members {
        let ns = m.namespace().unwrap_or_default();
        if phase(m) == Some(MemberPhase::Active)
            && m.meta().deletion_timestamp.is_none()
            && !terminating.contains(ns.as_str())
            && !bound.contains(&m.uid().unwrap_or_default())
        {
            out.push(format!(
                "member {ns}/{} is Active without a RoleBinding",
                m.name_any()
            ));
        }
        let observed = m.status.as_ref().and_then(|st| st.observed_generation);
        if m.meta().deletion_timestamp.is_none()
            && !terminating.contains(ns.as_str())
            && observed != m.meta().generation
        {
            out.push(format!(
                "member {ns}/{}: status observes generation {observed:?}, the object is at {:?}",
                m.name_any(),
                m.meta().generation
            ));
        }
    }
}

fn phase(m: &WorkspaceMember) -> Option<MemberPhase> {
    m.status.as_ref().and_then(|s| s.phase)
}

/// Per-object ClusterRoles and ClusterRoleBindings of the operator whose
/// object is gone.
fn check_cluster_rbac(s: &Snapshot, out: &mut Vec<String>) {
    let uids: HashSet<String> = s
        .workspaces
        .iter()
        .filter_map(|w| w.uid())
        .chain(s.organizations.iter().filter_map(|o| o.uid()))
        .chain(s.transfers.iter().filter_map(|t| t.uid()))
        .collect();
    let workspaces: HashSet<String> = s.workspaces.iter().map(|w| w.name_any()).collect();
    let transfers: HashSet<String> = s.transfers.iter().map(|t| t.name_any()).collect();
    let metas = s
        .cluster_roles
        .iter()
        .map(|r| ("ClusterRole", &r.metadata))
        .chain(
            s.cluster_role_bindings
                .iter()
                .map(|b| ("ClusterRoleBinding", &b.metadata)),
        );
    for (kind, meta) in metas {
        let name = meta.name.clone().unwrap_or_default();
        let refs = meta.owner_references.as_deref().unwrap_or_default();
        let orphan = if !refs.is_empty() {
            !refs.iter().any(|r| uids.contains(&r.uid))
        } else if let Some(rest) = name.strip_prefix("workspaces.dev:workspace:") {
            !workspaces.contains(rest.split(':').next().unwrap_or_default())
        } else if let Some(rest) = name.strip_prefix("workspaces.dev:transfer:") {
            !transfers.contains(rest)
        } else {
            false
        };
        if orphan {
            out.push(format!("{kind} {name} outlives the object it was made for"));
        }
    }
}

/// Every invariant that does not hold now, described; empty when all hold.
/// `bystanders` are namespaces the operator did not create that must exist.
pub async fn violations(client: &Client, bystanders: &[String]) -> Vec<String> {
    let s = match Snapshot::read(client).await {
        Ok(s) => s,
        Err(err) => return vec![format!("the cluster could not be read: {err}")],
    };
    let mut out = Vec::new();
    for ns in bystanders {
        match s.namespaces.get(ns) {
            None => out.push(format!("namespace {ns}, not the operator's, is gone")),
            Some(m) if m.deletion_timestamp.is_some() => out.push(format!(
                "namespace {ns}, not the operator's, is being deleted"
            )),
            Some(_) => {}
        }
    }
    check_workspaces(&s, &mut out);
    check_members(&s, &mut out);
    check_cluster_rbac(&s, &mut out);
    out
}

/// Waits until every invariant holds; panics with what still does not
/// after `settle` (the time the operator is given to converge). Returns how
/// long it took.
pub async fn assert_hold(client: &Client, bystanders: &[String], settle: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let found = violations(client, bystanders).await;
        if found.is_empty() {
            return started.elapsed();
        }
        if started.elapsed() > settle {
            let shown: Vec<&String> = found.iter().take(30).collect();
            panic!(
                "{} invariant(s) still violated after {settle:?}:\n  {}",
                found.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
