//! `kubectl workspaces ls`: the workspaces the caller belongs to.
//!
//! Three sources, all answered by the API server's own authorization:
//! - Workspaces the caller owns (`spec.owner` is their username) or whose
//!   owning Organization they administer (the SelfSubjectRulesReview of
//!   [`Identity`] names those Organizations), from the Workspace list that
//!   every authenticated user may read;
//! - memberships and invitations: from the workspace directory
//!   ([`directory`]), one SelfSubjectRulesReview in its namespace; then, only
//!   for an open invitation, a review in that workspace's namespace (the
//!   member to answer), and only for `-o wide|json|yaml`, each found
//!   member's WorkspaceMember (name and group);
//! - without a directory (an older install), the scan: for each remaining
//!   Workspace with a namespace, a SelfSubjectRulesReview in that
//!   namespace, asked concurrently. The caller holds a role there (reads
//!   pods), or holds an invitee's grant on one WorkspaceMember by name;
//!   nothing is learnt about namespaces the caller has no rule in.

use futures::{StreamExt, stream};
use k8s_openapi::api::authorization::v1::ResourceRule;
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde::Serialize;
use workspace_operator::api::{AccountKind, MemberPhase, SubjectKind, Workspace, WorkspaceMember};

use crate::access::{self, Identity, allows, named};
use crate::directory::{self, Relations};
use crate::error::{Error, Result};
use crate::output::{self, Format, cell};
use crate::workspaces;

/// How many rules reviews are in flight at once during a scan.
const CONCURRENCY: usize = 32;

/// One line of `ls`: a workspace and what the caller is in it.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub name: String,
    pub owner: String,
    pub owner_kind: String,
    pub handle: String,
    /// The caller's role (`Owner`, a built-in role, a custom ClusterRole), or
    /// `-` when `-A` lists a workspace the caller has no role in.
    pub role: String,
    /// The Workspace's phase, or `Invited` for an open invitation.
    pub phase: String,
    pub namespace: String,
    /// Why the caller is in it: `owner`, `admin of <org>`, `member`,
    /// `group <name>`, `invited`.
    pub via: String,
    /// The WorkspaceMember that gives the role, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// When an open invitation expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl Entry {
    fn of(ws: &Workspace, role: &str, via: String) -> Entry {
        let owner = workspaces::owner(ws);
        Entry {
            name: ws.name_any(),
            owner: owner.name.clone(),
            owner_kind: owner.kind.to_string(),
            handle: workspaces::handle(ws),
            role: role.to_string(),
            phase: workspaces::phase(ws),
            namespace: workspaces::namespace(ws),
            via,
            member: None,
            expires: None,
        }
    }
}

/// Why the caller owns `ws`, if they do.
pub fn ownership(me: &Identity, ws: &Workspace) -> Option<String> {
    let owner = workspaces::owner(ws);
    match owner.kind {
        AccountKind::User if owner.name == me.username => Some("owner".to_string()),
        AccountKind::Organization if me.organizations.contains(&owner.name) => {
            Some(format!("admin of {}", owner.name))
        }
        _ => None,
    }
}

/// Where the memberships and invitations came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The workspace directory.
    Directory,
    /// A review in every workspace namespace (no directory in the cluster).
    Scan,
}

