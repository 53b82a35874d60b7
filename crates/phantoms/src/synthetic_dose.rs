//! An idealized, analytic dose distribution for exercising evaluation, tables and figures
//! before (or independently of) a dose calculation. It is not a dose calculation: no beams, no
//! attenuation, no scatter. Inside the target the dose is the prescription times `hot` with a
//! small smooth ripple; outside it falls off exponentially with the distance from the target.

use rayon::prelude::*;

use patient_model::morph::squared_distance_mm2;
use tps_api::dose::Dose;
use tps_api::error::{Error, Result};
use tps_api::patient::Patient;

use crate::rng::voxel_noise;

/// Parameters of [`conformal`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConformalDose {
    /// Prescription dose, cGy.
    pub prescription_cgy: f64,
    /// Dose inside the target relative to the prescription (e.g. 1.03).
    pub hot: f64,
    /// Peak-to-peak relative ripple inside the target (e.g. 0.04).
    pub ripple: f64,
    /// Distance over which the dose outside the target falls by a factor e, mm.
    pub falloff_mm: f64,
    /// Seed of the ripple.
    pub seed: u64,
}

/// The dose of `params` around structure `target` of `patient`, cGy on the CT grid; zero
/// outside the `External` structure when the patient has one.
pub fn conformal(patient: &Patient, target: &str, params: &ConformalDose) -> Result<Dose> {
    let t = patient.require(target, "synthetic dose", "target")?;
    if !(params.falloff_mm > 0.0 && params.prescription_cgy > 0.0 && params.hot > 0.0) {
        return Err(Error::invalid(
            "synthetic dose",
            "parameters",
            format!("{params:?}"),
            "prescription, hot factor and fall-off must be positive",
        ));
    }
    let grid = *patient.grid();
    let d2 = squared_distance_mm2(&grid, t.mask.data());
    let body = patient.structure("External").map(|s| s.mask.data());
    let inside = t.mask.data();
    let dose = (0..grid.len())
        .into_par_iter()
        .map(|n| {
            if body.is_some_and(|b| !b[n]) {
                return 0.0;
            }
            let base = params.prescription_cgy * params.hot;
            if inside[n] {
                (base * (1.0 + 0.5 * params.ripple * voxel_noise(params.seed, n))) as f32
            } else {
                (base * (-d2[n].sqrt() / params.falloff_mm).exp()) as f32
            }
        })
        .collect();
    Dose::new(grid, dose)
}
