//! A seeded generator of bad input for the fault suite: valid Workspaces,
//! WorkspaceMembers, Organizations and WorkspaceTransfers, mutated at
//! random (fields replaced by values of the wrong type, out-of-range
//! strings, unknown enum values, fields removed, unknown fields added, names
//! that are not DNS labels), sent through create, update, merge patch or
//! server-side apply as the admin. The same seed sends the same requests.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::objects::API_VERSION;

/// The kinds the generator sends.
pub const KINDS: [&str; 4] = [
    "Workspace",
    "WorkspaceMember",
    "Organization",
    "WorkspaceTransfer",
];

/// How a generated object is sent.
#[derive(Clone, Copy, Debug)]
pub enum Verb {
    Create,
    Update,
    MergePatch,
    Apply,
}

/// One generated request.
#[derive(Debug)]
pub struct Request {
    pub kind: &'static str,
    pub verb: Verb,
    pub object: Value,
}

/// Strings that are wrong somewhere: empty, too long, not DNS labels, not
/// ASCII, looking like other fields' values.
fn odd_string(rng: &mut fastrand::Rng) -> Value {
    let pick = [
        String::new(),
        "x".repeat(rng.usize(60..300)),
        "UPPER_case".to_string(),
        "-leading-dash".to_string(),
        "kube-system".to_string(),
        "default".to_string(),
        "workspace-operator-system".to_string(),
        "ünïcödé-☃".to_string(),
        "a/b".to_string(),
        "system:masters".to_string(),
        "Organization".to_string(),
        "User".to_string(),
        "Delete".to_string(),
        "Retain".to_string(),
        "Owner".to_string(),
        "0".to_string(),
        " ".to_string(),
    ];
    Value::String(pick[rng.usize(..pick.len())].clone())
}

/// A value of any JSON type.
fn odd_value(rng: &mut fastrand::Rng, depth: u8) -> Value {
    match rng.u8(..9) {
        0 => Value::Null,
        1 => json!(rng.i64(..)),
        2 => json!(-1),
        3 => json!(rng.bool()),
        4 => json!(1.5e300),
        5 if depth < 2 => json!({"kind": odd_string(rng), "name": odd_string(rng),
                                 "extra": odd_value(rng, depth + 1)}),
        6 if depth < 2 => json!([odd_value(rng, depth + 1), odd_value(rng, depth + 1)]),
        _ => odd_string(rng),
    }
}

/// The valid object of `kind` the mutations start from. `namespace` is a
/// workspace namespace for members; `workspace` an existing Workspace.
fn valid(kind: &str, name: &str, namespace: &str, workspace: &str, org: &str) -> Value {
    let spec = match kind {
        "Workspace" => json!({"owner": {"kind": "User", "name": "fuzz@example.com"},
                              "description": "generated", "deletionPolicy": "Delete"}),
        "WorkspaceMember" => json!({"subject": {"kind": "User", "name": "dev0@example.com"},
                                    "role": "Developer"}),
        "Organization" => json!({"displayName": "Fuzz", "admins": [{"kind": "User",
                                  "name": "admin@example.com"}], "limits": {"workspaces": 3}}),
        _ => json!({"workspace": workspace, "to": {"kind": "Organization", "name": org},
                    "from": {"kind": "User", "name": "fuzz@example.com"}}),
    };
    let mut meta = json!({"name": name});
    if kind == "WorkspaceMember" {
        meta["namespace"] = json!(namespace);
    }
    json!({"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec})
}

/// Every path (as keys) to a leaf or object under `spec`.
fn paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(map) = value {
        for (key, child) in map {
            prefix.push(key.clone());
            out.push(prefix.clone());
            paths(child, prefix, out);
            prefix.pop();
        }
    }
}

fn at_path<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object_mut()?.get_mut(key))
}

/// One random mutation of `object`'s spec (or its name).
fn mutate(object: &mut Value, rng: &mut fastrand::Rng) {
    let mut all = Vec::new();
    paths(&object["spec"], &mut vec![], &mut all);
    match rng.u8(..10) {
        0 => object["metadata"]["name"] = odd_string(rng),
        1 => {
            let value = odd_value(rng, 0);
            if let Some(spec) = object["spec"].as_object_mut() {
                spec.insert("unknownField".to_string(), value);
            }
        }
        2 => object["spec"] = odd_value(rng, 1),
        _ if all.is_empty() => object["spec"] = json!({}),
        3 | 4 => {
            let path = &all[rng.usize(..all.len())];
            let (last, parent) = path.split_last().expect("a path");
            if let Some(Value::Object(map)) = at_path(&mut object["spec"], parent) {
                map.remove(last);
            }
        }
        _ => {
            let path = &all[rng.usize(..all.len())];
            let value = odd_value(rng, 0);
            if let Some(slot) = at_path(&mut object["spec"], path) {
                *slot = value;
            }
        }
    }
}

/// The `n`-th request of the generator `rng`: a valid object of a random
/// kind, named `<prefix>-<n % 50>` (unless a mutation renames it; a small
/// pool, so updates and patches meet existing objects), mutated up to twice
/// (a third are sent valid), and a random verb.
pub fn request(
    rng: &mut fastrand::Rng,
    prefix: &str,
    n: usize,
    namespace: &str,
    workspace: &str,
    org: &str,
) -> Request {
    let kind = KINDS[rng.usize(..KINDS.len())];
    let name = format!("{prefix}-{}", n % 50);
    let mut object = valid(kind, &name, namespace, workspace, org);
    for _ in 0..rng.usize(0..=2) {
        mutate(&mut object, rng);
    }
    let verb = match rng.u8(..4) {
        0 => Verb::Create,
        1 => Verb::Update,
        2 => Verb::MergePatch,
        _ => Verb::Apply,
    };
    Request { kind, verb, object }
}

fn api_of(client: &Client, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("workspaces.dev", "v1alpha1", kind);
    let plural = format!("{}s", kind.to_lowercase());
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Sends `request` as `client`; `Ok` when the API server accepted it, the
/// API error otherwise.
pub async fn send(client: &Client, request: &Request) -> Result<(), kube::Error> {
    let namespace = request.object["metadata"]["namespace"].as_str();
    let api = api_of(client, request.kind, namespace);
    let name = request.object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Names are strings and the rest goes into `data`: always an object.
    let object: DynamicObject =
        serde_json::from_value(request.object.clone()).expect("a generated object");
    // A name that cannot be a path segment goes in a create's body, where
    // the API server judges it (a client cannot even address it).
    let addressable = !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '/');
    match request.verb {
        _ if !addressable => api.create(&PostParams::default(), &object).await.map(drop),
        Verb::Create => api.create(&PostParams::default(), &object).await.map(drop),
        Verb::Update => {
            let mut current = api.get(&name).await?;
            current.data["spec"] = request.object["spec"].clone();
            api.replace(&name, &PostParams::default(), &current)
                .await
                .map(drop)
        }
        Verb::MergePatch => api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": request.object["spec"]})),
            )
            .await
            .map(drop),
        Verb::Apply => api
            .patch(
                &name,
                &PatchParams::apply("fuzz").force(),
                &Patch::Apply(&object),
            )
            .await
            .map(drop),
    }
}

/// The names of the objects of `kind` whose name starts with `prefix`.
pub async fn existing(client: &Client, kind: &str, prefix: &str) -> Vec<DynamicObject> {
    let api = api_of(client, kind, None);
    api.list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.name_any().starts_with(prefix))
        .collect()
}
