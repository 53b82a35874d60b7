//! Dose on a whole grid, fast: the primary component summed directly over the few beamlets in
//! reach, the broad scatter components through separable convolutions of the fluence map
//! precomputed on a coarse beam's-eye-view lattice at a ladder of widths.
//!
//! A Gaussian convolution of a map of square beamlets is separable:
//! `C(a, c) = sum_jc B(c - c_jc) sum_ja x(ja, jc) B(a - a_ja)`, so each width costs two
//! one-dimensional passes. A point's scatter dose interpolates bilinearly on the lattice and
//! linearly between the two widths of the ladder around its own width `sigma(d) SAD / t`.
//! `tests/dose_grid.rs` checks the result against direct superposition.

use rayon::prelude::*;

use super::engine::DoseEngine;
use super::geometry::FluenceMap;
use super::model::{BeamModel, Component, box_gauss};
use super::raytrace::DepthMap;
use crate::grid::Grid;

const INV_SQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// Lattice spacing of the scatter maps, mm (scatter widths are 20 mm and more).
const LATTICE_MM: f64 = 4.0;
/// Ratio between neighbouring widths of the ladder.
const LADDER_RATIO: f64 = 1.2;
/// Widths below which a component is summed directly instead of convolved, mm.
const DIRECT_BELOW_MM: f64 = 8.0;

struct ScatterMaps {
    a0: f64,
    c0: f64,
    na: usize,
    nc: usize,
    ln_sigma0: f64,
    ln_ratio: f64,
    /// `maps[level][ic * na + ia]`.
    maps: Vec<Vec<f32>>,
}

impl ScatterMaps {
    fn build(field: &FluenceMap, sigma_range: (f64, f64)) -> Self {
        let half = 0.5 * field.bixel_mm;
        let (smin, smax) = sigma_range;
        let levels = ((smax / smin).ln() / LADDER_RATIO.ln()).ceil().max(1.0) as usize + 1;
        let reach = (4.0 * smax).min(250.0);
        let first = field.centre(0, 0);
        let last = field.centre(field.dims[0] - 1, field.dims[1] - 1);
        let a0 = first[0] - half - reach;
        let c0 = first[1] - half - reach;
        let na = ((last[0] + half + reach - a0) / LATTICE_MM).ceil() as usize + 1;
        let nc = ((last[1] + half + reach - c0) / LATTICE_MM).ceil() as usize + 1;
        let [nja, njc] = field.dims;
        let maps = (0..levels)
            .into_par_iter()
            .map(|lv| {
                let sigma = smin * LADDER_RATIO.powi(lv as i32);
                let k = INV_SQRT2 / sigma;
                let ba: Vec<f64> = (0..na * nja)
                    .map(|n| {
                        let (ia, ja) = (n / nja, n % nja);
                        box_gauss(
                            a0 + ia as f64 * LATTICE_MM - field.centre(ja, 0)[0],
                            half,
                            k,
                        )
                    })
                    .collect();
                let bc: Vec<f64> = (0..nc * njc)
                    .map(|n| {
                        let (ic, jc) = (n / njc, n % njc);
                        box_gauss(
                            c0 + ic as f64 * LATTICE_MM - field.centre(0, jc)[1],
                            half,
                            k,
                        )
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
                let mut out = vec![0.0f32; nc * na];
                for ic in 0..nc {
                    let b = &bc[ic * njc..(ic + 1) * njc];
                    let dst = &mut out[ic * na..(ic + 1) * na];
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
                out
            })
            .collect();
        Self {
            a0,
            c0,
            na,
            nc,
            ln_sigma0: smin.ln(),
            ln_ratio: LADDER_RATIO.ln(),
            maps,
        }
    }

    fn lookup(&self, a: f64, c: f64, sigma: f64) -> f64 {
        let x = (a - self.a0) / LATTICE_MM;
        let y = (c - self.c0) / LATTICE_MM;
        if x < 0.0 || y < 0.0 || x >= (self.na - 1) as f64 || y >= (self.nc - 1) as f64 {
            return 0.0;
        }
        let (i, j) = (x as usize, y as usize);
        let (fx, fy) = (x - i as f64, y - j as f64);
        let lv = ((sigma.ln() - self.ln_sigma0) / self.ln_ratio)
            .clamp(0.0, (self.maps.len() - 1) as f64);
        let l0 = (lv.floor() as usize).min(self.maps.len().saturating_sub(2));
        let fl = (lv - l0 as f64).clamp(0.0, 1.0);
        let at = |m: &Vec<f32>| {
            let v = |ii: usize, jj: usize| m[jj * self.na + ii] as f64;
            (v(i, j) * (1.0 - fx) + v(i + 1, j) * fx) * (1.0 - fy)
                + (v(i, j + 1) * (1.0 - fx) + v(i + 1, j + 1) * fx) * fy
        };
        if self.maps.len() == 1 {
            return at(&self.maps[0]);
        }
        at(&self.maps[l0]) * (1.0 - fl) + at(&self.maps[l0 + 1]) * fl
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
    let mut sum = 0.0;
    for j in j0..=j1 {
        let fc = box_gauss(c - field.centre(0, j)[1], half, k);
        if fc == 0.0 {
            continue;
        }
        for i in i0..=i1 {
            let w = field.weights[i + field.dims[0] * j];
            if w != 0.0 {
                sum += w * fc * box_gauss(a - field.centre(i, 0)[0], half, k);
            }
        }
    }
    sum
}

/// Range of `sigma(d) SAD / t` a component takes over the grid's points.
fn sigma_range(model: &BeamModel, comp: &Component, t_range: (f64, f64), d_max: f64) -> (f64, f64) {
    let s_lo = model.sigma(comp, 0.0) * model.sad_mm / t_range.1;
    let s_hi = model.sigma(comp, d_max) * model.sad_mm / t_range.0;
    (s_lo * 0.98, s_hi * 1.02)
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
        let tmin = tmin.max(0.5 * model.sad_mm);
        let extent = g.extent_mm();
        let d_max = 1.5 * (extent[0].powi(2) + extent[1].powi(2) + extent[2].powi(2)).sqrt();
        let scatter: Vec<Option<ScatterMaps>> = model
            .components
            .iter()
            .map(|comp| {
                let (lo, hi) = sigma_range(model, comp, (tmin, tmax), d_max);
                (lo >= DIRECT_BELOW_MM).then(|| ScatterMaps::build(field, (lo, hi)))
            })
            .collect();
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
                        let p = g.position_mm(i, j, k);
                        let b = field.beam.bev(p);
                        if b.t <= 0.0 {
                            continue;
                        }
                        let d = map.depth(b.a, b.c, b.l);
                        let to_iso = model.sad_mm / b.t;
                        let mut sum = 0.0;
                        for (comp, maps) in model.components.iter().zip(&scatter) {
                            let w = model.weight(comp, d);
                            if w == 0.0 {
                                continue;
                            }
                            let sigma_iso = model.sigma(comp, d) * to_iso;
                            sum += w * match maps {
                                Some(m) => m.lookup(b.a, b.c, sigma_iso),
                                None => direct(field, sigma_iso, b.a, b.c),
                            };
                        }
                        slab[n] = sum * to_iso * to_iso * model.cgy_per_unit;
                    }
                }
            });
        out
    }
}
