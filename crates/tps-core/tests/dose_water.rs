//! The dose engine against standard 6 MV water data and heterogeneity physics.
//!
//! Reference values (sources in docs/physics.md): d_max about 15 mm, PDD(10 cm) about 66-67 %
//! and TPR20,10 about 0.67-0.68 for a 10 x 10 cm field; output and PDD grow with field size;
//! 80-20 % penumbra at 10 cm depth of a few mm; 1 MU = 1 cGy at d_max for 10 x 10 at SSD 100.
//! Tolerances are those of the specification, with the reason next to each.

use std::path::Path;

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

/// A water tank with its surface at y = 0 (voxel faces), 2 mm voxels, 320 mm deep, and an
/// optional slab of another CT number between two depths.
fn tank(slab: Option<(f64, f64, i16)>) -> (Grid, Vec<f32>) {
    let g = Grid::new([150, 160, 150], [2.0; 3], [-149.0, 1.0, -149.0]).unwrap();
    let curve = DensityCurve::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ct-calibration/default.toml"),
    )
    .unwrap();
    let hu: Vec<i16> = (0..g.len())
        .map(|n| {
            let [i, j, k] = g.ijk(n);
            let y = g.position_mm(i, j, k)[1];
            match slab {
                Some((from, to, h)) if y > from && y < to => h,
                _ => 0,
            }
        })
        .collect();
    (g, curve.densities(&hu))
}

fn beam(iso_depth: f64) -> Beam {
    Beam {
        gantry_deg: 0.0,
        iso_mm: [0.0, iso_depth, 0.0],
        sad_mm: 1000.0,
        collimator_deg: 0.0,
    }
}

fn axis_dose(engine: &DoseEngine, field: &FluenceMap, depths: &[f64]) -> Vec<f64> {
    let pts: Vec<[f64; 3]> = depths.iter().map(|&d| [0.0, d, 0.0]).collect();
    engine.dose_at_points(std::slice::from_ref(field), &pts)
}

/// (d_max, PDD at each requested depth) of a square field at SSD 100 cm.
fn pdd(engine: &DoseEngine, side: f64, depths: &[f64]) -> (f64, Vec<f64>) {
    let f = FluenceMap::open_field(beam(0.0), side, side, 5.0, 1.0);
    let fine: Vec<f64> = (0..=80).map(|k| 5.0 + 0.25 * k as f64).collect();
    let d = axis_dose(engine, &f, &fine);
    let (k, max) = d
        .iter()
        .enumerate()
        .fold((0, 0.0), |a, (k, &v)| if v > a.1 { (k, v) } else { a });
    let at = axis_dose(engine, &f, depths);
    (fine[k], at.iter().map(|v| 100.0 * v / max).collect())
}

#[test]
fn depth_dose_of_a_10x10_field_matches_water_data() {
    let m = model();
    let (g, rho) = tank(None);
    let e = DoseEngine::new(&m, g, rho);
    let (dmax, p) = pdd(&e, 100.0, &[50.0, 100.0, 200.0]);
    // d_max 15 mm within 3 mm; PDD(10 cm) 66-67 % within 2 percentage points.
    assert!((dmax - 15.0).abs() <= 3.0, "d_max {dmax} mm");
    assert!((p[1] - 66.5).abs() <= 2.0, "PDD(10 cm) = {:.2} %", p[1]);
    assert!(p[0] > p[1] && p[1] > p[2], "{p:?}");
    eprintln!(
        "d_max {dmax} mm, PDD5 {:.2}, PDD10 {:.2}, PDD20 {:.2}",
        p[0], p[1], p[2]
    );
}

#[test]
fn tpr20_10_is_that_of_6_mv() {
    let m = model();
    let (g, rho) = tank(None);
    let e = DoseEngine::new(&m, g, rho);
    // Isocentric: the point at the isocentre, 10 x 10 cm there, at 10 and then 20 cm depth.
    let at = |depth: f64| {
        let f = FluenceMap::open_field(beam(depth), 100.0, 100.0, 5.0, 1.0);
        axis_dose(&e, &f, &[depth])[0]
    };
    let tpr = at(200.0) / at(100.0);
    // 0.67-0.68 within 0.02.
    assert!((tpr - 0.675).abs() <= 0.02, "TPR20,10 = {tpr:.4}");
    eprintln!("TPR20,10 {tpr:.4}");
}

#[test]
fn output_and_depth_dose_grow_with_field_size() {
    let m = model();
    let (g, rho) = tank(None);
    let e = DoseEngine::new(&m, g, rho);
    let out = |side: f64| {
        let f = FluenceMap::open_field(beam(0.0), side, side, 5.0, 1.0);
        axis_dose(&e, &f, &[15.0])[0]
    };
    let (o5, o10, o20) = (out(50.0), out(100.0), out(200.0));
    assert!(o5 < o10 && o10 < o20, "{o5} {o10} {o20}");
    // Phantom scatter is a few percent per field-size doubling for 6 MV.
    assert!(o5 / o10 > 0.9 && o20 / o10 < 1.1, "{o5} {o10} {o20}");
    let (_, p5) = pdd(&e, 50.0, &[100.0]);
    let (_, p20) = pdd(&e, 200.0, &[100.0]);
    let (_, p10) = pdd(&e, 100.0, &[100.0]);
    assert!(
        p5[0] < p10[0] && p10[0] < p20[0],
        "PDD10: {p5:?} {p10:?} {p20:?}"
    );
    eprintln!(
        "output 5/10/20: {:.4} {:.4} {:.4}; PDD10 {:.1} {:.1} {:.1}",
        o5 / o10,
        1.0,
        o20 / o10,
        p5[0],
        p10[0],
        p20[0]
    );
}

