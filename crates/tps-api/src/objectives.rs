//! Plan objectives and their constraint target values.
//!
//! Each objective constrains the dose in one structure with a dose goal (cGy) and a weight.
//! Its **constraint target value** is a dimensionless penalty: the mean over the structure's
//! voxels of the squared relative excess of the dose past the goal, counting only the voxels
//! that violate the objective,
//!
//! ```text
//! max dose         v = (1/N) sum_i max(0, d_i - G)^2 / G^2
//! min dose         v = (1/N) sum_i max(0, G - d_i)^2 / G^2
//! mean (upper)     v = max(0, mean(d) - G)^2 / G^2
//! DVH at most V%   v = (1/N) sum over voxels above G beyond the hottest V% of (d_i - G)^2 / G^2
//! DVH at least V%  v = (1/N) sum over the hottest V% of voxels below G of (G - d_i)^2 / G^2
//! ```
//!
//! so it is exactly 0 when the objective holds and grows with the squared relative excess: a
//! mean-dose goal 5 % below the achieved mean gives (0.05 / 0.95)^2 = 2.8e-3. The study's ideal
//! ranges (1e-4 to 1e-2, and 1e-2 to 5e-2 for bladder, rectum and small intestine) then mean
//! root-mean-square relative excesses of 1-10 % and 10-22 %. The DVH forms are the usual
//! dose-volume penalties of inverse planning (Wu and Mohan, Med Phys 27:701, 2000). The
//! optimizer minimizes the weighted sum of the same values, so the value the advisor reads is
//! the quantity the optimizer trades.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest objective weight (the study's largest is 1000).
pub const MAX_WEIGHT: f64 = 1e6;

/// What an objective constrains.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ObjectiveKind {
    /// No voxel above the goal.
    MaxDose,
    /// No voxel below the goal.
    MinDose,
    /// Mean dose at most the goal.
    MeanDose,
    /// At most `volume_percent` of the structure above the goal.
    DvhMax {
        /// Allowed percentage of the volume above the goal.
        volume_percent: f64,
    },
    /// At least `volume_percent` of the structure at or above the goal.
    DvhMin {
        /// Required percentage of the volume at or above the goal.
        volume_percent: f64,
    },
}

impl ObjectiveKind {
    /// Short name used in reports and prompts.
    pub fn label(&self) -> String {
        match self {
            ObjectiveKind::MaxDose => "max dose".into(),
            ObjectiveKind::MinDose => "min dose".into(),
            ObjectiveKind::MeanDose => "mean dose".into(),
            ObjectiveKind::DvhMax { volume_percent } => {
                format!("DVH: at most {volume_percent}% above")
            }
            ObjectiveKind::DvhMin { volume_percent } => {
                format!("DVH: at least {volume_percent}% at or above")
            }
        }
    }
}

/// Objective type as written in a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindWire {
    /// `max-dose`.
    MaxDose,
    /// `min-dose`.
    MinDose,
    /// `mean-dose`.
    MeanDose,
    /// `dvh-max`: at most `volume-percent` above the goal.
    DvhMax,
    /// `dvh-min`: at least `volume-percent` at or above the goal.
    DvhMin,
}

/// An objective as written in a protocol's `[[objectives]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ObjectiveWire {
    id: String,
    structure: String,
    #[serde(rename = "type")]
    kind: KindWire,
    weight: f64,
    goal_cgy: f64,
    volume_percent: Option<f64>,
    ideal_range: [f64; 2],
}

/// A checked objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// Unique id within the protocol, e.g. `bladder-mean`.
    pub id: String,
    /// Structure it constrains.
    pub structure: String,
    /// What it constrains.
    pub kind: ObjectiveKind,
    /// Weight in the optimizer's sum (fixed during planning, as in the study).
    pub weight: f64,
    /// Dose goal, cGy (what the advisor adjusts).
    pub goal_cgy: f64,
    /// Range of constraint target values considered ideal, `[low, high]`.
    pub ideal_range: [f64; 2],
}

