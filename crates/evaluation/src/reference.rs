//! Published reference values (mean and standard deviation per metric) and a side-by-side table
//! of a measured cohort against them.

use std::path::Path;

use serde::Deserialize;
use tps_api::error::parse_toml;
use tps_api::metric::{Metric, Unit};

use crate::error::Result;
use crate::stats::mean_std;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceWire {
    source: String,
    metric: Vec<EntryWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryWire {
    metric: String,
    mean: f64,
    std: f64,
    unit: String,
    #[serde(default)]
    note: Option<String>,
}

/// One reference value.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceEntry {
    /// The metric, as a protocol names it.
    pub metric: Metric,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub std: f64,
    /// Unit of `mean` and `std`: "Gy" for doses, "MU", or "" for indices.
    pub unit: String,
    /// How the reference's metric relates to ours, when not identical.
    pub note: Option<String>,
}

/// A published column of reference values.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceTable {
    /// Where the values come from (citation).
    pub source: String,
    /// The values.
    pub entries: Vec<ReferenceEntry>,
}

impl ReferenceTable {
    /// Reads a reference file; a malformed entry names the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| tps_api::Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses reference TOML that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let w: ReferenceWire = parse_toml(text, path)?;
        let origin = path.display().to_string();
        let mut entries = Vec::with_capacity(w.metric.len());
        for (n, e) in w.metric.into_iter().enumerate() {
            let field = |f: &str| format!("metric[{n}].{f}");
            let metric = Metric::parse(&e.metric, &format!("{origin}: {}", field("metric")))?;
            for (name, v) in [("mean", e.mean), ("std", e.std)] {
                if !v.is_finite() || v < 0.0 {
                    return Err(tps_api::Error::invalid(
                        &origin,
                        field(name),
                        v.to_string(),
                        "must be a finite, non-negative number",
                    )
                    .into());
                }
            }
            if !["Gy", "MU", ""].contains(&e.unit.as_str()) {
                return Err(tps_api::Error::invalid(
                    &origin,
                    field("unit"),
                    &e.unit,
                    "unit must be \"Gy\", \"MU\" or \"\"",
                )
                .into());
            }
            entries.push(ReferenceEntry {
                metric,
                mean: e.mean,
                std: e.std,
                unit: e.unit,
                note: e.note,
            });
        }
        Ok(Self {
            source: w.source,
            entries,
        })
    }

    /// The entry for `metric`, if any.
    pub fn get(&self, metric: &Metric) -> Option<&ReferenceEntry> {
        self.entries.iter().find(|e| &e.metric == metric)
    }
}

/// Measured values of one metric over a cohort, in the evaluator's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredMetric {
    /// The metric.
    pub metric: Metric,
    /// Unit of the values.
    pub unit: Unit,
    /// One value per patient.
    pub values: Vec<f64>,
}

/// A Markdown table: per metric, the measured mean +- std (doses converted to Gy) beside the
/// reference and the difference of the means in reference standard deviations.
pub fn comparison_markdown(
    measured: &[MeasuredMetric],
    reference: &ReferenceTable,
    measured_label: &str,
) -> Result<String> {
    let mut s = format!(
        "| metric | {measured_label} | {} | difference / reference std |\n|---|---:|---:|---:|\n",
        reference.source
    );
    for m in measured {
        let to_ref = if m.unit == Unit::Cgy { 0.01 } else { 1.0 };
        let unit = if m.unit == Unit::Cgy {
            "Gy"
        } else {
            m.unit.label()
        };
        let values: Vec<f64> = m.values.iter().map(|v| v * to_ref).collect();
        let (mean, std) = mean_std(&values)?;
        let digits = if unit.is_empty() { 3 } else { 2 };
        let label = m.metric.to_string();
        let name = if unit.is_empty() || label == unit {
            label
        } else {
            format!("{label} {unit}")
        };
        let (reference_text, diff) = match reference.get(&m.metric) {
            Some(r) => {
                let note = r
                    .note
                    .as_deref()
                    .map_or(String::new(), |n| format!(" ({n})"));
                let diff = if r.std > 0.0 {
                    format!("{:+.1}", (mean - r.mean) / r.std)
                } else {
                    "".into()
                };
                (
                    format!("{:.digits$} ± {:.digits$}{note}", r.mean, r.std),
                    diff,
                )
            }
            None => ("".into(), "".into()),
        };
        s +=
            &format!("| {name} | {mean:.digits$} ± {std:.digits$} | {reference_text} | {diff} |\n");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "source = \"paper\"\n[[metric]]\nmetric = \"PTV: D98\"\nmean = 35.0\nstd = 0.5\nunit = \"Gy\"\n\
                        [[metric]]\nmetric = \"CI\"\nmean = 0.9\nstd = 0.0\nunit = \"\"\n";

    #[test]
    fn table_converts_doses_and_scales_differences() {
        let r = ReferenceTable::parse(TEXT, Path::new("r.toml")).unwrap();
        let measured = vec![
            MeasuredMetric {
                metric: Metric::parse("PTV: D98", "t").unwrap(),
                unit: Unit::Cgy,
                values: vec![3500.0, 3600.0],
            },
            MeasuredMetric {
                metric: Metric::Ci,
                unit: Unit::Index,
                values: vec![0.8, 0.9],
            },
        ];
        let md = comparison_markdown(&measured, &r, "ours").unwrap();
        // Mean 35.5 Gy, std 0.71; (35.5 - 35.0) / 0.5 = +1.0 reference std.
        assert!(
            md.contains("| PTV D98 Gy | 35.50 ± 0.71 | 35.00 ± 0.50 | +1.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| CI | 0.850 ± 0.071 | 0.900 ± 0.000 |  |"),
            "{md}"
        );
    }

    #[test]
    fn bad_entries_name_file_and_field() {
        let bad = TEXT.replace("std = 0.5", "std = -1.0");
        let e = ReferenceTable::parse(&bad, Path::new("r.toml")).unwrap_err();
        assert!(
            e.to_string().contains("r.toml") && e.to_string().contains("metric[0].std"),
            "{e}"
        );
        let bad = TEXT.replace("\"Gy\"", "\"rad\"");
        let e = ReferenceTable::parse(&bad, Path::new("r.toml")).unwrap_err();
        assert!(e.to_string().contains("metric[0].unit"), "{e}");
        let bad = TEXT.replace("PTV: D98", "PTV: Q98");
        assert!(ReferenceTable::parse(&bad, Path::new("r.toml")).is_err());
    }

    /// The shipped reference file parses and every metric it names is one the cervix protocol
    /// evaluates.
    #[test]
    fn shipped_reference_matches_the_cervix_protocol() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let r = ReferenceTable::load(&root.join("configs/reference/wei2025-table3-manual.toml"))
            .unwrap();
        assert_eq!(r.entries.len(), 12);
        let proto =
            tps_api::protocol::Protocol::load(&root.join("configs/protocols/cervix.toml")).unwrap();
        let ev = crate::ProtocolEvaluator::from_protocol(&proto).unwrap();
        for e in &r.entries {
            assert!(ev.metrics().any(|m| m == &e.metric), "{}", e.metric);
        }
    }
}
