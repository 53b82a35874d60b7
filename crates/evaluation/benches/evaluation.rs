//! Benchmarks of evaluation, one module per source module.
//!
//! Target: every metric for every structure of one pelvis patient at 2.5 mm under 50 ms.

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

criterion_group!(benches, evaluator::bench);
criterion_main!(benches);
