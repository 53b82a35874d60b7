//! Arc sequencing: the optimized fluence of each static beam becomes a sliding-window sweep
//! of the MLC over that beam's sector of the arc.
//!
//! The fluence stage approximates arc `a` by static beams, beam `k` standing for a sector of
//! the arc (`S/n` degrees around it). Each sector is cut into segments no wider than the
//! control-point spacing, and the leaves sweep across the field once per sector, alternately
//! from `-a` to `+a` and back, so a sweep ends where the next one starts (the arc-sector
//! sliding window of Craft et al., "Multicriteria VMAT optimization", Med Phys 39:686, 2012).
//!
//! Within a sector each leaf pair delivers its row of the fluence as a unidirectional sliding
//! window (Spirou and Chui, Med Phys 21:1031, 1994; Svensson, Kallman and Brahme, Phys Med Biol
//! 39:37, 1994): with the fluence piecewise constant on beamlets, the leading leaf passes a
//! point after the cumulative decreases of the profile up to it, the trailing leaf after the
//! cumulative increases, so the point is open for exactly the fluence there, and the sector
//! needs as many MU as the sum of increases of its most demanding row. Rows that need fewer MU
//! spread their travel evenly over the sector. The trajectories, as positions against
//! cumulative MU, are sampled at the control points; the linac moves the leaves linearly
//! between them, so the delivered fluence is the one of these piecewise-linear trajectories
//! (computed exactly by [`super::fluence`]), close to the optimized fluence but not equal:
//! sequencing loses some modulation, and the plan reports both.
//!
//! At each sector boundary the leaves of a row stand closed (the minimum gap) beyond the
//! row's fluence on the side the sweep ended, at the outer of the two sectors' field edges.
//! The machine's limits on leaf speed, gantry speed and dose rate decide how long each segment
//! takes (the slowest of the three sets the time, as a linac slows the gantry or lowers the
//! dose rate), reported as the delivery time by [`super::check`].

use tps_api::beams::{Arrangement, Beams};
use tps_api::deliverable::{Arc, ControlPoint, DeliverablePlan, Jaws, Rotation};
use tps_api::error::{Error, Result};

use rayon::prelude::*;

use super::machine::DeliveryMachine;
use super::refine::{RowFit, refine_row};
use crate::dose::geometry::{FluenceMap, P3};

/// How arcs are sequenced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SequenceSettings {
    /// Largest gantry travel between control points, degrees (never above the machine's).
    pub spacing_deg: f64,
    /// Solver iterations of the fit of each row's leaf positions at the control points to
    /// its fluence ([`super::refine`]); 0 keeps the sampled sweep.
    pub fit_iterations: usize,
    /// Solver iterations of the re-optimization of the MU of each gantry-angle bin of
    /// segments against the protocol's objectives (`NativeTps::deliverable`); 0 keeps the
    /// sequenced MU.
    pub mu_iterations: usize,
}

impl Default for SequenceSettings {
    /// Control points every 2 degrees or less, as clinical VMAT systems place them, with the
    /// leaf positions fitted to the fluence and the bins' MU re-optimized (100 iterations
    /// each).
    fn default() -> Self {
        Self {
            spacing_deg: 2.0,
            fit_iterations: 100,
            mu_iterations: 100,
        }
    }
}

/// One leaf pair's share of a beam's fluence: the average over the pair's width of the
/// beamlet rows it covers, per beamlet column (MU per fraction).
#[derive(Debug, Clone)]
struct Row {
    values: Vec<f64>,
}

/// The rows of a field under the leaf pairs of `boundaries`, and the column edges along `a`.
fn leaf_rows(field: &FluenceMap, boundaries: &[f64], scale: f64) -> (Vec<f64>, Vec<Row>) {
    let [na, nc] = field.dims;
    let h = 0.5 * field.bixel_mm;
    let edges: Vec<f64> = (0..=na)
        .map(|i| field.origin[0] - h + i as f64 * field.bixel_mm)
        .collect();
    let rows = boundaries
        .windows(2)
        .map(|b| {
            let width = b[1] - b[0];
            let mut values = vec![0.0; na];
            for j in 0..nc {
                let c = field.centre(0, j)[1];
                let overlap = ((c + h).min(b[1]) - (c - h).max(b[0])).max(0.0);
                if overlap > 0.0 {
                    let w = overlap / width * scale;
                    for (v, x) in values.iter_mut().zip(&field.weights[j * na..(j + 1) * na]) {
                        *v += w * x.max(0.0);
                    }
                }
            }
            Row { values }
        })
        .collect();
    (edges, rows)
}

