#!/usr/bin/env bash
# Builds a client tool the tests drive from Go modules, once per version, into
# a cache outside the repository, and prints the directory that holds it.
# Later calls find the binary there and return at once; the way
# tests/controlplane/build.sh builds the control plane.
#
#   build.sh [helm]   helm (helm.sh/helm/v3), the version in versions.env
#   build.sh health   the GitOps health judge (health/: kstatus and Argo CD's
#                     Lua engine), keyed by the hash of its sources
#
#   WORKSPACE_OPERATOR_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/workspace-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${WORKSPACE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/workspace-operator}
tool=${1:-helm}

case "$tool" in
  helm)
    # helm's default Kubernetes version (for `helm template` and `helm lint`)
    # is that of the client-go it is built with, stamped in as helm's
    # Makefile does.
    k8s_minor=$(sed -n 's|^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*|\1|p' "$here/helm/go.mod")
    [ -n "$k8s_minor" ] || { echo "no k8s.io/client-go in $here/helm/go.mod" >&2; exit 1; }
    bindir="$cache/tools-helm-$HELM_VERSION-k8s-1.$k8s_minor"
    package=helm.sh/helm/v3/cmd/helm
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      ldflags="$ldflags -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
    done
    ;;
  health)
    sum=$(cat "$here/health/go.mod" "$here/health/go.sum" "$here/health/main.go" | sha256sum | cut -c1-16)
    bindir="$cache/tools-health-$sum"
    package=.
    ldflags="-s -w"
    ;;
  *)
    echo "unknown tool $tool (helm, health)" >&2
    exit 2
    ;;
esac
mkdir -p "$bindir"

if [ -x "$bindir/$tool" ]; then
  echo "$bindir"
  exit 0
fi

# Several test binaries may start at once: one builds, the others wait.
exec 9>"$bindir/.lock"
flock 9
if [ -x "$bindir/$tool" ]; then
  echo "$bindir"
  exit 0
fi

export GOFLAGS="-mod=mod -trimpath"
# Go's build cache is of no use once the binary is built (it is rebuilt only
# for a new version), so it lives in a temporary directory removed afterwards.
gocache=$(mktemp -d "${TMPDIR:-/tmp}/workspace-operator-gocache.XXXXXX")
trap 'rm -rf "$gocache"' EXIT
export GOCACHE="$gocache"

start=$SECONDS
echo "building $tool ($package) ..." >&2
(cd "$here/$tool" && go build -ldflags "$ldflags" -o "$bindir/.$tool.tmp" "$package")
mv "$bindir/.$tool.tmp" "$bindir/$tool"
echo "built $tool in $((SECONDS - start))s" >&2
echo "$bindir"
