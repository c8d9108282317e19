//! Generation of the CustomResourceDefinitions from the Rust types.
//!
//! `workspace-operator crds` prints them; `workspace-operator crds --out-dir
//! crds` writes `crds/<plural>.workspaces.dev.yaml`, one file per kind. The
//! committed `crds/` directory is checked against this output by
//! `tests/crds_drift.rs`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use super::{Organization, Workspace, WorkspaceMember, WorkspaceTransfer};

/// The header written at the top of every generated file.
pub const HEADER: &str = "# Generated from the Rust types in src/api by `workspace-operator crds --out-dir crds`.\n# Do not edit by hand: change the types and regenerate.\n";

/// Why the CRDs could not be emitted.
#[derive(Debug, thiserror::Error)]
pub enum CrdgenError {
    /// A CRD could not be serialized to YAML.
    #[error("serializing CRD {name} to YAML: {source}")]
    Serialize {
        /// The CRD name.
        name: String,
        /// The serializer's error.
        source: serde_yaml::Error,
    },
    /// The output could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file (or `-` for standard output).
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

/// One generated CRD document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdFile {
    /// The file name: `<plural>.workspaces.dev.yaml`.
    pub file_name: String,
    /// The YAML document, header included.
    pub yaml: String,
}

impl fmt::Display for CrdFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.yaml)
    }
}

/// Every CRD of the API, in a fixed order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        crd::<Workspace>(),
        crd::<WorkspaceMember>(),
        crd::<WorkspaceTransfer>(),
        crd::<Organization>(),
    ]
}

/// The CRD of `K` as installed: kube's derived CRD without `nullable`, and
/// without the descriptions of map values (for `Quantity` maps in the
/// workspace defaults, k8s-openapi repeats a page-long text for every map,
/// while the field itself already says what the map holds).
///
/// kube marks every `Option` field `nullable: true`. The API server keeps an
/// explicit `null` in a nullable field, where `has()` in CEL then sees it as
/// set, so `clusterRole: null` (what a Helm template with an empty value
/// renders) would count as a custom role next to `role`. Without `nullable`,
/// the API server prunes such nulls before defaulting and validation, which
/// is what users mean. The operator never writes `null` (every `Option` is
/// skipped when `None`), so nothing needs them.
pub fn crd<K: CustomResourceExt>() -> CustomResourceDefinition {
    let mut crd = K::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            tidy(schema);
        }
    }
    crd
}

fn tidy(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.all_of.iter_mut().flatten())
        .chain(schema.any_of.iter_mut().flatten())
        .chain(schema.one_of.iter_mut().flatten())
        .chain(schema.not.as_deref_mut());
    for child in children {
        tidy(child);
    }
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(item)) => tidy(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(tidy),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(value)) = &mut schema.additional_properties {
        value.description = None;
        tidy(value);
    }
}

/// Render one CRD as a YAML document with the generated-file header.
pub fn render(crd: &CustomResourceDefinition) -> Result<CrdFile, CrdgenError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let body = serde_yaml::to_string(crd).map_err(|source| CrdgenError::Serialize {
        name: name.clone(),
        source,
    })?;
    Ok(CrdFile {
        file_name: format!("{name}.yaml"),
        yaml: format!("{HEADER}{body}"),
    })
}

/// Render every CRD, in the order of [`crds`].
pub fn render_all() -> Result<Vec<CrdFile>, CrdgenError> {
    crds().iter().map(render).collect()
}

