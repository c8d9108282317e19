//! Writing children: server-side apply with one field manager, and only when
//! the cached object differs from the desired one in what the operator owns.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, PartialObjectMeta, Patch, PatchParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::labels;
use crate::config::FIELD_MANAGER;

/// Server-side applies `desired` as the operator's field manager, taking over
/// fields someone else changed (drift repair).
pub async fn apply<K>(api: &Api<K>, desired: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await
}

/// Deletes `name`; an object that is already gone counts as deleted.
pub async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    uid: Option<String>,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

/// What writing an object's finalizers came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Finalizers {
    /// They are written.
    Written,
    /// The object is gone.
    Gone,
    /// The cached copy is older than the object (the write's
    /// resourceVersion precondition failed, often right after the operator's
    /// own write): the newer version's watch event reconciles it again.
    Stale,
}

/// Sets `object`'s finalizers with a merge patch conditional on the cached
/// copy's resourceVersion, so a concurrent change to the finalizers fails
/// the write instead of being overwritten. A 409 Conflict is a stale cached
/// copy, not a failure.
pub async fn set_finalizers<K>(
    api: &Api<K>,
    object: &K,
    finalizers: Vec<String>,
) -> Result<Finalizers, kube::Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()}
    });
    let written = api
        .patch(
            &object.name_any(),
            &kube::api::PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await;
    finalizers_written(written.map(drop))
}

/// What the outcome of a finalizer write means.
fn finalizers_written(written: Result<(), kube::Error>) -> Result<Finalizers, kube::Error> {
    match written {
        Ok(()) => Ok(Finalizers::Written),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Finalizers::Gone),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Finalizers::Stale),
        Err(err) => Err(err),
    }
}

fn contains_all(
    actual: Option<&BTreeMap<String, String>>,
    desired: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let actual = actual.unwrap_or(&empty);
    desired
        .unwrap_or(&empty)
        .iter()
        .all(|(k, v)| actual.get(k) == Some(v))
}

/// Operator-managed keys present in `actual` but not wanted any more.
fn has_stale_keys(
    actual: Option<&BTreeMap<String, String>>,
    desired: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let desired = desired.unwrap_or(&empty);
    actual
        .unwrap_or(&empty)
        .keys()
        .any(|k| labels::is_operator_key(k) && !desired.contains_key(k))
}

/// Whether `actual` carries the labels, annotations and ownerReferences of
/// `desired` and no operator key `desired` dropped.
pub fn metadata_matches<A: Resource, D: Resource>(actual: &A, desired: &D) -> bool {
    let (a, d) = (actual.meta(), desired.meta());
    contains_all(a.labels.as_ref(), d.labels.as_ref())
        && contains_all(a.annotations.as_ref(), d.annotations.as_ref())
        && !has_stale_keys(a.labels.as_ref(), d.labels.as_ref())
        && !has_stale_keys(a.annotations.as_ref(), d.annotations.as_ref())
        && d.owner_references.as_ref().is_none_or(|refs| {
            refs.iter().all(|r| {
                actual
                    .owner_references()
                    .iter()
                    .any(|o| o.uid == r.uid && o.controller == r.controller)
            })
        })
}

/// Whether a cached object already is what the operator wants.
pub trait UpToDate<Desired = Self> {
    /// True when applying `desired` would change nothing the operator owns.
    fn up_to_date(&self, desired: &Desired) -> bool;

    /// True when the cached object differs from `desired` in a field the API
    /// server never lets change (a binding's `roleRef`): it must be deleted
    /// and created again, not applied.
    fn must_be_replaced(&self, _desired: &Desired) -> bool {
        false
    }
}

impl UpToDate<Namespace> for PartialObjectMeta<Namespace> {
    fn up_to_date(&self, desired: &Namespace) -> bool {
        metadata_matches(self, desired)
    }
}

impl UpToDate for RoleBinding {
    fn up_to_date(&self, desired: &Self) -> bool {
        metadata_matches(self, desired)
            && self.role_ref == desired.role_ref
            && self.subjects.clone().unwrap_or_default()
                == desired.subjects.clone().unwrap_or_default()
    }

    fn must_be_replaced(&self, desired: &Self) -> bool {
        self.role_ref != desired.role_ref
    }
}

impl UpToDate for ClusterRoleBinding {
    fn up_to_date(&self, desired: &Self) -> bool {
        metadata_matches(self, desired)
            && self.role_ref == desired.role_ref
            && self.subjects.clone().unwrap_or_default()
                == desired.subjects.clone().unwrap_or_default()
    }

    fn must_be_replaced(&self, desired: &Self) -> bool {
        self.role_ref != desired.role_ref
    }
}

impl UpToDate for ClusterRole {
    fn up_to_date(&self, desired: &Self) -> bool {
        metadata_matches(self, desired)
            && self.rules.clone().unwrap_or_default() == desired.rules.clone().unwrap_or_default()
            && self.aggregation_rule == desired.aggregation_rule
    }
}

impl UpToDate for Role {
    fn up_to_date(&self, desired: &Self) -> bool {
        metadata_matches(self, desired)
            && self.rules.clone().unwrap_or_default() == desired.rules.clone().unwrap_or_default()
    }
}

