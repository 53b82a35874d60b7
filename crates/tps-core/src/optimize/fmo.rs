//! The fluence-map objective: the weighted sum of the plan objectives' constraint target
//! values of the dose `s A x + c` (influence matrix times beamlet weights, with a per-row scale
//! and offset correcting for what the matrix leaves out), with an optional smoothing penalty on
//! neighbouring beamlets so that monitor units stay realistic.

use rayon::prelude::*;

use crate::dose::geometry::FluenceMap;
use crate::dose::matrix::InfluenceMatrix;
use crate::dose::rows::sample_structure;
use patient_model::morph;
use tps_api::error::{Error, Result};
use tps_api::objectives::{Objective, ObjectiveKind, constraint_value};
use tps_api::patient::Patient;
use tps_api::structure::Mask;

use super::lbfgs::Problem;

/// One objective bound to matrix rows.
#[derive(Debug, Clone)]
pub struct BoundObjective {
    /// Objective id.
    pub id: String,
    /// Its kind.
    pub kind: ObjectiveKind,
    /// Weight.
    pub weight: f64,
    /// Current goal, cGy.
    pub goal_cgy: f64,
    /// Positions of its structure's voxels among the matrix rows.
    pub rows: Vec<u32>,
    /// For a fall-off objective, each row's distance from the prescription target, mm (the
    /// distance from the voxel centre to the nearest target voxel centre of the CT grid);
    /// empty for the other kinds.
    pub distances_mm: Vec<f32>,
}

impl BoundObjective {
    /// The distances a constraint value needs, if any.
    pub fn distances(&self) -> Option<&[f32]> {
        (!self.distances_mm.is_empty()).then_some(self.distances_mm.as_slice())
    }
}

/// Positions among the matrix rows of the dose-grid voxels that stand for `mask` (see
/// [`sample_structure`]; `min_voxels` as the rows were built with), or `None` when some voxel has
/// no row.
pub fn structure_rows(
    mask: &Mask,
    matrix: &InfluenceMatrix,
    min_voxels: Option<usize>,
) -> Option<Vec<u32>> {
    let inside = sample_structure(mask, &matrix.dose_grid, min_voxels);
    inside
        .iter()
        .enumerate()
        .filter(|(_, v)| **v)
        .map(|(k, _)| {
            matrix
                .rows
                .binary_search(&(k as u32))
                .ok()
                .map(|pos| pos as u32)
        })
        .collect()
}

