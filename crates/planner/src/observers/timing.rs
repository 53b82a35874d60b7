//! Time spent in the TPS and in the advisor, summed over a plan.

use super::Observer;
use crate::PlanError;
use crate::transcript::Event;

/// Sums the TPS time (optimizations, in-window normalizations and the final normalization)
/// and the advisor time of every event.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    /// Time in the TPS, s.
    pub tps_s: f64,
    /// Time in the advisor, s.
    pub advisor_s: f64,
}

impl Observer for Timing {
    fn observe(&mut self, event: &Event) -> Result<(), PlanError> {
        match event {
            Event::Report { tps_s, .. } | Event::End { tps_s, .. } => self.tps_s += tps_s,
            Event::Advice { advisor_s, .. } => self.advisor_s += advisor_s,
            Event::Start { .. } => {}
        }
        Ok(())
    }
}
