//! The native TPS: the `Tps` trait over this crate's dose engine, influence matrix and
//! fluence optimizer.
//!
//! Each optimization minimizes the weighted constraint target values of `A x + c`, where `A` is
//! the truncated influence matrix and `c` a per-row correction that adds the scatter `A` leaves
//! out. `c` is first computed when the case opens, for the starting fluence; after every solve
//! it is refreshed from the exact dose of the new fluence, so the report (and the next
//! optimization) sees the full dose. The exact dose is computed on the rows of an every-second-
//! voxel lattice whose rays are traced once at opening, and interpolated to the other rows.

use std::time::Instant;

use rayon::slice::ParallelSliceMut;
use tps_api::dose::Dose;
use tps_api::dose_volume::{dose_at_fraction, doses_in, hottest_first, sort_hottest_first};
use tps_api::error::{Error, Result};
use tps_api::grid::Grid;
use tps_api::objectives::{
    Objective, ObjectiveKind, constraint_value, fall_off_limit, geud, range_status,
};
use tps_api::patient::Patient;
use tps_api::protocol::Protocol;
use tps_api::report::{GoalChange, IterationReport, ObjectiveReport, PlanSummary};
use tps_api::structure::Role;
use tps_api::tps::{Normalization, Tps};

use crate::dose::calibration::DensityCurve;
use crate::dose::engine::DoseEngine;
use crate::dose::geometry::FluenceMap;
use crate::dose::grid_dose::PreparedPoints;
use crate::dose::matrix::{InfluenceMatrix, MatrixSettings};
use crate::dose::model::BeamModel;
use crate::dose::plan::{self, BeamSetup};
use crate::dose::rows;
use crate::mu::sliding_window_mu;
use crate::optimize::fmo::{
    BoundObjective, ColumnObjective, FluenceObjective, bind, neighbour_pairs, split_correction,
    structure_rows,
};
use crate::optimize::lbfgs::{Problem, Settings, minimize};

/// Settings of the native TPS.
#[derive(Debug, Clone)]
pub struct NativeSettings {
    /// How the protocol's beams are realized (beamlet margin, source distance); the beams,
    /// beamlet size and dose grid are the protocol's (`[beams]`).
    pub setup: BeamSetup,
    /// Influence-matrix truncation.
    pub matrix: MatrixSettings,
    /// Solver settings (the first optimization of a case runs up to `solver.max_iterations`).
    pub solver: Settings,
    /// Iteration cap of a re-optimization, which continues from the previous plan: a bounded
    /// number of iterations per optimization, as in a clinical TPS, keeps every planning
    /// iteration short; the planning loop supplies the remaining ones.
    pub warm_max_iterations: usize,
    /// Smoothing weight on neighbouring beamlets, per MU^2 (scale-dependent: tuned for
    /// course doses of tens of Gy and 5 mm beamlets; the default 1e-8 keeps a cervix plan near
    /// 750 MU per fraction).
    pub smoothing: f64,
    /// Every how many voxels along each axis the body is sampled for the matrix rows.
    pub body_stride: usize,
    /// Structures with at least twice this many dose-grid voxels are thinned to a regular
    /// sub-lattice keeping about this many (see [`rows::sample_structure`]); `None` keeps every
    /// voxel.
    pub structure_sample: Option<usize>,
}

impl Default for NativeSettings {
    fn default() -> Self {
        Self {
            setup: BeamSetup::default(),
            matrix: MatrixSettings::default(),
            solver: Settings {
                max_iterations: 150,
                rel_tolerance: 1e-4,
                ..Default::default()
            },
            warm_max_iterations: 40,
            smoothing: 1e-8,
            body_stride: 3,
            structure_sample: Some(16_000),
        }
    }
}

/// Largest smoothing weight, per MU^2. The weight depends on the dose scale (1e-8 suits a
/// course of tens of Gy, 1e-3 a single 2 Gy fraction); 1 is far above any of them.
pub const MAX_SMOOTHING: f64 = 1.0;
/// Largest solver iteration cap (of a first optimization and of a re-optimization).
pub const MAX_SOLVER_ITERATIONS: usize = 100_000;

impl NativeSettings {
    /// Refuses a setting outside its range, naming it and the range (the beam setup and the
    /// dose grid are checked where they are used).
    pub fn check(&self) -> Result<()> {
        let bad =
            |f: &str, v: String, why: String| Err(Error::invalid("native TPS settings", f, v, why));
        if !(0.0..=MAX_SMOOTHING).contains(&self.smoothing) {
            return bad(
                "smoothing",
                self.smoothing.to_string(),
                format!("smoothing weights of 0 to {MAX_SMOOTHING} per MU^2 are supported"),
            );
        }
        if !(1..=16).contains(&self.body_stride) {
            return bad(
                "body-stride",
                self.body_stride.to_string(),
                "body sampling strides of 1 to 16 voxels are supported".into(),
            );
        }
        for (field, v) in [
            ("max-iterations", self.solver.max_iterations),
            ("warm-max-iterations", self.warm_max_iterations),
        ] {
            if !(1..=MAX_SOLVER_ITERATIONS).contains(&v) {
                return bad(
                    field,
                    v.to_string(),
                    format!("solver iteration caps of 1 to {MAX_SOLVER_ITERATIONS} are supported"),
                );
            }
        }
        if let Some(n) = self.structure_sample
            && n < 100
        {
            return bad(
                "structure-sample",
                n.to_string(),
                "a structure sample needs at least 100 voxels".into(),
            );
        }
        Ok(())
    }
}

