//! The loop itself, on the analytic `FakeTps` (milliseconds per plan): how each
//! `TerminationReason` comes about, what the observers see, and that a transcript replays.
//! The loop on the native engine is tested in the workspace's `tests/planning_loop.rs`.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use async_trait::async_trait;
use llm_providers::advice::{Advice, AdvisorContext, Capabilities, LlmAdvisor, OutputMode};
use llm_providers::error::AdvisorError;
use llm_providers::rule_based::RuleBasedAdvisor;
use planner::observers::{Observer, Timing};
use planner::transcript::{Event, TranscriptWriter, read};
use planner::{
    PlanError, PlanOutcome, Planner, PlannerSettings, ProgressObserver, StopFlag,
    TerminationReason, plan, replay,
};
use tps_api::fake::FakeTps;
use tps_api::goals::{ClinicalGoal, GoalQuantity, GoalUnit, Priority};
use tps_api::{Protocol, Termination, Tps};

/// The cervix protocol without its clinical goals (the fake TPS's patient has no organs to
/// judge them on; the goals' tests below write their own).
fn protocol() -> Protocol {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut p = Protocol::load(&root.join("configs/protocols/cervix.toml")).unwrap();
    p.clinical_goals.clear();
    p
}

/// A whole plan of the cervix protocol on a fresh `FakeTps` with `advisor`, and the events
/// its transcript holds.
fn plan_with_transcript(advisor: &dyn LlmAdvisor) -> (PlanOutcome, Vec<Event>) {
    let protocol = protocol();
    let mut tps = FakeTps::new(&protocol).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let mut w = TranscriptWriter::create(&path).unwrap();
    let o = plan(
        &mut tps,
        advisor,
        &protocol,
        "fake",
        None,
        &PlannerSettings::default(),
        Some(&mut w),
        |_| {},
    )
    .unwrap();
    (o, read(&path).unwrap())
}

/// An advisor whose every call fails as an unreachable server would.
struct Unreachable;

#[async_trait]
impl LlmAdvisor for Unreachable {
    fn name(&self) -> String {
        "unreachable".into()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            json_schema: false,
            network: true,
            deterministic: true,
            mode: OutputMode::Goals,
        }
    }
    async fn advise(&self, _: &AdvisorContext) -> Result<Advice, AdvisorError> {
        Err(AdvisorError::Unreachable {
            provider: "unreachable".into(),
            endpoint: "http://127.0.0.1:9".into(),
            message: "connection refused".into(),
            calls: Box::new(vec![llm_providers::advice::CallRecord {
                provider: "unreachable".into(),
                model: "m".into(),
                served_model: None,
                system: "system prompt".into(),
                messages: vec![("user".into(), "the report".into())],
                reply: String::new(),
                latency_s: 0.01,
                tokens_in: None,
                tokens_cached: None,
                tokens_out: None,
                attempts: 1,
                error: Some("connection refused".into()),
            }]),
        })
    }
}

/// Records every event it sees, shared with the test.
#[derive(Clone, Default)]
struct Recorder(Rc<RefCell<Vec<Event>>>);

impl Observer for Recorder {
    fn observe(&mut self, event: &Event) -> Result<(), PlanError> {
        self.0.borrow_mut().push(event.clone());
        Ok(())
    }
}

