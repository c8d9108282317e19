//! The security suite: what a tenant might try in order to gain access,
//! hijack a workspace or destroy someone else's data, each attempt made as
//! the attacker's own identity (impersonated, so RBAC and the admission
//! policies of `deploy/policies.yaml` judge it for real), against the real
//! control plane, with the operator running as its least-privilege
//! ServiceAccount.
//!
//! Every attempt is refused with a clear message (asserted by a fragment of
//! it) and is followed by the invariant check of [`Invariants::hold`]: the
//! attacker holds no binding it did not hold before, no namespace of the
//! scenario changed or went away, and nothing of another tenant (the shared
//! [`victim`]) became readable or changed. Where a field can be written
//! several ways, the attempt is made through update (`PUT`), merge patch and
//! server-side apply. Each test is named after what it guards.

mod support;

#[path = "security/operator_matrix.rs"]
mod operator_matrix;
#[path = "security/tenants.rs"]
mod tenants;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::objects::{self, apply, create, group, member, merge, user, wait_gone, workspace};
use support::operator::OPERATOR_NAMESPACE;
use workspace_operator::api::{Organization, Workspace, WorkspaceMember, WorkspaceTransfer};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Field manager of the attackers' server-side applies.
const ATTACKER_MANAGER: &str = "attacker";

/// The operator's RoleBinding for a workspace's owners.
const OWNER_BINDING: &str = "workspaces.dev:owner";

// ---------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Acting as someone
// ---------------------------------------------------------------------------

async fn client_as(name: &str, groups: &[&str]) -> Client {
    support::plane().client_as(name, groups).await
}

/// Creates (`POST`) `value` as `api`'s identity.
async fn post<K>(api: &Api<K>, value: Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let object: K = serde_json::from_value(value).expect("a valid object");
    api.create(&PostParams::default(), &object).await
}

/// Creates or changes `value` with server-side apply, as `api`'s identity.
async fn server_side_apply<K>(api: &Api<K>, value: Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = value["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply(ATTACKER_MANAGER).force(),
        &Patch::Apply(&value),
    )
    .await
}

/// The ways a change reaches the API server.
#[derive(Clone, Copy, Debug)]
enum Way {
    /// Read, change, `PUT` (`kubectl edit`, `kubectl replace`).
    Update,
    /// `kubectl patch --type merge`.
    MergePatch,
    /// `kubectl apply --server-side` of just the changed fields.
    ServerSideApply,
}

const EVERY_WAY: [Way; 3] = [Way::Update, Way::MergePatch, Way::ServerSideApply];

/// Makes the change `change` (a merge patch) to the object `name`, as `api`'s
/// identity, the way `way` does. `admin` reads the current object for `PUT`.
async fn change<K>(
    api: &Api<K>,
    admin: &Api<K>,
    name: &str,
    way: Way,
    change: Value,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    match way {
        Way::Update => {
            // The operator may write status between the read and the PUT;
            // a conflict is not an answer, so read again.
            for _ in 0..20 {
                let current = admin.get(name).await.expect("read the object");
                let mut value = serde_json::to_value(&current).expect("object as JSON");
                merge(&mut value, change.clone());
                let object: K = serde_json::from_value(value).expect("changed object");
                match api.replace(name, &PostParams::default(), &object).await {
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    result => return result,
                }
            }
            panic!("{name} kept changing under the PUT");
        }
        Way::MergePatch => {
            api.patch(name, &PatchParams::default(), &Patch::Merge(&change))
                .await
        }
        Way::ServerSideApply => {
            let current = admin.get(name).await.expect("read the object");
            let mut value = json!({
                "apiVersion": K::api_version(&()),
                "kind": K::kind(&()),
                "metadata": {"name": name},
            });
            if let Some(ns) = current.meta().namespace.clone() {
                value["metadata"]["namespace"] = json!(ns);
            }
            merge(&mut value, change);
            api.patch(
                name,
                &PatchParams::apply(ATTACKER_MANAGER).force(),
                &Patch::Apply(&value),
            )
            .await
        }
    }
}

/// The API server's refusal of `result`: its code and message. Panics when
/// the request was accepted.
fn refusal<T: Debug>(what: &str, result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Ok(object) => panic!("{what}: accepted, but must be refused; got {object:?}"),
        Err(kube::Error::Api(status)) => (status.code, status.message.clone()),
        Err(other) => panic!("{what}: no answer from the API server: {other}"),
    }
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Waits until the Workspace's Ready condition has `status` and `reason`,
/// written for its current generation; returns its message.
async fn ready_message(admin: &Client, name: &str, status: &str, reason: &str) -> String {
    let ws = objects::wait_ready(admin, name, status, Some(reason), TIMEOUT).await;
    objects::ready(&ws)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The admission policies are loaded by the API server a moment after they
/// are created; waits until they answer.
async fn wait_for_policies() {
    static IN_FORCE: OnceLock<()> = OnceLock::new();
    if IN_FORCE.get().is_some() {
        return;
    }
    let probe = client_as("policy-probe@example.com", &[]).await;
    let api: Api<Workspace> = Api::all(probe);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let object: Workspace = serde_json::from_value(workspace(
        "policy-probe",
        "User",
        "someone-else@example.com",
        json!({}),
    ))
    .expect("workspace");
    support::wait_for("the admission policies to be in force", TIMEOUT, || {
        let (api, object, dry_run) = (api.clone(), object.clone(), dry_run.clone());
        async move {
            match api.create(&dry_run, &object).await {
                Err(kube::Error::Api(s)) if s.message.contains("ValidatingAdmissionPolicy") => {
                    Some(())
                }
                _ => None,
            }
        }
    })
    .await;
    let _ = IN_FORCE.set(());
}

/// The admin's client, once the shared operator runs and the admission
/// policies are in force.
async fn secured_setup() -> Client {
    let admin = support::operator::setup().await;
    wait_for_policies().await;
    admin
}

// ---------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------

/// A personal Workspace that `owner` created themself, provisioned, with the
/// owner's access to its namespace and to the Workspace object in place.
async fn own_workspace(admin: &Client, owner: &str, prefix: &str, extra: Value) -> String {
    let name = support::unique(prefix);
    create(
        &client_as(owner, &[]).await,
        workspace(&name, "User", owner, extra),
    )
    .await;
    ready_message(admin, &name, "True", "Provisioned").await;
    objects::wait_can(
        owner,
        &[],
        "create",
        "workspacemembers.workspaces.dev",
        Some(&name),
        None,
        true,
    )
    .await;
    name
}

/// An Organization created by the platform, and its admins recognised by the
/// API server (the operator's per-organization ClusterRole is bound).
async fn own_organization(
    admin: &Client,
    prefix: &str,
    admins: &[&str],
    members: &[&str],
    extra: Value,
) -> String {
    let name = support::unique(prefix);
    apply(
        admin,
        objects::organization_with(&name, admins, objects::users(members), extra),
    )
    .await;
    for a in admins {
        objects::wait_can(
            a,
            &[],
            "administer",
            "organizations.workspaces.dev",
            None,
            Some(&name),
            true,
        )
        .await;
        objects::wait_can(
            a,
            &[],
            "patch",
            "organizations.workspaces.dev",
            None,
            Some(&name),
            true,
        )
        .await;
    }
    name
}

/// Another tenant, shared by every test of this binary: a personal
/// workspace with a Secret and a ConfigMap that no attacker may read.
struct Victim {
    owner: String,
    workspace: String,
    uid: String,
}

fn victim() -> &'static Victim {
    static VICTIM: OnceLock<Victim> = OnceLock::new();
    VICTIM.get_or_init(|| {
        support::run_blocking(async {
            let admin = support::plane().admin().await;
            let id = support::unique("victim");
            let owner = format!("{id}@example.com");
            let workspace = own_workspace(&admin, &owner, "victim", json!({})).await;
            let client = client_as(&owner, &[]).await;
            let secret: Secret = serde_json::from_value(
                json!({"metadata": {"name": "payroll"}, "stringData": {"token": "s3cr3t"}}),
            )
            .expect("secret");
            Api::<Secret>::namespaced(client.clone(), &workspace)
                .create(&PostParams::default(), &secret)
                .await
                .expect("the victim stores a Secret");
            let cm: ConfigMap = serde_json::from_value(
                json!({"metadata": {"name": "settings"}, "data": {"k": "v"}}),
            )
            .expect("configmap");
            Api::<ConfigMap>::namespaced(client, &workspace)
                .create(&PostParams::default(), &cm)
                .await
                .expect("the victim stores a ConfigMap");
            let uid = Api::<Workspace>::all(admin)
                .get(&workspace)
                .await
                .expect("victim workspace")
                .uid()
                .expect("uid");
            Victim {
                owner,
                workspace,
                uid,
            }
        })
    })
}

