//! A whole plan of a cohort patient with the rule-based physicist (target: under 60 s on 2
//! cores, TPS and advisor time reported separately), final normalization on the dose included.
//! The case is opened outside the timing.

use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use llm_providers::rule_based::RuleBasedAdvisor;
use phantoms::cohort::CohortSpec;
use planner::{PlannerSettings, plan};
use tps_api::Protocol;
use tps_core::dose::{calibration::DensityCurve, model::BeamModel};
use tps_core::native::{NativeSettings, NativeTps};

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = CohortSpec::load(&root.join("configs/cohorts/cervix-35.toml")).unwrap();
    let protocol = Protocol::load(&root.join("configs/protocols/cervix.toml")).unwrap();
    let model = BeamModel::load(&root.join("configs/machines/generic-6mv.toml")).unwrap();
    let curve = DensityCurve::load(&root.join("configs/ct-calibration/default.toml")).unwrap();
    let fresh = NativeTps::open(
        spec.generate(7).unwrap(),
        protocol.clone(),
        &model,
        &curve,
        NativeSettings::default(),
    )
    .unwrap();
    // The protocol's clinical goals are judged on the final plan on this patient.
    let patient = fresh.patient().clone();
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(300));
    g.bench_function("rule_based_patient7", |b| {
        b.iter_batched(
            || fresh.clone(),
            |mut tps| {
                let o = plan(
                    &mut tps,
                    &RuleBasedAdvisor,
                    &protocol,
                    "p07",
                    Some(&patient),
                    &PlannerSettings::default(),
                    None,
                    |_| {},
                )
                .unwrap();
                eprintln!(
                    "iterations {}, TPS {:.1} s, advisor {:.4} s, {:?}",
                    o.reports.len(),
                    o.tps_s,
                    o.advisor_s,
                    o.reason
                );
                o.reports.len()
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
