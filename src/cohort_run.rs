//! What the cohort commands (`calibrate`, `plan --patients`, `examples`) share: which patients
//! to run, a per-patient CSV that a rerun resumes, and the metric table beside a reference.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use evaluation::Metric;
use evaluation::reference::{MeasuredMetric, ReferenceTable, comparison_markdown};
use phantoms::cohort::CohortSpec;

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

/// The patients to run: `list` (`6-35`, `7,9`, `test` for the cohort's test patients,
/// `training` for its training patients), or `default` without one; every id is checked
/// against the cohort.
pub fn select_ids(
    list: Option<&str>,
    default: Vec<usize>,
    spec: &CohortSpec,
    cohort: &Path,
) -> Result<Vec<usize>> {
    let ids = match list.map(str::trim) {
        None => default,
        Some("test") => spec.test_ids(),
        Some("training") => spec.training.clone(),
        Some(t) => parse_ids(t)?,
    };
    if let Some(&bad) = ids.iter().find(|&&i| i == 0 || i > spec.patients) {
        bail!(
            "--patients: patient {bad} is not in {} (1-{})",
            cohort.display(),
            spec.patients
        );
    }
    Ok(ids)
}

/// A per-patient CSV (`patient,value,...`), one row appended as each patient ends, so that a
/// crash loses at most the patient in progress and a rerun skips the patients already there.
pub struct PatientRows {
    path: PathBuf,
    /// Patient id -> values in header order (after the patient column).
    pub done: BTreeMap<usize, Vec<f64>>,
}

impl PatientRows {
    /// Opens `path`, created with `header` when missing. A file with other columns is an
    /// error; a row cut short by a crash is dropped (that patient runs again).
    pub fn open(path: &Path, header: &[String]) -> Result<Self> {
        let mut done = BTreeMap::new();
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut lines = text.lines();
            let first = lines.next().unwrap_or_default();
            let expected = header.join(",");
            if first != expected {
                bail!(
                    "{}: its columns ({first}) are not this protocol's ({expected}); move it away \
                     or choose another --out",
                    path.display()
                );
            }
            for (n, line) in lines.enumerate() {
                let cells: Vec<&str> = line.split(',').collect();
                if cells.len() != header.len() {
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
        } else {
            std::fs::write(path, header.join(",") + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            done,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Those of `ids` not in the file yet, in order.
    pub fn pending(&self, ids: &[usize]) -> Vec<usize> {
        ids.iter()
            .copied()
            .filter(|i| !self.done.contains_key(i))
            .collect()
    }

    /// Appends patient `id`'s row to the file at once, and keeps it.
    pub fn append(&mut self, id: usize, row: Vec<f64>) -> Result<()> {
        let line = format!(
            "p{id:02},{}\n",
            row.iter()
                .map(|v| format!("{v:.4}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("appending to {}", self.path.display()))?;
        f.write_all(line.as_bytes())
            .with_context(|| format!("appending to {}", self.path.display()))?;
        self.done.insert(id, row);
        Ok(())
    }

    /// Column `k` (after the patient column) over `ids`.
    pub fn column(&self, ids: &[usize], k: usize) -> Vec<f64> {
        ids.iter().map(|i| self.done[i][k]).collect()
    }

    /// The Markdown table of `metrics` over `ids` (the first metric in column `first`) beside
    /// `reference`, headed `label`.
    pub fn comparison(
        &self,
        ids: &[usize],
        metrics: &[Metric],
        first: usize,
        reference: &ReferenceTable,
        label: &str,
    ) -> Result<String> {
        let measured: Vec<MeasuredMetric> = metrics
            .iter()
            .enumerate()
            .map(|(k, m)| MeasuredMetric {
                metric: m.clone(),
                unit: m.unit(),
                values: self.column(ids, first + k),
            })
            .collect();
        Ok(comparison_markdown(&measured, reference, label)?)
    }
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

    #[test]
    fn rows_resume_and_refuse_other_columns() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rows.csv");
        let header: Vec<String> = ["patient", "a", "b"].map(String::from).to_vec();
        let mut rows = PatientRows::open(&path, &header).unwrap();
        assert_eq!(rows.pending(&[3, 4]), vec![3, 4]);
        rows.append(3, vec![1.0, 2.5]).unwrap();
        // A crash mid-row: the partial line is dropped on reopening.
        std::fs::write(&path, std::fs::read_to_string(&path).unwrap() + "p04,7.0\n").unwrap();
        let again = PatientRows::open(&path, &header).unwrap();
        assert_eq!(again.pending(&[3, 4]), vec![4]);
        assert_eq!(again.column(&[3], 1), vec![2.5]);
        let other: Vec<String> = ["patient", "a"].map(String::from).to_vec();
        let e = PatientRows::open(&path, &other).err().unwrap().to_string();
        assert!(e.contains("rows.csv") && e.contains("columns"), "{e}");
    }
}
