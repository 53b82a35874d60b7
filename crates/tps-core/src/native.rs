//! The native TPS: the `Tps` trait over this crate's dose engine, influence matrix and
//! fluence optimizer.
//!
//! Each optimization minimizes the weighted constraint target values of `A x + c`, where `A` is
//! the truncated influence matrix and `c` a per-row correction that adds the scatter `A` leaves
//! out; after the solve `c` is refreshed from the exact dose of the new fluence at the matrix
//! rows, so the report (and the next optimization) sees the full dose.

use std::path::Path;
use std::time::Instant;

use crate::dose::calibration::DensityCurve;
use crate::dose::engine::DoseEngine;
use crate::dose::geometry::FluenceMap;
use crate::dose::matrix::{InfluenceMatrix, MatrixSettings};
use crate::dose::model::BeamModel;
use crate::dose::plan::{self, BeamSetup};
use crate::dose::rows;
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::mu::sliding_window_mu;
use crate::objectives::{Objective, ObjectiveKind, range_status};
use crate::optimize::fmo::{FluenceObjective, bind, neighbour_pairs};
use crate::optimize::lbfgs::{Settings, minimize};
use crate::patient::Patient;
use crate::protocol::Protocol;
use crate::structure::Role;
use crate::tps::{GoalChange, IterationReport, ObjectiveReport, PlanSummary, Tps};

/// Settings of the native TPS.
#[derive(Debug, Clone)]
pub struct NativeSettings {
    /// Beams and beamlets.
    pub setup: BeamSetup,
    /// Dose grid spacing, mm.
    pub dose_grid_mm: f64,
    /// Influence-matrix truncation.
    pub matrix: MatrixSettings,
    /// Solver settings.
    pub solver: Settings,
    /// Smoothing weight on neighbouring beamlets, per MU^2 (scale-dependent: tuned for
    /// course doses of tens of Gy and 5 mm beamlets).
    pub smoothing: f64,
    /// Every how many voxels along each axis the body is sampled for the matrix rows.
    pub body_stride: usize,
}

impl Default for NativeSettings {
    fn default() -> Self {
        Self {
            setup: BeamSetup::default(),
            dose_grid_mm: 3.0,
            matrix: MatrixSettings::default(),
            solver: Settings {
                max_iterations: 150,
                rel_tolerance: 1e-4,
                ..Default::default()
            },
            smoothing: 0.0,
            body_stride: 3,
        }
    }
}

/// The native TPS with an open case. The dose engine borrows `model`.
pub struct NativeTps<'a> {
    patient: Patient,
    protocol: Protocol,
    objectives: Vec<Objective>,
    roles: Vec<Role>,
    fields: Vec<FluenceMap>,
    engine: DoseEngine<'a>,
    dose_grid: Grid,
    matrix: InfluenceMatrix,
    pairs: Vec<(u32, u32)>,
    x: Vec<f64>,
    correction: Vec<f32>,
    coverage_rows: Vec<u32>,
    iteration: u32,
    settings: NativeSettings,
}

impl<'a> NativeTps<'a> {
    /// Opens a case: builds the protocol's auxiliary structures, checks every objective's
    /// structure, sets up beams, computes the influence matrix and a starting fluence (uniform,
    /// scaled so the target's mean dose is the prescription).
    pub fn open(
        mut patient: Patient,
        protocol: Protocol,
        model: &'a BeamModel,
        calibration: &DensityCurve,
        settings: NativeSettings,
    ) -> Result<Self> {
        let origin = protocol.origin.display().to_string();
        protocol.build_missing_auxiliary(&mut patient)?;
        protocol.check_objective_structures(&patient)?;
        if protocol.objectives.is_empty() {
            return Err(Error::invalid(
                &origin,
                "objectives",
                "[]",
                "a protocol used for planning needs objectives",
            ));
        }
        let target = protocol.prescription.target.clone();
        patient.require(&target, &origin, "prescription.target")?;
        let body = patient
            .require(&protocol.body, &origin, "evaluation.body")?
            .mask
            .clone();
        let fields = plan::setup_fields(&patient, &target, &settings.setup)?;
        let dose_grid = plan::dose_grid_around(&body, settings.dose_grid_mm)?;
        let mut names: Vec<&str> = protocol
            .objectives
            .iter()
            .map(|o| o.structure.as_str())
            .collect();
        names.push(&target);
        names.sort_unstable();
        names.dedup();
        let row_list = rows::optimization_rows(
            &patient,
            &dose_grid,
            &names,
            &protocol.body,
            settings.body_stride,
            &origin,
        )?;
        let engine = DoseEngine::new(
            model,
            *patient.grid(),
            calibration.densities(patient.ct_hu()),
        );
        let matrix =
            InfluenceMatrix::compute(&engine, &fields, &dose_grid, row_list, settings.matrix)?;
        let pairs = neighbour_pairs(&matrix, &fields);
        let roles = protocol
            .objectives
            .iter()
            .map(|o| {
                patient
                    .structure(&o.structure)
                    .map_or(Role::Auxiliary, |s| s.role)
            })
            .collect();
        let coverage = Objective {
            id: "coverage".into(),
            structure: target.clone(),
            kind: ObjectiveKind::MeanDose,
            weight: 0.0,
            goal_cgy: protocol.prescription.dose_cgy,
            ideal_range: [0.0, 0.0],
        };
        let coverage_rows = bind(std::slice::from_ref(&coverage), &patient, &matrix, &origin)?
            .remove(0)
            .rows;
        let mut tps = Self {
            objectives: protocol.objectives.clone(),
            patient,
            roles,
            fields,
            engine,
            dose_grid,
            pairs,
            x: Vec::new(),
            correction: vec![0.0; matrix.n_rows()],
            coverage_rows,
            iteration: 0,
            settings,
            matrix,
            protocol,
        };
        // Start: uniform fluence scaled so the target's mean truncated dose is the prescription.
        let ones = vec![1.0f32; tps.matrix.n_cols()];
        let mut d = vec![0.0f32; tps.matrix.n_rows()];
        tps.matrix.forward(&ones, &mut d);
        let mean = tps
            .coverage_rows
            .iter()
            .map(|&r| d[r as usize] as f64)
            .sum::<f64>()
            / tps.coverage_rows.len() as f64;
        if !(mean.is_finite() && mean > 0.0) {
            return Err(Error::invalid(
                &origin,
                "prescription.target",
                &target,
                "the beams deliver no dose to the target",
            ));
        }
        tps.x = vec![tps.protocol.prescription.dose_cgy / mean; tps.matrix.n_cols()];
        Ok(tps)
    }

