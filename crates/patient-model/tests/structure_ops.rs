//! Structure operations against analytic geometry.
//!
//! Margins act on voxel centres, so a discretized structure differs from the ideal solid by
//! at most one voxel at its surface; volumes are compared with tolerances that follow from
//! that (stated per test).

use std::f64::consts::PI;
use std::path::Path;

use patient_model::MaskOps;
use patient_model::morph::{contract, expand, ring};
use patient_model::recipes;
use proptest::prelude::*;
use tps_api::Error;
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::protocol::Protocol;
use tps_api::structure::{Mask, Role, Structure};

fn sphere(grid: Grid, r: f64) -> Mask {
    Mask::from_fn(grid, |x, y, z| x * x + y * y + z * z <= r * r)
}

fn sphere_volume_cc(r: f64) -> f64 {
    4.0 / 3.0 * PI * r.powi(3) / 1000.0
}

/// Expanding a sphere of radius r by m gives the sphere of radius r + m, checked three ways:
///
/// - exactly: every voxel of the result has its centre inside the analytic sphere r + m
///   (margins are measured between voxel centres, and every source centre is within r), and
///   every voxel whose centre is within r + m - d/2 is in the result (d = voxel diagonal:
///   every point of the source sphere is within d/2 of a source centre);
/// - at the surface: no voxel farther than one voxel (the largest spacing) from the analytic
///   surface is misclassified;
/// - in volume, within `tolerance`. The outermost source centres lie on average about
///   sqrt(h^3 / (pi r)) inside the analytic surface (the depth of a spherical cap that holds
///   one voxel), so the result is smaller than the analytic sphere by about
///   3 sqrt(h^3 / (pi r)) / (r + m) of its volume: 3.6% at h = 2 mm, 4.4% at 2 x 2 x 3 mm
///   (h taken as the geometric mean spacing).
fn check_sphere_expansion(spacing: [f64; 3], tolerance: f64) {
    let (r, m) = (20.0, 10.0);
    let grid = Grid::covering([-40.0; 3], [40.0; 3], spacing).unwrap();
    let grown = expand(&sphere(grid, r), m).unwrap();
    let h = spacing.iter().cloned().fold(0.0, f64::max);
    let half_diagonal = 0.5 * spacing.iter().map(|s| s * s).sum::<f64>().sqrt();
    let mut mismatched_far = 0;
    for k in 0..grid.dims[2] {
        for j in 0..grid.dims[1] {
            for i in 0..grid.dims[0] {
                let [x, y, z] = grid.position_mm(i, j, k);
                let rho = (x * x + y * y + z * z).sqrt();
                let inside = grown.get(i, j, k);
                assert!(
                    !inside || rho <= r + m + 1e-9,
                    "voxel at {rho} mm is outside r + m"
                );
                assert!(
                    inside || rho > r + m - half_diagonal,
                    "voxel at {rho} mm is missing"
                );
                if (rho - (r + m)).abs() > h && inside != (rho <= r + m) {
                    mismatched_far += 1;
                }
            }
        }
    }
    assert_eq!(
        mismatched_far, 0,
        "voxels misclassified more than one voxel from the surface"
    );
    let expected = sphere_volume_cc(r + m);
    let rel = (grown.volume_cc() - expected) / expected;
    assert!(
        rel.abs() < tolerance,
        "spacing {spacing:?}: volume {} cc vs {expected} cc ({rel:+.4})",
        grown.volume_cc()
    );
}

/// Measured: -3.3% at 2 mm (expected about -3.6%); tolerance 5%.
#[test]
fn sphere_expansion_isotropic_2mm() {
    check_sphere_expansion([2.0, 2.0, 2.0], 0.05);
}

/// Measured: -4.5% at 2 x 2 x 3 mm (expected about -4.4%); tolerance 6%.
#[test]
fn sphere_expansion_anisotropic_2x2x3mm() {
    check_sphere_expansion([2.0, 2.0, 3.0], 0.06);
}

