#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from Go modules, once
# per version, into a cache outside the repository, and prints the directory
# that holds them. Later calls find the binaries there and return at once.
#
#   WORKSPACE_OPERATOR_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/workspace-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${WORKSPACE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/workspace-operator}
bindir="$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$bindir"

have_all() {
  [ -x "$bindir/etcd" ] && [ -x "$bindir/kube-apiserver" ] && [ -x "$bindir/kube-controller-manager" ]
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
# Go's build cache for these three programs is several GB and is of no use once
# they are built (they are rebuilt only for a new version), so it lives in a
# temporary directory that is removed afterwards, whether the build succeeds or not.
gocache=$(mktemp -d "${TMPDIR:-/tmp}/workspace-operator-gocache.XXXXXX")
trap 'rm -rf "$gocache"' EXIT
export GOCACHE="$gocache"
minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
pkgs="k8s.io/component-base/version k8s.io/client-go/pkg/version"
ldflags="-s -w"
for p in $pkgs; do
  ldflags="$ldflags -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

build() { # build <module dir> <package> <output name>
  local start=$SECONDS
  [ -x "$bindir/$3" ] && return 0
  echo "building $3 ($2) ..." >&2
  (cd "$here/$1" && go build -ldflags "$ldflags" -o "$bindir/.$3.tmp" "$2")
  mv "$bindir/.$3.tmp" "$bindir/$3"
  echo "built $3 in $((SECONDS - start))s" >&2
}

build etcd . etcd
build k8s k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build k8s k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
echo "$bindir"
