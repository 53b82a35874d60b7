//! The light API between the planning loop and any treatment planning system.
//!
//! A TPS, native or remote, implements [`Tps`] over an open case: it lists its objectives,
//! optimizes with goal changes, reports per objective the constraint target value the study
//! defines ([`objectives`]), normalizes, and returns its dose with the grid it lives on
//! ([`Dose`]). Besides the trait this crate holds the data every side of the loop shares: the
//! voxel [`Grid`], masks and structures, the [`Patient`] (CT and structure set), protocol files
//! with their objectives, recipes and metrics ([`protocol`]), the DVH convention
//! ([`dose_volume`]) and one [`Error`] type that says whether a failure is temporary.
//!
//! It depends on serde, thiserror and toml only, so a remote-TPS client, the planner and the
//! evaluation build on it without a dose engine, an HTTP stack or a thread pool. With the
//! `testing` feature it also offers [`fake::FakeTps`], a deterministic analytic TPS for fast
//! tests, and the [`conformance`] suite every `Tps` must pass.

pub mod beams;
pub mod deliverable;
pub mod dose;
pub mod dose_volume;
pub mod error;
pub mod files;
pub mod goals;
pub mod grid;
pub mod metric;
pub mod objectives;
pub mod patient;
pub mod protocol;
pub mod recipe;
pub mod report;
pub mod structure;
pub mod tps;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod fake;

pub use beams::{Arrangement, Beams, Isocentre};
pub use deliverable::DeliverablePlan;
pub use dose::Dose;
pub use error::{Error, Result};
pub use goals::{ClinicalGoal, GoalResult, GoalStatus, Priority};
pub use grid::Grid;
pub use metric::{DoseMetric, Metric, Unit};
pub use objectives::{Objective, ObjectiveKind, RangeStatus};
pub use patient::Patient;
pub use protocol::{Planning, Prescription, Protocol, Termination};
pub use report::{GoalChange, IterationReport, ObjectiveReport, PlanSummary};
pub use structure::{Mask, Role, Structure};
pub use tps::{Normalization, Tps};
