//! `autoplan plan`: the virtual-physicist loop on one patient, with a progress line per
//! iteration, and the plan's dose, transcript, metric table, report and pictures on disk.
//! With `--patients` the same plan runs for several cohort patients ([`super::study`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use evaluation::tables::plan::{
    beams_markdown, comparison_markdown, goals_markdown, metrics_csv, metrics_text, report_markdown,
};
use evaluation::tables::study::PlanNumbers;
use evaluation::{Evaluator, MetricValue, PlanDose, ProtocolEvaluator};
use llm_providers::advice::LlmAdvisor;
use llm_providers::config::{Kind, ProviderConfig, build};
use llm_providers::rule_based::RuleBasedAdvisor;
use planner::guard::GuardSettings;
use planner::transcript::TranscriptWriter;
use planner::{PlanOutcome, Planner, PlannerSettings, ProgressObserver, TerminationReason};
use tps_api::{Patient, Protocol, Tps};
use tps_core::delivery::{ApertureSampling, DeliveryMachine, SequenceSettings};
use tps_core::{NativeSettings, NativeTps};
use tps_utps_bridge::{RemoteTps, TpsConfig};

use crate::args::{BeamArgs, Examples, Guard, MachineArgs};
use crate::interrupt::{self, Interrupted};
use crate::lock::OutputLock;
use crate::output::write_file;
use crate::pictures::{isodose_pngs, write_dvh, write_dvhs};

/// Plan a patient with the virtual-physicist loop: optimize, report, ask the advisor, guard
/// its answer, re-optimize, until the protocol's criteria hold; then normalize and write the
/// dose, the transcript, the metric table and pictures.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Cohort definition (with --patient).
    #[arg(long)]
    pub cohort: Option<PathBuf>,
    /// Patient number in the cohort.
    #[arg(long)]
    pub patient: Option<usize>,
    /// A saved patient directory instead of a cohort patient.
    #[arg(long, conflicts_with_all = ["cohort", "patient"])]
    pub patient_dir: Option<PathBuf>,
    /// Protocol with prescription, objectives, rings, planning limits and metrics.
    #[arg(long)]
    pub protocol: PathBuf,
    /// Provider file choosing the advisor (default: the rule-based physicist).
    #[arg(long)]
    pub provider: Option<PathBuf>,
    /// TPS file choosing the TPS (`configs/tps/*.toml`; default: the native TPS in-process).
    /// A remote TPS gets the patient and the protocol; the beam and grid flags are the
    /// server's.
    #[arg(long)]
    pub tps: Option<PathBuf>,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// What the guard does with a bad change.
    #[arg(long, value_enum, default_value_t = Guard::Fallback)]
    pub guard: Guard,
    #[command(flatten)]
    pub beams: BeamArgs,
    /// Few-shot example pool (JSON, from `autoplan examples`) for LLM advisors.
    #[arg(long)]
    pub examples: Option<PathBuf>,
    /// How many examples each prompt shows.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=crate::args::MAX_EXAMPLES))]
    pub n_examples: u16,
    /// Which examples: fixed (spread over the pool) or nearest (most similar iterations).
    #[arg(long, value_enum, default_value_t = Examples::Fixed)]
    pub selection: Examples,
    /// End a plan when the advisor fails this many times in a row (default: the rule-based
    /// physicist stands in for every failed advice, and each is counted).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_advisor_failures: Option<u32>,
    /// Accept plans made largely by the rule-based fallback (an advisor that failed or gave
    /// advice the guard replaced) as the advisor's. Without it, a single plan with more than
    /// half of its advice steps from the fallback, or a study with any, ends with an error
    /// after its outputs are written.
    #[arg(long)]
    pub allow_fallback: bool,
    /// Plan several cohort patients instead of one (`6-35`, `7,9`, `test` or `training`):
    /// each into OUT/pNN, a row each in OUT/plans.csv as it ends (a rerun resumes), and
    /// OUT/study.md with criteria met, iterations, times and the metrics beside --reference.
    #[arg(long, conflicts_with_all = ["patient", "patient_dir"])]
    pub patients: Option<String>,
    /// Reference values (mean and std per metric) to set beside the study's metrics, e.g.
    /// configs/reference/wei2025-table3-manual.toml for the cervix protocol.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Also sequence the final plan into the machine's arcs of control points (native TPS):
    /// deliverable.json, its dose from the apertures, its metrics beside the fluence plan's in
    /// deliverable.md, and the two DVHs overlaid.
    #[arg(long)]
    pub deliverable: bool,
    /// Width of the gantry-angle bins in which the deliverable plan's segments share one
    /// static beam for its dose, degrees (smaller is closer to the continuous arc, and slower).
    #[arg(long, default_value_t = 4.0, requires = "deliverable")]
    pub dose_angle_step: f64,
    /// Also export the final plan as DICOM RT into OUT/dicom (CT, structure set with the
    /// rings, dose, and the RT plan; with --deliverable its arcs and that dose), as
    /// `autoplan export-dicom` does.
    #[arg(long)]
    pub dicom: bool,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

