#!/usr/bin/env bash
# Sets up and runs the main job on a fresh machine: builds autoplan, generates the 35-patient
# synthetic cervix cohort with its volume table, renders and saves one patient with the
# protocol's optimization rings, and plans that patient automatically with the planning loop
# and the default advisor (the rule-based physicist: no model download, no network, no key),
# writing the dose, transcript, metrics and pictures. Everything lands in out/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
autoplan() { cargo run --release --locked --quiet --bin autoplan -- "$@"; }
mkdir -p out
autoplan cohort --cohort configs/cohorts/cervix-35.toml --table out/cohort-volumes.md
autoplan phantom --cohort configs/cohorts/cervix-35.toml --patient 7 \
    --protocol configs/protocols/cervix.toml --png out/p07 --save out/p07/patient
autoplan plan --cohort configs/cohorts/cervix-35.toml --patient 7 \
    --protocol configs/protocols/cervix.toml --out out/p07/plan
echo "Done: out/cohort-volumes.md; slices and patient files (NRRD) of patient 7 in out/p07/;"
echo "its automatic plan (dose, transcript.jsonl, metrics.csv, report.md, DVH and isodose PNGs) in out/p07/plan/."
