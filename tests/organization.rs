//! Organizations: their admins are recognised by the API server itself (the
//! `administer` verb admission asks about), and status counts their workspaces.

mod support;

use std::time::Duration;

use kube::Client;
use kube::api::Api;
use serde_json::json;
use workspace_operator::api::Organization;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn apply(client: &Client, value: serde_json::Value) {
    support::try_apply_value(client, serde_json::from_value(value).expect("value"))
        .await
        .expect("object accepted");
}

fn organization(name: &str, admins: &[&str]) -> serde_json::Value {
    let admins: Vec<_> = admins
        .iter()
        .map(|a| json!({"kind": "User", "name": a}))
        .collect();
    json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Organization",
           "metadata": {"name": name}, "spec": {"displayName": name, "admins": admins}})
}

async fn administers(user: &str, org: &str) -> bool {
    let client = support::plane().client_as(user, &[]).await;
    support::can_i(
        &client,
        "administer",
        "organizations.workspaces.dev",
        None,
        Some(org),
    )
    .await
}

#[tokio::test]
async fn admins_administer_their_organization_and_lose_it_when_removed() {
    let plane = support::plane();
    support::operator::operator();
    let admin = plane.admin().await;
    let org = support::unique("org-admins");
    let (alice, bob) = (format!("alice@{org}.io"), format!("bob@{org}.io"));
    apply(&admin, organization(&org, &[&alice, &bob])).await;
    support::wait_for(
        "both admins to administer the organization",
        TIMEOUT,
        || async {
            (administers(&alice, &org).await && administers(&bob, &org).await).then_some(())
        },
    )
    .await;
    // Admins may edit their organization, not another one, and not delete it.
    let alice_client = plane.client_as(&alice, &[]).await;
    assert!(
        support::can_i(
            &alice_client,
            "update",
            "organizations.workspaces.dev",
            None,
            Some(&org)
        )
        .await
    );
    assert!(
        !support::can_i(
            &alice_client,
            "delete",
            "organizations.workspaces.dev",
            None,
            Some(&org)
        )
        .await
    );
    assert!(
        !support::can_i(
            &alice_client,
            "administer",
            "organizations.workspaces.dev",
            None,
            Some("other-org")
        )
        .await
    );
    assert!(!administers(&format!("mallory@{org}.io"), &org).await);

    apply(&admin, organization(&org, &[&alice])).await;
    support::wait_for("bob to stop administering", TIMEOUT, || async {
        (!administers(&bob, &org).await).then_some(())
    })
    .await;
    assert!(administers(&alice, &org).await);
}

#[tokio::test]
async fn status_counts_workspaces_and_reports_ready() {
    let plane = support::plane();
    support::operator::operator();
    let admin = plane.admin().await;
    let org = support::unique("org-count");
    apply(&admin, organization(&org, &["owner@example.com"])).await;
    let orgs: Api<Organization> = Api::all(admin.clone());
    let count = |n: i32| {
        let orgs = orgs.clone();
        let org = org.clone();
        async move {
            support::wait_for(&format!("{org} to count {n} workspaces"), TIMEOUT, || {
                let orgs = orgs.clone();
                let org = org.clone();
                async move {
                    let status = orgs.get(&org).await.ok()?.status?;
                    let ready = status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    (ready && status.workspaces == Some(n)).then_some(())
                }
            })
            .await
        }
    };
    count(0).await;
    for i in 0..2 {
        let ws = support::unique(&format!("{org}-{i}"));
        apply(
            &admin,
            json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace", "metadata": {"name": ws},
                   "spec": {"owner": {"kind": "Organization", "name": org}}}),
        )
        .await;
    }
    count(2).await;
}
