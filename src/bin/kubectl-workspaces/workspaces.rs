//! Workspaces as the plugin shows them: effective owner, handle and
//! namespace, and finding one by NAME or OWNER/HANDLE. Every authenticated
//! user may read Workspaces (`workspaces:workspace-reader`), so this is one
//! list, served from the API server's watch cache.

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use workspace_operator::api::{AccountRef, Workspace};

use crate::error::{Error, Result, is_not_found};

/// The Workspace's handle: the one the operator applied, else the spec's,
/// else its name.
pub fn handle(ws: &Workspace) -> String {
    ws.status
        .as_ref()
        .and_then(|s| s.handle.clone())
        .or_else(|| ws.spec.handle.clone())
        .unwrap_or_else(|| ws.name_any())
}

/// The Workspace's namespace: the one the operator holds, else the spec's,
/// else its name.
pub fn namespace(ws: &Workspace) -> String {
    ws.status
        .as_ref()
        .and_then(|s| s.namespace.clone())
        .or_else(|| ws.spec.namespace.clone())
        .unwrap_or_else(|| ws.name_any())
}

/// The namespace the operator reports holding for the Workspace, if any.
pub fn held_namespace(ws: &Workspace) -> Option<String> {
    ws.status.as_ref().and_then(|s| s.namespace.clone())
}

/// The Workspace's phase, as the operator reports it.
pub fn phase(ws: &Workspace) -> String {
    ws.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "Pending".to_string())
}

/// The Workspace's owner (its spec: only a completed transfer changes it).
pub fn owner(ws: &Workspace) -> &AccountRef {
    &ws.spec.owner
}

/// Every Workspace (from the API server's watch cache).
pub async fn all(client: &Client) -> Result<Vec<Workspace>> {
    let list = Api::<Workspace>::all(client.clone())
        .list(&ListParams::default().match_any())
        .await
        .map_err(|e| Error::api("listing Workspaces", e))?;
    Ok(list.items)
}

/// The Workspace `reference` names: a Workspace's name, or OWNER/HANDLE
/// (the owner's name, a user or an Organization, and the handle).
pub async fn find(client: &Client, reference: &str) -> Result<Workspace> {
    match reference.split_once('/') {
        None => Api::<Workspace>::all(client.clone())
            .get(reference)
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    Error::msg(format!(
                        "no Workspace named {reference} (`kubectl workspaces ls` lists yours; \
                         OWNER/HANDLE finds one by its owner and handle)"
                    ))
                } else {
                    Error::api(&format!("reading Workspace {reference}"), e)
                }
            }),
        Some((owner_name, wanted)) => {
            let found: Vec<Workspace> = all(client)
                .await?
                .into_iter()
                .filter(|ws| owner(ws).name == owner_name && handle(ws) == wanted)
                .collect();
            pick(reference, found)
        }
    }
}

fn pick(reference: &str, mut found: Vec<Workspace>) -> Result<Workspace> {
    match found.len() {
        0 => Err(Error::msg(format!(
            "no Workspace with owner and handle {reference} (`kubectl workspaces ls` lists yours)"
        ))),
        1 => Ok(found.remove(0)),
        _ => {
            let names: Vec<String> = found
                .iter()
                .map(|ws| format!("{} (owner {})", ws.name_any(), owner(ws)))
                .collect();
            Err(Error::msg(format!(
                "{reference} names more than one Workspace: {}; use the Workspace's name",
                names.join(", ")
            )))
        }
    }
}
