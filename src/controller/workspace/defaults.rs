//! An Organization's `workspaceDefaults`, as objects in each of its workspace
//! namespaces: a ResourceQuota, a LimitRange and an isolating NetworkPolicy.
//! Pure: building and comparing, no IO.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::api::Organization;
use crate::controller::apply::{UpToDate, metadata_matches};

/// Name of the ResourceQuota and of the LimitRange the defaults create.
pub const DEFAULTS_NAME: &str = "workspaces.dev-defaults";
/// Name of the NetworkPolicy that refuses ingress from other namespaces.
pub const ISOLATION_NAME: &str = "workspaces.dev-isolation";

/// The objects an organization's defaults put in one workspace namespace;
/// `None` means the object must not exist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Defaults {
    /// `workspaceDefaults.resourceQuota`.
    pub quota: Option<ResourceQuota>,
    /// `workspaceDefaults.limitRange`.
    pub limit_range: Option<LimitRange>,
    /// `workspaceDefaults.networkIsolation: true`.
    pub isolation: Option<NetworkPolicy>,
}

fn metadata(name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels.clone()),
        ..Default::default()
    }
}

/// The default objects for `namespace` from `organization` (none for a
/// personal workspace), labelled with `labels`.
pub fn build(
    organization: Option<&Organization>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Defaults {
    let Some(defaults) = organization.and_then(|o| o.spec.workspace_defaults.as_ref()) else {
        return Defaults::default();
    };
    Defaults {
        quota: defaults.resource_quota.as_ref().map(|spec| ResourceQuota {
            metadata: metadata(DEFAULTS_NAME, namespace, labels),
            spec: Some(spec.clone()),
            status: None,
        }),
        limit_range: defaults.limit_range.as_ref().map(|spec| LimitRange {
            metadata: metadata(DEFAULTS_NAME, namespace, labels),
            spec: Some(spec.clone()),
        }),
        isolation: (defaults.network_isolation == Some(true)).then(|| NetworkPolicy {
            metadata: metadata(ISOLATION_NAME, namespace, labels),
            spec: Some(NetworkPolicySpec {
                // Every pod of the namespace accepts ingress only from pods of
                // the same namespace.
                pod_selector: Some(LabelSelector::default()),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector::default()),
                        ..Default::default()
                    }]),
                    ports: None,
                }]),
                policy_types: Some(vec!["Ingress".to_string()]),
                egress: None,
            }),
        }),
    }
}

/// A quantity in thousandths of its unit, so that `1`, `1000m` and `1e3m`
/// compare equal the way the API server canonicalises them. `None` when the
/// text is not a quantity this parser knows.
pub fn milli_units(quantity: &str) -> Option<i128> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (mantissa, exponent): (&str, i32) = match suffix.strip_prefix(['e', 'E']) {
        Some(exp) if !exp.is_empty() => (number, exp.parse().ok()?),
        _ => (number, 0),
    };
    let suffix = if exponent != 0 { "" } else { suffix };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let negative = int_part.starts_with('-');
    let digits: String = format!("{}{}", int_part.trim_start_matches(['+', '-']), frac_part);
    let mut value: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let mut scale: i32 = -(frac_part.len() as i32) + exponent + 3; // milli
    let binary: Option<u32> = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    match (binary, suffix) {
        (Some(shift), _) => value = value.checked_mul(1i128 << shift)?,
        (None, "") => {}
        (None, "n") => scale -= 9,
        (None, "u") => scale -= 6,
        (None, "m") => scale -= 3,
        (None, "k") => scale += 3,
        (None, "M") => scale += 6,
        (None, "G") => scale += 9,
        (None, "T") => scale += 12,
        (None, "P") => scale += 15,
        (None, "E") => scale += 18,
        _ => return None,
    }
    while scale > 0 {
        value = value.checked_mul(10)?;
        scale -= 1;
    }
    while scale < 0 {
        // Below a milli-unit the API server rounds up; so does this.
        value = (value + 9) / 10;
        scale += 1;
    }
    Some(if negative { -value } else { value })
}

/// Whether two quantity maps say the same amounts.
pub fn same_quantities(
    a: Option<&BTreeMap<String, Quantity>>,
    b: Option<&BTreeMap<String, Quantity>>,
) -> bool {
    let empty = BTreeMap::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k)
                .is_some_and(|w| match (milli_units(&v.0), milli_units(&w.0)) {
                    (Some(x), Some(y)) => x == y,
                    _ => v.0 == w.0,
                })
        })
}

// What the operator owns in its quota and limit range, for `apply_if_changed`.

