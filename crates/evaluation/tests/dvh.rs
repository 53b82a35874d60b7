//! DVH metrics, CI and HI on analytic dose distributions.

use std::path::Path;

use evaluation::dvh::{Dvh, homogeneity_index, paddick_ci};
use evaluation::{Evaluator, Metric, PlanDose, ProtocolEvaluator};
use patient_model::MaskOps;
use proptest::prelude::*;
use tps_api::dose::Dose;
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::protocol::Protocol;
use tps_api::structure::{Mask, Role, Structure};

fn dose_from(grid: &Grid, f: impl Fn(f64, f64, f64) -> f64) -> Vec<f32> {
    (0..grid.len())
        .map(|n| {
            let [i, j, k] = grid.ijk(n);
            let [x, y, z] = grid.position_mm(i, j, k);
            f(x, y, z) as f32
        })
        .collect()
}

#[test]
fn interpolation_convention_on_a_small_sample() {
    // Ten voxels of 1 cc with doses 10, 20, ..., 100 cGy.
    let d = Dvh::from_doses("s", (1..=10).map(|v| v as f32 * 10.0).collect(), 1.0).unwrap();
    assert_eq!(d.max(), 100.0);
    assert_eq!(d.min(), 10.0);
    assert_eq!(d.mean(), 55.0);
    assert_eq!(d.d_percent(10.0), 100.0); // one voxel: the hottest
    assert_eq!(d.d_percent(50.0), 60.0); // five voxels receive >= 60
    assert_eq!(d.d_percent(55.0), 55.0); // halfway between the 5th and 6th voxel
    assert_eq!(d.d_percent(100.0), 10.0);
    assert_eq!(d.d_cc(3.0), 80.0);
    assert_eq!(d.d_cc(50.0), 10.0); // beyond the volume: the coldest voxel
    assert_eq!(d.v_percent(60.0), 50.0);
    assert_eq!(d.v_percent(0.0), 100.0);
    assert_eq!(d.v_percent(101.0), 0.0);
}

/// A sphere of radius R with dose falling linearly with radius, D(r) = a - b r, has
/// V(>= D) / V = ((a - D) / (b R))^3, so Dx% = a - b R (x / 100)^(1/3). On a 1 mm grid the
/// voxel centres sample the radius to within a fraction of a millimetre; at b = 40 cGy/mm the
/// tolerance is 12 cGy (0.3 mm of radius).
#[test]
fn sphere_with_radial_gradient_has_the_analytic_dvh() {
    let (a, b, r) = (4000.0, 40.0, 25.0);
    let grid = Grid::covering([-27.0; 3], [27.0; 3], [1.0; 3]).unwrap();
    let mask = Mask::from_fn(grid, |x, y, z| x * x + y * y + z * z <= r * r);
    let dose = dose_from(&grid, |x, y, z| a - b * (x * x + y * y + z * z).sqrt());
    let dvh = Dvh::new("sphere", &dose, &mask).unwrap();
    for x in [2.0, 5.0, 50.0, 90.0, 95.0, 98.0] {
        let expected = a - b * r * (x / 100.0f64).cbrt();
        let got = dvh.d_percent(x);
        assert!((got - expected).abs() < 12.0, "D{x}: {got} vs {expected}");
    }
    // Mean dose: a - b * 3R/4.
    assert!(
        (dvh.mean() - (a - b * 0.75 * r)).abs() < 12.0,
        "mean {}",
        dvh.mean()
    );
    // V(a - b R/2) = 1/8 of the volume.
    assert!((dvh.v_percent(a - b * r / 2.0) - 12.5).abs() < 0.5);
}

#[test]
fn uniform_dose_gives_ci_one_and_hi_zero() {
    let grid = Grid::covering([-30.0; 3], [30.0; 3], [2.0; 3]).unwrap();
    let target = Mask::from_fn(grid, |x, y, z| x * x + y * y + z * z <= 400.0);
    let body = Mask::from_fn(grid, |_, _, _| true);
    let dose: Vec<f32> = target
        .data()
        .iter()
        .map(|&t| if t { 3600.0 } else { 1000.0 })
        .collect();
    assert_eq!(paddick_ci(&dose, &target, &body, 3600.0).unwrap(), 1.0);
    let dvh = Dvh::new("PTV", &dose, &target).unwrap();
    assert_eq!(homogeneity_index(&dvh), 0.0);
}

