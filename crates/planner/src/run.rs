//! The loop: optimize, report, advise, guard, apply, until a [`TerminationReason`]; then
//! normalize on the dose as evaluated. Each step emits an [`Event`] to the observers.

use std::time::Instant;

use llm_providers::advice::{AdvisorContext, HistoryEntry, LlmAdvisor};
use llm_providers::error::AdvisorError;
use llm_providers::rule_based::RuleBasedAdvisor;
use tps_api::goals::GoalResult;
use tps_api::{GoalChange, IterationReport, Normalization, Patient, PlanSummary, Protocol, Tps};

use crate::guard::{self, Violation, ViolationCounts, judge};
use crate::observers::{Observer, Timing};
use crate::termination::{StopFlag, TerminationReason};
use crate::transcript::Event;
use crate::{PlanError, PlannerSettings, examples, planning_of};

/// A finished plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutcome {
    /// Why it ended.
    pub reason: TerminationReason,
    /// What failed, when `reason` is [`TerminationReason::TpsFailed`] or
    /// [`TerminationReason::AdvisorFailed`].
    pub error: Option<String>,
    /// Every report, first to last (before the final normalization).
    pub reports: Vec<IterationReport>,
    /// Factor of the final normalization (on the dose as evaluated).
    pub normalization: f64,
    /// MU of the final plan.
    pub plan: PlanSummary,
    /// The protocol's clinical goals judged on the final plan's dose (after the final
    /// normalization), in protocol order; empty when the protocol has none.
    pub goals: Vec<GoalResult>,
    /// Guard violations by kind.
    pub violations: ViolationCounts,
    /// Advice replaced by the rule-based physicist (guard fallback or advisor failure).
    pub fallbacks: u32,
    /// Advisor calls that failed.
    pub advisor_failures: u32,
    /// Time in the TPS, s.
    pub tps_s: f64,
    /// Time in the advisor, s.
    pub advisor_s: f64,
}

/// One plan of an open case: the TPS, the advisor, the protocol, and who watches.
///
/// ```text
/// let outcome = Planner::new(&mut tps, &advisor, &protocol, "p07", &settings)
///     .observe(&mut transcript)
///     .observe(ProgressObserver::new(|p| eprintln!("{}", p.report.iteration)))
///     .stop_on(flag)
///     .run()?;
/// ```
pub struct Planner<'a> {
    tps: &'a mut dyn Tps,
    advisor: &'a dyn LlmAdvisor,
    protocol: &'a Protocol,
    patient_id: &'a str,
    settings: &'a PlannerSettings,
    patient: Option<&'a Patient>,
    observers: Vec<Box<dyn Observer + 'a>>,
    stop: StopFlag,
}

/// What the loop carries from one step to the next.
struct State {
    report: IterationReport,
    reports: Vec<IterationReport>,
    history: Vec<HistoryEntry>,
    violations: ViolationCounts,
    fallbacks: u32,
    advisor_failures: u32,
    failures_in_a_row: u32,
}

/// How an advice step ended.
enum Advised {
    /// Apply these changes.
    Apply(Vec<GoalChange>),
    /// The advisor failed too often in a row.
    GaveUp(String),
}

impl<'a> Planner<'a> {
    /// A plan of `tps`'s open case with `advisor`.
    pub fn new(
        tps: &'a mut dyn Tps,
        advisor: &'a dyn LlmAdvisor,
        protocol: &'a Protocol,
        patient_id: &'a str,
        settings: &'a PlannerSettings,
    ) -> Self {
        Self {
            tps,
            advisor,
            protocol,
            patient_id,
            settings,
            patient: None,
            observers: Vec::new(),
            stop: StopFlag::new(),
        }
    }

    /// Judges the protocol's clinical goals on `patient`'s structures (the patient of the
    /// open case, with the protocol's auxiliary structures built): after every optimization
    /// when the termination uses them, and on the final plan always. A protocol with clinical
    /// goals cannot be planned without it.
    pub fn judge_goals_on(mut self, patient: &'a Patient) -> Self {
        self.patient = Some(patient);
        self
    }

    /// The clinical goals judged on the TPS's current dose. During planning
    /// (`scale_as_final`) the dose is first scaled as the final normalization will scale it
    /// (the prescription target's coverage on this dose brought to the prescription), so a goal
    /// is judged on the plan the user will get, not on the report's sampling of the coverage
    /// (which differs by up to 1 %); the final plan is already normalized so.
    fn judge_goals(&self, scale_as_final: bool) -> Result<Vec<GoalResult>, PlanError> {
        let goals = &self.protocol.clinical_goals;
        let Some(patient) = self.patient.filter(|_| !goals.is_empty()) else {
            return Ok(Vec::new());
        };
        let mut dose = self.tps.dose()?;
        let origin = self.protocol.origin.display().to_string();
        if scale_as_final && dose.grid() == patient.grid() {
            let rx = &self.protocol.prescription;
            let target = patient.require(&rx.target, &origin, "prescription.target")?;
            let covered =
                tps_api::dose_volume::coverage_cgy(dose.cgy(), &target.mask, rx.volume_percent);
            if covered.is_finite() && covered > 0.0 {
                dose.scale(rx.dose_cgy / covered);
            }
        }
        Ok(tps_api::goals::evaluate(goals, patient, &dose, &origin)?)
    }