// ---------------------------------------------------------------------------
// Invariants
// ---------------------------------------------------------------------------

/// What must not change because of an attacker's attempts.
#[derive(Clone, Debug, PartialEq)]
struct NamespaceState {
    uid: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    terminating: bool,
}

async fn namespace_state(admin: &Client, name: &str) -> Option<NamespaceState> {
    let ns = Api::<Namespace>::all(admin.clone())
        .get_opt(name)
        .await
        .expect("read namespace")?;
    Some(NamespaceState {
        uid: ns.uid(),
        labels: ns.labels().clone(),
        annotations: ns.annotations().clone(),
        terminating: ns.metadata.deletion_timestamp.is_some(),
    })
}

/// Every RoleBinding and ClusterRoleBinding that names `user` (directly, by
/// one of `groups`, or as its ServiceAccount), as `kind ns/name -> role`;
/// directory entries aside.
async fn grants_of(admin: &Client, user: &str, groups: &[String]) -> BTreeSet<String> {
    let names = |kind: &str, name: &str, namespace: Option<&str>| match kind {
        "User" => name == user,
        "Group" => groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            format!(
                "system:serviceaccount:{}:{name}",
                namespace.unwrap_or_default()
            ) == user
        }
        _ => false,
    };
    let mut grants = BTreeSet::new();
    let rbs = Api::<RoleBinding>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .expect("list RoleBindings");
    for rb in rbs {
        let ns = rb.namespace().unwrap_or_default();
        // A directory entry grants nothing (its rules name no request; see
        // "Finding a user's workspaces" in docs/security.md) and follows a
        // membership a moment after its binding.
        if ns == support::objects::DIRECTORY
            && rb
                .name_any()
                .starts_with(workspace_operator::controller::directory::build::PREFIX)
        {
            continue;
        }
        if rb.subjects.iter().flatten().any(|s| {
            names(
                &s.kind,
                &s.name,
                s.namespace.as_deref().or(Some(ns.as_str())),
            )
        }) {
            grants.insert(format!(
                "RoleBinding {ns}/{} -> {} {}",
                rb.name_any(),
                rb.role_ref.kind,
                rb.role_ref.name
            ));
        }
    }
    let crbs = Api::<ClusterRoleBinding>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .expect("list ClusterRoleBindings");
    for crb in crbs {
        if crb
            .subjects
            .iter()
            .flatten()
            .any(|s| names(&s.kind, &s.name, s.namespace.as_deref()))
        {
            grants.insert(format!(
                "ClusterRoleBinding {} -> {}",
                crb.name_any(),
                crb.role_ref.name
            ));
        }
    }
    grants
}

/// A snapshot taken before an attacker's attempts, checked after each one.
struct Invariants {
    admin: Client,
    attacker: Client,
    user: String,
    groups: Vec<String>,
    grants: BTreeSet<String>,
    namespaces: BTreeMap<String, Option<NamespaceState>>,
    victim_owner: Option<(String, Value)>,
    attempts: AtomicUsize,
}

impl Invariants {
    /// Snapshots what `user` (in `groups`) holds, the given namespaces and the
    /// shared victim.
    async fn capture(admin: &Client, user: &str, groups: &[&str], namespaces: &[&str]) -> Self {
        let victim = victim();
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        groups.push("system:authenticated".to_string());
        let mut states = BTreeMap::new();
        for ns in namespaces.iter().chain([&victim.workspace.as_str()]) {
            states.insert(ns.to_string(), namespace_state(admin, ns).await);
        }
        let owner = Api::<Workspace>::all(admin.clone())
            .get(&victim.workspace)
            .await
            .expect("victim workspace")
            .spec
            .owner;
        Invariants {
            admin: admin.clone(),
            attacker: support::plane()
                .client_as(user, &groups.iter().map(String::as_str).collect::<Vec<_>>())
                .await,
            user: user.to_string(),
            grants: grants_of(admin, user, &groups).await,
            groups,
            namespaces: states,
            victim_owner: Some((
                victim.workspace.clone(),
                serde_json::to_value(owner).expect("owner"),
            )),
            attempts: AtomicUsize::new(0),
        }
    }

    /// Asserts that `result` was refused with `code` and a message containing
    /// `fragment`, then that the invariants hold.
    async fn refused<T: Debug>(
        &self,
        what: &str,
        result: Result<T, kube::Error>,
        code: u16,
        fragment: &str,
    ) {
        let (got, message) = refusal(what, result);
        assert!(
            got == code && message.contains(fragment),
            "{what}: expected {code} with {fragment:?}, got {got}: {message}"
        );
        eprintln!("refused as expected: {what}: {message}");
        self.hold(what).await;
    }

    /// The invariants after an attempt: the attacker holds exactly the
    /// bindings it held before; every watched namespace is as it was; the
    /// victim's data is unreadable to the attacker and its Workspace keeps
    /// its owner.
    async fn hold(&self, after: &str) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        // Let the operator react to whatever the attempt left behind.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let grants = grants_of(&self.admin, &self.user, &self.groups).await;
        assert_eq!(
            grants, self.grants,
            "after {after}: the bindings naming {} changed",
            self.user
        );
        for (ns, before) in &self.namespaces {
            let now = namespace_state(&self.admin, ns).await;
            assert_eq!(&now, before, "after {after}: namespace {ns} changed");
        }
        let victim = victim();
        for (verb, resource) in [
            ("list", "secrets"),
            ("get", "secrets"),
            ("list", "configmaps"),
            ("list", "pods"),
            ("create", "pods"),
            ("list", "workspacemembers.workspaces.dev"),
            ("create", "rolebindings.rbac.authorization.k8s.io"),
        ] {
            assert!(
                !support::can_i(
                    &self.attacker,
                    verb,
                    resource,
                    Some(&victim.workspace),
                    None
                )
                .await,
                "after {after}: {} may {verb} {resource} in the victim's workspace",
                self.user
            );
        }
        assert!(
            !objects::may_change_workspace(
                &self.user,
                &self.groups.iter().map(String::as_str).collect::<Vec<_>>(),
                &victim.workspace
            )
            .await,
            "after {after}: {} may change the victim's Workspace",
            self.user
        );
        let secrets: Api<Secret> = Api::namespaced(self.attacker.clone(), &victim.workspace);
        assert!(
            secrets.get("payroll").await.is_err(),
            "after {after}: {} read the victim's Secret",
            self.user
        );
        if let Some((name, owner)) = &self.victim_owner {
            let ws = Api::<Workspace>::all(self.admin.clone())
                .get(name)
                .await
                .expect("the victim's Workspace still exists");
            assert_eq!(
                &serde_json::to_value(&ws.spec.owner).expect("owner"),
                owner,
                "after {after}: the victim's Workspace changed owner"
            );
            assert!(ws.metadata.deletion_timestamp.is_none());
        }
    }
}

