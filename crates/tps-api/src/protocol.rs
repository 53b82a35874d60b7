//! Protocol files: everything site-specific a plan needs, one TOML file per tumour site.
//!
//! This module reads the site's name, the prescription, the auxiliary structure recipes, the
//! plan objectives, the planning limits and the evaluation metrics, and checks each: unknown
//! keys are refused (in sections too), and every error names the file, the field and the value.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::beams::{Beams, BeamsWire};
use crate::error::{Error, Result, parse_toml};
use crate::goals::{ClinicalGoal, ClinicalGoalWire};
use crate::metric::Metric;
use crate::objectives::{Objective, ObjectiveWire};

use crate::patient::Patient;
use crate::recipe::{Recipe, RecipeWire};
use crate::structure::{Role, Structure};

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
    #[serde(default)]
    clinical_goals: Vec<ClinicalGoalWire>,
    #[serde(default)]
    beams: Option<BeamsWire>,
    planning: Option<PlanningWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PlanningWire {
    max_iterations: u32,
    coverage_window: [f64; 2],
    #[serde(default)]
    termination: Option<Termination>,
}

/// Which criteria end the planning loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Termination {
    /// The study's: coverage at the prescription and every OAR objective's constraint target
    /// value inside its ideal range. Clinical goals are judged on the final plan only.
    Study,
    /// Every must-goal of `[[clinical-goals]]` met (or within its tolerance), judged after
    /// every optimization.
    Goals,
    /// Both of the above (the default).
    Both,
}

impl Termination {
    /// Whether the clinical goals take part in the termination (and so are judged after
    /// every optimization).
    pub fn uses_goals(self) -> bool {
        self != Termination::Study
    }

    /// Whether the study's criteria take part.
    pub fn uses_study(self) -> bool {
        self != Termination::Goals
    }
}

