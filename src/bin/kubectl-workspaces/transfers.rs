//! `kubectl workspaces transfer`, `transfers`, `approve`, `reject`.
//!
//! A transfer is readable only through the operator's read grant for that
//! one open transfer (`workspaces.dev:transfer:<name>`, given to both
//! sides), so the caller's transfers are the ones their rules name
//! (the SelfSubjectRulesReview of [`Identity`]); platform admins list them
//! all. Every answer is signed with the caller's own username, which
//! admission checks.

use std::io::{BufRead, IsTerminal, Write};

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use workspace_operator::api::{
    AccountKind, AccountRef, AffectedSubject, TransferPhase, WorkspaceTransfer,
};

use crate::access::{self, Identity};
use crate::error::{Error, Result, is_forbidden, is_not_found};
use crate::output::{self, Format, cell};
use crate::workspaces;

/// A side of a transfer.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The workspace's current owner.
    Source,
    /// The account receiving it.
    Target,
}

impl Side {
    fn key(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// What the caller answers.
pub enum Answer {
    Approve { yes: bool },
    Reject { reason: String },
}

/// `org/NAME`, `organization/NAME` or `user/NAME`.
fn parse_account(text: &str) -> Result<AccountRef> {
    let bad = || {
        Error::msg(format!(
            "--to {text}: name the target as org/NAME (an Organization) or user/NAME (a user)"
        ))
    };
    let (kind, name) = text.split_once('/').ok_or_else(bad)?;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "org" | "organization" => AccountKind::Organization,
        "user" => AccountKind::User,
        _ => return Err(bad()),
    };
    if name.is_empty() {
        return Err(bad());
    }
    Ok(AccountRef {
        kind,
        name: name.to_string(),
    })
}

/// A transfer name from `text`: lowercase letters, digits and '-', at most 63.
fn object_name(text: &str) -> String {
    let mapped: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let cut: String = mapped.chars().take(63).collect();
    cut.trim_matches('-').to_string()
}

/// Whether the caller is an Owner member of the workspace namespace `ns`.
async fn owner_member(client: &Client, ns: Option<&str>) -> bool {
    let Some(ns) = ns else { return false };
    access::can(
        client,
        "administer",
        workspace_operator::api::GROUP,
        "workspaces",
        ns,
        None,
    )
    .await
    .unwrap_or(false)
}

/// `kubectl workspaces transfer WORKSPACE --to ACCOUNT`.
pub async fn propose(
    client: &Client,
    reference: &str,
    to: &str,
    handle: Option<String>,
    name: Option<String>,
) -> Result<()> {
    let to = parse_account(to)?;
    let me = Identity::of(client).await?;
    let ws = workspaces::find(client, reference).await?;
    let from = workspaces::owner(&ws).clone();
    let ns = workspaces::held_namespace(&ws);
    let source = me.answers_for(&from.kind.to_string(), &from.name)
        || owner_member(client, ns.as_deref()).await;
    let target = me.answers_for(&to.kind.to_string(), &to.name);
    if !source && !target && !me.platform_admin {
        return Err(Error::msg(format!(
            "you ({}) answer for neither side: a transfer of {} is proposed by one of its Owners \
             ({from}, its admins, its Owner members) or by the target account ({to})",
            me.username,
            ws.name_any()
        )));
    }
    let name = name.unwrap_or_else(|| object_name(&format!("{}-to-{}", ws.name_any(), to.name)));
    let mut approvals = serde_json::Map::new();
    if source || me.platform_admin && !target {
        approvals.insert("source".into(), json!({"approvedBy": me.username}));
    }
    if target {
        approvals.insert("target".into(), json!({"approvedBy": me.username}));
    }
    let mut spec =
        json!({"workspace": ws.name_any(), "from": from, "to": to, "approvals": approvals});
    if let Some(h) = &handle {
        spec["newHandle"] = json!(h);
    }
    let body: WorkspaceTransfer = serde_json::from_value(json!({
        "apiVersion": "workspaces.dev/v1alpha1", "kind": "WorkspaceTransfer",
        "metadata": {"name": name}, "spec": spec}))
    .map_err(|e| Error::msg(format!("cannot build the transfer: {e}")))?;
    Api::<WorkspaceTransfer>::all(client.clone())
        .create(&PostParams::default(), &body)
        .await
        .map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 409 => Error::msg(format!(
                "a WorkspaceTransfer named {name} exists already; choose another with --name"
            )),
            _ => Error::api(&format!("creating the transfer {name}"), e),
        })?;
    let signed: Vec<&str> = approvals.keys().map(String::as_str).collect();
    println!(
        "Transfer {name} created: Workspace {} from {from} to {to}{}.",
        ws.name_any(),
        handle
            .map(|h| format!(", new handle {h}"))
            .unwrap_or_default()
    );
    println!(
        "Approved by you ({}) for: {}.",
        me.username,
        signed.join(" and ")
    );
    if signed.len() < 2 {
        let other = if signed.contains(&"source") {
            format!("the target ({to})")
        } else {
            format!("an Owner of {}", ws.name_any())
        };
        println!(
            "Waiting for {other}: `kubectl workspaces approve {name}` (or `reject {name} --reason ...`)."
        );
    }
    Ok(())
}

