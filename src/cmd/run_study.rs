//! `autoplan study FILE --out DIR`: the arms of a study file run on its patients, one
//! directory per arm and patient, resumable, in parallel; then the study's tables.
//!
//! ```text
//! DIR/
//!   report.md                  links the tables, lists skipped arms and failed cases
//!   table3.md, table3.csv      mean ± std per arm, Wilcoxon p against the reference arm,
//!                              the published values beside
//!   arms.md, arms.csv          per arm: cases done, criteria met, iterations, times,
//!                              guard violations, fallbacks, advisor failures
//!   <arm>/pNN/                 the plan's outputs (as `autoplan plan` writes them)
//!   <arm>/pNN/case.json        written last: the case is finished and never redone
//!   <arm>/pNN/failed.json      the error of a case that failed (redone by the next run)
//! ```
//!
//! A case directory without `case.json` is an interrupted case: the next run removes and redoes
//! it. An arm whose provider cannot run here (no key in its environment variable, no server
//! at its endpoint, an advisor this build lacks) is skipped with the reason in every output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use evaluation::ProtocolEvaluator;
use evaluation::reference::ReferenceTable;
use evaluation::tables::study::PlanNumbers;
use evaluation::tables::{MethodValues, MetricColumn, summary, summary_csv, summary_markdown};
use llm_providers::config::ProviderConfig;
use phantoms::cohort::CohortSpec;
use serde::{Deserialize, Serialize};
use tps_api::Protocol;

use super::plan::{self, run_one};
use crate::args::{BeamArgs, MachineArgs};
use crate::cohort_run::select_ids;
use crate::interrupt::Interrupted;
use crate::lock::OutputLock;
use crate::study_file::{Arm, ExampleSource, StudyFile};

/// Run a study file's arms on its patients (one directory per arm and patient; an interrupted
/// run resumes, finished cases are never redone) and write its tables and report.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Study file (configs/studies/*.toml).
    pub file: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Cases planned at once (each plan also uses every core for its dose computation).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Patients instead of the study file's (`6-35`, `7,9`, `test`, `training`).
    #[arg(long)]
    pub patients: Option<String>,
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub beams: BeamArgs,
    /// Submit the cases to Slurm instead of planning here: a job array with one task per case
    /// (the same directories, on a directory every node sees) and a job after it that builds
    /// the tables (`--collect`).
    #[arg(long, conflicts_with_all = ["collect", "case"])]
    pub slurm: bool,
    /// sbatch options for every job, e.g. "--partition=short --time=01:00:00".
    #[arg(long, requires = "slurm", allow_hyphen_values = true)]
    pub sbatch_options: Option<String>,
    /// Build the tables and the report from the finished cases, planning nothing.
    #[arg(long, conflicts_with = "case")]
    pub collect: bool,
    /// Plan case K of OUT/slurm/cases.txt and record it (what each task of the array runs).
    #[arg(long, hide = true)]
    pub case: Option<usize>,
}

/// What a finished case left: `case.json`.
#[derive(Debug, Serialize, Deserialize)]
struct CaseRecord {
    arm: String,
    patient: usize,
    /// The loop's numbers in the order of `evaluation::tables::study::COLUMNS`.
    numbers: Vec<f64>,
    /// The protocol's metrics: label and value (`None` where the plan lacks it).
    metrics: Vec<(String, Option<f64>)>,
    failed_goals: Vec<String>,
    /// The deliverable plan's metrics (studies with `deliverable = true`).
    #[serde(default)]
    deliverable_metrics: Vec<(String, Option<f64>)>,
    /// Simulated QA of the deliverable plan: gamma criteria and pass rate, percent.
    #[serde(default)]
    gamma: Vec<(String, f64)>,
}

impl CaseRecord {
    /// The metrics a study tabulates: the deliverable plan's in a deliverable study.
    fn tabulated(&self, deliverable: bool) -> &[(String, Option<f64>)] {
        if deliverable {
            &self.deliverable_metrics
        } else {
            &self.metrics
        }
    }
}

/// What a failed case left: `failed.json`.
#[derive(Debug, Serialize, Deserialize)]
struct CaseFailure {
    arm: String,
    patient: usize,
    error: String,
}

const DONE: &str = "case.json";
/// The arms skipped and why, as the run that planned (or submitted) the cases found them.
const SKIPPED: &str = "skipped-arms.json";
/// The cases of a Slurm submission, one `arm<TAB>patient` per line; task K plans line K.
const CASES: &str = "slurm/cases.txt";
const FAILED: &str = "failed.json";

fn case_dir(out: &Path, arm: &str, id: usize) -> PathBuf {
    out.join(arm).join(format!("p{id:02}"))
}

