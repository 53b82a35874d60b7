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
//!
//! The rule-based physicist and every actions-mode answer also learn from the last iteration,
//! as the study's models did
//! ("the models autonomously adapt the adjustment amplitude of dose goals based on feedback"):
//! once a goal has moved and the value has answered, [`informed_goal`] extrapolates that answer
//! (log of the value against the goal) to the goal that puts the value at the geometric centre
//! of its range, within [`MIN_STEP_CGY`]..[`MAX_STEP_CGY`] of the goal. An optimizer that
//! follows a tightened goal closely (the value hardly rises) then gets larger steps, and one
//! that answers strongly gets smaller ones.

use tps_api::goals::GoalStatus;
use tps_api::objectives::{ObjectiveKind, RangeStatus};
use tps_api::report::{GoalChange, IterationReport, ObjectiveReport};
use tps_api::structure::Role;

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

/// Smallest step of the strategy, cGy.
pub const MIN_STEP_CGY: f64 = 20.0;

/// Largest step the strategy takes in one iteration, cGy (the planner's guard allows no more by
/// default).
pub const MAX_STEP_CGY: f64 = 200.0;

/// The goal that the value's answer to the last goal change points at, or `None` when that
/// answer says nothing: the goal did not move, a value is 0 (not limiting, no slope in
/// log scale), or the value moved the wrong way (it should rise as the goal falls).
///
/// `before` is the objective in the previous report, `now` in the current one (after the
/// change). The log of the value is taken as linear in the goal through the two points, and
/// the goal where it meets the geometric centre of the ideal range is returned, moved at least
/// [`MIN_STEP_CGY`] and at most [`MAX_STEP_CGY`] from `now`'s goal in the direction `a` asks
/// for, rounded to 10 cGy. Only for actions that tighten or relax.
pub fn informed_goal(
    before: &ObjectiveReport,
    now: &ObjectiveReport,
    a: &ObjectiveAction,
) -> Option<f64> {
    let sign = match a.action {
        Direction::Keep => return None,
        Direction::Tighten => -1.0,
        Direction::Relax => 1.0,
    };
    let dg = now.goal_cgy - before.goal_cgy;
    if dg.abs() < 1.0 || before.value <= 0.0 || now.value <= 0.0 {
        return None;
    }
    let slope = (now.value.ln() - before.value.ln()) / dg;
    if !slope.is_finite() || slope >= 0.0 {
        return None;
    }
    let [low, high] = now.ideal_range;
    let centre = (low * high).sqrt();
    let wanted = (centre.ln() - now.value.ln()) / slope;
    // The answer must point the way the action goes; otherwise keep to the ladder.
    if wanted * sign <= 0.0 {
        return None;
    }
    let step = (wanted.abs().clamp(MIN_STEP_CGY, MAX_STEP_CGY) / 10.0).round() * 10.0;
    let base = if sign < 0.0 {
        step_base(now, now.goal_cgy - step)
    } else {
        now.goal_cgy
    };
    Some((base + sign * step).max(MIN_STEP_CGY).round())
}

/// Replaces the ladder's goal of each change in `goals` by [`informed_goal`] where the value's
/// answer to the last change (from `previous` to `report`) is informative, except for the ids
/// in `skip`; returns the ids so changed. The rule-based physicist and every actions-mode answer
/// size their steps this way: the advisor chooses the direction (and the ladder step used when
/// the last change says nothing), the value's answer the size.
pub fn inform_goals(
    goals: &mut [GoalChange],
    report: &IterationReport,
    previous: Option<&IterationReport>,
    actions: &[ObjectiveAction],
    skip: &[&str],
) -> Vec<String> {
    let mut informed = Vec::new();
    for g in goals.iter_mut().filter(|g| !skip.contains(&g.id.as_str())) {
        let now = report.objectives.iter().find(|o| o.id == g.id);
        let before = previous.and_then(|r| r.objectives.iter().find(|o| o.id == g.id));
        let action = actions.iter().find(|a| a.id == g.id);
        if let (Some(now), Some(before), Some(action)) = (now, before, action)
            && let Some(goal) = informed_goal(before, now, action)
        {
            g.goal_cgy = goal;
            informed.push(g.id.clone());
        }
    }
    informed
}

/// Fraction of its bound by which a clinical goal counts as met with margin: an organ whose
/// goals all hold by this much is not pushed further when only the goals end the plan.
pub const GOAL_MARGIN: f64 = 0.05;

/// A move the clinical goals of a report ask for, beside the study's rule.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalMove {
    /// Objective id.
    pub id: String,
    /// Tighten or relax.
    pub action: Direction,
    /// Why, in words (names the goal).
    pub reason: String,
}

/// Whether an objective report is an upper-limit kind (max dose or DVH at most), from its
/// label.
fn is_upper_kind(o: &ObjectiveReport) -> bool {
    o.kind == ObjectiveKind::MaxDose.label() || o.kind.starts_with("DVH: at most")
}

