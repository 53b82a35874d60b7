//! Study files (`configs/studies/*.toml`): a cohort, a protocol, the patients, and the arms to
//! compare on them, each a planner set-up (provider, guard, few-shot examples, TPS), with the
//! reference arm of the paired tests and the published values shown beside.
//!
//! Paths in a study file are relative to the file's own directory, so a study can be moved
//! with the configurations it names.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::ValueEnum;
use serde::Deserialize;

use crate::args::{Examples, Guard};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Wire {
    study: StudyWire,
    #[serde(default)]
    arm: Vec<ArmWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct StudyWire {
    name: String,
    description: Option<String>,
    cohort: PathBuf,
    protocol: PathBuf,
    patients: String,
    reference_arm: String,
    published: Option<PathBuf>,
    #[serde(default)]
    deliverable: bool,
    table5: Option<[String; 2]>,
    dose_angle_step: Option<f64>,
    example_patients: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ArmWire {
    name: String,
    label: Option<String>,
    provider: Option<PathBuf>,
    tps: Option<PathBuf>,
    guard: Option<String>,
    examples: Option<PathBuf>,
    n_examples: Option<u16>,
    selection: Option<String>,
}

/// `a/b/../c` as `a/c` (lexically, for messages and reports).
fn tidy(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.iter().collect()
}

/// Where an arm's few-shot examples come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleSource {
    /// A pool file (from `autoplan examples`).
    File(PathBuf),
    /// A pool the study builds from the cohort's training patients (or its
    /// `example-patients`) with the rule-based physicist, once, before the cases run:
    /// `examples = "training"`.
    Training,
}

/// One arm: a planner set-up run on every patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    /// Short name: the arm's directory and column (letters, digits, `-`, `_`).
    pub name: String,
    /// What the tables call it.
    pub label: String,
    /// Provider file (`None`: the rule-based physicist).
    pub provider: Option<PathBuf>,
    /// TPS file (`None`: the native TPS).
    pub tps: Option<PathBuf>,
    /// What the guard does with a bad change.
    pub guard: Guard,
    /// Few-shot example pool, if the arm's prompts show examples.
    pub examples: Option<ExampleSource>,
    /// Examples per prompt.
    pub n_examples: u16,
    /// Which examples a prompt shows.
    pub selection: Examples,
}

/// A checked study file.
#[derive(Debug, Clone)]
pub struct StudyFile {
    /// Study name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Cohort file.
    pub cohort: PathBuf,
    /// Protocol file.
    pub protocol: PathBuf,
    /// Patients: `test`, `training`, or a list such as `6-35` or `7,9`.
    pub patients: String,
    /// Arms in file order; the reference arm first.
    pub arms: Vec<Arm>,
    /// Published reference values (mean and std per metric) shown beside the arms.
    pub published: Option<PathBuf>,
    /// Whether each plan is also sequenced into deliverable arcs.
    pub deliverable: bool,
    /// The two arms whose relative differences make Table 5, when named.
    pub table5: Option<[String; 2]>,
    /// Gantry-angle bin width of the deliverable plans' dose, degrees (`plan
    /// --dose-angle-step`).
    pub dose_angle_step: f64,
    /// The patients an `examples = "training"` pool is planned on (a list as `patients`);
    /// `None`: the cohort's training patients.
    pub example_patients: Option<String>,
}

