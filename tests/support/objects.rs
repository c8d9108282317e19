//! The objects the scenarios create and the small steps they repeat: JSON
//! builders for Workspaces, Organizations, WorkspaceMembers and their
//! subjects; creating them as a given client; waiting on a Workspace's Ready
//! condition; asking whether an impersonated user may do something.

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use workspace_operator::api::Workspace;

/// The `apiVersion` of every kind the operator serves.
pub const API_VERSION: &str = "workspaces.dev/v1alpha1";

// ---------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------

/// RFC 7386 JSON merge patch: `patch` applied to `base` in place (objects
/// merge key by key, `null` removes a key, anything else replaces).
pub fn merge(base: &mut Value, patch: Value) {
    match patch {
        Value::Object(patch) => {
            if !base.is_object() {
                *base = json!({});
            }
            let map = base.as_object_mut().expect("an object");
            for (key, value) in patch {
                if value.is_null() {
                    map.remove(&key);
                } else {
                    merge(map.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        patch => *base = patch,
    }
}

/// A Workspace owned by `owner_kind`/`owner`; `extra` is merged into the
/// whole object (e.g. `{"spec": {"handle": "prod"}}`).
pub fn workspace(name: &str, owner_kind: &str, owner: &str, extra: Value) -> Value {
    let mut value = json!({"apiVersion": API_VERSION, "kind": "Workspace",
                           "metadata": {"name": name},
                           "spec": {"owner": {"kind": owner_kind, "name": owner}}});
    merge(&mut value, extra);
    value
}

/// An Organization named and displayed as `name`, administered by the users
/// `admins`; `extra` is merged into the whole object (members, limits,
/// defaults, or `{"spec": {"displayName": null}}` to leave the name out).
pub fn organization(name: &str, admins: &[&str], extra: Value) -> Value {
    let mut value = json!({"apiVersion": API_VERSION, "kind": "Organization",
                           "metadata": {"name": name},
                           "spec": {"displayName": name, "admins": users(admins)}});
    merge(&mut value, extra);
    value
}

/// An Organization like [`organization`] whose `members` (subjects:
/// [`users`], [`user`], [`group`]) belong to it besides its
/// admins; `extra` is merged into the whole object (limits, defaults).
pub fn organization_with(name: &str, admins: &[&str], members: Vec<Value>, extra: Value) -> Value {
    let mut value = organization(name, admins, json!({"spec": {"members": members}}));
    merge(&mut value, extra);
    value
}

/// The part of an Organization that limits each of its workspaces to
/// `members` members.
pub fn members_per_workspace(members: i32) -> Value {
    json!({"spec": {"limits": {"membersPerWorkspace": members}}})
}

/// A WorkspaceTransfer of `workspace` to the account `to` (kind, name);
/// `extra` is merged into the whole object (`from`, `newHandle`,
/// approvals).
pub fn transfer(name: &str, workspace: &str, to: (&str, &str), extra: Value) -> Value {
    let mut value = json!({"apiVersion": API_VERSION, "kind": "WorkspaceTransfer",
                           "metadata": {"name": name},
                           "spec": {"workspace": workspace, "to": {"kind": to.0, "name": to.1}}});
    merge(&mut value, extra);
    value
}

/// What a WorkspaceMember grants: a built-in role by name (`"Viewer"`) or a
/// whole `spec` fragment (`{"clusterRole": "admin"}`, `{"role": "Owner"}`).
pub trait Grant {
    fn into_spec(self) -> Value;
}

impl Grant for &str {
    fn into_spec(self) -> Value {
        json!({ "role": self })
    }
}

impl Grant for &String {
    fn into_spec(self) -> Value {
        json!({ "role": self })
    }
}

impl Grant for Value {
    fn into_spec(self) -> Value {
        self
    }
}

/// A WorkspaceMember in `ns` giving `subject` what `grant` names.
pub fn member(ns: &str, name: &str, subject: Value, grant: impl Grant) -> Value {
    let mut value = json!({"apiVersion": API_VERSION, "kind": "WorkspaceMember",
                           "metadata": {"name": name, "namespace": ns},
                           "spec": {"subject": subject}});
    merge(&mut value, json!({ "spec": grant.into_spec() }));
    value
}

/// The grant of a custom ClusterRole, for [`member`].
pub fn cluster_role(name: &str) -> Value {
    json!({ "clusterRole": name })
}

/// A User subject.
pub fn user(name: &str) -> Value {
    json!({"kind": "User", "name": name})
}

/// User subjects, one per name.
pub fn users(names: &[&str]) -> Vec<Value> {
    names.iter().map(|n| user(n)).collect()
}

/// A Group subject.
pub fn group(name: &str) -> Value {
    json!({"kind": "Group", "name": name})
}

/// A ServiceAccount subject.
pub fn service_account(namespace: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": namespace})
}

// ---------------------------------------------------------------------------
// Acting as someone
// ---------------------------------------------------------------------------

fn describe(value: &Value) -> String {
    format!(
        "{} {}",
        value["kind"].as_str().unwrap_or_default(),
        value["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// Server-side applies `value` as `client`'s identity; panics when refused.
pub async fn apply(client: &Client, value: Value) {
    let what = describe(&value);
    if let Err(err) =
        super::try_apply_value(client, serde_json::from_value(value).expect("yaml")).await
    {
        panic!("{what} was refused: {err}");
    }
}

/// Creates (`POST`, like `kubectl create` or the first client-side `kubectl
/// apply`) `value` as `client`'s identity; panics when refused. Users create
/// Workspaces this way: server-side apply is a `PATCH`, and
/// `workspaces:self-provisioner` grants `create` only.
pub async fn create(client: &Client, value: Value) {
    let what = describe(&value);
    if let Err(err) = super::try_create_yaml(client, &value.to_string()).await {
        panic!("{what} was refused: {err}");
    }
}

/// Whether `user` in `groups` (impersonated) may `verb` `resource` (as
/// [`super::can_i`] takes it) in `ns`, on the object `name`.
pub async fn can(
    user: &str,
    groups: &[&str],
    verb: &str,
    resource: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> bool {
    let client = super::plane().client_as(user, groups).await;
    super::can_i(&client, verb, resource, ns, name).await
}

/// Whether `user` in `groups` may change the Workspace `name`, as the API
/// server decides it (RBAC and the admission policies): a server-side
/// dry-run merge patch of an annotation, made as the user. RBAC lets every
/// authenticated user write Workspaces and admission decides, so a
/// SubjectAccessReview cannot answer this.
pub async fn may_change_workspace(user: &str, groups: &[&str], name: &str) -> bool {
    let client = super::plane().client_as(user, groups).await;
    let patch = json!({"metadata": {"annotations": {"example.com/probe": user}}});
    let params = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    dry_run_outcome(
        Api::<Workspace>::all(client)
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ()),
    )
}

/// Whether `user` in `groups` may delete the Workspace `name` (a server-side
/// dry-run DELETE as the user; see [`may_change_workspace`]).
pub async fn may_delete_workspace(user: &str, groups: &[&str], name: &str) -> bool {
    let client = super::plane().client_as(user, groups).await;
    dry_run_outcome(
        Api::<Workspace>::all(client)
            .delete(name, &DeleteParams::default().dry_run())
            .await
            .map(|_| ()),
    )
}

/// `true` for success, `false` for a refusal (403); panics on anything else.
fn dry_run_outcome(result: Result<(), kube::Error>) -> bool {
    match result {
        Ok(()) => true,
        Err(kube::Error::Api(status)) if status.code == 403 => false,
        Err(err) => panic!("dry run failed: {err}"),
    }
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// The Ready condition among `conditions`.
pub fn ready_of(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// The Ready condition of a Workspace.
pub fn ready(ws: &Workspace) -> Option<&Condition> {
    ready_of(&ws.status.as_ref()?.conditions)
}

/// Whether the Workspace's status was written for its current generation.
pub fn observed(ws: &Workspace) -> bool {
    ws.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == ws.metadata.generation)
}

/// Polls the Workspace `name` until `check` holds, and returns it; panics
/// with `what` after `timeout`.
pub async fn wait_workspace_until(
    client: &Client,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Workspace) -> bool,
) -> Workspace {
    let api: Api<Workspace> = Api::all(client.clone());
    let check = &check;
    super::wait_for(what, timeout, || {
        let api = api.clone();
        async move {
            let ws = api.get(name).await.ok()?;
            check(&ws).then_some(ws)
        }
    })
    .await
}

/// Creates, as `client`, a namespace with `metadata` (its name, and any
/// labels or annotations); panics when refused.
pub async fn create_namespace(client: &Client, metadata: Value) {
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": metadata})).expect("a namespace");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&kube::api::PostParams::default(), &ns)
        .await
        .unwrap_or_else(|err| panic!("creating namespace {metadata}: {err}"));
}

/// Creates the personal Workspace `name` of the user `owner` (as the
/// admin) and waits until it is Ready.
pub async fn personal_workspace(admin: &Client, name: &str, owner: &str) -> Workspace {
    create(admin, workspace(name, "User", owner, json!({}))).await;
    wait_ready(
        admin,
        name,
        "True",
        Some("Provisioned"),
        Duration::from_secs(60),
    )
    .await
}

/// Polls the WorkspaceTransfer `name` (as `client`) until `check` holds;
/// returns it.
pub async fn wait_transfer_until(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&workspace_operator::api::WorkspaceTransfer) -> bool,
) -> workspace_operator::api::WorkspaceTransfer {
    let api: Api<workspace_operator::api::WorkspaceTransfer> = Api::all(client.clone());
    let (api, check) = (&api, &check);
    super::wait_for(
        &format!("transfer {name}: {what}"),
        Duration::from_secs(60),
        || async move { api.get(name).await.ok().filter(|t| check(t)) },
    )
    .await
}

/// Polls the WorkspaceTransfer `name` until it is in `phase`; returns it.
pub async fn wait_transfer_phase(
    client: &Client,
    name: &str,
    phase: workspace_operator::api::TransferPhase,
) -> workspace_operator::api::WorkspaceTransfer {
    let what = format!("phase {phase:?}");
    wait_transfer_until(client, name, &what, |t| {
        t.status.as_ref().and_then(|s| s.phase) == Some(phase)
    })
    .await
}

/// Creates the Workspace `value` as `creator` (its owner, or an admin of
/// its owning Organization) and waits, as `admin`, until it is Ready.
pub async fn create_ready_workspace(creator: &Client, admin: &Client, value: Value) -> Workspace {
    let name = value["metadata"]["name"]
        .as_str()
        .expect("a Workspace with a name")
        .to_string();
    create(creator, value).await;
    wait_ready(admin, &name, "True", None, Duration::from_secs(60)).await
}

/// Waits until the Workspace's status is about its current generation and
/// its Ready condition has `status` and, when given, `reason`; returns the
/// Workspace.
pub async fn wait_ready(
    client: &Client,
    name: &str,
    status: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> Workspace {
    let what = match reason {
        Some(reason) => format!("workspace {name} to be Ready={status} ({reason})"),
        None => format!("workspace {name} to be Ready={status}"),
    };
    wait_workspace_until(client, name, &what, timeout, |ws| {
        observed(ws)
            && ready(ws).is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
    })
    .await
}

/// The events about the cluster-scoped object `name` (a Workspace or an
/// Organization; their events live in `default`), as (reason, type,
/// reporting controller), sorted.
pub async fn events_about(client: &Client, name: &str) -> Vec<(String, String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events
        .list(&ListParams::default())
        .await
        .expect("list events");
    let mut about: Vec<(String, String, String)> = list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.type_.unwrap_or_default(),
                e.reporting_controller.unwrap_or_default(),
            )
        })
        .collect();
    about.sort();
    about
}

/// Waits until the object `name` is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    super::wait_for(&format!("{name} to be gone"), timeout, || async move {
        matches!(api.get_opt(name).await, Ok(None)).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------
// Members and invitations
// ---------------------------------------------------------------------------

/// Polls the WorkspaceMember `ns/name` until it reports `phase` (`Invited`,
/// `Active`, `Declined`, ...) for its current generation; returns it.
pub async fn wait_member_phase(
    client: &Client,
    ns: &str,
    name: &str,
    phase: &str,
    timeout: Duration,
) -> workspace_operator::api::WorkspaceMember {
    let api: Api<workspace_operator::api::WorkspaceMember> = Api::namespaced(client.clone(), ns);
    let what = format!("WorkspaceMember {ns}/{name} to be {phase}");
    super::wait_for(&what, timeout, || {
        let api = api.clone();
        async move {
            let m = api.get(name).await.ok()?;
            let status = m.status.as_ref()?;
            let current = status.observed_generation == m.metadata.generation;
            let now = status.phase.map(|p| format!("{p:?}"));
            (current && now.as_deref() == Some(phase)).then_some(m)
        }
    })
    .await
}

/// The JSON merge patch that answers an invitation (`Accepted` or `Declined`).
pub fn response_patch(response: &str) -> String {
    json!({"spec": {"response": response}}).to_string()
}

/// `kubectl patch` (a JSON merge patch, `body`) of the WorkspaceMember
/// `ns/name`, run by `kubectl`'s user.
pub fn patch_member(
    kubectl: &super::kubectl::Kubectl,
    ns: &str,
    name: &str,
    body: &str,
) -> super::kubectl::Run {
    kubectl.run(&[
        "-n",
        ns,
        "patch",
        "workspacemember",
        name,
        "--type=merge",
        "-p",
        body,
    ])
}

/// `user` accepts their invitation `ns/name` with `kubectl patch`, as
/// themself, and the member turns Active.
pub async fn accept(client: &Client, ns: &str, name: &str, user: &str, timeout: Duration) {
    let kubectl = super::kubectl::Kubectl::as_user(user, &[]);
    patch_member(&kubectl, ns, name, &response_patch("Accepted")).success();
    wait_member_phase(client, ns, name, "Active", timeout).await;
}

// ---------------------------------------------------------------------------
// The workspace directory.

/// The directory namespace of the installed chart (its default).
pub const DIRECTORY: &str = workspace_operator::config::DEFAULT_DIRECTORY_NAMESPACE;

/// The relations the directory entry of `subject` lists, read as the admin:
/// `(verb, workspace)` pairs, empty when the subject has no entry (neither
/// its Role nor its RoleBinding exists).
pub async fn directory_entry(
    client: &Client,
    subject: &workspace_operator::api::Subject,
) -> Option<Vec<(String, String)>> {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use workspace_operator::controller::directory::build::entry_name;
    let name = entry_name(subject);
    let role = Api::<Role>::namespaced(client.clone(), DIRECTORY)
        .get_opt(&name)
        .await
        .ok()?;
    let binding = Api::<RoleBinding>::namespaced(client.clone(), DIRECTORY)
        .get_opt(&name)
        .await
        .ok()?;
    if role.is_none() && binding.is_none() {
        return Some(Vec::new());
    }
    let mut pairs = Vec::new();
    for rule in role?.rules.unwrap_or_default() {
        for verb in &rule.verbs {
            for ws in rule.resource_names.iter().flatten() {
                pairs.push((verb.clone(), ws.clone()));
            }
        }
    }
    binding?;
    Some(pairs)
}

/// Waits until the directory entry of `subject` lists `workspace` with
/// `verb`, or (`verb` None) does not list `workspace` at all.
pub async fn wait_directory(
    client: &Client,
    subject: &workspace_operator::api::Subject,
    workspace: &str,
    verb: Option<&str>,
) {
    let what = format!("the directory entry of {subject:?} to list {workspace} as {verb:?}");
    super::wait_for(&what, Duration::from_secs(60), || async {
        let pairs = directory_entry(client, subject).await?;
        let listed: Vec<&str> = pairs
            .iter()
            .filter(|(_, ws)| ws == workspace)
            .map(|(v, _)| v.as_str())
            .collect();
        let done = match verb {
            Some(verb) => listed == [verb],
            None => listed.is_empty(),
        };
        done.then_some(())
    })
    .await;
}

/// Waits (at most a minute) until the API server's answer to whether `user`
/// in `groups` may `verb` `resource` (as [`can`] takes it) is `want`.
pub async fn wait_can(
    user: &str,
    groups: &[&str],
    verb: &str,
    resource: &str,
    ns: Option<&str>,
    name: Option<&str>,
    want: bool,
) {
    let what = format!("{user} may {verb} {resource} {ns:?}/{name:?}: {want}");
    super::wait_for(&what, Duration::from_secs(60), || async {
        (can(user, groups, verb, resource, ns, name).await == want).then_some(())
    })
    .await;
}
