//! Contours traced from a mask, slice by slice, along voxel edges.
//!
//! Every edge between a voxel inside and one outside (or beyond the grid) is a boundary edge,
//! oriented with the inside on its left; the edges are chained into closed loops, and vertices
//! in the middle of a straight run are dropped. Outer boundaries and holes both come out as
//! loops, so the even-odd rule of the importer ([`crate::rtstruct`]) gives back exactly the
//! voxels of the mask: whatever way the loops are split at a corner where two voxels touch
//! diagonally, the set of edges, and so the parity of every crossing, is the mask's.

use std::collections::HashMap;

use tps_api::structure::Mask;

/// A closed loop of voxel corners on one slice: corner `(a, b)` is the point half a voxel
/// before voxel `(a, b)` along x and y, so `(0, 0)` is the outer corner of the first voxel.
pub type Loop = Vec<(u32, u32)>;

/// The boundary loops of slice `k` of `mask`.
pub fn slice_loops(mask: &Mask, k: usize) -> Vec<Loop> {
    let [nx, ny, _] = mask.grid().dims;
    let inside = |i: isize, j: isize| {
        i >= 0
            && j >= 0
            && (i as usize) < nx
            && (j as usize) < ny
            && mask.get(i as usize, j as usize, k)
    };
    // Outgoing edges by start corner.
    let mut next: HashMap<(u32, u32), Vec<(u32, u32)>> = HashMap::new();
    let mut edges = 0usize;
    for j in 0..ny {
        for i in 0..nx {
            if !mask.get(i, j, k) {
                continue;
            }
            let (ii, jj) = (i as isize, j as isize);
            let (a, b) = (i as u32, j as u32);
            let mut add = |from: (u32, u32), to: (u32, u32)| {
                next.entry(from).or_default().push(to);
                edges += 1;
            };
            if !inside(ii, jj - 1) {
                add((a, b), (a + 1, b));
            }
            if !inside(ii + 1, jj) {
                add((a + 1, b), (a + 1, b + 1));
            }
            if !inside(ii, jj + 1) {
                add((a + 1, b + 1), (a, b + 1));
            }
            if !inside(ii - 1, jj) {
                add((a, b + 1), (a, b));
            }
        }
    }
    let mut starts: Vec<(u32, u32)> = next.keys().copied().collect();
    starts.sort_unstable_by_key(|&(a, b)| (b, a));
    let mut loops = Vec::new();
    for s in starts {
        while let Some(first) = next.get_mut(&s).and_then(|v| v.pop()) {
            let mut points = vec![s];
            let mut at = first;
            while at != s {
                points.push(at);
                at = next
                    .get_mut(&at)
                    .and_then(|v| v.pop())
                    .expect("boundary edges form closed loops");
            }
            loops.push(simplify(points));
        }
    }
    debug_assert!(loops.iter().map(|l| l.len()).sum::<usize>() <= edges);
    loops
}

/// Drops vertices where the loop goes straight on.
fn simplify(points: Loop) -> Loop {
    let n = points.len();
    (0..n)
        .filter(|&m| {
            let (p, c, q) = (points[(m + n - 1) % n], points[m], points[(m + 1) % n]);
            let d1 = (c.0 as i64 - p.0 as i64, c.1 as i64 - p.1 as i64);
            let d2 = (q.0 as i64 - c.0 as i64, q.1 as i64 - c.1 as i64);
            d1.0 * d2.1 - d1.1 * d2.0 != 0
        })
        .map(|m| points[m])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tps_api::grid::Grid;

    fn mask(rows: &[&str]) -> Mask {
        let ny = rows.len();
        let nx = rows[0].len();
        let g = Grid::new([nx, ny, 1], [1.0; 3], [0.0; 3]).unwrap();
        let data = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| c == '#'))
            .collect();
        Mask::from_vec(g, data).unwrap()
    }

    #[test]
    fn a_square_is_one_loop_of_four_corners() {
        let m = mask(&["....", ".##.", ".##.", "...."]);
        let loops = slice_loops(&m, 0);
        assert_eq!(loops.len(), 1);
        let mut l = loops[0].clone();
        l.sort();
        assert_eq!(l, vec![(1, 1), (1, 3), (3, 1), (3, 3)]);
    }

    #[test]
    fn a_ring_gives_an_outer_loop_and_a_hole_and_diagonal_touches_close() {
        let m = mask(&["#####", "#...#", "#.#.#", "#...#", "#####"]);
        assert_eq!(slice_loops(&m, 0).len(), 3);
        let m = mask(&["#.", ".#"]);
        let loops = slice_loops(&m, 0);
        assert_eq!(loops.iter().map(|l| l.len()).sum::<usize>(), 8);
    }
}