/// Where a row's fluence is: the outer edges of its first and last non-zero columns.
fn extent(edges: &[f64], row: &Row) -> Option<(f64, f64)> {
    let first = row.values.iter().position(|&v| v > 0.0)?;
    let last = row.values.iter().rposition(|&v| v > 0.0)?;
    Some((edges[first], edges[last + 1]))
}

/// Sum of the increases of a profile read from its first column to its last (and from zero
/// before it): the MU a unidirectional sliding window needs for it.
fn rises(values: &[f64]) -> f64 {
    let mut prev = 0.0;
    let mut sum = 0.0;
    for &v in values {
        if v > prev {
            sum += v - prev;
        }
        prev = v;
    }
    sum
}

/// A monotone cumulative function on `[x0, x1]`: jumps at breakpoints plus a linear ramp of
/// total `ramp` spread over the interval.
struct Cumulative {
    x: Vec<f64>,
    jump: Vec<f64>,
    slope: f64,
}

impl Cumulative {
    /// The first position where the function reaches `u` (`strict`: exceeds it); `x1` when it
    /// never does.
    fn first_reaching(&self, u: f64, strict: bool, x1: f64) -> f64 {
        let reached = |v: f64| if strict { v > u } else { v >= u };
        let mut value = 0.0;
        let mut at = self.x[0];
        for (&x, &j) in self.x.iter().zip(&self.jump) {
            let before = value + self.slope * (x - at);
            if reached(before) {
                // Within the ramp between the previous breakpoint and this one.
                return if self.slope > 0.0 {
                    (at + (u - value) / self.slope).clamp(at, x)
                } else {
                    at
                };
            }
            value = before + j;
            at = x;
            if reached(value) {
                return x;
            }
        }
        let end = value + self.slope * (x1 - at);
        if reached(end) && self.slope > 0.0 {
            return (at + (u - value) / self.slope).clamp(at, x1);
        }
        x1
    }
}

/// Leaf tips of one row over one sector swept from `-a` to `+a`: positions at the `m + 1`
/// control points for a sector of `total_mu`, starting closed at `start` and ending closed at
/// `end` (`start` at or before the row's fluence, `end` at or after it).
fn sweep_row(
    edges: &[f64],
    values: &[f64],
    (start, end): (f64, f64),
    total_mu: f64,
    m: usize,
) -> Vec<[f64; 2]> {
    let mut out = Vec::with_capacity(m + 1);
    let own = rises(values);
    if own <= 0.0 || total_mu <= 0.0 || end <= start {
        for j in 0..=m {
            let p = start + (end - start) * j as f64 / m as f64;
            out.push([p, p]);
        }
        return out;
    }
    // Increases (trailing leaf) and decreases (leading leaf) at each column edge.
    let n = values.len();
    let mut up = Vec::with_capacity(n + 1);
    let mut down = Vec::with_capacity(n + 1);
    for k in 0..=n {
        let before = if k == 0 { 0.0 } else { values[k - 1] };
        let after = if k == n { 0.0 } else { values[k] };
        up.push((after - before).max(0.0));
        down.push((before - after).max(0.0));
    }
    let slope = (total_mu - own) / (end - start);
    let mut xs = vec![start];
    xs.extend(edges.iter().copied().filter(|&e| e > start && e < end));
    let jumps = |steps: &[f64]| -> Vec<f64> {
        xs.iter()
            .map(|&x| {
                // Every edge at or before the start jumps at the start.
                edges
                    .iter()
                    .zip(steps)
                    .filter(|(e, _)| if x == start { **e <= start } else { **e == x })
                    .map(|(_, s)| *s)
                    .sum()
            })
            .collect()
    };
    let trail = Cumulative {
        jump: jumps(&up),
        x: xs.clone(),
        slope,
    };
    let lead = Cumulative {
        jump: jumps(&down),
        x: xs.clone(),
        slope,
    };
    out.push([start, start]);
    for j in 1..m {
        let u = total_mu * j as f64 / m as f64;
        out.push([
            trail.first_reaching(u, false, end),
            lead.first_reaching(u, true, end),
        ]);
    }
    out.push([end, end]);
    out
}

