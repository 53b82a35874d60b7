//! A deliverable VMAT plan as plain data: arcs of control points, each with a gantry angle, the
//! cumulative monitor units and the MLC leaf positions, plus the MLC geometry they refer to.
//!
//! Between two control points the gantry turns and the leaves travel linearly while the
//! segment's MU are delivered (the DICOM RT convention: leaf positions and cumulative meterset
//! at each control point). This crate holds only the data and its consistency checks; how a
//! plan is sequenced, whether a given machine can deliver it and its dose belong to the TPS.
//! The serde form is what `deliverable.json` of a plan directory holds and what an RTPLAN
//! export reads.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Direction the gantry turns during an arc (IEC 61217 gantry angles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rotation {
    /// Gantry angle increasing (DICOM `CW`).
    Clockwise,
    /// Gantry angle decreasing (DICOM `CC`).
    CounterClockwise,
}

/// Jaw positions of an arc at the isocentre plane, mm: `x` along the leaf travel (`a`), `y`
/// along the leaf-pair stack (`c`). Fixed over the arc.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jaws {
    /// `[x1, x2]`, mm, `x1 < x2`.
    pub x_mm: [f64; 2],
    /// `[y1, y2]`, mm, `y1 < y2`.
    pub y_mm: [f64; 2],
}

/// One control point of an arc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPoint {
    /// Gantry angle, degrees in [0, 360).
    pub gantry_deg: f64,
    /// Monitor units delivered in the arc up to this control point (per fraction).
    pub cumulative_mu: f64,
    /// Per leaf pair, in the order of [`DeliverablePlan::leaf_boundaries_mm`]: the tip of the
    /// leaf on the `-a` side and of the one on the `+a` side, mm at the isocentre plane.
    pub leaves_mm: Vec<[f64; 2]>,
}

/// One arc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arc {
    /// Gantry rotation.
    pub rotation: Rotation,
    /// Collimator angle, degrees.
    pub collimator_deg: f64,
    /// Jaws, fixed over the arc.
    pub jaws: Jaws,
    /// Control points in delivery order (at least two).
    pub control_points: Vec<ControlPoint>,
}

impl Arc {
    /// MU of the arc per fraction (the last control point's cumulative MU).
    pub fn mu(&self) -> f64 {
        self.control_points.last().map_or(0.0, |c| c.cumulative_mu)
    }

    /// Gantry travel of segment `k` (from control point `k` to `k + 1`), degrees, positive in
    /// the direction of rotation.
    pub fn segment_degrees(&self, k: usize) -> f64 {
        let (a, b) = (
            self.control_points[k].gantry_deg,
            self.control_points[k + 1].gantry_deg,
        );
        match self.rotation {
            Rotation::Clockwise => (b - a).rem_euclid(360.0),
            Rotation::CounterClockwise => (a - b).rem_euclid(360.0),
        }
    }

    /// Gantry angle at the middle of segment `k`, degrees in [0, 360).
    pub fn segment_mid_deg(&self, k: usize) -> f64 {
        let half = 0.5 * self.segment_degrees(k);
        let a = self.control_points[k].gantry_deg;
        match self.rotation {
            Rotation::Clockwise => (a + half).rem_euclid(360.0),
            Rotation::CounterClockwise => (a - half).rem_euclid(360.0),
        }
    }
}

/// A deliverable plan: the machine it was sequenced for, the isocentre, the MLC leaf-pair
/// boundaries and the arcs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverablePlan {
    /// Machine name (as in its machine file).
    pub machine: String,
    /// Nominal energy, MV.
    pub energy_mv: f64,
    /// Isocentre in patient coordinates (LPS), mm.
    pub isocentre_mm: [f64; 3],
    /// Source-axis distance, mm.
    pub sad_mm: f64,
    /// Fractions the MU are delivered in (every MU figure is per fraction).
    pub fractions: u32,
    /// Leaf-pair boundaries along `c` at the isocentre plane, mm, increasing: pair `i` covers
    /// `[b[i], b[i + 1]]`.
    pub leaf_boundaries_mm: Vec<f64>,
    /// Arcs in delivery order.
    pub arcs: Vec<Arc>,
}

impl DeliverablePlan {
    /// MU per fraction over all arcs.
    pub fn mu_per_fraction(&self) -> f64 {
        self.arcs.iter().map(Arc::mu).sum()
    }

    /// Number of leaf pairs.
    pub fn leaf_pairs(&self) -> usize {
        self.leaf_boundaries_mm.len().saturating_sub(1)
    }