/// The sides of `t` the caller may answer for.
async fn sides(client: &Client, me: &Identity, t: &WorkspaceTransfer) -> Vec<Side> {
    let status = t.status.as_ref();
    let recorded = status.and_then(|s| s.source.as_ref());
    let (kind, name) = match (recorded, t.spec.from.as_ref()) {
        (Some(s), _) => (s.kind.to_string(), s.name.clone()),
        (None, Some(f)) => (f.kind.to_string(), f.name.clone()),
        (None, None) => (String::new(), String::new()),
    };
    let mut out = Vec::new();
    if me.platform_admin
        || (!name.is_empty() && me.answers_for(&kind, &name))
        || owner_member(client, recorded.map(|s| s.namespace.as_str())).await
    {
        out.push(Side::Source);
    }
    if me.platform_admin || me.answers_for(&t.spec.to.kind.to_string(), &t.spec.to.name) {
        out.push(Side::Target);
    }
    out
}

fn answered(t: &WorkspaceTransfer, side: Side) -> bool {
    let approvals = t.spec.approvals.as_ref();
    match side {
        Side::Source => approvals.and_then(|a| a.source.as_ref()).is_some(),
        Side::Target => approvals.and_then(|a| a.target.as_ref()).is_some(),
    }
}

fn is_open(t: &WorkspaceTransfer) -> bool {
    matches!(
        t.status.as_ref().and_then(|s| s.phase),
        None | Some(TransferPhase::Pending | TransferPhase::Approved | TransferPhase::Transferring)
    )
}

fn phase(t: &WorkspaceTransfer) -> String {
    t.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "Pending".to_string())
}

/// The transfers the caller may read.
async fn readable(client: &Client, me: &Identity) -> Result<Vec<WorkspaceTransfer>> {
    let api = Api::<WorkspaceTransfer>::all(client.clone());
    if me.list_transfers {
        let list = api
            .list(&Default::default())
            .await
            .map_err(|e| Error::api("listing WorkspaceTransfers", e))?;
        return Ok(list.items);
    }
    let mut found = Vec::new();
    for name in &me.transfers {
        match api.get(name).await {
            Ok(t) => found.push(t),
            Err(e) if is_forbidden(&e) || is_not_found(&e) => {}
            Err(e) => return Err(Error::api(&format!("reading transfer {name}"), e)),
        }
    }
    Ok(found)
}