/// Binds objectives to the matrix rows of their structures (sampled with `min_voxels`, as the
/// rows were built); a voxel of a structure's sample missing from the rows is an error. A
/// fall-off objective also gets each row's distance from `target` (the prescription target).
pub fn bind(
    objectives: &[Objective],
    patient: &Patient,
    matrix: &InfluenceMatrix,
    min_voxels: Option<usize>,
    target: &str,
    origin: &str,
) -> Result<Vec<BoundObjective>> {
    // The target's distance map on the CT grid, computed once if any objective needs it.
    let distance_map = if objectives.iter().any(|o| o.kind.needs_distances()) {
        let t = patient.require(target, origin, "prescription.target")?;
        Some(morph::squared_distance_mm2(patient.grid(), t.mask.data()))
    } else {
        None
    };
    let ct = *patient.grid();
    let dg = matrix.dose_grid;
    objectives
        .iter()
        .enumerate()
        .map(|(n, o)| {
            let field = format!("objectives[{n}].structure");
            let s = patient.require(&o.structure, origin, &field)?;
            let rows = structure_rows(&s.mask, matrix, min_voxels).ok_or_else(|| {
                Error::invalid(
                    origin,
                    &field,
                    &o.structure,
                    "the influence matrix has no row for some of this structure's voxels",
                )
            })?;
            if rows.is_empty() {
                return Err(Error::EmptyStructure {
                    origin: origin.into(),
                    name: o.structure.clone(),
                    operation: "sampling on the dose grid".into(),
                });
            }
            let distances_mm = match (&distance_map, o.kind.needs_distances()) {
                (Some(d2), true) => rows
                    .iter()
                    .map(|&r| {
                        let [i, j, k] = dg.ijk(matrix.rows[r as usize] as usize);
                        let p = dg.position_mm(i, j, k);
                        let [a, b, c] = [0, 1, 2].map(|ax| ct.nearest_clamped(ax, p[ax]));
                        d2[ct.index(a, b, c)].sqrt() as f32
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Ok(BoundObjective {
                id: o.id.clone(),
                kind: o.kind,
                weight: o.weight,
                goal_cgy: o.goal_cgy,
                rows,
                distances_mm,
            })
        })
        .collect()
}

/// Neighbouring beamlet pairs (along both axes, within each beam) among the matrix columns.
pub fn neighbour_pairs(matrix: &InfluenceMatrix, fields: &[FluenceMap]) -> Vec<(u32, u32)> {
    let mut index = std::collections::HashMap::new();
    for (c, &(b, j)) in matrix.columns.iter().enumerate() {
        index.insert((b, j), c as u32);
    }
    let mut pairs = Vec::new();
    for (c, &(b, j)) in matrix.columns.iter().enumerate() {
        let f = &fields[b as usize];
        let (i, k) = (j as usize % f.dims[0], j as usize / f.dims[0]);
        if i + 1 < f.dims[0] {
            if let Some(&o) = index.get(&(b, j + 1)) {
                pairs.push((c as u32, o));
            }
        }
        if k + 1 < f.dims[1] {
            if let Some(&o) = index.get(&(b, j + f.dims[0] as u32)) {
                pairs.push((c as u32, o));
            }
        }
    }
    pairs
}

/// Splits a per-row dose deficit `missing` (exact dose minus `ax`, the matrix's dose) into a
/// factor on the matrix dose and a remainder: `scale = 1 + missing / ax`, capped at
/// `1 + max_ratio`, and the offset that makes `scale ax + offset` the exact dose. Where the
/// missing dose is a share of the local dose (scatter the truncated kernel leaves out), it then
/// follows the fluence as the optimizer changes it; only what exceeds the cap (rows the matrix
/// barely reaches) stays a fixed offset.
pub fn split_correction(ax: &[f32], missing: &[f32], max_ratio: f32) -> (Vec<f32>, Vec<f32>) {
    ax.iter()
        .zip(missing)
        .map(|(&a, &m)| {
            let ratio = if a > 0.0 {
                (m / a).clamp(0.0, max_ratio)
            } else {
                0.0
            };
            (1.0 + ratio, m - ratio * a)
        })
        .unzip()
}

/// The weighted sum of `objectives` over row doses `dose` (cGy), with its gradient per row
/// written into `row_grad` (`scratch`: reusable buffers).
fn weighted_objectives(
    objectives: &[BoundObjective],
    dose: &[f32],
    row_grad: &mut [f32],
    (doses, grad): (&mut Vec<f32>, &mut Vec<f64>),
) -> f64 {
    row_grad.iter_mut().for_each(|v| *v = 0.0);
    let mut f = 0.0;
    for o in objectives {
        if o.weight == 0.0 {
            continue;
        }
        doses.clear();
        doses.extend(o.rows.iter().map(|&r| dose[r as usize]));
        grad.resize(o.rows.len(), 0.0);
        f += o.weight * constraint_value(&o.kind, o.goal_cgy, doses, o.distances(), Some(grad));
        for (&r, g) in o.rows.iter().zip(grad.iter()) {
            row_grad[r as usize] += (o.weight * g) as f32;
        }
    }
    f
}

/// The objectives over non-negative weights of a few dense dose columns (the dose of each
/// gantry-angle bin of a deliverable plan at the optimizer's rows): the row dose is
/// `sum_b w_b column_b`.
pub struct ColumnObjective<'a> {
    columns: &'a [Vec<f32>],
    objectives: Vec<BoundObjective>,
    dose: Vec<f32>,
    row_grad: Vec<f32>,
    scratch_doses: Vec<f32>,
    scratch_grad: Vec<f64>,
}

impl<'a> ColumnObjective<'a> {
    /// The objectives (with their goals) over `columns`, each as long as the rows.
    pub fn new(columns: &'a [Vec<f32>], objectives: Vec<BoundObjective>) -> Self {
        let rows = columns.first().map_or(0, Vec::len);
        Self {
            columns,
            objectives,
            dose: vec![0.0; rows],
            row_grad: vec![0.0; rows],
            scratch_doses: Vec::new(),
            scratch_grad: Vec::new(),
        }
    }

    /// Row doses for weights `w`.
    pub fn dose_of(&self, w: &[f64]) -> Vec<f32> {
        let mut d = vec![0.0f32; self.dose.len()];
        d.par_chunks_mut(4096).enumerate().for_each(|(n, chunk)| {
            let start = n * 4096;
            let len = chunk.len();
            for (c, &wb) in self.columns.iter().zip(w) {
                let wb = wb as f32;
                if wb == 0.0 {
                    continue;
                }
                for (v, x) in chunk.iter_mut().zip(&c[start..start + len]) {
                    *v += wb * x;
                }
            }
        });
        d
    }
}

impl Problem for ColumnObjective<'_> {
    fn eval(&mut self, w: &[f64], grad: &mut [f64]) -> f64 {
        self.dose = self.dose_of(w);
        let f = weighted_objectives(
            &self.objectives,
            &self.dose,
            &mut self.row_grad,
            (&mut self.scratch_doses, &mut self.scratch_grad),
        );
        let row_grad = &self.row_grad;
        grad.par_iter_mut()
            .zip(self.columns.par_iter())
            .for_each(|(g, c)| {
                *g = c
                    .iter()
                    .zip(row_grad)
                    .map(|(x, r)| (*x as f64) * (*r as f64))
                    .sum();
            });
        f
    }
}

/// The objective function over beamlet weights (MU).
pub struct FluenceObjective<'a> {
    matrix: &'a InfluenceMatrix,
    /// Objectives with their current goals.
    pub objectives: Vec<BoundObjective>,
    /// Per-row factor on `A x` (1 when the matrix is taken as it is).
    pub scale: Vec<f32>,
    /// Per-row dose added to the scaled `A x` (cGy).
    pub correction: Vec<f32>,
    /// Weight of the smoothing penalty `sum (x_i - x_j)^2` over neighbour pairs.
    pub smoothing: f64,
    pairs: Vec<(u32, u32)>,
    x32: Vec<f32>,
    dose: Vec<f32>,
    row_grad: Vec<f32>,
    col_grad: Vec<f32>,
    scratch_doses: Vec<f32>,
    scratch_grad: Vec<f64>,
}

