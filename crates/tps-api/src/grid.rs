//! The voxel grid: dimensions, spacing, origin and axis directions in patient coordinates.
//!
//! Patient coordinates follow DICOM's LPS convention: `x` grows towards the patient's left,
//! `y` towards posterior, `z` towards superior (head). Voxel `(i, j, k)` has its centre at
//! `origin_mm + i * spacing_mm[0] * direction[0] + j * spacing_mm[1] * direction[1] + k *
//! spacing_mm[2] * direction[2]`. Voxels are stored x-fastest: `index = i + nx * (j + ny * k)`,
//! so one axial slice is one contiguous block.
//!
//! A grid is **LPS-aligned** when its directions are the patient axes (`direction` is the
//! identity): grid axis 0 runs along `x`, and so on, each growing the same way. Every grid the
//! patient model and the native TPS compute on is LPS-aligned ([`crate::patient::Patient::new`]
//! refuses others), and the per-axis helpers ([`Grid::coord_mm`], [`Grid::continuous_index`])
//! describe such grids. Other directions come from elsewhere (a remote TPS's dose, a DICOM
//! series of a patient lying prone or feet first); when they only swap or reverse axes,
//! [`crate::dose::Dose::to_lps_aligned`] reorders the voxels exactly.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The directions of an LPS-aligned grid.
pub const LPS: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

fn lps() -> [[f64; 3]; 3] {
    LPS
}

fn is_lps(d: &[[f64; 3]; 3]) -> bool {
    *d == LPS
}

/// A regular voxel grid in patient (LPS) coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Grid {
    /// Number of voxels along the grid's axes.
    pub dims: [usize; 3],
    /// Voxel size along the grid's axes in millimetres.
    pub spacing_mm: [f64; 3],
    /// Centre of voxel (0, 0, 0) in patient coordinates, millimetres.
    pub origin_mm: [f64; 3],
    /// Unit vector in patient coordinates along which each grid index grows (row `a` for index
    /// `a`); [`LPS`] (and left out of files) for an LPS-aligned grid.
    #[serde(default = "lps", skip_serializing_if = "is_lps")]
    pub direction: [[f64; 3]; 3],
}

impl Grid {
    /// An LPS-aligned grid after checking that every dimension is non-zero and every spacing
    /// finite and positive.
    pub fn new(dims: [usize; 3], spacing_mm: [f64; 3], origin_mm: [f64; 3]) -> Result<Self> {
        Self::with_direction(dims, spacing_mm, origin_mm, LPS)
    }

    /// A grid whose axes run along `direction` (rows of unit vectors in patient coordinates,
    /// orthogonal to each other), checked as [`Grid::new`] checks.
    pub fn with_direction(
        dims: [usize; 3],
        spacing_mm: [f64; 3],
        origin_mm: [f64; 3],
        direction: [[f64; 3]; 3],
    ) -> Result<Self> {
        let grid = Self {
            dims,
            spacing_mm,
            origin_mm,
            direction,
        };
        grid.validate()?;
        Ok(grid)
    }

    /// True when the grid's axes are the patient axes, each growing the same way.
    pub fn is_lps_aligned(&self) -> bool {
        is_lps(&self.direction)
    }