impl Drop for Invariants {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(
                self.attempts.load(Ordering::Relaxed) > 0,
                "invariants captured but never checked"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// WorkspaceMembers: no escalation
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_developer_cannot_create_an_owner_member() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-dev", json!({})).await;
    let _dump = support::dump_on_failure(&[&ws]);
    // dave is a Developer through a group (groups are never invitations).
    let dave = format!("dave-{ws}@example.com");
    let devs = format!("devs-{ws}");
    apply(
        &client_as(&owner, &[]).await,
        member(&ws, "devs", group(&devs), json!({"role": "Developer"})),
    )
    .await;
    objects::wait_can(
        &dave,
        &[&devs],
        "create",
        "deployments.apps",
        Some(&ws),
        None,
        true,
    )
    .await;

    let inv = Invariants::capture(&admin, &dave, &[&devs], &[&ws]).await;
    let members: Api<WorkspaceMember> = Api::namespaced(inv.attacker.clone(), &ws);
    let promote = member(&ws, "dave", user(&dave), json!({"role": "Owner"}));
    inv.refused(
        "a Developer creates an Owner member for themself",
        post(&members, promote.clone()).await,
        403,
        "cannot create resource \"workspacemembers\"",
    )
    .await;
    inv.refused(
        "a Developer server-side applies an Owner member for themself",
        server_side_apply(&members, promote).await,
        403,
        "cannot patch resource \"workspacemembers\"",
    )
    .await;
    let rbs: Api<RoleBinding> = Api::namespaced(inv.attacker.clone(), &ws);
    inv.refused(
        "a Developer binds workspaces:owner to themself directly",
        post(
            &rbs,
            json!({"metadata": {"name": "dave-owner"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "workspaces:owner"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": dave}]}),
        )
        .await,
        403,
        "cannot create resource \"rolebindings\"",
    )
    .await;
    inv.refused(
        "a Developer deletes the owner's RoleBinding",
        rbs.delete(OWNER_BINDING, &DeleteParams::default()).await,
        403,
        "cannot delete resource \"rolebindings\"",
    )
    .await;
}

#[tokio::test]
async fn a_member_manager_cannot_grant_a_role_it_may_not_bind() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-mgr", json!({})).await;
    let _dump = support::dump_on_failure(&[&ws]);
    // A cluster admin delegates member management: manny may write
    // WorkspaceMembers but bind only Viewer. RBAC lets the request in;
    // the escalation policy decides what it may grant.
    let manny = format!("manny-{ws}@example.com");
    apply(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "member-manager", "namespace": ws},
               "rules": [
                   {"apiGroups": ["workspaces.dev"], "resources": ["workspacemembers"],
                    "verbs": ["get", "list", "create", "update", "patch"]},
                   {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                    "verbs": ["bind"], "resourceNames": ["workspaces:viewer"]}]}),
    )
    .await;
    apply(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "member-manager", "namespace": ws},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "member-manager"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": manny}]}),
    )
    .await;
    objects::wait_can(
        &manny,
        &[],
        "create",
        "workspacemembers.workspaces.dev",
        Some(&ws),
        None,
        true,
    )
    .await;

    let inv = Invariants::capture(&admin, &manny, &[], &[&ws]).await;
    let members: Api<WorkspaceMember> = Api::namespaced(inv.attacker.clone(), &ws);
    let admin_members: Api<WorkspaceMember> = Api::namespaced(admin.clone(), &ws);
    // What manny may do: grant Viewer.
    let viewers = format!("viewers-{ws}");
    post(
        &members,
        member(&ws, "viewers", group(&viewers), json!({"role": "Viewer"})),
    )
    .await
    .expect("a Viewer member is within manny's power");
    inv.hold("manny grants Viewer").await;

    let owners = member(&ws, "owners", group(&viewers), json!({"role": "Owner"}));
    inv.refused(
        "a member manager creates an Owner member",
        post(&members, owners.clone()).await,
        403,
        "you may not grant the ClusterRole workspaces:owner",
    )
    .await;
    inv.refused(
        "a member manager server-side applies an Owner member",
        server_side_apply(&members, owners).await,
        403,
        "you may not grant the ClusterRole workspaces:owner",
    )
    .await;
    for way in EVERY_WAY {
        inv.refused(
            &format!("a member manager raises a Viewer member to Owner ({way:?})"),
            change(
                &members,
                &admin_members,
                "viewers",
                way,
                json!({"spec": {"role": "Owner"}}),
            )
            .await,
            403,
            "you may not grant the ClusterRole workspaces:owner",
        )
        .await;
    }
    inv.refused(
        "a member manager creates a member naming cluster-admin",
        post(
            &members,
            member(
                &ws,
                "root",
                user(&manny),
                json!({"clusterRole": "cluster-admin"}),
            ),
        )
        .await,
        403,
        "you may not grant the ClusterRole cluster-admin",
    )
    .await;
    assert_eq!(
        admin_members.get("viewers").await.unwrap().spec.role,
        Some(workspace_operator::api::WorkspaceRole::Viewer)
    );
}

#[tokio::test]
async fn an_owner_cannot_grant_cluster_admin_or_admin() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-root", json!({})).await;
    let _dump = support::dump_on_failure(&[&ws]);
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    let members: Api<WorkspaceMember> = Api::namespaced(inv.attacker.clone(), &ws);
    let admin_members: Api<WorkspaceMember> = Api::namespaced(admin.clone(), &ws);
    let crew = format!("crew-{ws}");

    inv.refused(
        "an Owner creates a member naming cluster-admin",
        post(
            &members,
            member(
                &ws,
                "root",
                group(&crew),
                json!({"clusterRole": "cluster-admin"}),
            ),
        )
        .await,
        403,
        "you may not grant the ClusterRole cluster-admin in namespace",
    )
    .await;
    inv.refused(
        "an Owner server-side applies a member naming admin",
        server_side_apply(
            &members,
            member(
                &ws,
                "nsadmin",
                group(&crew),
                json!({"clusterRole": "admin"}),
            ),
        )
        .await,
        403,
        "you may not grant the ClusterRole admin in namespace",
    )
    .await;
    // An existing Viewer member turned into cluster-admin.
    post(
        &members,
        member(&ws, "crew", group(&crew), json!({"role": "Viewer"})),
    )
    .await
    .expect("an Owner grants Viewer");
    for (way, role) in [(Way::Update, "cluster-admin"), (Way::MergePatch, "admin")] {
        inv.refused(
            &format!("an Owner turns a Viewer member into {role} ({way:?})"),
            change(
                &members,
                &admin_members,
                "crew",
                way,
                json!({"spec": {"role": null, "clusterRole": role}}),
            )
            .await,
            403,
            &format!("you may not grant the ClusterRole {role} in namespace"),
        )
        .await;
    }
    // Owners write no RoleBindings: the direct route is closed.
    let rbs: Api<RoleBinding> = Api::namespaced(inv.attacker.clone(), &ws);
    for role in ["cluster-admin", "admin", "workspaces:owner"] {
        inv.refused(
            &format!("an Owner binds {role} with a RoleBinding of their own"),
            post(
                &rbs,
                json!({"metadata": {"name": format!("sneaky-{role}")},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                       "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": crew}]}),
            )
            .await,
            403,
            "cannot create resource \"rolebindings\"",
        )
        .await;
    }
    let bound: Vec<String> = Api::<RoleBinding>::namespaced(admin.clone(), &ws)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|rb| rb.role_ref.name)
        .collect();
    assert!(
        bound.iter().all(|r| r != "cluster-admin" && r != "admin"),
        "{bound:?}"
    );
}

