//! `autoplan import-dicom`: a directory of DICOM files (CT series, RT structure set, RT dose)
//! made into a patient directory that `plan`, `eval` and `inspect` read.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dicom_rt::AliasTable;
use dicom_rt::import::{Imported, Options};
use tps_api::Protocol;

/// The alias table shipped with the project.
const DEFAULT_ALIASES: &str = "configs/dicom/aliases.toml";

/// Import a patient from DICOM: the CT series its RT structure set refers to, the structures
/// (named as the protocol names them, through an alias table) and an RT dose when there is
/// one; written as a patient directory with an import report.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Directory with the DICOM files (any names, any depth).
    pub dir: PathBuf,
    /// Patient directory to create (must not exist yet).
    #[arg(long)]
    pub out: PathBuf,
    /// Protocol the patient is for: the structures it needs must be found (under its names or
    /// a spelling in the alias table), its target and body get their roles.
    #[arg(long)]
    pub protocol: Option<PathBuf>,
    /// Alias table of structure names [default: configs/dicom/aliases.toml when present].
    #[arg(long)]
    pub aliases: Option<PathBuf>,
    /// Identifier of the patient [default: the series' PatientID].
    #[arg(long)]
    pub id: Option<String>,
    /// RT dose file to import (when the directory holds several, or none).
    #[arg(long)]
    pub dose: Option<PathBuf>,
    /// Directory for slice PNGs of the imported patient with its contours.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

/// Runs `autoplan import-dicom`.
pub fn run(a: &Args) -> Result<()> {
    let protocol = a.protocol.as_deref().map(Protocol::load).transpose()?;
    let aliases = match &a.aliases {
        Some(p) => Some(AliasTable::load(p)?),
        None if Path::new(DEFAULT_ALIASES).exists() => {
            Some(AliasTable::load(Path::new(DEFAULT_ALIASES))?)
        }
        None => None,
    };
    let opts = Options {
        aliases: aliases.as_ref(),
        protocol: protocol.as_ref(),
        id: a.id.clone(),
        dose: a.dose.clone(),
    };
    let im = dicom_rt::import::import(&a.dir, &opts)
        .with_context(|| format!("importing {}", a.dir.display()))?;
    write_patient(&im, &a.out)?;
    out!(
        "{} imported from {} ({})",
        im.patient.id,
        a.dir.display(),
        im.report.found
    );
    out!("{}", im.report.series.describe());
    for n in &im.report.notes {
        out!("note: {n}");
    }
    super::show_patient(&im.patient, a.png.as_deref(), None, "patient")?;
    out!("wrote {}", a.out.display());
    if im.dose.is_some() {
        out!(
            "its RT dose is {}: evaluate it with `autoplan eval --patient {} --dose {} \
             --protocol PROTOCOL`",
            a.out.join(RTDOSE).display(),
            a.out.display(),
            a.out.join(RTDOSE).display()
        );
    }
    Ok(())
}

/// The imported RT dose on the CT grid, in the patient directory.
pub const RTDOSE: &str = "rtdose.nrrd";

/// Writes the patient, its dose and the report as directory `out`, whole or not at all.
fn write_patient(im: &Imported, out: &Path) -> Result<()> {
    super::create_dir_whole(out, "the imported patient", |dir| {
        patient_model::patient_files::save(&im.patient, dir)?;
        if let Some(d) = &im.dose {
            patient_model::nrrd::write_f32(&dir.join(RTDOSE), d.on_ct.grid(), d.on_ct.cgy())?;
        }
        std::fs::write(dir.join("import.md"), report(im))
            .with_context(|| format!("writing the import report in {}", dir.display()))?;
        Ok(())
    })
}

fn axis_name(v: &[f64; 3]) -> &'static str {
    match v.map(|c| c.round() as i32) {
        [1, 0, 0] => "+x (to the patient's left)",
        [-1, 0, 0] => "-x (to the patient's right)",
        [0, 1, 0] => "+y (posterior)",
        [0, -1, 0] => "-y (anterior)",
        [0, 0, 1] => "+z (superior)",
        [0, 0, -1] => "-z (inferior)",
        _ => "oblique",
    }
}

/// The import report (`import.md`).
fn report(im: &Imported) -> String {
    let r = &im.report;
    let g = im.patient.grid();
    let mut s = String::new();
    let _ = writeln!(s, "# {} imported from DICOM\n", im.patient.id);
    let _ = writeln!(s, "Read {} ({}).\n", r.source.display(), r.found);
    let _ = writeln!(s, "## CT\n");
    let _ = writeln!(s, "- {}", r.series.describe());
    let _ = writeln!(s, "- study {}", r.series.study_uid);
    let _ = writeln!(
        s,
        "- patient position {}; image rows run along {}, columns along {}, slices along {}",
        r.series.patient_position.as_deref().unwrap_or("not given"),
        axis_name(&r.acquired_direction[0]),
        axis_name(&r.acquired_direction[1]),
        axis_name(&r.acquired_direction[2]),
    );
    let _ = writeln!(
        s,
        "- on the LPS grid: {} x {} x {} voxels of {} x {} x {} mm, first voxel centre at \
         ({}, {}, {}) mm\n",
        g.dims[0],
        g.dims[1],
        g.dims[2],
        g.spacing_mm[0],
        g.spacing_mm[1],
        g.spacing_mm[2],
        g.origin_mm[0],
        g.origin_mm[1],
        g.origin_mm[2]
    );
    let _ = writeln!(s, "## Structures\n");
    match &r.structure_set {
        Some((path, label)) => {
            let _ = writeln!(
                s,
                "From {}{}. A voxel belongs to a structure when its centre is inside the \
                 structure's contours on its slice by the even-odd rule (docs/dicom.md).\n",
                path.display(),
                label
                    .as_deref()
                    .map(|l| format!(" (\"{l}\")"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                s,
                "| DICOM name | name | role | contours | voxels | volume (cc) |\n|---|---|---|---:|---:|---:|"
            );
            for st in &r.structures {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {:.2} |",
                    st.dicom_name, st.name, st.role, st.contours, st.voxels, st.volume_cc
                );
            }
        }
        None => {
            let _ = writeln!(s, "No RT structure set: the patient has no structures.");
        }
    }
    if let Some(d) = &im.dose {
        let _ = writeln!(s, "\n## RT dose\n");
        let dg = d.native.grid();
        let _ = writeln!(
            s,
            "From {} (summation {}): {} x {} x {} voxels of {} x {} x {} mm, maximum {:.3} Gy; \
             trilinearly resampled onto the CT grid as {RTDOSE} (cGy; zero outside the dose \
             grid).",
            d.path.display(),
            d.summation.as_deref().unwrap_or("not given"),
            dg.dims[0],
            dg.dims[1],
            dg.dims[2],
            dg.spacing_mm[0],
            dg.spacing_mm[1],
            dg.spacing_mm[2],
            d.native.max_cgy() / 100.0
        );
    }
    if !r.notes.is_empty() {
        let _ = writeln!(s, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}
