//! Organizations: their admins are recognised by the API server itself (the
//! `administer` verb admission asks about), and status counts their workspaces.

mod support;

use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use support::objects::{apply, can, organization, wait_ready};
use workspace_operator::api::Organization;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn administers(user: &str, org: &str) -> bool {
    can(
        user,
        &[],
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
    apply(&admin, organization(&org, &[&alice, &bob], json!({}))).await;
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

    apply(&admin, organization(&org, &[&alice], json!({}))).await;
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
    apply(
        &admin,
        organization(&org, &["owner@example.com"], json!({})),
    )
    .await;
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

#[tokio::test]
async fn workspace_defaults_are_applied_repaired_and_removed_with_the_organization_setting() {
    use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use kube::api::DeleteParams;

    let plane = support::plane();
    support::operator::operator();
    let admin = plane.admin().await;
    let org = support::unique("org-defaults");
    let ws = support::unique("defaulted");
    let mut spec = organization(&org, &["owner@example.com"], json!({}));
    spec["spec"]["workspaceDefaults"] = json!({
        "resourceQuota": {"hard": {"pods": "10", "requests.cpu": "2000m"}},
        "limitRange": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]},
        "networkIsolation": true,
    });
    apply(&admin, spec.clone()).await;
    apply(
        &admin,
        json!({"apiVersion": "workspaces.dev/v1alpha1", "kind": "Workspace", "metadata": {"name": ws},
               "spec": {"owner": {"kind": "Organization", "name": org}}}),
    )
    .await;
    let quotas: Api<ResourceQuota> = Api::namespaced(admin.clone(), &ws);
    let limits: Api<LimitRange> = Api::namespaced(admin.clone(), &ws);
    let policies: Api<NetworkPolicy> = Api::namespaced(admin.clone(), &ws);
    let present = || async {
        let q = quotas.get_opt("workspaces.dev-defaults").await.ok()??;
        limits.get_opt("workspaces.dev-defaults").await.ok()??;
        policies.get_opt("workspaces.dev-isolation").await.ok()??;
        Some(q)
    };
    let quota =
        support::wait_for("the defaults in the workspace namespace", TIMEOUT, present).await;
    let hard = quota.spec.unwrap().hard.unwrap();
    assert_eq!(hard.get("pods").map(|q| q.0.as_str()), Some("10"));

    // Converged: touching the Workspace makes the operator look again, and it
    // writes nothing for it (quantities compare by amount, not by spelling).
    let operator = support::operator::operator();
    let workspaces: Api<workspace_operator::api::Workspace> = Api::all(admin.clone());
    wait_ready(&admin, &ws, "True", None, TIMEOUT).await;
    let mark = plane.audit_mark();
    let touched = workspaces
        .patch(
            &ws,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    operator
        .wait_reconciled(
            "workspace",
            "",
            &ws,
            &kube::ResourceExt::resource_version(&touched).unwrap(),
            TIMEOUT,
        )
        .await;
    let writes: Vec<_> = plane
        .writes_since(mark, support::operator::OPERATOR_USER)
        .into_iter()
        .filter(|w| w.namespace == ws || w.name == ws)
        .collect();
    assert!(
        writes.is_empty(),
        "writes for a converged workspace: {writes:?}"
    );

    // A tenant cannot touch the quota; an admin deleting it sees it come back.
    let owner = plane.client_as("owner@example.com", &[]).await;
    assert!(!support::can_i(&owner, "delete", "resourcequotas", Some(&ws), None).await);
    quotas
        .delete("workspaces.dev-defaults", &DeleteParams::default())
        .await
        .unwrap();
    support::wait_for("the quota to be restored", TIMEOUT, || async {
        quotas
            .get_opt("workspaces.dev-defaults")
            .await
            .ok()?
            .map(|_| ())
    })
    .await;

    // Dropping the defaults from the organization removes them.
    spec["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("workspaceDefaults");
    apply(&admin, spec).await;
    support::wait_for("the defaults to be removed", TIMEOUT, || async {
        let q = quotas.get_opt("workspaces.dev-defaults").await.ok()?;
        let l = limits.get_opt("workspaces.dev-defaults").await.ok()?;
        let p = policies.get_opt("workspaces.dev-isolation").await.ok()?;
        (q.is_none() && l.is_none() && p.is_none()).then_some(())
    })
    .await;
}