#[tokio::test]
async fn an_owner_cannot_add_members_to_another_workspace() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-other", json!({})).await;
    let victim = victim();
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    let theirs: Api<WorkspaceMember> = Api::namespaced(inv.attacker.clone(), &victim.workspace);
    let intruder = member(
        &victim.workspace,
        "intruder",
        user(&owner),
        json!({"role": "Owner"}),
    );
    let fragment = format!("in the namespace \"{}\"", victim.workspace);
    inv.refused(
        "an Owner creates a member in another workspace's namespace",
        post(&theirs, intruder.clone()).await,
        403,
        &fragment,
    )
    .await;
    inv.refused(
        "an Owner server-side applies a member in another workspace's namespace",
        server_side_apply(&theirs, intruder).await,
        403,
        &fragment,
    )
    .await;
    let rbs: Api<RoleBinding> = Api::namespaced(inv.attacker.clone(), &victim.workspace);
    inv.refused(
        "an Owner creates a RoleBinding in another workspace's namespace",
        post(
            &rbs,
            json!({"metadata": {"name": "intruder"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "workspaces:owner"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": owner}]}),
        )
        .await,
        403,
        &fragment,
    )
    .await;
}

#[tokio::test]
async fn a_service_account_of_another_tenant_is_not_admitted_to_an_organization_workspace() {
    let admin = secured_setup().await;
    let victim = victim();
    let olga = format!("{}@example.com", support::unique("olga"));
    let org = own_organization(&admin, "sec-sa", &[&olga], &[], json!({})).await;
    // An organization admin creates the organization's workspace themself.
    let ws = support::unique("sec-sa-ws");
    let _dump = support::dump_on_failure(&[&ws]);
    create(
        &client_as(&olga, &[]).await,
        workspace(&ws, "Organization", &org, json!({})),
    )
    .await;
    ready_message(&admin, &ws, "True", "Provisioned").await;
    objects::wait_can(
        &olga,
        &[],
        "create",
        "workspacemembers.workspaces.dev",
        Some(&ws),
        None,
        true,
    )
    .await;
    objects::wait_can(
        &olga,
        &[],
        "administer",
        "workspaces.workspaces.dev",
        Some(&ws),
        Some(&ws),
        true,
    )
    .await;

    let inv = Invariants::capture(&admin, &olga, &[], &[&ws]).await;
    let sa_user = format!("system:serviceaccount:{}:default", victim.workspace);
    let sa_groups = [
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{}", victim.workspace),
    ];
    let sa_grants = grants_of(&admin, &sa_user, &sa_groups).await;
    let members: Api<WorkspaceMember> = Api::namespaced(inv.attacker.clone(), &ws);
    post(
        &members,
        member(
            &ws,
            "borrowed",
            json!({"kind": "ServiceAccount", "name": "default", "namespace": victim.workspace}),
            json!({"role": "Worker"}),
        ),
    )
    .await
    .expect("the API accepts the member; the operator judges membership");
    let api: Api<WorkspaceMember> = Api::namespaced(admin.clone(), &ws);
    let message = support::wait_for(
        "the borrowed ServiceAccount to be refused",
        TIMEOUT,
        || async {
            let m = api.get("borrowed").await.ok()?;
            let c = m
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (c.status == "False" && c.reason == "NotAnOrganizationMember").then_some(c.message)
        },
    )
    .await;
    assert!(
        message.contains("does not belong to organization"),
        "{message}"
    );
    inv.hold("an org admin names another tenant's ServiceAccount")
        .await;
    assert_eq!(
        grants_of(&admin, &sa_user, &sa_groups).await,
        sa_grants,
        "the other tenant's ServiceAccount was bound"
    );
    let sa = support::plane()
        .client_as_service_account(&victim.workspace, "default")
        .await;
    assert!(!support::can_i(&sa, "create", "pods", Some(&ws), None).await);
}

#[tokio::test]
async fn only_the_invitee_answers_an_invitation() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-invite", json!({})).await;
    let _dump = support::dump_on_failure(&[&ws]);
    let bob = format!("bob-{ws}@example.com");
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    let members: Api<WorkspaceMember> = Api::namespaced(inv.attacker.clone(), &ws);
    let admin_members: Api<WorkspaceMember> = Api::namespaced(admin.clone(), &ws);
    let accepted = member(
        &ws,
        "bob",
        user(&bob),
        json!({"role": "Viewer", "response": "Accepted"}),
    );
    inv.refused(
        "an Owner creates an invitation already accepted",
        post(&members, accepted.clone()).await,
        403,
        &format!("only the invitee, {bob}, may set or change spec.response"),
    )
    .await;
    inv.refused(
        "an Owner server-side applies an invitation already accepted",
        server_side_apply(&members, accepted).await,
        403,
        &format!("only the invitee, {bob}, may set or change spec.response"),
    )
    .await;
    post(
        &members,
        member(&ws, "bob", user(&bob), json!({"role": "Viewer"})),
    )
    .await
    .expect("an Owner invites bob");
    for way in EVERY_WAY {
        inv.refused(
            &format!("an Owner accepts bob's invitation for him ({way:?})"),
            change(
                &members,
                &admin_members,
                "bob",
                way,
                json!({"spec": {"response": "Accepted"}}),
            )
            .await,
            403,
            "only the invitee",
        )
        .await;
    }
    // The invitee answers, through the grant the operator gives him.
    objects::wait_can(
        &bob,
        &[],
        "patch",
        "workspacemembers.workspaces.dev",
        Some(&ws),
        Some("bob"),
        true,
    )
    .await;
    Api::<WorkspaceMember>::namespaced(client_as(&bob, &[]).await, &ws)
        .patch(
            "bob",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"response": "Accepted"}})),
        )
        .await
        .expect("the invitee answers");
    inv.refused(
        "an Owner turns bob's acceptance into a refusal",
        change(
            &members,
            &admin_members,
            "bob",
            Way::MergePatch,
            json!({"spec": {"response": "Declined"}}),
        )
        .await,
        403,
        "only the invitee",
    )
    .await;
}

// ---------------------------------------------------------------------------
// Workspaces: who creates them, what they may claim
// ---------------------------------------------------------------------------

