//! Setting up a plan's beams on a patient: isocentre, arcs, beamlets selected through the
//! target, dose grids, and moving doses and masks between the CT and dose grids.

use rayon::prelude::*;

use super::geometry::{Beam, FluenceMap, P3, beams_of};
use patient_model::{MaskOps, morph};
use tps_api::beams::{Beams, Isocentre};
use tps_api::error::{Error, Result};
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::structure::{Mask, Role};

/// Largest margin around the target that beamlet rays must pass through, mm.
pub const MAX_TARGET_MARGIN_MM: f64 = 30.0;

/// How the native TPS realizes a protocol's [`Beams`]: which beamlets it keeps and the
/// source distance.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamSetup {
    /// Margin around the target that beamlet rays must pass through, mm.
    pub target_margin_mm: f64,
    /// Source-axis distance, mm.
    pub sad_mm: f64,
}

impl Default for BeamSetup {
    /// A 5 mm margin at 1000 mm.
    fn default() -> Self {
        Self {
            target_margin_mm: 5.0,
            sad_mm: 1000.0,
        }
    }
}

impl BeamSetup {
    /// Refuses a value outside its range.
    pub fn check(&self) -> Result<()> {
        let bad = |f: &str, v: String, why: &str| Err(Error::invalid("beam setup", f, v, why));
        // NaN fails every range.
        let outside = |v: f64, lo: f64, hi: f64| !(lo..=hi).contains(&v);
        if outside(self.target_margin_mm, 0.0, MAX_TARGET_MARGIN_MM) {
            return bad(
                "target-margin-mm",
                self.target_margin_mm.to_string(),
                &format!("margins of 0 to {MAX_TARGET_MARGIN_MM} mm are supported"),
            );
        }
        if outside(self.sad_mm, 500.0, 2000.0) {
            return bad(
                "sad-mm",
                self.sad_mm.to_string(),
                "source-axis distances of 500 to 2000 mm are supported (linacs use 1000 mm)",
            );
        }
        Ok(())
    }
}

/// Where `beams` puts the isocentre on `patient`, mm (`origin` and the field name the source
/// in errors).
pub fn isocentre(patient: &Patient, target: &str, beams: &Beams, origin: &str) -> Result<P3> {
    let centroid = |name: &str, field: &str| {
        let s = patient.require(name, origin, field)?;
        s.mask.centroid_mm().ok_or_else(|| Error::EmptyStructure {
            origin: origin.into(),
            name: name.into(),
            operation: "isocentre placement".into(),
        })
    };
    match &beams.isocentre {
        Isocentre::TargetCentroid => centroid(target, "prescription.target"),
        Isocentre::StructureCentroid(s) => centroid(s, "beams.isocentre-structure"),
        Isocentre::Point(p) => Ok(*p),
    }
}

/// The beams of `beams` around its isocentre, each with the beamlets whose rays pass through
/// the target grown by the setup's margin (weights 1). The isocentre must lie inside the body
/// (the structure with role external).
pub fn setup_fields(
    patient: &Patient,
    target: &str,
    beams: &Beams,
    setup: &BeamSetup,
    origin: &str,
) -> Result<Vec<FluenceMap>> {
    beams.check(origin)?;
    setup.check()?;
    let t = patient.require(target, origin, "prescription.target")?;
    let iso = isocentre(patient, target, beams, origin)?;
    // The body by its role, whatever its name ("External", "BODY", "Skin"): the check is
    // never skipped.
    let body = patient.first_with_role(Role::External).ok_or_else(|| {
        Error::invalid(
            "beam setup",
            "body",
            patient.id.clone(),
            format!(
                "patient {} has no structure with role external, so the isocentre cannot be \
                 checked to lie in the body (structures: {})",
                patient.id,
                patient.structure_names().join(", ")
            ),
        )
    })?;
    let g = patient.grid();
    // A point off the CT is outside the body (the nearest voxel could be the body's edge).
    let inside = (0..3).all(|a| {
        let n = g.continuous_index(a, iso[a]);
        (-0.5..g.dims[a] as f64 - 0.5).contains(&n)
    });
    let ijk = [0, 1, 2].map(|a| g.nearest_clamped(a, iso[a]));
    if !inside || !body.mask.get(ijk[0], ijk[1], ijk[2]) {
        return Err(Error::invalid(
            origin,
            "beams.isocentre",
            format!("({:.1}, {:.1}, {:.1}) mm", iso[0], iso[1], iso[2]),
            format!("the isocentre lies outside the body ({})", body.name),
        ));
    }
    let grown = morph::expand(&t.mask, setup.target_margin_mm)?;
    let g = *patient.grid();
    let points: Vec<[f64; 3]> = grown
        .data()
        .iter()
        .enumerate()
        .filter(|(_, v)| **v)
        .map(|(n, _)| {
            let [i, j, k] = g.ijk(n);
            g.position_mm(i, j, k)
        })
        .collect();
    Ok(beams_of(beams, iso, setup.sad_mm)
        .par_iter()
        .map(|b| select_beamlets(b, &points, beams.bixel_mm))
        .collect())
}

/// The beamlets hit by the projections of `points`. Along `a` (leaf travel) a beamlet is
/// centred on the beam axis; along `c` the rows have their edges on multiples of the beamlet
/// size, so with 5 mm beamlets each row is exactly one 5 mm MLC leaf pair (leaf boundaries lie
/// on multiples of the leaf width from the axis) and the sequencer reads a leaf's profile
/// without mixing rows.
fn select_beamlets(beam: &Beam, points: &[[f64; 3]], bixel: f64) -> FluenceMap {
    let idx: Vec<(i64, i64)> = points
        .iter()
        .map(|&p| {
            let b = beam.bev(p);
            (
                (b.a / bixel + 0.5).floor() as i64,
                (b.c / bixel).floor() as i64,
            )
        })
        .collect();
    let (i0, i1) = idx
        .iter()
        .fold((i64::MAX, i64::MIN), |(a, b), &(i, _)| (a.min(i), b.max(i)));
    let (j0, j1) = idx
        .iter()
        .fold((i64::MAX, i64::MIN), |(a, b), &(_, j)| (a.min(j), b.max(j)));
    let dims = [(i1 - i0 + 1) as usize, (j1 - j0 + 1) as usize];
    let mut weights = vec![0.0; dims[0] * dims[1]];
    for (i, j) in idx {
        weights[(i - i0) as usize + dims[0] * (j - j0) as usize] = 1.0;
    }
    FluenceMap {
        beam: *beam,
        bixel_mm: bixel,
        origin: [i0 as f64 * bixel, (j0 as f64 + 0.5) * bixel],
        dims,
        weights,
    }
}

/// A dose grid of `spacing_mm` covering the bounding box of `mask`.
pub fn dose_grid_around(mask: &Mask, spacing_mm: f64) -> Result<Grid> {
    if !(2.0..=5.0).contains(&spacing_mm) {
        return Err(Error::invalid(
            "dose grid",
            "spacing-mm",
            spacing_mm.to_string(),
            "dose grids of 2 to 5 mm are supported",
        ));
    }
    let bb = mask.bounding_box().ok_or_else(|| Error::EmptyStructure {
        origin: "dose grid".into(),
        name: "body".into(),
        operation: "dose grid placement".into(),
    })?;
    Grid::covering(bb.min_mm, bb.max_mm, [spacing_mm; 3])
}

pub use patient_model::resample::{resample_dose, resample_mask};
