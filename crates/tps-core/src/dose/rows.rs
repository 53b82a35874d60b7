//! Which dose-grid voxels the optimizer needs: every voxel of the named structures, plus a
//! regular sample of the body.

use super::plan::resample_mask;
use crate::error::Result;
use crate::grid::Grid;
use crate::patient::Patient;

/// Dose-grid voxel indices inside any of `structures`, or on the body sample (every
/// `body_stride`-th voxel along each axis inside `body`), in increasing order.
pub fn optimization_rows(
    patient: &Patient,
    dose_grid: &Grid,
    structures: &[&str],
    body: &str,
    body_stride: usize,
    origin: &str,
) -> Result<Vec<u32>> {
    let mut keep = vec![false; dose_grid.len()];
    for (n, name) in structures.iter().enumerate() {
        let s = patient.require(name, origin, &format!("structures[{n}]"))?;
        for (k, v) in resample_mask(&s.mask, dose_grid).into_iter().enumerate() {
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
