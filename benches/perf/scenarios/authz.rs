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
