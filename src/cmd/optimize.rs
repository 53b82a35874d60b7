//! `autoplan optimize`: one optimization with the protocol's objectives (and any goals set on
//! the command line), its report, the plan normalized on the dose as evaluated, written.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use evaluation::tables::plan::{beams_markdown, report_markdown};
use tps_api::{GoalChange, Normalization, Protocol, Tps};
use tps_core::NativeTps;

use crate::args::{BeamArgs, MachineArgs};
use crate::pictures::isodose_pngs;

/// Optimize a plan with the protocol's objectives (initial goals, no adjustments): print the
/// iteration report, normalize to the prescription, write the dose and isodose slices.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Patient directory (holds patient.toml).
    #[arg(long)]
    pub patient: PathBuf,
    /// Protocol with prescription, objectives and rings.
    #[arg(long)]
    pub protocol: PathBuf,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Set a goal before optimizing, `ID=CGY` (repeatable).
    #[arg(long = "goal", value_name = "ID=CGY", value_parser = parse_goal)]
    pub goals: Vec<GoalChange>,
    #[command(flatten)]
    pub beams: BeamArgs,
    /// Weight of the smoothing penalty on neighbouring beamlets, per MU^2 (fewer MU when
    /// larger).
    #[arg(long, default_value_t = 1e-8)]
    pub smoothing: f64,
    /// Output directory for the dose (NRRD), isodose slices and the report.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `ID=CGY` as a goal change.
fn parse_goal(g: &str) -> Result<GoalChange, String> {
    let (id, v) = g
        .split_once('=')
        .ok_or_else(|| format!("{g:?}: expected ID=CGY"))?;
    let goal_cgy: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{g:?}: {v:?} is not a number"))?;
    Ok(GoalChange {
        id: id.trim().to_string(),
        goal_cgy,
    })
}

/// Runs `autoplan optimize`.
pub fn run(a: &Args) -> Result<()> {
    let settings = tps_core::NativeSettings {
        smoothing: a.smoothing,
        ..Default::default()
    };
    let p = patient_model::patient_files::load(&a.patient)?;
    let proto = a.beams.apply_to(Protocol::load(&a.protocol)?)?;
    // Refuse unknown objective ids before the (long) case opening.
    for c in &a.goals {
        if !proto.objectives.iter().any(|o| o.id == c.id) {
            let ids: Vec<&str> = proto.objectives.iter().map(|o| o.id.as_str()).collect();
            bail!(
                "--goal {}={}: no objective has this id in {} (ids: {})",
                c.id,
                c.goal_cgy,
                proto.origin.display(),
                ids.join(", ")
            );
        }
    }
    let (model, curve) = a.machine.load()?;
    let t = Instant::now();
    out!(
        "opening {} with {} (influence matrix; {})...",
        p.id,
        proto.origin.display(),
        proto.beams.describe()
    );
    let mut tps = NativeTps::open(p, proto.clone(), &model, &curve, settings)?;
    let m = tps.matrix();
    out!(
        "matrix: {} voxels x {} beamlets, {} entries, {:.1} s",
        m.n_rows(),
        m.n_cols(),
        m.nnz(),
        t.elapsed().as_secs_f64()
    );
    let report = tps.optimize(&a.goals)?;
    let table = report_markdown(&report);
    outn!("{table}");
    let factor = tps.normalize(Normalization::Dose)?;
    let plan = tps.plan()?;
    out!(
        "normalized by {:.4} to D{} = {} cGy on the CT grid (as evaluated); {:.1} MU per fraction (sliding window)",
        factor,
        proto.prescription.volume_percent,
        proto.prescription.dose_cgy,
        plan.mu_per_fraction
    );
    if let Some(dir) = &a.out {
        let _lock = crate::lock::OutputLock::acquire(dir)?;
        crate::output::write_file(
            dir,
            "report.md",
            &format!("{table}\n## Beams\n\n{}", beams_markdown(&proto.beams)),
        )?;
        let dose = tps.dose()?;
        let p = tps.patient();
        patient_model::nrrd::write_f32(&dir.join("dose.nrrd"), dose.grid(), dose.cgy())?;
        isodose_pngs(
            p,
            &dose,
            proto.prescription.dose_cgy,
            &[1.05, 1.0, 0.9, 0.7, 0.5, 0.3],
            &proto.prescription.target,
            dir,
            "optimized",
        )?;
        out!(
            "wrote {}: report.md, dose.nrrd, optimized-*.png",
            dir.display()
        );
    }
    out!("total {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}
