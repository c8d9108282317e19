#!/usr/bin/env bash
# Starts a real Kubernetes control plane on loopback: etcd, kube-apiserver and
# kube-controller-manager, each on a free port, with its own CA, serving
# certificate and service-account key pair, all data under one directory.
#
#   up.sh --dir DIR [--owner-pid PID] [--keep-dir]
#
# Writes DIR/kubeconfig (cluster-admin, client certificate) and DIR/env, and
# returns once the API server is ready and the controller-manager is running.
# A watchdog stops every component (and removes DIR unless --keep-dir) as soon
# as the owner process exits, however it exits; `down.sh DIR` stops it at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir="" owner=$PPID keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --owner-pid) owner=$2; shift 2 ;;
    --keep-dir) keep=1; shift ;;
    *) echo "up.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] || { echo "up.sh: --dir is required" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin=$("$here/build.sh")
pki="$dir/pki"
mkdir -p "$pki" "$dir/etcd"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port); kcm_port=$(free_port)

# --- PKI ---------------------------------------------------------------
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key "$pki/ca.key"
openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=workspace-operator-test-ca" -days 30 -out "$pki/ca.crt" 2>/dev/null
cert() { # cert <name> <subject> [extensions]
  key "$pki/$1.key"
  openssl req -new -key "$pki/$1.key" -subj "$2" -out "$pki/$1.csr" 2>/dev/null
  printf '%s\n' "${3:-extendedKeyUsage=clientAuth}" > "$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
}
cert apiserver "/CN=kube-apiserver" \
  "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth"
cert admin "/O=system:masters/CN=workspace-operator-admin"
cert kcm "/CN=system:kube-controller-manager"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

b64() { base64 -w0 < "$1"; }
kubeconfig() { # kubeconfig <file> <client cert name>
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$pki/$2.crt")
    client-key-data: $(b64 "$pki/$2.key")
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
KC
}
kubeconfig "$dir/kubeconfig" admin
kubeconfig "$dir/kcm.kubeconfig" kcm

# Every request, by user and user agent, at Metadata level: the tests count the
# operator's writes from it. The log is never rotated (the API server would
# rotate it at 100 MB by default, about 1,500 workspaces into a benchmark, and
# positions in it would point into the wrong file).
cat > "$dir/audit-policy.yaml" <<'AP'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
AP

# --- processes -----------------------------------------------------------
start() { # start <name> <command...>
  local name=$1; shift
  # The command line, for restart.sh (the fault suite kills and restarts
  # components).
  printf '%q ' "$@" > "$dir/$name.cmd"
  "$@" >"$dir/$name.log" 2>&1 </dev/null &
  echo $! > "$dir/$name.pid"
}
stop_all() {
  for n in kube-controller-manager kube-apiserver etcd; do
    [ -f "$dir/$n.pid" ] && kill -TERM "$(cat "$dir/$n.pid")" 2>/dev/null || true
  done
}
fail() {
  echo "up.sh: $1; last lines of $2:" >&2
  tail -n 30 "$dir/$2" >&2 || true
  stop_all
  exit 1
}
wait_until() { # wait_until <seconds> <log name> <description> <command...>
  local deadline=$((SECONDS + $1)) log=$2 what=$3; shift 3
  until "$@" >/dev/null 2>&1; do
    kill -0 "$(cat "$dir/${log%.log}.pid")" 2>/dev/null || fail "$what: process exited" "$log"
    [ $SECONDS -lt $deadline ] || fail "$what: not ready after $1s" "$log"
    sleep 0.2
  done
}

start etcd "$bin/etcd" --name local --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "local=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn
wait_until 60 etcd.log "etcd" curl -sf "http://127.0.0.1:$etcd_port/health"

start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 \
  --authorization-mode RBAC \
  --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" \
  --audit-log-format json --audit-log-mode blocking --audit-log-maxsize 1000000 \
  --endpoint-reconciler-type none \
  --allow-privileged --profiling=false --cert-dir "$dir/apiserver-certs" --v 1
curl_admin() {
  curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$api_port$1"
}
wait_until 120 kube-apiserver.log "kube-apiserver" curl_admin /readyz

start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$dir/kcm.kubeconfig" \
  --authentication-kubeconfig "$dir/kcm.kubeconfig" --authorization-kubeconfig "$dir/kcm.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$kcm_port" \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials --leader-elect=false \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --controllers '*,-bootstrapsigner,-tokencleaner' --v 1
wait_until 60 kube-controller-manager.log "kube-controller-manager" \
  curl -sfk "https://127.0.0.1:$kcm_port/healthz"

cat > "$dir/env" <<ENV
KUBECONFIG=$dir/kubeconfig
CONTROLPLANE_DIR=$dir
CONTROLPLANE_API=https://127.0.0.1:$api_port
CONTROLPLANE_AUDIT_LOG=$dir/audit.log
CONTROLPLANE_ETCD=http://127.0.0.1:$etcd_port
ENV

# --- watchdog --------------------------------------------------------------
(
  trap '' INT HUP
  trap 'exit 0' TERM
  while kill -0 "$owner" 2>/dev/null && [ ! -f "$dir/stop" ]; do sleep 0.5; done
  stop_all
  for _ in $(seq 25); do
    alive=0
    for n in kube-controller-manager kube-apiserver etcd; do
      kill -0 "$(cat "$dir/$n.pid")" 2>/dev/null && alive=1
    done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for n in kube-controller-manager kube-apiserver etcd; do kill -KILL "$(cat "$dir/$n.pid")" 2>/dev/null || true; done
  [ "$keep" = 1 ] || rm -rf "$dir"
) </dev/null >/dev/null 2>&1 &
echo $! > "$dir/watchdog.pid"
disown
echo "$dir/kubeconfig"
