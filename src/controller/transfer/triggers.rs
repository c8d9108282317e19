//! Which watch events concern which WorkspaceTransfers: the transfer
//! controller's own mapping functions, which the world's router calls for
//! every event, and the keys transfers are indexed under.

use kube::{Resource, ResourceExt};

use crate::api::{AccountRef, Organization, Workspace, WorkspaceMember, WorkspaceTransfer};
use crate::controller::World;

/// Index key of the transfers of a Workspace.
pub fn of_workspace(workspace: &str) -> String {
    format!("transfer-ws/{workspace}")
}

/// Index key of the transfers to or from an account.
pub fn of_account(account: &AccountRef) -> String {
    format!("transfer-account/{:?}/{}", account.kind, account.name)
}

/// An open transfer is filed under its workspace, its target and its
/// recorded source. A final one concerns no other object and is not filed,
/// so the transfers that accumulate over the years cost no lookup.
pub fn index_keys(t: &WorkspaceTransfer) -> Vec<String> {
    if !open(t) {
        return Vec::new();
    }
    let source = t.status.as_ref().and_then(|s| s.source.as_ref());
    std::iter::once(of_workspace(&t.spec.workspace))
        .chain(std::iter::once(of_account(&t.spec.to)))
        .chain(source.map(|s| of_account(&s.account())))
        .collect()
}

/// Whether the transfer may still change (not in a final phase).
fn open(t: &WorkspaceTransfer) -> bool {
    !t.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_final())
        || t.meta().deletion_timestamp.is_some()
}

fn names(transfers: impl IntoIterator<Item = std::sync::Arc<WorkspaceTransfer>>) -> Vec<String> {
    transfers
        .into_iter()
        .filter(|t| open(t))
        .map(|t| t.name_any())
        .collect()
}

/// A transfer concerns itself and the other open transfers of its workspace
/// (one that ends may let the next one run).
pub fn on_transfer(world: &World, t: &WorkspaceTransfer) -> Vec<String> {
    let mut out = vec![t.name_any()];
    out.extend(
        names(world.transfers_of(&t.spec.workspace))
            .into_iter()
            .filter(|n| *n != t.name_any()),
    );
    out
}

/// A Workspace concerns its open transfers, and those whose target is its
/// owner (the target's handles and workspace count).
pub fn on_workspace(world: &World, ws: &Workspace) -> Vec<String> {
    let mut out = names(world.transfers_of(&ws.name_any()));
    out.extend(names(world.transfers_under(&of_account(&ws.spec.owner))));
    out
}

/// An Organization concerns the open transfers to and from it.
pub fn on_organization(world: &World, org: &Organization) -> Vec<String> {
    let account = AccountRef::organization(org.name_any());
    names(world.transfers_under(&of_account(&account)))
}

/// A member concerns the open transfers of its workspace (who loses access,
/// who may read the transfer).
pub fn on_member(world: &World, member: &WorkspaceMember) -> Vec<String> {
    match member.namespace() {
        Some(namespace) => on_member_binding(world, &namespace),
        None => Vec::new(),
    }
}

/// A member's RoleBinding concerns the open transfers of its namespace's
/// workspace: a running transfer waits until the bindings of the members it
/// revokes are gone.
pub fn on_member_binding(world: &World, namespace: &str) -> Vec<String> {
    world
        .workspaces_naming(namespace)
        .iter()
        .flat_map(|ws| names(world.transfers_of(&ws.name_any())))
        .collect()
}

/// A managed child (the per-transfer read grant) concerns the transfer
/// that controls it.
pub fn on_child<K: Resource>(child: &K) -> Vec<String> {
    child
        .owner_references()
        .iter()
        .filter(|o| o.controller == Some(true))
        .filter(|o| {
            o.kind == WorkspaceTransfer::kind(&())
                && o.api_version == WorkspaceTransfer::api_version(&())
        })
        .map(|o| o.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{TransferPhase, WorkspaceTransferSpec, WorkspaceTransferStatus};

    fn transfer(phase: Option<TransferPhase>) -> WorkspaceTransfer {
        let mut t = WorkspaceTransfer::new(
            "move",
            WorkspaceTransferSpec {
                workspace: "prod".into(),
                to: AccountRef::organization("globex"),
                from: None,
                new_handle: None,
                approvals: None,
            },
        );
        t.status = Some(WorkspaceTransferStatus {
            phase,
            ..Default::default()
        });
        t
    }

    #[test]
    fn open_transfers_are_filed_under_their_workspace_and_accounts_final_ones_nowhere() {
        assert_eq!(
            index_keys(&transfer(Some(TransferPhase::Pending))),
            ["transfer-ws/prod", "transfer-account/Organization/globex"]
        );
        assert!(index_keys(&transfer(Some(TransferPhase::Completed))).is_empty());
        let mut deleting = transfer(Some(TransferPhase::Completed));
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert_eq!(index_keys(&deleting).len(), 2);
    }
}