#[tokio::test]
async fn nobody_creates_a_workspace_for_another_user() {
    let admin = secured_setup().await;
    let mallory = format!("{}@example.com", support::unique("mallory"));
    let victim = victim();
    let inv = Invariants::capture(&admin, &mallory, &[], &[]).await;
    let api: Api<Workspace> = Api::all(inv.attacker.clone());
    let name = support::unique("sec-for-other");
    let theirs = workspace(&name, "User", &victim.owner, json!({}));
    let fragment = format!(
        "you may create a Workspace only for yourself ({mallory}), not for the user {}",
        victim.owner
    );
    inv.refused(
        "a user creates a Workspace owned by another user",
        post(&api, theirs.clone()).await,
        403,
        &fragment,
    )
    .await;
    // Server-side apply is a PATCH that creates: admission judges it as a
    // creation.
    inv.refused(
        "a user server-side applies a Workspace owned by another user",
        server_side_apply(&api, theirs).await,
        403,
        &fragment,
    )
    .await;
    assert!(
        Api::<Workspace>::all(admin.clone())
            .get_opt(&name)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn only_organization_admins_create_its_workspaces() {
    let admin = secured_setup().await;
    let olga = format!("{}@example.com", support::unique("olga"));
    let mallory = format!("{}@example.com", support::unique("mallory"));
    // mallory is a member of the organization, not an admin.
    let org = own_organization(&admin, "sec-org", &[&olga], &[&mallory], json!({})).await;
    let elsewhere = own_organization(&admin, "sec-org-other", &[&olga], &[], json!({})).await;
    let inv = Invariants::capture(&admin, &mallory, &[], &[]).await;
    let api: Api<Workspace> = Api::all(inv.attacker.clone());
    let name = support::unique("sec-org-ws");
    for org in [&org, &elsewhere] {
        inv.refused(
            &format!("a non-admin creates a Workspace of organization {org}"),
            post(&api, workspace(&name, "Organization", org, json!({}))).await,
            403,
            &format!("you are not an admin of the Organization {org}"),
        )
        .await;
    }
    inv.refused(
        "a non-admin server-side applies a Workspace of the organization",
        server_side_apply(&api, workspace(&name, "Organization", &org, json!({}))).await,
        403,
        &format!("you are not an admin of the Organization {org}"),
    )
    .await;
    // Its admin may.
    create(
        &client_as(&olga, &[]).await,
        workspace(&name, "Organization", &org, json!({})),
    )
    .await;
    ready_message(&admin, &name, "True", "Provisioned").await;
    inv.hold("the organization's admin creates its Workspace")
        .await;
}

#[tokio::test]
async fn reserved_names_and_namespaces_are_refused() {
    let admin = secured_setup().await;
    let mallory = format!("{}@example.com", support::unique("mallory"));
    let inv = Invariants::capture(
        &admin,
        &mallory,
        &[],
        &["default", "kube-system", "kube-public", OPERATOR_NAMESPACE],
    )
    .await;
    let api: Api<Workspace> = Api::all(inv.attacker.clone());
    inv.refused(
        "a Workspace named kube-system",
        post(&api, workspace("kube-system", "User", &mallory, json!({}))).await,
        422,
        "Workspace name is reserved for the cluster",
    )
    .await;
    inv.refused(
        "a Workspace named default",
        post(&api, workspace("default", "User", &mallory, json!({}))).await,
        422,
        "Workspace name is reserved for the cluster",
    )
    .await;
    inv.refused(
        "a Workspace whose spec.namespace is kube-public",
        post(
            &api,
            workspace(
                &support::unique("sec-kube"),
                "User",
                &mallory,
                json!({"spec": {"namespace": "kube-public"}}),
            ),
        )
        .await,
        422,
        "spec.namespace names a namespace reserved for the cluster",
    )
    .await;
    inv.refused(
        "a Workspace named after the operator's namespace",
        post(
            &api,
            workspace(OPERATOR_NAMESPACE, "User", &mallory, json!({})),
        )
        .await,
        403,
        "NamespaceReserved: namespace workspace-operator-system is reserved",
    )
    .await;
    for infrastructure in ["cert-manager", "argocd", "flux-system", "kyverno"] {
        inv.refused(
            &format!("a Workspace named after the infrastructure namespace {infrastructure}"),
            post(&api, workspace(infrastructure, "User", &mallory, json!({}))).await,
            403,
            &format!("NamespaceReserved: namespace {infrastructure} is reserved"),
        )
        .await;
    }
    inv.refused(
        "a Workspace whose spec.namespace is the operator's namespace",
        post(
            &api,
            workspace(
                &support::unique("sec-op"),
                "User",
                &mallory,
                json!({"spec": {"namespace": OPERATOR_NAMESPACE}}),
            ),
        )
        .await,
        403,
        "NamespaceReserved: namespace workspace-operator-system is reserved",
    )
    .await;
}

#[tokio::test]
async fn a_workspace_cannot_take_over_an_existing_namespace() {
    let admin = secured_setup().await;
    let victim = victim();
    let mallory = format!("{}@example.com", support::unique("mallory"));
    // A namespace a team created by hand, outside any workspace.
    let team = support::unique("sec-team");
    let _dump = support::dump_on_failure(&[&team]);
    objects::create_namespace(&admin, json!({"name": team, "labels": {"team": "x"}})).await;
    Api::<ConfigMap>::namespaced(admin.clone(), &team)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "precious"}, "data": {"k": "v"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let inv = Invariants::capture(&admin, &mallory, &[], &[&team]).await;
    let client = inv.attacker.clone();
    let pointing = support::unique("sec-claim");
    create(
        &client,
        workspace(
            &pointing,
            "User",
            &mallory,
            json!({"spec": {"namespace": victim.workspace, "deletionPolicy": "Delete"}}),
        ),
    )
    .await;
    let message = ready_message(&admin, &pointing, "False", "NamespaceConflict").await;
    assert!(
        message.contains("is taken (this workspace did not create it)"),
        "{message}"
    );
    inv.hold("a Workspace points spec.namespace at another tenant's namespace")
        .await;
    create(
        &client,
        workspace(
            &team,
            "User",
            &mallory,
            json!({"spec": {"deletionPolicy": "Delete"}}),
        ),
    )
    .await;
    let message = ready_message(&admin, &team, "False", "NamespaceConflict").await;
    assert!(
        message.contains(&format!("Namespace \"{team}\" is taken")),
        "{message}"
    );
    inv.hold("a Workspace named after an existing namespace")
        .await;
    assert!(!support::can_i(&client, "list", "configmaps", Some(&team), None).await);

    // Deleting the claims (deletionPolicy Delete) deletes neither namespace.
    // A blocked Workspace grants its owner nothing, not even its own object,
    // so a platform admin deletes them.
    let api: Api<Workspace> = Api::all(admin.clone());
    for name in [&pointing, &team] {
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete the claiming Workspace");
        wait_gone(&Api::<Workspace>::all(admin.clone()), name, TIMEOUT).await;
    }
    inv.hold("the claiming Workspaces are deleted").await;
    assert!(
        Api::<ConfigMap>::namespaced(admin.clone(), &team)
            .get_opt("precious")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn spec_owner_changes_only_through_a_transfer() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let mallory = format!("{}@example.com", support::unique("mallory"));
    let ws = own_workspace(&admin, &owner, "sec-owner", json!({})).await;
    let _dump = support::dump_on_failure(&[&ws]);
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    let beneficiary = Invariants::capture(&admin, &mallory, &[], &[&ws]).await;
    let api: Api<Workspace> = Api::all(inv.attacker.clone());
    let admin_api: Api<Workspace> = Api::all(admin.clone());
    let fragment = "cannot be changed directly: ownership moves with a WorkspaceTransfer";
    for way in EVERY_WAY {
        inv.refused(
            &format!("an Owner gives the Workspace to another user ({way:?})"),
            change(
                &api,
                &admin_api,
                &ws,
                way,
                json!({"spec": {"owner": {"kind": "User", "name": mallory}}}),
            )
            .await,
            403,
            fragment,
        )
        .await;
        beneficiary
            .hold("the Workspace was offered to mallory")
            .await;
    }
    inv.refused(
        "an Owner moves the Workspace into an organization",
        change(
            &api,
            &admin_api,
            &ws,
            Way::MergePatch,
            json!({"spec": {"owner": {"kind": "Organization", "name": "globex"}}}),
        )
        .await,
        403,
        fragment,
    )
    .await;
    inv.refused(
        "a cluster admin changes spec.owner directly",
        change(
            &admin_api,
            &admin_api,
            &ws,
            Way::MergePatch,
            json!({"spec": {"owner": {"kind": "User", "name": mallory}}}),
        )
        .await,
        403,
        fragment,
    )
    .await;
    // The status subresource is no way around it: the API server keeps the
    // stored spec on a status write (tried as the cluster admin, who may
    // write status at all).
    admin_api
        .patch_status(
            &ws,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"owner": {"kind": "User", "name": mallory}}})),
        )
        .await
        .expect("a status write is accepted");
    inv.hold("spec.owner written through the status subresource")
        .await;
    assert_eq!(
        admin_api.get(&ws).await.unwrap().spec.owner.name,
        owner,
        "spec.owner changed through the status subresource"
    );
    beneficiary.hold("spec.owner written through status").await;
}

