//! The beam set-up a protocol asks for (`[beams]`): coplanar arcs approximated by static
//! beams, or static beams at given gantry angles; collimator angle, energy, beamlet size,
//! dose-grid spacing and the isocentre rule.
//!
//! Every TPS reads the same description: the native TPS realizes it exactly, a remote TPS
//! receives it with the protocol. Gantry angles follow IEC 61217 (0 degrees: source anterior;
//! 90 degrees: source on the patient's left); see [`Beams::gantry_angles`] for how an arc's
//! beams are placed.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Most arcs a set-up may have (the study used two).
pub const MAX_ARCS: usize = 8;
/// Most static beams per arc (one every 2 degrees over a full arc).
pub const MAX_BEAMS_PER_ARC: usize = 180;
/// Most static beams of a `technique = "static"` set-up.
pub const MAX_STATIC_BEAMS: usize = 72;
/// Smallest beamlet side, mm: finer than any MLC leaf, and the beamlet count grows with the
/// inverse square.
pub const MIN_BIXEL_MM: f64 = 2.0;
/// Largest beamlet side, mm.
pub const MAX_BIXEL_MM: f64 = 20.0;
/// Dose-grid spacings supported, mm.
pub const DOSE_GRID_MM: (f64, f64) = (2.0, 5.0);
/// Two static beams closer than this, degrees, are the same beam written twice.
const SAME_ANGLE_DEG: f64 = 0.01;

/// How the beams are arranged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "technique")]
pub enum Arrangement {
    /// `count` coplanar arcs from `start_deg` to `stop_deg` (clockwise, gantry angle
    /// increasing), each approximated by `beams_per_arc` static beams; equal start and stop
    /// mean a full 360-degree arc.
    Arcs {
        /// Number of arcs.
        count: usize,
        /// Static beams per arc.
        beams_per_arc: usize,
        /// Gantry angle where the arcs start, degrees in [0, 360).
        start_deg: f64,
        /// Gantry angle where they stop, degrees in [0, 360).
        stop_deg: f64,
    },
    /// Static beams at the listed gantry angles.
    Static {
        /// Gantry angles, degrees in [0, 360), in delivery order.
        angles_deg: Vec<f64>,
    },
}

/// Where the isocentre is placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isocentre {
    /// The centroid of the prescription target (the default).
    TargetCentroid,
    /// The centroid of the named structure.
    StructureCentroid(String),
    /// A fixed point in patient coordinates (LPS), mm.
    Point([f64; 3]),
}

/// A protocol's beam set-up (on the TPS protocol's wire as JSON with these field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beams {
    /// Arcs or static beams.
    pub arrangement: Arrangement,
    /// Collimator angle, degrees in [0, 360): rotates the beamlet (MLC) lattice about the beam
    /// axis.
    pub collimator_deg: f64,
    /// Nominal energy, MV; `None` takes the machine's (a TPS refuses an energy its machine does
    /// not have).
    pub energy_mv: Option<f64>,
    /// Beamlet side at the isocentre, mm.
    pub bixel_mm: f64,
    /// Dose-grid spacing, mm.
    pub dose_grid_mm: f64,
    /// The isocentre rule.
    pub isocentre: Isocentre,
}

impl Default for Beams {
    /// The study's two 360-degree arcs, as 2 x 18 interleaved static beams (one every 10
    /// degrees), collimator 0, the machine's energy, 5 mm beamlets, a 3 mm dose grid, the
    /// isocentre at the target's centroid.
    fn default() -> Self {
        Self {
            arrangement: Arrangement::Arcs {
                count: 2,
                beams_per_arc: 18,
                start_deg: 0.0,
                stop_deg: 0.0,
            },
            collimator_deg: 0.0,
            energy_mv: None,
            bixel_mm: 5.0,
            dose_grid_mm: 3.0,
            isocentre: Isocentre::TargetCentroid,
        }
    }
}

impl Beams {
    /// `count` full arcs of `beams_per_arc` beams each, the rest as the default.
    pub fn full_arcs(count: usize, beams_per_arc: usize) -> Self {
        Self {
            arrangement: Arrangement::Arcs {
                count,
                beams_per_arc,
                start_deg: 0.0,
                stop_deg: 0.0,
            },
            ..Self::default()
        }
    }