impl UpToDate for k8s_openapi::api::networking::v1::NetworkPolicy {
    fn up_to_date(&self, desired: &Self) -> bool {
        metadata_matches(self, desired) && self.spec == desired.spec
    }
}

/// Whether `cached` (if any) already matches `desired`.
pub fn needs_write<C, D>(cached: Option<&C>, desired: &D) -> bool
where
    C: UpToDate<D>,
{
    cached.is_none_or(|c| !c.up_to_date(desired))
}

/// Applies `desired` through `api` when its cached copy in `store` (found by
/// the desired object's name and namespace) differs from it; counts the write
/// under `controller` and `resource`. Returns whether it wrote.
pub async fn apply_if_changed<K>(
    ctx: &super::Context,
    controller: &'static str,
    resource: &'static str,
    store: &super::cache::Cache<K>,
    api: &Api<K>,
    desired: &K,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + UpToDate,
{
    let cached = store.get(&kube::runtime::reflector::ObjectRef::from_obj(desired));
    if !needs_write(cached.as_deref(), desired) {
        return Ok(false);
    }
    if let Some(cached) = cached.as_deref().filter(|c| c.must_be_replaced(desired)) {
        // A binding someone re-created under the operator's name with
        // another role: the roleRef cannot be changed in place.
        ctx.metrics.write(controller, resource);
        delete_if_present(api, &cached.name_any(), cached.uid()).await?;
    }
    ctx.metrics.write(controller, resource);
    match apply(api, desired).await {
        // Refused as invalid: an object the cache does not hold (it lacks the
        // operator's label) may sit under the name with a field that cannot
        // change. Replace it when that is so; otherwise report the refusal.
        Err(kube::Error::Api(status)) if status.code == 422 => {
            let live = api.get_opt(&desired.name_any()).await?;
            match live.filter(|l| l.must_be_replaced(desired)) {
                Some(live) => {
                    ctx.metrics.write(controller, resource);
                    delete_if_present(api, &live.name_any(), live.uid()).await?;
                    ctx.metrics.write(controller, resource);
                    apply(api, desired).await?;
                }
                None => return Err(kube::Error::Api(status)),
            }
        }
        result => {
            result?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn binding(labels: &[(&str, &str)], subjects: &[&str]) -> RoleBinding {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some("b".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "workspaces:owner".into(),
            },
            subjects: Some(
                subjects
                    .iter()
                    .map(|s| Subject {
                        kind: "User".into(),
                        name: s.to_string(),
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        namespace: None,
                    })
                    .collect(),
            ),
        }
    }

    fn api_error(code: u16) -> kube::Error {
        let status: kube::core::Status =
            serde_json::from_value(serde_json::json!({"code": code, "message": "refused"}))
                .expect("a Status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn a_conflict_on_the_finalizers_is_a_stale_copy_not_a_failure() {
        let outcome = |code| finalizers_written(Err(api_error(code)));
        assert!(matches!(outcome(409), Ok(Finalizers::Stale)));
        assert!(matches!(outcome(404), Ok(Finalizers::Gone)));
        assert!(outcome(403).is_err());
        assert!(outcome(500).is_err());
        assert!(matches!(
            finalizers_written(Ok(())),
            Ok(Finalizers::Written)
        ));
    }

    #[test]
    fn equal_binding_needs_no_write() {
        let desired = binding(&[(labels::WORKSPACE, "w")], &["alice"]);
        assert!(!needs_write(Some(&desired.clone()), &desired));
    }

    #[test]
    fn missing_binding_needs_a_write() {
        let desired = binding(&[(labels::WORKSPACE, "w")], &["alice"]);
        assert!(needs_write::<RoleBinding, _>(None, &desired));
    }

    #[test]
    fn extra_labels_from_others_are_tolerated() {
        let desired = binding(&[(labels::WORKSPACE, "w")], &["alice"]);
        let cached = binding(&[(labels::WORKSPACE, "w"), ("team", "x")], &["alice"]);
        assert!(!needs_write(Some(&cached), &desired));
    }

    #[test]
    fn edited_subjects_or_labels_need_a_write() {
        let desired = binding(&[(labels::WORKSPACE, "w")], &["alice"]);
        let added_subject = binding(&[(labels::WORKSPACE, "w")], &["alice", "mallory"]);
        let changed_label = binding(&[(labels::WORKSPACE, "other")], &["alice"]);
        assert!(needs_write(Some(&added_subject), &desired));
        assert!(needs_write(Some(&changed_label), &desired));
    }

    #[test]
    fn a_binding_to_another_role_is_replaced_not_applied() {
        let desired = binding(&[(labels::WORKSPACE, "w")], &["alice"]);
        let mut other_role = desired.clone();
        other_role.role_ref.name = "workspaces:viewer".into();
        assert!(needs_write(Some(&other_role), &desired));
        assert!(other_role.must_be_replaced(&desired));
        let mut other_subject = desired.clone();
        other_subject.subjects = None;
        assert!(!other_subject.must_be_replaced(&desired));
    }

    #[test]
    fn stale_operator_labels_need_a_write() {
        let desired = binding(&[(labels::WORKSPACE, "w")], &["alice"]);
        let stale = binding(
            &[(labels::WORKSPACE, "w"), (labels::OWNER, "bob")],
            &["alice"],
        );
        assert!(needs_write(Some(&stale), &desired));
    }
}
