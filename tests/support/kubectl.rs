//! The `kubectl` binary, run as a given user: what a person types, judged by
//! the API server's RBAC and admission as that person's own request.
//!
//! The binary uses the admin kubeconfig with `--as`/`--as-group`
//! (impersonation), so every request carries the user's identity, exactly
//! as with the user's own credentials.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::plane;

/// `kubectl` acting as one user.
#[derive(Clone, Debug)]
pub struct Kubectl {
    user: String,
    groups: Vec<String>,
    kubeconfig: PathBuf,
}

/// What one `kubectl` run printed and whether it succeeded.
#[derive(Clone, Debug)]
pub struct Run {
    /// The command line, for messages.
    pub command: String,
    /// Exit status was 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    pub fn from_output(command: String, out: Output) -> Self {
        Run {
            command,
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the output unless the command succeeded.
    #[track_caller]
    pub fn success(self) -> Self {
        assert!(
            self.ok,
            "`{}` failed:\n{}{}",
            self.command, self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the command failed with an error mentioning every one of
    /// `needles`; returns the error text.
    #[track_caller]
    pub fn refused(self, needles: &[&str]) -> String {
        assert!(
            !self.ok,
            "`{}` succeeded but should have been refused:\n{}",
            self.command, self.stdout
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "`{}` was refused without {needle:?}:\n{}",
                self.command,
                self.stderr
            );
        }
        self.stderr
    }
}

impl Kubectl {
    /// `kubectl` as `user` in `groups` (plus `system:authenticated`, as for
    /// any authenticated user).
    pub fn as_user(user: &str, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".to_string());
        }
        Kubectl {
            user: user.to_string(),
            groups,
            kubeconfig: plane().kubeconfig().to_path_buf(),
        }
    }

    fn command(&self, args: &[&str]) -> (Command, String) {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--as")
            .arg(&self.user);
        for group in &self.groups {
            cmd.arg("--as-group").arg(group);
        }
        cmd.args(args);
        (
            cmd,
            format!("kubectl {} (as {})", args.join(" "), self.user),
        )
    }

    /// Runs `kubectl ARGS`.
    pub fn run(&self, args: &[&str]) -> Run {
        let (mut cmd, line) = self.command(args);
        let out = cmd.output().expect("run kubectl");
        Run::from_output(line, out)
    }

    /// Runs `kubectl ARGS` with `input` on standard input (`-f -`).
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Run {
        let (mut cmd, line) = self.command(args);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write kubectl's input");
        let out = child.wait_with_output().expect("kubectl finished");
        Run::from_output(line, out)
    }

    /// `kubectl apply -f -` (client-side apply: a GET, then a POST or a PATCH).
    pub fn apply(&self, manifest: &str) -> Run {
        self.run_with_input(&["apply", "-f", "-"], manifest)
    }

    /// `kubectl apply --server-side -f -`.
    pub fn apply_server_side(&self, manifest: &str) -> Run {
        self.run_with_input(&["apply", "--server-side", "-f", "-"], manifest)
    }

    /// `kubectl create -f -`.
    pub fn create(&self, manifest: &str) -> Run {
        self.run_with_input(&["create", "-f", "-"], manifest)
    }

    /// `kubectl edit KIND/NAME` with an editor that replaces `from` by `to`
    /// in the object's YAML, the way a person edits the buffer.
    pub fn edit(&self, target: &str, namespace: Option<&str>, from: &str, to: &str) -> Run {
        let script = std::env::temp_dir().join(format!(
            "kubectl-edit-{}-{}.sh",
            std::process::id(),
            super::unique("e")
        ));
        let text = format!(
            "#!/bin/sh\nsed -i 's|{}|{}|' \"$1\"\n",
            from.replace('|', "\\|"),
            to.replace('|', "\\|")
        );
        std::fs::write(&script, text).expect("write the editor script");
        let mut args = vec!["edit", target];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        let (mut cmd, line) = self.command(&args);
        let out = cmd
            .env("KUBE_EDITOR", format!("sh {}", script.display()))
            .output()
            .expect("run kubectl edit");
        let _ = std::fs::remove_file(&script);
        Run::from_output(line, out)
    }
}
