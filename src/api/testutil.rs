//! Test helpers: evaluate the CEL rules of a generated CRD client-side with
//! kube's `cel` feature (kube-cel), the same rules the API server runs.
//!
//! kube-cel evaluates only `x-kubernetes-validations`; OpenAPI checks such as
//! `enum`, `maxLength` or `maxItems` are the API server's job and are asserted
//! on the schema itself.

use kube::CustomResourceExt;
use kube::core::cel::{ErrorKind, ValidationError, Validator};
use serde_json::Value;

/// The `openAPIV3Schema` of `K`'s CRD, as JSON.
pub(crate) fn schema<K: CustomResourceExt>() -> Value {
    let crd = super::crdgen::crd::<K>();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("generated CRD has an openAPIV3Schema");
    serde_json::to_value(schema).unwrap()
}

/// Every failure the CEL rules of `K` report for `obj` (an update from `old`
/// when given).
pub(crate) fn errors<K: CustomResourceExt>(
    obj: &Value,
    old: Option<&Value>,
) -> Vec<ValidationError> {
    match Validator::new().validate(&schema::<K>(), obj, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec(),
    }
}

/// Assert that every CEL rule of `K` accepts `obj`.
#[track_caller]
pub(crate) fn assert_accepted<K: CustomResourceExt>(obj: &Value, old: Option<&Value>) {
    let errors = errors::<K>(obj, old);
    assert!(
        errors.is_empty(),
        "expected {obj} to be accepted, got: {:#?}",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
}

/// Assert that the CEL rules of `K` refuse `obj` with exactly one failure
/// whose message contains `fragment`, and that the rule really evaluated to
/// false (not a compile or runtime error).
#[track_caller]
pub(crate) fn assert_refused<K: CustomResourceExt>(
    obj: &Value,
    old: Option<&Value>,
    fragment: &str,
) {
    let errors = errors::<K>(obj, old);
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one failure containing {fragment:?} for {obj}, got: {:#?}",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    let error = &errors[0];
    assert_eq!(
        error.kind,
        ErrorKind::ValidationFailure,
        "rule did not evaluate cleanly: {error:?}"
    );
    assert!(
        error.message.contains(fragment),
        "expected a message containing {fragment:?}, got {:?}",
        error.message
    );
}

/// Every `x-kubernetes-validations` rule in a schema, with the path to the
/// schema node that holds it.
pub(crate) fn rules(schema: &Value) -> Vec<(String, Value)> {
    fn walk(node: &Value, path: &str, out: &mut Vec<(String, Value)>) {
        match node {
            Value::Object(map) => {
                for (key, child) in map {
                    if key == "x-kubernetes-validations" {
                        for rule in child.as_array().into_iter().flatten() {
                            out.push((path.to_string(), rule.clone()));
                        }
                    } else {
                        walk(child, &format!("{path}/{key}"), out);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, path, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out
}

/// The schema node at a `/`-separated path of property names, for example
/// `spec/owner/name`.
#[track_caller]
pub(crate) fn property<'a>(schema: &'a Value, path: &str) -> &'a Value {
    path.split('/').fold(schema, |node, name| {
        let node = if node.get("items").is_some() {
            &node["items"]
        } else {
            node
        };
        node.get("properties")
            .and_then(|p| p.get(name))
            .unwrap_or_else(|| panic!("no property {name} on the way to {path}"))
    })
}

/// Parse a YAML document into `T`, check that serializing `T` gives back the
/// same document (nothing lost, nothing added), and return it.
#[track_caller]
pub(crate) fn round_trip<T>(yaml: &str) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let original: Value = serde_yaml::from_str(yaml).unwrap();
    let parsed: T = serde_yaml::from_str(yaml).unwrap();
    let serialized = serde_json::to_value(&parsed).unwrap();
    assert_eq!(serialized, original, "round trip changed the document");
    parsed
}
