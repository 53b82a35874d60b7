//! `autoplan eval`: a dose on a patient evaluated with a protocol's metrics, optionally drawn
//! (isodose slices, DVH) and written as CSV.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use evaluation::tables::plan::{metrics_csv, metrics_text};
use evaluation::{Evaluator, PlanDose, ProtocolEvaluator};
use tps_api::Protocol;

use crate::pictures::{isodose_pngs, write_dvh};

/// Evaluate a dose on a patient with a protocol's metrics (the study's Table 2, CI, HI, MU);
/// optionally draw isodose slices and the DVH, and write the metrics as CSV.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Patient directory (holds patient.toml).
    #[arg(long)]
    pub patient: PathBuf,
    /// Dose on the patient's CT grid, NRRD (float, cGy).
    #[arg(long)]
    pub dose: PathBuf,
    /// Protocol with the prescription and the metric list.
    #[arg(long)]
    pub protocol: PathBuf,
    /// Monitor units per fraction of the plan, when known (a positive number).
    #[arg(long, value_parser = crate::args::positive)]
    pub mu: Option<f64>,
    /// Directory for isodose slices and the DVH figure (PNG and SVG).
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Write the metric table as CSV to this file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// Runs `autoplan eval`.
pub fn run(a: &Args) -> Result<()> {
    let mut p = patient_model::patient_files::load(&a.patient)?;
    let proto = Protocol::load(&a.protocol)?;
    patient_model::recipes::build_missing_auxiliary(&proto, &mut p)?;
    let dose = super::read_dose(&a.dose)?;
    if dose.grid() != p.grid() {
        bail!(
            "{}: dose grid {:?} differs from the patient's CT grid {:?}",
            a.dose.display(),
            dose.grid(),
            p.grid()
        );
    }
    let ev = ProtocolEvaluator::from_protocol(&proto)?;
    let values = ev
        .evaluate(&PlanDose {
            patient: &p,
            dose: &dose,
            mu_per_fraction: a.mu,
        })
        .with_context(|| format!("evaluating {}", a.dose.display()))?;
    out!("{} with {} ({})", p.id, a.dose.display(), proto.site);
    outn!("{}", metrics_text(&values));
    if let Some(path) = &a.csv {
        crate::output::write_text(path, &metrics_csv(&values))
            .with_context(|| format!("writing {}", path.display()))?;
        out!("wrote {}", path.display());
    }
    if let Some(dir) = &a.png {
        let files = isodose_pngs(
            &p,
            &dose,
            proto.prescription.dose_cgy,
            &[1.05, 1.0, 0.95, 0.8, 0.5, 0.3],
            &proto.prescription.target,
            dir,
            "isodose",
        )?;
        for f in files {
            out!("wrote {}", f.display());
        }
        let label = a
            .dose
            .file_name()
            .map_or("dose".into(), |f| f.to_string_lossy().into_owned());
        for f in write_dvh(&p, &dose, &ev, &label, dir)? {
            out!("wrote {}", f.display());
        }
    }
    Ok(())
}
