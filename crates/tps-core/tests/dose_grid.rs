//! Whole-grid dose (convolved scatter maps) against direct beamlet superposition.

use std::path::Path;

use phantoms::rng::SplitMix64;
use tps_api::grid::Grid;
use tps_core::dose::calibration::DensityCurve;
use tps_core::dose::engine::DoseEngine;
use tps_core::dose::geometry::{Beam, FluenceMap};
use tps_core::dose::model::BeamModel;

fn model() -> BeamModel {
    BeamModel::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/machines/generic-6mv.toml"),
    )
    .unwrap()
}

/// Grid dose within 1 % of the maximum of direct superposition everywhere: the scatter maps are
/// sampled every 4 mm and at widths 20 % apart, interpolated linearly; scatter varies on a
/// scale of several centimetres, so the interpolation error stays well below 1 %. The same
/// holds for the prepared-points path (rays traced once, the fluence changed afterwards).
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
    // Prepared with an open field, evaluated with the real one.
    let mut open = field.clone();
    open.weights.iter_mut().for_each(|w| *w = 1.0);
    let prepared = e.prepare_points(std::slice::from_ref(&open.beam), &pts);
    assert_eq!(prepared.len(), pts.len());
    let at_points = e.dose_at_prepared(std::slice::from_ref(&field), &prepared);
    let worst = at_points
        .iter()
        .zip(&direct)
        .map(|(g, d)| (g - d).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 0.01 * max,
        "prepared points: worst {worst} of max {max}"
    );
}

