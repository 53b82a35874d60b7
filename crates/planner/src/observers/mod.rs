//! Observers of a plan: each sees every [`Event`] of the loop as it happens (start, reports,
//! advice, end). The loop itself only optimizes, advises and decides when to stop; what is
//! shown, written or measured is an observer's business, and a new one is one file here.

mod progress;
mod timing;
mod transcript;

pub use progress::{Progress, ProgressObserver};
pub use timing::Timing;

use crate::PlanError;
use crate::transcript::Event;

/// Sees the events of a plan in order. An error ends the plan with that error (a transcript
/// that cannot be written must not let the plan go on unrecorded).
pub trait Observer {
    /// Called once per event, after the loop has acted on it.
    fn observe(&mut self, event: &Event) -> Result<(), PlanError>;
}

impl<O: Observer + ?Sized> Observer for &mut O {
    fn observe(&mut self, event: &Event) -> Result<(), PlanError> {
        (**self).observe(event)
    }
}

impl<O: Observer + ?Sized> Observer for Box<O> {
    fn observe(&mut self, event: &Event) -> Result<(), PlanError> {
        (**self).observe(event)
    }
}
