//! Margins and rings by an exact Euclidean distance transform.
//!
//! Distances are measured between voxel centres in millimetres, honouring anisotropic
//! spacing. The squared distance transform is the separable lower-envelope-of-parabolas
//! algorithm of Felzenszwalb and Huttenlocher ("Distance Transforms of Sampled Functions",
//! Theory of Computing 8, 2012), exact for the Euclidean metric, O(N) per axis pass.
//!
//! Conventions (the ones a TPS margin tool uses):
//! - `expand(S, m)` holds every voxel whose centre lies within `m` of the centre of a voxel
//!   of `S` (so `S` itself is included).
//! - `contract(S, m)` keeps the voxels of `S` farther than `m` from every voxel centre outside
//!   `S`. The edge of the grid is not a surface: a structure cut by the scan limits is not
//!   eroded from that side.
//! - `ring(S, gap, thickness)` is `expand(S, gap + thickness) \ expand(S, gap)`.
//!
//! Work is confined to the structure's bounding box plus the margin, which is exact (every
//! voxel that can be reached lies inside it) and keeps small structures cheap on large grids.

use rayon::prelude::*;

use tps_api::error::{Error, Result};
use tps_api::grid::Grid;
use tps_api::structure::Mask;

use crate::mask_ops::MaskOps;

/// Tolerance on distance comparisons, mm², so that a margin equal to a voxel-centre distance
/// includes that voxel despite rounding.
const EPS_MM2: f64 = 1e-6;

/// Squared Euclidean distance (mm²) from every voxel centre to the nearest voxel centre where
/// `seed` is true; `f64::INFINITY` everywhere when there is no seed.
pub fn squared_distance_mm2(grid: &Grid, seed: &[bool]) -> Vec<f64> {
    assert_eq!(seed.len(), grid.len(), "seed length must match the grid");
    let [nx, ny, nz] = grid.dims;
    let [wx, wy, wz] = grid.spacing_mm.map(|s| s * s);
    let mut d: Vec<f64> = seed
        .par_iter()
        .map(|&s| if s { 0.0 } else { f64::INFINITY })
        .collect();

    // Pass 1: along x, contiguous lines.
    d.par_chunks_mut(nx).for_each_init(
        || Scratch::new(nx),
        |s, line| {
            s.f[..nx].copy_from_slice(line);
            envelope_1d(&s.f[..nx], line, &mut s.v, &mut s.z, wx);
        },
    );
    // Pass 2: along y, within each axial slab.
    if ny > 1 {
        d.par_chunks_mut(nx * ny).for_each_init(
            || (Scratch::new(ny), vec![0.0; ny]),
            |(s, out), slab| {
                for i in 0..nx {
                    for j in 0..ny {
                        s.f[j] = slab[i + nx * j];
                    }
                    envelope_1d(&s.f[..ny], out, &mut s.v, &mut s.z, wy);
                    for j in 0..ny {
                        slab[i + nx * j] = out[j];
                    }
                }
            },
        );
    }
    // Pass 3: along z, through a z-fastest copy so that each line is contiguous.
    if nz > 1 {
        let plane = nx * ny;
        let mut t = vec![0.0; d.len()];
        t.par_chunks_mut(nz).enumerate().for_each_init(
            || Scratch::new(nz),
            |s, (col, line)| {
                for (k, f) in s.f[..nz].iter_mut().enumerate() {
                    *f = d[col + plane * k];
                }
                envelope_1d(&s.f[..nz], line, &mut s.v, &mut s.z, wz);
            },
        );
        d.par_chunks_mut(plane).enumerate().for_each(|(k, slab)| {
            for (col, v) in slab.iter_mut().enumerate() {
                *v = t[col * nz + k];
            }
        });
    }
    d
}

struct Scratch {
    f: Vec<f64>,
    v: Vec<usize>,
    z: Vec<f64>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Self {
            f: vec![0.0; n],
            v: vec![0; n],
            z: vec![0.0; n + 1],
        }
    }
}

