//! A Workspace going away: its namespace deleted or retained (and
//! released), the operator's objects in it removed, the finalizer lifted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{
    CONTROLLER, Error, STALE_REQUEUE, build, defaults, publish, set_finalizers, sync_optional,
    write_status,
};
use crate::api::conditions::{self, Progress, reason};
use crate::api::{Workspace, WorkspacePhase};
use crate::controller::apply::{Finalizers, delete_if_present};
use crate::controller::{Action, Context, labels};

/// Deletes the per-workspace ClusterRoles and ClusterRoleBindings that
/// earlier versions of the operator created for `ws` (an upgrade's
/// migration; on a cluster without them this reads the cache and writes
/// nothing). Only objects the operator's cache holds (its managed-by label)
/// under the Workspace's own names and owned by its UID are deleted, each
/// with a UID precondition.
pub(super) async fn remove_legacy_access(ws: &Workspace, ctx: &Context) -> Result<(), Error> {
    let Some(uid) = ws.uid() else { return Ok(()) };
    for name in build::legacy_access_names(&ws.name_any()) {
        remove_if_owned(ctx, &ctx.world.cluster_role_bindings, &name, &uid).await?;
        remove_if_owned(ctx, &ctx.world.cluster_roles, &name, &uid).await?;
    }
    Ok(())
}

/// Deletes the cluster-scoped `name` that `cache` holds, when the object
/// with UID `owner` owns it, with a UID precondition.
async fn remove_if_owned<K>(
    ctx: &Context,
    cache: &crate::controller::cache::Cache<K>,
    name: &str,
    owner: &str,
) -> Result<(), Error>
where
    K: crate::controller::world::Watched + k8s_openapi::Resource,
{
    let Some(obj) = cache.get(&ObjectRef::new(name)) else {
        return Ok(());
    };
    if !obj.owner_references().iter().any(|r| r.uid == owner) {
        return Ok(());
    }
    ctx.metrics.write(CONTROLLER, K::URL_PATH_SEGMENT);
    delete_if_present(&Api::<K>::all(ctx.client.clone()), name, obj.uid())
        .await
        .map_err(|source| Error::Delete {
            kind: <K as k8s_openapi::Resource>::KIND,
            source,
        })
}

/// Whether the Workspace CRD itself is being removed: then namespaces are
/// retained, whatever the deletion policy says.
async fn crd_terminating(ctx: &Context) -> Result<bool, Error> {
    let api: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let name = format!("{}.{}", Workspace::plural(&()), Workspace::group(&()));
    match api.get_opt(&name).await {
        Ok(crd) => Ok(crd.is_none_or(|c| c.metadata.deletion_timestamp.is_some())),
        Err(err) => Err(Error::Crd(err)),
    }
}

