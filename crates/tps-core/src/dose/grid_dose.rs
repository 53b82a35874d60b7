//! Dose on a whole grid, fast: the primary component summed directly over the few beamlets in
//! reach, the broad scatter components through separable convolutions of the fluence map
//! precomputed at a ladder of widths, each on a beam's-eye-view lattice of a quarter of its width.
//!
//! A Gaussian convolution of a map of square beamlets is separable:
//! `C(a, c) = sum_jc B(c - c_jc) sum_ja x(ja, jc) B(a - a_ja)`, so each width costs two
//! one-dimensional passes. A point's scatter dose interpolates bilinearly on the lattice and
//! linearly between the two widths of the ladder around its own width `sigma(d) SAD / t`.
//! `tests/dose_grid.rs` checks the result against direct superposition.

use rayon::prelude::*;

use super::engine::DoseEngine;
use super::geometry::{Beam, FluenceMap};
use super::model::{BeamModel, Component, box_gauss, erf};
use super::raytrace::DepthMap;
use crate::dose::geometry::P3;
use tps_api::grid::Grid;

const INV_SQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// Finest lattice spacing of the scatter maps, mm (scatter widths are 20 mm and more; wider
/// levels use a quarter of their width).
const LATTICE_MM: f64 = 4.0;
/// Ratio between neighbouring widths of the ladder.
const LADDER_RATIO: f64 = 1.2;
/// Widths below which a component is summed directly instead of convolved, mm.
const DIRECT_BELOW_MM: f64 = 8.0;

/// One width of the ladder: the convolved fluence on a lattice of spacing `step`.
struct Level {
    a0: f64,
    c0: f64,
    step: f64,
    na: usize,
    nc: usize,
    /// `map[ic * na + ia]`.
    map: Vec<f32>,
}

impl Level {
    fn build(field: &FluenceMap, sigma: f64, reach: f64) -> Self {
        let half = 0.5 * field.bixel_mm;
        // A map blurred with width sigma is smooth on sigma / 4: bilinear interpolation on
        // that spacing errs by under 1 % of the component (h^2 / (8 sigma^2)).
        let step = (sigma / 4.0).max(LATTICE_MM);
        let first = field.centre(0, 0);
        let last = field.centre(field.dims[0] - 1, field.dims[1] - 1);
        let a0 = first[0] - half - reach;
        let c0 = first[1] - half - reach;
        let na = ((last[0] + half + reach - a0) / step).ceil() as usize + 1;
        let nc = ((last[1] + half + reach - c0) / step).ceil() as usize + 1;
        let [nja, njc] = field.dims;
        let k = INV_SQRT2 / sigma;
        let ba: Vec<f64> = (0..na * nja)
            .map(|n| {
                let (ia, ja) = (n / nja, n % nja);
                box_gauss(a0 + ia as f64 * step - field.centre(ja, 0)[0], half, k)
            })
            .collect();
        let bc: Vec<f64> = (0..nc * njc)
            .map(|n| {
                let (ic, jc) = (n / njc, n % njc);
                box_gauss(c0 + ic as f64 * step - field.centre(0, jc)[1], half, k)
            })
            .collect();
        // t[jc * na + ia] = sum_ja x[ja, jc] B(a_ia - a_ja)
        let mut t = vec![0.0f64; njc * na];
        for jc in 0..njc {
            let row = &field.weights[jc * nja..(jc + 1) * nja];
            if row.iter().all(|&w| w == 0.0) {
                continue;
            }
            for ia in 0..na {
                let b = &ba[ia * nja..(ia + 1) * nja];
                t[jc * na + ia] = row.iter().zip(b).map(|(w, b)| w * b).sum();
            }
        }
        let mut map = vec![0.0f32; nc * na];
        for ic in 0..nc {
            let b = &bc[ic * njc..(ic + 1) * njc];
            let dst = &mut map[ic * na..(ic + 1) * na];
            for (jc, &bv) in b.iter().enumerate() {
                if bv < 1e-9 {
                    continue;
                }
                let src = &t[jc * na..(jc + 1) * na];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += (bv * s) as f32;
                }
            }
        }
        Self {
            a0,
            c0,
            step,
            na,
            nc,
            map,
        }
    }

    fn at(&self, a: f64, c: f64) -> f64 {
        let x = (a - self.a0) / self.step;
        let y = (c - self.c0) / self.step;
        if x < 0.0 || y < 0.0 || x >= (self.na - 1) as f64 || y >= (self.nc - 1) as f64 {
            return 0.0;
        }
        let (i, j) = (x as usize, y as usize);
        let (fx, fy) = (x - i as f64, y - j as f64);
        let v = |ii: usize, jj: usize| self.map[jj * self.na + ii] as f64;
        (v(i, j) * (1.0 - fx) + v(i + 1, j) * fx) * (1.0 - fy)
            + (v(i, j + 1) * (1.0 - fx) + v(i + 1, j + 1) * fx) * fy
    }
}

