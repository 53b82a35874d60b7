//! Dose-volume histograms and the dose and volume metrics read from them.
//!
//! Conventions (every voxel of a structure has the same volume; no partial voxels):
//!
//! - Doses of the structure's voxels are sorted from hottest to coldest, `d_1 >= ... >= d_N`.
//!   The fraction of the volume receiving at least `d_k` is `k / N`.
//! - `Dx%` is the dose received by at least x% of the volume, read from the points
//!   `(k / N, d_k)` with linear interpolation between neighbouring voxels; below `1 / N` it
//!   is `d_1` (the hottest voxel), at 100% it is `d_N`.
//! - `Dxcc` is the same with the volume in cc (`x / (N v)` as the fraction, `v` the voxel
//!   volume); a request beyond the structure's volume gives `d_N`.
//! - `Dmax` is the hottest voxel, `Dmin` the coldest, `Dmean` the voxel average. (Some
//!   systems report D0.03cc or D2% as "max"; ask for those by name when wanted.)
//! - `Vx` is the percentage of the volume receiving at least x cGy.
//! - The cumulative curve gives, at each dose of a regular grid, the percentage of the volume
//!   receiving at least that dose; the differential curve gives the volume (cc) per dose bin.

use rayon::prelude::*;
use tps_api::dose_volume::{hottest_first, sort_hottest_first};
use tps_api::structure::Mask;

use crate::error::{Error, Result};

/// The doses of one structure, sorted hottest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Dvh {
    /// Structure name.
    pub structure: String,
    voxel_cc: f64,
    desc: Vec<f32>,
    mean: f64,
}

impl Dvh {
    /// The DVH of `mask` in `dose_cgy` (same grid, x-fastest). An empty structure or a
    /// non-finite dose inside it is an error.
    pub fn new(structure: &str, dose_cgy: &[f32], mask: &Mask) -> Result<Self> {
        if dose_cgy.len() != mask.grid().len() {
            return Err(Error::Mismatch(format!(
                "dose has {} voxels, structure {structure} lives on a grid of {}",
                dose_cgy.len(),
                mask.grid().len()
            )));
        }
        let mut desc: Vec<f32> = mask
            .data()
            .par_iter()
            .zip(dose_cgy.par_iter())
            .filter_map(|(&m, &d)| m.then_some(d))
            .collect();
        if desc.is_empty() {
            return Err(Error::Mismatch(format!("structure {structure} is empty")));
        }
        if let Some(bad) = desc.iter().find(|d| !d.is_finite()) {
            return Err(Error::Mismatch(format!(
                "dose in structure {structure} holds {bad}"
            )));
        }
        if desc.len() > 200_000 {
            desc.par_sort_unstable_by(hottest_first);
        } else {
            sort_hottest_first(&mut desc);
        }
        let mean = desc.iter().map(|&d| d as f64).sum::<f64>() / desc.len() as f64;
        Ok(Self {
            structure: structure.to_string(),
            voxel_cc: mask.grid().voxel_volume_cc(),
            desc,
            mean,
        })
    }

    /// From doses directly (voxel volume `voxel_cc`); used by tests and resampled data.
    pub fn from_doses(structure: &str, mut doses: Vec<f32>, voxel_cc: f64) -> Result<Self> {
        if doses.is_empty() || doses.iter().any(|d| !d.is_finite()) {
            return Err(Error::Mismatch(format!(
                "structure {structure}: no doses, or a dose that is not finite"
            )));
        }
        sort_hottest_first(&mut doses);
        let mean = doses.iter().map(|&d| d as f64).sum::<f64>() / doses.len() as f64;
        Ok(Self {
            structure: structure.to_string(),
            voxel_cc,
            desc: doses,
            mean,
        })
    }

    /// Number of voxels.
    pub fn voxels(&self) -> usize {
        self.desc.len()
    }

    /// Volume, cc.
    pub fn volume_cc(&self) -> f64 {
        self.desc.len() as f64 * self.voxel_cc
    }

    /// Hottest voxel, cGy.
    pub fn max(&self) -> f64 {
        self.desc[0] as f64
    }

