//! Who the caller is and what the API server lets them do, asked of the API
//! server itself: SelfSubjectReview (user and groups) and
//! SelfSubjectRulesReview (the rules that hold for the caller in one
//! namespace, including every rule of their ClusterRoleBindings).

use std::collections::BTreeSet;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, ResourceRule, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use serde::Serialize;
use workspace_operator::api::GROUP;

use crate::error::{Error, Result};
use crate::output::{self, Format};

/// The caller as the API server sees them, and the accounts they answer for.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub username: String,
    pub groups: Vec<String>,
    /// Organizations the caller administers (`administer` on that one
    /// Organization, the rule of its per-organization admin role).
    pub organizations: BTreeSet<String>,
    /// Holds `administer` on every Organization (`workspaces:platform-admin`).
    pub platform_admin: bool,
    /// WorkspaceTransfers the caller may read by name (the per-transfer read
    /// grants of the open transfers they are a side of).
    #[serde(skip)]
    pub transfers: BTreeSet<String>,
    /// May list every WorkspaceTransfer.
    #[serde(skip)]
    pub list_transfers: bool,
    /// Cluster-wide rules already let the caller read pods in every
    /// namespace (a cluster admin): a membership scan would find everything.
    #[serde(skip)]
    pub reads_every_namespace: bool,
    /// The caller's rules that hold in every namespace.
    #[serde(skip)]
    pub cluster_rules: Vec<ResourceRule>,
}

impl Identity {
    /// Asks the API server: one SelfSubjectReview and one
    /// SelfSubjectRulesReview (in `default`, where no workspace grants
    /// anything, so what it returns is what holds everywhere).
    pub async fn of(client: &Client) -> Result<Identity> {
        let review = Api::<SelfSubjectReview>::all(client.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .map_err(|e| Error::api("asking the API server who you are", e))?;
        let info = review.status.and_then(|s| s.user_info).unwrap_or_default();
        let username = info
            .username
            .ok_or_else(|| Error::msg("the API server reports no username for you"))?;
        let rules = rules_in(client, "default").await?;
        let organizations = named(&rules, "organizations", "administer");
        Ok(Identity {
            username,
            groups: info.groups.unwrap_or_default(),
            organizations,
            platform_admin: allows(&rules, GROUP, "organizations", "administer", None),
            transfers: named(&rules, "workspacetransfers", "get"),
            list_transfers: allows(&rules, GROUP, "workspacetransfers", "list", None),
            reads_every_namespace: allows(&rules, "", "pods", "list", None),
            cluster_rules: rules,
        })
    }

    /// Whether the caller answers for the account `kind`/`name` (is that
    /// user, or administers that Organization).
    pub fn answers_for(&self, kind: &str, name: &str) -> bool {
        match kind {
            "User" => self.username == name,
            _ => self.organizations.contains(name),
        }
    }
}

/// The rules that hold for the caller in `namespace`.
pub async fn rules_in(client: &Client, namespace: &str) -> Result<Vec<ResourceRule>> {
    review_rules(client, namespace)
        .await
        .map_err(|e| Error::api("asking the API server what you may do", e))
}

async fn review_rules(
    client: &Client,
    namespace: &str,
) -> std::result::Result<Vec<ResourceRule>, kube::Error> {
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some(namespace.to_string()),
        },
        ..SelfSubjectRulesReview::default()
    };
    let answer = Api::<SelfSubjectRulesReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.map(|s| s.resource_rules).unwrap_or_default())
}

/// [`rules_in`], asked again (up to four times, backing off) when the API
/// server is busy (429), fails (5xx) or cannot be reached; a refusal is
/// not retried.
pub async fn rules_in_retrying(client: &Client, namespace: &str) -> Result<Vec<ResourceRule>> {
    let mut pause = std::time::Duration::from_millis(100);
    for _ in 0..3 {
        match review_rules(client, namespace).await {
            Err(kube::Error::Api(s)) if s.code != 429 && s.code < 500 => break,
            Err(_) => tokio::time::sleep(pause).await,
            Ok(rules) => return Ok(rules),
        }
        pause *= 2;
    }
    review_rules(client, namespace).await.map_err(|e| {
        Error::api(
            &format!("asking what you may do in namespace {namespace}"),
            e,
        )
    })
}

/// Whether the caller may `verb` `resource` (of API `group`) in `namespace`
/// (cluster-wide when empty), on `name` when given.
pub async fn can(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: &str,
    name: Option<&str>,
) -> Result<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_string()),
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                name: name.map(str::to_string),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| Error::api("asking the API server what you may do", e))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

fn has(list: Option<&Vec<String>>, wanted: &str) -> bool {
    list.is_some_and(|l| l.iter().any(|v| v == wanted || v == "*"))
}

/// Whether one of `rules` allows `verb` on `resource` of `group`: on every
/// object when `name` is `None`, or on the object `name`.
pub fn allows(
    rules: &[ResourceRule],
    group: &str,
    resource: &str,
    verb: &str,
    name: Option<&str>,
) -> bool {
    rules.iter().any(|r| {
        has(r.api_groups.as_ref(), group)
            && has(r.resources.as_ref(), resource)
            && r.verbs.iter().any(|v| v == verb || v == "*")
            && match r.resource_names.as_deref() {
                None | Some([]) => true,
                Some(names) => name.is_some_and(|n| names.iter().any(|x| x == n)),
            }
    })
}

/// The object names `rules` grant `verb` on, by name, for `resource` of this
/// API group.
pub fn named(rules: &[ResourceRule], resource: &str, verb: &str) -> BTreeSet<String> {
    rules
        .iter()
        .filter(|r| has(r.api_groups.as_ref(), GROUP) && has(r.resources.as_ref(), resource))
        .filter(|r| r.verbs.iter().any(|v| v == verb || v == "*"))
        .flat_map(|r| r.resource_names.iter().flatten().cloned())
        .collect()
}

/// `kubectl workspaces whoami`.
pub async fn whoami(client: &Client, format: Format) -> Result<()> {
    let me = Identity::of(client).await?;
    if format != Format::Table && format != Format::Wide {
        return output::structured(&me, format);
    }
    println!("User:     {}", me.username);
    println!("Groups:   {}", me.groups.join(", "));
    println!("Accounts you administer:");
    println!("  User/{} (yourself)", me.username);
    for org in &me.organizations {
        println!("  Organization/{org}");
    }
    if me.platform_admin {
        println!("Platform admin: yes (every Workspace and Organization)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> ResourceRule {
        let own = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        ResourceRule {
            api_groups: own(groups),
            resources: own(resources),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            resource_names: (!names.is_empty()).then(|| own(names).unwrap_or_default()),
        }
    }

    #[test]
    fn a_named_rule_allows_only_its_objects() {
        let rules = [rule(
            &[GROUP],
            &["organizations"],
            &["administer"],
            &["acme"],
        )];
        assert!(allows(
            &rules,
            GROUP,
            "organizations",
            "administer",
            Some("acme")
        ));
        assert!(!allows(
            &rules,
            GROUP,
            "organizations",
            "administer",
            Some("globex")
        ));
        assert!(!allows(&rules, GROUP, "organizations", "administer", None));
        assert_eq!(
            named(&rules, "organizations", "administer"),
            ["acme".to_string()].into()
        );
    }

    #[test]
    fn wildcards_allow_everything_but_name_nothing() {
        let rules = [rule(&["*"], &["*"], &["*"], &[])];
        assert!(allows(&rules, "", "pods", "list", None));
        assert!(allows(&rules, GROUP, "organizations", "administer", None));
        assert!(named(&rules, "organizations", "administer").is_empty());
    }
}
