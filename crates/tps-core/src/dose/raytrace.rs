//! Exact voxel traversal (the Amanatides-Woo form of Siddon's algorithm: Siddon, Med Phys
//! 12:252, 1985; Amanatides and Woo, Eurographics 1987) and radiological depth maps.
//!
//! A ray visits every voxel it crosses, in order, with the exact length of its path inside
//! each. A depth map holds, for a lattice of rays from one beam's source, the cumulative
//! radiological path (density x length) sampled along each ray; the depth of any point is
//! interpolated between the four rays around it, at the point's own distance from the source.

use rayon::prelude::*;

use super::geometry::Beam;
use crate::dose::geometry::P3;
use tps_api::grid::Grid;

/// Calls `visit(voxel index, entry distance, exit distance)` for every voxel the ray
/// `origin + l * dir` (unit `dir`, `l >= 0`) crosses, in order.
pub fn traverse(grid: &Grid, origin: P3, dir: P3, mut visit: impl FnMut(usize, f64, f64)) {
    let lo: [f64; 3] = [0, 1, 2].map(|a| grid.origin_mm[a] - 0.5 * grid.spacing_mm[a]);
    let hi: [f64; 3] = [0, 1, 2].map(|a| lo[a] + grid.dims[a] as f64 * grid.spacing_mm[a]);
    // Slab intersection with the grid's box.
    let mut l_in: f64 = 0.0;
    let mut l_out = f64::INFINITY;
    for a in 0..3 {
        if dir[a].abs() < 1e-15 {
            if origin[a] < lo[a] || origin[a] >= hi[a] {
                return;
            }
        } else {
            let t0 = (lo[a] - origin[a]) / dir[a];
            let t1 = (hi[a] - origin[a]) / dir[a];
            l_in = l_in.max(t0.min(t1));
            l_out = l_out.min(t0.max(t1));
        }
    }
    if l_in >= l_out {
        return;
    }
    let mut idx = [0usize; 3];
    let mut step = [0isize; 3];
    let mut next = [f64::INFINITY; 3];
    let mut delta = [f64::INFINITY; 3];
    let mid = l_in + 1e-9 * (l_out - l_in).min(1.0);
    for a in 0..3 {
        let p = origin[a] + dir[a] * mid;
        let i = ((p - lo[a]) / grid.spacing_mm[a])
            .floor()
            .clamp(0.0, (grid.dims[a] - 1) as f64);
        idx[a] = i as usize;
        if dir[a] > 1e-15 {
            step[a] = 1;
            next[a] = (lo[a] + (i + 1.0) * grid.spacing_mm[a] - origin[a]) / dir[a];
            delta[a] = grid.spacing_mm[a] / dir[a];
        } else if dir[a] < -1e-15 {
            step[a] = -1;
            next[a] = (lo[a] + i * grid.spacing_mm[a] - origin[a]) / dir[a];
            delta[a] = -grid.spacing_mm[a] / dir[a];
        }
    }
    let mut l = l_in;
    loop {
        let a = if next[0] <= next[1] && next[0] <= next[2] {
            0
        } else if next[1] <= next[2] {
            1
        } else {
            2
        };
        let l_exit = next[a].min(l_out);
        if l_exit > l {
            visit(grid.index(idx[0], idx[1], idx[2]), l, l_exit);
        }
        if l_exit >= l_out {
            return;
        }
        l = l_exit;
        let n = idx[a] as isize + step[a];
        if n < 0 || n >= grid.dims[a] as isize {
            return;
        }
        idx[a] = n as usize;
        next[a] += delta[a];
    }
}

/// Cumulative radiological depth along a lattice of rays from one beam's source.
#[derive(Debug, Clone)]
pub struct DepthMap {
    beam: Beam,
    source: P3,
    a0: f64,
    c0: f64,
    step: f64,
    na: usize,
    nc: usize,
    l0: f64,
    dl: f64,
    nl: usize,
    /// `samples[(ray) * nl + k]`: radiological depth (mm of water) at distance `l0 + k dl`.
    samples: Vec<f32>,
}

