//! Parallel operations on masks: building one from a predicate, Boolean combinations, and the
//! geometric statistics of structures (volume, centroid, bounding box).
//!
//! The mask type itself is plain data in `tps-api`; these operations add the thread pool, so
//! they live here. [`MaskOps`] is an extension trait: `use patient_model::MaskOps;` and call
//! them as methods.

use rayon::prelude::*;
use tps_api::error::{Error, Result};
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::structure::{Mask, Role, Structure};

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

/// Mask operations that use the thread pool.
pub trait MaskOps: Sized {
    /// A mask whose voxel is set where `inside(x, y, z)` holds at the voxel centre (mm).
    /// Evaluated in parallel over axial slices.
    fn from_fn(grid: Grid, inside: impl Fn(f64, f64, f64) -> bool + Sync) -> Self;
    /// Centroid of the set voxels' centres in patient coordinates (mm), or `None` when empty.
    fn centroid_mm(&self) -> Option<[f64; 3]>;
    /// Bounding box of the set voxels, or `None` when empty.
    fn bounding_box(&self) -> Option<BoundingBox>;
    /// Voxels in either mask.
    fn union(&self, other: &Mask) -> Result<Mask>;
    /// Voxels in both masks.
    fn intersection(&self, other: &Mask) -> Result<Mask>;
    /// Voxels in `self` but not in `other`.
    fn subtract(&self, other: &Mask) -> Result<Mask>;
    /// Sets every voxel of `other` in `self`.
    fn union_in_place(&mut self, other: &Mask) -> Result<()>;
    /// Clears every voxel of `other` in `self`.
    fn subtract_in_place(&mut self, other: &Mask) -> Result<()>;
    /// The complement on the same grid.
    fn complement(&self) -> Mask;
}

fn check_same_grid(a: &Mask, b: &Mask, op: &str) -> Result<()> {
    if a.grid() != b.grid() {
        return Err(Error::GridMismatch {
            what: format!(
                "{op} of masks on different grids ({:?} vs {:?})",
                a.grid(),
                b.grid()
            ),
        });
    }
    Ok(())
}

fn zip_with(a: &Mask, b: &Mask, op: &str, f: impl Fn(bool, bool) -> bool + Sync) -> Result<Mask> {
    check_same_grid(a, b, op)?;
    let data = a
        .data()
        .par_iter()
        .zip(b.data().par_iter())
        .map(|(&x, &y)| f(x, y))
        .collect();
    Mask::from_vec(*a.grid(), data)
}

impl MaskOps for Mask {
    fn from_fn(grid: Grid, inside: impl Fn(f64, f64, f64) -> bool + Sync) -> Self {
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
        Mask::from_vec(grid, data).expect("one value per voxel")
    }

    fn centroid_mm(&self) -> Option<[f64; 3]> {
        let g = self.grid();
        let [nx, ny, _] = g.dims;
        let (n, sum) = self
            .data()
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
        Some([0, 1, 2].map(|a| g.origin_mm[a] + sum[a] / n as f64 * g.spacing_mm[a]))
    }

    fn bounding_box(&self) -> Option<BoundingBox> {
        let g = self.grid();
        let [nx, ny, _] = g.dims;
        let init = || ([usize::MAX; 3], [0usize; 3]);
        let (lo, hi) = self
            .data()
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
        Some(BoundingBox {
            min_ijk: lo,
            max_ijk: hi,
            min_mm: [0, 1, 2].map(|a| g.coord_mm(a, lo[a]) - 0.5 * g.spacing_mm[a]),
            max_mm: [0, 1, 2].map(|a| g.coord_mm(a, hi[a]) + 0.5 * g.spacing_mm[a]),
        })
    }

    fn union(&self, other: &Mask) -> Result<Mask> {
        zip_with(self, other, "union", |a, b| a || b)
    }

    fn intersection(&self, other: &Mask) -> Result<Mask> {
        zip_with(self, other, "intersection", |a, b| a && b)
    }

    fn subtract(&self, other: &Mask) -> Result<Mask> {
        zip_with(self, other, "subtraction", |a, b| a && !b)
    }

    fn union_in_place(&mut self, other: &Mask) -> Result<()> {
        check_same_grid(self, other, "union")?;
        self.data_mut()
            .par_iter_mut()
            .zip(other.data().par_iter())
            .for_each(|(a, &b)| *a |= b);
        Ok(())
    }

    fn subtract_in_place(&mut self, other: &Mask) -> Result<()> {
        check_same_grid(self, other, "subtraction")?;
        self.data_mut()
            .par_iter_mut()
            .zip(other.data().par_iter())
            .for_each(|(a, &b)| *a &= !b);
        Ok(())
    }

    fn complement(&self) -> Mask {
        let data = self.data().par_iter().map(|&v| !v).collect();
        Mask::from_vec(*self.grid(), data).expect("one value per voxel")
    }
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

/// Volume, centroid and bounding box of a structure.
pub fn stats(s: &Structure) -> StructureStats {
    StructureStats {
        name: s.name.clone(),
        role: s.role,
        volume_cc: s.mask.volume_cc(),
        centroid_mm: s.mask.centroid_mm(),
        bounding_box: s.mask.bounding_box(),
    }
}

/// Statistics of every structure of `patient`, in order.
pub fn structure_stats(patient: &Patient) -> Vec<StructureStats> {
    patient.structures().iter().map(stats).collect()
}

/// One line per structure of `patient`: role, volume, centroid and extent.
pub fn structure_table(patient: &Patient) -> String {
    let mut s = format!(
        "{:<14} {:<9} {:>10}  {:>24}  {:>22}\n",
        "structure", "role", "volume_cc", "centroid_mm (x, y, z)", "extent_mm (x, y, z)"
    );
    for st in structure_stats(patient) {
        let c = st.centroid_mm.map_or("-".into(), |c| {
            format!("{:.1}, {:.1}, {:.1}", c[0], c[1], c[2])
        });
        let e = st.bounding_box.map_or("-".into(), |b| {
            let d: Vec<String> = (0..3)
                .map(|a| format!("{:.0}", b.max_mm[a] - b.min_mm[a]))
                .collect();
            d.join(" x ")
        });
        s += &format!(
            "{:<14} {:<9} {:>10.1}  {:>24}  {:>22}\n",
            st.name,
            st.role.to_string(),
            st.volume_cc,
            c,
            e
        );
    }
    s
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