    /// The patient (with the auxiliary structures built).
    pub fn patient(&self) -> &Patient {
        &self.patient
    }

    /// The influence matrix.
    pub fn matrix(&self) -> &InfluenceMatrix {
        &self.matrix
    }

    fn fields_with(&self, x: &[f64]) -> Vec<FluenceMap> {
        let mut fields = self.fields.clone();
        for f in &mut fields {
            f.weights.iter_mut().for_each(|w| *w = 0.0);
        }
        for (c, &(b, j)) in self.matrix.columns.iter().enumerate() {
            fields[b as usize].weights[j as usize] = x[c];
        }
        fields
    }

    /// Exact dose at the matrix rows for weights `x`.
    fn exact_row_dose(&self, x: &[f64]) -> Vec<f32> {
        let mut inside = vec![false; self.dose_grid.len()];
        for &r in &self.matrix.rows {
            inside[r as usize] = true;
        }
        let full = self
            .engine
            .dose_on_grid(&self.fields_with(x), &self.dose_grid, Some(&inside));
        self.matrix.rows.iter().map(|&r| full[r as usize]).collect()
    }

    fn report(
        &self,
        dose: &[f32],
        solver_iterations: usize,
        wall_s: f64,
        total: f64,
    ) -> IterationReport {
        let mut objectives = Vec::with_capacity(self.objectives.len());
        let bound =
            bind(&self.objectives, &self.patient, &self.matrix, "report").expect("bound at open");
        for ((o, b), role) in self.objectives.iter().zip(&bound).zip(&self.roles) {
            let doses: Vec<f32> = b.rows.iter().map(|&r| dose[r as usize]).collect();
            let value = crate::objectives::constraint_value(&o.kind, o.goal_cgy, &doses, None);
            objectives.push(ObjectiveReport {
                id: o.id.clone(),
                structure: o.structure.clone(),
                role: *role,
                kind: o.kind.label(),
                weight: o.weight,
                goal_cgy: o.goal_cgy,
                current_cgy: constrained_quantity(&o.kind, &doses),
                value,
                ideal_range: o.ideal_range,
                status: range_status(value, o.ideal_range),
            });
        }
        let cov: Vec<f32> = self
            .coverage_rows
            .iter()
            .map(|&r| dose[r as usize])
            .collect();
        IterationReport {
            iteration: self.iteration,
            objectives,
            coverage_cgy: dose_at_volume(&cov, self.protocol.prescription.volume_percent),
            prescription_cgy: self.protocol.prescription.dose_cgy,
            total_objective: total,
            solver_iterations,
            wall_s,
        }
    }

    fn apply_goals(&self, goals: &[GoalChange]) -> Result<Vec<Objective>> {
        let mut next = self.objectives.clone();
        for (n, g) in goals.iter().enumerate() {
            let Some(o) = next.iter_mut().find(|o| o.id == g.id) else {
                return Err(Error::invalid(
                    "goal changes",
                    format!("[{n}].id"),
                    &g.id,
                    "no objective has this id",
                ));
            };
            if !(g.goal_cgy.is_finite() && g.goal_cgy > 0.0 && g.goal_cgy <= 20_000.0) {
                return Err(Error::invalid(
                    "goal changes",
                    format!("[{n}].goal-cgy"),
                    g.goal_cgy.to_string(),
                    "goals must be positive doses in cGy",
                ));
            }
            o.goal_cgy = g.goal_cgy;
        }
        Ok(next)
    }
}

