//! Synthetic patients: parameterized, seeded anatomy for studies that may not ship patient
//! data. A female pelvis with a cervical-cancer target, or a prostate target in its place
//! ([`pelvis`]), built from simple solids ([`shapes`]); a water cylinder for physics tests
//! ([`cylinder`]); cohort files that say which patients exist and how they vary ([`cohort`]);
//! and an idealized analytic dose for exercising evaluation ([`synthetic_dose`]). Every draw
//! comes from a seeded generator ([`rng`]), so a patient is the same on every machine and run.
//!
//! A phantom is a `tps_api::Patient`, the same type an imported patient is; nothing here
//! computes dose from beams.

pub mod c_shape;
pub mod cohort;
pub mod cylinder;
pub mod pelvis;
pub mod rng;
pub mod shapes;
pub mod synthetic_dose;
