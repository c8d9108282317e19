//! The workspace directory: for each subject (User, Group or ServiceAccount)
//! that is an Active or Invited member somewhere, one Role and one
//! RoleBinding of the same name in the directory namespace
//! (`--directory-namespace`), whose rules list the subject's workspaces with
//! a verb per relation ([`build`]). `kubectl workspaces ls` reads the
//! caller's entries (by user and by every group) with one
//! SelfSubjectRulesReview there.
//!
//! observe (the subject's members, from the cached world) -> build (pure)
//! -> apply (only what differs: the Role before the RoleBinding) -> delete
//! both when the subject has no membership left. Entries are keyed by name
//! (the reconcile trigger is the entry's Role); the subject comes from its
//! members, else from the entry's cached RoleBinding. Nothing is written
//! while every entry matches its cached copy.

pub mod build;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::channel::mpsc::{UnboundedReceiver, unbounded};
use futures::{StreamExt, stream};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::apply::{apply_if_changed, delete_if_present};
use super::member::build::{same_subject, workspace_of};
use super::world::watch;
use super::{Context, ReconcileError, labels, retry_delay};
use crate::api::{Subject, WorkspaceMember};

/// Metric label of this controller.
const CONTROLLER: &str = "directory";

/// What went wrong in one reconcile; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Server-side apply of the entry's Role or RoleBinding failed.
    #[error("applying the directory entry failed: {0}")]
    Apply(#[source] kube::Error),
    /// Deleting an entry that lists nothing failed.
    #[error("deleting the directory entry failed: {0}")]
    Delete(#[source] kube::Error),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Apply(_) => "ApplyFailed",
            Error::Delete(_) => "DeleteFailed",
        }
    }
}

/// The key the members of a subject are indexed under (in the world's
/// member index): their entry's name.
pub fn index_key(member: &WorkspaceMember) -> String {
    build::entry_name(&member.spec.subject)
}

/// Registers the directory's triggers: a member concerns its subject's
/// entry, an entry's Role or RoleBinding the entry; members are also filed
/// under their entry in the world's member index.
fn register(routes: &mut super::Routes, queue: &super::Queue<Role>) {
    routes
        .file(watch::MEMBERS, |m| vec![index_key(m)])
        .on(watch::MEMBERS, queue, |_, m| {
            [ObjectRef::new(&index_key(m))]
        })
        .on(watch::ROLE_BINDINGS, queue, |_, rb| entry_of(rb))
        .on(watch::ROLES, queue, |_, role| entry_of(role));
}

/// The WorkspaceMembers whose subject the entry `name` lists.
fn members_listed_as(world: &super::World, name: &str) -> Vec<Arc<WorkspaceMember>> {
    world
        .members_filed_under(name)
        .into_iter()
        .filter(|m| index_key(m) == name)
        .collect()
}

/// Whether `obj` is a directory entry (its Role or RoleBinding): the entry
/// to reconcile when it changes.
pub fn entry_of<K: Resource>(obj: &K) -> Option<ObjectRef<Role>> {
    obj.labels()
        .contains_key(labels::DIRECTORY)
        .then(|| ObjectRef::new(&obj.name_any()))
}

/// The directory controller, as [`super::run`] registers it.
pub struct Directory;

impl super::Controller for Directory {
    type Kind = Role;
    const NAME: &'static str = "the directory controller";

    fn register(routes: &mut super::Routes, queue: &super::Queue<Role>) {
        register(routes, queue);
    }

    fn run(
        ctx: Arc<Context>,
        triggers: UnboundedReceiver<ObjectRef<Role>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        run(ctx, triggers)
    }
}

