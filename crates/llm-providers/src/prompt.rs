//! Prompts and the output schema, built from the advisor context (protocol, report, history):
//! nothing here is specific to a treatment site.

use std::fmt::Write;

use serde_json::{Value, json};
use tps_api::report::{GoalChange, IterationReport, ObjectiveReport};

use crate::advice::{AdvisorContext, Direction, OutputMode, StepClass};

/// Limits on a reply: the schema's bounds and the token limit sent with the request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerLimits {
    /// Longest rationale, characters.
    pub rationale_max_chars: usize,
    /// Whether the schema says so with `maxLength` (OpenAI's strict mode refuses the keyword:
    /// `schema-max-length = false` in its provider file; the token limit still bounds it).
    pub schema_max_length: bool,
    /// Reply token limit; `None`: sized from the schema ([`answer_max_tokens_with`]).
    pub max_tokens: Option<u32>,
}

impl Default for AnswerLimits {
    /// A 600-character rationale in the schema, the token limit sized from it.
    fn default() -> Self {
        Self {
            rationale_max_chars: 600,
            schema_max_length: true,
            max_tokens: None,
        }
    }
}

/// [`answer_schema_with`] under the default limits.
pub fn answer_schema(ctx: &AdvisorContext, mode: OutputMode) -> Value {
    answer_schema_with(ctx, mode, &AnswerLimits::default())
}

/// The system prompt: the role, what the numbers mean and the adjustment strategy.
pub fn system_prompt(ctx: &AdvisorContext, mode: OutputMode) -> String {
    let answer = match mode {
        OutputMode::Goals => {
            "Answer with one JSON object only: {\"rationale\": \"<one or two sentences>\", \
             \"adjustments\": [{\"id\": \"<objective id>\", \"goal_cgy\": <new goal>}]}. List \
             only the objectives whose goal changes."
        }
        OutputMode::Actions => {
            "Answer with one JSON object only: {\"actions\": {\"<objective id>\": {\"status\": \
             \"<its status in the table>\", \"action\": \"tighten\" | \"relax\" | \"keep\", \
             \"step\": \"small\" | \"medium\" | \"large\"}, ...}, \"rationale\": \"<one \
             sentence>\"}, with one entry for every organ objective of the table. Steps are 20, 50 \
             and 100 cGy; the software computes the new goals."
        }
    };
    format!(
        "You are an experienced medical physicist planning {site} radiotherapy (VMAT). After \
         each optimization you read the dosimetric results and adjust the dose goals of the plan \
         objectives; the optimizer then runs again, up to {max} times.\n\
         \n\
         Each objective has a dose goal in cGy and a constraint target value: 0 when the \
         objective is met, growing with the square of the relative excess over the goal (a mean \
         dose 5 % above its goal gives about 2.5e-3). An objective is acceptable when its value \
         lies inside its ideal range.\n\
         \n\
         Strategy: adjust only organ-at-risk (OAR) objectives; never change weights. Below its \
         range an objective has room to spare: tighten it (lower the goal; when the goal is \
         above the current dose, set it below the current dose). Above its range it is violated \
         too much: relax it (raise the goal). Inside its range: keep it. Use large steps \
         (100 cGy) far from the range and smaller ones (50, then 20 cGy) as the value nears it. \
         The target's coverage ({target} D{vol}) must stay between {lo:.2} and {hi:.2} times the \
         prescription of {rx:.0} cGy. {finished}\n\
         \n\
         {answer}",
        site = ctx.site,
        max = ctx.max_iterations,
        target = ctx.target,
        vol = ctx.prescription_volume_percent,
        lo = ctx.coverage_window[0],
        hi = ctx.coverage_window[1],
        rx = ctx.prescription_cgy,
        finished = finished_text(ctx.termination),
    )
}

/// When the plan is finished, in the system prompt's words.
fn finished_text(termination: tps_api::Termination) -> String {
    const STUDY: &str = "The plan is finished when every OAR value is inside its range.";
    const JUDGED: &str = "The plan is also judged by clinical goals (dose-volume limits per \
                          structure, shown with their values after each optimization).";
    const MOVES: &str = "When an organ's goal fails, tighten its objectives even if their value \
                         is above range; when a target's upper goal fails (too hot), tighten the \
                         target's max-dose objectives and relax the organ objective pressing \
                         hardest on it";
    match termination {
        tps_api::Termination::Study => STUDY.into(),
        tps_api::Termination::Goals => format!(
            "{JUDGED} The plan is finished when every must-goal passes; the ideal ranges then \
             only guide the steps. {MOVES}; leave an organ whose goals hold with margin."
        ),
        tps_api::Termination::Both => format!(
            "{JUDGED} The plan is finished when every OAR value is inside its range and every \
             must-goal passes. {MOVES}."
        ),
    }
}

