//! The planning loop: optimize, report, advise, guard, apply, until the protocol's termination
//! criteria hold (PTV coverage at least the prescription and every OAR objective's constraint
//! target value inside its ideal range) or the iteration cap is reached, then normalize.
//! Weights stay fixed; only goals move.
//!
//! The loop is generic over the [`Tps`] and the [`LlmAdvisor`]. Every proposed change passes
//! the [`guard`]; a failing advisor is replaced for that iteration by the rule-based physicist,
//! and the fallback is recorded. Each event goes to the [`transcript`] as it happens, and
//! [`replay`] re-runs a transcript's applied changes against a TPS without any advisor.

pub mod examples;
pub mod guard;
pub mod transcript;

use std::time::Instant;

use llm_providers::advice::{AdvisorContext, FewShotExample, HistoryEntry, LlmAdvisor};
use llm_providers::rule_based::RuleBasedAdvisor;
use serde::{Deserialize, Serialize};
use tps_core::protocol::Protocol;
use tps_core::tps::{IterationReport, PlanSummary, Tps};

use crate::guard::{GuardSettings, ViolationCounts, judge};
use crate::transcript::{Event, TranscriptWriter};

/// Why a plan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TerminationReason {
    /// Coverage and every OAR objective inside its range.
    CriteriaMet,
    /// The protocol's iteration cap.
    MaxIterations,
}

/// Settings of the loop.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlannerSettings {
    /// The guard.
    pub guard: GuardSettings,
    /// Pool of few-shot examples for the advisor.
    pub examples: Vec<FewShotExample>,
    /// How many examples a prompt shows.
    pub n_examples: usize,
    /// Which ones.
    pub selection: examples::Selection,
}

/// Shown after each optimization.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress<'a> {
    /// The report.
    pub report: &'a IterationReport,
    /// Iteration cap.
    pub max_iterations: u32,
    /// OAR objectives outside their range.
    pub out_of_range: usize,
    /// Time of the last advice, s (0 before the first).
    pub advisor_s: f64,
    /// Time of the last optimization, s.
    pub tps_s: f64,
}

/// A finished plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutcome {
    /// Why it ended.
    pub reason: TerminationReason,
    /// Every report, first to last (before normalization).
    pub reports: Vec<IterationReport>,
    /// Normalization factor applied at the end.
    pub normalization: f64,
    /// MU of the final plan.
    pub plan: PlanSummary,
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

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The TPS failed (the last good plan is kept in the TPS).
    #[error(transparent)]
    Tps(#[from] tps_core::Error),
    /// The transcript could not be written or read.
    #[error("transcript: {0}")]
    Transcript(String),
    /// The protocol cannot be planned.
    #[error("{0}")]
    Protocol(String),
}

fn out_of_range(r: &IterationReport) -> usize {
    r.objectives
        .iter()
        .filter(|o| {
            o.role == tps_core::structure::Role::Oar
                && o.status != tps_core::objectives::RangeStatus::Inside
        })
        .count()
}

fn write(t: &mut Option<&mut TranscriptWriter>, e: &Event) -> Result<(), PlanError> {
    if let Some(w) = t {
        w.write(e)
            .map_err(|err| PlanError::Transcript(format!("{}: {err}", w.path().display())))?;
    }
    Ok(())
}

/// The protocol's planning settings (iteration cap and coverage window), or an error naming
/// the protocol file when it has none.
pub fn planning_of(protocol: &Protocol) -> Result<&tps_core::protocol::Planning, PlanError> {
    protocol.planning.as_ref().ok_or_else(|| {
        PlanError::Protocol(format!(
            "{}: [planning] is missing (max-iterations, coverage-window)",
            protocol.origin.display()
        ))
    })
}

/// Normalizes the plan when its coverage has left `window` (multiples of the prescription), as
/// the study kept PTV D95 within 1.00-1.02 x Rx during planning; returns the report of the plan
/// as it now is and the factor applied, if any.
fn keep_in_window(
    tps: &mut dyn Tps,
    report: IterationReport,
    window: [f64; 2],
) -> Result<(IterationReport, Option<f64>), PlanError> {
    let ratio = report.coverage_cgy / report.prescription_cgy;
    if ratio >= window[0] && ratio <= window[1] {
        return Ok((report, None));
    }
    let factor = tps.normalize()?;
    Ok((tps.report()?, Some(factor)))
}