impl Args {
    /// The advisor this plan asks, and how it was chosen.
    /// Whether the advisor is the rule-based physicist (read from the provider file without
    /// building the advisor).
    pub fn rule_based(&self) -> Result<bool> {
        Ok(match &self.provider {
            None => true,
            Some(path) => ProviderConfig::load(path)?.kind == Kind::RuleBased,
        })
    }

    fn advisor(&self) -> Result<(Box<dyn LlmAdvisor>, String)> {
        // No provider file: the rule-based physicist, which needs no configuration.
        Ok(match &self.provider {
            Some(path) => (
                build(&ProviderConfig::load(path)?)?,
                path.display().to_string(),
            ),
            None => (
                Box::new(RuleBasedAdvisor),
                "default, as configs/providers/rule-based.toml".into(),
            ),
        })
    }

    fn planner_settings(&self, protocol: &Protocol) -> Result<PlannerSettings> {
        let examples = match &self.examples {
            Some(path) => {
                let pool = planner::examples::load(path).map_err(anyhow::Error::msg)?;
                planner::examples::check_pool(&pool, protocol, path).map_err(anyhow::Error::msg)?;
                if usize::from(self.n_examples) > pool.len() {
                    tracing::warn!(
                        "--n-examples {}: {} holds {} examples, so each prompt shows {}",
                        self.n_examples,
                        path.display(),
                        pool.len(),
                        pool.len()
                    );
                }
                pool
            }
            None => Vec::new(),
        };
        Ok(PlannerSettings {
            guard: GuardSettings {
                policy: self.guard.policy(),
                ..Default::default()
            },
            examples,
            n_examples: usize::from(self.n_examples),
            selection: self.selection.selection(),
            examples_origin: self.examples.as_ref().map(|p| p.display().to_string()),
            max_advisor_failures: self.max_advisor_failures,
        })
    }

    fn load_patient(&self) -> Result<Patient> {
        super::load_patient(
            self.cohort.as_deref(),
            self.patient,
            self.patient_dir.as_deref(),
        )
    }
}

/// Exit status of a plan or a study whose final plans failed clinical must-goals (after every
/// output is written): distinct from 1 (an error) and 130 (interrupted).
pub const EXIT_GOALS_FAILED: u8 = 3;

/// The error a plan or a study ends with when final plans failed clinical must-goals; `main`
/// exits with [`EXIT_GOALS_FAILED`].
#[derive(Debug, thiserror::Error)]
#[error("clinical must-goals failed: {0}")]
pub struct GoalsFailed(pub String);

/// What one plan gave: the loop's numbers and the protocol's metrics.
pub struct PlanRecord {
    /// Patient id.
    pub patient: String,
    /// The advisor's name.
    pub advisor: String,
    /// Criteria, iterations, normalization, times, guard counts.
    pub numbers: PlanNumbers,
    /// The protocol's metrics of the final plan.
    pub metrics: Vec<MetricValue>,
    /// Labels of the clinical must-goals the final plan failed.
    pub failed_goals: Vec<String>,
    /// The protocol's metrics of the deliverable plan, with `--deliverable`.
    pub deliverable: Option<Vec<MetricValue>>,
}

/// Advice steps of a plan of `iterations` optimizations (one after each but the last).
pub fn advice_steps(n: &PlanNumbers) -> u32 {
    n.iterations.saturating_sub(1)
}

/// Whether the rule-based physicist made some of these steps as a stand-in for another
/// advisor (the rule-based advisor's own steps are its own).
pub fn stood_in(rule_based: bool, n: &PlanNumbers) -> bool {
    !rule_based && n.fallbacks > 0
}

