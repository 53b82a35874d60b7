//! `autoplan phantom`: one synthetic patient of a cohort, its structures printed, optionally
//! rendered and saved.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use phantoms::cohort::CohortSpec;

/// Generate one synthetic patient of a cohort: print its structures, and optionally render
/// slices and save it as NRRD.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Cohort specification (TOML).
    #[arg(long)]
    pub cohort: PathBuf,
    /// Patient id, 1-based.
    #[arg(long)]
    pub patient: usize,
    /// Protocol whose auxiliary structures (rings) to add.
    #[arg(long)]
    pub protocol: Option<PathBuf>,
    /// Directory for axial, sagittal and coronal PNGs through the PTV centroid.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Directory to save the patient in (manifest, CT and masks as NRRD).
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// Runs `autoplan phantom`.
pub fn run(a: &Args) -> Result<()> {
    let spec = CohortSpec::load(&a.cohort)?;
    let t = Instant::now();
    let mut p = spec.generate(a.patient)?;
    tracing::info!("generated {} in {:.2?}", p.id, t.elapsed());
    super::add_auxiliary(&mut p, a.protocol.as_deref())?;
    out!(
        "{} ({} set{})",
        p.id,
        spec.split(a.patient),
        if spec.inguinal.contains(&a.patient) {
            ", inguinal nodes"
        } else {
            ""
        }
    );
    super::show_patient(
        &p,
        a.png.as_deref(),
        a.save.as_ref(),
        &format!("p{:02}", a.patient),
    )
}