#[test]
fn open_field_in_water() {
    let beam = Beam {
        gantry_deg: 0.0,
        iso_mm: [0.0; 3],
        sad_mm: 1000.0,
        collimator_deg: 0.0,
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
        collimator_deg: 0.0,
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

/// A rotated collimator: the grid path still agrees with direct superposition.
#[test]
fn modulated_field_with_the_collimator_at_30_degrees() {
    let beam = Beam {
        gantry_deg: 300.0,
        iso_mm: [0.0; 3],
        sad_mm: 1000.0,
        collimator_deg: 30.0,
    };
    let mut f = FluenceMap::open_field(beam, 100.0, 60.0, 5.0, 1.0);
    let mut rng = SplitMix64::new(4);
    for w in &mut f.weights {
        *w = rng.uniform([0.2, 2.0]);
    }
    compare(f, |p| if p[0].hypot(p[1]) < 110.0 { 0 } else { -1000 });
}

/// A 100 x 40 mm field at collimator 90 covers exactly what a 40 x 100 mm field covers at
/// collimator 0 (both tile the same rectangle, lattice turned by a quarter): their doses agree
/// to float rounding and scatter-table interpolation, 0.5 % of the maximum.
#[test]
fn a_quarter_turn_of_the_collimator_swaps_the_field_sides() {
    let m = model();
    let ct = Grid::new([50, 50, 50], [4.0; 3], [-98.0, -98.0, -98.0]).unwrap();
    let e = DoseEngine::new(&m, ct, vec![1.0; ct.len()]);
    let beam = |collimator_deg| Beam {
        gantry_deg: 60.0,
        iso_mm: [0.0; 3],
        sad_mm: 1000.0,
        collimator_deg,
    };
    let dg = Grid::new([25, 25, 25], [8.0; 3], [-96.0, -96.0, -96.0]).unwrap();
    let turned = e.dose_on_grid(
        &[FluenceMap::open_field(beam(90.0), 100.0, 40.0, 5.0, 1.0)],
        &dg,
        None,
    );
    let plain = e.dose_on_grid(
        &[FluenceMap::open_field(beam(0.0), 40.0, 100.0, 5.0, 1.0)],
        &dg,
        None,
    );
    let max = plain.iter().cloned().fold(0.0f32, f32::max);
    assert!(max > 0.1);
    let worst = turned
        .iter()
        .zip(&plain)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 0.005 * max, "worst {worst} of {max}");
    // And the field is not symmetric: without the turn the doses differ.
    let unturned = e.dose_on_grid(
        &[FluenceMap::open_field(beam(0.0), 100.0, 40.0, 5.0, 1.0)],
        &dg,
        None,
    );
    let differ = unturned
        .iter()
        .zip(&plain)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(differ > 0.3 * max, "{differ} of {max}");
}

mod matrix {
    use super::*;
    use tps_core::dose::matrix::{InfluenceMatrix, MatrixSettings};

    fn setup() -> (BeamModel, Grid, Vec<f32>, Vec<FluenceMap>, Grid) {
        let m = model();
        let ct = Grid::new([40, 40, 30], [5.0; 3], [-97.5, -97.5, -72.5]).unwrap();
        let rho: Vec<f32> = (0..ct.len())
            .map(|n| {
                let [i, j, k] = ct.ijk(n);
                let p = ct.position_mm(i, j, k);
                if p[0].hypot(p[1]) < 90.0 { 1.0 } else { 0.001 }
            })
            .collect();
        let mut rng = SplitMix64::new(3);
        let fields: Vec<FluenceMap> = [0.0, 120.0, 240.0]
            .iter()
            .map(|&g| {
                let mut f = FluenceMap::open_field(
                    Beam {
                        gantry_deg: g,
                        iso_mm: [0.0; 3],
                        sad_mm: 1000.0,
                        collimator_deg: 0.0,
                    },
                    40.0,
                    30.0,
                    5.0,
                    1.0,
                );
                for w in &mut f.weights {
                    *w = rng.uniform([0.5, 2.0]);
                }
                f
            })
            .collect();
        let dg = Grid::new([20, 20, 15], [10.0; 3], [-95.0, -95.0, -70.0]).unwrap();
        (m, ct, rho, fields, dg)
    }

    /// With no cutoff and no threshold the matrix reproduces direct superposition (to f32).
    #[test]
    fn untruncated_matrix_equals_superposition() {
        let (m, ct, rho, fields, dg) = setup();
        let e = DoseEngine::new(&m, ct, rho);
        let rows: Vec<u32> = (0..dg.len() as u32).step_by(7).collect();
        let a = InfluenceMatrix::compute(
            &e,
            &fields,
            &dg,
            rows.clone(),
            MatrixSettings {
                cutoff_mm: 1000.0,
                threshold: 0.0,
            },
        )
        .unwrap();
        assert_eq!(a.n_cols(), 3 * 8 * 6);
        let x = a.weights_of(&fields);
        let mut y = vec![0.0f32; a.n_rows()];
        a.forward(&x, &mut y);
        let pts: Vec<[f64; 3]> = rows
            .iter()
            .map(|&r| {
                let [i, j, k] = dg.ijk(r as usize);
                dg.position_mm(i, j, k)
            })
            .collect();
        let direct = e.dose_at_points(&fields, &pts);
        let max = direct.iter().cloned().fold(0.0, f64::max);
        // The matrix stores each entry to 1/65535 of its row's largest entry (error at most
        // 7.6e-6 of it per entry); the 144 entries of a row, weighted up to 2 MU, round with
        // mixed signs, so rows agree within 2e-4 of the maximum (measured: under 5e-5).
        for (d, v) in direct.iter().zip(&y) {
            assert!((d - *v as f64).abs() < 2e-4 * max, "{d} vs {v}");
        }
    }

    /// <A x, y> = <x, A^T y> for the transposed product.
    #[test]
    fn transpose_is_the_adjoint() {
        let (m, ct, rho, fields, dg) = setup();
        let e = DoseEngine::new(&m, ct, rho);
        let rows: Vec<u32> = (0..dg.len() as u32).collect();
        let a =
            InfluenceMatrix::compute(&e, &fields, &dg, rows, MatrixSettings::default()).unwrap();
        let mut rng = SplitMix64::new(5);
        let x: Vec<f32> = (0..a.n_cols())
            .map(|_| rng.uniform([0.0, 1.0]) as f32)
            .collect();
        let yv: Vec<f32> = (0..a.n_rows())
            .map(|_| rng.uniform([-1.0, 1.0]) as f32)
            .collect();
        let mut ax = vec![0.0f32; a.n_rows()];
        a.forward(&x, &mut ax);
        let mut aty = vec![0.0f32; a.n_cols()];
        a.transpose(&yv, &mut aty);
        let lhs: f64 = ax.iter().zip(&yv).map(|(p, q)| *p as f64 * *q as f64).sum();
        let rhs: f64 = x.iter().zip(&aty).map(|(p, q)| *p as f64 * *q as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    /// The default truncation drops broad scatter; the measured deficit is reported, positive
    /// and below a quarter of the dose.
    #[test]
    fn truncation_error_is_measured() {
        let (m, ct, rho, fields, dg) = setup();
        let e = DoseEngine::new(&m, ct, rho);
        let rows: Vec<u32> = (0..dg.len() as u32).collect();
        let a =
            InfluenceMatrix::compute(&e, &fields, &dg, rows, MatrixSettings::default()).unwrap();
        let full = e.dose_on_grid(&fields, &dg, None);
        let (mean, worst) = a.truncation_error(&fields, &full);
        assert!(
            mean > 0.0 && mean < 0.25 && worst < 0.3,
            "mean {mean}, worst {worst}"
        );
        let untruncated = InfluenceMatrix::compute(
            &e,
            &fields,
            &dg,
            (0..dg.len() as u32).collect(),
            MatrixSettings {
                cutoff_mm: 1000.0,
                threshold: 0.0,
            },
        )
        .unwrap();
        let (m0, w0) = untruncated.truncation_error(&fields, &full);
        assert!(m0.abs() < 0.01 && w0 < 0.01, "untruncated: {m0} {w0}");
    }

    #[test]
    fn bad_settings_are_refused() {
        let (m, ct, rho, fields, dg) = setup();
        let e = DoseEngine::new(&m, ct, rho);
        let e1 = InfluenceMatrix::compute(
            &e,
            &fields,
            &dg,
            vec![0],
            MatrixSettings {
                cutoff_mm: 0.0,
                threshold: 0.0,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e1.contains("cutoff-mm"), "{e1}");
        let e2 =
            InfluenceMatrix::compute(&e, &fields, &dg, vec![u32::MAX], MatrixSettings::default())
                .unwrap_err()
                .to_string();
        assert!(e2.contains("rows"), "{e2}");
    }
}
