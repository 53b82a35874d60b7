//! Beam setup on patients: bad inputs are refused with the reason.

use patient_model::MaskOps;
use tps_api::beams::{Arrangement, Beams, Isocentre};
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::structure::{Mask, Role, Structure};
use tps_core::dose::geometry::FluenceMap;
use tps_core::dose::plan::{BeamSetup, dose_grid_around, setup_fields};

/// `setup_fields` with the default realization, errors as text.
fn fields(p: &Patient, target: &str, beams: &Beams) -> Result<Vec<FluenceMap>, String> {
    setup_fields(p, target, beams, &BeamSetup::default(), "t.toml").map_err(|e| e.to_string())
}

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
    let fields = fields(&p, "PTV", &Beams::full_arcs(1, 8)).unwrap();
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
    let e = fields(
        &p,
        "PTV",
        &Beams {
            bixel_mm: 0.0,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.contains("t.toml") && e.contains("beams.bixel-mm") && e.contains('0'),
        "{e}"
    );
    let e = fields(&p, "Tumour", &Beams::default()).unwrap_err();
    assert!(e.contains("Tumour") && e.contains("PTV"), "{e}");
    // A target outside the body puts the isocentre outside it.
    let outside = patient(|x, y, z| (x - 52.0).hypot(y) < 4.0 && z.abs() < 10.0);
    let e = fields(&outside, "PTV", &Beams::default()).unwrap_err();
    assert!(
        e.contains("beams.isocentre") && e.contains("outside the body"),
        "{e}"
    );
    let empty = patient(|_, _, _| false);
    let e = fields(&empty, "PTV", &Beams::default()).unwrap_err();
    assert!(e.contains("PTV") && e.contains("empty"), "{e}");
    let e = dose_grid_around(&p.structure("External").unwrap().mask, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("spacing-mm") && e.contains("2 to 5"), "{e}");
}

/// The isocentre rules: the target's centroid, another structure's, a fixed point; a point
/// outside the body or off the CT is refused, naming the field.
#[test]
fn the_isocentre_follows_the_protocols_rule() {
    let p = patient(|x, y, z| (x - 10.0).powi(2) + y * y + z * z < 100.0);
    let at = |isocentre: Isocentre| {
        fields(
            &p,
            "PTV",
            &Beams {
                isocentre,
                ..Beams::full_arcs(1, 4)
            },
        )
        .map(|f| f[0].beam.iso_mm)
    };
    let c = at(Isocentre::TargetCentroid).unwrap();
    assert!(
        (c[0] - 10.0).abs() < 0.5 && c[1].abs() < 0.5 && c[2].abs() < 0.5,
        "{c:?}"
    );
    let c = at(Isocentre::StructureCentroid("External".into())).unwrap();
    assert!(c[0].abs() < 0.5 && c[1].abs() < 0.5, "{c:?}");
    assert_eq!(
        at(Isocentre::Point([-5.0, 7.0, 2.0])).unwrap(),
        [-5.0, 7.0, 2.0]
    );
    let e = at(Isocentre::StructureCentroid("Bladder".into())).unwrap_err();
    assert!(
        e.contains("beams.isocentre-structure") && e.contains("Bladder"),
        "{e}"
    );
    for point in [[44.0, 44.0, 0.0], [0.0, 0.0, 500.0]] {
        let e = at(Isocentre::Point(point)).unwrap_err();
        assert!(
            e.contains("beams.isocentre") && e.contains("outside the body"),
            "{e}"
        );
    }
}

/// Static beams are set up at the listed angles with the protocol's collimator.
#[test]
fn static_beams_at_their_angles_with_the_collimator() {
    let p = patient(|x, y, z| x.abs() < 20.0 && y.abs() < 8.0 && z.abs() < 8.0);
    let beams = Beams {
        arrangement: Arrangement::Static {
            angles_deg: vec![0.0, 90.0, 200.0],
        },
        collimator_deg: 90.0,
        ..Default::default()
    };
    let f = fields(&p, "PTV", &beams).unwrap();
    let angles: Vec<f64> = f.iter().map(|f| f.beam.gantry_deg).collect();
    assert_eq!(angles, [0.0, 90.0, 200.0]);
    assert!(f.iter().all(|f| f.beam.collimator_deg == 90.0));
    // Seen from gantry 0 the box is 40 mm along x and 16 mm along z (+ 5 mm margin each
    // side): at collimator 90 the lattice's `a` runs along z, so `a` holds the short side.
    let [na, nc] = f[0].dims;
    assert!(na < nc, "{:?}", f[0].dims);
}

/// Settings outside their ranges are refused before any beamlet is set up: a 1 m beamlet once
/// asked for 93 GB and aborted, a 0.01 mm one ran for hours.
#[test]
fn setups_outside_their_ranges_are_refused_with_the_range() {
    let p = patient(|x, y, z| x * x + y * y + z * z < 400.0);
    let refused = |beams: Beams, setup: BeamSetup, field: &str, range: &str| {
        let e = setup_fields(&p, "PTV", &beams, &setup, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains(range), "{e}");
    };
    for bixel_mm in [0.01, 1.9, 20.5, 1e6, f64::NAN] {
        refused(
            Beams {
                bixel_mm,
                ..Default::default()
            },
            BeamSetup::default(),
            "bixel-mm",
            "2 to 20 mm",
        );
    }
    for target_margin_mm in [-1.0, 31.0, f64::INFINITY] {
        refused(
            Beams::default(),
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
            Beams::default(),
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
        fields(
            &p,
            "PTV",
            &Beams {
                bixel_mm,
                ..Beams::full_arcs(1, 2)
            },
        )
        .unwrap();
    }
}
