//! Arguments several subcommands share: the machine and CT calibration, overrides of the
//! protocol's beams and grid, and the typed choices (guard policy, example selection, fluence).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::ValueEnum;
use planner::examples::Selection;
use planner::guard::GuardPolicy;
use tps_api::{Arrangement, Beams, Patient, Protocol};
use tps_core::dose::calibration::DensityCurve;
use tps_core::dose::model::BeamModel;

/// Most few-shot examples one prompt may show (each adds a report table to the prompt).
pub const MAX_EXAMPLES: i64 = 20;

/// A cohort patient (`cohort` and `id`) or a saved patient directory (`dir`), as the commands
/// that take `--cohort FILE --patient N` or `--patient-dir DIR` read it.
pub fn load_patient(
    cohort: Option<&Path>,
    id: Option<usize>,
    dir: Option<&Path>,
) -> Result<Patient> {
    match (cohort, id, dir) {
        (Some(c), Some(id), None) => {
            let spec = phantoms::cohort::CohortSpec::load(c)?;
            if id == 0 || id > spec.patients {
                anyhow::bail!(
                    "--patient {id}: {} has patients 1-{}",
                    c.display(),
                    spec.patients
                );
            }
            Ok(spec.generate(id)?)
        }
        (None, None, Some(dir)) => Ok(patient_model::patient_files::load(dir)?),
        _ => anyhow::bail!("give either --cohort FILE --patient N, or --patient-dir DIR"),
    }
}

/// The patient a plan was made for: a synthetic cohort patient or a saved patient directory.
#[derive(Debug, Clone, clap::Args)]
pub struct PatientSource {
    /// Cohort definition (with --patient), as the plan was made.
    #[arg(long)]
    pub cohort: Option<PathBuf>,
    /// Patient number in the cohort.
    #[arg(long)]
    pub patient: Option<usize>,
    /// A saved patient directory instead of a cohort patient.
    #[arg(long, conflicts_with_all = ["cohort", "patient"])]
    pub patient_dir: Option<PathBuf>,
}

impl PatientSource {
    /// Generates or loads the patient.
    pub fn load(&self) -> Result<Patient> {
        load_patient(
            self.cohort.as_deref(),
            self.patient,
            self.patient_dir.as_deref(),
        )
    }
}

/// The treatment machine and the CT calibration, shared by the commands that compute dose.
#[derive(Debug, Clone, clap::Args)]
pub struct MachineArgs {
    /// Machine (beam model) file.
    #[arg(long, default_value = "configs/machines/generic-6mv.toml")]
    pub machine: PathBuf,
    /// CT-to-density calibration file.
    #[arg(long, default_value = "configs/ct-calibration/default.toml")]
    pub calibration: PathBuf,
}

impl MachineArgs {
    /// Reads the beam model and the density curve.
    pub fn load(&self) -> Result<(BeamModel, DensityCurve)> {
        Ok((
            BeamModel::load(&self.machine)?,
            DensityCurve::load(&self.calibration)?,
        ))
    }
}

/// Command-line overrides of the protocol's `[beams]`, shared by the commands that compute
/// dose. Each option given replaces that field of the protocol's set-up; the others keep the
/// protocol's values.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BeamArgs {
    /// Number of arcs [protocol's beams.arcs; 2 if not written].
    #[arg(long)]
    pub arcs: Option<usize>,
    /// Static beams per arc (the arcs interleave: 2 x 18 gives one beam every 10 degrees)
    /// [protocol's beams.beams-per-arc; 18].
    #[arg(long)]
    pub beams_per_arc: Option<usize>,
    /// Dose grid spacing, mm, 2 to 5 [protocol's beams.dose-grid-mm; 3].
    #[arg(long)]
    pub grid_mm: Option<f64>,
    /// Beamlet size at the isocentre, mm, 2 to 20 [protocol's beams.bixel-mm; 5].
    #[arg(long)]
    pub bixel_mm: Option<f64>,
}

impl BeamArgs {
    /// Whether any option was given.
    pub fn any(&self) -> bool {
        self.arcs.is_some()
            || self.beams_per_arc.is_some()
            || self.grid_mm.is_some()
            || self.bixel_mm.is_some()
    }

    /// The protocol's beams with these options applied, checked; errors name the options and
    /// the protocol file.
    pub fn apply(&self, protocol: &Protocol) -> tps_api::Result<Beams> {
        self.over(
            protocol.beams.clone(),
            &protocol.origin.display().to_string(),
        )
    }

    /// Checks the options on their own (over the default beams), before any protocol is read.
    pub fn check(&self) -> tps_api::Result<()> {
        self.over(Beams::default(), "the command line").map(|_| ())
    }

    /// `beams` (from `origin`) with these options applied, checked.
    fn over(&self, mut beams: Beams, origin: &str) -> tps_api::Result<Beams> {
        if self.arcs.is_some() || self.beams_per_arc.is_some() {
            match &mut beams.arrangement {
                Arrangement::Arcs {
                    count,
                    beams_per_arc,
                    ..
                } => {
                    *count = self.arcs.unwrap_or(*count);
                    *beams_per_arc = self.beams_per_arc.unwrap_or(*beams_per_arc);
                }
                Arrangement::Static { angles_deg } => {
                    return Err(tps_api::Error::invalid(
                        origin,
                        "beams.technique",
                        "\"static\"",
                        format!(
                            "--arcs and --beams-per-arc apply to arcs, and this protocol lists \
                             {} static beams; edit its [beams] section instead",
                            angles_deg.len()
                        ),
                    ));
                }
            }
        }
        if let Some(g) = self.grid_mm {
            beams.dose_grid_mm = g;
        }
        if let Some(b) = self.bixel_mm {
            beams.bixel_mm = b;
        }
        if self.any() {
            beams.check(&format!(
                "{origin} with --arcs/--beams-per-arc/--grid-mm/--bixel-mm"
            ))?;
        }
        Ok(beams)
    }

    /// `protocol` with these options applied to its beams.
    pub fn apply_to(&self, mut protocol: Protocol) -> tps_api::Result<Protocol> {
        protocol.beams = self.apply(&protocol)?;
        Ok(protocol)
    }
}

/// What the guard does with a bad change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Guard {
    /// Replace the whole advice with the rule-based physicist's.
    Fallback,
    /// Drop the offending change, keep the others.
    Reject,
    /// Bring an oversized change back within the limits, drop the others.
    Clamp,
}

impl Guard {
    /// The planner's policy.
    pub fn policy(self) -> GuardPolicy {
        match self {
            Guard::Fallback => GuardPolicy::Fallback,
            Guard::Reject => GuardPolicy::Reject,
            Guard::Clamp => GuardPolicy::Clamp,
        }
    }
}

/// Which few-shot examples a prompt shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Examples {
    /// The same examples every time, spread over the pool.
    Fixed,
    /// The iterations most similar to the current one.
    Nearest,
    /// Per objective, the rows most similar to its current value, with their changes, as one
    /// composite example per rank.
    PerObjective,
}

impl Examples {
    /// The planner's selection.
    pub fn selection(self) -> Selection {
        match self {
            Examples::Fixed => Selection::Fixed,
            Examples::Nearest => Selection::Nearest,
            Examples::PerObjective => Selection::PerObjective,
        }
    }
}

/// The name clap shows for a value, for summaries.
pub fn name_of(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

/// A finite number above zero (MU, spacings): for `value_parser`.
pub fn positive(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("{v} is not a positive number")),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}