/// Value of the quantity an objective constrains: max, min, mean, or the dose at its volume.
fn constrained_quantity(kind: &ObjectiveKind, doses: &[f32]) -> f64 {
    match kind {
        ObjectiveKind::MaxDose => doses.iter().cloned().fold(f32::MIN, f32::max) as f64,
        ObjectiveKind::MinDose => doses.iter().cloned().fold(f32::MAX, f32::min) as f64,
        ObjectiveKind::MeanDose => {
            doses.iter().map(|&d| d as f64).sum::<f64>() / doses.len().max(1) as f64
        }
        ObjectiveKind::DvhMax { volume_percent } | ObjectiveKind::DvhMin { volume_percent } => {
            dose_at_volume(doses, *volume_percent)
        }
    }
}

/// Dose received by at least `percent` % of the voxels (nearest rank).
fn dose_at_volume(doses: &[f32], percent: f64) -> f64 {
    if doses.is_empty() {
        return 0.0;
    }
    let mut v = doses.to_vec();
    v.sort_unstable_by(|a, b| b.total_cmp(a));
    let k = ((percent / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[k.min(v.len()) - 1] as f64
}

impl Tps for NativeTps<'_> {
    fn objectives(&self) -> Vec<Objective> {
        self.objectives.clone()
    }

    fn optimize(&mut self, goals: &[GoalChange]) -> Result<IterationReport> {
        let next = self.apply_goals(goals)?;
        let t = Instant::now();
        let origin = self.protocol.origin.display().to_string();
        let bound = bind(&next, &self.patient, &self.matrix, &origin)?;
        let mut f = FluenceObjective::new(
            &self.matrix,
            bound,
            self.pairs.clone(),
            self.settings.smoothing,
        );
        let lower = vec![0.0; self.x.len()];
        let mut x = self.x.clone();
        let mut correction = self.correction.clone();
        // The first optimization of a case has no scatter correction yet: solve, correct, and
        // solve again, so the first report already reflects the full dose.
        let passes = if self.iteration == 0 { 2 } else { 1 };
        let mut solver_iterations = 0;
        let mut exact = Vec::new();
        for _ in 0..passes {
            f.correction = correction.clone();
            let sol = minimize(&mut f, &x, &lower, &self.settings.solver)?;
            if sol.x.iter().any(|v| !v.is_finite()) {
                return Err(Error::invalid(
                    "optimizer",
                    "fluence",
                    "NaN",
                    "the optimization produced a non-finite fluence; the previous plan is kept",
                ));
            }
            solver_iterations += sol.iterations;
            x = sol.x;
            // Refresh the scatter correction from the exact dose of the new fluence.
            exact = self.exact_row_dose(&x);
            let with_old = f.dose_of(&x);
            correction = exact
                .iter()
                .zip(&with_old)
                .zip(&f.correction)
                .map(|((e, d), c)| e - (d - c))
                .collect();
        }
        f.correction = correction.clone();
        let total = {
            use crate::optimize::lbfgs::Problem;
            let mut g = vec![0.0; x.len()];
            f.eval(&x, &mut g)
        };
        self.objectives = next;
        self.x = x;
        self.correction = correction;
        self.iteration += 1;
        Ok(self.report(&exact, solver_iterations, t.elapsed().as_secs_f64(), total))
    }

    fn normalize(&mut self) -> Result<f64> {
        let exact = self.exact_row_dose(&self.x);
        let cov: Vec<f32> = self
            .coverage_rows
            .iter()
            .map(|&r| exact[r as usize])
            .collect();
        let d = dose_at_volume(&cov, self.protocol.prescription.volume_percent);
        if !(d.is_finite() && d > 0.0) {
            return Err(Error::invalid(
                "normalization",
                "coverage",
                d.to_string(),
                "the target receives no dose",
            ));
        }
        let factor = self.protocol.prescription.dose_cgy / d;
        self.x.iter_mut().for_each(|v| *v *= factor);
        self.correction.iter_mut().for_each(|v| *v *= factor as f32);
        Ok(factor)
    }

    fn dose(&self) -> Result<Vec<f32>> {
        let body = self
            .patient
            .require(&self.protocol.body, "native TPS", "evaluation.body")?;
        let inside = plan::resample_mask(&body.mask, &self.dose_grid);
        let d =
            self.engine
                .dose_on_grid(&self.fields_with(&self.x), &self.dose_grid, Some(&inside));
        Ok(plan::resample_dose(
            &d,
            &self.dose_grid,
            self.patient.grid(),
        ))
    }

    fn plan(&self) -> PlanSummary {
        let beam_mu: Vec<f64> = self
            .fields_with(&self.x)
            .iter()
            .map(sliding_window_mu)
            .collect();
        let fractions = self.protocol.prescription.fractions;
        PlanSummary {
            mu_per_fraction: beam_mu.iter().sum::<f64>() / fractions as f64,
            beam_mu,
            fractions,
        }
    }
}

/// Loads the default machine and calibration files from a configuration directory.
pub fn default_machine(configs: &Path) -> Result<(BeamModel, DensityCurve)> {
    Ok((
        BeamModel::load(&configs.join("machines/generic-6mv.toml"))?,
        DensityCurve::load(&configs.join("ct-calibration/default.toml"))?,
    ))
}
