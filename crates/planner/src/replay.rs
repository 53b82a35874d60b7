//! Replaying a transcript: its applied changes re-run against a TPS without any advisor.

use tps_api::{GoalChange, IterationReport, Normalization, Tps};

use crate::PlanError;
use crate::transcript::Event;

/// Re-runs a transcript's applied changes against `tps` (a freshly opened case of the same
/// patient and protocol) without an advisor, normalizing where the transcript did, and at the
/// end on the dose as the plan did; returns the reports and the final normalization factor.
pub fn replay(
    tps: &mut dyn Tps,
    events: &[Event],
) -> Result<(Vec<IterationReport>, f64), PlanError> {
    if !events.iter().any(|e| matches!(e, Event::End { .. })) {
        return Err(PlanError::Transcript(
            "the transcript has no end event: the plan did not finish".into(),
        ));
    }
    let mut reports = Vec::new();
    let mut pending: Vec<GoalChange> = Vec::new();
    for e in events {
        match e {
            Event::Report { normalization, .. } => {
                let mut r = tps.optimize(&pending)?;
                if normalization.is_some() {
                    tps.normalize(Normalization::Report)?;
                    r = tps.report()?;
                }
                reports.push(r);
                pending.clear();
            }
            Event::Advice { verdict, .. } => pending = verdict.applied.clone(),
            _ => {}
        }
    }
    let factor = tps.normalize(Normalization::Dose)?;
    Ok((reports, factor))
}
