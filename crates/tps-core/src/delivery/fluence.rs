//! The fluence a deliverable plan's apertures give, for the dose engine.
//!
//! During a segment the gantry turns and each leaf moves linearly from one control point to
//! the next while the segment's MU are delivered at a constant rate, so a point at `a` in a
//! leaf pair's row receives the segment's MU times the fraction of the segment it lies between
//! the tips (computed exactly from the two linear motions), plus the leaf transmission times
//! the rest, inside the jaws; nothing outside them. The fluence is averaged over square
//! beamlets of `bixel_mm` whose rows have their edges on the leaf boundaries, and segments
//! whose mid-angles fall in the same bin of `angle_step_deg` are summed on one static beam at
//! their MU-weighted mean angle: a segment's dose is computed at its own gantry angle to within
//! one bin.

use rayon::prelude::*;

use tps_api::deliverable::{Arc, DeliverablePlan};
use tps_api::error::{Error, Result};

use crate::dose::geometry::{Beam, FluenceMap};

/// How aperture fluence is sampled for the dose engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApertureSampling {
    /// Beamlet side of the fluence maps, mm (a divisor of every leaf width).
    pub bixel_mm: f64,
    /// Width of the gantry-angle bins whose segments share one static beam, degrees.
    pub angle_step_deg: f64,
    /// Points per beamlet along the leaf travel at which the open fraction is averaged.
    pub samples: usize,
}

impl Default for ApertureSampling {
    /// 2.5 mm beamlets (half the narrowest Millennium leaf), 4-degree bins, 5 samples per
    /// beamlet (every 0.5 mm).
    fn default() -> Self {
        Self {
            bixel_mm: 2.5,
            angle_step_deg: 4.0,
            samples: 5,
        }
    }
}

/// Fraction of `s` in [0, 1] for which `l0 + s (l1 - l0) < x < r0 + s (r1 - r0)`.
pub fn open_fraction(x: f64, [l0, r0]: [f64; 2], [l1, r1]: [f64; 2]) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    // x > l(s)
    let dl = l1 - l0;
    if dl == 0.0 {
        if x <= l0 {
            return 0.0;
        }
    } else {
        let s = (x - l0) / dl;
        if dl > 0.0 {
            hi = hi.min(s);
        } else {
            lo = lo.max(s);
        }
    }
    // x < r(s)
    let dr = r1 - r0;
    if dr == 0.0 {
        if x >= r0 {
            return 0.0;
        }
    } else {
        let s = (x - r0) / dr;
        if dr > 0.0 {
            lo = lo.max(s);
        } else {
            hi = hi.min(s);
        }
    }
    (hi - lo).max(0.0)
}

/// Adds segment `k` of `arc` (its MU scaled by `mu_scale`) to `map`, whose lattice covers the
/// arc's jaws.
fn add_segment(
    map: &mut FluenceMap,
    plan: &DeliverablePlan,
    arc: &Arc,
    k: usize,
    transmission: f64,
    samples: usize,
    mu_scale: f64,
) {
    let (a, b) = (&arc.control_points[k], &arc.control_points[k + 1]);
    let mu = (b.cumulative_mu - a.cumulative_mu) * mu_scale;
    if mu <= 0.0 {
        return;
    }
    let [na, nc] = map.dims;
    let h = map.bixel_mm;
    let jaws = arc.jaws;
    let bounds = &plan.leaf_boundaries_mm;
    for j in 0..nc {
        let c = map.centre(0, j)[1];
        if c < jaws.y_mm[0] || c > jaws.y_mm[1] {
            continue;
        }
        let Some(pair) = bounds.windows(2).position(|w| w[0] <= c && c < w[1]) else {
            continue;
        };
        let (from, to) = (a.leaves_mm[pair], b.leaves_mm[pair]);
        for i in 0..na {
            let centre = map.centre(i, 0)[0];
            let mut sum = 0.0;
            let mut inside = 0usize;
            for q in 0..samples {
                let x = centre - 0.5 * h + (q as f64 + 0.5) * h / samples as f64;
                if x < jaws.x_mm[0] || x > jaws.x_mm[1] {
                    continue;
                }
                inside += 1;
                let open = open_fraction(x, from, to);
                sum += open + transmission * (1.0 - open);
            }
            if inside > 0 {
                map.weights[i + na * j] += mu * sum / samples as f64;
            }
        }
    }
}

