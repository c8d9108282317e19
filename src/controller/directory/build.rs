//! The directory entry of one subject, built from its memberships (pure).
//!
//! An entry is a Role and a RoleBinding of the same name in the directory
//! namespace. The Role's rules are the data: one rule per relation, on
//! `workspaces.dev` `workspaces`, naming the Workspaces (sorted) with a
//! custom verb that says what the subject is there. A namespaced Role's rule
//! about the cluster-scoped `workspaces` grants no request, and no admission
//! policy asks for these verbs: the rules only answer the subject's own
//! SelfSubjectRulesReview in the directory namespace.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject as RbacSubject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{GROUP, MemberPhase, Subject, SubjectKind, WorkspaceMember, WorkspaceRole};
use crate::controller::labels;
use crate::controller::member::build::{fnv64, rbac_subject};

/// Every entry's name (Role and RoleBinding) starts with this.
pub const PREFIX: &str = "workspaces.dev:directory:";

/// The relation verbs, in the order the rules list them. `member-<role>`: an
/// Active member with that built-in role; `member-custom`: an Active member
/// given a custom ClusterRole; `invited`: an open invitation.
pub const VERBS: &[&str] = &[
    "member-owner",
    "member-developer",
    "member-runner",
    "member-viewer",
    "member-worker",
    "member-custom",
    "invited",
];

/// The name of `subject`'s entry: the prefix and a hash of
/// `<kind>/<name>` (`ServiceAccount/<namespace>/<name>` for a ServiceAccount).
pub fn entry_name(subject: &Subject) -> String {
    format!("{PREFIX}{:016x}", fnv64(&subject_text(subject)))
}

/// The text an entry's name hashes.
fn subject_text(subject: &Subject) -> String {
    match (subject.kind, subject.namespace_name()) {
        (SubjectKind::ServiceAccount, Some(ns)) => format!("ServiceAccount/{ns}/{}", subject.name),
        (kind, _) => format!("{kind}/{}", subject.name),
    }
}

/// The relation verb `member` gives its subject in its workspace, if any:
/// only Active and Invited members are listed.
pub fn relation(member: &WorkspaceMember) -> Option<&'static str> {
    let phase = member.status.as_ref().and_then(|s| s.phase)?;
    match phase {
        MemberPhase::Invited => Some("invited"),
        MemberPhase::Active if member.spec.cluster_role_name().is_some() => Some("member-custom"),
        MemberPhase::Active => Some(match member.spec.role? {
            WorkspaceRole::Owner => "member-owner",
            WorkspaceRole::Developer => "member-developer",
            WorkspaceRole::Runner => "member-runner",
            WorkspaceRole::Viewer => "member-viewer",
            WorkspaceRole::Worker => "member-worker",
        }),
        _ => None,
    }
}

/// The rules of an entry: one per verb that has Workspaces, names sorted.
pub fn rules<'a>(relations: impl IntoIterator<Item = (&'a str, &'static str)>) -> Vec<PolicyRule> {
    let mut by_verb: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (workspace, verb) in relations {
        by_verb.entry(verb).or_default().insert(workspace);
    }
    VERBS
        .iter()
        .filter_map(|verb| {
            let names = by_verb.get(verb)?;
            Some(PolicyRule {
                api_groups: Some(vec![GROUP.to_string()]),
                resources: Some(vec!["workspaces".to_string()]),
                verbs: vec![verb.to_string()],
                resource_names: Some(names.iter().map(|n| n.to_string()).collect()),
                non_resource_urls: None,
            })
        })
        .collect()
}

/// The metadata both objects of `subject`'s entry carry.
fn meta(subject: &Subject, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(entry_name(subject)),
        namespace: Some(namespace.to_string()),
        labels: Some(BTreeMap::from([
            (labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into()),
            (labels::DIRECTORY.into(), subject.kind.to_string()),
        ])),
        ..ObjectMeta::default()
    }
}

/// The entry of `subject` in `namespace` with `rules`: the Role holding them
/// and the RoleBinding giving that Role to exactly `subject`. None when
/// there are no rules: the subject has no entry.
pub fn entry(
    subject: &Subject,
    namespace: &str,
    rules: Vec<PolicyRule>,
) -> Option<(Role, RoleBinding)> {
    if rules.is_empty() {
        return None;
    }
    let role = Role {
        metadata: meta(subject, namespace),
        rules: Some(rules),
    };
    let binding = RoleBinding {
        metadata: meta(subject, namespace),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: entry_name(subject),
        },
        subjects: Some(vec![rbac_subject(subject)]),
    };
    Some((role, binding))
}

