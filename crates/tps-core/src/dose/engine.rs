//! Dose from fluence maps: the pencil-beam superposition.
//!
//! For a beamlet of side `s` (isocentre plane) centred at `(a_j, c_j)` with weight `w` (MU), the
//! dose at a point with beam's-eye-view `(a, c)`, distance `t` from the source along the axis
//! and radiological depth `d` is
//!
//! ```text
//! D = w K (SAD / t)^2 sum_i w_i(d) B(a - a_j; sigma_i(d) SAD / t) B(c - c_j; sigma_i(d) SAD / t)
//! B(u; sigma) = [erf((u + s/2) / (sqrt 2 sigma)) - erf((u - s/2) / (sqrt 2 sigma))] / 2
//! ```
//!
//! `(SAD/t)^2` is the inverse square law of the fluence, the Gaussian widths are converted
//! from the depth of the point to the isocentre plane, and `K` (cGy per MU per unit kernel
//! dose) is fixed by the calibration: 1 MU gives 1 cGy at 15 mm depth on the axis of a 10 x 10
//! cm field at SSD 100 cm in water.

use rayon::prelude::*;

use super::geometry::{BevPoint, FluenceMap};
use super::model::{BeamModel, box_gauss};
use super::raytrace::DepthMap;
use crate::dose::geometry::P3;
use tps_api::grid::Grid;

const INV_SQRT2: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// Dose per MU of one beamlet at a point, cGy. `half` is half the beamlet side at the
/// isocentre, mm; `da`, `dc` the point's offset from the beamlet centre in the isocentre
/// plane.
#[inline]
pub fn beamlet_dose(
    model: &BeamModel,
    p: &BevPoint,
    depth_mm: f64,
    da: f64,
    dc: f64,
    half: f64,
) -> f64 {
    let to_iso = model.sad_mm / p.t;
    let mut sum = 0.0;
    for comp in &model.components {
        let w = model.weight(comp, depth_mm);
        if w == 0.0 {
            continue;
        }
        let k = INV_SQRT2 / (model.sigma(comp, depth_mm) * to_iso);
        let fa = box_gauss(da, half, k);
        if fa == 0.0 {
            continue;
        }
        let fc = box_gauss(dc, half, k);
        sum += w * fa * fc;
    }
    sum * to_iso * to_iso * model.cgy_per_unit
}

/// A dose engine bound to a patient (or phantom) grid and its density.
#[derive(Debug, Clone)]
pub struct DoseEngine<'a> {
    model: &'a BeamModel,
    grid: Grid,
    density: Vec<f32>,
    ray_step_mm: f64,
}

impl<'a> DoseEngine<'a> {
    /// An engine for `density` (relative electron density) on `grid`; rays are traced on a
    /// lattice as fine as the grid's smallest spacing.
    pub fn new(model: &'a BeamModel, grid: Grid, density: Vec<f32>) -> Self {
        assert_eq!(density.len(), grid.len(), "density must cover the grid");
        let h = grid
            .spacing_mm
            .iter()
            .cloned()
            .fold(f64::INFINITY, f64::min);
        Self {
            model,
            grid,
            density,
            ray_step_mm: h,
        }
    }

    /// The beam model.
    pub fn model(&self) -> &'a BeamModel {
        self.model
    }

    /// The grid the density lives on.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Sets the lateral spacing of traced rays, mm.
    pub fn with_ray_step(mut self, mm: f64) -> Self {
        self.ray_step_mm = mm;
        self
    }

    /// The radiological depth map of a beam.
    pub fn depth_map(&self, beam: &super::geometry::Beam) -> DepthMap {
        DepthMap::new(
            beam,
            &self.grid,
            &self.density,
            self.ray_step_mm,
            0.5 * self.ray_step_mm,
        )
    }

    /// Dose (cGy) at `points` from the beamlets of `fields`, by direct superposition.
    pub fn dose_at_points(&self, fields: &[FluenceMap], points: &[P3]) -> Vec<f64> {
        let mut total = vec![0.0; points.len()];
        let mut maps: Vec<DepthMap> = Vec::new();
        for f in fields {
            // One depth map per distinct beam.
            let map = match maps.iter().position(|m| m.beam() == &f.beam) {
                Some(k) => &maps[k],
                None => {
                    maps.push(self.depth_map(&f.beam));
                    maps.last().expect("just pushed")
                }
            };
            let half = 0.5 * f.bixel_mm;
            let dose: Vec<f64> = points
                .par_iter()
                .map(|&p| {
                    let b = f.beam.bev(p);
                    if b.t <= 0.0 {
                        return 0.0;
                    }
                    let d = map.depth(b.a, b.c, b.l);
                    let mut sum = 0.0;
                    for j in 0..f.dims[1] {
                        for i in 0..f.dims[0] {
                            let w = f.weights[i + f.dims[0] * j];
                            if w != 0.0 {
                                let [ca, cc] = f.centre(i, j);
                                sum +=
                                    w * beamlet_dose(self.model, &b, d, b.a - ca, b.c - cc, half);
                            }
                        }
                    }
                    sum
                })
                .collect();
            for (t, d) in total.iter_mut().zip(dose) {
                *t += d;
            }
        }
        total
    }
}
