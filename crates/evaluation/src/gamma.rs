//! The gamma index: how well an evaluated dose agrees with a reference dose in dose and in
//! space at once.
//!
//! For a reference point `p` with dose `R(p)`, gamma is the smallest value over evaluated points
//! `x` of `sqrt(|x - p|² / DTA² + (E(x) - R(p))² / ΔD²)` (Low et al. 1998, Med. Phys. 25:656,
//! eq. 4-6), where `DTA` is the distance-to-agreement criterion and `ΔD` the dose criterion. Here
//! the analysis is **global**: `ΔD` is a percentage of one normalization dose, the prescription
//! or the reference maximum. Reference points below a lower cutoff (a percentage of that same
//! dose, 10 % by default) are not evaluated. A point passes when its gamma is at most 1.
//!
//! # How the minimum is found
//!
//! The evaluated dose is interpolated trilinearly between voxel centres, as in pymedphys and in
//! the sub-voxel search that Low and Dempsey (2003, Med. Phys. 30:2455) recommend, and
//! sampled at a resolution finer than `DTA / resolution-fraction` (0.3 mm at 3 mm with the
//! default 10, the step Wendling et al. 2007, Med. Phys. 34:1647 recommend). Instead of testing
//! every sample of a sphere around each point, the search walks the grid cells around `p` in
//! order of their distance and bisects each cell into octants, skipping any box whose lower
//! bound cannot beat the best gamma found so far. The bound is exact for trilinear
//! interpolation: inside a box the interpolated dose lies between the smallest and the largest
//! of its eight corner values, and the distance part is the distance from `p` to the box. The
//! search stops at the first cell farther than the current best (or than `max-gamma`, the cap
//! above which gamma is reported as the cap). The result is the minimum over the centres of
//! all boxes at the finest level, which lie on a lattice finer than the step; a point whose
//! gamma is smaller than the distance to the nearest such centre keeps its gamma at `p`
//! itself.
//!
//! Both doses must lie on the same grid; a dose from elsewhere is resampled onto the
//! reference grid first. Points of the search outside the grid are not used.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tps_api::dose::Dose;

use crate::error::{Error, Result};

fn ten() -> f64 {
    10.0
}

fn two() -> f64 {
    2.0
}

/// What counts as agreement, and where gamma is computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GammaCriteria {
    /// Dose-difference criterion, percent of the normalization dose (3 for 3%/3 mm).
    pub dose_percent: f64,
    /// Distance-to-agreement criterion in millimetres (3 for 3%/3 mm).
    pub distance_mm: f64,
    /// Reference points below this percentage of the normalization dose are not evaluated.
    #[serde(default = "ten")]
    pub lower_cutoff_percent: f64,
    /// The dose that percentages refer to, in cGy (the prescription, say); `None` for the
    /// maximum of the reference dose.
    #[serde(default)]
    pub normalization_cgy: Option<f64>,
    /// Gamma values above this are reported as this value, and the search stops at this many
    /// `distance-mm`. Pass rates do not depend on it as long as it is at least 1.
    #[serde(default = "two")]
    pub max_gamma: f64,
    /// The evaluated dose is searched at a resolution finer than `distance-mm` divided by this.
    #[serde(default = "ten")]
    pub resolution_fraction: f64,
}

impl GammaCriteria {
    /// Global gamma at `dose_percent` % / `distance_mm` mm with the default cutoff (10 %),
    /// normalization (reference maximum), cap (2) and resolution (a tenth of the distance).
    pub fn new(dose_percent: f64, distance_mm: f64) -> Self {
        Self {
            dose_percent,
            distance_mm,
            lower_cutoff_percent: ten(),
            normalization_cgy: None,
            max_gamma: two(),
            resolution_fraction: ten(),
        }
    }

    /// The criteria as people write them: "3%/3 mm".
    pub fn label(&self) -> String {
        format!("{}%/{} mm", self.dose_percent, self.distance_mm)
    }

