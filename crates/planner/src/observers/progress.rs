//! Progress after every optimization, for a terminal or a progress bar.

use tps_api::IterationReport;

use super::Observer;
use crate::PlanError;
use crate::transcript::Event;

/// Shown after each optimization.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress<'a> {
    /// The report.
    pub report: &'a IterationReport,
    /// Iteration cap.
    pub max_iterations: u32,
    /// OAR objectives outside their range.
    pub out_of_range: usize,
    /// Time of the last advice, s (0 before the first).
    pub advisor_s: f64,
    /// Time of the last optimization, s.
    pub tps_s: f64,
}

/// Calls a function with the [`Progress`] after every report.
pub struct ProgressObserver<F> {
    show: F,
    max_iterations: u32,
    advisor_s: f64,
}

impl<F: FnMut(&Progress<'_>)> ProgressObserver<F> {
    /// Shows progress with `show`.
    pub fn new(show: F) -> Self {
        Self {
            show,
            max_iterations: 0,
            advisor_s: 0.0,
        }
    }
}

impl<F: FnMut(&Progress<'_>)> Observer for ProgressObserver<F> {
    fn observe(&mut self, event: &Event) -> Result<(), PlanError> {
        match event {
            Event::Start { max_iterations, .. } => self.max_iterations = *max_iterations,
            Event::Advice { advisor_s, .. } => self.advisor_s = *advisor_s,
            Event::Report { report, tps_s, .. } => (self.show)(&Progress {
                report,
                max_iterations: self.max_iterations,
                out_of_range: report.oar_out_of_range(),
                advisor_s: self.advisor_s,
                tps_s: *tps_s,
            }),
            Event::End { .. } => {}
        }
        Ok(())
    }
}
