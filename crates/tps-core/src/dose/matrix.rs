//! The sparse dose-influence matrix: dose (cGy) in selected voxels per MU of each beamlet.
//!
//! Rows are dose-grid voxels the optimizer needs (every voxel of the protocol's structures
//! plus a regular sample of the body); columns are the beamlets of every beam, beam after
//! beam. Storage is a compressed CSR of 4 bytes per entry (the products stream the whole matrix
//! and are bound by memory bandwidth, so bytes are time): each row keeps its first column as a
//! `u32` and then `u16` column increments, and its values as `u16` multiples of a per-row scale
//! (the row's largest entry / 65535, so every entry is within 7.7e-6 of the row maximum of
//! its exact value). Increments larger than `u16::MAX` are bridged by zero-valued filler entries.
//! An entry is computed only
//! for beamlets within `cutoff_mm` (isocentre plane) of the voxel's ray, and kept only when it
//! is at least `threshold` times the dose of a beamlet on its own axis at 15 mm depth; the
//! dose this leaves out is measured by [`InfluenceMatrix::truncation_error`] against the
//! whole-grid dose.

use rayon::prelude::*;

use super::engine::{DoseEngine, beamlet_dose};
use super::geometry::{BevPoint, FluenceMap};
use tps_api::error::{Error, Result};
use tps_api::grid::Grid;

/// One beam's entries: the count per row, then (column, value) pairs row after row.
type BeamBlock = (Vec<u32>, Vec<(u32, f32)>);

/// Settings of the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatrixSettings {
    /// Lateral reach of an entry from the voxel's ray, isocentre plane, mm.
    pub cutoff_mm: f64,
    /// Relative threshold below which entries are dropped.
    pub threshold: f64,
}

/// An upper estimate of the memory the influence matrix of `rows` voxels under `fields` takes
/// while it is built, bytes: each voxel receives entries from at most the beamlets within the
/// cutoff of its ray in each beam (a disk of radius `cutoff_mm` at the isocentre, widened by
/// half a beamlet), 4 bytes each. Thresholding and rows outside a beam make the real matrix
/// smaller (cervix patient 7, 36 beams: estimated 383 MB, stored 161 MB).
pub fn estimated_bytes(fields: &[FluenceMap], rows: usize, cutoff_mm: f64) -> f64 {
    let per_row: f64 = fields
        .iter()
        .map(|f| {
            let open = f.weights.iter().filter(|&&w| w > 0.0).count() as f64;
            let reach = cutoff_mm / f.bixel_mm + 0.5;
            open.min(std::f64::consts::PI * reach * reach)
        })
        .sum();
    rows as f64 * per_row * 4.0
}

/// Memory this process may still take, bytes (`MemAvailable` of /proc/meminfo); `None` where
/// it cannot be read.
pub fn available_memory_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Refuses a matrix estimated at `estimate` bytes when more than 80 % of `available` would
/// go to it, with both numbers and what to change.
pub fn fits_in_memory(estimate: f64, available: Option<f64>) -> Result<()> {
    match available {
        Some(a) if estimate > 0.8 * a => Err(Error::invalid(
            "case opening",
            "influence matrix",
            format!("about {:.0} MB", estimate / 1e6),
            format!(
                "needs more than 80 % of the {:.0} MB of memory available: use fewer beams \
                 (--arcs, --beams-per-arc), larger beamlets (--bixel-mm) or a coarser dose grid \
                 (--grid-mm), or the same in the protocol's [beams]",
                a / 1e6
            ),
        )),
        _ => Ok(()),
    }
}

impl Default for MatrixSettings {
    fn default() -> Self {
        Self {
            cutoff_mm: 10.0,
            threshold: 1e-3,
        }
    }
}

/// A CSR dose-influence matrix.
#[derive(Debug, Clone)]
pub struct InfluenceMatrix {
    /// The dose grid the rows index into.
    pub dose_grid: Grid,
    /// Dose-grid voxel of each row.
    pub rows: Vec<u32>,
    /// (beam, beamlet index within that beam's fluence map) of each column.
    pub columns: Vec<(u32, u32)>,
    row_ptr: Vec<u64>,
    /// First column of each row (the column the first increment starts from).
    row_start: Vec<u32>,
    /// Value of one quantum in each row, cGy per MU.
    row_scale: Vec<f32>,
    /// Column increments; the first entry of a row has increment 0.
    steps: Vec<u16>,
    /// Values in quanta of the row's scale.
    quanta: Vec<u16>,
}

