//! `kubectl workspaces`, the plugin binary, run as each user with a
//! kubeconfig of their own (impersonation): owners, organization admins,
//! members of several workspaces, strangers, invitees and both sides of a
//! transfer see what the API server lets them see, `use` points `kubectl`
//! at the right namespace, and the answers they give are signed as them.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::objects::{
    DIRECTORY, apply, create_ready_workspace, directory_entry, group, member, organization, user,
    wait_directory, wait_member_phase, wait_transfer_phase, workspace,
};
use support::plugin::{Plugin, entry, names};
use workspace_operator::api::{Subject, TransferPhase, WorkspaceMember};
use workspace_operator::controller::directory::build::entry_name;

const TIMEOUT: Duration = Duration::from_secs(60);

/// An organization with admin `admin_user`, members `bob` and the group
/// `eng`, and three of its workspaces: bob is a Developer of the first, a
/// Viewer of the second and, through `eng`, a Runner of the third. alice
/// owns a personal workspace.
struct World {
    org: String,
    alice: String,
    admin_user: String,
    bob: String,
    eng: String,
    personal: String,
    team: [String; 3],
}

async fn world() -> World {
    let plane = support::plane();
    support::operator::operator();
    let admin = plane.admin().await;
    let org = support::unique("cli-org");
    let w = World {
        alice: format!("alice@{org}.io"),
        admin_user: format!("olga@{org}.io"),
        bob: format!("bob@{org}.io"),
        eng: format!("{org}-eng"),
        personal: format!("{org}-alice"),
        team: [0, 1, 2].map(|i| format!("{org}-team{i}")),
        org,
    };
    let extra = json!({"spec": {"members": [user(&w.bob), group(&w.eng)]}});
    apply(&admin, organization(&w.org, &[&w.admin_user], extra)).await;
    let alice = plane.client_as(&w.alice, &[]).await;
    let personal = workspace(
        &w.personal,
        "User",
        &w.alice,
        json!({"spec": {"handle": "lab"}}),
    );
    create_ready_workspace(&alice, &admin, personal).await;
    for (i, name) in w.team.iter().enumerate() {
        let handle = json!({"spec": {"handle": format!("team{i}")}});
        let value = workspace(name, "Organization", &w.org, handle);
        create_ready_workspace(&admin, &admin, value).await;
    }
    let grants = [
        (Subject::user(&w.bob), "Developer"),
        (Subject::user(&w.bob), "Viewer"),
        (Subject::group(&w.eng), "Runner"),
    ];
    for (ns, (subject, role)) in w.team.iter().zip(grants) {
        let value = serde_json::to_value(&subject).expect("a subject");
        apply(&admin, member(ns, "m", value, role)).await;
        wait_member_phase(&admin, ns, "m", "Active", TIMEOUT).await;
        let verb = format!("member-{}", role.to_lowercase());
        wait_directory(&admin, &subject, ns, Some(&verb)).await;
    }
    w
}

