//! Statistics for comparing planning methods over patients: mean and standard deviation, and
//! the Wilcoxon signed-rank test for paired samples as SPSS reports it.
//!
//! SPSS's "Asymp. Sig. (2-tailed)" for the related-samples Wilcoxon test drops zero
//! differences, ranks the absolute differences with average ranks for ties, uses the normal
//! approximation with the tie-corrected variance
//! `n(n+1)(2n+1)/24 - sum(t^3 - t)/48` and no continuity correction (IBM SPSS Statistics
//! Algorithms, "NPAR TESTS: Wilcoxon Signed-Rank Test"). The exact null distribution is
//! available for small samples without ties. Both are checked against scipy.stats.wilcoxon in
//! `tests/wilcoxon.rs`.

use statrs::distribution::{ContinuousCDF, Normal};

use crate::error::{Error, Result};

/// Sample mean and sample standard deviation (n - 1 in the denominator, as SPSS and the
/// study's "mean +- std" use).
pub fn mean_std(values: &[f64]) -> Result<(f64, f64)> {
    if values.is_empty() {
        return Err(Error::BadSample {
            what: "mean and standard deviation".into(),
            reason: "no values".into(),
        });
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(Error::BadSample {
            what: "mean and standard deviation".into(),
            reason: format!("value {v} is not finite"),
        });
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Ok((mean, std))
}

/// Result of a Wilcoxon signed-rank test.
#[derive(Debug, Clone, PartialEq)]
pub struct Wilcoxon {
    /// Pairs with a non-zero difference (the n the test uses).
    pub n_nonzero: usize,
    /// Sum of ranks of positive differences `y - x`.
    pub w_plus: f64,
    /// Sum of ranks of negative differences.
    pub w_minus: f64,
    /// `min(W+, W-)`, the two-sided statistic.
    pub statistic: f64,
    /// Standard normal deviate of the statistic: `(min(W+, W-) - n(n+1)/4) / sd`.
    pub z: f64,
    /// Two-sided asymptotic p-value (tie-corrected, no continuity correction).
    pub p_asymptotic: f64,
    /// Two-sided exact p-value, when there are no ties and n is at most 50.
    pub p_exact: Option<f64>,
    /// Whether some absolute differences were tied.
    pub ties: bool,
}

/// Wilcoxon signed-rank test of paired samples `x` and `y` (differences `y - x`).
pub fn wilcoxon(x: &[f64], y: &[f64]) -> Result<Wilcoxon> {
    let what = || "Wilcoxon signed-rank test".to_string();
    if x.len() != y.len() {
        return Err(Error::BadSample {
            what: what(),
            reason: format!(
                "paired samples differ in length ({} and {})",
                x.len(),
                y.len()
            ),
        });
    }
    if x.is_empty() {
        return Err(Error::BadSample {
            what: what(),
            reason: "no pairs".into(),
        });
    }
    if let Some((i, _)) = x
        .iter()
        .zip(y)
        .enumerate()
        .find(|(_, (a, b))| !a.is_finite() || !b.is_finite())
    {
        return Err(Error::BadSample {
            what: what(),
            reason: format!(
                "pair {i} holds a value that is not finite ({}, {})",
                x[i], y[i]
            ),
        });
    }
    let d: Vec<f64> = x
        .iter()
        .zip(y)
        .map(|(a, b)| b - a)
        .filter(|d| *d != 0.0)
        .collect();
    let n = d.len();
    if n == 0 {
        return Err(Error::BadSample {
            what: what(),
            reason: "every difference is zero; the test is undefined".into(),
        });
    }
    // Average ranks of |d|, and the tie-group sizes.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| d[a].abs().total_cmp(&d[b].abs()));
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && d[order[j + 1]].abs() == d[order[i]].abs() {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = avg;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let w_plus: f64 = d
        .iter()
        .zip(&ranks)
        .filter(|(v, _)| **v > 0.0)
        .map(|(_, r)| r)
        .sum();
    let nf = n as f64;
    let w_minus = nf * (nf + 1.0) / 2.0 - w_plus;
    let statistic = w_plus.min(w_minus);
    let mean = nf * (nf + 1.0) / 4.0;
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
    let (z, p_asymptotic) = if var > 0.0 {
        let z = (statistic - mean) / var.sqrt();
        let normal = Normal::standard();
        // 2 * P(Z <= -|z|), computed in the tail for accuracy at small p.
        (z, (2.0 * normal.cdf(-z.abs())).min(1.0))
    } else {
        (0.0, 1.0)
    };
    let ties = tie_term > 0.0;
    let p_exact = (!ties && n <= 50).then(|| exact_two_sided(n, statistic));
    Ok(Wilcoxon {
        n_nonzero: n,
        w_plus,
        w_minus,
        statistic,
        z,
        p_asymptotic,
        p_exact,
        ties,
    })
}

/// Two-sided exact p-value of the signed-rank statistic `w = min(W+, W-)` for `n` untied
/// pairs: `2 P(W <= w)` under the null, where each of the 2^n sign patterns is equally likely.
fn exact_two_sided(n: usize, w: f64) -> f64 {
    let max = n * (n + 1) / 2;
    // counts[s] = number of subsets of {1..n} with rank sum s (as f64: 2^50 fits exactly).
    let mut counts = vec![0.0f64; max + 1];
    counts[0] = 1.0;
    for r in 1..=n {
        for s in (r..=max).rev() {
            counts[s] += counts[s - r];
        }
    }
    let total = 2f64.powi(n as i32);
    let w = w.floor() as usize;
    let tail: f64 = counts[..=w.min(max)].iter().sum();
    (2.0 * tail / total).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_samples_are_refused() {
        let e = wilcoxon(&[1.0, 2.0], &[1.0]).unwrap_err().to_string();
        assert!(e.contains("differ in length"), "{e}");
        assert!(
            wilcoxon(&[], &[])
                .unwrap_err()
                .to_string()
                .contains("no pairs")
        );
        let e = wilcoxon(&[1.0, 2.0], &[1.0, 2.0]).unwrap_err().to_string();
        assert!(e.contains("every difference is zero"), "{e}");
        let e = wilcoxon(&[1.0, f64::NAN], &[2.0, 3.0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("pair 1") && e.contains("NaN"), "{e}");
        assert!(mean_std(&[]).is_err());
        assert!(mean_std(&[1.0, f64::INFINITY]).is_err());
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(m, 5.0);
        assert!((s - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn exact_distribution_sums_to_one() {
        // P(W <= max) = 1 so the two-sided p at the median is capped at 1.
        assert_eq!(exact_two_sided(6, 21.0), 1.0);
        // n = 5, W = 0: only the all-positive pattern, 2/32.
        assert!((exact_two_sided(5, 0.0) - 0.0625).abs() < 1e-15);
    }
}
