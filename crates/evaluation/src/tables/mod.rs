//! Study tables: per-method mean +- std with p-values against a reference method (the layout
//! of the study's Table 3), and a pairwise comparison of two methods with the mean relative
//! difference (its Table 5), as Markdown and CSV. The submodules lay out the other tables the
//! commands print and write: one plan's report and metrics ([`plan`]), a study's summary
//! ([`study`]) and a cohort's structure volumes ([`cohort`]).

pub mod cohort;
pub mod plan;
pub mod study;

use crate::error::{Error, Result};
use crate::metric::{Metric, Unit};
use crate::stats::{mean_std, wilcoxon};

/// How a metric is shown: its label, display unit, scale from stored values, decimals.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricColumn {
    /// Row label, e.g. `PTV Dmax`.
    pub label: String,
    /// Display unit, e.g. `Gy`.
    pub unit: String,
    /// Multiplier from stored values (cGy) to the display unit.
    pub scale: f64,
    /// Decimals shown.
    pub decimals: usize,
}

impl MetricColumn {
    /// The study's display: doses in Gy with 2 decimals, CI and HI with 3, MU with 2,
    /// percentages with 1.
    pub fn for_metric(metric: &Metric) -> Self {
        let (unit, scale, decimals) = match metric.unit() {
            Unit::Cgy => ("Gy", 0.01, 2),
            Unit::Percent => ("%", 1.0, 1),
            Unit::Index => ("", 1.0, 3),
            Unit::Mu => ("MU", 1.0, 2),
        };
        Self {
            label: metric.to_string(),
            unit: unit.into(),
            scale,
            decimals,
        }
    }
}

/// One method's values: `values[metric][patient]`, patients in the same order for every
/// method (the test is paired).
#[derive(Debug, Clone, PartialEq)]
pub struct MethodValues {
    /// Method name, e.g. `manual`, `rule-based`, `qwen-2.5-max`.
    pub name: String,
    /// Values per metric, per patient, in stored units.
    pub values: Vec<Vec<f64>>,
}

/// A row of the Table-3 layout.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// Metric display.
    pub column: MetricColumn,
    /// (mean, std) per method, display units.
    pub mean_std: Vec<(f64, f64)>,
    /// Wilcoxon p-value of each method against the reference (None for the reference, or when
    /// every difference is zero).
    pub p_vs_reference: Vec<Option<f64>>,
}

fn check_shape(columns: &[MetricColumn], methods: &[MethodValues]) -> Result<usize> {
    let first = methods.first().ok_or_else(|| Error::BadSample {
        what: "study table".into(),
        reason: "no methods".into(),
    })?;
    let patients = first.values.first().map_or(0, Vec::len);
    for m in methods {
        if m.values.len() != columns.len() {
            return Err(Error::BadSample {
                what: format!("study table, method {}", m.name),
                reason: format!("{} metrics, expected {}", m.values.len(), columns.len()),
            });
        }
        for (c, v) in columns.iter().zip(&m.values) {
            if v.len() != patients {
                return Err(Error::BadSample {
                    what: format!("study table, method {}, metric {}", m.name, c.label),
                    reason: format!(
                        "{} patients, expected {patients} (samples are paired)",
                        v.len()
                    ),
                });
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::BadSample {
                    what: format!("study table, method {}, metric {}", m.name, c.label),
                    reason: format!("patient {} has value {}", i + 1, v[i]),
                });
            }
        }
    }
    Ok(patients)
}

/// Mean +- std per method and p-values of every method against `methods[0]`.
pub fn summary(columns: &[MetricColumn], methods: &[MethodValues]) -> Result<Vec<SummaryRow>> {
    check_shape(columns, methods)?;
    columns
        .iter()
        .enumerate()
        .map(|(c, col)| {
            let reference = &methods[0].values[c];
            let mut mean_stds = Vec::new();
            let mut ps = Vec::new();
            for (k, m) in methods.iter().enumerate() {
                let (mean, std) = mean_std(&m.values[c])?;
                mean_stds.push((mean * col.scale, std * col.scale.abs()));
                ps.push(if k == 0 {
                    None
                } else {
                    match wilcoxon(reference, &m.values[c]) {
                        Ok(w) => Some(w.p_asymptotic),
                        Err(Error::BadSample { reason, .. })
                            if reason.contains("every difference is zero") =>
                        {
                            None
                        }
                        Err(e) => return Err(e),
                    }
                });
            }
            Ok(SummaryRow {
                column: col.clone(),
                mean_std: mean_stds,
                p_vs_reference: ps,
            })
        })
        .collect()
}

fn p_text(p: Option<f64>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p < 0.001 => "<0.001".into(),
        Some(p) => format!("{p:.3}"),
    }
}

fn label(col: &MetricColumn) -> String {
    if col.unit.is_empty() || col.unit == col.label {
        col.label.clone()
    } else {
        format!("{} ({})", col.label, col.unit)
    }
}

