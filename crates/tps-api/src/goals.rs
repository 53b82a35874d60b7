//! Clinical goals: the dose-volume criteria a site's plans are judged by, as a protocol's
//! `[[clinical-goals]]` lists them (the clinical-goals list of a commercial TPS).
//!
//! A goal names a structure, a quantity (`D95%`, `D0.1cc`, `Dmean`, `V30Gy`), a bound
//! (`at-most-cgy`, `at-least-cgy`, or for a V quantity `at-most-percent`, `at-least-percent`,
//! `at-most-cc`, `at-least-cc`), a priority (`must` or `should`) and an optional tolerance in
//! the bound's unit. A goal is **met** when its value satisfies the bound, **within tolerance**
//! when it misses the bound by no more than the tolerance (acceptable, and said so), and
//! **failed** otherwise. A point maximum depends on the voxel size, so a maximum is written as
//! the dose to a small volume (`D0.03cc` or `D0.1cc`); `Dmax` and `Dmin` are refused with that
//! hint.
//!
//! Values are read from the plan's dose on the CT grid with the DVH convention of
//! [`crate::dose_volume`] (the one the evaluation crate uses), so a goal's value is the value
//! the metric tables print for the same quantity.

use serde::{Deserialize, Serialize};

use crate::dose::Dose;
use crate::dose_volume::{dose_at_fraction, doses_in, sort_hottest_first};
use crate::error::{Error, Result};
use crate::metric::DoseMetric;
use crate::patient::Patient;
use crate::structure::Role;

/// How much a goal matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    /// A plan that misses it is not acceptable; with goal termination the loop goes on.
    Must,
    /// Desirable; reported, never stops the loop.
    Should,
}

impl Priority {
    /// Word for tables and prompts.
    pub fn word(self) -> &'static str {
        match self {
            Priority::Must => "must",
            Priority::Should => "should",
        }
    }
}

/// Unit of a goal's value and bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GoalUnit {
    /// Centigray (D and mean quantities).
    Cgy,
    /// Percent of the structure's volume (V quantities).
    Percent,
    /// Cubic centimetres (V quantities).
    Cc,
}

impl GoalUnit {
    /// Label for tables.
    pub fn label(self) -> &'static str {
        match self {
            GoalUnit::Cgy => "cGy",
            GoalUnit::Percent => "%",
            GoalUnit::Cc => "cc",
        }
    }
}

/// What a goal measures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum GoalQuantity {
    /// Dose to at least this percentage of the volume, cGy.
    DosePercent {
        /// Volume, %.
        percent: f64,
    },
    /// Dose to at least this many cc, cGy (a near-maximum for a small volume).
    DoseCc {
        /// Volume, cc.
        cc: f64,
    },
    /// Mean dose, cGy.
    Mean,
    /// Volume receiving at least this dose, in the goal's unit (% or cc).
    Volume {
        /// Dose level, cGy.
        dose_cgy: f64,
    },
}

impl std::fmt::Display for GoalQuantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GoalQuantity::DosePercent { percent } => write!(f, "D{percent}%"),
            GoalQuantity::DoseCc { cc } => write!(f, "D{cc}cc"),
            GoalQuantity::Mean => f.write_str("Dmean"),
            GoalQuantity::Volume { dose_cgy } => write!(f, "V{}Gy", dose_cgy / 100.0),
        }
    }
}

/// A checked clinical goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClinicalGoal {
    /// Structure it judges.
    pub structure: String,
    /// What it measures.
    pub quantity: GoalQuantity,
    /// Unit of the bound and the value.
    pub unit: GoalUnit,
    /// True for an upper limit (`at-most-*`), false for a lower one.
    pub upper: bool,
    /// The bound, in `unit`.
    pub bound: f64,
    /// How far past the bound the value may be and still be acceptable, in `unit`.
    pub tolerance: f64,
    /// Must or should.
    pub priority: Priority,
}

