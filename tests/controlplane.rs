//! The control plane the tests run against is real: RBAC is enforced by the
//! API server, the controller-manager fills aggregated ClusterRoles and
//! finishes namespace deletion.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn rbac_is_enforced_for_the_bound_user_only() {
    let plane = support::plane();
    let admin = plane.admin().await;
    let ns = support::unique("cp-rbac");
    let _dump = support::dump_on_failure(&[&ns]);

    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &ns);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "alice-view"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice@example.com"}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let alice = plane.client_as("alice@example.com", &[]).await;
    let mallory = plane.client_as("mallory@example.com", &[]).await;
    assert!(support::can_i(&alice, "list", "pods", Some(&ns), None).await);
    assert!(!support::can_i(&alice, "create", "pods", Some(&ns), None).await);
    assert!(!support::can_i(&mallory, "list", "pods", Some(&ns), None).await);
    // And not only the review: a real request as mallory is forbidden.
    let as_mallory: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(mallory, &ns);
    let err = as_mallory.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );
}

#[tokio::test]
async fn controller_manager_fills_aggregated_cluster_roles() {
    let plane = support::plane();
    let admin = plane.admin().await;
    let label = support::unique("cp-agg");
    let roles: Api<ClusterRole> = Api::all(admin);
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": format!("{label}-aggregate")},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"test.workspaces.dev/aggregate": label}}]},
                "rules": []
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": format!("{label}-part"), "labels": {"test.workspaces.dev/aggregate": label}},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let name = format!("{label}-aggregate");
    support::wait_for(
        "the aggregated role to receive its rules",
        Duration::from_secs(30),
        || {
            let roles = roles.clone();
            let name = name.clone();
            async move {
                let role = roles.get(&name).await.ok()?;
                let rules = role.rules.unwrap_or_default();
                rules
                    .iter()
                    .any(|r| r.resources.as_deref() == Some(&["configmaps".to_string()][..]))
                    .then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn namespace_deletion_completes() {
    let plane = support::plane();
    let admin = plane.admin().await;
    let ns = support::unique("cp-delete");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    // Content in the namespace makes the namespace controller do real work.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(admin.clone(), &ns);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "data"}, "data": {"k": "v"}})).unwrap(),
    )
    .await
    .unwrap();
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    support::wait_for(
        "the namespace to disappear",
        Duration::from_secs(60),
        || {
            let namespaces = namespaces.clone();
            let ns = ns.clone();
            async move {
                match namespaces.get_opt(&ns).await {
                    Ok(None) => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await;
}
