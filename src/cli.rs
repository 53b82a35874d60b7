//! The command line: global options and one subcommand per [`crate::cmd`] module.

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::cmd;

/// Open LLM-driven radiotherapy planning.
#[derive(Debug, Parser)]
#[command(name = "autoplan", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate one synthetic patient of a cohort: print its structures, and optionally
    /// render slices and save it as NRRD.
    Phantom(cmd::phantom::Args),
    /// Generate every patient of a cohort and print a table of structure volumes.
    Cohort(cmd::cohort::Args),
    /// Evaluate a dose on a patient with a protocol's metrics (the study's Table 2, CI, HI,
    /// MU); optionally draw isodose slices and the DVH, and write the metrics as CSV.
    Eval(cmd::eval::Args),
    /// Write an idealized analytic dose around the prescription target (no beams, no physics:
    /// prescription inside, exponential fall-off outside) to exercise evaluation and figures.
    SyntheticDose(cmd::synthetic_dose::Args),
    /// Compare two doses on the same grid with the global gamma index (Low et al. 1998): print
    /// the pass rate, mean and maximum gamma at each criterion.
    Gamma(cmd::gamma::Args),
    /// Compute dose on a patient from coplanar arcs (the study's two 360-degree arcs as static
    /// beams) with a uniform fluence over the beamlets that pass through the target, scaled
    /// so the prescription covers the prescribed volume; write it and draw isodose lines.
    Dose(cmd::dose::Args),
    /// Optimize a plan with the protocol's objectives (initial goals, no adjustments): print
    /// the iteration report, normalize to the prescription, write the dose and isodose slices.
    Optimize(cmd::optimize::Args),
    /// Plan every test patient of a cohort once with the protocol's initial goals (no
    /// adjustments), evaluate the protocol's metrics and tabulate them beside a published
    /// reference column. Resumes where an earlier run stopped.
    Calibrate(cmd::calibrate::Args),
    /// Plan a patient with the virtual-physicist loop: optimize, report, ask the advisor,
    /// guard its answer, re-optimize, until the protocol's criteria hold; then normalize and
    /// write the dose, the transcript, the metric table and pictures.
    Plan(cmd::plan::Args),
    /// Simulated patient-specific QA of a deliverable plan (`plan --deliverable`): its control
    /// points with simulated delivery errors, their dose, and the gamma index against the
    /// planned dose at 3%/3 mm and 2%/2 mm (a simulation, not a measurement).
    Qa(cmd::qa::Args),
    /// Plan the cohort's training patients with the rule-based physicist and collect every
    /// goal-changing iteration as a few-shot example pool for LLM advisors.
    Examples(cmd::examples::Args),
    /// Measure how sensible an advisor's decisions are: ask it about every report of a
    /// few-shot example pool (from `autoplan examples`) and compare its move per OAR objective
    /// (tighten, relax, keep) with the rule-based physicist's; count the guard's verdicts.
    Agreement(cmd::agreement::Args),
    /// Load a saved patient directory, check it, print its structures, optionally render.
    Inspect(cmd::inspect::Args),
    /// Import a patient from DICOM: the CT series its RT structure set refers to, the
    /// structures (named as the protocol names them, through an alias table) and an RT dose
    /// when there is one; written as a patient directory with an import report.
    ImportDicom(cmd::import_dicom::Args),
    /// Export a plan as DICOM RT: the patient's CT series, an RT structure set with every
    /// structure (rings included), the plan's RT dose and an RT plan (prescription, fraction
    /// group, and the arcs' control points with MLC positions and MU when the plan was made
    /// with --deliverable).
    ExportDicom(cmd::export_dicom::Args),
    /// Run a study file's arms on its patients (one directory per arm and patient; an
    /// interrupted run resumes, finished cases are never redone) and write its tables and
    /// report.
    Study(cmd::run_study::Args),
    /// Serve the native TPS over the TPS protocol (v1, docs/tps-protocol.md) so that a loop in
    /// another process or on another machine can plan with it (`plan --tps FILE`).
    ServeTps(cmd::serve_tps::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Phantom(a) => cmd::phantom::run(a),
        Command::Cohort(a) => cmd::cohort::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::SyntheticDose(a) => cmd::synthetic_dose::run(a),
        Command::Gamma(a) => cmd::gamma::run(a),
        Command::Dose(a) => cmd::dose::run(a),
        Command::Optimize(a) => cmd::optimize::run(a),
        Command::Calibrate(a) => cmd::calibrate::run(a),
        Command::Plan(a) if a.patients.is_some() => cmd::study::run(a),
        Command::Plan(a) => cmd::plan::run(a),
        Command::Qa(a) => cmd::qa::run(a),
        Command::Examples(a) => cmd::examples::run(a),
        Command::Agreement(a) => cmd::agreement::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::ImportDicom(a) => cmd::import_dicom::run(a),
        Command::ExportDicom(a) => cmd::export_dicom::run(a),
        Command::Study(a) => cmd::run_study::run(a),
        Command::ServeTps(a) => cmd::serve_tps::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
