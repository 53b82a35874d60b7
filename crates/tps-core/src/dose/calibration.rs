//! CT number to relative electron density, from a calibration curve in TOML.

use std::path::Path;

use serde::Deserialize;

use tps_api::error::{Error, Result, parse_toml};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct CurveWire {
    name: String,
    points: Vec<[f64; 2]>,
}

/// A piecewise-linear HU -> relative electron density curve, held constant beyond its ends.
#[derive(Debug, Clone, PartialEq)]
pub struct DensityCurve {
    /// Curve name.
    pub name: String,
    hu: Vec<f64>,
    red: Vec<f64>,
}

impl DensityCurve {
    /// Reads and checks a calibration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and checks calibration TOML that came from `path`: at least two points, CT
    /// numbers strictly increasing, densities finite, non-negative and non-decreasing.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let w: CurveWire = parse_toml(text, path)?;
        let origin = path.display().to_string();
        if w.points.len() < 2 {
            return Err(Error::invalid(
                &origin,
                "points",
                format!("{:?}", w.points),
                "need at least two points",
            ));
        }
        for (n, p) in w.points.iter().enumerate() {
            // CT numbers of a 16-bit extended scale; densities up to the densest element.
            if !((-2000.0..=32767.0).contains(&p[0]) && (0.0..=23.0).contains(&p[1])) {
                return Err(Error::invalid(
                    &origin,
                    format!("points[{n}]"),
                    format!("[{}, {}]", p[0], p[1]),
                    "CT numbers must be -2000 to 32767 HU and densities 0 to 23 g/cm3",
                ));
            }
            if n > 0 {
                let q = w.points[n - 1];
                if p[0] <= q[0] || p[1] < q[1] {
                    return Err(Error::invalid(
                        &origin,
                        format!("points[{n}]"),
                        format!("[{}, {}]", p[0], p[1]),
                        format!(
                            "the curve must be monotone: CT numbers strictly increasing and densities non-decreasing (previous point [{}, {}])",
                            q[0], q[1]
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            name: w.name,
            hu: w.points.iter().map(|p| p[0]).collect(),
            red: w.points.iter().map(|p| p[1]).collect(),
        })
    }

    /// Water everywhere: density 1 for every CT number (for tests in water).
    pub fn water() -> Self {
        Self {
            name: "water".into(),
            hu: vec![-1e9, 1e9],
            red: vec![1.0, 1.0],
        }
    }

    /// Relative electron density of CT number `hu`.
    pub fn density(&self, hu: f64) -> f64 {
        let n = self.hu.len();
        if hu <= self.hu[0] {
            return self.red[0];
        }
        if hu >= self.hu[n - 1] {
            return self.red[n - 1];
        }
        let k = self.hu.partition_point(|&h| h <= hu);
        let (h0, h1) = (self.hu[k - 1], self.hu[k]);
        let (r0, r1) = (self.red[k - 1], self.red[k]);
        r0 + (r1 - r0) * (hu - h0) / (h1 - h0)
    }

    /// Densities of a whole CT, through a lookup table over the int16 range.
    pub fn densities(&self, ct_hu: &[i16]) -> Vec<f32> {
        let table: Vec<f32> = (i16::MIN as i32..=i16::MAX as i32)
            .map(|h| self.density(h as f64) as f32)
            .collect();
        ct_hu
            .iter()
            .map(|&h| table[(h as i32 - i16::MIN as i32) as usize])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_curve_loads_and_interpolates() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ct-calibration/default.toml");
        let c = DensityCurve::load(&path).unwrap();
        assert_eq!(c.density(0.0), 1.0);
        assert!((c.density(20.0) - 1.02).abs() < 1e-12);
        assert_eq!(c.density(-5000.0), 0.0);
        assert_eq!(c.density(5000.0), 2.9);
        assert_eq!(c.densities(&[0, 40]), vec![1.0, 1.04]);
    }

    #[test]
    fn points_outside_their_ranges_are_refused_with_the_range() {
        for (points, range) in [
            ("[[-1000.0, 0.0], [0.0, 1e12]]", "0 to 23"),
            ("[[-1e9, 0.0], [0.0, 1.0]]", "-2000 to 32767"),
            ("[[-1000.0, 0.0], [1e30, 1.0]]", "-2000 to 32767"),
        ] {
            let e = DensityCurve::parse(
                &format!("name = \"x\"\npoints = {points}"),
                Path::new("c.toml"),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("c.toml") && e.contains("points[") && e.contains(range),
                "{e}"
            );
        }
    }

    #[test]
    fn non_monotone_curve_is_refused() {
        let e = DensityCurve::parse(
            "name = \"x\"\npoints = [[-1000.0, 0.0], [0.0, 1.0], [100.0, 0.9]]",
            Path::new("cal.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cal.toml") && e.contains("points[2]") && e.contains("monotone"),
            "{e}"
        );
        let e = DensityCurve::parse(
            "name = \"x\"\npoints = [[0.0, 1.0], [0.0, 1.1]]",
            Path::new("cal.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("points[1]"), "{e}");
        let e = DensityCurve::parse(
            "name = \"x\"\npoints = [[0.0, 1.0]]\nslope = 2",
            Path::new("cal.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("slope"), "{e}");
    }
}
