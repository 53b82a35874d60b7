//! The photon beam model: a multi-Gaussian pencil-beam kernel with depth-dependent weights
//! and widths, read from a machine file, and its absolute calibration.

use std::path::Path;

use serde::Deserialize;

use tps_api::error::{Error, Result, parse_toml};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct MachineWire {
    name: String,
    energy_mv: f64,
    sad_mm: f64,
    build_up: BuildUpWire,
    component: Vec<ComponentWire>,
    /// The MLC and delivery limits, read by [`crate::delivery::machine::DeliveryMachine`]
    /// (accepted here so the beam model reads the same file).
    #[serde(default, rename = "mlc")]
    _mlc: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "delivery")]
    _delivery: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct BuildUpWire {
    beta_per_mm: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ComponentWire {
    name: String,
    amplitude: f64,
    depth_factor: bool,
    mu_per_mm: f64,
    sigma_mm: f64,
    sigma_slope: f64,
}

/// One Gaussian component of the pencil kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Component {
    /// Amplitude (per unit fluence, before calibration).
    pub amplitude: f64,
    /// Whether the weight carries a factor of depth (scatter builds up with depth).
    pub depth_factor: bool,
    /// Attenuation of the component, 1/mm.
    pub mu_per_mm: f64,
    /// Width at the surface, mm.
    pub sigma_mm: f64,
    /// Growth of the width with depth, mm/mm.
    pub sigma_slope: f64,
}

/// Reference conditions of the absolute calibration: 1 MU gives 1 cGy at d_max on the central
/// axis of a 10 x 10 cm field at SSD 100 cm in water.
pub const CALIBRATION_FIELD_MM: f64 = 100.0;
/// Depth of maximum dose for the calibration, mm.
pub const CALIBRATION_DEPTH_MM: f64 = 15.0;

/// A checked beam model.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamModel {
    /// Machine name.
    pub name: String,
    /// Nominal energy, MV.
    pub energy_mv: f64,
    /// Source-axis distance, mm.
    pub sad_mm: f64,
    /// Build-up coefficient, 1/mm.
    pub beta_per_mm: f64,
    /// Kernel components.
    pub components: Vec<Component>,
    /// cGy per MU per unit kernel dose (see [`CALIBRATION_FIELD_MM`]).
    pub cgy_per_unit: f64,
}

/// The error function, from the Chebyshev fit of the complementary error function in
/// Numerical Recipes (Press et al., 2nd ed., section 6.2, `erfcc`): fractional error of erfc
/// below 1.2e-7 everywhere, enough for kernel integrals.
#[inline]
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { 1.0 - r } else { r - 1.0 }
}

/// Fraction of a normalized 1-D Gaussian that falls on a beamlet of half-width `half` whose
/// centre lies `u` away: `[erf((u + half) k) - erf((u - half) k)] / 2` with `k = 1/(sqrt2 sigma)`.
#[inline]
pub fn box_gauss(u: f64, half: f64, k: f64) -> f64 {
    0.5 * (erf((u + half) * k) - erf((u - half) * k))
}

