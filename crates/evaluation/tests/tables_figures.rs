//! Study tables and figures on small known samples.

use evaluation::figures::{self, DifferencePlot, DvhComparison, MethodBoxPlot};
use evaluation::stats::{mean_std, wilcoxon};
use evaluation::tables::{self, MethodValues, MetricColumn};
use evaluation::{Metric, dvh::Dvh};

fn columns() -> Vec<MetricColumn> {
    ["PTV: D98", "Bladder: D50", "CI", "MU"]
        .iter()
        .map(|m| MetricColumn::for_metric(&Metric::parse(m, "t").unwrap()))
        .collect()
}

fn methods() -> Vec<MethodValues> {
    let manual = MethodValues {
        name: "manual".into(),
        values: vec![
            vec![3549.0, 3551.0, 3548.0, 3550.0, 3552.0, 3547.0],
            vec![3031.0, 2800.0, 3300.0, 2950.0, 3100.0, 3010.0],
            vec![0.926, 0.920, 0.931, 0.925, 0.928, 0.922],
            vec![850.0, 870.0, 800.0, 910.0, 845.0, 860.0],
        ],
    };
    let llm = MethodValues {
        name: "llm".into(),
        values: vec![
            vec![3551.0, 3550.0, 3552.0, 3549.0, 3553.0, 3550.0],
            vec![3087.0, 2790.0, 3290.0, 3010.0, 3050.0, 3030.0],
            vec![0.929, 0.925, 0.930, 0.929, 0.931, 0.926],
            vec![812.0, 830.0, 790.0, 860.0, 800.0, 815.0],
        ],
    };
    vec![manual, llm]
}

#[test]
fn summary_reports_mean_std_and_paired_p_values() {
    let cols = columns();
    let m = methods();
    let rows = tables::summary(&cols, &m).unwrap();
    // PTV D98 shown in Gy: mean and std scaled by 1/100.
    let (mean, std) = mean_std(&m[1].values[0]).unwrap();
    assert!((rows[0].mean_std[1].0 - mean / 100.0).abs() < 1e-12);
    assert!((rows[0].mean_std[1].1 - std / 100.0).abs() < 1e-12);
    // p-values are the Wilcoxon test of the same pairs.
    for (c, row) in rows.iter().enumerate() {
        assert_eq!(row.p_vs_reference[0], None);
        let w = wilcoxon(&m[0].values[c], &m[1].values[c]).unwrap();
        assert_eq!(row.p_vs_reference[1], Some(w.p_asymptotic));
    }
    let md = tables::summary_markdown(&rows, &m);
    assert!(
        md.contains("| metric | manual mean ± std | llm mean ± std | p vs manual |"),
        "{md}"
    );
    assert!(
        md.contains("| PTV D98 (Gy) | 35.49 ± 0.02 | 35.51 ± 0.01 | 0.168 |"),
        "{md}"
    );
    assert!(
        md.contains("| MU | 855.83 ± 35.84 | 817.83 ± 24.74 | 0.027 |"),
        "{md}"
    );
    let csv = tables::summary_csv(&rows, &m).unwrap();
    assert!(
        csv.starts_with("metric,unit,manual_mean,manual_std,llm_mean,llm_std,llm_p_vs_manual\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + cols.len());
}

#[test]
fn pairwise_reports_mean_relative_difference() {
    let cols = columns();
    let m = methods();
    let rows = tables::pairwise(&cols, &m[0], &m[1]).unwrap();
    let mu = &rows[3];
    let expected: f64 = m[0].values[3]
        .iter()
        .zip(&m[1].values[3])
        .map(|(a, b)| (b - a) / a * 100.0)
        .sum::<f64>()
        / 6.0;
    assert!((mu.mean_relative_difference_percent - expected).abs() < 1e-12);
    let md = tables::pairwise_markdown(&rows, "manual", "llm");
    assert!(
        md.lines().count() == 2 + cols.len() && md.contains("MU"),
        "{md}"
    );
}

#[test]
fn unpaired_or_bad_samples_are_refused() {
    let cols = columns();
    let mut m = methods();
    m[1].values[2].pop();
    let e = tables::summary(&cols, &m).unwrap_err().to_string();
    assert!(
        e.contains("llm") && e.contains("CI") && e.contains("paired"),
        "{e}"
    );
    let mut m = methods();
    m[0].values[1][3] = f64::NAN;
    let e = tables::summary(&cols, &m).unwrap_err().to_string();
    assert!(
        e.contains("manual") && e.contains("patient 4") && e.contains("NaN"),
        "{e}"
    );
    assert!(tables::summary(&cols, &[]).is_err());
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    (
        u32::from_be_bytes(b[16..20].try_into().unwrap()),
        u32::from_be_bytes(b[20..24].try_into().unwrap()),
    )
}

#[test]
fn figures_are_written_as_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let a = Dvh::from_doses(
        "PTV",
        (0..500).map(|v| 3500.0 + v as f32 * 0.5).collect(),
        0.015,
    )
    .unwrap();
    let b = Dvh::from_doses(
        "PTV",
        (0..500).map(|v| 3480.0 + v as f32 * 0.6).collect(),
        0.015,
    )
    .unwrap();
    let fig = DvhComparison {
        title: "DVH".into(),
        plans: ("manual".into(), Some("llm".into())),
        curves: vec![(&a, Some(&b))],
    };
    let files = figures::save(&fig, &dir.path().join("dvh"), (900, 600)).unwrap();
    assert_eq!(png_size(&files[0]), (900, 600));
    let svg = std::fs::read_to_string(&files[1]).unwrap();
    for text in [
        "Dose (Gy)",
        "Volume (%)",
        "manual (solid)",
        "llm (dashed)",
        "PTV",
    ] {
        assert!(svg.contains(text), "SVG lacks {text}");
    }
    let m = methods();
    let fig = MethodBoxPlot {
        title: "MU".into(),
        y_label: "MU".into(),
        methods: m
            .iter()
            .map(|x| (x.name.clone(), x.values[3].clone()))
            .collect(),
    };
    let files = figures::save(&fig, &dir.path().join("sub/box"), (700, 500)).unwrap();
    assert!(
        std::fs::read_to_string(&files[1])
            .unwrap()
            .contains("manual")
    );
    let fig = DifferencePlot {
        title: "llm minus manual".into(),
        y_label: "Difference (MU)".into(),
        metrics: vec![(
            "MU".into(),
            m[1].values[3]
                .iter()
                .zip(&m[0].values[3])
                .map(|(b, a)| b - a)
                .collect(),
        )],
    };
    let files = figures::save(&fig, &dir.path().join("diff"), (700, 500)).unwrap();
    assert_eq!(png_size(&files[0]), (700, 500));
}
