//! `autoplan inspect`: a saved patient directory loaded, checked and described.

use std::path::PathBuf;

use anyhow::Result;

/// Load a saved patient directory, check it, print its structures, optionally render.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Patient directory (holds patient.toml).
    pub dir: PathBuf,
    /// Protocol whose auxiliary structures (rings) to add.
    #[arg(long)]
    pub protocol: Option<PathBuf>,
    /// Directory for slice PNGs.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

/// Runs `autoplan inspect`.
pub fn run(a: &Args) -> Result<()> {
    let mut p = patient_model::patient_files::load(&a.dir)?;
    super::add_auxiliary(&mut p, a.protocol.as_deref())?;
    out!("{} (loaded from {})", p.id, a.dir.display());
    super::show_patient(&p, a.png.as_deref(), None, "patient")
}
