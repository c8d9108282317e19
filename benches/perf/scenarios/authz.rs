//! The authorization tax: what the operator's objects cost every other
//! request in the cluster.
//!
//! The RBAC authorizer walks every ClusterRoleBinding on every request of a
//! user it does not find earlier, so cluster-scoped RBAC objects that grow
//! with Workspaces or members would slow every kubectl, controller and
//! kubelet request. This scenario times SubjectAccessReviews for a user
//! unrelated to any workspace (a miss, which walks everything), before the
//! population exists and again once it has converged, in the same run.

use std::time::Instant;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use serde::Serialize;

use super::report::percentile;

/// SubjectAccessReview latency for an unrelated user.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Quantiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// ClusterRoleBindings in the cluster when measured.
    pub cluster_role_bindings: usize,
}

/// Both measurements, side by side.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuthorizationTax {
    pub empty: Quantiles,
    pub populated: Quantiles,
}

impl AuthorizationTax {
    /// Populated ÷ empty, at p50 and p99.
    pub fn ratios(&self) -> (f64, f64) {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        (
            ratio(self.populated.p50_ms, self.empty.p50_ms),
            ratio(self.populated.p99_ms, self.empty.p99_ms),
        )
    }
}

/// Times `samples` SubjectAccessReviews, one at a time, for a user no
/// binding names, asking for something nobody grants.
pub async fn measure(admin: &Client, samples: usize) -> Quantiles {
    let api: Api<SubjectAccessReview> = Api::all(admin.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("unrelated@example.com".to_string()),
            groups: Some(vec!["system:authenticated".to_string()]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some("get".to_string()),
                resource: Some("secrets".to_string()),
                namespace: Some("kube-system".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        if api.create(&PostParams::default(), &review).await.is_ok() {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let bindings = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(admin.clone())
        .list_metadata(&Default::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or_default();
    Quantiles {
        samples: times.len(),
        p50_ms: percentile(&times, 50.0),
        p90_ms: percentile(&times, 90.0),
        p99_ms: percentile(&times, 99.0),
        cluster_role_bindings: bindings,
    }
}

/// The tax at a size a cold converge cannot reach here: on a fresh plane,
/// SubjectAccessReviews before, and after creating what `workspaces`
/// workspaces of `per_organization` each hold cluster-wide: one
/// Organization's admin ClusterRole and ClusterRoleBinding per
/// Organization (the shape the operator writes), and nothing per Workspace
/// or member. The authorizer's walk depends only on the bindings that
/// exist, not on who wrote them.
pub async fn at_scale(
    workspaces: usize,
    per_organization: usize,
    samples: usize,
) -> AuthorizationTax {
    use futures::StreamExt;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use serde_json::json;

    let plane = tokio::task::block_in_place(crate::support::plane);
    let admin = plane.admin().await;
    let empty = measure(&admin, samples).await;
    let organizations = workspaces.div_ceil(per_organization.max(1));
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    futures::stream::iter(0..organizations)
        .for_each_concurrent(16, |i| {
            let (roles, bindings) = (roles.clone(), bindings.clone());
            async move {
                let name = format!("workspaces.dev:organization:bench-{i}:admin");
                let role: ClusterRole = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "rules": [{"apiGroups": ["workspaces.dev"], "resources": ["organizations"],
                               "resourceNames": [format!("bench-{i}")],
                               "verbs": ["get", "update", "patch", "administer"]}]
                }))
                .expect("a ClusterRole");
                let binding: ClusterRoleBinding = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("admin-{i}@example.com")},
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("bench-{i}-admins")}
                    ]
                }))
                .expect("a ClusterRoleBinding");
                roles.create(&PostParams::default(), &role).await.expect("create the role");
                bindings
                    .create(&PostParams::default(), &binding)
                    .await
                    .expect("create the binding");
            }
        })
        .await;
    let populated = measure(&admin, samples).await;
    AuthorizationTax { empty, populated }
}
