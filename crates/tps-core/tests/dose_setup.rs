//! Beam setup on patients: bad inputs are refused with the reason.

use patient_model::MaskOps;
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::structure::{Mask, Role, Structure};
use tps_core::dose::plan::{BeamSetup, dose_grid_around, setup_fields};

fn patient(ptv: impl Fn(f64, f64, f64) -> bool + Sync) -> Patient {
    let g = Grid::covering([-60.0; 3], [60.0; 3], [4.0; 3]).unwrap();
    let mut p = Patient::new("setup/p01", g, vec![0; g.len()]).unwrap();
    p.add_structure(Structure::new(
        "External",
        Role::External,
        Mask::from_fn(g, |x, y, _| x.hypot(y) < 45.0),
    ))
    .unwrap();
    p.add_structure(Structure::new("PTV", Role::Target, Mask::from_fn(g, ptv)))
        .unwrap();
    p
}

#[test]
fn beamlets_cover_the_target_from_every_angle() {
    let p = patient(|x, y, z| x * x + y * y + z * z < 400.0);
    let fields = setup_fields(
        &p,
        "PTV",
        &BeamSetup {
            arcs: 1,
            beams_per_arc: 8,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(fields.len(), 8);
    for f in &fields {
        // A 20 mm sphere plus 5 mm: about 50 mm across, 10 beamlets of 5 mm.
        let n = f.weights.iter().filter(|&&w| w > 0.0).count();
        assert!(
            (50..=110).contains(&n),
            "{} beamlets at {} degrees",
            n,
            f.beam.gantry_deg
        );
        assert!(f.dims[0] <= 13 && f.dims[1] <= 13, "{:?}", f.dims);
    }
}

#[test]
fn bad_setups_are_refused() {
    let p = patient(|x, y, z| x * x + y * y + z * z < 400.0);
    let e = setup_fields(
        &p,
        "PTV",
        &BeamSetup {
            bixel_mm: 0.0,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("bixel-mm") && e.contains('0'), "{e}");
    let e = setup_fields(&p, "Tumour", &BeamSetup::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("Tumour") && e.contains("PTV"), "{e}");
    // A target outside the body puts the isocentre outside it.
    let outside = patient(|x, y, z| (x - 52.0).hypot(y) < 4.0 && z.abs() < 10.0);
    let e = setup_fields(&outside, "PTV", &BeamSetup::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("isocentre") && e.contains("outside the body"),
        "{e}"
    );
    let empty = patient(|_, _, _| false);
    let e = setup_fields(&empty, "PTV", &BeamSetup::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("PTV") && e.contains("empty"), "{e}");
    let e = dose_grid_around(&p.structure("External").unwrap().mask, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("spacing-mm") && e.contains("2 to 5"), "{e}");
}

/// Settings outside their ranges are refused before any beamlet is set up: a 1 m beamlet once
/// asked for 93 GB and aborted, a 0.01 mm one ran for hours.
#[test]
fn setups_outside_their_ranges_are_refused_with_the_range() {
    let p = patient(|x, y, z| x * x + y * y + z * z < 400.0);
    let refused = |setup: BeamSetup, field: &str, range: &str| {
        let e = setup_fields(&p, "PTV", &setup).unwrap_err().to_string();
        assert!(e.contains(field) && e.contains(range), "{e}");
    };
    for bixel_mm in [0.01, 1.9, 20.5, 1e6, f64::NAN] {
        refused(
            BeamSetup {
                bixel_mm,
                ..Default::default()
            },
            "bixel-mm",
            "2 to 20 mm",
        );
    }
    for target_margin_mm in [-1.0, 31.0, f64::INFINITY] {
        refused(
            BeamSetup {
                target_margin_mm,
                ..Default::default()
            },
            "target-margin-mm",
            "0 to 30 mm",
        );
    }
    for sad_mm in [0.0, 499.0, 2001.0] {
        refused(
            BeamSetup {
                sad_mm,
                ..Default::default()
            },
            "sad-mm",
            "500 to 2000 mm",
        );
    }
    // The edges are accepted.
    for bixel_mm in [2.0, 20.0] {
        setup_fields(
            &p,
            "PTV",
            &BeamSetup {
                arcs: 1,
                beams_per_arc: 2,
                bixel_mm,
                ..Default::default()
            },
        )
        .unwrap();
    }
}
