//! The workspace directory (docs/security.md, "Finding a user's
//! workspaces"): the operator keeps, for each subject that is a member
//! somewhere, a Role in the directory namespace whose rules name that
//! subject's workspaces with a verb per relation, bound to that subject
//! alone. One SelfSubjectRulesReview there returns the rules of every such
//! binding that holds for the caller (by username and by each group): all
//! of their memberships and invitations, and nobody else's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use k8s_openapi::api::authorization::v1::ResourceRule;
use kube::Client;
use workspace_operator::api::GROUP;
use workspace_operator::config::DEFAULT_DIRECTORY_NAMESPACE;
use workspace_operator::controller::directory::build::VERBS;

use crate::access::{self, Identity};
use crate::error::Result;

/// The verb of the chart's Role `workspaces.dev:directory`, bound to every
/// authenticated user: present when the directory is kept.
const SIGN: &str = "directory";

static NAMESPACE: OnceLock<String> = OnceLock::new();

/// Sets the directory's namespace (`--directory-namespace`) for this run.
pub fn set_namespace(namespace: String) {
    let _ = NAMESPACE.set(namespace);
}

/// The directory's namespace.
pub fn namespace() -> &'static str {
    NAMESPACE
        .get()
        .map(String::as_str)
        .unwrap_or(DEFAULT_DIRECTORY_NAMESPACE)
}

/// The caller's relations by workspace name, each a set of directory verbs.
pub type Relations = BTreeMap<String, BTreeSet<String>>;

/// Reads the caller's entries: `None` when the cluster keeps no directory
/// (no namespace, an older operator, or the directory turned off).
pub async fn read(client: &Client, me: &Identity) -> Result<Option<Relations>> {
    let namespace = namespace();
    if namespace.is_empty() {
        return Ok(None);
    }
    let rules = access::rules_in_retrying(client, namespace).await?;
    Ok(relations(&rules, &me.cluster_rules))
}

fn is_workspaces_rule(r: &ResourceRule) -> bool {
    r.api_groups
        .as_ref()
        .is_some_and(|g| g.iter().any(|g| g == GROUP))
        && r.resources
            .as_ref()
            .is_some_and(|rs| rs.iter().any(|r| r == "workspaces"))
}

/// The relations `rules` (the review in the directory namespace) list, with
/// the caller's cluster-wide rules (`everywhere`) left out; `None` without
/// the directory's sign. Only the exact relation verbs count: a wildcard
/// names no relation.
pub fn relations(rules: &[ResourceRule], everywhere: &[ResourceRule]) -> Option<Relations> {
    let kept = rules
        .iter()
        .any(|r| is_workspaces_rule(r) && r.verbs.iter().any(|v| v == SIGN));
    if !kept {
        return None;
    }
    let mut found = Relations::new();
    for rule in rules
        .iter()
        .filter(|r| is_workspaces_rule(r) && !everywhere.contains(r))
    {
        for verb in rule.verbs.iter().filter(|v| VERBS.contains(&v.as_str())) {
            for name in rule.resource_names.iter().flatten() {
                found.entry(name.clone()).or_default().insert(verb.clone());
            }
        }
    }
    Some(found)
}

/// The role a set of relation verbs gives, the highest first: `Owner`,
/// `Developer`, `Runner`, `Viewer`, `Worker`, then `Custom` (a custom
/// ClusterRole, named only when the member can be read). `None` when the
/// verbs hold only an invitation.
pub fn role(verbs: &BTreeSet<String>) -> Option<&'static str> {
    [
        ("member-owner", "Owner"),
        ("member-developer", "Developer"),
        ("member-runner", "Runner"),
        ("member-viewer", "Viewer"),
        ("member-worker", "Worker"),
        ("member-custom", "Custom"),
    ]
    .into_iter()
    .find(|(verb, _)| verbs.contains(*verb))
    .map(|(_, role)| role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], names: &[&str]) -> ResourceRule {
        ResourceRule {
            api_groups: Some(vec![GROUP.to_string()]),
            resources: Some(vec!["workspaces".to_string()]),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            resource_names: (!names.is_empty())
                .then(|| names.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn without_the_sign_there_is_no_directory() {
        assert_eq!(relations(&[rule(&["member-owner"], &["a"])], &[]), None);
        assert_eq!(
            relations(&[rule(&[SIGN], &[])], &[]),
            Some(Relations::new())
        );
    }

    #[test]
    fn relations_come_from_the_exact_verbs_by_name() {
        let everywhere = vec![rule(&["*"], &[]), rule(&["member-viewer"], &["all"])];
        let mut rules = everywhere.clone();
        rules.extend([
            rule(&[SIGN], &[]),
            rule(&["member-developer"], &["a", "b"]),
            rule(&["member-runner"], &["b"]),
            rule(&["invited"], &["c"]),
            rule(&["get"], &["d"]),
        ]);
        let found = relations(&rules, &everywhere).expect("a directory");
        let names: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(role(&found["b"]), Some("Developer"), "the highest of two");
        assert_eq!(role(&found["c"]), None, "only invited");
    }
}
