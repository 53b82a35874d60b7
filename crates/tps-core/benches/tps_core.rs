//! Benchmarks of tps-core's hot paths, one module per source module (structure operations
//! and phantom generation are benchmarked in their own crates).
//!
//! Run with `cargo bench -p tps-core`; figures go to `docs/performance.md`.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};

fn cohort_spec() -> phantoms::cohort::CohortSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/cohorts/cervix-35.toml");
    phantoms::cohort::CohortSpec::load(&path).expect("cohort spec")
}

mod dose {
    use super::*;
    use tps_api::protocol::Protocol;
    use tps_core::dose::{
        calibration::DensityCurve, engine::DoseEngine, matrix::*, model::BeamModel,
    };
    use tps_core::native::{NativeSettings, case_geometry};

    /// The influence matrix of a cohort patient at default settings (36 beams, 5 mm beamlets,
    /// 3 mm dose grid; target: under 30 s and 3 GB), and its products against a plain copy of
    /// as many bytes as the matrix holds (target: each product at 50 % or more of the copy's
    /// bandwidth).
    pub fn bench(c: &mut Criterion) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut p = cohort_spec().generate(7).unwrap();
        let proto = Protocol::load(&root.join("configs/protocols/cervix.toml")).unwrap();
        patient_model::recipes::build_auxiliary(&proto, &mut p).unwrap();
        let model = BeamModel::load(&root.join("configs/machines/generic-6mv.toml")).unwrap();
        let curve = DensityCurve::load(&root.join("configs/ct-calibration/default.toml")).unwrap();
        let case = case_geometry(&p, &proto, &NativeSettings::default()).unwrap();
        let (fields, dg, r) = (case.fields, case.dose_grid, case.rows);
        let e = DoseEngine::new(&model, *p.grid(), curve.densities(p.ct_hu()));
        let mut g = c.benchmark_group("dose");
        g.sample_size(10);
        g.bench_function("influence_matrix_patient7_36beams_3mm", |b| {
            b.iter(|| {
                InfluenceMatrix::compute(&e, &fields, &dg, r.clone(), MatrixSettings::default())
                    .unwrap()
                    .nnz()
            })
        });
        let m = InfluenceMatrix::compute(&e, &fields, &dg, r.clone(), MatrixSettings::default())
            .unwrap();
        eprintln!(
            "matrix: {} rows, {} beamlets, {} nnz, {:.2} GB",
            m.n_rows(),
            m.n_cols(),
            m.nnz(),
            m.bytes() as f64 / 1e9
        );
        let x = m.weights_of(&fields);
        let mut y = vec![0.0f32; m.n_rows()];
        g.bench_function("forward_product", |b| b.iter(|| m.forward(&x, &mut y)));
        let yv = vec![1.0f32; m.n_rows()];
        let mut gr = vec![0.0f32; m.n_cols()];
        g.bench_function("transposed_product", |b| {
            b.iter(|| m.transpose(&yv, &mut gr))
        });
        // A plain copy of as many bytes as the matrix's entries (4 bytes each).
        let src = vec![1u32; m.nnz()];
        let mut dst = vec![0u32; m.nnz()];
        g.bench_function("copy_same_bytes", |b| b.iter(|| dst.copy_from_slice(&src)));
        g.finish();
    }
}

mod native {
    use super::*;
    use criterion::BatchSize;
    use tps_api::objectives::ObjectiveKind;
    use tps_api::protocol::Protocol;
    use tps_api::{GoalChange, Tps};
    use tps_core::delivery::{DeliveryMachine, SequenceSettings};
    use tps_core::dose::{calibration::DensityCurve, model::BeamModel};
    use tps_core::native::{NativeSettings, NativeTps};
    use tps_core::optimize::fmo::{BoundObjective, ColumnObjective};
    use tps_core::optimize::lbfgs::{Settings, minimize};

