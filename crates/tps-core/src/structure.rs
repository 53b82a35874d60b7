//! Structures: named voxel masks with a role, and their geometric statistics.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::grid::Grid;

/// What a structure is for in planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A target volume (GTV, CTV, PTV).
    Target,
    /// An organ at risk.
    Oar,
    /// A planning aid such as an optimization ring.
    Auxiliary,
    /// The patient's outer contour.
    External,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Target => "target",
            Role::Oar => "oar",
            Role::Auxiliary => "auxiliary",
            Role::External => "external",
        })
    }
}

/// A binary voxel mask on a grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    grid: Grid,
    data: Vec<bool>,
}

/// Axis-aligned bounding box of a mask, in voxel indices (inclusive) and millimetres
/// (voxel edges).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    /// Smallest voxel index along x, y, z.
    pub min_ijk: [usize; 3],
    /// Largest voxel index along x, y, z (inclusive).
    pub max_ijk: [usize; 3],
    /// Lower voxel edge in patient coordinates, mm.
    pub min_mm: [f64; 3],
    /// Upper voxel edge in patient coordinates, mm.
    pub max_mm: [f64; 3],
}

impl Mask {
    /// An empty mask on `grid`.
    pub fn empty(grid: Grid) -> Self {
        Self {
            data: vec![false; grid.len()],
            grid,
        }
    }

    /// A mask from its voxel values (x-fastest order).
    pub fn from_vec(grid: Grid, data: Vec<bool>) -> Result<Self> {
        if data.len() != grid.len() {
            return Err(Error::GridMismatch {
                what: format!(
                    "mask has {} voxels but its grid {:?} has {}",
                    data.len(),
                    grid.dims,
                    grid.len()
                ),
            });
        }
        Ok(Self { grid, data })
    }

    /// A mask whose voxel is set where `inside(x, y, z)` holds at the voxel centre (mm).
    /// Evaluated in parallel over axial slices.
    pub fn from_fn(grid: Grid, inside: impl Fn(f64, f64, f64) -> bool + Sync) -> Self {
        let [nx, ny, _] = grid.dims;
        let mut data = vec![false; grid.len()];
        data.par_chunks_mut(nx * ny)
            .enumerate()
            .for_each(|(k, slab)| {
                let z = grid.coord_mm(2, k);
                for j in 0..ny {
                    let y = grid.coord_mm(1, j);
                    for i in 0..nx {
                        slab[i + nx * j] = inside(grid.coord_mm(0, i), y, z);
                    }
                }
            });
        Self { grid, data }
    }

    /// The grid the mask lives on.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Voxel values, x-fastest.
    pub fn data(&self) -> &[bool] {
        &self.data
    }

    /// Mutable voxel values, x-fastest.
    pub fn data_mut(&mut self) -> &mut [bool] {
        &mut self.data
    }

    /// Value of voxel `(i, j, k)`.
    #[inline]
    pub fn get(&self, i: usize, j: usize, k: usize) -> bool {
        self.data[self.grid.index(i, j, k)]
    }

    /// Number of voxels set.
    pub fn count(&self) -> usize {
        self.data.par_iter().filter(|&&v| v).count()
    }

    /// True when no voxel is set.
    pub fn is_empty(&self) -> bool {
        !self.data.par_iter().any(|&v| v)
    }

    /// Volume in cubic centimetres (voxel count times voxel volume).
    pub fn volume_cc(&self) -> f64 {
        self.count() as f64 * self.grid.voxel_volume_cc()
    }

