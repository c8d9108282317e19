#!/usr/bin/env bash
# Stops a control plane started by up.sh and waits until its processes are gone.
set -euo pipefail
dir=${1:?usage: down.sh DIR}
[ -d "$dir" ] || exit 0
touch "$dir/stop"
pid=$(cat "$dir/watchdog.pid" 2>/dev/null || echo "")
while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