/// Appends one row's entries (sorted by column) in the compressed layout; returns (first
/// column, scale).
fn encode_row(entries: &[(u32, f32)], steps: &mut Vec<u16>, quanta: &mut Vec<u16>) -> (u32, f32) {
    let max = entries.iter().map(|e| e.1).fold(0.0f32, f32::max);
    if entries.is_empty() || max <= 0.0 {
        return (0, 0.0);
    }
    let scale = max / u16::MAX as f32;
    let first = entries[0].0;
    let mut at = first;
    for &(c, v) in entries {
        let mut gap = c - at;
        while gap > u16::MAX as u32 {
            steps.push(u16::MAX);
            quanta.push(0);
            gap -= u16::MAX as u32;
        }
        steps.push(gap as u16);
        quanta.push((v / scale).round().min(u16::MAX as f32) as u16);
        at = c;
    }
    (first, scale)
}

impl InfluenceMatrix {
    /// Computes the matrix for the beamlets with non-zero weight in `fields` (their weights are
    /// otherwise ignored) at the dose-grid voxels `rows`.
    pub fn compute(
        engine: &DoseEngine<'_>,
        fields: &[FluenceMap],
        dose_grid: &Grid,
        rows: Vec<u32>,
        settings: MatrixSettings,
    ) -> Result<Self> {
        if !(settings.cutoff_mm.is_finite() && settings.cutoff_mm > 0.0) {
            return Err(Error::invalid(
                "influence matrix",
                "cutoff-mm",
                settings.cutoff_mm.to_string(),
                "must be positive",
            ));
        }
        if !(settings.threshold.is_finite() && (0.0..1.0).contains(&settings.threshold)) {
            return Err(Error::invalid(
                "influence matrix",
                "threshold",
                settings.threshold.to_string(),
                "must be in [0, 1)",
            ));
        }
        let estimate = estimated_bytes(fields, rows.len(), settings.cutoff_mm);
        tracing::info!(
            "influence matrix: about {:.0} MB for {} rows x {} beams",
            estimate / 1e6,
            rows.len(),
            fields.len()
        );
        fits_in_memory(estimate, available_memory_bytes())?;
        if let Some(&r) = rows.iter().find(|&&r| r as usize >= dose_grid.len()) {
            return Err(Error::invalid(
                "influence matrix",
                "rows",
                r.to_string(),
                "row outside the dose grid",
            ));
        }
        let model = engine.model();
        // Column numbering: beam after beam, beamlets with non-zero weight only.
        let mut columns = Vec::new();
        let mut col_of: Vec<Vec<i64>> = Vec::with_capacity(fields.len());
        for (b, f) in fields.iter().enumerate() {
            let mut map = vec![-1i64; f.weights.len()];
            for (j, &w) in f.weights.iter().enumerate() {
                if w > 0.0 {
                    map[j] = columns.len() as i64;
                    columns.push((b as u32, j as u32));
                }
            }
            col_of.push(map);
        }
        if columns.len() > u32::MAX as usize {
            return Err(Error::invalid(
                "influence matrix",
                "columns",
                columns.len().to_string(),
                "more beamlets than u32 indices",
            ));
        }
        let points: Vec<[f64; 3]> = rows
            .iter()
            .map(|&r| {
                let [i, j, k] = dose_grid.ijk(r as usize);
                dose_grid.position_mm(i, j, k)
            })
            .collect();
        // One sparse block (per-row entries) per beam.
        let blocks: Vec<BeamBlock> = fields
            .par_iter()
            .enumerate()
            .map(|(b, f)| {
                let map = engine.depth_map(&f.beam);
                let half = 0.5 * f.bixel_mm;
                let reference = beamlet_dose(
                    model,
                    &BevPoint {
                        a: 0.0,
                        c: 0.0,
                        t: model.sad_mm + 15.0,
                        l: model.sad_mm + 15.0,
                    },
                    15.0,
                    0.0,
                    0.0,
                    half,
                );
                let floor = settings.threshold * reference;
                let mut counts = Vec::with_capacity(points.len());
                let mut entries = Vec::new();
                for p in &points {
                    let bp = f.beam.bev(*p);
                    let before = entries.len();
                    if bp.t > 0.0 {
                        let d = map.depth(bp.a, bp.c, bp.l);
                        let r = settings.cutoff_mm;
                        let i0 = ((bp.a - r - f.origin[0]) / f.bixel_mm).ceil().max(0.0) as usize;
                        let i1 = ((bp.a + r - f.origin[0]) / f.bixel_mm).floor();
                        let j0 = ((bp.c - r - f.origin[1]) / f.bixel_mm).ceil().max(0.0) as usize;
                        let j1 = ((bp.c + r - f.origin[1]) / f.bixel_mm).floor();
                        if i1 >= 0.0 && j1 >= 0.0 {
                            let i1 = (i1 as usize).min(f.dims[0] - 1);
                            let j1 = (j1 as usize).min(f.dims[1] - 1);
                            for j in j0..=j1 {
                                for i in i0..=i1 {
                                    let c = col_of[b][i + f.dims[0] * j];
                                    if c < 0 {
                                        continue;
                                    }
                                    let [ca, cc] = f.centre(i, j);
                                    let v = beamlet_dose(model, &bp, d, bp.a - ca, bp.c - cc, half);
                                    if v >= floor && v > 0.0 {
                                        entries.push((c as u32, v as f32));
                                    }
                                }
                            }
                        }
                    }
                    counts.push((entries.len() - before) as u32);
                }
                (counts, entries)
            })
            .collect();
        // Interleave the blocks row by row, compressing as we go.
        let n = rows.len();
        let mut row_ptr = Vec::with_capacity(n + 1);
        row_ptr.push(0u64);
        let total: usize = blocks.iter().map(|(_, e)| e.len()).sum();
        let mut steps = Vec::with_capacity(total);
        let mut quanta = Vec::with_capacity(total);
        let mut row_start = Vec::with_capacity(n);
        let mut row_scale = Vec::with_capacity(n);
        let mut offsets: Vec<usize> = vec![0; blocks.len()];
        let mut row = Vec::new();
        for r in 0..n {
            row.clear();
            for (b, (counts, entries)) in blocks.iter().enumerate() {
                let m = counts[r] as usize;
                row.extend_from_slice(&entries[offsets[b]..offsets[b] + m]);
                offsets[b] += m;
            }
            // Columns are numbered beam after beam, so the row is already sorted.
            debug_assert!(row.windows(2).all(|w| w[0].0 < w[1].0));
            let (first, scale) = encode_row(&row, &mut steps, &mut quanta);
            row_start.push(first);
            row_scale.push(scale);
            row_ptr.push(steps.len() as u64);
        }
        drop(blocks);
        steps.shrink_to_fit();
        quanta.shrink_to_fit();
        Ok(Self {
            dose_grid: *dose_grid,
            rows,
            columns,
            row_ptr,
            row_start,
            row_scale,
            steps,
            quanta,
        })
    }

