use serde_json::{Value, json};

use super::*;
use crate::api::testutil::{assert_accepted, assert_refused, property, round_trip, schema};

/// SPEC §1.1, verbatim except the status conditions, which the SPEC
/// abbreviates as `[Ready, NamespaceReady, AccessReady, ...]`.
const SPEC_EXAMPLE: &str = r#"
apiVersion: workspaces.dev/v1alpha1
kind: Workspace
metadata:
  name: acme-prod            # DNS-1123 label, <= 63 chars; default namespace name
spec:
  owner:                     # the account that manages the workspace (required)
    kind: Organization       # User | Organization
    name: acme               # an Organization name, or a username as the cluster's authenticator reports it
  handle: prod               # optional; defaults to metadata.name; [a-z0-9-], <= 63; unique within the owner
  description: "Production flows"   # optional, <= 5000 chars
  namespace: acme-prod       # optional, immutable after creation; defaults to metadata.name
  deletionPolicy: Delete     # Delete (default, like Prefect: deleting a workspace deletes everything in it) | Retain
  deletionProtection: false  # when true, DELETE of the Workspace is refused
status:
  namespace: acme-prod
  handle: prod               # effective handle
  owner: {kind: Organization, name: acme}   # the owner whose access is applied now
  members: 3                 # active WorkspaceMembers
  conditions:
  - {type: Ready, status: "True", reason: Provisioned, message: The workspace is ready., lastTransitionTime: "2025-01-01T00:00:00Z", observedGeneration: 4}
  - {type: NamespaceReady, status: "True", reason: Provisioned, message: Namespace acme-prod is ready., lastTransitionTime: "2025-01-01T00:00:00Z", observedGeneration: 4}
  - {type: AccessReady, status: "True", reason: Provisioned, message: Owner access is in place., lastTransitionTime: "2025-01-01T00:00:00Z", observedGeneration: 4}
  observedGeneration: 4
"#;

fn workspace(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "workspaces.dev/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "spec": spec,
    })
}

