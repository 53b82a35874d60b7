//! A dose distribution with the grid it lives on.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::grid::Grid;

/// Dose in cGy on a grid, x-fastest. A TPS returns the dose of its plan as one, so whoever
/// reads it knows where every value lies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DoseWire")]
pub struct Dose {
    grid: Grid,
    cgy: Vec<f32>,
}

#[derive(Deserialize)]
struct DoseWire {
    grid: Grid,
    cgy: Vec<f32>,
}

impl TryFrom<DoseWire> for Dose {
    type Error = Error;

    fn try_from(w: DoseWire) -> Result<Self> {
        w.grid.validate()?;
        Dose::new(w.grid, w.cgy)
    }
}

impl Dose {
    /// A dose from its values on `grid`; the number of values must match the grid.
    pub fn new(grid: Grid, cgy: Vec<f32>) -> Result<Self> {
        if cgy.len() != grid.len() {
            return Err(Error::GridMismatch {
                what: format!(
                    "dose has {} values but its grid {:?} has {} voxels",
                    cgy.len(),
                    grid.dims,
                    grid.len()
                ),
            });
        }
        Ok(Self { grid, cgy })
    }

    /// Zero dose on `grid`.
    pub fn zeros(grid: Grid) -> Self {
        Self {
            cgy: vec![0.0; grid.len()],
            grid,
        }
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Values in cGy, x-fastest.
    pub fn cgy(&self) -> &[f32] {
        &self.cgy
    }

    /// Mutable values in cGy.
    pub fn cgy_mut(&mut self) -> &mut [f32] {
        &mut self.cgy
    }

    /// The values, giving up the grid.
    pub fn into_cgy(self) -> Vec<f32> {
        self.cgy
    }

    /// Multiplies every value by `factor`.
    pub fn scale(&mut self, factor: f64) {
        let f = factor as f32;
        self.cgy.iter_mut().for_each(|v| *v *= f);
    }

    /// The highest value (0 for a dose without positive values).
    pub fn max_cgy(&self) -> f32 {
        self.cgy.iter().copied().fold(0.0, f32::max)
    }

    /// The first voxel whose value is not a finite, non-negative dose: its index and value.
    pub fn first_invalid(&self) -> Option<(usize, f32)> {
        self.cgy
            .iter()
            .position(|v| !(v.is_finite() && *v >= 0.0))
            .map(|n| (n, self.cgy[n]))
    }

    /// The same dose on an LPS-aligned grid covering the same voxels: exact when the grid's
    /// axes are the patient axes swapped or reversed (a series acquired prone or feet first,
    /// a remote system's convention); an oblique grid is refused, since it would need
    /// interpolation.
    pub fn to_lps_aligned(&self) -> Result<Dose> {
        let (grid, cgy) = self.grid.to_lps_aligned(&self.cgy)?;
        Dose::new(grid, cgy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(grid: Grid) -> Dose {
        let cgy = (0..grid.len()).map(|n| n as f32).collect();
        Dose::new(grid, cgy).unwrap()
    }

    #[test]
    fn values_must_fit_the_grid() {
        let g = Grid::new([2, 2, 2], [1.0; 3], [0.0; 3]).unwrap();
        let e = Dose::new(g, vec![1.0; 7]).unwrap_err();
        assert!(e.to_string().contains("7 values"), "{e}");
        let mut d = ramp(g);
        d.scale(2.0);
        assert_eq!(d.max_cgy(), 14.0);
        assert_eq!(d.first_invalid(), None);
        d.cgy_mut()[3] = f32::NAN;
        assert_eq!(d.first_invalid().map(|(n, _)| n), Some(3));
    }

    /// Every voxel keeps its patient position when a flipped and permuted grid is reordered.
    #[test]
    fn reordering_keeps_every_voxel_in_place() {
        // Axis 0 runs posterior-to-anterior (-y), axis 1 right-to-left (+x), axis 2 downwards.
        let d = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]];
        let g = Grid::with_direction([3, 4, 5], [2.0, 1.0, 3.0], [5.0, 9.0, 20.0], d).unwrap();
        let dose = ramp(g);
        let lps = dose.to_lps_aligned().unwrap();
        let out = *lps.grid();
        assert!(out.is_lps_aligned());
        assert_eq!(out.dims, [4, 3, 5]);
        assert_eq!(out.spacing_mm, [1.0, 2.0, 3.0]);
        for k in 0..5 {
            for j in 0..4 {
                for i in 0..3 {
                    let p = g.position_mm(i, j, k);
                    let n = [0, 1, 2].map(|a| out.continuous_index(a, p[a]).round() as usize);
                    let q = out.position_mm(n[0], n[1], n[2]);
                    assert!((0..3).all(|a| (p[a] - q[a]).abs() < 1e-9), "{p:?} {q:?}");
                    assert_eq!(
                        lps.cgy()[out.index(n[0], n[1], n[2])],
                        dose.cgy()[g.index(i, j, k)]
                    );
                }
            }
        }
        let s = 0.5f64.sqrt();
        let oblique = [[s, s, 0.0], [-s, s, 0.0], [0.0, 0.0, 1.0]];
        let g = Grid::with_direction([2, 2, 2], [1.0; 3], [0.0; 3], oblique).unwrap();
        let e = ramp(g).to_lps_aligned().unwrap_err();
        assert!(e.to_string().contains("oblique"), "{e}");
    }

    #[test]
    fn serde_checks_the_length() {
        let g = Grid::new([1, 1, 2], [1.0; 3], [0.0; 3]).unwrap();
        let text = serde_json::to_string(&ramp(g)).unwrap();
        let back: Dose = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ramp(g));
        let bad = text.replace("[0.0,1.0]", "[0.0]");
        assert!(serde_json::from_str::<Dose>(&bad).is_err());
    }
}
