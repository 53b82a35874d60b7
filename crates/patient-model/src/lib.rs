//! The patient model's operations, on the data types of `tps-api`: parallel mask operations
//! ([`MaskOps`]), margins and rings by an exact Euclidean distance transform ([`morph`]),
//! building a protocol's structure recipes ([`recipes`]), patient directories and NRRD images
//! ([`patient_files`], [`nrrd`]) and slice pictures ([`render`]).
//!
//! It computes no dose and does no network I/O; synthetic phantoms, imported patients and the
//! native TPS all build on it.

pub mod mask_ops;
pub mod morph;
pub mod nrrd;
pub mod patient_files;
pub mod recipes;
pub mod render;
pub mod resample;

pub use mask_ops::{BoundingBox, MaskOps, StructureStats, stats, structure_stats, structure_table};
pub use tps_api::{Error, Result};
