//! Patients on disk: a directory with a manifest (`patient.toml`), the CT and one mask per
//! structure, all NRRD, so a person can open them in 3D Slicer or ITK-SNAP.
//!
//! ```text
//! p07/
//!   patient.toml          manifest: id, grid, files, roles, voxel counts
//!   ct.nrrd               int16 HU
//!   structures/PTV.nrrd   uint8 0/1, one file per structure
//! ```
//!
//! Loading checks every file against the manifest (grid, voxel count) so a truncated,
//! swapped or edited file is refused with the reason rather than planned on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::nrrd::{self, Voxels};
use tps_api::error::{Error, Result, read_toml};
use tps_api::grid::Grid;
use tps_api::patient::Patient;
use tps_api::structure::{Mask, Role, Structure};

/// Manifest format tag.
pub const FORMAT: &str = "autoplan-patient";
/// Manifest version this build writes and reads.
pub const VERSION: u32 = 1;
/// Manifest file name inside a patient directory.
pub const MANIFEST: &str = "patient.toml";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Manifest {
    format: String,
    version: u32,
    id: String,
    ct: String,
    grid: Grid,
    #[serde(default)]
    structures: Vec<ManifestStructure>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ManifestStructure {
    name: String,
    role: Role,
    file: String,
    voxels: usize,
}

/// A file name for a structure: letters, digits, `-` and `_` kept, the rest replaced.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `patient` into `dir` (created if missing). The manifest is written last, so a
/// directory without a manifest is an interrupted save, never a silently partial patient.
pub fn save(patient: &Patient, dir: &Path) -> Result<()> {
    let sdir = dir.join("structures");
    std::fs::create_dir_all(&sdir).map_err(|e| Error::io(&sdir, e))?;
    let grid = *patient.grid();
    nrrd::write_i16(&dir.join("ct.nrrd"), &grid, patient.ct_hu())?;
    let mut entries = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for s in patient.structures() {
        let mut stem = file_stem(&s.name);
        while !used.insert(stem.to_lowercase()) {
            stem.push('_');
        }
        let file = format!("structures/{stem}.nrrd");
        nrrd::write_mask(&dir.join(&file), &grid, s.mask.data())?;
        entries.push(ManifestStructure {
            name: s.name.clone(),
            role: s.role,
            file,
            voxels: s.mask.count(),
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        id: patient.id.clone(),
        ct: "ct.nrrd".into(),
        grid,
        structures: entries,
    };
    let text = toml::to_string(&manifest)
        .map_err(|e| Error::io(dir.join(MANIFEST), std::io::Error::other(e.to_string())))?;
    tps_api::files::write_atomic(&dir.join(MANIFEST), text.as_bytes())
}

fn inside(dir: &Path, rel: &str, manifest: &Path, field: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::invalid(
            manifest.display().to_string(),
            field,
            rel,
            "file paths must be relative and stay inside the patient directory",
        ));
    }
    Ok(dir.join(p))
}

/// Loads a patient directory written by [`save`] (or by hand, following the same layout).
pub fn load(dir: &Path) -> Result<Patient> {
    let mpath = dir.join(MANIFEST);
    if !dir.exists() {
        return Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the patient directory does not exist",
            ),
        ));
    }
    if !mpath.exists() {
        return Err(Error::corrupt(
            dir,
            format!("no {MANIFEST} here: not a patient directory, or an interrupted save"),
        ));
    }
    let m: Manifest = read_toml(&mpath)?;
    let origin = mpath.display().to_string();
    if m.format != FORMAT {
        return Err(Error::invalid(
            &origin,
            "format",
            &m.format,
            format!("expected \"{FORMAT}\""),
        ));
    }
    if m.version != VERSION {
        return Err(Error::invalid(
            &origin,
            "version",
            m.version.to_string(),
            format!("this build reads version {VERSION}"),
        ));
    }
    m.grid
        .validate()
        .map_err(|e| Error::invalid(&origin, "grid", format!("{:?}", m.grid), e.to_string()))?;
    let ct_path = inside(dir, &m.ct, &mpath, "ct")?;
    let (g, v) = nrrd::read(&ct_path)?;
    check_grid(&ct_path, &g, &m.grid)?;
    let Voxels::I16(ct) = v else {
        return Err(Error::corrupt(&ct_path, "CT must be int16 HU"));
    };
    let mut patient = Patient::new(m.id, m.grid, ct)?;
    for (n, s) in m.structures.into_iter().enumerate() {
        let path = inside(dir, &s.file, &mpath, &format!("structures[{n}].file"))?;
        let (g, v) = nrrd::read(&path)?;
        check_grid(&path, &g, &m.grid)?;
        let Voxels::U8(bytes) = v else {
            return Err(Error::corrupt(&path, "a structure mask must be uint8"));
        };
        if let Some(bad) = bytes.iter().find(|&&b| b > 1) {
            return Err(Error::corrupt(
                &path,
                format!("mask holds value {bad}; only 0 and 1 are allowed"),
            ));
        }
        let mask = Mask::from_vec(g, bytes.into_iter().map(|b| b == 1).collect())?;
        let count = mask.count();
        if count != s.voxels {
            return Err(Error::corrupt(
                &path,
                format!(
                    "mask has {count} voxels, the manifest records {} for \"{}\"",
                    s.voxels, s.name
                ),
            ));
        }
        patient
            .add_structure(Structure::new(s.name, s.role, mask))
            .map_err(|e| {
                Error::invalid(&origin, format!("structures[{n}].name"), "", e.to_string())
            })?;
    }
    Ok(patient)
}