    /// Number of rows (voxels).
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    /// Number of columns (beamlets).
    pub fn n_cols(&self) -> usize {
        self.columns.len()
    }

    /// Stored entries (filler entries included).
    pub fn nnz(&self) -> usize {
        self.quanta.len()
    }

    /// Bytes held by the matrix arrays.
    pub fn bytes(&self) -> usize {
        self.quanta.len() * 2
            + self.steps.len() * 2
            + self.row_ptr.len() * 8
            + self.row_start.len() * 4
            + self.row_scale.len() * 4
            + self.rows.len() * 4
            + self.columns.len() * 8
    }

    /// The entries of row `r` as (column, value), fillers left out.
    pub fn row_entries(&self, r: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let (a, b) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
        let scale = self.row_scale[r];
        let mut col = self.row_start[r];
        self.steps[a..b]
            .iter()
            .zip(&self.quanta[a..b])
            .filter_map(move |(&d, &q)| {
                col += d as u32;
                (q != 0).then_some((col, q as f32 * scale))
            })
    }

    /// `y = A x` (dose in every row from beamlet weights `x`, MU).
    pub fn forward(&self, x: &[f32], y: &mut [f32]) {
        assert_eq!(x.len(), self.n_cols());
        assert_eq!(y.len(), self.n_rows());
        y.par_iter_mut()
            .with_min_len(4096)
            .enumerate()
            .for_each(|(r, out)| {
                let (a, b) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
                let mut col = self.row_start[r] as usize;
                let mut s = 0.0f32;
                for (&d, &q) in self.steps[a..b].iter().zip(&self.quanta[a..b]) {
                    col += d as usize;
                    s += q as f32 * x[col];
                }
                *out = s * self.row_scale[r];
            });
    }