/// Why an arm cannot run here, if it cannot (see `llm_providers::config::unavailable`).
fn unavailable(arm: &Arm) -> Result<Option<String>> {
    let Some(path) = &arm.provider else {
        return Ok(None);
    };
    let config = ProviderConfig::load(path)?;
    Ok(llm_providers::config::unavailable(
        &config,
        std::time::Duration::from_secs(2),
    ))
}

/// Where a study keeps the example pool it builds from the training patients.
fn training_pool(out: &Path) -> PathBuf {
    out.join("examples").join("training.json")
}

/// Builds the example pool of the arms with `examples = "training"` unless an earlier run
/// left it: the training patients (or the study's `example-patients`) planned with the
/// rule-based physicist under the study's beams and machine, as `autoplan examples` does.
/// The pool file is written last, so a run stopped while building it builds it again.
fn ensure_training_pool(study: &StudyFile, a: &Args, arms: &[&Arm]) -> Result<()> {
    if !arms
        .iter()
        .any(|arm| arm.examples == Some(ExampleSource::Training))
    {
        return Ok(());
    }
    let pool = training_pool(&a.out);
    if pool.is_file() {
        out!("example pool {}: kept from an earlier run", pool.display());
        return Ok(());
    }
    out!(
        "building the example pool {} from the {} patients with the rule-based physicist",
        pool.display(),
        study.example_patients.as_deref().unwrap_or("training")
    );
    super::examples::run(&super::examples::Args {
        cohort: study.cohort.clone(),
        protocol: study.protocol.clone(),
        patients: study.example_patients.clone(),
        machine: a.machine.clone(),
        beams: a.beams.clone(),
        out: pool,
    })
}