fn end_reason(events: &[Event]) -> Option<String> {
    events.iter().find_map(|e| match e {
        Event::End { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn rule_based_plan_on_the_fake_tps_meets_the_criteria_normalized_on_the_dose() {
    let protocol = protocol();
    let mut tps = FakeTps::new(&protocol).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let mut w = TranscriptWriter::create(&path).unwrap();
    let mut shown = Vec::new();
    let o = plan(
        &mut tps,
        &RuleBasedAdvisor,
        &protocol,
        "fake",
        None,
        &PlannerSettings::default(),
        Some(&mut w),
        |p| shown.push((p.report.iteration, p.out_of_range, p.max_iterations)),
    )
    .unwrap();
    assert_eq!(o.reason, TerminationReason::CriteriaMet, "{o:?}");
    assert!(o.reports.len() > 1, "the rule had to move goals");
    assert_eq!(shown.len(), o.reports.len());
    assert_eq!(shown.last().unwrap().1, 0);
    assert!(shown.iter().all(|s| s.2 == 20));
    // The final normalization reads the dose as evaluated: D95 on the dose grid equals Rx.
    let d = tps.dose().unwrap();
    let mut inside: Vec<f32> = d
        .cgy()
        .iter()
        .zip(FakeTps::target_mask().data())
        .filter_map(|(&v, &m)| m.then_some(v))
        .collect();
    tps_api::dose_volume::sort_hottest_first(&mut inside);
    let d95 = tps_api::dose_volume::dose_at_fraction(&inside, 0.95);
    let rx = protocol.prescription.dose_cgy;
    assert!((d95 - rx).abs() < 1e-3 * rx, "D95 {d95}, Rx {rx}");
    // The transcript replays to the same reports and factor.
    let events = read(&path).unwrap();
    assert_eq!(end_reason(&events).as_deref(), Some("CriteriaMet"));
    let mut fresh = FakeTps::new(&protocol).unwrap();
    let (reports, factor) = replay(&mut fresh, &events).unwrap();
    assert_eq!(reports, o.reports);
    assert_eq!(factor, o.normalization);
}

#[test]
fn a_tps_failing_after_the_first_optimization_ends_the_plan_with_the_last_good_one() {
    let protocol = protocol();
    let mut tps = FakeTps::new(&protocol).unwrap().failing_at(3, true);
    let rec = Recorder::default();
    let settings = PlannerSettings::default();
    let o = Planner::new(&mut tps, &RuleBasedAdvisor, &protocol, "fake", &settings)
        .observe(rec.clone())
        .run()
        .unwrap();
    assert_eq!(o.reason, TerminationReason::TpsFailed);
    assert!(!o.reason.is_complete());
    assert_eq!(
        o.reports.len(),
        2,
        "two good optimizations before the failure"
    );
    let err = o.error.as_deref().unwrap();
    assert!(err.contains("optimization 3"), "{err}");
    assert_eq!(tps.optimizations(), 3);
    // The plan kept is the second one, normalized, and MU are reported.
    assert_eq!(tps.report().unwrap().iteration, 2);
    assert!(o.plan.mu_per_fraction > 0.0);
    let events = rec.0.borrow();
    assert_eq!(end_reason(&events).as_deref(), Some("TpsFailed"));
    assert!(matches!(
        events.last(),
        Some(Event::End { error: Some(_), .. })
    ));
}

#[test]
fn a_tps_failing_at_the_first_optimization_is_an_error() {
    let protocol = protocol();
    let mut tps = FakeTps::new(&protocol).unwrap().failing_at(1, false);
    let err = plan(
        &mut tps,
        &RuleBasedAdvisor,
        &protocol,
        "fake",
        None,
        &PlannerSettings::default(),
        None,
        |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, PlanError::Tps(e) if !e.is_temporary()),
        "{err}"
    );
}

/// Raises the stop flag when it sees the report of `iteration`, as Ctrl-C would.
struct StopAt(StopFlag, u32);

impl Observer for StopAt {
    fn observe(&mut self, event: &Event) -> Result<(), PlanError> {
        if let Event::Report { report, .. } = event {
            if report.iteration == self.1 {
                self.0.raise();
            }
        }
        Ok(())
    }
}

#[test]
fn a_raised_stop_flag_ends_the_plan_after_the_current_step_normalized() {
    let protocol = protocol();
    let mut tps = FakeTps::new(&protocol).unwrap();
    let flag = StopFlag::new();
    let rec = Recorder::default();
    let settings = PlannerSettings::default();
    let o = Planner::new(&mut tps, &RuleBasedAdvisor, &protocol, "fake", &settings)
        .observe(StopAt(flag.clone(), 2))
        .observe(rec.clone())
        .stop_on(flag)
        .run()
        .unwrap();
    assert_eq!(o.reason, TerminationReason::Interrupted);
    assert_eq!(o.reports.len(), 2);
    assert_eq!(tps.optimizations(), 2, "nothing optimized after the stop");
    let events = rec.0.borrow();
    assert_eq!(end_reason(&events).as_deref(), Some("Interrupted"));
    assert!(o.normalization > 0.0);
}

#[test]
fn an_advisor_failing_too_often_in_a_row_ends_the_plan_and_otherwise_the_rule_stands_in() {
    let protocol = protocol();
    let limited = PlannerSettings {
        max_advisor_failures: Some(2),
        ..PlannerSettings::default()
    };
    let mut tps = FakeTps::new(&protocol).unwrap();
    let o = Planner::new(&mut tps, &Unreachable, &protocol, "fake", &limited)
        .run()
        .unwrap();
    assert_eq!(o.reason, TerminationReason::AdvisorFailed);
    assert_eq!(o.advisor_failures, 2);
    assert_eq!(
        o.reports.len(),
        2,
        "the first failure's rule step was applied"
    );
    assert!(o.error.unwrap().contains("2 times in a row"));
    // Without a limit the rule-based physicist makes every step, counted as fallbacks.
    let mut tps = FakeTps::new(&protocol).unwrap();
    let settings = PlannerSettings::default();
    let o = Planner::new(&mut tps, &Unreachable, &protocol, "fake", &settings)
        .run()
        .unwrap();
    assert_eq!(o.reason, TerminationReason::CriteriaMet);
    assert_eq!(o.advisor_failures, o.fallbacks);
    assert_eq!(o.advisor_failures as usize, o.reports.len() - 1);
}

#[test]
fn timing_sums_what_the_events_report_and_an_observer_error_ends_the_plan() {
    let protocol = protocol();
    let mut tps = FakeTps::new(&protocol).unwrap();
    let rec = Recorder::default();
    let settings = PlannerSettings::default();
    let o = Planner::new(&mut tps, &RuleBasedAdvisor, &protocol, "fake", &settings)
        .observe(rec.clone())
        .run()
        .unwrap();
    let mut t = Timing::default();
    for e in rec.0.borrow().iter() {
        t.observe(e).unwrap();
    }
    assert_eq!((t.tps_s, t.advisor_s), (o.tps_s, o.advisor_s));

    struct Broken;
    impl Observer for Broken {
        fn observe(&mut self, _: &Event) -> Result<(), PlanError> {
            Err(PlanError::Transcript("disk full".into()))
        }
    }
    let mut tps = FakeTps::new(&protocol).unwrap();
    let err = Planner::new(&mut tps, &RuleBasedAdvisor, &protocol, "fake", &settings)
        .observe(Broken)
        .observe(ProgressObserver::new(|_| {
            panic!("nothing is shown after the failure")
        }))
        .run()
        .unwrap_err();
    assert!(err.to_string().contains("disk full"));
    assert_eq!(
        tps.optimizations(),
        0,
        "the start event failed before any optimization"
    );
}

#[test]
fn a_protocol_without_planning_is_refused_before_any_optimization() {
    let mut protocol = protocol();
    protocol.planning = None;
    let mut tps = FakeTps::new(&protocol).unwrap();
    let err = plan(
        &mut tps,
        &RuleBasedAdvisor,
        &protocol,
        "fake",
        None,
        &PlannerSettings::default(),
        None,
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("[planning] is missing"), "{err}");
    assert_eq!(tps.optimizations(), 0);
}

#[test]
fn an_example_pool_from_another_protocol_is_refused() {
    let protocol = protocol();
    let (_, events) = plan_with_transcript(&RuleBasedAdvisor);
    let pool = planner::examples::from_transcript(&events);
    assert!(!pool.is_empty());
    let origin = Path::new("pool.json");
    planner::examples::check_pool(&pool, &protocol, origin).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let prostate = Protocol::load(&root.join("configs/protocols/prostate.toml")).unwrap();
    let e = planner::examples::check_pool(&pool, &prostate, origin).unwrap_err();
    assert!(
        e.contains("pool.json") && e.contains("prostate.toml") && e.contains("another protocol"),
        "{e}"
    );
}

/// First a reply refused twice (unknown id, then NaN goal), then one repaired once (it was
/// not JSON), then the rule's own advice.
struct Hallucinating(std::sync::Mutex<u32>);

#[async_trait]
impl LlmAdvisor for Hallucinating {
    fn name(&self) -> String {
        "hallucinating".into()
    }
    fn capabilities(&self) -> Capabilities {
        RuleBasedAdvisor.capabilities()
    }
    async fn advise(&self, ctx: &AdvisorContext) -> Result<Advice, AdvisorError> {
        use llm_providers::reply::ReplyCause;
        let mut n = self.0.lock().unwrap();
        *n += 1;
        let call = |reply: &str| llm_providers::advice::CallRecord {
            provider: "hallucinating".into(),
            model: "m".into(),
            served_model: None,
            system: "system prompt".into(),
            messages: vec![("user".into(), "the report".into())],
            reply: reply.into(),
            latency_s: 0.0,
            tokens_in: None,
            tokens_cached: None,
            tokens_out: None,
            attempts: 1,
            error: Some("refused".into()),
        };
        match *n {
            1 => Err(AdvisorError::BadReply {
                provider: "hallucinating".into(),
                reason: "goal NaN".into(),
                raw: "{...}".into(),
                causes: vec![ReplyCause::UnknownId, ReplyCause::NotFinitePositive],
                calls: vec![call("kidney-mean"), call("NaN")],
            }),
            2 => Ok(Advice {
                repaired: vec![ReplyCause::Malformed],
                ..RuleBasedAdvisor.decide(ctx)
            }),
            _ => Ok(RuleBasedAdvisor.decide(ctx)),
        }
    }
}

#[test]
fn refused_and_repaired_replies_are_counted_by_cause_and_failed_calls_are_kept() {
    use planner::guard::Violation;
    let (o, events) = plan_with_transcript(&Hallucinating(std::sync::Mutex::new(0)));
    let count = |v: Violation| o.violations.get(&v).copied().unwrap_or(0);
    assert_eq!(count(Violation::UnknownId), 1, "{:?}", o.violations);
    assert_eq!(count(Violation::NotFinitePositive), 1);
    assert_eq!(count(Violation::MalformedReply), 1);
    assert_eq!(o.advisor_failures, 1);
    let failed = failed_calls(&events);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].len(), 2);
    assert_eq!(failed[0][1].reply, "NaN");
}

/// The calls of each failed advice in a transcript, in order.
fn failed_calls(events: &[Event]) -> Vec<Vec<llm_providers::advice::CallRecord>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Advice {
                error: Some(_),
                failed_calls,
                ..
            } => Some(failed_calls.clone()),
            _ => None,
        })
        .collect()
}

