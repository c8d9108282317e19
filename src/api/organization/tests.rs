use serde_json::{Value, json};

use super::*;
use crate::api::testutil::{assert_accepted, assert_refused, property, round_trip, schema};

/// SPEC §1.5, verbatim except the places the SPEC abbreviates:
/// `resourceQuota: {hard: {...}}`, `limitRange: {...}` and the status
/// conditions.
const SPEC_EXAMPLE: &str = r#"
apiVersion: workspaces.dev/v1alpha1
kind: Organization
metadata:
  name: acme
spec:
  displayName: Acme Inc.
  admins:  [{kind: User, name: alice@acme.io}, {kind: Group, name: acme-admins}]
  members: [{kind: User, name: bob@acme.io},   {kind: Group, name: acme-eng}]
  limits:                      # set by platform admins only (admission)
    workspaces: 10
    membersPerWorkspace: 50
  workspaceDefaults:           # set by platform admins only; applied to every workspace of the org
    resourceQuota: {hard: {requests.cpu: "10", limits.memory: 40Gi, pods: "100"}}
    limitRange: {limits: [{type: Container, default: {cpu: 500m, memory: 512Mi}, defaultRequest: {cpu: 100m}}]}
    networkIsolation: true     # NetworkPolicy: no ingress from other namespaces
status:
  workspaces: 4
  conditions:
  - {type: Ready, status: "True", reason: Provisioned, message: The organization is reconciled., lastTransitionTime: "2025-01-01T00:00:00Z"}
"#;

fn organization(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "workspaces.dev/v1alpha1",
        "kind": "Organization",
        "metadata": {"name": name},
        "spec": spec,
    })
}

#[test]
fn spec_example_round_trips_and_is_accepted() {
    let org: Organization = round_trip(SPEC_EXAMPLE);
    assert_eq!(org.spec.display_name.as_deref(), Some("Acme Inc."));
    assert_eq!(
        org.spec.admins,
        [
            OrganizationSubject::user("alice@acme.io"),
            OrganizationSubject::group("acme-admins")
        ]
    );
    assert_eq!(org.spec.limits.map(|l| l.workspaces), Some(Some(10)));
    let defaults = org.spec.workspace_defaults.as_ref().unwrap();
    assert_eq!(defaults.network_isolation, Some(true));
    assert!(
        defaults
            .resource_quota
            .as_ref()
            .and_then(|q| q.hard.as_ref())
            .is_some()
    );
    assert_eq!(org.status.as_ref().and_then(|s| s.workspaces), Some(4));
    assert_accepted::<Organization>(&serde_json::to_value(&org).unwrap(), None);
}

#[test]
fn an_empty_organization_is_valid() {
    let org: Organization = serde_json::from_value(organization("acme", json!({}))).unwrap();
    assert_eq!(org.spec, OrganizationSpec::default());
    assert_accepted::<Organization>(&serde_json::to_value(&org).unwrap(), None);
}

#[test]
fn name_must_be_a_dns_label() {
    assert_accepted::<Organization>(&organization(&"o".repeat(63), json!({})), None);
    for bad in ["acme.io", &"o".repeat(64), "Acme"] {
        assert_refused::<Organization>(
            &organization(bad, json!({})),
            None,
            "Organization name must be a DNS-1123 label",
        );
    }
}

#[test]
fn admins_and_members_need_names() {
    for list in ["admins", "members"] {
        assert_refused::<Organization>(
            &organization("acme", json!({list: [{"kind": "User", "name": ""}]})),
            None,
            "an organization admin or member needs a name",
        );
    }
}

#[test]
fn lists_are_bounded_keyed_and_closed() {
    let schema = schema::<Organization>();
    for (list, max) in [("admins", 100), ("members", 1000)] {
        let node = property(&schema, &format!("spec/{list}"));
        assert_eq!(node["maxItems"], max, "{list}");
        assert_eq!(node["x-kubernetes-list-type"], "map", "{list}");
        assert_eq!(
            node["x-kubernetes-list-map-keys"],
            json!(["kind", "name"]),
            "{list}"
        );
        assert_eq!(
            property(&schema, &format!("spec/{list}/kind"))["enum"],
            json!(["User", "Group"])
        );
        assert_eq!(
            property(&schema, &format!("spec/{list}/name"))["maxLength"],
            253
        );
    }
    assert!(
        serde_json::from_value::<OrganizationSubject>(
            json!({"kind": "ServiceAccount", "name": "x"})
        )
        .is_err()
    );
    assert_eq!(property(&schema, "spec/displayName")["maxLength"], 256);
    assert_eq!(property(&schema, "spec/limits/workspaces")["minimum"], 0.0);
    assert_eq!(
        property(&schema, "spec/limits/membersPerWorkspace")["minimum"],
        0.0
    );
}

#[test]
fn crd_names_and_columns() {
    let crd = crate::api::crdgen::crd::<Organization>();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("organizations.workspaces.dev")
    );
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(crd.spec.names.short_names, Some(vec!["org".to_string()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec![crate::api::CATEGORY.to_string()])
    );
    let version = &crd.spec.versions[0];
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
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| (c.name.as_str(), c.type_.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Workspaces", "integer"),
            ("Ready", "string"),
            ("Age", "date")
        ]
    );
}
