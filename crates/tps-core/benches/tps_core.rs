//! Benchmarks of tps-core's hot paths, one module per source module.
//!
//! Run with `cargo bench -p tps-core`; figures go to `docs/performance.md`.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};

fn cohort_spec() -> tps_core::cohort::CohortSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/cohorts/cervix-35.toml");
    tps_core::cohort::CohortSpec::load(&path).expect("cohort spec")
}

mod morph {
    use super::*;
    use tps_core::morph;

    /// The operations a protocol runs on every patient: PTV rings and a 7 mm expansion.
    pub fn bench(c: &mut Criterion) {
        let patient = cohort_spec().generate(7).expect("patient");
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

mod phantom {
    use super::*;
    use rayon::prelude::*;

    /// One patient, and the whole 35-patient cohort at 2.5 mm (target: under 30 s on 2
    /// cores).
    pub fn bench(c: &mut Criterion) {
        let spec = cohort_spec();
        let mut g = c.benchmark_group("phantom");
        g.sample_size(10);
        g.bench_function("generate_one_patient_2.5mm", |b| {
            b.iter(|| spec.generate(7).unwrap())
        });
        g.bench_function("generate_cohort_35_patients_2.5mm", |b| {
            b.iter(|| {
                let n: usize = spec
                    .ids()
                    .collect::<Vec<_>>()
                    .par_iter()
                    .map(|&id| spec.generate(id).unwrap().grid().len())
                    .sum();
                n
            })
        });
        g.finish();
    }
}

criterion_group!(benches, morph::bench, phantom::bench);
criterion_main!(benches);
