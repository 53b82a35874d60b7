//! Plan objectives and their constraint target values.
//!
//! Each objective constrains the dose in one structure with a dose goal (cGy) and a weight.
//! Its **constraint target value** is a dimensionless penalty: a mean of the squared relative
//! excess of the dose past the goal, counting only the voxels that violate the objective,
//!
//! ```text
//! max dose         v = (1/K) sum over the hottest K voxels of max(0, d_i - G)^2 / G^2
//! min dose         v = (1/K) sum over the coldest K voxels of max(0, G - d_i)^2 / G^2
//! mean (upper)     v = max(0, mean(d) - G)^2 / G^2
//! DVH at most V%   v = (1/N) sum over voxels above G beyond the hottest V% of (d_i - G)^2 / G^2
//! DVH at least V%  v = (1/N) sum over the hottest V% of voxels below G of (G - d_i)^2 / G^2
//! gEUD (upper)     v = max(0, gEUD_a(d) - G)^2 / G^2,  gEUD_a(d) = ((1/N) sum_i d_i^a)^(1/a)
//! fall-off         v = (1/K) sum over the K largest of max(0, d_i - L(r_i))^2 / G^2,
//!                  L(r) = G (f + (1 - f) exp(-r / λ))
//! ```
//!
//! with `K` the hottest (coldest; for a fall-off, most exceeding) 2 % of the voxels, at least
//! one ([`EXTREME_PERCENT`]: the near-maximum and near-minimum of ICRU Report 83). A max-dose
//! goal is about the hottest voxels, so its value is too: averaged over the whole structure, a hot spot in a spinal cord
//! or at the inner edge of a ring would weigh almost nothing against the many voxels far below
//! the goal. When every voxel exceeds the goal by the same amount the two definitions agree,
//! so the ideal ranges keep their meaning: a root-mean-square relative excess, now over the
//! near-maximum volume.
//!
//! The generalized equivalent uniform dose (Niemierko, Med Phys 26:1100, 1999) with `a >= 1`
//! runs from the mean dose (`a = 1`) towards the maximum (`a` large): serial organs take large
//! `a` (8-20), parallel ones small. The fall-off objective limits the dose in a structure
//! around the target (the body, a ring) by each voxel's distance `r_i` from the prescription
//! target: the goal `G` at the target's edge, falling exponentially with length `λ`
//! (`fall-off-mm`) towards the fraction `f` (`end-percent`) of it far away, in the manner of
//! the normal-tissue objectives of commercial planning systems. Both read 0 when they hold and
//! share the other kinds' scale: a gEUD 5 % above its goal gives 2.5e-3.
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
    /// Generalized equivalent uniform dose with exponent `a` at most the goal.
    Geud {
        /// The exponent, 1 (mean dose) to 100 (close to the maximum).
        a: f64,
    },
    /// No voxel above the goal scaled by its distance from the prescription target: the goal
    /// at the target's edge, falling exponentially towards `end_percent` of it.
    FallOff {
        /// Percentage of the goal allowed far from the target.
        end_percent: f64,
        /// E-folding length of the fall-off, mm.
        fall_off_mm: f64,
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
            ObjectiveKind::Geud { a } => format!("gEUD (a = {a})"),
            ObjectiveKind::FallOff {
                end_percent,
                fall_off_mm,
            } => format!("fall-off ({fall_off_mm} mm to {end_percent}%)"),
        }
    }

    /// Whether the objective needs each voxel's distance from the prescription target.
    pub fn needs_distances(&self) -> bool {
        matches!(self, ObjectiveKind::FallOff { .. })
    }
}

/// The percentage of a structure's voxels, hottest for a max-dose objective and coldest for a
/// min-dose one, over which their constraint target value is taken: the near-maximum and
/// near-minimum volume of ICRU Report 83 (2010, section 3.7: D2% and D98%).
pub const EXTREME_PERCENT: f64 = 2.0;

/// How many of `n` voxels a max- or min-dose objective counts: [`EXTREME_PERCENT`] of them,
/// rounded up, and at least one.
pub fn extreme_count(n: usize) -> usize {
    ((EXTREME_PERCENT / 100.0 * n as f64).ceil() as usize).clamp(1, n.max(1))
}