#[tokio::test]
async fn each_user_lists_the_workspaces_they_belong_to_and_strangers_see_none() {
    let w = world().await;

    let alice = Plugin::as_user(&w.alice, &[]).json(&["ls"]);
    assert_eq!(names(&alice), vec![w.personal.clone()]);
    let mine = entry(&alice, &w.personal);
    assert_eq!(
        (mine["role"].as_str(), mine["via"].as_str()),
        (Some("Owner"), Some("owner"))
    );
    assert_eq!(mine["handle"], "lab");
    assert_eq!(mine["namespace"], w.personal.as_str());

    // -A lists every Workspace, with a role only where the caller has one.
    let every = Plugin::as_user(&w.alice, &[]).json(&["ls", "-A"]);
    assert_eq!(entry(&every, &w.team[0])["role"], "-");
    assert_eq!(entry(&every, &w.personal)["role"], "Owner");

    let admin = Plugin::as_user(&w.admin_user, &[]).json(&["ls"]);
    assert_eq!(names(&admin), w.team.to_vec());
    assert!(
        admin
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["role"] == "Owner")
    );

    let bob = Plugin::as_user(&w.bob, &[&w.eng]).json(&["ls"]);
    assert_eq!(names(&bob), w.team.to_vec());
    let roles: Vec<(&str, &str)> = w
        .team
        .iter()
        .map(|n| entry(&bob, n))
        .map(|e| (e["role"].as_str().unwrap(), e["via"].as_str().unwrap()))
        .collect();
    let via_group = format!("group {}", w.eng);
    assert_eq!(
        roles,
        vec![
            ("Developer", "member"),
            ("Viewer", "member"),
            ("Runner", via_group.as_str())
        ]
    );
    // Without the group, bob is not a Runner of the third.
    let bob_alone = Plugin::as_user(&w.bob, &[]).json(&["ls"]);
    assert_eq!(names(&bob_alone), w.team[..2].to_vec());

    let stranger = Plugin::as_user(&format!("mallory@{}.io", w.org), &[]);
    assert_eq!(stranger.json(&["ls"]), json!([]));
    let table = stranger.run(&["ls"]).success();
    assert!(table.stdout.is_empty(), "a stranger sees: {}", table.stdout);
    assert!(table.stderr.contains("no workspace"), "{}", table.stderr);

    // The table has the columns kubectl users expect, and -o wide says why.
    let wide = Plugin::as_user(&w.bob, &[&w.eng])
        .run(&["ls", "-o", "wide"])
        .success();
    assert!(wide.stdout.starts_with("NAME"), "{}", wide.stdout);
    for column in [
        "OWNER",
        "HANDLE",
        "ROLE",
        "PHASE",
        "NAMESPACE",
        "VIA",
        "MEMBER",
    ] {
        assert!(
            wide.stdout.contains(column),
            "{column} missing:\n{}",
            wide.stdout
        );
    }
}

#[tokio::test]
async fn ls_reads_the_directory_and_nobody_reads_another_subjects_entry() {
    let w = world().await;
    let bob = Plugin::as_user(&w.bob, &[&w.eng]);
    let wide = bob.run(&["ls", "-o", "wide"]).success();
    assert!(
        wide.stderr.contains("from the workspace directory"),
        "{}",
        wide.stderr
    );
    // The directory is what the API server tells bob about himself in its
    // namespace: his entry and his group's, by user and by group.
    let own = bob
        .kubectl(&["auth", "can-i", "--list", "-n", DIRECTORY])
        .success();
    let verbs = ["member-developer", "member-viewer", "member-runner"];
    for needle in w.team.iter().map(String::as_str).chain(verbs) {
        assert!(own.stdout.contains(needle), "{needle}? {}", own.stdout);
    }

    // A stranger's review shows none of it, and nobody may read the entries
    // themselves, not even their own.
    let stranger = Plugin::as_user(&format!("mallory@{}.io", w.org), &[]);
    let theirs = stranger
        .kubectl(&["auth", "can-i", "--list", "-n", DIRECTORY])
        .success();
    for ws in &w.team {
        assert!(!theirs.stdout.contains(ws.as_str()), "{}", theirs.stdout);
    }
    let bobs = entry_name(&Subject::user(&w.bob));
    for who in [&stranger, &bob] {
        who.kubectl(&["get", "roles", "-n", DIRECTORY])
            .refused(&["forbidden"]);
        who.kubectl(&["get", "role", &bobs, "-n", DIRECTORY])
            .refused(&["forbidden"]);
        who.kubectl(&["get", "rolebinding", &bobs, "-n", DIRECTORY])
            .refused(&["forbidden"]);
    }

    // Without a directory (an install that keeps none), the scan finds the
    // same workspaces and says so.
    let scan = bob
        .run(&[
            "--directory-namespace",
            "no-such-directory",
            "ls",
            "-o",
            "wide",
        ])
        .success();
    assert!(scan.stderr.contains("scan"), "{}", scan.stderr);
    let scanned = bob.json(&["--directory-namespace", "no-such-directory", "ls"]);
    assert_eq!(scanned, bob.json(&["ls"]));
}