/// The beams of each arc and the sector each stands for: `(first, last)` gantry angle in the
/// clockwise sense, degrees.
fn sectors(beams: &Beams) -> Result<Vec<Vec<(f64, f64)>>> {
    let Arrangement::Arcs {
        beams_per_arc,
        start_deg,
        stop_deg,
        ..
    } = &beams.arrangement
    else {
        return Err(Error::invalid(
            "sequencing",
            "beams.technique",
            "static",
            "only arcs are sequenced into control points; static beams are not supported yet",
        ));
    };
    let full = (stop_deg - start_deg).abs() < 0.01;
    let span = if full {
        360.0
    } else {
        (stop_deg - start_deg).rem_euclid(360.0)
    };
    let step = span / *beams_per_arc as f64;
    Ok(beams
        .gantry_angles()
        .iter()
        .map(|angles| {
            angles
                .iter()
                .enumerate()
                .map(|(k, &g)| {
                    if full {
                        (g - 0.5 * step, g + 0.5 * step)
                    } else {
                        let s = start_deg + k as f64 * step;
                        (s, s + step)
                    }
                })
                .collect()
        })
        .collect())
}

/// Sequences the optimized `fields` (one per static beam of `beams`, in
/// [`crate::dose::geometry::beams_of`] order, weights in MU over the whole course) into
/// arcs of control points for `machine`, MU per fraction over `fractions`.
pub fn sequence(
    beams: &Beams,
    fields: &[FluenceMap],
    machine: &DeliveryMachine,
    energy_mv: f64,
    fractions: u32,
    settings: &SequenceSettings,
) -> Result<DeliverablePlan> {
    if !(settings.spacing_deg > 0.0
        && settings.spacing_deg <= machine.max_control_point_spacing_deg)
    {
        return Err(Error::invalid(
            "sequencing",
            "spacing-deg",
            settings.spacing_deg.to_string(),
            format!(
                "control points must be above 0 and at most {} degrees apart on {}",
                machine.max_control_point_spacing_deg, machine.name
            ),
        ));
    }
    if fractions == 0 {
        return Err(Error::invalid(
            "sequencing",
            "fractions",
            "0",
            "at least one",
        ));
    }
    let arcs_sectors = sectors(beams)?;
    let count: usize = arcs_sectors.iter().map(Vec::len).sum();
    if count != fields.len() || fields.is_empty() {
        return Err(Error::invalid(
            "sequencing",
            "fields",
            fields.len().to_string(),
            format!("the beam set-up has {count} beams"),
        ));
    }
    let first = &fields[0].beam;
    let iso: P3 = first.iso_mm;
    let boundaries = &machine.mlc.boundaries_mm;
    let pairs = machine.mlc.pairs();
    let gap = machine.mlc.min_leaf_gap_mm;
    let limit = machine.mlc.max_leaf_position_mm;
    let scale = 1.0 / fractions as f64;
    let mut arcs = Vec::new();
    let mut offset = 0;
    for (a, sectors) in arcs_sectors.iter().enumerate() {
        let n = sectors.len();
        let arc_fields = &fields[offset..offset + n];
        offset += n;
        let rotation = if a % 2 == 0 {
            Rotation::Clockwise
        } else {
            Rotation::CounterClockwise
        };
        // Sectors in delivery order.
        let order: Vec<usize> = match rotation {
            Rotation::Clockwise => (0..n).collect(),
            Rotation::CounterClockwise => (0..n).rev().collect(),
        };
        let rows: Vec<(Vec<f64>, Vec<Row>)> = arc_fields
            .iter()
            .map(|f| leaf_rows(f, boundaries, scale))
            .collect();
        let extents: Vec<Vec<Option<(f64, f64)>>> = rows
            .iter()
            .map(|(e, rs)| rs.iter().map(|r| extent(e, r)).collect())
            .collect();
        // Sweep direction of the s-th sector delivered: +1 from -a to +a.
        let dir = |s: usize| if s % 2 == 0 { 1.0 } else { -1.0 };
        // Closed positions of each row at the n + 1 sector boundaries (delivery order).
        let mut park = vec![vec![0.0f64; pairs]; n + 1];
        for r in 0..pairs {
            let ext = |s: usize| extents[order[s]][r];
            // Before the first sector: where its sweep starts (or the first field's start).
            let first_seen =
                (0..n).find_map(|s| ext(s).map(|e| if dir(s) > 0.0 { e.0 } else { e.1 }));
            let mut p = first_seen.unwrap_or(0.0);
            if let Some(e) = ext(0) {
                p = if dir(0) > 0.0 { e.0 } else { e.1 };
            }
            park[0][r] = p;
            for s in 0..n {
                // The boundary after sector s lies on the side its sweep ends.
                let here = ext(s);
                let next = if s + 1 < n { ext(s + 1) } else { None };
                let ends = [here, next].into_iter().flatten();
                p = if dir(s) > 0.0 {
                    ends.map(|e| e.1)
                        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                } else {
                    ends.map(|e| e.0)
                        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
                }
                .unwrap_or(p);
                park[s + 1][r] = p;
            }
        }
        let mut control_points: Vec<ControlPoint> = Vec::new();
        let mut cumulative = 0.0;
        for s in 0..n {
            let k = order[s];
            let (lo, hi) = sectors[k];
            let width = hi - lo;
            let m = (width / settings.spacing_deg - 1e-9).ceil().max(1.0) as usize;
            let (edges, rs) = &rows[k];
            let total = rs.iter().map(|r| rises(&r.values)).fold(0.0, f64::max);
            let d = dir(s);
            let sweeps: Vec<Vec<[f64; 2]>> = (0..pairs)
                .into_par_iter()
                .map(|r| {
                    let (start, end) = (park[s][r], park[s + 1][r]);
                    if d > 0.0 {
                        sweep_row(edges, &rs[r].values, (start, end), total, m)
                    } else {
                        // Mirror: sweep the reversed row in -a, then map back.
                        let me: Vec<f64> = edges.iter().rev().map(|e| -e).collect();
                        let mv: Vec<f64> = rs[r].values.iter().rev().copied().collect();
                        sweep_row(&me, &mv, (-start, -end), total, m)
                            .into_iter()
                            .map(|[l, r]| [-r, -l])
                            .collect()
                    }
                })
                .collect();
            let fitted: Vec<Vec<[f64; 2]>> = sweeps
                .par_iter()
                .zip(rs.par_iter())
                .map(|(sweep, row)| {
                    if settings.fit_iterations == 0 {
                        return sweep.clone();
                    }
                    let fit = RowFit {
                        edges,
                        values: &row.values,
                        segment_mu: total / m as f64,
                        transmission: machine.mlc.transmission,
                        min_gap_mm: gap,
                        samples: 4,
                        iterations: settings.fit_iterations,
                    };
                    refine_row(&fit, sweep)
                })
                .collect();
            let per_row = keep_span(sweeps, fitted, machine.mlc.max_leaf_span_mm);
            let first_j = if s == 0 { 0 } else { 1 };
            for j in first_j..=m {
                let angle = match rotation {
                    Rotation::Clockwise => lo + width * j as f64 / m as f64,
                    Rotation::CounterClockwise => hi - width * j as f64 / m as f64,
                };
                let leaves_mm = per_row
                    .iter()
                    .map(|t| {
                        let [mut l, mut r] = t[j];
                        if r - l < gap {
                            let c = 0.5 * (l + r);
                            (l, r) = (c - 0.5 * gap, c + 0.5 * gap);
                        }
                        [l.clamp(-limit, limit - gap), r.clamp(-limit + gap, limit)]
                    })
                    .collect();
                if j > 0 {
                    cumulative += total / m as f64;
                }
                control_points.push(ControlPoint {
                    gantry_deg: angle.rem_euclid(360.0),
                    cumulative_mu: cumulative,
                    leaves_mm,
                });
            }
        }
        let jaws = arc_jaws(&extents, boundaries).unwrap_or(Jaws {
            x_mm: [-gap, gap],
            y_mm: [boundaries[pairs / 2] - 1.0, boundaries[pairs / 2] + 1.0],
        });
        arcs.push(Arc {
            rotation,
            collimator_deg: beams.collimator_deg,
            jaws,
            control_points,
        });
    }
    let plan = DeliverablePlan {
        machine: machine.name.clone(),
        energy_mv,
        isocentre_mm: iso,
        sad_mm: first.sad_mm,
        fractions,
        leaf_boundaries_mm: boundaries.clone(),
        arcs,
    };
    plan.check("sequencing")?;
    Ok(plan)
}

