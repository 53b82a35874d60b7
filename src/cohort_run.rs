//! What the cohort commands (`calibrate`, `plan --patients`, `examples`) share: which patients
//! to run, a per-patient CSV that a rerun resumes, and the metric table beside a reference.

use std::collections::BTreeMap;
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

/// A per-patient table (`patient,value,...`) that a rerun resumes.
///
/// The unit of completion is the patient's case file, `<table>.cases/pNN.csv` (the header and
/// one row), written to a temporary name and renamed into place when the patient is done, so
/// no partial write can pass for a finished patient. The table itself is rebuilt from the case
/// files (again through a temporary name) after every patient; it is a view, never read back.
pub struct PatientRows {
    path: PathBuf,
    cases: PathBuf,
    header: Vec<String>,
    /// Patient id -> values in header order (after the patient column).
    pub done: BTreeMap<usize, Vec<f64>>,
}

/// The values of one data row (`line`, number `row` of `file`), every cell a number or
/// `NaN`; a garbage cell is an error naming the file, row and column.
fn parse_row(file: &Path, row: usize, line: &str, header: &[String]) -> Result<(usize, Vec<f64>)> {
    let cells: Vec<&str> = line.split(',').collect();
    if cells.len() != header.len() {
        bail!(
            "{}: row {row} has {} cells, the header {}",
            file.display(),
            cells.len(),
            header.len()
        );
    }
    let id: usize = cells[0].trim_start_matches('p').parse().with_context(|| {
        format!(
            "{}: row {row}, column patient: {:?} is not a patient",
            file.display(),
            cells[0]
        )
    })?;
    let values = cells[1..]
        .iter()
        .zip(&header[1..])
        .map(|(c, column)| {
            c.trim().parse::<f64>().with_context(|| {
                format!(
                    "{}: row {row}, column {column}: {c:?} is not a number",
                    file.display()
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok((id, values))
}

impl PatientRows {
    /// Opens the table at `path` and its case files. A table or case file with other columns is
    /// an error; a case file cut by a crash (a leftover temporary file) is ignored, so that
    /// patient runs again.
    pub fn open(path: &Path, header: &[String]) -> Result<Self> {
        let expected = header.join(",");
        let cases = path.with_extension("cases");
        let mut legacy = Vec::new();
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let first = text.lines().next().unwrap_or_default();
            if first != expected {
                bail!(
                    "{}: its columns ({first}) are not this protocol's ({expected}); move it away \
                     or choose another --out",
                    path.display()
                );
            }
            if !cases.exists() {
                // A table from before case files: its whole rows become case files; a row cut
                // or garbled by a crash is left out (that patient runs again).
                for (n, line) in text.lines().enumerate().skip(1) {
                    match parse_row(path, n + 1, line, header) {
                        Ok(row) => legacy.push(row),
                        Err(e) => tracing::warn!("{e:#}; that patient runs again"),
                    }
                }
            }
        }
        std::fs::create_dir_all(&cases).with_context(|| format!("creating {}", cases.display()))?;
        for (id, row) in &legacy {
            let case = cases.join(format!("p{id:02}.csv"));
            crate::output::write_text(&case, &(header.join(",") + "\n" + &Self::line(*id, row)))?;
        }
        let mut done = BTreeMap::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&cases)
            .with_context(|| format!("reading {}", cases.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", cases.display()))?;
        files.sort();
        for file in files {
            if file.extension().is_none_or(|x| x != "csv") {
                continue; // a temporary file of a write that never finished
            }
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut lines = text.lines();
            let first = lines.next().unwrap_or_default();
            if first != expected {
                bail!(
                    "{}: its columns ({first}) are not this protocol's ({expected}); move {} \
                     away or choose another --out",
                    file.display(),
                    cases.display()
                );
            }
            let line = lines
                .next()
                .with_context(|| format!("{}: no row after the header", file.display()))?;
            let (id, values) = parse_row(&file, 2, line, header)?;
            done.insert(id, values);
        }
        let rows = Self {
            path: path.to_path_buf(),
            cases,
            header: header.to_vec(),
            done,
        };
        rows.rebuild()?;
        Ok(rows)
    }

    /// Rewrites the table from the finished cases.
    fn rebuild(&self) -> Result<()> {
        let mut text = self.header.join(",") + "\n";
        for (id, row) in &self.done {
            text += &Self::line(*id, row);
        }
        crate::output::write_text(&self.path, &text)
    }

    fn line(id: usize, row: &[f64]) -> String {
        format!(
            "p{id:02},{}\n",
            row.iter()
                .map(|v| format!("{v:.4}"))
                .collect::<Vec<_>>()
                .join(",")
        )
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

    /// Records patient `id` as done: its case file first (atomically), then the table.
    pub fn append(&mut self, id: usize, row: Vec<f64>) -> Result<()> {
        let case = self.cases.join(format!("p{id:02}.csv"));
        crate::output::write_text(
            &case,
            &(self.header.join(",") + "\n" + &Self::line(id, &row)),
        )?;
        self.done.insert(id, row);
        self.rebuild()
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

    #[test]
    fn a_row_cut_by_a_crash_is_never_taken_for_a_finished_patient() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plans.csv");
        let header: Vec<String> = ["patient", "a", "b"].map(String::from).to_vec();
        let mut rows = PatientRows::open(&path, &header).unwrap();
        rows.append(3, vec![1.0, 2.5]).unwrap();
        // A crash while patient 4 was written: its case file half written under its temporary
        // name, and the table cut mid-row (a row with the right number of cells).
        let cases = tmp.path().join("plans.cases");
        std::fs::write(cases.join("p04.csv.partial"), "patient,a,b\np04,7.0").unwrap();
        let table = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, table + "p04,7.0,2").unwrap();
        let mut again = PatientRows::open(&path, &header).unwrap();
        assert_eq!(again.pending(&[3, 4, 5]), vec![4, 5]);
        // The table is rebuilt whole: no row glued onto the cut one.
        again.append(5, vec![3.0, 4.0]).unwrap();
        again.append(4, vec![7.0, 2.25]).unwrap();
        let table = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            table,
            "patient,a,b\np03,1.0000,2.5000\np04,7.0000,2.2500\np05,3.0000,4.0000\n"
        );
        let third = PatientRows::open(&path, &header).unwrap();
        assert!(third.pending(&[3, 4, 5]).is_empty());
        assert_eq!(third.column(&[3, 4, 5], 1), vec![2.5, 2.25, 4.0]);
        // A garbage cell names the file, row and column.
        std::fs::write(cases.join("p06.csv"), "patient,a,b\np06,x,1\n").unwrap();
        let e = PatientRows::open(&path, &header).err().unwrap().to_string();
        assert!(
            e.contains("p06.csv") && e.contains("row 2") && e.contains("column a"),
            "{e}"
        );
    }

    #[test]
    fn a_table_from_before_case_files_keeps_its_whole_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plans.csv");
        let header: Vec<String> = ["patient", "a", "b"].map(String::from).to_vec();
        std::fs::write(&path, "patient,a,b\np03,1.0,2.5\np04,7.0").unwrap();
        let rows = PatientRows::open(&path, &header).unwrap();
        assert_eq!(rows.pending(&[3, 4]), vec![4]);
        assert!(tmp.path().join("plans.cases/p03.csv").is_file());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "patient,a,b\np03,1.0000,2.5000\n"
        );
    }
}