#[tokio::test]
async fn a_protected_workspace_is_not_deleted_until_protection_is_lifted() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(
        &admin,
        &owner,
        "sec-protected",
        json!({"metadata": {"labels": {"security-test": "protected"}}, "spec": {"deletionProtection": true}}),
    )
    .await;
    let _dump = support::dump_on_failure(&[&ws]);
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    let api: Api<Workspace> = Api::all(inv.attacker.clone());
    let fragment = "has spec.deletionProtection: true; set it to false first";
    inv.refused(
        "the Owner deletes a protected Workspace",
        api.delete(&ws, &DeleteParams::default()).await,
        403,
        fragment,
    )
    .await;
    // A platform admin's deletecollection is judged item by item.
    let pat = format!("pat-{ws}@example.com");
    apply(
        &admin,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": format!("security-tests:platform-admin:{ws}")},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "workspaces:platform-admin"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": pat}]}),
    )
    .await;
    objects::wait_can(
        &pat,
        &[],
        "deletecollection",
        "workspaces.workspaces.dev",
        None,
        None,
        true,
    )
    .await;
    let platform: Api<Workspace> = Api::all(client_as(&pat, &[]).await);
    let selector = ListParams::default().labels("security-test=protected");
    let result = platform
        .delete_collection(&DeleteParams::default(), &selector)
        .await;
    inv.refused(
        "a platform admin deletes every protected Workspace at once",
        result,
        403,
        fragment,
    )
    .await;

    // Lifting protection lets the Owner delete it, and the operator's
    // cleanup (deletionPolicy Delete) still removes the namespace.
    api.patch(
        &ws,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"deletionProtection": false}})),
    )
    .await
    .expect("the Owner lifts protection");
    api.delete(&ws, &DeleteParams::default())
        .await
        .expect("the Owner deletes the unprotected Workspace");
    wait_gone(&Api::<Workspace>::all(admin.clone()), &ws, TIMEOUT).await;
    wait_gone(&Api::<Namespace>::all(admin.clone()), &ws, TIMEOUT).await;
}

#[tokio::test]
async fn an_owner_cannot_skip_the_cleanup_finalizer() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-finalizer", json!({})).await;
    let _dump = support::dump_on_failure(&[&ws]);
    let admin_api: Api<Workspace> = Api::all(admin.clone());
    assert!(
        admin_api
            .get(&ws)
            .await
            .unwrap()
            .finalizers()
            .iter()
            .any(|f| f == "workspaces.dev/cleanup")
    );
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    let api: Api<Workspace> = Api::all(inv.attacker.clone());
    for way in [Way::Update, Way::MergePatch] {
        inv.refused(
            &format!("an Owner removes the cleanup finalizer ({way:?})"),
            change(
                &api,
                &admin_api,
                &ws,
                way,
                json!({"metadata": {"finalizers": []}}),
            )
            .await,
            403,
            "the finalizer workspaces.dev/cleanup of Workspace",
        )
        .await;
    }
}

// ---------------------------------------------------------------------------
// Namespaces and the operator's RoleBindings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_tenant_cannot_edit_or_delete_its_namespace() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let ws = own_workspace(&admin, &owner, "sec-ns", json!({})).await;
    let _dump = support::dump_on_failure(&[&ws]);
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    for verb in ["update", "patch", "delete"] {
        assert!(
            !support::can_i(&inv.attacker, verb, "namespaces", None, Some(&ws)).await,
            "an Owner may {verb} their namespace"
        );
    }
    let victim = victim();
    let namespaces: Api<Namespace> = Api::all(inv.attacker.clone());
    let admin_namespaces: Api<Namespace> = Api::all(admin.clone());
    let edits = [
        (
            "relabels their namespace as another workspace's",
            json!({"metadata": {"labels": {"workspaces.dev/workspace": victim.workspace}}}),
        ),
        (
            "forges the workspace-uid annotation",
            json!({"metadata": {"annotations": {"workspaces.dev/workspace-uid": victim.uid}}}),
        ),
        (
            "marks their namespace adopted",
            json!({"metadata": {"annotations": {"workspaces.dev/adopted": "true"}}}),
        ),
    ];
    for (what, patch) in edits {
        for way in EVERY_WAY {
            let result = change(&namespaces, &admin_namespaces, &ws, way, patch.clone()).await;
            let verb = match way {
                Way::Update => "update",
                _ => "patch",
            };
            inv.refused(
                &format!("an Owner {what} ({way:?})"),
                result,
                403,
                &format!("cannot {verb} resource \"namespaces\""),
            )
            .await;
        }
    }
    inv.refused(
        "an Owner deletes their namespace",
        namespaces.delete(&ws, &DeleteParams::default()).await,
        403,
        "cannot delete resource \"namespaces\"",
    )
    .await;
}