impl ObjectiveWire {
    /// Checks an objective read from `origin` at `field` (e.g. `objectives[3]`).
    pub fn check(self, origin: &str, field: &str) -> Result<Objective> {
        let f = |k: &str| format!("{field}.{k}");
        let bad = |k: &str, v: String, why: &str| Error::invalid(origin, f(k), v, why);
        if self.id.trim().is_empty() {
            return Err(bad("id", "\"\"".into(), "every objective needs an id"));
        }
        if self.structure.trim().is_empty() {
            return Err(bad("structure", "\"\"".into(), "name the structure"));
        }
        if !(0.0..=MAX_WEIGHT).contains(&self.weight) {
            return Err(bad(
                "weight",
                self.weight.to_string(),
                &format!("weights must be 0 to {MAX_WEIGHT}"),
            ));
        }
        if !(self.goal_cgy.is_finite() && self.goal_cgy > 0.0 && self.goal_cgy <= 20_000.0) {
            return Err(bad(
                "goal-cgy",
                self.goal_cgy.to_string(),
                "goals must be positive doses in cGy (at most 20000)",
            ));
        }
        let [lo, hi] = self.ideal_range;
        if !(lo >= 0.0 && lo <= hi && hi <= 1.0) {
            return Err(bad(
                "ideal-range",
                format!("[{lo}, {hi}]"),
                "expected [low, high] with 0 <= low <= high <= 1 (a value of 1 is a dose \
                 twice its goal)",
            ));
        }
        let volume = |v: Option<f64>| -> Result<f64> {
            match v {
                Some(v) if v > 0.0 && v < 100.0 => Ok(v),
                Some(v) => Err(bad(
                    "volume-percent",
                    v.to_string(),
                    "a DVH volume must lie strictly between 0 and 100 %",
                )),
                None => Err(bad(
                    "volume-percent",
                    "(missing)".into(),
                    "DVH objectives need a volume",
                )),
            }
        };
        let kind = match self.kind {
            KindWire::MaxDose | KindWire::MinDose | KindWire::MeanDose => {
                if let Some(v) = self.volume_percent {
                    return Err(bad(
                        "volume-percent",
                        v.to_string(),
                        "only DVH objectives take a volume",
                    ));
                }
                match self.kind {
                    KindWire::MaxDose => ObjectiveKind::MaxDose,
                    KindWire::MinDose => ObjectiveKind::MinDose,
                    _ => ObjectiveKind::MeanDose,
                }
            }
            KindWire::DvhMax => ObjectiveKind::DvhMax {
                volume_percent: volume(self.volume_percent)?,
            },
            KindWire::DvhMin => ObjectiveKind::DvhMin {
                volume_percent: volume(self.volume_percent)?,
            },
        };
        Ok(Objective {
            id: self.id,
            structure: self.structure,
            kind,
            weight: self.weight,
            goal_cgy: self.goal_cgy,
            ideal_range: self.ideal_range,
        })
    }
}