/// Print the CRDs as one multi-document YAML stream to standard output, or,
/// with `out_dir`, write one `<plural>.workspaces.dev.yaml` per kind into it
/// (creating the directory when missing).
pub fn emit(out_dir: Option<&Path>) -> Result<(), CrdgenError> {
    let files = render_all()?;
    match out_dir {
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let io = |source| CrdgenError::Write {
                path: PathBuf::from("-"),
                source,
            };
            for file in &files {
                out.write_all(b"---\n").map_err(io)?;
                out.write_all(file.yaml.as_bytes()).map_err(io)?;
            }
            out.flush().map_err(io)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| CrdgenError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
            for file in &files {
                let path = dir.join(&file.file_name);
                std::fs::write(&path, &file.yaml)
                    .map_err(|source| CrdgenError::Write { path, source })?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plural_dot_group() {
        let names: Vec<String> = render_all()
            .unwrap()
            .into_iter()
            .map(|f| f.file_name)
            .collect();
        assert_eq!(
            names,
            [
                "workspaces.workspaces.dev.yaml",
                "workspacemembers.workspaces.dev.yaml",
                "workspacetransfers.workspaces.dev.yaml",
                "organizations.workspaces.dev.yaml",
            ]
        );
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(render_all().unwrap(), render_all().unwrap());
    }

    fn schemas() -> Vec<(String, serde_json::Value)> {
        crds()
            .into_iter()
            .map(|crd| {
                let name = crd.spec.names.kind.clone();
                let schema = crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .map(|s| serde_json::to_value(s).unwrap())
                    .unwrap();
                (name, schema)
            })
            .collect()
    }

    /// The bad-input tests grep for messages, and users search for them:
    /// every rule has a one-sentence message of its own.
    #[test]
    fn every_rule_has_a_distinct_one_sentence_message() {
        let mut rule_of_message = std::collections::BTreeMap::new();
        for (kind, schema) in schemas() {
            for (path, rule) in crate::api::testutil::rules(&schema) {
                let text = rule["rule"].as_str().unwrap().to_string();
                let message = rule["message"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{kind}{path}: rule {text} has no message"));
                assert!(message.ends_with('.'), "{kind}{path}: {message}");
                assert!(!message.contains('\n'), "{kind}{path}: {message}");
                assert!(
                    message.len() <= 200,
                    "{kind}{path}: message too long: {message}"
                );
                let previous = rule_of_message.insert(message.to_string(), text.clone());
                if let Some(previous) = previous {
                    assert_eq!(
                        previous, text,
                        "two different rules share the message {message:?}"
                    );
                }
            }
        }
        assert!(
            rule_of_message.len() >= 25,
            "only {} distinct rules",
            rule_of_message.len()
        );
    }

    /// docs/api.md lists every rule with its message.
    #[test]
    fn every_message_is_in_the_api_docs() {
        let docs = include_str!("../../docs/api.md");
        for (kind, schema) in schemas() {
            for (path, rule) in crate::api::testutil::rules(&schema) {
                let message = rule["message"].as_str().unwrap_or_default();
                assert!(
                    docs.contains(message),
                    "{kind}{path}: docs/api.md lacks {message:?}"
                );
            }
        }
    }

    /// `kubectl explain` prints descriptions: every field has one.
    #[test]
    fn every_field_is_documented() {
        fn walk(node: &serde_json::Value, path: &str) {
            if let Some(properties) = node.get("properties").and_then(|p| p.as_object()) {
                for (name, child) in properties {
                    let path = format!("{path}.{name}");
                    let description = child
                        .get("description")
                        .and_then(|d| d.as_str())
                        .unwrap_or("");
                    assert!(!description.trim().is_empty(), "{path} has no description");
                    walk(child, &path);
                }
            }
            if let Some(items) = node.get("items") {
                walk(items, &format!("{path}[]"));
            }
        }
        for (kind, schema) in schemas() {
            assert!(
                schema.get("description").is_some(),
                "{kind} has no description"
            );
            walk(&schema, &kind);
        }
    }

    #[test]
    fn no_field_is_nullable() {
        for file in render_all().unwrap() {
            assert!(
                !file.yaml.contains("nullable"),
                "{} has a nullable field",
                file.file_name
            );
        }
    }

    #[test]
    fn rendered_yaml_parses_back_to_the_same_crd() {
        for crd in crds() {
            let file = render(&crd).unwrap();
            let parsed: CustomResourceDefinition = serde_yaml::from_str(&file.yaml).unwrap();
            assert_eq!(parsed, crd);
        }
    }
}