/// Plans `tps`'s open case with `advisor`, calling `progress` after every optimization.
pub fn plan(
    tps: &mut dyn Tps,
    advisor: &dyn LlmAdvisor,
    protocol: &Protocol,
    patient_id: &str,
    settings: &PlannerSettings,
    mut transcript: Option<&mut TranscriptWriter>,
    mut progress: impl FnMut(&Progress<'_>),
) -> Result<PlanOutcome, PlanError> {
    let planning = planning_of(protocol)?;
    let (max_iterations, coverage_window) = (planning.max_iterations, planning.coverage_window);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PlanError::Protocol(format!("async runtime: {e}")))?;
    write(
        &mut transcript,
        &Event::Start {
            patient: patient_id.to_string(),
            protocol: protocol.origin.display().to_string(),
            advisor: advisor.name(),
            guard: settings.guard,
            max_iterations,
            coverage_window,
        },
    )?;
    let (mut tps_s, mut advisor_s) = (0.0, 0.0);
    let mut violations = ViolationCounts::new();
    let (mut fallbacks, mut advisor_failures) = (0u32, 0u32);
    let mut history: Vec<HistoryEntry> = Vec::new();
    let mut reports = Vec::new();
    let t = Instant::now();
    let first = tps.optimize(&[])?;
    let (mut report, mut normalization) = keep_in_window(tps, first, coverage_window)?;
    let mut last_tps = t.elapsed().as_secs_f64();
    let mut last_advisor = 0.0;
    tps_s += last_tps;
    let reason = loop {
        write(
            &mut transcript,
            &Event::Report {
                report: report.clone(),
                normalization,
                tps_s: last_tps,
            },
        )?;
        progress(&Progress {
            report: &report,
            max_iterations,
            out_of_range: out_of_range(&report),
            advisor_s: last_advisor,
            tps_s: last_tps,
        });
        reports.push(report.clone());
        if report.criteria_met() {
            break TerminationReason::CriteriaMet;
        }
        if report.iteration >= max_iterations {
            break TerminationReason::MaxIterations;
        }
        let context = AdvisorContext::for_protocol(
            protocol,
            planning,
            report.clone(),
            history.clone(),
            examples::select(
                &settings.examples,
                &report,
                settings.n_examples,
                settings.selection,
            ),
        );
        let ta = Instant::now();
        let outcome = runtime.block_on(advisor.advise(&context));
        last_advisor = ta.elapsed().as_secs_f64();
        advisor_s += last_advisor;
        let rule = RuleBasedAdvisor.decide(&context);
        let (advice, error, verdict) = match outcome {
            Ok(advice) => {
                let verdict = judge(&advice.goals, &report, &settings.guard, &rule.goals);
                (Some(advice), None, verdict)
            }
            Err(e) => {
                tracing::warn!(
                    "advisor {} failed: {e}; rule-based step used",
                    advisor.name()
                );
                advisor_failures += 1;
                let verdict = judge(&rule.goals, &report, &settings.guard, &rule.goals);
                (
                    None,
                    Some(e.to_string()),
                    guard::Verdict {
                        fell_back: true,
                        ..verdict
                    },
                )
            }
        };
        for d in &verdict.decisions {
            for v in &d.violations {
                *violations.entry(*v).or_default() += 1;
            }
        }
        if verdict.fell_back {
            fallbacks += 1;
        }
        let rationale = advice
            .as_ref()
            .map_or_else(|| rule.rationale.clone(), |a| a.rationale.clone());
        write(
            &mut transcript,
            &Event::Advice {
                iteration: report.iteration,
                advice,
                error,
                verdict: verdict.clone(),
                advisor_s: last_advisor,
            },
        )?;
        history.push(HistoryEntry {
            report: report.clone(),
            changes: verdict.applied.clone(),
            rationale,
        });
        let t = Instant::now();
        let next = tps.optimize(&verdict.applied)?;
        (report, normalization) = keep_in_window(tps, next, coverage_window)?;
        last_tps = t.elapsed().as_secs_f64();
        tps_s += last_tps;
    };
    let t = Instant::now();
    let normalization = tps.normalize()?;
    tps_s += t.elapsed().as_secs_f64();
    let plan = tps.plan();
    write(
        &mut transcript,
        &Event::End {
            reason: format!("{reason:?}"),
            iterations: report.iteration,
            normalization,
            plan: plan.clone(),
        },
    )?;
    Ok(PlanOutcome {
        reason,
        reports,
        normalization,
        plan,
        violations,
        fallbacks,
        advisor_failures,
        tps_s,
        advisor_s,
    })
}

/// Re-runs a transcript's applied changes against `tps` (a freshly opened case of the same
/// patient and protocol) without an advisor, normalizing where the transcript did; returns the
/// reports and the final normalization factor.
pub fn replay(
    tps: &mut dyn Tps,
    events: &[Event],
) -> Result<(Vec<IterationReport>, f64), PlanError> {
    if !events.iter().any(|e| matches!(e, Event::End { .. })) {
        return Err(PlanError::Transcript(
            "the transcript has no end event: the plan did not finish".into(),
        ));
    }
    let mut reports = Vec::new();
    let mut pending: Vec<tps_core::tps::GoalChange> = Vec::new();
    for e in events {
        match e {
            Event::Report { normalization, .. } => {
                let mut r = tps.optimize(&pending)?;
                if normalization.is_some() {
                    tps.normalize()?;
                    r = tps.report()?;
                }
                reports.push(r);
                pending.clear();
            }
            Event::Advice { verdict, .. } => pending = verdict.applied.clone(),
            _ => {}
        }
    }
    let factor = tps.normalize()?;
    Ok((reports, factor))
}