fn org_owned(extra: Value) -> Value {
    let mut spec = json!({"owner": {"kind": "Organization", "name": "acme"}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

fn accepted(obj: &Value) {
    assert_accepted::<Workspace>(obj, None);
}

fn refused(obj: &Value, fragment: &str) {
    assert_refused::<Workspace>(obj, None, fragment);
}

#[test]
fn spec_example_round_trips_and_is_accepted() {
    let ws: Workspace = round_trip(SPEC_EXAMPLE);
    assert_eq!(ws.spec.owner, AccountRef::organization("acme"));
    assert_eq!(ws.spec.deletion_policy, DeletionPolicy::Delete);
    let status = ws.status.as_ref().unwrap();
    assert_eq!(status.members, Some(3));
    assert_eq!(status.observed_generation, Some(4));
    accepted(&serde_json::to_value(&ws).unwrap());
}

#[test]
fn minimal_workspace_gets_defaults() {
    let ws: Workspace = serde_json::from_value(workspace(
        "team-a",
        json!({"owner": {"kind": "User", "name": "alice@acme.io"}}),
    ))
    .unwrap();
    assert_eq!(ws.spec.deletion_policy, DeletionPolicy::Delete);
    assert!(!ws.spec.deletion_protection);
    assert_eq!(ws.spec.effective_handle("team-a"), "team-a");
    assert_eq!(ws.spec.effective_namespace("team-a"), "team-a");
    assert!(ws.status.is_none());
    accepted(&serde_json::to_value(&ws).unwrap());

    let schema = schema::<Workspace>();
    assert_eq!(
        property(&schema, "spec/deletionPolicy")["default"],
        "Delete"
    );
    assert_eq!(
        property(&schema, "spec/deletionProtection")["default"],
        false
    );
}

#[test]
fn effective_handle_and_namespace_prefer_the_spec() {
    let ws: Workspace = serde_yaml::from_str(SPEC_EXAMPLE).unwrap();
    assert_eq!(ws.spec.effective_handle("acme-prod"), "prod");
    assert_eq!(ws.spec.effective_namespace("other"), "acme-prod");
}

#[test]
fn name_must_be_a_dns_label_of_at_most_63_characters() {
    accepted(&workspace("a", org_owned(json!({}))));
    accepted(&workspace(&"a".repeat(63), org_owned(json!({}))));
    for bad in [&"a".repeat(64), "acme.prod", "-acme", "acme-", "Acme"] {
        refused(
            &workspace(bad, org_owned(json!({}))),
            "Workspace name must be a DNS-1123 label",
        );
    }
}

#[test]
fn reserved_names_are_refused() {
    for bad in [
        "default",
        "kube-system",
        "kube-public",
        "openshift-monitoring",
    ] {
        refused(
            &workspace(bad, org_owned(json!({}))),
            "Workspace name is reserved",
        );
    }
    for good in ["kube", "kubeflow", "my-default", "openshift"] {
        accepted(&workspace(good, org_owned(json!({}))));
    }
}

#[test]
fn handle_must_be_lowercase_alphanumerics_and_dashes() {
    for good in ["prod", "prod-eu", "1", &"h".repeat(63)] {
        accepted(&workspace("acme-prod", org_owned(json!({"handle": good}))));
    }
    for bad in [
        "", "Prod", "prod_eu", "-prod", "prod-", "prod.eu", "prod eu",
    ] {
        refused(
            &workspace("acme-prod", org_owned(json!({"handle": bad}))),
            "spec.handle must be 1 to 63 lowercase letters",
        );
    }
    assert_eq!(
        property(&schema::<Workspace>(), "spec/handle")["maxLength"],
        63
    );
}

#[test]
fn description_is_bounded() {
    assert_eq!(
        property(&schema::<Workspace>(), "spec/description")["maxLength"],
        5000
    );
}

#[test]
fn namespace_must_be_a_dns_label() {
    accepted(&workspace(
        "acme-prod",
        org_owned(json!({"namespace": "acme-production"})),
    ));
    for bad in ["", "Acme", "acme.prod", "acme_prod", "-acme"] {
        refused(
            &workspace("acme-prod", org_owned(json!({"namespace": bad}))),
            "spec.namespace must be a DNS-1123 label",
        );
    }
    assert_eq!(
        property(&schema::<Workspace>(), "spec/namespace")["maxLength"],
        63
    );
}

#[test]
fn reserved_namespaces_are_refused() {
    for bad in [
        "default",
        "kube-system",
        "kube-node-lease",
        "openshift-config",
    ] {
        refused(
            &workspace("acme-prod", org_owned(json!({"namespace": bad}))),
            "spec.namespace names a namespace reserved for the cluster",
        );
    }
}

#[test]
fn namespace_cannot_change_once_set() {
    let old = workspace("acme-prod", org_owned(json!({"namespace": "acme-a"})));
    let msg = "spec.namespace cannot change after the Workspace is created";

    // Unchanged, or other fields changed: fine.
    assert_accepted::<Workspace>(&old, Some(&old));
    let described = workspace(
        "acme-prod",
        org_owned(json!({"namespace": "acme-a", "description": "new text"})),
    );
    assert_accepted::<Workspace>(&described, Some(&old));

    // Changed or removed: refused.
    let changed = workspace("acme-prod", org_owned(json!({"namespace": "acme-b"})));
    assert_refused::<Workspace>(&changed, Some(&old), msg);
    let removed = workspace("acme-prod", org_owned(json!({})));
    assert_refused::<Workspace>(&removed, Some(&old), msg);
}

#[test]
fn an_unset_namespace_may_only_be_spelled_out_as_the_name() {
    let old = workspace("acme-prod", org_owned(json!({})));
    assert_accepted::<Workspace>(&old, Some(&old));
    let explicit = workspace("acme-prod", org_owned(json!({"namespace": "acme-prod"})));
    assert_accepted::<Workspace>(&explicit, Some(&old));
    let other = workspace("acme-prod", org_owned(json!({"namespace": "elsewhere"})));
    assert_refused::<Workspace>(
        &other,
        Some(&old),
        "spec.namespace cannot change after the Workspace is created",
    );
}

#[test]
fn owner_name_must_not_be_empty() {
    for kind in ["User", "Organization"] {
        refused(
            &workspace("acme-prod", json!({"owner": {"kind": kind, "name": ""}})),
            "account name must not be empty",
        );
    }
    assert_eq!(
        property(&schema::<Workspace>(), "spec/owner/name")["maxLength"],
        253
    );
}

#[test]
fn an_organization_owner_is_named_like_an_organization() {
    accepted(&workspace(
        "acme-prod",
        json!({"owner": {"kind": "User", "name": "Alice Example <alice@acme.io>"}}),
    ));
    accepted(&workspace(
        "acme-prod",
        json!({"owner": {"kind": "Organization", "name": "acme"}}),
    ));
    for bad in ["Acme", "acme.io", "acme inc"] {
        refused(
            &workspace(
                "acme-prod",
                json!({"owner": {"kind": "Organization", "name": bad}}),
            ),
            "an Organization account is named by the Organization's metadata.name",
        );
    }
}

#[test]
fn enums_are_closed_in_the_schema() {
    let schema = schema::<Workspace>();
    assert_eq!(
        property(&schema, "spec/owner/kind")["enum"],
        json!(["User", "Organization"])
    );
    assert_eq!(
        property(&schema, "spec/deletionPolicy")["enum"],
        json!(["Delete", "Retain"])
    );
    assert_eq!(
        property(&schema, "status/phase")["enum"],
        json!(["Pending", "Active", "Blocked", "Terminating"])
    );
    assert!(
        serde_json::from_value::<WorkspaceSpec>(json!({"owner": {"kind": "Team", "name": "x"}}))
            .is_err()
    );
}

#[test]
fn owner_and_conditions_are_required_shapes() {
    let schema = schema::<Workspace>();
    assert_eq!(property(&schema, "spec")["required"], json!(["owner"]));
    assert_eq!(
        property(&schema, "spec/owner")["required"],
        json!(["kind", "name"])
    );
    let conditions = property(&schema, "status/conditions");
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    assert_eq!(conditions["maxItems"], 16);
}

#[test]
fn crd_names_scope_columns_and_subresources() {
    let crd = crate::api::crdgen::crd::<Workspace>();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("workspaces.workspaces.dev")
    );
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(crd.spec.names.short_names, Some(vec!["ws".to_string()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec![crate::api::CATEGORY.to_string()])
    );
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Owner Kind", ".spec.owner.kind"),
            ("Owner", ".spec.owner.name"),
            ("Handle", ".status.handle"),
            ("Namespace", ".status.namespace"),
            ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            ("Phase", ".status.phase"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    let selectable: Vec<&str> = version
        .selectable_fields
        .iter()
        .flatten()
        .map(|f| f.json_path.as_str())
        .collect();
    assert_eq!(selectable, [".spec.owner.kind", ".spec.owner.name"]);
}

#[test]
fn account_refs_display_and_construct() {
    assert_eq!(AccountRef::user("bob").to_string(), "User/bob");
    assert_eq!(
        AccountRef::organization("acme").to_string(),
        "Organization/acme"
    );
}
