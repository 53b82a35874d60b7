//! The conformance suite every [`Tps`] must pass: the native TPS runs it in its tests, and so
//! will a remote TPS behind the bridge. Each check panics with a message naming the backend
//! and what it did wrong, as a test assertion does.
//!
//! ```ignore
//! tps_api::conformance::check_all(&mut || Box::new(open_my_case()), &Expectations { .. });
//! ```

use crate::dose_volume::coverage_cgy;
use crate::grid::Grid;
use crate::report::{GoalChange, IterationReport};
use crate::structure::{Mask, Role};
use crate::tps::{Normalization, Tps};

/// What the suite knows of the case besides the TPS itself.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Prescription dose, cGy.
    pub prescription_cgy: f64,
    /// Prescribed volume, %.
    pub volume_percent: f64,
    /// The grid [`Tps::dose`] must return, when the caller knows it (the patient's CT grid for
    /// the native TPS).
    pub dose_grid: Option<Grid>,
    /// The prescription target on the dose grid, to check a normalization on the dose.
    pub target: Option<Mask>,
    /// Relative tolerance on "the total objective does not get worse" when a plan is
    /// re-optimized with unchanged goals (0 for a TPS whose objective function does not change
    /// between optimizations).
    pub warm_start_tolerance: f64,
}

impl Expectations {
    /// What the suite expects of [`crate::fake::FakeTps`] on a case of `protocol`, directly or
    /// behind a remote protocol: its own grid and target, and no warm-start slack (its
    /// objective never changes between optimizations).
    pub fn of_fake_tps(protocol: &crate::protocol::Protocol) -> Self {
        use crate::fake::FakeTps;
        Self {
            prescription_cgy: protocol.prescription.dose_cgy,
            volume_percent: protocol.prescription.volume_percent,
            dose_grid: Some(FakeTps::grid()),
            target: Some(FakeTps::target_mask()),
            warm_start_tolerance: 0.0,
        }
    }
}

/// Runs every check, each on a fresh case from `open`.
pub fn check_all<'a>(open: &mut dyn FnMut() -> Box<dyn Tps + 'a>, expect: &Expectations) {
    stable_objective_ids(open().as_mut());
    bad_goal_changes_keep_the_plan(open().as_mut());
    warm_start_does_not_get_worse(open().as_mut(), expect);
    let mut tps = open();
    normalization_meets_the_prescription(tps.as_mut(), expect);
    dose_is_on_its_grid_finite_and_not_negative(tps.as_mut(), expect);
    mu_is_positive(tps.as_mut());
    reports_round_trip_through_serde(tps.as_mut());
}

fn ids(r: &IterationReport) -> Vec<String> {
    r.objectives.iter().map(|o| o.id.clone()).collect()
}

/// An OAR objective of `r` (or any objective, when there is none), to change goals on.
fn some_oar(r: &IterationReport) -> (String, f64) {
    let o = r
        .objectives
        .iter()
        .find(|o| o.role == Role::Oar)
        .unwrap_or(&r.objectives[0]);
    (o.id.clone(), o.goal_cgy)
}

/// Objective ids are unique, stable across calls and optimizations, and the reports list them
/// in the same order; optimizing with no changes works and a goal change is applied.
pub fn stable_objective_ids(tps: &mut dyn Tps) {
    let name = tps.name();
    let before: Vec<String> = tps
        .objectives()
        .unwrap_or_else(|e| panic!("{name}: objectives(): {e}"))
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert!(!before.is_empty(), "{name}: a case without objectives");
    let mut unique = before.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        before.len(),
        "{name}: duplicate ids {before:?}"
    );
    let first = tps
        .optimize(&[])
        .unwrap_or_else(|e| panic!("{name}: optimizing with no changes: {e}"));
    assert_eq!(
        ids(&first),
        before,
        "{name}: report ids differ from objectives()"
    );
    assert_eq!(
        first.iteration, 1,
        "{name}: the first optimization is iteration 1"
    );
    let (id, goal) = some_oar(&first);
    let new_goal = (goal - 100.0).max(50.0);
    let second = tps
        .optimize(&[GoalChange {
            id: id.clone(),
            goal_cgy: new_goal,
        }])
        .unwrap_or_else(|e| panic!("{name}: optimizing with a goal change: {e}"));
    assert_eq!(
        ids(&second),
        before,
        "{name}: ids changed after an optimization"
    );
    assert_eq!(
        second.iteration, 2,
        "{name}: iterations count optimizations"
    );
    let changed = second.objectives.iter().find(|o| o.id == id).expect("id");
    assert_eq!(
        changed.goal_cgy, new_goal,
        "{name}: the goal change was not applied"
    );
    let now = tps.objectives().expect("objectives");
    let ids_now: Vec<String> = now.iter().map(|o| o.id.clone()).collect();
    assert_eq!(ids_now, before, "{name}: objectives() ids changed");
    let listed = now.iter().find(|o| o.id == id).expect("id");
    assert_eq!(
        listed.goal_cgy, new_goal,
        "{name}: objectives() misses the new goal"
    );
}