/// The native TPS with an open case. The dose engine borrows `model`. A clone is an independent
/// copy of the case and its current plan (the matrix included).
#[derive(Clone)]
pub struct NativeTps<'a> {
    patient: Patient,
    protocol: Protocol,
    objectives: Vec<Objective>,
    /// The objectives' matrix rows, bound once when the case opens; goals follow `objectives`.
    bound: Vec<BoundObjective>,
    roles: Vec<Role>,
    fields: Vec<FluenceMap>,
    engine: DoseEngine<'a>,
    dose_grid: Grid,
    matrix: InfluenceMatrix,
    pairs: Vec<(u32, u32)>,
    x: Vec<f64>,
    /// Per-row scale and offset of the scatter correction (see [`split_correction`]).
    row_scale: Vec<f32>,
    correction: Vec<f32>,
    /// Positions among the matrix rows where the correction is computed exactly, and their
    /// rays.
    correction_rows: Vec<usize>,
    correction_points: PreparedPoints,
    coverage_rows: Vec<u32>,
    iteration: u32,
    /// Solver iterations and wall time of the last optimization.
    last_run: (usize, f64),
    /// The dose of the current plan on the CT grid, when a normalization on the dose computed
    /// it (cleared whenever the plan changes).
    delivered: Option<Dose>,
    settings: NativeSettings,
}

/// The geometry of a case that the influence matrix is built on.
#[derive(Debug, Clone)]
pub struct CaseGeometry {
    /// Beams with the beamlets that pass through the target (weights 1).
    pub fields: Vec<FluenceMap>,
    /// The dose grid around the body.
    pub dose_grid: Grid,
    /// Dose-grid voxels the optimizer needs: every objective structure and the target, plus
    /// the body sample.
    pub rows: Vec<u32>,
}

/// Beams, dose grid and matrix rows of `patient` under `protocol` (the protocol's auxiliary
/// structures must already be built).
pub fn case_geometry(
    patient: &Patient,
    protocol: &Protocol,
    settings: &NativeSettings,
) -> Result<CaseGeometry> {
    settings.check()?;
    let origin = protocol.origin.display().to_string();
    let target = &protocol.prescription.target;
    patient.require(target, &origin, "prescription.target")?;
    let body_structure = protocol.body_structure(patient)?;
    let body = &body_structure.mask;
    let fields = plan::setup_fields(patient, target, &protocol.beams, &settings.setup, &origin)?;
    let dose_grid = plan::dose_grid_around(body, protocol.beams.dose_grid_mm)?;
    let mut names: Vec<&str> = protocol
        .objectives
        .iter()
        .map(|o| o.structure.as_str())
        .collect();
    names.push(target);
    names.sort_unstable();
    names.dedup();
    let rows = rows::optimization_rows(
        patient,
        &dose_grid,
        &names,
        (&body_structure.name, settings.body_stride),
        settings.structure_sample,
        &origin,
    )?;
    Ok(CaseGeometry {
        fields,
        dose_grid,
        rows,
    })
}

