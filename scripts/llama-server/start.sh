#!/usr/bin/env bash
# Starts llama.cpp's llama-server (built by scripts/llama-server/build.sh) on 127.0.0.1 with a
# GGUF model, waits until it answers /health, and prints its base URL (up to /v1) on the last
# line. Its PID goes to PIDFILE; scripts/llama-server/stop.sh PIDFILE stops it.
#
#   scripts/llama-server/start.sh MODEL.gguf PIDFILE [LOGFILE]
#
# The port is free one the kernel picks, or LLAMA_SERVER_PORT (8080 for
# configs/providers/llama-server-smollm2.toml).
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:?MODEL.gguf}
pidfile=${2:?PIDFILE}
log=${3:-${pidfile%.pid}.log}
[ -f "$model" ] || { echo "llama-server: no model at $model" >&2; exit 1; }
bin=$(scripts/llama-server/build.sh | tail -1)
# A free loopback port, chosen by the kernel, unless one is asked for.
port=${LLAMA_SERVER_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
"$bin" --model "$model" --alias smollm2 --host 127.0.0.1 --port "$port" --ctx-size 4096 \
    --parallel 1 --threads "$(nproc)" --no-webui >"$log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 1 240); do
    if python3 -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2>/dev/null; then
        echo "llama-server ready on 127.0.0.1:$port (PID $(cat "$pidfile"), log $log)" >&2
        echo "http://127.0.0.1:$port/v1"
        exit 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "llama-server exited:" >&2; tail -20 "$log" >&2; exit 1; }
    sleep 0.5
done
echo "llama-server: not ready after 120 s" >&2
kill "$(cat "$pidfile")" 2>/dev/null || true
exit 1