    /// Refuses criteria that cannot be computed, naming the field and its value.
    pub fn check(&self) -> Result<()> {
        let bad = |field: &str, value: f64, want: &str| {
            Err(Error::BadInput(format!(
                "gamma criteria: {field} = {value} ({want})"
            )))
        };
        if !(self.dose_percent.is_finite() && self.dose_percent > 0.0) {
            return bad("dose-percent", self.dose_percent, "must be positive");
        }
        if !(self.distance_mm.is_finite() && self.distance_mm > 0.0) {
            return bad("distance-mm", self.distance_mm, "must be positive");
        }
        if !(0.0..100.0).contains(&self.lower_cutoff_percent) {
            return bad(
                "lower-cutoff-percent",
                self.lower_cutoff_percent,
                "must be at least 0 and below 100",
            );
        }
        if let Some(n) = self.normalization_cgy
            && !(n.is_finite() && n > 0.0)
        {
            return bad("normalization-cgy", n, "must be a positive dose");
        }
        if !(self.max_gamma.is_finite() && self.max_gamma >= 1.0 && self.max_gamma <= 20.0) {
            return bad("max-gamma", self.max_gamma, "must be between 1 and 20");
        }
        if !(self.resolution_fraction.is_finite()
            && (1.0..=100.0).contains(&self.resolution_fraction))
        {
            return bad(
                "resolution-fraction",
                self.resolution_fraction,
                "must be between 1 and 100",
            );
        }
        Ok(())
    }
}

/// Gamma at every reference point, and its summary.
#[derive(Debug, Clone)]
pub struct GammaMap {
    /// Gamma per voxel of the reference grid (x-fastest); NaN where the reference dose is
    /// below the cutoff. Capped at the criteria's `max-gamma`.
    pub gamma: Vec<f32>,
    /// The summary of the evaluated points.
    pub summary: GammaSummary,
}

/// Pass rate and distribution of gamma over the evaluated points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GammaSummary {
    /// The criteria used.
    pub criteria: GammaCriteria,
    /// The dose the percentages referred to, in cGy.
    pub normalization_cgy: f64,
    /// Reference points at or above the cutoff.
    pub evaluated: usize,
    /// Of those, points with gamma at most 1.
    pub passed: usize,
    /// `passed / evaluated` in percent (100 when nothing was evaluated is never reported: see
    /// [`gamma`], which refuses a reference with no point above the cutoff).
    pub pass_rate_percent: f64,
    /// Mean gamma (capped values count as the cap).
    pub mean: f64,
    /// Largest gamma (at most the cap).
    pub max: f64,
}

/// Global gamma of `evaluated` against `reference` (same grid) under `criteria`.
///
/// Errors name what is wrong: criteria out of range, grids that differ, a dose that is not
/// finite, a normalization dose of zero, or no reference point above the cutoff.
pub fn gamma(reference: &Dose, evaluated: &Dose, criteria: &GammaCriteria) -> Result<GammaMap> {
    criteria.check()?;
    if reference.grid() != evaluated.grid() {
        return Err(Error::Mismatch(format!(
            "gamma needs both doses on one grid: reference {:?} spacing {:?} mm origin {:?} mm, \
             evaluated {:?} spacing {:?} mm origin {:?} mm (resample one onto the other first)",
            reference.grid().dims,
            reference.grid().spacing_mm,
            reference.grid().origin_mm,
            evaluated.grid().dims,
            evaluated.grid().spacing_mm,
            evaluated.grid().origin_mm,
        )));
    }
    for (name, d) in [("reference", reference), ("evaluated", evaluated)] {
        if let Some((i, v)) = d.first_invalid() {
            return Err(Error::BadInput(format!(
                "gamma: the {name} dose has {v} cGy at voxel {:?}",
                d.grid().ijk(i)
            )));
        }
    }
    let norm = match criteria.normalization_cgy {
        Some(n) => n,
        None => f64::from(reference.max_cgy()),
    };
    if norm <= 0.0 {
        return Err(Error::BadInput(
            "gamma: the reference dose is zero everywhere, so there is no maximum to normalize to"
                .into(),
        ));
    }
    let cutoff = criteria.lower_cutoff_percent / 100.0 * norm;
    let kernel = Kernel::new(reference, evaluated, criteria, norm);
    let r = reference.cgy();
    let [nx, ny, _] = reference.grid().dims;
    let mut out = vec![f32::NAN; r.len()];
    out.par_chunks_mut(nx * ny)
        .enumerate()
        .for_each(|(k, slice)| {
            let mut open = Vec::new();
            for j in 0..ny {
                for i in 0..nx {
                    let idx = i + nx * j;
                    let rv = f64::from(r[idx + k * nx * ny]);
                    if rv >= cutoff {
                        slice[idx] = kernel.at([i, j, k], rv, &mut open) as f32;
                    }
                }
            }
        });
    let mut evaluated_points = 0usize;
    let mut passed = 0usize;
    let mut sum = 0.0f64;
    let mut max = 0.0f64;
    for &g in out.iter().filter(|g| !g.is_nan()) {
        evaluated_points += 1;
        if g <= 1.0 {
            passed += 1;
        }
        sum += f64::from(g);
        max = max.max(f64::from(g));
    }
    if evaluated_points == 0 {
        return Err(Error::BadInput(format!(
            "gamma: no reference point reaches the lower cutoff of {} % of {norm:.1} cGy",
            criteria.lower_cutoff_percent
        )));
    }
    Ok(GammaMap {
        gamma: out,
        summary: GammaSummary {
            criteria: criteria.clone(),
            normalization_cgy: norm,
            evaluated: evaluated_points,
            passed,
            pass_rate_percent: 100.0 * passed as f64 / evaluated_points as f64,
            mean: sum / evaluated_points as f64,
            max,
        },
    })
}

