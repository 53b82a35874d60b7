//! Leaf trajectories fitted to a row's fluence at the control points.
//!
//! The sliding window of [`super::sequence`] is exact for leaves that jump: each leaf stands
//! still while the fluence it shapes is delivered and then moves instantly to the next beamlet
//! edge. Sampled at a few control points per sector and moved linearly between them, as a
//! linac moves them, those trajectories smooth the fluence (a sector of 20 degrees has 10
//! control points at 2-degree spacing for a row of 30 beamlets). Here the positions of both
//! leaves at the inner control points of a sector are fitted to the row's fluence by
//! least squares on the fluence the linear motions actually deliver (the open fraction of
//! [`super::fluence::open_fraction`], with the leaf transmission), the leaf positions
//! optimized directly at the control points as in direct leaf trajectory optimization (Papp
//! and Unkelbach, "Direct leaf trajectory optimization for volumetric modulated arc therapy
//! planning with sliding window delivery", Med Phys 41:011701, 2014), here against the
//! fluence rather than the dose. The sweep is the starting point; the end positions of the
//! sector and its MU stay as they are, the leaves keep at least the minimum gap, and the tips
//! stay within the range the sweep covers (a penalty during the fit, a clamp after it), so the
//! spread of a bank across its rows stays what the sweep gave.

use crate::optimize::lbfgs::{Problem, Settings, minimize};

/// Open fraction of [`super::fluence::open_fraction`] and its derivatives with respect to
/// `[l0, r0, l1, r1]`.
pub fn open_fraction_grad(x: f64, [l0, r0]: [f64; 2], [l1, r1]: [f64; 2]) -> (f64, [f64; 4]) {
    // (value, gradient) of the lower and upper ends of the open interval of s.
    let mut lo = (0.0f64, [0.0f64; 4]);
    let mut hi = (1.0f64, [0.0f64; 4]);
    let dl = l1 - l0;
    if dl == 0.0 {
        if x <= l0 {
            return (0.0, [0.0; 4]);
        }
    } else {
        // x > l0 + s dl.
        let s = (x - l0) / dl;
        let g = [(s - 1.0) / dl, 0.0, -s / dl, 0.0];
        if dl > 0.0 {
            if s < hi.0 {
                hi = (s, g);
            }
        } else if s > lo.0 {
            lo = (s, g);
        }
    }
    let dr = r1 - r0;
    if dr == 0.0 {
        if x >= r0 {
            return (0.0, [0.0; 4]);
        }
    } else {
        // x < r0 + s dr.
        let s = (x - r0) / dr;
        let g = [0.0, (s - 1.0) / dr, 0.0, -s / dr];
        if dr > 0.0 {
            if s > lo.0 {
                lo = (s, g);
            }
        } else if s < hi.0 {
            hi = (s, g);
        }
    }
    if hi.0 <= lo.0 {
        return (0.0, [0.0; 4]);
    }
    (hi.0 - lo.0, [0, 1, 2, 3].map(|k| hi.1[k] - lo.1[k]))
}

/// What a row's fit needs besides the trajectory.
#[derive(Debug, Clone, Copy)]
pub struct RowFit<'a> {
    /// Beamlet edges along the leaf travel, mm.
    pub edges: &'a [f64],
    /// Fluence per beamlet, MU.
    pub values: &'a [f64],
    /// MU of each segment of the sector.
    pub segment_mu: f64,
    /// Leaf transmission, a fraction of the open fluence.
    pub transmission: f64,
    /// Minimum gap between the tips, mm.
    pub min_gap_mm: f64,
    /// Points per beamlet at which the fluence is compared.
    pub samples: usize,
    /// Solver iterations.
    pub iterations: usize,
}

/// Weight of the penalty on tips outside the sweep's range, MU² per mm².
const OUTSIDE_WEIGHT: f64 = 1.0;

/// Root-mean-square difference (MU) between the fluence `trajectory` delivers on the row and
/// the row's fluence, over the sample points (tips outside the trajectory's own range add
/// nothing).
pub fn rms_error(fit: &RowFit, trajectory: &[[f64; 2]]) -> f64 {
    let points = sample_points(fit);
    let mut problem = Fit {
        fit,
        points: &points,
        ends: (trajectory[0], trajectory[trajectory.len() - 1]),
        range: sweep_range(trajectory),
        m: trajectory.len() - 1,
        traj: trajectory.to_vec(),
    };
    let x = problem.variables(trajectory);
    let mut g = vec![0.0; x.len()];
    problem.eval(&x, &mut g).sqrt()
}