/// Runs `autoplan plan` on one patient; a plan more than half made by the rule-based
/// fallback is an error (after its outputs are written) unless `--allow-fallback`.
pub fn run(a: &Args) -> Result<()> {
    let r = run_one(a)?;
    if !r.failed_goals.is_empty() {
        return Err(GoalsFailed(format!(
            "{}: the final plan fails {} (outputs in {})",
            r.patient,
            r.failed_goals.join("; "),
            a.out.display()
        ))
        .into());
    }
    let steps = advice_steps(&r.numbers);
    let rule_based = r.advisor == RuleBasedAdvisor.name();
    if stood_in(rule_based, &r.numbers) && 2 * r.numbers.fallbacks > steps && !a.allow_fallback {
        bail!(
            "{}: {} of {} advice steps were made by the rule-based fallback, not by {} ({} advisor \
             failures): this plan is not the advisor's. Its outputs are in {}; check the \
             provider (endpoint, key, model), or pass --allow-fallback to accept it",
            r.patient,
            r.numbers.fallbacks,
            steps,
            r.advisor,
            r.numbers.advisor_failures,
            a.out.display()
        );
    }
    Ok(())
}

/// Plans one patient and writes its outputs. A plan cut short (interrupted, the TPS or the
/// advisor failing) still writes the last good plan, then is an error.
pub fn run_one(a: &Args) -> Result<PlanRecord> {
    let (advisor, provider_text) = a.advisor()?;
    let protocol = a.beams.apply_to(Protocol::load(&a.protocol)?)?;
    planner::planning_of(&protocol)?;
    let evaluator = ProtocolEvaluator::from_protocol(&protocol)?;
    let (model, curve) = a.machine.load()?;
    let settings = a.planner_settings(&protocol)?;
    let tps_config = match &a.tps {
        Some(f) => TpsConfig::load(f)?,
        None => TpsConfig::Native,
    };
    if matches!(tps_config, TpsConfig::Remote(_)) && a.beams.any() {
        // A remote TPS receives the protocol file as written.
        bail!(
            "--arcs, --beams-per-arc, --grid-mm and --bixel-mm set the native TPS's beams; a \
             remote TPS takes the beams from the protocol file: write them in the [beams] \
             section of {}",
            a.protocol.display()
        );
    }
    let mut patient = a.load_patient()?;
    // A misspelt metric or goal, or a structure of the wrong role, is found now, not after
    // the plan.
    protocol.check_metric_structures(&patient)?;
    protocol.check_goal_structures(&patient)?;
    protocol.check_roles(&patient)?;
    let pid = patient.id.clone();
    let _lock = OutputLock::acquire(&a.out)?;
    let t = Instant::now();
    out!(
        "planning {pid} with {} and advisor {} ({})",
        a.protocol.display(),
        advisor.name(),
        provider_text
    );
    // The protocol's rings, built once: the outputs are evaluated on them, and the native TPS
    // finds them present.
    patient_model::recipes::build_missing_auxiliary(&protocol, &mut patient)?;
    let delivery = if a.deliverable {
        if matches!(tps_config, TpsConfig::Remote(_)) {
            bail!(
                "--deliverable sequences the native TPS's fluence; a remote TPS delivers its own \
                 plans"
            );
        }
        Some(DeliveryMachine::load(&a.machine.machine)?)
    } else {
        None
    };
    let mut native = None;
    let mut remote = None;
    let tps: &mut dyn Tps = match &tps_config {
        TpsConfig::Native => native.insert(
            NativeTps::open(
                patient.clone(),
                protocol.clone(),
                &model,
                &curve,
                NativeSettings::default(),
            )
            .with_context(|| format!("opening {pid}"))?,
        ),
        TpsConfig::Remote(config) => {
            // A cohort patient has no directory yet: it is saved to a private one to send.
            let saved;
            let dir = match &a.patient_dir {
                Some(d) => d.as_path(),
                None => {
                    saved = tempfile::tempdir()?;
                    patient_model::patient_files::save(&patient, saved.path())?;
                    saved.path()
                }
            };
            remote.insert(
                RemoteTps::open(config, dir, &a.protocol)
                    .with_context(|| format!("opening {pid} on {}", config.endpoint))?,
            )
        }
    };
    out!(
        "case opened on {} in {:.1} s",
        tps.name(),
        t.elapsed().as_secs_f64()
    );
    out!("beams: {}", beams_text(tps, &protocol).0);
    let transcript_path = a.out.join("transcript.jsonl");
    let mut transcript = TranscriptWriter::create(&transcript_path)
        .with_context(|| format!("creating {}", transcript_path.display()))?;
    let volume = protocol.prescription.volume_percent;
    let outcome = Planner::new(&mut *tps, advisor.as_ref(), &protocol, &pid, &settings)
        .judge_goals_on(&patient)
        .observe(&mut transcript)
        .observe(ProgressObserver::new(|p| {
            out!(
                "iteration {:>2}/{}: PTV D{} {:.0} cGy, {} OAR objective(s) out of range, advisor {:.2} s, TPS {:.1} s",
                p.report.iteration,
                p.max_iterations,
                volume,
                p.report.coverage_cgy,
                p.out_of_range,
                p.advisor_s,
                p.tps_s
            )
        }))
        .stop_on(interrupt::stop_flag())
        .run()?;
    let last = outcome.reports.last().expect("at least one report");
    out!(
        "{:?} after {} iterations; normalized by {:.4} (D{volume} = prescription as evaluated); {:.1} MU per fraction; TPS {:.1} s, advisor {:.2} s",
        outcome.reason,
        last.iteration,
        outcome.normalization,
        outcome.plan.mu_per_fraction,
        outcome.tps_s,
        outcome.advisor_s
    );
    if !outcome.violations.is_empty() || outcome.fallbacks > 0 {
        out!(
            "guard: {} fallback(s), {} advisor failure(s), violations {:?}",
            outcome.fallbacks,
            outcome.advisor_failures,
            outcome.violations
        );
    }
    let metrics = write_outputs(tps, &patient, &protocol, &evaluator, &outcome, &a.out)?;
    let mut deliverable = None;
    if let (Some(machine), Some(native)) = (&delivery, &native) {
        deliverable = Some(write_deliverable(
            native,
            machine,
            a.dose_angle_step,
            &patient,
            &protocol,
            &evaluator,
            &metrics,
            &a.out,
        )?);
    }
    if a.dicom {
        // The plan's own export, replaced by each run in this directory.
        let dir = a.out.join("dicom");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("replacing the earlier export in {}", dir.display()))?;
        }
        let ex = super::export_dicom::write(&a.out, &patient, &protocol, true, &pid, &dir)?;
        out!("wrote {} DICOM files to {}", ex.files.len(), dir.display());
    }
    let failed_goals: Vec<String> = tps_api::goals::failed_must(&outcome.goals)
        .iter()
        .map(|g| format!("{} (value {:.1} {})", g.label, g.value, g.unit.label()))
        .collect();
    if !outcome.goals.is_empty() {
        outn!("{}", goals_markdown(&outcome.goals));
        if failed_goals.is_empty() {
            out!("every clinical must-goal passed");
        } else {
            out!("clinical must-goals FAILED: {}", failed_goals.join("; "));
        }
    }
    let total_s = t.elapsed().as_secs_f64();
    out!("total {total_s:.1} s");
    match outcome.reason {
        TerminationReason::Interrupted => return Err(Interrupted.into()),
        TerminationReason::TpsFailed | TerminationReason::AdvisorFailed => bail!(
            "{pid}: the plan ended early ({:?}): {}; the last good plan is in {}",
            outcome.reason,
            outcome.error.as_deref().unwrap_or("no detail"),
            a.out.display()
        ),
        TerminationReason::CriteriaMet | TerminationReason::MaxIterations => {}
    }
    Ok(PlanRecord {
        patient: pid,
        advisor: advisor.name(),
        numbers: PlanNumbers {
            criteria_met: outcome.reason == TerminationReason::CriteriaMet,
            iterations: last.iteration,
            normalization: outcome.normalization,
            tps_s: outcome.tps_s,
            advisor_s: outcome.advisor_s,
            total_s,
            fallbacks: outcome.fallbacks,
            advisor_failures: outcome.advisor_failures,
            violations: outcome.violations.values().sum(),
            must_goals_failed: failed_goals.len() as u32,
        },
        metrics,
        failed_goals,
        deliverable,
    })
}