impl<'a> FluenceObjective<'a> {
    /// The objective over `matrix` with `objectives`, no correction and the given smoothing.
    pub fn new(
        matrix: &'a InfluenceMatrix,
        objectives: Vec<BoundObjective>,
        pairs: Vec<(u32, u32)>,
        smoothing: f64,
    ) -> Self {
        Self {
            matrix,
            objectives,
            scale: vec![1.0; matrix.n_rows()],
            correction: vec![0.0; matrix.n_rows()],
            smoothing,
            pairs,
            x32: vec![0.0; matrix.n_cols()],
            dose: vec![0.0; matrix.n_rows()],
            row_grad: vec![0.0; matrix.n_rows()],
            col_grad: vec![0.0; matrix.n_cols()],
            scratch_doses: Vec::new(),
            scratch_grad: Vec::new(),
        }
    }

    /// Dose per row of the last evaluation, cGy.
    pub fn last_dose(&self) -> &[f32] {
        &self.dose
    }

    /// Constraint target value of each objective for row doses `dose`.
    pub fn values(&mut self, dose: &[f32]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.objectives.len());
        for o in &self.objectives {
            self.scratch_doses.clear();
            self.scratch_doses
                .extend(o.rows.iter().map(|&r| dose[r as usize]));
            out.push(constraint_value(
                &o.kind,
                o.goal_cgy,
                &self.scratch_doses,
                o.distances(),
                None,
            ));
        }
        out
    }

    /// The objective's value for weights `x` whose row doses are `dose` (as [`Problem::eval`]
    /// gives, without the gradient and without any matrix product).
    pub fn total_of(&mut self, x: &[f64], dose: &[f32]) -> f64 {
        let weights: Vec<f64> = self.objectives.iter().map(|o| o.weight).collect();
        let mut f: f64 = self
            .values(dose)
            .iter()
            .zip(weights)
            .filter(|(_, w)| *w != 0.0)
            .map(|(v, w)| w * v)
            .sum();
        if self.smoothing > 0.0 {
            for &(i, j) in &self.pairs {
                let d = x[i as usize] - x[j as usize];
                f += self.smoothing * d * d;
            }
        }
        f
    }

    /// Row doses for weights `x`.
    pub fn dose_of(&mut self, x: &[f64]) -> Vec<f32> {
        for (a, b) in self.x32.iter_mut().zip(x) {
            *a = *b as f32;
        }
        let mut d = vec![0.0f32; self.matrix.n_rows()];
        self.matrix.forward(&self.x32, &mut d);
        for ((v, s), c) in d.iter_mut().zip(&self.scale).zip(&self.correction) {
            *v = *v * s + c;
        }
        d
    }
}

