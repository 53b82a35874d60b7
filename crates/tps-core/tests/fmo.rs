//! Fluence map optimization on a small phantom: gradients against finite differences, and an
//! optimization that drives the dose towards the goals.

mod common;

use phantoms::rng::SplitMix64;
use tps_api::beams::Beams;
use tps_api::objectives::{Objective, ObjectiveKind};
use tps_api::patient::Patient;
use tps_core::dose::calibration::DensityCurve;
use tps_core::dose::engine::DoseEngine;
use tps_core::dose::geometry::FluenceMap;
use tps_core::dose::matrix::{InfluenceMatrix, MatrixSettings};
use tps_core::dose::model::BeamModel;
use tps_core::dose::plan::{BeamSetup, dose_grid_around, setup_fields};
use tps_core::dose::rows::optimization_rows;
use tps_core::optimize::fmo::{FluenceObjective, bind, neighbour_pairs};
use tps_core::optimize::lbfgs::{Problem, Settings, minimize};

fn phantom() -> Patient {
    common::cylinder_phantom("fmo/p01")
}

fn objectives() -> Vec<Objective> {
    let o = |id: &str, s: &str, kind, w, g| Objective {
        id: id.into(),
        structure: s.into(),
        kind,
        weight: w,
        goal_cgy: g,
        ideal_range: [1e-4, 1e-2],
    };
    vec![
        o("ptv-min", "PTV", ObjectiveKind::MinDose, 100.0, 190.0),
        o(
            "ptv-d95",
            "PTV",
            ObjectiveKind::DvhMin {
                volume_percent: 95.0,
            },
            100.0,
            200.0,
        ),
        o("ptv-max", "PTV", ObjectiveKind::MaxDose, 100.0, 210.0),
        o("oar-mean", "OAR", ObjectiveKind::MeanDose, 5.0, 60.0),
        o(
            "oar-d10",
            "OAR",
            ObjectiveKind::DvhMax {
                volume_percent: 10.0,
            },
            5.0,
            120.0,
        ),
    ]
}

struct Case {
    model: BeamModel,
    patient: Patient,
}

fn case() -> Case {
    Case {
        model: common::machine(),
        patient: phantom(),
    }
}

/// Beams (one arc of `beams`) through the PTV and their influence matrix on a dose grid of
/// `grid_mm` with the PTV, the OAR and every `stride`-th body voxel as rows.
fn setup(
    c: &Case,
    beams: usize,
    grid_mm: f64,
    stride: usize,
    settings: MatrixSettings,
) -> (Vec<FluenceMap>, InfluenceMatrix) {
    let p = &c.patient;
    let fields = setup_fields(
        p,
        "PTV",
        &Beams::full_arcs(1, beams),
        &BeamSetup::default(),
        "test",
    )
    .unwrap();
    let dg = dose_grid_around(&p.structure("External").unwrap().mask, grid_mm).unwrap();
    let rows =
        optimization_rows(p, &dg, &["PTV", "OAR"], ("External", stride), None, "test").unwrap();
    let e = DoseEngine::new(
        &c.model,
        *p.grid(),
        DensityCurve::water().densities(p.ct_hu()),
    );
    let m = InfluenceMatrix::compute(&e, &fields, &dg, rows, settings).unwrap();
    (fields, m)
}

#[test]
fn gradient_matches_finite_differences() {
    let c = case();
    let p = &c.patient;
    let (fields, m) = setup(&c, 5, 5.0, 3, MatrixSettings::default());
    let bound = bind(&objectives(), p, &m, None, "PTV", "test").unwrap();
    let mut f = FluenceObjective::new(&m, bound, neighbour_pairs(&m, &fields), 1e-4);
    let mut rng = SplitMix64::new(1);
    let x: Vec<f64> = (0..m.n_cols()).map(|_| rng.uniform([0.5, 3.0])).collect();
    let mut g = vec![0.0; x.len()];
    let value = f.eval(&x, &mut g);
    // The value alone, from the row doses, is the same number without the products.
    let dose = f.dose_of(&x);
    assert_eq!(f.total_of(&x, &dose), value);
    let mut scratch = vec![0.0; x.len()];
    let mut checked = 0;
    for k in (0..x.len()).step_by(x.len() / 12 + 1) {
        let h = 1e-2;
        let mut up = x.clone();
        up[k] += h;
        let mut dn = x.clone();
        dn[k] -= h;
        let fd = (f.eval(&up, &mut scratch) - f.eval(&dn, &mut scratch)) / (2.0 * h);
        // The matrix products run in f32: agreement to 1e-3 relative (or 1e-6 absolute).
        assert!(
            (fd - g[k]).abs() <= 1e-3 * g[k].abs() + 1e-6,
            "beamlet {k}: finite difference {fd} vs gradient {}",
            g[k]
        );
        checked += 1;
    }
    assert!(checked >= 10);
}

#[test]
fn optimization_reaches_the_target_goals_and_spares_the_oar() {
    let c = case();
    let p = &c.patient;
    let (fields, m) = setup(
        &c,
        9,
        4.0,
        2,
        MatrixSettings {
            cutoff_mm: 1000.0,
            threshold: 0.0,
        },
    );
    let bound = bind(&objectives(), p, &m, None, "PTV", "test").unwrap();
    let mut f = FluenceObjective::new(&m, bound, neighbour_pairs(&m, &fields), 0.0);
    let x0 = vec![1.0; m.n_cols()];
    let mut g = vec![0.0; m.n_cols()];
    let f0 = f.eval(&x0, &mut g);
    let s = minimize(
        &mut f,
        &x0,
        &vec![0.0; m.n_cols()],
        &Settings {
            max_iterations: 300,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(s.value < 0.01 * f0, "objective {f0} -> {}", s.value);
    let dose = f.dose_of(&s.x);
    let values = f.values(&dose);
    // The PTV objectives end near their goals (their values are small), and the OAR mean is
    // pushed down compared with an unmodulated fluence scaled to the same PTV dose.
    assert!(values[0] < 5e-3 && values[2] < 5e-3, "{values:?}");
    let open = f.dose_of(&x0);
    let oar_rows = f.objectives[3].rows.clone();
    let mean = |d: &[f32]| {
        oar_rows.iter().map(|&r| d[r as usize] as f64).sum::<f64>() / oar_rows.len() as f64
    };
    let ptv_rows = f.objectives[1].rows.clone();
    let ptv_mean = |d: &[f32]| {
        ptv_rows.iter().map(|&r| d[r as usize] as f64).sum::<f64>() / ptv_rows.len() as f64
    };
    let open_scaled = mean(&open) * ptv_mean(&dose) / ptv_mean(&open);
    assert!(
        mean(&dose) < 0.9 * open_scaled,
        "OAR mean {} vs open {}",
        mean(&dose),
        open_scaled
    );
    assert!(s.x.iter().all(|&v| v >= 0.0));
}