#[tokio::test]
async fn the_operators_rolebindings_are_restored_and_never_grant_more() {
    let admin = secured_setup().await;
    let owner = format!("{}@example.com", support::unique("owner"));
    let mallory = format!("{}@example.com", support::unique("mallory"));
    let ws = own_workspace(&admin, &owner, "sec-rb", json!({})).await;
    let _dump = support::dump_on_failure(&[&ws]);
    let admin_rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), &ws);
    let original = admin_rbs.get(OWNER_BINDING).await.expect("owner binding");
    let inv = Invariants::capture(&admin, &owner, &[], &[&ws]).await;
    let outsider = Invariants::capture(&admin, &mallory, &[], &[&ws]).await;
    let rbs: Api<RoleBinding> = Api::namespaced(inv.attacker.clone(), &ws);

    let restored = |what: &'static str| {
        let admin_rbs = admin_rbs.clone();
        let original = original.clone();
        async move {
            support::wait_for(what, TIMEOUT, || async {
                let rb = admin_rbs.get_opt(OWNER_BINDING).await.ok()??;
                (rb.subjects == original.subjects && rb.role_ref == original.role_ref).then_some(())
            })
            .await
        }
    };

    // An Owner reads the bindings of the workspace but writes none: every
    // grant goes through a WorkspaceMember.
    let widened = json!({"subjects": [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": owner},
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": mallory},
    ]});
    inv.refused(
        "an Owner widens the owner binding",
        rbs.patch(
            OWNER_BINDING,
            &PatchParams::default(),
            &Patch::Merge(widened.clone()),
        )
        .await,
        403,
        "cannot patch resource \"rolebindings\"",
    )
    .await;
    inv.refused(
        "an Owner deletes the owner binding",
        rbs.delete(OWNER_BINDING, &DeleteParams::default())
            .await
            .map(|_| ()),
        403,
        "cannot delete resource \"rolebindings\"",
    )
    .await;
    let mut own = original.clone();
    own.metadata = serde_json::from_value(json!({"name": "mine"})).unwrap();
    inv.refused(
        "an Owner binds the Owner role directly",
        rbs.create(&PostParams::default(), &own).await,
        403,
        "cannot create resource \"rolebindings\"",
    )
    .await;

    // Whoever can write it (a cluster admin) widens it: the operator puts it
    // back.
    admin_rbs
        .patch(
            OWNER_BINDING,
            &PatchParams::default(),
            &Patch::Merge(widened),
        )
        .await
        .expect("a cluster admin widens the owner binding");
    restored("the owner binding's subjects to be restored").await;
    wait_for_no_access(&mallory, &ws).await;
    inv.hold("the owner binding was widened and restored").await;
    outsider
        .hold("the owner binding was widened and restored")
        .await;

    // Deleted and created again under the same name with another role (the
    // roleRef cannot be changed in place): the operator replaces it.
    let mut viewer = original.clone();
    viewer.metadata = serde_json::from_value(json!({"name": OWNER_BINDING})).unwrap();
    viewer.role_ref.name = "workspaces:viewer".to_string();
    support::wait_for(
        "a binding to another role under the operator's name",
        TIMEOUT,
        || async {
            // The operator may recreate its binding between the two requests;
            // then try again.
            let _ = admin_rbs
                .delete(OWNER_BINDING, &DeleteParams::default())
                .await;
            admin_rbs
                .create(&PostParams::default(), &viewer)
                .await
                .ok()
                .map(drop)
        },
    )
    .await;
    restored("the owner binding to be replaced with the Owner role").await;
    objects::wait_can(
        &owner,
        &[],
        "create",
        "workspacemembers.workspaces.dev",
        Some(&ws),
        None,
        true,
    )
    .await;
    inv.hold("the owner binding was replaced").await;
    outsider.hold("the owner binding was replaced").await;
    let now = admin_rbs.get(OWNER_BINDING).await.unwrap();
    assert_eq!(now.subjects, original.subjects);
    assert_eq!(now.role_ref, original.role_ref);
}

async fn wait_for_no_access(user: &str, ws: &str) {
    let client = client_as(user, &[]).await;
    support::wait_for(
        &format!("{user} to have no access in {ws}"),
        TIMEOUT,
        || async { (!support::can_i(&client, "list", "pods", Some(ws), None).await).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_forged_uid_annotation_never_gets_a_namespace_deleted() {
    let admin = secured_setup().await;
    let mallory = format!("{}@example.com", support::unique("mallory"));
    // A cluster admin (or anything with namespace rights) creates a namespace
    // that claims to belong to a Workspace that does not exist yet. The UID of
    // a Workspace is chosen by the API server when it is created, so no
    // annotation written in advance can match it.
    let name = support::unique("sec-forged");
    let _dump = support::dump_on_failure(&[&name]);
    objects::create_namespace(&admin, json!({
                "name": name,
                "labels": {"workspaces.dev/workspace": name, "app.kubernetes.io/managed-by": "workspace-operator"},
                "annotations": {"workspaces.dev/workspace-uid": "7c1a4d4e-0000-4000-8000-000000000000"},
            }))
    .await;
    Api::<ConfigMap>::namespaced(admin.clone(), &name)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "precious"}, "data": {"k": "v"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let inv = Invariants::capture(&admin, &mallory, &[], &[&name]).await;
    create(
        &inv.attacker,
        workspace(
            &name,
            "User",
            &mallory,
            json!({"spec": {"deletionPolicy": "Delete"}}),
        ),
    )
    .await;
    let message = ready_message(&admin, &name, "False", "NamespaceConflict").await;
    assert!(
        message.contains("this workspace did not create it"),
        "{message}"
    );
    inv.hold("a Workspace is created for a namespace with a forged UID")
        .await;
    // A blocked Workspace grants its owner nothing, not even its own
    // object, so a platform admin deletes it.
    Api::<Workspace>::all(admin.clone())
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete the claiming Workspace");
    wait_gone(&Api::<Workspace>::all(admin.clone()), &name, TIMEOUT).await;
    inv.hold("the Workspace of the forged namespace is deleted")
        .await;
    assert!(
        Api::<ConfigMap>::namespaced(admin.clone(), &name)
            .get_opt("precious")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_namespace_holding_another_workspaces_uid_is_a_conflict() {
    let admin = secured_setup().await;
    let victim = victim();
    let mallory = format!("{}@example.com", support::unique("mallory"));
    let name = support::unique("sec-borrowed-uid");
    let _dump = support::dump_on_failure(&[&name]);
    objects::create_namespace(
        &admin,
        json!({
            "name": name,
            "annotations": {"workspaces.dev/workspace-uid": victim.uid},
        }),
    )
    .await;
    let inv = Invariants::capture(&admin, &mallory, &[], &[&name]).await;
    let claim = support::unique("sec-uid-claim");
    create(
        &inv.attacker,
        workspace(
            &claim,
            "User",
            &mallory,
            json!({"spec": {"namespace": name, "deletionPolicy": "Delete"}}),
        ),
    )
    .await;
    let message = ready_message(&admin, &claim, "False", "NamespaceConflict").await;
    assert!(
        message.contains("this workspace did not create it"),
        "{message}"
    );
    inv.hold("a Workspace claims a namespace annotated with another workspace's UID")
        .await;
    Api::<Workspace>::all(admin.clone())
        .delete(&claim, &DeleteParams::default())
        .await
        .expect("delete the claiming Workspace");
    wait_gone(&Api::<Workspace>::all(admin.clone()), &claim, TIMEOUT).await;
    inv.hold("the claiming Workspace is deleted").await;
    ready_message(&admin, &victim.workspace, "True", "Provisioned").await;
}

// ---------------------------------------------------------------------------
// Organizations
// ---------------------------------------------------------------------------

#[tokio::test]
async fn organization_admins_cannot_raise_their_own_limits() {
    let admin = secured_setup().await;
    let olga = format!("{}@example.com", support::unique("olga"));
    let org = own_organization(
        &admin,
        "sec-limits",
        &[&olga],
        &[],
        json!({"spec": {"limits": {"workspaces": 1, "membersPerWorkspace": 2}}}),
    )
    .await;
    let other = own_organization(&admin, "sec-limits-other", &[], &[], json!({})).await;
    let inv = Invariants::capture(&admin, &olga, &[], &[]).await;
    let api: Api<Organization> = Api::all(inv.attacker.clone());
    let admin_api: Api<Organization> = Api::all(admin.clone());
    for way in EVERY_WAY {
        inv.refused(
            &format!("an organization admin raises its workspace limit ({way:?})"),
            change(
                &api,
                &admin_api,
                &org,
                way,
                json!({"spec": {"limits": {"workspaces": 1000}}}),
            )
            .await,
            403,
            "only a platform admin may set or change spec.limits",
        )
        .await;
    }
    inv.refused(
        "an organization admin removes its limits",
        change(
            &api,
            &admin_api,
            &org,
            Way::MergePatch,
            json!({"spec": {"limits": null}}),
        )
        .await,
        403,
        "only a platform admin may set or change spec.limits",
    )
    .await;
    for way in [Way::MergePatch, Way::ServerSideApply] {
        inv.refused(
            &format!("an organization admin sets its workspace defaults ({way:?})"),
            change(
                &api,
                &admin_api,
                &org,
                way,
                json!({"spec": {"workspaceDefaults": {"networkIsolation": false}}}),
            )
            .await,
            403,
            "only a platform admin may set or change spec.workspaceDefaults",
        )
        .await;
    }
    inv.refused(
        "an organization admin edits another organization",
        api.patch(
            &other,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "mine now"}})),
        )
        .await,
        403,
        "cannot patch resource \"organizations\"",
    )
    .await;
    inv.refused(
        "an organization admin creates an organization with limits of its own",
        post(
            &api,
            objects::organization(
                &support::unique("sec-self-made"),
                &[&olga],
                json!({"spec": {"members": [], "limits": {"workspaces": 1000}}}),
            ),
        )
        .await,
        403,
        "cannot create resource \"organizations\"",
    )
    .await;
    // What admins may edit.
    api.patch(
        &org,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"displayName": "Renamed", "members": [{"kind": "User", "name": format!("new-{olga}")}]}})),
    )
    .await
    .expect("an admin edits displayName and members");
    inv.hold("an organization admin edits displayName and members")
        .await;
    let limits = admin_api.get(&org).await.unwrap().spec.limits.unwrap();
    assert_eq!(
        (limits.workspaces, limits.members_per_workspace),
        (Some(1), Some(2))
    );
}

