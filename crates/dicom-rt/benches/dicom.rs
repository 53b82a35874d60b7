//! DICOM import and DVH at clinical size (issue targets: import of a 512 x 512 x 150 CT with
//! 15 structures in 5 s, DVH of 10 structures in 0.3 s, on 2 cores).
//!
//! The case is written once by our exporter: a 512 x 512 x 150 CT (0.98 x 0.98 x 2.5 mm) with
//! 15 ellipsoidal structures from 2 cc to a 33 x 22 x 37 cm body, and a dose on the CT grid.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dicom_rt::export::{PlanExport, export};
use dicom_rt::import::{Options, import};
use evaluation::dvh::Dvh;
use tps_api::grid::Grid;
use tps_api::structure::{Mask, Role, Structure};
use tps_api::{Dose, Patient};

fn ellipsoid(g: &Grid, c: [f64; 3], r: [f64; 3]) -> Mask {
    let mut m = Mask::empty(*g);
    let data = m.data_mut();
    for (n, v) in data.iter_mut().enumerate() {
        let [i, j, k] = g.ijk(n);
        let p = g.position_mm(i, j, k);
        *v = (0..3).map(|a| ((p[a] - c[a]) / r[a]).powi(2)).sum::<f64>() <= 1.0;
    }
    m
}

fn case() -> (Patient, Dose) {
    let g = Grid::new(
        [512, 512, 150],
        [0.977, 0.977, 2.5],
        [-250.0, -250.0, -187.5],
    )
    .unwrap();
    let ct = (0..g.len())
        .map(|n| {
            let [i, j, k] = g.ijk(n);
            ((i * 7 + j * 3 + k) % 200) as i16 - 100
        })
        .collect();
    let mut p = Patient::new("bench", g, ct).unwrap();
    p.add_structure(Structure::new(
        "External",
        Role::External,
        ellipsoid(&g, [0.0; 3], [165.0, 110.0, 185.0]),
    ))
    .unwrap();
    p.add_structure(Structure::new(
        "PTV",
        Role::Target,
        ellipsoid(&g, [0.0, 10.0, 0.0], [60.0, 45.0, 50.0]),
    ))
    .unwrap();
    for n in 0..13 {
        let a = n as f64 * 0.48;
        let r = 8.0 + 3.0 * (n % 5) as f64;
        let c = [90.0 * a.cos(), 60.0 * a.sin(), -120.0 + 20.0 * n as f64];
        p.add_structure(Structure::new(
            format!("OAR{n}"),
            Role::Oar,
            ellipsoid(&g, c, [r, r * 0.8, r * 1.5]),
        ))
        .unwrap();
    }
    let cgy = (0..g.len())
        .map(|n| {
            let [i, j, k] = g.ijk(n);
            let p = g.position_mm(i, j, k);
            let r2 = p[0] * p[0] + p[1] * p[1] + 0.5 * p[2] * p[2];
            (3700.0 * (-r2 / 20_000.0).exp()) as f32
        })
        .collect();
    (p, Dose::new(g, cgy).unwrap())
}

fn benches(c: &mut Criterion) {
    let (patient, dose) = case();
    let dir = tempfile::tempdir().unwrap();
    export(
        &PlanExport {
            patient: &patient,
            dose: Some(&dose),
            prescription: None,
            deliverable: None,
            label: "bench".into(),
            description: String::new(),
        },
        dir.path(),
    )
    .unwrap();
    let mut group = c.benchmark_group("dicom");
    group.sample_size(10);
    group.bench_function("import_512x512x150_15_structures_with_dose", |b| {
        b.iter(|| black_box(import(dir.path(), &Options::default()).unwrap()))
    });
    let imported = import(dir.path(), &Options::default()).unwrap();
    let d = imported.dose.unwrap().on_ct;
    let ten: Vec<&Structure> = imported.patient.structures().iter().take(10).collect();
    group.bench_function("dvh_10_structures_512x512x150", |b| {
        b.iter(|| {
            for s in &ten {
                black_box(Dvh::new(&s.name, d.cgy(), &s.mask).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(dicom, benches);
criterion_main!(dicom);
