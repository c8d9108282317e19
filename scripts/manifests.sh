#!/usr/bin/env bash
# Renders the plain manifests in deploy/ from the Helm chart with its default
# values, the way a user's `helm install workspace-operator
# charts/workspace-operator -n workspace-operator-system` would install them,
# plus the Namespace (which `helm install --create-namespace` makes instead).
# The chart is the source: edit charts/workspace-operator/templates and run
# this (`make manifests`); tests/manifests_drift.rs fails when deploy/ differs.
# The CRDs are crds/ (generated from the Rust types by `make crds`); the chart
# carries a copy of them in files/crds/, which this script refreshes too.
#
#   scripts/manifests.sh                  # rewrite deploy/ and the chart's CRD copy
#   scripts/manifests.sh --out-dir DIR    # write what deploy/ should hold into DIR only
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/workspace-operator
helm=${HELM:-$(bash tests/tools/build.sh)/helm}

render() {
  "$helm" template workspace-operator "$chart" \
    --namespace workspace-operator-system \
    --set namespace.create=true
}

# One file per concern, in the order `kubectl apply -f deploy/` needs (the
# namespace before what lives in it): each rendered document goes to the file
# its template maps to, without helm's `# Source:` line; the CRDs are left to
# crds/.
split() { # split <out dir>   (reads the rendered chart on standard input)
  local splitter
  splitter=$(cat <<'PY'
import re, sys
out = sys.argv[1]
target = {
    "roles.yaml": "roles.yaml",
    "operator-rbac.yaml": "operator-rbac.yaml",
    "policies.yaml": "policies.yaml",
    "deployment.yaml": "operator.yaml",
    "service.yaml": "operator.yaml",
    "poddisruptionbudget.yaml": "operator.yaml",
    "servicemonitor.yaml": "operator.yaml",
}
header = ("# Generated from charts/workspace-operator (default values) by scripts/manifests.sh.\n"
          "# Do not edit by hand: change the chart's templates and run `make manifests`.\n")
files = {}
for doc in re.split(r"^---\n", sys.stdin.read(), flags=re.M):
    m = re.match(r"# Source: workspace-operator/templates/([^\n]+)\n", doc)
    if not m:
        if doc.strip():
            sys.exit(f"a rendered document without its source: {doc[:80]!r}")
        continue
    source = m.group(1)
    if source == "crds.yaml":
        continue
    if source not in target:
        sys.exit(f"templates/{source} is not mapped to a file in deploy/ (scripts/manifests.sh)")
    files.setdefault(target[source], []).append(doc[m.end():].rstrip("\n") + "\n")
for name, docs in sorted(files.items()):
    with open(f"{out}/{name}", "w") as f:
        f.write(header + "---\n".join(docs))
PY
)
  python3 -c "$splitter" "$1"
}

if [ "${1:-}" = "--out-dir" ]; then
  mkdir -p "$2"
  render | split "$2"
  exit 0
fi

rm -f "$chart"/files/crds/*.yaml
cp crds/*.yaml "$chart/files/crds/"
rm -f deploy/*.yaml
render | split deploy
echo "deploy/ and $chart/files/crds/ regenerated" >&2
