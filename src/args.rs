//! Arguments several subcommands share: the machine and CT calibration, the native TPS's beams
//! and grid, and the typed choices (guard policy, example selection, fluence).

use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;
use planner::examples::Selection;
use planner::guard::GuardPolicy;
use tps_core::NativeSettings;
use tps_core::dose::calibration::DensityCurve;
use tps_core::dose::model::BeamModel;
use tps_core::dose::plan::BeamSetup;

/// Most few-shot examples one prompt may show (each adds a report table to the prompt).
pub const MAX_EXAMPLES: i64 = 20;

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

/// Beams and dose grid of the native TPS, shared by the commands that optimize.
#[derive(Debug, Clone, clap::Args)]
pub struct BeamArgs {
    /// Number of full arcs.
    #[arg(long, default_value_t = 2)]
    pub arcs: usize,
    /// Static beams per arc (the arcs interleave: 2 x 18 gives one beam every 10 degrees).
    #[arg(long, default_value_t = 18)]
    pub beams_per_arc: usize,
    /// Dose grid spacing, mm (2 to 5).
    #[arg(long, default_value_t = 3.0)]
    pub grid_mm: f64,
}

impl BeamArgs {
    /// Native TPS settings with these beams and grid, the rest default.
    pub fn settings(&self) -> NativeSettings {
        NativeSettings {
            setup: BeamSetup {
                arcs: self.arcs,
                beams_per_arc: self.beams_per_arc,
                ..Default::default()
            },
            dose_grid_mm: self.grid_mm,
            ..Default::default()
        }
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
}

impl Examples {
    /// The planner's selection.
    pub fn selection(self) -> Selection {
        match self {
            Examples::Fixed => Selection::Fixed,
            Examples::Nearest => Selection::Nearest,
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