impl ClinicalGoal {
    /// The goal in words, e.g. `Core D10% <= 2500 cGy`.
    pub fn label(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.structure,
            self.quantity,
            if self.upper { "<=" } else { ">=" },
            trim_number(self.bound),
            self.unit.label()
        )
    }

    /// Status of `value` against this goal.
    pub fn status_of(&self, value: f64) -> GoalStatus {
        let excess = if self.upper {
            value - self.bound
        } else {
            self.bound - value
        };
        if !value.is_finite() {
            GoalStatus::Failed
        } else if excess <= 0.0 {
            GoalStatus::Met
        } else if excess <= self.tolerance {
            GoalStatus::WithinTolerance
        } else {
            GoalStatus::Failed
        }
    }

    /// The goal's value for the sorted (hottest first) doses of its structure's voxels, each
    /// of `voxel_cc`.
    pub fn value_of(&self, hottest_first: &[f32], voxel_cc: f64) -> f64 {
        let n = hottest_first.len();
        if n == 0 {
            return f64::NAN;
        }
        match self.quantity {
            GoalQuantity::DosePercent { percent } => {
                dose_at_fraction(hottest_first, percent / 100.0)
            }
            GoalQuantity::DoseCc { cc } => {
                dose_at_fraction(hottest_first, cc / (n as f64 * voxel_cc))
            }
            GoalQuantity::Mean => hottest_first.iter().map(|&d| d as f64).sum::<f64>() / n as f64,
            GoalQuantity::Volume { dose_cgy } => {
                let at_least = hottest_first.partition_point(|&d| d as f64 >= dose_cgy);
                match self.unit {
                    GoalUnit::Cc => at_least as f64 * voxel_cc,
                    _ => 100.0 * at_least as f64 / n as f64,
                }
            }
        }
    }
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Where a goal's value stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GoalStatus {
    /// The bound holds.
    Met,
    /// The bound is missed by no more than the tolerance.
    WithinTolerance,
    /// The bound is missed by more than the tolerance.
    Failed,
}

impl GoalStatus {
    /// Met or within tolerance.
    pub fn passed(self) -> bool {
        self != GoalStatus::Failed
    }

    /// Word for tables.
    pub fn word(self) -> &'static str {
        match self {
            GoalStatus::Met => "met",
            GoalStatus::WithinTolerance => "within tolerance",
            GoalStatus::Failed => "FAILED",
        }
    }
}

/// A goal judged on a plan's dose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoalResult {
    /// The goal in words (`Core D10% <= 2500 cGy`).
    pub label: String,
    /// Structure.
    pub structure: String,
    /// Role of the structure on the patient.
    pub role: Role,
    /// Must or should.
    pub priority: Priority,
    /// True for an upper limit.
    pub upper: bool,
    /// The bound, in `unit`.
    pub bound: f64,
    /// The tolerance, in `unit`.
    pub tolerance: f64,
    /// Unit of value, bound and tolerance.
    pub unit: GoalUnit,
    /// The plan's value.
    pub value: f64,
    /// Met, within tolerance or failed.
    pub status: GoalStatus,
}

impl GoalResult {
    /// How far the value is inside the bound, as a fraction of the bound (negative when it
    /// misses): 0.1 for a D10 of 2250 cGy against at most 2500 cGy.
    pub fn margin(&self) -> f64 {
        let inside = if self.upper {
            self.bound - self.value
        } else {
            self.value - self.bound
        };
        inside / self.bound.abs().max(1e-9)
    }

    /// A must-goal that failed.
    pub fn must_failed(&self) -> bool {
        self.priority == Priority::Must && self.status == GoalStatus::Failed
    }
}

/// The must-goals among `results` that failed.
pub fn failed_must(results: &[GoalResult]) -> Vec<&GoalResult> {
    results.iter().filter(|g| g.must_failed()).collect()
}

