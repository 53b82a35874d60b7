//! Test fixtures shared by the optimization tests.

use std::path::Path;

use tps_core::dose::model::BeamModel;
use tps_core::grid::Grid;
use tps_core::patient::Patient;
use tps_core::structure::{Mask, Role, Structure};

/// A water cylinder (radius 75 mm) with a cylindrical PTV (radius 20 mm) at the centre and a
/// small OAR (radius 8 mm) 10 mm from it, on a 4 mm grid.
pub fn cylinder_phantom(id: &str) -> Patient {
    let g = Grid::covering([-80.0, -80.0, -40.0], [80.0, 80.0, 40.0], [4.0; 3]).unwrap();
    let hu: Vec<i16> = (0..g.len())
        .map(|n| {
            let [i, j, k] = g.ijk(n);
            let q = g.position_mm(i, j, k);
            if q[0].hypot(q[1]) < 75.0 { 0 } else { -1000 }
        })
        .collect();
    let mut p = Patient::new(id, g, hu).unwrap();
    let add = |p: &mut Patient, n: &str, r: Role, f: &(dyn Fn(f64, f64, f64) -> bool + Sync)| {
        p.add_structure(Structure::new(n, r, Mask::from_fn(g, f)))
            .unwrap()
    };
    add(&mut p, "External", Role::External, &|x, y, _| {
        x.hypot(y) < 75.0
    });
    add(&mut p, "PTV", Role::Target, &|x, y, z| {
        x.hypot(y) < 20.0 && z.abs() < 20.0
    });
    add(&mut p, "OAR", Role::Oar, &|x, y, z| {
        (x - 30.0).hypot(y) < 8.0 && z.abs() < 20.0
    });
    p
}

/// The shipped 6 MV machine.
pub fn machine() -> BeamModel {
    BeamModel::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/machines/generic-6mv.toml"),
    )
    .unwrap()
}