    /// Refuses a plan that is not consistent in itself (`origin` names it in errors): leaf
    /// boundaries increasing, every control point with one position pair per leaf pair and
    /// leaves not crossing, cumulative MU starting at 0 and never decreasing, gantry angles in
    /// [0, 360), finite numbers, jaws ordered. Whether a machine can deliver it is the TPS's
    /// check.
    pub fn check(&self, origin: &str) -> Result<()> {
        let bad = |f: String, v: String, why: &str| Err(Error::invalid(origin, f, v, why));
        let b = &self.leaf_boundaries_mm;
        if b.len() < 2 || b.windows(2).any(|w| w[1] <= w[0]) || b.iter().any(|v| !v.is_finite()) {
            return bad(
                "leaf_boundaries_mm".into(),
                format!("{b:?}"),
                "at least two finite boundaries, strictly increasing",
            );
        }
        if self.fractions < 1 {
            return bad("fractions".into(), "0".into(), "at least one fraction");
        }
        if self.arcs.is_empty() {
            return bad("arcs".into(), "[]".into(), "a plan needs at least one arc");
        }
        let pairs = self.leaf_pairs();
        for (a, arc) in self.arcs.iter().enumerate() {
            let j = arc.jaws;
            if !(j.x_mm[0] < j.x_mm[1] && j.y_mm[0] < j.y_mm[1]) {
                return bad(
                    format!("arcs[{a}].jaws"),
                    format!("{j:?}"),
                    "jaws must be ordered (x1 < x2, y1 < y2)",
                );
            }
            if arc.control_points.len() < 2 {
                return bad(
                    format!("arcs[{a}].control_points"),
                    arc.control_points.len().to_string(),
                    "an arc needs at least two control points",
                );
            }
            let mut prev = 0.0;
            for (k, cp) in arc.control_points.iter().enumerate() {
                let f = |s: &str| format!("arcs[{a}].control_points[{k}].{s}");
                if !(0.0..360.0).contains(&cp.gantry_deg) {
                    return bad(
                        f("gantry_deg"),
                        cp.gantry_deg.to_string(),
                        "gantry angles are in [0, 360)",
                    );
                }
                let first_zero = k > 0 || cp.cumulative_mu == 0.0;
                if !(cp.cumulative_mu.is_finite() && cp.cumulative_mu >= prev && first_zero) {
                    return bad(
                        f("cumulative_mu"),
                        cp.cumulative_mu.to_string(),
                        "cumulative MU start at 0 and never decrease",
                    );
                }
                prev = cp.cumulative_mu;
                if cp.leaves_mm.len() != pairs {
                    return bad(
                        f("leaves_mm"),
                        format!("{} pairs", cp.leaves_mm.len()),
                        &format!("the MLC has {pairs} leaf pairs"),
                    );
                }
                if let Some(i) = cp
                    .leaves_mm
                    .iter()
                    .position(|l| !(l[0].is_finite() && l[1].is_finite() && l[0] <= l[1]))
                {
                    return bad(
                        f(&format!("leaves_mm[{i}]")),
                        format!("{:?}", cp.leaves_mm[i]),
                        "leaf tips must be finite and not cross",
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> DeliverablePlan {
        let cp = |g: f64, mu: f64| ControlPoint {
            gantry_deg: g,
            cumulative_mu: mu,
            leaves_mm: vec![[-10.0, 10.0], [-5.0, 5.0]],
        };
        DeliverablePlan {
            machine: "m".into(),
            energy_mv: 6.0,
            isocentre_mm: [0.0; 3],
            sad_mm: 1000.0,
            fractions: 25,
            leaf_boundaries_mm: vec![-5.0, 0.0, 5.0],
            arcs: vec![Arc {
                rotation: Rotation::CounterClockwise,
                collimator_deg: 0.0,
                jaws: Jaws {
                    x_mm: [-10.0, 10.0],
                    y_mm: [-5.0, 5.0],
                },
                control_points: vec![cp(2.0, 0.0), cp(358.0, 4.0), cp(354.0, 10.0)],
            }],
        }
    }

    #[test]
    fn segments_follow_the_rotation_across_zero() {
        let p = plan();
        p.check("p").unwrap();
        let arc = &p.arcs[0];
        assert_eq!(arc.segment_degrees(0), 4.0);
        assert_eq!(arc.segment_mid_deg(0), 0.0);
        assert_eq!(arc.segment_mid_deg(1), 356.0);
        assert_eq!(p.mu_per_fraction(), 10.0);
        let json = serde_json::to_string(&p).unwrap();
        let back: DeliverablePlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn inconsistent_plans_are_refused_naming_the_field() {
        let mut p = plan();
        p.arcs[0].control_points[2].cumulative_mu = 3.0;
        let e = p.check("plan.json").unwrap_err().to_string();
        assert!(
            e.contains("arcs[0].control_points[2].cumulative_mu") && e.contains('3'),
            "{e}"
        );
        let mut p = plan();
        p.arcs[0].control_points[1].leaves_mm[1] = [4.0, 3.0];
        let e = p.check("plan.json").unwrap_err().to_string();
        assert!(e.contains("control_points[1].leaves_mm[1]"), "{e}");
        let mut p = plan();
        p.arcs[0].control_points[0].leaves_mm.pop();
        let e = p.check("plan.json").unwrap_err().to_string();
        assert!(e.contains("2 leaf pairs"), "{e}");
        let mut p = plan();
        p.leaf_boundaries_mm = vec![0.0, 0.0, 5.0];
        assert!(p.check("plan.json").is_err());
    }
}
