//! Protocol files: everything site-specific a plan needs, one TOML file per tumour site.
//!
//! This module reads the site's name, the prescription, the auxiliary structure recipes, the
//! plan objectives, the planning limits and the evaluation metrics, and checks each: unknown
//! keys are refused (in sections too), and every error names the file, the field and the value.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result, parse_toml};
use crate::metric::Metric;
use crate::objectives::{Objective, ObjectiveWire};

use crate::patient::Patient;
use crate::recipe::{Recipe, RecipeWire};

/// Most optimizations a protocol may ask for (the study needed at most 20; a larger cap is a
/// typo or a runaway run).
pub const MAX_ITERATIONS: u32 = 1000;
/// Most fractions a prescription may have.
pub const MAX_FRACTIONS: u32 = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ProtocolWire {
    site: SiteWire,
    prescription: PrescriptionWire,
    #[serde(default)]
    auxiliary: Vec<RecipeWire>,
    #[serde(default)]
    evaluation: Option<EvaluationWire>,
    #[serde(default)]
    objectives: Vec<ObjectiveWire>,
    planning: Option<PlanningWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PlanningWire {
    max_iterations: u32,
    coverage_window: [f64; 2],
}

/// Termination settings of the planning loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Planning {
    /// Largest number of optimizations.
    pub max_iterations: u32,
    /// Window for the prescription metric during iterations, as fractions of the prescription
    /// (the study: PTV D95 between 1.00 and 1.02 x Rx).
    pub coverage_window: [f64; 2],
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PrescriptionWire {
    target: String,
    dose_cgy: f64,
    fractions: u32,
    volume_percent: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct EvaluationWire {
    body: Option<String>,
    metrics: Vec<String>,
}

/// The dose prescribed to a target volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Prescription {
    /// Structure the prescription refers to, e.g. `PTV`.
    pub target: String,
    /// Total dose, cGy.
    pub dose_cgy: f64,
    /// Number of fractions.
    pub fractions: u32,
    /// Percentage of the target volume that must receive `dose_cgy` (95 for D95 = Rx).
    pub volume_percent: f64,
}

impl Prescription {
    /// Dose per fraction, cGy.
    pub fn dose_per_fraction_cgy(&self) -> f64 {
        self.dose_cgy / self.fractions as f64
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct SiteWire {
    name: String,
    description: Option<String>,
}

/// A checked protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    /// File it was read from.
    pub origin: PathBuf,
    /// Site name, e.g. `cervix`.
    pub site: String,
    /// Free-text description.
    pub description: Option<String>,
    /// The prescription.
    pub prescription: Prescription,
    /// Auxiliary structures to build, in order.
    pub auxiliary: Vec<Recipe>,
    /// Structure within which the reference isodose volume is counted (default `External`).
    pub body: String,
    /// Evaluation metrics, in file order (written e.g. `PTV: D98`, `CI`); metric `n` came from
    /// field `evaluation.metrics[n]`.
    pub metrics: Vec<Metric>,
    /// Plan objectives with their initial goals, weights and ideal ranges.
    pub objectives: Vec<Objective>,
    /// Termination settings, when the protocol is used for planning.
    pub planning: Option<Planning>,
}

impl Protocol {
    /// Reads and checks a protocol file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and checks protocol TOML that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let w: ProtocolWire = parse_toml(text, path)?;
        let origin = path.display().to_string();
        if w.site.name.trim().is_empty() {
            return Err(Error::invalid(
                &origin,
                "site.name",
                "\"\"",
                "site name must not be empty",
            ));
        }
        let rx = &w.prescription;
        if rx.target.trim().is_empty() {
            return Err(Error::invalid(
                &origin,
                "prescription.target",
                "\"\"",
                "name the target structure",
            ));
        }
        if !(rx.dose_cgy.is_finite() && rx.dose_cgy > 0.0 && rx.dose_cgy <= 10_000.0) {
            return Err(Error::invalid(
                &origin,
                "prescription.dose-cgy",
                rx.dose_cgy.to_string(),
                "expected a total dose in cGy between 0 and 10000",
            ));
        }
        if !(1..=MAX_FRACTIONS).contains(&rx.fractions) {
            return Err(Error::invalid(
                &origin,
                "prescription.fractions",
                rx.fractions.to_string(),
                format!("from 1 to {MAX_FRACTIONS} fractions"),
            ));
        }
        if !(rx.volume_percent > 0.0 && rx.volume_percent <= 100.0) {
            return Err(Error::invalid(
                &origin,
                "prescription.volume-percent",
                rx.volume_percent.to_string(),
                "expected a percentage in (0, 100]",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut auxiliary = Vec::with_capacity(w.auxiliary.len());
        for (n, r) in w.auxiliary.into_iter().enumerate() {
            let field = format!("auxiliary[{n}]");
            let r = r.check(&origin, &field)?;
            if !names.insert(r.name.clone()) {
                return Err(Error::invalid(
                    &origin,
                    format!("{field}.name"),
                    &r.name,
                    "declared twice",
                ));
            }
            auxiliary.push(r);
        }
        let mut objectives = Vec::with_capacity(w.objectives.len());
        let mut ids = std::collections::BTreeSet::new();
        for (n, o) in w.objectives.into_iter().enumerate() {
            let field = format!("objectives[{n}]");
            let o = o.check(&origin, &field)?;
            if !ids.insert(o.id.clone()) {
                return Err(Error::invalid(
                    &origin,
                    format!("{field}.id"),
                    &o.id,
                    "objective ids must be unique",
                ));
            }
            objectives.push(o);
        }
        if !objectives.is_empty() && objectives.iter().all(|o| o.weight == 0.0) {
            // The optimizer would minimize nothing and return the starting fluence.
            return Err(Error::invalid(
                &origin,
                "objectives[*].weight",
                "0",
                "every objective has weight 0: give at least one a positive weight",
            ));
        }
        let planning = match w.planning {
            None => None,
            Some(p) => {
                if !(1..=MAX_ITERATIONS).contains(&p.max_iterations) {
                    return Err(Error::invalid(
                        &origin,
                        "planning.max-iterations",
                        p.max_iterations.to_string(),
                        format!("from 1 to {MAX_ITERATIONS} optimizations"),
                    ));
                }
                let [lo, hi] = p.coverage_window;
                if !(0.8 <= lo && lo <= hi && hi <= 1.5) {
                    return Err(Error::invalid(
                        &origin,
                        "planning.coverage-window",
                        format!("[{lo}, {hi}]"),
                        "expected [low, high] fractions of the prescription with \
                         0.8 <= low <= high <= 1.5",
                    ));
                }
                Some(Planning {
                    max_iterations: p.max_iterations,
                    coverage_window: p.coverage_window,
                })
            }
        };
        let (body, metric_texts) = match w.evaluation {
            Some(e) => (e.body.unwrap_or_else(|| "External".into()), e.metrics),
            None => ("External".into(), Vec::new()),
        };
        let metrics = metric_texts
            .iter()
            .enumerate()
            .map(|(n, text)| Metric::parse(text, &format!("{origin}: evaluation.metrics[{n}]")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            origin: path.to_path_buf(),
            site: w.site.name,
            description: w.site.description,
            prescription: Prescription {
                target: w.prescription.target,
                dose_cgy: w.prescription.dose_cgy,
                fractions: w.prescription.fractions,
                volume_percent: w.prescription.volume_percent,
            },
            auxiliary,
            body,
            metrics,
            objectives,
            planning,
        })
    }

    /// Checks that every structure the metrics name exists on `patient` or is built by the
    /// protocol's auxiliary recipes, so a misspelt metric is found before a plan is made, not
    /// after; the error names the file and the metric's field.
    pub fn check_metric_structures(&self, patient: &Patient) -> Result<()> {
        let origin = self.origin.display().to_string();
        for (n, m) in self.metrics.iter().enumerate() {
            if let Metric::Structure { name, .. } = m {
                if !self.auxiliary.iter().any(|r| &r.name == name) {
                    patient.require(name, &origin, &format!("evaluation.metrics[{n}]"))?;
                }
            }
        }
        Ok(())
    }

    /// Checks that every structure the objectives name exists on `patient` (after the
    /// auxiliary structures are built); the error names the file and the objective's field.
    pub fn check_objective_structures(&self, patient: &Patient) -> Result<()> {
        let origin = self.origin.display().to_string();
        for (n, o) in self.objectives.iter().enumerate() {
            patient.require(&o.structure, &origin, &format!("objectives[{n}].structure"))?;
        }
        Ok(())
    }
}