/// Judges `goals` on `dose`, which must lie on the patient's CT grid; a structure the patient
/// lacks is an error naming `origin` and the goal's field, an empty structure a failed goal
/// (its value is not a number).
pub fn evaluate(
    goals: &[ClinicalGoal],
    patient: &Patient,
    dose: &Dose,
    origin: &str,
) -> Result<Vec<GoalResult>> {
    if dose.grid() != patient.grid() {
        return Err(Error::GridMismatch {
            what: format!(
                "clinical goals: the dose grid {:?} is not patient {}'s CT grid {:?}",
                dose.grid().dims,
                patient.id,
                patient.grid().dims
            ),
        });
    }
    let voxel_cc = patient.grid().voxel_volume_cc();
    let mut sorted: Vec<(String, Vec<f32>)> = Vec::new();
    let mut out = Vec::with_capacity(goals.len());
    for (n, g) in goals.iter().enumerate() {
        let s = patient.require(
            &g.structure,
            origin,
            &format!("clinical-goals[{n}].structure"),
        )?;
        let k = match sorted.iter().position(|(name, _)| name == &g.structure) {
            Some(k) => k,
            None => {
                let mut d = doses_in(dose.cgy(), &s.mask);
                sort_hottest_first(&mut d);
                sorted.push((g.structure.clone(), d));
                sorted.len() - 1
            }
        };
        let value = g.value_of(&sorted[k].1, voxel_cc);
        out.push(GoalResult {
            label: g.label(),
            structure: g.structure.clone(),
            role: s.role,
            priority: g.priority,
            upper: g.upper,
            bound: g.bound,
            tolerance: g.tolerance,
            unit: g.unit,
            value,
            status: g.status_of(value),
        });
    }
    Ok(out)
}

/// A goal as written in a protocol's `[[clinical-goals]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClinicalGoalWire {
    structure: String,
    metric: String,
    at_most_cgy: Option<f64>,
    at_least_cgy: Option<f64>,
    at_most_percent: Option<f64>,
    at_least_percent: Option<f64>,
    at_most_cc: Option<f64>,
    at_least_cc: Option<f64>,
    tolerance: Option<f64>,
    priority: Priority,
}

impl ClinicalGoalWire {
    /// Whether the goal is written as a must-goal.
    pub fn is_must(&self) -> bool {
        self.priority == Priority::Must
    }

