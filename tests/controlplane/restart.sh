#!/usr/bin/env bash
# Kills one component of a control plane started by up.sh with SIGKILL, and
# starts it again with the command line up.sh recorded (same ports, same data
# directory, output appended to the same log).
#
#   restart.sh DIR COMPONENT [--kill-only | --start-only]
#
# COMPONENT is etcd, kube-apiserver or kube-controller-manager. With
# --kill-only the component stays down until `restart.sh DIR COMPONENT
# --start-only`. Returns once the killed process is gone, or once the new one
# has been started (not necessarily ready: the caller waits for that). The
# watchdog of up.sh stops the new process like the old one, from its pid file.
set -euo pipefail
dir=${1:?usage: restart.sh DIR COMPONENT [--kill-only|--start-only]}
name=${2:?usage: restart.sh DIR COMPONENT [--kill-only|--start-only]}
mode=${3:-}
case "$name" in
  etcd|kube-apiserver|kube-controller-manager) ;;
  *) echo "restart.sh: unknown component $name" >&2; exit 2 ;;
esac
[ -f "$dir/$name.cmd" ] || { echo "restart.sh: $dir/$name.cmd missing (not started by up.sh?)" >&2; exit 2; }
alive() { # a zombie (killed, not yet reaped by whoever adopted it) is gone
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "${state#Z}" = "$state" ]
}
if [ "$mode" != --start-only ]; then
  pid=$(cat "$dir/$name.pid")
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 200); do
    alive "$pid" || break
    sleep 0.05
  done
  ! alive "$pid" || { echo "restart.sh: $name ($pid) survived SIGKILL" >&2; exit 1; }
fi
[ "$mode" = --kill-only ] && exit 0
eval "set -- $(cat "$dir/$name.cmd")"
# The killed process's connections can hold its port for a while (a peer
# that has not closed its end: a frozen client, as the fault suite makes):
# the new process then cannot listen. Start again until it can (the kernel
# drops such orphaned connections within a minute).
deadline=$((SECONDS + 90))
while :; do
  echo "--- restarted by restart.sh at $(date -u +%FT%TZ) ---" >> "$dir/$name.log"
  mark=$(wc -l < "$dir/$name.log")
  "$@" >>"$dir/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" > "$dir/$name.pid"
  for _ in $(seq 30); do alive "$pid" || break; sleep 0.1; done
  alive "$pid" && break
  tail -n +"$mark" "$dir/$name.log" | grep -q "address already in use" || break
  [ $SECONDS -lt $deadline ] || { echo "restart.sh: $name: its port stayed in use" >&2; exit 1; }
  sleep 1
done
