//! The per-transfer read grant: a ClusterRole about one transfer, bound to
//! both sides (pure).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject as RbacSubject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::{GRANT_PREFIX, Inputs, owners};
use crate::api::{Workspace, WorkspaceTransfer};
use crate::controller::labels;
use crate::controller::workspace::build::owner_subjects;

/// FNV-1a, 64 bits, for shortening generated names.
fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The name of a transfer's read grant (ClusterRole and ClusterRoleBinding).
pub fn grant_name(transfer: &str) -> String {
    let full = format!("{GRANT_PREFIX}{transfer}");
    if full.len() <= 253 {
        return full;
    }
    format!(
        "{}-{:016x}",
        labels::truncate(&full, 253 - 17),
        fnv64(&full)
    )
}

fn grant_metadata(t: &WorkspaceTransfer) -> ObjectMeta {
    ObjectMeta {
        name: Some(grant_name(&t.name_any())),
        labels: Some(BTreeMap::from([(
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        )])),
        owner_references: Some(t.controller_owner_ref(&()).into_iter().collect()),
        ..Default::default()
    }
}

/// The ClusterRole that lets its subjects read this one transfer: `get`,
/// and `list`/`watch` by name (what `kubectl get`, `kubectl wait` and
/// `kubectl delete` ask for).
pub fn reader_role(t: &WorkspaceTransfer) -> ClusterRole {
    ClusterRole {
        metadata: grant_metadata(t),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![crate::api::GROUP.to_string()]),
            resources: Some(vec!["workspacetransfers".to_string()]),
            resource_names: Some(vec![t.name_any()]),
            verbs: ["get", "list", "watch"].map(String::from).to_vec(),
            ..Default::default()
        }]),
        aggregation_rule: None,
    }
}

/// The binding of [`reader_role`] to `readers`.
pub fn reader_binding(t: &WorkspaceTransfer, readers: Vec<RbacSubject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: grant_metadata(t),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "ClusterRole".to_string(),
            name: grant_name(&t.name_any()),
        },
        subjects: (!readers.is_empty()).then_some(readers),
    }
}

/// Who may read the transfer: both sides' approvers (the source's owners
/// and `owner_members`, the target's owners), sorted, without repeats.
pub fn readers(inputs: &Inputs<'_>, owner_members: &[RbacSubject]) -> Vec<RbacSubject> {
    let mut subjects: Vec<RbacSubject> = match inputs.workspace {
        Some(ws) => {
            let (now, then) = owners(inputs, ws);
            now.into_iter().chain(then).collect()
        }
        None => {
            let stub = Workspace::new(
                &inputs.transfer.spec.workspace,
                crate::api::WorkspaceSpec::owned_by(inputs.transfer.spec.to.clone()),
            );
            owner_subjects(&stub, inputs.target_org)
        }
    };
    subjects.extend(owner_members.iter().cloned());
    subjects
        .sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
    subjects.dedup();
    subjects
}
