//! Benchmarks of evaluation, one module per source module.
//!
//! Targets: every metric for every structure of one pelvis patient at 2.5 mm under 50 ms;
//! gamma of a 100³ grid at 3%/3 mm in at most 1 s on 2 cores.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use evaluation::{Evaluator, PlanDose, ProtocolEvaluator};
use phantoms::cohort::CohortSpec;
use phantoms::synthetic_dose::{ConformalDose, conformal};
use tps_api::protocol::Protocol;

mod evaluator {
    use super::*;

    pub fn bench(c: &mut Criterion) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let spec = CohortSpec::load(&root.join("configs/cohorts/cervix-35.toml")).unwrap();
        let mut patient = spec.generate(7).unwrap();
        let base = Protocol::load(&root.join("configs/protocols/cervix.toml")).unwrap();
        patient_model::recipes::build_auxiliary(&base, &mut patient).unwrap();
        // Every metric kind for every structure (External and rings included), plus CI and HI.
        let mut metrics = Vec::new();
        for s in patient.structures() {
            for m in [
                "Dmax", "Dmin", "Dmean", "D2", "D5", "D50", "D90", "D95", "D98", "D0.1cc", "V20Gy",
            ] {
                metrics.push(format!("\"{}: {m}\"", s.name));
            }
        }
        metrics.extend([
            "\"CI\"".to_string(),
            "\"HI\"".to_string(),
            "\"MU\"".to_string(),
        ]);
        let text = format!(
            "[site]\nname = \"bench\"\n[prescription]\ntarget = \"PTV\"\ndose-cgy = 3600.0\nfractions = 20\n\
             volume-percent = 95.0\n[evaluation]\nmetrics = [{}]\n",
            metrics.join(", ")
        );
        let proto = Protocol::parse(&text, Path::new("bench.toml")).unwrap();
        let ev = ProtocolEvaluator::from_protocol(&proto).unwrap();
        let dose = conformal(
            &patient,
            "PTV",
            &ConformalDose {
                prescription_cgy: 3600.0,
                hot: 1.03,
                ripple: 0.04,
                falloff_mm: 12.0,
                seed: 1,
            },
        )
        .unwrap();
        let plan = PlanDose {
            patient: &patient,
            dose: &dose,
            mu_per_fraction: Some(800.0),
        };
        let mut g = c.benchmark_group("evaluator");
        g.sample_size(30);
        g.bench_function(
            format!(
                "all_metrics_{}_structures_2.5mm",
                patient.structures().len()
            ),
            |b| b.iter(|| ev.evaluate(&plan).unwrap()),
        );
        g.finish();
    }
}

mod gamma {
    use super::*;
    use evaluation::gamma::{GammaCriteria, gamma};
    use tps_api::dose::Dose;
    use tps_api::grid::Grid;

    /// A plan-like dose on a 100³ grid at 2.5 mm: a 100 x 90 x 80 mm high-dose box with 3.5 mm
    /// (sigma) penumbrae in a bath that falls off over 60 mm (sigma), so 41 % of the grid is
    /// above the 10 % cutoff; and a copy shifted by (1, -1, 0.5) mm, scaled by 1.01, with
    /// 1.5 % seeded noise: what a delivery error and a recomputation look like.
    fn pair() -> (Dose, Dose) {
        let n = 100;
        let grid = Grid::new([n; 3], [2.5; 3], [0.0; 3]).unwrap();
        let erf = statrs::function::erf::erf;
        let f = |p: [f64; 3]| {
            let (lo, hi) = ([75.0, 80.0, 85.0], [175.0, 170.0, 165.0]);
            let s = 3.5 * 2f64.sqrt();
            let mut v = 3600.0;
            for a in 0..3 {
                v *= 0.5 * (erf((p[a] - lo[a]) / s) - erf((p[a] - hi[a]) / s));
            }
            v + 1200.0 * (-((p[0] - 125.0).powi(2) + (p[1] - 125.0).powi(2)) / 7200.0).exp()
        };
        let mut reference = Vec::with_capacity(grid.len());
        let mut evaluated = Vec::with_capacity(grid.len());
        let mut state = 7u64;
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    let p = [i, j, k].map(|x| x as f64 * 2.5);
                    reference.push(f(p) as f32);
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let u = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
                    let q = [p[0] - 1.0, p[1] + 1.0, p[2] - 0.5];
                    evaluated.push((1.01 * f(q) * (1.0 + 0.015 * u)) as f32);
                }
            }
        }
        (
            Dose::new(grid, reference).unwrap(),
            Dose::new(grid, evaluated).unwrap(),
        )
    }

    pub fn bench(c: &mut Criterion) {
        let (reference, evaluated) = pair();
        let mut g = c.benchmark_group("gamma");
        g.sample_size(10);
        for (dd, dta) in [(3.0, 3.0), (2.0, 2.0)] {
            let criteria = GammaCriteria::new(dd, dta);
            let s = gamma(&reference, &evaluated, &criteria).unwrap().summary;
            eprintln!(
                "gamma {}: {} points, pass {:.2} %, mean {:.3}",
                criteria.label(),
                s.evaluated,
                s.pass_rate_percent,
                s.mean
            );
            g.bench_function(format!("100^3_2.5mm_{dd}%_{dta}mm"), |b| {
                b.iter(|| gamma(&reference, &evaluated, &criteria).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, evaluator::bench, gamma::bench);
criterion_main!(benches);