impl BeamModel {
    /// Reads and checks a machine file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and checks machine TOML that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let w: MachineWire = parse_toml(text, path)?;
        let o = path.display().to_string();
        // Each number within a physical range (NaN fails every comparison): `open` excludes the
        // lower end.
        let within = |field: &str, v: f64, (lo, hi): (f64, f64), open: bool| -> Result<()> {
            let above = if open { v > lo } else { v >= lo };
            if above && v <= hi {
                return Ok(());
            }
            let range = if open {
                format!("above {lo} and at most {hi}")
            } else {
                format!("{lo} to {hi}")
            };
            Err(Error::invalid(
                &o,
                field,
                v.to_string(),
                format!("must be {range}"),
            ))
        };
        within("sad-mm", w.sad_mm, (500.0, 2000.0), false)?;
        // Cobalt-60 (1.25 MeV) to the highest clinical linac energies.
        within("energy-mv", w.energy_mv, (1.0, 25.0), false)?;
        within(
            "build-up.beta-per-mm",
            w.build_up.beta_per_mm,
            (0.01, 10.0),
            false,
        )?;
        if w.component.is_empty() {
            return Err(Error::invalid(
                &o,
                "component",
                "[]",
                "the kernel needs at least one component",
            ));
        }
        for (n, c) in w.component.iter().enumerate() {
            let f = |k: &str| format!("component[{n}].{k}");
            within(&f("amplitude"), c.amplitude, (0.0, 1e6), true)?;
            within(&f("sigma-mm"), c.sigma_mm, (0.0, 200.0), true)?;
            // Ten times the attenuation of water for megavoltage photons (about 0.005/mm).
            within(&f("mu-per-mm"), c.mu_per_mm, (0.0, 0.1), false)?;
            within(&f("sigma-slope"), c.sigma_slope, (0.0, 5.0), false)?;
            let _ = &c.name;
        }
        let mut m = Self {
            name: w.name,
            energy_mv: w.energy_mv,
            sad_mm: w.sad_mm,
            beta_per_mm: w.build_up.beta_per_mm,
            components: w
                .component
                .iter()
                .map(|c| Component {
                    amplitude: c.amplitude,
                    depth_factor: c.depth_factor,
                    mu_per_mm: c.mu_per_mm,
                    sigma_mm: c.sigma_mm,
                    sigma_slope: c.sigma_slope,
                })
                .collect(),
            cgy_per_unit: 1.0,
        };
        m.cgy_per_unit = 1.0 / m.reference_dose_uncalibrated();
        Ok(m)
    }

    /// Weight of component `c` at radiological depth `d` mm.
    #[inline]
    pub fn weight(&self, c: &Component, d: f64) -> f64 {
        let d = d.max(0.0);
        let b = 1.0 - (-self.beta_per_mm * d).exp();
        let depth = if c.depth_factor { d } else { 1.0 };
        c.amplitude * b * depth * (-c.mu_per_mm * d).exp()
    }

    /// Width of component `c` at radiological depth `d` mm.
    #[inline]
    pub fn sigma(&self, c: &Component, d: f64) -> f64 {
        c.sigma_mm + c.sigma_slope * d.max(0.0)
    }

    /// Kernel dose on the central axis of a square field of side `field_mm` (at the depth) at
    /// depth `d` in water, per unit fluence at the point, uncalibrated.
    pub fn central_axis_unit(&self, d: f64, field_mm: f64) -> f64 {
        self.components
            .iter()
            .map(|c| {
                let f = erf(field_mm / (2.0 * std::f64::consts::SQRT_2 * self.sigma(c, d)));
                self.weight(c, d) * f * f
            })
            .sum()
    }

    fn reference_dose_uncalibrated(&self) -> f64 {
        let t = self.sad_mm + CALIBRATION_DEPTH_MM;
        let field = CALIBRATION_FIELD_MM * t / self.sad_mm;
        (self.sad_mm / t).powi(2) * self.central_axis_unit(CALIBRATION_DEPTH_MM, field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_tabulated_values() {
        // Abramowitz and Stegun, Table 7.1.
        for (x, v) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (-1.0, -0.842_700_792_9),
        ] {
            assert!((erf(x) - v).abs() < 2e-7, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn machine_file_loads_and_calibrates() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/machines/generic-6mv.toml");
        let m = BeamModel::load(&path).unwrap();
        assert_eq!(m.components.len(), 3);
        // Calibrated: the reference field gives 1 cGy per unit fluence at d_max.
        let t = m.sad_mm + CALIBRATION_DEPTH_MM;
        let d = m.cgy_per_unit
            * (m.sad_mm / t).powi(2)
            * m.central_axis_unit(CALIBRATION_DEPTH_MM, 100.0 * t / m.sad_mm);
        assert!((d - 1.0).abs() < 1e-12);
        let bad = std::fs::read_to_string(&path)
            .unwrap()
            .replace("sigma-mm = 1.40072", "sigma-mm = -1.0");
        let e = BeamModel::parse(&bad, Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.toml") && e.contains("component[0].sigma-mm") && e.contains("-1"),
            "{e}"
        );
    }

    #[test]
    fn machine_numbers_outside_their_ranges_are_refused_with_the_range() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/machines/generic-6mv.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        for (from, to, field, range) in [
            ("sad-mm = 1000.0", "sad-mm = 1e12", "sad-mm", "500 to 2000"),
            ("sad-mm = 1000.0", "sad-mm = 10.0", "sad-mm", "500 to 2000"),
            ("energy-mv = 6.0", "energy-mv = 1e9", "energy-mv", "1 to 25"),
            (
                "beta-per-mm = 0.310709",
                "beta-per-mm = 1e9",
                "build-up.beta-per-mm",
                "0.01 to 10",
            ),
            (
                "amplitude = 1.0",
                "amplitude = 1e300",
                "component[0].amplitude",
                "at most 1000000",
            ),
            (
                "mu-per-mm = 0.00419081",
                "mu-per-mm = 1e6",
                "component[0].mu-per-mm",
                "0 to 0.1",
            ),
            (
                "sigma-mm = 1.40072",
                "sigma-mm = 1e9",
                "component[0].sigma-mm",
                "at most 200",
            ),
            (
                "sigma-slope = 0.0076586",
                "sigma-slope = 1e9",
                "component[0].sigma-slope",
                "0 to 5",
            ),
        ] {
            assert!(text.contains(from), "{from}");
            let e = BeamModel::parse(&text.replacen(from, to, 1), Path::new("m.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("m.toml") && e.contains(field) && e.contains(range),
                "{to}: {e}"
            );
        }
    }
}
