use super::*;
use k8s_openapi::jiff::Timestamp;

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).unwrap())
}

fn ready(status: bool, reason: &'static str, message: &str) -> NewCondition {
    NewCondition::new(READY, status, reason, message)
}

#[test]
fn a_new_condition_gets_the_current_time() {
    let mut conditions = Vec::new();
    assert!(set_condition(
        &mut conditions,
        ready(true, reason::PROVISIONED, "The workspace is ready.").observed_generation(Some(3)),
        &at(10)
    ));
    assert_eq!(
        conditions,
        [Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Provisioned".into(),
            message: "The workspace is ready.".into(),
            observed_generation: Some(3),
            last_transition_time: at(10),
        }]
    );
}

#[test]
fn setting_the_same_condition_again_changes_nothing() {
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        ready(true, reason::PROVISIONED, "Ready."),
        &at(10),
    );
    let before = conditions.clone();
    assert!(!set_condition(
        &mut conditions,
        ready(true, reason::PROVISIONED, "Ready."),
        &at(20)
    ));
    assert_eq!(conditions, before);
}

#[test]
fn transition_time_moves_only_when_the_status_flips() {
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        ready(false, reason::PROVISIONING, "Creating."),
        &at(10),
    );

    // Same status, new reason and message: reported as a change, time kept.
    assert!(set_condition(
        &mut conditions,
        ready(false, reason::NAMESPACE_CONFLICT, "Namespace taken."),
        &at(20)
    ));
    assert_eq!(conditions[0].reason, "NamespaceConflict");
    assert_eq!(conditions[0].last_transition_time, at(10));

    // New observed generation only: a change, time kept.
    assert!(set_condition(
        &mut conditions,
        ready(false, reason::NAMESPACE_CONFLICT, "Namespace taken.").observed_generation(Some(2)),
        &at(25)
    ));
    assert_eq!(conditions[0].last_transition_time, at(10));

    // Status flips: time moves.
    assert!(set_condition(
        &mut conditions,
        ready(true, reason::PROVISIONED, "Ready."),
        &at(30)
    ));
    assert_eq!(conditions[0].status, "True");
    assert_eq!(conditions[0].last_transition_time, at(30));
    assert_eq!(conditions.len(), 1);
}

#[test]
fn other_conditions_are_left_alone_and_order_is_kept() {
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        NewCondition::new(NAMESPACE_READY, true, reason::PROVISIONED, "Ns."),
        &at(1),
    );
    set_condition(
        &mut conditions,
        ready(false, reason::PROVISIONING, "Access."),
        &at(2),
    );
    set_condition(
        &mut conditions,
        NewCondition::new(ACCESS_READY, false, reason::PROVISIONING, "Rb."),
        &at(3),
    );
    set_condition(
        &mut conditions,
        ready(true, reason::PROVISIONED, "Ready."),
        &at(4),
    );
    let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, [NAMESPACE_READY, READY, ACCESS_READY]);
    assert_eq!(conditions[0].last_transition_time, at(1));
    assert_eq!(conditions[2].last_transition_time, at(3));
}

#[test]
fn duplicate_types_are_collapsed_to_one() {
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        ready(true, reason::PROVISIONED, "Ready."),
        &at(1),
    );
    let duplicate = conditions[0].clone();
    conditions.push(duplicate);
    assert!(set_condition(
        &mut conditions,
        ready(true, reason::PROVISIONED, "Ready."),
        &at(2)
    ));
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0].last_transition_time, at(1));
}

#[test]
fn messages_are_one_bounded_line() {
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        ready(
            false,
            reason::API_ERROR,
            "could not\n  apply\tthe RoleBinding",
        ),
        &at(1),
    );
    assert_eq!(conditions[0].message, "could not apply the RoleBinding");

    let long = "é".repeat(MAX_MESSAGE_LEN);
    set_condition(
        &mut conditions,
        ready(false, reason::API_ERROR, &long),
        &at(2),
    );
    let message = &conditions[0].message;
    assert!(message.len() <= MAX_MESSAGE_LEN, "{} bytes", message.len());
    assert!(message.ends_with('…'));
}

#[test]
fn remove_find_and_is_true() {
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        ready(true, reason::PROVISIONED, "Ready."),
        &at(1),
    );
    set_condition(
        &mut conditions,
        NewCondition::new(STALLED, false, reason::PROVISIONED, "Fine."),
        &at(1),
    );
    assert!(is_true(&conditions, READY));
    assert!(!is_true(&conditions, STALLED));
    assert!(!is_true(&conditions, RECONCILING));
    assert_eq!(
        find_condition(&conditions, STALLED).map(|c| c.reason.as_str()),
        Some("Provisioned")
    );
    assert!(remove_condition(&mut conditions, STALLED));
    assert!(!remove_condition(&mut conditions, STALLED));
    assert!(find_condition(&conditions, STALLED).is_none());
}

#[test]
fn equality_ignores_time_and_order_but_not_content() {
    let mut a = Vec::new();
    set_condition(&mut a, ready(true, reason::PROVISIONED, "Ready."), &at(1));
    set_condition(
        &mut a,
        NewCondition::new(NAMESPACE_READY, true, reason::PROVISIONED, "Ns."),
        &at(1),
    );
    let mut b = Vec::new();
    set_condition(
        &mut b,
        NewCondition::new(NAMESPACE_READY, true, reason::PROVISIONED, "Ns."),
        &at(50),
    );
    set_condition(&mut b, ready(true, reason::PROVISIONED, "Ready."), &at(60));
    assert!(conditions_equal_ignoring_time(&a, &b));

    let mut c = b.clone();
    set_condition(&mut c, ready(true, reason::PROVISIONED, "Ready!"), &at(70));
    assert!(!conditions_equal_ignoring_time(&a, &c));

    let mut d = b.clone();
    set_condition(
        &mut d,
        ready(true, reason::PROVISIONED, "Ready.").observed_generation(Some(1)),
        &at(70),
    );
    assert!(!conditions_equal_ignoring_time(&a, &d));

    assert!(!conditions_equal_ignoring_time(&a, &b[..1]));
    assert!(conditions_equal_ignoring_time(&[], &[]));
}

#[test]
fn statuses_have_their_wire_values() {
    assert_eq!(ConditionStatus::from(true).as_str(), "True");
    assert_eq!(ConditionStatus::from(false).as_str(), "False");
    assert_eq!(ConditionStatus::Unknown.as_str(), "Unknown");
}

fn is_pascal_case(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

#[test]
fn types_and_reasons_are_unique_pascal_case() {
    for list in [TYPES, reason::ALL] {
        let mut seen = std::collections::BTreeSet::new();
        for value in list {
            assert!(is_pascal_case(value), "{value} is not PascalCase");
            assert!(seen.insert(value), "{value} appears twice");
        }
    }
}
