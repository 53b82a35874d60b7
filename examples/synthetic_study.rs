//! A study run end to end on synthetic doses: the test patients of the cervix cohort, two
//! "methods" that differ only in the idealized analytic dose (a sharper and a softer fall-off
//! around the PTV; no dose calculation), evaluated with the cervix protocol, compared in the
//! layouts of the study's Tables 3 and 5, and drawn as its Figs. 2, 4 and 5.
//!
//! `cargo run --release --example synthetic_study -- OUT_DIR`
//!
//! It exercises evaluation, statistics, tables and figures on realistic anatomy while the dose
//! engine and optimizer are being built; its numbers say nothing about planning quality.

use std::path::{Path, PathBuf};

use evaluation::figures::{self, DifferencePlot, DvhComparison, MethodBoxPlot};
use evaluation::tables::{self, MethodValues, MetricColumn};
use evaluation::{Evaluator, PlanDose, ProtocolEvaluator};
use phantoms::cohort::CohortSpec;
use phantoms::synthetic_dose::{ConformalDose, conformal};
use rayon::prelude::*;
use tps_api::Protocol;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "out/synthetic-study".into()),
    );
    std::fs::create_dir_all(&out)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = CohortSpec::load(&root.join("configs/cohorts/cervix-35.toml"))?;
    let proto = Protocol::load(&root.join("configs/protocols/cervix.toml"))?;
    let ev = ProtocolEvaluator::from_protocol(&proto)?;
    let methods = [("sharp", 9.0, 1.025, 700.0), ("soft", 12.0, 1.035, 800.0)];
    let ids = spec.test_ids();
    // values[method][patient][metric]
    let per_patient: Vec<Vec<Vec<f64>>> = ids
        .par_iter()
        .map(|&id| -> Result<Vec<Vec<f64>>, String> {
            let p = spec.generate(id).map_err(|e| e.to_string())?;
            methods
                .iter()
                .map(|&(_, falloff, hot, mu)| {
                    let params = ConformalDose {
                        prescription_cgy: proto.prescription.dose_cgy,
                        hot,
                        ripple: 0.04,
                        falloff_mm: falloff,
                        seed: id as u64,
                    };
                    let dose = conformal(&p, &proto.prescription.target, &params)
                        .map_err(|e| e.to_string())?;
                    let mu = mu + 3.0 * (id as f64 % 7.0);
                    let v = ev
                        .evaluate(&PlanDose {
                            patient: &p,
                            dose: &dose,
                            mu_per_fraction: Some(mu),
                        })
                        .map_err(|e| e.to_string())?;
                    Ok(v.iter().map(|m| m.value.unwrap_or(f64::NAN)).collect())
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    let columns: Vec<MetricColumn> = ev.metrics().map(MetricColumn::for_metric).collect();
    let method_values: Vec<MethodValues> = methods
        .iter()
        .enumerate()
        .map(|(k, (name, ..))| MethodValues {
            name: name.to_string(),
            values: (0..columns.len())
                .map(|c| per_patient.iter().map(|pp| pp[k][c]).collect())
                .collect(),
        })
        .collect();
    let rows = tables::summary(&columns, &method_values)?;
    let t3 = tables::summary_markdown(&rows, &method_values);
    std::fs::write(out.join("table3.md"), &t3)?;
    std::fs::write(
        out.join("table3.csv"),
        tables::summary_csv(&rows, &method_values)?,
    )?;
    let pair = tables::pairwise(&columns, &method_values[0], &method_values[1])?;
    let t5 = tables::pairwise_markdown(&pair, "sharp", "soft");
    std::fs::write(out.join("table5.md"), &t5)?;
    println!("{t3}\n{t5}");

    // Fig. 2: box plots of a few metrics across methods.
    for (c, col) in columns.iter().enumerate() {
        if !["PTV D98", "Bladder D50", "CI", "HI"].contains(&col.label.as_str()) {
            continue;
        }
        let fig = MethodBoxPlot {
            title: format!(
                "{} of {} test patients (synthetic doses)",
                col.label,
                ids.len()
            ),
            y_label: if col.unit.is_empty() {
                col.label.clone()
            } else {
                format!("{} ({})", col.label, col.unit)
            },
            methods: method_values
                .iter()
                .map(|m| {
                    (
                        m.name.clone(),
                        m.values[c].iter().map(|v| v * col.scale).collect(),
                    )
                })
                .collect(),
        };
        let stem = out.join(format!("box-{}", col.label.replace(' ', "-")));
        figures::save(&fig, &stem, (800, 600))?;
    }
    // Fig. 5: per-patient differences of the OAR metrics, soft minus sharp.
    let oar: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.unit == "Gy" && !c.label.starts_with("PTV"))
        .map(|(i, _)| i)
        .collect();
    let fig = DifferencePlot {
        title: "OAR metrics, soft minus sharp (synthetic doses)".into(),
        y_label: "Difference (Gy)".into(),
        metrics: oar
            .iter()
            .map(|&c| {
                let d = (0..ids.len())
                    .map(|i| {
                        (method_values[1].values[c][i] - method_values[0].values[c][i])
                            * columns[c].scale
                    })
                    .collect();
                (
                    columns[c]
                        .label
                        .replace(' ', "\n")
                        .split('\n')
                        .next()
                        .unwrap_or("")
                        .to_string(),
                    d,
                )
            })
            .collect(),
    };
    figures::save(&fig, &out.join("differences"), (1100, 600))?;
    // Fig. 4: DVHs of both methods for one patient.
    let id = ids[0];
    let p = spec.generate(id)?;
    let doses: Vec<tps_api::Dose> = methods
        .iter()
        .map(|&(_, falloff, hot, _)| {
            conformal(
                &p,
                "PTV",
                &ConformalDose {
                    prescription_cgy: 3600.0,
                    hot,
                    ripple: 0.04,
                    falloff_mm: falloff,
                    seed: id as u64,
                },
            )
        })
        .collect::<Result<_, _>>()?;
    let names = [
        "PTV",
        "Bladder",
        "Rectum",
        "Bag_Bowel",
        "BoneMarrow",
        "Femur_Head_L",
    ];
    let dvhs: Vec<(evaluation::dvh::Dvh, evaluation::dvh::Dvh)> = names
        .iter()
        .map(|n| {
            let m = &p.structure(n).expect("cohort structure").mask;
            Ok((
                evaluation::dvh::Dvh::new(n, doses[0].cgy(), m)?,
                evaluation::dvh::Dvh::new(n, doses[1].cgy(), m)?,
            ))
        })
        .collect::<Result<_, evaluation::Error>>()?;
    let fig = DvhComparison {
        title: format!("{}: sharp (solid) and soft (dashed) synthetic doses", p.id),
        plans: ("sharp".into(), Some("soft".into())),
        curves: dvhs.iter().map(|(a, b)| (a, Some(b))).collect(),
    };
    figures::save(&fig, &out.join("dvh-comparison"), (1000, 700))?;
    println!("wrote tables and figures to {}", out.display());
    Ok(())
}
