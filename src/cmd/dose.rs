//! `autoplan dose`: open arcs with a uniform fluence on a patient, scaled to the prescription
//! coverage ([`tps_core::uniform`]); the dose written and drawn.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::ValueEnum;
use evaluation::dvh::Dvh;
use indicatif::{ProgressBar, ProgressStyle};
use tps_api::Protocol;
use tps_core::dose::plan::BeamSetup;
use tps_core::uniform::UniformArcs;

use crate::args::{BeamArgs, MachineArgs};
use crate::pictures::isodose_pngs;

/// Fluence of the `dose` command's beams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fluence {
    /// Every selected beamlet equally weighted (optimized fluences come from `autoplan
    /// optimize`).
    Uniform,
}

/// Compute dose on a patient from coplanar arcs (the study's two 360-degree arcs as static
/// beams) with a uniform fluence over the beamlets that pass through the target, scaled so the
/// prescription covers the prescribed volume; write it and draw isodose lines.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Patient directory (holds patient.toml).
    #[arg(long)]
    pub patient: PathBuf,
    /// Protocol with the prescription (target, dose, volume).
    #[arg(long)]
    pub protocol: PathBuf,
    /// Fluence: `uniform` only (optimized fluences come from `autoplan optimize`).
    #[arg(long, value_enum, default_value_t = Fluence::Uniform)]
    pub fluence: Fluence,
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub beams: BeamArgs,
    /// Write the dose (on the CT grid, cGy) as NRRD.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Directory for isodose slices through the target.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

/// Runs `autoplan dose`.
pub fn run(a: &Args) -> Result<()> {
    let Fluence::Uniform = a.fluence;
    let setup = BeamSetup::default();
    let p = patient_model::patient_files::load(&a.patient)?;
    let proto = a.beams.apply_to(Protocol::load(&a.protocol)?)?;
    let (model, curve) = a.machine.load()?;
    tps_core::native::check_energy(&proto, &model)?;
    let t0 = Instant::now();
    let arcs = UniformArcs::new(&p, &proto, &setup)?;
    let target = &proto.prescription.target;
    out!(
        "{}: {} beams, {} beamlets of {} mm through {} + {} mm; dose grid {:?} at {} mm",
        p.id,
        arcs.beams(),
        arcs.beamlets(),
        proto.beams.bixel_mm,
        target,
        setup.target_margin_mm,
        arcs.dose_grid().dims,
        proto.beams.dose_grid_mm
    );
    let bar = ProgressBar::new(arcs.beams() as u64).with_style(
        ProgressStyle::with_template("dose [{bar:30}] {pos}/{len} beams, {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let plan = arcs.compute(&p, &proto, &model, &curve, |n| bar.set_position(n as u64))?;
    bar.finish_and_clear();
    let pr = &proto.prescription;
    out!(
        "computed in {:.1} s; a uniform fluence of {:.3} MU per beam gives D{} = {} cGy ({:.0} MU over the plan, {:.1} MU per fraction)",
        t0.elapsed().as_secs_f64(),
        plan.mu_per_beam,
        pr.volume_percent,
        pr.dose_cgy,
        plan.total_mu,
        plan.total_mu / pr.fractions as f64
    );
    let mask = &p.require(target, "dose", "prescription.target")?.mask;
    let tdvh = Dvh::new(target, plan.dose.cgy(), mask)?;
    out!(
        "{}: Dmax {:.0} cGy, D2 {:.0}, D50 {:.0}, D98 {:.0} cGy",
        target,
        tdvh.max(),
        tdvh.d_percent(2.0),
        tdvh.d_percent(50.0),
        tdvh.d_percent(98.0)
    );
    if let Some(path) = &a.out {
        patient_model::nrrd::write_f32(path, plan.dose.grid(), plan.dose.cgy())?;
        out!("wrote {}", path.display());
    }
    if let Some(dir) = &a.png {
        let fractions = [1.05, 1.0, 0.9, 0.7, 0.5, 0.3, 0.1];
        for f in isodose_pngs(&p, &plan.dose, pr.dose_cgy, &fractions, target, dir, "dose")? {
            out!("wrote {}", f.display());
        }
    }
    Ok(())
}
