//! The API server itself refuses bad input, from the CRDs alone: every
//! schema and CEL rule of `docs/api.md`, tried against the real
//! kube-apiserver with an object (or an update) that breaks exactly that
//! rule, and refused with the rule's message. No operator runs in this test
//! binary, so all of this holds while the operator is down.
//!
//! Also here: what must still be accepted (the boundaries of each rule and
//! the changes the rules allow), every manifest in `examples/`, and
//! `kubectl explain` printing the types' documentation.
//!
//! Each table row names what it guards; a failing row prints that name and
//! the API server's own message. Every row uses its own object names, so the
//! rows of a table run in one test and the tables in parallel. A row must
//! break exactly one rule (the server must blame no other field); note that
//! the API server skips the CEL rules when a schema rule (type, enum,
//! length) already failed, so a schema row cannot also hide a CEL problem.
//!
//! Every refusal here is `422 Invalid` from the CRD itself. What the CRD
//! cannot judge (who may create a Workspace for an owner, `spec.owner`
//! changing only through a transfer, `deletionProtection` on DELETE, who may
//! answer an invitation or approve a transfer) is admission policy, answered
//! with `403`, and tested with those policies.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{GroupVersionKind, Status};
use serde::Deserialize;
use serde_json::{Value, json};

use support::objects::{self, API_VERSION};

/// The user the example objects name as owner.
const ALICE: &str = "alice@example.com";

// The `reason` of a cause in the API server's `Invalid` answer.
const INVALID: &str = "FieldValueInvalid";
const FORBIDDEN: &str = "FieldValueForbidden";
const REQUIRED: &str = "FieldValueRequired";
const TOO_LONG: &str = "FieldValueTooLong";
const TOO_MANY: &str = "FieldValueTooMany";
const NOT_SUPPORTED: &str = "FieldValueNotSupported";
const DUPLICATE: &str = "FieldValueDuplicate";

/// The API server adds this cause when a schema error kept it from running
/// the CEL rules; it is not a second problem of the object.
const RULES_NOT_CHECKED: &str = "some validation rules were not checked";

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// What a row does to the API server.
enum Op {
    /// Create this object.
    Create(Value),
    /// Create the first object (which must be accepted), then change it.
    Update { create: Value, change: Change },
}

/// A change to an existing object.
enum Change {
    /// A JSON merge patch (`kubectl patch --type merge`); `null` removes a field.
    Merge(Value),
    /// Read the object, apply this merge patch to it, and `PUT` the result
    /// (`kubectl replace`, or `kubectl edit`).
    Replace(Value),
}

/// One bad object or bad update, and how the API server must refuse it.
struct Refusal {
    /// What the row guards, printed when it fails.
    name: &'static str,
    op: Op,
    /// The field the API server blames (`<nil>` for rules on the object name).
    field: &'static str,
    /// The cause's machine-readable reason (`FieldValueInvalid`, ...).
    reason: &'static str,
    /// A fragment of the message the user reads.
    message: &'static str,
}

fn refuse(
    name: &'static str,
    op: Op,
    field: &'static str,
    reason: &'static str,
    message: &'static str,
) -> Refusal {
    Refusal {
        name,
        op,
        field,
        reason,
        message,
    }
}

/// One object or update the API server must accept.
struct Acceptance {
    name: &'static str,
    op: Op,
}

fn must_accept(name: &'static str, op: Op) -> Acceptance {
    Acceptance { name, op }
}

fn creating(object: Value) -> Op {
    Op::Create(object)
}

fn merge_patch(create: Value, patch: Value) -> Op {
    Op::Update {
        create,
        change: Change::Merge(patch),
    }
}

fn replace(create: Value, patch: Value) -> Op {
    Op::Update {
        create,
        change: Change::Replace(patch),
    }
}

/// `{"spec": spec}`: the usual shape of a change.
fn spec(spec: Value) -> Value {
    json!({ "spec": spec })
}

/// `base` with the RFC 7386 JSON merge patch `patch` applied.
fn merged(mut base: Value, patch: Value) -> Value {
    objects::merge(&mut base, patch);
    base
}