/// A reference isodose shifted against the target: CI = TV_RI^2 / (TV V_RI), counted exactly.
#[test]
fn ci_of_a_shifted_isodose_is_exact() {
    let grid = Grid::new([20, 20, 20], [1.0; 3], [0.0; 3]).unwrap();
    // Target: 10 x 10 x 10 voxels; isodose: same cube shifted by 2 voxels in x.
    let target = Mask::from_fn(grid, |x, y, z| {
        (5.0..15.0).contains(&x) && (5.0..15.0).contains(&y) && (5.0..15.0).contains(&z)
    });
    let hot = Mask::from_fn(grid, |x, y, z| {
        (7.0..17.0).contains(&x) && (5.0..15.0).contains(&y) && (5.0..15.0).contains(&z)
    });
    let body = Mask::from_fn(grid, |_, _, _| true);
    let dose: Vec<f32> = hot
        .data()
        .iter()
        .map(|&h| if h { 3700.0 } else { 3000.0 })
        .collect();
    let ci = paddick_ci(&dose, &target, &body, 3600.0).unwrap();
    assert!(
        (ci - 800.0f64.powi(2) / (1000.0 * 1000.0)).abs() < 1e-12,
        "{ci}"
    );
    // Nothing at the reference dose: CI = 0.
    assert_eq!(
        paddick_ci(&vec![0.0; grid.len()], &target, &body, 3600.0).unwrap(),
        0.0
    );
}

proptest! {
    /// The cumulative DVH never increases with dose, and scaling the dose scales every Dx.
    #[test]
    fn dvh_is_monotone_and_scales(doses in proptest::collection::vec(0.0f32..5000.0, 1..300), k in 0.1f64..3.0) {
        let d = Dvh::from_doses("s", doses.clone(), 0.027).unwrap();
        let curve = d.cumulative(25.0);
        for w in curve.windows(2) {
            prop_assert!(w[1].1 <= w[0].1);
        }
        prop_assert_eq!(curve[0].1, 100.0);
        let mut prev = f64::INFINITY;
        for x in [0.5, 2.0, 5.0, 50.0, 95.0, 98.0, 100.0] {
            let v = d.d_percent(x);
            prop_assert!(v <= prev);
            prev = v;
        }
        let scaled = Dvh::from_doses("s", doses.iter().map(|v| (*v as f64 * k) as f32).collect(), 0.027).unwrap();
        for x in [2.0, 50.0, 98.0] {
            let (a, b) = (d.d_percent(x) * k, scaled.d_percent(x));
            prop_assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "D{}: {} vs {}", x, a, b);
        }
    }
}

fn tiny_patient() -> Patient {
    let grid = Grid::covering([-20.0; 3], [20.0; 3], [2.0; 3]).unwrap();
    let mut p = Patient::new("eval/p01", grid, vec![0; grid.len()]).unwrap();
    let add = |p: &mut Patient, name: &str, role, f: &(dyn Fn(f64, f64, f64) -> bool + Sync)| {
        p.add_structure(Structure::new(name, role, Mask::from_fn(grid, f)))
            .unwrap()
    };
    add(&mut p, "External", Role::External, &|_, _, _| true);
    add(&mut p, "PTV", Role::Target, &|x, y, z| {
        x.abs() < 8.0 && y.abs() < 8.0 && z.abs() < 8.0
    });
    add(&mut p, "Bladder", Role::Oar, &|x, _, _| x > 12.0);
    p
}

fn protocol(metrics: &str) -> Protocol {
    let text = format!(
        "[site]\nname = \"t\"\n[prescription]\ntarget = \"PTV\"\ndose-cgy = 3600.0\nfractions = 20\n\
         volume-percent = 95.0\n[evaluation]\nmetrics = [{metrics}]\n"
    );
    Protocol::parse(&text, Path::new("proto.toml")).unwrap()
}

#[test]
fn protocol_evaluator_reports_the_protocols_metrics() {
    let p = tiny_patient();
    let ptv = &p.structure("PTV").unwrap().mask;
    let dose: Vec<f32> = ptv
        .data()
        .iter()
        .map(|&t| if t { 3600.0 } else { 1200.0 })
        .collect();
    let ev = ProtocolEvaluator::from_protocol(&protocol(
        "\"PTV: D95\", \"Bladder: Dmean\", \"CI\", \"HI\", \"MU\"",
    ))
    .unwrap();
    let dose = Dose::new(*p.grid(), dose).unwrap();
    let values = ev
        .evaluate(&PlanDose {
            patient: &p,
            dose: &dose,
            mu_per_fraction: Some(812.5),
        })
        .unwrap();
    let v: Vec<Option<f64>> = values.iter().map(|m| m.value).collect();
    assert_eq!(
        v,
        vec![
            Some(3600.0),
            Some(1200.0),
            Some(1.0),
            Some(0.0),
            Some(812.5)
        ]
    );
    assert_eq!(values[0].metric, Metric::parse("PTV: D95", "").unwrap());
}

