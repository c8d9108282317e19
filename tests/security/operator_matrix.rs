//! A stolen operator token, tried on every verb its RBAC holds.
//!
//! The rows are derived from `deploy/operator-rbac.yaml` itself: for each
//! rule, each write verb on each resource is tried on objects outside the
//! operator's business (kube-system, a namespace no Workspace holds, another
//! tenant's objects in a workspace namespace, cluster roles and bindings of
//! others, a Workspace and an Organization), through create, update (PUT),
//! merge patch, JSON patch, server-side apply, delete and deletecollection,
//! as the operator's own identity. Every attempt must be refused, and after
//! each one every bystander object must be exactly as it was. A rule in the
//! RBAC file that no row here covers fails the test.

use std::collections::BTreeMap;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use super::support;
use super::support::objects::DIRECTORY;
use super::support::objects::merge;
use super::support::operator::OPERATOR_NAMESPACE;
use super::{own_organization, own_workspace, secured_setup};
use workspace_operator::controller::directory::build::VERBS as DIRECTORY_VERBS;

/// Label on every bystander object, so that a deletecollection aims at them.
const BYSTANDER: &str = "security-matrix";

/// Verbs that read: not attacks on integrity (the operator reads no Secret).
const READS: &[&str] = &["get", "list", "watch"];

/// Objects of one resource outside the operator's business.
struct Target {
    gvk: (&'static str, &'static str, &'static str),
    plural: &'static str,
    /// Where the bystanders live (`None`: cluster-scoped).
    namespace: Option<String>,
    /// An existing object that is not the operator's.
    existing: String,
    /// A new object that would not be the operator's (for create).
    new: Value,
    /// A change to `existing`, as a merge patch.
    change: Value,
}

impl Target {
    fn resource(&self) -> ApiResource {
        let (group, version, kind) = self.gvk;
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), self.plural)
    }

    fn api(&self, client: &kube::Client) -> Api<DynamicObject> {
        match &self.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.resource()),
            None => Api::all_with(client.clone(), &self.resource()),
        }
    }

    /// The apiVersion and kind, for bodies.
    fn type_meta(&self) -> Value {
        let (group, version, kind) = self.gvk;
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json!({"apiVersion": api_version, "kind": kind})
    }
}

/// One attempt's outcome, with what it was.
type Attempt = (String, Result<(), kube::Error>);

/// Every write verb on `target` as `operator`; `admin` reads what a PUT needs.
async fn attempts(
    verb: &str,
    target: &Target,
    operator: &kube::Client,
    admin: &kube::Client,
) -> Vec<Attempt> {
    let api = target.api(operator);
    let name = target.existing.as_str();
    let what = |how: &str| format!("{how} {} {:?}/{name}", target.plural, target.namespace);
    match verb {
        "create" => {
            let mut body = target.type_meta();
            merge(&mut body, target.new.clone());
            let object: DynamicObject = serde_json::from_value(body).expect("an object");
            vec![(
                what("create"),
                api.create(&PostParams::default(), &object).await.map(drop),
            )]
        }
        "update" => {
            let current = target.api(admin).get(name).await.expect("the bystander");
            let mut body = serde_json::to_value(&current).expect("JSON");
            merge(&mut body, target.change.clone());
            let object: DynamicObject = serde_json::from_value(body).expect("an object");
            vec![(
                what("update (PUT)"),
                api.replace(name, &PostParams::default(), &object)
                    .await
                    .map(drop),
            )]
        }
        "patch" => {
            let current =
                serde_json::to_value(target.api(admin).get(name).await.expect("the bystander"))
                    .expect("JSON");
            let mut changed = current.clone();
            merge(&mut changed, target.change.clone());
            // Leaf by leaf under metadata, so that the patch carries no
            // resourceVersion: an object the operator writes meanwhile (a
            // transfer's status) must be judged, not refused as stale.
            let change = target.change.as_object().expect("a change is an object");
            let ops: Vec<Value> = change
                .iter()
                .flat_map(|(k, v)| match (k.as_str(), v.as_object()) {
                    ("metadata", Some(fields)) => fields
                        .keys()
                        .map(|f| json!({"op": "add", "path": format!("/metadata/{f}"), "value": changed["metadata"][f]}))
                        .collect::<Vec<_>>(),
                    _ => vec![json!({"op": "add", "path": format!("/{k}"), "value": changed[k]})],
                })
                .collect();
            let mut applied = target.type_meta();
            merge(&mut applied, json!({"metadata": {"name": name}}));
            if let Some(ns) = &target.namespace {
                applied["metadata"]["namespace"] = json!(ns);
            }
            merge(&mut applied, target.change.clone());
            vec![
                (
                    what("merge patch"),
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&target.change))
                        .await
                        .map(drop),
                ),
                (
                    what("JSON patch"),
                    api.patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Json::<()>(
                            serde_json::from_value(json!(ops)).expect("a JSON patch"),
                        ),
                    )
                    .await
                    .map(drop),
                ),
                (
                    what("server-side apply"),
                    api.patch(
                        name,
                        &PatchParams::apply("stolen").force(),
                        &Patch::Apply(&applied),
                    )
                    .await
                    .map(drop),
                ),
            ]
        }
        "delete" => vec![
            (
                what("delete"),
                api.delete(name, &DeleteParams::default()).await.map(drop),
            ),
            (
                what("deletecollection"),
                api.delete_collection(
                    &DeleteParams::default(),
                    &ListParams::default().labels(BYSTANDER),
                )
                .await
                .map(drop),
            ),
        ],
        other => panic!("no attempt for the verb {other}"),
    }
}

