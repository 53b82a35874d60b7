//! `autoplan qa`: simulated patient-specific QA of a deliverable plan. The plan's control
//! points (deliverable.json of `autoplan plan --deliverable`) are perturbed with the delivery
//! errors a linac makes (leaf positions at random and per bank, gantry angle, MU per segment
//! and the output), the dose of the perturbed plan is computed by the same engine, and the
//! global gamma index compares it with the planned dose (deliverable-dose.nrrd) at 3%/3 mm
//! and 2%/2 mm with a 10 % cutoff. It is a simulation, not a measurement, and every output
//! says so.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use evaluation::gamma::{GammaCriteria, GammaSummary, gamma};
use phantoms::rng::SplitMix64;
use tps_api::Protocol;
use tps_api::deliverable::DeliverablePlan;
use tps_core::delivery::{ApertureSampling, DeliveryMachine};
use tps_core::native::ApertureDose;

use super::gamma::summaries_csv;
use super::read_dose;
use crate::args::{BeamArgs, MachineArgs, PatientSource};
use crate::output::write_file;

/// Simulated patient-specific QA of a plan written by `autoplan plan --deliverable`: its
/// control points with simulated delivery errors, their dose, and the gamma index against the
/// planned dose.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The plan directory (deliverable.json and deliverable-dose.nrrd).
    pub plan_dir: PathBuf,
    #[command(flatten)]
    pub patient: PatientSource,
    /// The protocol the plan was made with (body structure and dose grid).
    #[arg(long)]
    pub protocol: PathBuf,
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub beams: BeamArgs,
    /// The bin width of the gantry angles for the dose, degrees; default the one the plan's
    /// dose was computed with (deliverable-dose.json), so both doses are computed alike.
    #[arg(long)]
    pub dose_angle_step: Option<f64>,
    #[command(flatten)]
    pub errors: DeliveryErrors,
    /// Seed of the random errors.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory (default: PLAN_DIR/qa).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The simulated delivery errors. Defaults: leaf positions at random with the root-mean-square
/// error of VMAT log files on Varian linacs (0.46 mm; Kerns, Childress and Kry, Radiat Oncol
/// 9:176, 2014; a TrueBeam logs about 0.03 mm, Radiat Oncol 17:123, 2022), each bank shifted
/// by the mean MLC offset the TrueBeam Machine Performance Check reports (about 0.25 mm,
/// bank A to -a and bank B to +a, so the gaps open; Clivio et al., Radiat Oncol 10:97, 2015),
/// and, as choices of this project at half the AAPM TG-142 tolerances (Klein et al., Med Phys
/// 36:4197, 2009: gantry angle 1 degree, output 2 %), a gantry angle error of 0.5 degrees per
/// control point, 1 % per segment's MU and +1 % output.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct DeliveryErrors {
    /// Random leaf-position error, standard deviation per leaf and control point, mm.
    #[arg(long, default_value_t = DeliveryErrors::documented().leaf_random_mm)]
    pub leaf_random_mm: f64,
    /// Systematic shift of each bank, mm (positive opens every gap: -a bank to -a, +a bank to
    /// +a).
    #[arg(long, default_value_t = DeliveryErrors::documented().leaf_bank_mm, allow_hyphen_values = true)]
    pub leaf_bank_mm: f64,
    /// Random gantry-angle error, standard deviation per control point, degrees.
    #[arg(long, default_value_t = DeliveryErrors::documented().gantry_deg)]
    pub gantry_deg: f64,
    /// Random MU error, standard deviation per segment, percent.
    #[arg(long, default_value_t = DeliveryErrors::documented().segment_mu_percent)]
    pub segment_mu_percent: f64,
    /// Systematic output error, percent of every MU.
    #[arg(long, default_value_t = DeliveryErrors::documented().output_percent, allow_hyphen_values = true)]
    pub output_percent: f64,
}

impl DeliveryErrors {
    /// The documented magnitudes (see the type's documentation for their sources).
    pub const fn documented() -> Self {
        Self {
            leaf_random_mm: 0.46,
            leaf_bank_mm: 0.25,
            gantry_deg: 0.5,
            segment_mu_percent: 1.0,
            output_percent: 1.0,
        }
    }

    /// No error at all.
    #[cfg(test)]
    pub fn none() -> Self {
        Self {
            leaf_random_mm: 0.0,
            leaf_bank_mm: 0.0,
            gantry_deg: 0.0,
            segment_mu_percent: 0.0,
            output_percent: 0.0,
        }
    }

