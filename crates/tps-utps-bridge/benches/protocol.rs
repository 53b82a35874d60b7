//! The cost of the protocol itself, client -> gateway -> TPS on 127.0.0.1, with a TPS whose
//! calls take no time (the analytic `FakeTps` with the cervix protocol's 14 objectives, so the
//! reports have their full-size shape) and a dose on a full-size CT grid (150 x 110 x 146
//! voxels of 2.5 mm, the grid of cohort patient 1).
//!
//! Target (docs/performance.md): one planning iteration over the protocol (optimize as a job,
//! normalize, report, as the loop calls them) under 50 ms.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tps_api::fake::FakeTps;
use tps_api::grid::Grid;
use tps_api::objectives::Objective;
use tps_api::protocol::Protocol;
use tps_api::report::{GoalChange, IterationReport, PlanSummary};
use tps_api::{Dose, Normalization, Tps};
use tps_utps_bridge::RemoteTps;
use tps_utps_bridge::config::{PatientTransfer, RemoteConfig};
use tps_utps_bridge::gateway::{CaseOpener, Config, Gateway, Limits};

/// `FakeTps` with a full-size dose.
struct FullSize(FakeTps, Dose);

impl Tps for FullSize {
    fn name(&self) -> String {
        "fake, full-size dose".into()
    }
    fn objectives(&self) -> tps_api::Result<Vec<Objective>> {
        self.0.objectives()
    }
    fn optimize(&mut self, goals: &[GoalChange]) -> tps_api::Result<IterationReport> {
        self.0.optimize(goals)
    }
    fn normalize(&mut self, basis: Normalization) -> tps_api::Result<f64> {
        self.0.normalize(basis)
    }
    fn report(&self) -> tps_api::Result<IterationReport> {
        self.0.report()
    }
    fn dose(&self) -> tps_api::Result<Dose> {
        Ok(self.1.clone())
    }
    fn plan(&self) -> tps_api::Result<PlanSummary> {
        self.0.plan()
    }
}

struct Opener;

impl CaseOpener for Opener {
    fn name(&self) -> String {
        "fake".into()
    }
    fn open(&self, _: &Path, protocol: Protocol) -> tps_api::Result<Box<dyn Tps>> {
        let grid = Grid::new([150, 110, 146], [2.5; 3], [-186.25, -128.25, -148.75])?;
        let cgy = (0..grid.len()).map(|n| (n % 3600) as f32).collect();
        Ok(Box::new(FullSize(
            FakeTps::new(&protocol)?,
            Dose::new(grid, cgy)?,
        )))
    }
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gw = Gateway::spawn(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Opener),
        Config {
            token: Some("bench-token".into()),
            patients_root: None,
            limits: Limits::default(),
            server: "bench".into(),
        },
    )
    .unwrap();
    // SAFETY: set before any thread of this process reads the environment.
    unsafe { std::env::set_var("AUTOPLAN_BENCH_TOKEN", "bench-token") };
    let config = RemoteConfig {
        origin: "bench.toml".into(),
        endpoint: gw.url(),
        token_env: Some("AUTOPLAN_BENCH_TOKEN".into()),
        patient: PatientTransfer::Upload,
        timeout: std::time::Duration::from_secs(30),
        retries: 0,
        backoff: std::time::Duration::from_millis(10),
        total_limit: std::time::Duration::from_secs(60),
        poll: std::time::Duration::from_secs(10),
    };
    let patient = tempfile::tempdir().unwrap();
    std::fs::write(patient.path().join("patient.toml"), "id = \"bench\"\n").unwrap();
    let protocol = root.join("configs/protocols/cervix.toml");
    let mut tps = RemoteTps::open(&config, patient.path(), &protocol).unwrap();
    let mut g = c.benchmark_group("protocol");
    g.bench_function("iteration: optimize, normalize, report", |b| {
        b.iter(|| {
            let r = tps
                .optimize(&[GoalChange {
                    id: "bladder-mean".into(),
                    goal_cgy: 2900.0,
                }])
                .unwrap();
            tps.normalize(Normalization::Report).unwrap();
            (r, tps.report().unwrap())
        })
    });
    g.sample_size(20);
    g.bench_function("dose of 2.4 M voxels", |b| b.iter(|| tps.dose().unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