/// The clinical goals of a report as a compact table (empty when it has none).
pub fn goals_table(r: &IterationReport) -> String {
    if r.goals.is_empty() {
        return String::new();
    }
    let mut s =
        String::from("Clinical goals:\n| goal | priority | value | status |\n|---|---|---|---|\n");
    for g in &r.goals {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} {} | {} |",
            g.label,
            g.priority.word(),
            g.value,
            g.unit.label(),
            g.status.word()
        );
    }
    s
}

/// The report as a compact table.
pub fn report_table(r: &IterationReport) -> String {
    let mut s = String::from(
        "| id | structure | role | type | goal cGy | current cGy | value | ideal range | status |\n",
    );
    s += "|---|---|---|---|---|---|---|---|---|\n";
    for o in &r.objectives {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.2e} | {:.0e}..{:.0e} | {} |",
            o.id,
            o.structure,
            format!("{:?}", o.role).to_lowercase(),
            o.kind,
            o.goal_cgy,
            o.current_cgy,
            o.value,
            o.ideal_range[0],
            o.ideal_range[1],
            o.status.word()
        );
    }
    s
}

/// The objectives an actions-mode answer has an entry for, in the answer's order (the
/// report's): those that may move, the organ objectives, or all of them when the clinical
/// goals take part in the termination. The table, the example and the answer all follow it.
pub fn answer_order(ctx: &AdvisorContext) -> Vec<&ObjectiveReport> {
    let any_role = ctx.termination.uses_goals();
    ctx.current
        .objectives
        .iter()
        .filter(|o| any_role || o.role == tps_api::Role::Oar)
        .collect()
}

/// The report as the actions mode shows it: the objectives an answer moves, in its order
/// ([`answer_order`]), with what an action follows, the value against its ideal range and the
/// status; no goals or doses, which the software turns actions into. A fifth of the tokens of
/// [`report_table`] (a small model reads every digit as a token), which sets the offline
/// model's time per advice.
pub fn report_table_actions(ctx: &AdvisorContext) -> String {
    let mut s =
        String::from("| organ objective | value | ideal range | status |\n|---|---|---|---|\n");
    for o in answer_order(ctx) {
        let _ = writeln!(
            s,
            "| {} | {:.1e} | {:.0e}..{:.0e} | {} |",
            o.id,
            o.value,
            o.ideal_range[0],
            o.ideal_range[1],
            o.status.word()
        );
    }
    s
}

