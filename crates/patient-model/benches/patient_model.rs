//! Benchmarks of patient-model's hot paths, one module per source module.
//!
//! Run with `cargo bench -p patient-model`; figures go to `docs/performance.md`.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};

mod morph {
    use super::*;
    use patient_model::morph;

    /// The operations a protocol runs on every patient: PTV rings and a 7 mm expansion.
    pub fn bench(c: &mut Criterion) {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/cohorts/cervix-35.toml");
        let spec = phantoms::cohort::CohortSpec::load(&path).expect("cohort spec");
        let patient = spec.generate(7).expect("patient");
        let ptv = &patient.structure("PTV").expect("PTV").mask;
        let ctv = &patient.structure("CTV").expect("CTV").mask;
        let external = &patient.structure("External").expect("External").mask;
        let mut g = c.benchmark_group("morph");
        g.sample_size(20);
        g.bench_function("ring_ptv_5mm_25mm", |b| {
            b.iter(|| morph::ring(ptv, 5.0, 25.0).unwrap())
        });
        g.bench_function("expand_ctv_7mm", |b| {
            b.iter(|| morph::expand(ctv, 7.0).unwrap())
        });
        g.bench_function("contract_external_5mm", |b| {
            b.iter(|| morph::contract(external, 5.0).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, morph::bench);
criterion_main!(benches);