#[tokio::test]
async fn the_directory_follows_a_role_change_and_the_entry_goes_with_the_last_membership() {
    let w = world().await;
    let admin = support::plane().admin().await;
    let bob_subject = Subject::user(&w.bob);
    let bob = Plugin::as_user(&w.bob, &[]);
    apply(&admin, member(&w.team[0], "m", user(&w.bob), "Runner")).await;
    wait_directory(&admin, &bob_subject, &w.team[0], Some("member-runner")).await;
    let listed = bob.run(&["ls"]).success().stdout;
    let row = listed
        .lines()
        .find(|l| l.starts_with(w.team[0].as_str()))
        .unwrap_or_else(|| {
            panic!(
                "{} not listed:
{listed}",
                w.team[0]
            )
        });
    assert!(row.contains("Runner"), "{row}");

    for ns in &w.team[..2] {
        Api::<WorkspaceMember>::namespaced(admin.clone(), ns)
            .delete("m", &Default::default())
            .await
            .expect("delete bob's member");
    }
    support::wait_for("bob's directory entry to go", TIMEOUT, || async {
        directory_entry(&admin, &bob_subject)
            .await?
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(bob.json(&["ls"]), json!([]));
    // His group's entry stays.
    let with_group = Plugin::as_user(&w.bob, &[&w.eng]).json(&["ls"]);
    assert_eq!(names(&with_group), vec![w.team[2].clone()]);
}

#[tokio::test]
async fn whoami_names_the_user_their_groups_and_the_accounts_they_administer() {
    let w = world().await;
    let out = Plugin::as_user(&w.admin_user, &["ops"])
        .run(&["whoami"])
        .success()
        .stdout;
    assert!(
        out.contains(&format!("User:     {}", w.admin_user)),
        "{out}"
    );
    assert!(
        out.contains("ops") && out.contains("system:authenticated"),
        "{out}"
    );
    assert!(out.contains(&format!("Organization/{}", w.org)), "{out}");
    let bob = Plugin::as_user(&w.bob, &[]).json(&["whoami"]);
    assert_eq!(bob["username"], w.bob.as_str());
    assert_eq!(
        bob["organizations"],
        json!([]),
        "a member administers nothing"
    );
}

#[tokio::test]
async fn use_points_kubectl_at_the_workspace_namespace() {
    let w = world().await;
    let admin = support::plane().admin().await;
    let ns = &w.team[0];
    let marker =
        serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": "marker"}})).unwrap();
    Api::<ConfigMap>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &marker)
        .await
        .expect("a ConfigMap in the workspace");

    let bob = Plugin::as_user(&w.bob, &[]);
    bob.kubectl(&["get", "configmap", "marker"])
        .refused(&["forbidden"]);
    let used = bob.run(&["use", &format!("{}/team0", w.org)]).success();
    assert!(
        used.stdout.contains(&format!("-> \"{ns}\"")),
        "{}",
        used.stdout
    );
    let pods = bob.kubectl(&["get", "pods"]).success();
    assert!(
        pods.stderr.contains(&format!("in {ns} namespace")),
        "{}",
        pods.stderr
    );
    bob.kubectl(&["get", "configmap", "marker"]).success();

    // A context per workspace: the current context changes, the old one stays.
    let second = bob.run(&["use", &w.team[1], "--new-context"]).success();
    assert!(
        second.stdout.contains(&format!("workspace-{}", w.team[1])),
        "{}",
        second.stdout
    );
    let current = bob.kubectl(&["config", "current-context"]).success();
    assert_eq!(current.stdout.trim(), format!("workspace-{}", w.team[1]));
    let pods = bob.kubectl(&["get", "pods"]).success();
    assert!(
        pods.stderr.contains(&format!("in {} namespace", w.team[1])),
        "{}",
        pods.stderr
    );

    // Unknown names and handles are errors that change nothing.
    let before = std::fs::read_to_string(bob.kubeconfig()).unwrap();
    bob.run(&["use", "no-such-workspace"])
        .refused(&["no Workspace named no-such-workspace"]);
    bob.run(&["use", &format!("{}/nope", w.org)])
        .refused(&["no Workspace with owner and handle"]);
    assert_eq!(std::fs::read_to_string(bob.kubeconfig()).unwrap(), before);
}

/// Waits until `plugin`'s `transfers` lists `name`, and returns its entry.
/// alice proposes, with the plugin, the transfer `name` of her personal
/// workspace to the organization.
fn propose(w: &World, name: &str) {
    Plugin::as_user(&w.alice, &[])
        .run(&[
            "transfer",
            &w.personal,
            "--to",
            &format!("org/{}", w.org),
            "--name",
            name,
        ])
        .success();
}

async fn wait_listed(plugin: &Plugin, name: &str) -> Value {
    support::wait_for(&format!("{name} in `transfers`"), TIMEOUT, || async {
        let listed = plugin.json(&["transfers"]);
        listed
            .as_array()?
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
    })
    .await
}

#[tokio::test]
async fn both_sides_of_a_transfer_answer_and_use_finds_the_workspace_under_its_new_owner() {
    let w = world().await;
    let alice = Plugin::as_user(&w.alice, &[]);
    let olga = Plugin::as_user(&w.admin_user, &[]);
    let stranger = Plugin::as_user(&format!("mallory@{}.io", w.org), &[]);

    stranger
        .run(&["transfer", &w.personal, "--to", &format!("org/{}", w.org)])
        .refused(&["answer for neither side"]);
    alice
        .run(&["transfer", &w.personal, "--to", "team/x"])
        .refused(&["org/NAME"]);
    let proposed = alice
        .run(&[
            "transfer",
            &w.personal,
            "--to",
            &format!("org/{}", w.org),
            "--handle",
            "lab-eu",
        ])
        .success();
    let name = format!("{}-to-{}", w.personal, w.org);
    assert!(
        proposed
            .stdout
            .contains(&format!("Transfer {name} created")),
        "{}",
        proposed.stdout
    );

    let theirs = wait_listed(&olga, &name).await;
    assert_eq!(theirs["yourTurn"], "target");
    let ours = wait_listed(&alice, &name).await;
    assert_eq!(ours["yourTurn"], "", "the source has answered");
    assert_eq!(stranger.json(&["transfers"]), json!([]));

    // The impact comes first; without a terminal, approving needs --yes.
    olga.run(&["approve", &name]).refused(&["--yes"]);
    let approved = olga.run(&["approve", &name, "--yes"]).success();
    assert!(
        approved.stdout.contains("Owners gaining access"),
        "{}",
        approved.stdout
    );
    assert!(
        approved
            .stdout
            .contains(&format!("signed {}", w.admin_user)),
        "{}",
        approved.stdout
    );
    wait_transfer_phase(
        &support::plane().admin().await,
        &name,
        TransferPhase::Completed,
    )
    .await;

    let used = olga.run(&["use", &format!("{}/lab-eu", w.org)]).success();
    assert!(
        used.stdout.contains(&format!("-> \"{}\"", w.personal)),
        "{}",
        used.stdout
    );
    let listed = olga.json(&["ls"]);
    let moved = entry(&listed, &w.personal);
    assert_eq!(
        (moved["owner"].as_str(), moved["handle"].as_str()),
        (Some(w.org.as_str()), Some("lab-eu"))
    );
    assert_eq!(
        names(&alice.json(&["ls"])),
        Vec::<String>::new(),
        "alice gave it away"
    );
    olga.kubectl(&["get", "pods"]).success();
}

#[tokio::test]
async fn the_target_rejects_a_transfer_with_a_reason() {
    let w = world().await;
    let alice = Plugin::as_user(&w.alice, &[]);
    let olga = Plugin::as_user(&w.admin_user, &[]);
    let name = support::unique("cli-reject");
    propose(&w, &name);
    wait_listed(&olga, &name).await;
    alice
        .run(&["approve", &name, "--yes"])
        .refused(&["nothing of"]);
    let rejected = olga
        .run(&["reject", &name, "--reason", "Not this quarter."])
        .success();
    assert!(rejected.stdout.contains("Rejected"), "{}", rejected.stdout);
    let admin = support::plane().admin().await;
    let t = wait_transfer_phase(&admin, &name, TransferPhase::Rejected).await;
    let target = t
        .spec
        .approvals
        .and_then(|a| a.target)
        .expect("a target answer");
    assert_eq!(target.rejected_by.as_deref(), Some(w.admin_user.as_str()));
    assert_eq!(target.comment.as_deref(), Some("Not this quarter."));
}

#[tokio::test]
async fn answering_without_an_invitation_is_a_clear_error() {
    let w = world().await;
    let bob = Plugin::as_user(&w.bob, &[]);
    bob.run(&["accept", &w.personal])
        .refused(&["no open invitation"]);
    bob.run(&["decline", &w.personal])
        .refused(&["no open invitation"]);
    let none = bob.run(&["invitations"]).success();
    assert!(none.stdout.is_empty() && none.stderr.contains("no open invitations"));
}

/// alice invites `who` to her personal workspace as a Developer, in the
/// WorkspaceMember `name`; returns their plugin once the invitation is open.
async fn invite(w: &World, who: &str, name: &str) -> Plugin {
    let admin = support::plane().admin().await;
    let alice = support::plane().client_as(&w.alice, &[]).await;
    apply(&alice, member(&w.personal, name, user(who), "Developer")).await;
    wait_member_phase(&admin, &w.personal, name, "Invited", TIMEOUT).await;
    wait_directory(&admin, &Subject::user(who), &w.personal, Some("invited")).await;
    Plugin::as_user(who, &[])
}

#[tokio::test]
async fn an_invitee_sees_the_invitation_accepts_it_and_then_belongs() {
    let w = world().await;
    let dave = format!("dave@{}.io", w.org);
    let plugin = invite(&w, &dave, "dave").await;
    let open = plugin.json(&["invitations"]);
    assert_eq!(names(&open), vec![w.personal.clone()]);
    assert_eq!(entry(&open, &w.personal)["role"], "Developer");
    assert_eq!(
        entry(&plugin.json(&["ls"]), &w.personal)["phase"],
        "Invited"
    );
    Plugin::as_user(&w.bob, &[])
        .run(&["accept", &w.personal])
        .refused(&["no open invitation"]);
    plugin.run(&["accept", &w.personal]).success();
    let admin = support::plane().admin().await;
    wait_member_phase(&admin, &w.personal, "dave", "Active", TIMEOUT).await;
    let dave_entry = Subject::user(&dave);
    wait_directory(&admin, &dave_entry, &w.personal, Some("member-developer")).await;
    let listed = plugin.json(&["ls"]);
    assert_eq!(entry(&listed, &w.personal)["role"], "Developer");
    assert_eq!(entry(&listed, &w.personal)["phase"], "Active");
}

#[tokio::test]
async fn an_invitee_declines_and_gets_nothing() {
    let w = world().await;
    let dora = format!("dora@{}.io", w.org);
    let plugin = invite(&w, &dora, "dora").await;
    plugin.run(&["decline", &w.personal]).success();
    let admin = support::plane().admin().await;
    wait_member_phase(&admin, &w.personal, "dora", "Declined", TIMEOUT).await;
    wait_directory(&admin, &Subject::user(&dora), &w.personal, None).await;
    assert_eq!(plugin.json(&["ls"]), json!([]));
    assert_eq!(plugin.json(&["invitations"]), json!([]));
}

#[tokio::test]
async fn a_platform_admin_sees_every_transfer_and_answers_one_side_in_their_own_name() {
    let w = world().await;
    let admin = support::plane().admin().await;
    let platform = format!("platform@{}.io", w.org);
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("cli-tests:platform-admin:{}", w.org)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "workspaces:platform-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": platform}]});
    apply(&admin, binding).await;
    let pa = Plugin::as_user(&platform, &[]);
    let whoami = pa.run(&["whoami"]).success();
    assert!(
        whoami.stdout.contains("Platform admin: yes"),
        "{}",
        whoami.stdout
    );

    let name = support::unique("cli-platform");
    propose(&w, &name);
    let listed = wait_listed(&pa, &name).await;
    assert_eq!(listed["yourTurn"], "target", "the source has answered");
    pa.run(&["reject", &name, "--reason", "no", "--side", "source"])
        .refused(&["cannot answer the source side"]);
    pa.run(&["reject", &name, "--reason", "Platform freeze."])
        .success();
    let t = wait_transfer_phase(&admin, &name, TransferPhase::Rejected).await;
    let target = t
        .spec
        .approvals
        .and_then(|a| a.target)
        .expect("a target answer");
    assert_eq!(target.rejected_by.as_deref(), Some(platform.as_str()));
}
