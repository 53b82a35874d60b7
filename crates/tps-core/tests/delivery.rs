//! Deliverable plans: the dose of MLC apertures against the dose of the same open field, leaf
//! transmission, and a phantom plan sequenced into arcs within the machine's limits.

mod common;

use std::path::Path;

use tps_api::deliverable::{Arc, ControlPoint, DeliverablePlan, Jaws, Rotation};
use tps_api::grid::Grid;
use tps_api::protocol::Protocol;
use tps_api::{Normalization, Tps};
use tps_core::delivery::{ApertureSampling, DeliveryMachine, SequenceSettings, aperture_fields};
use tps_core::dose::calibration::DensityCurve;
use tps_core::dose::engine::DoseEngine;
use tps_core::dose::geometry::{Beam, FluenceMap};
use tps_core::native::{NativeSettings, NativeTps};

fn machine_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/machines/generic-6mv.toml")
}

/// A static 100 x 100 mm aperture of `mu` MU at gantry 0 on the Millennium 120 leaves
/// (`leaves` for the pairs inside the field, the others closed behind the Y jaws).
fn static_plan(leaves: [f64; 2], mu: f64) -> DeliverablePlan {
    let m = DeliveryMachine::load(&machine_file()).unwrap();
    let b = m.mlc.boundaries_mm.clone();
    let tips: Vec<[f64; 2]> = b
        .windows(2)
        .map(|w| {
            if w[0] >= -50.0 && w[1] <= 50.0 {
                leaves
            } else {
                [-0.25, 0.25]
            }
        })
        .collect();
    let cp = |mu: f64| ControlPoint {
        gantry_deg: 0.0,
        cumulative_mu: mu,
        leaves_mm: tips.clone(),
    };
    DeliverablePlan {
        machine: m.name,
        energy_mv: 6.0,
        isocentre_mm: [0.0; 3],
        sad_mm: 1000.0,
        fractions: 1,
        leaf_boundaries_mm: b,
        arcs: vec![Arc {
            rotation: Rotation::Clockwise,
            collimator_deg: 0.0,
            jaws: Jaws {
                x_mm: [-50.0, 50.0],
                y_mm: [-50.0, 50.0],
            },
            control_points: vec![cp(0.0), cp(mu)],
        }],
    }
}

fn water() -> (Grid, Vec<f32>) {
    // Surface at y = 0, isocentre at the surface (SSD 100 cm).
    let g = Grid::new([80, 100, 80], [2.5; 3], [-98.75, 1.25, -98.75]).unwrap();
    let n = g.len();
    (g, vec![1.0; n])
}

fn points() -> Vec<[f64; 3]> {
    let mut p: Vec<[f64; 3]> = [15.0, 50.0, 100.0, 200.0]
        .iter()
        .map(|&d| [0.0, d, 0.0])
        .collect();
    p.extend((0..=30).map(|k| [30.0 + 1.0 * k as f64, 100.0, 10.0]));
    p
}

/// The apertures' fluence (2.5 mm beamlets sampled every 0.5 mm) gives the dose of the same
/// field as 5 mm beamlets: both tile the same 100 x 100 mm exactly, and the beamlet kernel
/// integrates the Gaussians over each beamlet exactly, so they agree to rounding (1e-6).
#[test]
fn an_mlc_aperture_gives_the_dose_of_the_same_open_field() {
    let model = common::machine();
    let (g, rho) = water();
    let e = DoseEngine::new(&model, g, rho);
    let plan = static_plan([-50.0, 50.0], 100.0);
    let fields = aperture_fields(&plan, 0.0, &ApertureSampling::default(), 1.0).unwrap();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].beam.gantry_deg, 0.0);
    let beam = Beam {
        gantry_deg: 0.0,
        iso_mm: [0.0; 3],
        sad_mm: 1000.0,
        collimator_deg: 0.0,
    };
    let open = FluenceMap::open_field(beam, 100.0, 100.0, 5.0, 100.0);
    let pts = points();
    let a = e.dose_at_points(&fields, &pts);
    let b = e.dose_at_points(std::slice::from_ref(&open), &pts);
    // 1 MU = 1 cGy at d_max on the axis: 100 MU give about 100 cGy.
    assert!((a[0] - 100.0).abs() < 0.5, "{} cGy at d_max", a[0]);
    for (p, (x, y)) in pts.iter().zip(a.iter().zip(&b)) {
        assert!((x - y).abs() <= 1e-6 * y.max(1.0), "{p:?}: {x} vs {y}");
    }
}