/// The fitted trajectories of a sector's rows, except at control points where a bank of them
/// would spread wider than `max_span_mm` (the fit moves each row on its own): there every row
/// keeps its sweep position.
fn keep_span(
    sweeps: Vec<Vec<[f64; 2]>>,
    mut fitted: Vec<Vec<[f64; 2]>>,
    max_span_mm: f64,
) -> Vec<Vec<[f64; 2]>> {
    let Some(points) = fitted.first().map(Vec::len) else {
        return fitted;
    };
    for j in 0..points {
        let too_wide = (0..2).any(|bank| {
            let (lo, hi) = fitted
                .iter()
                .map(|t| t[j][bank])
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                });
            hi - lo > max_span_mm
        });
        if too_wide {
            for (f, s) in fitted.iter_mut().zip(&sweeps) {
                f[j] = s[j];
            }
        }
    }
    fitted
}

/// Jaws around every row's fluence of an arc: `x` over the fields' extents, `y` on the
/// boundaries of the outermost leaf pairs that carry fluence.
fn arc_jaws(extents: &[Vec<Option<(f64, f64)>>], boundaries: &[f64]) -> Option<Jaws> {
    let mut x = [f64::INFINITY, f64::NEG_INFINITY];
    let mut rows = [usize::MAX, 0];
    for sector in extents {
        for (r, e) in sector.iter().enumerate() {
            if let Some((lo, hi)) = e {
                x = [x[0].min(*lo), x[1].max(*hi)];
                rows = [rows[0].min(r), rows[1].max(r)];
            }
        }
    }
    (rows[0] != usize::MAX).then(|| Jaws {
        x_mm: x,
        y_mm: [boundaries[rows[0]], boundaries[rows[1] + 1]],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fluence at `x` delivered by piecewise-linear trajectories sampled at `m + 1` equally
    /// spaced MU (each segment `total / m`): the time the point is between the tips.
    fn delivered(traj: &[[f64; 2]], total: f64, x: f64) -> f64 {
        let m = traj.len() - 1;
        let seg = total / m as f64;
        let steps = 2000;
        let mut sum = 0.0;
        for j in 0..m {
            for k in 0..steps {
                let s = (k as f64 + 0.5) / steps as f64;
                let l = traj[j][0] + s * (traj[j + 1][0] - traj[j][0]);
                let r = traj[j][1] + s * (traj[j + 1][1] - traj[j][1]);
                if l < x && x < r {
                    sum += seg / steps as f64;
                }
            }
        }
        sum
    }

    #[test]
    fn an_open_row_is_delivered_uniformly_and_exactly_in_its_middle() {
        // Ten 5 mm columns of 2 MU from -25 to 25 mm.
        let edges: Vec<f64> = (0..=10).map(|i| -25.0 + 5.0 * i as f64).collect();
        let values = vec![2.0; 10];
        let t = sweep_row(&edges, &values, (-25.0, 25.0), 2.0, 10);
        assert_eq!(t[0], [-25.0, -25.0]);
        assert_eq!(t[10], [25.0, 25.0]);
        // The leading leaf runs to the far edge at once, the trailing one stays: open all along
        // the inner control points.
        for p in &t[1..10] {
            assert_eq!(*p, [-25.0, 25.0]);
        }
        // First and last segments deliver mirror ramps that add to one segment's MU.
        for x in [-20.0, -2.5, 0.0, 12.5, 22.0] {
            let f = delivered(&t, 2.0, x);
            assert!((f - 2.0 * 9.0 / 10.0).abs() < 2e-3, "x {x}: {f}");
        }
    }

    #[test]
    fn a_sweep_delivers_a_modulated_row_within_one_segment_of_it() {
        // A two-peaked row: the sweep needs the sum of increases (1 + 3 + 2 = 6 MU).
        let edges: Vec<f64> = (0..=8).map(|i| -20.0 + 5.0 * i as f64).collect();
        let values = [1.0, 4.0, 4.0, 2.0, 1.0, 3.0, 3.0, 1.0];
        assert_eq!(rises(&values), 6.0);
        let m = 60;
        let t = sweep_row(&edges, &values, (-20.0, 20.0), 6.0, m);
        for w in t.windows(2) {
            // Leaves only move forward, and never cross.
            assert!(w[1][0] >= w[0][0] - 1e-9 && w[1][1] >= w[0][1] - 1e-9);
            assert!(w[1][0] <= w[1][1] + 1e-9);
        }
        for (i, &v) in values.iter().enumerate() {
            let x = edges[i] + 2.5;
            let f = delivered(&t, 6.0, x);
            // Sampled trajectories smear each step over one segment (6 / 60 MU) on either leaf.
            assert!(
                (f - v).abs() <= 2.0 * 6.0 / m as f64 + 1e-3,
                "column {i}: {f} vs {v}"
            );
        }
    }

    #[test]
    fn a_row_needing_fewer_mu_spreads_its_travel() {
        let edges: Vec<f64> = (0..=4).map(|i| 5.0 * i as f64).collect();
        let values = [1.0, 1.0, 1.0, 1.0];
        // The sector needs 4 MU for another row: this one moves steadily, still delivering 1.
        let m = 80;
        let t = sweep_row(&edges, &values, (0.0, 20.0), 4.0, m);
        for x in [2.5, 7.5, 12.5, 17.5] {
            let f = delivered(&t, 4.0, x);
            assert!((f - 1.0).abs() < 0.1, "{x}: {f}");
        }
        let moved: f64 = t.windows(2).map(|w| w[1][0] - w[0][0]).fold(0.0, f64::max);
        assert!(moved < 1.0, "steps of at most {moved} mm");
    }
}
