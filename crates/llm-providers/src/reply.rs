//! Reading a model's reply: the JSON object (also inside a code fence or after prose), its
//! fields, and checks against the report (known ids, finite positive goals, no duplicates).
//! Anything wrong is a message the repair request quotes back to the model.

use serde_json::Value;
use tps_api::report::GoalChange;

use crate::advice::{AdvisorContext, ObjectiveAction, OutputMode};
pub use crate::record::ReplyCause;
use crate::steps::{actions_to_goals, inform_goals};

/// A usable reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// New goals.
    pub goals: Vec<GoalChange>,
    /// The actions (actions mode).
    pub actions: Vec<ObjectiveAction>,
    /// The model's reason.
    pub rationale: String,
}

impl Parsed {
    /// The advice this reply gives, with the calls it took and the causes of the replies
    /// repaired before it.
    pub fn into_advice(
        self,
        calls: Vec<crate::record::CallRecord>,
        repaired: Vec<ReplyCause>,
    ) -> crate::advice::Advice {
        crate::advice::Advice {
            goals: self.goals,
            actions: self.actions,
            rationale: self.rationale,
            calls,
            repaired,
        }
    }
}

/// The JSON object in `text`: the whole text, a fenced block, or the span from the first `{`
/// to the last `}`.
fn json_span(text: &str) -> &str {
    let t = text.trim();
    if t.starts_with('{') {
        return t;
    }
    match (t.find('{'), t.rfind('}')) {
        (Some(a), Some(b)) if b > a => &t[a..=b],
        _ => t,
    }
}

/// A reply that could not be used: its cause and the message the repair request quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyProblem {
    /// Kind.
    pub cause: ReplyCause,
    /// What is wrong, for the model and the user.
    pub message: String,
}

impl std::fmt::Display for ReplyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn problem(cause: ReplyCause, message: impl Into<String>) -> ReplyProblem {
    ReplyProblem {
        cause,
        message: message.into(),
    }
}

