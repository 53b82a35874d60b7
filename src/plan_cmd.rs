//! `autoplan plan`: the virtual-physicist loop on one patient, with a progress line per
//! iteration, and the plan's dose, transcript, metric table, report and pictures on disk; or,
//! with `--patients`, on several patients of a cohort, one directory each, with a row per
//! patient in `plans.csv` (written as each plan ends, so a rerun resumes) and `study.md`
//! summarizing termination, iterations, time and metrics beside a reference column.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use evaluation::reference::ReferenceTable;
use evaluation::{Evaluator, PlanDose, ProtocolEvaluator};
use llm_providers::advice::LlmAdvisor;
use llm_providers::config::{ProviderConfig, build};
use llm_providers::rule_based::RuleBasedAdvisor;
use planner::examples::Selection;
use planner::guard::{GuardPolicy, GuardSettings};
use planner::transcript::TranscriptWriter;
use planner::{PlannerSettings, plan};
use tps_core::cohort::CohortSpec;
use tps_core::native::{NativeSettings, NativeTps};
use tps_core::patient::Patient;
use tps_core::patient_files;
use tps_core::protocol::Protocol;
use tps_core::tps::Tps;

use crate::cohort_run::{PatientRows, select_ids};
use crate::commands::{
    isodose_pngs, metrics_csv, metrics_text, normalize_on_grid, report_table, write_dvh,
};

/// What `autoplan plan` needs.
#[derive(Clone)]
pub struct PlanArgs {
    pub cohort: Option<PathBuf>,
    pub patient: Option<usize>,
    pub patient_dir: Option<PathBuf>,
    pub protocol: PathBuf,
    pub provider: Option<PathBuf>,
    pub machine: crate::commands::MachineArgs,
    pub guard: String,
    pub settings: NativeSettings,
    pub examples: Option<PathBuf>,
    pub n_examples: usize,
    pub selection: String,
    /// Several cohort patients (`6-35`, `7,9`, or `test`): a study instead of one plan.
    pub patients: Option<String>,
    /// Reference values for the study's comparison table (none: the measured column alone).
    pub reference: Option<PathBuf>,
    pub out: PathBuf,
}

/// What one plan gave: the loop's outcome in numbers and the protocol's metrics.
pub struct PlanRecord {
    pub criteria_met: bool,
    pub iterations: u32,
    /// Final normalization: the TPS's times the CT grid's.
    pub normalization: f64,
    pub tps_s: f64,
    pub advisor_s: f64,
    pub total_s: f64,
    pub fallbacks: u32,
    pub advisor_failures: u32,
    pub violations: u32,
    pub metrics: Vec<evaluation::MetricValue>,
}

fn load_patient(a: &PlanArgs) -> Result<Patient> {
    match (&a.cohort, a.patient, &a.patient_dir) {
        (Some(c), Some(id), None) => {
            let spec = CohortSpec::load(c)?;
            if id == 0 || id > spec.patients {
                bail!(
                    "--patient {id}: {} has patients 1-{}",
                    c.display(),
                    spec.patients
                );
            }
            Ok(spec.generate(id)?)
        }
        (None, None, Some(dir)) => Ok(patient_files::load(dir)?),
        _ => bail!("give either --cohort FILE --patient N, or --patient-dir DIR"),
    }
}

/// Runs `autoplan plan`: one patient, or a study of several with `--patients`.
pub fn run(a: &PlanArgs) -> Result<()> {
    match &a.patients {
        Some(list) => run_study(a, list),
        None => run_one(a).map(|_| ()),
    }
}