/// The moves `report`'s clinical goals ask for (none when it carries no goals):
///
/// - an organ (OAR) whose upper goal is not met: tighten every objective on it;
/// - a target whose upper goal is not met: tighten its upper-limit objectives (max dose, DVH at
///   most), and relax the organ objective that pushes it hardest (largest weight x value among
///   organs whose own goals hold), since a tight organ is what overdoses a target;
/// - with `goals_only` (the goals alone end the plan): an organ objective whose structure's
///   goals all hold with [`GOAL_MARGIN`] to spare and that the study's rule would tighten is
///   kept (`Direction::Keep`).
pub fn goal_moves(report: &IterationReport, goals_only: bool) -> Vec<GoalMove> {
    if report.goals.is_empty() {
        return Vec::new();
    }
    let failing = |structure: &str| {
        report
            .goals
            .iter()
            .filter(|g| g.structure == structure && g.upper && g.status != GoalStatus::Met)
            .map(|g| g.label.clone())
            .collect::<Vec<_>>()
    };
    let mut moves: Vec<GoalMove> = Vec::new();
    let mut target_failing = Vec::new();
    for o in &report.objectives {
        let f = failing(&o.structure);
        if f.is_empty() {
            continue;
        }
        match o.role {
            Role::Oar => moves.push(GoalMove {
                id: o.id.clone(),
                action: Direction::Tighten,
                reason: format!("goal {} not met", f.join(", ")),
            }),
            Role::Target if is_upper_kind(o) => {
                target_failing.extend(f.iter().cloned());
                moves.push(GoalMove {
                    id: o.id.clone(),
                    action: Direction::Tighten,
                    reason: format!("target goal {} not met", f.join(", ")),
                });
            }
            _ => {}
        }
    }
    if !target_failing.is_empty() {
        let pusher = report
            .objectives
            .iter()
            .filter(|o| o.role == Role::Oar && o.value > 0.0 && failing(&o.structure).is_empty())
            .max_by(|a, b| (a.weight * a.value).total_cmp(&(b.weight * b.value)));
        if let Some(o) = pusher {
            target_failing.dedup();
            moves.push(GoalMove {
                id: o.id.clone(),
                action: Direction::Relax,
                reason: format!(
                    "relaxed as the organ objective pressing hardest on the target while {} is \
                     not met",
                    target_failing.join(", ")
                ),
            });
        }
    }
    if goals_only {
        for o in &report.objectives {
            let goals: Vec<_> = report
                .goals
                .iter()
                .filter(|g| g.structure == o.structure)
                .collect();
            let spare = !goals.is_empty()
                && goals
                    .iter()
                    .all(|g| g.status == GoalStatus::Met && g.margin() >= GOAL_MARGIN);
            if o.role == Role::Oar && spare && !moves.iter().any(|m| m.id == o.id) {
                moves.push(GoalMove {
                    id: o.id.clone(),
                    action: Direction::Keep,
                    reason: format!(
                        "its goals hold with at least {:.0} % to spare",
                        GOAL_MARGIN * 100.0
                    ),
                });
            }
        }
    }
    moves
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
            status: tps_api::objectives::range_status(value, range),
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
    fn informed_steps_follow_the_answer_of_the_last_change() {
        // A tightening of 100 cGy raised the value from 1e-3 to 2e-3: ln 2 per 100 cGy. The
        // range's centre (2.24e-2) is ln(11.2) away, 349 cGy more: capped at 200.
        let before = oar("b", 2600.0, 2700.0, 1e-3);
        let now = oar("b", 2500.0, 2620.0, 2e-3);
        let a = rule_action(&now);
        assert_eq!(a.action, Direction::Tighten);
        assert_eq!(informed_goal(&before, &now, &a), Some(2300.0));
        // A strong answer (1e-3 -> 8e-3 for 100 cGy) asks for 49 cGy more: 50.
        let now = oar("b", 2500.0, 2700.0, 8e-3);
        assert_eq!(
            informed_goal(&before, &now, &rule_action(&now)),
            Some(2450.0)
        );
        // Relaxing after overshooting above the range: 0.2 -> 0.1 for +100 cGy; the centre is
        // ln(0.1 / 0.0224) / (ln 2 / 100) = 216 cGy further: capped at 200.
        let before = oar("b", 2300.0, 2800.0, 0.2);
        let now = oar("b", 2400.0, 2850.0, 0.1);
        let a = rule_action(&now);
        assert_eq!(a.action, Direction::Relax);
        assert_eq!(informed_goal(&before, &now, &a), Some(2600.0));
    }

    #[test]
    fn uninformative_answers_leave_the_ladder_step() {
        let now = oar("b", 2500.0, 2620.0, 2e-3);
        let a = rule_action(&now);
        // Goal unchanged, a zero value, or a value that fell when the goal was tightened.
        for before in [
            oar("b", 2500.0, 2700.0, 1e-3),
            oar("b", 2600.0, 2700.0, 0.0),
            oar("b", 2600.0, 2700.0, 4e-3),
        ] {
            assert_eq!(informed_goal(&before, &now, &a), None, "{before:?}");
        }
        let keep = ObjectiveAction {
            id: "b".into(),
            action: Direction::Keep,
            step: StepClass::Small,
        };
        assert_eq!(
            informed_goal(&oar("b", 2600.0, 2700.0, 1e-3), &now, &keep),
            None
        );
    }

    #[test]
    fn targets_and_rings_are_kept() {
        let mut o = oar("ptv", 3760.0, 3400.0, 0.0);
        o.role = Role::Target;
        assert_eq!(rule_action(&o).action, Direction::Keep);
        o.role = Role::Auxiliary;
        assert_eq!(rule_action(&o).action, Direction::Keep);
    }

    fn goal(
        structure: &str,
        role: Role,
        upper: bool,
        bound: f64,
        value: f64,
    ) -> tps_api::goals::GoalResult {
        let g = tps_api::goals::ClinicalGoal {
            structure: structure.into(),
            quantity: tps_api::goals::GoalQuantity::DosePercent { percent: 10.0 },
            unit: tps_api::goals::GoalUnit::Cgy,
            upper,
            bound,
            tolerance: 0.0,
            priority: tps_api::goals::Priority::Must,
        };
        tps_api::goals::GoalResult {
            label: g.label(),
            structure: structure.into(),
            role,
            priority: g.priority,
            upper,
            bound,
            tolerance: 0.0,
            unit: g.unit,
            value,
            status: g.status_of(value),
        }
    }

    fn report_with(
        objectives: Vec<ObjectiveReport>,
        goals: Vec<tps_api::goals::GoalResult>,
    ) -> IterationReport {
        IterationReport {
            iteration: 2,
            objectives,
            coverage_cgy: 5000.0,
            prescription_cgy: 5000.0,
            total_objective: 1.0,
            solver_iterations: 10,
            wall_s: 0.1,
            goals,
        }
    }

    #[test]
    fn a_failing_organ_goal_tightens_its_objectives_even_above_range() {
        // Core value above its range (the study's rule would relax), but core D10 fails.
        let mut core = oar("core-max", 2500.0, 3400.0, 0.08);
        core.structure = "Core".into();
        let r = report_with(
            vec![core],
            vec![goal("Core", Role::Oar, true, 2500.0, 3400.0)],
        );
        let m = goal_moves(&r, false);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].id.as_str(), m[0].action),
            ("core-max", Direction::Tighten)
        );
        assert!(
            m[0].reason.contains("Core D10% <= 2500 cGy"),
            "{}",
            m[0].reason
        );
    }

    #[test]
    fn a_hot_target_tightens_its_max_objectives_and_relaxes_the_organ_pressing_on_it() {
        let mut max = oar("ptv-max", 5250.0, 5800.0, 0.01);
        max.structure = "PTV".into();
        max.role = Role::Target;
        max.kind = tps_api::ObjectiveKind::MaxDose.label();
        let mut min = max.clone();
        min.id = "ptv-min".into();
        min.kind = tps_api::ObjectiveKind::MinDose.label();
        let mut core = oar("core-max", 2000.0, 2300.0, 0.03);
        core.structure = "Core".into();
        core.weight = 300.0;
        let mut body = oar("body-max", 3000.0, 3100.0, 0.001);
        body.structure = "BODY".into();
        let r = report_with(
            vec![max, min, core, body],
            vec![
                goal("PTV", Role::Target, true, 5500.0, 5700.0),
                goal("Core", Role::Oar, true, 2500.0, 2300.0),
            ],
        );
        let m = goal_moves(&r, false);
        let by = |id: &str| m.iter().find(|m| m.id == id).map(|m| m.action);
        assert_eq!(by("ptv-max"), Some(Direction::Tighten));
        assert_eq!(by("ptv-min"), None, "lower objectives are left");
        assert_eq!(
            by("core-max"),
            Some(Direction::Relax),
            "weight x value is largest"
        );
        assert_eq!(by("body-max"), None);
    }

    #[test]
    fn organs_whose_goals_hold_with_margin_are_left_when_the_goals_alone_end_the_plan() {
        let mut core = oar("core-max", 2500.0, 2000.0, 0.0);
        core.structure = "Core".into();
        let goals = vec![goal("Core", Role::Oar, true, 2500.0, 2000.0)];
        let r = report_with(vec![core.clone()], goals.clone());
        assert_eq!(rule_action(&core).action, Direction::Tighten);
        let m = goal_moves(&r, true);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].action, Direction::Keep);
        // With the study's criteria too, the rule's own tightening stands.
        assert!(goal_moves(&r, false).is_empty());
        // Met by less than the margin: not kept.
        let r = report_with(
            vec![core],
            vec![goal("Core", Role::Oar, true, 2500.0, 2450.0)],
        );
        assert!(goal_moves(&r, true).is_empty());
    }
}
