//! The guard between an advisor and the TPS: every proposed goal change is checked, and what
//! is wrong with it is counted by kind (the measured hallucination rate) and handled by the
//! configured policy.

use std::collections::BTreeMap;

use llm_providers::advice::Direction;
use llm_providers::steps::{GoalMove, goal_moves, step_base};
use serde::{Deserialize, Serialize};
use tps_api::{GoalChange, IterationReport, RangeStatus, Role};

/// What the guard does with a change that breaks a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuardPolicy {
    /// Drop the offending change; keep the others.
    Reject,
    /// Bring an out-of-bounds or oversized change back within the limits; drop the others.
    Clamp,
    /// Replace the whole advice with the rule-based physicist's when any change is wrong.
    Fallback,
}

/// Limits of the guard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GuardSettings {
    /// Policy.
    pub policy: GuardPolicy,
    /// Largest goal step, cGy, measured from the goal, or from the current dose when a goal
    /// above it is tightened.
    pub max_step_cgy: f64,
    /// Highest goal, as a multiple of the prescription.
    pub max_goal_factor: f64,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            policy: GuardPolicy::Fallback,
            max_step_cgy: 200.0,
            max_goal_factor: 1.1,
        }
    }
}

/// Kinds of violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Violation {
    /// The id names no objective.
    UnknownId,
    /// The same objective twice.
    DuplicateId,
    /// Not a finite positive dose.
    NotFinitePositive,
    /// Above the protocol's bound.
    OutOfBounds,
    /// A target or ring objective: only OAR goals are adjusted.
    NotAnOar,
    /// A step larger than the limit.
    StepTooLarge,
    /// Tightening an objective already above its range.
    TightenAboveRange,
    /// Relaxing an objective below its range.
    RelaxBelowRange,
    /// A goal left above the current dose of an objective whose value is 0 (no effect).
    IneffectiveGoal,
    /// A reply that was not the answer's JSON (not JSON, a field missing or of the wrong
    /// type), caught when the reply was read.
    MalformedReply,
    /// A reply the server cut at its token limit.
    TruncatedReply,
}

impl Violation {
    /// The kind of a reply the advisor's reader refused (and asked to repair).
    pub fn of_reply(cause: llm_providers::reply::ReplyCause) -> Self {
        use llm_providers::reply::ReplyCause;
        match cause {
            ReplyCause::Malformed => Violation::MalformedReply,
            ReplyCause::UnknownId => Violation::UnknownId,
            ReplyCause::DuplicateId => Violation::DuplicateId,
            ReplyCause::NotFinitePositive => Violation::NotFinitePositive,
            ReplyCause::Truncated => Violation::TruncatedReply,
        }
    }
}

/// The guard's decision on one proposed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The change as proposed.
    pub proposed: GoalChange,
    /// What is wrong with it (empty when nothing is).
    pub violations: Vec<Violation>,
    /// The change applied, if any.
    pub applied: Option<GoalChange>,
}

/// The outcome for one advice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Per proposed change.
    pub decisions: Vec<Decision>,
    /// Whether the rule-based fallback replaced the advice.
    pub fell_back: bool,
    /// The changes to apply.
    pub applied: Vec<GoalChange>,
}

/// Violations of one change against the report; `moves` are the report's clinical goals' moves
/// ([`goal_moves`]), which lift the range and role rules in their direction.
pub fn check(
    change: &GoalChange,
    report: &IterationReport,
    settings: &GuardSettings,
    moves: &[GoalMove],
    seen: &mut Vec<String>,
) -> Vec<Violation> {
    let mut v = Vec::new();
    let Some(o) = report.objectives.iter().find(|o| o.id == change.id) else {
        return vec![Violation::UnknownId];
    };
    if seen.contains(&change.id) {
        v.push(Violation::DuplicateId);
    }
    seen.push(change.id.clone());
    let g = change.goal_cgy;
    if !(g.is_finite() && g > 0.0) {
        v.push(Violation::NotFinitePositive);
        return v;
    }
    if g > settings.max_goal_factor * report.prescription_cgy {
        v.push(Violation::OutOfBounds);
    }
    let tightening = g < o.goal_cgy;
    // A move the report's clinical goals ask for (an organ whose goal fails tightened though
    // its value is above range, a target's upper objective tightened, the organ pressing on a
    // failing target relaxed) is no violation in that direction.
    let asked = moves.iter().any(|m| {
        m.id == o.id
            && match m.action {
                Direction::Tighten => tightening,
                Direction::Relax => g > o.goal_cgy,
                Direction::Keep => false,
            }
    });
    if o.role != Role::Oar && !asked {
        v.push(Violation::NotAnOar);
    }
    let base = step_base(o, g);
    if (g - base).abs() > settings.max_step_cgy + 1e-9 {
        v.push(Violation::StepTooLarge);
    }
    if tightening && o.status == RangeStatus::Above && !asked {
        v.push(Violation::TightenAboveRange);
    }
    if g > o.goal_cgy && o.status == RangeStatus::Below && !asked {
        v.push(Violation::RelaxBelowRange);
    }
    if o.value == 0.0 && g >= o.current_cgy && o.status == RangeStatus::Below {
        v.push(Violation::IneffectiveGoal);
    }
    v
}

/// Applies the policy to `proposed` (and `fallback`, the rule-based advice for the same
/// report, used by [`GuardPolicy::Fallback`]).
pub fn judge(
    proposed: &[GoalChange],
    report: &IterationReport,
    settings: &GuardSettings,
    fallback: &[GoalChange],
) -> Verdict {
    let mut seen = Vec::new();
    // What the report's clinical goals ask for, once per advice.
    let moves = goal_moves(report, false);
    let mut decisions: Vec<Decision> = proposed
        .iter()
        .map(|c| {
            let violations = check(c, report, settings, &moves, &mut seen);
            Decision {
                proposed: c.clone(),
                applied: violations.is_empty().then(|| c.clone()),
                violations,
            }
        })
        .collect();
    let any = decisions.iter().any(|d| !d.violations.is_empty());
    match settings.policy {
        GuardPolicy::Fallback if any => {
            for d in &mut decisions {
                d.applied = None;
            }
            Verdict {
                decisions,
                fell_back: true,
                applied: fallback.to_vec(),
            }
        }
        GuardPolicy::Clamp => {
            for d in &mut decisions {
                let only_size = d
                    .violations
                    .iter()
                    .all(|v| matches!(v, Violation::StepTooLarge | Violation::OutOfBounds));
                if d.violations.is_empty() || !only_size {
                    continue;
                }
                let o = report
                    .objectives
                    .iter()
                    .find(|o| o.id == d.proposed.id)
                    .expect("known id");
                let g = d.proposed.goal_cgy;
                let base = step_base(o, g);
                let clamped = g
                    .clamp(base - settings.max_step_cgy, base + settings.max_step_cgy)
                    .min(settings.max_goal_factor * report.prescription_cgy)
                    .max(1.0);
                d.applied = Some(GoalChange {
                    id: d.proposed.id.clone(),
                    goal_cgy: clamped,
                });
            }
            let applied = decisions.iter().filter_map(|d| d.applied.clone()).collect();
            Verdict {
                decisions,
                fell_back: false,
                applied,
            }
        }
        _ => {
            let applied = decisions.iter().filter_map(|d| d.applied.clone()).collect();
            Verdict {
                decisions,
                fell_back: false,
                applied,
            }
        }
    }
}

/// Violations counted by kind over a plan.
pub type ViolationCounts = BTreeMap<Violation, u32>;
