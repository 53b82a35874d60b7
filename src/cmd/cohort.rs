//! `autoplan cohort`: every patient of a cohort generated (in parallel), a table of structure
//! volumes, optionally each patient saved and rendered.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use evaluation::tables::cohort::{
    StructureVolume, VolumeRow, columns, row, volume_markdown, volumes,
};
use indicatif::{ProgressBar, ProgressStyle};
use phantoms::cohort::CohortSpec;
use rayon::prelude::*;

/// Generate every patient of a cohort and print a table of structure volumes.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Cohort specification (TOML).
    #[arg(long)]
    pub cohort: PathBuf,
    /// Directory to save every patient in (one sub-directory per patient).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the volume table as Markdown to this file.
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// Directory for slice PNGs of every patient.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

/// Runs `autoplan cohort`.
pub fn run(a: &Args) -> Result<()> {
    let spec = CohortSpec::load(&a.cohort)?;
    let bar = ProgressBar::new(spec.patients as u64).with_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} patients, {elapsed} elapsed, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(spec.name.clone());
    let t = Instant::now();
    let ids: Vec<usize> = spec.ids().collect();
    // Each patient's structure volumes, so the columns can be chosen once every patient is
    // known without keeping the patients in memory.
    let described: Vec<(usize, Vec<StructureVolume>)> = ids
        .par_iter()
        .map(|&id| -> Result<(usize, Vec<StructureVolume>)> {
            let p = spec.generate(id).with_context(|| format!("patient {id}"))?;
            if let Some(dir) = &a.out {
                patient_model::patient_files::save(&p, &dir.join(format!("p{id:02}")))?;
            }
            if let Some(dir) = &a.png {
                crate::pictures::structure_pngs(&p, dir, &format!("p{id:02}"))?;
            }
            bar.inc(1);
            Ok((id, volumes(&p)))
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let elapsed = t.elapsed();
    let cols = columns(described.iter().map(|(_, v)| v.as_slice()));
    let rows: Vec<VolumeRow> = described
        .iter()
        .map(|(id, v)| {
            let tag = if spec.inguinal.contains(id) {
                " (inguinal)"
            } else {
                ""
            };
            row(
                v,
                &format!("p{id:02}"),
                &format!("{}{tag}", spec.split(*id)),
                &cols,
            )
        })
        .collect();
    let preamble = format!(
        "# Structure volumes of cohort `{}`\n\nVolumes in cc; {} patients, seed {}, voxels {} x {} x {} mm. \
         Regenerate with `autoplan cohort --cohort {} --table <file>`.\n\n",
        spec.name,
        spec.patients,
        spec.seed,
        spec.voxel_mm[0],
        spec.voxel_mm[1],
        spec.voxel_mm[2],
        spec.origin.display()
    );
    let md = volume_markdown(&preamble, &cols, &rows);
    outn!("{md}");
    out!(
        "generated {} patients in {:.1} s",
        rows.len(),
        elapsed.as_secs_f64()
    );
    if let Some(path) = &a.table {
        crate::output::write_text(path, &md)?;
        out!("wrote {}", path.display());
    }
    if rows.len() != spec.patients {
        bail!("generated {} of {} patients", rows.len(), spec.patients);
    }
    Ok(())
}
