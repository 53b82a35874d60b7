//! The voxel grid: dimensions, spacing and origin in patient coordinates.
//!
//! Patient coordinates follow DICOM's LPS convention: `x` grows towards the patient's left,
//! `y` towards posterior, `z` towards superior (head). Voxel `(i, j, k)` has its centre at
//! `origin_mm + (i, j, k) * spacing_mm`; the grid axes are aligned with the patient axes.
//! Voxels are stored x-fastest: `index = i + nx * (j + ny * k)`, so one axial slice is one
//! contiguous block.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A regular, axis-aligned voxel grid in patient (LPS) coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Grid {
    /// Number of voxels along x, y, z.
    pub dims: [usize; 3],
    /// Voxel size along x, y, z in millimetres.
    pub spacing_mm: [f64; 3],
    /// Centre of voxel (0, 0, 0) in patient coordinates, millimetres.
    pub origin_mm: [f64; 3],
}

impl Grid {
    /// A grid after checking that every dimension is non-zero and every spacing finite and
    /// positive.
    pub fn new(dims: [usize; 3], spacing_mm: [f64; 3], origin_mm: [f64; 3]) -> Result<Self> {
        let grid = Self {
            dims,
            spacing_mm,
            origin_mm,
        };
        grid.validate()?;
        Ok(grid)
    }

    /// Checks the invariants `new` establishes (used after deserializing a grid).
    pub fn validate(&self) -> Result<()> {
        for axis in 0..3 {
            if self.dims[axis] == 0 {
                return Err(Error::invalid(
                    "grid",
                    format!("dims[{axis}]"),
                    "0",
                    "every grid dimension must be at least 1",
                ));
            }
            let s = self.spacing_mm[axis];
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::invalid(
                    "grid",
                    format!("spacing-mm[{axis}]"),
                    s.to_string(),
                    "voxel spacing must be finite and positive",
                ));
            }
            if !self.origin_mm[axis].is_finite() {
                return Err(Error::invalid(
                    "grid",
                    format!("origin-mm[{axis}]"),
                    self.origin_mm[axis].to_string(),
                    "origin must be finite",
                ));
            }
        }
        if self
            .dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_none()
            || self.len() > u32::MAX as usize
        {
            return Err(Error::invalid(
                "grid",
                "dims",
                format!("{:?}", self.dims),
                "grid has more voxels than a u32 index can address",
            ));
        }
        Ok(())
    }

    /// Total number of voxels.
    pub fn len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// True when the grid has no voxels (never, for a validated grid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Volume of one voxel in cubic centimetres.
    pub fn voxel_volume_cc(&self) -> f64 {
        self.spacing_mm.iter().product::<f64>() / 1000.0
    }

    /// Linear index of voxel `(i, j, k)`.
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// Voxel `(i, j, k)` of a linear index.
    #[inline]
    pub fn ijk(&self, index: usize) -> [usize; 3] {
        let i = index % self.dims[0];
        let rest = index / self.dims[0];
        [i, rest % self.dims[1], rest / self.dims[1]]
    }

    /// Patient coordinates (mm) of the centre of voxel `(i, j, k)`.
    #[inline]
    pub fn position_mm(&self, i: usize, j: usize, k: usize) -> [f64; 3] {
        [
            self.origin_mm[0] + i as f64 * self.spacing_mm[0],
            self.origin_mm[1] + j as f64 * self.spacing_mm[1],
            self.origin_mm[2] + k as f64 * self.spacing_mm[2],
        ]
    }

    /// Coordinate (mm) of voxel centre `n` along `axis`.
    #[inline]
    pub fn coord_mm(&self, axis: usize, n: usize) -> f64 {
        self.origin_mm[axis] + n as f64 * self.spacing_mm[axis]
    }

    /// Continuous voxel coordinate of a patient position along `axis` (0.0 at the first
    /// voxel centre).
    #[inline]
    pub fn continuous_index(&self, axis: usize, mm: f64) -> f64 {
        (mm - self.origin_mm[axis]) / self.spacing_mm[axis]
    }

    /// Nearest voxel to a patient position along `axis`, clamped into the grid.
    pub fn nearest_clamped(&self, axis: usize, mm: f64) -> usize {
        let n = self.continuous_index(axis, mm).round();
        n.clamp(0.0, (self.dims[axis] - 1) as f64) as usize
    }

    /// Extent of the grid along each axis from the first to the last voxel edge, mm.
    pub fn extent_mm(&self) -> [f64; 3] {
        [0, 1, 2].map(|a| self.dims[a] as f64 * self.spacing_mm[a])
    }

    /// The grid covering the box `[lo_mm, hi_mm]` (voxel edges) with the given spacing.
    /// Dimensions are rounded up so the box is fully covered; the box is centred in the grid.
    pub fn covering(lo_mm: [f64; 3], hi_mm: [f64; 3], spacing_mm: [f64; 3]) -> Result<Self> {
        let mut dims = [0usize; 3];
        let mut origin = [0.0; 3];
        for a in 0..3 {
            let span = hi_mm[a] - lo_mm[a];
            if !(span.is_finite() && span > 0.0 && spacing_mm[a] > 0.0) {
                return Err(Error::invalid(
                    "grid",
                    format!("extent[{a}]"),
                    format!("{} .. {}", lo_mm[a], hi_mm[a]),
                    "grid extent must be a finite, non-empty interval with positive spacing",
                ));
            }
            dims[a] = (span / spacing_mm[a] - 1e-9).ceil().max(1.0) as usize;
            let covered = dims[a] as f64 * spacing_mm[a];
            let centre = 0.5 * (lo_mm[a] + hi_mm[a]);
            origin[a] = centre - 0.5 * covered + 0.5 * spacing_mm[a];
        }
        Self::new(dims, spacing_mm, origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips() {
        let g = Grid::new([4, 5, 6], [1.0, 2.0, 3.0], [0.0; 3]).unwrap();
        for idx in [0, 1, 7, 19, 20, 119] {
            let [i, j, k] = g.ijk(idx);
            assert_eq!(g.index(i, j, k), idx);
        }
        assert_eq!(g.position_mm(1, 1, 1), [1.0, 2.0, 3.0]);
        assert!((g.voxel_volume_cc() - 0.006).abs() < 1e-15);
    }

    #[test]
    fn covering_grid_contains_box() {
        let g = Grid::covering([-10.0, -5.0, 0.0], [10.0, 5.0, 7.0], [2.5, 2.5, 3.0]).unwrap();
        assert_eq!(g.dims, [8, 4, 3]);
        let lo = g.origin_mm[2] - 1.5;
        let hi = g.coord_mm(2, 2) + 1.5;
        assert!(lo <= 0.0 && hi >= 7.0);
    }

    #[test]
    fn zero_dimension_and_bad_spacing_are_refused() {
        let e = Grid::new([0, 1, 1], [1.0; 3], [0.0; 3]).unwrap_err();
        assert!(e.to_string().contains("dims[0]"), "{e}");
        let e = Grid::new([1, 1, 1], [1.0, -2.0, 1.0], [0.0; 3]).unwrap_err();
        assert!(e.to_string().contains("spacing-mm[1]"), "{e}");
    }
}
