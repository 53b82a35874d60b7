//! The planning loop on a small phantom with the native TPS: the rule-based physicist reaches
//! the criteria, a transcript replays to the same plan, and a scripted advisor that returns
//! unknown ids, wrong directions, NaN and huge steps is caught by the guard without corrupting
//! the plan.

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use llm_providers::advice::{Advice, AdvisorContext, Capabilities, LlmAdvisor, OutputMode};
use llm_providers::error::AdvisorError;
use llm_providers::rule_based::RuleBasedAdvisor;
use patient_model::MaskOps;
use planner::guard::{GuardPolicy, GuardSettings, Violation};
use planner::transcript::{Event, TranscriptWriter, read};
use planner::{PlannerSettings, TerminationReason, plan, replay};
use tps_api::Beams;
use tps_api::{GoalChange, Protocol, Tps};
use tps_core::dose::calibration::DensityCurve;
use tps_core::dose::model::BeamModel;
use tps_core::native::{NativeSettings, NativeTps};

const PROTOCOL: &str = r#"
[site]
name = "test"
[prescription]
target = "PTV"
dose-cgy = 3600.0
fractions = 20
volume-percent = 95.0
[planning]
max-iterations = 20
coverage-window = [1.0, 1.02]
[[objectives]]
id = "ptv-min"
structure = "PTV"
type = "min-dose"
weight = 100.0
goal-cgy = 3700.0
ideal-range = [1e-4, 1e-2]
[[objectives]]
id = "ptv-max"
structure = "PTV"
type = "max-dose"
weight = 100.0
goal-cgy = 3800.0
ideal-range = [1e-4, 1e-2]
[[objectives]]
id = "oar-mean"
structure = "Shell"
type = "mean-dose"
weight = 5.0
goal-cgy = 3500.0
ideal-range = [1e-4, 1e-2]
[[auxiliary]]
name = "Ring"
op = "ring"
source = "PTV"
gap-mm = 5.0
thickness-mm = 15.0
crop-to = "External"
"#;

fn model() -> BeamModel {
    BeamModel::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/machines/generic-6mv.toml"),
    )
    .unwrap()
}

fn open(model: &BeamModel) -> (NativeTps<'_>, Protocol) {
    let protocol = Protocol::parse(PROTOCOL, Path::new("test.toml")).unwrap();
    let protocol = Protocol {
        beams: Beams {
            dose_grid_mm: 4.0,
            ..Beams::full_arcs(1, 9)
        },
        ..protocol
    };
    let settings = NativeSettings {
        body_stride: 2,
        ..Default::default()
    };
    // An organ wrapped around one side of the target (a shell 0-10 mm outside it, on the
    // side of the phantom's OAR): it cannot be spared without cost to coverage.
    let mut patient = phantoms::cylinder::water_cylinder("loop/p01");
    let ptv = &patient.structure("PTV").unwrap().mask;
    let shell = patient_model::morph::ring(ptv, 0.0, 10.0).unwrap();
    let side = patient_model::morph::expand(&patient.structure("OAR").unwrap().mask, 12.0).unwrap();
    let shell = shell.intersection(&side).unwrap();
    patient
        .add_structure(tps_api::Structure::new("Shell", tps_api::Role::Oar, shell))
        .unwrap();
    let tps = NativeTps::open(
        patient,
        protocol.clone(),
        model,
        &DensityCurve::water(),
        settings,
    )
    .unwrap();
    (tps, protocol)
}

#[test]
fn rule_based_plan_meets_the_criteria_and_replays() {
    let m = model();
    let (mut tps, protocol) = open(&m);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("transcript.jsonl");
    let mut w = TranscriptWriter::create(&path).unwrap();
    let mut lines = Vec::new();
    let outcome = plan(
        &mut tps,
        &RuleBasedAdvisor,
        &protocol,
        "loop/p01",
        None,
        &PlannerSettings::default(),
        Some(&mut w),
        |p| lines.push((p.report.iteration, p.out_of_range)),
    )
    .unwrap();
    assert_eq!(outcome.reason, TerminationReason::CriteriaMet, "{lines:?}");
    assert!(
        outcome.reports.len() >= 2,
        "the OAR goal starts slack: at least one step"
    );
    assert!(outcome.violations.is_empty() && outcome.fallbacks == 0);
    let last = outcome.reports.last().unwrap();
    assert!(last.criteria_met());
    assert_eq!(lines.len(), outcome.reports.len());

    let events = read(&path).unwrap();
    // Every step that changed a goal is a worked example; the nearest one to a report is that
    // report's own, a fixed selection spreads over the pool.
    let pool = planner::examples::from_transcript(&events);
    assert_eq!(pool.len(), outcome.reports.len() - 1);
    assert!(pool[0].source.contains("loop/p01, iteration 1"));
    let near = planner::examples::select(
        &pool,
        &outcome.reports[2],
        1,
        planner::examples::Selection::Nearest,
    );
    assert_eq!(near[0].report, outcome.reports[2]);
    let fixed = planner::examples::select(&pool, &outcome.reports[0], 2, Default::default());
    assert_eq!(fixed[0], pool[0]);
    assert_eq!(fixed[1], pool[pool.len() / 2]);
    let file = dir.path().join("pool.json");
    planner::examples::save(&file, &pool).unwrap();
    assert_eq!(planner::examples::load(&file).unwrap(), pool);
    std::fs::write(&file, "{\"not\": \"a pool\"}").unwrap();
    assert!(
        planner::examples::load(&file)
            .unwrap_err()
            .contains("pool.json")
    );
    assert!(matches!(events.first(), Some(Event::Start { .. })));
    assert!(matches!(events.last(), Some(Event::End { .. })));
    // A fresh case replays the applied changes to the same plan. The products sum in parallel,
    // so floating-point order may differ: agreement to 1e-4 relative.
    let (mut fresh, _) = open(&m);
    let (reports, factor) = replay(&mut fresh, &events).unwrap();
    assert_eq!(reports.len(), outcome.reports.len());
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0);
    for (a, b) in reports.iter().zip(&outcome.reports) {
        for (oa, ob) in a.objectives.iter().zip(&b.objectives) {
            assert_eq!(oa.goal_cgy, ob.goal_cgy);
            assert!(
                close(oa.current_cgy, ob.current_cgy),
                "{} {}",
                oa.current_cgy,
                ob.current_cgy
            );
        }
    }
    assert!(close(factor, outcome.normalization));
    assert!(close(
        fresh.plan().unwrap().mu_per_fraction,
        outcome.plan.mu_per_fraction
    ));
}

