//! Which watch events concern which WorkspaceTransfers: the transfer
//! controller's own mapping functions, registered with the world, and the
//! keys transfers are indexed under.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use crate::api::{AccountRef, Organization, Workspace, WorkspaceMember, WorkspaceTransfer};
use crate::controller::labels;
use crate::controller::world::{Queue, Routes, World, watch};

/// Registers the transfer controller's triggers and index keys.
pub fn register(routes: &mut Routes, queue: &Queue<WorkspaceTransfer>) {
    routes
        .file(watch::TRANSFERS, index_keys)
        .on(watch::TRANSFERS, queue, on_transfer)
        .on(watch::WORKSPACES, queue, on_workspace)
        .on(watch::ORGANIZATIONS, queue, on_organization)
        .on(watch::MEMBERS, queue, on_member)
        .on(watch::ROLE_BINDINGS, queue, on_member_binding)
        .on_children(queue, on_child);
}

type Transfers = Vec<ObjectRef<WorkspaceTransfer>>;

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

/// The open WorkspaceTransfers of the Workspace `workspace`.
pub fn transfers_of(world: &World, workspace: &str) -> Vec<std::sync::Arc<WorkspaceTransfer>> {
    world
        .transfers_filed_under(&of_workspace(workspace))
        .into_iter()
        .filter(|t| t.spec.workspace == workspace)
        .collect()
}

/// The open WorkspaceTransfers to or from `account`.
pub fn transfers_of_account(
    world: &World,
    account: &AccountRef,
) -> Vec<std::sync::Arc<WorkspaceTransfer>> {
    world.transfers_filed_under(&of_account(account))
}

fn refs(transfers: impl IntoIterator<Item = std::sync::Arc<WorkspaceTransfer>>) -> Transfers {
    transfers
        .into_iter()
        .filter(|t| open(t))
        .map(|t| ObjectRef::new(&t.name_any()))
        .collect()
}

/// A transfer concerns itself and the other open transfers of its workspace
/// (one that ends may let the next one run).
fn on_transfer(world: &World, t: &WorkspaceTransfer) -> Transfers {
    let name = t.name_any();
    let mut out = vec![ObjectRef::new(&name)];
    out.extend(
        refs(transfers_of(world, &t.spec.workspace))
            .into_iter()
            .filter(|other| other.name != name),
    );
    out
}

/// A Workspace concerns its open transfers, and those whose target is its
/// owner (the target's handles and workspace count).
fn on_workspace(world: &World, ws: &Workspace) -> Transfers {
    let mut out = refs(transfers_of(world, &ws.name_any()));
    out.extend(refs(transfers_of_account(world, &ws.spec.owner)));
    out
}

/// An Organization concerns the open transfers to and from it.
fn on_organization(world: &World, org: &Organization) -> Transfers {
    let account = AccountRef::organization(org.name_any());
    refs(transfers_of_account(world, &account))
}

/// A member concerns the open transfers of its workspace (who loses access,
/// who may read the transfer).
fn on_member(world: &World, member: &WorkspaceMember) -> Transfers {
    match member.namespace() {
        Some(namespace) => of_namespace(world, &namespace),
        None => Vec::new(),
    }
}

/// A member's RoleBinding concerns the open transfers of its namespace's
/// workspace: a running transfer waits until the bindings of the members it
/// revokes are gone. (Other grants to one subject, an invitee's or a
/// directory entry's, concern no transfer.)
fn on_member_binding(world: &World, rb: &k8s_openapi::api::rbac::v1::RoleBinding) -> Transfers {
    let labels = rb.labels();
    if labels.contains_key(labels::DIRECTORY) || labels.contains_key(labels::INVITATION) {
        return Vec::new();
    }
    match (labels.contains_key(labels::MEMBER), rb.namespace()) {
        (true, Some(ns)) => of_namespace(world, &ns),
        _ => Vec::new(),
    }
}

/// The open transfers of the workspaces of `namespace`.
fn of_namespace(world: &World, namespace: &str) -> Transfers {
    world
        .workspaces_naming(namespace)
        .iter()
        .flat_map(|ws| refs(transfers_of(world, &ws.name_any())))
        .collect()
}

/// A managed child (the per-transfer read grant) concerns the transfer
/// that controls it.
fn on_child(child: &ObjectMeta) -> Transfers {
    child
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.controller == Some(true))
        .filter(|o| {
            o.kind == WorkspaceTransfer::kind(&())
                && o.api_version == WorkspaceTransfer::api_version(&())
        })
        .map(|o| ObjectRef::new(&o.name))
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