/// Parses and checks `text` against `ctx` for `mode`.
pub fn parse(text: &str, ctx: &AdvisorContext, mode: OutputMode) -> Result<Parsed, ReplyProblem> {
    use ReplyCause::*;
    let v: Value = serde_json::from_str(json_span(text))
        .map_err(|e| problem(Malformed, format!("the reply is not valid JSON ({e})")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| problem(Malformed, "the reply is not a JSON object"))?;
    let rationale = obj
        .get("rationale")
        .and_then(Value::as_str)
        .ok_or_else(|| problem(Malformed, "field \"rationale\" (a string) is missing"))?
        .to_string();
    let ids = ctx.current.objective_ids();
    let known = |id: &str| ids.contains(&id);
    let mut seen = Vec::new();
    let mut check_id = |id: &str| -> Result<(), ReplyProblem> {
        if !known(id) {
            return Err(problem(
                UnknownId,
                format!(
                    "objective id {id:?} does not exist (ids: {})",
                    ids.join(", ")
                ),
            ));
        }
        if seen.iter().any(|s: &String| s == id) {
            return Err(problem(
                DuplicateId,
                format!("objective id {id:?} is listed twice"),
            ));
        }
        seen.push(id.to_string());
        Ok(())
    };
    match mode {
        OutputMode::Goals => {
            let list = obj
                .get("adjustments")
                .and_then(Value::as_array)
                .ok_or_else(|| problem(Malformed, "field \"adjustments\" (an array) is missing"))?;
            let mut goals = Vec::with_capacity(list.len());
            for (n, item) in list.iter().enumerate() {
                let id = item.get("id").and_then(Value::as_str).ok_or_else(|| {
                    problem(
                        Malformed,
                        format!("adjustments[{n}].id (a string) is missing"),
                    )
                })?;
                check_id(id)?;
                let goal = item.get("goal_cgy").ok_or_else(|| {
                    problem(
                        Malformed,
                        format!("adjustments[{n}].goal_cgy (a number in cGy) is missing"),
                    )
                })?;
                let goal_cgy = goal.as_f64().ok_or_else(|| {
                    // "NaN" or "inf" written as a string is a non-finite goal, not a typo.
                    let non_finite = goal
                        .as_str()
                        .and_then(|t| t.trim().parse::<f64>().ok())
                        .is_some_and(|v| !v.is_finite());
                    problem(
                        if non_finite {
                            NotFinitePositive
                        } else {
                            Malformed
                        },
                        format!("adjustments[{n}].goal_cgy = {goal} is not a number"),
                    )
                })?;
                if !(goal_cgy.is_finite() && goal_cgy > 0.0) {
                    return Err(problem(
                        NotFinitePositive,
                        format!(
                            "adjustments[{n}].goal_cgy = {goal_cgy} for {id}: goals are positive doses in cGy"
                        ),
                    ));
                }
                goals.push(GoalChange {
                    id: id.to_string(),
                    goal_cgy,
                });
            }
            Ok(Parsed {
                goals,
                actions: Vec::new(),
                rationale,
            })
        }
        OutputMode::Actions => {
            // Keyed by objective id, as the schema asks (`{"bladder-mean": {"action": ...,
            // "step": ...}}`), or a list of items with their id (what the embedded model writes
            // and earlier prompts asked for).
            let mut actions = Vec::new();
            match obj.get("actions") {
                Some(Value::Object(by_id)) => {
                    for (id, item) in by_id {
                        let mut entry = item.clone();
                        if let Some(e) = entry.as_object_mut() {
                            e.insert("id".into(), Value::String(id.clone()));
                        }
                        let a: ObjectiveAction = serde_json::from_value(entry).map_err(|e| {
                            problem(Malformed, format!("actions.{id} = {item}: {e}"))
                        })?;
                        check_id(&a.id)?;
                        actions.push(a);
                    }
                }
                Some(Value::Array(list)) => {
                    for (n, item) in list.iter().enumerate() {
                        let a: ObjectiveAction =
                            serde_json::from_value(item.clone()).map_err(|e| {
                                problem(Malformed, format!("actions[{n}] = {item}: {e}"))
                            })?;
                        check_id(&a.id)?;
                        actions.push(a);
                    }
                }
                _ => {
                    return Err(problem(
                        Malformed,
                        "field \"actions\" (an object keyed by objective id) is missing",
                    ));
                }
            }
            let mut goals =
                actions_to_goals(&ctx.current, &actions).map_err(|m| problem(Malformed, m))?;
            // The model chooses the direction; the value's answer to the last change, where it
            // says something, sizes the step, as for the rule-based physicist.
            let previous = ctx.history.last().map(|h| &h.report);
            inform_goals(&mut goals, &ctx.current, previous, &actions, &[]);
            Ok(Parsed {
                goals,
                actions,
                rationale,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::tests::oar;
    use tps_api::report::IterationReport;

    fn ctx() -> AdvisorContext {
        AdvisorContext {
            site: "cervix".into(),
            target: "PTV".into(),
            prescription_cgy: 3600.0,
            prescription_volume_percent: 95.0,
            coverage_window: [1.0, 1.02],
            max_iterations: 20,
            termination: tps_api::Termination::Study,
            current: IterationReport {
                iteration: 1,
                objectives: vec![oar("bladder-mean", 3000.0, 2500.0, 0.0)],
                coverage_cgy: 3600.0,
                prescription_cgy: 3600.0,
                total_objective: 0.0,
                solver_iterations: 1,
                wall_s: 0.0,
                goals: Vec::new(),
            },
            history: Vec::new(),
            examples: Vec::new(),
        }
    }

    #[test]
    fn finds_the_object_in_fences_and_prose() {
        let body =
            r#"{"rationale": "r", "adjustments": [{"id": "bladder-mean", "goal_cgy": 2400}]}"#;
        for text in [
            body.to_string(),
            format!("```json\n{body}\n```"),
            format!("Here is my adjustment: {body} Hope this helps."),
        ] {
            let p = parse(&text, &ctx(), OutputMode::Goals).unwrap();
            assert_eq!(p.goals[0].goal_cgy, 2400.0);
        }
    }

    #[test]
    fn refuses_duplicates_and_bad_actions() {
        let dup = r#"{"rationale": "r", "adjustments": [{"id": "bladder-mean", "goal_cgy": 2400}, {"id": "bladder-mean", "goal_cgy": 2300}]}"#;
        assert!(
            parse(dup, &ctx(), OutputMode::Goals)
                .unwrap_err()
                .message
                .contains("twice")
        );
        let bad = r#"{"rationale": "r", "actions": [{"id": "bladder-mean", "action": "halve", "step": "large"}]}"#;
        assert!(
            parse(bad, &ctx(), OutputMode::Actions)
                .unwrap_err()
                .message
                .contains("actions[0]")
        );
        let ok = r#"{"rationale": "r", "actions": [{"id": "bladder-mean", "action": "tighten", "step": "medium"}]}"#;
        let p = parse(ok, &ctx(), OutputMode::Actions).unwrap();
        assert_eq!(p.goals[0].goal_cgy, 2450.0);
        // The keyed form the schema asks for reads the same.
        let keyed = r#"{"rationale": "r", "actions": {"bladder-mean": {"action": "tighten", "step": "medium"}}}"#;
        assert_eq!(parse(keyed, &ctx(), OutputMode::Actions).unwrap(), p);
        let unknown =
            r#"{"rationale": "r", "actions": {"bowel": {"action": "keep", "step": "small"}}}"#;
        let e = parse(unknown, &ctx(), OutputMode::Actions).unwrap_err();
        assert_eq!(e.cause, ReplyCause::UnknownId, "{e}");
        let bad = r#"{"rationale": "r", "actions": {"bladder-mean": {"action": "halve", "step": "large"}}}"#;
        let e = parse(bad, &ctx(), OutputMode::Actions).unwrap_err();
        assert!(e.message.contains("actions.bladder-mean"), "{e}");
        assert!(
            parse("[]", &ctx(), OutputMode::Goals)
                .unwrap_err()
                .message
                .contains("object")
        );
    }

    /// An actions-mode answer chooses the direction; where the value answered the last change,
    /// its extrapolation sizes the step as for the rule-based physicist (here a tightening of
    /// 100 cGy raised the value from 1e-3 to 2e-3, which points 349 cGy further: capped at
    /// 200), whatever the step class; without that answer the ladder's step stands.
    #[test]
    fn actions_are_sized_by_the_last_change_answer() {
        let mut c = ctx();
        c.current.objectives = vec![oar("bladder-mean", 2500.0, 2620.0, 2e-3)];
        let mut before = c.current.clone();
        before.objectives = vec![oar("bladder-mean", 2600.0, 2700.0, 1e-3)];
        c.history.push(crate::advice::HistoryEntry {
            report: before,
            changes: vec![GoalChange {
                id: "bladder-mean".into(),
                goal_cgy: 2500.0,
            }],
            rationale: String::new(),
        });
        let small = r#"{"rationale": "r", "actions": {"bladder-mean": {"action": "tighten", "step": "small"}}}"#;
        assert_eq!(
            parse(small, &c, OutputMode::Actions).unwrap().goals[0].goal_cgy,
            2300.0
        );
        c.history.clear();
        assert_eq!(
            parse(small, &c, OutputMode::Actions).unwrap().goals[0].goal_cgy,
            2480.0
        );
    }
}
