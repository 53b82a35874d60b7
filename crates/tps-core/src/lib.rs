//! The native reference treatment planning system.
//!
//! This crate owns the patient model (voxel grid, CT in HU, structures as masks with roles),
//! structure operations (margins, Booleans, rings by an exact Euclidean distance transform),
//! synthetic phantoms and cohorts, patient files (NRRD plus a manifest) and slice rendering.
//! It performs no network I/O.

pub mod cohort;
pub mod dose;
pub mod dose_volume;
pub mod error;
pub mod grid;
pub mod morph;
pub mod mu;
pub mod native;
pub mod nrrd;
pub mod objectives;
pub mod optimize;
pub mod patient;
pub mod patient_files;
pub mod phantom;
pub mod protocol;
pub mod recipe;
pub mod render;
pub mod rng;
pub mod structure;
pub mod synthetic_dose;
pub mod tps;

pub use error::{Error, Result};
pub use grid::Grid;
pub use patient::Patient;
pub use structure::{Mask, Role, Structure};
pub use tps::{GoalChange, IterationReport, Tps};