/// Plans one patient.
pub fn run_one(a: &PlanArgs) -> Result<PlanRecord> {
    let policy = match a.guard.as_str() {
        "fallback" => GuardPolicy::Fallback,
        "reject" => GuardPolicy::Reject,
        "clamp" => GuardPolicy::Clamp,
        other => bail!("--guard {other:?}: fallback, reject or clamp"),
    };
    // No provider file: the rule-based physicist, which needs no configuration.
    let (advisor, provider_text): (Box<dyn LlmAdvisor>, String) = match &a.provider {
        Some(path) => (
            build(&ProviderConfig::load(path)?)?,
            path.display().to_string(),
        ),
        None => (
            Box::new(RuleBasedAdvisor),
            "default, as configs/providers/rule-based.toml".into(),
        ),
    };
    let protocol = Protocol::load(&a.protocol)?;
    let evaluator = ProtocolEvaluator::from_protocol(&protocol)?;
    let (model, curve) = a.machine.load()?;
    let patient = load_patient(a)?;
    let pid = patient.id.clone();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let t = Instant::now();
    out!(
        "planning {pid} with {} and advisor {} ({})",
        a.protocol.display(),
        advisor.name(),
        provider_text
    );
    let mut tps = NativeTps::open(
        patient,
        protocol.clone(),
        &model,
        &curve,
        a.settings.clone(),
    )
    .with_context(|| format!("opening {pid}"))?;
    let opened = t.elapsed().as_secs_f64();
    out!("case opened in {opened:.1} s");
    let transcript_path = a.out.join("transcript.jsonl");
    let mut transcript = TranscriptWriter::create(&transcript_path)
        .with_context(|| format!("creating {}", transcript_path.display()))?;
    let selection = match a.selection.as_str() {
        "fixed" => Selection::Fixed,
        "nearest" => Selection::Nearest,
        other => bail!("--selection {other:?}: fixed or nearest"),
    };
    let examples = match &a.examples {
        Some(path) => planner::examples::load(path).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let settings = PlannerSettings {
        guard: GuardSettings {
            policy,
            ..Default::default()
        },
        examples,
        n_examples: a.n_examples,
        selection,
    };
    let outcome = plan(
        &mut tps,
        advisor.as_ref(),
        &protocol,
        &pid,
        &settings,
        Some(&mut transcript),
        |p| {
            out!(
                "iteration {:>2}/{}: PTV D{} {:.0} cGy, {} OAR objective(s) out of range, advisor {:.2} s, TPS {:.1} s",
                p.report.iteration,
                p.max_iterations,
                protocol.prescription.volume_percent,
                p.report.coverage_cgy,
                p.out_of_range,
                p.advisor_s,
                p.tps_s
            )
        },
    )?;
    let last = outcome.reports.last().expect("at least one report");
    out!(
        "{:?} after {} iterations; normalized by {:.4}; {:.1} MU per fraction; TPS {:.1} s, advisor {:.2} s",
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
    let (metrics, grid_factor) = write_outputs(&tps, &protocol, &evaluator, &outcome, &a.out)?;
    let total_s = t.elapsed().as_secs_f64();
    out!("total {total_s:.1} s");
    Ok(PlanRecord {
        criteria_met: outcome.reason == planner::TerminationReason::CriteriaMet,
        iterations: last.iteration,
        normalization: outcome.normalization * grid_factor,
        tps_s: outcome.tps_s,
        advisor_s: outcome.advisor_s,
        total_s,
        fallbacks: outcome.fallbacks,
        advisor_failures: outcome.advisor_failures,
        violations: outcome.violations.values().sum(),
        metrics,
    })
}

/// Columns of `plans.csv` before the protocol's metrics.
const STUDY_COLUMNS: [&str; 9] = [
    "criteria met",
    "iterations",
    "normalization",
    "TPS s",
    "advisor s",
    "total s",
    "fallbacks",
    "advisor failures",
    "guard violations",
];

/// Plans several cohort patients (`list`), each into `<out>/pNN`, resuming from `plans.csv`.
fn run_study(a: &PlanArgs, list: &str) -> Result<()> {
    let cohort = a
        .cohort
        .as_ref()
        .context("--patients needs --cohort (a study plans cohort patients)")?;
    if a.patient.is_some() {
        bail!("give either --patient N or --patients LIST, not both");
    }
    let spec = CohortSpec::load(cohort)?;
    let ids = select_ids(Some(list), Vec::new(), &spec, cohort)?;
    let protocol = Protocol::load(&a.protocol)?;
    let evaluator = ProtocolEvaluator::from_protocol(&protocol)?;
    let reference = match &a.reference {
        Some(path) => ReferenceTable::load(path)?,
        None => ReferenceTable {
            source: "no reference (--reference)".into(),
            entries: Vec::new(),
        },
    };
    let metrics: Vec<_> = evaluator.metrics().cloned().collect();
    let mut header = vec!["patient".to_string()];
    header.extend(STUDY_COLUMNS.map(String::from));
    header.extend(metrics.iter().map(|m| m.to_string()));
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let csv_path = a.out.join("plans.csv");
    let mut rows = PatientRows::open(&csv_path, &header)?;
    let todo = rows.pending(&ids);
    out!(
        "study of {} patients of {}: {} already in {}, {} to plan",
        ids.len(),
        spec.name,
        ids.len() - todo.len(),
        csv_path.display(),
        todo.len()
    );
    let started = Instant::now();
    for (n, &id) in todo.iter().enumerate() {
        out!("[{}/{}] patient {id}", n + 1, todo.len());
        let args = PlanArgs {
            patient: Some(id),
            patients: None,
            out: a.out.join(format!("p{id:02}")),
            ..a.clone()
        };
        let r = run_one(&args)?;
        let mut row = vec![
            f64::from(u8::from(r.criteria_met)),
            f64::from(r.iterations),
            r.normalization,
            r.tps_s,
            r.advisor_s,
            r.total_s,
            f64::from(r.fallbacks),
            f64::from(r.advisor_failures),
            f64::from(r.violations),
        ];
        row.extend(r.metrics.iter().map(|v| v.value.unwrap_or(f64::NAN)));
        rows.append(id, row)?;
        let per = started.elapsed().as_secs_f64() / (n + 1) as f64;
        out!(
            "[{}/{}] patient {id}: {} after {} iterations; about {:.0} s left",
            n + 1,
            todo.len(),
            if r.criteria_met {
                "criteria met"
            } else {
                "iteration cap"
            },
            r.iterations,
            per * (todo.len() - n - 1) as f64
        );
    }
    let column = |k: usize| rows.column(&ids, k);
    let met: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|i| rows.done[i][0] > 0.5)
        .collect();
    let missed: Vec<String> = ids
        .iter()
        .filter(|i| !met.contains(i))
        .map(|i| format!("p{i:02}"))
        .collect();
    let stats = |v: &[f64]| -> Result<String> {
        let (m, sd) = evaluation::stats::mean_std(v)?;
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(format!("{m:.1} ± {sd:.1} (range {lo:.1}-{hi:.1})"))
    };
    let advisor = match &a.provider {
        Some(p) => p.display().to_string(),
        None => "rule-based physicist".into(),
    };
    let mut md = format!(
        "# Study: {} patients of {} with {}\n\nprotocol {}, advisor {}, guard {}\n\n\
         - criteria met: {} of {}{}\n\
         - iterations (optimizations): {}\n\
         - TPS time per plan: {} s; advisor time per plan: {} s; whole plan with outputs: {} s\n\
         - guard: {} violations, {} fallbacks, {} advisor failures in all\n\n",
        ids.len(),
        spec.name,
        protocol.site,
        a.protocol.display(),
        advisor,
        a.guard,
        met.len(),
        ids.len(),
        if missed.is_empty() {
            String::new()
        } else {
            format!(" (not met: {})", missed.join(", "))
        },
        stats(&column(1))?,
        stats(&column(3))?,
        stats(&column(4))?,
        stats(&column(5))?,
        column(8).iter().sum::<f64>(),
        column(6).iter().sum::<f64>(),
        column(7).iter().sum::<f64>(),
    );
    md += &rows.comparison(
        &ids,
        &metrics,
        STUDY_COLUMNS.len(),
        &reference,
        &format!("native TPS, {advisor} (n = {})", ids.len()),
    )?;
    let md_path = a.out.join("study.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    outn!("{md}");
    out!("wrote {} and {}", rows.path().display(), md_path.display());
    Ok(())
}

fn write_outputs(
    tps: &NativeTps<'_>,
    protocol: &Protocol,
    evaluator: &ProtocolEvaluator,
    outcome: &planner::PlanOutcome,
    dir: &Path,
) -> Result<(Vec<evaluation::MetricValue>, f64)> {
    let write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    let last = outcome.reports.last().expect("at least one report");
    let mut dose = tps.dose()?;
    let p = tps.patient();
    let grid_factor = normalize_on_grid(p, protocol, &mut dose)?;
    let mu = outcome.plan.mu_per_fraction * grid_factor;
    out!(
        "normalized on the CT grid: x{grid_factor:.4} (D{} = prescription as evaluated); {mu:.1} MU per fraction",
        protocol.prescription.volume_percent
    );
    write(
        "report.md",
        &format!(
            "{}\n\nended: {:?}; normalization {:.4} (TPS) x {:.4} (CT grid); {:.1} MU per fraction\n",
            report_table(last),
            outcome.reason,
            outcome.normalization,
            grid_factor,
            mu
        ),
    )?;
    tps_core::nrrd::write_f32(&dir.join("dose.nrrd"), p.grid(), &dose)?;
    let values = evaluator.evaluate(&PlanDose {
        patient: p,
        dose_cgy: &dose,
        mu_per_fraction: Some(mu),
    })?;
    outn!("{}", metrics_text(&values));
    write("metrics.csv", &metrics_csv(&values))?;
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
    Ok((values, grid_factor))
}

/// `autoplan examples`: plans the given (default: training) patients of a cohort with the
/// rule-based physicist and collects every goal-changing iteration as a few-shot example.
pub fn run_examples(template: &PlanArgs, patients: Option<&str>, out_file: &Path) -> Result<()> {
    let cohort = template
        .cohort
        .as_ref()
        .context("--cohort is required for examples")?;
    let spec = CohortSpec::load(cohort)?;
    let ids = select_ids(patients, spec.training.clone(), &spec, cohort)?;
    let dir = out_file.with_extension("plans");
    let mut pool = Vec::new();
    for id in ids {
        let out = dir.join(format!("p{id:02}"));
        let args = PlanArgs {
            cohort: Some(cohort.clone()),
            patient: Some(id),
            patient_dir: None,
            examples: None,
            patients: None,
            out: out.clone(),
            ..template.clone()
        };
        run_one(&args)?;
        let events =
            planner::transcript::read(&out.join("transcript.jsonl")).map_err(anyhow::Error::msg)?;
        pool.extend(planner::examples::from_transcript(&events));
    }
    planner::examples::save(out_file, &pool).map_err(anyhow::Error::msg)?;
    out!(
        "wrote {} examples to {} (plans in {})",
        pool.len(),
        out_file.display(),
        dir.display()
    );
    Ok(())
}
