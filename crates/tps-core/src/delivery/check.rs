//! Whether a machine can deliver a plan, and how long it takes.
//!
//! A segment between two control points takes the longest of: its gantry travel at the
//! fastest gantry speed, its MU at the highest dose rate, and the longest leaf travel at the
//! fastest leaf speed (a linac slows the gantry or lowers the dose rate so that every axis
//! arrives together). With that time every speed is within its limit by construction; what can
//! still be violated is geometric (control points too far apart, leaves too close, too far
//! out, a bank spread too wide) or a segment with fewer MU than the machine's minimum, and
//! [`check`] lists each such violation.

use tps_api::deliverable::DeliverablePlan;

use super::machine::DeliveryMachine;

/// Timing of one arc.
#[derive(Debug, Clone, PartialEq)]
pub struct ArcTiming {
    /// Seconds per segment.
    pub segment_s: Vec<f64>,
    /// Whole arc, seconds.
    pub total_s: f64,
    /// Segments whose time is set by the leaves, the dose rate and the gantry.
    pub limited_by: [usize; 3],
}

/// What the check found.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryCheck {
    /// Timing per arc.
    pub arcs: Vec<ArcTiming>,
    /// Every violated limit, one line each (empty when the plan is deliverable).
    pub violations: Vec<String>,
}

impl DeliveryCheck {
    /// Whole delivery time, seconds (beam-on, without the time between arcs).
    pub fn total_s(&self) -> f64 {
        self.arcs.iter().map(|a| a.total_s).sum()
    }
}

/// Checks `plan` against `machine`.
pub fn check(plan: &DeliverablePlan, machine: &DeliveryMachine) -> DeliveryCheck {
    let mut violations = Vec::new();
    let mlc = &machine.mlc;
    if plan.leaf_boundaries_mm != mlc.boundaries_mm {
        violations.push(format!(
            "the plan's {} leaf pairs are not the {} pairs of {}'s MLC",
            plan.leaf_pairs(),
            mlc.pairs(),
            machine.name
        ));
    }
    let tol = 1e-6;
    let mut arcs = Vec::new();
    for (a, arc) in plan.arcs.iter().enumerate() {
        let mut segment_s = Vec::new();
        let mut limited_by = [0usize; 3];
        for (k, cp) in arc.control_points.iter().enumerate() {
            for (i, l) in cp.leaves_mm.iter().enumerate() {
                if l[1] - l[0] < mlc.min_leaf_gap_mm - tol {
                    violations.push(format!(
                        "arc {a} control point {k} leaf pair {i}: gap {:.3} mm below the minimum \
                         {} mm",
                        l[1] - l[0],
                        mlc.min_leaf_gap_mm
                    ));
                }
                if l[0] < -mlc.max_leaf_position_mm - tol || l[1] > mlc.max_leaf_position_mm + tol {
                    violations.push(format!(
                        "arc {a} control point {k} leaf pair {i}: tips {:.1}, {:.1} mm beyond \
                         {} mm",
                        l[0], l[1], mlc.max_leaf_position_mm
                    ));
                }
            }
            for (bank, side) in [(0usize, "-a"), (1, "+a")] {
                let (lo, hi) = cp
                    .leaves_mm
                    .iter()
                    .map(|l| l[bank])
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                        (lo.min(v), hi.max(v))
                    });
                if hi - lo > mlc.max_leaf_span_mm + tol {
                    violations.push(format!(
                        "arc {a} control point {k}: the {side} bank spans {:.1} mm, more than {} \
                         mm",
                        hi - lo,
                        mlc.max_leaf_span_mm
                    ));
                }
            }
        }
        for k in 0..arc.control_points.len() - 1 {
            let (p, q) = (&arc.control_points[k], &arc.control_points[k + 1]);
            let deg = arc.segment_degrees(k);
            if deg > machine.max_control_point_spacing_deg + tol {
                violations.push(format!(
                    "arc {a} segment {k}: {deg:.2} degrees between control points, more than {}",
                    machine.max_control_point_spacing_deg
                ));
            }
            let mu = q.cumulative_mu - p.cumulative_mu;
            if mu < machine.min_mu_per_segment - tol {
                violations.push(format!(
                    "arc {a} segment {k}: {mu:.3} MU, fewer than the minimum {}",
                    machine.min_mu_per_segment
                ));
            }
            let travel = p
                .leaves_mm
                .iter()
                .zip(&q.leaves_mm)
                .map(|(x, y)| (y[0] - x[0]).abs().max((y[1] - x[1]).abs()))
                .fold(0.0, f64::max);
            let times = [
                travel / mlc.max_leaf_speed_mm_per_s,
                mu / (machine.max_dose_rate_mu_per_min / 60.0),
                deg / machine.max_gantry_speed_deg_per_s,
            ];
            let (which, t) =
                times.iter().enumerate().fold(
                    (2, 0.0),
                    |(w, t), (i, &v)| if v > t { (i, v) } else { (w, t) },
                );
            limited_by[which] += 1;
            segment_s.push(t);
        }
        arcs.push(ArcTiming {
            total_s: segment_s.iter().sum(),
            segment_s,
            limited_by,
        });
    }
    DeliveryCheck { arcs, violations }
}