    /// `g = A^T y` (gradient with respect to beamlet weights from a gradient per row).
    pub fn transpose(&self, y: &[f32], g: &mut [f32]) {
        assert_eq!(y.len(), self.n_rows());
        assert_eq!(g.len(), self.n_cols());
        let n = self.n_cols();
        let chunk = self
            .n_rows()
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(1);
        let acc = (0..self.n_rows())
            .into_par_iter()
            .with_min_len(chunk)
            .fold(
                || vec![0.0f32; n],
                |mut acc, r| {
                    let yr = y[r] * self.row_scale[r];
                    if yr != 0.0 {
                        let (a, b) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
                        let mut col = self.row_start[r] as usize;
                        for (&d, &q) in self.steps[a..b].iter().zip(&self.quanta[a..b]) {
                            col += d as usize;
                            acc[col] += q as f32 * yr;
                        }
                    }
                    acc
                },
            )
            .reduce(
                || vec![0.0f32; n],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    a
                },
            );
        g.copy_from_slice(&acc);
    }

    /// Column weights of `fields` (beamlets with non-zero weight, in column order).
    pub fn weights_of(&self, fields: &[FluenceMap]) -> Vec<f32> {
        self.columns
            .iter()
            .map(|&(b, j)| fields[b as usize].weights[j as usize] as f32)
            .collect()
    }

    /// Dose left out by the cutoff and threshold for beamlet weights `fields`: compares `A x`
    /// with the whole-grid dose `full` (on the dose grid) over the rows; returns (mean relative
    /// deficit over rows receiving at least 10 % of the maximum, largest deficit as a fraction
    /// of the maximum dose).
    pub fn truncation_error(&self, fields: &[FluenceMap], full: &[f32]) -> (f64, f64) {
        let x = self.weights_of(fields);
        let mut y = vec![0.0f32; self.n_rows()];
        self.forward(&x, &mut y);
        let max = self
            .rows
            .iter()
            .map(|&r| full[r as usize])
            .fold(0.0f32, f32::max) as f64;
        let (mut sum, mut n, mut worst) = (0.0, 0usize, 0.0f64);
        for (k, &r) in self.rows.iter().enumerate() {
            let f = full[r as usize] as f64;
            let diff = f - y[k] as f64;
            worst = worst.max(diff.abs() / max);
            if f >= 0.1 * max {
                sum += diff / f;
                n += 1;
            }
        }
        (sum / n.max(1) as f64, worst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_that_would_not_fit_is_refused_with_the_estimate_and_the_limit() {
        assert!(fits_in_memory(1e9, Some(2e9)).is_ok());
        assert!(fits_in_memory(1e9, None).is_ok());
        let e = fits_in_memory(3e9, Some(2e9)).unwrap_err().to_string();
        assert!(
            e.contains("about 3000 MB") && e.contains("2000 MB") && e.contains("--grid-mm"),
            "{e}"
        );
    }

    /// Wide column gaps are bridged by fillers and every value comes back within half a
    /// quantum of the row maximum.
    #[test]
    fn compressed_rows_decode_to_their_entries() {
        let entries = vec![
            (3u32, 2.0f32),
            (4, 1e-3),
            (70_000, 0.5),
            (300_000, 1.25),
            (300_001, 0.0),
        ];
        let (mut steps, mut quanta) = (Vec::new(), Vec::new());
        let (first, scale) = encode_row(&entries, &mut steps, &mut quanta);
        assert_eq!(first, 3);
        assert!(steps.len() > entries.len(), "fillers expected");
        let mut col = first;
        let decoded: Vec<(u32, f32)> = steps
            .iter()
            .zip(&quanta)
            .filter_map(|(&d, &q)| {
                col += d as u32;
                (q != 0).then_some((col, q as f32 * scale))
            })
            .collect();
        let kept: Vec<&(u32, f32)> = entries.iter().filter(|e| e.1 > 0.0).collect();
        assert_eq!(decoded.len(), kept.len());
        for (d, e) in decoded.iter().zip(kept) {
            assert_eq!(d.0, e.0);
            assert!(
                (d.1 - e.1).abs() <= 0.5 * 2.0 / 65535.0 + 1e-9,
                "{d:?} vs {e:?}"
            );
        }
        assert_eq!(encode_row(&[], &mut steps, &mut quanta), (0, 0.0));
    }
}
