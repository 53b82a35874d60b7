//! The rule-based physicist: the study's adjustment strategy as deterministic rules.

use async_trait::async_trait;

use crate::advice::StepClass;
use crate::advice::{Advice, AdvisorContext, Capabilities, Direction, LlmAdvisor, OutputMode};
use crate::error::Result;
use crate::steps::{actions_to_goals, goal_moves, inform_goals, rule_action};

/// Adjusts every OAR objective outside its ideal range by the adaptive step of
/// [`crate::steps`], and, when the report carries clinical goals, follows what they ask
/// ([`crate::steps::goal_moves`]: tighten an organ whose goal fails, tighten a target's upper
/// objectives and relax the organ pressing on it when a target upper goal fails, leave an organ
/// whose goals hold with margin when only the goals end the plan); needs no model and no
/// network, and gives the same advice for the same report.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleBasedAdvisor;

impl RuleBasedAdvisor {
    /// The advice for `context`, computed synchronously.
    pub fn decide(&self, context: &AdvisorContext) -> Advice {
        let report = &context.current;
        let previous = context.history.last().map(|h| &h.report);
        let mut actions: Vec<_> = report.objectives.iter().map(rule_action).collect();
        let moves = goal_moves(report, context.termination == tps_api::Termination::Goals);
        for m in &moves {
            if let Some(a) = actions.iter_mut().find(|a| a.id == m.id) {
                a.action = m.action;
                a.step = StepClass::Medium;
            }
        }
        let mut goals = actions_to_goals(report, &actions).expect("actions come from the report");
        // Where the last change's answer is informative, its extrapolation replaces the ladder
        // (not for the goals' moves, which go against the value's range on purpose).
        let skip: Vec<&str> = moves.iter().map(|m| m.id.as_str()).collect();
        let informed = inform_goals(&mut goals, report, previous, &actions, &skip);
        let mut reasons = Vec::new();
        for (a, o) in actions.iter().zip(&report.objectives) {
            if let Some(m) = moves.iter().find(|m| m.id == a.id) {
                let new = goals.iter().find(|g| g.id == a.id).map(|g| g.goal_cgy);
                reasons.push(match new {
                    Some(new) => format!(
                        "{}: {} {:.0} -> {:.0} cGy ({})",
                        o.id,
                        a.action.word(),
                        o.goal_cgy,
                        new,
                        m.reason
                    ),
                    None => format!("{}: keep ({})", o.id, m.reason),
                });
                continue;
            }
            if a.action == Direction::Keep {
                continue;
            }
            let new = goals
                .iter()
                .find(|g| g.id == a.id)
                .map_or(o.goal_cgy, |g| g.goal_cgy);
            reasons.push(format!(
                "{}: value {:.2e} {} {:.0e}..{:.0e}, {} {:.0} -> {:.0} cGy ({})",
                o.id,
                o.value,
                if a.action == Direction::Tighten {
                    "below"
                } else {
                    "above"
                },
                o.ideal_range[0],
                o.ideal_range[1],
                a.action.word(),
                o.goal_cgy,
                new,
                if informed.contains(&a.id) {
                    "step from the last change's answer".to_string()
                } else {
                    format!("{} step", format!("{:?}", a.step).to_lowercase())
                }
            ));
        }
        let rationale = if reasons.is_empty() {
            "every OAR objective is inside its ideal range: no change".to_string()
        } else {
            reasons.join("; ")
        };
        Advice {
            goals,
            actions: actions
                .into_iter()
                .filter(|a| a.action != Direction::Keep)
                .collect(),
            rationale,
            calls: Vec::new(),
            repaired: Vec::new(),
        }
    }
}

#[async_trait]
impl LlmAdvisor for RuleBasedAdvisor {
    fn name(&self) -> String {
        "rule-based".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            json_schema: false,
            network: false,
            deterministic: true,
            mode: OutputMode::Goals,
        }
    }

    async fn advise(&self, context: &AdvisorContext) -> Result<Advice> {
        Ok(self.decide(context))
    }
}