/// 80-20 % penumbra of a 10 x 10 field at 10 cm depth: 3.7 mm measured for a narrow MLC field
/// at 10 cm (J Appl Clin Med Phys 12(3):142-160, 2011, Table 2); broad fields add scatter, and
/// the beam model was fitted to 4.5 mm. Accepted: 3.5-6.5 mm.
#[test]
fn penumbra_at_10_cm_is_a_few_mm() {
    let m = model();
    let (g, rho) = tank(None);
    let e = DoseEngine::new(&m, g, rho);
    let f = FluenceMap::open_field(beam(0.0), 100.0, 100.0, 5.0, 1.0);
    let xs: Vec<f64> = (0..=400).map(|k| 40.0 + 0.05 * k as f64).collect();
    let pts: Vec<[f64; 3]> = xs.iter().map(|&x| [x, 100.0, 0.0]).collect();
    let prof = e.dose_at_points(std::slice::from_ref(&f), &pts);
    let centre = e.dose_at_points(std::slice::from_ref(&f), &[[0.0, 100.0, 0.0]])[0];
    let cross = |level: f64| {
        let k = prof
            .iter()
            .position(|&v| v < level * centre)
            .expect("profile falls");
        let (x0, x1, v0, v1) = (xs[k - 1], xs[k], prof[k - 1], prof[k]);
        x0 + (level * centre - v0) * (x1 - x0) / (v1 - v0)
    };
    let (x80, x50, x20) = (cross(0.8), cross(0.5), cross(0.2));
    let penumbra = x20 - x80;
    assert!((3.5..=6.5).contains(&penumbra), "penumbra {penumbra:.2} mm");
    // The 50 % line sits at the field edge projected to 10 cm depth: 50 mm x 1100/1000.
    assert!((x50 - 55.0).abs() < 1.0, "50 % at {x50:.2} mm");
    eprintln!("penumbra 80-20 at 10 cm: {penumbra:.2} mm, 50% at {x50:.2} mm");
}

#[test]
fn one_mu_gives_one_cgy_at_dmax_for_10x10_at_ssd_100() {
    let m = model();
    let (g, rho) = tank(None);
    let e = DoseEngine::new(&m, g, rho);
    let f = FluenceMap::open_field(beam(0.0), 100.0, 100.0, 5.0, 1.0);
    let d = axis_dose(&e, &f, &[15.0])[0];
    // Exact up to the sampling of radiological depth (1 mm samples, linear): 0.5 %.
    assert!((d - 1.0).abs() < 0.005, "{d} cGy per MU");
    // Dose is linear in MU.
    let f3 = FluenceMap::open_field(beam(0.0), 100.0, 100.0, 5.0, 3.0);
    assert!((axis_dose(&e, &f3, &[15.0])[0] - 3.0 * d).abs() < 1e-9);
}

/// Slabs change the dose behind them through the radiological depth: bone (CT 1300, relative
/// electron density 1.78) 20 mm thick adds 15.6 mm of water-equivalent depth, lung (CT -700,
/// density 0.26) 50 mm thick removes 37 mm. With the effective attenuation of 6 MV implied by
/// TPR20,10 = 0.677 (ln(1/0.677) / 100 mm = 0.0039 / mm) the dose beyond should fall by about
/// 6 % behind bone and rise by about 15 % behind lung. A pencil beam scales depth only; it does
/// not model the lateral electron disequilibrium in lung, which lowers the real increase for
/// small fields.
#[test]
fn bone_and_lung_slabs_change_the_dose_behind_them() {
    let m = model();
    let f = FluenceMap::open_field(beam(0.0), 100.0, 100.0, 5.0, 1.0);
    let water = {
        let (g, rho) = tank(None);
        let e = DoseEngine::new(&m, g, rho);
        axis_dose(&e, &f, &[120.0, 120.0 + 15.6, 120.0 - 37.0])
    };
    let bone = {
        let (g, rho) = tank(Some((30.0, 50.0, 1300)));
        axis_dose(&DoseEngine::new(&m, g, rho), &f, &[120.0])[0]
    };
    let lung = {
        let (g, rho) = tank(Some((30.0, 80.0, -700)));
        axis_dose(&DoseEngine::new(&m, g, rho), &f, &[120.0])[0]
    };
    let (rb, rl) = (bone / water[0], lung / water[0]);
    assert!((0.92..=0.96).contains(&rb), "behind bone: {rb:.4}");
    assert!((1.10..=1.20).contains(&rl), "behind lung: {rl:.4}");
    // The pencil beam's own consistency: the depth-scaled water dose, corrected for the same
    // inverse square (the point does not move), within 1 %.
    let isq = |d: f64| (1000.0 / (1000.0 + d)).powi(2);
    let expect_bone = water[1] / isq(135.6) * isq(120.0);
    let expect_lung = water[2] / isq(83.0) * isq(120.0);
    assert!(
        (bone / expect_bone - 1.0).abs() < 0.01,
        "{bone} vs {expect_bone}"
    );
    assert!(
        (lung / expect_lung - 1.0).abs() < 0.01,
        "{lung} vs {expect_lung}"
    );
    eprintln!("behind bone {rb:.4}, behind lung {rl:.4}");
}