/// The MU-weighted mean of the mid-angles of segments `ks` (unweighted when they carry no MU),
/// degrees in [0, 360).
fn mean_angle(arc: &Arc, ks: &[usize]) -> f64 {
    let first = arc.segment_mid_deg(ks[0]);
    let mu =
        |k: usize| arc.control_points[k + 1].cumulative_mu - arc.control_points[k].cumulative_mu;
    let total: f64 = ks.iter().map(|&k| mu(k)).sum();
    let weight = |k: usize| {
        if total > 0.0 {
            mu(k) / total
        } else {
            1.0 / ks.len() as f64
        }
    };
    let offset: f64 = ks
        .iter()
        .map(|&k| {
            let d = (arc.segment_mid_deg(k) - first + 180.0).rem_euclid(360.0) - 180.0;
            weight(k) * d
        })
        .sum();
    (first + offset).rem_euclid(360.0)
}

/// The segments of `plan` whose mid-angles share a bin of `angle_step_deg`: `(arc, segments)`
/// per bin, arc after arc, bins in the order the arc reaches them; [`aperture_fields`] gives
/// one static beam per bin in this order.
pub fn segment_bins(plan: &DeliverablePlan, angle_step_deg: f64) -> Vec<(usize, Vec<usize>)> {
    let mut out = Vec::new();
    for (a, arc) in plan.arcs.iter().enumerate() {
        let mut bins: Vec<(i64, Vec<usize>)> = Vec::new();
        for k in 0..arc.control_points.len().saturating_sub(1) {
            let bin = (arc.segment_mid_deg(k) / angle_step_deg).floor() as i64;
            match bins.iter_mut().find(|(b, _)| *b == bin) {
                Some((_, v)) => v.push(k),
                None => bins.push((bin, vec![k])),
            }
        }
        out.extend(bins.into_iter().map(|(_, ks)| (a, ks)));
    }
    out
}

