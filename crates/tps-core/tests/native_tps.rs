//! The native TPS through the `Tps` trait on a small phantom.

mod common;

use std::path::Path;

use tps_api::objectives::RangeStatus;
use tps_api::patient::Patient;
use tps_api::protocol::Protocol;
use tps_api::structure::Role;
use tps_api::{GoalChange, Normalization, Tps};
use tps_core::dose::calibration::DensityCurve;
use tps_core::dose::model::BeamModel;
use tps_core::native::{NativeSettings, NativeTps};

fn phantom() -> Patient {
    common::cylinder_phantom("tps/p01")
}

const PROTOCOL: &str = r#"
[site]
name = "test"
[prescription]
target = "PTV"
dose-cgy = 200.0
fractions = 1
volume-percent = 95.0
[planning]
max-iterations = 5
coverage-window = [1.0, 1.02]
[beams]
arcs = 1
beams-per-arc = 9
dose-grid-mm = 4.0
[[objectives]]
id = "ptv-min"
structure = "PTV"
type = "min-dose"
weight = 100.0
goal-cgy = 204.0
ideal-range = [1e-4, 1e-2]
[[objectives]]
id = "ptv-max"
structure = "PTV"
type = "max-dose"
weight = 100.0
goal-cgy = 210.0
ideal-range = [1e-4, 1e-2]
[[objectives]]
id = "oar-mean"
structure = "OAR"
type = "mean-dose"
weight = 5.0
goal-cgy = 250.0
ideal-range = [1e-2, 5e-2]
[[auxiliary]]
name = "Ring"
op = "ring"
source = "PTV"
gap-mm = 5.0
thickness-mm = 15.0
crop-to = "External"
"#;

fn model() -> BeamModel {
    common::machine()
}

fn settings() -> NativeSettings {
    NativeSettings {
        body_stride: 2,
        ..Default::default()
    }
}

