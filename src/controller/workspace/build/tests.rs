use super::*;
use crate::api::{
    AccountRef, OrganizationLimits, OrganizationSpec, WorkspacePhase, WorkspaceSpec,
    WorkspaceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn ws(name: &str, owner: AccountRef, handle: Option<&str>, age: i64) -> Arc<Workspace> {
    let mut w = Workspace::new(
        name,
        WorkspaceSpec {
            owner,
            handle: handle.map(str::to_string),
            description: None,
            namespace: None,
            deletion_policy: Default::default(),
            deletion_protection: false,
        },
    );
    w.metadata.uid = Some(format!("uid-{name}"));
    w.metadata.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + age).unwrap(),
    ));
    Arc::new(w)
}

fn active(w: &Arc<Workspace>) -> Arc<Workspace> {
    let mut w = (**w).clone();
    let name = w.name_any();
    w.status = Some(WorkspaceStatus {
        phase: Some(WorkspacePhase::Active),
        handle: Some(w.spec.effective_handle(&name).to_string()),
        ..Default::default()
    });
    Arc::new(w)
}

fn plan_for(
    w: &Workspace,
    all: &[Arc<Workspace>],
    org: Option<&Organization>,
    ns: Option<&PartialObjectMeta<Namespace>>,
    provisioned: &[&str],
    user_limit: Option<u32>,
) -> Plan {
    let provisioned: Vec<String> = provisioned.iter().map(|s| s.to_string()).collect();
    let is_provisioned = move |o: &Workspace| provisioned.contains(&o.name_any());
    plan(&Inputs {
        workspace: w,
        all,
        organization: org,
        namespace: ns,
        is_provisioned: &is_provisioned,
        user_limit,
        pod_security: PodSecurityLevel::Baseline,
    })
}

fn reason_of(plan: &Plan) -> &'static str {
    match plan {
        Plan::Provision(_) => "Provision",
        Plan::Blocked(b) => b.reason,
    }
}

fn namespace(annotations: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
    let mut ns: PartialObjectMeta<Namespace> = PartialObjectMeta::default();
    ns.metadata.name = Some("ns".into());
    ns.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    ns
}

#[test]
fn the_older_workspace_keeps_a_handle() {
    let alice = AccountRef::user("alice@example.com");
    let old = ws("old", alice.clone(), Some("prod"), 0);
    let new = ws("new", alice.clone(), Some("prod"), 10);
    let all = vec![old.clone(), new.clone()];
    assert_eq!(
        reason_of(&plan_for(&old, &all, None, None, &[], None)),
        "Provision"
    );
    assert_eq!(
        reason_of(&plan_for(&new, &all, None, None, &[], None)),
        reason::HANDLE_CONFLICT
    );
    // Another owner may use the same handle.
    let other = ws("other", AccountRef::user("bob"), Some("prod"), 20);
    let all = vec![old, new, other.clone()];
    assert_eq!(
        reason_of(&plan_for(&other, &all, None, None, &[], None)),
        "Provision"
    );
}

#[test]
fn an_active_workspace_keeps_its_handle_against_an_older_claim() {
    let alice = AccountRef::user("alice");
    let older = ws("older", alice.clone(), Some("prod"), 0);
    let holder = active(&ws("holder", alice.clone(), Some("prod"), 10));
    let all = vec![older.clone(), holder.clone()];
    assert_eq!(
        reason_of(&plan_for(&holder, &all, None, None, &["holder"], None)),
        "Provision"
    );
    assert_eq!(
        reason_of(&plan_for(&older, &all, None, None, &["holder"], None)),
        reason::HANDLE_CONFLICT
    );
}