impl UpToDate for k8s_openapi::api::core::v1::ResourceQuota {
    fn up_to_date(&self, desired: &Self) -> bool {
        let (a, d) = (
            self.spec.clone().unwrap_or_default(),
            desired.spec.clone().unwrap_or_default(),
        );
        metadata_matches(self, desired)
            && same_quantities(a.hard.as_ref(), d.hard.as_ref())
            && a.scopes.unwrap_or_default() == d.scopes.unwrap_or_default()
            && a.scope_selector == d.scope_selector
    }
}

impl UpToDate for k8s_openapi::api::core::v1::LimitRange {
    /// The API server fills in what a LimitRange leaves out (for containers,
    /// `defaultRequest` from `default`), so only what the desired object sets
    /// is compared.
    fn up_to_date(&self, desired: &Self) -> bool {
        let set = |a: Option<&BTreeMap<String, _>>, d: Option<&BTreeMap<String, _>>| {
            d.is_none() || same_quantities(a, d)
        };
        let (a, d) = (
            self.spec.clone().unwrap_or_default(),
            desired.spec.clone().unwrap_or_default(),
        );
        metadata_matches(self, desired)
            && a.limits.len() == d.limits.len()
            && a.limits.iter().zip(&d.limits).all(|(x, y)| {
                x.type_ == y.type_
                    && set(x.default.as_ref(), y.default.as_ref())
                    && set(x.default_request.as_ref(), y.default_request.as_ref())
                    && set(x.max.as_ref(), y.max.as_ref())
                    && set(x.min.as_ref(), y.min.as_ref())
                    && set(
                        x.max_limit_request_ratio.as_ref(),
                        y.max_limit_request_ratio.as_ref(),
                    )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OrganizationSpec, WorkspaceDefaults};
    use k8s_openapi::api::core::v1::ResourceQuotaSpec;

    #[test]
    fn quantities_compare_the_way_the_api_server_canonicalises() {
        assert_eq!(milli_units("1"), Some(1000));
        assert_eq!(milli_units("1000m"), milli_units("1"));
        assert_eq!(milli_units("1.5"), Some(1500));
        assert_eq!(milli_units("2Gi"), Some(2 * (1i128 << 30) * 1000));
        assert_eq!(milli_units("1k"), milli_units("1000"));
        assert_eq!(milli_units("1e3"), milli_units("1k"));
        assert_eq!(milli_units("0.5Gi"), milli_units("512Mi"));
        assert_eq!(milli_units("100u"), Some(1));
        assert_eq!(milli_units("bogus"), None);
        assert_ne!(milli_units("1"), milli_units("2"));
    }

    #[test]
    fn quantity_maps_compare_by_amount() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect::<BTreeMap<_, _>>()
        };
        let a = map(&[("cpu", "1000m"), ("memory", "1Gi")]);
        let b = map(&[("cpu", "1"), ("memory", "1024Mi")]);
        let c = map(&[("cpu", "2"), ("memory", "1Gi")]);
        assert!(same_quantities(Some(&a), Some(&b)));
        assert!(!same_quantities(Some(&a), Some(&c)));
        assert!(!same_quantities(Some(&a), None));
    }

    #[test]
    fn personal_workspaces_and_organizations_without_defaults_get_nothing() {
        let labels = BTreeMap::new();
        assert_eq!(build(None, "ns", &labels), Defaults::default());
        let org = Organization::new("acme", OrganizationSpec::default());
        assert_eq!(build(Some(&org), "ns", &labels), Defaults::default());
    }

    #[test]
    fn defaults_become_named_labelled_objects() {
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let mut org = Organization::new("acme", OrganizationSpec::default());
        org.spec.workspace_defaults = Some(WorkspaceDefaults {
            resource_quota: Some(ResourceQuotaSpec {
                hard: Some(BTreeMap::from([(
                    "pods".to_string(),
                    Quantity("10".into()),
                )])),
                ..Default::default()
            }),
            limit_range: None,
            network_isolation: Some(true),
            pod_security: None,
        });
        let d = build(Some(&org), "acme-prod", &labels);
        let quota = d.quota.expect("quota");
        assert_eq!(quota.metadata.name.as_deref(), Some(DEFAULTS_NAME));
        assert_eq!(quota.metadata.namespace.as_deref(), Some("acme-prod"));
        assert_eq!(quota.metadata.labels.as_ref(), Some(&labels));
        assert!(d.limit_range.is_none());
        let policy = d.isolation.expect("policy").spec.expect("spec");
        assert_eq!(policy.policy_types, Some(vec!["Ingress".to_string()]));
        let from = &policy.ingress.unwrap()[0].from.clone().unwrap()[0];
        assert!(from.namespace_selector.is_none(), "only the same namespace");
    }
}