/// Every bystander object as JSON, without what the API server changes by
/// itself.
async fn snapshot(targets: &[Target], admin: &kube::Client) -> BTreeMap<String, Value> {
    let mut objects = BTreeMap::new();
    for target in targets {
        let object = target
            .api(admin)
            .get(&target.existing)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the bystander {} {} is gone: {e}",
                    target.plural, target.existing
                )
            });
        let mut value = serde_json::to_value(object).expect("JSON");
        for volatile in ["resourceVersion", "managedFields", "generation"] {
            value["metadata"]
                .as_object_mut()
                .map(|m| m.remove(volatile));
        }
        if matches!(
            target.plural,
            "workspaces" | "organizations" | "workspacetransfers" | "workspacemembers"
        ) {
            value.as_object_mut().map(|m| m.remove("status"));
        }
        objects.insert(
            format!(
                "{} {:?}/{}",
                target.plural, target.namespace, target.existing
            ),
            value,
        );
    }
    objects
}

/// The rules of the operator's ClusterRole and Role, as
/// (apiGroup, resource, verb).
fn operator_rules() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(support::repo_root().join("deploy/operator-rbac.yaml"))
        .expect("read deploy/operator-rbac.yaml");
    let mut rules = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).expect("YAML");
        if !matches!(value["kind"].as_str(), Some("ClusterRole" | "Role")) {
            continue;
        }
        for rule in value["rules"].as_array().into_iter().flatten() {
            let strings = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        rules.push((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    assert!(
        !rules.is_empty(),
        "no rules found in deploy/operator-rbac.yaml"
    );
    rules
}

/// Rows that are not write attacks on a bystander, each with the reason, by
/// (apiGroup, resource, verb); `*` matches any verb.
const NOT_ATTACKS: &[(&str, &str, &str, &str)] = &[
    (
        "workspaces.dev",
        "workspaces/finalizers",
        "*",
        "authorization-only subresource (blockOwnerDeletion); no endpoint",
    ),
    (
        "workspaces.dev",
        "workspacemembers/finalizers",
        "*",
        "authorization-only subresource (blockOwnerDeletion); no endpoint",
    ),
    (
        "workspaces.dev",
        "organizations/finalizers",
        "*",
        "authorization-only subresource (blockOwnerDeletion); no endpoint",
    ),
    (
        "workspaces.dev",
        "workspacemembers/status",
        "*",
        "every member's status is the operator's to write; it grants nothing",
    ),
    (
        "workspaces.dev",
        "organizations/status",
        "*",
        "every organization's status is the operator's to write; it grants nothing",
    ),
    (
        "workspaces.dev",
        "workspacetransfers/finalizers",
        "*",
        "authorization-only subresource (blockOwnerDeletion); no endpoint",
    ),
    (
        "workspaces.dev",
        "workspacetransfers/status",
        "*",
        "every transfer's status is the operator's; status.source is checked against the workspace before anything runs",
    ),
];

fn not_an_attack(group: &str, resource: &str, verb: &str) -> Option<&'static str> {
    NOT_ATTACKS
        .iter()
        .find(|(g, r, v, _)| *g == group && *r == resource && (*v == "*" || *v == verb))
        .map(|(_, _, _, why)| *why)
}

/// Creates `value` as the admin, labelled as a bystander.
async fn bystander(admin: &kube::Client, target: &Target, mut value: Value) {
    merge(&mut value, target.type_meta());
    merge(
        &mut value,
        json!({"metadata": {"name": target.existing, "labels": {BYSTANDER: "true"}}}),
    );
    let object: DynamicObject = serde_json::from_value(value).expect("an object");
    match target
        .api(admin)
        .create(&PostParams::default(), &object)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating the bystander {}: {e}", target.existing),
    }
}