/// An advice that failed without any reply (no connection) still leaves its call, with the
/// prompt it sent, in the transcript.
#[test]
fn the_calls_of_an_advice_that_got_no_reply_are_kept() {
    let (o, events) = plan_with_transcript(&Unreachable);
    assert!(o.advisor_failures > 0);
    let failed = failed_calls(&events);
    assert_eq!(failed.len(), o.advisor_failures as usize);
    assert!(failed.iter().all(|c| c.len() == 1
        && c[0].system == "system prompt"
        && c[0].error.as_deref() == Some("connection refused")));
}

/// The fake TPS's patient: its grid, the target box as `PTV` and the whole grid as the body.
fn fake_patient() -> tps_api::Patient {
    use tps_api::{Mask, Role, Structure};
    let g = FakeTps::grid();
    let mut p = tps_api::Patient::new("fake", g, vec![0; g.len()]).unwrap();
    p.add_structure(Structure::new("PTV", Role::Target, FakeTps::target_mask()))
        .unwrap();
    p.add_structure(Structure::new(
        "External",
        Role::External,
        Mask::from_vec(g, vec![true; g.len()]).unwrap(),
    ))
    .unwrap();
    p
}

/// The cervix protocol (as if read from `goals.toml`) whose one clinical goal is PTV D50%
/// against `bound` cGy (`upper`: at most), ending by `termination`.
fn protocol_with_goal(
    upper: bool,
    bound: f64,
    priority: Priority,
    termination: Termination,
) -> Protocol {
    let mut p = protocol();
    p.origin = "goals.toml".into();
    p.clinical_goals = vec![ClinicalGoal {
        structure: "PTV".into(),
        quantity: GoalQuantity::DosePercent { percent: 50.0 },
        unit: GoalUnit::Cgy,
        upper,
        bound,
        tolerance: 0.0,
        priority,
    }];
    p.planning.as_mut().unwrap().termination = termination;
    p
}