/// The protocol's energy, when it names one, must be the machine's.
pub fn check_energy(protocol: &Protocol, model: &BeamModel) -> Result<()> {
    match protocol.beams.energy_mv {
        Some(e) if (e - model.energy_mv).abs() > 0.05 => Err(Error::invalid(
            protocol.origin.display().to_string(),
            "beams.energy-mv",
            e.to_string(),
            format!(
                "the machine {} has {} MV only; leave energy-mv out or choose a machine file \
                 of that energy (--machine)",
                model.name, model.energy_mv
            ),
        )),
        _ => Ok(()),
    }
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
        settings.check()?;
        let origin = protocol.origin.display().to_string();
        check_energy(&protocol, model)?;
        patient_model::recipes::build_missing_auxiliary(&protocol, &mut patient)?;
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
        let CaseGeometry {
            fields,
            dose_grid,
            rows: row_list,
        } = case_geometry(&patient, &protocol, &settings)?;
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
        let target_mask = &patient
            .require(&target, &origin, "prescription.target")?
            .mask;
        let coverage_rows = structure_rows(target_mask, &matrix, settings.structure_sample)
            .ok_or_else(|| {
                Error::invalid(
                    &origin,
                    "prescription.target",
                    &target,
                    "the influence matrix has no row for some target voxels",
                )
            })?;
        let correction_rows: Vec<usize> = matrix
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| dose_grid.ijk(**r as usize).iter().all(|v| v % 2 == 0))
            .map(|(k, _)| k)
            .collect();
        let points: Vec<_> = correction_rows
            .iter()
            .map(|&k| {
                let [i, j, l] = dose_grid.ijk(matrix.rows[k] as usize);
                dose_grid.position_mm(i, j, l)
            })
            .collect();
        let beams: Vec<_> = fields.iter().map(|f| f.beam).collect();
        let correction_points = engine.prepare_points(&beams, &points);
        let bound = bind(
            &protocol.objectives,
            &patient,
            &matrix,
            settings.structure_sample,
            &protocol.prescription.target,
            &origin,
        )?;
        let mut tps = Self {
            objectives: protocol.objectives.clone(),
            bound,
            patient,
            roles,
            fields,
            engine,
            dose_grid,
            pairs,
            x: Vec::new(),
            row_scale: vec![1.0; matrix.n_rows()],
            correction: vec![0.0; matrix.n_rows()],
            correction_rows,
            correction_points,
            coverage_rows,
            iteration: 0,
            last_run: (0, 0.0),
            delivered: None,
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
        let c = tps.corrected(&tps.x);
        (tps.row_scale, tps.correction) = (c.scale, c.offset);
        Ok(tps)
    }

    /// The patient (with the auxiliary structures built).
    pub fn patient(&self) -> &Patient {
        &self.patient
    }

    /// The dose-grid voxels that are matrix rows.
    fn row_mask(&self) -> Vec<bool> {
        let mut inside = vec![false; self.dose_grid.len()];
        for &r in &self.matrix.rows {
            inside[r as usize] = true;
        }
        inside
    }

    /// Dose the influence matrix leaves out for the current fluence, against the exact dose at
    /// the matrix rows: (mean relative deficit over rows with at least 10 % of the maximum,
    /// worst deficit as a fraction of the maximum); see [`InfluenceMatrix::truncation_error`].
    pub fn truncation_error(&self) -> (f64, f64) {
        let fields = self.fields_with(&self.x);
        let inside = self.row_mask();
        let full = self
            .engine
            .dose_on_grid(&fields, &self.dose_grid, Some(&inside));
        self.matrix.truncation_error(&fields, &full)
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

    /// Scatter correction for weights `x`: the exact dose minus `A x`, computed exactly on the
    /// rows at even dose-grid indices along every axis and interpolated (trilinearly, over the
    /// sampled neighbours) for the others. What the matrix leaves out is broad scatter, smooth on
    /// the scale of this 2-voxel lattice; a test checks the interpolation against the exact
    /// correction.
    fn correction_for(&self, x: &[f64], ax: &[f32]) -> Vec<f32> {
        let g = &self.dose_grid;
        let exact = self
            .engine
            .dose_at_prepared(&self.fields_with(x), &self.correction_points);
        // Correction on the even lattice, NaN where no row was sampled.
        let mut lattice = vec![f32::NAN; g.len()];
        for (&k, e) in self.correction_rows.iter().zip(&exact) {
            lattice[self.matrix.rows[k] as usize] = *e as f32 - ax[k];
        }
        self.matrix
            .rows
            .iter()
            .map(|&r| {
                let v = lattice[r as usize];
                if v.is_nan() {
                    interpolate_even(g, &lattice, g.ijk(r as usize))
                } else {
                    v
                }
            })
            .collect()
    }

    /// `A x`, the truncated matrix's dose at the rows.
    fn matrix_dose(&self, x: &[f64]) -> Vec<f32> {
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut ax = vec![0.0f32; self.matrix.n_rows()];
        self.matrix.forward(&x32, &mut ax);
        ax
    }

    /// The correction's per-row scale and offset for weights `x`, and the corrected dose at
    /// the rows (`scale A x + offset`), from one product with the matrix.
    fn corrected(&self, x: &[f64]) -> Corrected {
        let ax = self.matrix_dose(x);
        let missing = self.correction_for(x, &ax);
        let (scale, offset) = split_correction(&ax, &missing, MAX_SCATTER_RATIO);
        let dose = apply_correction(&ax, &scale, &offset);
        Corrected {
            scale,
            offset,
            dose,
        }
    }

    /// The bound objectives with the goals of `objectives`.
    fn bound_with_goals(&self, objectives: &[Objective]) -> Vec<BoundObjective> {
        let mut bound = self.bound.clone();
        for (b, o) in bound.iter_mut().zip(objectives) {
            b.goal_cgy = o.goal_cgy;
        }
        bound
    }

    /// The fluence objective with the current goals and correction.
    fn objective(&self, objectives: &[Objective]) -> FluenceObjective<'_> {
        let mut f = FluenceObjective::new(
            &self.matrix,
            self.bound_with_goals(objectives),
            self.pairs.clone(),
            self.settings.smoothing,
        );
        f.scale = self.row_scale.clone();
        f.correction = self.correction.clone();
        f
    }

    /// Exact dose at the matrix rows for weights `x` (every row computed).
    #[cfg(test)]
    fn exact_row_dose(&self, x: &[f64]) -> Vec<f32> {
        let inside = self.row_mask();
        let full = self
            .engine
            .dose_on_grid(&self.fields_with(x), &self.dose_grid, Some(&inside));
        self.matrix.rows.iter().map(|&r| full[r as usize]).collect()
    }

    fn report_for(
        &self,
        dose: &[f32],
        solver_iterations: usize,
        wall_s: f64,
        total: f64,
    ) -> IterationReport {
        let mut objectives = Vec::with_capacity(self.objectives.len());
        for ((o, b), role) in self.objectives.iter().zip(&self.bound).zip(&self.roles) {
            let doses: Vec<f32> = b.rows.iter().map(|&r| dose[r as usize]).collect();
            let value = constraint_value(&o.kind, o.goal_cgy, &doses, b.distances(), None);
            objectives.push(ObjectiveReport {
                id: o.id.clone(),
                structure: o.structure.clone(),
                role: *role,
                kind: o.kind.label(),
                weight: o.weight,
                goal_cgy: o.goal_cgy,
                current_cgy: constrained_quantity(&o.kind, o.goal_cgy, &doses, b.distances()),
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
            goals: Vec::new(),
        }
    }
}

/// A refreshed scatter correction and the dose it gives.
struct Corrected {
    scale: Vec<f32>,
    offset: Vec<f32>,
    dose: Vec<f32>,
}

/// `scale ax + offset`, row by row.
fn apply_correction(ax: &[f32], scale: &[f32], offset: &[f32]) -> Vec<f32> {
    ax.iter()
        .zip(scale)
        .zip(offset)
        .map(|((a, s), c)| a * s + c)
        .collect()
}

/// Largest share of a row's matrix dose that the correction adds in proportion to it (the
/// truncated kernels miss about 20 % on average, see `docs/physics.md`).
const MAX_SCATTER_RATIO: f32 = 1.0;

/// Trilinear interpolation of `lattice` (defined at even indices, NaN where missing) at voxel
/// `ijk` over the corners that are defined; widens to the next ring of even voxels when none of
/// the cell's corners is, and gives 0 when nothing is near.
fn interpolate_even(g: &Grid, lattice: &[f32], ijk: [usize; 3]) -> f32 {
    for reach in [0usize, 2] {
        let mut sum = 0.0f64;
        let mut wsum = 0.0f64;
        let lo: [usize; 3] = [0, 1, 2].map(|a| (ijk[a] - ijk[a] % 2).saturating_sub(reach));
        let hi: [usize; 3] =
            [0, 1, 2].map(|a| (ijk[a] - ijk[a] % 2 + 2 + reach).min(g.dims[a] - 1));
        for k in (lo[2]..=hi[2]).step_by(2) {
            for j in (lo[1]..=hi[1]).step_by(2) {
                for i in (lo[0]..=hi[0]).step_by(2) {
                    let v = lattice[g.index(i, j, k)];
                    if v.is_nan() {
                        continue;
                    }
                    let w: f64 = [(i, 0), (j, 1), (k, 2)]
                        .iter()
                        .map(|&(c, a)| {
                            (1.0 - (c as f64 - ijk[a] as f64).abs() / (2.0 + reach as f64))
                                .max(0.05)
                        })
                        .product();
                    sum += w * v as f64;
                    wsum += w;
                }
            }
        }
        if wsum > 0.0 {
            return (sum / wsum) as f32;
        }
    }
    0.0
}

/// Value of the quantity an objective constrains: max, min, mean, the dose at its volume, the
/// gEUD; for a fall-off objective, the goal at which it would just hold (the goal times the
/// largest ratio of a voxel's dose to its limit).
fn constrained_quantity(
    kind: &ObjectiveKind,
    goal_cgy: f64,
    doses: &[f32],
    distances_mm: Option<&[f32]>,
) -> f64 {
    match kind {
        ObjectiveKind::Geud { a } => geud(*a, doses).0,
        ObjectiveKind::FallOff {
            end_percent,
            fall_off_mm,
        } => {
            let r = distances_mm.unwrap_or(&[]);
            goal_cgy
                * doses
                    .iter()
                    .zip(r)
                    .map(|(&d, &ri)| {
                        d as f64 / fall_off_limit(goal_cgy, *end_percent, *fall_off_mm, ri as f64)
                    })
                    .fold(0.0, f64::max)
        }
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

/// Dose received by at least `percent` % of the voxels (the shared DVH convention).
pub(crate) fn dose_at_volume(doses: &[f32], percent: f64) -> f64 {
    let mut v = doses.to_vec();
    if v.len() > 200_000 {
        v.par_sort_unstable_by(hottest_first);
    } else {
        sort_hottest_first(&mut v);
    }
    dose_at_fraction(&v, percent / 100.0)
}

impl NativeTps<'_> {
    /// The body's mask on the dose grid: where whole-grid doses are computed.
    fn body_on_dose_grid(&self) -> Result<Vec<bool>> {
        let body = self.protocol.body_structure(&self.patient)?;
        Ok(plan::resample_mask(&body.mask, &self.dose_grid))
    }

    /// The whole-grid dose of the current fluence, resampled to the CT grid.
    fn compute_dose(&self) -> Result<Dose> {
        let inside = self.body_on_dose_grid()?;
        let d =
            self.engine
                .dose_on_grid(&self.fields_with(&self.x), &self.dose_grid, Some(&inside));
        Dose::new(
            *self.patient.grid(),
            plan::resample_dose(&d, &self.dose_grid, self.patient.grid()),
        )
    }

    /// Scales the fluence (and the correction with it) by `factor`.
    fn scale_plan(&mut self, factor: f64) {
        self.x.iter_mut().for_each(|v| *v *= factor);
        self.correction.iter_mut().for_each(|v| *v *= factor as f32);
    }

    /// The factor that brings coverage `d` (cGy) to the prescription, or an error when the
    /// target receives no dose.
    fn factor_for(&self, d: f64) -> Result<f64> {
        if !(d.is_finite() && d > 0.0) {
            return Err(Error::invalid(
                "normalization",
                "coverage",
                d.to_string(),
                "the target receives no dose",
            ));
        }
        Ok(self.protocol.prescription.dose_cgy / d)
    }
}

/// The dose of any deliverable plan of a patient (a sequenced plan read back, or one with
/// simulated delivery errors), computed as [`NativeTps::deliverable`] computes it: the same
/// engine over the CT, the same dose grid around the body, the same aperture sampling.
pub struct ApertureDose<'a> {
    engine: DoseEngine<'a>,
    dose_grid: Grid,
    inside: Vec<bool>,
    ct_grid: Grid,
}

impl<'a> ApertureDose<'a> {
    /// Sets up the engine and the dose grid for `patient` with the protocol's body structure
    /// and dose-grid spacing.
    pub fn new(
        patient: &Patient,
        protocol: &Protocol,
        model: &'a BeamModel,
        calibration: &DensityCurve,
    ) -> Result<Self> {
        let body = protocol.body_structure(patient)?;
        let dose_grid = plan::dose_grid_around(&body.mask, protocol.beams.dose_grid_mm)?;
        let inside = plan::resample_mask(&body.mask, &dose_grid);
        Ok(Self {
            engine: DoseEngine::new(
                model,
                *patient.grid(),
                calibration.densities(patient.ct_hu()),
            ),
            dose_grid,
            inside,
            ct_grid: *patient.grid(),
        })
    }

    /// Course dose of `plan` on the CT grid, cGy (MU per fraction times the plan's fractions),
    /// with leaf transmission `transmission`.
    pub fn dose(
        &self,
        plan: &tps_api::deliverable::DeliverablePlan,
        transmission: f64,
        sampling: &crate::delivery::ApertureSampling,
    ) -> Result<Dose> {
        let fields =
            crate::delivery::aperture_fields(plan, transmission, sampling, plan.fractions as f64)?;
        let d = self
            .engine
            .dose_on_grid(&fields, &self.dose_grid, Some(&self.inside));
        Dose::new(
            self.ct_grid,
            plan::resample_dose(&d, &self.dose_grid, &self.ct_grid),
        )
    }
}

/// The deliverable plan of a case: the sequenced arcs, their dose on the CT grid (normalized
/// as the fluence plan was: the prescription to the protocol's volume of the target), and the
/// machine check with the delivery time.
#[derive(Debug, Clone)]
pub struct Deliverable {
    /// Control points, with MU per fraction after the normalization.
    pub plan: tps_api::deliverable::DeliverablePlan,
    /// Course dose of the apertures, cGy, on the CT grid.
    pub dose: Dose,
    /// The normalization factor applied to the sequenced MU.
    pub normalization: f64,
    /// Limits and delivery time.
    pub check: crate::delivery::DeliveryCheck,
    /// The protocol's objective (current goals) on the bins' doses before and after the MU
    /// re-optimization (both 0 when it did not run).
    pub mu_objective: (f64, f64),
    /// Where the time went.
    pub timing_s: DeliverableTiming,
}

/// Seconds spent on each step of [`NativeTps::deliverable`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliverableTiming {
    /// Sequencing (with the leaf-position fit).
    pub sequencing: f64,
    /// The dose of every gantry-angle bin.
    pub dose: f64,
    /// The MU re-optimization.
    pub mu_reoptimization: f64,
}