/// A string of `n` times `c`.
fn long(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

/// A valid Workspace owned by alice, with `overrides` merged into its spec.
fn valid_workspace(name: &str, overrides: Value) -> Value {
    objects::workspace(name, "User", ALICE, spec(overrides))
}

/// A valid WorkspaceMember (bob, Developer), with `overrides` merged into its spec.
fn valid_member(namespace: &str, name: &str, overrides: Value) -> Value {
    let bob = objects::user("bob@example.com");
    merged(
        objects::member(namespace, name, bob, "Developer"),
        spec(overrides),
    )
}

/// A valid WorkspaceTransfer (acme-prod to globex), with `overrides` merged into its spec.
fn valid_transfer(name: &str, overrides: Value) -> Value {
    objects::transfer(
        name,
        "acme-prod",
        ("Organization", "globex"),
        spec(overrides),
    )
}

/// A valid Organization (alice is its admin), with `overrides` merged into its spec.
fn valid_organization(name: &str, overrides: Value) -> Value {
    let acme = objects::organization(name, &[ALICE], spec(json!({"displayName": "Acme Inc."})));
    merged(acme, spec(overrides))
}

/// `n` distinct users, as Organization admins or members.
fn n_users(n: usize) -> Value {
    (0..n)
        .map(|i| json!({"kind": "User", "name": format!("user{i}@example.com")}))
        .collect()
}

fn ws_name() -> String {
    support::unique("wsv")
}

fn workspace_refusals() -> Vec<Refusal> {
    let reserved = "Workspace name is reserved for the cluster";
    let not_a_label = "Workspace name must be a DNS-1123 label";
    let bad_handle = "spec.handle must be 1 to 63 lowercase letters, digits or '-'";
    let reserved_ns = "spec.namespace names a namespace reserved for the cluster";
    let ns_immutable = "spec.namespace cannot change after the Workspace is created";
    vec![
        refuse(
            "reserved name: default",
            creating(valid_workspace("default", json!({}))),
            "<nil>",
            FORBIDDEN,
            reserved,
        ),
        refuse(
            "reserved name: kube-system",
            creating(valid_workspace("kube-system", json!({}))),
            "<nil>",
            FORBIDDEN,
            reserved,
        ),
        refuse(
            "reserved name: kube-* prefix",
            creating(valid_workspace(&support::unique("kube"), json!({}))),
            "<nil>",
            FORBIDDEN,
            reserved,
        ),
        refuse(
            "reserved name: openshift-* prefix",
            creating(valid_workspace("openshift-x", json!({}))),
            "<nil>",
            FORBIDDEN,
            reserved,
        ),
        refuse(
            "name longer than 63 characters (the namespace name limit)",
            creating(valid_workspace(&long('w', 64), json!({}))),
            "<nil>",
            INVALID,
            not_a_label,
        ),
        refuse(
            "name with a dot: a DNS-1123 subdomain but not a label",
            creating(valid_workspace(&format!("{}.dev", ws_name()), json!({}))),
            "<nil>",
            INVALID,
            not_a_label,
        ),
        refuse(
            "handle with upper case and '_'",
            creating(valid_workspace(&ws_name(), json!({"handle": "Prod_EU"}))),
            "spec.handle",
            INVALID,
            bad_handle,
        ),
        refuse(
            "handle ending with '-'",
            creating(valid_workspace(&ws_name(), json!({"handle": "prod-"}))),
            "spec.handle",
            INVALID,
            bad_handle,
        ),
        refuse(
            "empty handle",
            creating(valid_workspace(&ws_name(), json!({"handle": ""}))),
            "spec.handle",
            INVALID,
            bad_handle,
        ),
        refuse(
            "handle longer than 63 characters",
            creating(valid_workspace(
                &ws_name(),
                json!({"handle": long('h', 64)}),
            )),
            "spec.handle",
            TOO_LONG,
            "may not be more than 63",
        ),
        refuse(
            "description longer than 5000 characters",
            creating(valid_workspace(
                &ws_name(),
                json!({"description": long('d', 5001)}),
            )),
            "spec.description",
            TOO_LONG,
            "may not be more than 5000",
        ),
        refuse(
            "spec.namespace reserved: kube-system",
            creating(valid_workspace(
                &ws_name(),
                json!({"namespace": "kube-system"}),
            )),
            "spec.namespace",
            FORBIDDEN,
            reserved_ns,
        ),
        refuse(
            "spec.namespace reserved: default",
            creating(valid_workspace(&ws_name(), json!({"namespace": "default"}))),
            "spec.namespace",
            FORBIDDEN,
            reserved_ns,
        ),
        refuse(
            "spec.namespace reserved: openshift-* prefix",
            creating(valid_workspace(
                &ws_name(),
                json!({"namespace": "openshift-infra"}),
            )),
            "spec.namespace",
            FORBIDDEN,
            reserved_ns,
        ),
        refuse(
            "spec.namespace not a DNS-1123 label",
            creating(valid_workspace(
                &ws_name(),
                json!({"namespace": "Team.Prod"}),
            )),
            "spec.namespace",
            INVALID,
            "spec.namespace must be a DNS-1123 label",
        ),
        refuse(
            "spec.namespace longer than 63 characters",
            creating(valid_workspace(
                &ws_name(),
                json!({"namespace": long('n', 64)}),
            )),
            "spec.namespace",
            TOO_LONG,
            "may not be more than 63",
        ),
        refuse(
            "owner missing",
            creating(json!({
                "apiVersion": API_VERSION, "kind": "Workspace",
                "metadata": {"name": ws_name()}, "spec": {"handle": "prod"},
            })),
            "spec.owner",
            REQUIRED,
            "Required value",
        ),
        refuse(
            "owner kind not in the enum (Team)",
            creating(valid_workspace(
                &ws_name(),
                json!({"owner": {"kind": "Team", "name": "acme"}}),
            )),
            "spec.owner.kind",
            NOT_SUPPORTED,
            r#"supported values: "User", "Organization""#,
        ),
        refuse(
            "owner name empty",
            creating(valid_workspace(&ws_name(), json!({"owner": {"name": ""}}))),
            "spec.owner.name",
            REQUIRED,
            "account name must not be empty",
        ),
        refuse(
            "owner name longer than 253 characters",
            creating(valid_workspace(
                &ws_name(),
                json!({"owner": {"name": long('u', 254)}}),
            )),
            "spec.owner.name",
            TOO_LONG,
            "may not be more than 253",
        ),
        refuse(
            "Organization owner named like a display name, not an object name",
            creating(valid_workspace(
                &ws_name(),
                json!({"owner": {"kind": "Organization", "name": "Acme Inc"}}),
            )),
            "spec.owner",
            INVALID,
            "an Organization account is named by the Organization's metadata.name",
        ),
        refuse(
            "deletionPolicy not in the enum (Keep)",
            creating(valid_workspace(
                &ws_name(),
                json!({"deletionPolicy": "Keep"}),
            )),
            "spec.deletionPolicy",
            NOT_SUPPORTED,
            r#"supported values: "Delete", "Retain""#,
        ),
        refuse(
            "deletionProtection not a boolean",
            creating(valid_workspace(
                &ws_name(),
                json!({"deletionProtection": "yes"}),
            )),
            "spec.deletionProtection",
            "FieldValueTypeInvalid",
            "must be of type boolean",
        ),
        refuse(
            "update: spec.namespace changed after creation",
            merge_patch(
                valid_workspace(&ws_name(), json!({"namespace": support::unique("ns-a")})),
                spec(json!({"namespace": support::unique("ns-b")})),
            ),
            "spec.namespace",
            FORBIDDEN,
            ns_immutable,
        ),
        refuse(
            "update: spec.namespace removed after creation",
            merge_patch(
                valid_workspace(&ws_name(), json!({"namespace": support::unique("ns-a")})),
                spec(json!({"namespace": null})),
            ),
            "spec.namespace",
            FORBIDDEN,
            ns_immutable,
        ),
        refuse(
            "update: spec.namespace set later to something other than the name",
            merge_patch(
                valid_workspace(&ws_name(), json!({})),
                spec(json!({"namespace": support::unique("ns-other")})),
            ),
            "spec.namespace",
            FORBIDDEN,
            ns_immutable,
        ),
        refuse(
            "update (PUT): spec.namespace changed by kubectl replace",
            replace(
                valid_workspace(&ws_name(), json!({"namespace": support::unique("ns-a")})),
                spec(json!({"namespace": support::unique("ns-b")})),
            ),
            "spec.namespace",
            FORBIDDEN,
            ns_immutable,
        ),
        refuse(
            "update: handle changed to an invalid one",
            merge_patch(
                valid_workspace(&ws_name(), json!({"handle": "prod"})),
                spec(json!({"handle": "Prod EU"})),
            ),
            "spec.handle",
            INVALID,
            bad_handle,
        ),
    ]
}

fn member_refusals(ns: &str) -> Vec<Refusal> {
    let wsm = || support::unique("wsm");
    let sa_needs_ns = "a ServiceAccount subject needs subject.namespace";
    let ns_only_for_sa = "subject.namespace is only for ServiceAccount subjects";
    let exclusive = "spec.role and spec.clusterRole are mutually exclusive";
    let needs_role = "a WorkspaceMember needs a role";
    let response_only_users =
        "spec.response answers an invitation and only User subjects are invited";
    let subject_immutable = "spec.subject cannot change";
    vec![
        refuse(
            "ServiceAccount subject without a namespace",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"subject": {"kind": "ServiceAccount", "name": "agent"}, "role": "Worker"}),
            )),
            "spec.subject.namespace",
            REQUIRED,
            sa_needs_ns,
        ),
        refuse(
            "ServiceAccount subject with an empty namespace",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"subject": {"kind": "ServiceAccount", "name": "agent", "namespace": ""}}),
            )),
            "spec.subject.namespace",
            REQUIRED,
            sa_needs_ns,
        ),
        refuse(
            "User subject with a namespace",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"subject": {"namespace": "team-a"}}),
            )),
            "spec.subject.namespace",
            FORBIDDEN,
            ns_only_for_sa,
        ),
        refuse(
            "Group subject with a namespace",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"subject": {"kind": "Group", "name": "acme-eng", "namespace": "team-a"}}),
            )),
            "spec.subject.namespace",
            FORBIDDEN,
            ns_only_for_sa,
        ),
        refuse(
            "subject namespace not a namespace name",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"subject": {"kind": "ServiceAccount", "name": "agent", "namespace": "Team_A"}}),
            )),
            "spec.subject.namespace",
            INVALID,
            "subject.namespace must be a namespace name",
        ),
        refuse(
            "subject kind not in the enum (Robot)",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"subject": {"kind": "Robot"}}),
            )),
            "spec.subject.kind",
            NOT_SUPPORTED,
            r#"supported values: "User", "Group", "ServiceAccount""#,
        ),
        refuse(
            "subject name empty",
            creating(valid_member(ns, &wsm(), json!({"subject": {"name": ""}}))),
            "spec.subject.name",
            REQUIRED,
            "subject.name must not be empty",
        ),
        refuse(
            "subject name longer than 253 characters",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"subject": {"name": long('u', 254)}}),
            )),
            "spec.subject.name",
            TOO_LONG,
            "may not be more than 253",
        ),
        refuse(
            "ServiceAccount named by its username (system:serviceaccount: prefix)",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"subject": {
                    "kind": "ServiceAccount",
                    "name": "system:serviceaccount:acme-agents:agent",
                    "namespace": "acme-agents",
                }}),
            )),
            "spec.subject.name",
            INVALID,
            "without the 'system:serviceaccount:' prefix",
        ),
        refuse(
            "both role and clusterRole",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"role": "Developer", "clusterRole": "acme:deployer"}),
            )),
            "spec",
            FORBIDDEN,
            exclusive,
        ),
        refuse(
            "neither role nor clusterRole",
            creating(valid_member(ns, &wsm(), json!({"role": null}))),
            "spec",
            REQUIRED,
            needs_role,
        ),
        refuse(
            "no role and an empty clusterRole",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"role": null, "clusterRole": ""}),
            )),
            "spec",
            REQUIRED,
            needs_role,
        ),
        refuse(
            "role not in the enum (Admin)",
            creating(valid_member(ns, &wsm(), json!({"role": "Admin"}))),
            "spec.role",
            NOT_SUPPORTED,
            r#"supported values: "Owner", "Developer", "Runner", "Viewer", "Worker""#,
        ),
        refuse(
            "role in the wrong case (developer)",
            creating(valid_member(ns, &wsm(), json!({"role": "developer"}))),
            "spec.role",
            NOT_SUPPORTED,
            "supported values",
        ),
        refuse(
            "clusterRole longer than 253 characters",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"role": null, "clusterRole": long('r', 254)}),
            )),
            "spec.clusterRole",
            TOO_LONG,
            "may not be more than 253",
        ),
        refuse(
            "response on a Group subject",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"subject": {"kind": "Group", "name": "acme-eng"}, "response": "Accepted"}),
            )),
            "spec.response",
            FORBIDDEN,
            response_only_users,
        ),
        refuse(
            "response on a ServiceAccount subject",
            creating(valid_member(
                ns,
                &wsm(),
                json!({
                    "subject": {"kind": "ServiceAccount", "name": "agent", "namespace": "acme-agents"},
                    "role": "Worker",
                    "response": "Accepted",
                }),
            )),
            "spec.response",
            FORBIDDEN,
            response_only_users,
        ),
        refuse(
            "response not in the enum (Maybe)",
            creating(valid_member(ns, &wsm(), json!({"response": "Maybe"}))),
            "spec.response",
            NOT_SUPPORTED,
            r#"supported values: "Accepted", "Declined""#,
        ),
        refuse(
            "update: subject name changed",
            merge_patch(
                valid_member(ns, &wsm(), json!({})),
                spec(json!({"subject": {"name": "mallory@example.com"}})),
            ),
            "spec.subject",
            FORBIDDEN,
            subject_immutable,
        ),
        refuse(
            "update (PUT): subject kind changed from User to Group",
            replace(
                valid_member(ns, &wsm(), json!({"subject": {"name": "acme-eng"}})),
                spec(json!({"subject": {"kind": "Group"}})),
            ),
            "spec.subject",
            FORBIDDEN,
            subject_immutable,
        ),
        refuse(
            "update: ServiceAccount subject moved to another namespace",
            merge_patch(
                valid_member(
                    ns,
                    &wsm(),
                    json!({
                        "subject": {"kind": "ServiceAccount", "name": "agent", "namespace": "acme-agents"},
                        "role": "Worker",
                    }),
                ),
                spec(json!({"subject": {"namespace": "globex-agents"}})),
            ),
            "spec.subject",
            FORBIDDEN,
            subject_immutable,
        ),
        refuse(
            "update: clusterRole added next to the role",
            merge_patch(
                valid_member(ns, &wsm(), json!({})),
                spec(json!({"clusterRole": "acme:deployer"})),
            ),
            "spec",
            FORBIDDEN,
            exclusive,
        ),
        refuse(
            "update: role removed without a clusterRole",
            merge_patch(
                valid_member(ns, &wsm(), json!({})),
                spec(json!({"role": null})),
            ),
            "spec",
            REQUIRED,
            needs_role,
        ),
        refuse(
            "update: response added to a Group subject",
            merge_patch(
                valid_member(
                    ns,
                    &wsm(),
                    json!({"subject": {"kind": "Group", "name": "acme-eng"}, "role": "Viewer"}),
                ),
                spec(json!({"response": "Accepted"})),
            ),
            "spec.response",
            FORBIDDEN,
            response_only_users,
        ),
    ]
}

