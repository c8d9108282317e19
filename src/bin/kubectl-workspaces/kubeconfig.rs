//! `kubectl workspaces use`: point the kubeconfig at a workspace.
//!
//! The kubeconfig files are edited as YAML documents, changing only the one
//! context's `namespace` (or adding one context and `current-context`), so
//! every other field, including ones this plugin does not know, is kept.
//! With several files in `$KUBECONFIG`, a context is changed in the file
//! that defines it and `current-context` in the file that sets it, as
//! kubectl does.

use std::path::{Path, PathBuf};

use kube::{Client, ResourceExt};
use serde_yaml::{Mapping, Value};

use crate::access;
use crate::error::{Error, Result};
use crate::workspaces;

/// The kubeconfig files in effect, in kubectl's order.
#[derive(Debug, Clone)]
pub struct Files(Vec<PathBuf>);

impl Files {
    /// `--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`.
    pub fn locate(flag: Option<&Path>) -> Files {
        if let Some(path) = flag {
            return Files(vec![path.to_path_buf()]);
        }
        if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            return Files(std::env::split_paths(&list).collect());
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        Files(vec![home.join(".kube").join("config")])
    }
}

/// What `use` changes.
pub struct Target {
    pub files: Files,
    /// `--context`: the context to change instead of the current one.
    pub context: Option<String>,
    /// Create a context for the workspace instead.
    pub new_context: bool,
}

/// One loaded kubeconfig file.
struct Doc {
    path: PathBuf,
    value: Value,
}

fn load(files: &Files) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for path in &files.0 {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::msg(format!("cannot read {}: {e}", path.display()))),
        };
        let value: Value = serde_yaml::from_str(&text)
            .map_err(|e| Error::msg(format!("{} is not a kubeconfig: {e}", path.display())))?;
        docs.push(Doc {
            path: path.clone(),
            value,
        });
    }
    if docs.is_empty() {
        return Err(Error::msg(
            "no kubeconfig file to change (set --kubeconfig or $KUBECONFIG)",
        ));
    }
    Ok(docs)
}

/// Writes `doc` next to itself and renames it into place, keeping the
/// file's permissions: a failure leaves the old file whole.
/// A symbolic link is followed: the file it points to is replaced, the
/// link stays.
fn save(doc: &Doc) -> Result<()> {
    let text = serde_yaml::to_string(&doc.value).map_err(|e| Error::msg(e.to_string()))?;
    let path = std::fs::canonicalize(&doc.path).unwrap_or_else(|_| doc.path.clone());
    let tmp = path.with_extension(format!("workspaces-{}.tmp", std::process::id()));
    let fail = |e: std::io::Error| Error::msg(format!("cannot write {}: {e}", path.display()));
    std::fs::write(&tmp, text).map_err(fail)?;
    if let Ok(meta) = std::fs::metadata(&path) {
        std::fs::set_permissions(&tmp, meta.permissions()).map_err(fail)?;
    }
    std::fs::rename(&tmp, &path).map_err(fail)
}

fn current_context(docs: &[Doc]) -> Option<(usize, String)> {
    docs.iter().enumerate().find_map(|(i, d)| {
        d.value
            .get("current-context")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(|c| (i, c.to_string()))
    })
}

/// The file and entry (in its `contexts` list) defining context `name`.
fn context_entry<'a>(docs: &'a mut [Doc], name: &str) -> Option<(&'a Path, &'a mut Mapping)> {
    docs.iter_mut().find_map(|d| {
        let path = d.path.as_path();
        let list = d.value.get_mut("contexts")?.as_sequence_mut()?;
        list.iter_mut()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|c| c.get_mut("context"))
            .and_then(Value::as_mapping_mut)
            .map(|m| (path, m))
    })
}

fn text_of(map: &Mapping, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_string)
}

/// `kubectl workspaces use NAME|OWNER/HANDLE`.
pub async fn use_workspace(client: &Client, reference: &str, target: &Target) -> Result<()> {
    let ws = workspaces::find(client, reference).await?;
    let ns = workspaces::namespace(&ws);
    let mut docs = load(&target.files)?;
    let current = current_context(&docs);
    let name = target
        .context
        .clone()
        .or_else(|| current.as_ref().map(|(_, c)| c.clone()))
        .ok_or_else(|| Error::msg("the kubeconfig has no current context; pass --context"))?;
    let label = format!(
        "Workspace {} ({}/{})",
        ws.name_any(),
        workspaces::owner(&ws).name,
        workspaces::handle(&ws)
    );
    if target.new_context {
        new_context(&mut docs, current, &name, &ws.name_any(), &ns, &label)?;
    } else {
        let (path, entry) = context_entry(&mut docs, &name)
            .ok_or_else(|| Error::msg(format!("no context named {name} in the kubeconfig")))?;
        let old = text_of(entry, "namespace").unwrap_or_else(|| "default".to_string());
        entry.insert("namespace".into(), Value::String(ns.clone()));
        let path = path.to_path_buf();
        if old == ns {
            println!("Context \"{name}\" already uses namespace \"{ns}\" ({label}).");
        } else {
            let doc = docs
                .iter()
                .find(|d| d.path == path)
                .expect("the file just changed");
            save(doc)?;
            println!("Context \"{name}\": namespace \"{old}\" -> \"{ns}\" ({label}).");
        }
    }
    warn_without_access(client, &ws, &ns).await;
    Ok(())
}