impl NativeTps<'_> {
    /// The current fluence sequenced into arcs of control points for `machine` (MU as
    /// optimized, before any normalization of the deliverable dose).
    pub fn sequence(
        &self,
        machine: &crate::delivery::DeliveryMachine,
        sequencing: &crate::delivery::SequenceSettings,
    ) -> Result<tps_api::deliverable::DeliverablePlan> {
        crate::delivery::sequence(
            &self.protocol.beams,
            &self.fields_with(&self.x),
            machine,
            self.engine.model().energy_mv,
            self.protocol.prescription.fractions,
            sequencing,
        )
    }

    /// The dose of each gantry-angle bin of `plan` ([`crate::delivery::fluence::segment_bins`])
    /// at the dose-grid voxels inside the body (course dose, cGy, at the plan's MU), and the
    /// indices of those voxels.
    fn bin_doses(
        &self,
        plan: &tps_api::deliverable::DeliverablePlan,
        transmission: f64,
        sampling: &crate::delivery::ApertureSampling,
    ) -> Result<(Vec<Vec<f32>>, Vec<u32>)> {
        let inside = self.body_on_dose_grid()?;
        let voxels: Vec<u32> = (0..inside.len() as u32)
            .filter(|&v| inside[v as usize])
            .collect();
        let fields =
            crate::delivery::aperture_fields(plan, transmission, sampling, plan.fractions as f64)?;
        let doses = fields
            .iter()
            .map(|f| {
                let g = self.engine.dose_on_grid(
                    std::slice::from_ref(f),
                    &self.dose_grid,
                    Some(&inside),
                );
                voxels.iter().map(|&v| g[v as usize]).collect()
            })
            .collect();
        Ok((doses, voxels))
    }

    /// Weights of the bins' MU that minimize the protocol's objectives (current goals) on the
    /// bins' doses at the optimizer's rows, from 1 (the sequenced MU), at most `iterations`
    /// solver iterations; with the objective before and after.
    fn bin_weights(
        &self,
        bin_doses: &[Vec<f32>],
        voxels: &[u32],
        iterations: usize,
    ) -> Result<(Vec<f64>, f64, f64)> {
        let n = bin_doses.len();
        if iterations == 0 || n == 0 {
            return Ok((vec![1.0; n], 0.0, 0.0));
        }
        let mut position = vec![u32::MAX; self.dose_grid.len()];
        for (k, &v) in voxels.iter().enumerate() {
            position[v as usize] = k as u32;
        }
        let columns: Vec<Vec<f32>> = bin_doses
            .iter()
            .map(|d| {
                self.matrix
                    .rows
                    .iter()
                    .map(|&r| match position[r as usize] {
                        u32::MAX => 0.0,
                        k => d[k as usize],
                    })
                    .collect()
            })
            .collect();
        let mut f = ColumnObjective::new(&columns, self.bound_with_goals(&self.objectives));
        let start = vec![1.0; n];
        let mut g = vec![0.0; n];
        let before = f.eval(&start, &mut g);
        let settings = Settings {
            max_iterations: iterations,
            rel_tolerance: 1e-5,
            ..Settings::default()
        };
        let sol = minimize(&mut f, &start, &vec![0.0; n], &settings)?;
        if sol.value < before && sol.x.iter().all(|w| w.is_finite()) {
            Ok((sol.x, before, sol.value))
        } else {
            Ok((start, before, before))
        }
    }

    /// Re-optimizes the MU of the deliverable plan of a case: the current fluence is sequenced
    /// into arcs for `machine`, the dose of each gantry-angle bin of segments is computed from
    /// its apertures by the full engine (leaf transmission included), the MU of each bin's
    /// segments are re-weighted against the protocol's objectives with the current goals
    /// (`sequencing.mu_iterations`; 0 keeps the sequenced MU), and the plan is normalized as the
    /// fluence plan is. The fluence plan itself is unchanged.
    pub fn deliverable(
        &self,
        machine: &crate::delivery::DeliveryMachine,
        sequencing: &crate::delivery::SequenceSettings,
        sampling: &crate::delivery::ApertureSampling,
    ) -> Result<Deliverable> {
        let t = Instant::now();
        let mut plan = self.sequence(machine, sequencing)?;
        let sequenced_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (bin_doses, voxels) = self.bin_doses(&plan, machine.mlc.transmission, sampling)?;
        let dose_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (weights, before, after) =
            self.bin_weights(&bin_doses, &voxels, sequencing.mu_iterations)?;
        let bins = crate::delivery::fluence::segment_bins(&plan, sampling.angle_step_deg);
        scale_segments(&mut plan, &bins, &weights);
        let reoptimized_s = t.elapsed().as_secs_f64();
        let mut d = vec![0.0f32; self.dose_grid.len()];
        for (b, w) in bin_doses.iter().zip(&weights) {
            let w = *w as f32;
            for (v, &k) in b.iter().zip(&voxels) {
                d[k as usize] += w * v;
            }
        }
        let mut dose = Dose::new(
            *self.patient.grid(),
            plan::resample_dose(&d, &self.dose_grid, self.patient.grid()),
        )?;
        let target = &self.protocol.prescription.target;
        let mask = &self
            .patient
            .require(target, "deliverable plan", "prescription.target")?
            .mask;
        let inside = doses_in(dose.cgy(), mask);
        let volume = self.protocol.prescription.volume_percent;
        let factor = self.factor_for(dose_at_volume(&inside, volume))?;
        dose.scale(factor);
        for arc in &mut plan.arcs {
            for cp in &mut arc.control_points {
                cp.cumulative_mu *= factor;
            }
        }
        let check = crate::delivery::check(&plan, machine);
        Ok(Deliverable {
            plan,
            dose,
            normalization: factor,
            check,
            mu_objective: (before, after),
            timing_s: DeliverableTiming {
                sequencing: sequenced_s,
                dose: dose_s,
                mu_reoptimization: reoptimized_s,
            },
        })
    }
}

