//! `autoplan synthetic-dose`: an idealized analytic dose around the prescription target, to
//! exercise evaluation and figures without a dose calculation.

use std::path::PathBuf;

use anyhow::Result;
use phantoms::synthetic_dose::{ConformalDose, conformal};
use tps_api::Protocol;

/// Write an idealized analytic dose around the prescription target (no beams, no physics:
/// prescription inside, exponential fall-off outside) to exercise evaluation and figures.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Patient directory (holds patient.toml).
    #[arg(long)]
    pub patient: PathBuf,
    /// Protocol with the prescription.
    #[arg(long)]
    pub protocol: PathBuf,
    /// Output NRRD file.
    #[arg(long)]
    pub out: PathBuf,
    /// Fall-off length outside the target, mm.
    #[arg(long, default_value_t = 12.0)]
    pub falloff_mm: f64,
    /// Dose inside the target relative to the prescription.
    #[arg(long, default_value_t = 1.03)]
    pub hot: f64,
    /// Seed of the ripple inside the target.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs `autoplan synthetic-dose`.
pub fn run(a: &Args) -> Result<()> {
    let p = patient_model::patient_files::load(&a.patient)?;
    let proto = Protocol::load(&a.protocol)?;
    let params = ConformalDose {
        prescription_cgy: proto.prescription.dose_cgy,
        hot: a.hot,
        ripple: 0.04,
        falloff_mm: a.falloff_mm,
        seed: a.seed,
    };
    let dose = conformal(&p, &proto.prescription.target, &params)?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| tps_api::Error::io(dir, e))?;
    }
    patient_model::nrrd::write_f32(&a.out, dose.grid(), dose.cgy())?;
    out!(
        "wrote {} (synthetic dose, not a dose calculation)",
        a.out.display()
    );
    Ok(())
}
