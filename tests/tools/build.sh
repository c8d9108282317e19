#!/usr/bin/env bash
# Builds the client tools the tests drive (helm) from Go modules, once per
# version, into a cache outside the repository, and prints the directory that
# holds them. Later calls find the binaries there and return at once; the way
# tests/controlplane/build.sh builds the control plane.
#
#   WORKSPACE_OPERATOR_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/workspace-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${WORKSPACE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/workspace-operator}
# helm's default Kubernetes version (for `helm template` and `helm lint`) is
# that of the client-go it is built with, stamped in as helm's Makefile does.
k8s_minor=$(sed -n 's|^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*|\1|p' "$here/helm/go.mod")
[ -n "$k8s_minor" ] || { echo "no k8s.io/client-go in $here/helm/go.mod" >&2; exit 1; }
bindir="$cache/tools-helm-$HELM_VERSION-k8s-1.$k8s_minor"
mkdir -p "$bindir"

have_all() {
  [ -x "$bindir/helm" ]
}

if have_all; then
  echo "$bindir"
  exit 0
fi

# Several test binaries may start at once: one builds, the others wait.
exec 9>"$bindir/.lock"
flock 9
if have_all; then
  echo "$bindir"
  exit 0
fi

export GOFLAGS="-mod=mod -trimpath"
# Go's build cache is of no use once the binary is built (it is rebuilt only
# for a new version), so it lives in a temporary directory removed afterwards.
gocache=$(mktemp -d "${TMPDIR:-/tmp}/workspace-operator-gocache.XXXXXX")
trap 'rm -rf "$gocache"' EXIT
export GOCACHE="$gocache"

build() { # build <module dir> <package> <output name> <ldflags>
  local start=$SECONDS
  [ -x "$bindir/$3" ] && return 0
  echo "building $3 ($2) ..." >&2
  (cd "$here/$1" && go build -ldflags "$4" -o "$bindir/.$3.tmp" "$2")
  mv "$bindir/.$3.tmp" "$bindir/$3"
  echo "built $3 in $((SECONDS - start))s" >&2
}

# `helm version` reports the version stamped here, as a released helm does.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags="$ldflags -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
done
build helm helm.sh/helm/v3/cmd/helm helm "$ldflags"
echo "$bindir"
