//! Plans a cohort patient with the native TPS's first optimization only, then sequences it
//! into arcs and compares the deliverable dose with the fluence dose:
//! `deliver COHORT ID [SPACING_DEG [DOSE_ANGLE_STEP_DEG]]`. Prints target and OAR numbers of both, MU, delivery
//! time and the machine check. Environment: `PROTOCOL` (another protocol file), `FIT` (leaf
//! fit iterations, 0 for the plain sweep), `MU_ITERATIONS` (0 keeps the sequenced MU),
//! `TRANSMISSION`.
use std::path::Path;
use std::time::Instant;

use phantoms::cohort::CohortSpec;
use tps_api::Tps;
use tps_api::protocol::Protocol;
use tps_api::tps::Normalization;
use tps_core::delivery::{ApertureSampling, DeliveryMachine, SequenceSettings};
use tps_core::dose::{calibration::DensityCurve, model::BeamModel};
use tps_core::native::{NativeSettings, NativeTps};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let spec = CohortSpec::load(Path::new(&a[1]))?;
    let patient = spec.generate(a[2].parse()?)?;
    let spacing: f64 = a.get(3).map_or(Ok(2.0), |s| s.parse())?;
    let protocol = Protocol::load(&std::env::var("PROTOCOL").map_or_else(
        |_| root.join("configs/protocols/cervix.toml"),
        std::path::PathBuf::from,
    ))?;
    let machine_file = root.join("configs/machines/generic-6mv.toml");
    let model = BeamModel::load(&machine_file)?;
    let mut machine = DeliveryMachine::load(&machine_file)?;
    if let Ok(t) = std::env::var("TRANSMISSION") {
        machine.mlc.transmission = t.parse()?;
    }
    let curve = DensityCurve::load(&root.join("configs/ct-calibration/default.toml"))?;
    let opened = Instant::now();
    let mut tps = NativeTps::open(
        patient,
        protocol.clone(),
        &model,
        &curve,
        NativeSettings::default(),
    )?;
    tps.optimize(&[])?;
    tps.normalize(Normalization::Dose)?;
    let fluence = tps.dose()?;
    println!(
        "case opened and first optimization in {:.1} s",
        opened.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let sequencing = SequenceSettings {
        spacing_deg: spacing,
        fit_iterations: std::env::var("FIT").map_or(Ok(100), |s| s.parse())?,
        mu_iterations: std::env::var("MU_ITERATIONS").map_or(Ok(100), |s| s.parse())?,
    };
    let sampling = ApertureSampling {
        angle_step_deg: a.get(4).map_or(Ok(4.0), |s| s.parse())?,
        ..Default::default()
    };
    let d = tps.deliverable(&machine, &sequencing, &sampling)?;
    println!(
        "sequenced in {:.2} s, bin doses in {:.2} s, MU re-optimization in {:.2} s (objective {:.4} -> {:.4}); total {:.2} s; normalization {:.4}",
        d.timing_s.sequencing,
        d.timing_s.dose,
        d.timing_s.mu_reoptimization,
        d.mu_objective.0,
        d.mu_objective.1,
        t.elapsed().as_secs_f64(),
        d.normalization
    );
    println!(
        "MU per fraction: fluence {:.1}, deliverable {:.1}; delivery {:.0} s ({:?} segments limited by leaves/dose rate/gantry)",
        tps.plan()?.mu_per_fraction,
        d.plan.mu_per_fraction(),
        d.check.total_s(),
        d.check
            .arcs
            .iter()
            .map(|a| a.limited_by)
            .collect::<Vec<_>>()
    );
    println!("violations: {}", d.check.violations.len());
    for v in d.check.violations.iter().take(5) {
        println!("  {v}");
    }
    let p = tps.patient();
    for name in [
        "PTV",
        "Bladder",
        "Rectum",
        "SpinalCord",
        "Bag_Bowel",
        "Femur_Head_L",
        "External",
    ] {
        let Some(s) = p.structure(name) else { continue };
        let stats = |dose: &tps_api::Dose| {
            let mut v = tps_api::dose_volume::doses_in(dose.cgy(), &s.mask);
            tps_api::dose_volume::sort_hottest_first(&mut v);
            let at = |f: f64| tps_api::dose_volume::dose_at_fraction(&v, f);
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
            (at(0.02), at(0.5), at(0.98), mean)
        };
        let (f, dl) = (stats(&fluence), stats(&d.dose));
        println!(
            "{name:>14}: D2 {:.0} / {:.0}, D50 {:.0} / {:.0}, D98 {:.0} / {:.0}, mean {:.0} / {:.0} (fluence / deliverable, cGy)",
            f.0, dl.0, f.1, dl.1, f.2, dl.2, f.3, dl.3
        );
    }
    Ok(())
}