    /// Adds an observer; observers see each event in the order they were added.
    pub fn observe(mut self, observer: impl Observer + 'a) -> Self {
        self.observers.push(Box::new(observer));
        self
    }

    /// Stops the plan after its current step once `flag` is raised.
    pub fn stop_on(mut self, flag: StopFlag) -> Self {
        self.stop = flag;
        self
    }

    fn emit(&mut self, timing: &mut Timing, event: &Event) -> Result<(), PlanError> {
        timing.observe(event)?;
        self.observers.iter_mut().try_for_each(|o| o.observe(event))
    }

    /// Optimizes with `changes`, then brings the coverage back into its window when it left.
    /// When the termination uses the clinical goals, they are judged on the resulting dose
    /// and carried in the report.
    fn optimize(
        &mut self,
        changes: &[GoalChange],
        window: [f64; 2],
    ) -> Result<(IterationReport, Option<f64>, f64), PlanError> {
        let t = Instant::now();
        let report = self.tps.optimize(changes)?;
        let ratio = report.coverage_cgy / report.prescription_cgy;
        let (mut report, factor) = if ratio >= window[0] && ratio <= window[1] {
            (report, None)
        } else {
            let factor = self.tps.normalize(Normalization::Report)?;
            (self.tps.report()?, Some(factor))
        };
        if planning_of(self.protocol)?.termination.uses_goals() {
            report.goals = self.judge_goals(true)?;
        }
        Ok((report, factor, t.elapsed().as_secs_f64()))
    }

    /// Asks the advisor, guards its answer (or the rule's, when it failed) and says what to
    /// apply; the event is returned for the observers.
    fn advise(&self, runtime: &tokio::runtime::Runtime, state: &mut State) -> (Advised, Event) {
        let settings = self.settings;
        let report = &state.report;
        let context = AdvisorContext::for_protocol(
            self.protocol,
            planning_of(self.protocol).expect("checked when the plan started"),
            report.clone(),
            state.history.clone(),
            examples::select(
                &settings.examples,
                report,
                settings.n_examples,
                settings.selection,
            ),
        );
        let t = Instant::now();
        let outcome = runtime.block_on(self.advisor.advise(&context));
        let advisor_s = t.elapsed().as_secs_f64();
        let rule = RuleBasedAdvisor.decide(&context);
        let (advice, error, verdict, failed_calls) = match outcome {
            Ok(advice) => {
                state.failures_in_a_row = 0;
                // Replies the reader refused before this one was usable count as the guard's
                // violations do: one place holds every rejected or repaired answer by cause.
                for c in &advice.repaired {
                    *state.violations.entry(Violation::of_reply(*c)).or_default() += 1;
                }
                let verdict = judge(&advice.goals, report, &settings.guard, &rule.goals);
                (Some(advice), None, verdict, Vec::new())
            }
            Err(e) => {
                tracing::warn!(
                    "advisor {} failed: {e}; rule-based step used",
                    self.advisor.name()
                );
                state.advisor_failures += 1;
                state.failures_in_a_row += 1;
                if let AdvisorError::BadReply { causes, .. } = &e {
                    for c in causes {
                        *state.violations.entry(Violation::of_reply(*c)).or_default() += 1;
                    }
                }
                // Every call of the failed advice (prompts, replies, errors, the repair and
                // the retried attempts) goes to the transcript, whatever the failure.
                let failed_calls = e.calls().to_vec();
                let verdict = judge(&rule.goals, report, &settings.guard, &rule.goals);
                (
                    None,
                    Some(e.to_string()),
                    guard::Verdict {
                        fell_back: true,
                        ..verdict
                    },
                    failed_calls,
                )
            }
        };
        for d in &verdict.decisions {
            for v in &d.violations {
                *state.violations.entry(*v).or_default() += 1;
            }
        }
        if verdict.fell_back {
            state.fallbacks += 1;
        }
        let rationale = advice
            .as_ref()
            .map_or_else(|| rule.rationale.clone(), |a| a.rationale.clone());
        state.history.push(HistoryEntry {
            report: report.clone(),
            changes: verdict.applied.clone(),
            rationale,
        });
        let advised = match (&error, settings.max_advisor_failures) {
            (Some(e), Some(limit)) if state.failures_in_a_row >= limit => Advised::GaveUp(format!(
                "advisor {} failed {} times in a row; last: {e}",
                self.advisor.name(),
                state.failures_in_a_row
            )),
            _ => Advised::Apply(verdict.applied.clone()),
        };
        let event = Event::Advice {
            iteration: report.iteration,
            advice,
            error,
            failed_calls,
            verdict,
            advisor_s,
        };
        (advised, event)
    }

