//! The start-up check that the admission policies confine this operator.
//!
//! The policies (deploy/policies.yaml) recognise the operator by the username
//! in the ConfigMap `workspace-operator-policy` of its namespace, and reserve
//! the namespaces listed there. An install in another namespace, or under
//! another ServiceAccount, whose ConfigMap was not changed to match would
//! leave the operator unconfined (and its own namespace claimable) without a
//! sign. The operator therefore reads the ConfigMap at start and refuses to
//! run when it does not name the identity the API server sees for it.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, PostParams};

/// Name of the admission policies' parameter ConfigMap.
pub const POLICY_CONFIGMAP: &str = "workspace-operator-policy";

/// Why the operator does not run confined.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Asking the API server who the operator is failed.
    #[error("asking the API server for the operator's own identity failed: {0}")]
    Identity(#[source] kube::Error),
    /// Reading the ConfigMap failed (absent, or not readable).
    #[error(
        "reading ConfigMap {namespace}/{POLICY_CONFIGMAP} failed ({source}); the admission policies take the \
         operator's identity from it: install deploy/policies.yaml (or the chart) in the operator's namespace"
    )]
    Read {
        /// The operator's namespace.
        namespace: String,
        /// The API error.
        source: kube::Error,
    },
    /// The ConfigMap does not describe this operator.
    #[error("{0}")]
    Mismatch(String),
}

/// What the ConfigMap must say for the operator `username` running in
/// `namespace` with the workspace directory in `directory` (pure): it names
/// `username`, reserves `namespace`, and names and reserves `directory`
/// (the policies let the operator write directory entries only there).
pub fn check(
    data: Option<&std::collections::BTreeMap<String, String>>,
    username: &str,
    namespace: &str,
    directory: Option<&str>,
) -> Result<(), String> {
    let get = |key: &str| data.and_then(|d| d.get(key)).map(String::as_str);
    let named = get("operator").unwrap_or_default();
    if named != username {
        return Err(format!(
            "the admission policies confine {named:?} (ConfigMap {namespace}/{POLICY_CONFIGMAP}, key \
             `operator`), but the operator runs as {username:?}: set `operator: {username}` there, or run \
             the operator as {named:?}"
        ));
    }
    let reserved = get("reservedNamespaces").unwrap_or_default();
    if !reserved.split(',').any(|n| n.trim() == namespace) {
        return Err(format!(
            "the operator's namespace {namespace} is not in `reservedNamespaces` of ConfigMap \
             {namespace}/{POLICY_CONFIGMAP}: add it, so that no Workspace can claim it"
        ));
    }
    let Some(directory) = directory else {
        return Ok(());
    };
    let named = get("directoryNamespace").unwrap_or_default();
    if named != directory {
        return Err(format!(
            "the workspace directory is in namespace {directory} (--directory-namespace), but ConfigMap \
             {namespace}/{POLICY_CONFIGMAP} names {named:?} (key `directoryNamespace`), and the admission \
             policies let the operator write the directory only there: make them agree"
        ));
    }
    if !reserved.split(',').any(|n| n.trim() == directory) {
        return Err(format!(
            "the directory namespace {directory} is not in `reservedNamespaces` of ConfigMap \
             {namespace}/{POLICY_CONFIGMAP}: add it, so that no Workspace can claim it"
        ));
    }
    Ok(())
}

/// Reads the operator's identity and the ConfigMap in `namespace`, and checks
/// them against each other.
pub async fn verify(
    client: &Client,
    namespace: &str,
    directory: Option<&str>,
) -> Result<(), Error> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(Error::Identity)?;
    let username = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default();
    let configmap = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get(POLICY_CONFIGMAP)
        .await
        .map_err(|source| Error::Read {
            namespace: namespace.to_string(),
            source,
        })?;
    check(configmap.data.as_ref(), &username, namespace, directory).map_err(Error::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::check;
    use std::collections::BTreeMap;

    const ME: &str = "system:serviceaccount:ops:workspace-operator";

    fn data(operator: &str, reserved: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("operator".to_string(), operator.to_string()),
            ("reservedNamespaces".to_string(), reserved.to_string()),
        ])
    }

    #[test]
    fn the_configmap_must_name_and_reserve_the_directory_namespace() {
        let mut d = data(ME, "ops, dir");
        assert!(check(Some(&d), ME, "ops", None).is_ok(), "no directory");
        let unnamed = check(Some(&d), ME, "ops", Some("dir")).expect_err("not named");
        assert!(unnamed.contains("directoryNamespace"), "{unnamed}");
        d.insert("directoryNamespace".into(), "dir".into());
        assert!(check(Some(&d), ME, "ops", Some("dir")).is_ok());
        assert!(check(Some(&d), ME, "ops", Some("other")).is_err());
        d.insert("reservedNamespaces".into(), "ops".into());
        let unreserved = check(Some(&d), ME, "ops", Some("dir")).expect_err("not reserved");
        assert!(unreserved.contains("reservedNamespaces"), "{unreserved}");
    }

    #[test]
    fn the_configmap_must_name_the_operator_and_reserve_its_namespace() {
        assert!(check(Some(&data(ME, "cert-manager, ops")), ME, "ops", None).is_ok());
        let other = check(
            Some(&data(
                "system:serviceaccount:workspace-operator-system:workspace-operator",
                "ops",
            )),
            ME,
            "ops",
            None,
        )
        .expect_err("another identity");
        assert!(
            other.contains("set `operator: system:serviceaccount:ops:workspace-operator`"),
            "{other}"
        );
        let unreserved =
            check(Some(&data(ME, "cert-manager")), ME, "ops", None).expect_err("not reserved");
        assert!(unreserved.contains("reservedNamespaces"), "{unreserved}");
        assert!(check(None, ME, "ops", None).is_err());
    }
}
