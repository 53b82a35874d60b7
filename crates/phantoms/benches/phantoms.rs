//! Benchmarks of phantom generation, one module per source module.
//!
//! Run with `cargo bench -p phantoms`; figures go to `docs/performance.md`.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};

mod pelvis {
    use super::*;
    use rayon::prelude::*;

    /// One patient, and the whole 35-patient cohort at 2.5 mm (target: under 30 s on 2
    /// cores).
    pub fn bench(c: &mut Criterion) {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/cohorts/cervix-35.toml");
        let spec = phantoms::cohort::CohortSpec::load(&path).expect("cohort spec");
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

criterion_group!(benches, pelvis::bench);
criterion_main!(benches);