/// A component's convolved fluence at a ladder of widths.
struct ScatterMaps {
    ln_sigma0: f64,
    ln_ratio: f64,
    levels: Vec<Level>,
}

impl ScatterMaps {
    fn build(field: &FluenceMap, sigma_range: (f64, f64)) -> Self {
        let (smin, smax) = sigma_range;
        let n = ((smax / smin).ln() / LADDER_RATIO.ln()).ceil().max(1.0) as usize + 1;
        let reach = (4.0 * smax).min(250.0);
        let levels = (0..n)
            .into_par_iter()
            .map(|lv| Level::build(field, smin * LADDER_RATIO.powi(lv as i32), reach))
            .collect();
        Self {
            ln_sigma0: smin.ln(),
            ln_ratio: LADDER_RATIO.ln(),
            levels,
        }
    }

    fn lookup(&self, a: f64, c: f64, sigma: f64) -> f64 {
        let n = self.levels.len();
        if n == 1 {
            return self.levels[0].at(a, c);
        }
        let lv = ((sigma.ln() - self.ln_sigma0) / self.ln_ratio).clamp(0.0, (n - 1) as f64);
        let l0 = (lv.floor() as usize).min(n - 2);
        let fl = (lv - l0 as f64).clamp(0.0, 1.0);
        self.levels[l0].at(a, c) * (1.0 - fl) + self.levels[l0 + 1].at(a, c) * fl
    }
}

/// Direct sum of one component over the beamlets within reach of the point.
#[inline]
fn direct(field: &FluenceMap, comp_sigma_iso: f64, a: f64, c: f64) -> f64 {
    let half = 0.5 * field.bixel_mm;
    let k = INV_SQRT2 / comp_sigma_iso;
    let reach = half + 5.0 * comp_sigma_iso;
    let idx = |v: f64, o: f64, n: usize| -> (usize, usize) {
        let lo = ((v - reach - o) / field.bixel_mm).ceil().max(0.0);
        let hi = ((v + reach - o) / field.bixel_mm).floor();
        if hi < 0.0 || lo as usize >= n {
            return (1, 0);
        }
        (lo as usize, (hi as usize).min(n - 1))
    };
    let (i0, i1) = idx(a, field.origin[0], field.dims[0]);
    let (j0, j1) = idx(c, field.origin[1], field.dims[1]);
    if i0 > i1 || j0 > j1 {
        return 0.0;
    }
    // The kernel is separable: one factor per column of beamlets, one per row. Neighbouring
    // beamlets share an edge, so each factor is half the difference of the error function at
    // its two edges, and one `erf` per edge serves both beamlets beside it.
    let mut fa = [0.0f64; MAX_SPAN];
    let mut fc = [0.0f64; MAX_SPAN];
    let narrow = edge_factors(&mut fa, a, field.origin[0], field.bixel_mm, i0, i1, k)
        && edge_factors(&mut fc, c, field.origin[1], field.bixel_mm, j0, j1, k);
    if !narrow {
        return direct_wide(field, half, k, a, c, (i0, i1), (j0, j1));
    }
    let mut sum = 0.0;
    for j in j0..=j1 {
        let f = fc[j - j0];
        if f == 0.0 {
            continue;
        }
        let row = &field.weights[field.dims[0] * j + i0..=field.dims[0] * j + i1];
        let inner: f64 = row.iter().zip(&fa).map(|(w, g)| w * g).sum();
        sum += f * inner;
    }
    sum
}

/// Beamlets along one axis that [`direct`] handles with per-edge factors.
const MAX_SPAN: usize = 48;

/// Writes into `out` the kernel factor of beamlets `n0..=n1` along one axis (centres at
/// `origin + n * bixel`) for a point at `v`: `0.5 (erf((v - centre + half) k) - erf((v - centre
/// - half) k))`, one `erf` per edge. False when the span does not fit.
fn edge_factors(
    out: &mut [f64; MAX_SPAN],
    v: f64,
    origin: f64,
    bixel: f64,
    n0: usize,
    n1: usize,
    k: f64,
) -> bool {
    if n1 - n0 + 1 > MAX_SPAN {
        return false;
    }
    let half = 0.5 * bixel;
    let mut upper = erf((v - (origin + n0 as f64 * bixel) + half) * k);
    for (m, f) in out.iter_mut().enumerate().take(n1 - n0 + 1) {
        let lower = erf((v - (origin + (n0 + m) as f64 * bixel) - half) * k);
        *f = 0.5 * (upper - lower);
        upper = lower;
    }
    true
}