fn check_grid(path: &Path, found: &Grid, expected: &Grid) -> Result<()> {
    let close = |a: &[f64; 3], b: &[f64; 3]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1.0))
    };
    if found.dims != expected.dims
        || !close(&found.spacing_mm, &expected.spacing_mm)
        || !close(&found.origin_mm, &expected.origin_mm)
    {
        return Err(Error::corrupt(
            path,
            format!("grid {found:?} differs from the manifest's {expected:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask_ops::MaskOps;

    fn small_patient() -> Patient {
        let g = Grid::new([6, 5, 4], [2.0, 2.0, 3.0], [-5.0, -4.0, 0.0]).unwrap();
        let ct: Vec<i16> = (0..g.len() as i16).map(|v| v * 10 - 500).collect();
        let mut p = Patient::new("test/p01", g, ct).unwrap();
        p.add_structure(Structure::new(
            "PTV",
            Role::Target,
            Mask::from_fn(g, |x, _, _| x < 0.0),
        ))
        .unwrap();
        p.add_structure(Structure::new(
            "Femur Head/L",
            Role::Oar,
            Mask::from_fn(g, |_, y, _| y > 0.0),
        ))
        .unwrap();
        p
    }

    #[test]
    fn patient_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = small_patient();
        save(&p, dir.path()).unwrap();
        assert!(dir.path().join("structures/Femur_Head_L.nrrd").exists());
        let q = load(dir.path()).unwrap();
        assert_eq!(q.id, p.id);
        assert_eq!(q.grid(), p.grid());
        assert_eq!(q.ct_hu(), p.ct_hu());
        assert_eq!(q.structures(), p.structures());
    }

    #[test]
    fn a_missing_directory_is_said_not_to_exist() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("p99");
        let e = load(&gone).unwrap_err().to_string();
        assert!(
            e.contains("p99") && e.contains("does not exist") && !e.contains("corrupt"),
            "{e}"
        );
    }

    #[test]
    fn damaged_directories_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        save(&small_patient(), dir.path()).unwrap();
        // Truncated mask.
        let f = dir.path().join("structures/PTV.nrrd");
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() - 10]).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("PTV.nrrd"), "{e}");
        // Swapped mask: right grid, wrong voxel count.
        std::fs::copy(dir.path().join("structures/Femur_Head_L.nrrd"), &f).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("manifest records"), "{e}");
        // Unknown manifest key.
        let m = dir.path().join(MANIFEST);
        let text = std::fs::read_to_string(&m).unwrap();
        std::fs::write(
            &m,
            text.replacen("version = 1", "version = 1\nsurprise = true", 1),
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("surprise") && e.contains(MANIFEST), "{e}");
        // Path escaping the directory.
        std::fs::write(
            &m,
            text.replacen("ct = \"ct.nrrd\"", "ct = \"../ct.nrrd\"", 1),
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("`ct`") && e.contains("../ct.nrrd"), "{e}");
        // No manifest.
        std::fs::remove_file(&m).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("interrupted save"), "{e}");
    }
}