fn transfer_refusals() -> Vec<Refusal> {
    let wst = || support::unique("wst");
    let approval_needs_one = "an approval needs approvedBy (to approve) or rejectedBy";
    let approval_not_both = "an approval cannot both approve and reject";
    let source_final = "approvals.source cannot be changed or withdrawn once given";
    let target_final = "approvals.target cannot be changed or withdrawn once given";
    let new_handle_immutable = "spec.newHandle cannot change after the transfer is created";
    let approved = json!({"approvals": {"source": {"approvedBy": ALICE}}});
    vec![
        refuse(
            "workspace not a Workspace name",
            creating(valid_transfer(&wst(), json!({"workspace": "Acme Prod"}))),
            "spec.workspace",
            INVALID,
            "spec.workspace must be the name of a Workspace",
        ),
        refuse(
            "workspace longer than 63 characters",
            creating(valid_transfer(&wst(), json!({"workspace": long('w', 64)}))),
            "spec.workspace",
            TOO_LONG,
            "may not be more than 63",
        ),
        refuse(
            "workspace missing",
            creating(valid_transfer(&wst(), json!({"workspace": null}))),
            "spec.workspace",
            REQUIRED,
            "Required value",
        ),
        refuse(
            "target account kind not in the enum (Team)",
            creating(valid_transfer(&wst(), json!({"to": {"kind": "Team"}}))),
            "spec.to.kind",
            NOT_SUPPORTED,
            r#"supported values: "User", "Organization""#,
        ),
        refuse(
            "target account name empty",
            creating(valid_transfer(
                &wst(),
                json!({"to": {"kind": "User", "name": ""}}),
            )),
            "spec.to.name",
            REQUIRED,
            "account name must not be empty",
        ),
        refuse(
            "target Organization named like a display name",
            creating(valid_transfer(
                &wst(),
                json!({"to": {"name": "Globex Corp"}}),
            )),
            "spec.to",
            INVALID,
            "an Organization account is named by the Organization's metadata.name",
        ),
        refuse(
            "newHandle with upper case",
            creating(valid_transfer(&wst(), json!({"newHandle": "Prod-EU"}))),
            "spec.newHandle",
            INVALID,
            "spec.newHandle must be 1 to 63 lowercase letters, digits or '-'",
        ),
        refuse(
            "newHandle longer than 63 characters",
            creating(valid_transfer(&wst(), json!({"newHandle": long('h', 64)}))),
            "spec.newHandle",
            TOO_LONG,
            "may not be more than 63",
        ),
        refuse(
            "approval with both approvedBy and rejectedBy",
            creating(valid_transfer(
                &wst(),
                json!({"approvals": {"source": {"approvedBy": ALICE, "rejectedBy": ALICE}}}),
            )),
            "spec.approvals.source",
            FORBIDDEN,
            approval_not_both,
        ),
        refuse(
            "approval with neither approvedBy nor rejectedBy (a comment only)",
            creating(valid_transfer(
                &wst(),
                json!({"approvals": {"target": {"comment": "looks good"}}}),
            )),
            "spec.approvals.target",
            REQUIRED,
            approval_needs_one,
        ),
        refuse(
            "approval by an empty username",
            creating(valid_transfer(
                &wst(),
                json!({"approvals": {"source": {"approvedBy": ""}}}),
            )),
            "spec.approvals.source.approvedBy",
            INVALID,
            "should be at least 1 chars long",
        ),
        refuse(
            "approval comment longer than 1024 characters",
            creating(valid_transfer(
                &wst(),
                json!({"approvals": {"source": {"rejectedBy": ALICE, "comment": long('c', 1025)}}}),
            )),
            "spec.approvals.source.comment",
            TOO_LONG,
            "may not be more than 1024",
        ),
        refuse(
            "update: spec.workspace changed",
            merge_patch(
                valid_transfer(&wst(), json!({})),
                spec(json!({"workspace": "acme-staging"})),
            ),
            "spec.workspace",
            FORBIDDEN,
            "spec.workspace cannot change after the transfer is created",
        ),
        refuse(
            "update: spec.to changed to another Organization",
            merge_patch(
                valid_transfer(&wst(), json!({})),
                spec(json!({"to": {"name": "initech"}})),
            ),
            "spec.to",
            FORBIDDEN,
            "spec.to cannot change after the transfer is created",
        ),
        refuse(
            "update (PUT): spec.to changed from an Organization to a User",
            replace(
                valid_transfer(&wst(), json!({})),
                spec(json!({"to": {"kind": "User", "name": ALICE}})),
            ),
            "spec.to",
            FORBIDDEN,
            "spec.to cannot change after the transfer is created",
        ),
        refuse(
            "update: newHandle added",
            merge_patch(
                valid_transfer(&wst(), json!({})),
                spec(json!({"newHandle": "prod-eu"})),
            ),
            "spec.newHandle",
            FORBIDDEN,
            new_handle_immutable,
        ),
        refuse(
            "update: newHandle changed",
            merge_patch(
                valid_transfer(&wst(), json!({"newHandle": "prod-eu"})),
                spec(json!({"newHandle": "prod-us"})),
            ),
            "spec.newHandle",
            FORBIDDEN,
            new_handle_immutable,
        ),
        refuse(
            "update: newHandle removed",
            merge_patch(
                valid_transfer(&wst(), json!({"newHandle": "prod-eu"})),
                spec(json!({"newHandle": null})),
            ),
            "spec.newHandle",
            FORBIDDEN,
            new_handle_immutable,
        ),
        refuse(
            "update: from changed",
            merge_patch(
                valid_transfer(&wst(), json!({"from": {"kind": "User", "name": ALICE}})),
                spec(json!({"from": {"kind": "User", "name": "mallory@example.com"}})),
            ),
            "spec.from",
            FORBIDDEN,
            "spec.from cannot change after the transfer is created",
        ),
        refuse(
            "update: source approval withdrawn",
            merge_patch(
                valid_transfer(&wst(), approved.clone()),
                spec(json!({"approvals": {"source": null}})),
            ),
            "spec.approvals",
            FORBIDDEN,
            source_final,
        ),
        refuse(
            "update: source approval turned into a refusal",
            merge_patch(
                valid_transfer(&wst(), approved.clone()),
                spec(json!({"approvals": {"source": {"approvedBy": null, "rejectedBy": ALICE}}})),
            ),
            "spec.approvals",
            FORBIDDEN,
            source_final,
        ),
        refuse(
            "update: source approval given by someone else instead",
            merge_patch(
                valid_transfer(&wst(), approved.clone()),
                spec(json!({"approvals": {"source": {"approvedBy": "mallory@example.com"}}})),
            ),
            "spec.approvals",
            FORBIDDEN,
            source_final,
        ),
        refuse(
            "update: all approvals withdrawn (target refusal removed)",
            merge_patch(
                valid_transfer(
                    &wst(),
                    json!({"approvals": {"target": {"rejectedBy": ALICE}}}),
                ),
                spec(json!({"approvals": null})),
            ),
            "spec.approvals",
            FORBIDDEN,
            target_final,
        ),
        refuse(
            "update: approval added with both approvedBy and rejectedBy",
            merge_patch(
                valid_transfer(&wst(), json!({})),
                spec(json!({"approvals": {"target": {"approvedBy": ALICE, "rejectedBy": ALICE}}})),
            ),
            "spec.approvals.target",
            FORBIDDEN,
            approval_not_both,
        ),
    ]
}