#[test]
fn limits_admit_the_oldest_and_never_evict_the_provisioned() {
    let org = AccountRef::organization("acme");
    let mut acme = Organization::new("acme", OrganizationSpec::default());
    acme.spec.limits = Some(OrganizationLimits {
        workspaces: Some(1),
        members_per_workspace: None,
    });
    let a = ws("a", org.clone(), None, 0);
    let b = ws("b", org.clone(), None, 10);
    let all = vec![a.clone(), b.clone()];
    assert_eq!(
        reason_of(&plan_for(&a, &all, Some(&acme), None, &[], None)),
        "Provision"
    );
    assert_eq!(
        reason_of(&plan_for(&b, &all, Some(&acme), None, &[], None)),
        reason::WORKSPACE_LIMIT_EXCEEDED
    );
    // Limit lowered to 0: what is provisioned stays.
    acme.spec.limits = Some(OrganizationLimits {
        workspaces: Some(0),
        members_per_workspace: None,
    });
    assert_eq!(
        reason_of(&plan_for(&a, &all, Some(&acme), None, &["a"], None)),
        "Provision"
    );
    // Personal accounts use the operator's limit.
    let u = ws("u", AccountRef::user("carol"), None, 0);
    let v = ws("v", AccountRef::user("carol"), None, 5);
    let all = vec![u.clone(), v.clone()];
    assert_eq!(
        reason_of(&plan_for(&v, &all, None, None, &["u"], Some(1))),
        reason::WORKSPACE_LIMIT_EXCEEDED
    );
    assert_eq!(
        reason_of(&plan_for(&v, &all, None, None, &["u"], None)),
        "Provision"
    );
}

#[test]
fn missing_organization_blocks() {
    let w = ws("w", AccountRef::organization("ghost"), None, 0);
    assert_eq!(
        reason_of(&plan_for(
            &w,
            std::slice::from_ref(&w),
            None,
            None,
            &[],
            None
        )),
        reason::ORGANIZATION_NOT_FOUND
    );
}

#[test]
fn namespaces_are_ours_by_uid_adoptable_by_annotation_or_a_conflict() {
    let w = ws("w", AccountRef::user("alice"), None, 0);
    let all = vec![w.clone()];
    let foreign = namespace(&[]);
    assert_eq!(
        reason_of(&plan_for(&w, &all, None, Some(&foreign), &[], None)),
        reason::NAMESPACE_CONFLICT
    );
    let other_uid = namespace(&[(labels::WORKSPACE_UID, "uid-someone-else")]);
    assert_eq!(
        reason_of(&plan_for(&w, &all, None, Some(&other_uid), &[], None)),
        reason::NAMESPACE_CONFLICT
    );
    // A label naming the workspace proves nothing.
    let mut labelled = namespace(&[]);
    labelled.metadata.labels = Some([(labels::WORKSPACE.to_string(), "w".to_string())].into());
    assert_eq!(
        reason_of(&plan_for(&w, &all, None, Some(&labelled), &[], None)),
        reason::NAMESPACE_CONFLICT
    );
    // Another workspace's namespace cannot be adopted even with the annotation.
    let adopt_taken = namespace(&[(labels::ADOPT, "w"), (labels::WORKSPACE_UID, "uid-x")]);
    assert_eq!(
        reason_of(&plan_for(&w, &all, None, Some(&adopt_taken), &[], None)),
        reason::NAMESPACE_CONFLICT
    );
    let ours = namespace(&[(labels::WORKSPACE_UID, "uid-w")]);
    assert_eq!(
        reason_of(&plan_for(&w, &all, None, Some(&ours), &[], None)),
        "Provision"
    );
    let adoptable = namespace(&[(labels::ADOPT, "w")]);
    match plan_for(&w, &all, None, Some(&adoptable), &[], None) {
        Plan::Provision(d) => {
            assert!(d.adopted);
            assert_eq!(
                d.namespace
                    .annotations()
                    .get(labels::ADOPTED)
                    .map(String::as_str),
                Some("true")
            );
        }
        other => panic!("expected adoption, got {other:?}"),
    }
}

#[test]
fn owner_names_that_are_not_label_values_become_annotations() {
    let w = ws("w", AccountRef::user("alice@example.com"), Some("prod"), 0);
    let ns = namespace_metadata(&w, "w", false, PodSecurityLevel::Baseline);
    assert_eq!(
        ns.annotations().get(labels::OWNER).map(String::as_str),
        Some("alice@example.com")
    );
    assert!(ns.labels().get(labels::OWNER).is_none());
    assert_eq!(
        ns.labels().get(labels::HANDLE).map(String::as_str),
        Some("prod")
    );
    assert_eq!(
        ns.annotations()
            .get(labels::WORKSPACE_UID)
            .map(String::as_str),
        Some("uid-w")
    );
    let w = ws("w", AccountRef::user("alice"), None, 0);
    let ns = namespace_metadata(&w, "w", false, PodSecurityLevel::Baseline);
    assert_eq!(
        ns.labels().get(labels::OWNER).map(String::as_str),
        Some("alice")
    );
}