    /// Refuses a magnitude that is not a number or outside what a delivery error can be.
    pub fn check(&self) -> Result<()> {
        for (flag, v, max) in [
            ("--leaf-random-mm", self.leaf_random_mm, 10.0),
            ("--gantry-deg", self.gantry_deg, 10.0),
            ("--segment-mu-percent", self.segment_mu_percent, 50.0),
        ] {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                bail!("{flag} {v}: give a standard deviation from 0 to {max}");
            }
        }
        for (flag, v, max) in [
            ("--leaf-bank-mm", self.leaf_bank_mm, 10.0),
            ("--output-percent", self.output_percent, 50.0),
        ] {
            if !(v.is_finite() && v.abs() <= max) {
                bail!("{flag} {v}: give a shift from -{max} to {max}");
            }
        }
        Ok(())
    }

    /// One line for the report.
    fn describe(&self) -> String {
        format!(
            "leaf positions {} mm SD at random and {:+} mm per bank (positive opens the gaps), \
             gantry angle {} degrees SD, MU {} % SD per segment, output {:+} %",
            self.leaf_random_mm,
            self.leaf_bank_mm,
            self.gantry_deg,
            self.segment_mu_percent,
            self.output_percent
        )
    }
}

/// `plan` as delivered with `errors` (deterministic for a seed): every leaf tip moved by its
/// bank's shift plus a random error, keeping at least `min_gap_mm` between the tips of a pair;
/// every control point's gantry angle moved at random; every segment's MU scaled by a random
/// factor and by the output error.
pub fn perturb(
    plan: &DeliverablePlan,
    errors: &DeliveryErrors,
    min_gap_mm: f64,
    seed: u64,
) -> DeliverablePlan {
    let mut rng = SplitMix64::new(seed);
    let mut out = plan.clone();
    let output = 1.0 + errors.output_percent / 100.0;
    for arc in &mut out.arcs {
        let mut planned_prev = None;
        let mut delivered = 0.0;
        for cp in &mut arc.control_points {
            for leaf in &mut cp.leaves_mm {
                let mut l = leaf[0] - errors.leaf_bank_mm + errors.leaf_random_mm * rng.normal();
                let mut r = leaf[1] + errors.leaf_bank_mm + errors.leaf_random_mm * rng.normal();
                if r - l < min_gap_mm {
                    let c = 0.5 * (l + r);
                    (l, r) = (c - 0.5 * min_gap_mm, c + 0.5 * min_gap_mm);
                }
                *leaf = [l, r];
            }
            cp.gantry_deg = (cp.gantry_deg + errors.gantry_deg * rng.normal()).rem_euclid(360.0);
            let planned = cp.cumulative_mu;
            if let Some(prev) = planned_prev {
                let factor = (1.0 + errors.segment_mu_percent / 100.0 * rng.normal()).max(0.0);
                delivered += (planned - prev) * factor * output;
            }
            planned_prev = Some(planned);
            cp.cumulative_mu = delivered;
        }
    }
    out
}

/// Runs `autoplan qa`.
pub fn run(a: &Args) -> Result<()> {
    simulate(a).map(|_| ())
}