/// The `plan` arguments of one case.
fn plan_args(s: &StudyFile, a: &Args, arm: &Arm, id: usize) -> plan::Args {
    plan::Args {
        cohort: Some(s.cohort.clone()),
        patient: Some(id),
        patient_dir: None,
        protocol: s.protocol.clone(),
        provider: arm.provider.clone(),
        tps: arm.tps.clone(),
        machine: a.machine.clone(),
        guard: arm.guard,
        beams: a.beams.clone(),
        examples: arm.examples.as_ref().map(|e| match e {
            ExampleSource::File(p) => p.clone(),
            ExampleSource::Training => training_pool(&a.out),
        }),
        n_examples: arm.n_examples,
        selection: arm.selection,
        max_advisor_failures: None,
        // A study records the fallback's share per arm instead of stopping on it.
        allow_fallback: true,
        patients: None,
        reference: None,
        deliverable: s.deliverable,
        dose_angle_step: s.dose_angle_step,
        dicom: false,
        out: case_dir(&a.out, &arm.name, id),
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: damaged", path.display()))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("records serialize");
    tps_api::files::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Runs `autoplan study`.
pub fn run(a: &Args) -> Result<()> {
    let study = StudyFile::load(&a.file)?;
    let spec = CohortSpec::load(&study.cohort)?;
    let list = a.patients.as_deref().unwrap_or(&study.patients);
    let ids = select_ids(Some(list), Vec::new(), &spec, &study.cohort)?;
    let protocol = Protocol::load(&study.protocol)?;
    planner::planning_of(&protocol)?;
    let evaluator = ProtocolEvaluator::from_protocol(&protocol)?;
    let published = study
        .published
        .as_deref()
        .map(ReferenceTable::load)
        .transpose()?;
    if let Some(k) = a.case {
        return run_task(&study, a, k);
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let _lock = OutputLock::acquire(&a.out)?;
    let skipped_path = a.out.join(SKIPPED);
    let skipped: Vec<(String, String)> = if a.collect && skipped_path.is_file() {
        // As the run that planned the cases found them.
        read_json(&skipped_path)?
    } else {
        let mut skipped = Vec::new();
        for arm in &study.arms {
            if let Some(why) = unavailable(arm)? {
                out!("arm {}: skipped: {why}", arm.name);
                skipped.push((arm.name.clone(), why));
            }
        }
        write_json(&skipped_path, &skipped)?;
        skipped
    };
    let arms: Vec<&Arm> = study
        .arms
        .iter()
        .filter(|arm| !skipped.iter().any(|(n, _)| *n == arm.name))
        .collect();
    if arms.first().map(|a| &a.name) != Some(&study.arms[0].name) {
        bail!(
            "the reference arm {} cannot run here ({}): the paired tests need it",
            study.arms[0].name,
            skipped[0].1
        );
    }
    // Finished cases are kept; a directory without its marker is an interrupted case.
    let mut todo = Vec::new();
    for arm in &arms {
        for &id in &ids {
            let dir = case_dir(&a.out, &arm.name, id);
            if dir.join(DONE).is_file() {
                continue;
            }
            if !a.collect && dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing the unfinished case {}", dir.display()))?;
            }
            todo.push((*arm, id));
        }
    }
    let total = arms.len() * ids.len();
    out!(
        "study {} ({}): {} arms x {} patients, {} cases finished, {} to plan with {} job(s)",
        study.name,
        a.file.display(),
        arms.len(),
        ids.len(),
        total - todo.len(),
        todo.len(),
        a.jobs
    );
    if !a.collect && !todo.is_empty() {
        ensure_training_pool(&study, a, &arms)?;
    }
    if a.slurm {
        return submit(&study, a, &todo);
    }
    if !a.collect {
        run_cases(&study, a, &todo)?;
    }
    let report = tables(
        &study,
        a,
        &arms,
        &ids,
        &skipped,
        &evaluator,
        published.as_ref(),
    )?;
    out!("wrote {}", report.display());
    Ok(())
}

/// Simulated QA of a case's deliverable plan with the documented delivery errors (seed 1):
/// the gamma pass rates at 3%/3 mm and 2%/2 mm (its outputs in `qa/`).
fn simulated_qa(
    study: &StudyFile,
    a: &Args,
    plan_dir: &Path,
    id: usize,
) -> Result<Vec<(String, f64)>> {
    let rows = super::qa::simulate(&super::qa::Args {
        plan_dir: plan_dir.to_path_buf(),
        patient: crate::args::PatientSource {
            cohort: Some(study.cohort.clone()),
            patient: Some(id),
            patient_dir: None,
        },
        protocol: study.protocol.clone(),
        machine: a.machine.clone(),
        beams: a.beams.clone(),
        dose_angle_step: None,
        errors: super::qa::DeliveryErrors::documented(),
        seed: 1,
        out: Some(plan_dir.join("qa")),
    })?;
    Ok(rows
        .iter()
        .map(|r| (r.criteria.label(), r.pass_rate_percent))
        .collect())
}

/// How one case ended.
enum CaseOutcome {
    /// Planned and recorded (`case.json`); the line says how.
    Done(String),
    /// Failed; its error is in `failed.json`.
    Failed(String),
}

/// Plans one case and records it: `case.json` when it finished, `failed.json` with the error
/// when it did not. Errs only when interrupted.
fn run_case(study: &StudyFile, a: &Args, arm: &Arm, id: usize) -> Result<CaseOutcome> {
    let args = plan_args(study, a, arm, id);
    let result = run_one(&args).and_then(|r| {
        let gamma = if study.deliverable {
            simulated_qa(study, a, &args.out, id)?
        } else {
            Vec::new()
        };
        let record = CaseRecord {
            arm: arm.name.clone(),
            patient: id,
            numbers: r.numbers.to_row(),
            metrics: r
                .metrics
                .iter()
                .map(|v| (v.metric.to_string(), v.value))
                .collect(),
            failed_goals: r.failed_goals.clone(),
            deliverable_metrics: r
                .deliverable
                .iter()
                .flatten()
                .map(|v| (v.metric.to_string(), v.value))
                .collect(),
            gamma,
        };
        write_json(&args.out.join(DONE), &record)?;
        Ok(format!(
            "{} p{id:02}: {} after {} iterations",
            arm.name,
            if r.numbers.criteria_met {
                "criteria met"
            } else {
                "iteration cap"
            },
            r.numbers.iterations
        ))
    });
    match result {
        Ok(line) => Ok(CaseOutcome::Done(line)),
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => Err(e),
        Err(e) => {
            let text = format!("{e:#}");
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?;
            write_json(
                &args.out.join(FAILED),
                &CaseFailure {
                    arm: arm.name.clone(),
                    patient: id,
                    error: text.clone(),
                },
            )?;
            Ok(CaseOutcome::Failed(format!(
                "{} p{id:02}: FAILED: {text}",
                arm.name
            )))
        }
    }
}

/// Plans `todo` with `a.jobs` workers, a progress bar with the ETA on stderr. A failed case is
/// recorded and the others go on; an interruption stops every worker after its case.
fn run_cases(study: &StudyFile, a: &Args, todo: &[(&Arm, usize)]) -> Result<()> {
    if todo.is_empty() {
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(todo.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} cases, ETA {eta} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failures = AtomicUsize::new(0);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..usize::from(a.jobs).min(todo.len()) {
            scope.spawn(|| {
                loop {
                    if stop.load(Ordering::SeqCst) || crate::interrupt::interrupted() {
                        return;
                    }
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&(arm, id)) = todo.get(n) else {
                        return;
                    };
                    let line = match run_case(study, a, arm, id) {
                        Ok(CaseOutcome::Done(line)) => line,
                        Ok(CaseOutcome::Failed(line)) => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            line
                        }
                        Err(e) => {
                            if e.downcast_ref::<Interrupted>().is_none() {
                                errors.lock().unwrap().push(format!("{e:#}"));
                            }
                            stop.store(true, Ordering::SeqCst);
                            return;
                        }
                    };
                    bar.inc(1);
                    // A hidden bar (output not a terminal) prints nothing: the line goes to stdout.
                    if bar.is_hidden() {
                        out!("{line}");
                    } else {
                        bar.println(line);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = errors.into_inner().unwrap().into_iter().next() {
        bail!("recording a case: {e}");
    }
    if stop.load(Ordering::SeqCst) || crate::interrupt::interrupted() {
        return Err(Interrupted.into());
    }
    let failed = failures.into_inner();
    out!(
        "{} cases planned in {:.0} s, {} failed",
        todo.len() - failed,
        started.elapsed().as_secs_f64(),
        failed
    );
    Ok(())
}

/// Per arm and patient, the finished case, if any.
fn finished(
    out: &Path,
    arms: &[&Arm],
    ids: &[usize],
) -> Result<BTreeMap<(String, usize), CaseRecord>> {
    let mut done = BTreeMap::new();
    for arm in arms {
        for &id in ids {
            let p = case_dir(out, &arm.name, id).join(DONE);
            if p.is_file() {
                done.insert((arm.name.clone(), id), read_json::<CaseRecord>(&p)?);
            }
        }
    }
    Ok(done)
}

/// Writes table3, arms and report; returns the report's path.
fn tables(
    study: &StudyFile,
    a: &Args,
    arms: &[&Arm],
    ids: &[usize],
    skipped: &[(String, String)],
    evaluator: &ProtocolEvaluator,
    published: Option<&ReferenceTable>,
) -> Result<PathBuf> {
    let done = finished(&a.out, arms, ids)?;
    let metrics: Vec<_> = evaluator.metrics().cloned().collect();
    // Arms with no finished case (every case failed) are left out of the paired tables, not
    // allowed to empty them.
    let (tab, empty): (Vec<&Arm>, Vec<&Arm>) = arms.iter().partition(|arm| {
        ids.iter()
            .any(|&id| done.contains_key(&(arm.name.clone(), id)))
    });
    let reference_done = tab.first().is_some_and(|t| t.name == arms[0].name);
    // Paired tests: the patients finished in every arm, with every metric.
    let paired: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|&id| {
            reference_done
                && tab.iter().all(|arm| {
                    done.get(&(arm.name.clone(), id)).is_some_and(|r| {
                        metrics.iter().all(|m| {
                            r.tabulated(study.deliverable)
                                .iter()
                                .any(|(l, v)| *l == m.to_string() && v.is_some_and(f64::is_finite))
                        })
                    })
                })
        })
        .collect();
    let value = |arm: &str, id: usize, label: &str| -> f64 {
        done[&(arm.to_string(), id)]
            .tabulated(study.deliverable)
            .iter()
            .find(|(l, _)| l == label)
            .and_then(|(_, v)| *v)
            .unwrap_or(f64::NAN)
    };
    let columns: Vec<MetricColumn> = metrics.iter().map(MetricColumn::for_metric).collect();
    let methods: Vec<MethodValues> = tab
        .iter()
        .map(|arm| MethodValues {
            name: arm.name.clone(),
            values: metrics
                .iter()
                .map(|m| {
                    paired
                        .iter()
                        .map(|&id| value(&arm.name, id, &m.to_string()))
                        .collect()
                })
                .collect(),
        })
        .collect();
    let mut t3 = format!(
        "# Table 3: dosimetry per arm\n\n{}{} of {} patients finished in every arm (the paired \
         sample). Mean ± std per arm; p: two-sided Wilcoxon signed-rank test against **{}** \
         ({}).\n\n",
        if study.deliverable {
            "The deliverable plans (arcs of control points, their dose from the apertures). "
        } else {
            "The fluence plans. "
        },
        paired.len(),
        ids.len(),
        arms[0].name,
        arms[0].label
    );
    if !empty.is_empty() {
        t3 += &format!(
            "Left out, no finished case: {}.\n\n",
            empty
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if paired.len() >= 2 {
        let rows = summary(&columns, &methods)?;
        let mut md = summary_markdown(&rows, &methods);
        if let Some(p) = published {
            md = with_published(&md, &columns, &metrics, p);
            t3 += &format!("Published: {}.\n\n", p.source);
        }
        t3 += &md;
        crate::output::write_text(&a.out.join("table3.csv"), &summary_csv(&rows, &methods)?)?;
    } else {
        t3 += "Too few patients finished in every arm for the table (at least 2).\n";
    }
    crate::output::write_text(&a.out.join("table3.md"), &t3)?;
    let mut links = vec![
        "- [Table 3: dosimetry per arm](table3.md)".to_string()
            + if paired.len() >= 2 {
                " ([CSV](table3.csv))"
            } else {
                ""
            },
    ];
    links.push(table4(study, a, arms, ids, &done)?);
    links.extend(table5(study, a, &columns, &methods, paired.len())?);
    if paired.len() >= 2 {
        links.extend(figures(
            study, a, &tab, &paired, &columns, &metrics, &methods,
        )?);
    }

    // Per-arm loop numbers.
    let mut arms_md = String::from(
        "# Arms\n\n| arm | label | cases done | criteria met | iterations mean ± std | plan s mean | advisor s per advice | guard violations | fallbacks | advisor failures | failed cases |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut arms_csv = String::from(
        "arm,cases_done,criteria_met,iterations_mean,iterations_std,plan_s_mean,advisor_s_per_advice,guard_violations,fallbacks,advisor_failures,failed_cases\n",
    );
    let mut failed_cases = Vec::new();
    for arm in arms {
        let numbers: Vec<PlanNumbers> = ids
            .iter()
            .filter_map(|&id| done.get(&(arm.name.clone(), id)))
            .map(|r| PlanNumbers::from_row(&r.numbers))
            .collect();
        for &id in ids {
            let f = case_dir(&a.out, &arm.name, id).join(FAILED);
            if f.is_file() {
                let failure: CaseFailure = read_json(&f)?;
                failed_cases.push(format!("{} p{id:02}: {}", arm.name, failure.error));
            }
        }
        let failed = failed_cases
            .iter()
            .filter(|l| l.starts_with(&format!("{} ", arm.name)))
            .count();
        let its: Vec<f64> = numbers.iter().map(|n| f64::from(n.iterations)).collect();
        let (im, is) = evaluation::stats::mean_std(&its).unwrap_or((f64::NAN, f64::NAN));
        let plan_s = numbers.iter().map(|n| n.total_s).sum::<f64>() / numbers.len().max(1) as f64;
        let advice: u32 = numbers.iter().map(plan::advice_steps).sum();
        let advisor_s = numbers.iter().map(|n| n.advisor_s).sum::<f64>() / f64::from(advice.max(1));
        let sum = |f: fn(&PlanNumbers) -> u32| numbers.iter().map(f).sum::<u32>();
        let met = numbers.iter().filter(|n| n.criteria_met).count();
        arms_md += &format!(
            "| {} | {} | {} | {met} | {im:.1} ± {is:.1} | {plan_s:.1} | {advisor_s:.2} | {} | {} | {} | {failed} |\n",
            arm.name,
            arm.label,
            numbers.len(),
            sum(|n| n.violations),
            sum(|n| n.fallbacks),
            sum(|n| n.advisor_failures),
        );
        arms_csv += &format!(
            "{},{},{met},{im},{is},{plan_s},{advisor_s},{},{},{},{failed}\n",
            arm.name,
            numbers.len(),
            sum(|n| n.violations),
            sum(|n| n.fallbacks),
            sum(|n| n.advisor_failures),
        );
    }
    crate::output::write_text(&a.out.join("arms.md"), &arms_md)?;
    crate::output::write_text(&a.out.join("arms.csv"), &arms_csv)?;

    links.push(
        "- [Arms: criteria met, iterations, time, guard violations, fallbacks](arms.md) \
         ([CSV](arms.csv))"
            .into(),
    );
    let mut report = format!(
        "# Study {}\n\n{}\n\nStudy file {}; cohort {}, protocol {}, patients {} ({}).\n\n{}\n\n",
        study.name,
        study.description.as_deref().unwrap_or(""),
        a.file.display(),
        study.cohort.display(),
        study.protocol.display(),
        a.patients.as_deref().unwrap_or(&study.patients),
        ids.len(),
        links.join("\n")
    );
    report += &format!(
        "The reference arm is **{}**: {}. The study's manual plans cannot be rerun; where a \
         published column is shown, it is the study's, set beside for comparison only.\n\n",
        arms[0].name, arms[0].label
    );
    if !skipped.is_empty() {
        report += "## Skipped arms\n\n";
        for (name, why) in skipped {
            report += &format!("- **{name}**: {why}\n");
        }
        report += "\n";
    }
    if !failed_cases.is_empty() {
        report += "## Failed cases\n\nRedone by the next run of the same command.\n\n";
        for l in &failed_cases {
            report += &format!("- {l}\n");
        }
        report += "\n";
    }
    let path = a.out.join("report.md");
    crate::output::write_text(&path, &report)?;
    Ok(path)
}

/// The Table-3 Markdown with the published mean ± std as a last column.
fn with_published(
    md: &str,
    columns: &[MetricColumn],
    metrics: &[evaluation::Metric],
    p: &ReferenceTable,
) -> String {
    let mut out = String::new();
    for (n, line) in md.lines().enumerate() {
        out += line;
        match n {
            0 => out += " published mean ± std |",
            1 => out += "---:|",
            k => {
                let i = k - 2;
                out += &match p.get(&metrics[i]) {
                    Some(e) => {
                        let d = columns[i].decimals;
                        format!(" {:.d$} ± {:.d$} |", e.mean, e.std)
                    }
                    None => " - |".into(),
                };
            }
        }
        out += "\n";
    }
    out
}

/// Table 5 (relative differences between the two arms the study file names), when both ran;
/// returns the report's link lines.
fn table5(
    study: &StudyFile,
    a: &Args,
    columns: &[MetricColumn],
    methods: &[MethodValues],
    paired: usize,
) -> Result<Vec<String>> {
    let Some([x, y]) = &study.table5 else {
        return Ok(vec![
            "- Table 5: name two arms in `study.table5` of the study file".into(),
        ]);
    };
    let find = |n: &str| methods.iter().find(|m| m.name == n);
    let (Some(mx), Some(my)) = (find(x), find(y)) else {
        return Ok(vec![format!(
            "- Table 5 ({x} against {y}): not made, an arm was skipped"
        )]);
    };
    if paired < 2 {
        return Ok(vec![format!(
            "- Table 5 ({x} against {y}): too few patients"
        )]);
    }
    let rows = evaluation::tables::pairwise(columns, mx, my)?;
    let md = format!(
        "# Table 5: {y} against {x}\n\nOver the {paired} patients finished in every arm: mean \
         ± std of each, the mean over patients of ({y} - {x}) / |{x}|, and the two-sided \
         Wilcoxon signed-rank p.\n\n{}",
        evaluation::tables::pairwise_markdown(&rows, x, y)
    );
    crate::output::write_text(&a.out.join("table5.md"), &md)?;
    Ok(vec![format!("- [Table 5: {y} against {x}](table5.md)")])
}

/// A file name for a metric label.
fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Figures 2 to 5 of the study's layout; returns the report's link lines.
fn figures(
    study: &StudyFile,
    a: &Args,
    arms: &[&Arm],
    paired: &[usize],
    columns: &[MetricColumn],
    metrics: &[evaluation::Metric],
    methods: &[MethodValues],
) -> Result<Vec<String>> {
    use evaluation::figures::{DifferencePlot, DvhComparison, MethodBoxPlot, save};
    let dir = a.out.join("figures");
    let mut links = Vec::new();
    // Figure 2: one box plot per metric, every arm.
    let mut fig2 = Vec::new();
    for (c, col) in columns.iter().enumerate() {
        let fig = MethodBoxPlot {
            title: col.label.clone(),
            y_label: if col.unit.is_empty() {
                col.label.clone()
            } else {
                format!("{} ({})", col.label, col.unit)
            },
            methods: methods
                .iter()
                .map(|m| {
                    (
                        m.name.clone(),
                        m.values[c].iter().map(|v| v * col.scale).collect(),
                    )
                })
                .collect(),
        };
        let stem = dir.join(format!("fig2-{}", slug(&col.label)));
        save(&fig, &stem, (700, 500))?;
        fig2.push(format!(
            "[{}](figures/fig2-{}.png)",
            col.label,
            slug(&col.label)
        ));
    }
    links.push(format!(
        "- Figure 2, box plots per metric: {}",
        fig2.join(", ")
    ));
    // Figure 5: per-patient differences of each arm from the reference, dose metrics.
    let gy: Vec<usize> = (0..columns.len())
        .filter(|&c| columns[c].unit == "Gy")
        .collect();
    let reference = &methods[0];
    let mut fig5 = Vec::new();
    for m in &methods[1..] {
        let fig = DifferencePlot {
            title: format!("{} minus {}", m.name, reference.name),
            y_label: "Difference (Gy)".into(),
            metrics: gy
                .iter()
                .map(|&c| {
                    let d = m.values[c]
                        .iter()
                        .zip(&reference.values[c])
                        .map(|(b, r)| (b - r) * columns[c].scale)
                        .collect();
                    (columns[c].label.clone(), d)
                })
                .collect(),
        };
        save(&fig, &dir.join(format!("fig5-{}", m.name)), (900, 500))?;
        fig5.push(format!("[{}](figures/fig5-{}.png)", m.name, m.name));
    }
    if !fig5.is_empty() {
        links.push(format!(
            "- Figure 5, per-patient differences from {}: {}",
            reference.name,
            fig5.join(", ")
        ));
    }
    // Figures 3 and 4: one patient, every arm: its isodose slices, and its DVHs overlaid
    // on the reference arm's.
    let id = paired[0];
    let fig3: Vec<String> = arms
        .iter()
        .map(|arm| format!("[{}]({}/p{id:02}/isodose-axial.png)", arm.name, arm.name))
        .collect();
    links.push(format!(
        "- Figure 3, isodose slices of p{id:02}: {}",
        fig3.join(", ")
    ));
    if arms.len() > 1 {
        let protocol = Protocol::load(&study.protocol)?;
        let mut patient = CohortSpec::load(&study.cohort)?.generate(id)?;
        patient_model::recipes::build_missing_auxiliary(&protocol, &mut patient)?;
        let mut names: Vec<&str> = Vec::new();
        for m in metrics {
            if let evaluation::Metric::Structure { name, .. } = m
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
        let dvhs = |arm: &str| -> Result<Vec<evaluation::dvh::Dvh>> {
            let path = case_dir(&a.out, arm, id).join("dose.nrrd");
            let dose = super::read_dose(&path)?;
            names
                .iter()
                .map(|n| {
                    let s = patient.require(n, "study", "metrics")?;
                    Ok(evaluation::dvh::Dvh::new(n, dose.cgy(), &s.mask)?)
                })
                .collect()
        };
        let base = dvhs(&arms[0].name)?;
        let mut fig4 = Vec::new();
        for arm in &arms[1..] {
            let other = dvhs(&arm.name)?;
            let fig = DvhComparison {
                title: format!(
                    "p{id:02}: {} (solid) and {} (dashed)",
                    arms[0].name, arm.name
                ),
                plans: (arms[0].name.clone(), Some(arm.name.clone())),
                curves: base.iter().zip(&other).map(|(x, y)| (x, Some(y))).collect(),
            };
            save(&fig, &dir.join(format!("fig4-{}", arm.name)), (900, 600))?;
            fig4.push(format!("[{}](figures/fig4-{}.png)", arm.name, arm.name));
        }
        links.push(format!(
            "- Figure 4, DVHs of p{id:02}, each arm against {}: {}",
            arms[0].name,
            fig4.join(", ")
        ));
    }
    Ok(links)
}

/// Table 4 (simulated QA gamma pass rates per arm) of a deliverable study; the report's link.
fn table4(
    study: &StudyFile,
    a: &Args,
    arms: &[&Arm],
    ids: &[usize],
    done: &BTreeMap<(String, usize), CaseRecord>,
) -> Result<String> {
    if !study.deliverable {
        return Ok(
            "- Table 4 (gamma pass rates): needs deliverable plans; set `deliverable = \
                   true` in the study file"
                .into(),
        );
    }
    let mut md = String::from(
        "# Table 4: simulated QA\n\nGamma pass rates of each deliverable plan's dose \
         recomputed under simulated delivery errors (`autoplan qa` defaults: docs/delivery.md; \
         seed 1) against its planned dose, global gamma, 10 % cutoff. A simulation, not a \
         measurement.\n\n| arm | plans | criteria | pass rate mean ± std (%) | min (%) | plans at least 95 % |\n|---|---:|---|---:|---:|---:|\n",
    );
    for arm in arms {
        let records: Vec<&CaseRecord> = ids
            .iter()
            .filter_map(|&id| done.get(&(arm.name.clone(), id)))
            .collect();
        let mut labels: Vec<&str> = Vec::new();
        for r in &records {
            for (l, _) in &r.gamma {
                if !labels.contains(&l.as_str()) {
                    labels.push(l);
                }
            }
        }
        for l in labels {
            let rates: Vec<f64> = records
                .iter()
                .filter_map(|r| r.gamma.iter().find(|(x, _)| x == l).map(|(_, v)| *v))
                .collect();
            let (m, sd) = evaluation::stats::mean_std(&rates).unwrap_or((f64::NAN, f64::NAN));
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let at_least = rates.iter().filter(|&&v| v >= 95.0).count();
            md += &format!(
                "| {} | {} | {l} | {m:.2} ± {sd:.2} | {min:.2} | {at_least} |\n",
                arm.name,
                rates.len()
            );
        }
    }
    crate::output::write_text(&a.out.join("table4.md"), &md)?;
    Ok("- [Table 4: simulated QA gamma pass rates](table4.md)".into())
}

/// One task of a Slurm array: case `k` of `OUT/slurm/cases.txt`.
fn run_task(study: &StudyFile, a: &Args, k: usize) -> Result<()> {
    let list = a.out.join(CASES);
    let text =
        std::fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
    let line = text
        .lines()
        .nth(k)
        .with_context(|| format!("{}: no case {k}", list.display()))?;
    let (name, id) = line
        .split_once('\t')
        .and_then(|(n, i)| Some((n, i.parse::<usize>().ok()?)))
        .with_context(|| {
            format!(
                "{}: line {k} is not \"arm<TAB>patient\": {line:?}",
                list.display()
            )
        })?;
    let arm = study
        .arms
        .iter()
        .find(|a| a.name == name)
        .with_context(|| {
            format!(
                "{}: line {k}: no arm {name:?} in the study file",
                list.display()
            )
        })?;
    let dir = case_dir(&a.out, name, id);
    if dir.join(DONE).is_file() {
        out!("{name} p{id:02}: already finished");
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the unfinished case {}", dir.display()))?;
    }
    match run_case(study, a, arm, id)? {
        CaseOutcome::Done(line) => {
            out!("{line}");
            Ok(())
        }
        CaseOutcome::Failed(line) => bail!("{line}"),
    }
}

/// A word for a shell script, single-quoted.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Writes the job scripts and submits the array of `todo` and the collecting job after it.
fn submit(study: &StudyFile, a: &Args, todo: &[(&Arm, usize)]) -> Result<()> {
    let out = std::fs::canonicalize(&a.out)?;
    let file = std::fs::canonicalize(&a.file)?;
    let exe = std::env::current_exe().context("finding the autoplan binary")?;
    let cwd = std::env::current_dir()?;
    let slurm = out.join("slurm");
    std::fs::create_dir_all(slurm.join("logs"))?;
    let cases: String = todo
        .iter()
        .map(|(arm, id)| format!("{}\t{id}\n", arm.name))
        .collect();
    tps_api::files::write_atomic(&out.join(CASES), cases.as_bytes())?;
    // The options every task must share with this run.
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut common = vec![
        "--machine".to_string(),
        abs(&a.machine.machine).display().to_string(),
        "--calibration".into(),
        abs(&a.machine.calibration).display().to_string(),
    ];
    if let Some(p) = &a.patients {
        common.extend(["--patients".into(), p.clone()]);
    }
    for (flag, v) in [
        ("--arcs", a.beams.arcs.map(|v| v.to_string())),
        (
            "--beams-per-arc",
            a.beams.beams_per_arc.map(|v| v.to_string()),
        ),
        ("--grid-mm", a.beams.grid_mm.map(|v| v.to_string())),
        ("--bixel-mm", a.beams.bixel_mm.map(|v| v.to_string())),
    ] {
        if let Some(v) = v {
            common.extend([flag.to_string(), v]);
        }
    }
    let command = |extra: &str| {
        let mut words = vec![
            quoted(&exe.display().to_string()),
            "study".into(),
            quoted(&file.display().to_string()),
            "--out".into(),
            quoted(&out.display().to_string()),
        ];
        words.extend(common.iter().map(|w| quoted(w)));
        format!("{} {extra}", words.join(" "))
    };
    let header = |name: &str, log: &str| {
        format!(
            "#!/bin/bash\n# Written by autoplan study --slurm for {}.\n#SBATCH --job-name={name}\n\
             #SBATCH --output={}\n#SBATCH --chdir={}\n",
            file.display(),
            slurm.join("logs").join(log).display(),
            cwd.display()
        )
    };
    let array = format!(
        "{}#SBATCH --array=0-{}\nexec {}\n",
        header(&format!("autoplan-{}", study.name), "case-%a.out"),
        todo.len().saturating_sub(1),
        command("--case \"$SLURM_ARRAY_TASK_ID\"")
    );
    let collect = format!(
        "{}exec {}\n",
        header(&format!("autoplan-{}-tables", study.name), "collect.out"),
        command("--collect")
    );
    crate::output::write_text(&slurm.join("array.sbatch"), &array)?;
    crate::output::write_text(&slurm.join("collect.sbatch"), &collect)?;
    let options: Vec<String> = a
        .sbatch_options
        .as_deref()
        .map(|o| o.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let sbatch = |script: &Path, dependency: Option<&str>| -> Result<String> {
        let mut cmd = std::process::Command::new("sbatch");
        cmd.arg("--parsable").args(&options);
        if let Some(d) = dependency {
            cmd.arg(format!("--dependency=afterany:{d}"));
        }
        let o = cmd.arg(script).output().with_context(
            || "running sbatch: is Slurm installed here and SLURM_CONF set for its cluster?",
        )?;
        if !o.status.success() {
            bail!(
                "sbatch {} failed: {}",
                script.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&o.stdout);
        Ok(id.trim().split(';').next().unwrap_or_default().to_string())
    };
    let array_id = if todo.is_empty() {
        None
    } else {
        Some(sbatch(&slurm.join("array.sbatch"), None)?)
    };
    let collect_id = sbatch(&slurm.join("collect.sbatch"), array_id.as_deref())?;
    let jobs = format!(
        "array {}\ncollect {collect_id}\n",
        array_id.as_deref().unwrap_or("(none: every case finished)")
    );
    crate::output::write_text(&slurm.join("jobs.txt"), &jobs)?;
    out!(
        "submitted {} cases as job array {} and the tables as job {collect_id} after it; \
         follow with `squeue`; logs in {}; the report will be {}",
        todo.len(),
        array_id.as_deref().unwrap_or("(none)"),
        slurm.join("logs").display(),
        out.join("report.md").display()
    );
    Ok(())
}