/// A grid cell around the reference point: the cube between the voxel centres `p + offset` and
/// `p + offset + (1, 1, 1)`, with its squared distance to `p` in units of the DTA.
struct Cell {
    offset: [isize; 3],
    dmin2: f64,
}

/// Everything the per-point search reads, fixed for one analysis.
struct Kernel<'a> {
    eval: &'a [f32],
    dims: [usize; 3],
    /// One voxel step along each axis in units of the DTA.
    step: [f64; 3],
    /// 1 / the dose criterion in cGy.
    inv_dd: f64,
    max2: f64,
    max_gamma: f64,
    /// How many times a cell is halved before its boxes are sampled at their centres.
    depth: u32,
    /// Squared distance (DTA units) from a grid point to the nearest centre of a finest box.
    leaf2: f64,
    cells: Vec<Cell>,
}

impl<'a> Kernel<'a> {
    fn new(reference: &Dose, evaluated: &'a Dose, c: &GammaCriteria, norm: f64) -> Self {
        let g = reference.grid();
        let step = g.spacing_mm.map(|s| s / c.distance_mm);
        let resolution_mm = c.distance_mm / c.resolution_fraction;
        let widest = g.spacing_mm.iter().cloned().fold(0.0, f64::max);
        let mut depth = 0;
        while widest / f64::from(1u32 << depth) > resolution_mm {
            depth += 1;
        }
        let leaf2 = step
            .iter()
            .map(|s| (0.5 * s / f64::from(1u32 << depth)).powi(2))
            .sum();
        let max2 = c.max_gamma * c.max_gamma;
        // Every cell that can hold a point within max-gamma DTAs, nearest first.
        let reach = step.map(|s| (c.max_gamma / s).ceil() as isize);
        let mut cells = Vec::new();
        for a in -reach[2]..reach[2] {
            for b in -reach[1]..reach[1] {
                for o in -reach[0]..reach[0] {
                    let offset = [o, b, a];
                    let dmin2: f64 = (0..3)
                        .map(|ax| {
                            let lo = offset[ax] as f64 * step[ax];
                            let hi = lo + step[ax];
                            gap(lo, hi).powi(2)
                        })
                        .sum();
                    if dmin2 < max2 {
                        cells.push(Cell { offset, dmin2 });
                    }
                }
            }
        }
        cells.sort_by(|x, y| x.dmin2.total_cmp(&y.dmin2));
        Self {
            eval: evaluated.cgy(),
            dims: g.dims,
            step,
            inv_dd: 1.0 / (c.dose_percent / 100.0 * norm),
            max2,
            max_gamma: c.max_gamma,
            depth,
            leaf2,
            cells,
        }
    }