/// Constraint target value of an objective for the doses (cGy) of its structure's voxels, and
/// optionally its gradient with respect to each voxel dose (written into `grad`, same length).
pub fn constraint_value(
    kind: &ObjectiveKind,
    goal_cgy: f64,
    doses: &[f32],
    grad: Option<&mut [f64]>,
) -> f64 {
    let n = doses.len();
    if n == 0 {
        return 0.0;
    }
    let g2 = goal_cgy * goal_cgy;
    let nf = n as f64;
    let mut grad = grad;
    if let Some(g) = grad.as_deref_mut() {
        g.iter_mut().for_each(|v| *v = 0.0);
    }
    match kind {
        ObjectiveKind::MaxDose | ObjectiveKind::MinDose => {
            let upper = matches!(kind, ObjectiveKind::MaxDose);
            let mut v = 0.0;
            for (i, &d) in doses.iter().enumerate() {
                let e = if upper {
                    d as f64 - goal_cgy
                } else {
                    goal_cgy - d as f64
                };
                if e > 0.0 {
                    v += e * e;
                    if let Some(g) = grad.as_deref_mut() {
                        g[i] = if upper { 2.0 * e } else { -2.0 * e } / (nf * g2);
                    }
                }
            }
            v / (nf * g2)
        }
        ObjectiveKind::MeanDose => {
            let mean = doses.iter().map(|&d| d as f64).sum::<f64>() / nf;
            let e = mean - goal_cgy;
            if e <= 0.0 {
                return 0.0;
            }
            if let Some(g) = grad.as_deref_mut() {
                g.iter_mut().for_each(|v| *v = 2.0 * e / (nf * g2));
            }
            e * e / g2
        }
        ObjectiveKind::DvhMax { volume_percent } | ObjectiveKind::DvhMin { volume_percent } => {
            let upper = matches!(kind, ObjectiveKind::DvhMax { .. });
            // Voxels ordered hottest first; the first `k` may exceed the goal (DvhMax) or must
            // reach it (DvhMin).
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_unstable_by(|&a, &b| doses[b].total_cmp(&doses[a]));
            let k = ((volume_percent / 100.0) * nf).round() as usize;
            let mut v = 0.0;
            let range: Box<dyn Iterator<Item = &usize>> = if upper {
                Box::new(order[k.min(n)..].iter())
            } else {
                Box::new(order[..k.min(n)].iter())
            };
            for &i in range {
                let d = doses[i] as f64;
                let e = if upper { d - goal_cgy } else { goal_cgy - d };
                if e > 0.0 {
                    v += e * e;
                    if let Some(g) = grad.as_deref_mut() {
                        g[i] = if upper { 2.0 * e } else { -2.0 * e } / (nf * g2);
                    }
                }
            }
            v / (nf * g2)
        }
    }
}

/// Where a constraint target value stands against its ideal range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RangeStatus {
    /// Below the range: the objective is not limiting; its goal can be tightened.
    Below,
    /// Inside the range.
    Inside,
    /// Above the range: the objective is violated too much; its goal should be relaxed.
    Above,
}