/// Fits the inner control points of `trajectory` (leaf tips `[left, right]` at the `m + 1`
/// control points of one sector, the first and last kept) to the row's fluence. Returns the
/// fitted trajectory, or the given one when the fit does not improve it.
pub fn refine_row(fit: &RowFit, trajectory: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let m = trajectory.len() - 1;
    if m < 2 || fit.values.iter().all(|&v| v <= 0.0) || fit.segment_mu <= 0.0 {
        return trajectory.to_vec();
    }
    let points = sample_points(fit);
    let mut problem = Fit {
        fit,
        points: &points,
        ends: (trajectory[0], trajectory[m]),
        range: sweep_range(trajectory),
        m,
        traj: trajectory.to_vec(),
    };
    let x0 = problem.variables(trajectory);
    let mut g = vec![0.0; x0.len()];
    let before = problem.eval(&x0, &mut g);
    // Left tips are free (a bound far beyond any MLC); widths keep the minimum gap.
    let lower: Vec<f64> = (0..x0.len())
        .map(|k| if k % 2 == 0 { -1e6 } else { fit.min_gap_mm })
        .collect();
    let settings = Settings {
        max_iterations: fit.iterations,
        rel_tolerance: 1e-6,
        ..Settings::default()
    };
    match minimize(&mut problem, &x0, &lower, &settings) {
        Ok(sol) if sol.value < before && sol.x.iter().all(|v| v.is_finite()) => {
            // Within the sweep's range, which keeps the bank's span as the sweep had it.
            let (lo, hi) = problem.range;
            let mut t = problem.trajectory(&sol.x);
            for p in &mut t[1..m] {
                let l = p[0].clamp(lo, hi - fit.min_gap_mm);
                *p = [l, p[1].clamp(l + fit.min_gap_mm, hi)];
            }
            t
        }
        _ => trajectory.to_vec(),
    }
}

/// Smallest left and largest right tip of a trajectory.
fn sweep_range(trajectory: &[[f64; 2]]) -> (f64, f64) {
    trajectory
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), [l, r]| {
            (lo.min(*l), hi.max(*r))
        })
}

/// Sample positions along the row and the fluence wanted at each.
fn sample_points(fit: &RowFit) -> Vec<(f64, f64)> {
    let s = fit.samples.max(1);
    let mut out = Vec::with_capacity(fit.values.len() * s);
    for (i, &v) in fit.values.iter().enumerate() {
        let (a, b) = (fit.edges[i], fit.edges[i + 1]);
        for q in 0..s {
            out.push((a + (b - a) * (q as f64 + 0.5) / s as f64, v));
        }
    }
    out
}

/// The least-squares fit over the inner control points: variables `[left, width]` per inner
/// control point.
struct Fit<'a> {
    fit: &'a RowFit<'a>,
    points: &'a [(f64, f64)],
    ends: ([f64; 2], [f64; 2]),
    /// Where the tips may go: the range the sweep covers.
    range: (f64, f64),
    m: usize,
    traj: Vec<[f64; 2]>,
}

impl Fit<'_> {
    fn variables(&self, trajectory: &[[f64; 2]]) -> Vec<f64> {
        trajectory[1..self.m]
            .iter()
            .flat_map(|&[l, r]| [l, (r - l).max(self.fit.min_gap_mm)])
            .collect()
    }

    fn trajectory(&self, x: &[f64]) -> Vec<[f64; 2]> {
        let mut t = Vec::with_capacity(self.m + 1);
        t.push(self.ends.0);
        t.extend(x.chunks(2).map(|v| [v[0], v[0] + v[1]]));
        t.push(self.ends.1);
        t
    }
}