    /// Checks the invariants `new` establishes (used after deserializing a grid).
    pub fn validate(&self) -> Result<()> {
        let d = &self.direction;
        let dot = |a: usize, b: usize| (0..3).map(|c| d[a][c] * d[b][c]).sum::<f64>();
        for (a, row) in d.iter().enumerate() {
            let finite = row.iter().all(|v| v.is_finite());
            let unit = (dot(a, a) - 1.0).abs() < 1e-6;
            let orthogonal = (a + 1..3).all(|b| dot(a, b).abs() < 1e-6);
            if !(finite && unit && orthogonal) {
                return Err(Error::invalid(
                    "grid",
                    format!("direction[{a}]"),
                    format!("{row:?}"),
                    "grid directions must be orthogonal unit vectors",
                ));
            }
        }
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

    /// Patient coordinates (mm) of the centre of voxel `(i, j, k)`, whatever the directions.
    #[inline]
    pub fn position_mm(&self, i: usize, j: usize, k: usize) -> [f64; 3] {
        if self.is_lps_aligned() {
            return [
                self.origin_mm[0] + i as f64 * self.spacing_mm[0],
                self.origin_mm[1] + j as f64 * self.spacing_mm[1],
                self.origin_mm[2] + k as f64 * self.spacing_mm[2],
            ];
        }
        let steps = [i as f64, j as f64, k as f64];
        [0, 1, 2].map(|c| {
            self.origin_mm[c]
                + (0..3)
                    .map(|a| steps[a] * self.spacing_mm[a] * self.direction[a][c])
                    .sum::<f64>()
        })
    }

    /// Coordinate (mm) of voxel centre `n` along `axis`, for an LPS-aligned grid (where grid
    /// axis `axis` is patient axis `axis`).
    #[inline]
    pub fn coord_mm(&self, axis: usize, n: usize) -> f64 {
        self.origin_mm[axis] + n as f64 * self.spacing_mm[axis]
    }

    /// Continuous voxel coordinate of a patient position along `axis` (0.0 at the first
    /// voxel centre), for an LPS-aligned grid.
    #[inline]
    pub fn continuous_index(&self, axis: usize, mm: f64) -> f64 {
        (mm - self.origin_mm[axis]) / self.spacing_mm[axis]
    }

    /// Nearest voxel to a patient position along `axis`, clamped into the grid (LPS-aligned
    /// grids).
    pub fn nearest_clamped(&self, axis: usize, mm: f64) -> usize {
        let n = self.continuous_index(axis, mm).round();
        n.clamp(0.0, (self.dims[axis] - 1) as f64) as usize
    }

    /// Extent of the grid along each axis from the first to the last voxel edge, mm.
    pub fn extent_mm(&self) -> [f64; 3] {
        [0, 1, 2].map(|a| self.dims[a] as f64 * self.spacing_mm[a])
    }

    /// Values on this grid moved onto the LPS-aligned grid covering the same voxels: exact
    /// when the grid's axes are the patient axes swapped or reversed (a series acquired prone
    /// or feet first, a remote system's convention); an oblique grid is refused, since it
    /// would need interpolation. Returns the new grid and the values in its order.
    pub fn to_lps_aligned<T: Copy + Default>(&self, values: &[T]) -> Result<(Grid, Vec<T>)> {
        if values.len() != self.len() {
            return Err(Error::GridMismatch {
                what: format!(
                    "{} values on a grid {:?} of {} voxels",
                    values.len(),
                    self.dims,
                    self.len()
                ),
            });
        }
        if self.is_lps_aligned() {
            return Ok((*self, values.to_vec()));
        }
        // For each grid axis: the patient axis it runs along and whether it runs backwards.
        let mut axis_of = [0usize; 3];
        let mut reversed = [false; 3];
        for a in 0..3 {
            let d = self.direction[a];
            let Some(c) = (0..3).find(|&c| (d[c].abs() - 1.0).abs() < 1e-9) else {
                return Err(Error::invalid(
                    "grid",
                    format!("direction[{a}]"),
                    format!("{d:?}"),
                    "an oblique grid cannot be reordered onto the patient axes",
                ));
            };
            axis_of[a] = c;
            reversed[a] = d[c] < 0.0;
        }
        let mut covered = [false; 3];
        for &c in &axis_of {
            covered[c] = true;
        }
        if covered.contains(&false) {
            return Err(Error::invalid(
                "grid",
                "direction",
                format!("{:?}", self.direction),
                "two grid axes run along the same patient axis",
            ));
        }
        let mut dims = [0usize; 3];
        let mut spacing = [0.0; 3];
        for (a, &c) in axis_of.iter().enumerate() {
            dims[c] = self.dims[a];
            spacing[c] = self.spacing_mm[a];
        }
        // The new first voxel is the old grid's corner with the lowest patient coordinates.
        let corner: [usize; 3] = [0, 1, 2].map(|a| if reversed[a] { self.dims[a] - 1 } else { 0 });
        let origin = self.position_mm(corner[0], corner[1], corner[2]);
        let out = Grid::with_direction(dims, spacing, origin, LPS)?;
        let mut moved = vec![T::default(); out.len()];
        let mut n = 0;
        for k in 0..self.dims[2] {
            for j in 0..self.dims[1] {
                for i in 0..self.dims[0] {
                    let old = [i, j, k];
                    let mut new = [0usize; 3];
                    for a in 0..3 {
                        new[axis_of[a]] = if reversed[a] {
                            self.dims[a] - 1 - old[a]
                        } else {
                            old[a]
                        };
                    }
                    moved[out.index(new[0], new[1], new[2])] = values[n];
                    n += 1;
                }
            }
        }
        Ok((out, moved))
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
    fn positions_follow_the_directions() {
        // Axis 0 runs towards the patient's right (-x), axis 1 anterior (-y): a prone or
        // rotated series.
        let d = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
        let g = Grid::with_direction([4, 5, 6], [1.0, 2.0, 3.0], [10.0, 20.0, 30.0], d).unwrap();
        assert!(!g.is_lps_aligned());
        assert_eq!(g.position_mm(1, 2, 3), [9.0, 16.0, 39.0]);
        let lps = Grid::new([4, 5, 6], [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]).unwrap();
        assert!(lps.is_lps_aligned());
        assert_ne!(g, lps);
        let e = Grid::with_direction([1; 3], [1.0; 3], [0.0; 3], [[1.0, 0.0, 0.0]; 3]);
        assert!(e.unwrap_err().to_string().contains("direction[0]"));
    }

    #[test]
    fn files_of_aligned_grids_carry_no_direction() {
        let g = Grid::new([2, 3, 4], [1.0, 1.5, 2.0], [0.0, -1.0, 5.0]).unwrap();
        let text = toml::to_string(&g).unwrap();
        assert!(!text.contains("direction"), "{text}");
        assert_eq!(toml::from_str::<Grid>(&text).unwrap(), g);
        let d = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]];
        let turned = Grid::with_direction(g.dims, g.spacing_mm, g.origin_mm, d).unwrap();
        let text = toml::to_string(&turned).unwrap();
        assert_eq!(toml::from_str::<Grid>(&text).unwrap(), turned);
    }

    #[test]
    fn zero_dimension_and_bad_spacing_are_refused() {
        let e = Grid::new([0, 1, 1], [1.0; 3], [0.0; 3]).unwrap_err();
        assert!(e.to_string().contains("dims[0]"), "{e}");
        let e = Grid::new([1, 1, 1], [1.0, -2.0, 1.0], [0.0; 3]).unwrap_err();
        assert!(e.to_string().contains("spacing-mm[1]"), "{e}");
    }
}