/// Classifies `value` against `range` (inclusive).
pub fn range_status(value: f64, range: [f64; 2]) -> RangeStatus {
    if value < range[0] {
        RangeStatus::Below
    } else if value > range[1] {
        RangeStatus::Above
    } else {
        RangeStatus::Inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_goal_five_percent_below_the_mean() {
        let doses = vec![2900.0f32, 3100.0, 3000.0, 3000.0];
        let goal = 0.95 * 3000.0;
        let v = constraint_value(&ObjectiveKind::MeanDose, goal, &doses, None);
        assert!((v - (0.05f64 / 0.95).powi(2)).abs() < 1e-12, "{v}");
        assert!((v - 2.5e-3).abs() < 5e-4, "about 2.5e-3: {v}");
        // Satisfied: exactly zero.
        assert_eq!(
            constraint_value(&ObjectiveKind::MeanDose, 3001.0, &doses, None),
            0.0
        );
        assert_eq!(
            constraint_value(&ObjectiveKind::MaxDose, 3100.0, &doses, None),
            0.0
        );
        assert_eq!(
            constraint_value(&ObjectiveKind::MinDose, 2900.0, &doses, None),
            0.0
        );
        assert_eq!(
            constraint_value(
                &ObjectiveKind::DvhMin {
                    volume_percent: 99.0
                },
                2900.0,
                &doses,
                None
            ),
            0.0
        );
        assert_eq!(
            constraint_value(
                &ObjectiveKind::DvhMax {
                    volume_percent: 25.0
                },
                3000.0,
                &doses,
                None
            ),
            0.0
        );
    }

    #[test]
    fn dvh_objectives_count_only_the_violating_voxels() {
        // 10 voxels 3500..3950; at most 20 % above 3600: the two hottest are allowed, the rest
        // above 3600 (3650..3750) violate.
        let doses: Vec<f32> = (0..10).map(|i| 3500.0 + 50.0 * i as f32).collect();
        let v = constraint_value(
            &ObjectiveKind::DvhMax {
                volume_percent: 20.0,
            },
            3600.0,
            &doses,
            None,
        );
        let expected = [50.0f64, 100.0, 150.0, 200.0, 250.0]
            .iter()
            .map(|e| e * e)
            .sum::<f64>()
            / (10.0 * 3600.0f64.powi(2));
        assert!((v - expected).abs() < 1e-15, "{v} vs {expected}");
        // At least 90 % at or above 3600: the hottest nine must reach 3600; two of them do not.
        let v = constraint_value(
            &ObjectiveKind::DvhMin {
                volume_percent: 90.0,
            },
            3600.0,
            &doses,
            None,
        );
        let expected = (50.0f64 * 50.0) / (10.0 * 3600.0f64.powi(2));
        assert!((v - expected).abs() < 1e-15, "{v}");
    }

    #[test]
    fn gradients_match_finite_differences() {
        let doses: Vec<f32> = (0..40).map(|i| 3400.0 + 13.0 * i as f32).collect();
        for kind in [
            ObjectiveKind::MaxDose,
            ObjectiveKind::MinDose,
            ObjectiveKind::MeanDose,
            ObjectiveKind::DvhMax {
                volume_percent: 30.0,
            },
            ObjectiveKind::DvhMin {
                volume_percent: 95.0,
            },
        ] {
            let goal = 3700.0;
            let mut g = vec![0.0; doses.len()];
            constraint_value(&kind, goal, &doses, Some(&mut g));
            for i in [0usize, 7, 20, 39] {
                let h = 0.25f32;
                let mut up = doses.clone();
                up[i] += h;
                let mut dn = doses.clone();
                dn[i] -= h;
                let fd = (constraint_value(&kind, goal, &up, None)
                    - constraint_value(&kind, goal, &dn, None))
                    / (2.0 * h as f64);
                assert!(
                    (fd - g[i]).abs() <= 1e-6 * g[i].abs().max(1e-9) + 1e-12,
                    "{kind:?} voxel {i}: {fd} vs {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn bad_objectives_name_the_field() {
        let parse = |extra: &str| -> Result<Objective> {
            let text = format!(
                "id = \"b\"\nstructure = \"Bladder\"\ntype = \"mean-dose\"\nweight = 5.0\ngoal-cgy = 3000.0\nideal-range = [0.01, 0.05]\n{extra}"
            );
            let w: ObjectiveWire = toml::from_str(&text)
                .map_err(|e| Error::invalid("p.toml", "objectives[0]", "", e.to_string()))?;
            w.check("p.toml", "objectives[0]")
        };
        assert!(parse("").is_ok());
        let e = parse("volume-percent = 50.0").unwrap_err().to_string();
        assert!(
            e.contains("objectives[0].volume-percent") && e.contains("only DVH"),
            "{e}"
        );
        let w = |t: &str| -> String {
            let w: ObjectiveWire = toml::from_str(t).unwrap();
            w.check("p.toml", "objectives[2]").unwrap_err().to_string()
        };
        let base = "id = \"x\"\nstructure = \"PTV\"\ntype = \"dvh-min\"\nweight = 100.0\ngoal-cgy = 3770.0\nideal-range = [0.0001, 0.01]\n";
        assert!(
            w(&format!("{base}volume-percent = 120.0")).contains("objectives[2].volume-percent")
        );
        assert!(w(base).contains("missing"));
        assert!(
            w(&base
                .replace("weight = 100.0", "weight = -1.0")
                .replace("dvh-min", "max-dose"))
            .contains("objectives[2].weight")
        );
        assert!(
            w(&base
                .replace("goal-cgy = 3770.0", "goal-cgy = 0.0")
                .replace("dvh-min", "max-dose"))
            .contains("objectives[2].goal-cgy")
        );
        assert!(
            w(&base
                .replace("goal-cgy = 3770.0", "goal-cgy = nan")
                .replace("dvh-min", "max-dose"))
            .contains("NaN")
        );
        assert!(
            w(&base
                .replace("[0.0001, 0.01]", "[0.01, 0.0001]")
                .replace("dvh-min", "max-dose"))
            .contains("ideal-range")
        );
    }
}