fn changes_text(changes: &[GoalChange]) -> String {
    if changes.is_empty() {
        return "no change".into();
    }
    changes
        .iter()
        .map(|c| format!("{} -> {:.0} cGy", c.id, c.goal_cgy))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The user prompt for an answer in `mode`: examples, history (with how each value moved),
/// and the current iteration. In the actions mode the history comes first: there the examples
/// are retrieved anew for each report (`--selection per-objective`), and what stays the same
/// from one iteration to the next is best at the start, where a model's state over it can be
/// kept ([`user_prompt_stable`]).
pub fn user_prompt(ctx: &AdvisorContext, mode: OutputMode) -> String {
    let mut s = user_prompt_stable(ctx, mode);
    if !s.is_empty() {
        s += "\n\n";
    }
    if mode == OutputMode::Actions {
        s += &examples_text(ctx, mode);
    }
    s + &user_prompt_rest(ctx, mode)
}

/// The start of [`user_prompt`] that later iterations of a plan only extend, without the
/// blank line that ends it (so that what follows in the next iteration continues it): the
/// few-shot examples and the earlier iterations, or in the actions mode the earlier
/// iterations alone. An advisor that keeps a model's state over a prompt's start (the
/// embedded model) reuses what this covers.
pub fn user_prompt_stable(ctx: &AdvisorContext, mode: OutputMode) -> String {
    let mut s = match mode {
        OutputMode::Goals => examples_text(ctx, mode),
        OutputMode::Actions => String::new(),
    };
    s += &history_text(ctx);
    let kept = s.trim_end_matches('\n').len();
    s.truncate(kept);
    s
}

/// The few-shot examples, each followed by a blank line.
fn examples_text(ctx: &AdvisorContext, mode: OutputMode) -> String {
    let mut s = String::new();
    let order: Vec<&str> = answer_order(ctx).iter().map(|o| o.id.as_str()).collect();
    for (n, e) in ctx.examples.iter().enumerate() {
        if mode == OutputMode::Actions {
            let _ = write!(
                s,
                "Example {} ({}): {}\n\n",
                n + 1,
                e.source,
                example_answer(e, &order)
            );
            continue;
        }
        let _ = write!(
            s,
            "Example {} ({}), iteration {}: coverage {:.0} cGy\n{}Changes made: {}. Reason: {}\n\n",
            n + 1,
            e.source,
            e.report.iteration,
            e.report.coverage_cgy,
            report_table(&e.report),
            changes_text(&e.changes),
            e.rationale
        );
    }
    s
}

/// The earlier iterations of the plan, one line each; empty without history.
fn history_text(ctx: &AdvisorContext) -> String {
    let mut s = String::new();
    if !ctx.history.is_empty() {
        s += "Earlier iterations of this plan (value before -> after the change):\n";
        for (n, h) in ctx.history.iter().enumerate() {
            let next = ctx
                .history
                .get(n + 1)
                .map_or(&ctx.current, |later| &later.report);
            let moved: Vec<String> = h
                .changes
                .iter()
                .filter_map(|c| {
                    let before = h.report.objectives.iter().find(|o| o.id == c.id)?;
                    let after = next.objectives.iter().find(|o| o.id == c.id)?;
                    Some(format!(
                        "{}: goal {:.0} -> {:.0}, dose {:.0} -> {:.0} cGy, value {:.2e} -> {:.2e}",
                        c.id,
                        before.goal_cgy,
                        c.goal_cgy,
                        before.current_cgy,
                        after.current_cgy,
                        before.value,
                        after.value
                    ))
                })
                .collect();
            let _ = writeln!(
                s,
                "- iteration {}: {}{}",
                h.report.iteration,
                if moved.is_empty() {
                    "no change".to_string()
                } else {
                    moved.join("; ")
                },
                if h.rationale.is_empty() {
                    String::new()
                } else {
                    format!(" (reason given: {})", h.rationale)
                }
            );
        }
    }
    s
}

/// An example's changes as the actions-mode answer that makes them: one entry per objective of
/// `order` (the current answer's, [`answer_order`]) that the example has, with the example's
/// status, the direction of its change and the step class nearest its size (from the
/// strategy's base, [`crate::steps::step_base`]). The report's table is left out: the entries
/// restate each objective's status, which is what the action follows, and the example costs a
/// tenth of the tokens.
fn example_answer(e: &crate::advice::FewShotExample, order: &[&str]) -> String {
    let moves = example_moves(e);
    let entries: Vec<String> = order
        .iter()
        .filter_map(|id| {
            let (_, action, step) = moves.iter().find(|(m, ..)| m == id)?;
            let o = e.report.objectives.iter().find(|o| o.id == *id)?;
            Some(format!(
                "\"{id}\": {{\"status\": \"{}\", \"action\": \"{}\", \"step\": \"{}\"}}",
                o.status.word(),
                action.word(),
                step.word()
            ))
        })
        .collect();
    format!("{{\"actions\": {{{}}}}}", entries.join(", "))
}

/// An example's move for each of its organ objectives, in report order: the objective's id,
/// the direction and the step class nearest the change's size from the strategy's base
/// ([`crate::steps::step_base`]; `small` when kept).
pub fn example_moves(e: &crate::advice::FewShotExample) -> Vec<(&str, Direction, StepClass)> {
    e.report
        .objectives
        .iter()
        .filter(|o| o.role == tps_api::Role::Oar)
        .map(|o| match e.changes.iter().find(|c| c.id == o.id) {
            Some(c) => {
                let size = (c.goal_cgy - crate::steps::step_base(o, c.goal_cgy)).abs();
                let step = if size <= 35.0 {
                    StepClass::Small
                } else if size <= 75.0 {
                    StepClass::Medium
                } else {
                    StepClass::Large
                };
                let way = if c.goal_cgy < o.goal_cgy {
                    Direction::Tighten
                } else {
                    Direction::Relax
                };
                (o.id.as_str(), way, step)
            }
            None => (o.id.as_str(), Direction::Keep, StepClass::Small),
        })
        .collect()
}

/// The rest of [`user_prompt`] after its stable part and the blank line that ends it: the
/// current report and the request.
fn user_prompt_rest(ctx: &AdvisorContext, mode: OutputMode) -> String {
    let table = match mode {
        OutputMode::Goals => report_table(&ctx.current),
        OutputMode::Actions => report_table_actions(ctx),
    };
    let mut s = String::new();
    let r = &ctx.current;
    let ratio = r.coverage_cgy / ctx.prescription_cgy;
    let _ = write!(
        s,
        "Current iteration {} of at most {}: {} D{} = {:.0} cGy ({:.3} x prescription; window \
         {:.2}-{:.2}).\n{}\nPropose the adjustment for the next optimization.",
        r.iteration,
        ctx.max_iterations,
        ctx.target,
        ctx.prescription_volume_percent,
        r.coverage_cgy,
        ratio,
        ctx.coverage_window[0],
        ctx.coverage_window[1],
        table + &goals_table(r)
    );
    s
}

/// JSON schema of the answer for `mode`, with the report's objective ids as an enum (strict:
/// every property required, no others), at most one list item per objective and, when
/// `limits` says so, a rationale of at most `rationale_max_chars` characters: bounds a
/// grammar-constrained server (llama.cpp, Ollama) enforces while generating, so a small model
/// cannot loop inside the rationale.
pub fn answer_schema_with(ctx: &AdvisorContext, mode: OutputMode, limits: &AnswerLimits) -> Value {
    let ids = ctx.current.objective_ids();
    let mut rationale = json!({"type": "string"});
    if limits.schema_max_length {
        rationale["maxLength"] = json!(limits.rationale_max_chars);
    }
    let (list, answer) = match mode {
        // A list of changes, at most one per objective.
        OutputMode::Goals => (
            "adjustments",
            json!({"type": "array", "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "enum": ids},
                    "goal_cgy": {"type": "number"}
                },
                "required": ["id", "goal_cgy"],
                "additionalProperties": false
            }, "maxItems": ids.len()}),
        ),
        // One entry per objective that may move, keyed by its id, in the order of
        // [`answer_order`]: a grammar built from this schema cannot repeat or leave out an
        // objective. Only organ (OAR) objectives may move unless the clinical goals take part
        // in the termination (their moves may tighten a target). Each entry first restates the objective's status from the report (one
        // allowed value), so the model reads it right before it chooses the action: a small
        // model attends to the answer it is writing far more than to a table row above it.
        OutputMode::Actions => {
            let movable = answer_order(ctx);
            let entries: serde_json::Map<String, Value> = movable
                .iter()
                .map(|o| {
                    (
                        o.id.clone(),
                        json!({
                            "type": "object",
                            "properties": {
                                "status": {"type": "string", "enum": [o.status.word()]},
                                "action": {"type": "string", "enum": Direction::ALL.map(Direction::word)},
                                "step": {"type": "string", "enum": StepClass::ALL.map(StepClass::word)}
                            },
                            "required": ["status", "action", "step"],
                            "additionalProperties": false
                        }),
                    )
                })
                .collect();
            let required: Vec<&str> = movable.iter().map(|o| o.id.as_str()).collect();
            (
                "actions",
                json!({
                    "type": "object",
                    "properties": entries,
                    "required": required,
                    "additionalProperties": false
                }),
            )
        }
    };
    // The actions come before the rationale: a grammar-bound server writes the properties in
    // this order, and a small model that writes its reasons first talks itself into keeping
    // everything (the in-process advisor answers in the same order). A list of goals keeps
    // the reason first, where a larger model thinks before it writes numbers.
    let properties = match mode {
        OutputMode::Goals => json!({"rationale": rationale, list: answer}),
        OutputMode::Actions => json!({list: answer, "rationale": rationale}),
    };
    let required = match mode {
        OutputMode::Goals => json!(["rationale", list]),
        OutputMode::Actions => json!([list, "rationale"]),
    };
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

/// The reply's token limit: `limits.max_tokens` when set, else sized from the answer schema so
/// that an answer within it is never cut: 64 tokens for the object's frame, one per character
/// of the longest rationale (a token is at least one character; a model writing "1.1.1..."
/// spends one per character, English prose about one per 4), and 40 per objective (an entry
/// such as `"femur-head-left-mean": {"action": "tighten", "step": "large"}`, pretty-printed,
/// is 25-30 tokens).
pub fn answer_max_tokens_with(ctx: &AdvisorContext, limits: &AnswerLimits) -> u32 {
    limits.max_tokens.unwrap_or_else(|| {
        64 + limits.rationale_max_chars as u32 + 40 * ctx.current.objectives.len() as u32
    })
}

/// [`answer_max_tokens_with`] under the default limits (the same for both output modes).
pub fn answer_max_tokens(ctx: &AdvisorContext) -> u32 {
    answer_max_tokens_with(ctx, &AnswerLimits::default())
}