#[test]
fn protocol_evaluator_refuses_bad_metrics_and_structures() {
    // A malformed metric is refused when the protocol is read.
    let text = "[site]\nname = \"t\"\n[prescription]\ntarget = \"PTV\"\ndose-cgy = 3600.0\n\
                fractions = 20\nvolume-percent = 95.0\n[evaluation]\n\
                metrics = [\"PTV: D95\", \"Bladder: D1O0\"]\n";
    let e = Protocol::parse(text, Path::new("proto.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("proto.toml") && e.contains("evaluation.metrics[1]") && e.contains("D1O0"),
        "{e}"
    );
    let p = tiny_patient();
    let dose = vec![0.0f32; p.grid().len()];
    let ev = ProtocolEvaluator::from_protocol(&protocol("\"Rectum: D50\"")).unwrap();
    let zero = Dose::new(*p.grid(), dose.clone()).unwrap();
    let e = ev
        .evaluate(&PlanDose {
            patient: &p,
            dose: &zero,
            mu_per_fraction: None,
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("proto.toml") && e.contains("evaluation.metrics[0]") && e.contains("Rectum"),
        "{e}"
    );
    // A dose on another grid (one slice short).
    let g = p.grid();
    let short = Grid::new(
        [g.dims[0], g.dims[1], g.dims[2] - 1],
        g.spacing_mm,
        g.origin_mm,
    )
    .unwrap();
    let other = Dose::new(short, dose[..short.len()].to_vec()).unwrap();
    let e = ev
        .evaluate(&PlanDose {
            patient: &p,
            dose: &other,
            mu_per_fraction: None,
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("voxels"), "{e}");
    let mut nan = dose.clone();
    let inside = p
        .structure("PTV")
        .unwrap()
        .mask
        .data()
        .iter()
        .position(|&v| v)
        .unwrap();
    nan[inside] = f32::NAN;
    let ev = ProtocolEvaluator::from_protocol(&protocol("\"PTV: D95\"")).unwrap();
    let nan = Dose::new(*p.grid(), nan).unwrap();
    let e = ev
        .evaluate(&PlanDose {
            patient: &p,
            dose: &nan,
            mu_per_fraction: None,
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("NaN"), "{e}");
}

#[test]
fn a_dose_or_mu_that_is_not_a_dose_is_refused_and_an_undefined_metric_is_missing() {
    let p = tiny_patient();
    let ev = ProtocolEvaluator::from_protocol(&protocol("\"PTV: D98\", \"HI\", \"MU\"")).unwrap();
    let eval = |dose: Vec<f32>, mu: Option<f64>| {
        let dose = Dose::new(*p.grid(), dose).unwrap();
        ev.evaluate(&PlanDose {
            patient: &p,
            dose: &dose,
            mu_per_fraction: mu,
        })
    };
    let n = p.grid().len();
    // A negative voxel (it once gave PTV D98 = -5000 cGy) and a NaN voxel, named by index.
    let mut dose = vec![3600.0f32; n];
    dose[5] = -5000.0;
    let e = eval(dose.clone(), None).unwrap_err().to_string();
    assert!(e.contains("voxel 5") && e.contains("-5000"), "{e}");
    dose[5] = f32::NAN;
    let e = eval(dose, None).unwrap_err().to_string();
    assert!(e.contains("voxel 5") && e.contains("NaN"), "{e}");
    for mu in [-5.0, 0.0, f64::NAN] {
        let e = eval(vec![3600.0; n], Some(mu)).unwrap_err().to_string();
        assert!(e.contains("MU per fraction"), "{mu}: {e}");
    }
    // No dose at all: HI is undefined (D50 = 0) and is missing, not NaN.
    let values = eval(vec![0.0; n], Some(500.0)).unwrap();
    assert_eq!(values[0].value, Some(0.0));
    assert_eq!(values[1].value, None, "HI of a dose of zero");
    assert_eq!(values[2].value, Some(500.0));
    let csv = evaluation::tables::plan::metrics_csv(&values);
    assert!(csv.contains("HI,n/a,") && !csv.contains("NaN"), "{csv}");
}