/// Termination settings of the planning loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Planning {
    /// Largest number of optimizations.
    pub max_iterations: u32,
    /// Window for the prescription metric during iterations, as fractions of the prescription
    /// (the study: PTV D95 between 1.00 and 1.02 x Rx).
    pub coverage_window: [f64; 2],
    /// Which criteria end the loop (`termination`, default `both`).
    pub termination: Termination,
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
    /// Structure within which the reference isodose volume is counted, when the protocol names
    /// one (`evaluation.body`); otherwise the patient's structure with role `external`
    /// ([`Protocol::body_structure`]).
    pub body: Option<String>,
    /// Evaluation metrics, in file order (written e.g. `PTV: D98`, `CI`); metric `n` came from
    /// field `evaluation.metrics[n]`.
    pub metrics: Vec<Metric>,
    /// Plan objectives with their initial goals, weights and ideal ranges.
    pub objectives: Vec<Objective>,
    /// Clinical goals the plan is judged by, in file order (`clinical-goals[n]`).
    pub clinical_goals: Vec<ClinicalGoal>,
    /// The beam set-up (`[beams]`; the study's two full arcs when the section is left out).
    pub beams: Beams,
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
                let termination = p.termination.unwrap_or(Termination::Both);
                if termination == Termination::Goals
                    && !w.clinical_goals.iter().any(|g| g.is_must())
                {
                    return Err(Error::invalid(
                        &origin,
                        "planning.termination",
                        "\"goals\"",
                        "termination by clinical goals needs at least one [[clinical-goals]] \
                         entry with priority = \"must\"",
                    ));
                }
                Some(Planning {
                    max_iterations: p.max_iterations,
                    coverage_window: p.coverage_window,
                    termination,
                })
            }
        };
        let (body, metric_texts) = match w.evaluation {
            Some(e) => (e.body, e.metrics),
            None => (None, Vec::new()),
        };
        if let Some(b) = &body
            && b.trim().is_empty()
        {
            return Err(Error::invalid(
                &origin,
                "evaluation.body",
                "\"\"",
                "name the body structure, or leave the key out to use the patient's structure \
                 with role external",
            ));
        }
        let clinical_goals = w
            .clinical_goals
            .into_iter()
            .enumerate()
            .map(|(n, g)| g.check(&origin, &format!("clinical-goals[{n}]")))
            .collect::<Result<Vec<_>>>()?;
        let beams = w.beams.unwrap_or_default().check(&origin)?;
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
            clinical_goals,
            beams,
            planning,
        })
    }

    /// The body: the structure `evaluation.body` names, which must have role `external`, or
    /// else the patient's structure with role `external`, whatever its name. A patient without
    /// one, or a body of another role, is an error naming the file and the field.
    pub fn body_structure<'p>(&self, patient: &'p Patient) -> Result<&'p Structure> {
        let origin = self.origin.display().to_string();
        match &self.body {
            Some(name) => self.require_with_role(
                patient,
                name,
                "evaluation.body",
                Role::External,
                "the body must be the structure with role external",
            ),
            None => patient.first_with_role(Role::External).ok_or_else(|| {
                Error::invalid(
                    &origin,
                    "evaluation.body",
                    "(not given)",
                    format!(
                        "patient {} has no structure with role external ({}); give the body's \
                         role as external in the patient's structure set",
                        patient.id,
                        describe_roles(patient)
                    ),
                )
            }),
        }
    }

    /// Checks the roles the protocol relies on: the prescription target has role `target` and
    /// the body role `external` (see [`Protocol::body_structure`]).
    pub fn check_roles(&self, patient: &Patient) -> Result<()> {
        self.require_with_role(
            patient,
            &self.prescription.target,
            "prescription.target",
            Role::Target,
            "the prescription target must have role target",
        )?;
        self.body_structure(patient)?;
        Ok(())
    }

    /// The structure `name` (asked for by `field`), which must have `role`; otherwise an error
    /// naming the file, the field, the role found and `rule`.
    fn require_with_role<'p>(
        &self,
        patient: &'p Patient,
        name: &str,
        field: &str,
        role: Role,
        rule: &str,
    ) -> Result<&'p Structure> {
        let origin = self.origin.display().to_string();
        let s = patient.require(name, &origin, field)?;
        if s.role != role {
            return Err(Error::invalid(
                &origin,
                field,
                name,
                format!(
                    "{name} has role {} on patient {}: {rule}",
                    s.role, patient.id
                ),
            ));
        }
        Ok(s)
    }

    /// The structures a patient must bring for this protocol: the prescription target, the
    /// named body, and every structure an objective, a clinical goal or a metric names, less
    /// those the auxiliary recipes build; in that order, each once.
    pub fn required_structures(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let mut add = |n: &str| {
            if !self.auxiliary.iter().any(|r| r.name == n) && !names.iter().any(|m| m == n) {
                names.push(n.to_string());
            }
        };
        add(&self.prescription.target);
        if let Some(b) = &self.body {
            add(b);
        }
        self.objectives.iter().for_each(|o| add(&o.structure));
        self.clinical_goals.iter().for_each(|g| add(&g.structure));
        for m in &self.metrics {
            if let Metric::Structure { name, .. } = m {
                add(name);
            }
        }
        names
    }

    /// Checks that every structure the clinical goals name exists on `patient` or is built by
    /// the protocol's auxiliary recipes.
    pub fn check_goal_structures(&self, patient: &Patient) -> Result<()> {
        for (n, g) in self.clinical_goals.iter().enumerate() {
            self.require_or_built(
                patient,
                &g.structure,
                &format!("clinical-goals[{n}].structure"),
            )?;
        }
        Ok(())
    }

    /// `name` is on `patient` or one of the auxiliary recipes builds it; otherwise an error
    /// naming the file and `field`.
    fn require_or_built(&self, patient: &Patient, name: &str, field: &str) -> Result<()> {
        if !self.auxiliary.iter().any(|r| r.name == name) {
            patient.require(name, &self.origin.display().to_string(), field)?;
        }
        Ok(())
    }

    /// Checks that every structure the metrics name exists on `patient` or is built by the
    /// protocol's auxiliary recipes, so a misspelt metric is found before a plan is made, not
    /// after; the error names the file and the metric's field.
    pub fn check_metric_structures(&self, patient: &Patient) -> Result<()> {
        for (n, m) in self.metrics.iter().enumerate() {
            if let Metric::Structure { name, .. } = m {
                self.require_or_built(patient, name, &format!("evaluation.metrics[{n}]"))?;
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

fn describe_roles(patient: &Patient) -> String {
    let list: Vec<String> = patient
        .structures()
        .iter()
        .map(|s| format!("{}: {}", s.name, s.role))
        .collect();
    if list.is_empty() {
        "it has no structures".into()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::structure::Mask;

    const BASE: &str = "[site]\nname = \"s\"\n[prescription]\ntarget = \"PTV\"\ndose-cgy = 5000.0\n\
                        fractions = 25\nvolume-percent = 95.0\n";
    const GOAL: &str = "[[clinical-goals]]\nstructure = \"Core\"\nmetric = \"D10%\"\n\
                        at-most-cgy = 2500.0\npriority = \"must\"\n";

    fn parse(text: &str) -> Result<Protocol> {
        Protocol::parse(text, Path::new("site.toml"))
    }

    fn planning(termination: Option<&str>) -> String {
        let t = termination.map_or(String::new(), |t| format!("termination = \"{t}\"\n"));
        format!("[planning]\nmax-iterations = 5\ncoverage-window = [1.0, 1.02]\n{t}")
    }

    #[test]
    fn termination_defaults_to_both_and_goals_need_a_must_goal() {
        let p = parse(&format!("{BASE}{}{GOAL}", planning(None))).unwrap();
        assert_eq!(p.planning.unwrap().termination, Termination::Both);
        assert_eq!(p.clinical_goals.len(), 1);
        let p = parse(&format!("{BASE}{}", planning(Some("study")))).unwrap();
        assert_eq!(p.planning.unwrap().termination, Termination::Study);
        let e = parse(&format!("{BASE}{}", planning(Some("goals"))))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("planning.termination") && e.contains("must"),
            "{e}"
        );
        let e = parse(&format!("{BASE}{}", planning(Some("sometimes"))))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sometimes"), "{e}");
        let e = parse(&format!("{BASE}{GOAL}").replace("D10%", "Dmax"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("clinical-goals[0].metric"), "{e}");
    }

    /// `[beams]` is read with the protocol: left out it is the study's set-up; a misspelt key
    /// or a bad value names the file and the field.
    #[test]
    fn the_beams_section_is_read_with_the_protocol() {
        assert_eq!(parse(BASE).unwrap().beams, Beams::default());
        let p = parse(&format!(
            "{BASE}[beams]\ntechnique = \"static\"\nangles-deg = [0, 120, 240]\n"
        ))
        .unwrap();
        assert_eq!(p.beams.gantry_angles(), vec![vec![0.0, 120.0, 240.0]]);
        let e = parse(&format!("{BASE}[beams]\narcz = 2\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("site.toml") && e.contains("arcz"), "{e}");
        let e = parse(&format!("{BASE}[beams]\ndose-grid-mm = 0.5\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("site.toml") && e.contains("`beams.dose-grid-mm` = 0.5"),
            "{e}"
        );
    }

    fn patient(body: (&str, Role)) -> Patient {
        let g = Grid::new([4, 4, 4], [2.0; 3], [0.0; 3]).unwrap();
        let mut p = Patient::new("p", g, vec![0; 64]).unwrap();
        let all = Mask::from_vec(g, vec![true; 64]).unwrap();
        p.add_structure(Structure::new("PTV", Role::Target, all.clone()))
            .unwrap();
        p.add_structure(Structure::new(body.0, body.1, all))
            .unwrap();
        p
    }

    #[test]
    fn the_body_is_found_by_its_role_and_a_wrong_role_is_refused() {
        let p = parse(BASE).unwrap();
        assert_eq!(
            p.body_structure(&patient(("BODY", Role::External)))
                .unwrap()
                .name,
            "BODY"
        );
        p.check_roles(&patient(("Skin", Role::External))).unwrap();
        let e = p
            .body_structure(&patient(("Skin", Role::Oar)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("site.toml")
                && e.contains("no structure with role external")
                && e.contains("Skin: oar"),
            "{e}"
        );
        let named = parse(&format!(
            "{BASE}[evaluation]\nbody = \"Skin\"\nmetrics = []\n"
        ))
        .unwrap();
        let e = named
            .check_roles(&patient(("Skin", Role::Oar)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("evaluation.body") && e.contains("Skin has role oar"),
            "{e}"
        );
        let wrong_target = parse(&BASE.replace("\"PTV\"", "\"Skin\"")).unwrap();
        let e = wrong_target
            .check_roles(&patient(("Skin", Role::External)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("prescription.target") && e.contains("role target"),
            "{e}"
        );
    }
}