/// An advisor that answers from a script, whatever the report says.
struct Scripted(Mutex<Vec<Result<Vec<GoalChange>, String>>>);

#[async_trait]
impl LlmAdvisor for Scripted {
    fn name(&self) -> String {
        "scripted".into()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            json_schema: false,
            network: false,
            deterministic: true,
            mode: OutputMode::Goals,
        }
    }
    async fn advise(&self, _: &AdvisorContext) -> Result<Advice, AdvisorError> {
        let mut script = self.0.lock().unwrap();
        let next = if script.is_empty() {
            Ok(Vec::new())
        } else {
            script.remove(0)
        };
        match next {
            Ok(goals) => Ok(Advice {
                goals,
                actions: Vec::new(),
                rationale: "scripted".into(),
                calls: Vec::new(),
                repaired: Vec::new(),
            }),
            Err(raw) => Err(AdvisorError::BadReply {
                provider: "scripted".into(),
                reason: "not JSON".into(),
                raw,
                causes: vec![llm_providers::reply::ReplyCause::Malformed],
                calls: Vec::new(),
            }),
        }
    }
}

fn change(id: &str, goal_cgy: f64) -> GoalChange {
    GoalChange {
        id: id.into(),
        goal_cgy,
    }
}

#[test]
fn hallucinated_advice_is_caught_and_counted() {
    let m = model();
    let (mut tps, protocol) = open(&m);
    let advisor = Scripted(Mutex::new(vec![
        Ok(vec![change("kidney-mean", 1000.0)]),
        Ok(vec![change("oar-mean", f64::NAN)]),
        Ok(vec![change("oar-mean", 100.0)]),
        Ok(vec![change("oar-mean", 9000.0)]),
        Ok(vec![change("ptv-min", 3000.0)]),
        Err("Sure! Lower the OAR a bit.".into()),
        Ok(vec![change("oar-mean", 3400.0), change("oar-mean", 3300.0)]),
    ]));
    let settings = PlannerSettings {
        guard: GuardSettings {
            policy: GuardPolicy::Reject,
            ..Default::default()
        },
        ..Default::default()
    };
    let outcome = plan(
        &mut tps,
        &advisor,
        &protocol,
        "loop/p01",
        None,
        &settings,
        None,
        |_| {},
    )
    .unwrap();
    let count = |v: Violation| outcome.violations.get(&v).copied().unwrap_or(0);
    assert_eq!(count(Violation::UnknownId), 1);
    assert_eq!(count(Violation::NotFinitePositive), 1);
    assert!(
        count(Violation::StepTooLarge) >= 2,
        "{:?}",
        outcome.violations
    );
    assert!(count(Violation::OutOfBounds) >= 1);
    assert!(count(Violation::NotAnOar) >= 1);
    assert!(count(Violation::DuplicateId) >= 1);
    assert!(count(Violation::RelaxBelowRange) + count(Violation::IneffectiveGoal) >= 1);
    assert_eq!(count(Violation::MalformedReply), 1, "the prose reply");
    assert_eq!(outcome.advisor_failures, 1);
    assert_eq!(
        outcome.fallbacks, 1,
        "the failed call fell back to the rule"
    );
    // The plan is intact: finite, covered, goals never took a rejected value.
    let last = outcome.reports.last().unwrap();
    assert!(last.objectives.iter().all(|o| o.current_cgy.is_finite()));
    let oar = last.objectives.iter().find(|o| o.id == "oar-mean").unwrap();
    assert!(oar.goal_cgy.is_finite() && oar.goal_cgy > 1000.0 && oar.goal_cgy < 4000.0);
    let ptv = last.objectives.iter().find(|o| o.id == "ptv-min").unwrap();
    assert_eq!(ptv.goal_cgy, 3700.0);
    assert!(outcome.plan.mu_per_fraction.is_finite());
}

#[test]
fn fallback_policy_replaces_bad_advice_with_the_rule() {
    let m = model();
    let (mut tps, protocol) = open(&m);
    let advisor = Scripted(Mutex::new(vec![Ok(vec![change("oar-mean", 9000.0)])]));
    let outcome = plan(
        &mut tps,
        &advisor,
        &protocol,
        "loop/p01",
        None,
        &PlannerSettings::default(),
        None,
        |_| {},
    )
    .unwrap();
    assert_eq!(outcome.fallbacks, 1);
    // The rule's first step moved the OAR goal below its current dose.
    let first = &outcome.reports[0];
    let second = &outcome.reports[1];
    let oar = |r: &tps_api::IterationReport| {
        r.objectives
            .iter()
            .find(|o| o.id == "oar-mean")
            .unwrap()
            .clone()
    };
    assert!(oar(second).goal_cgy < oar(first).current_cgy);
}