    /// Gamma at grid point `p` whose reference dose is `r` cGy.
    /// `open` is scratch space for the cells to open, reused from point to point.
    fn at(&self, p: [usize; 3], r: f64, open: &mut Vec<(f64, usize, [f64; 8])>) -> f64 {
        let [nx, ny, nz] = self.dims;
        let e0 = f64::from(self.eval[p[0] + nx * (p[1] + ny * p[2])]);
        let mut best2 = ((e0 - r) * self.inv_dd).powi(2);
        if best2 > self.leaf2 {
            let mut search = Search {
                r,
                inv_dd: self.inv_dd,
                best2,
                limit: best2.min(self.max2),
            };
            // The cells near enough to matter, with their bounds, opened best bound first.
            open.clear();
            for (n, cell) in self.cells.iter().enumerate() {
                if cell.dmin2 >= search.limit {
                    break;
                }
                let lo = [0, 1, 2].map(|ax| p[ax] as isize + cell.offset[ax]);
                if lo[0] < 0
                    || lo[1] < 0
                    || lo[2] < 0
                    || lo[0] + 1 >= nx as isize
                    || lo[1] + 1 >= ny as isize
                    || lo[2] + 1 >= nz as isize
                {
                    continue;
                }
                let base = lo[0] as usize + nx * (lo[1] as usize + ny * lo[2] as usize);
                let mut v = [0.0f64; 8];
                for (c, value) in v.iter_mut().enumerate() {
                    let idx = base + (c & 1) + nx * (((c >> 1) & 1) + ny * (c >> 2));
                    *value = f64::from(self.eval[idx]);
                }
                let lb = search.bound(cell.dmin2, &v);
                if lb < search.limit {
                    open.push((lb, n, v));
                }
            }
            open.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));
            for (lb, n, v) in open.iter() {
                if *lb >= search.limit {
                    break;
                }
                let cell = &self.cells[*n];
                let corner = [0, 1, 2].map(|ax| cell.offset[ax] as f64 * self.step[ax]);
                search.descend(corner, self.step, v, self.depth);
            }
            best2 = search.best2;
        }
        best2.sqrt().min(self.max_gamma)
    }
}

/// The distance from 0 to the interval `[lo, hi]`.
fn gap(lo: f64, hi: f64) -> f64 {
    if lo > 0.0 {
        lo
    } else if hi < 0.0 {
        -hi
    } else {
        0.0
    }
}

/// The running minimum of one point's search.
struct Search {
    r: f64,
    inv_dd: f64,
    best2: f64,
    /// `best2` or the cap, whichever is smaller: what a box must beat to be opened.
    limit: f64,
}

impl Search {
    /// The lower bound of gamma² over a box whose squared distance to the reference point is
    /// `d2` and whose corner doses are `v`.
    fn bound(&self, d2: f64, v: &[f64; 8]) -> f64 {
        let (vmin, vmax) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let dd = (vmin - self.r).max(self.r - vmax).max(0.0) * self.inv_dd;
        d2 + dd * dd
    }

