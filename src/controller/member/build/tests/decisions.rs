//! Whether a member holds its role: the workspace it belongs to, its
//! eligibility (custom roles, duplicates, organization subjects) and the
//! member limit.

use super::*;

#[test]
fn the_workspace_is_found_by_uid_never_by_label_alone() {
    let ws = Arc::new(personal());
    let all = vec![ws.clone()];
    let ns = |labels: &[(&str, &str)], annotations: &[(&str, &str)]| PartialObjectMeta::<Namespace> {
        metadata: ObjectMeta {
            name: Some(NS.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    let proven = ns(
        &[(labels::WORKSPACE, NS)],
        &[(labels::WORKSPACE_UID, "ws-uid")],
    );
    assert!(workspace_of(NS, Some(&proven), &all).is_some());

    let label_only = ns(&[(labels::WORKSPACE, NS)], &[]);
    assert!(workspace_of(NS, Some(&label_only), &all).is_none());

    let wrong_uid = ns(
        &[(labels::WORKSPACE, NS)],
        &[(labels::WORKSPACE_UID, "other")],
    );
    assert!(workspace_of(NS, Some(&wrong_uid), &all).is_none());

    // The UID of a Workspace whose namespace is another one proves nothing here.
    assert!(workspace_of("elsewhere", Some(&proven), &all).is_none());
    assert!(workspace_of(NS, None, &all).is_none());
}

#[test]
fn no_workspace_or_a_workspace_being_deleted_revokes() {
    let bob = member("bob", Subject::user("bob"), WorkspaceRole::Viewer, 10);
    let mut world = World::new(personal()).with_members(&[&bob]);
    world.workspace = None;
    let b = blocked(&world.plan(&bob)).clone();
    assert_eq!(b.reason, reason::WORKSPACE_NOT_FOUND);
    assert!(b.stalled && b.revoke);

    let mut deleting = personal();
    deleting.metadata.deletion_timestamp = Some(at(99));
    world.workspace = Some(deleting);
    let b = blocked(&world.plan(&bob)).clone();
    assert_eq!(b.reason, reason::WORKSPACE_NOT_READY);
    assert!(!b.stalled && b.revoke);
}

#[test]
fn a_namespace_a_workspace_is_about_to_take_waits_and_revokes() {
    let bob = member("bob", Subject::user("bob"), WorkspaceRole::Viewer, 10);
    let mut world = World::new(personal()).with_members(&[&bob]);
    world.workspace = None;
    world.claimant = Some(personal());
    let b = blocked(&world.plan(&bob)).clone();
    assert_eq!(b.reason, reason::WORKSPACE_NOT_READY);
    // It waits (no person must act), but nothing is granted on the account of
    // a Workspace that does not hold the namespace.
    assert!(!b.stalled && b.revoke);

    let naming = vec![Arc::new(personal())];
    assert!(claimant(NS, &naming).is_some());
    assert!(claimant("elsewhere", &naming).is_none());
    let mut deleting = personal();
    deleting.metadata.deletion_timestamp = Some(at(99));
    assert!(claimant(NS, &[Arc::new(deleting)]).is_none());
}

#[test]
fn decide_ignores_the_workspace_phase_and_plan_does_not() {
    let bob = member("bob", Subject::user("bob"), WorkspaceRole::Viewer, 10);
    let pending = workspace(AccountRef::user("alice"), WorkspacePhase::Pending);
    let world = World::new(pending.clone()).with_members(&[&bob]);
    assert_eq!(
        blocked(&world.plan(&bob)).reason,
        reason::WORKSPACE_NOT_READY
    );
    let assignable = |_: &str| false;
    let inputs = Inputs {
        member: &bob,
        workspace: Some(&pending),
        claimant: None,
        organization: None,
        organization_namespaces: &[],
        members: &world.members,
        bindings: &[],
        is_assignable: &assignable,
        invitation_ttl: TTL,
        now: now(),
    };
    assert!(matches!(decide(&inputs, &pending), Plan::Grant(_)));
}

#[test]
fn a_workspace_that_is_not_ready_grants_nothing_new_and_keeps_what_exists() {
    let bob = member("bob", Subject::user("bob"), WorkspaceRole::Viewer, 10);
    for phase in [WorkspacePhase::Pending, WorkspacePhase::Blocked] {
        let world = World::new(workspace(AccountRef::user("alice"), phase)).with_members(&[&bob]);
        let b = blocked(&world.plan(&bob)).clone();
        assert_eq!(b.reason, reason::WORKSPACE_NOT_READY);
        assert!(!b.stalled && !b.revoke, "{phase:?}");
    }
}

#[test]
fn custom_roles_must_be_assignable() {
    let ok = custom("deployer", Subject::user("bob"), "platform:deployer");
    let world = World::new(personal()).with_members(&[&ok]);
    let rb = granted(&world.plan(&ok)).clone();
    assert_eq!(rb.role_ref.name, "platform:deployer");
    assert!(rb.name_any().starts_with("wsm-deployer-platform-deployer-"));

    for name in ["cluster-admin", "admin", "workspaces:owner"] {
        let bad = custom("admin", Subject::user("bob"), name);
        let world = World::new(personal()).with_members(&[&bad]);
        let b = blocked(&world.plan(&bad)).clone();
        assert_eq!(b.reason, reason::ROLE_NOT_ASSIGNABLE, "{name}");
        assert!(b.stalled && b.revoke);
        assert!(b.message.contains(name));
    }
}

#[test]
fn the_oldest_member_of_a_subject_wins_and_the_others_are_duplicates() {
    let first = member("first", Subject::user("bob"), WorkspaceRole::Viewer, 10);
    let second = member("second", Subject::user("bob"), WorkspaceRole::Owner, 20);
    let other = member("other", Subject::user("carol"), WorkspaceRole::Owner, 5);
    let world = World::new(personal()).with_members(&[&first, &second, &other]);
    granted(&world.plan(&first));
    granted(&world.plan(&other));
    let b = blocked(&world.plan(&second)).clone();
    assert_eq!(b.reason, reason::DUPLICATE_SUBJECT);
    assert!(b.message.contains("first"), "{}", b.message);
    assert!(b.stalled && b.revoke);

    // Same creation time: the name decides.
    let a = member("a", Subject::user("dan"), WorkspaceRole::Viewer, 30);
    let b_ = member("b", Subject::user("dan"), WorkspaceRole::Viewer, 30);
    let world = World::new(personal()).with_members(&[&a, &b_]);
    granted(&world.plan(&a));
    assert_eq!(blocked(&world.plan(&b_)).reason, reason::DUPLICATE_SUBJECT);

    // A member being deleted no longer counts.
    let mut going = first.clone();
    going.metadata.deletion_timestamp = Some(at(50));
    let world = World::new(personal()).with_members(&[&going, &second]);
    granted(&world.plan(&second));

    // The same name in another kind is another subject.
    let group = member("group", Subject::group("bob"), WorkspaceRole::Viewer, 40);
    let world = World::new(personal()).with_members(&[&first, &group]);
    granted(&world.plan(&group));
}

#[test]
fn organization_workspaces_admit_only_the_organizations_subjects() {
    let mut world = World::new(org_workspace());
    world.organization = Some(organization(
        &[
            OrganizationSubject::user("bob"),
            OrganizationSubject::group("eng"),
        ],
        None,
    ));
    world.org_namespaces = vec![NS.to_string(), "acme-ci".to_string()];
    let cases = [
        (Subject::user("bob"), true),
        (Subject::user("alice@acme.io"), true), // an admin
        (Subject::group("eng"), true),
        (Subject::user("eng"), false), // listed as a Group, not a User
        (Subject::group("bob"), false),
        (Subject::user("mallory"), false),
        (Subject::service_account("acme-ci", "runner"), true),
        (Subject::service_account(NS, "runner"), true),
        (Subject::service_account("elsewhere", "runner"), false),
    ];
    for (subject, admitted) in cases {
        let m = member("m", subject.clone(), WorkspaceRole::Viewer, 10);
        world.members = vec![Arc::new(m.clone())];
        match world.plan(&m) {
            Plan::Grant(_) => assert!(admitted, "{subject:?} was admitted"),
            Plan::Blocked(b) => {
                assert!(!admitted, "{subject:?}: {b:?}");
                assert_eq!(b.reason, reason::NOT_AN_ORGANIZATION_MEMBER);
                assert!(b.stalled && b.revoke);
            }
            Plan::Invite(_) => panic!("{subject:?}: members of an organization are not invited"),
        }
    }

    // The organization is gone: wait, keep what exists.
    world.organization = None;
    let m = member("m", Subject::user("bob"), WorkspaceRole::Viewer, 10);
    let b = blocked(&world.plan(&m)).clone();
    assert_eq!(b.reason, reason::WORKSPACE_NOT_READY);
    assert!(!b.revoke);
}

#[test]
fn the_member_limit_blocks_the_newest_and_never_takes_away_what_is_held() {
    let a = member("a", Subject::user("a"), WorkspaceRole::Viewer, 10);
    let b = member("b", Subject::user("b"), WorkspaceRole::Viewer, 20);
    let c = member("c", Subject::user("c"), WorkspaceRole::Viewer, 30);
    let members = [&a, &b, &c]
        .into_iter()
        .map(|s| OrganizationSubject::user(&s.spec.subject.name))
        .collect::<Vec<_>>();
    let mut world = World::new(org_workspace()).with_members(&[&a, &b, &c]);
    world.organization = Some(organization(&members, Some(2)));

    granted(&world.plan(&a));
    granted(&world.plan(&b));
    let blocked_c = blocked(&world.plan(&c)).clone();
    assert_eq!(blocked_c.reason, reason::MEMBER_LIMIT_EXCEEDED);
    assert!(blocked_c.stalled && !blocked_c.revoke);

    // c got its binding before the limit was lowered: it keeps it, and the
    // newer ones without a binding wait.
    world.bindings = vec![held(&c, "workspaces:viewer")];
    world.organization = Some(organization(&members, Some(1)));
    granted(&world.plan(&c));
    assert_eq!(
        blocked(&world.plan(&a)).reason,
        reason::MEMBER_LIMIT_EXCEEDED
    );

    // Duplicates and non-members do not take a slot.
    let dup = member("dup", Subject::user("a"), WorkspaceRole::Viewer, 1);
    let stranger = member("stranger", Subject::user("zed"), WorkspaceRole::Viewer, 2);
    let mut world = World::new(org_workspace()).with_members(&[&a, &dup, &stranger]);
    world.organization = Some(organization(&members, Some(1)));
    // `dup` is older and wins the subject; `a` is its duplicate.
    assert_eq!(blocked(&world.plan(&a)).reason, reason::DUPLICATE_SUBJECT);
    granted(&world.plan(&dup));
    assert_eq!(
        blocked(&world.plan(&stranger)).reason,
        reason::NOT_AN_ORGANIZATION_MEMBER
    );

    // Personal workspaces have no member limit.
    let world = World::new(personal()).with_members(&[&a, &b, &c]);
    granted(&world.plan(&c));
}