/// [`direct`] for a point whose reach spans more beamlets than [`MAX_SPAN`].
fn direct_wide(
    field: &FluenceMap,
    half: f64,
    k: f64,
    a: f64,
    c: f64,
    (i0, i1): (usize, usize),
    (j0, j1): (usize, usize),
) -> f64 {
    let mut sum = 0.0;
    for j in j0..=j1 {
        let fc = box_gauss(c - field.centre(0, j)[1], half, k);
        if fc == 0.0 {
            continue;
        }
        let row = &field.weights[field.dims[0] * j + i0..=field.dims[0] * j + i1];
        let mut inner = 0.0;
        for (i, &w) in (i0..).zip(row) {
            if w != 0.0 {
                inner += w * box_gauss(a - field.centre(i, 0)[0], half, k);
            }
        }
        sum += fc * inner;
    }
    sum
}

/// Range of `sigma(d) SAD / t` a component takes over the grid's points.
fn sigma_range(model: &BeamModel, comp: &Component, t_range: (f64, f64), d_max: f64) -> (f64, f64) {
    let s_lo = model.sigma(comp, 0.0) * model.sad_mm / t_range.1;
    let s_hi = model.sigma(comp, d_max) * model.sad_mm / t_range.0;
    (s_lo * 0.98, s_hi * 1.02)
}

/// A point as one beam sees it: isocentre-plane coordinates, radiological depth and the
/// inverse-square factor `SAD / t` (0 for a point behind the source).
#[derive(Debug, Clone, Copy)]
struct BeamPoint {
    a: f32,
    c: f32,
    depth: f32,
    to_iso: f32,
}

/// Points prepared once for repeated dose calculations with changing fluence: what each beam
/// sees of each point (ray tracing done), so a new fluence costs only the scatter maps and the
/// sums. Built by [`DoseEngine::prepare_points`].
#[derive(Debug, Clone)]
pub struct PreparedPoints {
    beams: Vec<Beam>,
    /// `per_beam[b][point]`.
    per_beam: Vec<Vec<BeamPoint>>,
    n_points: usize,
}

impl PreparedPoints {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.n_points
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.n_points == 0
    }
}

/// Scatter maps of `field` for the broad components (`None` for the ones summed directly),
/// covering the distances from the source `t_range` and depths up to `d_max`.
fn scatter_maps_for(
    model: &BeamModel,
    field: &FluenceMap,
    t_range: (f64, f64),
    d_max: f64,
) -> Vec<Option<ScatterMaps>> {
    let t_range = (t_range.0.max(0.5 * model.sad_mm), t_range.1);
    model
        .components
        .iter()
        .map(|comp| {
            let (lo, hi) = sigma_range(model, comp, t_range, d_max);
            (lo >= DIRECT_BELOW_MM).then(|| ScatterMaps::build(field, (lo, hi)))
        })
        .collect()
}

/// Dose (cGy) of `field` at a point seen at `(a, c)` with radiological depth `d` and
/// inverse-square factor `to_iso`.
#[inline]
fn point_dose(
    model: &BeamModel,
    field: &FluenceMap,
    scatter: &[Option<ScatterMaps>],
    (a, c): (f64, f64),
    d: f64,
    to_iso: f64,
) -> f64 {
    let mut sum = 0.0;
    for (comp, maps) in model.components.iter().zip(scatter) {
        let w = model.weight(comp, d);
        if w == 0.0 {
            continue;
        }
        let sigma_iso = model.sigma(comp, d) * to_iso;
        sum += w * match maps {
            Some(m) => m.lookup(a, c, sigma_iso),
            None => direct(field, sigma_iso, a, c),
        };
    }
    sum * to_iso * to_iso * model.cgy_per_unit
}