// ---------------------------------------------------------------------------
// Transfers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn transfer_approvals_cannot_be_forged() {
    let admin = secured_setup().await;
    let victim = victim();
    let mallory = format!("{}@example.com", support::unique("mallory"));
    let inv = Invariants::capture(&admin, &mallory, &[], &[]).await;
    let api: Api<WorkspaceTransfer> = Api::all(inv.attacker.clone());
    let admin_api: Api<WorkspaceTransfer> = Api::all(admin.clone());
    let name = support::unique("sec-heist");
    let forged = objects::transfer(
        &name,
        &victim.workspace,
        ("User", &mallory),
        json!({"spec": {"approvals": {"source": {"approvedBy": victim.owner}}}}),
    );
    inv.refused(
        "a transfer created with the victim's approval forged",
        post(&api, forged.clone()).await,
        403,
        // Refused twice over: not signed by mallory (transfer-approvals),
        // and not judged against the workspace's owner (transfer-access);
        // either answers first.
        "approvals.source",
    )
    .await;
    inv.refused(
        "a transfer server-side applied with the victim's approval forged",
        server_side_apply(&api, forged).await,
        403,
        "approvals.source",
    )
    .await;
    // A request without approvals is only a request.
    post(
        &api,
        objects::transfer(&name, &victim.workspace, ("User", &mallory), json!({})),
    )
    .await
    .expect("anyone may ask");
    // mallory is the target side of her own request, so the operator lets
    // her read it (a grant about that one transfer): part of the baseline.
    support::wait_for("the read grant of the request", TIMEOUT, || async {
        support::can_i(
            &inv.attacker,
            "get",
            "workspacetransfers.workspaces.dev",
            None,
            Some(&name),
        )
        .await
        .then_some(())
    })
    .await;
    let inv = Invariants::capture(&admin, &mallory, &[], &[]).await;
    for way in EVERY_WAY {
        inv.refused(
            &format!("the victim's approval added to a pending transfer ({way:?})"),
            change(
                &api,
                &admin_api,
                &name,
                way,
                json!({"spec": {"approvals": {"source": {"approvedBy": victim.owner}}}}),
            )
            .await,
            403,
            // Refused twice over: not signed by mallory (transfer-approvals),
            // and mallory does not answer for the source (transfer-access).
            "approvals.source",
        )
        .await;
    }
    inv.refused(
        "a target approval signed by someone else",
        change(
            &api,
            &admin_api,
            &name,
            Way::MergePatch,
            json!({"spec": {"approvals": {"target": {"approvedBy": victim.owner}}}}),
        )
        .await,
        403,
        "approvals.target",
    )
    .await;
    admin_api
        .delete(&name, &DeleteParams::default())
        .await
        .expect("clean up the transfer");
}

/// A stolen operator identity is confined to workspace objects: its RBAC is
/// cluster-wide, but the operator-confinement policy refuses RoleBindings
/// outside workspace namespaces, ClusterRoles and ClusterRoleBindings other
/// than its per-workspace access objects, and deleting a namespace that is
/// not a workspace's.
#[tokio::test]
async fn owner_members_of_a_namespace_a_workspace_does_not_hold_never_change_its_object() {
    let admin = secured_setup().await;
    let mallory = format!("{}@example.com", support::unique("mallory"));
    let friend = format!("{}@example.com", support::unique("friend"));
    let alice = format!("{}@example.com", support::unique("alice"));
    // Mallory's workspace, where her friend holds the Owner role.
    let held = own_workspace(&admin, &mallory, "sec-held", json!({})).await;
    let _dump = support::dump_on_failure(&[&held]);
    create(
        &client_as(&mallory, &[]).await,
        member(&held, "friend", user(&friend), "Owner"),
    )
    .await;
    support::objects::wait_member_phase(&admin, &held, "friend", "Invited", TIMEOUT).await;
    support::objects::accept(&admin, &held, "friend", &friend, TIMEOUT).await;
    objects::wait_can(
        &friend,
        &[],
        "administer",
        "workspaces.workspaces.dev",
        Some(&held),
        Some(&held),
        true,
    )
    .await;

    // Alice names that namespace for her own Workspace: a conflict. The
    // Owner members of the namespace are Mallory's, not Alice's.
    let claim = support::unique("sec-claim");
    create(
        &client_as(&alice, &[]).await,
        workspace(&claim, "User", &alice, json!({"spec": {"namespace": held}})),
    )
    .await;
    ready_message(&admin, &claim, "False", "NamespaceConflict").await;
    // The blocked Workspace names no namespace in its status, so the Owners
    // of the namespace it claims are not its Owners.
    let status = Api::<Workspace>::all(admin.clone())
        .get(&claim)
        .await
        .expect("the claim")
        .status
        .expect("a status");
    assert_eq!(status.namespace, None, "{claim}");
    assert!(objects::may_change_workspace(&alice, &[], &claim).await);
    assert!(objects::may_change_workspace(&friend, &[], &held).await);
    assert!(
        !objects::may_change_workspace(&friend, &[], &claim).await,
        "{friend} may change workspace {claim} through a namespace it does not hold"
    );
    assert!(
        !objects::may_delete_workspace(&friend, &[], &claim).await,
        "{friend} may delete workspace {claim} through a namespace it does not hold"
    );
}
