//! Cohort specifications: which synthetic patients exist, how they vary, and how they split
//! into customization (training) and test sets.
//!
//! A cohort file is TOML with unknown keys refused. It is read into a `*Wire` struct that
//! mirrors the file, then checked into a [`CohortSpec`]; nothing downstream sees an unchecked
//! value. Every check failure names the file, the field and the value.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use tps_api::error::{Error, Result, parse_toml};
use tps_api::patient::Patient;

use crate::pelvis::{self, AnatomyRanges, PelvisParams};
use crate::rng::{SplitMix64, mix64};

/// The anatomy generator a cohort uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Site {
    /// Female pelvis with a cervical-cancer target (uterus, cervix, upper vagina, parametria,
    /// pelvic nodes).
    Cervix,
    /// The same pelvis with a prostate-cancer target (prostate and proximal seminal
    /// vesicles) in place of the gynaecological organs.
    Prostate,
}

impl Site {
    /// The name a cohort file uses.
    pub fn name(self) -> &'static str {
        match self {
            Site::Cervix => "cervix",
            Site::Prostate => "prostate",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct CohortWire {
    name: String,
    site: Site,
    seed: u64,
    patients: usize,
    voxel_mm: [f64; 3],
    training: Vec<usize>,
    #[serde(default)]
    inguinal: Vec<usize>,
    anatomy: AnatomyWire,
}

/// Ranges `[low, high]` the patients' anatomy is drawn from, uniformly, per patient.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct AnatomyWire {
    body_half_width_mm: [f64; 2],
    body_half_depth_mm: [f64; 2],
    subcutaneous_fat_mm: [f64; 2],
    pelvis_scale: [f64; 2],
    bladder_cc: [f64; 2],
    rectum_radius_mm: [f64; 2],
    rectal_gas_probability: f64,
    #[serde(default)]
    uterus_length_mm: Option<[f64; 2]>,
    #[serde(default)]
    anteversion_deg: Option<[f64; 2]>,
    organ_shift_mm: f64,
    #[serde(default)]
    nodal_top_mm: Option<[f64; 2]>,
    #[serde(default)]
    nodal_margin_mm: Option<f64>,
    ptv_margin_mm: f64,
    #[serde(default)]
    prostate_cc: Option<[f64; 2]>,
}

/// Which part of the study a patient belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Used to customize the advisor (few-shot examples).
    Training,
    /// Planned automatically and evaluated.
    Test,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Training => "training",
            Split::Test => "test",
        })
    }
}

/// A checked cohort specification.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortSpec {
    /// Where it was read from (for messages).
    pub origin: PathBuf,
    /// Cohort name, used in patient ids.
    pub name: String,
    /// Anatomy generator.
    pub site: Site,
    /// Master seed; each patient's anatomy is drawn from a seed derived from it and the id.
    pub seed: u64,
    /// Number of patients; ids are 1..=patients.
    pub patients: usize,
    /// CT voxel size, mm.
    pub voxel_mm: [f64; 3],
    /// Ids of the customization (training) patients.
    pub training: Vec<usize>,
    /// Ids of test patients whose PTV extends to the inguinal nodes.
    pub inguinal: Vec<usize>,
    /// Anatomical variation.
    pub anatomy: AnatomyRanges,
}

fn check_range(origin: &str, field: &str, r: [f64; 2], min: f64, max: f64) -> Result<()> {
    if !(r[0].is_finite() && r[1].is_finite() && r[0] <= r[1] && r[0] >= min && r[1] <= max) {
        return Err(Error::invalid(
            origin,
            field,
            format!("[{}, {}]", r[0], r[1]),
            format!("expected [low, high] with {min} <= low <= high <= {max}"),
        ));
    }
    Ok(())
}

fn check_value(origin: &str, field: &str, v: f64, min: f64, max: f64) -> Result<()> {
    if !(v.is_finite() && v >= min && v <= max) {
        return Err(Error::invalid(
            origin,
            field,
            v.to_string(),
            format!("expected a value in [{min}, {max}]"),
        ));
    }
    Ok(())
}

