//! `autoplan phantom`: one synthetic patient of a cohort, its structures printed, optionally
//! rendered and saved.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use phantoms::cohort::CohortSpec;

/// Generate one synthetic patient of a cohort (or a built-in phantom): print its structures,
/// and optionally render slices and save it as NRRD.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Cohort specification (TOML).
    #[arg(long, required_unless_present = "builtin", requires = "patient")]
    pub cohort: Option<PathBuf>,
    /// Patient id, 1-based.
    #[arg(long)]
    pub patient: Option<usize>,
    /// A built-in phantom instead of a cohort patient.
    #[arg(long, value_enum, conflicts_with_all = ["cohort", "patient"])]
    pub builtin: Option<Builtin>,
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

/// Phantoms that need no cohort file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Builtin {
    /// A C-shaped target round a core in a water cylinder, in the manner of TG-119
    /// (`configs/protocols/c-shape.toml` plans it).
    CShape,
}

/// Runs `autoplan phantom`.
pub fn run(a: &Args) -> Result<()> {
    if let Some(Builtin::CShape) = a.builtin {
        let mut p = phantoms::c_shape::c_shape("c-shape");
        super::add_auxiliary(&mut p, a.protocol.as_deref())?;
        out!("{} (built-in C-shape phantom)", p.id);
        return super::show_patient(&p, a.png.as_deref(), a.save.as_ref(), "c-shape");
    }
    let (Some(cohort), Some(patient)) = (&a.cohort, a.patient) else {
        anyhow::bail!("give --cohort FILE --patient N, or --builtin c-shape");
    };
    let spec = CohortSpec::load(cohort)?;
    let t = Instant::now();
    let mut p = spec.generate(patient)?;
    tracing::info!("generated {} in {:.2?}", p.id, t.elapsed());
    super::add_auxiliary(&mut p, a.protocol.as_deref())?;
    out!(
        "{} ({} set{})",
        p.id,
        spec.split(patient),
        if spec.inguinal.contains(&patient) {
            ", inguinal nodes"
        } else {
            ""
        }
    );
    super::show_patient(
        &p,
        a.png.as_deref(),
        a.save.as_ref(),
        &format!("p{patient:02}"),
    )
}
