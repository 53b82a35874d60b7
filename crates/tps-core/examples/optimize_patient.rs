//! Optimizes the cervix protocol's Table 1 objectives (initial goals) on one cohort patient
//! with the truncated influence matrix, then once more with the scatter correction from the
//! whole-grid dose: `optimize_patient COHORT ID`. A development measurement, not the `Tps`.
use std::path::Path;
use std::time::Instant;

use tps_core::cohort::CohortSpec;
use tps_core::dose::{
    calibration::DensityCurve, engine::DoseEngine, matrix::*, model::BeamModel, plan, rows,
};
use tps_core::optimize::fmo::{FluenceObjective, bind, neighbour_pairs};
use tps_core::optimize::lbfgs::{Settings, minimize};
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
    let mut fields = plan::setup_fields(&p, "PTV", &plan::BeamSetup::default())?;
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
    let m = InfluenceMatrix::compute(&e, &fields, &dg, r, MatrixSettings::default())?;
    println!("matrix {:.1} s", t.elapsed().as_secs_f64());
    let bound = bind(&proto.objectives, &p, &m, "protocol")?;
    let mut f = FluenceObjective::new(&m, bound, neighbour_pairs(&m, &fields), 0.0);
    let n = m.n_cols();
    let lower = vec![0.0; n];
    let settings = Settings {
        max_iterations: 150,
        rel_tolerance: 1e-4,
        ..Default::default()
    };
    // Start from the uniform fluence scaled to the prescription in the PTV on average.
    let open = f.dose_of(&vec![1.0; n]);
    let ptv = &f.objectives[1].rows;
    let ptv_mean = ptv.iter().map(|&r| open[r as usize] as f64).sum::<f64>() / ptv.len() as f64;
    let x0 = vec![3600.0 / ptv_mean; n];
    let t = Instant::now();
    let s = minimize(&mut f, &x0, &lower, &settings)?;
    println!(
        "cold: {} iterations, {} evaluations, {:.1} s, objective {:.4e}, {:?}",
        s.iterations,
        s.evaluations,
        t.elapsed().as_secs_f64(),
        s.value,
        s.termination
    );
    let report = |f: &mut FluenceObjective, x: &[f64]| {
        let d = f.dose_of(x);
        let v = f.values(&d);
        for (o, v) in f.objectives.iter().zip(v) {
            let rows = &o.rows;
            let mean = rows.iter().map(|&r| d[r as usize] as f64).sum::<f64>() / rows.len() as f64;
            println!(
                "  {:<14} goal {:>6.0}  mean {:>7.1}  value {:.3e}",
                o.id, o.goal_cgy, mean, v
            );
        }
    };
    report(&mut f, &s.x);
    // Scatter correction from the whole-grid dose of this fluence, then a warm restart.
    for (c, &(b, j)) in m.columns.iter().enumerate() {
        fields[b as usize].weights[j as usize] = s.x[c];
    }
    let mut inside = vec![false; dg.len()];
    for &row in &m.rows {
        inside[row as usize] = true;
    }
    let t = Instant::now();
    let full = e.dose_on_grid(&fields, &dg, Some(&inside));
    println!("whole dose at the rows {:.1} s", t.elapsed().as_secs_f64());
    let ax = f.dose_of(&s.x);
    f.correction = m
        .rows
        .iter()
        .zip(&ax)
        .map(|(&row, &a)| full[row as usize] - a)
        .collect();
    println!("with correction, before re-optimizing:");
    report(&mut f, &s.x);
    let t = Instant::now();
    let s2 = minimize(&mut f, &s.x, &lower, &settings)?;
    println!(
        "warm: {} iterations, {:.1} s, objective {:.4e}, {:?}",
        s2.iterations,
        t.elapsed().as_secs_f64(),
        s2.value,
        s2.termination
    );
    report(&mut f, &s2.x);
    Ok(())
}
