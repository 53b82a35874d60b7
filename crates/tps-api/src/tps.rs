//! The `Tps` trait: what the planning loop needs from any treatment planning system, native,
//! in another process or on another machine.

use serde::{Deserialize, Serialize};

use crate::beams::Beams;
use crate::dose::Dose;
use crate::error::Result;
use crate::objectives::Objective;
use crate::report::{GoalChange, IterationReport, PlanSummary};

/// Where a normalization measures the prescription target's coverage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// As the reports measure it (the TPS's own sampling of the target): quick, used during
    /// planning to keep the coverage in its window.
    Report,
    /// On the dose [`Tps::dose`] returns, within the prescription target's mask on that grid,
    /// read with the shared DVH convention ([`crate::dose_volume`]): the plan's coverage as
    /// its evaluation will read it. Used for the final plan, as the study normalized its plans
    /// ("95% of PTV coverage met the prescription dose").
    Dose,
}

/// A treatment planning system with an open case (patient + protocol).
///
/// Every call may fail; an implementation keeps the last good plan when one does, and says
/// through [`crate::Error::is_temporary`] whether trying again may help. `Send`, so a case may
/// be served from another thread.
pub trait Tps: Send {
    /// Short description for logs and transcripts, e.g. `native` or a remote endpoint.
    fn name(&self) -> String;
    /// The objectives with their current goals, in protocol order; ids never change.
    fn objectives(&self) -> Result<Vec<Objective>>;
    /// Applies goal changes (by objective id) and optimizes, warm-started from the current plan.
    /// On error (an unknown id, a goal that is not a dose) the previous plan is kept.
    fn optimize(&mut self, goals: &[GoalChange]) -> Result<IterationReport>;
    /// Scales the plan so the prescription target receives the prescription at the prescribed
    /// volume, measured as `basis` says; returns the factor applied.
    fn normalize(&mut self, basis: Normalization) -> Result<f64>;
    /// The report of the current plan (e.g. after [`Tps::normalize`]), with the iteration
    /// number, solver iterations and time of the last optimization.
    fn report(&self) -> Result<IterationReport>;
    /// Dose of the current plan with its grid (the patient's CT grid for the native TPS).
    fn dose(&self) -> Result<Dose>;
    /// MU of the current plan.
    fn plan(&self) -> Result<PlanSummary>;
    /// The beam set-up the case is planned with, as the TPS realized it (the protocol's
    /// `[beams]` with any overrides of the TPS); `None` when the TPS does not say, and a
    /// report then shows the protocol's.
    fn beams(&self) -> Option<Beams> {
        None
    }
}

impl<T: Tps + ?Sized> Tps for Box<T> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn objectives(&self) -> Result<Vec<Objective>> {
        (**self).objectives()
    }
    fn optimize(&mut self, goals: &[GoalChange]) -> Result<IterationReport> {
        (**self).optimize(goals)
    }
    fn normalize(&mut self, basis: Normalization) -> Result<f64> {
        (**self).normalize(basis)
    }
    fn report(&self) -> Result<IterationReport> {
        (**self).report()
    }
    fn dose(&self) -> Result<Dose> {
        (**self).dose()
    }
    fn plan(&self) -> Result<PlanSummary> {
        (**self).plan()
    }
    fn beams(&self) -> Option<Beams> {
        (**self).beams()
    }
}