/// Deletion: with `Delete`, remove the namespace the operator created and wait
/// until it is gone; otherwise remove only what the operator added. Then drop
/// the finalizer. Never wedges: a namespace that
/// is gone or was never created is simply skipped.
pub(super) async fn cleanup(ws: &Workspace, ctx: &Context) -> Result<Action, Error> {
    if !ws.finalizers().iter().any(|f| f == labels::FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ws.name_any();
    let ns_name = ws
        .status
        .as_ref()
        .and_then(|s| s.namespace.clone())
        .unwrap_or_else(|| ws.spec.effective_namespace(&name).to_string());
    // Read live, not from the cache: a namespace created a moment ago must
    // not be missed (deletion runs once per Workspace, so the read is cheap).
    let namespace = Api::<Namespace>::all(ctx.client.clone())
        .get_metadata_opt(&ns_name)
        .await
        .map_err(Error::Read)?;
    let ours = namespace
        .as_ref()
        .filter(|ns| labels::carries_uid(*ns, ws.uid().as_deref()));

    if let Some(ns) = ours {
        let adopted = ns
            .annotations()
            .get(labels::ADOPTED)
            .is_some_and(|v| v == "true");
        let delete = ws.spec.deletion_policy == crate::api::DeletionPolicy::Delete && !adopted;
        if delete && !crd_terminating(ctx).await? {
            return delete_namespace(ws, ns, ctx).await;
        }
        retain(ws, ns, ctx).await?;
    }

    remove_legacy_access(ws, ctx).await?;
    let finalizers: Vec<String> = ws
        .finalizers()
        .iter()
        .filter(|f| *f != labels::FINALIZER)
        .cloned()
        .collect();
    if set_finalizers(ws, finalizers, ctx).await? == Finalizers::Stale {
        return Ok(Action::requeue(STALE_REQUEUE));
    }
    Ok(Action::await_change())
}

/// `Delete`: deletes the Workspace's namespace (once) and reports
/// `Terminating` until it is gone; the namespace's deletion event brings the
/// next step.
async fn delete_namespace(
    ws: &Workspace,
    ns: &PartialObjectMeta<Namespace>,
    ctx: &Context,
) -> Result<Action, Error> {
    let ns_name = ns.name_any();
    if ns.meta().deletion_timestamp.is_none() {
        ctx.metrics.write(CONTROLLER, "namespaces");
        delete_if_present(
            &Api::<Namespace>::all(ctx.client.clone()),
            &ns_name,
            ns.uid(),
        )
        .await
        .map_err(|source| Error::Delete {
            kind: "namespace",
            source,
        })?;
        publish(
            ctx,
            ws,
            EventType::Normal,
            "NamespaceDeleting",
            format!("Deleting namespace {ns_name} and everything in it."),
        )
        .await;
    }
    let mut status = ws.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let message =
        format!("Namespace {ns_name} is being deleted; the Workspace goes once it is gone.");
    // The deletion itself is a new generation: the status says it saw it.
    let generation = ws.meta().generation;
    status.observed_generation = generation;
    conditions::set_outcome(
        &mut status.conditions,
        Progress::Progressing,
        reason::DELETING,
        &message,
        generation,
        &now,
    );
    status.phase = Some(WorkspacePhase::Terminating);
    write_status(ws, status, ctx).await?;
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// Removes the Roles that let invitees answer their invitations in
/// `namespace` (their bindings are gone already).
async fn remove_answering_roles(namespace: &str, ctx: &Context) -> Result<(), Error> {
    let api: Api<Role> = Api::namespaced(ctx.client.clone(), namespace);
    for member in ctx.world.members_in(namespace) {
        let name = crate::controller::member::invitation::grant_name(&member.name_any());
        let Some(role) = ctx
            .world
            .roles
            .get(&ObjectRef::new(&name).within(namespace))
        else {
            continue;
        };
        if role
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == member.uid().as_ref())
        {
            ctx.metrics.write(CONTROLLER, "roles");
            delete_if_present(&api, &name, role.uid())
                .await
                .map_err(|source| Error::Delete {
                    kind: "Role",
                    source,
                })?;
        }
    }
    Ok(())
}

/// `Retain`: remove the operator's RoleBindings and its labels and
/// annotations from the namespace; leave the namespace and its contents.
async fn retain(
    ws: &Workspace,
    ns: &PartialObjectMeta<Namespace>,
    ctx: &Context,
) -> Result<(), Error> {
    let ns_name = &ns.name_any();
    remove_bindings(ws, ns_name, ctx).await?;
    remove_answering_roles(ns_name, ctx).await?;
    remove_defaults(ns_name, ctx).await?;
    if ns.meta().deletion_timestamp.is_none() {
        release(ns, ctx).await?;
    }
    publish(
        ctx,
        ws,
        EventType::Normal,
        "NamespaceRetained",
        format!("Namespace {ns_name} and its contents were kept."),
    )
    .await;
    Ok(())
}

/// Deletes the operator's RoleBindings in `ns_name`: those owned by `ws`
/// (the owner's) or by one of its WorkspaceMembers; anything else is
/// someone else's.
async fn remove_bindings(ws: &Workspace, ns_name: &str, ctx: &Context) -> Result<(), Error> {
    let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), ns_name);
    let owners: Vec<String> = ws
        .uid()
        .into_iter()
        .chain(ctx.world.members_in(ns_name).iter().filter_map(|m| m.uid()))
        .collect();
    let ours: Vec<Arc<RoleBinding>> = ctx
        .world
        .role_bindings_in(ns_name)
        .into_iter()
        .filter(|rb| {
            rb.owner_references()
                .iter()
                .any(|o| owners.contains(&o.uid))
        })
        .collect();
    for rb in ours {
        ctx.metrics.write(CONTROLLER, "rolebindings");
        delete_if_present(&api, &rb.name_any(), rb.uid())
            .await
            .map_err(|source| Error::Delete {
                kind: "RoleBinding",
                source,
            })?;
    }
    Ok(())
}

/// Deletes the organization's defaults (quota, limit range, network
/// policy) in `ns_name`: they are the operator's too.
async fn remove_defaults(ns_name: &str, ctx: &Context) -> Result<(), Error> {
    let world = &ctx.world;
    sync_optional(
        ctx,
        &world.quotas,
        ns_name,
        defaults::DEFAULTS_NAME,
        None,
        "resourcequotas",
    )
    .await?;
    sync_optional(
        ctx,
        &world.limit_ranges,
        ns_name,
        defaults::DEFAULTS_NAME,
        None,
        "limitranges",
    )
    .await?;
    sync_optional(
        ctx,
        &world.network_policies,
        ns_name,
        defaults::ISOLATION_NAME,
        None,
        "networkpolicies",
    )
    .await?;
    Ok(())
}

/// Releases the namespace: the operator's labels and annotations go, and so
/// does an admin's adoption permission (it was good for one adoption);
/// everyone else's stay. A merge patch, so a namespace that is gone is never
/// created again.
async fn release(ns: &PartialObjectMeta<Namespace>, ctx: &Context) -> Result<(), Error> {
    let mut remove: serde_json::Map<String, serde_json::Value> = labels::OPERATOR_KEYS
        .iter()
        .map(|k| (k.to_string(), serde_json::Value::Null))
        .collect();
    let mut labels_ = remove.clone();
    if ns.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE) {
        labels_.insert(labels::MANAGED_BY.to_string(), serde_json::Value::Null);
    }
    remove.insert(labels::ADOPT.to_string(), serde_json::Value::Null);
    let release = json!({"metadata": {"labels": labels_, "annotations": remove}});
    ctx.metrics.write(CONTROLLER, "namespaces");
    match Api::<Namespace>::all(ctx.client.clone())
        .patch(
            &ns.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&release),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Apply {
            kind: "namespace",
            source,
        }),
    }
}
