//! Deliverable VMAT: the machine's MLC and delivery limits ([`machine`]), arc sequencing of
//! the optimized fluence into control points ([`sequence`]), the fluence of the resulting
//! apertures for the dose engine ([`fluence`]) and the check of a plan against the machine
//! with its delivery time ([`check`]). The plan itself is the plain
//! [`tps_api::deliverable::DeliverablePlan`].

pub mod check;
pub mod fluence;
pub mod machine;
pub mod refine;
pub mod sequence;

pub use check::{DeliveryCheck, check};
pub use fluence::{ApertureSampling, aperture_fields};
pub use machine::DeliveryMachine;
pub use sequence::{SequenceSettings, sequence};