/// One-dimensional squared distance transform of sampled function `f` with sample spacing
/// `sqrt(w2)`: `d[p] = min_q f[q] + w2 (p - q)^2`. Infinite samples contribute nothing.
fn envelope_1d(f: &[f64], d: &mut [f64], v: &mut [usize], z: &mut [f64], w2: f64) {
    let n = f.len();
    let mut k: usize = 0; // number of parabolas in the envelope
    for q in 0..n {
        if !f[q].is_finite() {
            continue;
        }
        let fq = f[q] + w2 * (q * q) as f64;
        let mut s = f64::NEG_INFINITY;
        while k > 0 {
            let r = v[k - 1];
            s = (fq - (f[r] + w2 * (r * r) as f64)) / (2.0 * w2 * (q - r) as f64);
            if s <= z[k - 1] {
                k -= 1;
                s = f64::NEG_INFINITY;
            } else {
                break;
            }
        }
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
        k += 1;
    }
    if k == 0 {
        d.fill(f64::INFINITY);
        return;
    }
    let mut j = 0;
    for (p, out) in d.iter_mut().enumerate() {
        while z[j + 1] < p as f64 {
            j += 1;
        }
        let dp = p as f64 - v[j] as f64;
        *out = w2 * dp * dp + f[v[j]];
    }
}

/// A rectangular block of voxels `[lo, hi]` (inclusive) of a grid.
#[derive(Debug, Clone, Copy)]
struct Block {
    lo: [usize; 3],
    hi: [usize; 3],
}

impl Block {
    fn around(mask: &Mask, pad_mm: f64) -> Option<Block> {
        let bb = mask.bounding_box()?;
        let g = mask.grid();
        let mut lo = [0; 3];
        let mut hi = [0; 3];
        for a in 0..3 {
            let pad = (pad_mm / g.spacing_mm[a]).ceil() as usize + 1;
            lo[a] = bb.min_ijk[a].saturating_sub(pad);
            hi[a] = (bb.max_ijk[a] + pad).min(g.dims[a] - 1);
        }
        Some(Block { lo, hi })
    }

    fn dims(&self) -> [usize; 3] {
        [0, 1, 2].map(|a| self.hi[a] - self.lo[a] + 1)
    }

    fn grid(&self, g: &Grid) -> Grid {
        Grid {
            dims: self.dims(),
            spacing_mm: g.spacing_mm,
            origin_mm: [0, 1, 2].map(|a| g.coord_mm(a, self.lo[a])),
            direction: g.direction,
        }
    }

    fn extract(&self, mask: &Mask) -> Vec<bool> {
        let g = mask.grid();
        let [bx, by, bz] = self.dims();
        let mut out = vec![false; bx * by * bz];
        out.par_chunks_mut(bx * by)
            .enumerate()
            .for_each(|(k, slab)| {
                for j in 0..by {
                    let src = g.index(self.lo[0], self.lo[1] + j, self.lo[2] + k);
                    slab[j * bx..(j + 1) * bx].copy_from_slice(&mask.data()[src..src + bx]);
                }
            });
        out
    }

    /// A full-grid mask that is `value(block_index)` inside the block and false outside.
    fn paste(&self, g: &Grid, value: impl Fn(usize) -> bool + Sync) -> Mask {
        let [bx, by, _] = self.dims();
        let [nx, ny, _] = g.dims;
        let mut data = vec![false; g.len()];
        data.par_chunks_mut(nx * ny)
            .enumerate()
            .for_each(|(k, slab)| {
                if k < self.lo[2] || k > self.hi[2] {
                    return;
                }
                let bk = k - self.lo[2];
                for j in self.lo[1]..=self.hi[1] {
                    let bj = j - self.lo[1];
                    for i in self.lo[0]..=self.hi[0] {
                        slab[i + nx * j] = value((i - self.lo[0]) + bx * (bj + by * bk));
                    }
                }
            });
        Mask::from_vec(*g, data).expect("pasted mask has the grid's length")
    }
}

fn check_margin(margin_mm: f64, what: &str) -> Result<()> {
    if !(margin_mm.is_finite() && margin_mm >= 0.0) {
        return Err(Error::invalid(
            "structure operation",
            what,
            margin_mm.to_string(),
            "margin must be finite and non-negative",
        ));
    }
    Ok(())
}

/// Squared distance to `mask`, computed in the block around it that reaches `reach_mm`.
fn distance_in_block(mask: &Mask, reach_mm: f64) -> Option<(Block, Vec<f64>)> {
    let block = Block::around(mask, reach_mm)?;
    let sub = block.extract(mask);
    let d2 = squared_distance_mm2(&block.grid(mask.grid()), &sub);
    Some((block, d2))
}

