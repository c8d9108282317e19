use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::*;
use crate::api::conditions::{RECONCILING, STALLED};
use crate::api::{
    AccountRef, MemberPhase, Subject, WorkspaceMemberSpec, WorkspaceMemberStatus, WorkspaceRole,
    WorkspaceSpec,
};
use crate::controller::member::build::compute_status;

const TTL: Duration = Duration::from_secs(3_600);

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn workspace(owner: AccountRef) -> Workspace {
    Workspace::new("acme-prod", WorkspaceSpec::owned_by(owner))
}

fn personal() -> Workspace {
    workspace(AccountRef::user("alice@acme.io"))
}

/// A member created at second 1000.
fn member(subject: Subject, response: Option<InvitationResponse>) -> WorkspaceMember {
    let mut m = WorkspaceMember::new(
        "bob",
        WorkspaceMemberSpec {
            subject,
            role: Some(WorkspaceRole::Developer),
            cluster_role: None,
            response,
        },
    );
    m.metadata.namespace = Some("acme-prod".into());
    m.metadata.uid = Some("uid-bob".into());
    m.metadata.generation = Some(1);
    m.metadata.creation_timestamp = Some(Time(at(1_000)));
    m
}

fn bob(response: Option<InvitationResponse>) -> WorkspaceMember {
    member(Subject::user("bob@acme.io"), response)
}

fn reported(m: &mut WorkspaceMember, reason: &str, message: &str) {
    m.status = Some(WorkspaceMemberStatus {
        conditions: vec![Condition {
            type_: READY.into(),
            status: "False".into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(at(1_000)),
            observed_generation: Some(1),
        }],
        ..Default::default()
    });
}

fn ended_with(plan: Option<Plan>) -> Blocked {
    match plan {
        Some(Plan::Blocked(b)) => b,
        other => panic!("expected an ended invitation, got {other:?}"),
    }
}

fn invitation(plan: Option<Plan>) -> Invitation {
    match plan {
        Some(Plan::Invite(i)) => *i,
        other => panic!("expected an open invitation, got {other:?}"),
    }
}

#[test]
fn a_user_in_a_personal_workspace_is_invited_with_a_grant_to_answer_and_nothing_else() {
    let m = bob(None);
    let open = invitation(decide(&m, &personal(), false, TTL, at(2_000)));
    assert_eq!(open.expires_at, Time(at(1_000 + 3_600)));
    let role = &open.role;
    assert_eq!(role.name_any(), "wsi-bob");
    assert_eq!(role.namespace().as_deref(), Some("acme-prod"));
    let rules = role.rules.as_ref().unwrap();
    assert_eq!(rules.len(), 1, "one rule");
    assert_eq!(
        rules[0].api_groups.as_deref(),
        Some(&["workspaces.dev".to_string()][..])
    );
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["workspacemembers".to_string()][..])
    );
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&["bob".to_string()][..])
    );
    assert_eq!(rules[0].verbs, ["get", "patch"]);
    let binding = &open.binding;
    assert_eq!(binding.name_any(), "wsi-bob");
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.name, "wsi-bob");
    let subjects = binding.subjects.as_ref().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (subjects[0].kind.as_str(), subjects[0].name.as_str()),
        ("User", "bob@acme.io")
    );
    for owned in [&role.metadata, &binding.metadata] {
        let refs = owned.owner_references.as_ref().unwrap();
        assert_eq!(refs[0].uid, "uid-bob");
        assert_eq!(refs[0].controller, Some(true));
        let labels = owned.labels.as_ref().unwrap();
        assert_eq!(
            labels.get(labels::INVITATION).map(String::as_str),
            Some("bob")
        );
        assert!(
            !labels.contains_key(labels::MEMBER),
            "not a role binding of the member"
        );
    }
}

#[test]
fn groups_service_accounts_the_owner_and_organization_workspaces_are_not_invited() {
    let ws = personal();
    for subject in [
        Subject::group("acme-eng"),
        Subject::service_account("ci", "runner"),
        Subject::user("alice@acme.io"),
    ] {
        assert_eq!(
            decide(&member(subject.clone(), None), &ws, false, TTL, at(2_000)),
            None,
            "{subject:?}"
        );
    }
    let org = workspace(AccountRef::organization("acme"));
    assert_eq!(decide(&bob(None), &org, false, TTL, at(2_000)), None);
}

#[test]
fn an_accepted_invitation_or_a_role_already_held_grants_as_usual() {
    let ws = personal();
    let accepted = bob(Some(InvitationResponse::Accepted));
    assert_eq!(decide(&accepted, &ws, false, TTL, at(2_000)), None);
    assert_eq!(decide(&bob(None), &ws, true, TTL, at(2_000)), None);
}

