//! Structures: named voxel masks with a role.
//!
//! A [`Mask`] here is plain data (its grid and one flag per voxel) with the sequential
//! queries evaluation needs; the parallel Boolean operations, margins and statistics that
//! build structures are in the `patient-model` crate (`MaskOps`).

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
        self.data.iter().filter(|&&v| v).count()
    }

    /// True when no voxel is set.
    pub fn is_empty(&self) -> bool {
        !self.data.iter().any(|&v| v)
    }

    /// Volume in cubic centimetres (voxel count times voxel volume).
    pub fn volume_cc(&self) -> f64 {
        self.count() as f64 * self.grid.voxel_volume_cc()
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

impl Structure {
    /// A structure from its parts.
    pub fn new(name: impl Into<String>, role: Role, mask: Mask) -> Self {
        Self {
            name: name.into(),
            role,
            mask,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_volumes() {
        let g = Grid::new([4, 3, 2], [2.0, 2.0, 3.0], [0.0; 3]).unwrap();
        let mut m = Mask::empty(g);
        assert!(m.is_empty());
        m.data_mut()[5] = true;
        m.data_mut()[23] = true;
        assert_eq!(m.count(), 2);
        assert!(m.get(1, 1, 0) && m.get(3, 2, 1));
        assert!((m.volume_cc() - 2.0 * 0.012).abs() < 1e-15);
        let e = Mask::from_vec(g, vec![false; 5]).unwrap_err();
        assert!(matches!(e, Error::GridMismatch { .. }), "{e}");
    }
}
