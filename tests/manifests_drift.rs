//! The plain manifests in `deploy/` are the Helm chart rendered with its
//! default values (scripts/manifests.sh), and the chart's copy of the CRDs
//! (`charts/workspace-operator/files/crds/`) is `crds/`: one source, the
//! chart's templates, so `kubectl apply -f deploy/` and `helm install`
//! install the same objects. Editing deploy/ by hand, or a template without
//! regenerating, fails here.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const REGENERATE: &str = "regenerate with `make manifests` and commit the result";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.yaml` file names of a directory.
fn yaml_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml"))
        .collect()
}

/// Differences between the `.yaml` files of `expected` and `actual`, as
/// messages naming `actual_name`.
fn compare(expected: &Path, actual: &Path, actual_name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let want = yaml_names(expected);
    let have = yaml_names(actual);
    for name in want.union(&have) {
        let a = std::fs::read_to_string(expected.join(name)).ok();
        let b = std::fs::read_to_string(actual.join(name)).ok();
        match (a, b) {
            (Some(_), None) => problems.push(format!("{actual_name}/{name} is missing")),
            (None, Some(_)) => {
                problems.push(format!("{actual_name}/{name} is not generated; delete it"))
            }
            (Some(a), Some(b)) if a != b => problems.push(format!(
                "{actual_name}/{name} differs: {}",
                support::first_difference(&b, &a)
            )),
            _ => {}
        }
    }
    problems
}

#[test]
fn deploy_is_the_chart_rendered_with_its_defaults() {
    let out = std::env::temp_dir().join(format!(
        "workspace-operator-manifests-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new("bash")
        .arg(root().join("scripts/manifests.sh"))
        .arg("--out-dir")
        .arg(&out)
        .output()
        .expect("run scripts/manifests.sh");
    assert!(
        run.status.success(),
        "scripts/manifests.sh failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let problems = compare(&out, &root().join("deploy"), "deploy");
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        problems.is_empty(),
        "deploy/ has drifted from charts/workspace-operator:\n  - {}\n{REGENERATE}.",
        problems.join("\n  - ")
    );
}

#[test]
fn the_chart_carries_the_generated_crds() {
    let problems = compare(
        &root().join("crds"),
        &root().join("charts/workspace-operator/files/crds"),
        "charts/workspace-operator/files/crds",
    );
    assert!(
        problems.is_empty(),
        "the chart's CRDs differ from crds/:\n  - {}\n{REGENERATE}.",
        problems.join("\n  - ")
    );
}
