#!/usr/bin/env bash
# Runs a command for as long as its owner process lives.
#
#   supervise.sh OWNER_PID PIDFILE LOGFILE -- COMMAND...
#
# Writes the command's pid to PIDFILE and its output to LOGFILE, and stops it
# (TERM, then KILL) as soon as the owner exits, however the owner exits.
set -u
owner=$1 pidfile=$2 log=$3
shift 4
"$@" >>"$log" 2>&1 </dev/null &
child=$!
echo "$child" > "$pidfile.tmp" && mv "$pidfile.tmp" "$pidfile"
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
while kill -0 "$owner" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill -TERM "$child" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$child" 2>/dev/null || exit 0; sleep 0.2; done
kill -KILL "$child" 2>/dev/null
exit 0
