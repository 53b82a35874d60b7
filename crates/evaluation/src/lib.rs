//! Plan evaluation: DVH metrics, the Paddick conformity index, the homogeneity index, monitor
//! units, the gamma index, the Wilcoxon signed-rank test as SPSS reports it, and study tables.
//!
//! The [`Evaluator`] trait turns a dose on a patient's grid into metric values; the
//! [`ProtocolEvaluator`] takes its metric list from a protocol file. Everything here needs
//! only a dose grid and structure masks.

pub mod dvh;
pub mod error;
pub mod evaluator;
pub mod figures;
pub mod gamma;
pub mod reference;
pub mod stats;
pub mod tables;

pub use error::{Error, Result};
pub use evaluator::{Evaluator, MetricValue, PlanDose, ProtocolEvaluator};
pub use tps_api::metric::{self, DoseMetric, Metric, Unit};
