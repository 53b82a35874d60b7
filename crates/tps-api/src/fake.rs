//! `FakeTps`: a deterministic, analytic stand-in for a treatment planning system, so that the
//! planning loop, advisors and tools can be tested in milliseconds without a dose engine.
//!
//! It is not physics. Each objective constrains one number, its *quantity* (the dose its
//! structure's mean, max or DVH point receives). Left alone, a quantity takes its *natural*
//! value `N` (drawn per objective from its id, between 0.9 and 1.3 times its initial goal for
//! upper objectives and a few per cent below the goal for lower ones) scaled by the plan's
//! overall scale. With a goal `G` the optimizer meets the goal part of the way:
//!
//! ```text
//! upper (max, mean, dvh-max):  q = N                     if G >= N,  else q = G + s (N - G)
//! lower (min, dvh-min):        q = N                     if G <= N,  else q = G - s (G - N)
//! value                        = (relative excess of q past G)^2
//! ```
//!
//! with the stiffness `s` = 0.5, so each value responds monotonically to its goal: lowering an
//! upper goal raises its value. Tightening organ-at-risk goals costs coverage, as it does in a
//! real plan: the prescription target's D95 is `scale x 1.01 Rx x (1 - 0.1 p)`, with `p` the
//! weight-averaged relative tightening `(N - G) / N` of the OAR objectives. The dose is a small
//! analytic field whose target voxels have exactly that D95, so normalizing on the report and
//! on the dose agree. Everything is a pure function of the goals and the scale.

use crate::dose::Dose;
use crate::dose_volume::{dose_at_fraction, sort_hottest_first};
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::objectives::{Objective, ObjectiveKind, range_status};
use crate::protocol::Protocol;
use crate::report::{GoalChange, IterationReport, ObjectiveReport, PlanSummary};
use crate::structure::{Mask, Role};
use crate::tps::{Normalization, Tps};

/// How far the fake optimizer stays from a goal it cannot meet (0: it meets every goal).
const STIFFNESS: f64 = 0.5;
/// Coverage lost per unit of weight-averaged OAR tightening.
const COVERAGE_COST: f64 = 0.1;
/// Edge of the fake dose grid, voxels, and its spacing, mm.
const GRID_N: usize = 12;
const GRID_MM: f64 = 4.0;

/// A deterministic, analytic TPS (see the module documentation).
#[derive(Debug, Clone)]
pub struct FakeTps {
    objectives: Vec<Objective>,
    roles: Vec<Role>,
    natural_cgy: Vec<f64>,
    prescription_cgy: f64,
    volume_percent: f64,
    fractions: u32,
    scale: f64,
    iteration: u32,
    fail_at: Option<(u32, bool)>,
    optimizations: u32,
    beams: crate::beams::Beams,
}

