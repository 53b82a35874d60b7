//! The fluence-map objective: the weighted sum of the plan objectives' constraint target
//! values of the dose `A x + c` (influence matrix times beamlet weights, plus a per-row
//! correction for what the matrix leaves out), with an optional smoothing penalty on
//! neighbouring beamlets so that monitor units stay realistic.

use crate::dose::geometry::FluenceMap;
use crate::dose::matrix::InfluenceMatrix;
use crate::dose::plan::resample_mask;
use crate::error::{Error, Result};
use crate::objectives::{Objective, ObjectiveKind, constraint_value};
use crate::patient::Patient;
use crate::structure::Mask;

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
}

/// Positions among the matrix rows of every dose-grid voxel of `mask`, or `None` when some
/// voxel has no row.
pub fn structure_rows(mask: &Mask, matrix: &InfluenceMatrix) -> Option<Vec<u32>> {
    let inside = resample_mask(mask, &matrix.dose_grid);
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

/// Binds objectives to the matrix rows of their structures; a voxel of a structure missing
/// from the rows is an error (the rows must include every objective structure).
pub fn bind(
    objectives: &[Objective],
    patient: &Patient,
    matrix: &InfluenceMatrix,
    origin: &str,
) -> Result<Vec<BoundObjective>> {
    objectives
        .iter()
        .enumerate()
        .map(|(n, o)| {
            let field = format!("objectives[{n}].structure");
            let s = patient.require(&o.structure, origin, &field)?;
            let rows = structure_rows(&s.mask, matrix).ok_or_else(|| {
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
            Ok(BoundObjective {
                id: o.id.clone(),
                kind: o.kind,
                weight: o.weight,
                goal_cgy: o.goal_cgy,
                rows,
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

/// The objective function over beamlet weights (MU).
pub struct FluenceObjective<'a> {
    matrix: &'a InfluenceMatrix,
    /// Objectives with their current goals.
    pub objectives: Vec<BoundObjective>,
    /// Per-row dose added to `A x` (cGy), e.g. scatter the matrix leaves out.
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
                None,
            ));
        }
        out
    }

    /// Row doses for weights `x`.
    pub fn dose_of(&mut self, x: &[f64]) -> Vec<f32> {
        for (a, b) in self.x32.iter_mut().zip(x) {
            *a = *b as f32;
        }
        let mut d = vec![0.0f32; self.matrix.n_rows()];
        self.matrix.forward(&self.x32, &mut d);
        for (v, c) in d.iter_mut().zip(&self.correction) {
            *v += c;
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
        for (v, c) in self.dose.iter_mut().zip(&self.correction) {
            *v += c;
        }
        self.row_grad.iter_mut().for_each(|v| *v = 0.0);
        let mut f = 0.0;
        for o in &self.objectives {
            if o.weight == 0.0 {
                continue;
            }
            self.scratch_doses.clear();
            self.scratch_doses
                .extend(o.rows.iter().map(|&r| self.dose[r as usize]));
            self.scratch_grad.resize(o.rows.len(), 0.0);
            f += o.weight
                * constraint_value(
                    &o.kind,
                    o.goal_cgy,
                    &self.scratch_doses,
                    Some(&mut self.scratch_grad),
                );
            for (&r, g) in o.rows.iter().zip(&self.scratch_grad) {
                self.row_grad[r as usize] += (o.weight * g) as f32;
            }
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