    /// Coldest voxel, cGy.
    pub fn min(&self) -> f64 {
        self.desc[self.desc.len() - 1] as f64
    }

    /// Mean dose, cGy.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Dose received by at least `fraction` (0..=1) of the volume, cGy.
    pub fn dose_at_fraction(&self, fraction: f64) -> f64 {
        tps_api::dose_volume::dose_at_fraction(&self.desc, fraction)
    }

    /// `Dx%`: dose received by at least `percent` % of the volume, cGy.
    pub fn d_percent(&self, percent: f64) -> f64 {
        self.dose_at_fraction(percent / 100.0)
    }

    /// `Dxcc`: dose received by at least `cc` of the volume, cGy.
    pub fn d_cc(&self, cc: f64) -> f64 {
        self.dose_at_fraction(cc / self.volume_cc())
    }

    /// `Vx`: percentage of the volume receiving at least `dose_cgy`.
    pub fn v_percent(&self, dose_cgy: f64) -> f64 {
        // desc is sorted descending: count the prefix >= dose.
        let k = self.desc.partition_point(|&d| d as f64 >= dose_cgy);
        100.0 * k as f64 / self.desc.len() as f64
    }

    /// Cumulative DVH on doses `0, bin, 2 bin, ...` up to the maximum: (dose cGy, volume %).
    pub fn cumulative(&self, bin_cgy: f64) -> Vec<(f64, f64)> {
        let bin = bin_cgy.max(1e-6);
        let steps = (self.max() / bin).ceil() as usize + 1;
        (0..=steps)
            .map(|s| {
                let d = s as f64 * bin;
                (d, self.v_percent(d))
            })
            .collect()
    }

    /// Differential DVH: (lower bin edge cGy, cc in `[edge, edge + bin)`).
    pub fn differential(&self, bin_cgy: f64) -> Vec<(f64, f64)> {
        let bin = bin_cgy.max(1e-6);
        let nbins = (self.max() / bin).floor() as usize + 1;
        let mut cc = vec![0.0; nbins];
        for &d in &self.desc {
            let b = ((d as f64 / bin).floor().max(0.0) as usize).min(nbins - 1);
            cc[b] += self.voxel_cc;
        }
        cc.into_iter()
            .enumerate()
            .map(|(b, v)| (b as f64 * bin, v))
            .collect()
    }
}

/// Paddick conformity index `TV_RI^2 / (TV * V_RI)` (Paddick, J Neurosurg 93 Suppl 3:219-222,
/// 2000; Eq. 1 of the study) with the reference isodose `reference_cgy`: `TV` the target
/// volume, `V_RI` the volume inside `body` receiving at least the reference dose, `TV_RI` their
/// overlap. Returns 0 when nothing reaches the reference dose.
pub fn paddick_ci(dose_cgy: &[f32], target: &Mask, body: &Mask, reference_cgy: f64) -> Result<f64> {
    if dose_cgy.len() != target.grid().len() || target.grid() != body.grid() {
        return Err(Error::Mismatch(
            "dose, target and body must share one grid".into(),
        ));
    }
    let r = reference_cgy as f32;
    let (tv, v_ri, tv_ri) = dose_cgy
        .par_iter()
        .zip(target.data().par_iter())
        .zip(body.data().par_iter())
        .map(|((&d, &t), &b)| {
            let hot = d >= r && (b || t);
            (t as usize, hot as usize, (hot && t) as usize)
        })
        .reduce(|| (0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    if tv == 0 {
        return Err(Error::Mismatch("target is empty".into()));
    }
    if v_ri == 0 {
        return Ok(0.0);
    }
    Ok((tv_ri as f64).powi(2) / (tv as f64 * v_ri as f64))
}

/// Homogeneity index `(D2 - D98) / D50` of a target (Eq. 2 of the study; ICRU Report 83).
pub fn homogeneity_index(target: &Dvh) -> f64 {
    let d50 = target.d_percent(50.0);
    if d50 == 0.0 {
        return f64::NAN;
    }
    (target.d_percent(2.0) - target.d_percent(98.0)) / d50
}
