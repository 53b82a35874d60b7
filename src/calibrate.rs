//! `autoplan calibrate`: one optimization with the protocol's initial goals for each test
//! patient of a cohort, evaluated with the protocol's metrics and tabulated beside a published
//! reference column.
//!
//! Each patient's row is appended to `metrics.csv` as soon as it is done; a rerun skips the
//! patients already there, so an interrupted run loses at most the patient in progress.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use evaluation::reference::{MeasuredMetric, ReferenceTable, comparison_markdown};
use evaluation::{Evaluator, PlanDose, ProtocolEvaluator};
use tps_core::cohort::CohortSpec;
use tps_core::native::{NativeSettings, NativeTps};
use tps_core::protocol::Protocol;
use tps_core::tps::Tps;

/// What `autoplan calibrate` needs.
pub struct CalibrateArgs {
    pub cohort: PathBuf,
    pub protocol: PathBuf,
    pub machine: crate::commands::MachineArgs,
    pub reference: PathBuf,
    pub patients: Option<String>,
    pub out: PathBuf,
}

/// Parses `"6-35"`, `"7,9,12"` or a mix of both.
pub fn parse_ids(text: &str) -> Result<Vec<usize>> {
    let mut ids = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |s: &str| -> Result<usize> {
            s.trim()
                .parse()
                .with_context(|| format!("--patients {text:?}: {s:?} is not a patient number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b {
                    bail!("--patients {text:?}: range {part} runs backwards");
                }
                ids.extend(a..=b);
            }
            None => ids.push(parse(part)?),
        }
    }
    if ids.is_empty() {
        bail!("--patients {text:?}: no patient given");
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

const CSV: &str = "metrics.csv";

/// Rows already in a per-patient CSV (`patient,value,...`): patient id -> values in header
/// order. A file with other columns is an error; a row cut short by a crash is dropped (that
/// patient is planned again).
pub(crate) fn read_done(path: &Path, header: &[String]) -> Result<BTreeMap<usize, Vec<f64>>> {
    let mut done = BTreeMap::new();
    if !path.exists() {
        return Ok(done);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let expected = header.join(",");
    if first != expected {
        bail!(
            "{}: its columns ({first}) are not this protocol's ({expected}); move it away or \
             choose another --out",
            path.display()
        );
    }
    for (n, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != header.len() {
            // A row cut short by a crash: dropped, that patient is planned again.
            tracing::warn!("{}: line {} is incomplete, ignored", path.display(), n + 2);
            continue;
        }
        let id: usize = cells[0].trim_start_matches('p').parse().with_context(|| {
            format!("{}: line {}: patient {:?}", path.display(), n + 2, cells[0])
        })?;
        let values = cells[1..]
            .iter()
            .map(|c| c.parse::<f64>().unwrap_or(f64::NAN))
            .collect();
        done.insert(id, values);
    }
    Ok(done)
}

/// The rows already in `path` (see [`read_done`]); a missing file is created with `header`.
pub(crate) fn open_rows(path: &Path, header: &[String]) -> Result<BTreeMap<usize, Vec<f64>>> {
    let done = read_done(path, header)?;
    if !path.exists() {
        std::fs::write(path, header.join(",") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(done)
}

/// Appends patient `id`'s row to `path` at once, so that a crash loses no finished patient.
pub(crate) fn append_row(path: &Path, id: usize, row: &[f64]) -> Result<()> {
    let line = format!(
        "p{id:02},{}\n",
        row.iter()
            .map(|v| format!("{v:.4}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("appending to {}", path.display()))?;
    f.write_all(line.as_bytes())
        .with_context(|| format!("appending to {}", path.display()))
}

/// Checks that every id is a patient of the cohort (1..=`n`).
pub(crate) fn check_ids(ids: &[usize], spec: &CohortSpec, cohort: &Path) -> Result<()> {
    if let Some(&bad) = ids.iter().find(|&&i| i == 0 || i > spec.patients) {
        bail!(
            "--patients: patient {bad} is not in {} (1-{})",
            cohort.display(),
            spec.patients
        );
    }
    Ok(())
}

/// Runs the calibration.
pub fn run(a: &CalibrateArgs) -> Result<()> {
    let spec = CohortSpec::load(&a.cohort)?;
    let protocol = Protocol::load(&a.protocol)?;
    let (model, curve) = a.machine.load()?;
    let reference = ReferenceTable::load(&a.reference)?;
    let evaluator = ProtocolEvaluator::from_protocol(&protocol)?;
    let ids = match &a.patients {
        Some(t) => parse_ids(t)?,
        None => spec.test_ids(),
    };
    check_ids(&ids, &spec, &a.cohort)?;
    let metrics: Vec<_> = evaluator.metrics().cloned().collect();
    let mut header = vec!["patient".to_string()];
    header.extend(metrics.iter().map(|m| m.to_string()));
    header.extend(["solver iterations", "optimize s"].map(String::from));
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let csv_path = a.out.join(CSV);
    let mut done = open_rows(&csv_path, &header)?;
    let todo: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|i| !done.contains_key(i))
        .collect();
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
        tps.normalize()?;
        let mut dose = tps.dose()?;
        let grid_factor = crate::commands::normalize_on_grid(tps.patient(), &protocol, &mut dose)?;
        let mu = tps.plan().mu_per_fraction * grid_factor;
        let values = evaluator.evaluate(&PlanDose {
            patient: tps.patient(),
            dose_cgy: &dose,
            mu_per_fraction: Some(mu),
        })?;
        let mut row: Vec<f64> = values.iter().map(|v| v.value.unwrap_or(f64::NAN)).collect();
        row.push(report.solver_iterations as f64);
        row.push(report.wall_s);
        append_row(&csv_path, id, &row)?;
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
        done.insert(id, row);
    }
    let measured: Vec<MeasuredMetric> = metrics
        .iter()
        .enumerate()
        .map(|(k, m)| MeasuredMetric {
            metric: m.clone(),
            unit: m.unit(),
            values: ids.iter().map(|i| done[i][k]).collect(),
        })
        .collect();
    let table = comparison_markdown(
        &measured,
        &reference,
        &format!("native TPS, initial goals (n = {})", ids.len()),
    )?;
    let md = a.out.join("calibration.md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    outn!("{table}");
    out!("wrote {} and {}", csv_path.display(), md.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_lists() {
        assert_eq!(parse_ids("6-8,3, 7").unwrap(), vec![3, 6, 7, 8]);
        assert!(parse_ids("8-6").is_err());
        assert!(parse_ids("x").is_err());
        assert!(parse_ids(" , ").is_err());
    }
}