/// The beam set-up the TPS says it plans with, or the protocol's with a note when it does not
/// say: (one line for the console, the note for report.md).
fn beams_text(tps: &dyn Tps, protocol: &Protocol) -> (String, &'static str) {
    match tps.beams() {
        Some(b) => (b.describe(), ""),
        None => (
            format!(
                "{} (the protocol's; this TPS does not report its set-up)",
                protocol.beams.describe()
            ),
            "The protocol's set-up: this TPS does not report the one it planned with.\n\n",
        ),
    }
}

/// The final plan's clinical goals for report.md, with the termination that was in force.
fn final_goals_markdown(protocol: &Protocol, outcome: &PlanOutcome) -> String {
    if outcome.goals.is_empty() {
        return String::new();
    }
    let termination = protocol
        .planning
        .as_ref()
        .map_or(tps_api::Termination::Study, |p| p.termination);
    let failed = tps_api::goals::failed_must(&outcome.goals).len();
    format!(
        "\n## Clinical goals of the final plan (after the final normalization)\n\n\
         termination: {termination:?}; must-goals failed: {failed}\n\n{}",
        goals_markdown(&outcome.goals)
    )
}

fn write_outputs(
    tps: &dyn Tps,
    p: &Patient,
    protocol: &Protocol,
    evaluator: &ProtocolEvaluator,
    outcome: &PlanOutcome,
    dir: &Path,
) -> Result<Vec<MetricValue>> {
    let last = outcome.reports.last().expect("at least one report");
    let dose = tps.dose()?;
    let mu = outcome.plan.mu_per_fraction;
    write_file(
        dir,
        "report.md",
        &format!(
            "{}\n\nended: {:?}; normalization {:.4} (D{} = prescription on the CT grid, as evaluated); {:.1} MU per fraction\n\
             advice steps made by the rule-based fallback: {} of {} ({} advisor failures)\n{}\n\
             ## Beams\n\n{}{}",
            report_markdown(last),
            outcome.reason,
            outcome.normalization,
            protocol.prescription.volume_percent,
            mu,
            outcome.fallbacks,
            outcome.reports.len().saturating_sub(1),
            outcome.advisor_failures,
            final_goals_markdown(protocol, outcome),
            beams_text(tps, protocol).1,
            beams_markdown(&tps.beams().unwrap_or_else(|| protocol.beams.clone()))
        ),
    )?;
    patient_model::nrrd::write_f32(&dir.join("dose.nrrd"), dose.grid(), dose.cgy())?;
    let values = evaluator.evaluate(&PlanDose {
        patient: p,
        dose: &dose,
        mu_per_fraction: Some(mu),
    })?;
    outn!("{}", metrics_text(&values));
    write_file(dir, "metrics.csv", &metrics_csv(&values))?;
    write_dvh(p, &dose, evaluator, "plan", dir)?;
    isodose_pngs(
        p,
        &dose,
        protocol.prescription.dose_cgy,
        &[1.05, 1.0, 0.9, 0.7, 0.5, 0.3],
        &protocol.prescription.target,
        dir,
        "isodose",
    )?;
    out!(
        "wrote {}: transcript.jsonl, report.md, metrics.csv, dose.nrrd, dvh.png, isodose-*.png",
        dir.display()
    );
    Ok(values)
}