    /// The gantry angles of every beam, degrees in [0, 360), grouped by arc (one group for
    /// static beams).
    ///
    /// An arc spanning `S` degrees (360 for a full arc) is cut into `n` equal sectors of
    /// `S / n`. A full arc puts beam `k` of arc `a` (of `m`) at `start + (k + a/m) S/n`: the
    /// arcs interleave, and the default two arcs of 18 give one beam every 10 degrees starting
    /// at 0. A partial arc puts it at `start + (k + (a + 1/2)/m) S/n`, so every beam lies
    /// strictly inside the arc.
    pub fn gantry_angles(&self) -> Vec<Vec<f64>> {
        match &self.arrangement {
            Arrangement::Static { angles_deg } => vec![angles_deg.clone()],
            Arrangement::Arcs {
                count,
                beams_per_arc,
                start_deg,
                stop_deg,
            } => {
                let full = (stop_deg - start_deg).abs() < SAME_ANGLE_DEG;
                let span = if full {
                    360.0
                } else {
                    (stop_deg - start_deg).rem_euclid(360.0)
                };
                let step = span / *beams_per_arc as f64;
                (0..*count)
                    .map(|a| {
                        let offset = if full {
                            a as f64 / *count as f64
                        } else {
                            (a as f64 + 0.5) / *count as f64
                        };
                        (0..*beams_per_arc)
                            .map(|k| (start_deg + (k as f64 + offset) * step).rem_euclid(360.0))
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// Number of static beams.
    pub fn beam_count(&self) -> usize {
        match &self.arrangement {
            Arrangement::Arcs {
                count,
                beams_per_arc,
                ..
            } => count * beams_per_arc,
            Arrangement::Static { angles_deg } => angles_deg.len(),
        }
    }

    /// One line for reports and logs, e.g. `2 full arcs x 18 beams (36 beams), collimator 0
    /// deg, 5 mm beamlets, 3 mm dose grid, isocentre at the target centroid`.
    pub fn describe(&self) -> String {
        let what = match &self.arrangement {
            Arrangement::Arcs {
                count,
                beams_per_arc,
                start_deg,
                stop_deg,
            } => {
                let span = if (stop_deg - start_deg).abs() < SAME_ANGLE_DEG {
                    "full arc(s)".to_string()
                } else {
                    format!("arc(s) {start_deg}-{stop_deg} deg clockwise")
                };
                format!(
                    "{count} {span} x {beams_per_arc} beams ({} beams)",
                    self.beam_count()
                )
            }
            Arrangement::Static { angles_deg } => format!("{} static beams", angles_deg.len()),
        };
        let energy = match self.energy_mv {
            Some(e) => format!("{e} MV"),
            None => "the machine's energy".into(),
        };
        let iso = match &self.isocentre {
            Isocentre::TargetCentroid => "the target centroid".to_string(),
            Isocentre::StructureCentroid(s) => format!("the centroid of {s}"),
            Isocentre::Point(p) => format!("({}, {}, {}) mm", p[0], p[1], p[2]),
        };
        format!(
            "{what}, collimator {} deg, {energy}, {} mm beamlets, {} mm dose grid, isocentre at \
             {iso}",
            self.collimator_deg, self.bixel_mm, self.dose_grid_mm
        )
    }

    /// Refuses a value outside its range, naming `origin` and the protocol field (`beams.…`).
    pub fn check(&self, origin: &str) -> Result<()> {
        let bad = |f: &str, v: String, why: String| {
            Err(Error::invalid(origin, format!("beams.{f}"), v, why))
        };
        let angle = |v: f64| (0.0..360.0).contains(&v);
        match &self.arrangement {
            Arrangement::Arcs {
                count,
                beams_per_arc,
                start_deg,
                stop_deg,
            } => {
                if !(1..=MAX_ARCS).contains(count)
                    || !(1..=MAX_BEAMS_PER_ARC).contains(beams_per_arc)
                {
                    return bad(
                        "arcs x beams-per-arc",
                        format!("{count} x {beams_per_arc}"),
                        format!(
                            "1 to {MAX_ARCS} arcs of 1 to {MAX_BEAMS_PER_ARC} beams are supported \
                             (at most 8 arcs of 180 beams, one every 2 degrees)"
                        ),
                    );
                }
                for (f, v) in [("start-deg", start_deg), ("stop-deg", stop_deg)] {
                    if !angle(*v) {
                        return bad(f, v.to_string(), "gantry angles are in [0, 360)".into());
                    }
                }
            }
            Arrangement::Static { angles_deg } => {
                if angles_deg.is_empty() || angles_deg.len() > MAX_STATIC_BEAMS {
                    return bad(
                        "angles-deg",
                        format!("{angles_deg:?}"),
                        format!("list 1 to {MAX_STATIC_BEAMS} gantry angles"),
                    );
                }
                for (n, &v) in angles_deg.iter().enumerate() {
                    if !angle(v) {
                        return bad(
                            &format!("angles-deg[{n}]"),
                            v.to_string(),
                            "gantry angles are in [0, 360)".into(),
                        );
                    }
                    if let Some(m) = angles_deg[..n]
                        .iter()
                        .position(|&u| (u - v).abs() < SAME_ANGLE_DEG)
                    {
                        return bad(
                            &format!("angles-deg[{n}]"),
                            v.to_string(),
                            format!("the same gantry angle as angles-deg[{m}]"),
                        );
                    }
                }
            }
        }
        if !angle(self.collimator_deg) {
            return bad(
                "collimator-deg",
                self.collimator_deg.to_string(),
                "collimator angles are in [0, 360)".into(),
            );
        }
        if let Some(e) = self.energy_mv
            && !(e > 0.0 && e <= 25.0)
        {
            return bad(
                "energy-mv",
                e.to_string(),
                "nominal photon energies of 0 to 25 MV".into(),
            );
        }
        // NaN fails every range.
        if !(MIN_BIXEL_MM..=MAX_BIXEL_MM).contains(&self.bixel_mm) {
            return bad(
                "bixel-mm",
                self.bixel_mm.to_string(),
                format!(
                    "beamlets of {MIN_BIXEL_MM} to {MAX_BIXEL_MM} mm are supported (MLC leaves \
                     are 2.5 to 10 mm wide)"
                ),
            );
        }
        let (lo, hi) = DOSE_GRID_MM;
        if !(lo..=hi).contains(&self.dose_grid_mm) {
            return bad(
                "dose-grid-mm",
                self.dose_grid_mm.to_string(),
                format!("dose grids of {lo} to {hi} mm are supported"),
            );
        }
        match &self.isocentre {
            Isocentre::TargetCentroid => {}
            Isocentre::StructureCentroid(s) if s.trim().is_empty() => {
                return bad(
                    "isocentre-structure",
                    "\"\"".into(),
                    "name the structure whose centroid is the isocentre".into(),
                );
            }
            Isocentre::StructureCentroid(_) => {}
            Isocentre::Point(p) => {
                if p.iter().any(|v| !v.is_finite() || v.abs() > 10_000.0) {
                    return bad(
                        "isocentre-mm",
                        format!("{p:?}"),
                        "patient coordinates within 10 m of the origin, mm".into(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// The `[beams]` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct BeamsWire {
    technique: Option<String>,
    arcs: Option<usize>,
    beams_per_arc: Option<usize>,
    start_deg: Option<f64>,
    stop_deg: Option<f64>,
    angles_deg: Option<Vec<f64>>,
    collimator_deg: Option<f64>,
    energy_mv: Option<f64>,
    bixel_mm: Option<f64>,
    dose_grid_mm: Option<f64>,
    isocentre: Option<String>,
    isocentre_structure: Option<String>,
    isocentre_mm: Option<[f64; 3]>,
}

impl BeamsWire {
    /// The checked set-up; keys left out take [`Beams::default`]'s values.
    pub(crate) fn check(self, origin: &str) -> Result<Beams> {
        let d = Beams::default();
        let bad = |f: &str, v: String, why: &str| {
            Err(Error::invalid(origin, format!("beams.{f}"), v, why))
        };
        let technique = self.technique.as_deref().unwrap_or("arcs");
        let arrangement = match technique {
            "arcs" => {
                if let Some(a) = &self.angles_deg {
                    return bad(
                        "angles-deg",
                        format!("{a:?}"),
                        "gantry angles are listed for technique = \"static\"; arcs take arcs, \
                         beams-per-arc, start-deg and stop-deg",
                    );
                }
                let start = self.start_deg.unwrap_or(0.0);
                Arrangement::Arcs {
                    count: self.arcs.unwrap_or(2),
                    beams_per_arc: self.beams_per_arc.unwrap_or(18),
                    start_deg: start,
                    stop_deg: self.stop_deg.unwrap_or(start),
                }
            }
            "static" => {
                for (f, given) in [
                    ("arcs", self.arcs.is_some()),
                    ("beams-per-arc", self.beams_per_arc.is_some()),
                    ("start-deg", self.start_deg.is_some()),
                    ("stop-deg", self.stop_deg.is_some()),
                ] {
                    if given {
                        return bad(
                            f,
                            "(given)".into(),
                            "static beams are listed in angles-deg; this key is for \
                             technique = \"arcs\"",
                        );
                    }
                }
                let Some(angles_deg) = self.angles_deg else {
                    return bad(
                        "angles-deg",
                        "(not given)".into(),
                        "technique = \"static\" needs the gantry angles, e.g. angles-deg = \
                         [0, 72, 144, 216, 288]",
                    );
                };
                Arrangement::Static { angles_deg }
            }
            other => {
                return bad(
                    "technique",
                    format!("{other:?}"),
                    "expected \"arcs\" or \"static\"",
                );
            }
        };
        let rule = self
            .isocentre
            .as_deref()
            .unwrap_or(if self.isocentre_structure.is_some() {
                "structure-centroid"
            } else if self.isocentre_mm.is_some() {
                "point"
            } else {
                "target-centroid"
            });
        let isocentre = match (rule, self.isocentre_structure, self.isocentre_mm) {
            ("target-centroid", None, None) => Isocentre::TargetCentroid,
            ("structure-centroid", Some(s), None) => Isocentre::StructureCentroid(s),
            ("point", None, Some(p)) => Isocentre::Point(p),
            ("structure-centroid", None, _) => {
                return bad(
                    "isocentre-structure",
                    "(not given)".into(),
                    "isocentre = \"structure-centroid\" needs isocentre-structure = \"NAME\"",
                );
            }
            ("point", _, None) => {
                return bad(
                    "isocentre-mm",
                    "(not given)".into(),
                    "isocentre = \"point\" needs isocentre-mm = [x, y, z] (patient \
                     coordinates, mm)",
                );
            }
            ("target-centroid" | "structure-centroid" | "point", _, _) => {
                return bad(
                    "isocentre",
                    format!("{rule:?}"),
                    "give isocentre-structure only with \"structure-centroid\" and \
                     isocentre-mm only with \"point\"",
                );
            }
            (other, _, _) => {
                return bad(
                    "isocentre",
                    format!("{other:?}"),
                    "expected \"target-centroid\", \"structure-centroid\" (with \
                     isocentre-structure) or \"point\" (with isocentre-mm)",
                );
            }
        };
        let beams = Beams {
            arrangement,
            collimator_deg: self.collimator_deg.unwrap_or(d.collimator_deg),
            energy_mv: self.energy_mv,
            bixel_mm: self.bixel_mm.unwrap_or(d.bixel_mm),
            dose_grid_mm: self.dose_grid_mm.unwrap_or(d.dose_grid_mm),
            isocentre,
        };
        beams.check(origin)?;
        Ok(beams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Beams> {
        let w: BeamsWire =
            toml::from_str(text).map_err(|e| Error::invalid("t", "", "", e.to_string()))?;
        w.check("t.toml")
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_default_is_the_studys_two_interleaved_full_arcs() {
        let b = parse("").unwrap();
        assert_eq!(b, Beams::default());
        let a = b.gantry_angles();
        assert_eq!(a.len(), 2);
        let mut all: Vec<f64> = a.concat();
        all.sort_by(f64::total_cmp);
        let expect: Vec<f64> = (0..36).map(|k| k as f64 * 10.0).collect();
        for (g, e) in all.iter().zip(&expect) {
            assert!((g - e).abs() < 1e-9, "{all:?}");
        }
        assert_eq!(a[0][0], 0.0);
        assert!((a[1][0] - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_partial_arc_keeps_every_beam_inside_it_and_crosses_zero() {
        // 181 -> 179 clockwise crosses 0: a 358-degree arc, beams at sector centres.
        let b = parse("arcs = 1\nbeams-per-arc = 4\nstart-deg = 181\nstop-deg = 179\n").unwrap();
        let a = &b.gantry_angles()[0];
        let step = 358.0 / 4.0;
        for (k, g) in a.iter().enumerate() {
            let e = (181.0 + (k as f64 + 0.5) * step).rem_euclid(360.0);
            assert!((g - e).abs() < 1e-9, "{a:?}");
        }
        assert!(a.iter().all(|g| !(179.0..181.0).contains(g)), "{a:?}");
        // Two partial arcs interleave at quarter sectors.
        let b = parse("arcs = 2\nbeams-per-arc = 2\nstart-deg = 0\nstop-deg = 90\n").unwrap();
        assert_eq!(
            b.gantry_angles(),
            vec![vec![11.25, 56.25], vec![33.75, 78.75]]
        );
    }

    #[test]
    fn static_beams_are_taken_as_listed() {
        let b = parse(
            "technique = \"static\"\nangles-deg = [0, 72, 144, 216, 288]\ncollimator-deg = 90\n\
             energy-mv = 6\nbixel-mm = 4\ndose-grid-mm = 2.5\n",
        )
        .unwrap();
        assert_eq!(
            b.gantry_angles(),
            vec![vec![0.0, 72.0, 144.0, 216.0, 288.0]]
        );
        assert_eq!(b.beam_count(), 5);
        assert_eq!(b.collimator_deg, 90.0);
        assert_eq!(b.energy_mv, Some(6.0));
        assert!(b.describe().contains("5 static beams"), "{}", b.describe());
    }

    #[test]
    fn isocentre_rules() {
        assert_eq!(
            parse("isocentre-structure = \"Core\"").unwrap().isocentre,
            Isocentre::StructureCentroid("Core".into())
        );
        assert_eq!(
            parse("isocentre = \"point\"\nisocentre-mm = [1, -2, 3.5]")
                .unwrap()
                .isocentre,
            Isocentre::Point([1.0, -2.0, 3.5])
        );
        let e = err("isocentre = \"structure-centroid\"");
        assert!(
            e.contains("beams.isocentre-structure") && e.contains("needs"),
            "{e}"
        );
        let e = err("isocentre = \"target-centroid\"\nisocentre-mm = [0, 0, 0]");
        assert!(
            e.contains("beams.isocentre") && e.contains("only with"),
            "{e}"
        );
        let e = err("isocentre = \"couch\"");
        assert!(
            e.contains("\"couch\"") && e.contains("structure-centroid"),
            "{e}"
        );
        let e = err("isocentre = \"point\"\nisocentre-mm = [0, 0, 1e9]");
        assert!(
            e.contains("beams.isocentre-mm") && e.contains("10 m"),
            "{e}"
        );
    }

    /// Each bad value is refused with the file, the field and the value.
    #[test]
    fn bad_values_name_file_field_and_value() {
        for (text, field, value) in [
            ("arcs = 0", "beams.arcs x beams-per-arc", "0 x 18"),
            ("arcs = 9", "beams.arcs x beams-per-arc", "9 x 18"),
            (
                "beams-per-arc = 181",
                "beams.arcs x beams-per-arc",
                "2 x 181",
            ),
            ("start-deg = 360", "beams.start-deg", "360"),
            ("stop-deg = -1", "beams.stop-deg", "-1"),
            ("collimator-deg = 400", "beams.collimator-deg", "400"),
            ("energy-mv = 0", "beams.energy-mv", "0"),
            ("bixel-mm = 1", "beams.bixel-mm", "1"),
            ("dose-grid-mm = 6", "beams.dose-grid-mm", "6"),
            ("technique = \"vmat\"", "beams.technique", "\"vmat\""),
            ("technique = \"static\"", "beams.angles-deg", "(not given)"),
            (
                "technique = \"static\"\nangles-deg = [0, 90, 90.001]",
                "beams.angles-deg[2]",
                "90.001",
            ),
            (
                "technique = \"static\"\nangles-deg = [0, 360]",
                "beams.angles-deg[1]",
                "360",
            ),
            (
                "technique = \"static\"\nangles-deg = []",
                "beams.angles-deg",
                "[]",
            ),
            (
                "technique = \"static\"\nangles-deg = [0]\narcs = 2",
                "beams.arcs",
                "(given)",
            ),
            ("angles-deg = [0]", "beams.angles-deg", "[0.0]"),
        ] {
            let e = err(text);
            assert!(
                e.contains("t.toml") && e.contains(&format!("`{field}` = {value}")),
                "{text}: {e}"
            );
        }
    }
}
