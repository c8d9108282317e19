//! The `kubectl-workspaces` plugin binary, run as a given user the way that
//! user runs it: with a kubeconfig of their own (the admin's credentials
//! plus `as`/`as-groups`, so every request is impersonated), which the
//! plugin reads, `use` changes, and the `kubectl` binary then uses.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use super::kubectl::Run;
use super::{plane, unique};

/// The plugin and `kubectl` acting as one user, through one kubeconfig.
#[derive(Debug)]
pub struct Plugin {
    user: String,
    kubeconfig: PathBuf,
}

impl Plugin {
    /// A kubeconfig of `user` in `groups` (plus `system:authenticated`).
    pub fn as_user(user: &str, groups: &[&str]) -> Self {
        let admin = std::fs::read_to_string(plane().kubeconfig()).expect("admin kubeconfig");
        let mut config: Value = serde_yaml::from_str(&admin).expect("kubeconfig yaml");
        let mut groups: Vec<Value> = groups.iter().map(|g| Value::from(*g)).collect();
        groups.push(Value::from("system:authenticated"));
        for entry in config["users"].as_sequence_mut().expect("users") {
            let auth = entry["user"].as_mapping_mut().expect("a user entry");
            auth.insert("as".into(), Value::from(user));
            auth.insert("as-groups".into(), Value::Sequence(groups.clone()));
        }
        let dir = std::env::temp_dir().join(format!("kubectl-workspaces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a kubeconfig directory");
        let kubeconfig = dir.join(format!("{}.yaml", unique("kubeconfig")));
        std::fs::write(&kubeconfig, serde_yaml::to_string(&config).expect("yaml"))
            .expect("write the user's kubeconfig");
        Plugin {
            user: user.to_string(),
            kubeconfig,
        }
    }

    /// The user's kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn output(&self, program: &str, line: String, args: &[&str]) -> Run {
        let out = Command::new(program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        Run::from_output(line, out)
    }

    /// `kubectl workspaces ARGS` (the plugin binary this build made).
    pub fn run(&self, args: &[&str]) -> Run {
        let line = format!("kubectl workspaces {} (as {})", args.join(" "), self.user);
        self.output(env!("CARGO_BIN_EXE_kubectl-workspaces"), line, args)
    }

    /// `kubectl workspaces ARGS -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let run = self.run(&all).success();
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{}", run.command, run.stdout))
    }

    /// `kubectl ARGS` with the same kubeconfig (no `--as`: the kubeconfig
    /// says who).
    pub fn kubectl(&self, args: &[&str]) -> Run {
        let line = format!("kubectl {} (as {})", args.join(" "), self.user);
        self.output("kubectl", line, args)
    }
}

/// The names in `ls -o json` (or any list of entries with a `name`).
pub fn names(entries: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = entries
        .as_array()
        .expect("a JSON list")
        .iter()
        .map(|e| e["name"].as_str().expect("a name").to_string())
        .collect();
    names.sort();
    names
}

/// The entry for the workspace `name` in `ls -o json`.
pub fn entry<'a>(entries: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    entries
        .as_array()
        .expect("a JSON list")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {entries}"))
}
