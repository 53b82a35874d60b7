//! Geometric primitives the phantom is built from, and their rasterization onto a grid.
//!
//! Every primitive answers "is this point inside?" and knows a bounding box, so that
//! rasterization touches only the voxels it can cover.

use rayon::prelude::*;

use tps_api::grid::Grid;
use tps_api::structure::Mask;

/// A point or vector in patient coordinates, mm.
pub type P3 = [f64; 3];

/// Axis-aligned box in mm.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Lower corner.
    pub lo: P3,
    /// Upper corner.
    pub hi: P3,
}

impl Bounds {
    /// The box spanned by two corners.
    pub fn new(lo: P3, hi: P3) -> Self {
        Self { lo, hi }
    }

    /// A box around `c` with half-widths `h`.
    pub fn around(c: P3, h: P3) -> Self {
        Self {
            lo: [c[0] - h[0], c[1] - h[1], c[2] - h[2]],
            hi: [c[0] + h[0], c[1] + h[1], c[2] + h[2]],
        }
    }
}

/// Rasterizes a per-slice shape: `section(z)` prepares whatever the slice needs (or `None` when
/// the shape misses the slice), and `inside(&section, x, y)` tests one voxel centre. Only
/// voxels inside `bounds` are visited.
pub fn rasterize_slices<S: Send>(
    grid: &Grid,
    bounds: Bounds,
    section: impl Fn(f64) -> Option<S> + Sync,
    inside: impl Fn(&S, f64, f64) -> bool + Sync,
) -> Mask {
    let [nx, ny, _] = grid.dims;
    let range = |a: usize| {
        let lo = grid.continuous_index(a, bounds.lo[a]).ceil().max(0.0) as usize;
        let hi_f = grid.continuous_index(a, bounds.hi[a]).floor();
        if hi_f < 0.0 {
            return (1, 0);
        }
        (lo, (hi_f as usize).min(grid.dims[a] - 1))
    };
    let (i0, i1) = range(0);
    let (j0, j1) = range(1);
    let (k0, k1) = range(2);
    let mut data = vec![false; grid.len()];
    if i0 <= i1 && j0 <= j1 && k0 <= k1 {
        data.par_chunks_mut(nx * ny)
            .enumerate()
            .skip(k0)
            .take(k1 + 1 - k0)
            .for_each(|(k, slab)| {
                let Some(s) = section(grid.coord_mm(2, k)) else {
                    return;
                };
                for j in j0..=j1 {
                    let y = grid.coord_mm(1, j);
                    for i in i0..=i1 {
                        slab[i + nx * j] = inside(&s, grid.coord_mm(0, i), y);
                    }
                }
            });
    }
    Mask::from_vec(*grid, data).expect("rasterized mask has the grid's length")
}

/// Rasterizes a 3-D predicate inside `bounds`.
pub fn rasterize(grid: &Grid, bounds: Bounds, inside: impl Fn(P3) -> bool + Sync) -> Mask {
    rasterize_slices(grid, bounds, Some, |&z, x, y| inside([x, y, z]))
}

/// An ellipsoid with semi-axes along the columns of a rotation.
#[derive(Debug, Clone, Copy)]
pub struct Ellipsoid {
    /// Centre, mm.
    pub centre: P3,
    /// Semi-axis lengths, mm.
    pub semi_mm: P3,
    /// Unit axes (rows), orthonormal.
    pub axes: [P3; 3],
}

impl Ellipsoid {
    /// Axis-aligned ellipsoid.
    pub fn aligned(centre: P3, semi_mm: P3) -> Self {
        Self {
            centre,
            semi_mm,
            axes: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        }
    }

    /// Ellipsoid whose third axis is tilted in the y-z (sagittal) plane by `tilt_rad` from
    /// superior towards anterior (negative y), as an anteverted uterus is.
    pub fn tilted_sagittal(centre: P3, semi_mm: P3, tilt_rad: f64) -> Self {
        let (s, c) = tilt_rad.sin_cos();
        Self {
            centre,
            semi_mm,
            axes: [[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]],
        }
    }

    /// Normalized radius: < 1 inside, 1 on the surface.
    pub fn level(&self, p: P3) -> f64 {
        let d = sub(p, self.centre);
        (0..3)
            .map(|a| (dot(d, self.axes[a]) / self.semi_mm[a]).powi(2))
            .sum::<f64>()
    }

    /// True when `p` is inside.
    pub fn contains(&self, p: P3) -> bool {
        self.level(p) <= 1.0
    }

    /// A box containing the ellipsoid.
    pub fn bounds(&self) -> Bounds {
        let r = self.semi_mm[0].max(self.semi_mm[1]).max(self.semi_mm[2]);
        Bounds::around(self.centre, [r; 3])
    }

    /// Volume, mm³.
    pub fn volume_mm3(&self) -> f64 {
        4.0 / 3.0 * std::f64::consts::PI * self.semi_mm.iter().product::<f64>()
    }
}

/// A tube along a polyline whose radius varies linearly along each segment (a chain of
/// capsules/cones): vessels, rectum, psoas, bony rami.
#[derive(Debug, Clone)]
pub struct Tube {
    /// Centre-line points, mm.
    pub points: Vec<P3>,
    /// Radius at each point, mm.
    pub radii: Vec<f64>,
}

