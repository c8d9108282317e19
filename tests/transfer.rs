//! WorkspaceTransfers as the two sides use them: the current owner proposes
//! a move with `kubectl create`, the target accepts or refuses with
//! `kubectl patch`, and the operator (its own least-privilege identity)
//! moves the workspace. Access before and after is checked with
//! SubjectAccessReviews as each subject; what is in the namespace keeps its
//! UIDs; an operator killed after each execution step converges.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::kubectl::Kubectl;
use support::objects::{
    self, apply, can, create, group, member, service_account, user, wait_transfer_phase,
};
use support::operator::Operator;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use workspace_operator::api::{
    MemberPhase, TransferPhase, Workspace, WorkspaceMember, WorkspaceTransfer,
};

const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// One operator at a time
// ---------------------------------------------------------------------------

/// Tests that share the binary's operator hold this for reading; tests that
/// run operators of their own (another TTL, fault injection) hold it for
/// writing, with the shared operator stopped.
static GATE: RwLock<()> = RwLock::const_new(());
static SHARED: Mutex<Option<Operator>> = Mutex::new(None);

/// The shared operator, running, for as long as the guard is held.
async fn shared() -> RwLockReadGuard<'static, ()> {
    let guard = GATE.read().await;
    let mut op = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if op.is_none() {
        let started = Operator::start(&[]);
        started.wait_ready(TIMEOUT);
        *op = Some(started);
    }
    guard
}

/// No operator running (the shared one stopped, its Lease released) for as
/// long as the guard is held.
async fn alone() -> RwLockWriteGuard<'static, ()> {
    let guard = GATE.write().await;
    let stopped = SHARED.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(stopped);
    guard
}

/// Waits until the shared operator's transfer controller has reconciled the
/// transfer `name` as of its current resourceVersion.
async fn wait_shared_reconciled(name: &str) {
    let version: u64 = get_transfer(name)
        .await
        .and_then(|t| t.resource_version())
        .and_then(|v| v.parse().ok())
        .expect("a transfer with a resourceVersion");
    support::wait_for(
        &format!("the operator to look at {name} again"),
        TIMEOUT,
        || async {
            let seen = SHARED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|op| op.reconciled("transfer", "", name))
                .unwrap_or_default();
            seen.iter().any(|v| *v >= version).then_some(())
        },
    )
    .await;
}

/// `user` answers for `side` through the API: a merge patch with no read
/// first (someone who may not read the transfer, or a transfer that ended
/// and whose read grant is gone). Returns the refusal's message.
async fn api_answer(user: &str, name: &str, side: &str) -> Result<(), String> {
    let patch: Value = serde_json::from_str(&answer(side, "approvedBy", user)).expect("json");
    Api::<WorkspaceTransfer>::all(as_user(user).await)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A late answer is admitted (the side may answer) and ignored.
async fn late_answer(user: &str, name: &str, side: &str) {
    api_answer(user, name, side)
        .await
        .expect("a late answer is admitted; the operator ignores it");
}

#[track_caller]
fn refused_with(result: Result<(), String>, needle: &str) {
    match result {
        Ok(()) => panic!("accepted, but should have been refused with {needle:?}"),
        Err(message) => assert!(
            message.contains(needle),
            "refused without {needle:?}: {message}"
        ),
    }
}

// ---------------------------------------------------------------------------
// Scenario helpers
// ---------------------------------------------------------------------------

async fn admin() -> Client {
    support::plane().admin().await
}

async fn as_user(name: &str) -> Client {
    support::plane().client_as(name, &[]).await
}

/// An Organization with `admins` (users) and `members` (subjects), and
/// optionally a workspace limit, created by the cluster admin.
async fn create_organization(name: &str, admins: &[&str], members: Vec<Value>, limit: Option<i32>) {
    let limits = limit.map_or(
        json!({}),
        |n| json!({"spec": {"limits": {"workspaces": n}}}),
    );
    let org = objects::organization_with(name, admins, members, limits);
    apply(&admin().await, org).await;
    // Its admins are recognised once the operator has granted them
    // `administer` on it.
    for admin in admins {
        support::wait_for(
            &format!("{admin} to administer {name}"),
            TIMEOUT,
            || async {
                can(
                    admin,
                    &[],
                    "administer",
                    "organizations.workspaces.dev",
                    None,
                    Some(name),
                )
                .await
                .then_some(())
            },
        )
        .await;
    }
}

/// A Workspace created by `creator` (its owner, or an admin of its owning
/// Organization), waited on until Ready.
async fn workspace_by(
    creator: &str,
    name: &str,
    kind: &str,
    owner: &str,
    extra: Value,
) -> Workspace {
    create(
        &as_user(creator).await,
        objects::workspace(name, kind, owner, extra),
    )
    .await;
    objects::wait_ready(&admin().await, name, "True", None, TIMEOUT).await
}

/// A WorkspaceTransfer as a person writes it.
fn transfer_manifest(
    name: &str,
    ws: &str,
    from: Option<(&str, &str)>,
    to: (&str, &str),
    extra: Value,
) -> String {
    let mut value = objects::transfer(name, ws, to, extra);
    if let Some((kind, owner)) = from {
        value["spec"]["from"] = json!({"kind": kind, "name": owner});
    }
    serde_json::to_string(&value).expect("json")
}

/// `{"spec":{"approvals":{side:{verb: user}}}}` as `kubectl patch` takes it.
fn answer(side: &str, verb: &str, user: &str) -> String {
    json!({"spec": {"approvals": {side: {verb: user}}}}).to_string()
}

/// Waits until `user` may read the transfer `name` (the operator grants
/// both sides read access once it has seen the transfer).
async fn wait_can_read(user: &str, name: &str) {
    support::wait_for(&format!("{user} to read {name}"), TIMEOUT, || async {
        can(
            user,
            &[],
            "get",
            "workspacetransfers.workspaces.dev",
            None,
            Some(name),
        )
        .await
        .then_some(())
    })
    .await;
}

/// `kubectl patch wst NAME` as `user`, answering for `side`, once `user`
/// may read it (kubectl reads before it patches).
async fn patch_answer(user: &str, name: &str, side: &str, verb: &str) -> support::kubectl::Run {
    wait_can_read(user, name).await;
    Kubectl::as_user(user, &[]).run(&[
        "patch",
        "wst",
        name,
        "--type=merge",
        "-p",
        &answer(side, verb, user),
    ])
}

async fn get_transfer(name: &str) -> Option<WorkspaceTransfer> {
    Api::<WorkspaceTransfer>::all(admin().await)
        .get_opt(name)
        .await
        .expect("read transfer")
}

/// Waits until the transfer satisfies `check`; returns it.
async fn wait_transfer(
    name: &str,
    what: &str,
    check: impl Fn(&WorkspaceTransfer) -> bool,
) -> WorkspaceTransfer {
    objects::wait_transfer_until(&admin().await, name, what, check).await
}

fn transfer_phase(t: &WorkspaceTransfer) -> Option<TransferPhase> {
    t.status.as_ref()?.phase
}

fn condition<'a>(t: &'a WorkspaceTransfer, type_: &str) -> Option<(&'a str, &'a str)> {
    let c = t
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.as_str(), c.reason.as_str()))
}

