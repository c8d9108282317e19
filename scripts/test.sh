#!/usr/bin/env bash
# The whole test suite: unit tests, generated-file drift checks, and the
# integration tests, each test binary on its own real control plane.
set -euo pipefail
cd "$(dirname "$0")/.."
# Build the control plane first (cached under ~/.cache after the first run), so
# a cold machine shows build progress here rather than inside a test.
start=$SECONDS
bash tests/controlplane/build.sh >/dev/null
echo "control plane binaries ready ($((SECONDS - start))s)"
# And the client tools: helm, which the chart's tests (tests/helm.rs,
# tests/manifests_drift.rs) drive, and the GitOps health judge (tests/gitops.rs).
start=$SECONDS
bash tests/tools/build.sh helm >/dev/null
bash tests/tools/build.sh health >/dev/null
echo "helm and the health judge ready ($((SECONDS - start))s)"
cargo test --all-targets "$@"