/// An unknown id or a goal that is not a positive dose is a permanent error, and the plan
/// (report and goals) stays what it was.
pub fn bad_goal_changes_keep_the_plan(tps: &mut dyn Tps) {
    let name = tps.name();
    let first = tps.optimize(&[]).expect("first optimization");
    let (id, goal) = some_oar(&first);
    let bad = [
        vec![GoalChange {
            id: "no-such-objective".into(),
            goal_cgy: 1000.0,
        }],
        vec![GoalChange {
            id: id.clone(),
            goal_cgy: f64::NAN,
        }],
        vec![GoalChange {
            id: id.clone(),
            goal_cgy: -5.0,
        }],
        // A good change beside a bad one: nothing is applied.
        vec![
            GoalChange {
                id: id.clone(),
                goal_cgy: goal - 100.0,
            },
            GoalChange {
                id: "no-such-objective".into(),
                goal_cgy: 1000.0,
            },
        ],
    ];
    for changes in bad {
        let e = tps
            .optimize(&changes)
            .err()
            .unwrap_or_else(|| panic!("{name}: goal changes {changes:?} were accepted"));
        assert!(
            !e.is_temporary(),
            "{name}: bad input reported as temporary: {e}"
        );
        let now = tps.report().expect("report");
        assert_eq!(
            now.iteration, first.iteration,
            "{name}: {changes:?} counted"
        );
        for (a, b) in now.objectives.iter().zip(&first.objectives) {
            assert_eq!(
                a.goal_cgy, b.goal_cgy,
                "{name}: {changes:?} changed {}",
                a.id
            );
            assert_eq!(
                a.current_cgy, b.current_cgy,
                "{name}: {changes:?} changed the plan"
            );
        }
    }
}

/// Re-optimizing with unchanged goals, warm-started from the plan, does not make the total
/// objective worse (within the expectations' tolerance).
pub fn warm_start_does_not_get_worse(tps: &mut dyn Tps, expect: &Expectations) {
    let name = tps.name();
    let a = tps
        .optimize(&[])
        .expect("first optimization")
        .total_objective;
    let b = tps
        .optimize(&[])
        .expect("second optimization")
        .total_objective;
    assert!(
        a.is_finite() && b.is_finite() && a >= 0.0 && b >= 0.0,
        "{name}: totals {a}, {b}"
    );
    assert!(
        b <= a * (1.0 + expect.warm_start_tolerance) + 1e-12,
        "{name}: warm start made the total objective worse: {a} -> {b}"
    );
}

/// After a normalization on the report, the report's coverage is the prescription; after one
/// on the dose, the dose's coverage within the target is.
pub fn normalization_meets_the_prescription(tps: &mut dyn Tps, expect: &Expectations) {
    let name = tps.name();
    tps.optimize(&[]).expect("optimization");
    let f = tps
        .normalize(Normalization::Report)
        .unwrap_or_else(|e| panic!("{name}: normalize: {e}"));
    assert!(f.is_finite() && f > 0.0, "{name}: normalization factor {f}");
    let r = tps.report().expect("report");
    let rx = expect.prescription_cgy;
    assert!(
        (r.coverage_cgy - rx).abs() <= 1e-5 * rx,
        "{name}: coverage {} after normalizing, prescription {rx}",
        r.coverage_cgy
    );
    let f = tps
        .normalize(Normalization::Dose)
        .unwrap_or_else(|e| panic!("{name}: normalize on the dose: {e}"));
    assert!(f.is_finite() && f > 0.0, "{name}: normalization factor {f}");
    if let Some(target) = &expect.target {
        let dose = tps.dose().expect("dose");
        let d = coverage_cgy(dose.cgy(), target, expect.volume_percent);
        // The dose is single precision.
        assert!(
            (d - rx).abs() <= 1e-4 * rx,
            "{name}: dose coverage {d} after normalizing on the dose, prescription {rx}"
        );
    }
}

