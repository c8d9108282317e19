//! workspace-operator: Prefect-Cloud-style workspaces on Kubernetes.
//!
//! A [`api::Workspace`] is owned by a user or an [`api::Organization`], backed
//! by a namespace and RBAC, shared through [`api::WorkspaceMember`]s and moved
//! between owners with a [`api::WorkspaceTransfer`].

pub mod api;
pub mod config;
pub mod confinement;
pub mod controller;
pub mod health;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod operator;
pub mod telemetry;