/// Static beams carrying the fluence of every segment of `plan` (MU per fraction times
/// `mu_scale`, e.g. the fractions for the course), with `transmission` through closed leaves.
pub fn aperture_fields(
    plan: &DeliverablePlan,
    transmission: f64,
    sampling: &ApertureSampling,
    mu_scale: f64,
) -> Result<Vec<FluenceMap>> {
    let h = sampling.bixel_mm;
    let widths_ok = plan.leaf_boundaries_mm.windows(2).all(|w| {
        let n = (w[1] - w[0]) / h;
        (n - n.round()).abs() < 1e-6 && (w[0] / h - (w[0] / h).round()).abs() < 1e-6
    });
    if !(h > 0.0 && widths_ok) {
        return Err(Error::invalid(
            "aperture sampling",
            "bixel-mm",
            h.to_string(),
            "the beamlet side must divide every leaf width and boundary",
        ));
    }
    if !(sampling.angle_step_deg > 0.0 && sampling.angle_step_deg <= 20.0 && sampling.samples >= 1)
    {
        return Err(Error::invalid(
            "aperture sampling",
            "angle-step-deg",
            sampling.angle_step_deg.to_string(),
            "angle bins of above 0 to 20 degrees and at least one sample per beamlet",
        ));
    }
    // One map per (arc, angle bin), on a lattice covering the arc's jaws.
    let all_bins = segment_bins(plan, sampling.angle_step_deg);
    let mut out = Vec::new();
    for (a, arc) in plan.arcs.iter().enumerate() {
        let bins: Vec<&Vec<usize>> = all_bins
            .iter()
            .filter(|(arc_index, _)| *arc_index == a)
            .map(|(_, ks)| ks)
            .collect();
        let j = arc.jaws;
        let i0 = (j.x_mm[0] / h).floor() as i64;
        let i1 = (j.x_mm[1] / h).ceil() as i64;
        let j0 = (j.y_mm[0] / h).floor() as i64;
        let j1 = (j.y_mm[1] / h).ceil() as i64;
        let dims = [(i1 - i0).max(1) as usize, (j1 - j0).max(1) as usize];
        let maps: Vec<FluenceMap> = bins
            .par_iter()
            .map(|ks| {
                let gantry_deg = mean_angle(arc, ks);
                let mut map = FluenceMap {
                    beam: Beam {
                        gantry_deg,
                        iso_mm: plan.isocentre_mm,
                        sad_mm: plan.sad_mm,
                        collimator_deg: arc.collimator_deg,
                    },
                    bixel_mm: h,
                    origin: [(i0 as f64 + 0.5) * h, (j0 as f64 + 0.5) * h],
                    dims,
                    weights: vec![0.0; dims[0] * dims[1]],
                };
                for &k in ks.iter() {
                    add_segment(
                        &mut map,
                        plan,
                        arc,
                        k,
                        transmission,
                        sampling.samples,
                        mu_scale,
                    );
                }
                map
            })
            .collect();
        out.extend(maps);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tps_api::deliverable::{ControlPoint, Jaws, Rotation};

    #[test]
    fn open_fraction_of_linear_motions() {
        // Static open aperture.
        assert_eq!(open_fraction(0.0, [-1.0, 1.0], [-1.0, 1.0]), 1.0);
        assert_eq!(open_fraction(2.0, [-1.0, 1.0], [-1.0, 1.0]), 0.0);
        // Leading leaf opening from -10 to 10: x = 0 opens half way.
        assert!((open_fraction(0.0, [-10.0, -10.0], [-10.0, 10.0]) - 0.5).abs() < 1e-12);
        // A 2 mm slit sliding 20 mm: every inner point is open 2/20 of the time.
        assert!((open_fraction(3.0, [-10.0, -8.0], [10.0, 12.0]) - 0.1).abs() < 1e-12);
        // Closed leaves moving together never open anything.
        assert_eq!(open_fraction(0.0, [-5.0, -5.0], [5.0, 5.0]), 0.0);
    }

    fn plan(leaves: [f64; 2]) -> DeliverablePlan {
        let cp = |g: f64, mu: f64| ControlPoint {
            gantry_deg: g,
            cumulative_mu: mu,
            leaves_mm: vec![leaves; 4],
        };
        DeliverablePlan {
            machine: "m".into(),
            energy_mv: 6.0,
            isocentre_mm: [0.0; 3],
            sad_mm: 1000.0,
            fractions: 1,
            leaf_boundaries_mm: vec![-10.0, -5.0, 0.0, 5.0, 10.0],
            arcs: vec![Arc {
                rotation: Rotation::Clockwise,
                collimator_deg: 0.0,
                jaws: Jaws {
                    x_mm: [-20.0, 20.0],
                    y_mm: [-10.0, 10.0],
                },
                control_points: vec![cp(0.0, 0.0), cp(2.0, 3.0), cp(4.0, 5.0)],
            }],
        }
    }

    #[test]
    fn a_static_aperture_gives_its_mu_inside_and_transmission_outside_up_to_the_jaws() {
        let p = plan([-5.0, 5.0]);
        let maps = aperture_fields(&p, 0.02, &ApertureSampling::default(), 2.0).unwrap();
        // Both segments (mid-angles 1 and 3 degrees) fall in the 0-4 degree bin.
        assert_eq!(maps.len(), 1);
        let m = &maps[0];
        // At the MU-weighted mean of the mid-angles 1 and 3 (3 and 2 MU).
        assert!(
            (m.beam.gantry_deg - 1.8).abs() < 1e-12,
            "{}",
            m.beam.gantry_deg
        );
        assert_eq!(m.dims, [16, 8]);
        for j in 0..8 {
            for i in 0..16 {
                let a = m.centre(i, j)[0];
                let w = m.weights[i + 16 * j];
                let want = if a.abs() < 5.0 { 10.0 } else { 0.2 };
                assert!((w - want).abs() < 1e-9, "({a}): {w}");
            }
        }
        let total: f64 = m.weights.iter().sum();
        assert!(total > 0.0);
    }
}