#[test]
fn a_declined_invitation_grants_nothing_and_says_how_to_invite_again() {
    for ws in [personal(), workspace(AccountRef::organization("acme"))] {
        let declined = ended_with(decide(
            &bob(Some(InvitationResponse::Declined)),
            &ws,
            true,
            TTL,
            at(2_000),
        ));
        assert_eq!(declined.reason, reason::INVITATION_DECLINED);
        assert!(declined.revoke && declined.stalled);
        assert!(
            declined
                .message
                .contains("kubectl -n acme-prod delete workspacemember bob"),
            "{}",
            declined.message
        );
    }
}

#[test]
fn an_unanswered_invitation_expires_at_its_recorded_time() {
    let ws = personal();
    assert!(matches!(
        decide(&bob(None), &ws, false, TTL, at(1_000 + 3_599)),
        Some(Plan::Invite(_))
    ));
    let expired = ended_with(decide(&bob(None), &ws, false, TTL, at(1_000 + 3_600)));
    assert_eq!(expired.reason, reason::INVITATION_EXPIRED);
    assert!(expired.revoke);
    assert!(expired.message.contains("delete workspacemember bob"));
    // The time recorded in the status wins over a changed TTL.
    let mut recorded = bob(None);
    recorded.status = Some(WorkspaceMemberStatus {
        invitation_expires_at: Some(Time(at(10_000))),
        ..Default::default()
    });
    let open = invitation(decide(&recorded, &ws, false, TTL, at(9_000)));
    assert_eq!(open.expires_at, Time(at(10_000)));
}

#[test]
fn an_ended_invitation_stays_ended_whatever_comes_after() {
    let ws = personal();
    let mut late = bob(Some(InvitationResponse::Accepted));
    reported(&mut late, reason::INVITATION_EXPIRED, "expired");
    assert_eq!(
        ended_with(decide(&late, &ws, false, TTL, at(2_000))).reason,
        reason::INVITATION_EXPIRED
    );
    let mut moved = bob(None);
    reported(&mut moved, reason::INVITATION_REVOKED, "moved by t1");
    let org = workspace(AccountRef::organization("acme"));
    let revoked = ended_with(decide(&moved, &org, false, TTL, at(2_000)));
    assert_eq!(revoked.reason, reason::INVITATION_REVOKED);
    assert_eq!(revoked.message, "moved by t1");
}

#[test]
fn a_transfer_revokes_an_open_invitation_naming_itself() {
    let revoked = ended_with(Some(revoked(
        &bob(None),
        Some(("t1", "Organization/globex")),
    )));
    assert_eq!(revoked.reason, reason::INVITATION_REVOKED);
    assert!(
        revoked
            .message
            .contains("WorkspaceTransfer t1 moved the workspace to Organization/globex")
    );
}

#[test]
fn statuses_of_an_invitation_say_its_phase() {
    let now = Time(at(2_000));
    let m = bob(None);
    let open = decide(&m, &personal(), false, TTL, at(2_000)).unwrap();
    let status = compute_status(&m, &open, &[], None, &now);
    assert_eq!(status.phase, Some(MemberPhase::Invited));
    assert_eq!(status.invitation_expires_at, Some(Time(at(4_600))));
    let ready = find_condition(&status.conditions, READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::INVITATION_PENDING)
    );
    assert!(
        ready.message.contains("\"response\":\"Accepted\""),
        "{}",
        ready.message
    );
    assert!(find_condition(&status.conditions, RECONCILING).is_some());
    assert!(find_condition(&status.conditions, STALLED).is_none());

    let declined = bob(Some(InvitationResponse::Declined));
    let plan = decide(&declined, &personal(), false, TTL, at(2_000)).unwrap();
    let status = compute_status(&declined, &plan, &[], None, &now);
    assert_eq!(status.phase, Some(MemberPhase::Declined));
    assert!(find_condition(&status.conditions, STALLED).is_some());
    let plan = decide(&bob(None), &personal(), false, TTL, at(9_000)).unwrap();
    assert_eq!(
        compute_status(&bob(None), &plan, &[], None, &now).phase,
        Some(MemberPhase::Expired)
    );
}

#[test]
fn grant_names_stay_valid_for_long_member_names() {
    let long = "m".repeat(253);
    let name = grant_name(&long);
    assert!(name.len() <= 253 && name.starts_with(PREFIX));
    assert_ne!(grant_name(&long), grant_name(&"m".repeat(252)));
}