impl DoseEngine<'_> {
    /// Dose (cGy) on every voxel of `dose_grid` where `inside` holds (all voxels when `None`),
    /// from the beamlets of `fields`.
    pub fn dose_on_grid(
        &self,
        fields: &[FluenceMap],
        dose_grid: &Grid,
        inside: Option<&[bool]>,
    ) -> Vec<f32> {
        self.dose_on_grid_with_progress(fields, dose_grid, inside, |_| {})
    }

    /// As [`DoseEngine::dose_on_grid`], calling `progress(beams done)` after each beam.
    pub fn dose_on_grid_with_progress(
        &self,
        fields: &[FluenceMap],
        dose_grid: &Grid,
        inside: Option<&[bool]>,
        progress: impl Fn(usize),
    ) -> Vec<f32> {
        let model = self.model();
        let mut total = vec![0.0f64; dose_grid.len()];
        for (n, field) in fields.iter().enumerate() {
            if field.weights.iter().all(|&w| w == 0.0) {
                progress(n + 1);
                continue;
            }
            let map = self.depth_map(&field.beam);
            let contribution = self.field_dose(model, field, &map, dose_grid, inside);
            total
                .par_iter_mut()
                .zip(contribution.par_iter())
                .for_each(|(t, c)| *t += c);
            progress(n + 1);
        }
        total.into_iter().map(|v| v as f32).collect()
    }

    fn field_dose(
        &self,
        model: &BeamModel,
        field: &FluenceMap,
        map: &DepthMap,
        g: &Grid,
        inside: Option<&[bool]>,
    ) -> Vec<f64> {
        // Distances from the source over the grid bound the widths seen.
        let (mut tmin, mut tmax) = (f64::INFINITY, 0.0f64);
        for corner in 0..8 {
            let p = [0, 1, 2].map(|a| {
                g.coord_mm(
                    a,
                    if corner >> a & 1 == 1 {
                        g.dims[a] - 1
                    } else {
                        0
                    },
                )
            });
            let b = field.beam.bev(p);
            tmin = tmin.min(b.t);
            tmax = tmax.max(b.t);
        }
        let extent = g.extent_mm();
        let d_max = 1.5 * (extent[0].powi(2) + extent[1].powi(2) + extent[2].powi(2)).sqrt();
        let scatter = scatter_maps_for(model, field, (tmin, tmax), d_max);
        let [nx, ny, _] = g.dims;
        let mut out = vec![0.0f64; g.len()];
        out.par_chunks_mut(nx * ny)
            .enumerate()
            .for_each(|(k, slab)| {
                for j in 0..ny {
                    for i in 0..nx {
                        let n = i + nx * j;
                        if inside.is_some_and(|m| !m[n + nx * ny * k]) {
                            continue;
                        }
                        let b = field.beam.bev(g.position_mm(i, j, k));
                        if b.t <= 0.0 {
                            continue;
                        }
                        let d = map.depth(b.a, b.c, b.l);
                        slab[n] =
                            point_dose(model, field, &scatter, (b.a, b.c), d, model.sad_mm / b.t);
                    }
                }
            });
        out
    }

    /// Traces `points` (mm) once for each of `beams`, for [`DoseEngine::dose_at_prepared`].
    pub fn prepare_points(&self, beams: &[Beam], points: &[P3]) -> PreparedPoints {
        let per_beam = beams
            .par_iter()
            .map(|beam| {
                let map = self.depth_map(beam);
                points
                    .iter()
                    .map(|&p| {
                        let b = beam.bev(p);
                        if b.t <= 0.0 {
                            return BeamPoint {
                                a: 0.0,
                                c: 0.0,
                                depth: 0.0,
                                to_iso: 0.0,
                            };
                        }
                        BeamPoint {
                            a: b.a as f32,
                            c: b.c as f32,
                            depth: map.depth(b.a, b.c, b.l) as f32,
                            to_iso: (self.model().sad_mm / b.t) as f32,
                        }
                    })
                    .collect()
            })
            .collect();
        PreparedPoints {
            beams: beams.to_vec(),
            per_beam,
            n_points: points.len(),
        }
    }

    /// Dose (cGy) at prepared points from `fields`, whose beams must be the prepared beams in
    /// the same order; the same model as [`DoseEngine::dose_on_grid`].
    pub fn dose_at_prepared(&self, fields: &[FluenceMap], prepared: &PreparedPoints) -> Vec<f64> {
        assert_eq!(
            fields.len(),
            prepared.beams.len(),
            "one field per prepared beam"
        );
        let model = self.model();
        let mut total = vec![0.0f64; prepared.n_points];
        for ((field, beam), points) in fields.iter().zip(&prepared.beams).zip(&prepared.per_beam) {
            assert_eq!(&field.beam, beam, "fields must follow the prepared beams");
            if field.weights.iter().all(|&w| w == 0.0) {
                continue;
            }
            let seen = points.iter().filter(|p| p.to_iso > 0.0);
            let (t_lo, t_hi, d_max) = seen.fold((f64::INFINITY, 0.0f64, 0.0f64), |acc, p| {
                let t = model.sad_mm / p.to_iso as f64;
                (acc.0.min(t), acc.1.max(t), acc.2.max(p.depth as f64))
            });
            if t_hi == 0.0 {
                continue;
            }
            let scatter = scatter_maps_for(model, field, (t_lo, t_hi), d_max + 1.0);
            total.par_iter_mut().zip(points).for_each(|(t, p)| {
                if p.to_iso > 0.0 {
                    *t += point_dose(
                        model,
                        field,
                        &scatter,
                        (p.a as f64, p.c as f64),
                        p.depth as f64,
                        p.to_iso as f64,
                    );
                }
            });
        }
        total
    }
}
