//! A C-shaped target wrapped round a cylindrical core in a water cylinder: a non-pelvic site in
//! the manner of the AAPM TG-119 C-shape test (Ezzell et al., Med. Phys. 36:5359, 2009), where
//! a concave target round an organ is the hard case of inverse planning. The dimensions are
//! ours, written here, not TG-119's digital phantom: a core of radius 10 mm, a target from
//! 15 mm (a 5 mm gap round the core) to 37 mm from the axis, open over 20 mm on one side, both
//! 80 mm long, in a water cylinder of radius 100 mm on a 3 mm grid.
//!
//! Structure names: `OuterTarget` (role target), `Core` (oar) and `BODY` (external: named as
//! many systems name it, found by its role).

use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::structure::{Mask, Role, Structure};

use patient_model::MaskOps;

/// Radius of the core, mm.
pub const CORE_RADIUS_MM: f64 = 10.0;
/// Inner and outer radius of the C, mm.
pub const TARGET_RADII_MM: [f64; 2] = [15.0, 37.0];
/// Width of the C's opening (on the +y side), mm.
pub const OPENING_MM: f64 = 20.0;
/// Half-length of core and target along z, mm.
pub const HALF_LENGTH_MM: f64 = 40.0;
/// Radius of the water cylinder, mm.
pub const BODY_RADIUS_MM: f64 = 100.0;

/// The phantom, identified as `id`.
pub fn c_shape(id: &str) -> Patient {
    let g = Grid::covering([-105.0, -105.0, -66.0], [105.0, 105.0, 66.0], [3.0; 3])
        .expect("fixed grid");
    let hu: Vec<i16> = (0..g.len())
        .map(|n| {
            let [i, j, k] = g.ijk(n);
            let q = g.position_mm(i, j, k);
            if q[0].hypot(q[1]) < BODY_RADIUS_MM {
                0
            } else {
                -1000
            }
        })
        .collect();
    let mut p = Patient::new(id, g, hu).expect("CT on its grid");
    let in_length = |z: f64| z.abs() <= HALF_LENGTH_MM;
    let structures: [(&str, Role, Mask); 3] = [
        (
            "BODY",
            Role::External,
            Mask::from_fn(g, |x, y, _| x.hypot(y) < BODY_RADIUS_MM),
        ),
        (
            "OuterTarget",
            Role::Target,
            Mask::from_fn(g, |x, y, z| {
                let r = x.hypot(y);
                let opening = y > 0.0 && x.abs() < OPENING_MM / 2.0;
                (TARGET_RADII_MM[0]..=TARGET_RADII_MM[1]).contains(&r) && !opening && in_length(z)
            }),
        ),
        (
            "Core",
            Role::Oar,
            Mask::from_fn(g, |x, y, z| x.hypot(y) <= CORE_RADIUS_MM && in_length(z)),
        ),
    ];
    for (name, role, mask) in structures {
        p.add_structure(Structure::new(name, role, mask))
            .expect("distinct names on the CT grid");
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_match_the_geometry() {
        let p = c_shape("c");
        let v = |n: &str| p.structure(n).unwrap().mask.volume_cc();
        // Core: pi r^2 L = 25.1 cc. On the 3 mm lattice (voxel centres at +-1.5, +-4.5, ...)
        // 32 centres per slice lie within 10 mm: 288 mm^2 against pi 100 = 314, and 26 slices
        // (78 mm) within 40 mm: 22.46 cc exactly.
        assert!((v("Core") - 22.464).abs() < 1e-9, "{}", v("Core"));
        // The C: pi (37^2 - 15^2) L less the opening (about 20 x 22 mm x L) = 286.5 - 35.2 =
        // 251 cc, within the lattice's few percent.
        let c = std::f64::consts::PI * (3.7f64.powi(2) - 1.5f64.powi(2)) * 8.0 - 2.0 * 2.2 * 8.0;
        assert!(
            (v("OuterTarget") - c).abs() / c < 0.05,
            "{} vs {c}",
            v("OuterTarget")
        );
        // The core and the target never touch (5 mm gap).
        let t = &p.structure("OuterTarget").unwrap().mask;
        let k = &p.structure("Core").unwrap().mask;
        assert!(!t.data().iter().zip(k.data()).any(|(a, b)| *a && *b));
    }
}