/// `kubectl workspaces transfers [--all]`.
pub async fn list(client: &Client, all: bool, format: Format) -> Result<()> {
    let me = Identity::of(client).await?;
    let mut shown = Vec::new();
    for t in readable(client, &me).await? {
        if !all && !is_open(&t) {
            continue;
        }
        let pending = phase(&t) == "Pending";
        let turn: Vec<&str> = sides(client, &me, &t)
            .await
            .into_iter()
            .filter(|s| pending && !answered(&t, *s))
            .map(Side::key)
            .collect();
        shown.push((t, turn.join(",")));
    }
    if matches!(format, Format::Json | Format::Yaml) {
        let items: Vec<Value> = shown
            .iter()
            .map(|(t, turn)| json!({"name": t.name_any(), "workspace": t.spec.workspace,
                "to": t.spec.to, "phase": phase(t), "yourTurn": turn, "spec": t.spec, "status": t.status}))
            .collect();
        return output::structured(&items, format);
    }
    if shown.is_empty() {
        eprintln!("No open transfers that you are a side of.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|(t, turn)| {
            let from = t
                .status
                .as_ref()
                .and_then(|s| s.source.as_ref())
                .map(|s| format!("{}/{}", s.kind, s.name));
            vec![
                t.name_any(),
                t.spec.workspace.clone(),
                cell(
                    from.or_else(|| t.spec.from.as_ref().map(|f| f.to_string()))
                        .as_deref(),
                ),
                t.spec.to.to_string(),
                cell(t.spec.new_handle.as_deref()),
                phase(t),
                if turn.is_empty() {
                    "-".to_string()
                } else {
                    turn.clone()
                },
            ]
        })
        .collect();
    let headers = [
        "NAME",
        "WORKSPACE",
        "FROM",
        "TO",
        "NEW-HANDLE",
        "PHASE",
        "YOUR-ANSWER",
    ];
    print!("{}", output::table(&headers, &rows));
    Ok(())
}

