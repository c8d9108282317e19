use super::*;
use crate::api::{AccountRef, TransferSource, WorkspaceTransferStatus};
use crate::api::{
    Approval, OrganizationLimits, OrganizationSpec, OrganizationSubject, OrganizationSubjectKind,
    TransferApprovals, WorkspaceSpec, WorkspaceStatus, WorkspaceTransferSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

const DAY: Duration = Duration::from_secs(86_400);

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

fn workspace(name: &str, owner: AccountRef, handle: Option<&str>) -> Arc<Workspace> {
    let mut ws = Workspace::new(
        name,
        WorkspaceSpec {
            owner: owner.clone(),
            handle: handle.map(str::to_string),
            description: None,
            namespace: None,
            deletion_policy: Default::default(),
            deletion_protection: false,
        },
    );
    ws.metadata.uid = Some(format!("uid-{name}"));
    ws.status = Some(WorkspaceStatus {
        phase: Some(WorkspacePhase::Active),
        namespace: Some(name.to_string()),
        owner: Some(owner),
        conditions: vec![Condition {
            type_: conditions::READY.into(),
            status: "True".into(),
            reason: reason::PROVISIONED.into(),
            message: String::new(),
            last_transition_time: Time(at(0)),
            observed_generation: None,
        }],
        ..Default::default()
    });
    Arc::new(ws)
}

fn organization(name: &str, admins: &[&str], limit: Option<i32>) -> Organization {
    Organization::new(
        name,
        OrganizationSpec {
            admins: admins
                .iter()
                .map(|a| OrganizationSubject {
                    kind: OrganizationSubjectKind::User,
                    name: a.to_string(),
                })
                .collect(),
            limits: limit.map(|l| OrganizationLimits {
                workspaces: Some(l),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn approval(by: &str, approve: bool) -> Approval {
    Approval {
        approved_by: approve.then(|| by.to_string()),
        rejected_by: (!approve).then(|| by.to_string()),
        comment: None,
    }
}

fn transfer(
    name: &str,
    to: AccountRef,
    source: Option<Approval>,
    target: Option<Approval>,
) -> WorkspaceTransfer {
    let mut t = WorkspaceTransfer::new(
        name,
        WorkspaceTransferSpec {
            workspace: "prod".into(),
            to,
            from: None,
            new_handle: None,
            approvals: Some(TransferApprovals { source, target }),
        },
    );
    t.metadata.uid = Some(format!("uid-{name}"));
    t.metadata.creation_timestamp = Some(Time(at(0)));
    t
}

struct World {
    ws: Option<Arc<Workspace>>,
    siblings: Vec<Arc<WorkspaceTransfer>>,
    target_org: Option<Organization>,
    source_org: Option<Organization>,
    target_workspaces: Vec<Arc<Workspace>>,
    losing: Vec<AffectedSubject>,
}

impl World {
    fn new() -> Self {
        World {
            ws: Some(workspace("prod", AccountRef::user("alice"), None)),
            siblings: Vec::new(),
            target_org: Some(organization("globex", &["carol"], Some(3))),
            source_org: None,
            target_workspaces: Vec::new(),
            losing: Vec::new(),
        }
    }

    fn inputs<'a>(&'a self, t: &'a WorkspaceTransfer, now: Timestamp) -> Inputs<'a> {
        Inputs {
            transfer: t,
            workspace: self.ws.as_deref(),
            siblings: &self.siblings,
            target_org: self.target_org.as_ref(),
            source_org: self.source_org.as_ref(),
            target_workspaces: &self.target_workspaces,
            user_limit: None,
            losing: &self.losing,
            ttl: 7 * DAY,
            now,
        }
    }
}

fn globex() -> AccountRef {
    AccountRef::organization("globex")
}

fn both_approved() -> WorkspaceTransfer {
    transfer(
        "move",
        globex(),
        Some(approval("alice", true)),
        Some(approval("carol", true)),
    )
}

fn problem_reason(d: Decision) -> Option<&'static str> {
    match d {
        Decision::Pending(Some(p)) => Some(p.reason),
        _ => None,
    }
}

#[test]
fn it_starts_only_when_both_sides_approved_and_it_is_valid() {
    let world = World::new();
    let only_source = transfer("move", globex(), Some(approval("alice", true)), None);
    assert_eq!(
        decide(&world.inputs(&only_source, at(10))),
        Decision::Pending(None)
    );
    assert_eq!(
        decide(&world.inputs(&both_approved(), at(10))),
        Decision::Start
    );
}

#[test]
fn a_refusal_from_either_side_rejects_it() {
    let world = World::new();
    let t = transfer(
        "move",
        globex(),
        Some(approval("alice", true)),
        Some(approval("carol", false)),
    );
    match decide(&world.inputs(&t, at(10))) {
        Decision::End(e) => {
            assert_eq!(e.phase, TransferPhase::Rejected);
            assert!(e.message.contains("carol"), "{}", e.message);
        }
        other => panic!("not rejected: {other:?}"),
    }
}

#[test]
fn it_expires_after_the_ttl_unless_it_runs() {
    let world = World::new();
    let t = transfer("move", globex(), Some(approval("alice", true)), None);
    assert!(matches!(
        decide(&world.inputs(&t, at(10))),
        Decision::Pending(_)
    ));
    assert_eq!(
        time_left(&t, 7 * DAY, at(10)),
        Some(7 * DAY - Duration::from_secs(10))
    );
    let late = at(7 * 86_400);
    match decide(&world.inputs(&t, late)) {
        Decision::End(e) => assert_eq!((e.phase, e.reason), (TransferPhase::Expired, "Expired")),
        other => panic!("not expired: {other:?}"),
    }
    let mut running = both_approved();
    running.status = Some(WorkspaceTransferStatus {
        phase: Some(TransferPhase::Transferring),
        ..Default::default()
    });
    assert_eq!(decide(&world.inputs(&running, late)), Decision::Execute);
}

#[test]
fn validation_names_what_blocks_it() {
    let t = both_approved();
    let mut world = World::new();
    world.target_org = None;
    assert_eq!(
        problem_reason(decide(&world.inputs(&t, at(1)))),
        Some("TargetNotFound")
    );

    let mut world = World::new();
    world.target_workspaces = vec![workspace("other", globex(), Some("prod"))];
    assert_eq!(
        problem_reason(decide(&world.inputs(&t, at(1)))),
        Some("HandleTaken")
    );
    let mut renamed = t.clone();
    renamed.spec.new_handle = Some("prod-eu".into());
    assert_eq!(decide(&world.inputs(&renamed, at(1))), Decision::Start);

    let mut world = World::new();
    world.target_workspaces = ["a", "b", "c"]
        .iter()
        .map(|n| workspace(n, globex(), None))
        .collect();
    assert_eq!(
        problem_reason(decide(&world.inputs(&t, at(1)))),
        Some("TargetLimitReached")
    );

    let mut world = World::new();
    let mut ws = (*workspace("prod", AccountRef::user("alice"), None)).clone();
    ws.status.as_mut().unwrap().phase = Some(WorkspacePhase::Pending);
    world.ws = Some(Arc::new(ws));
    assert_eq!(
        problem_reason(decide(&world.inputs(&t, at(1)))),
        Some("WorkspaceNotReady")
    );

    let mut world = World::new();
    world.ws = Some(workspace("prod", globex(), None));
    assert_eq!(
        problem_reason(decide(&world.inputs(&t, at(1)))),
        Some("AlreadyOwned")
    );
}

#[test]
fn a_second_transfer_of_a_workspace_waits_for_the_first() {
    let mut world = World::new();
    let mut first = transfer("first", AccountRef::user("dave"), None, None);
    first.metadata.creation_timestamp = Some(Time(at(-5)));
    let second = both_approved();
    world.siblings = vec![Arc::new(first.clone()), Arc::new(second.clone())];
    assert_eq!(
        problem_reason(decide(&world.inputs(&second, at(1)))),
        Some("TransferInProgress")
    );
    // The first is not held up by the second.
    assert_eq!(
        decide(&world.inputs(&first, at(1))),
        Decision::Pending(None)
    );
    // Once the first has ended, the second may run.
    first.status = Some(WorkspaceTransferStatus {
        phase: Some(TransferPhase::Rejected),
        ..Default::default()
    });
    world.siblings = vec![Arc::new(first), Arc::new(second.clone())];
    assert_eq!(decide(&world.inputs(&second, at(1))), Decision::Start);
}

#[test]
fn a_false_or_outdated_source_fails_it_for_good() {
    let world = World::new();
    let mut t = both_approved();
    t.spec.from = Some(AccountRef::user("mallory"));
    match decide(&world.inputs(&t, at(1))) {
        Decision::End(e) => assert_eq!(
            (e.phase, e.reason),
            (TransferPhase::Failed, "SourceMismatch")
        ),
        other => panic!("{other:?}"),
    }
    let mut t = both_approved();
    t.status = Some(WorkspaceTransferStatus {
        source: Some(TransferSource {
            kind: AccountKind::User,
            name: "bob".into(),
            namespace: "prod".into(),
        }),
        ..Default::default()
    });
    match decide(&world.inputs(&t, at(1))) {
        Decision::End(e) => assert_eq!(e.reason, "SourceChanged"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_workspace_or_target_deleted_while_it_runs_fails_it() {
    let mut running = both_approved();
    running.status = Some(WorkspaceTransferStatus {
        phase: Some(TransferPhase::Transferring),
        ..Default::default()
    });
    let mut world = World::new();
    world.ws = None;
    assert!(matches!(
        decide(&world.inputs(&running, at(1))),
        Decision::End(Ending {
            phase: TransferPhase::Failed,
            ..
        })
    ));
    let mut world = World::new();
    world.target_org = None;
    assert!(matches!(
        decide(&world.inputs(&running, at(1))),
        Decision::End(Ending {
            reason: "TargetNotFound",
            ..
        })
    ));
}

#[test]
fn the_impact_lists_who_loses_and_gains_access() {
    let mut world = World::new();
    world.losing = vec![
        AffectedSubject {
            kind: SubjectKind::User,
            name: "bob".into(),
            namespace: None,
            reason: Some("NotAnOrganizationMember".into()),
        },
        AffectedSubject {
            kind: SubjectKind::ServiceAccount,
            name: "ci".into(),
            namespace: Some("tools".into()),
            reason: Some("NotAnOrganizationMember".into()),
        },
    ];
    world.target_workspaces = vec![workspace("x", globex(), None)];
    let t = both_approved();
    let impact = impact(&world.inputs(&t, at(1)));
    assert_eq!(impact.members_losing_access.len(), 1);
    assert_eq!(impact.service_accounts_losing_access[0].name, "ci");
    assert_eq!(impact.owners_losing_access[0].name, "alice");
    assert_eq!(impact.owners_gaining_access[0].name, "carol");
    assert_eq!(impact.handle_available, Some(true));
    assert_eq!(
        impact.target_workspaces,
        Some(WorkspaceUsage {
            used: 1,
            limit: Some(3)
        })
    );
    let text = summary(&t, world.ws.as_deref(), &impact);
    for needle in [
        "User bob",
        "ServiceAccount tools/ci",
        "alice",
        "carol",
        "kept",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn status_follows_kstatus() {
    let now = Time(at(5));
    let t = transfer("move", globex(), Some(approval("alice", true)), None);
    let status = compute_status(&t, &State::Pending(None), Facts::default(), "ok", &now);
    let cond = |s: &WorkspaceTransferStatus, ty: &str| {
        conditions::find_condition(&s.conditions, ty).map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(status.phase, Some(TransferPhase::Pending));
    assert_eq!(
        cond(&status, "Ready"),
        Some(("False".into(), "AwaitingApproval".into()))
    );
    assert_eq!(
        cond(&status, "Reconciling").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(
        cond(&status, "SourceApproved").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(
        cond(&status, "TargetApproved").map(|c| c.1),
        Some("AwaitingApproval".into())
    );
    assert_eq!(cond(&status, "Stalled"), None);

    let mut t2 = t.clone();
    t2.status = Some(status);
    let done = Ending {
        phase: TransferPhase::Completed,
        reason: reason::COMPLETED,
        message: "done".into(),
    };
    let status = compute_status(&t2, &State::Ended(done), Facts::default(), "", &now);
    assert_eq!(
        cond(&status, "Ready"),
        Some(("True".into(), "Completed".into()))
    );
    assert_eq!(cond(&status, "Complete").map(|c| c.0), Some("True".into()));
    assert_eq!(cond(&status, "Reconciling"), None);
    assert_eq!(cond(&status, "Stalled"), None);
    assert!(status.completion_time.is_some());

    let blocked = Problem {
        reason: reason::HANDLE_TAKEN,
        message: "taken".into(),
        stalled: true,
    };
    let status = compute_status(
        &t,
        &State::Pending(Some(blocked)),
        Facts::default(),
        "",
        &now,
    );
    assert_eq!(
        cond(&status, "Stalled").map(|c| c.1),
        Some("HandleTaken".into())
    );
    assert_eq!(
        cond(&status, "Validated").map(|c| c.0),
        Some("False".into())
    );
}

#[test]
fn the_source_is_recorded_once() {
    let now = Time(at(5));
    let t = transfer("move", globex(), None, None);
    let source = |name: &str, ns: &str| TransferSource {
        kind: AccountKind::User,
        name: name.into(),
        namespace: ns.into(),
    };
    let facts = |s| Facts {
        source: Some(s),
        ..Default::default()
    };
    let first = compute_status(
        &t,
        &State::Pending(None),
        facts(source("alice", "")),
        "",
        &now,
    );
    let mut t2 = t.clone();
    t2.status = Some(first);
    // An empty namespace is filled in; the account never changes.
    let second = compute_status(
        &t2,
        &State::Pending(None),
        facts(source("alice", "prod")),
        "",
        &now,
    );
    assert_eq!(second.source, Some(source("alice", "prod")));
    t2.status = Some(second);
    let third = compute_status(
        &t2,
        &State::Pending(None),
        facts(source("bob", "prod")),
        "",
        &now,
    );
    assert_eq!(third.source, Some(source("alice", "prod")));
}

#[test]
fn the_read_grant_is_about_one_transfer_and_both_sides() {
    let mut world = World::new();
    world.source_org = None;
    let t = both_approved();
    let role = reader_role(&t);
    let rule = &role.rules.as_ref().unwrap()[0];
    assert_eq!(rule.resource_names, Some(vec!["move".to_string()]));
    assert_eq!(rule.verbs, ["get", "list", "watch"]);
    assert_eq!(
        role.metadata.name.as_deref(),
        Some("workspaces.dev:transfer:move")
    );
    let member = crate::controller::member::build::rbac_subject(&crate::api::Subject {
        kind: SubjectKind::User,
        name: "olivia".into(),
        namespace: None,
    });
    let readers: Vec<String> = readers(&world.inputs(&t, at(1)), &[member])
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(readers, ["alice", "carol", "olivia"]);
    let long = grant_name(&"x".repeat(250));
    assert!(long.len() <= 253);
}
