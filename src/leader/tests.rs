use super::*;

const DURATION: Duration = Duration::from_secs(15);

fn lease(holder: Option<&str>, duration: Option<i32>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("workspace-operator".into()),
            namespace: Some("ops".into()),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: duration,
            lease_transitions: Some(2),
            ..LeaseSpec::default()
        }),
    }
}

#[test]
fn creates_a_missing_lease() {
    assert_eq!(
        decide(None, "me", Duration::ZERO, DURATION),
        Decision::Create
    );
}

#[test]
fn takes_a_released_lease_at_once() {
    for holder in [None, Some("")] {
        let l = lease(holder, Some(1));
        assert_eq!(
            decide(Some(&l), "me", Duration::ZERO, DURATION),
            Decision::Take
        );
    }
}

#[test]
fn keeps_its_own_lease() {
    let l = lease(Some("me"), Some(15));
    assert_eq!(
        decide(Some(&l), "me", Duration::ZERO, DURATION),
        Decision::Take
    );
}

#[test]
fn waits_for_a_live_lease_and_takes_an_expired_one() {
    let l = lease(Some("other"), Some(15));
    let wait = Decision::Wait {
        holder: "other".into(),
    };
    assert_eq!(
        decide(Some(&l), "me", Duration::from_secs(14), DURATION),
        wait
    );
    assert_eq!(
        decide(Some(&l), "me", Duration::from_secs(15), DURATION),
        Decision::Take
    );
    // The Lease's own duration wins over ours; a missing one falls back to ours.
    let long = lease(Some("other"), Some(60));
    assert!(matches!(
        decide(Some(&long), "me", Duration::from_secs(30), DURATION),
        Decision::Wait { .. }
    ));
    let unset = lease(Some("other"), None);
    assert_eq!(
        decide(Some(&unset), "me", Duration::from_secs(15), DURATION),
        Decision::Take
    );
}

#[test]
fn taking_over_records_a_transition_and_keeps_the_version() {
    let previous = lease(Some("other"), Some(1));
    let new = taken(Some(&previous), "ops", "workspace-operator", "me", DURATION);
    let spec = new.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("me"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(3));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    assert_eq!(new.metadata.resource_version.as_deref(), Some("7"));
}

#[test]
fn reacquiring_own_lease_is_not_a_transition() {
    let previous = lease(Some("me"), Some(15));
    let spec = taken(Some(&previous), "ops", "workspace-operator", "me", DURATION)
        .spec
        .unwrap();
    assert_eq!(spec.lease_transitions, Some(2));
    assert!(spec.acquire_time.is_none());
}

#[test]
fn a_new_lease_starts_at_zero_transitions() {
    let new = taken(None, "ops", "workspace-operator", "me", DURATION);
    assert_eq!(new.metadata.name.as_deref(), Some("workspace-operator"));
    assert_eq!(new.metadata.namespace.as_deref(), Some("ops"));
    assert_eq!(new.metadata.resource_version, None);
    assert_eq!(new.spec.unwrap().lease_transitions, Some(0));
}

#[test]
fn identities_are_unique() {
    let a = default_identity();
    let b = default_identity();
    assert_ne!(a, b);
    assert!(!a.starts_with('-'));
}

#[test]
fn renew_deadline_is_shorter_than_the_lease() {
    let s = LeaseSettings::default();
    assert!(s.renew_interval < s.renew_deadline && s.renew_deadline < s.lease_duration);
}