#[test]
fn optimize_report_adjust_normalize_and_deliver() {
    let m = model();
    let proto = Protocol::parse(PROTOCOL, Path::new("test.toml")).unwrap();
    let mut tps =
        NativeTps::open(phantom(), proto, &m, &DensityCurve::water(), settings()).unwrap();
    assert!(tps.patient().structure("Ring").is_some());
    let r1 = tps.optimize(&[]).unwrap();
    assert_eq!(r1.iteration, 1);
    assert_eq!(r1.objectives.len(), 3);
    let oar = &r1.objectives[2];
    assert_eq!(
        (oar.id.as_str(), oar.role, oar.goal_cgy),
        ("oar-mean", Role::Oar, 250.0)
    );
    // The OAR mean is far below a loose goal: value 0, below its range.
    assert_eq!(oar.value, 0.0);
    assert_eq!(oar.status, RangeStatus::Below);
    assert!(!r1.criteria_met());
    // The PTV is near its goals in the full (corrected) dose.
    assert!(
        (r1.coverage_cgy - 204.0).abs() < 20.0,
        "D95 {}",
        r1.coverage_cgy
    );
    // Tighten the OAR goal below its current mean: its value rises, the mean falls.
    let before = oar.current_cgy;
    let r2 = tps
        .optimize(&[GoalChange {
            id: "oar-mean".into(),
            goal_cgy: 0.2 * before,
        }])
        .unwrap();
    assert_eq!(r2.iteration, 2);
    assert!(
        r2.objectives[2].current_cgy < before,
        "{} -> {}",
        before,
        r2.objectives[2].current_cgy
    );
    // It reaches (about) the tighter goal while the target stays covered.
    assert!(
        r2.objectives[2].current_cgy < 0.3 * before,
        "{:?}",
        r2.objectives[2]
    );
    assert!(
        (r2.coverage_cgy - 204.0).abs() < 20.0,
        "D95 {}",
        r2.coverage_cgy
    );
    // Unknown ids and absurd goals are refused and leave the plan as it was.
    let e = tps
        .optimize(&[GoalChange {
            id: "bowel".into(),
            goal_cgy: 100.0,
        }])
        .unwrap_err()
        .to_string();
    assert!(e.contains("bowel") && e.contains("no objective"), "{e}");
    let e = tps
        .optimize(&[GoalChange {
            id: "oar-mean".into(),
            goal_cgy: f64::NAN,
        }])
        .unwrap_err()
        .to_string();
    assert!(e.contains("goal-cgy") && e.contains("NaN"), "{e}");
    assert_eq!(tps.objectives().unwrap()[2].goal_cgy, 0.2 * before);
    // Normalization makes D95 the prescription exactly.
    let factor = tps.normalize(Normalization::Report).unwrap();
    assert!(factor > 0.5 && factor < 2.0);
    // The report of the normalized plan sees the prescription at D95 and meets it.
    let after = tps.report().unwrap();
    assert!(
        (after.coverage_cgy - 200.0).abs() < 1e-3 * 200.0,
        "{}",
        after.coverage_cgy
    );
    // It is the last optimization's plan, scaled: same iteration, solver work and goals.
    assert_eq!(after.iteration, r2.iteration);
    assert_eq!(after.solver_iterations, r2.solver_iterations);
    assert_eq!(after.objectives[2].goal_cgy, r2.objectives[2].goal_cgy);
    let dose = tps.dose().unwrap();
    assert_eq!(dose.grid(), tps.patient().grid());
    assert_eq!(dose.cgy().len(), tps.patient().grid().len());
    let ptv = &tps.patient().structure("PTV").unwrap().mask;
    let mut d: Vec<f32> = dose
        .cgy()
        .iter()
        .zip(ptv.data())
        .filter(|(_, m)| **m)
        .map(|(d, _)| *d)
        .collect();
    d.sort_unstable_by(|a, b| b.total_cmp(a));
    let d95 = d[(0.95 * d.len() as f64).ceil() as usize - 1];
    // Rows sit on the 4 mm dose grid, the check on the CT grid: 2 %.
    assert!((d95 as f64 - 200.0).abs() < 4.0, "D95 {d95}");
    let plan = tps.plan().unwrap();
    assert_eq!(plan.beam_mu.len(), 9);
    assert!(plan.mu_per_fraction > 0.0 && plan.beam_mu.iter().all(|m| m.is_finite() && *m >= 0.0));
}

#[test]
fn opening_refuses_protocols_that_do_not_fit_the_patient() {
    let m = model();
    let bad = Protocol::parse(
        &PROTOCOL.replace("structure = \"OAR\"", "structure = \"Kidney_L\""),
        Path::new("test.toml"),
    )
    .unwrap();
    let e = NativeTps::open(phantom(), bad, &m, &DensityCurve::water(), settings())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("test.toml") && e.contains("objectives[2].structure") && e.contains("Kidney_L"),
        "{e}"
    );
}

/// A protocol asking for an energy the machine does not have is refused when the case opens,
/// naming the field, the value and the machine; the machine's own energy is accepted.
#[test]
fn opening_refuses_an_energy_the_machine_does_not_have() {
    let m = model();
    let with = |energy: &str| {
        let text = PROTOCOL.replace("[beams]\n", &format!("[beams]\nenergy-mv = {energy}\n"));
        NativeTps::open(
            phantom(),
            Protocol::parse(&text, Path::new("test.toml")).unwrap(),
            &m,
            &DensityCurve::water(),
            settings(),
        )
    };
    let e = with("10").err().unwrap().to_string();
    assert!(
        e.contains("test.toml")
            && e.contains("beams.energy-mv")
            && e.contains("10")
            && e.contains(&m.name),
        "{e}"
    );
    with("6").unwrap();
}