/// Steiner's formula: the volume of a cube of side s grown by t is
/// s^3 + 6 s^2 t + 3 pi s t^2 + 4/3 pi t^3.
fn grown_cube_cc(s: f64, t: f64) -> f64 {
    (s.powi(3) + 6.0 * s * s * t + 3.0 * PI * s * t * t + 4.0 / 3.0 * PI * t.powi(3)) / 1000.0
}

/// Squared distance from `p` to the axis-aligned box `[-c, c]^3`.
fn box_distance2(p: [f64; 3], c: f64) -> f64 {
    p.iter().map(|v| (v.abs() - c).max(0.0).powi(2)).sum()
}

/// A ring around a cube (gap 5 mm, thickness 25 mm, the study's R2):
///
/// - exactly, voxel by voxel: margins are measured from voxel centres, so the ring is the set
///   of centres whose distance to the box spanned by the cube's centres (side s - h) lies in
///   (gap, gap + thickness];
/// - in volume: the ring of the analytic cube of side s, by Steiner's formula (the volume of
///   a cube of side s grown by t is s^3 + 6 s^2 t + 3 pi s t^2 + 4/3 pi t^3), lies between the
///   Steiner rings of side s - h and side s, and within 5% of the side-s value (measured -4.5%
///   at h = 2 mm: the rounded edges and corners grow from the centres, h/2 inside the faces).
#[test]
fn ring_around_cube_has_analytic_volume() {
    let s = 40.0;
    let h = 2.0;
    let grid = Grid::covering([-60.0; 3], [60.0; 3], [h; 3]).unwrap();
    let cube = Mask::from_fn(grid, |x, y, z| {
        x.abs() < s / 2.0 && y.abs() < s / 2.0 && z.abs() < s / 2.0
    });
    assert!((cube.volume_cc() - s.powi(3) / 1000.0).abs() < 1e-9);
    let (gap, thick) = (5.0, 25.0);
    let r = ring(&cube, gap, thick).unwrap();
    let c = (s - h) / 2.0;
    let reference = Mask::from_fn(grid, |x, y, z| {
        let d2 = box_distance2([x, y, z], c);
        d2 > gap * gap + 1e-9 && d2 <= (gap + thick).powi(2) + 1e-9
    });
    assert_eq!(r, reference, "ring differs from its definition");
    let steiner_ring = |side: f64| grown_cube_cc(side, gap + thick) - grown_cube_cc(side, gap);
    let v = r.volume_cc();
    assert!(
        steiner_ring(s - h) <= v && v <= steiner_ring(s),
        "ring {v} cc outside bracket"
    );
    let rel = (v - steiner_ring(s)) / steiner_ring(s);
    assert!(
        rel.abs() < 0.05,
        "ring {v} cc vs {} cc ({rel:+.4})",
        steiner_ring(s)
    );
    assert!(r.intersection(&cube).unwrap().is_empty());
    // The ring equals the difference of two expansions.
    let outer = expand(&cube, gap + thick).unwrap();
    let inner = expand(&cube, gap).unwrap();
    assert_eq!(r, outer.subtract(&inner).unwrap());
}

#[test]
fn contraction_beyond_half_thickness_is_empty() {
    let grid = Grid::covering([-30.0; 3], [30.0; 3], [2.0, 2.0, 3.0]).unwrap();
    // A slab 10 mm thick: contraction by 3.9 mm leaves its middle, by 6 mm nothing.
    let slab = Mask::from_fn(grid, |x, y, z| {
        x.abs() < 5.0 && y.abs() < 20.0 && z.abs() < 20.0
    });
    assert!(!contract(&slab, 3.9).unwrap().is_empty());
    assert!(contract(&slab, 6.0).unwrap().is_empty());
    // A sphere of radius 20 mm contracted by 8 mm is the sphere of radius 12 mm. The nearest
    // outside centres lie beyond 20 mm by up to half a voxel diagonal, so the result holds
    // every centre within 12 mm and none beyond 12 mm + d/2; in volume it is larger by about
    // 3 sqrt(h^3 / (pi r)) / 12 (measured +10% at this small radius; tolerance 12%).
    let s = Mask::from_fn(grid, |x, y, z| x * x + y * y + z * z <= 400.0);
    let c = contract(&s, 8.0).unwrap();
    let half_diagonal = 0.5 * (4.0f64 + 4.0 + 9.0).sqrt();
    for n in 0..grid.len() {
        let [i, j, k] = grid.ijk(n);
        let [x, y, z] = grid.position_mm(i, j, k);
        let rho = (x * x + y * y + z * z).sqrt();
        assert!(!c.data()[n] || rho <= 12.0 + half_diagonal);
        assert!(c.data()[n] || rho > 12.0);
    }
    let rel = (c.volume_cc() - sphere_volume_cc(12.0)) / sphere_volume_cc(12.0);
    assert!(rel.abs() < 0.12, "{rel}");
}