    /// Searches the box at `lo` (position relative to the reference point, DTA units) of edge
    /// `size`, with the evaluated dose `v` at its corners (index `x + 2y + 4z`), whose lower
    /// bound the caller found below the limit. Children are opened best bound first, so a
    /// good gamma is found early and prunes the rest.
    fn descend(&mut self, lo: [f64; 3], size: [f64; 3], v: &[f64; 8], depth: u32) {
        if depth == 0 {
            // The interpolated dose at a box's centre is the mean of its corners.
            let centre: f64 = (0..3).map(|a| (lo[a] + 0.5 * size[a]).powi(2)).sum();
            let mean = v.iter().sum::<f64>() * 0.125;
            let g2 = centre + ((mean - self.r) * self.inv_dd).powi(2);
            if g2 < self.best2 {
                self.best2 = g2;
                self.limit = self.limit.min(g2);
            }
            return;
        }
        let half = size.map(|s| 0.5 * s);
        // Children near enough first (distance alone rejects most of them when the best
        // gamma is already small), then their dose bounds from the halved lattice.
        let mut near = [(0.0f64, 0usize); 8];
        let mut count = 0;
        for c in 0..8 {
            let d2: f64 = (0..3)
                .map(|a| {
                    let l = lo[a] + ((c >> a) & 1) as f64 * half[a];
                    gap(l, l + half[a]).powi(2)
                })
                .sum();
            if d2 < self.limit {
                near[count] = (d2, c);
                count += 1;
            }
        }
        if count == 0 {
            return;
        }
        let lattice = halves(v);
        let corners = |c: usize| {
            let (cx, cy, cz) = (c & 1, (c >> 1) & 1, c >> 2);
            let mut cv = [0.0f64; 8];
            for (k, value) in cv.iter_mut().enumerate() {
                let (x, y, z) = (cx + (k & 1), cy + ((k >> 1) & 1), cz + (k >> 2));
                *value = lattice[x + 3 * y + 9 * z];
            }
            cv
        };
        let mut open = 0;
        for n in 0..count {
            let (d2, c) = near[n];
            let lb = self.bound(d2, &corners(c));
            if lb < self.limit {
                near[open] = (lb, c);
                open += 1;
            }
        }
        let children = &mut near[..open];
        children.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));
        for &(lb, c) in children.iter() {
            if lb >= self.limit {
                break;
            }
            let child_lo = [0, 1, 2].map(|a| lo[a] + ((c >> a) & 1) as f64 * half[a]);
            self.descend(child_lo, half, &corners(c), depth - 1);
        }
    }
}