/// Settings outside their ranges are refused when the case opens, before the matrix.
#[test]
fn opening_refuses_settings_outside_their_ranges() {
    let m = model();
    let proto = || Protocol::parse(PROTOCOL, Path::new("test.toml")).unwrap();
    let refused = |s: NativeSettings, field: &str, range: &str| {
        let e = NativeTps::open(phantom(), proto(), &m, &DensityCurve::water(), s)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(field) && e.contains(range), "{e}");
    };
    for smoothing in [-1e-9, 1.1, 1e300, f64::NAN] {
        refused(
            NativeSettings {
                smoothing,
                ..settings()
            },
            "smoothing",
            "0 to 1 per MU^2",
        );
    }
    for body_stride in [0, 17] {
        refused(
            NativeSettings {
                body_stride,
                ..settings()
            },
            "body-stride",
            "1 to 16",
        );
    }
    for warm_max_iterations in [0, 100_001] {
        refused(
            NativeSettings {
                warm_max_iterations,
                ..settings()
            },
            "warm-max-iterations",
            "1 to 100000",
        );
    }
    let mut s = settings();
    s.solver.max_iterations = 0;
    refused(s, "max-iterations", "1 to 100000");
    refused(
        NativeSettings {
            structure_sample: Some(10),
            ..settings()
        },
        "structure-sample",
        "at least 100",
    );
}

#[test]
fn smoothing_lowers_the_monitor_units() {
    let m = model();
    let mu = |smoothing: f64| {
        let proto = Protocol::parse(PROTOCOL, Path::new("test.toml")).unwrap();
        let mut tps = NativeTps::open(
            phantom(),
            proto,
            &m,
            &DensityCurve::water(),
            NativeSettings {
                smoothing,
                ..settings()
            },
        )
        .unwrap();
        tps.optimize(&[]).unwrap();
        tps.normalize(Normalization::Report).unwrap();
        tps.plan().unwrap().mu_per_fraction
    };
    let (rough, smooth) = (mu(0.0), mu(1e-3));
    assert!(
        smooth < rough,
        "MU with smoothing {smooth} vs without {rough}"
    );
}

/// Normalizing on the dose puts the CT grid's D95 (as the evaluation reads it) at the
/// prescription, and scales the MU with the plan.
#[test]
fn normalization_on_the_dose_meets_the_prescription_as_evaluated() {
    let m = model();
    let proto = Protocol::parse(PROTOCOL, Path::new("test.toml")).unwrap();
    let mut tps =
        NativeTps::open(phantom(), proto, &m, &DensityCurve::water(), settings()).unwrap();
    tps.optimize(&[]).unwrap();
    let mu = tps.plan().unwrap().mu_per_fraction;
    let factor = tps.normalize(Normalization::Dose).unwrap();
    assert!(factor > 0.5 && factor < 2.0, "{factor}");
    let dose = tps.dose().unwrap();
    let ptv = &tps.patient().structure("PTV").unwrap().mask;
    let d95 = tps_api::dose_volume::coverage_cgy(dose.cgy(), ptv, 95.0);
    // Single-precision dose: 1e-5 of the prescription.
    assert!((d95 - 200.0).abs() < 2e-3, "D95 {d95}");
    let scaled = tps.plan().unwrap().mu_per_fraction;
    assert!(
        (scaled / mu - factor).abs() < 1e-9 * factor,
        "{mu} -> {scaled}"
    );
    // The dose is the plan's: computing it afresh gives the same values.
    tps.optimize(&[]).unwrap();
    tps.normalize(Normalization::Dose).unwrap();
    let again = tps.dose().unwrap();
    assert_eq!(again.grid(), dose.grid());
}

/// The native TPS passes the conformance suite every `Tps` must pass.
#[test]
fn native_tps_conforms() {
    let m = model();
    let proto = Protocol::parse(PROTOCOL, Path::new("test.toml")).unwrap();
    let patient = phantom();
    let target = patient.structure("PTV").unwrap().mask.clone();
    let expect = tps_api::conformance::Expectations {
        prescription_cgy: 200.0,
        volume_percent: 95.0,
        dose_grid: Some(*patient.grid()),
        target: Some(target),
        // The scatter correction is refreshed after every solve, so the objective a warm
        // start minimizes differs slightly from the one that measured the plan before it.
        // Measured on this case: re-optimizing lowers the total by 77 %, once more by 0.35 %;
        // 0.1 % of slack covers the refreshed correction without hiding a real regression.
        warm_start_tolerance: 1e-3,
    };
    tps_api::conformance::check_all(
        &mut || {
            Box::new(
                NativeTps::open(
                    patient.clone(),
                    proto.clone(),
                    &m,
                    &DensityCurve::water(),
                    settings(),
                )
                .unwrap(),
            )
        },
        &expect,
    );
}