    /// Runs the plan to its end. The first optimization failing is an error (there is no plan
    /// to keep); a later one ends the plan with [`TerminationReason::TpsFailed`] and the last
    /// good plan, normalized.
    pub fn run(mut self) -> Result<PlanOutcome, PlanError> {
        let planning = planning_of(self.protocol)?;
        let (max_iterations, window) = (planning.max_iterations, planning.coverage_window);
        let termination = planning.termination;
        if !self.protocol.clinical_goals.is_empty() && self.patient.is_none() {
            return Err(PlanError::Protocol(format!(
                "{}: the protocol has clinical goals, and the planner was given no patient to \
                 judge them on (Planner::judge_goals_on)",
                self.protocol.origin.display()
            )));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PlanError::Protocol(format!("async runtime: {e}")))?;
        let mut timing = Timing::default();
        let start = Event::Start {
            patient: self.patient_id.to_string(),
            protocol: self.protocol.origin.display().to_string(),
            advisor: self.advisor.name(),
            guard: self.settings.guard,
            max_iterations,
            coverage_window: window,
            termination,
            examples: self.settings.examples_origin.as_ref().map(|origin| {
                format!(
                    "{origin} ({} examples), {} per prompt, {} selection",
                    self.settings.examples.len(),
                    self.settings.n_examples.min(self.settings.examples.len()),
                    self.settings.selection.word()
                )
            }),
        };
        self.emit(&mut timing, &start)?;
        let (report, mut normalization, mut tps_s) = self.optimize(&[], window)?;
        let mut state = State {
            report,
            reports: Vec::new(),
            history: Vec::new(),
            violations: ViolationCounts::new(),
            fallbacks: 0,
            advisor_failures: 0,
            failures_in_a_row: 0,
        };
        let mut error = None;
        let reason = loop {
            let event = Event::Report {
                report: state.report.clone(),
                normalization,
                tps_s,
            };
            self.emit(&mut timing, &event)?;
            state.reports.push(state.report.clone());
            if state.report.terminates(termination) {
                break TerminationReason::CriteriaMet;
            }
            if state.report.iteration >= max_iterations {
                break TerminationReason::MaxIterations;
            }
            if self.stop.is_raised() {
                break TerminationReason::Interrupted;
            }
            let (advised, event) = self.advise(&runtime, &mut state);
            self.emit(&mut timing, &event)?;
            let changes = match advised {
                Advised::Apply(changes) => changes,
                Advised::GaveUp(why) => {
                    error = Some(why);
                    break TerminationReason::AdvisorFailed;
                }
            };
            if self.stop.is_raised() {
                break TerminationReason::Interrupted;
            }
            match self.optimize(&changes, window) {
                Ok((report, factor, s)) => {
                    (state.report, normalization, tps_s) = (report, factor, s)
                }
                Err(PlanError::Tps(e)) => {
                    tracing::warn!(
                        "{}: optimization failed: {e}; the last good plan is kept",
                        self.tps.name()
                    );
                    error = Some(e.to_string());
                    break TerminationReason::TpsFailed;
                }
                Err(e) => return Err(e),
            }
        };
        let t = Instant::now();
        let finished = self
            .tps
            .normalize(Normalization::Dose)
            .and_then(|factor| Ok((factor, self.tps.plan()?)))
            .map_err(PlanError::from)
            .and_then(|(factor, plan)| Ok((factor, plan, self.judge_goals(false)?)));
        let failed = finished.as_ref().err().map(|e| {
            let last = format!("the final normalization failed: {e}");
            match &error {
                Some(first) => format!("{first}; {last}"),
                None => last,
            }
        });
        let end = Event::End {
            reason: format!("{reason:?}"),
            iterations: state.report.iteration,
            normalization: finished.as_ref().ok().map(|f| f.0),
            plan: finished.as_ref().ok().map(|f| f.1.clone()),
            goals: finished.as_ref().map(|f| f.2.clone()).unwrap_or_default(),
            tps_s: t.elapsed().as_secs_f64(),
            error: failed.or_else(|| error.clone()),
        };
        // The transcript ends with the reason even when the TPS is gone.
        self.emit(&mut timing, &end)?;
        let (factor, plan, goals) = finished?;
        Ok(PlanOutcome {
            reason,
            error,
            reports: state.reports,
            normalization: factor,
            plan,
            goals,
            violations: state.violations,
            fallbacks: state.fallbacks,
            advisor_failures: state.advisor_failures,
            tps_s: timing.tps_s,
            advisor_s: timing.advisor_s,
        })
    }
}
