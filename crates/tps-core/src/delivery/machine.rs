//! The MLC and delivery limits of a machine, read from the `[mlc]` and `[delivery]` tables of
//! its machine file.

use std::path::Path;

use serde::Deserialize;

use tps_api::error::{Error, Result, parse_toml};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileWire {
    name: String,
    mlc: Option<MlcWire>,
    delivery: Option<DeliveryWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct MlcWire {
    leaf_pairs: Vec<(usize, f64)>,
    max_leaf_speed_mm_per_s: f64,
    min_leaf_gap_mm: f64,
    max_leaf_span_mm: f64,
    max_leaf_position_mm: f64,
    transmission: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct DeliveryWire {
    max_gantry_speed_deg_per_s: f64,
    max_dose_rate_mu_per_min: f64,
    min_mu_per_segment: f64,
    max_control_point_spacing_deg: f64,
}

/// Most leaf pairs an MLC may have.
pub const MAX_LEAF_PAIRS: usize = 200;

/// A multileaf collimator: leaf pairs stacked along `c`, leaves travelling along `a`
/// (collimator 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Mlc {
    /// Leaf-pair boundaries along `c` at the isocentre plane, mm, increasing and centred on the
    /// axis.
    pub boundaries_mm: Vec<f64>,
    /// Fastest a leaf moves, mm/s at the isocentre plane.
    pub max_leaf_speed_mm_per_s: f64,
    /// Smallest gap between the tips of a pair, mm.
    pub min_leaf_gap_mm: f64,
    /// Largest distance between the most extended and the most retracted leaf of one bank, mm.
    pub max_leaf_span_mm: f64,
    /// Farthest a leaf tip may be from the axis, mm.
    pub max_leaf_position_mm: f64,
    /// Fraction of the open-field fluence that passes through a closed leaf.
    pub transmission: f64,
}

impl Mlc {
    /// Number of leaf pairs.
    pub fn pairs(&self) -> usize {
        self.boundaries_mm.len() - 1
    }
}

/// What a machine can deliver: its MLC and the limits of a VMAT arc.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryMachine {
    /// Machine name.
    pub name: String,
    /// The MLC.
    pub mlc: Mlc,
    /// Fastest gantry rotation, degrees/s.
    pub max_gantry_speed_deg_per_s: f64,
    /// Highest dose rate, MU/min.
    pub max_dose_rate_mu_per_min: f64,
    /// Fewest MU a segment between two control points may carry.
    pub min_mu_per_segment: f64,
    /// Largest gantry travel between two control points, degrees.
    pub max_control_point_spacing_deg: f64,
}