fn organization_refusals() -> Vec<Refusal> {
    let org = || support::unique("org");
    let needs_name = "an organization admin or member needs a name";
    vec![
        refuse(
            "name with a dot: not a DNS-1123 label",
            creating(valid_organization(&format!("{}.io", org()), json!({}))),
            "<nil>",
            INVALID,
            "Organization name must be a DNS-1123 label",
        ),
        refuse(
            "name longer than 63 characters",
            creating(valid_organization(&long('o', 64), json!({}))),
            "<nil>",
            INVALID,
            "Organization name must be a DNS-1123 label",
        ),
        refuse(
            "more than 100 admins",
            creating(valid_organization(&org(), json!({"admins": n_users(101)}))),
            "spec.admins",
            TOO_MANY,
            "must have at most 100 items",
        ),
        refuse(
            "more than 1000 members",
            creating(valid_organization(
                &org(),
                json!({"members": n_users(1001)}),
            )),
            "spec.members",
            TOO_MANY,
            "must have at most 1000 items",
        ),
        refuse(
            "duplicate admin",
            creating(valid_organization(
                &org(),
                json!({"admins": [
                    {"kind": "User", "name": ALICE},
                    {"kind": "Group", "name": "acme-admins"},
                    {"kind": "User", "name": ALICE},
                ]}),
            )),
            "spec.admins[2]",
            DUPLICATE,
            "Duplicate value",
        ),
        refuse(
            "duplicate member",
            creating(valid_organization(
                &org(),
                json!({"members": [
                    {"kind": "Group", "name": "acme-eng"},
                    {"kind": "Group", "name": "acme-eng"},
                ]}),
            )),
            "spec.members[1]",
            DUPLICATE,
            "Duplicate value",
        ),
        refuse(
            "admin with an empty name",
            creating(valid_organization(
                &org(),
                json!({"admins": [{"kind": "User", "name": ""}]}),
            )),
            "spec.admins[0].name",
            REQUIRED,
            needs_name,
        ),
        refuse(
            "member with an empty name",
            creating(valid_organization(
                &org(),
                json!({"members": [{"kind": "User", "name": "bob@example.com"}, {"kind": "Group", "name": ""}]}),
            )),
            "spec.members[1].name",
            REQUIRED,
            needs_name,
        ),
        refuse(
            "admin kind not in the enum (ServiceAccount)",
            creating(valid_organization(
                &org(),
                json!({"admins": [{"kind": "ServiceAccount", "name": "agent"}]}),
            )),
            "spec.admins[0].kind",
            NOT_SUPPORTED,
            r#"supported values: "User", "Group""#,
        ),
        refuse(
            "negative workspace limit",
            creating(valid_organization(
                &org(),
                json!({"limits": {"workspaces": -1}}),
            )),
            "spec.limits.workspaces",
            INVALID,
            "should be greater than or equal to 0",
        ),
        refuse(
            "negative members-per-workspace limit",
            creating(valid_organization(
                &org(),
                json!({"limits": {"membersPerWorkspace": -5}}),
            )),
            "spec.limits.membersPerWorkspace",
            INVALID,
            "should be greater than or equal to 0",
        ),
        refuse(
            "displayName longer than 256 characters",
            creating(valid_organization(
                &org(),
                json!({"displayName": long('a', 257)}),
            )),
            "spec.displayName",
            TOO_LONG,
            "may not be more than 256",
        ),
        refuse(
            "update: admin added twice",
            merge_patch(
                valid_organization(&org(), json!({})),
                spec(
                    json!({"admins": [{"kind": "User", "name": ALICE}, {"kind": "User", "name": ALICE}]}),
                ),
            ),
            "spec.admins[1]",
            DUPLICATE,
            "Duplicate value",
        ),
        refuse(
            "update: limit lowered below zero",
            merge_patch(
                valid_organization(&org(), json!({"limits": {"workspaces": 10}})),
                spec(json!({"limits": {"workspaces": -1}})),
            ),
            "spec.limits.workspaces",
            INVALID,
            "should be greater than or equal to 0",
        ),
    ]
}

