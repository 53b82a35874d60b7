//! Influence-matrix statistics for a cohort patient under the cervix protocol:
//! `matrix_stats COHORT ID CUTOFF_MM THRESHOLD`. Prints voxels, beamlets, entries, memory,
//! build time and the dose the truncation leaves out for the starting (uniform) fluence.
use std::path::Path;
use std::time::Instant;

use phantoms::cohort::CohortSpec;
use tps_api::protocol::Protocol;
use tps_core::dose::{calibration::DensityCurve, matrix::MatrixSettings, model::BeamModel};
use tps_core::native::{NativeSettings, NativeTps};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let spec = CohortSpec::load(Path::new(&a[1]))?;
    let patient = spec.generate(a[2].parse()?)?;
    let protocol = Protocol::load(&root.join("configs/protocols/cervix.toml"))?;
    let model = BeamModel::load(&root.join("configs/machines/generic-6mv.toml"))?;
    let curve = DensityCurve::load(&root.join("configs/ct-calibration/default.toml"))?;
    let settings = NativeSettings {
        matrix: MatrixSettings {
            cutoff_mm: a[3].parse()?,
            threshold: a[4].parse()?,
        },
        ..Default::default()
    };
    let t = Instant::now();
    let tps = NativeTps::open(patient, protocol, &model, &curve, settings)?;
    let m = tps.matrix();
    println!(
        "rows {} cols {} nnz {} ({:.1} per row) bytes {:.2} GB, case opened in {:.1} s",
        m.n_rows(),
        m.n_cols(),
        m.nnz(),
        m.nnz() as f64 / m.n_rows() as f64,
        m.bytes() as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    let (mean, worst) = tps.truncation_error();
    println!(
        "truncation: mean deficit {:.2} % (rows >= 10 % of max), worst {:.2} % of max",
        100.0 * mean,
        100.0 * worst
    );
    Ok(())
}
