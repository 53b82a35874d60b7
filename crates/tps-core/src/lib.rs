//! The native reference treatment planning system: a 6 MV pencil-beam dose engine with its
//! CT calibration and beam model ([`dose`]), fluence map optimization with the protocol's
//! objectives by projected L-BFGS ([`optimize`]), sliding-window MU ([`mu`]), arc sequencing
//! into deliverable control points with their aperture dose ([`delivery`]), and
//! [`native::NativeTps`], which implements `tps_api::Tps` over them; and [`uniform`], open
//! arcs with a uniform fluence, the unoptimized baseline of the `dose` command.
//!
//! Patients, structures and protocols are `tps-api` types, built and read by `patient-model`;
//! this crate computes dose and optimizes, and does no network I/O.

pub mod delivery;
pub mod dose;
pub mod mu;
pub mod native;
pub mod optimize;
pub mod uniform;

pub use native::{NativeSettings, NativeTps};
pub use tps_api::{Error, Result};