/// The boundaries of the rules, and the changes they allow.
fn acceptances(ns: &str) -> Vec<Acceptance> {
    let wsm = || support::unique("wsm");
    let wst = || support::unique("wst");
    let name = ws_name();
    vec![
        must_accept(
            "Workspace name of exactly 63 characters",
            creating(valid_workspace(
                &format!("{}{}", name, long('w', 63 - name.len())),
                json!({}),
            )),
        ),
        must_accept(
            "handle of 63 characters, description of 5000",
            creating(valid_workspace(
                &ws_name(),
                json!({"handle": long('h', 63), "description": long('d', 5000)}),
            )),
        ),
        must_accept(
            "explicit nulls, as Helm renders empty values, count as unset",
            creating(json!({
                "apiVersion": API_VERSION, "kind": "Workspace",
                "metadata": {"name": ws_name()},
                "spec": {
                    "owner": {"kind": "User", "name": ALICE},
                    "handle": null, "namespace": null, "description": null,
                },
            })),
        ),
        must_accept(
            "a username is not checked as a DNS label (only Organization names are)",
            creating(valid_workspace(
                &ws_name(),
                json!({"owner": {"kind": "User", "name": "Alice Example <alice@example.com>"}}),
            )),
        ),
        must_accept(
            "update: unset spec.namespace spelled out as the Workspace name",
            {
                let name = ws_name();
                merge_patch(
                    valid_workspace(&name, json!({})),
                    spec(json!({"namespace": name})),
                )
            },
        ),
        must_accept(
            "update: handle, description and deletionProtection changed",
            merge_patch(
                valid_workspace(&ws_name(), json!({"namespace": support::unique("ns")})),
                spec(
                    json!({"handle": "prod-eu", "description": "moved", "deletionProtection": true}),
                ),
            ),
        ),
        must_accept(
            "the SPEC's WorkspaceMember example: empty namespace and clusterRole count as unset",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"subject": {"kind": "User", "name": "bob@acme.io", "namespace": ""}, "clusterRole": ""}),
            )),
        ),
        must_accept(
            "a custom clusterRole instead of a role",
            creating(valid_member(
                ns,
                &wsm(),
                json!({"role": null, "clusterRole": "acme:deployer"}),
            )),
        ),
        must_accept(
            "a ServiceAccount with a dotted name and its namespace",
            creating(valid_member(
                ns,
                &wsm(),
                json!({
                    "subject": {"kind": "ServiceAccount", "name": "flow.runner", "namespace": "acme-agents"},
                    "role": "Worker",
                }),
            )),
        ),
        must_accept(
            "update: role changed, subject unchanged",
            merge_patch(
                valid_member(ns, &wsm(), json!({})),
                spec(json!({"role": "Viewer"})),
            ),
        ),
        must_accept(
            "update: a User invitee answers",
            merge_patch(
                valid_member(ns, &wsm(), json!({"subject": {"name": ALICE}})),
                spec(json!({"response": "Accepted"})),
            ),
        ),
        must_accept(
            "update (PUT): role swapped for a clusterRole",
            replace(
                valid_member(ns, &wsm(), json!({})),
                spec(json!({"role": null, "clusterRole": "acme:deployer"})),
            ),
        ),
        must_accept(
            "update: approvals added after creation",
            merge_patch(
                valid_transfer(&wst(), json!({"newHandle": "prod-eu"})),
                spec(json!({"approvals": {"source": {"approvedBy": ALICE}}})),
            ),
        ),
        must_accept(
            "update: target approval added next to the source approval",
            merge_patch(
                valid_transfer(
                    &wst(),
                    json!({"approvals": {"source": {"approvedBy": ALICE}}}),
                ),
                spec(json!({"approvals": {"target": {"rejectedBy": ALICE, "comment": "not now"}}})),
            ),
        ),
        must_accept(
            "update (PUT): the same transfer written back unchanged",
            replace(
                valid_transfer(
                    &wst(),
                    json!({"approvals": {"source": {"approvedBy": ALICE}}}),
                ),
                json!({}),
            ),
        ),
        must_accept(
            "Organization with exactly 100 admins, limits of zero",
            creating(valid_organization(
                &support::unique("org"),
                json!({"admins": n_users(100), "limits": {"workspaces": 0, "membersPerWorkspace": 0}}),
            )),
        ),
        must_accept(
            "update: admins and members edited",
            merge_patch(
                valid_organization(&support::unique("org"), json!({})),
                spec(json!({
                    "admins": [{"kind": "User", "name": ALICE}, {"kind": "Group", "name": "acme-admins"}],
                    "members": [{"kind": "User", "name": ALICE}],
                })),
            ),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Running rows against the API server
// ---------------------------------------------------------------------------

/// An `Api` for the kind and namespace of `object`.
fn api_for(client: &Client, object: &Value) -> Api<DynamicObject> {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.split_once('/').expect("group/version");
    let kind = object["kind"].as_str().expect("kind");
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_string()
}

fn as_object(value: &Value) -> DynamicObject {
    serde_json::from_value(value.clone()).expect("a Kubernetes object")
}

/// Runs `op` and returns the API server's answer to its last request, or why
/// the row could not get that far.
async fn perform(client: &Client, op: &Op) -> Result<Result<DynamicObject, kube::Error>, String> {
    match op {
        Op::Create(object) => {
            let api = api_for(client, object);
            Ok(api.create(&PostParams::default(), &as_object(object)).await)
        }
        Op::Update { create, change } => {
            let api = api_for(client, create);
            let name = name_of(create);
            api.create(&PostParams::default(), &as_object(create))
                .await
                .map_err(|err| format!("the object to update was refused: {}", message(&err)))?;
            Ok(match change {
                Change::Merge(patch) => {
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                }
                Change::Replace(patch) => {
                    let current = api
                        .get(&name)
                        .await
                        .map_err(|err| format!("reading the object back: {err}"))?;
                    let current = serde_json::to_value(&current).expect("object as JSON");
                    api.replace(
                        &name,
                        &PostParams::default(),
                        &as_object(&merged(current, patch.clone())),
                    )
                    .await
                }
            })
        }
    }
}

/// Deletes what a row created (best effort: the control plane goes away with
/// the test binary; against an existing cluster this keeps it clean).
async fn clean_up(client: &Client, op: &Op) {
    let object = match op {
        Op::Create(object) => object,
        Op::Update { create, .. } => create,
    };
    let _ = api_for(client, object)
        .delete(&name_of(object), &DeleteParams::default())
        .await;
}

fn message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

/// Whether `status` is the refusal `row` expects: 422 Invalid, blaming
/// `row.field` with `row.reason` and a message containing `row.message`,
/// and no other problem (each row breaks exactly one rule).
fn check_refusal(row: &Refusal, status: &Status) -> Result<(), String> {
    if status.code != 422 || status.reason != "Invalid" {
        return Err(format!(
            "expected 422 Invalid, got {} {}",
            status.code, status.reason
        ));
    }
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    let causes: Vec<_> = causes
        .iter()
        .filter(|c| !c.message.contains(RULES_NOT_CHECKED))
        .collect();
    if !causes
        .iter()
        .any(|c| c.field == row.field && c.reason == row.reason && c.message.contains(row.message))
    {
        return Err(format!(
            "expected a cause at {} ({}) containing {:?}",
            row.field, row.reason, row.message
        ));
    }
    if let Some(other) = causes.iter().find(|c| c.field != row.field) {
        return Err(format!(
            "the object breaks another rule too ({}: {}); a row should break exactly one",
            other.field, other.message
        ));
    }
    Ok(())
}

/// Runs every row against the API server, then fails listing each row that
/// did not get the expected refusal, with the server's message.
async fn assert_refused(client: &Client, rows: Vec<Refusal>) {
    let mut failures = Vec::new();
    for row in &rows {
        let outcome = perform(client, &row.op).await;
        let verdict = match &outcome {
            Err(setup) => Err(setup.clone()),
            Ok(Ok(_)) => Err("accepted, but it should have been refused".to_string()),
            Ok(Err(kube::Error::Api(status))) => check_refusal(row, status),
            Ok(Err(other)) => Err(format!("failed without an API answer: {other}")),
        };
        match verdict {
            Ok(()) => eprintln!("refused as expected: {}", row.name),
            Err(why) => {
                let server = match &outcome {
                    Ok(Err(err)) => message(err),
                    _ => "(no refusal)".to_string(),
                };
                failures.push(format!("- {}: {why}\n    server said: {server}", row.name));
            }
        }
        clean_up(client, &row.op).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// A namespace for the namespaced rows, created for this test.
async fn test_namespace(client: &Client, prefix: &str) -> String {
    let name = support::unique(prefix);
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create the test namespace");
    name
}

async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

#[tokio::test]
async fn bad_workspaces_are_refused_by_the_api_server() {
    let client = support::plane().admin().await;
    assert_refused(&client, workspace_refusals()).await;
}

#[tokio::test]
async fn bad_workspace_members_are_refused_by_the_api_server() {
    let client = support::plane().admin().await;
    let ns = test_namespace(&client, "wsm-validation").await;
    assert_refused(&client, member_refusals(&ns)).await;
    delete_namespace(&client, &ns).await;
}

/// A client acting as alice holding cluster-admin (the group
/// `system:masters`). The CRD rules do not depend on who writes, and the
/// admission policies (`deploy/policies.yaml`, tested in `tests/security.rs`)
/// let a cluster admin through everything except answering an invitation or
/// a transfer in someone else's name: the rows that answer one name alice and
/// run as her.
async fn alice_as_cluster_admin() -> Client {
    support::plane().client_as(ALICE, &["system:masters"]).await
}

#[tokio::test]
async fn bad_workspace_transfers_are_refused_by_the_api_server() {
    let client = alice_as_cluster_admin().await;
    assert_refused(&client, transfer_refusals()).await;
}

#[tokio::test]
async fn bad_organizations_are_refused_by_the_api_server() {
    let client = support::plane().admin().await;
    assert_refused(&client, organization_refusals()).await;
}

#[tokio::test]
async fn rule_boundaries_and_allowed_changes_are_accepted() {
    let client = alice_as_cluster_admin().await;
    let ns = test_namespace(&client, "wsm-accept").await;
    let rows = acceptances(&ns);
    let mut failures = Vec::new();
    for row in &rows {
        match perform(&client, &row.op).await {
            Ok(Ok(_)) => eprintln!("accepted as expected: {}", row.name),
            Ok(Err(err)) => failures.push(format!("- {}: refused: {}", row.name, message(&err))),
            Err(setup) => failures.push(format!("- {}: {setup}", row.name)),
        }
        clean_up(&client, &row.op).await;
    }
    delete_namespace(&client, &ns).await;
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Coverage of the table itself (no API server needed)
// ---------------------------------------------------------------------------

fn all_refusals() -> Vec<Refusal> {
    let mut rows = workspace_refusals();
    rows.extend(member_refusals("table-check"));
    rows.extend(transfer_refusals());
    rows.extend(organization_refusals());
    rows
}

fn repo_path(relative: &str) -> PathBuf {
    support::repo_root().join(relative)
}

fn crd_files() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(repo_path("crds"))
        .expect("crds/")
        .map(|e| e.expect("crds/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read CRD");
            let crd: Value = serde_yaml::from_str(&text).expect("CRD YAML");
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .expect("CRD kind")
                .to_string();
            (kind, crd)
        })
        .collect()
}

/// Every `x-kubernetes-validations` message in `value`, recursively.
fn validation_messages(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for rule in rules {
                    if let Some(message) = rule["message"].as_str() {
                        out.insert(message.to_string());
                    }
                }
            }
            map.values().for_each(|v| validation_messages(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| validation_messages(v, out)),
        _ => {}
    }
}

/// The messages of the rule tables in `docs/api.md` (last column).
fn documented_messages() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_path("docs/api.md")).expect("docs/api.md");
    let section = text
        .split("\n## Validation")
        .nth(1)
        .expect("docs/api.md has a Validation section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| line.trim().trim_end_matches('|').rsplit(" | ").next())
        .map(|message| message.trim().to_string())
        .filter(|message| !message.starts_with('('))
        .collect()
}

