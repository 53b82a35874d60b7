//! DICOM RT in and out.
//!
//! Import ([`import`]) reads a directory tree of DICOM files, picks the CT series a structure
//! set refers to, assembles it on an LPS-aligned grid ([`ct`]), rasterizes the structure set's
//! contours onto it ([`rtstruct`]), maps structure names to a protocol's ([`aliases`]) and, when
//! an RT dose is there, resamples it onto the CT ([`rtdose`]). Export ([`export`]) writes a
//! patient and its plan as a CT series, an RT structure set traced from the masks, an RT dose
//! and an RT plan that other systems open.
//!
//! dicom-rs reads and writes the files; the RT layer (series assembly, contours, dose grids,
//! the RT modules) is this crate's. Conventions are documented in `docs/dicom.md`.

pub mod aliases;
pub mod ct;
pub mod export;
pub mod import;
pub mod pixels;
pub mod read;
pub mod rtdose;
pub mod rtstruct;
pub mod trace;
pub mod write;

pub use aliases::AliasTable;
pub use tps_api::{Error, Result};
