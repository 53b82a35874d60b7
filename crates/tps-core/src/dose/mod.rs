//! The photon dose engine: beam geometry, CT calibration, radiological depth by exact voxel
//! traversal, and a multi-Gaussian pencil-beam kernel with inverse square and absolute
//! calibration in monitor units. Physics and sources: `docs/physics.md`.

pub mod calibration;
pub mod engine;
pub mod geometry;
pub mod grid_dose;
pub mod matrix;
pub mod model;
pub mod plan;
pub mod raytrace;
pub mod rows;
