//! The Wilcoxon signed-rank test against scipy.stats.wilcoxon.
//!
//! `fixtures/wilcoxon_reference.json` was produced once by `fixtures/wilcoxon_reference.py`
//! (scipy 1.17.1; the generator is recorded in the file): zero_method="wilcox",
//! correction=False, two-sided, method="approx" for the asymptotic p-value and "exact" for
//! the exact one. It covers n = 30 with continuous data, with ties and zeros (three-decimal
//! CI-like values), with a strong shift, small n without ties, and integer data.

use evaluation::stats::wilcoxon;

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    x: Vec<f64>,
    y: Vec<f64>,
    statistic: f64,
    z: f64,
    p_asymptotic: f64,
    p_exact: Option<f64>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    generator: String,
    cases: Vec<Case>,
}

#[test]
fn matches_scipy_reference_values() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wilcoxon_reference.json"
    ))
    .unwrap();
    let f: Fixture = serde_json::from_str(&text).unwrap();
    assert!(f.generator.starts_with("scipy"));
    assert!(f.cases.len() >= 7);
    for c in &f.cases {
        let w = wilcoxon(&c.x, &c.y).unwrap();
        assert_eq!(w.statistic, c.statistic, "{}: statistic", c.name);
        assert!(
            (w.z - c.z).abs() < 1e-10,
            "{}: z {} vs {}",
            c.name,
            w.z,
            c.z
        );
        let dp = (w.p_asymptotic - c.p_asymptotic).abs();
        assert!(
            dp < 1e-10 && dp <= 1e-8 * c.p_asymptotic,
            "{}: p {} vs {}",
            c.name,
            w.p_asymptotic,
            c.p_asymptotic
        );
        match c.p_exact {
            Some(p) => assert_eq!(w.p_exact, Some(p), "{}: exact p", c.name),
            None => assert!(w.ties, "{}: scipy gave no exact p because of ties", c.name),
        }
    }
}

#[test]
fn cases_with_ties_and_zeros_are_covered() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wilcoxon_reference.json"
    ))
    .unwrap();
    let f: Fixture = serde_json::from_str(&text).unwrap();
    let tied = f
        .cases
        .iter()
        .find(|c| c.name == "n30_rounded_ties_zeros")
        .unwrap();
    let zeros = tied.x.iter().zip(&tied.y).filter(|(a, b)| a == b).count();
    let w = wilcoxon(&tied.x, &tied.y).unwrap();
    assert!(zeros > 0 && w.ties && w.n_nonzero == 30 - zeros);
    assert!(
        f.cases
            .iter()
            .any(|c| c.x.len() == 30 && c.p_exact.is_some())
    );
}