fn patient_with_sphere() -> Patient {
    let grid = Grid::covering([-50.0; 3], [50.0; 3], [2.5; 3]).unwrap();
    let mut p = Patient::new("ops/p01", grid, vec![0; grid.len()]).unwrap();
    p.add_structure(Structure::new(
        "External",
        Role::External,
        Mask::from_fn(grid, |_, _, _| true),
    ))
    .unwrap();
    p.add_structure(Structure::new("PTV", Role::Target, sphere(grid, 20.0)))
        .unwrap();
    p
}

#[test]
fn protocol_rings_are_built_from_recipes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/protocols/cervix.toml");
    let protocol = Protocol::load(&path).unwrap();
    let mut p = patient_with_sphere();
    recipes::build_auxiliary(&protocol, &mut p).unwrap();
    for (name, gap, thick) in [("R2", 5.0, 25.0), ("R3", 10.0, 20.0), ("R4", 15.0, 15.0)] {
        let s = p.structure(name).unwrap();
        assert_eq!(s.role, Role::Auxiliary);
        let expected = sphere_volume_cc(20.0 + gap + thick) - sphere_volume_cc(20.0 + gap);
        // The body holds the whole ring; analytic within 5% at 2.5 mm voxels.
        let rel = (s.mask.volume_cc() - expected) / expected;
        assert!(
            rel.abs() < 0.05,
            "{name}: {} vs {expected} ({rel:+.3})",
            s.mask.volume_cc()
        );
    }
}

const PROTO: &str = "[site]\nname = \"t\"\n[prescription]\ntarget = \"PTV\"\ndose-cgy = 3600.0\n\
                     fractions = 20\nvolume-percent = 95.0\n[[auxiliary]]\nname = \"X\"\n";

fn build(recipe: &str) -> Result<Patient, Error> {
    let protocol = Protocol::parse(&format!("{PROTO}{recipe}"), Path::new("proto.toml"))?;
    let mut p = patient_with_sphere();
    recipes::build_auxiliary(&protocol, &mut p)?;
    Ok(p)
}

#[test]
fn bad_recipes_name_file_field_and_value() {
    let cases = [
        (
            "op = \"ring\"\nsource = \"PTVX\"\ngap-mm = 5.0\nthickness-mm = 5.0\n",
            "auxiliary[0].source",
            "PTVX",
        ),
        (
            "op = \"expand\"\nsource = \"PTV\"\nmargin-mm = -3.0\n",
            "auxiliary[0].margin-mm",
            "-3",
        ),
        (
            "op = \"expand\"\nsource = \"PTV\"\nmargin-mm = 3.0\nthickness-mm = 2.0\n",
            "auxiliary[0].thickness-mm",
            "does not use",
        ),
        (
            "op = \"ring\"\nsource = \"PTV\"\ngap-mm = 5.0\n",
            "auxiliary[0].thickness-mm",
            "missing",
        ),
        (
            "op = \"ring\"\nsource = \"PTV\"\ngap-mm = 5.0\nthickness-mm = 0.0\n",
            "auxiliary[0].thickness-mm",
            "0",
        ),
        (
            "op = \"union\"\nsources = [\"PTV\", \"Bladder\"]\n",
            "auxiliary[0].sources[1]",
            "Bladder",
        ),
        (
            "op = \"expand\"\nsource = \"PTV\"\nmargin-mm = 3.0\ncrop-to = \"Body\"\n",
            "auxiliary[0].crop-to",
            "Body",
        ),
        (
            "op = \"contract\"\nsource = \"PTV\"\nmargin-mm = 25.0\n",
            "\"X\" is empty",
            "contract PTV by 25 mm",
        ),
        ("op = \"grow\"\nsource = \"PTV\"\n", "op", "grow"),
        (
            "op = \"expand\"\nsource = \"PTV\"\nmargin-mm = 3.0\nmargn = 1\n",
            "margn",
            "unknown field",
        ),
    ];
    for (recipe, field, value) in cases {
        let e = build(recipe).unwrap_err().to_string();
        assert!(
            e.contains("proto.toml") && e.contains(field) && e.contains(value),
            "recipe {recipe:?} gave: {e}"
        );
    }
}

