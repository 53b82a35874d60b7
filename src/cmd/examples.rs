//! `autoplan examples`: the cohort's training patients planned with the rule-based physicist,
//! every goal-changing iteration collected as a few-shot example for LLM advisors.

use std::path::PathBuf;

use anyhow::Result;
use phantoms::cohort::CohortSpec;

use super::plan::{self, run_one};
use crate::args::{BeamArgs, Examples, Guard, MachineArgs};
use crate::cohort_run::select_ids;

/// Plan the cohort's training patients with the rule-based physicist and collect every
/// goal-changing iteration as a few-shot example pool for LLM advisors.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Cohort definition.
    #[arg(long)]
    pub cohort: PathBuf,
    /// Protocol.
    #[arg(long)]
    pub protocol: PathBuf,
    /// Patients, e.g. `1-5`, `7,9` or `training`; default: the cohort's training patients.
    #[arg(long)]
    pub patients: Option<String>,
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub beams: BeamArgs,
    /// Pool file to write (JSON); the plans go next to it in `<name>.plans/`.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `autoplan examples`.
pub fn run(a: &Args) -> Result<()> {
    let spec = CohortSpec::load(&a.cohort)?;
    let ids = select_ids(
        a.patients.as_deref(),
        spec.training.clone(),
        &spec,
        &a.cohort,
    )?;
    let dir = a.out.with_extension("plans");
    let mut pool = Vec::new();
    for id in ids {
        let out = dir.join(format!("p{id:02}"));
        run_one(&plan::Args {
            cohort: Some(a.cohort.clone()),
            patient: Some(id),
            patient_dir: None,
            protocol: a.protocol.clone(),
            provider: None,
            tps: None,
            machine: a.machine.clone(),
            guard: Guard::Fallback,
            beams: a.beams.clone(),
            examples: None,
            n_examples: 0,
            selection: Examples::Fixed,
            max_advisor_failures: None,
            allow_fallback: false,
            patients: None,
            reference: None,
            deliverable: false,
            dose_angle_step: 4.0,
            dicom: false,
            out: out.clone(),
        })?;
        let events =
            planner::transcript::read(&out.join("transcript.jsonl")).map_err(anyhow::Error::msg)?;
        pool.extend(planner::examples::from_transcript(&events));
    }
    planner::examples::save(&a.out, &pool).map_err(anyhow::Error::msg)?;
    out!(
        "wrote {} examples to {} (plans in {})",
        pool.len(),
        a.out.display(),
        dir.display()
    );
    Ok(())
}
