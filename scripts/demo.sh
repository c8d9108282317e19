#!/usr/bin/env bash
# Runs the operator on a local control plane (etcd, kube-apiserver,
# kube-controller-manager built from source and cached), installs the CRDs,
# roles and RBAC from this repository, applies examples/, and shows the result.
# The operator runs as its own least-privilege ServiceAccount, as in a cluster.
#
#   scripts/demo.sh            # keep running until Ctrl-C
#   scripts/demo.sh --exit     # show the result, then stop everything
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
stay=1
[ "${1:-}" = "--exit" ] && stay=0
command -v kubectl >/dev/null || { echo "demo: kubectl is needed to show the result" >&2; exit 1; }

state=${DEMO_DIR:-${TMPDIR:-/tmp}/workspace-operator-demo}
rm -rf "$state"
echo "==> building the control plane (cached after the first run) and the operator"
bash tests/controlplane/build.sh >/dev/null
cargo build --quiet
echo "==> starting etcd, kube-apiserver, kube-controller-manager"
kubeconfig=$(bash tests/controlplane/up.sh --dir "$state" --owner-pid $$)
export KUBECONFIG=$kubeconfig

echo "==> installing CRDs, built-in roles and the operator's RBAC"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl apply --server-side -f deploy/ >/dev/null

token=$(kubectl create token workspace-operator -n workspace-operator-system --duration 24h)
server=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
cat > "$state/operator.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: local, user: operator}}]
current-context: operator
KC

echo "==> starting the operator as system:serviceaccount:workspace-operator-system:workspace-operator"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KUBECONFIG="$state/operator.kubeconfig" RUST_LOG=${RUST_LOG:-info} \
  bash tests/controlplane/supervise.sh $$ "$state/operator.pid" "$state/operator.log" -- \
  "$root/target/debug/workspace-operator" run --metrics-addr "127.0.0.1:$port" --leader-election=false &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done

echo "==> applying examples/"
members=()
for f in examples/*.yaml; do
  if grep -q '^kind: WorkspaceMember' "$f"; then members+=("$f"); else kubectl apply -f "$f"; fi
done
kubectl wait --for=condition=Ready workspaces.workspaces.dev --all --timeout=120s >/dev/null
for f in "${members[@]}"; do kubectl apply -f "$f"; done
# bob answers alice's invitation (examples/invitation.yaml) as himself.
kubectl wait --for=jsonpath='{.status.phase}'=Invited -n alice-sandbox workspacemember/bob --timeout=60s >/dev/null
kubectl -n alice-sandbox patch workspacemember bob --type=merge \
  -p '{"spec":{"response":"Accepted"}}' --as bob@example.com >/dev/null

echo
kubectl get workspaces.workspaces.dev
echo
kubectl get organizations.workspaces.dev
if [ ${#members[@]} -gt 0 ]; then echo; kubectl get workspacemembers.workspaces.dev -A; fi

cat <<EOT

The control plane and the operator are running.
  export KUBECONFIG=$KUBECONFIG
  kubectl get workspaces
  kubectl get workspaces-dev -A       # every object of the API
  kubectl describe ws acme-prod
  kubectl auth can-i list pods -n acme-prod --as alice@example.com
  metrics: http://127.0.0.1:$port/metrics   operator log: $state/operator.log
EOT
if [ "$stay" = 1 ]; then
  echo "Press Ctrl-C to stop everything."
  trap 'exit 0' INT TERM
  while true; do sleep 3600; done
fi
