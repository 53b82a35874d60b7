#!/usr/bin/env bash
# Runs the whole test suite: every crate's unit, integration and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