#[test]
fn empty_result_is_reported_as_empty_structure() {
    let e = build("op = \"contract\"\nsource = \"PTV\"\nmargin-mm = 25.0\n").unwrap_err();
    assert!(
        matches!(e, Error::EmptyStructure { ref name, .. } if name == "X"),
        "{e}"
    );
}

fn small_masks() -> impl Strategy<Value = Mask> {
    proptest::collection::vec(any::<bool>(), 6 * 5 * 4).prop_map(|v| {
        let grid = Grid::new([6, 5, 4], [1.0, 1.5, 2.5], [0.0; 3]).unwrap();
        // Keep a one-voxel empty border so the grid edge plays no role.
        let data = (0..grid.len())
            .map(|n| {
                let [i, j, k] = grid.ijk(n);
                v[n] && i > 0 && j > 0 && k > 0 && i < 5 && j < 4 && k < 3
            })
            .collect();
        Mask::from_vec(grid, data).unwrap()
    })
}

fn inside_border(grid: &Grid, n: usize) -> bool {
    let [i, j, k] = grid.ijk(n);
    i > 0 && j > 0 && k > 0 && i < 5 && j < 4 && k < 3
}

proptest! {
    /// Margins nest: S is inside its expansion, its contraction inside S, and growing twice
    /// never reaches further than growing once by the sum (triangle inequality).
    #[test]
    fn margins_are_monotone_and_nest(m in small_masks(), a in 0.0f64..4.0, b in 0.0f64..4.0) {
        let ea = expand(&m, a).unwrap();
        prop_assert!(m.subtract(&ea).unwrap().is_empty());
        prop_assert!(contract(&m, a).unwrap().subtract(&m).unwrap().is_empty());
        let twice = expand(&ea, b).unwrap();
        let once = expand(&m, a + b).unwrap();
        prop_assert!(twice.subtract(&once).unwrap().is_empty());
    }

    /// Contraction is expansion of the complement, complemented (away from the grid edge).
    #[test]
    fn contraction_is_dual_to_expansion(m in small_masks(), a in 0.1f64..3.0) {
        let grid = *m.grid();
        let c = contract(&m, a).unwrap();
        let dual = expand(&m.complement(), a).unwrap().complement();
        for n in 0..grid.len() {
            if inside_border(&grid, n) {
                prop_assert_eq!(c.data()[n], dual.data()[n]);
            }
        }
    }
}

#[test]
fn a_ring_around_an_empty_target_names_the_empty_target() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/protocols/cervix.toml");
    let protocol = Protocol::load(&path).unwrap();
    let mut p = patient_with_sphere();
    let grid = *p.grid();
    let mut empty = Patient::new("empty-ptv", grid, p.ct_hu().to_vec()).unwrap();
    for s in p.structures() {
        let mask = if s.name == "PTV" {
            Mask::empty(grid)
        } else {
            s.mask.clone()
        };
        empty
            .add_structure(Structure::new(s.name.clone(), s.role, mask))
            .unwrap();
    }
    p = empty;
    let e = recipes::build_auxiliary(&protocol, &mut p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cervix.toml")
            && e.contains("structure \"PTV\" has no voxels")
            && e.contains("so R2"),
        "{e}"
    );
}