impl DepthMap {
    /// Traces rays through `density` (relative electron density on `grid`) on a lattice of
    /// spacing `step_mm` in the isocentre plane covering the grid's projection, sampling the
    /// cumulative radiological depth every `dl_mm` along each ray.
    pub fn new(beam: &Beam, grid: &Grid, density: &[f32], step_mm: f64, dl_mm: f64) -> Self {
        assert_eq!(density.len(), grid.len());
        let source = beam.source();
        // Project the grid's corners to bound the rays and the distances.
        let lo: [f64; 3] = [0, 1, 2].map(|a| grid.origin_mm[a] - 0.5 * grid.spacing_mm[a]);
        let hi: [f64; 3] = [0, 1, 2].map(|a| lo[a] + grid.dims[a] as f64 * grid.spacing_mm[a]);
        let (mut amin, mut amax, mut cmin, mut cmax) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        let (mut lmin, mut lmax) = (f64::INFINITY, 0.0f64);
        for corner in 0..8 {
            let p = [0, 1, 2].map(|a| if corner >> a & 1 == 1 { hi[a] } else { lo[a] });
            let b = beam.bev(p);
            if b.t > 1.0 {
                amin = amin.min(b.a);
                amax = amax.max(b.a);
                cmin = cmin.min(b.c);
                cmax = cmax.max(b.c);
            }
            lmax = lmax.max(b.l);
        }
        // The nearest point of the box to the source bounds the shortest distance.
        let near = [0, 1, 2].map(|a| source[a].clamp(lo[a], hi[a]));
        lmin = lmin.min(
            ((near[0] - source[0]).powi(2)
                + (near[1] - source[1]).powi(2)
                + (near[2] - source[2]).powi(2))
            .sqrt(),
        );
        let na = ((amax - amin) / step_mm).ceil() as usize + 3;
        let nc = ((cmax - cmin) / step_mm).ceil() as usize + 3;
        let a0 = amin - step_mm;
        let c0 = cmin - step_mm;
        let l0 = (lmin - dl_mm).max(0.0);
        let nl = ((lmax - l0) / dl_mm).ceil() as usize + 2;
        let mut samples = vec![0f32; na * nc * nl];
        samples
            .par_chunks_mut(nl)
            .enumerate()
            .for_each(|(ray, out)| {
                let (i, j) = (ray % na, ray / na);
                let dir = beam.ray_direction(a0 + i as f64 * step_mm, c0 + j as f64 * step_mm);
                let mut k = 0usize;
                let mut cum = 0.0f64;
                traverse(grid, source, dir, |idx, la, lb| {
                    let rho = density[idx] as f64;
                    while k < nl {
                        let l = l0 + k as f64 * dl_mm;
                        if l > lb {
                            break;
                        }
                        out[k] = (cum + rho * (l - la).max(0.0)) as f32;
                        k += 1;
                    }
                    cum += rho * (lb - la);
                });
                for v in &mut out[k..] {
                    *v = cum as f32;
                }
            });
        Self {
            beam: *beam,
            source,
            a0,
            c0,
            step: step_mm,
            na,
            nc,
            l0,
            dl: dl_mm,
            nl,
            samples,
        }
    }

    /// The beam this map belongs to.
    pub fn beam(&self) -> &Beam {
        &self.beam
    }

    /// The source position.
    pub fn source(&self) -> P3 {
        self.source
    }

    fn along(&self, ray: usize, l: f64) -> f64 {
        let x = ((l - self.l0) / self.dl).clamp(0.0, (self.nl - 1) as f64);
        let k = (x.floor() as usize).min(self.nl - 2);
        let f = x - k as f64;
        let s = &self.samples[ray * self.nl..(ray + 1) * self.nl];
        s[k] as f64 * (1.0 - f) + s[k + 1] as f64 * f
    }

    /// Radiological depth (mm of water) of the point at isocentre-plane position `(a, c)` and
    /// distance `l` from the source.
    pub fn depth(&self, a: f64, c: f64, l: f64) -> f64 {
        let x = ((a - self.a0) / self.step).clamp(0.0, (self.na - 1) as f64);
        let y = ((c - self.c0) / self.step).clamp(0.0, (self.nc - 1) as f64);
        let i = (x.floor() as usize).min(self.na - 2);
        let j = (y.floor() as usize).min(self.nc - 2);
        let (fx, fy) = (x - i as f64, y - j as f64);
        let r = |ii: usize, jj: usize| self.along(ii + self.na * jj, l);
        (r(i, j) * (1.0 - fx) + r(i + 1, j) * fx) * (1.0 - fy)
            + (r(i, j + 1) * (1.0 - fx) + r(i + 1, j + 1) * fx) * fy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_lengths_are_exact() {
        let g = Grid::new([10, 10, 10], [2.0, 2.0, 3.0], [1.0, 1.0, 1.5]).unwrap(); // box [0,20]x[0,20]x[0,30]
        // Along x through the middle: ten voxels of 2 mm.
        let mut v = Vec::new();
        traverse(&g, [-5.0, 5.0, 5.0], [1.0, 0.0, 0.0], |i, a, b| {
            v.push((i, b - a))
        });
        assert_eq!(v.len(), 10);
        assert!(v.iter().all(|(_, len)| (len - 2.0).abs() < 1e-9));
        // A diagonal ray: total length inside equals the chord of the box.
        let d = [1.0 / 3f64.sqrt(); 3];
        let mut total = 0.0;
        let mut last = -1.0;
        traverse(&g, [-1.0, -1.0, -1.0], d, |_, a, b| {
            assert!(a >= last - 1e-9);
            last = b;
            total += b - a;
        });
        // Enters at (0,0,0)+, leaves at x = 20: chord 20 sqrt(3).
        assert!((total - 20.0 * 3f64.sqrt()).abs() < 1e-9, "{total}");
        // A ray that misses.
        let mut hit = false;
        traverse(&g, [-5.0, 50.0, 5.0], [1.0, 0.0, 0.0], |_, _, _| hit = true);
        assert!(!hit);
    }

    #[test]
    fn depth_in_water_is_geometric_depth() {
        // Water slab with its surface at y = 0, beam from anterior (gantry 0) with SSD 1000.
        let g = Grid::new([20, 40, 20], [5.0; 3], [-47.5, 2.5, -47.5]).unwrap();
        let rho = vec![1.0f32; g.len()];
        let beam = Beam {
            gantry_deg: 0.0,
            iso_mm: [0.0; 3],
            sad_mm: 1000.0,
            collimator_deg: 0.0,
        };
        let map = DepthMap::new(&beam, &g, &rho, 2.0, 1.0);
        for depth in [0.0, 15.0, 100.0, 173.0] {
            let p = beam.bev([0.0, depth, 0.0]);
            assert!((map.depth(p.a, p.c, p.l) - depth).abs() < 1e-3, "{depth}");
        }
        // Off axis the path is slanted: depth along the ray = l - l_surface.
        let p = beam.bev([40.0, 100.0, 30.0]);
        let surface_l = p.l * 1000.0 / p.t;
        assert!((map.depth(p.a, p.c, p.l) - (p.l - surface_l)).abs() < 0.05);
    }
}