    /// Centroid of the set voxels' centres in patient coordinates (mm), or `None` when empty.
    pub fn centroid_mm(&self) -> Option<[f64; 3]> {
        let [nx, ny, _] = self.grid.dims;
        let (n, sum) = self
            .data
            .par_chunks(nx * ny)
            .enumerate()
            .map(|(k, slab)| {
                let mut n = 0usize;
                let mut s = [0.0f64; 3];
                for (idx, _) in slab.iter().enumerate().filter(|(_, v)| **v) {
                    n += 1;
                    s[0] += (idx % nx) as f64;
                    s[1] += (idx / nx) as f64;
                    s[2] += k as f64;
                }
                (n, s)
            })
            .reduce(
                || (0, [0.0; 3]),
                |a, b| {
                    (
                        a.0 + b.0,
                        [a.1[0] + b.1[0], a.1[1] + b.1[1], a.1[2] + b.1[2]],
                    )
                },
            );
        if n == 0 {
            return None;
        }
        Some(
            [0, 1, 2].map(|a| self.grid.origin_mm[a] + sum[a] / n as f64 * self.grid.spacing_mm[a]),
        )
    }

    /// Bounding box of the set voxels, or `None` when empty.
    pub fn bounding_box(&self) -> Option<BoundingBox> {
        let [nx, ny, _] = self.grid.dims;
        let init = || ([usize::MAX; 3], [0usize; 3]);
        let (lo, hi) = self
            .data
            .par_chunks(nx * ny)
            .enumerate()
            .map(|(k, slab)| {
                let (mut lo, mut hi) = init();
                for (idx, _) in slab.iter().enumerate().filter(|(_, v)| **v) {
                    let p = [idx % nx, idx / nx, k];
                    for a in 0..3 {
                        lo[a] = lo[a].min(p[a]);
                        hi[a] = hi[a].max(p[a]);
                    }
                }
                (lo, hi)
            })
            .reduce(init, |a, b| {
                (
                    [0, 1, 2].map(|i| a.0[i].min(b.0[i])),
                    [0, 1, 2].map(|i| a.1[i].max(b.1[i])),
                )
            });
        if lo[0] == usize::MAX {
            return None;
        }
        let g = &self.grid;
        Some(BoundingBox {
            min_ijk: lo,
            max_ijk: hi,
            min_mm: [0, 1, 2].map(|a| g.coord_mm(a, lo[a]) - 0.5 * g.spacing_mm[a]),
            max_mm: [0, 1, 2].map(|a| g.coord_mm(a, hi[a]) + 0.5 * g.spacing_mm[a]),
        })
    }

    fn check_same_grid(&self, other: &Mask, op: &str) -> Result<()> {
        if self.grid != other.grid {
            return Err(Error::GridMismatch {
                what: format!(
                    "{op} of masks on different grids ({:?} vs {:?})",
                    self.grid, other.grid
                ),
            });
        }
        Ok(())
    }

    fn zip_with(
        &self,
        other: &Mask,
        op: &str,
        f: impl Fn(bool, bool) -> bool + Sync,
    ) -> Result<Mask> {
        self.check_same_grid(other, op)?;
        let data = self
            .data
            .par_iter()
            .zip(other.data.par_iter())
            .map(|(&a, &b)| f(a, b))
            .collect();
        Ok(Mask {
            grid: self.grid,
            data,
        })
    }

    /// Voxels in either mask.
    pub fn union(&self, other: &Mask) -> Result<Mask> {
        self.zip_with(other, "union", |a, b| a || b)
    }

    /// Voxels in both masks.
    pub fn intersection(&self, other: &Mask) -> Result<Mask> {
        self.zip_with(other, "intersection", |a, b| a && b)
    }

    /// Voxels in `self` but not in `other`.
    pub fn subtract(&self, other: &Mask) -> Result<Mask> {
        self.zip_with(other, "subtraction", |a, b| a && !b)
    }

    /// Sets every voxel of `other` in `self`.
    pub fn union_in_place(&mut self, other: &Mask) -> Result<()> {
        self.check_same_grid(other, "union")?;
        self.data
            .par_iter_mut()
            .zip(other.data.par_iter())
            .for_each(|(a, &b)| *a |= b);
        Ok(())
    }

