//! Synthetic patients: parameterized, seeded anatomy for studies that may not ship patient
//! data.

pub mod cylinder;
pub mod pelvis;
pub mod shapes;
