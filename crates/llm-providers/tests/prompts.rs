//! Snapshot tests of the rendered prompts: the exact text a model receives for a fixed context,
//! in both output modes. After an intended change, regenerate with
//! `UPDATE_SNAPSHOTS=1 cargo test -p llm-providers --test prompts` and review the diff.

mod common;

use std::path::PathBuf;

use llm_providers::advice::OutputMode;
use llm_providers::prompt::{answer_schema, system_prompt, user_prompt};

fn snapshot(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
    assert_eq!(
        text,
        expected,
        "{} differs from the rendered text",
        path.display()
    );
}

#[test]
fn goals_mode_prompt() {
    let ctx = common::context();
    let text = format!(
        "=== system ===\n{}\n=== user ===\n{}\n=== schema ===\n{}\n",
        system_prompt(&ctx, OutputMode::Goals),
        user_prompt(&ctx, OutputMode::Goals),
        serde_json::to_string_pretty(&answer_schema(&ctx, OutputMode::Goals)).unwrap()
    );
    snapshot("goals.txt", &text);
}

#[test]
fn actions_mode_prompt_with_an_example() {
    let mut ctx = common::context();
    ctx.examples.push(common::example());
    let text = format!(
        "=== system ===\n{}\n=== user ===\n{}\n=== schema ===\n{}\n",
        system_prompt(&ctx, OutputMode::Actions),
        user_prompt(&ctx, OutputMode::Actions),
        serde_json::to_string_pretty(&answer_schema(&ctx, OutputMode::Actions)).unwrap()
    );
    snapshot("actions-with-example.txt", &text);
}

/// Nothing site-specific is hard-coded: another site's context renders its own names.
#[test]
fn prompts_come_from_the_context() {
    let mut ctx = common::context();
    ctx.site = "prostate".into();
    ctx.target = "PTV_7000".into();
    ctx.prescription_cgy = 7000.0;
    let s = system_prompt(&ctx, OutputMode::Goals);
    assert!(s.contains("prostate") && s.contains("PTV_7000") && s.contains("7000 cGy"));
    assert!(!s.contains("cervix"));
}

#[test]
fn clinical_goals_prompt() {
    // With the goals in the termination the system prompt says how they end the plan and how
    // to move for them, and the user prompt shows each goal's value and status.
    use tps_api::goals::{ClinicalGoal, GoalQuantity, GoalResult, GoalUnit, Priority};
    let mut ctx = common::context();
    ctx.termination = tps_api::Termination::Both;
    let judged = |structure: &str, quantity, bound, value, priority| {
        let g = ClinicalGoal {
            structure: String::from(structure),
            quantity,
            unit: GoalUnit::Cgy,
            upper: true,
            bound,
            tolerance: 0.0,
            priority,
        };
        GoalResult {
            label: g.label(),
            structure: g.structure.clone(),
            role: tps_api::Role::Oar,
            priority,
            upper: true,
            bound,
            tolerance: 0.0,
            unit: g.unit,
            value,
            status: g.status_of(value),
        }
    };
    ctx.current.goals = vec![
        judged(
            "Rectum",
            GoalQuantity::DosePercent { percent: 50.0 },
            3451.0,
            3520.0,
            Priority::Must,
        ),
        judged(
            "SpinalCord",
            GoalQuantity::DoseCc { cc: 0.1 },
            1987.0,
            1800.0,
            Priority::Should,
        ),
    ];
    let text = format!(
        "=== system ===\n{}\n=== user ===\n{}\n",
        system_prompt(&ctx, OutputMode::Goals),
        user_prompt(&ctx, OutputMode::Goals),
    );
    assert!(text.contains("| Rectum D50% <= 3451 cGy | must | 3520.0 cGy | FAILED |"));
    snapshot("clinical-goals.txt", &text);
}