/// Waits until the transfer is Pending with `Validated=False` for `reason`.
async fn wait_invalid(name: &str, reason: &str) -> WorkspaceTransfer {
    wait_transfer(name, &format!("Validated=False {reason}"), |t| {
        transfer_phase(t) == Some(TransferPhase::Pending)
            && condition(t, "Validated") == Some(("False", reason))
    })
    .await
}

/// Whether `user` holds the Owner role in namespace `ns` (may manage its
/// members), as the API server's authorizer answers.
async fn is_owner(user: &str, ns: &str) -> bool {
    can(
        user,
        &[],
        "create",
        "workspacemembers.workspaces.dev",
        Some(ns),
        None,
    )
    .await
}

/// The UIDs of a ConfigMap, a Secret and a Job created in `ns`.
async fn contents(ns: &str) -> BTreeMap<String, String> {
    let client = admin().await;
    let mut uids = BTreeMap::new();
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"k": "v"}}))
            .unwrap();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "token"}, "stringData": {"t": "s"}}))
            .unwrap();
    let job: Job = serde_json::from_value(
        json!({"metadata": {"name": "nightly"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "run", "image": "busybox", "command": ["true"],
                        "securityContext": {"allowPrivilegeEscalation": false}}]}}}}),
    )
    .unwrap();
    let params = PostParams::default();
    let existing = |uid: Option<String>| uid.expect("uid");
    if let Ok(c) = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&params, &cm)
        .await
    {
        uids.insert("configmap".into(), existing(c.uid()));
    }
    if let Ok(s) = Api::<Secret>::namespaced(client.clone(), ns)
        .create(&params, &secret)
        .await
    {
        uids.insert("secret".into(), existing(s.uid()));
    }
    if let Ok(j) = Api::<Job>::namespaced(client.clone(), ns)
        .create(&params, &job)
        .await
    {
        uids.insert("job".into(), existing(j.uid()));
    }
    assert_eq!(
        uids.len(),
        3,
        "created a ConfigMap, a Secret and a Job in {ns}"
    );
    uids
}

async fn uids_now(ns: &str) -> BTreeMap<String, String> {
    let client = admin().await;
    let mut uids = BTreeMap::new();
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("settings")
        .await
        .unwrap();
    uids.insert("configmap".to_string(), cm.uid().unwrap());
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get("token")
        .await
        .unwrap();
    uids.insert("secret".to_string(), s.uid().unwrap());
    let j = Api::<Job>::namespaced(client.clone(), ns)
        .get("nightly")
        .await
        .unwrap();
    uids.insert("job".to_string(), j.uid().unwrap());
    uids
}

/// The reasons of the events about the cluster-scoped object `name`.
async fn event_reasons(name: &str) -> Vec<String> {
    objects::events_about(&admin().await, name)
        .await
        .into_iter()
        .map(|(reason, _, _)| reason)
        .collect()
}

async fn wait_event(name: &str, reason: &str) {
    support::wait_for(
        &format!("event {reason} on {name}"),
        TIMEOUT,
        || async move {
            event_reasons(name)
                .await
                .iter()
                .any(|r| r == reason)
                .then_some(())
        },
    )
    .await;
}

/// Waits until the member is in phase `want`. Waiting for `Active`, a User
/// invited to a personal workspace who has not answered accepts first, as
/// themself.
async fn wait_member_answering(ns: &str, name: &str, want: MemberPhase) -> WorkspaceMember {
    let admin = admin().await;
    let api: Api<WorkspaceMember> = Api::namespaced(admin.clone(), ns);
    if want == MemberPhase::Active {
        let seen = support::wait_for(&format!("member {ns}/{name} to report"), TIMEOUT, || {
            let api = api.clone();
            async move {
                let m = api.get(name).await.ok()?;
                m.status.as_ref()?.phase?;
                Some(m)
            }
        })
        .await;
        let invited = seen.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Invited);
        if invited && seen.spec.response.is_none() {
            objects::accept(&admin, ns, name, &seen.spec.subject.name, TIMEOUT).await;
        }
    }
    support::wait_for(
        &format!("member {ns}/{name} to be {want:?}"),
        TIMEOUT,
        || {
            let api = api.clone();
            async move {
                let m = api.get(name).await.ok()?;
                (m.status.as_ref()?.phase == Some(want)).then_some(m)
            }
        },
    )
    .await
}