/// The subject an entry's RoleBinding binds, if it binds exactly one that a
/// WorkspaceMember could name.
pub fn bound_subject(binding: &RoleBinding) -> Option<Subject> {
    let [one] = binding.subjects.as_deref()? else {
        return None;
    };
    subject_of(one)
}

fn subject_of(rbac: &RbacSubject) -> Option<Subject> {
    match rbac.kind.as_str() {
        "User" => Some(Subject::user(&rbac.name)),
        "Group" => Some(Subject::group(&rbac.name)),
        "ServiceAccount" => Some(Subject::service_account(
            rbac.namespace.clone()?,
            &rbac.name,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::WorkspaceMemberStatus;

    fn member(
        subject: Subject,
        role: Option<WorkspaceRole>,
        custom: Option<&str>,
        phase: Option<MemberPhase>,
    ) -> WorkspaceMember {
        let mut m = WorkspaceMember::new(
            "m",
            crate::api::WorkspaceMemberSpec {
                subject,
                role,
                cluster_role: custom.map(str::to_string),
                response: None,
            },
        );
        m.status = phase.map(|phase| WorkspaceMemberStatus {
            phase: Some(phase),
            ..WorkspaceMemberStatus::default()
        });
        m
    }

    #[test]
    fn the_name_depends_on_kind_name_and_service_account_namespace_only() {
        let alice = entry_name(&Subject::user("alice"));
        assert!(alice.starts_with(PREFIX));
        assert_eq!(alice.len(), PREFIX.len() + 16);
        assert_eq!(alice, entry_name(&Subject::user("alice")));
        assert_ne!(alice, entry_name(&Subject::group("alice")));
        assert_ne!(
            entry_name(&Subject::service_account("a", "ci")),
            entry_name(&Subject::service_account("b", "ci"))
        );
        assert!(alice.len() <= 253);
    }

    #[test]
    fn only_active_and_invited_members_have_a_relation() {
        let u = || Subject::user("bob");
        let dev = Some(WorkspaceRole::Developer);
        assert_eq!(
            relation(&member(u(), dev, None, Some(MemberPhase::Active))),
            Some("member-developer")
        );
        assert_eq!(
            relation(&member(u(), None, Some("ci"), Some(MemberPhase::Active))),
            Some("member-custom")
        );
        assert_eq!(
            relation(&member(u(), dev, None, Some(MemberPhase::Invited))),
            Some("invited")
        );
        for phase in [
            MemberPhase::Pending,
            MemberPhase::Declined,
            MemberPhase::Expired,
            MemberPhase::Revoked,
        ] {
            assert_eq!(
                relation(&member(u(), dev, None, Some(phase))),
                None,
                "{phase:?}"
            );
        }
        assert_eq!(relation(&member(u(), dev, None, None)), None);
    }

    #[test]
    fn one_rule_per_verb_in_a_fixed_order_with_sorted_names() {
        let rules = rules([
            ("b", "member-viewer"),
            ("c", "invited"),
            ("a", "member-viewer"),
            ("d", "member-owner"),
        ]);
        let shown: Vec<(String, Vec<String>)> = rules
            .iter()
            .map(|r| {
                (
                    r.verbs.join(","),
                    r.resource_names.clone().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("member-owner".to_string(), vec!["d".to_string()]),
                (
                    "member-viewer".to_string(),
                    vec!["a".to_string(), "b".to_string()]
                ),
                ("invited".to_string(), vec!["c".to_string()]),
            ]
        );
        assert!(
            rules
                .iter()
                .all(|r| r.api_groups == Some(vec![GROUP.to_string()])
                    && r.resources == Some(vec!["workspaces".to_string()]))
        );
    }

    #[test]
    fn an_entry_binds_exactly_its_subject_to_the_role_of_its_name() {
        let sa = Subject::service_account("ci", "runner");
        let (role, binding) = entry(&sa, "dir", rules([("w", "member-worker")])).expect("an entry");
        assert_eq!(role.metadata.name, binding.metadata.name);
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(Some(binding.role_ref.name.clone()), role.metadata.name);
        assert_eq!(bound_subject(&binding), Some(sa.clone()));
        assert_eq!(role.metadata.namespace.as_deref(), Some("dir"));
        let labels = role.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(labels::DIRECTORY).map(String::as_str),
            Some("ServiceAccount")
        );
        assert!(
            entry(&sa, "dir", Vec::new()).is_none(),
            "no relation, no entry"
        );
    }
}
