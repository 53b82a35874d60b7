//! Values of one grid sampled at the voxel centres of another (LPS-aligned grids): masks by
//! nearest voxel, doses by trilinear interpolation. The TPS moves doses between its dose grid
//! and the CT grid with these; an imported RT dose lands on the CT grid the same way.

use rayon::prelude::*;
use tps_api::grid::Grid;
use tps_api::structure::Mask;

/// A mask sampled at the voxel centres of another grid (nearest voxel; outside is false).
pub fn resample_mask(mask: &Mask, to: &Grid) -> Vec<bool> {
    let from = mask.grid();
    (0..to.len())
        .into_par_iter()
        .map(|n| {
            let [i, j, k] = to.ijk(n);
            let p = to.position_mm(i, j, k);
            let c: Vec<f64> = (0..3)
                .map(|a| from.continuous_index(a, p[a]).round())
                .collect();
            if (0..3).any(|a| c[a] < 0.0 || c[a] > (from.dims[a] - 1) as f64) {
                return false;
            }
            mask.get(c[0] as usize, c[1] as usize, c[2] as usize)
        })
        .collect()
}

/// A dose on `from` trilinearly interpolated at the voxel centres of `to` (zero outside).
pub fn resample_dose(dose: &[f32], from: &Grid, to: &Grid) -> Vec<f32> {
    (0..to.len())
        .into_par_iter()
        .map(|n| {
            let [i, j, k] = to.ijk(n);
            let p = to.position_mm(i, j, k);
            let c: [f64; 3] = [0, 1, 2].map(|a| from.continuous_index(a, p[a]));
            if (0..3).any(|a| c[a] < -0.5 || c[a] > from.dims[a] as f64 - 0.5) {
                return 0.0;
            }
            let base: [usize; 3] = [0, 1, 2]
                .map(|a| (c[a].floor().max(0.0) as usize).min(from.dims[a].saturating_sub(2)));
            let f: [f64; 3] = [0, 1, 2].map(|a| {
                if from.dims[a] == 1 {
                    0.0
                } else {
                    (c[a] - base[a] as f64).clamp(0.0, 1.0)
                }
            });
            let mut v = 0.0;
            for corner in 0..8 {
                let mut w = 1.0;
                let mut ijk = [0usize; 3];
                for a in 0..3 {
                    let hi = corner >> a & 1 == 1;
                    ijk[a] = (base[a] + hi as usize).min(from.dims[a] - 1);
                    w *= if hi { f[a] } else { 1.0 - f[a] };
                }
                if w > 0.0 {
                    v += w * dose[from.index(ijk[0], ijk[1], ijk[2])] as f64;
                }
            }
            v as f32
        })
        .collect()
}