/// A number in [0, 1) from an objective id (FNV-1a), so natural doses are fixed per id.
fn unit_hash(id: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn is_lower(kind: &ObjectiveKind) -> bool {
    matches!(kind, ObjectiveKind::MinDose | ObjectiveKind::DvhMin { .. })
}

impl FakeTps {
    /// A case with `protocol`'s objectives and prescription. Roles follow from names: the
    /// prescription target's objectives are target objectives, those of a structure the
    /// protocol builds (`[[auxiliary]]`) auxiliary, every other one an OAR objective.
    pub fn new(protocol: &Protocol) -> Result<Self> {
        let origin = protocol.origin.display().to_string();
        if protocol.objectives.is_empty() {
            return Err(Error::invalid(
                &origin,
                "objectives",
                "[]",
                "a protocol used for planning needs objectives",
            ));
        }
        let roles = protocol
            .objectives
            .iter()
            .map(|o| {
                if o.structure == protocol.prescription.target {
                    Role::Target
                } else if protocol.auxiliary.iter().any(|r| r.name == o.structure) {
                    Role::Auxiliary
                } else {
                    Role::Oar
                }
            })
            .collect();
        let natural_cgy = protocol
            .objectives
            .iter()
            .map(|o| {
                let h = unit_hash(&o.id);
                if is_lower(&o.kind) {
                    o.goal_cgy * (0.95 + 0.03 * h)
                } else {
                    o.goal_cgy * (0.9 + 0.4 * h)
                }
            })
            .collect();
        Ok(Self {
            objectives: protocol.objectives.clone(),
            roles,
            natural_cgy,
            prescription_cgy: protocol.prescription.dose_cgy,
            volume_percent: protocol.prescription.volume_percent,
            fractions: protocol.prescription.fractions,
            scale: 1.0,
            iteration: 0,
            fail_at: None,
            optimizations: 0,
            beams: protocol.beams.clone(),
        })
    }

    /// The same case, made to fail its `n`-th optimization (1-based) with a backend error that
    /// is temporary or not: for tests of how callers handle a failing TPS.
    pub fn failing_at(mut self, n: u32, temporary: bool) -> Self {
        self.fail_at = Some((n, temporary));
        self
    }

    /// Optimizations attempted, failed ones included.
    pub fn optimizations(&self) -> u32 {
        self.optimizations
    }

    /// The grid of [`Tps::dose`].
    pub fn grid() -> Grid {
        let o = -0.5 * (GRID_N - 1) as f64 * GRID_MM;
        Grid::new([GRID_N; 3], [GRID_MM; 3], [o; 3]).expect("a valid grid")
    }

    /// The prescription target's voxels on [`FakeTps::grid`]: a central box of 4^3 voxels.
    pub fn target_mask() -> Mask {
        let g = Self::grid();
        let mut m = Mask::empty(g);
        for (n, v) in m.data_mut().iter_mut().enumerate() {
            *v = g.ijk(n).iter().all(|&i| (4..8).contains(&i));
        }
        m
    }

    /// Quantity each objective reaches with `objectives`' goals at the current scale.
    fn quantities(&self, objectives: &[Objective]) -> Vec<f64> {
        objectives
            .iter()
            .zip(&self.natural_cgy)
            .map(|(o, &n)| {
                let n = n * self.scale;
                let g = o.goal_cgy;
                if is_lower(&o.kind) {
                    if g <= n { n } else { g - STIFFNESS * (g - n) }
                } else if g >= n {
                    n
                } else {
                    g + STIFFNESS * (n - g)
                }
            })
            .collect()
    }

    fn coverage(&self, objectives: &[Objective]) -> f64 {
        let (mut pressure, mut weights) = (0.0, 0.0);
        for ((o, &n), role) in objectives.iter().zip(&self.natural_cgy).zip(&self.roles) {
            if *role == Role::Oar {
                let n = n * self.scale;
                pressure += o.weight * ((n - o.goal_cgy) / n).max(0.0);
                weights += o.weight;
            }
        }
        let p = if weights > 0.0 {
            pressure / weights
        } else {
            0.0
        };
        self.scale * 1.01 * self.prescription_cgy * (1.0 - COVERAGE_COST * p)
    }

    fn report_for(&self, objectives: &[Objective]) -> IterationReport {
        let q = self.quantities(objectives);
        let mut reports = Vec::with_capacity(objectives.len());
        let mut total = 0.0;
        for ((o, role), &q) in objectives.iter().zip(&self.roles).zip(&q) {
            let g = o.goal_cgy;
            let excess = if is_lower(&o.kind) { g - q } else { q - g };
            let value = (excess.max(0.0) / g).powi(2);
            total += o.weight * value;
            reports.push(ObjectiveReport {
                id: o.id.clone(),
                structure: o.structure.clone(),
                role: *role,
                kind: o.kind.label(),
                weight: o.weight,
                goal_cgy: g,
                current_cgy: q,
                value,
                ideal_range: o.ideal_range,
                status: range_status(value, o.ideal_range),
            });
        }
        IterationReport {
            iteration: self.iteration,
            objectives: reports,
            coverage_cgy: self.coverage(objectives),
            prescription_cgy: self.prescription_cgy,
            total_objective: total,
            solver_iterations: if self.iteration == 0 { 0 } else { 10 },
            wall_s: 0.0,
            goals: Vec::new(),
        }
    }

    /// The relative shape of the target's doses (a 2 % ramp) and its D at the prescribed
    /// volume, so the dose's target D95 can be set exactly.
    fn target_pattern(&self, n: usize) -> (Vec<f64>, f64) {
        let p: Vec<f64> = (0..n)
            .map(|k| 0.99 + 0.02 * k as f64 / n.max(2) as f64)
            .collect();
        let mut sorted: Vec<f32> = p.iter().map(|&v| v as f32).collect();
        sort_hottest_first(&mut sorted);
        let d = dose_at_fraction(&sorted, self.volume_percent / 100.0);
        (p, d)
    }
}

impl Tps for FakeTps {
    fn name(&self) -> String {
        "fake".into()
    }

    fn objectives(&self) -> Result<Vec<Objective>> {
        Ok(self.objectives.clone())
    }

    fn optimize(&mut self, goals: &[GoalChange]) -> Result<IterationReport> {
        self.optimizations += 1;
        let next = GoalChange::apply_all(&self.objectives, goals)?;
        if let Some((n, temporary)) = self.fail_at {
            if n == self.optimizations {
                return Err(Error::backend(
                    "fake",
                    "injected",
                    format!("optimization {n} fails by request"),
                    temporary,
                ));
            }
        }
        self.objectives = next;
        self.iteration += 1;
        Ok(self.report_for(&self.objectives))
    }

    fn normalize(&mut self, _basis: Normalization) -> Result<f64> {
        // The report's coverage and the dose's target D95 are equal by construction.
        let c = self.coverage(&self.objectives);
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::invalid(
                "normalization",
                "coverage",
                c.to_string(),
                "the target receives no dose",
            ));
        }
        // Coverage scales with the plan, and so does every natural dose; the pressure term
        // depends on the goals relative to them, so solve by fixed-point iteration.
        let mut factor = 1.0;
        for _ in 0..50 {
            let f = self.prescription_cgy / self.coverage(&self.objectives);
            self.scale *= f;
            factor *= f;
            if (f - 1.0).abs() < 1e-12 {
                break;
            }
        }
        Ok(factor)
    }

    fn report(&self) -> Result<IterationReport> {
        Ok(self.report_for(&self.objectives))
    }

    fn dose(&self) -> Result<Dose> {
        let g = Self::grid();
        let target = Self::target_mask();
        let coverage = self.coverage(&self.objectives);
        let inside: Vec<usize> = (0..g.len()).filter(|&n| target.data()[n]).collect();
        let (pattern, d) = self.target_pattern(inside.len());
        let mut cgy = vec![0.0f32; g.len()];
        for (n, v) in cgy.iter_mut().enumerate() {
            // Distance (mm) from the target box, outside it.
            let out: f64 = g
                .ijk(n)
                .iter()
                .map(|&i| {
                    let below = 4usize.saturating_sub(i);
                    let above = i.saturating_sub(7);
                    ((below + above) as f64 * GRID_MM).powi(2)
                })
                .sum::<f64>()
                .sqrt();
            *v = (coverage * 0.5f64.powf(out / 8.0)) as f32;
        }
        for (k, &n) in inside.iter().enumerate() {
            cgy[n] = (coverage * pattern[k] / d) as f32;
        }
        Dose::new(g, cgy)
    }

    fn plan(&self) -> Result<PlanSummary> {
        let beam_mu = vec![self.scale * 200.0; 4];
        Ok(PlanSummary {
            mu_per_fraction: beam_mu.iter().sum::<f64>() / self.fractions as f64,
            beam_mu,
            fractions: self.fractions,
        })
    }

    fn beams(&self) -> Option<crate::beams::Beams> {
        Some(self.beams.clone())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;

    pub(crate) const PROTOCOL: &str = r#"
[site]
name = "test"
[prescription]
target = "PTV"
dose-cgy = 3600.0
fractions = 20
volume-percent = 95.0
[planning]
max-iterations = 20
coverage-window = [1.0, 1.02]
[[objectives]]
id = "ptv-min"
structure = "PTV"
type = "min-dose"
weight = 100.0
goal-cgy = 3700.0
ideal-range = [1e-4, 1e-2]
[[objectives]]
id = "bladder-mean"
structure = "Bladder"
type = "mean-dose"
weight = 5.0
goal-cgy = 3000.0
ideal-range = [1e-2, 5e-2]
[[objectives]]
id = "cord-max"
structure = "SpinalCord"
type = "max-dose"
weight = 3.0
goal-cgy = 2400.0
ideal-range = [1e-4, 1e-2]
[[objectives]]
id = "ring-max"
structure = "Ring"
type = "max-dose"
weight = 5.0
goal-cgy = 2900.0
ideal-range = [1e-4, 1e-2]
[[auxiliary]]
name = "Ring"
op = "ring"
source = "PTV"
gap-mm = 5.0
thickness-mm = 15.0
"#;

    fn fake() -> FakeTps {
        FakeTps::new(&Protocol::parse(PROTOCOL, Path::new("fake.toml")).unwrap()).unwrap()
    }

    #[test]
    fn roles_follow_from_the_protocol() {
        let r = fake().optimize(&[]).unwrap();
        let roles: Vec<Role> = r.objectives.iter().map(|o| o.role).collect();
        assert_eq!(
            roles,
            [Role::Target, Role::Oar, Role::Oar, Role::Auxiliary],
            "{r:?}"
        );
    }

    /// Lowering an upper goal raises its value, and never lowers coverage's cost.
    #[test]
    fn values_respond_monotonically_to_goals() {
        let mut tps = fake();
        let mut last_value = -1.0;
        let mut last_coverage = f64::INFINITY;
        for goal in (1500..=3500).rev().step_by(100) {
            let r = tps
                .optimize(&[GoalChange {
                    id: "bladder-mean".into(),
                    goal_cgy: goal as f64,
                }])
                .unwrap();
            let o = &r.objectives[1];
            assert!(
                o.value >= last_value,
                "goal {goal}: {} < {last_value}",
                o.value
            );
            assert!(r.coverage_cgy <= last_coverage + 1e-9);
            last_value = o.value;
            last_coverage = r.coverage_cgy;
        }
        assert!(
            last_value > 0.05,
            "a low goal is far above the range: {last_value}"
        );
    }

    #[test]
    fn failures_are_injected_and_keep_the_plan() {
        let mut tps = fake().failing_at(2, true);
        let first = tps.optimize(&[]).unwrap();
        let e = tps
            .optimize(&[GoalChange {
                id: "bladder-mean".into(),
                goal_cgy: 2000.0,
            }])
            .unwrap_err();
        assert!(e.is_temporary(), "{e}");
        assert_eq!(tps.report().unwrap(), first);
        assert_eq!(tps.optimizations(), 2);
    }

    #[test]
    fn dose_coverage_is_the_reported_coverage() {
        let mut tps = fake();
        tps.optimize(&[]).unwrap();
        let f = tps.normalize(Normalization::Dose).unwrap();
        assert!(f.is_finite() && f > 0.0);
        let r = tps.report().unwrap();
        assert!((r.coverage_cgy - 3600.0).abs() < 1e-6, "{}", r.coverage_cgy);
        let dose = tps.dose().unwrap();
        let d95 = crate::dose_volume::coverage_cgy(dose.cgy(), &FakeTps::target_mask(), 95.0);
        assert!((d95 - 3600.0).abs() < 0.01, "{d95}");
    }
}