    /// The native TPS on a cohort patient with the cervix protocol at default settings (case
    /// opened outside the timing): a cold optimization from the starting fluence (target: under
    /// 10 s) and a warm-started re-optimization after one goal change of the size the planner
    /// makes (target: under 2 s), each with its scatter-correction refresh and report.
    pub fn bench(c: &mut Criterion) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let p = cohort_spec().generate(7).unwrap();
        let proto = Protocol::load(&root.join("configs/protocols/cervix.toml")).unwrap();
        let model = BeamModel::load(&root.join("configs/machines/generic-6mv.toml")).unwrap();
        let curve = DensityCurve::load(&root.join("configs/ct-calibration/default.toml")).unwrap();
        let fresh = NativeTps::open(p, proto, &model, &curve, NativeSettings::default()).unwrap();
        let mut g = c.benchmark_group("native");
        g.sample_size(10);
        g.bench_function("cold_optimization_patient7", |b| {
            b.iter_batched(
                || fresh.clone(),
                |mut tps| tps.optimize(&[]).unwrap().solver_iterations,
                BatchSize::PerIteration,
            )
        });
        let mut planned = fresh.clone();
        drop(fresh);
        let first = planned.optimize(&[]).unwrap();
        let bladder = first
            .objectives
            .iter()
            .find(|o| o.id == "bladder-mean")
            .unwrap();
        // The rule-based physicist's largest step: 100 cGy below the current mean.
        let change = [GoalChange {
            id: bladder.id.clone(),
            goal_cgy: (bladder.current_cgy - 100.0).round(),
        }];
        g.bench_function("warm_reoptimization_patient7", |b| {
            b.iter_batched(
                || planned.clone(),
                |mut tps| tps.optimize(&change).unwrap().solver_iterations,
                BatchSize::PerIteration,
            )
        });
        g.finish();
        // Arc sequencing of the first optimization's fluence (2 arcs x 18 sectors, control
        // points every 2 degrees): the plain sweep, and with the leaf positions fitted to the
        // fluence (the default).
        let machine =
            DeliveryMachine::load(&root.join("configs/machines/generic-6mv.toml")).unwrap();
        let mut g = c.benchmark_group("delivery");
        g.sample_size(10);
        // The MU re-optimization's solver at patient 7's size (180 bins of 4 degrees, 135,355
        // matrix rows) on synthetic bin doses: a target of 20,000 rows under min and max
        // objectives and an organ under a mean objective.
        let rows = 135_355usize;
        let mut rng = phantoms::rng::SplitMix64::new(7);
        let mut next = move || rng.next_f64() as f32;
        let columns: Vec<Vec<f32>> = (0..180)
            .map(|_| {
                (0..rows)
                    .map(|k| {
                        if k < 20_000 {
                            20.0 + 5.0 * next()
                        } else {
                            8.0 * next()
                        }
                    })
                    .collect()
            })
            .collect();
        let bound = |id: &str, kind, goal, r: std::ops::Range<u32>| BoundObjective {
            id: id.into(),
            kind,
            weight: 1.0,
            goal_cgy: goal,
            rows: r.collect(),
            distances_mm: Vec::new(),
        };
        let objectives = vec![
            bound("min", ObjectiveKind::MinDose, 3600.0, 0..20_000),
            bound("max", ObjectiveKind::MaxDose, 3800.0, 0..20_000),
            bound("organ", ObjectiveKind::MeanDose, 600.0, 20_000..rows as u32),
        ];
        g.bench_function("mu_reoptimization_180_bins_135k_rows", |b| {
            b.iter(|| {
                let mut f = ColumnObjective::new(&columns, objectives.clone());
                let settings = Settings {
                    max_iterations: 100,
                    rel_tolerance: 1e-5,
                    ..Settings::default()
                };
                minimize(&mut f, &[1.0; 180], &[0.0; 180], &settings)
                    .unwrap()
                    .iterations
            })
        });
        for (name, fit) in [
            ("sequence_sweep_patient7", 0),
            ("sequence_fitted_patient7", 100),
        ] {
            let settings = SequenceSettings {
                fit_iterations: fit,
                ..SequenceSettings::default()
            };
            g.bench_function(name, |b| {
                b.iter(|| planned.sequence(&machine, &settings).unwrap().arcs.len())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, dose::bench, native::bench);
criterion_main!(benches);