fn rule(kind: &str, name: &str) -> Value {
    json!({"apiGroup": if kind == "ServiceAccount" { "" } else { "rbac.authorization.k8s.io" }, "kind": kind, "name": name})
}

/// The bystanders, one target per (apiGroup, resource) the operator writes.
async fn targets(admin: &kube::Client) -> Vec<Target> {
    let tenant = format!("{}@example.com", support::unique("tenant"));
    let mallory = "mallory@example.com";
    let workspace = own_workspace(admin, &tenant, "sec-matrix", json!({})).await;
    let org = own_organization(admin, "sec-matrix-org", &[&tenant], &[], json!({})).await;
    let outside = support::unique("sec-matrix-ns");
    let binding_to = |role: &str| {
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": [rule("User", mallory)]})
    };
    let secrets_rule =
        json!({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]});
    let quota = json!({"spec": {"hard": {"pods": "1"}}});
    let limits = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}});
    let policy = json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
    let relabel =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    let annotate_uid =
        json!({"metadata": {"annotations": {"workspaces.dev/workspace-uid": "forged"}}});
    let mut targets = vec![
        Target {
            gvk: ("", "v1", "Namespace"),
            plural: "namespaces",
            namespace: None,
            existing: outside.clone(),
            new: json!({"metadata": {"name": support::unique("sec-matrix-new")}}),
            change: annotate_uid.clone(),
        },
        Target {
            gvk: ("", "v1", "Namespace"),
            plural: "namespaces",
            namespace: None,
            existing: "kube-system".to_string(),
            new: json!({"metadata": {"name": support::unique("sec-matrix-new"),
                                     "labels": {"workspaces.dev/workspace": "kube-system"}}}),
            change: relabel.clone(),
        },
    ];
    let namespaced: [(&str, &str, &str, &str, Value, Value); 6] = [
        (
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            binding_to("workspaces:owner"),
            json!({"subjects": [rule("User", mallory)]}),
        ),
        (
            // A new Role takes the name of an answering grant (wsi-), which
            // the operator may write in workspace namespaces, with a rule no
            // answering grant has.
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            secrets_rule.clone(),
            json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        ),
        (
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            quota.clone(),
            json!({"spec": {"hard": {"pods": "1000"}}}),
        ),
        (
            "",
            "v1",
            "LimitRange",
            "limitranges",
            limits.clone(),
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "64"}}]}}),
        ),
        (
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            policy.clone(),
            json!({"spec": {"policyTypes": []}}),
        ),
        (
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            json!({"reason": "Stolen", "action": "Stolen", "type": "Normal", "reportingController": "example.com/x", "reportingInstance": "x", "eventTime": "2026-01-01T00:00:00.000000Z", "regarding": {"kind": "Pod", "name": "x"}}),
            json!({"metadata": {"labels": {"stolen": "true"}}}),
        ),
    ];
    // The directory namespace is not a workspace namespace: only the
    // operator's entries (workspaces.dev:directory:*, in their one shape)
    // may be written there.
    for ns in [
        "kube-system".to_string(),
        outside.clone(),
        workspace.clone(),
        DIRECTORY.to_string(),
    ] {
        for (group, version, kind, plural, body, change) in &namespaced {
            if *plural == "events" && ns == workspace {
                // The operator records events in workspace namespaces.
                continue;
            }
            let existing = support::unique("sec-matrix-theirs");
            targets.push(Target {
                gvk: (group, version, kind),
                plural,
                namespace: Some(ns.clone()),
                existing,
                new: {
                    let mut new = body.clone();
                    let prefix = match *plural {
                        "roles" | "rolebindings" if ns == DIRECTORY => "workspaces.dev:directory:",
                        "roles" => "wsi-",
                        _ => "",
                    };
                    merge(
                        &mut new,
                        json!({"metadata": {"name": support::unique(&format!("{prefix}sec-matrix-new"))}}),
                    );
                    if *plural == "events" {
                        new["regarding"]["namespace"] = json!(ns);
                    }
                    new
                },
                change: change.clone(),
            });
        }
    }
    // The chart's sign that the directory is kept, which every user's
    // review shows.
    let stolen =
        || json!({"metadata": {"name": support::unique("workspaces.dev:directory:stolen")}});
    let mut stolen_role = stolen();
    merge(&mut stolen_role, secrets_rule.clone());
    let mut stolen_binding = stolen();
    merge(&mut stolen_binding, binding_to("workspaces:owner"));
    for (kind, plural, new, change) in [
        (
            "Role",
            "roles",
            stolen_role,
            json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        ),
        (
            "RoleBinding",
            "rolebindings",
            stolen_binding,
            json!({"subjects": [rule("User", mallory)]}),
        ),
    ] {
        targets.push(Target {
            gvk: ("rbac.authorization.k8s.io", "v1", kind),
            plural,
            namespace: Some(DIRECTORY.to_string()),
            existing: "workspaces.dev:directory".to_string(),
            new,
            change,
        });
    }
    targets.extend([
        Target {
            gvk: ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
            plural: "clusterroles",
            namespace: None,
            existing: support::unique("sec-matrix-role"),
            new: {
                let mut new = secrets_rule.clone();
                merge(&mut new, json!({"metadata": {"name": "workspaces.dev:organization:stolen:admin"}}));
                new
            },
            change: json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        },
        Target {
            // An access role that would aggregate into `admin`.
            gvk: ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
            plural: "clusterroles",
            namespace: None,
            existing: support::unique("sec-matrix-role"),
            new: json!({"metadata": {"name": format!("workspaces.dev:organization:{org}:admin"),
                                     "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
                        "rules": [{"apiGroups": ["workspaces.dev"], "resources": ["organizations"],
                                   "resourceNames": [org], "verbs": ["get"]}]}),
            change: json!({"metadata": {"labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}}),
        },
        Target {
            gvk: ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
            plural: "clusterrolebindings",
            namespace: None,
            existing: support::unique("sec-matrix-binding"),
            new: {
                let mut new = binding_to("cluster-admin");
                merge(&mut new, json!({"metadata": {"name": "workspaces.dev:organization:stolen:admin"}}));
                new
            },
            change: json!({"subjects": [rule("User", mallory)]}),
        },
        Target {
            gvk: ("workspaces.dev", "v1alpha1", "Workspace"),
            plural: "workspaces",
            namespace: None,
            existing: workspace.clone(),
            new: json!({"metadata": {"name": support::unique("sec-matrix-ws")},
                        "spec": {"owner": {"kind": "User", "name": mallory}}}),
            change: json!({"metadata": {"labels": {"stolen": "true"}}, "spec": {"description": "stolen"}}),
        },
        Target {
            gvk: ("workspaces.dev", "v1alpha1", "Organization"),
            plural: "organizations",
            namespace: None,
            existing: org.clone(),
            new: json!({"metadata": {"name": support::unique("sec-matrix-org")}, "spec": {"admins": [{"kind": "User", "name": mallory}]}}),
            change: json!({"spec": {"admins": [{"kind": "User", "name": mallory}]}}),
        },
        Target {
            gvk: ("workspaces.dev", "v1alpha1", "WorkspaceTransfer"),
            plural: "workspacetransfers",
            namespace: None,
            existing: support::unique("sec-matrix-transfer"),
            new: json!({"metadata": {"name": support::unique("sec-matrix-transfer")},
                        "spec": {"workspace": workspace, "to": {"kind": "User", "name": "bystander@example.com"}}}),
            change: json!({"metadata": {"labels": {"stolen": "true"}}}),
        },
        Target {
            // A tenant's member: the operator holds `patch` on members only
            // to grant it to invitees.
            gvk: ("workspaces.dev", "v1alpha1", "WorkspaceMember"),
            plural: "workspacemembers",
            namespace: Some(workspace.clone()),
            existing: support::unique("sec-matrix-member"),
            new: json!({"metadata": {"name": support::unique("sec-matrix-member")},
                        "spec": {"subject": {"kind": "User", "name": mallory}, "role": "Owner"}}),
            change: json!({"metadata": {"labels": {"stolen": "true"}}, "spec": {"role": "Owner"}}),
        },
        Target {
            gvk: ("coordination.k8s.io", "v1", "Lease"),
            plural: "leases",
            namespace: Some("kube-system".to_string()),
            existing: support::unique("sec-matrix-lease"),
            new: json!({"metadata": {"name": support::unique("sec-matrix-lease")}}),
            change: json!({"spec": {"holderIdentity": "stolen"}}),
        },
    ]);
    // Create the bystanders that do not exist yet.
    bystander(admin, &targets[0], json!({})).await;
    for target in &targets {
        let body = match target.plural {
            "rolebindings" => binding_to("workspaces:viewer"),
            "roles" => secrets_rule.clone(),
            "workspacemembers" => {
                json!({"spec": {"subject": {"kind": "Group", "name": "bystanders"}, "role": "Viewer"}})
            }
            "resourcequotas" => quota.clone(),
            "limitranges" => limits.clone(),
            "networkpolicies" => policy.clone(),
            "events" => {
                let mut event = namespaced[5].4.clone();
                event["regarding"]["namespace"] = json!(target.namespace);
                event
            }
            "clusterroles" => secrets_rule.clone(),
            "clusterrolebindings" => binding_to("view"),
            "leases" => json!({}),
            "workspacetransfers" => json!({"spec": {"workspace": workspace,
                                                     "to": {"kind": "User", "name": "bystander@example.com"}}}),
            _ => continue,
        };
        bystander(admin, target, body).await;
    }
    // The operator takes up the transfer (its finalizer) before the
    // snapshot, so that only an attacker's change can show.
    if let Some(t) = targets.iter().find(|t| t.plural == "workspacetransfers") {
        let api = t.api(admin);
        support::wait_for(
            "the bystander transfer to be taken up",
            super::TIMEOUT,
            || async {
                let object = api.get(&t.existing).await.ok()?;
                (!object.metadata.finalizers.unwrap_or_default().is_empty()).then_some(())
            },
        )
        .await;
    }
    targets
}

/// The status of another tenant's Workspace pointed at a namespace the
/// attacker controls would make its Owners that Workspace's Owners.
async fn workspace_status_attempts(operator: &kube::Client, workspace: &str) -> Vec<Attempt> {
    let api: Api<workspace_operator::api::Workspace> = Api::all(operator.clone());
    let status = json!({"status": {"namespace": "kube-system"}});
    let applied = json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace",
                         "metadata": {"name": workspace}, "status": {"namespace": "kube-system"}});
    vec![
        (
            format!("status merge patch of Workspace {workspace}"),
            api.patch_status(workspace, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .map(drop),
        ),
        (
            format!("status server-side apply of Workspace {workspace}"),
            api.patch_status(
                workspace,
                &PatchParams::apply("stolen").force(),
                &Patch::Apply(&applied),
            )
            .await
            .map(drop),
        ),
    ]
}

/// The verbs that exist only to be granted: `bind` (a RoleBinding to a
/// workspace role outside a workspace), `administer` (counted as a
/// platform admin: a Workspace for someone else) and the directory's
/// relation verbs (a directory entry outside the directory namespace).
async fn granting_attempts(operator: &kube::Client, verb: &str) -> Vec<Attempt> {
    match verb {
        relation if DIRECTORY_VERBS.contains(&relation) => {
            let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
                "metadata": {"name": support::unique("workspaces.dev:directory:stolen")},
                "rules": [{"apiGroups": ["workspaces.dev"], "resources": ["workspaces"],
                           "resourceNames": ["x"], "verbs": [relation]}]
            }))
            .expect("a Role");
            vec![(
                format!("a directory entry with {relation} in kube-system"),
                Api::namespaced(operator.clone(), "kube-system")
                    .create(&PostParams::default(), &role)
                    .await
                    .map(drop),
            )]
        }
        "bind" => {
            let rb: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
                "metadata": {"name": "stolen-owner"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "workspaces:owner"},
                "subjects": [rule("User", "mallory@example.com")]
            }))
            .expect("a RoleBinding");
            vec![(
                "bind workspaces:owner in kube-system".to_string(),
                Api::namespaced(operator.clone(), "kube-system")
                    .create(&PostParams::default(), &rb)
                    .await
                    .map(drop),
            )]
        }
        "administer" => {
            let ws: workspace_operator::api::Workspace = serde_json::from_value(json!({
                "apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace",
                "metadata": {"name": support::unique("sec-matrix-admin")},
                "spec": {"owner": {"kind": "User", "name": "mallory@example.com"}}
            }))
            .expect("a Workspace");
            vec![(
                "create a Workspace for another user (as a platform admin would)".to_string(),
                Api::all(operator.clone())
                    .create(&PostParams::default(), &ws)
                    .await
                    .map(drop),
            )]
        }
        other => panic!("no attempt for the verb {other}"),
    }
}

