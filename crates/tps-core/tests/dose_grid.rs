//! Whole-grid dose (convolved scatter maps) against direct beamlet superposition.

use std::path::Path;

use tps_core::dose::calibration::DensityCurve;
use tps_core::dose::engine::DoseEngine;
use tps_core::dose::geometry::{Beam, FluenceMap};
use tps_core::dose::model::BeamModel;
use tps_core::grid::Grid;
use tps_core::rng::SplitMix64;

fn model() -> BeamModel {
    BeamModel::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/machines/generic-6mv.toml"),
    )
    .unwrap()
}

/// Grid dose within 1 % of the maximum of direct superposition everywhere: the scatter maps are
/// sampled every 4 mm and at widths 20 % apart, interpolated linearly; scatter varies on a
/// scale of several centimetres, so the interpolation error stays well below 1 %.
fn compare(field: FluenceMap, density_hu: impl Fn([f64; 3]) -> i16) {
    let m = model();
    let ct = Grid::new([60, 60, 50], [4.0; 3], [-118.0, -118.0, -98.0]).unwrap();
    let curve = DensityCurve::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ct-calibration/default.toml"),
    )
    .unwrap();
    let hu: Vec<i16> = (0..ct.len())
        .map(|n| {
            let [i, j, k] = ct.ijk(n);
            density_hu(ct.position_mm(i, j, k))
        })
        .collect();
    let e = DoseEngine::new(&m, ct, curve.densities(&hu));
    let dg = Grid::new([30, 30, 25], [8.0; 3], [-116.0, -116.0, -96.0]).unwrap();
    let grid_dose = e.dose_on_grid(std::slice::from_ref(&field), &dg, None);
    let pts: Vec<[f64; 3]> = (0..dg.len())
        .map(|n| {
            let [i, j, k] = dg.ijk(n);
            dg.position_mm(i, j, k)
        })
        .collect();
    let direct = e.dose_at_points(std::slice::from_ref(&field), &pts);
    let max = direct.iter().cloned().fold(0.0, f64::max);
    assert!(max > 0.1, "no dose");
    let worst = grid_dose
        .iter()
        .zip(&direct)
        .map(|(g, d)| (*g as f64 - d).abs())
        .fold(0.0, f64::max);
    assert!(worst < 0.01 * max, "worst difference {worst} of max {max}");
}

#[test]
fn open_field_in_water() {
    let beam = Beam {
        gantry_deg: 0.0,
        iso_mm: [0.0; 3],
        sad_mm: 1000.0,
    };
    compare(FluenceMap::open_field(beam, 100.0, 80.0, 5.0, 1.0), |p| {
        if p[0].hypot(p[1]) < 110.0 { 0 } else { -1000 }
    });
}

#[test]
fn modulated_field_oblique_through_bone() {
    let beam = Beam {
        gantry_deg: 40.0,
        iso_mm: [5.0, -3.0, 2.0],
        sad_mm: 1000.0,
    };
    let mut f = FluenceMap::open_field(beam, 120.0, 90.0, 5.0, 1.0);
    let mut rng = SplitMix64::new(9);
    for w in &mut f.weights {
        *w = if rng.chance(0.2) {
            0.0
        } else {
            rng.uniform([0.2, 3.0])
        };
    }
    compare(f, |p| {
        if p[0].hypot(p[1]) >= 110.0 {
            -1000
        } else if (p[0] - 20.0).hypot(p[1] + 30.0) < 20.0 {
            1300
        } else {
            40
        }
    });
}
