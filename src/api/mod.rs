//! The `workspaces.dev/v1alpha1` API: the custom resource types, their
//! validation rules and the generated CustomResourceDefinitions.

pub mod conditions;
