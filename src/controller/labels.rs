//! Labels and annotations the operator puts on what it creates.
//!
//! Ownership of a namespace is proven by [`WORKSPACE_UID`] (the Workspace's
//! UID, which nobody can choose), never by a label alone.

/// Standard label naming the tool that manages an object.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`] on everything the operator creates.
pub const MANAGED_BY_VALUE: &str = "workspace-operator";
/// Selector matching everything the operator creates.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=workspace-operator";

/// Label: the Workspace a namespace or binding belongs to.
pub const WORKSPACE: &str = "workspaces.dev/workspace";
/// Label: the Organization a ClusterRole or ClusterRoleBinding belongs to.
pub const ORGANIZATION: &str = "workspaces.dev/organization";
/// Label: the WorkspaceMember a RoleBinding grants.
pub const MEMBER: &str = "workspaces.dev/member";
/// Label: the WorkspaceMember whose invitee a Role and RoleBinding let
/// answer the invitation (the value as for [`MEMBER`]).
pub const INVITATION: &str = "workspaces.dev/invitation";
/// Label on a directory entry (Role and RoleBinding in the directory
/// namespace): the kind of the subject it lists (`User`, `Group`,
/// `ServiceAccount`).
pub const DIRECTORY: &str = "workspaces.dev/directory";
/// Annotation on a namespace: the UID of the Workspace that created (or adopted) it.
pub const WORKSPACE_UID: &str = "workspaces.dev/workspace-uid";
/// Label: `User` or `Organization`.
pub const OWNER_KIND: &str = "workspaces.dev/owner-kind";
/// Label (when the name is a valid label value) or annotation (otherwise, e.g.
/// an e-mail address): the owning account's name.
pub const OWNER: &str = "workspaces.dev/owner";
/// Label: the workspace's effective handle.
pub const HANDLE: &str = "workspaces.dev/handle";
/// Annotation a cluster admin sets on an existing namespace to let the
/// Workspace of that name adopt it.
pub const ADOPT: &str = "workspaces.dev/adopt";
/// Annotation the operator sets on a namespace it adopted: it is never deleted.
pub const ADOPTED: &str = "workspaces.dev/adopted";
/// Label on a RoleBinding: which access it grants (`owner` or `member`).
pub const ACCESS: &str = "workspaces.dev/access";

/// Whether `obj` grants access to one subject: a member's RoleBinding, an
/// invitee's answering grant or a directory entry. Those belong to their
/// WorkspaceMember (or to the directory), not to the Workspace or
/// Organization their other labels name.
pub fn is_access_grant(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    let labels = meta.labels.as_ref();
    labels.is_some_and(|l| {
        l.contains_key(MEMBER) || l.contains_key(INVITATION) || l.contains_key(DIRECTORY)
    })
}

/// Whether `namespace` carries [`WORKSPACE_UID`] = `uid`: the proof that the
/// Workspace with that UID holds it. A missing UID proves nothing.
pub fn carries_uid<K: kube::Resource>(namespace: &K, uid: Option<&str>) -> bool {
    let held_by = namespace
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(WORKSPACE_UID));
    uid.is_some_and(|uid| held_by.is_some_and(|h| h == uid))
}

/// Finalizer that lets the operator clean up before a Workspace goes away.
pub const FINALIZER: &str = "workspaces.dev/cleanup";

/// Finalizer on every Organization: its deletion waits until it owns no
/// Workspace, so Workspaces are never left with an owner that is gone (and
/// never pass to a new Organization of the same name).
pub const ORGANIZATION_FINALIZER: &str = "workspaces.dev/workspaces";

/// Whether `value` is a valid Kubernetes label value: at most 63 characters,
/// alphanumerics with `-`, `_` or `.` inside.
pub fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && (value.is_empty()
            || (value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && value.starts_with(|c: char| c.is_ascii_alphanumeric())
                && value.ends_with(|c: char| c.is_ascii_alphanumeric())))
}

/// Label a cluster admin puts on a ClusterRole that members may be given
/// (besides listing it in `--assignable-cluster-roles`).
pub const ASSIGNABLE: &str = "workspaces.dev/assignable";
/// Selector of the assignable ClusterRoles the operator watches.
pub const ASSIGNABLE_SELECTOR: &str = "workspaces.dev/assignable=true";

/// Pod Security Admission's enforce label, which the operator sets on every
/// workspace namespace.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// Every label and annotation key the operator sets on what it creates.
pub const OPERATOR_KEYS: &[&str] = &[
    POD_SECURITY_ENFORCE,
    WORKSPACE,
    MEMBER,
    INVITATION,
    DIRECTORY,
    WORKSPACE_UID,
    OWNER_KIND,
    OWNER,
    HANDLE,
    ADOPTED,
    ACCESS,
    ORGANIZATION,
];

/// Whether a label or annotation key is one the operator sets (and so may
/// remove). Other `workspaces.dev/` keys, such as the admin's
/// [`ADOPT`] annotation or a key someone else invented, are not the
/// operator's: it never fights over them.
pub fn is_operator_key(key: &str) -> bool {
    OPERATOR_KEYS.contains(&key)
}

/// The longest prefix of `text` that has at most `max` bytes (never cutting a
/// character in two).
pub fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values() {
        assert!(is_label_value("alice"));
        assert!(is_label_value("a.b-c_d"));
        assert!(is_label_value(""));
        assert!(!is_label_value("alice@acme.io"));
        assert!(!is_label_value("-alice"));
        assert!(!is_label_value("alice."));
        assert!(!is_label_value(&"a".repeat(64)));
    }

    #[test]
    fn operator_keys_exclude_the_admins_adopt_annotation() {
        assert!(is_operator_key(WORKSPACE));
        assert!(is_operator_key(WORKSPACE_UID));
        assert!(!is_operator_key(ADOPT));
        assert!(!is_operator_key("argocd.argoproj.io/instance"));
        assert!(!is_operator_key("workspaces.dev/someone-elses"));
    }

    #[test]
    fn only_the_matching_uid_proves_a_namespace_is_held() {
        use k8s_openapi::api::core::v1::Namespace;
        let mut ns = Namespace::default();
        assert!(!carries_uid(&ns, Some("u1")), "no annotation");
        ns.metadata.annotations = Some([(WORKSPACE_UID.to_string(), "u1".to_string())].into());
        assert!(carries_uid(&ns, Some("u1")));
        assert!(!carries_uid(&ns, Some("u2")), "someone else's UID");
        assert!(!carries_uid(&ns, None), "a Workspace without a UID");
        ns.metadata.annotations = Some([(WORKSPACE_UID.to_string(), String::new())].into());
        assert!(!carries_uid(&ns, None), "an empty annotation");
    }
}