/// Scales the MU of every segment of each bin (`(arc, segments)`) by its weight and rebuilds
/// the cumulative MU.
fn scale_segments(
    plan: &mut tps_api::deliverable::DeliverablePlan,
    bins: &[(usize, Vec<usize>)],
    weights: &[f64],
) {
    let mut factor: Vec<Vec<f64>> = plan
        .arcs
        .iter()
        .map(|a| vec![1.0; a.control_points.len().saturating_sub(1)])
        .collect();
    for ((a, ks), w) in bins.iter().zip(weights) {
        for &k in ks {
            factor[*a][k] = *w;
        }
    }
    for (arc, f) in plan.arcs.iter_mut().zip(&factor) {
        let mut previous = None;
        let mut total = 0.0;
        for (k, cp) in arc.control_points.iter_mut().enumerate() {
            let planned = cp.cumulative_mu;
            if let Some(p) = previous {
                total += (planned - p) * f[k - 1];
            }
            previous = Some(planned);
            cp.cumulative_mu = total;
        }
    }
}

impl Tps for NativeTps<'_> {
    fn name(&self) -> String {
        "native".into()
    }

    fn objectives(&self) -> Result<Vec<Objective>> {
        Ok(self.objectives.clone())
    }

    fn optimize(&mut self, goals: &[GoalChange]) -> Result<IterationReport> {
        let next = GoalChange::apply_all(&self.objectives, goals)?;
        let t = Instant::now();
        let mut f = self.objective(&next);
        let lower = vec![0.0; self.x.len()];
        let mut solver = self.settings.solver;
        if self.iteration > 0 {
            solver.max_iterations = solver.max_iterations.min(self.settings.warm_max_iterations);
        }
        let sol = minimize(&mut f, &self.x, &lower, &solver)?;
        if sol.x.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "optimizer",
                "fluence",
                "NaN",
                "the optimization produced a non-finite fluence; the previous plan is kept",
            ));
        }
        let solver_iterations = sol.iterations;
        let x = sol.x;
        // Refresh the scatter correction from the exact dose of the new fluence.
        let c = self.corrected(&x);
        if c.dose.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "optimizer",
                "dose",
                "NaN",
                "the new fluence gives a non-finite dose; the previous plan is kept",
            ));
        }
        let total = f.total_of(&x, &c.dose);
        drop(f);
        (self.row_scale, self.correction) = (c.scale, c.offset);
        self.objectives = next;
        self.x = x;
        self.delivered = None;
        self.iteration += 1;
        self.last_run = (solver_iterations, t.elapsed().as_secs_f64());
        Ok(self.report_for(&c.dose, solver_iterations, self.last_run.1, total))
    }

    fn normalize(&mut self, basis: Normalization) -> Result<f64> {
        let volume = self.protocol.prescription.volume_percent;
        match basis {
            Normalization::Report => {
                let c = self.corrected(&self.x);
                let cov: Vec<f32> = self
                    .coverage_rows
                    .iter()
                    .map(|&r| c.dose[r as usize])
                    .collect();
                let factor = self.factor_for(dose_at_volume(&cov, volume))?;
                (self.row_scale, self.correction) = (c.scale, c.offset);
                self.scale_plan(factor);
                self.delivered = None;
                Ok(factor)
            }
            Normalization::Dose => {
                // On the CT grid, within the target's mask, as the evaluation reads it: the
                // dose grid's target points sit inside the target, while the CT grid's edge
                // voxels reach into the fall-off, so this D95 is 0.5-1 % below the report's.
                let target = &self.protocol.prescription.target;
                let mask = &self
                    .patient
                    .require(target, "normalization", "prescription.target")?
                    .mask;
                let mut dose = self.compute_dose()?;
                let inside = doses_in(dose.cgy(), mask);
                let factor = self.factor_for(dose_at_volume(&inside, volume))?;
                self.scale_plan(factor);
                dose.scale(factor);
                self.delivered = Some(dose);
                Ok(factor)
            }
        }
    }

    fn report(&self) -> Result<IterationReport> {
        let dose = apply_correction(
            &self.matrix_dose(&self.x),
            &self.row_scale,
            &self.correction,
        );
        let total = self.objective(&self.objectives).total_of(&self.x, &dose);
        Ok(self.report_for(&dose, self.last_run.0, self.last_run.1, total))
    }

    fn dose(&self) -> Result<Dose> {
        match &self.delivered {
            Some(d) => Ok(d.clone()),
            None => self.compute_dose(),
        }
    }

    fn plan(&self) -> Result<PlanSummary> {
        let beam_mu: Vec<f64> = self
            .fields_with(&self.x)
            .iter()
            .map(sliding_window_mu)
            .collect();
        let fractions = self.protocol.prescription.fractions;
        Ok(PlanSummary {
            mu_per_fraction: beam_mu.iter().sum::<f64>() / fractions as f64,
            beam_mu,
            fractions,
        })
    }

    fn beams(&self) -> Option<tps_api::Beams> {
        Some(self.protocol.beams.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Each bin's weight scales the MU of its own segments; the cumulative MU is rebuilt.
    #[test]
    fn bin_weights_scale_their_segments() {
        use tps_api::deliverable::{Arc, ControlPoint, DeliverablePlan, Jaws, Rotation};
        let cp = |g: f64, mu: f64| ControlPoint {
            gantry_deg: g,
            cumulative_mu: mu,
            leaves_mm: vec![[-1.0, 1.0]],
        };
        let mut plan = DeliverablePlan {
            machine: "m".into(),
            energy_mv: 6.0,
            isocentre_mm: [0.0; 3],
            sad_mm: 1000.0,
            fractions: 1,
            leaf_boundaries_mm: vec![-5.0, 5.0],
            arcs: vec![Arc {
                rotation: Rotation::Clockwise,
                collimator_deg: 0.0,
                jaws: Jaws {
                    x_mm: [-5.0, 5.0],
                    y_mm: [-5.0, 5.0],
                },
                control_points: vec![cp(0.0, 0.0), cp(2.0, 1.0), cp(4.0, 3.0), cp(6.0, 6.0)],
            }],
        };
        scale_segments(&mut plan, &[(0, vec![0, 1]), (0, vec![2])], &[2.0, 0.5]);
        let mu: Vec<f64> = plan.arcs[0]
            .control_points
            .iter()
            .map(|c| c.cumulative_mu)
            .collect();
        assert_eq!(mu, vec![0.0, 2.0, 6.0, 7.5]);
    }

    /// The interpolated correction agrees with the exact one within 1.5 % of the maximum dose.
    #[test]
    fn interpolated_correction_matches_the_exact_one() {
        // The phantom without its OAR: a target alone in water.
        let full = phantoms::cylinder::water_cylinder("c/p01");
        let mut p = Patient::new("c/p01", *full.grid(), full.ct_hu().to_vec()).unwrap();
        for name in ["External", "PTV"] {
            p.add_structure(full.structure(name).unwrap().clone())
                .unwrap();
        }
        let text = "[site]\nname = \"t\"\n[prescription]\ntarget = \"PTV\"\ndose-cgy = 200.0\nfractions = 1\n\
                    volume-percent = 95.0\n[[objectives]]\nid = \"m\"\nstructure = \"PTV\"\ntype = \"min-dose\"\n\
                    weight = 1.0\ngoal-cgy = 200.0\nideal-range = [0.0, 0.01]\n\
                    [beams]\narcs = 1\nbeams-per-arc = 7\n";
        let proto = Protocol::parse(text, Path::new("t.toml")).unwrap();
        let model = BeamModel::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/machines/generic-6mv.toml"),
        )
        .unwrap();
        let settings = NativeSettings {
            body_stride: 1,
            ..Default::default()
        };
        let tps = NativeTps::open(p, proto, &model, &DensityCurve::water(), settings).unwrap();
        let exact = tps.exact_row_dose(&tps.x);
        let x32: Vec<f32> = tps.x.iter().map(|&v| v as f32).collect();
        let mut ax = vec![0.0f32; tps.matrix.n_rows()];
        tps.matrix.forward(&x32, &mut ax);
        let approx = tps.correction_for(&tps.x, &ax);
        let max = exact.iter().cloned().fold(0.0f32, f32::max);
        let worst = exact
            .iter()
            .zip(&ax)
            .zip(&approx)
            .map(|((e, a), c)| ((e - a) - c).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 0.015 * max, "worst {worst} of {max}");
    }
}