impl Tube {
    /// A tube from points and radii of equal length (at least one point).
    pub fn new(points: Vec<P3>, radii: Vec<f64>) -> Self {
        assert!(!points.is_empty() && points.len() == radii.len());
        Self { points, radii }
    }

    /// A tube of constant radius.
    pub fn uniform(points: Vec<P3>, radius: f64) -> Self {
        let radii = vec![radius; points.len()];
        Self::new(points, radii)
    }

    /// True when `p` is within the local radius of the centre line.
    pub fn contains(&self, p: P3) -> bool {
        if self.points.len() == 1 {
            return dist2(p, self.points[0]) <= self.radii[0] * self.radii[0];
        }
        self.points
            .windows(2)
            .zip(self.radii.windows(2))
            .any(|(s, r)| {
                let (t, d2) = project_on_segment(p, s[0], s[1]);
                let rad = r[0] + t * (r[1] - r[0]);
                d2 <= rad * rad
            })
    }

    /// A box containing the tube.
    pub fn bounds(&self) -> Bounds {
        let rmax = self.radii.iter().cloned().fold(0.0, f64::max);
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        for p in &self.points {
            for a in 0..3 {
                lo[a] = lo[a].min(p[a] - rmax);
                hi[a] = hi[a].max(p[a] + rmax);
            }
        }
        Bounds::new(lo, hi)
    }

    /// The tube rasterized on `grid`.
    pub fn mask(&self, grid: &Grid) -> Mask {
        rasterize(grid, self.bounds(), |p| self.contains(p))
    }

    /// The same tube with every radius grown by `margin_mm`.
    pub fn grown(&self, margin_mm: f64) -> Tube {
        Tube::new(
            self.points.clone(),
            self.radii.iter().map(|r| r + margin_mm).collect(),
        )
    }

    /// The mirror image across the mid-sagittal plane (x -> -x).
    pub fn mirrored(&self) -> Tube {
        Tube::new(
            self.points.iter().map(|p| [-p[0], p[1], p[2]]).collect(),
            self.radii.clone(),
        )
    }
}

/// Parameter `t` in [0, 1] of the closest point of segment `ab` to `p`, and the squared
/// distance to it.
#[inline]
pub fn project_on_segment(p: P3, a: P3, b: P3) -> (f64, f64) {
    let ab = sub(b, a);
    let len2 = dot(ab, ab);
    let t = if len2 > 0.0 {
        (dot(sub(p, a), ab) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let q = [a[0] + t * ab[0], a[1] + t * ab[1], a[2] + t * ab[2]];
    (t, dist2(p, q))
}

/// Squared distance from 2-D point `p` to segment `ab`.
#[inline]
pub fn dist2_segment_2d(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    project_on_segment([p[0], p[1], 0.0], [a[0], a[1], 0.0], [b[0], b[1], 0.0]).1
}

/// Piecewise-linear interpolation through `(x, y)` knots sorted by `x`, held constant outside.
pub fn interp(knots: &[(f64, f64)], x: f64) -> f64 {
    let first = knots[0];
    let last = knots[knots.len() - 1];
    if x <= first.0 {
        return first.1;
    }
    if x >= last.0 {
        return last.1;
    }
    for w in knots.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x <= x1 {
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
        }
    }
    last.1
}

/// Points of a quadratic Bezier curve in the plane, `n + 1` of them.
pub fn bezier2(a: [f64; 2], c: [f64; 2], b: [f64; 2], n: usize) -> Vec<[f64; 2]> {
    (0..=n)
        .map(|s| {
            let t = s as f64 / n as f64;
            let u = 1.0 - t;
            [
                u * u * a[0] + 2.0 * u * t * c[0] + t * t * b[0],
                u * u * a[1] + 2.0 * u * t * c[1] + t * t * b[1],
            ]
        })
        .collect()
}

#[inline]
pub(crate) fn sub(a: P3, b: P3) -> P3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[inline]
pub(crate) fn dot(a: P3, b: P3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[inline]
pub(crate) fn dist2(a: P3, b: P3) -> f64 {
    let d = sub(a, b);
    dot(d, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipsoid_volume_matches_rasterization() {
        let g = Grid::covering([-40.0; 3], [40.0; 3], [1.0; 3]).unwrap();
        let e = Ellipsoid::tilted_sagittal([1.0, -2.0, 3.0], [20.0, 15.0, 30.0], 0.7);
        let m = rasterize(&g, e.bounds(), |p| e.contains(p));
        let rel = (m.volume_cc() * 1000.0 - e.volume_mm3()).abs() / e.volume_mm3();
        assert!(rel < 0.01, "relative volume error {rel}");
    }

    #[test]
    fn tube_and_interpolation() {
        let t = Tube::new(vec![[0.0, 0.0, 0.0], [0.0, 0.0, 10.0]], vec![1.0, 3.0]);
        assert!(t.contains([0.0, 1.9, 5.0]));
        assert!(!t.contains([0.0, 2.1, 5.0]));
        assert_eq!(interp(&[(0.0, 0.0), (10.0, 20.0)], 2.5), 5.0);
        assert_eq!(interp(&[(0.0, 1.0), (10.0, 20.0)], -3.0), 1.0);
        let b = bezier2([0.0, 0.0], [1.0, 1.0], [2.0, 0.0], 2);
        assert_eq!(b[1], [1.0, 0.5]);
    }
}
