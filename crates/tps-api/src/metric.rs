//! Metric names as protocols write them: `PTV: D98`, `SpinalCord: D0.1cc`, `Bladder: Dmean`,
//! `Rectum: V3000cGy`, `CI`, `HI`, `MU`.

use std::fmt;

use crate::error::{Error, Result};

/// What to measure in one structure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DoseMetric {
    /// Hottest voxel.
    Dmax,
    /// Coldest voxel.
    Dmin,
    /// Mean dose.
    Dmean,
    /// Dose to at least this percentage of the volume.
    DPercent(f64),
    /// Dose to at least this many cc.
    DCc(f64),
    /// Percentage of the volume receiving at least this dose (cGy).
    VDose(f64),
}

/// One metric of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// A dose-volume metric of a named structure.
    Structure {
        /// The structure.
        name: String,
        /// The metric.
        metric: DoseMetric,
    },
    /// Paddick conformity index of the prescription target at the prescription isodose.
    Ci,
    /// Homogeneity index `(D2 - D98) / D50` of the prescription target.
    Hi,
    /// Monitor units per fraction.
    Mu,
}

/// Unit of a metric value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Centigray.
    Cgy,
    /// Percent of a volume.
    Percent,
    /// Dimensionless index.
    Index,
    /// Monitor units.
    Mu,
}

impl Unit {
    /// Short label for table headers.
    pub fn label(self) -> &'static str {
        match self {
            Unit::Cgy => "cGy",
            Unit::Percent => "%",
            Unit::Index => "",
            Unit::Mu => "MU",
        }
    }
}

impl Metric {
    /// Parses `STRUCTURE: METRIC` or a plan-level `CI`, `HI`, `MU`. `origin` names the file and
    /// field for messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadMetric {
            origin: origin.to_string(),
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let t = text.trim();
        match t {
            "CI" => return Ok(Metric::Ci),
            "HI" => return Ok(Metric::Hi),
            "MU" => return Ok(Metric::Mu),
            _ => {}
        }
        let Some((name, m)) = t.split_once(':') else {
            return Err(bad(
                "expected `STRUCTURE: METRIC` (e.g. `PTV: D98`) or one of CI, HI, MU",
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("the structure name is empty"));
        }
        let metric = DoseMetric::parse(m.trim()).map_err(|r| bad(&r))?;
        Ok(Metric::Structure {
            name: name.to_string(),
            metric,
        })
    }

    /// Unit of the value.
    pub fn unit(&self) -> Unit {
        match self {
            Metric::Structure {
                metric: DoseMetric::VDose(_),
                ..
            } => Unit::Percent,
            Metric::Structure { .. } => Unit::Cgy,
            Metric::Ci | Metric::Hi => Unit::Index,
            Metric::Mu => Unit::Mu,
        }
    }
}

fn number(s: &str, what: &str) -> std::result::Result<f64, String> {
    // Only plain decimals: `D1O0` (letter O) or `D1e2` must not slip through.
    if s.is_empty()
        || !s.chars().all(|c| c.is_ascii_digit() || c == '.')
        || s.matches('.').count() > 1
    {
        return Err(format!("`{s}` is not a plain decimal number ({what})"));
    }
    s.parse::<f64>()
        .map_err(|_| format!("`{s}` is not a number ({what})"))
}

impl DoseMetric {
    /// Parses a structure metric as protocols write it after the colon (`D98`, `D0.1cc`,
    /// `Dmean`, `V30Gy`); the error says what was expected.
    pub fn parse(m: &str) -> std::result::Result<DoseMetric, String> {
        parse_dose_metric(m)
    }
}

fn parse_dose_metric(m: &str) -> std::result::Result<DoseMetric, String> {
    match m {
        "Dmax" => return Ok(DoseMetric::Dmax),
        "Dmin" => return Ok(DoseMetric::Dmin),
        "Dmean" => return Ok(DoseMetric::Dmean),
        _ => {}
    }
    if let Some(rest) = m.strip_prefix('D') {
        if let Some(cc) = rest.strip_suffix("cc") {
            let v = number(cc, "volume in cc")?;
            if v <= 0.0 {
                return Err("the volume must be positive".into());
            }
            return Ok(DoseMetric::DCc(v));
        }
        let rest = rest.strip_suffix('%').unwrap_or(rest);
        let v = number(rest, "volume percentage")?;
        if !(v > 0.0 && v <= 100.0) {
            return Err(format!("the percentage {v} is outside (0, 100]"));
        }
        return Ok(DoseMetric::DPercent(v));
    }
    if let Some(rest) = m.strip_prefix('V') {
        let (num, scale) = if let Some(n) = rest.strip_suffix("cGy") {
            (n, 1.0)
        } else if let Some(n) = rest.strip_suffix("Gy") {
            (n, 100.0)
        } else {
            return Err("a V metric needs a unit: V3000cGy or V30Gy".into());
        };
        let v = number(num, "dose")?;
        return Ok(DoseMetric::VDose(v * scale));
    }
    Err("expected Dmax, Dmin, Dmean, D<percent>, D<cc>cc or V<dose>Gy/cGy".into())
}

impl fmt::Display for DoseMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DoseMetric::Dmax => f.write_str("Dmax"),
            DoseMetric::Dmin => f.write_str("Dmin"),
            DoseMetric::Dmean => f.write_str("Dmean"),
            DoseMetric::DPercent(v) => write!(f, "D{v}"),
            DoseMetric::DCc(v) => write!(f, "D{v}cc"),
            DoseMetric::VDose(v) => write!(f, "V{v}cGy"),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Structure { name, metric } => write!(f, "{name} {metric}"),
            Metric::Ci => f.write_str("CI"),
            Metric::Hi => f.write_str("HI"),
            Metric::Mu => f.write_str("MU"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_study_metrics() {
        let p = |s| Metric::parse(s, "t").unwrap();
        assert_eq!(
            p("PTV: D98"),
            Metric::Structure {
                name: "PTV".into(),
                metric: DoseMetric::DPercent(98.0)
            }
        );
        assert_eq!(p("SpinalCord: D0.1cc").to_string(), "SpinalCord D0.1cc");
        assert_eq!(p("Bladder: Dmean").unwrap_unit(), Unit::Cgy);
        assert_eq!(
            p("Rectum: V30Gy"),
            Metric::Structure {
                name: "Rectum".into(),
                metric: DoseMetric::VDose(3000.0)
            }
        );
        assert_eq!(p(" CI "), Metric::Ci);
        assert_eq!(p("Femur_Head_L: D5%").to_string(), "Femur_Head_L D5");
    }

    trait U {
        fn unwrap_unit(&self) -> Unit;
    }
    impl U for Metric {
        fn unwrap_unit(&self) -> Unit {
            self.unit()
        }
    }

    #[test]
    fn malformed_metrics_are_refused_with_origin() {
        for bad in [
            "PTV: D1O0",
            "PTV: D101",
            "PTV: D0",
            "PTV D98",
            ": D98",
            "PTV: Dx",
            "PTV: V30",
            "PTV: D1e2",
            "PTV: D0cc",
            "XI",
            "PTV: D9.8.1",
        ] {
            let e = Metric::parse(bad, "proto.toml: evaluation.metrics[3]")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("proto.toml: evaluation.metrics[3]") && e.contains(bad.trim()),
                "{bad}: {e}"
            );
        }
    }
}