    /// Checks a goal read from `origin` at `field` (e.g. `clinical-goals[2]`).
    pub fn check(self, origin: &str, field: &str) -> Result<ClinicalGoal> {
        let bad = |k: &str, v: String, why: String| {
            Error::invalid(origin, format!("{field}.{k}"), v, why)
        };
        if self.structure.trim().is_empty() {
            return Err(bad("structure", "\"\"".into(), "name the structure".into()));
        }
        let metric = DoseMetric::parse(self.metric.trim())
            .map_err(|why| bad("metric", format!("{:?}", self.metric), why))?;
        let quantity = match metric {
            DoseMetric::DPercent(percent) => GoalQuantity::DosePercent { percent },
            DoseMetric::DCc(cc) => GoalQuantity::DoseCc { cc },
            DoseMetric::Dmean => GoalQuantity::Mean,
            DoseMetric::VDose(dose_cgy) => GoalQuantity::Volume { dose_cgy },
            DoseMetric::Dmax | DoseMetric::Dmin => {
                return Err(bad(
                    "metric",
                    format!("{:?}", self.metric),
                    "a point maximum or minimum depends on the voxel size: write the dose to a \
                     small volume (D0.03cc or D0.1cc for a maximum, D98% or D99% for a minimum)"
                        .into(),
                ));
            }
        };
        let bounds = [
            ("at-most-cgy", self.at_most_cgy, GoalUnit::Cgy, true),
            ("at-least-cgy", self.at_least_cgy, GoalUnit::Cgy, false),
            (
                "at-most-percent",
                self.at_most_percent,
                GoalUnit::Percent,
                true,
            ),
            (
                "at-least-percent",
                self.at_least_percent,
                GoalUnit::Percent,
                false,
            ),
            ("at-most-cc", self.at_most_cc, GoalUnit::Cc, true),
            ("at-least-cc", self.at_least_cc, GoalUnit::Cc, false),
        ];
        let given: Vec<_> = bounds.iter().filter(|b| b.1.is_some()).collect();
        let (key, bound, unit, upper) = match given.as_slice() {
            [one] => (one.0, one.1.expect("given"), one.2, one.3),
            [] => {
                return Err(bad(
                    "at-most-cgy",
                    "(missing)".into(),
                    "give one bound: at-most-cgy or at-least-cgy for a dose, at-most-percent, \
                     at-least-percent, at-most-cc or at-least-cc for a V quantity"
                        .into(),
                ));
            }
            [_, second, ..] => {
                return Err(bad(
                    second.0,
                    second.1.expect("given").to_string(),
                    format!("a goal has one bound; {} is given too", given[0].0),
                ));
            }
        };
        let is_volume = matches!(quantity, GoalQuantity::Volume { .. });
        if is_volume == (unit == GoalUnit::Cgy) {
            return Err(bad(
                key,
                bound.to_string(),
                if is_volume {
                    format!(
                        "{} is a volume: bound it with at-most-percent, at-least-percent, \
                         at-most-cc or at-least-cc",
                        self.metric.trim()
                    )
                } else {
                    format!(
                        "{} is a dose: bound it with at-most-cgy or at-least-cgy",
                        self.metric.trim()
                    )
                },
            ));
        }
        let limit = match unit {
            GoalUnit::Cgy => 20_000.0,
            GoalUnit::Percent => 100.0,
            GoalUnit::Cc => 1e5,
        };
        if !(bound.is_finite() && bound >= 0.0 && bound <= limit) {
            return Err(bad(
                key,
                bound.to_string(),
                format!("expected 0 to {limit} {}", unit.label()),
            ));
        }
        let tolerance = self.tolerance.unwrap_or(0.0);
        if !(tolerance.is_finite() && tolerance >= 0.0 && tolerance <= limit) {
            return Err(bad(
                "tolerance",
                tolerance.to_string(),
                format!(
                    "a tolerance is 0 to {limit} {} (the bound's unit)",
                    unit.label()
                ),
            ));
        }
        Ok(ClinicalGoal {
            structure: self.structure,
            quantity,
            unit,
            upper,
            bound,
            tolerance,
            priority: self.priority,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::structure::{Mask, Structure};

    fn goal(text: &str) -> Result<ClinicalGoal> {
        let w: ClinicalGoalWire = toml::from_str(text)
            .map_err(|e| Error::invalid("p.toml", "clinical-goals[0]", "", e.to_string()))?;
        w.check("p.toml", "clinical-goals[0]")
    }

    /// A 10 x 10 x 10 grid of 2 mm voxels (8 mm^3 = 0.008 cc each) with a cube of 1000 voxels
    /// whose doses are 1..=1000 cGy.
    fn ramp() -> (Patient, Dose) {
        let g = Grid::new([10, 10, 10], [2.0; 3], [0.0; 3]).unwrap();
        let mut p = Patient::new("t", g, vec![0; 1000]).unwrap();
        p.add_structure(Structure::new(
            "Core",
            Role::Oar,
            Mask::from_vec(g, vec![true; 1000]).unwrap(),
        ))
        .unwrap();
        let dose = Dose::new(g, (1..=1000).map(|v| v as f32).collect()).unwrap();
        (p, dose)
    }

    #[test]
    fn values_follow_the_dvh_convention() {
        let (p, dose) = ramp();
        let goals = [
            "structure = \"Core\"\nmetric = \"D10%\"\nat-most-cgy = 950.0\npriority = \"must\"",
            "structure = \"Core\"\nmetric = \"D0.8cc\"\nat-most-cgy = 880.0\npriority = \"should\"\ntolerance = 30.0",
            "structure = \"Core\"\nmetric = \"Dmean\"\nat-least-cgy = 600.0\npriority = \"must\"",
            "structure = \"Core\"\nmetric = \"V30Gy\"\nat-most-percent = 70.0\npriority = \"must\"",
            "structure = \"Core\"\nmetric = \"V3Gy\"\nat-least-cc = 8.0\npriority = \"must\"",
        ]
        .map(|t| goal(t).unwrap());
        let r = evaluate(&goals, &p, &dose, "p.toml").unwrap();
        // D10%: 100 voxels of 1000 receive at least 901 cGy.
        assert_eq!(r[0].value, 901.0);
        assert_eq!(r[0].status, GoalStatus::Met);
        assert_eq!(r[0].label, "Core D10% <= 950 cGy");
        assert!((r[0].margin() - 49.0 / 950.0).abs() < 1e-12);
        // D0.8cc = 100 voxels: 901 cGy, 21 over 880 but within the 30 cGy tolerance.
        assert_eq!(r[1].value, 901.0);
        assert_eq!(r[1].status, GoalStatus::WithinTolerance);
        assert!(r[1].status.passed());
        // Mean of 1..=1000 is 500.5 < 600: a failed lower limit.
        assert_eq!(r[2].value, 500.5);
        assert_eq!(r[2].status, GoalStatus::Failed);
        assert!(r[2].must_failed());
        // V30Gy: 3000 cGy is above every voxel, 0 %.
        assert_eq!(r[3].value, 0.0);
        // V3Gy in cc: 701 voxels (300..=1000) of 0.008 cc.
        assert!((r[4].value - 701.0 * 0.008).abs() < 1e-9, "{}", r[4].value);
        assert_eq!(r[4].status, GoalStatus::Failed);
    }

    #[test]
    fn a_single_hot_voxel_registers_in_a_small_volume_maximum() {
        let (p, mut dose) = ramp();
        // One voxel (0.008 cc) at 5000 cGy: D0.008cc reads it, D10% does not.
        dose.cgy_mut()[0] = 5000.0;
        let goals = [
            goal("structure = \"Core\"\nmetric = \"D0.008cc\"\nat-most-cgy = 1100.0\npriority = \"must\"").unwrap(),
            goal("structure = \"Core\"\nmetric = \"D10%\"\nat-most-cgy = 1100.0\npriority = \"must\"").unwrap(),
        ];
        let r = evaluate(&goals, &p, &dose, "p.toml").unwrap();
        assert_eq!(r[0].value, 5000.0);
        assert_eq!(r[0].status, GoalStatus::Failed);
        assert_eq!(r[1].status, GoalStatus::Met);
    }

    #[test]
    fn unknown_structures_name_the_goal() {
        let (p, dose) = ramp();
        let g = goal(
            "structure = \"Cord\"\nmetric = \"D0.1cc\"\nat-most-cgy = 2000.0\npriority = \"must\"",
        )
        .unwrap();
        let e = evaluate(&[g], &p, &dose, "site.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("site.toml")
                && e.contains("clinical-goals[0].structure")
                && e.contains("Core"),
            "{e}"
        );
    }

    #[test]
    fn bad_goals_name_the_field_and_value() {
        let base = "structure = \"Core\"\npriority = \"must\"\n";
        let cases = [
            (
                "metric = \"Dmax\"\nat-most-cgy = 1.0",
                "clinical-goals[0].metric",
                "D0.03cc",
            ),
            (
                "metric = \"D10%\"\nat-most-percent = 1.0",
                "clinical-goals[0].at-most-percent",
                "is a dose",
            ),
            (
                "metric = \"V20Gy\"\nat-most-cgy = 1.0",
                "clinical-goals[0].at-most-cgy",
                "is a volume",
            ),
            ("metric = \"D10%\"", "at-most-cgy", "give one bound"),
            (
                "metric = \"D10%\"\nat-most-cgy = 1.0\nat-least-cgy = 2.0",
                "clinical-goals[0].at-least-cgy",
                "one bound",
            ),
            (
                "metric = \"V20Gy\"\nat-most-percent = 120.0",
                "at-most-percent",
                "0 to 100",
            ),
            (
                "metric = \"D10%\"\nat-most-cgy = 2500.0\ntolerance = -5.0",
                "clinical-goals[0].tolerance",
                "-5",
            ),
            (
                "metric = \"D1O%\"\nat-most-cgy = 2500.0",
                "clinical-goals[0].metric",
                "D1O%",
            ),
        ];
        for (extra, field, why) in cases {
            let e = goal(&format!("{base}{extra}")).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(why), "{extra}: {e}");
        }
        let e =
            goal("structure = \"Core\"\nmetric = \"D10%\"\nat-most-cgy = 1.0\npriority = \"may\"")
                .unwrap_err()
                .to_string();
        assert!(e.contains("may"), "{e}");
    }
}
