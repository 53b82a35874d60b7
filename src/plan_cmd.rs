//! `autoplan plan`: the virtual-physicist loop on one patient, with a progress line per
//! iteration, and the plan's dose, transcript, metric table, report and pictures on disk.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
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

use crate::commands::{isodose_pngs, metrics_csv, metrics_text, report_table, write_dvh};

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
    pub out: PathBuf,
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

/// Runs the plan.
pub fn run(a: &PlanArgs) -> Result<()> {
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
    write_outputs(&tps, &protocol, &evaluator, &outcome, &a.out)?;
    out!("total {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn write_outputs(
    tps: &NativeTps<'_>,
    protocol: &Protocol,
    evaluator: &ProtocolEvaluator,
    outcome: &planner::PlanOutcome,
    dir: &Path,
) -> Result<()> {
    let write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    let last = outcome.reports.last().expect("at least one report");
    write(
        "report.md",
        &format!(
            "{}\n\nended: {:?}; normalization {:.4}; {:.1} MU per fraction\n",
            report_table(last),
            outcome.reason,
            outcome.normalization,
            outcome.plan.mu_per_fraction
        ),
    )?;
    let dose = tps.dose()?;
    let p = tps.patient();
    tps_core::nrrd::write_f32(&dir.join("dose.nrrd"), p.grid(), &dose)?;
    let values = evaluator.evaluate(&PlanDose {
        patient: p,
        dose_cgy: &dose,
        mu_per_fraction: Some(outcome.plan.mu_per_fraction),
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
    Ok(())
}

/// `autoplan examples`: plans the given (default: training) patients of a cohort with the
/// rule-based physicist and collects every goal-changing iteration as a few-shot example.
pub fn run_examples(template: &PlanArgs, patients: Option<&str>, out_file: &Path) -> Result<()> {
    let cohort = template
        .cohort
        .as_ref()
        .context("--cohort is required for examples")?;
    let spec = CohortSpec::load(cohort)?;
    let ids = match patients {
        Some(t) => crate::calibrate::parse_ids(t)?,
        None => spec.training.clone(),
    };
    let dir = out_file.with_extension("plans");
    let mut pool = Vec::new();
    for id in ids {
        let out = dir.join(format!("p{id:02}"));
        let args = PlanArgs {
            cohort: Some(cohort.clone()),
            patient: Some(id),
            patient_dir: None,
            examples: None,
            out: out.clone(),
            ..template.clone()
        };
        run(&args)?;
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
