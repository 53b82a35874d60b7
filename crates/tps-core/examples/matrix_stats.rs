//! Influence-matrix statistics for a cohort patient: `matrix_stats COHORT ID CUTOFF_MM THRESHOLD`.
//! Prints voxels, beamlets, nnz, memory, time and the dose the truncation leaves out.
use std::path::Path;
use std::time::Instant;

use tps_core::cohort::CohortSpec;
use tps_core::dose::{
    calibration::DensityCurve, engine::DoseEngine, matrix::*, model::BeamModel, plan, rows,
};
use tps_core::protocol::Protocol;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let spec = CohortSpec::load(Path::new(&a[1]))?;
    let mut p = spec.generate(a[2].parse()?)?;
    let proto = Protocol::load(&root.join("configs/protocols/cervix.toml"))?;
    proto.build_auxiliary(&mut p)?;
    let model = BeamModel::load(&root.join("configs/machines/generic-6mv.toml"))?;
    let curve = DensityCurve::load(&root.join("configs/ct-calibration/default.toml"))?;
    let settings = MatrixSettings {
        cutoff_mm: a[3].parse()?,
        threshold: a[4].parse()?,
    };
    let fields = plan::setup_fields(&p, "PTV", &plan::BeamSetup::default())?;
    let body = &p.structure("External").unwrap().mask;
    let dg = plan::dose_grid_around(body, 3.0)?;
    let names: Vec<&str> = p
        .structures()
        .iter()
        .filter(|s| s.name != "External")
        .map(|s| s.name.as_str())
        .collect();
    let r = rows::optimization_rows(&p, &dg, &names, "External", 3, "example")?;
    let e = DoseEngine::new(&model, *p.grid(), curve.densities(p.ct_hu()));
    let t = Instant::now();
    let m = InfluenceMatrix::compute(&e, &fields, &dg, r, settings)?;
    let tm = t.elapsed();
    println!(
        "rows {} cols {} nnz {} ({:.1} per row) bytes {:.2} GB time {:.1} s",
        m.n_rows(),
        m.n_cols(),
        m.nnz(),
        m.nnz() as f64 / m.n_rows() as f64,
        m.bytes() as f64 / 1e9,
        tm.as_secs_f64()
    );
    let inside = plan::resample_mask(body, &dg);
    let t = Instant::now();
    let full = e.dose_on_grid(&fields, &dg, Some(&inside));
    println!("full grid dose {:.1} s", t.elapsed().as_secs_f64());
    let (mean, worst) = m.truncation_error(&fields, &full);
    println!(
        "truncation: mean deficit {:.2} % (rows >= 10 % of max), worst {:.2} % of max",
        100.0 * mean,
        100.0 * worst
    );
    Ok(())
}