fn subjects(list: &[AffectedSubject]) -> String {
    if list.is_empty() {
        return "none".to_string();
    }
    list.iter()
        .map(|s| match &s.reason {
            Some(r) => format!("{} {} ({r})", s.kind, s.name),
            None => format!("{} {}", s.kind, s.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The impact preview: what the transfer changes, before anything happens.
pub fn preview(t: &WorkspaceTransfer) -> String {
    let mut out = format!(
        "Transfer {}: Workspace {} -> {}{}\nPhase: {}\n",
        t.name_any(),
        t.spec.workspace,
        t.spec.to,
        t.spec
            .new_handle
            .as_ref()
            .map(|h| format!(" (new handle {h})"))
            .unwrap_or_default(),
        phase(t)
    );
    let status = t.status.as_ref();
    if let Some(c) = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Validated")) {
        out += &format!("Validated: {} ({}): {}\n", c.status, c.reason, c.message);
    }
    let approval = |side: Side| -> String {
        let a = t.spec.approvals.as_ref().and_then(|a| match side {
            Side::Source => a.source.as_ref(),
            Side::Target => a.target.as_ref(),
        });
        match a {
            Some(a) if a.approved_by.is_some() => format!(
                "approved by {}",
                a.approved_by.as_deref().unwrap_or_default()
            ),
            Some(a) => format!(
                "rejected by {}",
                a.rejected_by.as_deref().unwrap_or_default()
            ),
            None => "waiting".to_string(),
        }
    };
    out += &format!(
        "Source: {}; target: {}\n",
        approval(Side::Source),
        approval(Side::Target)
    );
    match status.and_then(|s| s.impact.as_ref()) {
        None => out += "Impact: not computed yet (the operator computes it within a second)\n",
        Some(i) => {
            out += "Impact:\n";
            out += &format!(
                "  Owners losing access:          {}\n",
                subjects(&i.owners_losing_access)
            );
            out += &format!(
                "  Owners gaining access:         {}\n",
                subjects(&i.owners_gaining_access)
            );
            out += &format!(
                "  Members losing access:         {}\n",
                subjects(&i.members_losing_access)
            );
            out += &format!(
                "  ServiceAccounts losing access: {}\n",
                subjects(&i.service_accounts_losing_access)
            );
            if let Some(free) = i.handle_available {
                out += &format!(
                    "  Handle available in target:    {}\n",
                    if free { "yes" } else { "no" }
                );
            }
            if let Some(u) = i.target_workspaces {
                let limit = u
                    .limit
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "no limit".to_string());
                out += &format!(
                    "  Target's workspaces:           {} (limit: {limit})\n",
                    u.used
                );
            }
        }
    }
    out + "Kept: the namespace, its name and everything in it.\n"
}

fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::msg(
            "read the impact above, then approve with --yes (standard input is not a terminal)",
        ));
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok();
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// The sides the caller answers: the one asked for with `--side`, else
/// every side still open to them (a platform admin, who may answer both,
/// must choose).
fn choose(name: &str, me: &Identity, open: Vec<Side>, side: Option<Side>) -> Result<Vec<Side>> {
    match side {
        Some(s) if open.contains(&s) => Ok(vec![s]),
        Some(s) => Err(Error::msg(format!(
            "you ({}) cannot answer the {} side of {name}, or it has answered",
            me.username,
            s.key()
        ))),
        None if open.is_empty() => Err(Error::msg(format!(
            "nothing of {name} waits for your answer ({})",
            me.username
        ))),
        None if open.len() > 1 && me.platform_admin => Err(Error::msg(
            "you may answer for both sides: choose one with --side source|target",
        )),
        None => Ok(open),
    }
}

/// `kubectl workspaces approve|reject NAME`.
pub async fn answer(client: &Client, name: &str, answer: Answer, side: Option<Side>) -> Result<()> {
    let me = Identity::of(client).await?;
    let t = Api::<WorkspaceTransfer>::all(client.clone())
        .get(name)
        .await
        .map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 403 || s.code == 404 => Error::msg(format!(
                "no transfer {name} that you can read (`kubectl workspaces transfers` lists yours)"
            )),
            _ => Error::api(&format!("reading transfer {name}"), e),
        })?;
    print!("{}", preview(&t));
    if phase(&t) != "Pending" {
        return Err(Error::msg(format!(
            "transfer {name} is {}: nothing to answer",
            phase(&t)
        )));
    }
    let open: Vec<Side> = sides(client, &me, &t)
        .await
        .into_iter()
        .filter(|s| !answered(&t, *s))
        .collect();
    let chosen = choose(name, &me, open, side)?;
    let keys: Vec<&str> = chosen.iter().map(|s| s.key()).collect();
    let signature = match &answer {
        Answer::Approve { yes } => {
            if !yes
                && !confirm(&format!(
                    "Approve {name} for the {} side as {}?",
                    keys.join(" and "),
                    me.username
                ))?
            {
                return Err(Error::msg("not approved"));
            }
            json!({"approvedBy": me.username})
        }
        Answer::Reject { reason } => json!({"rejectedBy": me.username, "comment": reason}),
    };
    let approvals: serde_json::Map<String, Value> = keys
        .iter()
        .map(|k| (k.to_string(), signature.clone()))
        .collect();
    Api::<WorkspaceTransfer>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"approvals": approvals}})),
        )
        .await
        .map_err(|e| Error::api(&format!("answering transfer {name}"), e))?;
    let verb = if matches!(answer, Answer::Approve { .. }) {
        "Approved"
    } else {
        "Rejected"
    };
    println!(
        "{verb} {name} for the {} side, signed {}.",
        keys.join(" and "),
        me.username
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_org_or_user_slash_name() {
        let org = parse_account("org/globex").unwrap();
        assert_eq!(
            (org.kind, org.name.as_str()),
            (AccountKind::Organization, "globex")
        );
        let user = parse_account("user/carol@globex.io").unwrap();
        assert_eq!(
            (user.kind, user.name.as_str()),
            (AccountKind::User, "carol@globex.io")
        );
        for bad in ["globex", "team/globex", "org/", ""] {
            assert!(parse_account(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn transfer_names_are_dns_labels() {
        assert_eq!(
            object_name("lab-to-carol@globex.io"),
            "lab-to-carol-globex-io"
        );
        assert_eq!(object_name(&"a".repeat(80)).len(), 63);
        assert_eq!(object_name("-Lab-"), "lab");
    }
}