/// Sequences the native TPS's final plan into arcs for `machine`, computes their dose from
/// the apertures and writes deliverable.json, deliverable-dose.nrrd (with how it was computed in
/// deliverable-dose.json), deliverable-metrics.csv,
/// deliverable.md (the metrics beside the fluence plan's, the machine check, MU and beam-on
/// time) and the pictures (the two DVHs overlaid, the apertures and MU of each arc, isodoses);
/// returns the deliverable plan's metrics.
#[allow(clippy::too_many_arguments)]
fn write_deliverable(
    tps: &NativeTps,
    machine: &DeliveryMachine,
    angle_step_deg: f64,
    p: &Patient,
    protocol: &Protocol,
    evaluator: &ProtocolEvaluator,
    fluence_metrics: &[MetricValue],
    dir: &Path,
) -> Result<Vec<MetricValue>> {
    if !(angle_step_deg > 0.0 && angle_step_deg <= 30.0) {
        bail!(
            "--dose-angle-step {angle_step_deg}: give a bin width above 0 and at most 30 degrees"
        );
    }
    out!(
        "sequencing the plan into arcs on {} and computing their dose ({angle_step_deg}-degree bins)",
        machine.name
    );
    let sequencing = SequenceSettings::default();
    let d = tps.deliverable(
        machine,
        &sequencing,
        &ApertureSampling {
            angle_step_deg,
            ..Default::default()
        },
    )?;
    let mu = d.plan.mu_per_fraction();
    let fluence = tps.dose()?;
    write_file(
        dir,
        "deliverable.json",
        &(serde_json::to_string_pretty(&d.plan)? + "\n"),
    )?;
    patient_model::nrrd::write_f32(
        &dir.join("deliverable-dose.nrrd"),
        d.dose.grid(),
        d.dose.cgy(),
    )?;
    write_file(
        dir,
        "deliverable-dose.json",
        &(serde_json::to_string_pretty(&super::qa::DoseSettings { angle_step_deg })? + "\n"),
    )?;
    let values = evaluator.evaluate(&PlanDose {
        patient: p,
        dose: &d.dose,
        mu_per_fraction: Some(mu),
    })?;
    write_file(dir, "deliverable-metrics.csv", &metrics_csv(&values))?;
    let arcs: Vec<String> = d
        .plan
        .arcs
        .iter()
        .zip(&d.check.arcs)
        .enumerate()
        .map(|(k, (arc, t))| {
            format!(
                "| {} | {:?} | {} | {:.1} | {:.0} | {} / {} / {} |",
                k + 1,
                arc.rotation,
                arc.control_points.len(),
                arc.mu(),
                t.total_s,
                t.limited_by[0],
                t.limited_by[1],
                t.limited_by[2]
            )
        })
        .collect();
    let violations = if d.check.violations.is_empty() {
        "none: every limit of the machine holds".to_string()
    } else {
        d.check
            .violations
            .iter()
            .map(|v| format!("\n- {v}"))
            .collect::<String>()
    };
    write_file(
        dir,
        "deliverable.md",
        &format!(
            "# Deliverable plan of {}\n\n\
             The fluence plan sequenced into arcs of control points on {} (control points at \
             most {} degrees apart, sliding-window sweeps over each beam's arc sector with the \
             leaf positions fitted to the fluence, the MU re-optimized per gantry-angle bin), \
             its dose computed from the apertures with \
             leaf transmission by the full engine in {}-degree bins, normalized as the fluence \
             plan: D{} = prescription (factor {:.4}).\n\n\
             | arc | rotation | control points | MU per fraction | beam-on s | segments limited by leaves / dose rate / gantry |\n\
             |---|---|---|---|---|---|\n{}\n\n\
             MU per fraction: {:.1} (fluence plan's sliding-window estimate {:.1}); beam-on \
             time {:.0} s.\n\nMachine check: {}\n\n\
             MU re-optimization of each {}-degree bin against the protocol's objectives: \
             objective {:.4} for the sequenced MU, {:.4} after.\n\n\
             Sequencing {:.1} s, bin doses {:.1} s, MU re-optimization {:.1} s.\n\n\
             ## Metrics, fluence plan beside deliverable plan\n\n{}",
            p.id,
            machine.name,
            sequencing.spacing_deg,
            angle_step_deg,
            protocol.prescription.volume_percent,
            d.normalization,
            arcs.join("\n"),
            mu,
            tps.plan()?.mu_per_fraction,
            d.check.total_s(),
            violations,
            angle_step_deg,
            d.mu_objective.0,
            d.mu_objective.1,
            d.timing_s.sequencing,
            d.timing_s.dose,
            d.timing_s.mu_reoptimization,
            comparison_markdown(("fluence plan", fluence_metrics), ("deliverable", &values))
        ),
    )?;
    write_dvhs(
        p,
        ("fluence plan", &fluence),
        Some(("deliverable", &d.dose)),
        evaluator,
        dir,
        "dvh-deliverable",
    )?;
    evaluation::figures::save(
        &evaluation::figures::ArcApertures {
            title: format!("Apertures and MU of {}", p.id),
            plan: &d.plan,
        },
        &dir.join("apertures"),
        (1400, 1000),
    )?;
    isodose_pngs(
        p,
        &d.dose,
        protocol.prescription.dose_cgy,
        &[1.05, 1.0, 0.9, 0.7, 0.5, 0.3],
        &protocol.prescription.target,
        dir,
        "isodose-deliverable",
    )?;
    out!(
        "deliverable: {} control points, {:.1} MU per fraction, beam-on {:.0} s, {} violation(s); \
         sequencing {:.1} s, dose {:.1} s, MU re-optimization {:.1} s (objective {:.4} -> {:.4})",
        d.plan
            .arcs
            .iter()
            .map(|a| a.control_points.len())
            .sum::<usize>(),
        mu,
        d.check.total_s(),
        d.check.violations.len(),
        d.timing_s.sequencing,
        d.timing_s.dose,
        d.timing_s.mu_reoptimization,
        d.mu_objective.0,
        d.mu_objective.1
    );
    out!(
        "wrote {}: deliverable.json, deliverable.md, deliverable-metrics.csv, \
         deliverable-dose.nrrd, dvh-deliverable.png, apertures.png, isodose-deliverable-*.png",
        dir.display()
    );
    Ok(values)
}
