//! Open arcs with a uniform fluence: every beamlet through the target (plus margin) equally
//! weighted, scaled so the prescription covers the prescribed volume of the target on the
//! CT grid. No optimization: a conformal baseline and a check of the dose engine on a patient.

use tps_api::{Dose, Error, Grid, Patient, Protocol, Result};

use crate::dose::calibration::DensityCurve;
use crate::dose::engine::DoseEngine;
use crate::dose::geometry::FluenceMap;
use crate::dose::model::BeamModel;
use crate::dose::plan::{self, BeamSetup};
use crate::native::dose_at_volume;

/// The beams of a uniform-fluence plan on a patient, before any dose is computed.
#[derive(Debug, Clone)]
pub struct UniformArcs {
    fields: Vec<FluenceMap>,
    dose_grid: Grid,
    inside: Vec<bool>,
    target: String,
}

/// The computed plan.
#[derive(Debug, Clone)]
pub struct UniformDose {
    /// Dose on the patient's CT grid, normalized, cGy.
    pub dose: Dose,
    /// Fluence level that gives the prescription coverage, MU per beam (an open field
    /// delivers its level whatever its number of beamlets).
    pub mu_per_beam: f64,
    /// MU over the whole plan (all fractions).
    pub total_mu: f64,
}

impl UniformArcs {
    /// The protocol's beams (`[beams]`) realized by `setup` around its isocentre, with the
    /// protocol's dose grid over its body structure.
    pub fn new(patient: &Patient, protocol: &Protocol, setup: &BeamSetup) -> Result<Self> {
        let origin = protocol.origin.display().to_string();
        let target = patient.require(
            &protocol.prescription.target,
            &origin,
            "prescription.target",
        )?;
        let body = protocol.body_structure(patient)?;
        let fields = plan::setup_fields(patient, &target.name, &protocol.beams, setup, &origin)?;
        let dose_grid = plan::dose_grid_around(&body.mask, protocol.beams.dose_grid_mm)?;
        let inside = plan::resample_mask(&body.mask, &dose_grid);
        Ok(Self {
            fields,
            dose_grid,
            inside,
            target: target.name.clone(),
        })
    }

    /// Beams.
    pub fn beams(&self) -> usize {
        self.fields.len()
    }

    /// Beamlets with a weight, over every beam.
    pub fn beamlets(&self) -> usize {
        self.fields
            .iter()
            .map(|f| f.weights.iter().filter(|&&w| w > 0.0).count())
            .sum()
    }

    /// The dose grid.
    pub fn dose_grid(&self) -> &Grid {
        &self.dose_grid
    }

    /// Computes the dose (calling `progress(beams done)` after each beam), resamples it to the
    /// CT grid and scales it so the target's D at the prescribed volume is the prescription.
    pub fn compute(
        &self,
        patient: &Patient,
        protocol: &Protocol,
        model: &BeamModel,
        curve: &DensityCurve,
        progress: impl Fn(usize),
    ) -> Result<UniformDose> {
        let engine = DoseEngine::new(model, *patient.grid(), curve.densities(patient.ct_hu()));
        let on_dose_grid = engine.dose_on_grid_with_progress(
            &self.fields,
            &self.dose_grid,
            Some(&self.inside),
            progress,
        );
        let on_ct = plan::resample_dose(&on_dose_grid, &self.dose_grid, patient.grid());
        let mask = &patient
            .require(&self.target, "uniform plan", "target")?
            .mask;
        let inside = tps_api::dose_volume::doses_in(&on_ct, mask);
        let pr = &protocol.prescription;
        let d = dose_at_volume(&inside, pr.volume_percent);
        if !(d.is_finite() && d > 0.0) {
            return Err(Error::invalid(
                "uniform plan",
                "coverage",
                d.to_string(),
                "the target receives no dose; check the beam setup",
            ));
        }
        let mu_per_beam = pr.dose_cgy / d;
        let scaled: Vec<f32> = on_ct
            .iter()
            .map(|&v| (f64::from(v) * mu_per_beam) as f32)
            .collect();
        let open_beams = self
            .fields
            .iter()
            .filter(|f| f.weights.iter().any(|&w| w > 0.0))
            .count();
        Ok(UniformDose {
            dose: Dose::new(*patient.grid(), scaled)?,
            mu_per_beam,
            total_mu: mu_per_beam * open_beams as f64,
        })
    }
}
