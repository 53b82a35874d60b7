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
    let bad = |field: &str, v: f64, why: &str| {
        Err(Error::invalid(
            "synthetic dose",
            field,
            format!("{v:?}"),
            why,
        ))
    };
    // NaN fails every comparison below.
    let p = params;
    if !(p.prescription_cgy > 0.0 && p.prescription_cgy <= 10_000.0) {
        return bad(
            "prescription-cgy",
            p.prescription_cgy,
            "a dose above 0 and at most 10000 cGy",
        );
    }
    if !(p.hot > 0.0 && p.hot <= 2.0) {
        return bad("hot", p.hot, "a factor above 0 and at most 2");
    }
    if !(0.0..=0.5).contains(&p.ripple) {
        return bad("ripple", p.ripple, "a relative ripple of 0 to 0.5");
    }
    if !(p.falloff_mm > 0.0 && p.falloff_mm <= 500.0) {
        return bad(
            "falloff-mm",
            p.falloff_mm,
            "a length above 0 and at most 500 mm",
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cylinder::water_cylinder;

    const GOOD: ConformalDose = ConformalDose {
        prescription_cgy: 3600.0,
        hot: 1.03,
        ripple: 0.04,
        falloff_mm: 12.0,
        seed: 1,
    };

    #[test]
    fn parameters_outside_their_ranges_are_refused_with_the_range() {
        let p = water_cylinder("synthetic/p01");
        conformal(&p, "PTV", &GOOD).unwrap();
        for (params, field, range) in [
            (
                ConformalDose { hot: 1e30, ..GOOD },
                "hot",
                "above 0 and at most 2",
            ),
            (
                ConformalDose {
                    hot: f64::NAN,
                    ..GOOD
                },
                "hot",
                "above 0 and at most 2",
            ),
            (
                ConformalDose {
                    ripple: -0.1,
                    ..GOOD
                },
                "ripple",
                "0 to 0.5",
            ),
            (
                ConformalDose {
                    falloff_mm: 1e9,
                    ..GOOD
                },
                "falloff-mm",
                "at most 500 mm",
            ),
            (
                ConformalDose {
                    falloff_mm: 0.0,
                    ..GOOD
                },
                "falloff-mm",
                "at most 500 mm",
            ),
            (
                ConformalDose {
                    prescription_cgy: -1.0,
                    ..GOOD
                },
                "prescription-cgy",
                "at most 10000",
            ),
        ] {
            let e = conformal(&p, "PTV", &params).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(range), "{params:?}: {e}");
        }
    }
}
