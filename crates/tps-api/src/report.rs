//! What the planning loop and a TPS exchange: goal changes in, iteration reports and plan
//! summaries out. Every type here has a serde form, so transcripts and remote TPSs carry them
//! unchanged.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::goals::GoalResult;
use crate::objectives::{Objective, RangeStatus};
use crate::protocol::Termination;
use crate::structure::Role;

/// A new dose goal for one objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoalChange {
    /// Objective id.
    pub id: String,
    /// New goal, cGy.
    pub goal_cgy: f64,
}

/// Highest goal any TPS accepts, cGy (a dose no plan gives; it stops an absurd number early).
pub const MAX_GOAL_CGY: f64 = 20_000.0;

impl GoalChange {
    /// `objectives` with `changes` applied, in order; an unknown id or a goal that is not a
    /// positive dose up to [`MAX_GOAL_CGY`] is an error naming the change, and nothing is
    /// applied. What every `Tps::optimize` does with its goal changes.
    pub fn apply_all(objectives: &[Objective], changes: &[GoalChange]) -> Result<Vec<Objective>> {
        let mut next = objectives.to_vec();
        for (n, g) in changes.iter().enumerate() {
            let Some(o) = next.iter_mut().find(|o| o.id == g.id) else {
                return Err(Error::invalid(
                    "goal changes",
                    format!("[{n}].id"),
                    &g.id,
                    "no objective has this id",
                ));
            };
            if !(g.goal_cgy.is_finite() && g.goal_cgy > 0.0 && g.goal_cgy <= MAX_GOAL_CGY) {
                return Err(Error::invalid(
                    "goal changes",
                    format!("[{n}].goal-cgy"),
                    g.goal_cgy.to_string(),
                    "goals must be positive doses in cGy",
                ));
            }
            o.goal_cgy = g.goal_cgy;
        }
        Ok(next)
    }
}

/// One objective after an optimization, as the advisor reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveReport {
    /// Objective id.
    pub id: String,
    /// Structure.
    pub structure: String,
    /// Role of the structure (only OAR objectives enter the termination criterion).
    pub role: Role,
    /// Objective type, in words.
    pub kind: String,
    /// Weight.
    pub weight: f64,
    /// Current goal, cGy.
    pub goal_cgy: f64,
    /// Current value of the quantity the objective constrains (max, min, mean or D_V%), cGy.
    pub current_cgy: f64,
    /// Constraint target value.
    pub value: f64,
    /// Ideal range of the value.
    pub ideal_range: [f64; 2],
    /// Where the value stands against its range.
    pub status: RangeStatus,
}

/// What a TPS reports after one optimization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationReport {
    /// 1 for the first optimization of a case.
    pub iteration: u32,
    /// Per objective, in protocol order.
    pub objectives: Vec<ObjectiveReport>,
    /// Prescription target's dose at the prescribed volume (PTV D95), cGy.
    pub coverage_cgy: f64,
    /// Prescription dose, cGy.
    pub prescription_cgy: f64,
    /// Weighted sum of the constraint target values.
    pub total_objective: f64,
    /// Solver iterations of this optimization.
    pub solver_iterations: usize,
    /// Wall time of this optimization, s.
    pub wall_s: f64,
    /// The protocol's clinical goals judged on this plan's dose, in protocol order. Filled by
    /// the planning loop when the termination uses the goals (a TPS leaves it empty); absent
    /// from the JSON when empty, so older transcripts and TPSs read unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<GoalResult>,
}

impl IterationReport {
    /// The objectives' ids, in protocol order.
    pub fn objective_ids(&self) -> Vec<&str> {
        self.objectives.iter().map(|o| o.id.as_str()).collect()
    }

    /// Whether `termination`'s criteria hold: the study's ([`IterationReport::criteria_met`]),
    /// every must-goal passed ([`IterationReport::must_goals_passed`]), or both.
    pub fn terminates(&self, termination: Termination) -> bool {
        (!termination.uses_study() || self.criteria_met())
            && (!termination.uses_goals() || self.must_goals_passed())
    }

    /// Every must-goal met or within its tolerance (true when there are none).
    pub fn must_goals_passed(&self) -> bool {
        crate::goals::failed_must(&self.goals).is_empty()
    }

    /// The study's termination criterion: coverage at least the prescription and every OAR
    /// objective's value inside its ideal range.
    pub fn criteria_met(&self) -> bool {
        // A plan normalized to the prescription meets it up to rounding.
        self.coverage_cgy >= self.prescription_cgy * (1.0 - 1e-6)
            && self
                .objectives
                .iter()
                .filter(|o| o.role == Role::Oar)
                .all(|o| o.status == RangeStatus::Inside)
    }

    /// OAR objectives outside their ideal range.
    pub fn oar_out_of_range(&self) -> usize {
        self.objectives
            .iter()
            .filter(|o| o.role == Role::Oar && o.status != RangeStatus::Inside)
            .count()
    }
}

/// Delivery summary of the current plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// MU of each beam, over the whole course.
    pub beam_mu: Vec<f64>,
    /// Total MU per fraction.
    pub mu_per_fraction: f64,
    /// Number of fractions.
    pub fractions: u32,
}