impl DeliveryMachine {
    /// Reads the MLC and delivery limits of a machine file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and checks the `[mlc]` and `[delivery]` tables of machine TOML from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let w: FileWire = parse_toml(text, path)?;
        let o = path.display().to_string();
        let missing = |table: &str| {
            Error::invalid(
                &o,
                table,
                "(missing)",
                format!(
                    "machine {} has no [{table}] table: a deliverable plan needs the MLC and the \
                     delivery limits (see configs/machines/generic-6mv.toml)",
                    w.name
                ),
            )
        };
        let m = w.mlc.as_ref().ok_or_else(|| missing("mlc"))?;
        let d = w.delivery.as_ref().ok_or_else(|| missing("delivery"))?;
        // NaN fails every range; `open` excludes the lower end.
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
        let total: usize = m.leaf_pairs.iter().map(|p| p.0).sum();
        if m.leaf_pairs.is_empty() || !(1..=MAX_LEAF_PAIRS).contains(&total) {
            return Err(Error::invalid(
                &o,
                "mlc.leaf-pairs",
                format!("{:?}", m.leaf_pairs),
                format!("1 to {MAX_LEAF_PAIRS} leaf pairs in groups of [count, width mm]"),
            ));
        }
        for (n, &(_, width)) in m.leaf_pairs.iter().enumerate() {
            within(
                &format!("mlc.leaf-pairs[{n}] width"),
                width,
                (1.0, 20.0),
                false,
            )?;
        }
        within(
            "mlc.max-leaf-speed-mm-per-s",
            m.max_leaf_speed_mm_per_s,
            (0.0, 100.0),
            true,
        )?;
        within("mlc.min-leaf-gap-mm", m.min_leaf_gap_mm, (0.0, 10.0), false)?;
        within(
            "mlc.max-leaf-span-mm",
            m.max_leaf_span_mm,
            (0.0, 500.0),
            true,
        )?;
        within(
            "mlc.max-leaf-position-mm",
            m.max_leaf_position_mm,
            (0.0, 500.0),
            true,
        )?;
        within("mlc.transmission", m.transmission, (0.0, 0.1), false)?;
        within(
            "delivery.max-gantry-speed-deg-per-s",
            d.max_gantry_speed_deg_per_s,
            (0.0, 30.0),
            true,
        )?;
        within(
            "delivery.max-dose-rate-mu-per-min",
            d.max_dose_rate_mu_per_min,
            (0.0, 5000.0),
            true,
        )?;
        within(
            "delivery.min-mu-per-segment",
            d.min_mu_per_segment,
            (0.0, 10.0),
            false,
        )?;
        within(
            "delivery.max-control-point-spacing-deg",
            d.max_control_point_spacing_deg,
            (0.0, 10.0),
            true,
        )?;
        let width: f64 = m.leaf_pairs.iter().map(|&(n, w)| n as f64 * w).sum();
        let mut boundaries_mm = vec![-0.5 * width];
        for &(n, w) in &m.leaf_pairs {
            for _ in 0..n {
                let last = *boundaries_mm.last().expect("starts non-empty");
                boundaries_mm.push(last + w);
            }
        }
        Ok(Self {
            name: w.name,
            mlc: Mlc {
                boundaries_mm,
                max_leaf_speed_mm_per_s: m.max_leaf_speed_mm_per_s,
                min_leaf_gap_mm: m.min_leaf_gap_mm,
                max_leaf_span_mm: m.max_leaf_span_mm,
                max_leaf_position_mm: m.max_leaf_position_mm,
                transmission: m.transmission,
            },
            max_gantry_speed_deg_per_s: d.max_gantry_speed_deg_per_s,
            max_dose_rate_mu_per_min: d.max_dose_rate_mu_per_min,
            min_mu_per_segment: d.min_mu_per_segment,
            max_control_point_spacing_deg: d.max_control_point_spacing_deg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> String {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/machines/generic-6mv.toml");
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn the_shipped_machine_has_a_millennium_120_mlc() {
        let m = DeliveryMachine::parse(&text(), Path::new("m.toml")).unwrap();
        assert_eq!(m.mlc.pairs(), 60);
        let b = &m.mlc.boundaries_mm;
        assert_eq!(
            (b[0], b[10], b[30], b[50], b[60]),
            (-200.0, -100.0, 0.0, 100.0, 200.0)
        );
        assert_eq!(b[11] - b[10], 5.0);
        assert_eq!(m.max_control_point_spacing_deg, 4.0);
    }

    #[test]
    fn bad_limits_and_missing_tables_are_refused_naming_the_field() {
        let t = text();
        for (from, to, field) in [
            (
                "transmission = 0.015",
                "transmission = 0.5",
                "mlc.transmission",
            ),
            (
                "max-leaf-speed-mm-per-s = 25.0",
                "max-leaf-speed-mm-per-s = 0.0",
                "mlc.max-leaf-speed-mm-per-s",
            ),
            (
                "[[10, 10.0], [40, 5.0]",
                "[[10, 10.0], [40, 50.0]",
                "mlc.leaf-pairs[1] width",
            ),
            (
                "max-control-point-spacing-deg = 4.0",
                "max-control-point-spacing-deg = nan",
                "delivery.max-control-point-spacing-deg",
            ),
        ] {
            assert!(t.contains(from), "{from}");
            let e = DeliveryMachine::parse(&t.replacen(from, to, 1), Path::new("m.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("m.toml") && e.contains(field), "{to}: {e}");
        }
        let unknown = t.replacen("transmission = 0.015", "transmission = 0.015\nspeed = 1", 1);
        let e = DeliveryMachine::parse(&unknown, Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("speed"), "{e}");
        let cut = &t[..t.find("[mlc]").unwrap()];
        let e = DeliveryMachine::parse(cut, Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[mlc]") && e.contains("generic-6mv"), "{e}");
        // The beam model still reads the file with or without the tables.
        crate::dose::model::BeamModel::parse(&t, Path::new("m.toml")).unwrap();
        crate::dose::model::BeamModel::parse(cut, Path::new("m.toml")).unwrap();
    }
}