/// The dose comes on the expected grid, every value finite and not negative, some positive.
pub fn dose_is_on_its_grid_finite_and_not_negative(tps: &mut dyn Tps, expect: &Expectations) {
    let name = tps.name();
    let dose = tps.dose().unwrap_or_else(|e| panic!("{name}: dose: {e}"));
    if let Some(g) = &expect.dose_grid {
        assert_eq!(dose.grid(), g, "{name}: dose on another grid");
    }
    assert_eq!(dose.cgy().len(), dose.grid().len());
    if let Some((n, v)) = dose.first_invalid() {
        panic!("{name}: dose voxel {n} is {v}");
    }
    assert!(dose.max_cgy() > 0.0, "{name}: the dose is zero everywhere");
}

/// MU per fraction positive and the beams' MU consistent with it.
pub fn mu_is_positive(tps: &mut dyn Tps) {
    let name = tps.name();
    let p = tps.plan().unwrap_or_else(|e| panic!("{name}: plan: {e}"));
    assert!(
        p.mu_per_fraction.is_finite() && p.mu_per_fraction > 0.0,
        "{name}: MU per fraction {}",
        p.mu_per_fraction
    );
    assert!(p.fractions > 0, "{name}: no fractions");
    assert!(
        p.beam_mu.iter().all(|m| m.is_finite() && *m >= 0.0),
        "{name}: beam MU {:?}",
        p.beam_mu
    );
    let sum = p.beam_mu.iter().sum::<f64>() / p.fractions as f64;
    assert!(
        (sum - p.mu_per_fraction).abs() <= 1e-9 * sum.max(1.0),
        "{name}: beams give {sum} MU per fraction, the plan says {}",
        p.mu_per_fraction
    );
}

/// Reports, plan summaries and objectives survive JSON unchanged (transcripts and remote TPSs
/// carry them so).
pub fn reports_round_trip_through_serde(tps: &mut dyn Tps) {
    let name = tps.name();
    let report = tps.report().expect("report");
    let text = serde_json::to_string(&report).expect("serialize report");
    let back: IterationReport = serde_json::from_str(&text).expect("deserialize report");
    assert_eq!(back, report, "{name}: report changed through JSON");
    let plan = tps.plan().expect("plan");
    let text = serde_json::to_string(&plan).expect("serialize plan");
    assert_eq!(
        serde_json::from_str::<crate::report::PlanSummary>(&text).expect("plan"),
        plan,
        "{name}: plan summary changed through JSON"
    );
    let objectives = tps.objectives().expect("objectives");
    let text = serde_json::to_string(&objectives).expect("serialize objectives");
    assert_eq!(
        serde_json::from_str::<Vec<crate::objectives::Objective>>(&text).expect("objectives"),
        objectives,
        "{name}: objectives changed through JSON"
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::fake::FakeTps;
    use crate::protocol::Protocol;

    #[test]
    fn the_fake_tps_conforms() {
        let protocol = Protocol::parse(crate::fake::tests::PROTOCOL, Path::new("fake.toml"))
            .expect("protocol");
        let expect = Expectations::of_fake_tps(&protocol);
        assert_eq!(expect.prescription_cgy, 3600.0);
        check_all(
            &mut || Box::new(FakeTps::new(&protocol).expect("fake")),
            &expect,
        );
    }

    /// The suite can fail: a TPS that accepts an unknown id is caught.
    #[test]
    #[should_panic(expected = "were accepted")]
    fn a_tps_that_ignores_unknown_ids_fails() {
        struct Lenient(FakeTps);
        impl Tps for Lenient {
            fn name(&self) -> String {
                "lenient".into()
            }
            fn objectives(&self) -> crate::Result<Vec<crate::objectives::Objective>> {
                self.0.objectives()
            }
            fn optimize(&mut self, goals: &[GoalChange]) -> crate::Result<IterationReport> {
                let known: Vec<GoalChange> = goals
                    .iter()
                    .filter(|g| g.id != "no-such-objective")
                    .cloned()
                    .collect();
                self.0.optimize(&known)
            }
            fn normalize(&mut self, basis: Normalization) -> crate::Result<f64> {
                self.0.normalize(basis)
            }
            fn report(&self) -> crate::Result<IterationReport> {
                self.0.report()
            }
            fn dose(&self) -> crate::Result<crate::dose::Dose> {
                self.0.dose()
            }
            fn plan(&self) -> crate::Result<crate::report::PlanSummary> {
                self.0.plan()
            }
        }
        let protocol =
            Protocol::parse(crate::fake::tests::PROTOCOL, Path::new("fake.toml")).unwrap();
        bad_goal_changes_keep_the_plan(&mut Lenient(FakeTps::new(&protocol).unwrap()));
    }
}