/// Runs `autoplan qa` and returns its gamma summaries (3%/3 mm, then 2%/2 mm).
pub fn simulate(a: &Args) -> Result<Vec<GammaSummary>> {
    a.errors.check()?;
    let step = dose_angle_step(&a.plan_dir, a.dose_angle_step)?;
    if !(step > 0.0 && step <= 30.0) {
        bail!("--dose-angle-step {step}: give a bin width above 0 and at most 30 degrees");
    }
    let plan_path = a.plan_dir.join("deliverable.json");
    let text = std::fs::read_to_string(&plan_path).with_context(|| {
        format!(
            "reading {} (write it with autoplan plan --deliverable)",
            plan_path.display()
        )
    })?;
    let plan: DeliverablePlan = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a deliverable plan", plan_path.display()))?;
    plan.check(&plan_path.display().to_string())?;
    let planned_path = a.plan_dir.join("deliverable-dose.nrrd");
    let planned = read_dose(&planned_path)?;
    let protocol = a.beams.apply_to(Protocol::load(&a.protocol)?)?;
    let machine = DeliveryMachine::load(&a.machine.machine)?;
    if machine.name != plan.machine {
        bail!(
            "{} was sequenced for {}, but --machine {} is {}",
            plan_path.display(),
            plan.machine,
            a.machine.machine.display(),
            machine.name
        );
    }
    let (model, curve) = a.machine.load()?;
    let patient = a.patient.load()?;
    if patient.grid() != planned.grid() {
        bail!(
            "{} is not on the CT grid of {}: give the patient the plan was made for",
            planned_path.display(),
            patient.id
        );
    }
    let out_dir = a.out.clone().unwrap_or_else(|| a.plan_dir.join("qa"));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    out!(
        "simulated QA of {} ({}): {}; seed {}",
        plan_path.display(),
        patient.id,
        a.errors.describe(),
        a.seed
    );
    let delivered_plan = perturb(&plan, &a.errors, machine.mlc.min_leaf_gap_mm, a.seed);
    let t = Instant::now();
    let engine = ApertureDose::new(&patient, &protocol, &model, &curve)?;
    let delivered = engine.dose(
        &delivered_plan,
        machine.mlc.transmission,
        &ApertureSampling {
            angle_step_deg: step,
            ..Default::default()
        },
    )?;
    let dose_s = t.elapsed().as_secs_f64();
    out!("dose of the simulated delivery in {dose_s:.1} s");
    let rows = gamma_rows(&planned, &delivered)?;
    for s in &rows {
        out!(
            "simulated QA {:>10}: pass {:6.2} % of {} points, mean gamma {:.3}, max {:.2}",
            s.criteria.label(),
            s.pass_rate_percent,
            s.evaluated,
            s.mean,
            s.max
        );
    }
    patient_model::nrrd::write_f32(
        &out_dir.join("qa-delivered-dose.nrrd"),
        delivered.grid(),
        delivered.cgy(),
    )?;
    write_file(&out_dir, "qa.csv", &summaries_csv(&rows))?;
    write_file(
        &out_dir,
        "qa.md",
        &qa_markdown(
            &patient.id,
            &plan_path,
            &a.errors,
            a.seed,
            &rows,
            &plan,
            &delivered_plan,
        ),
    )?;
    out!(
        "wrote {}: qa.md, qa.csv, qa-delivered-dose.nrrd (simulated QA, not a measurement)",
        out_dir.display()
    );
    Ok(rows)
}

/// How the planned dose of a plan directory was computed (`deliverable-dose.json`, written by
/// `plan --deliverable`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DoseSettings {
    /// Width of the gantry-angle bins, degrees.
    pub angle_step_deg: f64,
}