/// The Table-3 layout as Markdown: a column of mean +- std per method and a p-value column
/// for every method after the reference.
pub fn summary_markdown(rows: &[SummaryRow], methods: &[MethodValues]) -> String {
    let mut s = String::from("| metric |");
    for (k, m) in methods.iter().enumerate() {
        s += &format!(" {} mean ± std |", m.name);
        if k > 0 {
            s += &format!(" p vs {} |", methods[0].name);
        }
    }
    s += "\n|---|";
    for k in 0..methods.len() {
        s += if k > 0 { "---:|---:|" } else { "---:|" };
    }
    s += "\n";
    for r in rows {
        s += &format!("| {} |", label(&r.column));
        for (k, (m, sd)) in r.mean_std.iter().enumerate() {
            let d = r.column.decimals;
            s += &format!(" {m:.d$} ± {sd:.d$} |");
            if k > 0 {
                s += &format!(" {} |", p_text(r.p_vs_reference[k]));
            }
        }
        s += "\n";
    }
    s
}

/// The Table-3 layout as CSV (full precision).
pub fn summary_csv(rows: &[SummaryRow], methods: &[MethodValues]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["metric".to_string(), "unit".to_string()];
    for (k, m) in methods.iter().enumerate() {
        header.push(format!("{}_mean", m.name));
        header.push(format!("{}_std", m.name));
        if k > 0 {
            header.push(format!("{}_p_vs_{}", m.name, methods[0].name));
        }
    }
    let err = |e: csv::Error| Error::Output {
        path: "(csv)".into(),
        reason: e.to_string(),
    };
    w.write_record(&header).map_err(err)?;
    for r in rows {
        let mut rec = vec![r.column.label.clone(), r.column.unit.clone()];
        for (k, (m, sd)) in r.mean_std.iter().enumerate() {
            rec.push(m.to_string());
            rec.push(sd.to_string());
            if k > 0 {
                rec.push(r.p_vs_reference[k].map_or(String::new(), |p| p.to_string()));
            }
        }
        w.write_record(&rec).map_err(err)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Output {
        path: "(csv)".into(),
        reason: e.to_string(),
    })?;
    Ok(String::from_utf8(bytes).expect("csv of UTF-8 fields is UTF-8"))
}

/// A row of the Table-5 layout: method A against method B.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    /// Metric display.
    pub column: MetricColumn,
    /// Mean and std of A, display units.
    pub a: (f64, f64),
    /// Mean and std of B, display units.
    pub b: (f64, f64),
    /// Mean over patients of `(B - A) / |A|`, percent.
    pub mean_relative_difference_percent: f64,
    /// Two-sided asymptotic Wilcoxon p-value (None when all differences are zero).
    pub p: Option<f64>,
}

/// Pairwise comparison of two methods.
pub fn pairwise(
    columns: &[MetricColumn],
    a: &MethodValues,
    b: &MethodValues,
) -> Result<Vec<PairRow>> {
    check_shape(columns, &[a.clone(), b.clone()])?;
    columns
        .iter()
        .enumerate()
        .map(|(c, col)| {
            let (xa, xb) = (&a.values[c], &b.values[c]);
            let (ma, sa) = mean_std(xa)?;
            let (mb, sb) = mean_std(xb)?;
            let rel: Vec<f64> = xa
                .iter()
                .zip(xb)
                .map(|(x, y)| {
                    if *x == 0.0 {
                        0.0
                    } else {
                        (y - x) / x.abs() * 100.0
                    }
                })
                .collect();
            let p = match wilcoxon(xa, xb) {
                Ok(w) => Some(w.p_asymptotic),
                Err(Error::BadSample { reason, .. })
                    if reason.contains("every difference is zero") =>
                {
                    None
                }
                Err(e) => return Err(e),
            };
            Ok(PairRow {
                column: col.clone(),
                a: (ma * col.scale, sa * col.scale.abs()),
                b: (mb * col.scale, sb * col.scale.abs()),
                mean_relative_difference_percent: rel.iter().sum::<f64>() / rel.len() as f64,
                p,
            })
        })
        .collect()
}

/// The Table-5 layout as Markdown.
pub fn pairwise_markdown(rows: &[PairRow], a: &str, b: &str) -> String {
    let mut s =
        format!("| metric | {a} mean ± std | {b} mean ± std | mean relative difference | p |\n");
    s += "|---|---:|---:|---:|---:|\n";
    for r in rows {
        let d = r.column.decimals;
        s += &format!(
            "| {} | {:.d$} ± {:.d$} | {:.d$} ± {:.d$} | {:+.2}% | {} |\n",
            label(&r.column),
            r.a.0,
            r.a.1,
            r.b.0,
            r.b.1,
            r.mean_relative_difference_percent,
            p_text(r.p)
        );
    }
    s
}
