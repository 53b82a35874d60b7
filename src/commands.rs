//! Subcommands.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use tps_core::cohort::CohortSpec;
use tps_core::patient::Patient;
use tps_core::protocol::Protocol;
use tps_core::{patient_files, render};

/// Writes a line to stdout; a closed pipe (`autoplan ... | head`) ends the program quietly
/// instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => { $crate::commands::emit(&format!("{}\n", format!($($arg)*))) };
}

/// Like `out!` without the newline.
macro_rules! outn {
    ($($arg:tt)*) => { $crate::commands::emit(&format!($($arg)*)) };
}

pub(crate) fn emit(s: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(s.as_bytes()).and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Open LLM-driven radiotherapy planning.
#[derive(Debug, Parser)]
#[command(name = "autoplan", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate one synthetic patient of a cohort: print its structures, and optionally
    /// render slices and save it as NRRD.
    Phantom {
        /// Cohort specification (TOML).
        #[arg(long)]
        cohort: PathBuf,
        /// Patient id, 1-based.
        #[arg(long)]
        patient: usize,
        /// Protocol whose auxiliary structures (rings) to add.
        #[arg(long)]
        protocol: Option<PathBuf>,
        /// Directory for axial, sagittal and coronal PNGs through the PTV centroid.
        #[arg(long)]
        png: Option<PathBuf>,
        /// Directory to save the patient in (manifest, CT and masks as NRRD).
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Generate every patient of a cohort and print a table of structure volumes.
    Cohort {
        /// Cohort specification (TOML).
        #[arg(long)]
        cohort: PathBuf,
        /// Directory to save every patient in (one sub-directory per patient).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the volume table as Markdown to this file.
        #[arg(long)]
        table: Option<PathBuf>,
        /// Directory for slice PNGs of every patient.
        #[arg(long)]
        png: Option<PathBuf>,
    },
    /// Load a saved patient directory, check it, print its structures, optionally render.
    Inspect {
        /// Patient directory (holds patient.toml).
        dir: PathBuf,
        /// Protocol whose auxiliary structures (rings) to add.
        #[arg(long)]
        protocol: Option<PathBuf>,
        /// Directory for slice PNGs.
        #[arg(long)]
        png: Option<PathBuf>,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Phantom {
            cohort,
            patient,
            protocol,
            png,
            save,
        } => {
            let spec = CohortSpec::load(&cohort)?;
            let t = Instant::now();
            let mut p = spec.generate(patient)?;
            tracing::info!("generated {} in {:.2?}", p.id, t.elapsed());
            add_auxiliary(&mut p, protocol.as_deref())?;
            out!(
                "{} ({} set{})",
                p.id,
                spec.split(patient),
                if spec.inguinal.contains(&patient) {
                    ", inguinal nodes"
                } else {
                    ""
                }
            );
            outn!("{}", structure_table(&p));
            finish_patient(
                &p,
                png.as_deref(),
                save.as_deref(),
                &format!("p{patient:02}"),
            )
        }
        Command::Inspect { dir, protocol, png } => {
            let mut p = patient_files::load(&dir)?;
            add_auxiliary(&mut p, protocol.as_deref())?;
            out!("{} (loaded from {})", p.id, dir.display());
            outn!("{}", structure_table(&p));
            finish_patient(&p, png.as_deref(), None, "patient")
        }
        Command::Cohort {
            cohort,
            out,
            table,
            png,
        } => run_cohort(&cohort, out.as_deref(), table.as_deref(), png.as_deref()),
    }
}

fn add_auxiliary(p: &mut Patient, protocol: Option<&Path>) -> Result<()> {
    if let Some(path) = protocol {
        let proto = Protocol::load(path)?;
        proto.build_auxiliary(p)?;
        tracing::info!(
            "added {} auxiliary structures from {}",
            proto.auxiliary.len(),
            path.display()
        );
    }
    Ok(())
}

fn finish_patient(p: &Patient, png: Option<&Path>, save: Option<&Path>, stem: &str) -> Result<()> {
    if let Some(dir) = png {
        let centre = ptv_centre(p)?;
        let overlays = render::structure_overlays(p);
        for f in render::write_orthogonal_pngs(p, &overlays, centre, dir, stem)? {
            out!("wrote {}", f.display());
        }
    }
    if let Some(dir) = save {
        patient_files::save(p, dir)?;
        out!("saved {}", dir.display());
    }
    Ok(())
}

fn ptv_centre(p: &Patient) -> Result<[f64; 3]> {
    let target = p
        .structure("PTV")
        .or_else(|| p.first_with_role(tps_core::Role::Target))
        .context("patient has no target structure to centre the slices on")?;
    target
        .mask
        .centroid_mm()
        .with_context(|| format!("structure {} is empty", target.name))
}

/// One line per structure: role, volume, centroid and extent.
fn structure_table(p: &Patient) -> String {
    let mut s = format!(
        "{:<14} {:<9} {:>10}  {:>24}  {:>22}\n",
        "structure", "role", "volume_cc", "centroid_mm (x, y, z)", "extent_mm (x, y, z)"
    );
    for st in p.structure_stats() {
        let c = st.centroid_mm.map_or("-".into(), |c| {
            format!("{:.1}, {:.1}, {:.1}", c[0], c[1], c[2])
        });
        let e = st.bounding_box.map_or("-".into(), |b| {
            let d: Vec<String> = (0..3)
                .map(|a| format!("{:.0}", b.max_mm[a] - b.min_mm[a]))
                .collect();
            d.join(" x ")
        });
        s += &format!(
            "{:<14} {:<9} {:>10.1}  {:>24}  {:>22}\n",
            st.name,
            st.role.to_string(),
            st.volume_cc,
            c,
            e
        );
    }
    s
}

/// Columns of the cohort volume table.
const COHORT_COLUMNS: [&str; 9] = [
    "PTV",
    "CTV",
    "Bladder",
    "Rectum",
    "Bag_Bowel",
    "SpinalCord",
    "BoneMarrow",
    "Femur_Head_L",
    "Femur_Head_R",
];

struct Row {
    id: usize,
    split: String,
    inguinal: bool,
    volumes: Vec<Option<f64>>,
}

fn run_cohort(
    cohort: &Path,
    out: Option<&Path>,
    table: Option<&Path>,
    png: Option<&Path>,
) -> Result<()> {
    let spec = CohortSpec::load(cohort)?;
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
    let rows: Vec<Row> = ids
        .par_iter()
        .map(|&id| -> Result<Row> {
            let p = spec.generate(id).with_context(|| format!("patient {id}"))?;
            let row = Row {
                id,
                split: spec.split(id).to_string(),
                inguinal: spec.inguinal.contains(&id),
                volumes: COHORT_COLUMNS
                    .iter()
                    .map(|n| p.structure(n).map(|s| s.mask.volume_cc()))
                    .collect(),
            };
            if let Some(dir) = out {
                patient_files::save(&p, &dir.join(format!("p{id:02}")))?;
            }
            if let Some(dir) = png {
                let overlays = render::structure_overlays(&p);
                render::write_orthogonal_pngs(
                    &p,
                    &overlays,
                    ptv_centre(&p)?,
                    dir,
                    &format!("p{id:02}"),
                )?;
            }
            bar.inc(1);
            Ok(row)
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let elapsed = t.elapsed();
    let md = cohort_markdown(&spec, &rows);
    outn!("{md}");
    out!(
        "generated {} patients in {:.1} s",
        rows.len(),
        elapsed.as_secs_f64()
    );
    if let Some(path) = table {
        std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
        out!("wrote {}", path.display());
    }
    if rows.len() != spec.patients {
        bail!("generated {} of {} patients", rows.len(), spec.patients);
    }
    Ok(())
}

fn cohort_markdown(spec: &CohortSpec, rows: &[Row]) -> String {
    let mut s = format!(
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
    s += "| patient | set | ";
    s += &COHORT_COLUMNS.join(" | ");
    s += " |\n|---|---|";
    s += &"---:|".repeat(COHORT_COLUMNS.len());
    s += "\n";
    for r in rows {
        let tag = if r.inguinal { " (inguinal)" } else { "" };
        s += &format!("| p{:02} | {}{} |", r.id, r.split, tag);
        for v in &r.volumes {
            s += &v.map_or(" - |".into(), |v| format!(" {v:.0} |"));
        }
        s += "\n";
    }
    for (label, f) in [("min", 0), ("mean", 1), ("max", 2)] {
        s += &format!("| **{label}** | |");
        for c in 0..COHORT_COLUMNS.len() {
            let vals: Vec<f64> = rows.iter().filter_map(|r| r.volumes[c]).collect();
            let v = match f {
                0 => vals.iter().cloned().fold(f64::INFINITY, f64::min),
                1 => vals.iter().sum::<f64>() / vals.len().max(1) as f64,
                _ => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            };
            s += &format!(" {v:.0} |");
        }
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