impl Problem for Fit<'_> {
    /// Mean squared difference between the delivered and the wanted fluence, MU².
    fn eval(&mut self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.traj = self.trajectory(x);
        let t = self.fit.transmission;
        let mu = self.fit.segment_mu;
        let total = mu * self.m as f64;
        let n = self.points.len() as f64;
        // d(sum)/d(left, right) at every control point.
        let mut dtraj = vec![[0.0f64; 2]; self.m + 1];
        // The segments that open the current point, with the open fraction's gradient.
        let mut seen: Vec<(usize, [f64; 4])> = Vec::with_capacity(self.m);
        let mut f = 0.0;
        for &(p, want) in self.points {
            seen.clear();
            let mut open = 0.0;
            for k in 0..self.m {
                let (a, b) = (self.traj[k], self.traj[k + 1]);
                // Quick reject: the point lies outside both apertures' hull.
                if p <= a[0].min(b[0]) || p >= a[1].max(b[1]) {
                    continue;
                }
                let (v, g) = open_fraction_grad(p, a, b);
                open += v;
                seen.push((k, g));
            }
            let res = t * total + (1.0 - t) * mu * open - want;
            f += res * res / n;
            let c = 2.0 * res / n * (1.0 - t) * mu;
            for &(k, g) in &seen {
                dtraj[k][0] += c * g[0];
                dtraj[k][1] += c * g[1];
                dtraj[k + 1][0] += c * g[2];
                dtraj[k + 1][1] += c * g[3];
            }
        }
        // Tips outside the sweep's range.
        let (lo, hi) = self.range;
        for (j, [l, r]) in self.traj.iter().enumerate().take(self.m).skip(1) {
            if *l < lo {
                f += OUTSIDE_WEIGHT * (lo - l).powi(2);
                dtraj[j][0] -= 2.0 * OUTSIDE_WEIGHT * (lo - l);
            }
            if *r > hi {
                f += OUTSIDE_WEIGHT * (r - hi).powi(2);
                dtraj[j][1] += 2.0 * OUTSIDE_WEIGHT * (r - hi);
            }
        }
        // left = x0, right = x0 + x1.
        for (j, v) in grad.chunks_mut(2).enumerate() {
            let [dl, dr] = dtraj[j + 1];
            v[0] = dl + dr;
            v[1] = dr;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::fluence::open_fraction;

    #[test]
    fn gradient_matches_finite_differences() {
        let cases = [
            (0.3, [-1.0, 2.0], [1.5, 4.0]),
            (2.5, [-1.0, 2.0], [1.5, 4.0]),
            (0.0, [2.0, 5.0], [-3.0, 1.0]),
            (-0.5, [-4.0, 3.0], [-1.0, -0.2]),
        ];
        for (x, a, b) in cases {
            let (v, g) = open_fraction_grad(x, a, b);
            assert!((v - open_fraction(x, a, b)).abs() < 1e-12);
            let h = 1e-6;
            let mut p = [a[0], a[1], b[0], b[1]];
            for k in 0..4 {
                let orig = p[k];
                p[k] = orig + h;
                let up = open_fraction(x, [p[0], p[1]], [p[2], p[3]]);
                p[k] = orig - h;
                let down = open_fraction(x, [p[0], p[1]], [p[2], p[3]]);
                p[k] = orig;
                let fd = (up - down) / (2.0 * h);
                assert!(
                    (fd - g[k]).abs() < 1e-5,
                    "x {x} case {a:?} {b:?} k {k}: {fd} vs {}",
                    g[k]
                );
            }
        }
    }

    /// A step profile swept with 5 segments: linear motions between the sweep's control points
    /// smooth it; the fit brings the delivered fluence closer to it.
    #[test]
    fn fit_reduces_the_fluence_error_of_a_coarse_sweep() {
        let edges: Vec<f64> = (0..=8).map(|i| -20.0 + 5.0 * i as f64).collect();
        let values = [0.0, 2.0, 6.0, 6.0, 1.0, 4.0, 4.0, 0.0];
        let fit = RowFit {
            edges: &edges,
            values: &values,
            segment_mu: 2.0,
            transmission: 0.0,
            min_gap_mm: 0.5,
            samples: 5,
            iterations: 200,
        };
        // A plain sweep of both leaves from -20 to 20 at constant speed, 5 segments of 2 MU.
        let sweep: Vec<[f64; 2]> = (0..=5)
            .map(|j| {
                let p = -20.0 + 8.0 * j as f64;
                [
                    p - 6.0 * (j > 0 && j < 5) as u8 as f64,
                    p + 6.0 * (j > 0 && j < 5) as u8 as f64,
                ]
            })
            .collect();
        let before = rms_error(&fit, &sweep);
        let fitted = refine_row(&fit, &sweep);
        let after = rms_error(&fit, &fitted);
        assert_eq!(fitted[0], sweep[0]);
        assert_eq!(fitted[5], sweep[5]);
        assert!(fitted[1..5].iter().all(|[l, r]| r - l >= 0.5 - 1e-9));
        assert!(after < 0.6 * before, "rms {before:.3} -> {after:.3} MU");
    }
}