    /// Clears every voxel of `other` in `self`.
    pub fn subtract_in_place(&mut self, other: &Mask) -> Result<()> {
        self.check_same_grid(other, "subtraction")?;
        self.data
            .par_iter_mut()
            .zip(other.data.par_iter())
            .for_each(|(a, &b)| *a &= !b);
        Ok(())
    }

    /// The complement on the same grid.
    pub fn complement(&self) -> Mask {
        Mask {
            grid: self.grid,
            data: self.data.par_iter().map(|&v| !v).collect(),
        }
    }
}

/// A named structure: a mask plus what it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Structure {
    /// Name as used in protocols (TG-263 style, e.g. `Femur_Head_L`).
    pub name: String,
    /// What the structure is for.
    pub role: Role,
    /// Its voxels.
    pub mask: Mask,
}

/// Summary numbers of one structure, as printed in volume tables.
#[derive(Debug, Clone, PartialEq)]
pub struct StructureStats {
    /// Structure name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Volume, cc.
    pub volume_cc: f64,
    /// Centroid, mm (None when empty).
    pub centroid_mm: Option<[f64; 3]>,
    /// Bounding box (None when empty).
    pub bounding_box: Option<BoundingBox>,
}

impl Structure {
    /// A structure from its parts.
    pub fn new(name: impl Into<String>, role: Role, mask: Mask) -> Self {
        Self {
            name: name.into(),
            role,
            mask,
        }
    }

    /// Volume, centroid and bounding box.
    pub fn stats(&self) -> StructureStats {
        StructureStats {
            name: self.name.clone(),
            role: self.role,
            volume_cc: self.mask.volume_cc(),
            centroid_mm: self.mask.centroid_mm(),
            bounding_box: self.mask.bounding_box(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid::new([10, 8, 6], [2.0, 2.0, 3.0], [-9.0, -7.0, 0.0]).unwrap()
    }

    #[test]
    fn box_statistics_are_exact() {
        let g = grid();
        // x in [-5, 5], y in [-3, 3], z in [3, 9] -> voxel centres at x -5,-3,...,5 (6), y -3..3 (4), z 3,6,9 (3)
        let m = Mask::from_fn(g, |x, y, z| {
            x.abs() <= 5.0 && y.abs() <= 3.0 && (3.0..=9.0).contains(&z)
        });
        assert_eq!(m.count(), 6 * 4 * 3);
        assert!((m.volume_cc() - 72.0 * 0.012).abs() < 1e-12);
        let c = m.centroid_mm().unwrap();
        assert!(
            c[0].abs() < 1e-12 && c[1].abs() < 1e-12 && (c[2] - 6.0).abs() < 1e-12,
            "{c:?}"
        );
        let bb = m.bounding_box().unwrap();
        assert_eq!(bb.min_ijk, [2, 2, 1]);
        assert_eq!(bb.max_ijk, [7, 5, 3]);
        assert_eq!(bb.min_mm, [-6.0, -4.0, 1.5]);
        assert_eq!(bb.max_mm, [6.0, 4.0, 10.5]);
    }

    #[test]
    fn boolean_operations() {
        let g = grid();
        let a = Mask::from_fn(g, |x, _, _| x < 0.0);
        let b = Mask::from_fn(g, |_, y, _| y < 0.0);
        let n = g.len();
        assert_eq!(a.union(&b).unwrap().count(), n * 3 / 4);
        assert_eq!(a.intersection(&b).unwrap().count(), n / 4);
        assert_eq!(a.subtract(&b).unwrap().count(), n / 4);
        assert_eq!(a.complement().count(), n / 2);
        assert!(Mask::empty(g).is_empty());
        assert!(Mask::empty(g).centroid_mm().is_none());
    }

    #[test]
    fn operations_on_different_grids_are_refused() {
        let a = Mask::empty(grid());
        let b = Mask::empty(Grid::new([10, 8, 6], [2.0; 3], [0.0; 3]).unwrap());
        assert!(matches!(a.union(&b), Err(Error::GridMismatch { .. })));
    }
}
