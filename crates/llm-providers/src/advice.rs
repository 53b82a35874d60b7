//! What an advisor reads and what it answers.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tps_api::report::{GoalChange, IterationReport};

use crate::error::Result;
pub use crate::record::CallRecord;

/// How a model answers: new goals in cGy, or per-objective actions that deterministic code turns
/// into goals (for small models that get arithmetic wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputMode {
    /// `{"rationale": ..., "adjustments": [{"id": ..., "goal_cgy": ...}]}`.
    Goals,
    /// `{"rationale": ..., "actions": [{"id": ..., "action": "tighten", "step": "large"}]}`.
    Actions,
}

/// What to do with one objective's goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Lower the goal (the objective is below its ideal range: it has room to spare).
    Tighten,
    /// Raise the goal (the objective is above its ideal range: it is violated too much).
    Relax,
    /// Leave it.
    Keep,
}

/// Size of a goal step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepClass {
    /// 20 cGy: close to the ideal range.
    Small,
    /// 50 cGy.
    Medium,
    /// 100 cGy: far from the ideal range.
    Large,
}

impl Direction {
    /// Every direction, in the order an answer schema lists them.
    pub const ALL: [Direction; 3] = [Direction::Tighten, Direction::Relax, Direction::Keep];

    /// The word an answer writes.
    pub fn word(self) -> &'static str {
        match self {
            Direction::Tighten => "tighten",
            Direction::Relax => "relax",
            Direction::Keep => "keep",
        }
    }
}

impl StepClass {
    /// Every step class, in the order an answer schema lists them.
    pub const ALL: [StepClass; 3] = [StepClass::Small, StepClass::Medium, StepClass::Large];

    /// The word an answer writes.
    pub fn word(self) -> &'static str {
        match self {
            StepClass::Small => "small",
            StepClass::Medium => "medium",
            StepClass::Large => "large",
        }
    }

    /// The step in cGy.
    pub fn cgy(self) -> f64 {
        match self {
            StepClass::Small => 20.0,
            StepClass::Medium => 50.0,
            StepClass::Large => 100.0,
        }
    }
}

/// One objective's action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveAction {
    /// Objective id.
    pub id: String,
    /// Direction.
    pub action: Direction,
    /// Step size (ignored for `keep`).
    pub step: StepClass,
}

/// One earlier iteration: its report and what was changed after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The report the advice was based on.
    pub report: IterationReport,
    /// The goal changes applied.
    pub changes: Vec<GoalChange>,
    /// The advisor's reason.
    pub rationale: String,
}

/// A worked example for few-shot prompting: a report, the changes an expert made, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FewShotExample {
    /// Where it comes from (patient and iteration).
    pub source: String,
    /// The report.
    pub report: IterationReport,
    /// The changes made.
    pub changes: Vec<GoalChange>,
    /// Why.
    pub rationale: String,
}

/// Everything an advisor is given for one decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvisorContext {
    /// Treatment site (from the protocol).
    pub site: String,
    /// Prescription target structure.
    pub target: String,
    /// Prescription dose, cGy.
    pub prescription_cgy: f64,
    /// Prescribed volume, % (coverage is reported as the dose to this volume).
    pub prescription_volume_percent: f64,
    /// Window of the coverage during planning, as multiples of the prescription.
    pub coverage_window: [f64; 2],
    /// Largest number of optimizations of the plan.
    pub max_iterations: u32,
    /// Which criteria end the plan (the study's, the clinical goals, or both).
    #[serde(default = "study_termination")]
    pub termination: tps_api::Termination,
    /// The latest report.
    pub current: IterationReport,
    /// Earlier iterations, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Few-shot examples.
    pub examples: Vec<FewShotExample>,
}

impl AdvisorContext {
    /// The context for `current` under `protocol`, whose `[planning]` section is `planning`.
    pub fn for_protocol(
        protocol: &tps_api::protocol::Protocol,
        planning: &tps_api::protocol::Planning,
        current: IterationReport,
        history: Vec<HistoryEntry>,
        examples: Vec<FewShotExample>,
    ) -> Self {
        Self {
            site: protocol.site.clone(),
            target: protocol.prescription.target.clone(),
            prescription_cgy: protocol.prescription.dose_cgy,
            prescription_volume_percent: protocol.prescription.volume_percent,
            coverage_window: planning.coverage_window,
            max_iterations: planning.max_iterations,
            termination: planning.termination,
            current,
            history,
            examples,
        }
    }
}

/// Contexts written before protocols chose their termination ended by the study's criteria.
fn study_termination() -> tps_api::Termination {
    tps_api::Termination::Study
}

/// An advisor's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// New goals (objectives not named keep theirs).
    pub goals: Vec<GoalChange>,
    /// The actions the goals came from, in actions mode (or the rule's own actions).
    pub actions: Vec<ObjectiveAction>,
    /// The advisor's reason.
    pub rationale: String,
    /// Every model call made for this advice (none for the rule-based physicist).
    pub calls: Vec<CallRecord>,
    /// Why earlier replies of this advice could not be used (each one repaired by asking
    /// again), by cause; empty when the first reply was usable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repaired: Vec<crate::record::ReplyCause>,
}

/// What a backend can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Output constrained by a JSON schema (otherwise JSON mode or prompt-only).
    pub json_schema: bool,
    /// Needs the network.
    pub network: bool,
    /// Same answer for the same context.
    pub deterministic: bool,
    /// The output mode in use.
    pub mode: OutputMode,
}

/// A virtual physicist: reads the plan's state, proposes new goals.
#[async_trait]
pub trait LlmAdvisor: Send + Sync {
    /// Short name for logs and transcripts (provider and model).
    fn name(&self) -> String;

    /// What this advisor can do.
    fn capabilities(&self) -> Capabilities;

    /// The endpoint it calls, for messages (none for an in-process advisor).
    fn endpoint(&self) -> Option<String> {
        None
    }

    /// The record a call for `context` starts with (provider, configured model, the prompts
    /// it sends), for a layer that has to report an attempt that never answered (a timeout);
    /// `None` for an advisor that makes no model call.
    fn request_record(&self, _context: &AdvisorContext) -> Option<CallRecord> {
        None
    }

    /// Proposes an adjustment for `context`.
    async fn advise(&self, context: &AdvisorContext) -> Result<Advice>;
}

#[async_trait]
impl<A: LlmAdvisor + ?Sized> LlmAdvisor for Box<A> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }

    fn endpoint(&self) -> Option<String> {
        (**self).endpoint()
    }

    fn request_record(&self, context: &AdvisorContext) -> Option<CallRecord> {
        (**self).request_record(context)
    }

    async fn advise(&self, context: &AdvisorContext) -> Result<Advice> {
        (**self).advise(context).await
    }
}