/// The gEUD and fall-off objectives act on the dose as their definitions say: a gEUD (a = 8)
/// objective on the OAR lowers the OAR's gEUD, and a fall-off objective on the body lowers the
/// dose 15-40 mm from the target, each against the same plan without it, at the same coverage
/// (every plan normalized to PTV D95 = Rx). Their reports carry the kind and a current value
/// consistent with their definitions.
#[test]
fn geud_and_fall_off_objectives_shape_the_dose() {
    use tps_api::objectives::geud;
    const GEUD: &str = "[[objectives]]\nid = \"oar-geud\"\nstructure = \"OAR\"\ntype = \"geud\"\n\
                        a = 8.0\nweight = 30.0\ngoal-cgy = 40.0\nideal-range = [1e-4, 1e-2]\n";
    const FALL_OFF: &str = "[[objectives]]\nid = \"fall-off\"\nstructure = \"External\"\n\
                            type = \"fall-off\"\nend-percent = 20.0\nfall-off-mm = 8.0\n\
                            weight = 30.0\ngoal-cgy = 200.0\nideal-range = [1e-4, 1e-2]\n";
    let m = model();
    let plan = |extra: &str| {
        let text = format!("{PROTOCOL}{extra}");
        let proto = Protocol::parse(&text, Path::new("test.toml")).unwrap();
        let mut tps =
            NativeTps::open(phantom(), proto, &m, &DensityCurve::water(), settings()).unwrap();
        let report = tps.optimize(&[]).unwrap();
        tps.normalize(Normalization::Dose).unwrap();
        let dose = tps.dose().unwrap();
        (report, dose.cgy().to_vec(), tps.patient().clone())
    };
    let (_, base, p) = plan("");
    let (r_geud, with_geud, _) = plan(GEUD);
    let (r_fall, with_fall, _) = plan(FALL_OFF);

    let oar = &p.structure("OAR").unwrap().mask;
    let in_oar = |d: &[f32]| -> Vec<f32> {
        d.iter()
            .zip(oar.data())
            .filter(|(_, m)| **m)
            .map(|(v, _)| *v)
            .collect()
    };
    let (g0, g1) = (
        geud(8.0, &in_oar(&base)).0,
        geud(8.0, &in_oar(&with_geud)).0,
    );
    assert!(g1 < 0.9 * g0, "OAR gEUD(8): {g0:.1} -> {g1:.1} cGy");
    let o = r_geud
        .objectives
        .iter()
        .find(|o| o.id == "oar-geud")
        .unwrap();
    assert_eq!(o.kind, "gEUD (a = 8)");
    assert!(o.value >= 0.0 && o.current_cgy > 0.0, "{o:?}");

    let ptv = &p.structure("PTV").unwrap().mask;
    let body = &p.structure("External").unwrap().mask;
    let d2 = patient_model::morph::squared_distance_mm2(p.grid(), ptv.data());
    let shell_mean = |d: &[f32]| {
        let (mut s, mut n) = (0.0, 0);
        for ((v, r2), b) in d.iter().zip(&d2).zip(body.data()) {
            if *b && (225.0..1600.0).contains(r2) {
                s += *v as f64;
                n += 1;
            }
        }
        s / n as f64
    };
    let (s0, s1) = (shell_mean(&base), shell_mean(&with_fall));
    assert!(
        s1 < 0.9 * s0,
        "mean dose 15-40 mm from the PTV: {s0:.1} -> {s1:.1} cGy"
    );
    let o = r_fall
        .objectives
        .iter()
        .find(|o| o.id == "fall-off")
        .unwrap();
    assert_eq!(o.kind, "fall-off (8 mm to 20%)");
    // Current: the goal at which it would just hold, at least the dose at the target's edge.
    assert!(o.current_cgy > 150.0, "{o:?}");
}