impl StudyFile {
    /// Reads and checks a study file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let w: Wire = tps_api::error::read_toml(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let at = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                tidy(&base.join(p))
            }
        };
        let origin = path.display();
        if w.arm.is_empty() {
            bail!("{origin}: no [[arm]]: a study compares at least one arm");
        }
        let mut arms = Vec::new();
        for (n, a) in w.arm.iter().enumerate() {
            let field = format!("arm[{n}]");
            if a.name.is_empty()
                || !a
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!(
                    "{origin}: field `{field}.name` = {:?}: letters, digits, '-' and '_' only \
                     (it names the arm's directory)",
                    a.name
                );
            }
            if arms.iter().any(|b: &Arm| b.name == a.name) {
                bail!(
                    "{origin}: field `{field}.name` = {:?}: two arms with one name",
                    a.name
                );
            }
            let guard = match &a.guard {
                None => Guard::Fallback,
                Some(g) => Guard::from_str(g, true).map_err(|_| {
                    anyhow::anyhow!(
                        "{origin}: field `{field}.guard` = {g:?}: expected fallback, reject or clamp"
                    )
                })?,
            };
            let n_examples = a.n_examples.unwrap_or(3);
            if i64::from(n_examples) > crate::args::MAX_EXAMPLES {
                bail!(
                    "{origin}: field `{field}.n-examples` = {n_examples}: at most {}",
                    crate::args::MAX_EXAMPLES
                );
            }
            let selection = match &a.selection {
                None => Examples::Fixed,
                Some(e) => Examples::from_str(e, true).map_err(|_| {
                    anyhow::anyhow!(
                        "{origin}: field `{field}.selection` = {e:?}: expected fixed, nearest or \
                         per-objective"
                    )
                })?,
            };
            let from_training = a.examples.as_deref() == Some(Path::new("training"));
            let examples_file = if from_training { &None } else { &a.examples };
            for (key, p) in [
                ("provider", &a.provider),
                ("tps", &a.tps),
                ("examples", examples_file),
            ] {
                if let Some(p) = p
                    && !at(p).is_file()
                {
                    bail!(
                        "{origin}: field `{field}.{key}` = {}: no such file ({})",
                        p.display(),
                        at(p).display()
                    );
                }
            }
            arms.push(Arm {
                name: a.name.clone(),
                label: a.label.clone().unwrap_or_else(|| a.name.clone()),
                provider: a.provider.as_deref().map(at),
                tps: a.tps.as_deref().map(at),
                guard,
                examples: if from_training {
                    Some(ExampleSource::Training)
                } else {
                    a.examples.as_deref().map(|p| ExampleSource::File(at(p)))
                },
                n_examples,
                selection,
            });
        }
        let Some(r) = arms.iter().position(|a| a.name == w.study.reference_arm) else {
            bail!(
                "{origin}: field `study.reference-arm` = {:?}: no such arm (arms: {})",
                w.study.reference_arm,
                arms.iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if let Some(pair) = &w.study.table5 {
            for name in pair {
                if !arms.iter().any(|a| a.name == *name) {
                    bail!("{origin}: field `study.table5` = {name:?}: no such arm");
                }
            }
            if pair[0] == pair[1] {
                bail!("{origin}: field `study.table5`: two different arms");
            }
        }
        let dose_angle_step = w.study.dose_angle_step.unwrap_or(4.0);
        if !(dose_angle_step > 0.0 && dose_angle_step <= 30.0) {
            bail!(
                "{origin}: field `study.dose-angle-step` = {dose_angle_step}: give a bin width \
                 above 0 and at most 30 degrees"
            );
        }
        let reference = arms.remove(r);
        arms.insert(0, reference);
        for (key, p) in [
            ("cohort", Some(&w.study.cohort)),
            ("protocol", Some(&w.study.protocol)),
            ("published", w.study.published.as_ref()),
        ] {
            if let Some(p) = p
                && !at(p).is_file()
            {
                bail!(
                    "{origin}: field `study.{key}` = {}: no such file ({})",
                    p.display(),
                    at(p).display()
                );
            }
        }
        Ok(Self {
            name: w.study.name,
            description: w.study.description,
            cohort: at(&w.study.cohort),
            protocol: at(&w.study.protocol),
            patients: w.study.patients,
            arms,
            published: w.study.published.as_deref().map(at),
            deliverable: w.study.deliverable,
            table5: w.study.table5,
            dose_angle_step,
            example_patients: w.study.example_patients,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_shipped_study_reads_with_the_reference_arm_first() {
        let s = StudyFile::load(&repo().join("configs/studies/wei2025.toml")).unwrap();
        assert_eq!(s.arms[0].name, "rule-based");
        assert!(s.arms[0].provider.is_none());
        assert!(s.cohort.is_file() && s.protocol.is_file());
        assert!(s.arms.iter().any(|a| a.guard == Guard::Reject));
        // The model arms build their example pool from the training patients.
        for a in &s.arms[1..] {
            assert_eq!(a.examples, Some(ExampleSource::Training), "{}", a.name);
            assert_eq!((a.n_examples, a.selection), (1, Examples::PerObjective));
        }
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let configs = repo().join("configs");
        let text = text.replace("CONFIGS", configs.to_str().unwrap());
        let p = dir.path().join("s.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    const HEAD: &str = "[study]\nname = \"s\"\ncohort = \"CONFIGS/cohorts/cervix-35.toml\"\n\
        protocol = \"CONFIGS/protocols/cervix.toml\"\npatients = \"test\"\n";

    #[test]
    fn bad_study_files_are_refused_naming_the_field() {
        let cases = [
            (
                "reference-arm = \"x\"\n[[arm]]\nname = \"a\"\n",
                "study.reference-arm",
            ),
            (
                "reference-arm = \"a\"\n[[arm]]\nname = \"a\"\n[[arm]]\nname = \"a\"\n",
                "two arms",
            ),
            (
                "reference-arm = \"a\"\n[[arm]]\nname = \"a b\"\n",
                "arm[0].name",
            ),
            (
                "reference-arm = \"a\"\n[[arm]]\nname = \"a\"\nguard = \"maybe\"\n",
                "arm[0].guard",
            ),
            (
                "reference-arm = \"a\"\n[[arm]]\nname = \"a\"\nselection = \"best\"\n",
                "arm[0].selection",
            ),
            (
                "reference-arm = \"a\"\n[[arm]]\nname = \"a\"\nprovider = \"nope.toml\"\n",
                "arm[0].provider",
            ),
            (
                "reference-arm = \"a\"\n[[arm]]\nname = \"a\"\ncolour = 1\n",
                "colour",
            ),
            ("reference-arm = \"a\"\n", "no [[arm]]"),
            (
                "reference-arm = \"a\"\ntable5 = [\"a\", \"b\"]\n[[arm]]\nname = \"a\"\n",
                "study.table5",
            ),
        ];
        for (tail, want) in cases {
            let (_d, p) = write(&format!("{HEAD}{tail}"));
            let e = format!("{:#}", StudyFile::load(&p).unwrap_err());
            assert!(e.contains(want) && e.contains("s.toml"), "{want}: {e}");
        }
    }
}
