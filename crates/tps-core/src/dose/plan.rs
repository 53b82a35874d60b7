//! Setting up a plan's beams on a patient: isocentre, arcs, beamlets selected through the
//! target, dose grids, and moving doses and masks between the CT and dose grids.

use rayon::prelude::*;

use super::geometry::{Beam, FluenceMap, arc_beams};
use patient_model::{MaskOps, morph};
use tps_api::error::{Error, Result};
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::structure::{Mask, Role};

/// Most arcs a setup may have (the study used two).
pub const MAX_ARCS: usize = 8;
/// Most static beams per arc.
pub const MAX_BEAMS_PER_ARC: usize = 180;
/// Smallest beamlet side, mm: finer than any MLC leaf, and the beamlet count grows with the
/// inverse square.
pub const MIN_BIXEL_MM: f64 = 2.0;
/// Largest beamlet side, mm.
pub const MAX_BIXEL_MM: f64 = 20.0;
/// Largest margin around the target that beamlet rays must pass through, mm.
pub const MAX_TARGET_MARGIN_MM: f64 = 30.0;

/// Beam arrangement of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamSetup {
    /// Number of full arcs.
    pub arcs: usize,
    /// Static beams per arc.
    pub beams_per_arc: usize,
    /// Beamlet side at the isocentre, mm.
    pub bixel_mm: f64,
    /// Margin around the target that beamlet rays must pass through, mm.
    pub target_margin_mm: f64,
    /// Source-axis distance, mm.
    pub sad_mm: f64,
}

impl Default for BeamSetup {
    /// The study's two 360-degree arcs as 2 x 18 static beams (interleaved: one beam every
    /// 10 degrees), 5 mm beamlets, 5 mm margin.
    fn default() -> Self {
        Self {
            arcs: 2,
            beams_per_arc: 18,
            bixel_mm: 5.0,
            target_margin_mm: 5.0,
            sad_mm: 1000.0,
        }
    }
}

impl BeamSetup {
    fn check(&self) -> Result<()> {
        let bad = |f: &str, v: String, why: &str| Err(Error::invalid("beam setup", f, v, why));
        if self.arcs == 0 || self.beams_per_arc == 0 {
            return bad(
                "arcs x beams-per-arc",
                format!("{} x {}", self.arcs, self.beams_per_arc),
                "need at least one beam",
            );
        }
        if self.arcs > MAX_ARCS || self.beams_per_arc > MAX_BEAMS_PER_ARC {
            return bad(
                "arcs x beams-per-arc",
                format!("{} x {}", self.arcs, self.beams_per_arc),
                &format!(
                    "at most {MAX_ARCS} arcs of {MAX_BEAMS_PER_ARC} beams (one every 2 degrees)"
                ),
            );
        }
        // NaN fails every range.
        let outside = |v: f64, lo: f64, hi: f64| !(lo..=hi).contains(&v);
        if outside(self.bixel_mm, MIN_BIXEL_MM, MAX_BIXEL_MM) {
            return bad(
                "bixel-mm",
                self.bixel_mm.to_string(),
                &format!(
                    "beamlets of {MIN_BIXEL_MM} to {MAX_BIXEL_MM} mm are supported (MLC leaves \
                     are 2.5 to 10 mm wide)"
                ),
            );
        }
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

/// Beams around the target's centroid, each with the beamlets whose rays pass through the
/// target grown by the setup's margin (weights 1). The isocentre must lie inside the body.
pub fn setup_fields(patient: &Patient, target: &str, setup: &BeamSetup) -> Result<Vec<FluenceMap>> {
    setup.check()?;
    let t = patient.require(target, "beam setup", "target")?;
    let iso = t.mask.centroid_mm().ok_or_else(|| Error::EmptyStructure {
        origin: "beam setup".into(),
        name: target.into(),
        operation: "isocentre placement".into(),
    })?;
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
    let ijk = [0, 1, 2].map(|a| g.nearest_clamped(a, iso[a]));
    if !body.mask.get(ijk[0], ijk[1], ijk[2]) {
        return Err(Error::invalid(
            "beam setup",
            "isocentre",
            format!("{iso:?}"),
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
    let beams = arc_beams(iso, setup.sad_mm, setup.arcs, setup.beams_per_arc);
    Ok(beams
        .par_iter()
        .map(|b| select_beamlets(b, &points, setup.bixel_mm))
        .collect())
}

/// The beamlets (on a lattice aligned with the beam axis) hit by the projections of `points`.
fn select_beamlets(beam: &Beam, points: &[[f64; 3]], bixel: f64) -> FluenceMap {
    let idx: Vec<(i64, i64)> = points
        .iter()
        .map(|&p| {
            let b = beam.bev(p);
            (
                (b.a / bixel + 0.5).floor() as i64,
                (b.c / bixel + 0.5).floor() as i64,
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
        origin: [i0 as f64 * bixel, j0 as f64 * bixel],
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

/// A mask sampled at the voxel centres of another grid (nearest voxel; outside is false).
pub fn resample_mask(mask: &Mask, to: &Grid) -> Vec<bool> {
    let from = mask.grid();
    (0..to.len())
        .into_par_iter()
        .map(|n| {
            let [i, j, k] = to.ijk(n);
            let p = to.position_mm(i, j, k);
            let c: Vec<f64> = (0..3)
                .map(|a| from.continuous_index(a, p[a]).round())
                .collect();
            if (0..3).any(|a| c[a] < 0.0 || c[a] > (from.dims[a] - 1) as f64) {
                return false;
            }
            mask.get(c[0] as usize, c[1] as usize, c[2] as usize)
        })
        .collect()
}

/// A dose on `from` trilinearly interpolated at the voxel centres of `to` (zero outside).
pub fn resample_dose(dose: &[f32], from: &Grid, to: &Grid) -> Vec<f32> {
    (0..to.len())
        .into_par_iter()
        .map(|n| {
            let [i, j, k] = to.ijk(n);
            let p = to.position_mm(i, j, k);
            let c: [f64; 3] = [0, 1, 2].map(|a| from.continuous_index(a, p[a]));
            if (0..3).any(|a| c[a] < -0.5 || c[a] > from.dims[a] as f64 - 0.5) {
                return 0.0;
            }
            let base: [usize; 3] = [0, 1, 2]
                .map(|a| (c[a].floor().max(0.0) as usize).min(from.dims[a].saturating_sub(2)));
            let f: [f64; 3] = [0, 1, 2].map(|a| {
                if from.dims[a] == 1 {
                    0.0
                } else {
                    (c[a] - base[a] as f64).clamp(0.0, 1.0)
                }
            });
            let mut v = 0.0;
            for corner in 0..8 {
                let mut w = 1.0;
                let mut ijk = [0usize; 3];
                for a in 0..3 {
                    let hi = corner >> a & 1 == 1;
                    ijk[a] = (base[a] + hi as usize).min(from.dims[a] - 1);
                    w *= if hi { f[a] } else { 1.0 - f[a] };
                }
                if w > 0.0 {
                    v += w * dose[from.index(ijk[0], ijk[1], ijk[2])] as f64;
                }
            }
            v as f32
        })
        .collect()
}
