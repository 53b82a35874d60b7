//! The adjustment strategy shared by the rule-based physicist and the actions mode: which way a
//! goal moves and by how much.
//!
//! An objective whose constraint target value is below its ideal range has room to spare: its
//! goal is tightened (lowered); above the range it is violated too much: its goal is relaxed
//! (raised). The step is adaptive, large far from the range and smaller near it: 100 cGy when
//! the value is more than a factor of 10 away from the range's nearer end (a value of 0 counts
//! as far), 50 cGy within a factor of 10, 20 cGy within a factor of 2. A tightened goal that is
//! still above the current dose (value 0) is first brought below the current dose, so every
//! step changes the optimization.

use tps_core::objectives::RangeStatus;
use tps_core::structure::Role;
use tps_core::tps::{GoalChange, IterationReport, ObjectiveReport};

use crate::advice::{Direction, ObjectiveAction, StepClass};

/// The strategy's action for one objective: OAR objectives outside their ideal range move;
/// target and auxiliary (ring) objectives, and objectives inside their range, are kept.
pub fn rule_action(o: &ObjectiveReport) -> ObjectiveAction {
    let [low, high] = o.ideal_range;
    let (action, step) = match (o.role, o.status) {
        (Role::Oar, RangeStatus::Below) => {
            let step = if o.value < low / 10.0 {
                StepClass::Large
            } else if o.value < low / 2.0 {
                StepClass::Medium
            } else {
                StepClass::Small
            };
            (Direction::Tighten, step)
        }
        (Role::Oar, RangeStatus::Above) => {
            let step = if o.value > high * 10.0 {
                StepClass::Large
            } else if o.value > high * 2.0 {
                StepClass::Medium
            } else {
                StepClass::Small
            };
            (Direction::Relax, step)
        }
        _ => (Direction::Keep, StepClass::Small),
    };
    ObjectiveAction {
        id: o.id.clone(),
        action,
        step,
    }
}

/// Where a step to `new_goal` is measured from: the goal, or, when a goal above the current
/// dose is tightened, the current dose (the strategy first brings such a goal below it).
pub fn step_base(o: &ObjectiveReport, new_goal: f64) -> f64 {
    if new_goal < o.goal_cgy {
        o.goal_cgy.min(o.current_cgy)
    } else {
        o.goal_cgy
    }
}

/// The goal an action gives `o`, or `None` for `keep`. A tightened goal starts from the current
/// dose when the goal is above it; goals never go below one step.
pub fn goal_after(o: &ObjectiveReport, a: &ObjectiveAction) -> Option<f64> {
    let step = a.step.cgy();
    match a.action {
        Direction::Keep => None,
        Direction::Relax => Some(o.goal_cgy + step),
        Direction::Tighten => {
            let base = step_base(o, o.goal_cgy - step);
            Some((base - step).max(step).round())
        }
    }
}

/// Turns actions into goal changes against `report`; an action naming an objective the report
/// lacks is an error naming it.
pub fn actions_to_goals(
    report: &IterationReport,
    actions: &[ObjectiveAction],
) -> Result<Vec<GoalChange>, String> {
    let mut out = Vec::new();
    for a in actions {
        let o = report
            .objectives
            .iter()
            .find(|o| o.id == a.id)
            .ok_or_else(|| format!("unknown objective id {:?}", a.id))?;
        if let Some(goal_cgy) = goal_after(o, a) {
            out.push(GoalChange {
                id: a.id.clone(),
                goal_cgy,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An OAR mean-dose objective with the study's strict range.
    pub fn oar(id: &str, goal: f64, current: f64, value: f64) -> ObjectiveReport {
        let range = [1e-2, 5e-2];
        ObjectiveReport {
            id: id.into(),
            structure: "Bladder".into(),
            role: Role::Oar,
            kind: "mean dose".into(),
            weight: 5.0,
            goal_cgy: goal,
            current_cgy: current,
            value,
            ideal_range: range,
            status: tps_core::objectives::range_status(value, range),
        }
    }

    #[test]
    fn steps_shrink_near_the_range() {
        let cases = [
            (0.0, Direction::Tighten, StepClass::Large),
            (5e-4, Direction::Tighten, StepClass::Large),
            (3e-3, Direction::Tighten, StepClass::Medium),
            (7e-3, Direction::Tighten, StepClass::Small),
            (2e-2, Direction::Keep, StepClass::Small),
            (8e-2, Direction::Relax, StepClass::Small),
            (0.2, Direction::Relax, StepClass::Medium),
            (0.9, Direction::Relax, StepClass::Large),
        ];
        for (v, d, s) in cases {
            let a = rule_action(&oar("b", 3000.0, 2500.0, v));
            assert_eq!((a.action, a.step), (d, s), "value {v}");
        }
    }

    #[test]
    fn tightening_a_slack_goal_starts_below_the_current_dose() {
        let o = oar("b", 3000.0, 2437.0, 0.0);
        let a = rule_action(&o);
        assert_eq!(goal_after(&o, &a), Some(2337.0));
        let o = oar("b", 2300.0, 2400.0, 8e-3);
        assert_eq!(goal_after(&o, &rule_action(&o)), Some(2280.0));
        let o = oar("b", 2300.0, 2800.0, 0.2);
        assert_eq!(goal_after(&o, &rule_action(&o)), Some(2350.0));
    }

    #[test]
    fn targets_and_rings_are_kept() {
        let mut o = oar("ptv", 3760.0, 3400.0, 0.0);
        o.role = Role::Target;
        assert_eq!(rule_action(&o).action, Direction::Keep);
        o.role = Role::Auxiliary;
        assert_eq!(rule_action(&o).action, Direction::Keep);
    }
}
