#!/usr/bin/env bash
# Sets up and runs the main job on a fresh machine: builds autoplan, generates the 35-patient
# synthetic cervix cohort with its volume table, and renders and saves one patient with the
# protocol's optimization rings. Everything lands in out/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
bin=target/release/autoplan
mkdir -p out
"$bin" cohort --cohort configs/cohorts/cervix-35.toml --table out/cohort-volumes.md
"$bin" phantom --cohort configs/cohorts/cervix-35.toml --patient 7 \
    --protocol configs/protocols/cervix.toml --png out/p07 --save out/p07/patient
echo "Done: out/cohort-volumes.md, slice PNGs in out/p07/, patient files (NRRD) in out/p07/patient/."
