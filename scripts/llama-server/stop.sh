#!/usr/bin/env bash
# Stops the llama-server whose PID scripts/llama-server/start.sh wrote to PIDFILE: SIGTERM, then
# SIGKILL after 10 s.
#
#   scripts/llama-server/stop.sh PIDFILE
set -euo pipefail
pidfile=${1:?PIDFILE}
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
fi
rm -f "$pidfile"
