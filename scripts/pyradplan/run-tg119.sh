#!/usr/bin/env bash
# Plans TG-119 with our loop on pyRadPlan, a TPS this project did not write, through the TPS
# protocol: installs pyRadPlan 0.5.0 from PyPI into .venv-pyradplan (pydantic pinned to 2.12.5;
# 2.14 breaks pyRadPlan's steering-file serialization), exports its TG-119 phantom as a
# patient directory, serves pyRadPlan on 127.0.0.1 with scripts/pyradplan/adapter.py, plans
# through it (configs/tps/pyradplan.toml, configs/protocols/tg119.toml), runs the TPS
# conformance suite against it, and stops the adapter by its PID.
#
#   scripts/pyradplan/run-tg119.sh [OUT_DIR]     (default results/pyradplan-tg119)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-pyradplan
if ! "$venv/bin/python" -c "import pyRadPlan" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "pyRadPlan==0.5.0" "pydantic==2.12.5"
fi
out=${1:-results/pyradplan-tg119}
mkdir -p "$out"
"$venv/bin/python" scripts/pyradplan/adapter.py export-tg119 "$out/patient"
export AUTOPLAN_TPS_TOKEN="${AUTOPLAN_TPS_TOKEN:-$(head -c 18 /dev/urandom | base64)}"
"$venv/bin/python" scripts/pyradplan/adapter.py serve --addr 127.0.0.1:8788 >"$out/adapter.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
    grep -q "^serving" "$out/adapter.log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$out/adapter.log"; exit 1; }
    sleep 0.5
done
cargo build --release --locked --quiet
start=$(date +%s)
target/release/autoplan plan --patient-dir "$out/patient" --protocol configs/protocols/tg119.toml \
    --tps configs/tps/pyradplan.toml --out "$out/plan"
echo "plan through pyRadPlan: $(($(date +%s) - start)) s"
start=$(date +%s)
AUTOPLAN_PYRADPLAN_URL=http://127.0.0.1:8788 AUTOPLAN_TG119_DIR="$out/patient" \
    cargo test --release --locked --test gateway -- --ignored the_pyradplan_adapter_conforms
echo "conformance suite on pyRadPlan: $(($(date +%s) - start)) s"