impl Problem for FluenceObjective<'_> {
    fn eval(&mut self, x: &[f64], grad: &mut [f64]) -> f64 {
        for (a, b) in self.x32.iter_mut().zip(x) {
            *a = *b as f32;
        }
        self.matrix.forward(&self.x32, &mut self.dose);
        for ((v, s), c) in self.dose.iter_mut().zip(&self.scale).zip(&self.correction) {
            *v = *v * s + c;
        }
        let mut f = weighted_objectives(
            &self.objectives,
            &self.dose,
            &mut self.row_grad,
            (&mut self.scratch_doses, &mut self.scratch_grad),
        );
        for (g, s) in self.row_grad.iter_mut().zip(&self.scale) {
            *g *= s;
        }
        self.matrix.transpose(&self.row_grad, &mut self.col_grad);
        for (g, c) in grad.iter_mut().zip(&self.col_grad) {
            *g = *c as f64;
        }
        if self.smoothing > 0.0 {
            for &(i, j) in &self.pairs {
                let (i, j) = (i as usize, j as usize);
                let d = x[i] - x[j];
                f += self.smoothing * d * d;
                grad[i] += 2.0 * self.smoothing * d;
                grad[j] -= 2.0 * self.smoothing * d;
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::lbfgs::{Settings, minimize};

    fn objective(id: &str, kind: ObjectiveKind, goal: f64, rows: Vec<u32>) -> BoundObjective {
        BoundObjective {
            id: id.into(),
            kind,
            weight: 1.0,
            goal_cgy: goal,
            rows,
            distances_mm: Vec::new(),
        }
    }

    /// Three columns over six rows: a target (rows 0-2) that wants 100 cGy and an organ
    /// (rows 3-5) whose mean should stay at 10 cGy.
    fn case() -> (Vec<Vec<f32>>, Vec<BoundObjective>) {
        let columns = vec![
            vec![50.0, 50.0, 50.0, 20.0, 20.0, 20.0],
            vec![40.0, 60.0, 50.0, 0.0, 0.0, 5.0],
            vec![60.0, 40.0, 50.0, 2.0, 0.0, 0.0],
        ];
        let objectives = vec![
            objective("min", ObjectiveKind::MinDose, 100.0, vec![0, 1, 2]),
            objective("max", ObjectiveKind::MaxDose, 100.0, vec![0, 1, 2]),
            objective("organ", ObjectiveKind::MeanDose, 10.0, vec![3, 4, 5]),
        ];
        (columns, objectives)
    }

    #[test]
    fn column_objective_gradient_matches_finite_differences() {
        let (columns, objectives) = case();
        let mut f = ColumnObjective::new(&columns, objectives);
        let w = [0.7, 1.1, 0.9];
        let mut g = [0.0; 3];
        f.eval(&w, &mut g);
        for k in 0..3 {
            let h = 1e-4;
            let mut up = w;
            up[k] += h;
            let mut down = w;
            down[k] -= h;
            let mut scratch = [0.0; 3];
            let fd = (f.eval(&up, &mut scratch) - f.eval(&down, &mut scratch)) / (2.0 * h);
            assert!(
                (fd - g[k]).abs() < 1e-3 * (1.0 + fd.abs()),
                "column {k}: {fd} vs {}",
                g[k]
            );
        }
    }

    /// Re-weighting moves dose away from the column that irradiates the organ while the
    /// target keeps its dose.
    #[test]
    fn column_weights_spare_the_organ() {
        let (columns, objectives) = case();
        let mut f = ColumnObjective::new(&columns, objectives);
        let start = [1.0, 1.0, 1.0];
        let mut g = [0.0; 3];
        let before = f.eval(&start, &mut g);
        let sol = minimize(&mut f, &start, &[0.0; 3], &Settings::default()).unwrap();
        assert!(sol.value < 0.1 * before, "{before} -> {}", sol.value);
        assert!(sol.x[0] < 0.5 * sol.x[1].max(sol.x[2]), "{:?}", sol.x);
        let d = f.dose_of(&sol.x);
        assert!(d[..3].iter().all(|v| (v - 100.0).abs() < 15.0), "{d:?}");
    }
}
