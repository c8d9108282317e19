//! `kubectl workspaces invitations`, `accept`, `decline`: the caller's open
//! invitations to personal workspaces, and the answer, written as the
//! caller into the invitation's `spec.response` (admission lets only the
//! invitee write it).

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use workspace_operator::api::WorkspaceMember;

use crate::access::{self, Identity};
use crate::error::{Error, Result};
use crate::list::{self, Entry};
use crate::output::{self, Format, cell};
use crate::workspaces;

/// `kubectl workspaces invitations`.
pub async fn list(client: &Client, format: Format) -> Result<()> {
    let me = Identity::of(client).await?;
    let every = workspaces::all(client).await?;
    let open: Vec<Entry> = list::discover(client, &me, every, false)
        .await?
        .0
        .into_iter()
        .filter(|e| e.via == "invited")
        .collect();
    if matches!(format, Format::Json | Format::Yaml) {
        return output::structured(&open, format);
    }
    if open.is_empty() {
        eprintln!("You have no open invitations.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = open
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.owner.clone(),
                e.handle.clone(),
                e.role.clone(),
                cell(e.member.as_deref()),
                cell(e.expires.as_deref()),
            ]
        })
        .collect();
    let headers = ["WORKSPACE", "OWNER", "HANDLE", "ROLE", "MEMBER", "EXPIRES"];
    print!("{}", output::table(&headers, &rows));
    println!(
        "\nAnswer with `kubectl workspaces accept WORKSPACE` or `kubectl workspaces decline WORKSPACE`."
    );
    Ok(())
}

/// `kubectl workspaces accept|decline WORKSPACE`.
pub async fn answer(client: &Client, reference: &str, accept: bool) -> Result<()> {
    let me = Identity::of(client).await?;
    let ws = workspaces::find(client, reference).await?;
    let ns = workspaces::held_namespace(&ws).ok_or_else(|| {
        Error::msg(format!(
            "Workspace {} holds no namespace yet, so it has no invitations",
            ws.name_any()
        ))
    })?;
    let rules = access::rules_in(client, &ns).await?;
    let open = list::invitations_in(client, &me, &ws, &ns, &rules).await;
    let Some(invitation) = open.first() else {
        return Err(Error::msg(format!(
            "you ({}) have no open invitation to Workspace {}",
            me.username,
            ws.name_any()
        )));
    };
    let member = invitation.member.clone().unwrap_or_default();
    let response = if accept { "Accepted" } else { "Declined" };
    Api::<WorkspaceMember>::namespaced(client.clone(), &ns)
        .patch(
            &member,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"response": response}})),
        )
        .await
        .map_err(|e| Error::api(&format!("answering the invitation {ns}/{member}"), e))?;
    if accept {
        println!(
            "Accepted: you join Workspace {} as {} (namespace {ns}); \
             `kubectl workspaces use {}` points your kubeconfig at it.",
            ws.name_any(),
            invitation.role,
            ws.name_any()
        );
    } else {
        println!(
            "Declined the invitation to Workspace {} (member {member} in namespace {ns}).",
            ws.name_any()
        );
    }
    Ok(())
}
