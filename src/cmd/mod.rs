//! One module per subcommand: each parses its arguments ([`clap::Args`]), calls the library
//! crates and prints. Shared pieces live beside this module (`args`, `pictures`,
//! `cohort_run`, `output`), never in another command, except that `study` and `examples` run
//! `plan`'s single plan.

pub mod agreement;
pub mod calibrate;
pub mod cohort;
pub mod dose;
pub mod eval;
pub mod examples;
pub mod export_dicom;
pub mod gamma;
pub mod import_dicom;
pub mod inspect;
pub mod optimize;
pub mod phantom;
pub mod plan;
pub mod qa;
pub mod run_study;
pub mod serve_tps;
pub mod study;
pub mod synthetic_dose;

use std::path::{Path, PathBuf};

use anyhow::Result;
use tps_api::{Patient, Protocol};

pub use crate::args::load_patient;

/// A dose file: a float NRRD in cGy, with its grid.
fn read_dose(path: &Path) -> Result<tps_api::Dose> {
    let (grid, voxels) = patient_model::nrrd::read(path)?;
    let patient_model::nrrd::Voxels::F32(cgy) = voxels else {
        anyhow::bail!("{}: dose must be a float NRRD in cGy", path.display());
    };
    tps_api::Dose::new(grid, cgy).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Adds `protocol`'s auxiliary structures (rings) that `p` lacks, when a protocol is given;
/// those it has (saved with it, or imported from its structure set) are kept as they are.
fn add_auxiliary(p: &mut Patient, protocol: Option<&Path>) -> Result<()> {
    if let Some(path) = protocol {
        let proto = Protocol::load(path)?;
        let built = patient_model::recipes::build_missing_auxiliary(&proto, p)?;
        tracing::info!(
            "built {} of the {} auxiliary structures of {} ({} were present)",
            built.len(),
            proto.auxiliary.len(),
            path.display(),
            proto.auxiliary.len() - built.len()
        );
    }
    Ok(())
}

/// Prints `p`'s structures, then renders and saves it as asked.
fn show_patient(p: &Patient, png: Option<&Path>, save: Option<&PathBuf>, stem: &str) -> Result<()> {
    outn!("{}", patient_model::structure_table(p));
    if let Some(dir) = png {
        for f in crate::pictures::structure_pngs(p, dir, stem)? {
            out!("wrote {}", f.display());
        }
    }
    if let Some(dir) = save {
        patient_model::patient_files::save(p, dir)?;
        out!("saved {}", dir.display());
    }
    Ok(())
}

/// Creates directory `out` (which must not exist) by filling a hidden directory beside it with
/// `fill` and renaming it, so that an interrupted or failed run leaves nothing at `out`.
/// `what` names the content in messages.
fn create_dir_whole<T>(out: &Path, what: &str, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    use anyhow::Context;
    if out.exists() {
        anyhow::bail!(
            "{}: already exists; give a new directory for {what}",
            out.display()
        );
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".autoplan-partial-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    let value = fill(tmp.path())?;
    let kept = tmp.keep();
    if let Err(e) = std::fs::rename(&kept, out) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(e).with_context(|| format!("moving {what} to {}", out.display()));
    }
    Ok(value)
}