/// `kubectl wait --for=jsonpath='{.status.phase}'=Completed` as `user`,
/// started now (while the user may read the transfer) and left running.
fn kubectl_wait_completed(user: &str, name: &str) -> Child {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(support::plane().kubeconfig())
        .args(["--as", user, "--as-group", "system:authenticated"])
        .args([
            "wait",
            &format!("wst/{name}"),
            "--for=jsonpath={.status.phase}=Completed",
            "--timeout=60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl wait")
}

fn finished_ok(child: Child) {
    let out = child.wait_with_output().expect("kubectl wait ends");
    assert!(
        out.status.success(),
        "kubectl wait failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Moves
// ---------------------------------------------------------------------------

/// alice's personal workspace with a member of every kind, on its way to
/// globex (admin carol; bob is a member of globex, dan and the group are
/// not; the ServiceAccount `agent` lives in the workspace, `ci` outside).
struct Lab {
    alice: String,
    carol: String,
    bob: String,
    dan: String,
    eng: String,
    org: String,
    ws: String,
}

impl Lab {
    fn new() -> Lab {
        let id = support::unique("u2o");
        let person = |p: &str| format!("{p}-{id}");
        Lab {
            alice: person("alice"),
            carol: person("carol"),
            bob: person("bob"),
            dan: person("dan"),
            eng: person("eng"),
            org: person("globex"),
            ws: person("lab"),
        }
    }

    /// The Organization, the Workspace, its members (all Active) and a
    /// ConfigMap, a Secret and a Job in it: their UIDs.
    async fn set_up(&self) -> BTreeMap<String, String> {
        let ws = &self.ws;
        create_organization(&self.org, &[&self.carol], vec![user(&self.bob)], None).await;
        workspace_by(&self.alice, ws, "User", &self.alice, json!({})).await;
        let alice = as_user(&self.alice).await;
        for m in [
            member(ws, "bob", user(&self.bob), "Developer"),
            member(ws, "dan", user(&self.dan), "Viewer"),
            member(ws, "eng", group(&self.eng), "Viewer"),
            member(ws, "agent", service_account(ws, "agent"), "Worker"),
            member(ws, "outside", service_account("default", "ci"), "Worker"),
            member(ws, "ivy", user(&self.ivy()), "Viewer"),
        ] {
            apply(&alice, m).await;
        }
        // bob and dan accept their invitations; ivy's stays open.
        let admin = admin().await;
        for (name, who) in [("bob", &self.bob), ("dan", &self.dan)] {
            objects::wait_member_phase(&admin, ws, name, "Invited", TIMEOUT).await;
            objects::accept(&admin, ws, name, who, TIMEOUT).await;
        }
        wait_member_answering(ws, "ivy", MemberPhase::Invited).await;
        for name in ["bob", "dan", "eng", "agent", "outside"] {
            wait_member_answering(ws, name, MemberPhase::Active).await;
        }
        assert!(is_owner(&self.alice, ws).await && !is_owner(&self.carol, ws).await);
        contents(ws).await
    }

    /// A user invited to the workspace who has not answered.
    fn ivy(&self) -> String {
        format!("ivy-{}", self.ws)
    }

    /// The preview, as the API and `kubectl describe` show it, and who may
    /// read it.
    async fn check_preview(&self, name: &str) {
        let pending = wait_transfer(name, "the impact preview", |t| {
            t.status.as_ref().and_then(|s| s.impact.as_ref()).is_some()
                && condition(t, "Validated") == Some(("True", "Valid"))
        })
        .await;
        let impact = pending.status.unwrap().impact.unwrap();
        let names = |list: &[workspace_operator::api::AffectedSubject]| -> Vec<String> {
            list.iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(
            names(&impact.members_losing_access),
            [self.dan.clone(), self.eng.clone()]
        );
        assert_eq!(names(&impact.service_accounts_losing_access), ["ci"]);
        assert_eq!(
            names(&impact.owners_losing_access),
            vec![self.alice.clone()]
        );
        assert_eq!(
            names(&impact.owners_gaining_access),
            vec![self.carol.clone()]
        );
        assert_eq!(impact.handle_available, Some(true));
        // Both sides read it through the grant; a stranger does not.
        wait_can_read(&self.carol, name).await;
        Kubectl::as_user(&self.carol, &[])
            .run(&["get", "wst", name])
            .success();
        let described = Kubectl::as_user(&self.alice, &[])
            .run(&["describe", "wst", name])
            .success()
            .stdout;
        // What the page's impact list says, in `kubectl describe`.
        for needle in [
            "Members Losing Access",
            "Service Accounts Losing Access",
            "Owners Gaining Access",
            self.dan.as_str(),
            "everything in it (history, configuration, Secrets) are kept",
            "its name does not change",
        ] {
            assert!(
                described.contains(needle),
                "describe lacks {needle:?}:\n{described}"
            );
        }
        Kubectl::as_user(&self.dan, &[])
            .run(&["get", "wst", name])
            .refused(&["forbidden"]);
    }

    /// Access after the move, as each subject.
    async fn check_access_after(&self) {
        let ws = &self.ws;
        assert!(!is_owner(&self.alice, ws).await && is_owner(&self.carol, ws).await);
        assert!(can(&self.bob, &[], "create", "configmaps", Some(ws), None).await);
        assert!(!can(&self.dan, &[], "get", "configmaps", Some(ws), None).await);
        assert!(!can("someone", &[&self.eng], "get", "configmaps", Some(ws), None).await);
        let agent = format!("system:serviceaccount:{ws}:agent");
        assert!(can(&agent, &[], "create", "pods", Some(ws), None).await);
        let ci = "system:serviceaccount:default:ci";
        assert!(!can(ci, &[], "create", "pods", Some(ws), None).await);
        // alice lost the Workspace object itself too.
        assert!(!objects::may_change_workspace(&self.alice, &[], ws).await);
        assert!(objects::may_change_workspace(&self.carol, &[], ws).await);
    }
}

#[tokio::test]
async fn a_personal_workspace_moves_to_an_organization_with_members_of_every_kind() {
    let _op = shared().await;
    let lab = Lab::new();
    let (ws, org) = (&lab.ws, &lab.org);
    let _dump = support::dump_on_failure(&[ws]);
    let before = lab.set_up().await;

    // alice proposes the move and approves her side in the same step.
    let name = format!("{ws}-to-{org}");
    let approved = json!({"spec": {"approvals": {"source": {"approvedBy": lab.alice}}}});
    let manifest = transfer_manifest(
        &name,
        ws,
        Some(("User", &lab.alice)),
        ("Organization", org),
        approved,
    );
    Kubectl::as_user(&lab.alice, &[])
        .create(&manifest)
        .success();
    lab.check_preview(&name).await;

    // carol accepts for globex, waiting with kubectl for the outcome.
    let waiting = kubectl_wait_completed(&lab.carol, &name);
    patch_answer(&lab.carol, &name, "target", "approvedBy")
        .await
        .success();
    finished_ok(waiting);

    let moved = objects::wait_ready(&admin().await, ws, "True", None, TIMEOUT).await;
    assert_eq!(&moved.spec.owner.name, org);
    assert_eq!(
        moved.status.as_ref().and_then(|s| s.namespace.as_deref()),
        Some(ws.as_str())
    );
    lab.check_access_after().await;
    for revoked in ["dan", "eng", "outside"] {
        let m = wait_member_answering(ws, revoked, MemberPhase::Revoked).await;
        let ready = objects::ready_of(&m.status.as_ref().unwrap().conditions).unwrap();
        assert_eq!(ready.reason, "RevokedByTransfer");
        assert!(ready.message.contains(&name), "{}", ready.message);
    }
    wait_member_answering(ws, "bob", MemberPhase::Active).await;
    // The move ended ivy's open invitation, and her answering grant with it.
    let ivy = wait_member_answering(ws, "ivy", MemberPhase::Revoked).await;
    let ready = objects::ready_of(&ivy.status.as_ref().unwrap().conditions).unwrap();
    assert_eq!(ready.reason, "InvitationRevoked");
    assert!(ready.message.contains(&name), "{}", ready.message);
    let invitee = lab.ivy();
    support::wait_for("ivy's answering grant to go", TIMEOUT, || async {
        let reads = can(
            &invitee,
            &[],
            "get",
            "workspacemembers.workspaces.dev",
            Some(ws),
            Some("ivy"),
        );
        (!reads.await).then_some(())
    })
    .await;
    assert_eq!(
        uids_now(ws).await,
        before,
        "everything in the namespace kept its UID"
    );
    // The audit trail, and the grant is gone with the transfer.
    for about in [ws, org, &name] {
        wait_event(about, "TransferCompleted").await;
    }
    assert!(
        event_reasons(ws)
            .await
            .contains(&"TransferStarted".to_string())
    );
    support::wait_for("the read grant to go", TIMEOUT, || async {
        let reads = can(
            &lab.carol,
            &[],
            "get",
            "workspacetransfers.workspaces.dev",
            None,
            Some(&name),
        );
        (!reads.await).then_some(())
    })
    .await;
}

/// acme's workspace with members of every kind: bob belongs to acme and
/// globex, carl and the group ops only to acme, and the ServiceAccount agent
/// lives in the workspace (whose namespace moves with it). ann administers
/// acme, carol globex; erin is a user.
struct Prod {
    ann: String,
    carol: String,
    erin: String,
    bob: String,
    carl: String,
    ops: String,
    acme: String,
    globex: String,
    ws: String,
    agent: String,
}

impl Prod {
    fn new() -> Prod {
        let id = support::unique("o2o");
        let person = |p: &str| format!("{p}-{id}");
        let ws = person("prod");
        Prod {
            agent: format!("system:serviceaccount:{ws}:agent"),
            ann: person("ann"),
            carol: person("carol"),
            erin: person("erin"),
            bob: person("bob"),
            carl: person("carl"),
            ops: person("ops"),
            acme: person("acme"),
            globex: person("globex"),
            ws,
        }
    }

    /// The Organizations, the Workspace and its members (all Active); the
    /// UIDs of what is in its namespace.
    async fn set_up(&self) -> BTreeMap<String, String> {
        let ws = &self.ws;
        let acme_members = vec![user(&self.bob), user(&self.carl), group(&self.ops)];
        create_organization(&self.acme, &[&self.ann], acme_members, None).await;
        create_organization(&self.globex, &[&self.carol], vec![user(&self.bob)], None).await;
        let handle = json!({"spec": {"handle": "prod"}});
        workspace_by(&self.ann, ws, "Organization", &self.acme, handle).await;
        let ann = as_user(&self.ann).await;
        for m in [
            member(ws, "bob", user(&self.bob), "Runner"),
            member(ws, "carl", user(&self.carl), "Developer"),
            member(ws, "ops", group(&self.ops), "Viewer"),
            member(ws, "agent", service_account(ws, "agent"), "Worker"),
        ] {
            apply(&ann, m).await;
        }
        for name in ["bob", "carl", "ops", "agent"] {
            wait_member_answering(ws, name, MemberPhase::Active).await;
        }
        contents(ws).await
    }

    /// acme to globex with a new handle, proposed by ann with spec.from.
    async fn to_globex(&self) {
        let (ws, first) = (&self.ws, format!("{}-a", self.ws));
        let extra = json!({"spec": {"newHandle": "prod-eu", "approvals": {"source": {"approvedBy": self.ann}}}});
        let from = Some(("Organization", self.acme.as_str()));
        let manifest = transfer_manifest(&first, ws, from, ("Organization", &self.globex), extra);
        Kubectl::as_user(&self.ann, &[]).create(&manifest).success();
        patch_answer(&self.carol, &first, "target", "approvedBy")
            .await
            .success();
        wait_transfer_phase(&admin().await, &first, TransferPhase::Completed).await;
        let moved =
            objects::wait_workspace_until(&admin().await, ws, "owned by globex", TIMEOUT, |w| {
                let status = w.status.as_ref();
                status
                    .and_then(|s| s.owner.as_ref())
                    .is_some_and(|o| o.name == self.globex)
                    && status.and_then(|s| s.handle.as_deref()) == Some("prod-eu")
            })
            .await;
        assert_eq!(moved.spec.handle.as_deref(), Some("prod-eu"));
        assert!(!is_owner(&self.ann, ws).await && is_owner(&self.carol, ws).await);
        // bob and the workspace's own ServiceAccount keep their roles
        // without a gap; carl and ops lose theirs.
        assert!(can(&self.bob, &[], "create", "jobs.batch", Some(ws), None).await);
        assert!(can(&self.agent, &[], "create", "pods", Some(ws), None).await);
        for kept in ["bob", "agent"] {
            wait_member_answering(ws, kept, MemberPhase::Active).await;
        }
        for revoked in ["carl", "ops"] {
            wait_member_answering(ws, revoked, MemberPhase::Revoked).await;
        }
        assert!(!can(&self.carl, &[], "get", "configmaps", Some(ws), None).await);
        assert!(!can("someone", &[&self.ops], "get", "configmaps", Some(ws), None).await);
    }

    /// globex to erin, proposed by erin without spec.from: carol approves
    /// once the operator has recorded the source.
    async fn to_erin(&self) {
        let (ws, second) = (&self.ws, format!("{}-b", self.ws));
        let manifest = transfer_manifest(&second, ws, None, ("User", &self.erin), json!({}));
        Kubectl::as_user(&self.erin, &[])
            .create(&manifest)
            .success();
        wait_transfer(&second, "the source recorded", |t| {
            t.status.as_ref().and_then(|s| s.source.as_ref()).is_some()
        })
        .await;
        patch_answer(&self.carol, &second, "source", "approvedBy")
            .await
            .success();
        patch_answer(&self.erin, &second, "target", "approvedBy")
            .await
            .success();
        wait_transfer_phase(&admin().await, &second, TransferPhase::Completed).await;
        objects::wait_workspace_until(&admin().await, ws, "owned by erin", TIMEOUT, |w| {
            let owner = w.status.as_ref().and_then(|s| s.owner.as_ref());
            owner.is_some_and(|o| o.name == self.erin)
        })
        .await;
        assert!(!is_owner(&self.carol, ws).await && is_owner(&self.erin, ws).await);
        // A personal workspace keeps every member it has.
        assert!(can(&self.bob, &[], "create", "jobs.batch", Some(ws), None).await);
        assert!(can(&self.agent, &[], "create", "pods", Some(ws), None).await);
    }
}

#[tokio::test]
async fn organization_to_organization_with_a_new_handle_then_to_a_user() {
    let _op = shared().await;
    let prod = Prod::new();
    let _dump = support::dump_on_failure(&[&prod.ws]);
    let before = prod.set_up().await;
    prod.to_globex().await;
    prod.to_erin().await;
    assert_eq!(uids_now(&prod.ws).await, before);
}

#[tokio::test]
async fn a_personal_workspace_moves_to_another_user() {
    let _op = shared().await;
    let id = support::unique("u2u");
    let (alice, frank, gus) = (
        format!("alice-{id}"),
        format!("frank-{id}"),
        format!("gus-{id}"),
    );
    let ws = format!("notes-{id}");
    workspace_by(&alice, &ws, "User", &alice, json!({})).await;
    apply(
        &as_user(&alice).await,
        member(&ws, "gus", user(&gus), "Viewer"),
    )
    .await;
    let admin = admin().await;
    objects::wait_member_phase(&admin, &ws, "gus", "Invited", TIMEOUT).await;
    objects::accept(&admin, &ws, "gus", &gus, TIMEOUT).await;
    let name = format!("{ws}-to-frank");
    // frank asks for it (server-side apply works before he may read it);
    // alice approves.
    Kubectl::as_user(&frank, &[])
        .apply_server_side(&transfer_manifest(
            &name,
            &ws,
            None,
            ("User", &frank),
            json!({"spec": {"approvals": {"target": {"approvedBy": frank}}}}),
        ))
        .success();
    wait_transfer(&name, "the source recorded", |t| {
        t.status.as_ref().and_then(|s| s.source.as_ref()).is_some()
    })
    .await;
    patch_answer(&alice, &name, "source", "approvedBy")
        .await
        .success();
    wait_transfer_phase(&admin, &name, TransferPhase::Completed).await;
    support::wait_for("frank to hold Owner", TIMEOUT, || async {
        (is_owner(&frank, &ws).await && !is_owner(&alice, &ws).await).then_some(())
    })
    .await;
    // A personal workspace keeps its collaborators.
    assert!(can(&gus, &[], "get", "configmaps", Some(&ws), None).await);
}

#[tokio::test]
async fn the_example_transfer_moves_alice_sandbox_into_acme() {
    let _op = shared().await;
    let root = support::repo_root().join("examples");
    let read = |f: &str| std::fs::read_to_string(root.join(f)).expect("example");
    let alice = "alice@example.com";
    Kubectl::as_user(alice, &[])
        .create(&read("personal-workspace.yaml"))
        .success();
    support::apply_yaml(&admin().await, &read("organization.yaml")).await;
    objects::wait_ready(&admin().await, "alice-sandbox", "True", None, TIMEOUT).await;
    Kubectl::as_user(alice, &[])
        .create(&read("transfer.yaml"))
        .success();
    patch_answer(alice, "sandbox-to-acme", "source", "approvedBy")
        .await
        .success();
    let waiting = kubectl_wait_completed(alice, "sandbox-to-acme");
    patch_answer(alice, "sandbox-to-acme", "target", "approvedBy")
        .await
        .success();
    finished_ok(waiting);
    let ws =
        objects::wait_workspace_until(&admin().await, "alice-sandbox", "in acme", TIMEOUT, |w| {
            w.status
                .as_ref()
                .and_then(|s| s.owner.as_ref())
                .is_some_and(|o| o.name == "acme")
        })
        .await;
    assert_eq!(ws.spec.handle.as_deref(), Some("alice-sandbox"));
}

// ---------------------------------------------------------------------------
// Who may do what
// ---------------------------------------------------------------------------

/// alice's workspace, with the Developer member dev, that globex (admin
/// carol) might receive; mallory is a stranger.
struct Vault {
    alice: String,
    carol: String,
    mallory: String,
    dev: String,
    org: String,
    ws: String,
}

impl Vault {
    async fn set_up() -> Vault {
        let id = support::unique("forge");
        let person = |p: &str| format!("{p}-{id}");
        let v = Vault {
            alice: person("alice"),
            carol: person("carol"),
            mallory: person("mallory"),
            dev: person("dev"),
            org: person("globex"),
            ws: person("vault"),
        };
        create_organization(&v.org, &[&v.carol], vec![], None).await;
        workspace_by(&v.alice, &v.ws, "User", &v.alice, json!({})).await;
        let alice = as_user(&v.alice).await;
        apply(&alice, member(&v.ws, "dev", user(&v.dev), "Developer")).await;
        wait_member_answering(&v.ws, "dev", MemberPhase::Active).await;
        v
    }

    fn to(&self) -> (&str, &str) {
        ("Organization", self.org.as_str())
    }

    /// alice still owns the workspace.
    async fn unchanged(&self) {
        let ws = objects::wait_ready(&admin().await, &self.ws, "True", None, TIMEOUT).await;
        assert_eq!(ws.spec.owner.name, self.alice);
    }
}

#[tokio::test]
async fn a_stranger_cannot_propose_a_move_or_sign_for_the_owner() {
    let _op = shared().await;
    let v = Vault::set_up().await;
    let (ws, mallory) = (&v.ws, &v.mallory);
    let as_mallory = Kubectl::as_user(mallory, &[]);
    let alice_from = Some(("User", v.alice.as_str()));
    as_mallory
        .create(&transfer_manifest(
            &format!("{ws}-m1"),
            ws,
            alice_from,
            v.to(),
            json!({}),
        ))
        .refused(&["only if you may answer for one of its sides"]);
    let forged = json!({"spec": {"approvals": {"source": {"approvedBy": v.alice}}}});
    as_mallory
        .create(&transfer_manifest(
            &format!("{ws}-m2"),
            ws,
            None,
            ("User", mallory),
            forged,
        ))
        .refused(&["approvals.source"]);
    // Claiming to own it gets an object that never runs.
    let lie = format!("{ws}-m3");
    let both = json!({"spec": {"approvals": {"source": {"approvedBy": mallory}, "target": {"approvedBy": mallory}}}});
    let mine = Some(("User", mallory.as_str()));
    as_mallory
        .create(&transfer_manifest(&lie, ws, mine, ("User", mallory), both))
        .success();
    let failed = wait_transfer_phase(&admin().await, &lie, TransferPhase::Failed).await;
    assert_eq!(
        condition(&failed, "Validated"),
        Some(("False", "SourceMismatch"))
    );
    v.unchanged().await;
}

#[tokio::test]
async fn each_side_answers_only_for_itself() {
    let _op = shared().await;
    let v = Vault::set_up().await;
    let name = format!("{}-ok", v.ws);
    Kubectl::as_user(&v.alice, &[])
        .create(&transfer_manifest(
            &name,
            &v.ws,
            Some(("User", &v.alice)),
            v.to(),
            json!({}),
        ))
        .success();
    wait_transfer(&name, "the source recorded", |t| {
        t.status.as_ref().and_then(|s| s.source.as_ref()).is_some()
    })
    .await;
    // The target side is answered only by globex's admins, the source side
    // only by an Owner of the workspace.
    let target_only = "can be given only by an admin of the Organization";
    refused_with(api_answer(&v.mallory, &name, "target").await, target_only);
    let source_only = "can be given only by an Owner of it";
    refused_with(api_answer(&v.dev, &name, "source").await, source_only);
    refused_with(api_answer(&v.carol, &name, "source").await, source_only);
    // A stranger may not read, cancel or annotate it.
    let as_mallory = Kubectl::as_user(&v.mallory, &[]);
    as_mallory
        .run(&["get", "wst", &name])
        .refused(&["forbidden"]);
    as_mallory
        .run(&["delete", "wst", &name, "--wait=false"])
        .refused(&["forbidden"]);
    as_mallory
        .run(&["annotate", "wst", &name, "x=y"])
        .refused(&["forbidden"]);
    let t = get_transfer(&name).await.unwrap();
    let answered = t.spec.approvals.and_then(|a| a.source.or(a.target));
    assert_eq!(answered, None);
    v.unchanged().await;
}

#[tokio::test]
async fn rejection_and_cancellation_leave_the_workspace_where_it_was() {
    let _op = shared().await;
    let id = support::unique("rej");
    let (alice, carol) = (format!("alice-{id}"), format!("carol-{id}"));
    let org = format!("globex-{id}");
    let ws = format!("desk-{id}");
    create_organization(&org, &[&carol], vec![], None).await;
    workspace_by(&alice, &ws, "User", &alice, json!({})).await;
    let to = ("Organization", org.as_str());
    let approved = json!({"spec": {"approvals": {"source": {"approvedBy": alice}}}});

    let refused = format!("{ws}-r");
    Kubectl::as_user(&alice, &[])
        .create(&transfer_manifest(
            &refused,
            &ws,
            Some(("User", &alice)),
            to,
            approved.clone(),
        ))
        .success();
    wait_can_read(&carol, &refused).await;
    Kubectl::as_user(&carol, &[])
        .run(&["patch", "wst", &refused, "--type=merge", "-p",
               &json!({"spec": {"approvals": {"target": {"rejectedBy": carol, "comment": "Not now."}}}}).to_string()])
        .success();
    let t = wait_transfer_phase(&admin().await, &refused, TransferPhase::Rejected).await;
    assert_eq!(condition(&t, "Stalled"), Some(("True", "Rejected")));
    wait_event(&ws, "TransferRejected").await;
    wait_event(&org, "TransferRejected").await;

    let cancelled = format!("{ws}-c");
    Kubectl::as_user(&alice, &[])
        .create(&transfer_manifest(
            &cancelled,
            &ws,
            Some(("User", &alice)),
            to,
            approved,
        ))
        .success();
    wait_transfer(&cancelled, "the finalizer", |t| !t.finalizers().is_empty()).await;
    Kubectl::as_user(&alice, &[])
        .run(&["delete", "wst", &cancelled, "--timeout=60s"])
        .success();
    wait_event(&ws, "TransferCancelled").await;
    assert!(get_transfer(&cancelled).await.is_none());
    let ws_now = objects::wait_ready(&admin().await, &ws, "True", None, TIMEOUT).await;
    assert_eq!(ws_now.spec.owner.name, alice);
    assert!(is_owner(&alice, &ws).await && !is_owner(&carol, &ws).await);
}

#[tokio::test]
async fn validation_keeps_it_pending_with_a_reason() {
    let _op = shared().await;
    let id = support::unique("val");
    let (alice, carol) = (format!("alice-{id}"), format!("carol-{id}"));
    let (full, taken) = (format!("full-{id}"), format!("taken-{id}"));
    let ws = format!("api-{id}");
    create_organization(&full, &[&carol], vec![], Some(1)).await;
    create_organization(&taken, &[&carol], vec![], None).await;
    workspace_by(&carol, &format!("f-{id}"), "Organization", &full, json!({})).await;
    workspace_by(
        &carol,
        &format!("t-{id}"),
        "Organization",
        &taken,
        json!({"spec": {"handle": "api"}}),
    )
    .await;
    workspace_by(
        &alice,
        &ws,
        "User",
        &alice,
        json!({"spec": {"handle": "api"}}),
    )
    .await;
    let approved = json!({"spec": {"approvals": {"source": {"approvedBy": alice}}}});
    let create = |name: &str, to: (&str, &str), extra: Value| {
        Kubectl::as_user(&alice, &[])
            .create(&transfer_manifest(
                name,
                &ws,
                Some(("User", &alice)),
                to,
                extra,
            ))
            .success();
    };

    // The handle is taken in the target; the limit is reached.
    let (a, b) = (format!("{ws}-handle"), format!("{ws}-limit"));
    create(&a, ("Organization", &taken), json!({}));
    let t = wait_invalid(&a, "HandleTaken").await;
    assert_eq!(
        t.status.unwrap().impact.unwrap().handle_available,
        Some(false)
    );
    // A second transfer of the same workspace waits for the first.
    create(&b, ("Organization", &full), json!({}));
    wait_invalid(&b, "TransferInProgress").await;
    Kubectl::as_user(&alice, &[])
        .run(&["delete", "wst", &a])
        .success();
    let t = wait_invalid(&b, "TargetLimitReached").await;
    let usage = t.status.unwrap().impact.unwrap().target_workspaces.unwrap();
    assert_eq!((usage.used, usage.limit), (1, Some(1)));
    Kubectl::as_user(&alice, &[])
        .run(&["delete", "wst", &b])
        .success();

    // A target that does not exist.
    let c = format!("{ws}-nowhere");
    create(&c, ("Organization", &format!("nowhere-{id}")), json!({}));
    wait_invalid(&c, "TargetNotFound").await;
    Kubectl::as_user(&alice, &[])
        .run(&["delete", "wst", &c])
        .success();

    // Approved by both, but never run while invalid: the owner stays.
    let d = format!("{ws}-both");
    create(&d, ("Organization", &taken), approved);
    patch_answer(&carol, &d, "target", "approvedBy")
        .await
        .success();
    let t = wait_invalid(&d, "HandleTaken").await;
    assert_eq!(condition(&t, "Stalled"), Some(("True", "HandleTaken")));
    assert!(is_owner(&alice, &ws).await);
}

#[tokio::test]
async fn a_workspace_deleted_before_the_transfer_runs_fails_it() {
    let _op = shared().await;
    let id = support::unique("del");
    let (alice, carol) = (format!("alice-{id}"), format!("carol-{id}"));
    let org = format!("globex-{id}");
    let ws = format!("tmp-{id}");
    create_organization(&org, &[&carol], vec![], None).await;
    workspace_by(&alice, &ws, "User", &alice, json!({})).await;
    let name = format!("{ws}-t");
    Kubectl::as_user(&alice, &[])
        .create(&transfer_manifest(
            &name,
            &ws,
            Some(("User", &alice)),
            ("Organization", &org),
            json!({"spec": {"approvals": {"source": {"approvedBy": alice}}}}),
        ))
        .success();
    wait_transfer(&name, "the source recorded", |t| {
        t.status.as_ref().and_then(|s| s.source.as_ref()).is_some()
    })
    .await;
    Api::<Workspace>::all(as_user(&alice).await)
        .delete(&ws, &DeleteParams::default())
        .await
        .expect("alice deletes her workspace");
    let t = wait_transfer_phase(&admin().await, &name, TransferPhase::Failed).await;
    assert_eq!(condition(&t, "Ready").map(|c| c.1), Some("TransferFailed"));
    // A late approval changes nothing.
    late_answer(&carol, &name, "target").await;
    wait_shared_reconciled(&name).await;
    assert_eq!(
        transfer_phase(&get_transfer(&name).await.unwrap()),
        Some(TransferPhase::Failed)
    );
}

// ---------------------------------------------------------------------------
// Operators of their own
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unanswered_transfer_expires_after_the_ttl() {
    let _alone = alone().await;
    let op = Operator::alone(&["--transfer-ttl=5s"], &[]);
    let id = support::unique("ttl");
    let (alice, carol) = (format!("alice-{id}"), format!("carol-{id}"));
    let org = format!("globex-{id}");
    let ws = format!("old-{id}");
    create_organization(&org, &[&carol], vec![], None).await;
    workspace_by(&alice, &ws, "User", &alice, json!({})).await;
    let name = format!("{ws}-t");
    Kubectl::as_user(&alice, &[])
        .create(&transfer_manifest(
            &name,
            &ws,
            Some(("User", &alice)),
            ("Organization", &org),
            json!({"spec": {"approvals": {"source": {"approvedBy": alice}}}}),
        ))
        .success();
    let t = wait_transfer_phase(&admin().await, &name, TransferPhase::Expired).await;
    assert_eq!(condition(&t, "Ready").map(|c| c.1), Some("Expired"));
    wait_event(&ws, "TransferExpired").await;
    // A late approval does not bring it back.
    late_answer(&carol, &name, "target").await;
    let version = get_transfer(&name)
        .await
        .and_then(|t| t.resource_version())
        .unwrap();
    op.wait_reconciled("transfer", "", &name, &version, TIMEOUT)
        .await;
    let t = get_transfer(&name).await.unwrap();
    assert_eq!(transfer_phase(&t), Some(TransferPhase::Expired));
    assert!(is_owner(&alice, &ws).await && !is_owner(&carol, &ws).await);
    drop(op);
}

#[tokio::test]
async fn an_operator_killed_after_each_step_converges() {
    let _alone = alone().await;
    for step in ["Started", "MembersRevoked", "OwnerSwitched", "Completed"] {
        killed_after(step).await;
    }
}

/// One transfer, with an operator that kills itself after `step`; then a
/// fresh operator finishes it. Exactly one of the two owners holds the
/// Owner role when the first one dies, and after the end.
async fn killed_after(step: &str) {
    let it = interrupted_after(step).await;
    let (alice, carol, ws, name) = (&it.alice, &it.carol, &it.ws, &it.name);
    let _dump = support::dump_on_failure(&[ws]);
    let owners = (is_owner(alice, ws).await, is_owner(carol, ws).await);
    assert!(
        owners.0 != owners.1,
        "after {step}: owners (alice, carol) = {owners:?}"
    );
    let t = get_transfer(name).await.unwrap();
    assert_ne!(
        transfer_phase(&t),
        Some(TransferPhase::Pending),
        "after {step}: it had started"
    );

    let second = Operator::alone(&[], &[]);
    let done = wait_transfer_phase(&admin().await, name, TransferPhase::Completed).await;
    let from = done.status.as_ref().and_then(|s| s.from.as_ref());
    assert!(
        from.is_some_and(|f| &f.name == alice),
        "status.from: {from:?}"
    );
    support::wait_for(
        &format!("after {step}: carol alone to hold Owner"),
        TIMEOUT,
        || async { (is_owner(carol, ws).await && !is_owner(alice, ws).await).then_some(()) },
    )
    .await;
    let m = wait_member_answering(ws, "dan", MemberPhase::Revoked).await;
    let ready = objects::ready_of(&m.status.unwrap().conditions)
        .cloned()
        .unwrap();
    assert_eq!(ready.reason, "RevokedByTransfer");
    let moved = objects::wait_ready(&admin().await, ws, "True", None, TIMEOUT).await;
    assert_eq!(
        (moved.spec.owner.name.as_str(), moved.spec.handle.as_deref()),
        (it.org.as_str(), Some("moved"))
    );
    assert_eq!(uids_now(ws).await, it.before, "after {step}");
    // Never re-run: the finalizer and grant are gone, and it stays Completed.
    wait_transfer(name, "no finalizer", |t| t.finalizers().is_empty()).await;
    drop(second);
}

/// A transfer interrupted after a step, its operator dead.
struct Interrupted {
    alice: String,
    carol: String,
    org: String,
    ws: String,
    name: String,
    /// The UIDs of what is in the namespace.
    before: BTreeMap<String, String>,
}

/// alice's workspace (with the Viewer member dan, who does not belong to
/// the target) on its way to a new Organization with a new handle, the
/// operator killed after `step`; no operator running.
async fn interrupted_after(step: &str) -> Interrupted {
    let id = support::unique(&format!("int-{}", step.to_lowercase()));
    let (alice, carol) = (format!("alice-{id}"), format!("carol-{id}"));
    let org = format!("globex-{id}");
    let ws = format!("i-{id}");
    let fault = [("WORKSPACE_OPERATOR_FAULT_AFTER_TRANSFER_STEP", step)];
    let mut op = Operator::alone(&[], &fault);
    create_organization(&org, &[&carol], vec![], None).await;
    workspace_by(&alice, &ws, "User", &alice, json!({})).await;
    apply(
        &as_user(&alice).await,
        member(&ws, "dan", user("dan"), "Viewer"),
    )
    .await;
    wait_member_answering(&ws, "dan", MemberPhase::Active).await;
    let before = contents(&ws).await;
    let name = format!("{ws}-t");
    let extra =
        json!({"spec": {"newHandle": "moved", "approvals": {"source": {"approvedBy": alice}}}});
    Kubectl::as_user(&alice, &[])
        .create(&transfer_manifest(
            &name,
            &ws,
            Some(("User", &alice)),
            ("Organization", &org),
            extra,
        ))
        .success();
    patch_answer(&carol, &name, "target", "approvedBy")
        .await
        .success();
    support::wait_for(
        &format!("the operator to die after {step}"),
        TIMEOUT,
        || {
            let exited = op.has_exited();
            async move { exited.then_some(()) }
        },
    )
    .await;
    Interrupted {
        alice,
        carol,
        org,
        ws,
        name,
        before,
    }
}

#[tokio::test]
async fn a_workspace_deleted_while_the_transfer_runs_fails_it() {
    let _alone = alone().await;
    let it = interrupted_after("Started").await;
    Api::<Workspace>::all(as_user(&it.alice).await)
        .delete(&it.ws, &DeleteParams::default())
        .await
        .expect("alice deletes her workspace");
    let _op = Operator::alone(&[], &[]);
    let t = wait_transfer_phase(&admin().await, &it.name, TransferPhase::Failed).await;
    assert_eq!(condition(&t, "Ready").map(|c| c.1), Some("TransferFailed"));
    wait_event(&it.name, "TransferFailed").await;
}

#[tokio::test]
async fn a_target_deleted_after_the_owner_changed_puts_the_owner_back() {
    let _alone = alone().await;
    let it = interrupted_after("OwnerSwitched").await;
    let moved = Api::<Workspace>::all(admin().await)
        .get(&it.ws)
        .await
        .unwrap();
    assert_eq!(
        moved.spec.owner.name, it.org,
        "the operator died after changing the owner"
    );
    Api::<workspace_operator::api::Organization>::all(admin().await)
        .delete(&it.org, &DeleteParams::default())
        .await
        .expect("delete the target organization");
    let _op = Operator::alone(&[], &[]);
    let t = wait_transfer_phase(&admin().await, &it.name, TransferPhase::Failed).await;
    assert_eq!(condition(&t, "Ready").map(|c| c.1), Some("TargetNotFound"));
    let back = objects::wait_ready(&admin().await, &it.ws, "True", None, TIMEOUT).await;
    assert_eq!(back.spec.owner.name, it.alice);
    support::wait_for("alice to hold Owner again", TIMEOUT, || async {
        is_owner(&it.alice, &it.ws).await.then_some(())
    })
    .await;
    // The member the transfer revoked comes back: the transfer no longer applies.
    wait_member_answering(&it.ws, "dan", MemberPhase::Active).await;
}

#[tokio::test]
async fn a_restarted_operator_writes_nothing_for_settled_transfers() {
    let _alone = alone().await;
    let plane = support::plane();
    let first = Operator::alone(&[], &[]);
    let id = support::unique("quiet");
    let (alice, carol) = (format!("alice-{id}"), format!("carol-{id}"));
    let org = format!("globex-{id}");
    let (moved, waiting) = (format!("q1-{id}"), format!("q2-{id}"));
    create_organization(&org, &[&carol], vec![], None).await;
    for ws in [&moved, &waiting] {
        workspace_by(&alice, ws, "User", &alice, json!({})).await;
    }
    let approved = json!({"spec": {"approvals": {"source": {"approvedBy": alice}}}});
    let (done, pending) = (format!("{moved}-t"), format!("{waiting}-t"));
    for (name, ws) in [(&done, &moved), (&pending, &waiting)] {
        let from = Some(("User", alice.as_str()));
        let manifest = transfer_manifest(name, ws, from, ("Organization", &org), approved.clone());
        Kubectl::as_user(&alice, &[]).create(&manifest).success();
    }
    patch_answer(&carol, &done, "target", "approvedBy")
        .await
        .success();
    wait_transfer(&done, "completed and released", |t| {
        transfer_phase(t) == Some(TransferPhase::Completed) && t.finalizers().is_empty()
    })
    .await;
    wait_transfer(&pending, "its preview", |t| {
        condition(t, "Validated") == Some(("True", "Valid"))
    })
    .await;
    first.kill9();
    drop(first);

    let mark = plane.audit_mark();
    let second = Operator::alone(&[], &[]);
    for name in [&done, &pending] {
        support::wait_for(
            &format!("the restarted operator to look at {name}"),
            TIMEOUT,
            || async { (!second.reconciled("transfer", "", name).is_empty()).then_some(()) },
        )
        .await;
    }
    // About this scenario's objects (other tests' may still be settling).
    let writes: Vec<_> = plane
        .writes_since(mark, support::operator::OPERATOR_USER)
        .into_iter()
        .filter(|w| w.name.contains(&id) || w.namespace.contains(&id))
        .collect();
    assert!(writes.is_empty(), "a restarted operator wrote: {writes:?}");
}