/// The caller's workspaces among `all`: owned, administered, member of,
/// invited to; with `details`, the WorkspaceMember behind each membership.
pub async fn discover(
    client: &Client,
    me: &Identity,
    all: Vec<Workspace>,
    details: bool,
) -> Result<(Vec<Entry>, Source)> {
    let mut found = Vec::new();
    let mut rest = Vec::new();
    for ws in all {
        match ownership(me, &ws) {
            Some(via) => found.push(Entry::of(&ws, "Owner", via)),
            None if workspaces::held_namespace(&ws).is_some() => rest.push(ws),
            None => {}
        }
    }
    if let Some(listed) = directory::read(client, me).await? {
        found.extend(from_directory(client, me, rest, &listed, details).await?);
        found.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok((found, Source::Directory));
    }
    if me.reads_every_namespace {
        eprintln!(
            "note: you may read every namespace, so membership cannot tell workspaces apart; \
             `kubectl workspaces ls -A` lists every Workspace"
        );
    } else {
        let checked = rest.len();
        let scanned: Vec<Result<Vec<Entry>>> = stream::iter(rest)
            .map(|ws| async move { scan(client, me, &ws).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let (ok, failed): (Vec<_>, Vec<_>) = scanned.into_iter().partition(Result::is_ok);
        if let Some(Err(first)) = failed.into_iter().next() {
            return Err(Error::msg(format!(
                "some of the {checked} workspaces could not be checked, so the list would be \
                 incomplete; try again ({first})"
            )));
        }
        found.extend(ok.into_iter().flatten().flatten());
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((found, Source::Scan))
}

/// The entries of the Workspaces among `rest` that the directory lists for
/// the caller: a membership at once (with its WorkspaceMember when
/// `details`), an invitation with the member to answer (a review in its
/// namespace).
async fn from_directory(
    client: &Client,
    me: &Identity,
    rest: Vec<Workspace>,
    listed: &Relations,
    details: bool,
) -> Result<Vec<Entry>> {
    let listed_here = rest
        .into_iter()
        .filter_map(|ws| Some((listed.get(&ws.name_any())?, ws)));
    let looked_up: Vec<Result<Vec<Entry>>> = stream::iter(listed_here)
        .map(|(verbs, ws)| async move {
            let ns = workspaces::namespace(&ws);
            match directory::role(verbs) {
                Some(role) if details => Ok(vec![member_details(client, me, &ws, &ns, role).await]),
                Some(role) => Ok(vec![Entry::of(&ws, role, "member".to_string())]),
                None => {
                    let rules = access::rules_in_retrying(client, &ns).await?;
                    Ok(invitations_in(client, me, &ws, &ns, &rules).await)
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut found = Vec::new();
    for entries in looked_up {
        found.extend(entries?);
    }
    Ok(found)
}

/// A membership the directory lists, with the WorkspaceMember that gives it
/// when the caller may read it; else the directory's `role`.
async fn member_details(
    client: &Client,
    me: &Identity,
    ws: &Workspace,
    ns: &str,
    role: &str,
) -> Entry {
    match my_member(client, me, ns).await {
        Some(m) => member_entry(ws, &m, role),
        None => Entry::of(ws, role, "member".to_string()),
    }
}

/// What the caller is in `ws`'s namespace: a member, invited, or nothing.
/// A review the API server does not answer (after retries) is an error: the
/// list would silently miss that workspace.
async fn scan(client: &Client, me: &Identity, ws: &Workspace) -> Result<Vec<Entry>> {
    let ns = workspaces::namespace(ws);
    let rules = access::rules_in_retrying(client, &ns).await?;
    if allows(&rules, "", "pods", "list", None) {
        return Ok(vec![membership(client, me, ws, &ns, &rules).await]);
    }
    Ok(invitations_in(client, me, ws, &ns, &rules).await)
}

/// The caller's member entry in `ns`: from the WorkspaceMember that names
/// them (or one of their groups), when they may read members; else from
/// what their rules allow.
async fn membership(
    client: &Client,
    me: &Identity,
    ws: &Workspace,
    ns: &str,
    rules: &[ResourceRule],
) -> Entry {
    match my_member(client, me, ns).await {
        Some(m) => member_entry(ws, &m, &role_from_rules(rules)),
        None => Entry::of(ws, &role_from_rules(rules), "member".to_string()),
    }
}

/// The caller's Active WorkspaceMember in `ns` (theirs, or one of their
/// groups'), when they may list the members there.
async fn my_member(client: &Client, me: &Identity, ns: &str) -> Option<WorkspaceMember> {
    let members = Api::<WorkspaceMember>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    members.into_iter().find(|m| {
        subject_is(me, m, ns)
            && m.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Active)
    })
}

/// The entry of the membership `m` gives in `ws` (`role` when it names none).
fn member_entry(ws: &Workspace, m: &WorkspaceMember, role: &str) -> Entry {
    let role = m
        .spec
        .role
        .map(|r| r.to_string())
        .or_else(|| m.spec.cluster_role_name().map(str::to_string))
        .unwrap_or_else(|| role.to_string());
    let via = match m.spec.subject.kind {
        SubjectKind::Group => format!("group {}", m.spec.subject.name),
        _ => "member".to_string(),
    };
    let mut entry = Entry::of(ws, &role, via);
    entry.member = Some(m.name_any());
    entry
}

/// Whether `m`'s subject is the caller: their username, one of their
/// groups, or (for a ServiceAccount) their `system:serviceaccount:` name.
pub fn subject_is(me: &Identity, m: &WorkspaceMember, ns: &str) -> bool {
    let s = &m.spec.subject;
    match s.kind {
        SubjectKind::User => s.name == me.username,
        SubjectKind::Group => me.groups.contains(&s.name),
        SubjectKind::ServiceAccount => {
            let sa_ns = s.namespace.as_deref().unwrap_or(ns);
            me.username == format!("system:serviceaccount:{sa_ns}:{}", s.name)
        }
    }
}

/// The built-in role whose permissions `rules` show, from the most to the
/// least: what the caller can do when they may not read the members.
fn role_from_rules(rules: &[ResourceRule]) -> String {
    let can = |group: &str, resource: &str, verb: &str| allows(rules, group, resource, verb, None);
    let role = if can(workspace_operator::api::GROUP, "workspaces", "administer") {
        "Owner"
    } else if can("", "secrets", "create") {
        "Developer"
    } else if can("", "pods", "create") && can("", "secrets", "get") {
        "Worker"
    } else if can("batch", "jobs", "create") {
        "Runner"
    } else {
        "Viewer"
    };
    role.to_string()
}

/// The caller's open invitations in `ns`: the WorkspaceMembers their rules
/// name (the invitee's grant: `get` and `patch` on that one member) that
/// invite them.
pub async fn invitations_in(
    client: &Client,
    me: &Identity,
    ws: &Workspace,
    ns: &str,
    rules: &[ResourceRule],
) -> Vec<Entry> {
    let everywhere = named(&me.cluster_rules, "workspacemembers", "patch");
    let api = Api::<WorkspaceMember>::namespaced(client.clone(), ns);
    let mut found = Vec::new();
    for name in named(rules, "workspacemembers", "patch").difference(&everywhere) {
        let Ok(m) = api.get(name).await else { continue };
        let status = m.status.as_ref();
        if m.spec.subject.kind != SubjectKind::User
            || m.spec.subject.name != me.username
            || status.and_then(|s| s.phase) != Some(MemberPhase::Invited)
        {
            continue;
        }
        let role = m
            .spec
            .role
            .map(|r| r.to_string())
            .or_else(|| m.spec.cluster_role_name().map(str::to_string))
            .unwrap_or_default();
        let mut entry = Entry::of(ws, &role, "invited".to_string());
        entry.phase = "Invited".to_string();
        entry.member = Some(name.clone());
        entry.expires = status
            .and_then(|s| s.invitation_expires_at.as_ref())
            .map(|t| t.0.to_string());
        found.push(entry);
    }
    found
}

/// `kubectl workspaces ls [-A]`.
pub async fn ls(client: &Client, all: bool, format: Format) -> Result<()> {
    let me = Identity::of(client).await?;
    let every = workspaces::all(client).await?;
    if all {
        let entries: Vec<Entry> = every
            .iter()
            .map(|ws| match ownership(&me, ws) {
                Some(via) => Entry::of(ws, "Owner", via),
                None => Entry::of(ws, "-", "-".to_string()),
            })
            .collect();
        return print_entries(&entries, format);
    }
    let (entries, source) = discover(client, &me, every, format != Format::Table).await?;
    if format == Format::Wide {
        eprintln!("{}", source_note(source));
    }
    print_entries(&entries, format)
}

/// Says where `ls -o wide` found memberships and invitations.
fn source_note(source: Source) -> String {
    match source {
        Source::Directory => format!(
            "memberships from the workspace directory (namespace {})",
            directory::namespace()
        ),
        Source::Scan => format!(
            "memberships from a scan of every workspace namespace (no workspace directory in \
             namespace {})",
            directory::namespace()
        ),
    }
}

fn print_entries(entries: &[Entry], format: Format) -> Result<()> {
    if matches!(format, Format::Json | Format::Yaml) {
        return output::structured(&entries, format);
    }
    if entries.is_empty() {
        eprintln!(
            "You belong to no workspace yet. Create one with `kubectl apply -f` \
             (see examples/), or ask an Owner to add you."
        );
        return Ok(());
    }
    let wide = format == Format::Wide;
    let mut headers = vec!["NAME", "OWNER", "HANDLE", "ROLE", "PHASE", "NAMESPACE"];
    if wide {
        headers.extend(["OWNER-KIND", "VIA", "MEMBER"]);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let mut row = vec![
                e.name.clone(),
                e.owner.clone(),
                e.handle.clone(),
                e.role.clone(),
                e.phase.clone(),
                e.namespace.clone(),
            ];
            if wide {
                row.extend([
                    e.owner_kind.clone(),
                    e.via.clone(),
                    cell(e.member.as_deref()),
                ]);
            }
            row
        })
        .collect();
    print!("{}", output::table(&headers, &rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(group: &str, resource: &str, verbs: &[&str]) -> ResourceRule {
        ResourceRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(vec![resource.to_string()]),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            resource_names: None,
        }
    }

    #[test]
    fn the_role_is_read_from_what_the_rules_allow() {
        let viewer = vec![rule("", "pods", &["get", "list"])];
        assert_eq!(role_from_rules(&viewer), "Viewer");
        let mut runner = viewer.clone();
        runner.push(rule("batch", "jobs", &["create"]));
        assert_eq!(role_from_rules(&runner), "Runner");
        let mut worker = runner.clone();
        worker.push(rule("", "pods", &["create"]));
        worker.push(rule("", "secrets", &["get"]));
        assert_eq!(role_from_rules(&worker), "Worker");
        let mut developer = worker.clone();
        developer.push(rule("", "secrets", &["create"]));
        assert_eq!(role_from_rules(&developer), "Developer");
        let mut owner = developer;
        owner.push(rule(
            workspace_operator::api::GROUP,
            "workspaces",
            &["administer"],
        ));
        assert_eq!(role_from_rules(&owner), "Owner");
    }
}
