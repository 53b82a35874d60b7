#!/usr/bin/env bash
# Sets up and runs the main job on a fresh machine: builds autoplan, generates the 35-patient
# synthetic cervix cohort with its volume table, renders and saves one patient with the
# protocol's optimization rings, computes the dose of two uniform arcs on it and evaluates
# that dose with the protocol's metrics. Everything lands in out/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
autoplan() { cargo run --release --locked --quiet --bin autoplan -- "$@"; }
mkdir -p out
autoplan cohort --cohort configs/cohorts/cervix-35.toml --table out/cohort-volumes.md
autoplan phantom --cohort configs/cohorts/cervix-35.toml --patient 7 \
    --protocol configs/protocols/cervix.toml --png out/p07 --save out/p07/patient
autoplan dose --patient out/p07/patient --protocol configs/protocols/cervix.toml \
    --out out/p07/uniform-arcs-dose.nrrd --png out/p07/dose
autoplan eval --patient out/p07/patient --dose out/p07/uniform-arcs-dose.nrrd \
    --protocol configs/protocols/cervix.toml --csv out/p07/uniform-arcs-metrics.csv --png out/p07/dose
echo "Done: out/cohort-volumes.md; slices, patient files (NRRD), dose and metrics of patient 7 in out/p07/."