/// Expands `mask` by `margin_mm` (isotropic, Euclidean). An empty mask stays empty.
pub fn expand(mask: &Mask, margin_mm: f64) -> Result<Mask> {
    check_margin(margin_mm, "margin-mm")?;
    if margin_mm == 0.0 {
        return Ok(mask.clone());
    }
    let Some((block, d2)) = distance_in_block(mask, margin_mm) else {
        return Ok(mask.clone());
    };
    let limit = margin_mm * margin_mm + EPS_MM2;
    Ok(block.paste(mask.grid(), |b| d2[b] <= limit))
}

/// Contracts `mask` by `margin_mm`. The result may be empty; callers that need a non-empty
/// structure check [`Mask::is_empty`] and report it.
pub fn contract(mask: &Mask, margin_mm: f64) -> Result<Mask> {
    check_margin(margin_mm, "margin-mm")?;
    if margin_mm == 0.0 {
        return Ok(mask.clone());
    }
    let Some(block) = Block::around(mask, 0.0) else {
        return Ok(mask.clone());
    };
    let sub = block.extract(mask);
    let outside: Vec<bool> = sub.par_iter().map(|&v| !v).collect();
    let d2 = squared_distance_mm2(&block.grid(mask.grid()), &outside);
    let limit = margin_mm * margin_mm + EPS_MM2;
    Ok(block.paste(mask.grid(), |b| sub[b] && d2[b] > limit))
}

/// The shell between `gap_mm` and `gap_mm + thickness_mm` outside `mask`, from a single
/// distance transform. With `gap_mm = 0` the shell starts at the structure's surface.
pub fn ring(mask: &Mask, gap_mm: f64, thickness_mm: f64) -> Result<Mask> {
    check_margin(gap_mm, "gap-mm")?;
    check_margin(thickness_mm, "thickness-mm")?;
    let Some((block, d2)) = distance_in_block(mask, gap_mm + thickness_mm) else {
        return Ok(mask.clone());
    };
    let inner = gap_mm * gap_mm + EPS_MM2;
    let outer = (gap_mm + thickness_mm).powi(2) + EPS_MM2;
    Ok(block.paste(mask.grid(), |b| {
        let d = d2[b];
        d > inner && d <= outer
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force squared distance, the reference for the fast transform.
    fn brute(grid: &Grid, seed: &[bool]) -> Vec<f64> {
        let seeds: Vec<[f64; 3]> = (0..grid.len())
            .filter(|&i| seed[i])
            .map(|i| {
                let [a, b, c] = grid.ijk(i);
                grid.position_mm(a, b, c)
            })
            .collect();
        (0..grid.len())
            .map(|i| {
                let [a, b, c] = grid.ijk(i);
                let p = grid.position_mm(a, b, c);
                seeds
                    .iter()
                    .map(|s| (0..3).map(|ax| (p[ax] - s[ax]).powi(2)).sum::<f64>())
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn transform_matches_brute_force_on_anisotropic_grid() {
        let grid = Grid::new([9, 7, 5], [1.0, 2.0, 3.5], [0.0; 3]).unwrap();
        // A pseudo-random scatter of seeds.
        let mut state = 12345u64;
        let seed: Vec<bool> = (0..grid.len())
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 60) == 0
            })
            .collect();
        assert!(seed.iter().any(|&s| s));
        let fast = squared_distance_mm2(&grid, &seed);
        let slow = brute(&grid, &seed);
        for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
            assert!((a - b).abs() < 1e-9, "voxel {i}: {a} vs {b}");
        }
    }

    #[test]
    fn no_seed_gives_infinity() {
        let grid = Grid::new([3, 3, 3], [1.0; 3], [0.0; 3]).unwrap();
        assert!(
            squared_distance_mm2(&grid, &[false; 27])
                .iter()
                .all(|d| d.is_infinite())
        );
    }

    #[test]
    fn negative_margin_is_refused() {
        let grid = Grid::new([3, 3, 3], [1.0; 3], [0.0; 3]).unwrap();
        let e = expand(&Mask::empty(grid), -1.0).unwrap_err();
        assert!(
            e.to_string().contains("margin-mm") && e.to_string().contains("-1"),
            "{e}"
        );
        assert!(ring(&Mask::empty(grid), 1.0, f64::NAN).is_err());
    }
}