/// The dose allowed at `r_mm` from the target by a fall-off objective with goal `goal_cgy`.
pub fn fall_off_limit(goal_cgy: f64, end_percent: f64, fall_off_mm: f64, r_mm: f64) -> f64 {
    let f = end_percent / 100.0;
    goal_cgy * (f + (1.0 - f) * (-r_mm.max(0.0) / fall_off_mm).exp())
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
    /// `geud`: gEUD with exponent `a` at most the goal.
    Geud,
    /// `fall-off`: dose falling off from the goal at the target's edge.
    FallOff,
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
    a: Option<f64>,
    end_percent: Option<f64>,
    fall_off_mm: Option<f64>,
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
        // Keys of one kind only; another kind's key is refused, not ignored.
        let takes: &[&str] = match self.kind {
            KindWire::MaxDose | KindWire::MinDose | KindWire::MeanDose => &[],
            KindWire::DvhMax | KindWire::DvhMin => &["volume-percent"],
            KindWire::Geud => &["a"],
            KindWire::FallOff => &["end-percent", "fall-off-mm"],
        };
        for (key, v) in [
            ("volume-percent", self.volume_percent),
            ("a", self.a),
            ("end-percent", self.end_percent),
            ("fall-off-mm", self.fall_off_mm),
        ] {
            if let Some(v) = v
                && !takes.contains(&key)
            {
                let which = match key {
                    "volume-percent" => "only DVH objectives take a volume",
                    "a" => "only gEUD objectives take an exponent a",
                    _ => "only fall-off objectives take end-percent and fall-off-mm",
                };
                return Err(bad(key, v.to_string(), which));
            }
        }
        let within = |key: &str, v: Option<f64>, ok: fn(f64) -> bool, why: &str| match v {
            Some(v) if ok(v) => Ok(v),
            Some(v) => Err(bad(key, v.to_string(), why)),
            None => Err(bad(key, "(missing)".into(), why)),
        };
        let kind = match self.kind {
            KindWire::MaxDose => ObjectiveKind::MaxDose,
            KindWire::MinDose => ObjectiveKind::MinDose,
            KindWire::MeanDose => ObjectiveKind::MeanDose,
            KindWire::DvhMax => ObjectiveKind::DvhMax {
                volume_percent: volume(self.volume_percent)?,
            },
            KindWire::DvhMin => ObjectiveKind::DvhMin {
                volume_percent: volume(self.volume_percent)?,
            },
            KindWire::Geud => ObjectiveKind::Geud {
                a: within(
                    "a",
                    self.a,
                    |a| (1.0..=100.0).contains(&a),
                    "gEUD objectives need an exponent a from 1 (mean dose) to 100 (near the \
                     maximum); serial organs take 8-20",
                )?,
            },
            KindWire::FallOff => ObjectiveKind::FallOff {
                end_percent: within(
                    "end-percent",
                    self.end_percent,
                    |f| (0.0..100.0).contains(&f),
                    "fall-off objectives need end-percent, the dose far from the target as a \
                     percentage of the goal, in [0, 100)",
                )?,
                fall_off_mm: within(
                    "fall-off-mm",
                    self.fall_off_mm,
                    |l| l > 0.0 && l <= 200.0,
                    "fall-off objectives need fall-off-mm, the e-folding length of the fall-off, \
                     in (0, 200] mm",
                )?,
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
/// A fall-off objective reads each voxel's distance from the prescription target in
/// `distances_mm` (same length; see [`ObjectiveKind::needs_distances`]); the other kinds ignore
/// it.
///
/// # Panics
///
/// For a fall-off objective without a distance per voxel: a caller that binds objectives to
/// voxels provides them.
pub fn constraint_value(
    kind: &ObjectiveKind,
    goal_cgy: f64,
    doses: &[f32],
    distances_mm: Option<&[f32]>,
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
        ObjectiveKind::MaxDose => {
            let excess = doses.iter().map(|&d| d as f64 - goal_cgy).collect();
            extreme_excess(excess, 1.0, g2, grad)
        }
        ObjectiveKind::MinDose => {
            let excess = doses.iter().map(|&d| goal_cgy - d as f64).collect();
            extreme_excess(excess, -1.0, g2, grad)
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
        ObjectiveKind::Geud { a } => {
            let (m, dm) = geud(*a, doses);
            let e = m - goal_cgy;
            if e <= 0.0 {
                return 0.0;
            }
            if let Some(g) = grad.as_deref_mut() {
                for (gi, dmi) in g.iter_mut().zip(dm) {
                    *gi = 2.0 * e * dmi / g2;
                }
            }
            e * e / g2
        }
        ObjectiveKind::FallOff {
            end_percent,
            fall_off_mm,
        } => {
            let r = distances_mm
                .filter(|r| r.len() == n)
                .expect("a fall-off objective needs each voxel's distance from the target");
            let excess = doses
                .iter()
                .zip(r)
                .map(|(&d, &ri)| {
                    d as f64 - fall_off_limit(goal_cgy, *end_percent, *fall_off_mm, ri as f64)
                })
                .collect();
            extreme_excess(excess, 1.0, g2, grad)
        }
    }
}

/// The value of an objective that no voxel may violate, from each voxel's signed excess over
/// its limit (positive when violated): the mean squared excess over the [`extreme_count`]
/// largest excesses, relative to the goal (`g2` its square). `sign` is the derivative of the
/// excess with respect to the dose (+1 for an upper limit, -1 for a lower one); the gradient,
/// when asked for, has been zeroed by the caller.
fn extreme_excess(excess: Vec<f64>, sign: f64, g2: f64, grad: Option<&mut [f64]>) -> f64 {
    let n = excess.len();
    let k = extreme_count(n);
    let mut order: Vec<usize> = (0..n).collect();
    if k < n {
        order.select_nth_unstable_by(k - 1, |&a, &b| excess[b].total_cmp(&excess[a]));
    }
    let kf = k as f64;
    let mut v = 0.0;
    let mut grad = grad;
    for &i in &order[..k] {
        let e = excess[i];
        if e > 0.0 {
            v += e * e;
            if let Some(g) = grad.as_deref_mut() {
                g[i] = sign * 2.0 * e / (kf * g2);
            }
        }
    }
    v / (kf * g2)
}

/// `gEUD_a(doses)` and its derivative with respect to each dose, `(1/N) (d_i / gEUD)^(a - 1)`.
/// Computed on doses scaled by their maximum, so that `d^a` cannot overflow for any `a` up to
/// 100; negative doses count as 0.
pub fn geud(a: f64, doses: &[f32]) -> (f64, Vec<f64>) {
    let n = doses.len() as f64;
    let top = doses.iter().fold(0.0f64, |m, &d| m.max(d as f64));
    if doses.is_empty() || top <= 0.0 {
        return (0.0, vec![0.0; doses.len()]);
    }
    let x: Vec<f64> = doses.iter().map(|&d| (d as f64).max(0.0) / top).collect();
    let s = x.iter().map(|v| v.powf(a)).sum::<f64>() / n;
    let m = s.powf(1.0 / a);
    // d_i / gEUD = x_i / m, at most N^(1/a): its (a-1)-th power stays below N.
    let dm = x.iter().map(|v| (v / m).powf(a - 1.0) / n).collect();
    (top * m, dm)
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

impl RangeStatus {
    /// The status in the reports' words: `below`, `inside` or `above`.
    pub fn word(self) -> &'static str {
        match self {
            RangeStatus::Below => "below",
            RangeStatus::Inside => "inside",
            RangeStatus::Above => "above",
        }
    }
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
        let v = constraint_value(&ObjectiveKind::MeanDose, goal, &doses, None, None);
        assert!((v - (0.05f64 / 0.95).powi(2)).abs() < 1e-12, "{v}");
        assert!((v - 2.5e-3).abs() < 5e-4, "about 2.5e-3: {v}");
        // Satisfied: exactly zero.
        assert_eq!(
            constraint_value(&ObjectiveKind::MeanDose, 3001.0, &doses, None, None),
            0.0
        );
        assert_eq!(
            constraint_value(&ObjectiveKind::MaxDose, 3100.0, &doses, None, None),
            0.0
        );
        assert_eq!(
            constraint_value(&ObjectiveKind::MinDose, 2900.0, &doses, None, None),
            0.0
        );
        assert_eq!(
            constraint_value(
                &ObjectiveKind::DvhMin {
                    volume_percent: 99.0
                },
                2900.0,
                &doses,
                None,
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
                None,
                None
            ),
            0.0
        );
    }

    /// Max and min dose read the hottest (coldest) 2 %: one hot voxel in a thousand registers
    /// as its excess spread over 20 voxels, not over 1000; a uniform dose at the goal gives 0
    /// and a uniform excess its squared relative value, as before.
    #[test]
    fn max_and_min_dose_read_the_extreme_voxels() {
        let mut doses = vec![1800.0f32; 1000];
        assert_eq!(extreme_count(1000), 20);
        assert_eq!(extreme_count(10), 1);
        assert_eq!(extreme_count(1), 1);
        assert_eq!(
            constraint_value(&ObjectiveKind::MaxDose, 1800.0, &doses, None, None),
            0.0
        );
        doses[417] = 2400.0;
        let v = constraint_value(&ObjectiveKind::MaxDose, 2000.0, &doses, None, None);
        let want = 400.0f64.powi(2) / (20.0 * 2000.0f64.powi(2));
        assert!((v - want).abs() < 1e-15, "{v} vs {want}");
        // Inside the study's OAR range (1e-4 .. 1e-2), where a whole-structure mean would
        // read 4e-5, below it, and call for a tighter goal.
        assert_eq!(range_status(v, [1e-4, 1e-2]), RangeStatus::Inside);
        let mut g = vec![0.0; 1000];
        constraint_value(&ObjectiveKind::MaxDose, 2000.0, &doses, None, Some(&mut g));
        assert!(g[417] > 0.0 && g.iter().filter(|x| **x != 0.0).count() == 1);
        // A uniform excess of 5 %: (0.05)^2 whatever the count.
        let uniform = vec![2100.0f32; 1000];
        let v = constraint_value(&ObjectiveKind::MaxDose, 2000.0, &uniform, None, None);
        assert!((v - 0.0025).abs() < 1e-12, "{v}");
        let v = constraint_value(&ObjectiveKind::MinDose, 2100.0 / 0.95, &uniform, None, None);
        assert!((v - 0.0025).abs() < 1e-12, "{v}");
        // One cold voxel among a thousand registers for a min-dose goal the same way.
        let mut cold = vec![3700.0f32; 1000];
        cold[3] = 3300.0;
        let v = constraint_value(&ObjectiveKind::MinDose, 3600.0, &cold, None, None);
        let want = 300.0f64.powi(2) / (20.0 * 3600.0f64.powi(2));
        assert!((v - want).abs() < 1e-15, "{v} vs {want}");
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
            None,
        );
        let expected = (50.0f64 * 50.0) / (10.0 * 3600.0f64.powi(2));
        assert!((v - expected).abs() < 1e-15, "{v}");
    }

    #[test]
    fn gradients_match_finite_differences() {
        let doses: Vec<f32> = (0..40).map(|i| 3400.0 + 13.0 * i as f32).collect();
        // Distances 0..39 mm from the target, the hot voxels nearest.
        let r: Vec<f32> = (0..40).map(|i| (39 - i) as f32).collect();
        for kind in [
            ObjectiveKind::Geud { a: 1.0 },
            ObjectiveKind::Geud { a: 8.0 },
            ObjectiveKind::Geud { a: 100.0 },
            ObjectiveKind::FallOff {
                end_percent: 60.0,
                fall_off_mm: 15.0,
            },
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
            constraint_value(&kind, goal, &doses, Some(&r), Some(&mut g));
            for i in [0usize, 7, 20, 39] {
                // Small enough for gEUD at a = 100 (its relative curvature is about a^2 (h/d)^2).
                let h = 0.0625f32;
                let mut up = doses.clone();
                up[i] += h;
                let mut dn = doses.clone();
                dn[i] -= h;
                let fd = (constraint_value(&kind, goal, &up, Some(&r), None)
                    - constraint_value(&kind, goal, &dn, Some(&r), None))
                    / (2.0 * h as f64);
                assert!(
                    (fd - g[i]).abs() <= 1e-6 * g[i].abs().max(1e-9) + 1e-12,
                    "{kind:?} voxel {i}: {fd} vs {}",
                    g[i]
                );
            }
        }
    }

    /// gEUD on analytic cases: a uniform dose is its own gEUD for every `a`; `a = 1` is the
    /// mean; a large `a` tends to the maximum; two doses give the power mean in closed form.
    /// At the goal the value is exactly 0, 5 % above it (0.05)^2.
    #[test]
    fn geud_on_analytic_cases() {
        for a in [1.0, 2.0, 8.0, 100.0] {
            let (m, _) = geud(a, &[2500.0; 7]);
            assert!((m - 2500.0).abs() < 1e-9, "a = {a}: {m}");
            let kind = ObjectiveKind::Geud { a };
            assert_eq!(
                constraint_value(&kind, 2500.0, &[2500.0; 7], None, None),
                0.0
            );
            let v = constraint_value(&kind, 2500.0 / 1.05, &[2500.0; 7], None, None);
            assert!((v - 0.05f64.powi(2)).abs() < 1e-12, "{v}");
        }
        let d = [1000.0f32, 3000.0];
        assert!((geud(1.0, &d).0 - 2000.0).abs() < 1e-9);
        // ((1000^2 + 3000^2) / 2)^(1/2) = 1000 sqrt(5).
        assert!((geud(2.0, &d).0 - 1000.0 * 5f64.sqrt()).abs() < 1e-9);
        // a = 100: (1/2)^(1/100) x 3000 = 2979.3, within 1 % of the maximum.
        let m = geud(100.0, &d).0;
        assert!((m - 3000.0 * 0.5f64.powf(0.01)).abs() < 1e-6, "{m}");
        // One hot voxel of 60 Gy among 99 at 10 Gy: the mean hardly sees it, a = 20 does.
        let mut hot = vec![1000.0f32; 99];
        hot.push(6000.0);
        assert!(geud(1.0, &hot).0 < 1060.0);
        assert!(geud(20.0, &hot).0 > 4000.0, "{}", geud(20.0, &hot).0);
    }

    /// The fall-off limit: the goal at the target's edge, `f + (1 - f) / e` of it one fall-off
    /// length away, tending to `f`; a dose exactly on the limit gives 0, a single voxel above
    /// it registers.
    #[test]
    fn fall_off_on_analytic_cases() {
        let (g, f, l) = (5000.0, 40.0, 10.0);
        assert!((fall_off_limit(g, f, l, 0.0) - 5000.0).abs() < 1e-9);
        assert!(
            (fall_off_limit(g, f, l, 10.0) - 5000.0 * (0.4 + 0.6 / std::f64::consts::E)).abs()
                < 1e-9
        );
        assert!((fall_off_limit(g, f, l, 1000.0) - 2000.0).abs() < 1e-6);
        // Inside the target (negative distances read as 0) the limit is the goal.
        assert!((fall_off_limit(g, f, l, -3.0) - 5000.0).abs() < 1e-9);
        let kind = ObjectiveKind::FallOff {
            end_percent: f,
            fall_off_mm: l,
        };
        let r: Vec<f32> = (0..50).map(|i| i as f32).collect();
        let on_limit: Vec<f32> = r
            .iter()
            .map(|&ri| fall_off_limit(g, f, l, ri as f64) as f32 - 0.01)
            .collect();
        assert_eq!(constraint_value(&kind, g, &on_limit, Some(&r), None), 0.0);
        let mut one_hot = on_limit.clone();
        one_hot[30] += 500.0;
        // 50 voxels: the largest 2 % is that one voxel.
        let v = constraint_value(&kind, g, &one_hot, Some(&r), None);
        let expected = (500.0f64 - 0.01).powi(2) / (g * g);
        assert!((v - expected).abs() < 1e-6 * expected, "{v} vs {expected}");
    }

    #[test]
    fn new_kinds_are_read_and_checked() {
        let w = |extra: &str| -> Result<Objective> {
            let text = format!(
                "id = \"x\"\nstructure = \"Body\"\nweight = 1.0\ngoal-cgy = 5000.0\n\
                 ideal-range = [0.0001, 0.01]\n{extra}"
            );
            let w: ObjectiveWire = toml::from_str(&text).unwrap();
            w.check("p.toml", "objectives[4]")
        };
        assert_eq!(
            w("type = \"geud\"\na = 12.0").unwrap().kind,
            ObjectiveKind::Geud { a: 12.0 }
        );
        assert_eq!(
            w("type = \"fall-off\"\nend-percent = 40.0\nfall-off-mm = 10.0")
                .unwrap()
                .kind,
            ObjectiveKind::FallOff {
                end_percent: 40.0,
                fall_off_mm: 10.0
            }
        );
        for (extra, field) in [
            ("type = \"geud\"", "objectives[4].a` = (missing)"),
            ("type = \"geud\"\na = 0.5", "objectives[4].a` = 0.5"),
            (
                "type = \"geud\"\na = 8.0\nvolume-percent = 5.0",
                "objectives[4].volume-percent",
            ),
            ("type = \"max-dose\"\na = 8.0", "objectives[4].a` = 8"),
            (
                "type = \"fall-off\"\nfall-off-mm = 10.0",
                "objectives[4].end-percent` = (missing)",
            ),
            (
                "type = \"fall-off\"\nend-percent = 100.0\nfall-off-mm = 10.0",
                "objectives[4].end-percent` = 100",
            ),
            (
                "type = \"fall-off\"\nend-percent = 40.0\nfall-off-mm = 0.0",
                "objectives[4].fall-off-mm` = 0",
            ),
            (
                "type = \"mean-dose\"\nfall-off-mm = 10.0",
                "objectives[4].fall-off-mm` = 10",
            ),
        ] {
            let e = w(extra).unwrap_err().to_string();
            assert!(e.contains("p.toml") && e.contains(field), "{extra}: {e}");
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