#[test]
fn goals_are_judged_after_every_optimization_and_end_the_plan_when_they_alone_terminate() {
    // PTV D50% at least 3000 cGy holds from the first plan: with termination by the goals the
    // loop stops there, though the study's criteria do not hold yet.
    let protocol = protocol_with_goal(false, 3000.0, Priority::Must, Termination::Goals);
    let patient = fake_patient();
    let mut tps = FakeTps::new(&protocol).unwrap();
    let recorder = Recorder::default();
    let settings = PlannerSettings::default();
    let o = Planner::new(&mut tps, &RuleBasedAdvisor, &protocol, "fake", &settings)
        .judge_goals_on(&patient)
        .observe(recorder.clone())
        .run()
        .unwrap();
    assert_eq!(o.reason, TerminationReason::CriteriaMet);
    assert_eq!(o.reports.len(), 1, "stopped at the first plan");
    assert!(
        !o.reports[0].criteria_met(),
        "the study's criteria alone would go on"
    );
    assert_eq!(o.reports[0].goals.len(), 1);
    assert_eq!(o.reports[0].goals[0].label, "PTV D50% >= 3000 cGy");
    assert_eq!(o.goals.len(), 1, "judged on the final plan too");
    assert!(o.goals[0].status.passed());
    let events = recorder.0.borrow();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Start {
            termination: Termination::Goals,
            ..
        }
    )));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::End { goals, .. } if goals.len() == 1))
    );
}

