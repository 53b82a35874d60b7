//! `autoplan calibrate`: one optimization with the protocol's initial goals for each test
//! patient of a cohort, evaluated with the protocol's metrics and tabulated beside a published
//! reference column.
//!
//! Each patient's row is appended to `metrics.csv` as soon as it is done; a rerun skips the
//! patients already there, so an interrupted run loses at most the patient in progress.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use evaluation::reference::ReferenceTable;
use evaluation::{Evaluator, PlanDose, ProtocolEvaluator};
use phantoms::cohort::CohortSpec;
use tps_api::{Normalization, Protocol, Tps};
use tps_core::{NativeSettings, NativeTps};

use crate::args::MachineArgs;
use crate::cohort_run::{PatientRows, select_ids};
use crate::lock::OutputLock;

/// Plan every test patient of a cohort once with the protocol's initial goals (no
/// adjustments), evaluate the protocol's metrics and tabulate them beside a published
/// reference column. Resumes where an earlier run stopped.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Cohort definition.
    #[arg(long)]
    pub cohort: PathBuf,
    /// Protocol with prescription, objectives, rings and metrics.
    #[arg(long)]
    pub protocol: PathBuf,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Reference values (mean and std per metric).
    #[arg(long, default_value = "configs/reference/wei2025-table3-manual.toml")]
    pub reference: PathBuf,
    /// Patients, e.g. `6-35`, `7,9`, `test` or `training`; default: the cohort's test patients.
    #[arg(long)]
    pub patients: Option<String>,
    /// Output directory (metrics.csv, calibration.md).
    #[arg(long)]
    pub out: PathBuf,
}

const CSV: &str = "metrics.csv";

/// Runs the calibration.
pub fn run(a: &Args) -> Result<()> {
    let spec = CohortSpec::load(&a.cohort)?;
    let protocol = Protocol::load(&a.protocol)?;
    let (model, curve) = a.machine.load()?;
    let reference = ReferenceTable::load(&a.reference)?;
    let evaluator = ProtocolEvaluator::from_protocol(&protocol)?;
    let ids = select_ids(a.patients.as_deref(), spec.test_ids(), &spec, &a.cohort)?;
    let metrics: Vec<_> = evaluator.metrics().cloned().collect();
    let mut header = vec!["patient".to_string()];
    header.extend(metrics.iter().map(|m| m.to_string()));
    header.extend(["solver iterations", "optimize s"].map(String::from));
    let _lock = OutputLock::acquire(&a.out)?;
    let csv_path = a.out.join(CSV);
    let mut rows = PatientRows::open(&csv_path, &header)?;
    let todo = rows.pending(&ids);
    out!(
        "{} patients of {}: {} already in {}, {} to plan",
        ids.len(),
        spec.name,
        ids.len() - todo.len(),
        csv_path.display(),
        todo.len()
    );
    let started = Instant::now();
    for (n, &id) in todo.iter().enumerate() {
        let t = Instant::now();
        let patient = spec.generate(id)?;
        let pid = patient.id.clone();
        let mut tps = NativeTps::open(
            patient,
            protocol.clone(),
            &model,
            &curve,
            NativeSettings::default(),
        )
        .with_context(|| format!("opening {pid}"))?;
        let opened = t.elapsed().as_secs_f64();
        let report = tps
            .optimize(&[])
            .with_context(|| format!("optimizing {pid}"))?;
        tps.normalize(Normalization::Dose)?;
        let dose = tps.dose()?;
        let mu = tps.plan()?.mu_per_fraction;
        let values = evaluator.evaluate(&PlanDose {
            patient: tps.patient(),
            dose: &dose,
            mu_per_fraction: Some(mu),
        })?;
        let mut row: Vec<f64> = values.iter().map(|v| v.value.unwrap_or(f64::NAN)).collect();
        row.push(report.solver_iterations as f64);
        row.push(report.wall_s);
        rows.append(id, row)?;
        let elapsed = started.elapsed().as_secs_f64();
        out!(
            "[{}/{}] {pid}: opened {opened:.1} s, optimized {:.1} s ({} iterations), total {:.1} s; \
             PTV D95 before normalization {:.0} cGy, {:.0} MU; about {:.0} s left",
            n + 1,
            todo.len(),
            report.wall_s,
            report.solver_iterations,
            t.elapsed().as_secs_f64(),
            report.coverage_cgy,
            mu,
            elapsed / (n + 1) as f64 * (todo.len() - n - 1) as f64
        );
    }
    let table = rows.comparison(
        &ids,
        &metrics,
        0,
        &reference,
        &format!("native TPS, initial goals (n = {})", ids.len()),
    )?;
    let md = a.out.join("calibration.md");
    crate::output::write_text(&md, &table)?;
    outn!("{table}");
    out!("wrote {} and {}", csv_path.display(), md.display());
    Ok(())
}
