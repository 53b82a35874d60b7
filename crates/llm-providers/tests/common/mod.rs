//! A realistic advisor context (the cervix protocol's objectives after a first optimization)
//! and helpers for the local HTTP servers.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use llm_providers::advice::{AdvisorContext, FewShotExample, HistoryEntry};
use llm_providers::layers::CallPolicy;
use tps_api::objectives::range_status;
use tps_api::report::{GoalChange, IterationReport, ObjectiveReport};
use tps_api::structure::Role;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn objective(
    id: &str,
    structure: &str,
    role: Role,
    kind: &str,
    (goal, current, value): (f64, f64, f64),
    range: [f64; 2],
) -> ObjectiveReport {
    ObjectiveReport {
        id: id.into(),
        structure: structure.into(),
        role,
        kind: kind.into(),
        weight: 5.0,
        goal_cgy: goal,
        current_cgy: current,
        value,
        ideal_range: range,
        status: range_status(value, range),
    }
}

/// A report with OAR objectives below, inside and above their ranges.
pub fn report(iteration: u32) -> IterationReport {
    let strict = [1e-2, 5e-2];
    let normal = [1e-4, 1e-2];
    IterationReport {
        iteration,
        objectives: vec![
            objective(
                "ptv-min",
                "PTV",
                Role::Target,
                "min dose",
                (3760.0, 3450.0, 4.0e-4),
                normal,
            ),
            objective(
                "bladder-mean",
                "Bladder",
                Role::Oar,
                "mean dose",
                (3000.0, 2469.0, 0.0),
                strict,
            ),
            objective(
                "rectum-mean",
                "Rectum",
                Role::Oar,
                "mean dose",
                (2900.0, 3210.0, 0.115),
                strict,
            ),
            objective(
                "bowel-mean",
                "Bag_Bowel",
                Role::Oar,
                "mean dose",
                (1900.0, 2200.0, 2.5e-2),
                strict,
            ),
            objective(
                "cord-max",
                "SpinalCord",
                Role::Oar,
                "max dose",
                (2400.0, 2808.0, 2.0e-4),
                normal,
            ),
            objective(
                "r2-max",
                "R2",
                Role::Auxiliary,
                "max dose",
                (2880.0, 3688.0, 3.4e-3),
                normal,
            ),
        ],
        coverage_cgy: 3625.0,
        prescription_cgy: 3600.0,
        total_objective: 0.37,
        solver_iterations: 40,
        wall_s: 1.8,
        goals: Vec::new(),
    }
}

/// A worked example of another case: its report after three optimizations, with the bladder
/// goal tightened to 2400 cGy.
pub fn example() -> FewShotExample {
    FewShotExample {
        source: "cervix-35/p02, iteration 3".into(),
        report: report(3),
        changes: vec![GoalChange {
            id: "bladder-mean".into(),
            goal_cgy: 2400.0,
        }],
        rationale: "bladder below its range: tighten by a large step".into(),
    }
}

/// The context after two optimizations: the rectum goal was tightened after the first.
pub fn context() -> AdvisorContext {
    let mut first = report(1);
    let rectum = &mut first.objectives[2];
    rectum.goal_cgy = 3000.0;
    rectum.current_cgy = 2950.0;
    rectum.value = 0.0;
    rectum.status = range_status(0.0, rectum.ideal_range);
    AdvisorContext {
        site: "cervix".into(),
        target: "PTV".into(),
        prescription_cgy: 3600.0,
        prescription_volume_percent: 95.0,
        coverage_window: [1.0, 1.02],
        max_iterations: 20,
        termination: tps_api::Termination::Study,
        current: report(2),
        history: vec![HistoryEntry {
            report: first,
            changes: vec![GoalChange {
                id: "rectum-mean".into(),
                goal_cgy: 2900.0,
            }],
            rationale: "rectum below its range".into(),
        }],
        examples: Vec::new(),
    }
}

/// A quick policy for tests: short timeout, fast retries.
pub fn policy(retries: u32) -> CallPolicy {
    CallPolicy {
        timeout: Some(Duration::from_millis(1500)),
        retries,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        seed: 0,
        requests_per_minute: None,
    }
}

/// A valid answer in goals mode.
pub const GOOD_ANSWER: &str = "{\"rationale\": \"Bladder has room: tighten; rectum is over: relax.\", \
    \"adjustments\": [{\"id\": \"bladder-mean\", \"goal_cgy\": 2369}, {\"id\": \"rectum-mean\", \"goal_cgy\": 2950}]}";

/// The workspace root.
pub fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Answers the first POST to `server` with `first` (before any other mock, once); the mocks
/// mounted after it answer the rest (the repair request, the retry).
pub async fn answer_first(server: &MockServer, first: ResponseTemplate) {
    Mock::given(method("POST"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
}