impl CohortSpec {
    /// Reads and checks a cohort file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and checks cohort TOML that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let wire: CohortWire = parse_toml(text, path)?;
        Self::check(wire, path)
    }

    fn check(w: CohortWire, path: &Path) -> Result<Self> {
        let o = path.display().to_string();
        let o = o.as_str();
        if w.name.trim().is_empty() || w.name.contains(['/', '\\']) {
            return Err(Error::invalid(
                o,
                "name",
                format!("{:?}", w.name),
                "cohort name must be non-empty and contain no path separators",
            ));
        }
        if w.patients == 0 || w.patients > 999 {
            return Err(Error::invalid(
                o,
                "patients",
                w.patients.to_string(),
                "expected 1 to 999 patients",
            ));
        }
        for (a, &v) in w.voxel_mm.iter().enumerate() {
            check_value(o, &format!("voxel-mm[{a}]"), v, 0.5, 10.0)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (n, &id) in w.training.iter().enumerate() {
            if id == 0 || id > w.patients {
                return Err(Error::invalid(
                    o,
                    format!("training[{n}]"),
                    id.to_string(),
                    format!("patient ids run from 1 to {}", w.patients),
                ));
            }
            if !seen.insert(id) {
                return Err(Error::invalid(
                    o,
                    format!("training[{n}]"),
                    id.to_string(),
                    "patient listed twice",
                ));
            }
        }
        if w.training.len() >= w.patients {
            return Err(Error::invalid(
                o,
                "training",
                format!("{:?}", w.training),
                "at least one patient must be left for testing",
            ));
        }
        let mut seen_ing = std::collections::BTreeSet::new();
        for (n, &id) in w.inguinal.iter().enumerate() {
            let field = format!("inguinal[{n}]");
            if id == 0 || id > w.patients {
                return Err(Error::invalid(
                    o,
                    field,
                    id.to_string(),
                    format!("patient ids run from 1 to {}", w.patients),
                ));
            }
            if seen.contains(&id) {
                return Err(Error::invalid(
                    o,
                    field,
                    id.to_string(),
                    "inguinal variants are test patients; this id is in `training`",
                ));
            }
            if !seen_ing.insert(id) {
                return Err(Error::invalid(
                    o,
                    field,
                    id.to_string(),
                    "patient listed twice",
                ));
            }
        }
        let a = &w.anatomy;
        check_range(
            o,
            "anatomy.body-half-width-mm",
            a.body_half_width_mm,
            120.0,
            260.0,
        )?;
        check_range(
            o,
            "anatomy.body-half-depth-mm",
            a.body_half_depth_mm,
            80.0,
            180.0,
        )?;
        check_range(
            o,
            "anatomy.subcutaneous-fat-mm",
            a.subcutaneous_fat_mm,
            3.0,
            60.0,
        )?;
        check_range(o, "anatomy.pelvis-scale", a.pelvis_scale, 0.8, 1.2)?;
        check_range(o, "anatomy.bladder-cc", a.bladder_cc, 50.0, 800.0)?;
        check_range(o, "anatomy.rectum-radius-mm", a.rectum_radius_mm, 8.0, 30.0)?;
        check_value(
            o,
            "anatomy.rectal-gas-probability",
            a.rectal_gas_probability,
            0.0,
            1.0,
        )?;
        // Each site-specific field belongs to one site: required there, refused elsewhere.
        let site_fields = [
            (
                "anatomy.uterus-length-mm",
                Site::Cervix,
                a.uterus_length_mm.is_some(),
            ),
            (
                "anatomy.anteversion-deg",
                Site::Cervix,
                a.anteversion_deg.is_some(),
            ),
            (
                "anatomy.nodal-top-mm",
                Site::Cervix,
                a.nodal_top_mm.is_some(),
            ),
            (
                "anatomy.nodal-margin-mm",
                Site::Cervix,
                a.nodal_margin_mm.is_some(),
            ),
            (
                "anatomy.prostate-cc",
                Site::Prostate,
                a.prostate_cc.is_some(),
            ),
            ("inguinal", Site::Cervix, !w.inguinal.is_empty()),
        ];
        for (field, site, given) in site_fields {
            let required = field != "inguinal";
            if site == w.site && required && !given {
                return Err(Error::invalid(
                    o,
                    field,
                    "missing",
                    format!("required for site {}", site.name()),
                ));
            }
            if site != w.site && given {
                return Err(Error::invalid(
                    o,
                    field,
                    "given",
                    format!("only for site {}", site.name()),
                ));
            }
        }
        // Placeholders for prostate cohorts (drawn, not used).
        let uterus_length_mm = a.uterus_length_mm.unwrap_or([70.0, 70.0]);
        let anteversion_deg = a.anteversion_deg.unwrap_or([45.0, 45.0]);
        let nodal_top_mm = a.nodal_top_mm.unwrap_or([160.0, 160.0]);
        let nodal_margin_mm = a.nodal_margin_mm.unwrap_or(7.0);
        check_range(o, "anatomy.uterus-length-mm", uterus_length_mm, 40.0, 120.0)?;
        check_range(o, "anatomy.anteversion-deg", anteversion_deg, 0.0, 90.0)?;
        check_value(o, "anatomy.organ-shift-mm", a.organ_shift_mm, 0.0, 20.0)?;
        check_range(o, "anatomy.nodal-top-mm", nodal_top_mm, 100.0, 200.0)?;
        check_value(o, "anatomy.nodal-margin-mm", nodal_margin_mm, 0.0, 20.0)?;
        check_value(o, "anatomy.ptv-margin-mm", a.ptv_margin_mm, 0.0, 20.0)?;
        if let Some(r) = a.prostate_cc {
            check_range(o, "anatomy.prostate-cc", r, 10.0, 150.0)?;
        }
        // The body must hold the bony pelvis plus its fat at the iliac crests, where the body
        // is narrowest relative to the bones (93% of its hip width, crests at 124 mm x scale).
        if 0.93 * a.body_half_width_mm[0] - a.subcutaneous_fat_mm[1] < 115.0 * a.pelvis_scale[1] {
            return Err(Error::invalid(
                o,
                "anatomy.body-half-width-mm",
                format!("[{}, {}]", a.body_half_width_mm[0], a.body_half_width_mm[1]),
                "the narrowest body minus the thickest fat is too narrow for the largest pelvis",
            ));
        }
        Ok(Self {
            origin: path.to_path_buf(),
            name: w.name,
            site: w.site,
            seed: w.seed,
            patients: w.patients,
            voxel_mm: w.voxel_mm,
            training: w.training,
            inguinal: w.inguinal,
            anatomy: AnatomyRanges {
                body_half_width_mm: a.body_half_width_mm,
                body_half_depth_mm: a.body_half_depth_mm,
                subcutaneous_fat_mm: a.subcutaneous_fat_mm,
                pelvis_scale: a.pelvis_scale,
                bladder_cc: a.bladder_cc,
                rectum_radius_mm: a.rectum_radius_mm,
                rectal_gas_probability: a.rectal_gas_probability,
                uterus_length_mm,
                anteversion_deg,
                organ_shift_mm: a.organ_shift_mm,
                nodal_top_mm,
                nodal_margin_mm,
                ptv_margin_mm: a.ptv_margin_mm,
                prostate_cc: a.prostate_cc,
            },
        })
    }

    /// All patient ids, 1..=patients.
    pub fn ids(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.patients
    }

    /// Test patient ids in order.
    pub fn test_ids(&self) -> Vec<usize> {
        self.ids()
            .filter(|id| !self.training.contains(id))
            .collect()
    }

    /// Training or test.
    pub fn split(&self, id: usize) -> Split {
        if self.training.contains(&id) {
            Split::Training
        } else {
            Split::Test
        }
    }

    /// The patient id string, e.g. `cervix-35/p07`.
    pub fn patient_name(&self, id: usize) -> String {
        format!("{}/p{id:02}", self.name)
    }

    fn check_id(&self, id: usize) -> Result<()> {
        if id == 0 || id > self.patients {
            return Err(Error::invalid(
                self.origin.display().to_string(),
                "patient",
                id.to_string(),
                format!("this cohort has patients 1 to {}", self.patients),
            ));
        }
        Ok(())
    }

    /// The anatomy parameters of patient `id`, drawn deterministically from the cohort seed.
    pub fn params(&self, id: usize) -> Result<PelvisParams> {
        self.check_id(id)?;
        let mut rng = SplitMix64::new(mix64(self.seed ^ mix64(id as u64)));
        Ok(PelvisParams::draw(
            &self.anatomy,
            &mut rng,
            self.inguinal.contains(&id),
        ))
    }

    /// Generates patient `id`.
    pub fn generate(&self, id: usize) -> Result<Patient> {
        let params = self.params(id)?;
        match self.site {
            Site::Cervix | Site::Prostate => {
                pelvis::generate(&self.patient_name(id), &params, self.voxel_mm)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SMALL: &str = r#"
name = "t"
site = "cervix"
seed = 1
patients = 4
voxel-mm = [3.0, 3.0, 3.0]
training = [1]
inguinal = [3]
[anatomy]
body-half-width-mm = [165.0, 185.0]
body-half-depth-mm = [105.0, 120.0]
subcutaneous-fat-mm = [12.0, 25.0]
pelvis-scale = [0.95, 1.05]
bladder-cc = [150.0, 500.0]
rectum-radius-mm = [14.0, 18.0]
rectal-gas-probability = 0.5
uterus-length-mm = [65.0, 85.0]
anteversion-deg = [40.0, 70.0]
organ-shift-mm = 5.0
nodal-top-mm = [150.0, 175.0]
nodal-margin-mm = 7.0
ptv-margin-mm = 7.0
"#;

    fn parse(text: &str) -> Result<CohortSpec> {
        CohortSpec::parse(text, Path::new("cohort.toml"))
    }

    #[test]
    fn valid_spec_parses_and_splits() {
        let c = parse(SMALL).unwrap();
        assert_eq!(c.test_ids(), vec![2, 3, 4]);
        assert_eq!(c.split(1), Split::Training);
        assert_eq!(c.patient_name(3), "t/p03");
        assert_ne!(c.params(2).unwrap(), c.params(3).unwrap());
        assert_eq!(c.params(2).unwrap(), c.params(2).unwrap());
        assert!(c.params(3).unwrap().inguinal);
    }

    #[test]
    fn unknown_keys_are_refused_at_top_level_and_in_sections() {
        let e = parse(&SMALL.replace("seed = 1", "seed = 1\ncolour = 3")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("cohort.toml") && msg.contains("colour"),
            "{msg}"
        );
        let e = parse(&SMALL.replace("organ-shift-mm", "organ-shfit-mm")).unwrap_err();
        assert!(e.to_string().contains("organ-shfit-mm"), "{e}");
    }

    #[test]
    fn bad_values_name_file_field_and_value() {
        let cases = [
            (
                "ptv-margin-mm = 7.0",
                "ptv-margin-mm = -2.0",
                "anatomy.ptv-margin-mm",
                "-2",
            ),
            ("training = [1]", "training = [9]", "training[0]", "9"),
            ("inguinal = [3]", "inguinal = [1]", "inguinal[0]", "1"),
            (
                "bladder-cc = [150.0, 500.0]",
                "bladder-cc = [500.0, 150.0]",
                "anatomy.bladder-cc",
                "[500, 150]",
            ),
            (
                "voxel-mm = [3.0, 3.0, 3.0]",
                "voxel-mm = [3.0, 0.0, 3.0]",
                "voxel-mm[1]",
                "0",
            ),
            ("site = \"cervix\"", "site = \"lung\"", "site", "lung"),
        ];
        for (from, to, field, value) in cases {
            let e = parse(&SMALL.replace(from, to)).unwrap_err().to_string();
            assert!(
                e.contains("cohort.toml") && e.contains(field) && e.contains(value),
                "{to}: {e}"
            );
        }
    }

    #[test]
    fn site_fields_belong_to_their_site() {
        // A cervix cohort needs the gynaecological ranges and takes no prostate volume.
        let e = parse(&SMALL.replace("uterus-length-mm = [65.0, 85.0]\n", ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("anatomy.uterus-length-mm") && e.contains("required for site cervix"),
            "{e}"
        );
        let e = parse(&SMALL.replace(
            "ptv-margin-mm = 7.0",
            "ptv-margin-mm = 7.0\nprostate-cc = [30.0, 50.0]",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("anatomy.prostate-cc"), "{e}");
        // A prostate cohort is the reverse, and has no inguinal patients.
        let prostate = SMALL
            .replace("site = \"cervix\"", "site = \"prostate\"")
            .replace("inguinal = [3]\n", "")
            .replace("uterus-length-mm = [65.0, 85.0]\n", "")
            .replace("anteversion-deg = [40.0, 70.0]\n", "")
            .replace("nodal-top-mm = [150.0, 175.0]\n", "")
            .replace("nodal-margin-mm = 7.0\n", "")
            + "prostate-cc = [30.0, 50.0]\n";
        let c = parse(&prostate).unwrap();
        assert_eq!(c.site, Site::Prostate);
        let cc = c.params(2).unwrap().prostate_cc.unwrap();
        assert!((30.0..=50.0).contains(&cc), "{cc}");
        for (from, to, field) in [
            ("prostate-cc = [30.0, 50.0]\n", "", "anatomy.prostate-cc"),
            (
                "ptv-margin-mm",
                "nodal-margin-mm = 7.0\nptv-margin-mm",
                "anatomy.nodal-margin-mm",
            ),
            (
                "training = [1]",
                "training = [1]\ninguinal = [3]",
                "inguinal",
            ),
        ] {
            let e = parse(&prostate.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(field), "{to}: {e}");
        }
        // The prostate volume is drawn after everything else, so a cervix patient's draws are
        // those it had before the prostate site existed: the same seed gives the same shared
        // anatomy in both sites, up to the last draw before the prostate's.
        let cervix = parse(SMALL).unwrap().params(2).unwrap();
        assert_eq!(cervix.prostate_cc, None);
        let male = parse(&prostate).unwrap().params(2).unwrap();
        assert_eq!(
            (
                cervix.noise_seed,
                cervix.body_half_width_mm,
                cervix.bladder_cc,
                cervix.rectum_radius_mm,
                cervix.bladder_shift_mm,
                cervix.femur_asymmetry
            ),
            (
                male.noise_seed,
                male.body_half_width_mm,
                male.bladder_cc,
                male.rectum_radius_mm,
                male.bladder_shift_mm,
                male.femur_asymmetry
            )
        );
    }

    #[test]
    fn unknown_patient_id_is_an_error() {
        let c = parse(SMALL).unwrap();
        let e = c.params(5).unwrap_err().to_string();
        assert!(e.contains("patient") && e.contains('5'), "{e}");
    }
}
