//! A small water cylinder with a central target and a nearby organ at risk: a quick,
//! analytic case for tests, demonstrations and checks of the optimizer.

use patient_model::MaskOps;
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::structure::{Mask, Role, Structure};

/// A water cylinder of radius 75 mm (air outside) on a 4 mm grid, 160 x 160 x 80 mm, with
/// `External`, a cylindrical `PTV` (radius 20 mm, 40 mm long) at the centre and an `OAR`
/// (radius 8 mm) 10 mm from it.
pub fn water_cylinder(id: &str) -> Patient {
    let g =
        Grid::covering([-80.0, -80.0, -40.0], [80.0, 80.0, 40.0], [4.0; 3]).expect("fixed grid");
    let hu: Vec<i16> = (0..g.len())
        .map(|n| {
            let [i, j, k] = g.ijk(n);
            let q = g.position_mm(i, j, k);
            if q[0].hypot(q[1]) < 75.0 { 0 } else { -1000 }
        })
        .collect();
    let mut p = Patient::new(id, g, hu).expect("CT on its grid");
    let structures: [(&str, Role, Mask); 3] = [
        (
            "External",
            Role::External,
            Mask::from_fn(g, |x, y, _| x.hypot(y) < 75.0),
        ),
        (
            "PTV",
            Role::Target,
            Mask::from_fn(g, |x, y, z| x.hypot(y) < 20.0 && z.abs() < 20.0),
        ),
        (
            "OAR",
            Role::Oar,
            Mask::from_fn(g, |x, y, z| (x - 30.0).hypot(y) < 8.0 && z.abs() < 20.0),
        ),
    ];
    for (name, role, mask) in structures {
        p.add_structure(Structure::new(name, role, mask))
            .expect("distinct names on the CT grid");
    }
    p
}
