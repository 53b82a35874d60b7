//! `autoplan export-dicom`: a plan directory and its patient written as DICOM RT (CT series,
//! RT structure set with the rings, RT dose, RT plan) for a TPS or viewer to open.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dicom_rt::export::{Exported, PlanExport, export};
use tps_api::deliverable::DeliverablePlan;
use tps_api::{Dose, Patient, Protocol};

use crate::args::PatientSource;

/// Export a plan as DICOM RT: the patient's CT series, an RT structure set with every
/// structure (rings included), the plan's RT dose and an RT plan (prescription, fraction
/// group, and the arcs' control points with MLC positions and MU when the plan was made with
/// --deliverable).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The plan directory (dose.nrrd; deliverable.json and deliverable-dose.nrrd when made with
    /// --deliverable).
    pub plan_dir: PathBuf,
    /// Directory to create for the DICOM files (must not exist yet).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub patient: PatientSource,
    /// The protocol the plan was made with (prescription and rings).
    #[arg(long)]
    pub protocol: PathBuf,
    /// Export the fluence-stage dose (dose.nrrd) and no beams, even when the plan has a
    /// deliverable part.
    #[arg(long)]
    pub fluence: bool,
    /// Plan label (RTPlanLabel, at most 16 characters used) [default: the patient's id].
    #[arg(long)]
    pub label: Option<String>,
}

/// Runs `autoplan export-dicom`.
pub fn run(a: &Args) -> Result<()> {
    let protocol = Protocol::load(&a.protocol)?;
    let mut patient = a.patient.load()?;
    patient_model::recipes::build_missing_auxiliary(&protocol, &mut patient)?;
    let label = a.label.clone().unwrap_or_else(|| patient.id.clone());
    let ex = write(&a.plan_dir, &patient, &protocol, !a.fluence, &label, &a.out)?;
    out!(
        "wrote {} DICOM files to {} (study {}, frame of reference {})",
        ex.files.len(),
        a.out.display(),
        ex.study_uid,
        ex.frame_uid
    );
    Ok(())
}

/// Exports the plan in `plan_dir` (its deliverable part when there is one and `deliverable`)
/// for `patient` into `out`, written beside it and renamed so that an interrupted export
/// leaves nothing there.
pub fn write(
    plan_dir: &Path,
    patient: &Patient,
    protocol: &Protocol,
    deliverable: bool,
    label: &str,
    out: &Path,
) -> Result<Exported> {
    let plan_path = plan_dir.join("deliverable.json");
    let (plan, dose_path) = if deliverable && plan_path.exists() {
        let text = std::fs::read_to_string(&plan_path)
            .with_context(|| format!("reading {}", plan_path.display()))?;
        let plan: DeliverablePlan = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a deliverable plan", plan_path.display()))?;
        (Some(plan), plan_dir.join("deliverable-dose.nrrd"))
    } else {
        (None, plan_dir.join("dose.nrrd"))
    };
    if !dose_path.exists() {
        bail!(
            "{}: no dose here; is {} a plan directory (written by autoplan plan)?",
            dose_path.display(),
            plan_dir.display()
        );
    }
    let dose: Dose = super::read_dose(&dose_path)?;
    let description = format!(
        "{} plan of {} ({}), exported by autoplan from {}",
        if plan.is_some() {
            "Deliverable VMAT"
        } else {
            "Fluence"
        },
        patient.id,
        protocol.site,
        dose_path.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut ex = super::create_dir_whole(out, "the DICOM files", |dir| {
        Ok(export(
            &PlanExport {
                patient,
                dose: Some(&dose),
                prescription: Some(&protocol.prescription),
                deliverable: plan.as_ref(),
                label: label.to_string(),
                description,
            },
            dir,
        )?)
    })?;
    for f in &mut ex.files {
        if let Some(name) = f.file_name() {
            *f = out.join(name);
        }
    }
    Ok(ex)
}