#[test]
fn an_unreachable_must_goal_keeps_the_loop_going_and_the_final_plan_says_it_failed() {
    // D50% at most 100 cGy in the target: no plan at the prescription meets it.
    let protocol = protocol_with_goal(true, 100.0, Priority::Must, Termination::Both);
    let patient = fake_patient();
    let mut tps = FakeTps::new(&protocol).unwrap();
    let o = plan(
        &mut tps,
        &RuleBasedAdvisor,
        &protocol,
        "fake",
        Some(&patient),
        &PlannerSettings::default(),
        None,
        |_| {},
    )
    .unwrap();
    assert_eq!(o.reason, TerminationReason::MaxIterations, "{:?}", o.reason);
    assert!(o.reports.iter().all(|r| r.goals.len() == 1));
    assert!(
        o.reports.iter().any(|r| r.criteria_met()),
        "the study's criteria held on the way"
    );
    assert_eq!(o.goals.len(), 1);
    assert!(o.goals[0].must_failed(), "{:?}", o.goals[0]);
    // The rule tightened the target's max objective for the goal (a target objective, which
    // the guard refuses unless a goal asks for it) and the guard let it through.
    assert_eq!(o.fallbacks, 0);
    assert!(o.violations.is_empty(), "{:?}", o.violations);
    let first = &o.reports[0].objectives;
    let last = &o.reports.last().unwrap().objectives;
    let goal_of =
        |r: &[tps_api::ObjectiveReport], id: &str| r.iter().find(|o| o.id == id).unwrap().goal_cgy;
    assert!(goal_of(last, "ptv-max") < goal_of(first, "ptv-max"));
}

#[test]
fn a_protocol_with_goals_needs_a_patient_to_judge_them() {
    let protocol = protocol_with_goal(false, 3000.0, Priority::Should, Termination::Study);
    let mut tps = FakeTps::new(&protocol).unwrap();
    let e = plan(
        &mut tps,
        &RuleBasedAdvisor,
        &protocol,
        "fake",
        None,
        &PlannerSettings::default(),
        None,
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("goals.toml") && e.contains("clinical goals"),
        "{e}"
    );
}
