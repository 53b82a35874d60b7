//! Which dose-grid voxels the optimizer needs: the voxels of the named structures (large ones
//! thinned to a regular sub-lattice), plus a regular sample of the body.
//!
//! Thinning keeps the optimization problem small where a structure has far more voxels than
//! its objective needs: a mean dose or a dose-volume point of a 3-litre bowel bag is estimated
//! as well from 20,000 regularly spaced voxels as from 100,000, and the matrix products, which
//! dominate the optimizer's time, shrink in proportion. Every consumer of a structure's rows
//! (matrix rows, objective binding, coverage) goes through [`sample_structure`], so they agree
//! voxel for voxel.

use super::plan::resample_mask;
use tps_api::error::Result;
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::structure::Mask;

/// Whether dose-grid voxel `ijk` lies on sub-lattice `level`: 0 every voxel, 1 a checkerboard
/// (one half), 2 one quarter (even `i`, even `j + k`), 3 one eighth (even indices on every axis).
/// Each level is a subset of the one before.
pub fn on_sub_lattice(ijk: [usize; 3], level: u8) -> bool {
    let [i, j, k] = ijk;
    match level {
        0 => true,
        1 => (i + j + k) % 2 == 0,
        2 => i % 2 == 0 && (j + k) % 2 == 0,
        _ => i % 2 == 0 && j % 2 == 0 && k % 2 == 0,
    }
}

/// The voxels of `mask` (resampled onto `dose_grid`) that stand for the structure in the
/// optimization: all of them, or, when `min_voxels` is set and the structure has at least twice
/// as many, the coarsest sub-lattice (down to one voxel in eight) that still keeps about
/// `min_voxels`.
pub fn sample_structure(mask: &Mask, dose_grid: &Grid, min_voxels: Option<usize>) -> Vec<bool> {
    let mut inside = resample_mask(mask, dose_grid);
    let count = inside.iter().filter(|v| **v).count();
    let level = match min_voxels {
        Some(m) => (0..=3u8)
            .rev()
            .find(|&l| count >> l >= m.max(1))
            .unwrap_or(0),
        None => 0,
    };
    if level > 0 {
        for (k, v) in inside.iter_mut().enumerate() {
            *v &= on_sub_lattice(dose_grid.ijk(k), level);
        }
    }
    inside
}

/// Dose-grid voxel indices inside any of `structures` (each thinned by [`sample_structure`]
/// with `min_voxels`), or on the body sample (every `body_stride`-th voxel along each axis
/// inside `body`), in increasing order.
pub fn optimization_rows(
    patient: &Patient,
    dose_grid: &Grid,
    structures: &[&str],
    (body, body_stride): (&str, usize),
    min_voxels: Option<usize>,
    origin: &str,
) -> Result<Vec<u32>> {
    let mut keep = vec![false; dose_grid.len()];
    for (n, name) in structures.iter().enumerate() {
        let s = patient.require(name, origin, &format!("structures[{n}]"))?;
        for (k, v) in sample_structure(&s.mask, dose_grid, min_voxels)
            .into_iter()
            .enumerate()
        {
            keep[k] |= v;
        }
    }
    let b = patient.require(body, origin, "body")?;
    let stride = body_stride.max(1);
    for (k, v) in resample_mask(&b.mask, dose_grid).into_iter().enumerate() {
        let [i, j, l] = dose_grid.ijk(k);
        if v && i % stride == 0 && j % stride == 0 && l % stride == 0 {
            keep[k] = true;
        }
    }
    Ok(keep
        .iter()
        .enumerate()
        .filter(|(_, v)| **v)
        .map(|(k, _)| k as u32)
        .collect())
}