/// Adds (or updates) the context `workspace-<ws>` with the cluster and user
/// of context `base` and namespace `ns`, and makes it current.
fn new_context(
    docs: &mut [Doc],
    current: Option<(usize, String)>,
    base: &str,
    ws: &str,
    ns: &str,
    label: &str,
) -> Result<()> {
    let created = format!("workspace-{ws}");
    let (base_path, base_entry) = context_entry(docs, base)
        .ok_or_else(|| Error::msg(format!("no context named {base} in the kubeconfig")))?;
    let base_path = base_path.to_path_buf();
    let mut context = Mapping::new();
    for key in ["cluster", "user"] {
        if let Some(v) = base_entry.get(key) {
            context.insert(key.into(), v.clone());
        }
    }
    context.insert("namespace".into(), Value::String(ns.to_string()));
    let mut entry = Mapping::new();
    entry.insert("name".into(), Value::String(created.clone()));
    entry.insert("context".into(), Value::Mapping(context));
    let i = docs.iter().position(|d| d.path == base_path).unwrap_or(0);
    let root = docs[i]
        .value
        .as_mapping_mut()
        .ok_or_else(|| Error::msg("the kubeconfig is not a YAML mapping"))?;
    let list = root
        .entry("contexts".into())
        .or_insert_with(|| Value::Sequence(Vec::new()))
        .as_sequence_mut()
        .ok_or_else(|| Error::msg("the kubeconfig's contexts is not a list"))?;
    list.retain(|c| c.get("name").and_then(Value::as_str) != Some(created.as_str()));
    list.push(Value::Mapping(entry));
    save(&docs[i])?;
    let (j, old) = current.unwrap_or((0, String::new()));
    if let Some(root) = docs[j].value.as_mapping_mut() {
        root.insert("current-context".into(), Value::String(created.clone()));
    }
    save(&docs[j])?;
    println!("Context \"{created}\" set to namespace \"{ns}\" ({label}), from context \"{base}\".");
    println!("Current context: \"{old}\" -> \"{created}\".");
    Ok(())
}

async fn warn_without_access(client: &Client, ws: &workspace_operator::api::Workspace, ns: &str) {
    if workspaces::held_namespace(ws).is_none() {
        eprintln!(
            "note: Workspace {} is {} and holds no namespace yet.",
            ws.name_any(),
            workspaces::phase(ws)
        );
    } else if let Ok(false) = access::can(client, "list", "", "pods", ns, None).await {
        eprintln!("note: you hold no role in namespace {ns} (yet): ask one of its Owners.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c
  cluster: {server: 'https://127.0.0.1:6443'}
users:
- name: u
  user: {token: t}
contexts:
- name: dev
  context: {cluster: c, user: u}
preferences: {colors: true}
";

    fn file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kubeconfig-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, CONFIG).unwrap();
        path
    }

    #[test]
    fn a_new_context_copies_cluster_and_user_and_keeps_everything_else() {
        let path = file("new-context");
        let mut docs = load(&Files(vec![path.clone()])).unwrap();
        let current = current_context(&docs);
        new_context(&mut docs, current, "dev", "lab", "lab-ns", "Workspace lab").unwrap();
        let saved: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(saved["current-context"], "workspace-lab");
        assert_eq!(saved["preferences"]["colors"], true);
        let mut docs = load(&Files(vec![path])).unwrap();
        let (_, entry) = context_entry(&mut docs, "workspace-lab").unwrap();
        assert_eq!(text_of(entry, "namespace").as_deref(), Some("lab-ns"));
        assert_eq!(text_of(entry, "cluster").as_deref(), Some("c"));
        assert_eq!(text_of(entry, "user").as_deref(), Some("u"));
        let (_, dev) = context_entry(&mut docs, "dev").unwrap();
        assert_eq!(
            text_of(dev, "namespace"),
            None,
            "the old context is unchanged"
        );
    }

    #[test]
    fn missing_files_are_skipped_and_none_at_all_is_an_error() {
        let path = file("present");
        let missing = path.with_file_name("absent");
        assert_eq!(load(&Files(vec![missing.clone(), path])).unwrap().len(), 1);
        assert!(load(&Files(vec![missing])).is_err());
    }
}