/// The bin width for the simulated delivery's dose: the plan's (deliverable-dose.json), which
/// `flag` may only repeat; `flag` or 4 degrees for a plan directory without the file.
fn dose_angle_step(plan_dir: &Path, flag: Option<f64>) -> Result<f64> {
    let path = plan_dir.join("deliverable-dose.json");
    let planned = match std::fs::read_to_string(&path) {
        Ok(text) => Some(
            serde_json::from_str::<DoseSettings>(&text)
                .with_context(|| format!("{}: not the dose settings of a plan", path.display()))?
                .angle_step_deg,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    match (planned, flag) {
        (Some(p), Some(f)) if (p - f).abs() > 1e-9 => bail!(
            "--dose-angle-step {f}: the planned dose was computed in {p}-degree bins ({}); the \
             simulated delivery must be computed alike, or the gamma compares the binning",
            path.display()
        ),
        (Some(p), _) => Ok(p),
        (None, Some(f)) => Ok(f),
        (None, None) => Ok(4.0),
    }
}

/// Global gamma of `delivered` against `planned` at 3%/3 mm and 2%/2 mm, 10 % cutoff of the
/// planned maximum.
pub fn gamma_rows(planned: &tps_api::Dose, delivered: &tps_api::Dose) -> Result<Vec<GammaSummary>> {
    [(3.0, 3.0), (2.0, 2.0)]
        .into_iter()
        .map(|(dd, dta)| Ok(gamma(planned, delivered, &GammaCriteria::new(dd, dta))?.summary))
        .collect()
}

fn qa_markdown(
    id: &str,
    plan_path: &Path,
    errors: &DeliveryErrors,
    seed: u64,
    rows: &[GammaSummary],
    plan: &DeliverablePlan,
    delivered: &DeliverablePlan,
) -> String {
    let mut s = format!(
        "# Simulated QA of {id}\n\n\
         A simulation, not a measurement: the control points of {} with simulated delivery \
         errors ({}; seed {seed}), their dose computed by the same engine, compared with the \
         planned dose by the global gamma index (10 % cutoff of the planned maximum, \
         interpolated search).\n\n\
         MU per fraction: planned {:.1}, simulated delivery {:.1}.\n\n\
         | criterion | points | passed | pass rate, % | mean gamma | max gamma |\n\
         |---|---|---|---|---|---|\n",
        plan_path.display(),
        errors.describe(),
        plan.mu_per_fraction(),
        delivered.mu_per_fraction()
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {:.2} | {:.3} | {:.2} |\n",
            r.criteria.label(),
            r.evaluated,
            r.passed,
            r.pass_rate_percent,
            r.mean,
            r.max
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tps_api::deliverable::{Arc, ControlPoint, Jaws, Rotation};

    fn plan() -> DeliverablePlan {
        let cps = (0..=90)
            .map(|k| ControlPoint {
                gantry_deg: 2.0 * k as f64,
                cumulative_mu: k as f64,
                leaves_mm: vec![[-10.0, 10.0]; 4],
            })
            .collect();
        DeliverablePlan {
            machine: "m".into(),
            energy_mv: 6.0,
            isocentre_mm: [0.0; 3],
            sad_mm: 1000.0,
            fractions: 1,
            leaf_boundaries_mm: vec![-10.0, -5.0, 0.0, 5.0, 10.0],
            arcs: vec![Arc {
                rotation: Rotation::Clockwise,
                collimator_deg: 0.0,
                jaws: Jaws {
                    x_mm: [-20.0, 20.0],
                    y_mm: [-10.0, 10.0],
                },
                control_points: cps,
            }],
        }
    }

    /// No error leaves the plan as it is; the same seed gives the same delivery.
    #[test]
    fn no_error_is_the_plan_and_a_seed_repeats() {
        let p = plan();
        assert_eq!(perturb(&p, &DeliveryErrors::none(), 0.5, 7), p);
        let e = DeliveryErrors {
            leaf_random_mm: 0.46,
            leaf_bank_mm: 0.25,
            gantry_deg: 0.5,
            segment_mu_percent: 1.0,
            output_percent: 1.0,
        };
        assert_eq!(perturb(&p, &e, 0.5, 7), perturb(&p, &e, 0.5, 7));
        assert_ne!(perturb(&p, &e, 0.5, 7), perturb(&p, &e, 0.5, 8));
    }

    /// Each error has the size asked for: the bank shift opens each gap by twice it, the
    /// random leaf and gantry errors have their standard deviations, the output scales the MU.
    #[test]
    fn errors_have_their_magnitudes() {
        let p = plan();
        let only = |e: DeliveryErrors| perturb(&p, &e, 0.5, 3);
        let bank = only(DeliveryErrors {
            leaf_bank_mm: 0.25,
            ..DeliveryErrors::none()
        });
        for cp in &bank.arcs[0].control_points {
            for l in &cp.leaves_mm {
                assert!((l[1] - l[0] - 20.5).abs() < 1e-12);
            }
        }
        let random = only(DeliveryErrors {
            leaf_random_mm: 0.46,
            gantry_deg: 0.5,
            ..DeliveryErrors::none()
        });
        let cps = &random.arcs[0].control_points;
        let leaf: Vec<f64> = cps
            .iter()
            .flat_map(|cp| cp.leaves_mm.iter().map(|l| l[0] + 10.0))
            .collect();
        let sd = (leaf.iter().map(|v| v * v).sum::<f64>() / leaf.len() as f64).sqrt();
        // 364 samples: the standard deviation is within 15 % of 0.46 mm (its standard error
        // is about 4 %).
        assert!((sd - 0.46).abs() < 0.07, "leaf SD {sd}");
        let gantry: Vec<f64> = cps
            .iter()
            .zip(&p.arcs[0].control_points)
            .map(|(a, b)| {
                let d = a.gantry_deg - b.gantry_deg;
                (d + 180.0).rem_euclid(360.0) - 180.0
            })
            .collect();
        let sd = (gantry.iter().map(|v| v * v).sum::<f64>() / gantry.len() as f64).sqrt();
        assert!((sd - 0.5).abs() < 0.15, "gantry SD {sd}");
        let output = only(DeliveryErrors {
            output_percent: 1.0,
            ..DeliveryErrors::none()
        });
        assert!((output.mu_per_fraction() - 1.01 * p.mu_per_fraction()).abs() < 1e-9);
    }

    #[test]
    fn absurd_magnitudes_are_refused() {
        let e = DeliveryErrors {
            leaf_random_mm: -1.0,
            ..DeliveryErrors::none()
        };
        assert!(
            e.check()
                .unwrap_err()
                .to_string()
                .contains("--leaf-random-mm -1")
        );
        let e = DeliveryErrors {
            output_percent: f64::NAN,
            ..DeliveryErrors::none()
        };
        assert!(
            e.check()
                .unwrap_err()
                .to_string()
                .contains("--output-percent")
        );
    }
}