#[test]
fn every_validation_rule_has_a_refusal_row() {
    let rows = all_refusals();
    assert!(rows.len() >= 30, "only {} refusal rows", rows.len());

    let mut names = BTreeSet::new();
    for row in &rows {
        assert!(names.insert(row.name), "two rows are named {:?}", row.name);
    }

    let mut in_crds = BTreeSet::new();
    for (_, crd) in crd_files() {
        validation_messages(&crd, &mut in_crds);
    }
    let documented = documented_messages();
    assert!(
        documented.len() >= 20,
        "found only {} rule messages in docs/api.md; did its tables change shape?",
        documented.len()
    );

    let mut problems = Vec::new();
    for message in documented.difference(&in_crds) {
        problems.push(format!(
            "docs/api.md lists a rule the CRDs do not have: {message}"
        ));
    }
    for message in in_crds.difference(&documented) {
        problems.push(format!(
            "the CRDs have a rule docs/api.md does not list: {message}"
        ));
    }
    for message in &in_crds {
        if !rows.iter().any(|row| message.contains(row.message)) {
            problems.push(format!("no refusal row expects: {message}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// examples/
// ---------------------------------------------------------------------------

/// Every document of every `examples/*.yaml`, with the file it came from.
fn example_documents() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(repo_path("examples"))
        .expect("examples/")
        .map(|e| e.expect("examples/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let file = file_name(&path);
        let text = std::fs::read_to_string(&path).expect("read example");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !value.is_null() {
                docs.push((file.clone(), value));
            }
        }
    }
    docs
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn examples_are_complete_and_their_members_belong_to_acme() {
    let docs = example_documents();
    let files: BTreeSet<&str> = docs.iter().map(|(file, _)| file.as_str()).collect();
    for expected in [
        "personal-workspace.yaml",
        "organization.yaml",
        "organization-workspace.yaml",
        "members.yaml",
        "invitation.yaml",
    ] {
        assert!(files.contains(expected), "examples/{expected} is missing");
    }
    let find = |kind: &str, name: &str| {
        docs.iter()
            .map(|(_, d)| d)
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in examples/"))
    };
    let personal = find("Workspace", "alice-sandbox");
    assert_eq!(
        personal["spec"]["owner"],
        json!({"kind": "User", "name": ALICE})
    );
    let prod = find("Workspace", "acme-prod");
    assert_eq!(
        prod["spec"]["owner"],
        json!({"kind": "Organization", "name": "acme"})
    );
    assert_eq!(prod["spec"]["handle"], "prod");
    assert_eq!(prod["spec"]["deletionPolicy"], "Retain");
    assert_eq!(prod["spec"]["deletionProtection"], false);
    let acme = find("Organization", "acme");
    assert!(acme["spec"]["limits"].is_object(), "acme has no limits");

    // The members of acme-prod can all become Active: each subject belongs
    // to acme (its members or admins, or a ServiceAccount in the namespace
    // of one of acme's workspaces), and each role kind appears.
    let belongs: BTreeSet<(String, String)> = ["admins", "members"]
        .iter()
        .flat_map(|list| acme["spec"][list].as_array().cloned().unwrap_or_default())
        .map(|s| {
            (
                s["kind"].as_str().unwrap_or_default().to_string(),
                s["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let acme_namespaces: BTreeSet<String> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "Workspace" && d["spec"]["owner"]["name"] == "acme")
        .map(|d| {
            d["spec"]["namespace"]
                .as_str()
                .or(d["metadata"]["name"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let mut kinds = BTreeMap::new();
    for member in docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "WorkspaceMember")
    {
        let name = &member["metadata"]["name"];
        let subject = &member["spec"]["subject"];
        // alice's personal workspace has an invitation: a User, not alice.
        if member["metadata"]["namespace"] == "alice-sandbox" {
            assert_eq!(subject["kind"], "User", "invitation {name}");
            assert_ne!(subject["name"], ALICE, "invitation {name}");
            continue;
        }
        assert_eq!(
            member["metadata"]["namespace"], "acme-prod",
            "member {name}"
        );
        let kind = subject["kind"].as_str().unwrap_or_default();
        let subject_name = subject["name"].as_str().unwrap_or_default();
        let ok = match kind {
            "ServiceAccount" => {
                let ns = subject["namespace"].as_str().unwrap_or_default();
                ns != "acme-prod" && acme_namespaces.contains(ns)
            }
            _ => belongs.contains(&(kind.to_string(), subject_name.to_string())),
        };
        assert!(
            ok,
            "member {name}: {kind} {subject_name} does not belong to acme"
        );
        kinds.insert(kind.to_string(), member["spec"]["role"].clone());
    }
    assert_eq!(kinds.get("Group"), Some(&json!("Viewer")));
    assert_eq!(kinds.get("ServiceAccount"), Some(&json!("Worker")));
    let roles: BTreeSet<&str> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "WorkspaceMember")
        .filter_map(|(_, d)| d["spec"]["role"].as_str())
        .collect();
    for role in ["Developer", "Viewer", "Worker", "Runner"] {
        assert!(roles.contains(role), "no member holds {role}");
    }
}

#[tokio::test]
async fn every_example_is_accepted_by_the_api_server() {
    let client = support::plane().admin().await;
    let docs = example_documents();

    // WorkspaceMembers (and the agent's ServiceAccount) live in namespaces
    // the operator creates; without the operator, create them here.
    let namespaces: BTreeSet<String> = docs
        .iter()
        .filter_map(|(_, d)| d["metadata"]["namespace"].as_str().map(str::to_string))
        .collect();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let mut created = Vec::new();
    for ns in &namespaces {
        if ns_api.get_opt(ns).await.expect("read namespace").is_none() {
            let object: Namespace =
                serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
            ns_api
                .create(&PostParams::default(), &object)
                .await
                .expect("create namespace");
            created.push(ns.clone());
        }
    }

    let mut failures = Vec::new();
    for (file, doc) in &docs {
        let what = format!(
            "{file}: {} {}",
            doc["kind"].as_str().unwrap_or("?"),
            doc["metadata"]["name"].as_str().unwrap_or("?")
        );
        match dry_run_apply(&client, doc).await {
            Ok(()) => eprintln!("accepted: {what}"),
            Err(err) => failures.push(format!("- {what}: {}", message(&err))),
        }
    }
    for ns in created {
        delete_namespace(&client, &ns).await;
    }
    assert!(
        failures.is_empty(),
        "examples refused by the API server:\n{}",
        failures.join("\n")
    );
}

/// `kubectl apply --server-side --dry-run=server` of one object.
async fn dry_run_apply(client: &Client, doc: &Value) -> Result<(), kube::Error> {
    let object = as_object(doc);
    let types = object.types.clone().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &name_of(doc),
        &PatchParams::apply(support::HARNESS_MANAGER).dry_run(),
        &Patch::Apply(&object),
    )
    .await
    .map(|_| ())
}

// ---------------------------------------------------------------------------
// kubectl explain
// ---------------------------------------------------------------------------

/// The `description` of a field of a kind's schema, as generated in `crds/`.
fn crd_description(kind: &str, path: &str) -> String {
    let crds = crd_files();
    let (_, crd) = crds
        .iter()
        .find(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let mut schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    for field in path.split('.').filter(|f| !f.is_empty()) {
        schema = &schema["properties"][field];
    }
    schema["description"]
        .as_str()
        .unwrap_or_else(|| panic!("{kind}.{path} has no description"))
        .to_string()
}

fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs `kubectl explain <target>` for v1alpha1 until it prints every
/// fragment (whitespace-insensitive), retrying for a while: the API server
/// publishes a new CRD's OpenAPI schema shortly after the CRD is established.
fn assert_explain_prints(target: &str, fragments: &[String]) {
    let plane = support::plane();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(plane.kubeconfig())
            .args(["explain", target, "--api-version=workspaces.dev/v1alpha1"])
            .output()
            .expect("run kubectl");
        let stdout = words(&String::from_utf8_lossy(&out.stdout));
        let missing: Vec<&String> = fragments
            .iter()
            .filter(|f| !stdout.contains(&words(f)))
            .collect();
        if out.status.success() && missing.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "kubectl explain {target} ({}) does not print {missing:?}\nstdout: {stdout}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn kubectl_explain_prints_the_field_documentation() {
    // What a user types first: the owner of a Workspace, down to its fields.
    let owner: Vec<String> = [
        "KIND: Workspace",
        "VERSION: v1alpha1",
        "The account that owns and manages the workspace: a User (a personal workspace) or an Organization.",
        "Changed only by a completed WorkspaceTransfer.",
        "kind <string> -required-",
        "User, Organization",
        "For a User, the username exactly as the cluster's authenticator reports it",
    ]
    .map(String::from)
    .to_vec();
    assert_explain_prints("workspaces.spec.owner", &owner);

    // For each kind, a field prints the doc comment it was generated from.
    for (resource, kind, path) in [
        ("workspaces", "Workspace", ""),
        ("workspaces", "Workspace", "spec.namespace"),
        ("workspaces", "Workspace", "spec.owner.name"),
        ("workspacemembers", "WorkspaceMember", "spec.subject"),
        ("workspacemembers", "WorkspaceMember", "spec.role"),
        ("workspacetransfers", "WorkspaceTransfer", "spec.approvals"),
        ("organizations", "Organization", "spec.admins"),
        ("organizations", "Organization", "spec.limits.workspaces"),
    ] {
        let target = if path.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{path}")
        };
        assert_explain_prints(&target, &[crd_description(kind, path)]);
    }
}

/// `kubectl get workspaces` lists Workspaces only; the category lists every kind.
#[tokio::test]
async fn kubectl_get_workspaces_lists_workspaces_and_the_category_lists_every_kind() {
    let plane = support::plane();
    let admin = plane.admin().await;
    let ws = support::unique("listed");
    let org = support::unique("listed-org");
    for value in [
        json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace", "metadata": {"name": ws},
               "spec": {"owner": {"kind": "User", "name": "lister@example.com"}}}),
        json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Organization", "metadata": {"name": org}, "spec": {}}),
    ] {
        support::try_apply_value(&admin, serde_json::from_value(value).unwrap())
            .await
            .expect("accepted");
    }
    let get = |what: &str| {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(plane.kubeconfig())
            .args(["get", what, "-A", "-o", "name"])
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let workspaces = get("workspaces");
    assert!(
        workspaces
            .lines()
            .all(|l| l.starts_with("workspace.workspaces.dev/")),
        "{workspaces}"
    );
    assert!(
        workspaces.contains(&format!("workspace.workspaces.dev/{ws}")),
        "{workspaces}"
    );
    let everything = get("workspaces-dev");
    assert!(
        everything.contains(&format!("workspace.workspaces.dev/{ws}")),
        "{everything}"
    );
    assert!(
        everything.contains(&format!("organization.workspaces.dev/{org}")),
        "{everything}"
    );
}