/// The trilinear values on the 3 x 3 x 3 lattice of a box's corners, edge midpoints, face
/// centres and centre (index `x + 3y + 9z`), from its eight corners.
fn halves(v: &[f64; 8]) -> [f64; 27] {
    let mut l = [0.0f64; 27];
    for z in 0..2 {
        for y in 0..2 {
            let a = v[2 * y + 4 * z];
            let b = v[1 + 2 * y + 4 * z];
            let row = 3 * (2 * y) + 9 * (2 * z);
            l[row] = a;
            l[row + 1] = 0.5 * (a + b);
            l[row + 2] = b;
        }
    }
    for z in [0, 2] {
        for x in 0..3 {
            l[x + 3 + 9 * z] = 0.5 * (l[x + 9 * z] + l[x + 6 + 9 * z]);
        }
    }
    for y in 0..3 {
        for x in 0..3 {
            l[x + 3 * y + 9] = 0.5 * (l[x + 3 * y] + l[x + 3 * y + 18]);
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use tps_api::grid::Grid;

    fn dose(dims: [usize; 3], f: impl Fn(f64, f64, f64) -> f64) -> Dose {
        let grid = Grid::new(dims, [2.0, 2.0, 2.0], [0.0, 0.0, 0.0]).unwrap();
        let mut v = Vec::with_capacity(grid.len());
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    v.push(f(2.0 * i as f64, 2.0 * j as f64, 2.0 * k as f64) as f32);
                }
            }
        }
        Dose::new(grid, v).unwrap()
    }

    #[test]
    fn lattice_is_trilinear() {
        let f = |x: f64, y: f64, z: f64| 1.0 + 2.0 * x - 3.0 * y + 0.5 * z + x * y * z;
        let mut v = [0.0; 8];
        for (c, value) in v.iter_mut().enumerate() {
            *value = f((c & 1) as f64, ((c >> 1) & 1) as f64, (c >> 2) as f64);
        }
        let l = halves(&v);
        for z in 0..3 {
            for y in 0..3 {
                for x in 0..3 {
                    let want = f(x as f64 / 2.0, y as f64 / 2.0, z as f64 / 2.0);
                    assert!((l[x + 3 * y + 9 * z] - want).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn identical_doses_give_zero_and_full_pass() {
        let d = dose([12, 11, 10], |x, y, z| 100.0 + x + 2.0 * y - z);
        let g = gamma(&d, &d, &GammaCriteria::new(3.0, 3.0)).unwrap();
        assert_eq!(g.summary.pass_rate_percent, 100.0);
        assert_eq!(g.summary.max, 0.0);
        assert_eq!(g.summary.evaluated, 12 * 11 * 10);
    }

    /// A uniform dose difference and no gradient: gamma is the dose difference over the
    /// criterion everywhere, since moving cannot help.
    #[test]
    fn uniform_offset_gives_the_dose_ratio() {
        let r = dose([10, 10, 10], |_, _, _| 1000.0);
        let e = dose([10, 10, 10], |_, _, _| 1020.0);
        let g = gamma(&r, &e, &GammaCriteria::new(3.0, 3.0)).unwrap();
        assert!((g.summary.max - 2.0 / 3.0).abs() < 1e-6, "{:?}", g.summary);
        assert!((g.summary.mean - 2.0 / 3.0).abs() < 1e-6);
        let g = gamma(&r, &e, &GammaCriteria::new(1.0, 3.0)).unwrap();
        assert!((g.summary.max - 2.0).abs() < 1e-6);
        assert_eq!(g.summary.passed, 0);
    }

    /// A shift of a linear ramp: the evaluated dose equals the reference dose 1 mm away, so
    /// gamma is at most 1/3 at 3%/3 mm; with 1 mm DTA and a tight dose criterion it tends to
    /// the analytic minimum of the quadratic (d/DTA)² + ((g(s-d))/ΔD)².
    #[test]
    fn shifted_ramp_matches_the_analytic_minimum() {
        let grad = 10.0; // cGy per mm, along x
        let r = dose([20, 6, 6], |x, _, _| 500.0 + grad * x);
        let e = dose([20, 6, 6], |x, _, _| 500.0 + grad * (x - 1.0));
        let c = GammaCriteria {
            normalization_cgy: Some(1000.0),
            lower_cutoff_percent: 0.0,
            ..GammaCriteria::new(1.0, 1.0)
        };
        let g = gamma(&r, &e, &c).unwrap();
        // Minimize (d/1)^2 + (grad (1 - d) / 10)^2 over d: a = 1, b = grad/10 = 1 -> d = 0.5,
        // gamma^2 = 0.25 + 0.25.
        let want = 0.5f64.sqrt();
        // Interior points only: at the grid's edge the search cannot look outside.
        for k in 1..5 {
            for j in 1..5 {
                for i in 2..18 {
                    let v = f64::from(g.gamma[i + 20 * (j + 6 * k)]);
                    assert!((v - want).abs() < 0.01, "({i},{j},{k}): {v} vs {want}");
                }
            }
        }
    }

    #[test]
    fn cutoff_skips_low_dose_and_a_cap_bounds_gamma() {
        let r = dose([10, 10, 10], |x, _, _| if x < 9.0 { 50.0 } else { 1000.0 });
        let e = dose([10, 10, 10], |_, _, _| 0.0);
        let g = gamma(&r, &e, &GammaCriteria::new(3.0, 3.0)).unwrap();
        assert_eq!(g.summary.evaluated, 5 * 10 * 10);
        assert_eq!(g.summary.max, 2.0);
        assert!(g.gamma[0].is_nan());
    }

    #[test]
    fn bad_criteria_and_grids_are_refused() {
        let r = dose([4, 4, 4], |_, _, _| 1.0);
        for (c, field) in [
            (GammaCriteria::new(0.0, 3.0), "dose-percent"),
            (GammaCriteria::new(3.0, -1.0), "distance-mm"),
            (
                GammaCriteria {
                    max_gamma: 0.5,
                    ..GammaCriteria::new(3.0, 3.0)
                },
                "max-gamma",
            ),
            (
                GammaCriteria {
                    normalization_cgy: Some(0.0),
                    ..GammaCriteria::new(3.0, 3.0)
                },
                "normalization-cgy",
            ),
        ] {
            let e = gamma(&r, &r, &c).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        let other = dose([4, 4, 5], |_, _, _| 1.0);
        let e = gamma(&r, &other, &GammaCriteria::new(3.0, 3.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("one grid"), "{e}");
        let zero = dose([4, 4, 4], |_, _, _| 0.0);
        let e = gamma(&zero, &r, &GammaCriteria::new(3.0, 3.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("zero everywhere"), "{e}");
    }
}