/// Runs the directory controller until its trigger stream ends. Triggers
/// are taken in batches: each entry named in a batch is reconciled once,
/// `--concurrency` at a time; a failed one is retried after a growing delay.
/// With the directory off, triggers are drained and nothing is written.
pub async fn run(ctx: Arc<Context>, mut triggers: UnboundedReceiver<ObjectRef<Role>>) {
    let Some(namespace) = ctx.config.directory().map(str::to_string) else {
        while triggers.next().await.is_some() {}
        return;
    };
    ctx.world.synced().await;
    tracing::info!(
        controller = CONTROLLER,
        namespace,
        "caches synced; reconciling"
    );
    let (retry, mut retries) = unbounded::<String>();
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut batch = every_entry(&ctx, &namespace);
    loop {
        let concurrency = usize::from(ctx.config.concurrency.max(1));
        let outcomes: Vec<(String, Result<u64, Error>)> = stream::iter(std::mem::take(&mut batch))
            .map(|name| {
                let (ctx, namespace) = (ctx.clone(), namespace.clone());
                async move {
                    // A converged entry costs no request: let the watches
                    // and the Lease renewals in between.
                    tokio::task::consume_budget().await;
                    let result = reconcile(&ctx, &namespace, &name).await;
                    (name, result)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for (name, result) in outcomes {
            let err = match result {
                Ok(version) => {
                    tracing::debug!(
                        controller = CONTROLLER,
                        namespace,
                        name,
                        resource_version = version,
                        "reconciled"
                    );
                    failures.remove(&name);
                    continue;
                }
                Err(err) => err,
            };
            tracing::warn!(controller = CONTROLLER, namespace, name, reason = err.reason(), error = %err, "reconcile failed");
            ctx.metrics.reconcile_failed(CONTROLLER, err.reason());
            let attempt = failures.entry(name.clone()).or_default();
            *attempt = attempt.saturating_add(1);
            let (retry, delay) = (retry.clone(), retry_delay(*attempt));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = retry.unbounded_send(name);
            });
        }
        tokio::select! {
            at = triggers.next() => match at {
                Some(at) => batch.insert(at.name),
                None => return,
            },
            Some(name) = retries.next() => batch.insert(name),
        };
        // Everything triggered meanwhile joins the batch.
        while let Ok(at) = triggers.try_recv() {
            batch.insert(at.name);
        }
    }
}

/// The entries of every member and every entry cached: the first pass,
/// which also removes entries left from before a restart.
fn every_entry(ctx: &Context, namespace: &str) -> BTreeSet<String> {
    let world = &ctx.world;
    let members = world.members.refs().into_iter();
    let mut names: BTreeSet<String> = members
        .filter_map(|at| world.members.get(&at))
        .map(|m| index_key(&m))
        .collect();
    let cached_roles = world
        .roles
        .refs()
        .into_iter()
        .filter_map(|at| world.roles.get(&at));
    names.extend(in_directory(cached_roles, namespace));
    let cached_bindings = world
        .role_bindings
        .refs()
        .into_iter()
        .filter_map(|at| world.role_bindings.get(&at));
    names.extend(in_directory(cached_bindings, namespace));
    names
}

/// The names of the entries among `objects` that live in `namespace`.
fn in_directory<K: Resource>(
    objects: impl Iterator<Item = Arc<K>>,
    namespace: &str,
) -> Vec<String> {
    objects
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .filter_map(|o| entry_of(&*o).map(|at| at.name))
        .collect()
}

/// What the entry `name` should be.
struct Desired {
    subject: Subject,
    rules: Vec<PolicyRule>,
    /// The highest resourceVersion among the members read (0: none): the
    /// entry is reconciled as of every change up to it.
    version: u64,
}

/// The subject of the entry `name` and the rules it should hold: from the
/// members filed under it, else (none left) from its cached RoleBinding with
/// no rules.
fn desired(ctx: &Context, namespace: &str, name: &str) -> Option<Desired> {
    let world = &ctx.world;
    let members = members_listed_as(world, name);
    let version = members
        .iter()
        .filter_map(|m| m.resource_version()?.parse().ok())
        .max()
        .unwrap_or(0);
    let subject = members
        .first()
        .map(|m| m.spec.subject.clone())
        .or_else(|| {
            let at = ObjectRef::new(name).within(namespace);
            world
                .role_bindings
                .get(&at)
                .and_then(|rb| build::bound_subject(&rb))
        })?;
    let mut relations = Vec::new();
    for m in members
        .iter()
        .filter(|m| same_subject(&m.spec.subject, &subject))
    {
        let (Some(verb), Some(ns)) = (build::relation(m), m.namespace()) else {
            continue;
        };
        let naming = world.workspaces_naming(&ns);
        let ns_meta = world.namespaces.get(&ObjectRef::new(&ns));
        if let Some(ws) = workspace_of(&ns, ns_meta.as_deref(), &naming) {
            relations.push((ws.name_any(), verb));
        }
    }
    let rules = build::rules(relations.iter().map(|(ws, verb)| (ws.as_str(), *verb)));
    Some(Desired {
        subject,
        rules,
        version,
    })
}

/// Makes the entry `name` list what its subject's members say, or removes it
/// when they say nothing. Returns the version it reconciled as of
/// ([`Desired::version`]).
async fn reconcile(ctx: &Context, namespace: &str, name: &str) -> Result<u64, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let roles = Api::<Role>::namespaced(ctx.client.clone(), namespace);
    let bindings = Api::<RoleBinding>::namespaced(ctx.client.clone(), namespace);
    let desired = desired(ctx, namespace, name);
    let version = desired.as_ref().map_or(0, |d| d.version);
    let wanted = desired
        .and_then(|d| build::entry(&d.subject, namespace, d.rules))
        // A name that is not the subject's (a hash collision, or an object
        // someone else created under the prefix) is not written.
        .filter(|(role, _)| role.metadata.name.as_deref() == Some(name));
    if let Some((role, binding)) = wanted {
        let world = &ctx.world;
        apply_if_changed(ctx, CONTROLLER, "roles", &world.roles, &roles, &role)
            .await
            .map_err(Error::Apply)?;
        apply_if_changed(
            ctx,
            CONTROLLER,
            "rolebindings",
            &world.role_bindings,
            &bindings,
            &binding,
        )
        .await
        .map_err(Error::Apply)?;
        return Ok(version);
    }
    // Nothing to list: the binding goes first, so a Role never stays bound
    // to its subject without being the operator's.
    let at = ObjectRef::new(name).within(namespace);
    if let Some(rb) = ctx.world.role_bindings.get(&at) {
        ctx.metrics.write(CONTROLLER, "rolebindings");
        delete_if_present(&bindings, name, rb.uid())
            .await
            .map_err(Error::Delete)?;
    }
    if let Some(role) = ctx.world.roles.get(&ObjectRef::new(name).within(namespace)) {
        ctx.metrics.write(CONTROLLER, "roles");
        delete_if_present(&roles, name, role.uid())
            .await
            .map_err(Error::Delete)?;
    }
    Ok(version)
}
