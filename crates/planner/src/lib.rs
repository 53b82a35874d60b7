//! The planning loop: optimize, report, advise, guard, apply, until the protocol's termination
//! criteria hold (PTV coverage at least the prescription and every OAR objective's constraint
//! target value inside its ideal range) or another [`TerminationReason`] ends it, then
//! normalize on the dose as evaluated. Weights stay fixed; only goals move.
//!
//! The loop ([`Planner`]) is written against the light [`tps_api::Tps`] trait and the
//! [`LlmAdvisor`] trait only: it does not know which TPS or which model it drives. Every
//! proposed change passes the [`guard`]; a failing advisor is replaced for that iteration by
//! the rule-based physicist, and the fallback is recorded. Each event goes to the
//! [`observers`] as it happens (progress, [`transcript`], timing), and [`replay`] re-runs a
//! transcript's applied changes against a TPS without any advisor.

pub mod examples;
pub mod guard;
pub mod observers;
mod replay;
mod run;
mod termination;
pub mod transcript;

use llm_providers::advice::{FewShotExample, LlmAdvisor};
use tps_api::{Patient, Planning, Protocol, Tps};

pub use observers::{Progress, ProgressObserver};
pub use replay::replay;
pub use run::{PlanOutcome, Planner};
pub use termination::{StopFlag, TerminationReason};

use crate::guard::GuardSettings;
use crate::transcript::TranscriptWriter;

/// Settings of the loop.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlannerSettings {
    /// The guard.
    pub guard: GuardSettings,
    /// Pool of few-shot examples for the advisor.
    pub examples: Vec<FewShotExample>,
    /// How many examples a prompt shows.
    pub n_examples: usize,
    /// Which ones.
    pub selection: examples::Selection,
    /// Where the pool came from, for the transcript (its file, as the user named it).
    pub examples_origin: Option<String>,
    /// Advisor failures in a row that end the plan ([`TerminationReason::AdvisorFailed`]);
    /// `None`: the rule-based physicist stands in for every failed advice.
    pub max_advisor_failures: Option<u32>,
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The TPS failed (the last good plan is kept in the TPS).
    #[error(transparent)]
    Tps(#[from] tps_api::Error),
    /// The transcript could not be written or read.
    #[error("transcript: {0}")]
    Transcript(String),
    /// The protocol cannot be planned.
    #[error("{0}")]
    Protocol(String),
}

/// The protocol's planning settings (iteration cap and coverage window), or an error naming
/// the protocol file when it has none.
pub fn planning_of(protocol: &Protocol) -> Result<&Planning, PlanError> {
    protocol.planning.as_ref().ok_or_else(|| {
        PlanError::Protocol(format!(
            "{}: [planning] is missing (max-iterations, coverage-window)",
            protocol.origin.display()
        ))
    })
}

/// Plans `tps`'s open case with `advisor`, writing `transcript` (when given) and calling
/// `progress` after every optimization: a [`Planner`] with those two observers, judging the
/// protocol's clinical goals on `patient` when given ([`Planner::judge_goals_on`]).
#[allow(clippy::too_many_arguments)]
pub fn plan(
    tps: &mut dyn Tps,
    advisor: &dyn LlmAdvisor,
    protocol: &Protocol,
    patient_id: &str,
    patient: Option<&Patient>,
    settings: &PlannerSettings,
    transcript: Option<&mut TranscriptWriter>,
    progress: impl FnMut(&Progress<'_>),
) -> Result<PlanOutcome, PlanError> {
    let mut planner = Planner::new(tps, advisor, protocol, patient_id, settings);
    if let Some(p) = patient {
        planner = planner.judge_goals_on(p);
    }
    if let Some(t) = transcript {
        planner = planner.observe(t);
    }
    planner.observe(ProgressObserver::new(progress)).run()
}