/// With every leaf closed (the gaps parked behind the jaws), the field inside the jaws is the
/// open field times the leaf transmission: the dose is 1.5 % of the open field's everywhere.
#[test]
fn closed_leaves_pass_their_transmission() {
    let model = common::machine();
    let machine = DeliveryMachine::load(&machine_file()).unwrap();
    let (g, rho) = water();
    let e = DoseEngine::new(&model, g, rho);
    let pts = points();
    let open = aperture_fields(
        &static_plan([-50.0, 50.0], 100.0),
        machine.mlc.transmission,
        &ApertureSampling::default(),
        1.0,
    )
    .unwrap();
    let closed = aperture_fields(
        &static_plan([-60.0, -59.5], 100.0),
        machine.mlc.transmission,
        &ApertureSampling::default(),
        1.0,
    )
    .unwrap();
    let a = e.dose_at_points(&open, &pts);
    let c = e.dose_at_points(&closed, &pts);
    for (p, (o, c)) in pts.iter().zip(a.iter().zip(&c)) {
        assert!(
            (c - 0.015 * o).abs() <= 1e-6 * o.max(1.0),
            "{p:?}: {c} vs {o}"
        );
    }
}

const PROTOCOL: &str = r#"
[site]
name = "test"
[prescription]
target = "PTV"
dose-cgy = 200.0
fractions = 1
volume-percent = 95.0
[beams]
arcs = 2
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
goal-cgy = 100.0
ideal-range = [1e-2, 5e-2]
"#;

/// A two-arc plan of the cylinder phantom sequenced with control points every 2 degrees: every
/// limit of the machine holds, the arcs turn in opposite directions through 360 degrees, the
/// dose of the apertures is normalized to the prescription, and the target keeps its dose.
#[test]
fn a_phantom_plan_is_sequenced_within_the_machine_limits() {
    let m = common::machine();
    let machine = DeliveryMachine::load(&machine_file()).unwrap();
    let proto = Protocol::parse(PROTOCOL, Path::new("test.toml")).unwrap();
    let mut tps = NativeTps::open(
        common::cylinder_phantom("d/p01"),
        proto,
        &m,
        &DensityCurve::water(),
        NativeSettings {
            body_stride: 2,
            ..Default::default()
        },
    )
    .unwrap();
    tps.optimize(&[]).unwrap();
    tps.normalize(Normalization::Dose).unwrap();
    let d = tps
        .deliverable(
            &machine,
            &SequenceSettings::default(),
            &ApertureSampling::default(),
        )
        .unwrap();
    assert!(d.check.violations.is_empty(), "{:?}", d.check.violations);
    assert_eq!(d.plan.arcs.len(), 2);
    let (a0, a1) = (&d.plan.arcs[0], &d.plan.arcs[1]);
    assert_eq!(
        (a0.rotation, a1.rotation),
        (Rotation::Clockwise, Rotation::CounterClockwise)
    );
    for arc in &d.plan.arcs {
        // 9 sectors of 40 degrees, 20 segments each.
        assert_eq!(arc.control_points.len(), 181);
        let turned: f64 = (0..180).map(|k| arc.segment_degrees(k)).sum();
        assert!((turned - 360.0).abs() < 1e-9, "{turned}");
        assert!(arc.mu() > 0.0);
    }
    let json = serde_json::to_string(&d.plan).unwrap();
    let back: DeliverablePlan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d.plan);
    // Normalized as evaluated: D95 of the target on the CT grid is the prescription.
    let p = tps.patient();
    let ptv = &p.structure("PTV").unwrap().mask;
    let mut v = tps_api::dose_volume::doses_in(d.dose.cgy(), ptv);
    tps_api::dose_volume::sort_hottest_first(&mut v);
    let d95 = tps_api::dose_volume::dose_at_fraction(&v, 0.95);
    assert!((d95 - 200.0).abs() < 0.5, "D95 {d95}");
    let fluence = tps.dose().unwrap();
    let mut f = tps_api::dose_volume::doses_in(fluence.cgy(), ptv);
    tps_api::dose_volume::sort_hottest_first(&mut f);
    let (dmax, fmax) = (
        tps_api::dose_volume::dose_at_fraction(&v, 0.02),
        tps_api::dose_volume::dose_at_fraction(&f, 0.02),
    );
    eprintln!(
        "phantom: D2 {dmax:.1} cGy deliverable, {fmax:.1} fluence; normalization {:.3}; \
         {:.1} MU; delivery {:.0} s; sequencing {:.3} s, dose {:.2} s",
        d.normalization,
        d.plan.mu_per_fraction(),
        d.check.total_s(),
        d.timing_s.sequencing,
        d.timing_s.dose
    );
    // The loss from sequencing on this simple case: the near-maximum within 5 %.
    assert!(dmax < 1.05 * fmax, "D2 {dmax} vs {fmax}");
}
