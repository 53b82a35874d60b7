//! Reading dose-volume quantities from voxel doses: the one convention shared by the TPS's
//! reports and by the evaluation crate (`docs/evaluation.md`).
//!
//! With the doses sorted hottest first, `d_1 >= ... >= d_N`, the fraction of the volume
//! receiving at least `d_k` is `k / N`. The dose received by at least a fraction `f` of the
//! volume is read from the points `(k / N, d_k)` with linear interpolation between neighbouring
//! voxels; below `1 / N` it is the hottest voxel, at 1 the coldest.

use crate::structure::Mask;

/// The doses (cGy, x-fastest on the mask's grid) of the voxels `mask` holds, in voxel order.
pub fn doses_in(dose_cgy: &[f32], mask: &Mask) -> Vec<f32> {
    dose_cgy
        .iter()
        .zip(mask.data())
        .filter_map(|(&d, &m)| m.then_some(d))
        .collect()
}

/// Dose received by at least `volume_percent` % of `mask`'s voxels (a coverage such as the
/// prescription target's D95), read with this module's convention.
pub fn coverage_cgy(dose_cgy: &[f32], mask: &Mask, volume_percent: f64) -> f64 {
    let mut inside = doses_in(dose_cgy, mask);
    sort_hottest_first(&mut inside);
    dose_at_fraction(&inside, volume_percent / 100.0)
}

/// The order of [`sort_hottest_first`], for callers that sort in parallel.
pub fn hottest_first(a: &f32, b: &f32) -> std::cmp::Ordering {
    b.total_cmp(a)
}

/// Sorts doses hottest first.
pub fn sort_hottest_first(doses: &mut [f32]) {
    doses.sort_unstable_by(hottest_first);
}

/// Dose received by at least `fraction` (0..=1) of the volume, from doses sorted hottest first;
/// 0 for no doses.
pub fn dose_at_fraction(hottest_first: &[f32], fraction: f64) -> f64 {
    let n = hottest_first.len();
    if n == 0 {
        return 0.0;
    }
    let pos = fraction.clamp(0.0, 1.0) * n as f64;
    if pos <= 1.0 {
        return hottest_first[0] as f64;
    }
    if pos >= n as f64 {
        return hottest_first[n - 1] as f64;
    }
    let k = pos.floor();
    let t = pos - k;
    let lo = hottest_first[k as usize - 1] as f64;
    let hi = hottest_first[k as usize] as f64;
    lo + t * (hi - lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_voxel_ranks() {
        let mut d: Vec<f32> = (1..=10).map(|v| v as f32 * 10.0).collect();
        sort_hottest_first(&mut d);
        assert_eq!(dose_at_fraction(&d, 0.05), 100.0);
        assert_eq!(dose_at_fraction(&d, 0.5), 60.0);
        assert_eq!(dose_at_fraction(&d, 0.55), 55.0);
        assert_eq!(dose_at_fraction(&d, 1.0), 10.0);
        assert_eq!(dose_at_fraction(&[], 0.5), 0.0);
    }
}