#[tokio::test]
async fn a_stolen_operator_token_is_confined_on_every_verb_of_its_rbac() {
    let admin = secured_setup().await;
    let operator = support::plane()
        .client_as_service_account(OPERATOR_NAMESPACE, "workspace-operator")
        .await;
    let targets = targets(&admin).await;
    let workspace = targets
        .iter()
        .find(|t| t.plural == "workspaces")
        .map(|t| t.existing.clone())
        .expect("a Workspace target");
    let before = snapshot(&targets, &admin).await;
    let mallory_before = super::grants_of(&admin, "mallory@example.com", &[]).await;

    let mut tried = 0usize;
    let mut uncovered = Vec::new();
    for (group, resource, verb) in operator_rules() {
        if READS.contains(&verb.as_str()) {
            continue;
        }
        if let Some(why) = not_an_attack(&group, &resource, &verb) {
            eprintln!("row {group}/{resource} {verb}: {why}");
            continue;
        }
        let rows: Vec<Attempt> = if resource == "workspaces/status" {
            workspace_status_attempts(&operator, &workspace).await
        } else if verb == "bind" || verb == "administer" || DIRECTORY_VERBS.contains(&verb.as_str())
        {
            granting_attempts(&operator, &verb).await
        } else {
            let mut rows = Vec::new();
            for target in targets
                .iter()
                .filter(|t| t.resource().group == group && t.plural == resource)
            {
                rows.extend(attempts(&verb, target, &operator, &admin).await);
            }
            rows
        };
        if rows.is_empty() {
            uncovered.push(format!("{group}/{resource} {verb}"));
            continue;
        }
        for (what, result) in rows {
            tried += 1;
            match result {
                Err(kube::Error::Api(status)) if status.code == 403 => {
                    eprintln!("refused: {what}: {}", status.message);
                }
                other => panic!("the operator's token was not refused: {what}: {other:?}"),
            }
            let now = snapshot(&targets, &admin).await;
            for (key, value) in &before {
                assert_eq!(now.get(key), Some(value), "after {what}: {key} changed");
            }
            assert_eq!(
                super::grants_of(&admin, "mallory@example.com", &[]).await,
                mallory_before,
                "after {what}: mallory gained a binding"
            );
        }
    }
    assert!(
        uncovered.is_empty(),
        "rules of deploy/operator-rbac.yaml without a row in the attack matrix: {uncovered:?}"
    );
    eprintln!("{tried} attempts refused");
    assert!(tried > 50, "only {tried} attempts");
}
