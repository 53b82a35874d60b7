//! Test fixtures shared by the optimization tests.

use std::path::Path;

use tps_api::patient::Patient;
use tps_core::dose::model::BeamModel;

/// The water cylinder with a PTV and an OAR (`phantoms::cylinder`).
pub fn cylinder_phantom(id: &str) -> Patient {
    phantoms::cylinder::water_cylinder(id)
}

/// The shipped 6 MV machine.
pub fn machine() -> BeamModel {
    BeamModel::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/machines/generic-6mv.toml"),
    )
    .unwrap()
}
