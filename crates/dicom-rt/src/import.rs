//! A DICOM directory to a patient: the CT series the structure set refers to, its structures
//! named as the protocol names them, and an RT dose when there is one.

use std::path::{Path, PathBuf};

use tps_api::dose::Dose;
use tps_api::error::{Error, Result};
use tps_api::patient::Patient;
use tps_api::protocol::Protocol;
use tps_api::structure::{Role, Structure};

use crate::aliases::AliasTable;
use crate::ct::{self, CtVolume, SeriesInfo};
use crate::read::{self, DicomFile, Kind, Scan};
use crate::rtdose;
use crate::rtstruct::{self, RasterNotes, StructureSet};

/// What to import with.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// Spellings of the protocol's structure names.
    pub aliases: Option<&'a AliasTable>,
    /// The protocol the patient is imported for: its structures are required, named as it
    /// names them, and its prescription target and body get their roles.
    pub protocol: Option<&'a Protocol>,
    /// The patient's identifier (PatientID when not given).
    pub id: Option<String>,
    /// An RT dose file to import instead of one found in the directory.
    pub dose: Option<PathBuf>,
}

/// One imported structure.
#[derive(Debug, Clone)]
pub struct ImportedStructure {
    /// ROIName in the structure set.
    pub dicom_name: String,
    /// Name on the patient (the protocol's, when it maps).
    pub name: String,
    /// Role given.
    pub role: Role,
    /// Number of closed planar contours.
    pub contours: usize,
    /// Voxels of the mask.
    pub voxels: usize,
    /// Volume of the mask, cc.
    pub volume_cc: f64,
    /// What rasterizing found.
    pub notes: RasterNotes,
}

/// An imported RT dose.
#[derive(Debug, Clone)]
pub struct ImportedDose {
    /// The dose on the CT grid.
    pub on_ct: Dose,
    /// The dose on its own grid, as the file holds it.
    pub native: Dose,
    /// The file.
    pub path: PathBuf,
    /// DoseSummationType.
    pub summation: Option<String>,
}

/// What an import read, made and left out.
#[derive(Debug, Clone)]
pub struct Report {
    /// The directory read.
    pub source: PathBuf,
    /// What it held, by kind.
    pub found: String,
    /// The CT series used.
    pub series: SeriesInfo,
    /// The series' axes in patient coordinates (row, column, normal).
    pub acquired_direction: [[f64; 3]; 3],
    /// The structure set used: file and label.
    pub structure_set: Option<(PathBuf, Option<String>)>,
    /// Structures imported.
    pub structures: Vec<ImportedStructure>,
    /// Notes for the user: empty structures, skipped contours, clipped points, unused files.
    pub notes: Vec<String>,
}

/// The result of an import.
#[derive(Debug)]
pub struct Imported {
    /// The patient.
    pub patient: Patient,
    /// The RT dose, when one was imported.
    pub dose: Option<ImportedDose>,
    /// What was done.
    pub report: Report,
}

fn listing<'a>(files: impl Iterator<Item = &'a DicomFile>) -> String {
    let v: Vec<String> = files.map(|f| f.path.display().to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// CT files grouped by series, in order of first appearance.
fn ct_series(scan: &Scan) -> Result<Vec<(String, Vec<&DicomFile>)>> {
    let mut groups: Vec<(String, Vec<&DicomFile>)> = Vec::new();
    for f in scan.of_kind(&Kind::Ct) {
        let uid = f.attrs().str(
            dicom_dictionary_std::tags::SERIES_INSTANCE_UID,
            "SeriesInstanceUID",
        )?;
        match groups.iter_mut().find(|(u, _)| *u == uid) {
            Some((_, v)) => v.push(f),
            None => groups.push((uid, vec![f])),
        }
    }
    Ok(groups)
}

fn describe_series(groups: &[(String, Vec<&DicomFile>)]) -> Result<String> {
    Ok(groups
        .iter()
        .map(|(_, files)| SeriesInfo::of(files[0], files.len()).map(|i| i.describe()))
        .collect::<Result<Vec<_>>>()?
        .join("; "))
}

/// The role of a structure: the protocol's for its target and body, otherwise from
/// RTROIInterpretedType (EXTERNAL; PTV, CTV, GTV; ORGAN, AVOIDANCE; the rest auxiliary), or
/// from the name when the type is missing.
fn role_of(name: &str, interpreted: Option<&str>, protocol: Option<&Protocol>) -> Role {
    if let Some(p) = protocol {
        if name == p.prescription.target {
            return Role::Target;
        }
        if p.body.as_deref() == Some(name) {
            return Role::External;
        }
    }
    match interpreted {
        Some("EXTERNAL") => Role::External,
        Some("PTV" | "CTV" | "GTV") => Role::Target,
        Some("ORGAN" | "AVOIDANCE") => Role::Oar,
        Some(_) => Role::Auxiliary,
        None => {
            let n = crate::aliases::normalize(name);
            if ["ptv", "ctv", "gtv"].iter().any(|t| n.starts_with(t)) {
                Role::Target
            } else if ["external", "body", "outline", "skin"].contains(&n.as_str()) {
                Role::External
            } else {
                Role::Oar
            }
        }
    }
}

/// A structure set file and what it holds.
type Chosen<'s> = (&'s DicomFile, StructureSet);

/// Picks the CT series and structure set to import; errors list what was found.
fn choose<'s>(scan: &'s Scan, dir: &Path) -> Result<(Vec<&'s DicomFile>, Option<Chosen<'s>>)> {
    let groups = ct_series(scan)?;
    if groups.is_empty() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "CT series",
            "none",
            format!(
                "no CT image in the directory (found: {}; {} files without the DICOM preamble)",
                scan.summary(),
                scan.skipped.len()
            ),
        ));
    }
    let structs: Vec<&DicomFile> = scan.of_kind(&Kind::RtStruct).collect();
    if structs.len() > 1 {
        return Err(Error::invalid(
            dir.display().to_string(),
            "RTSTRUCT",
            format!("{} files", structs.len()),
            format!(
                "several structure sets ({}); keep the one to import in the directory",
                listing(structs.iter().copied())
            ),
        ));
    }
    let Some(&sfile) = structs.first() else {
        if groups.len() > 1 {
            return Err(Error::invalid(
                dir.display().to_string(),
                "CT series",
                format!("{} series", groups.len()),
                format!(
                    "several CT series and no structure set to choose between them: {}",
                    describe_series(&groups)?
                ),
            ));
        }
        return Ok((groups.into_iter().next().unwrap().1, None));
    };
    let ss = rtstruct::read(sfile)?;
    let frame_of = |files: &[&DicomFile]| -> Result<String> {
        Ok(SeriesInfo::of(files[0], files.len())?.frame_uid)
    };
    let mut picked = Vec::new();
    for (uid, files) in &groups {
        let by_series = ss.series.contains(uid);
        let by_frame = ss.series.is_empty() && ss.frames.contains(&frame_of(files)?);
        if by_series || by_frame {
            picked.push(files.clone());
        }
    }
    match picked.len() {
        1 => {
            let files = picked.pop().unwrap();
            let frame = frame_of(&files)?;
            if !ss.frames.is_empty() && !ss.frames.contains(&frame) {
                return Err(Error::invalid(
                    sfile.path.display().to_string(),
                    "ReferencedFrameOfReferenceSequence (3006,0010)",
                    ss.frames.join(", "),
                    format!(
                        "the structure set is in another frame of reference than the CT series \
                         it names ({})",
                        if frame.is_empty() { "none" } else { &frame }
                    ),
                ));
            }
            Ok((files, Some((sfile, ss))))
        }
        0 => Err(Error::invalid(
            sfile.path.display().to_string(),
            "ReferencedFrameOfReferenceSequence (3006,0010)",
            format!(
                "series [{}], frame of reference [{}]",
                ss.series.join(", "),
                ss.frames.join(", ")
            ),
            format!(
                "the structure set refers to no CT series in the directory; found: {}",
                describe_series(&groups)?
            ),
        )),
        _ => Err(Error::invalid(
            sfile.path.display().to_string(),
            "ReferencedFrameOfReferenceSequence (3006,0010)",
            ss.frames.join(", "),
            format!(
                "names no series and several CT series share its frame of reference: {}",
                describe_series(&groups)?
            ),
        )),
    }
}

/// Imports the DICOM files under `dir`.
pub fn import(dir: &Path, opts: &Options<'_>) -> Result<Imported> {
    let scan = read::scan(dir)?;
    let (ct_files, structure_set) = choose(&scan, dir)?;
    let CtVolume {
        grid,
        hu,
        info,
        acquired_direction,
    } = ct::assemble(&ct_files)?;
    let id = opts
        .id
        .clone()
        .or_else(|| info.patient_id.clone())
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "patient".into())
        });
    let mut patient = Patient::new(id, grid, hu)?;
    let mut notes = Vec::new();
    let mut structures = Vec::new();
    let wanted = opts
        .protocol
        .map(|p| p.required_structures())
        .unwrap_or_default();
    let empty_table = AliasTable::default();
    let aliases = opts.aliases.unwrap_or(&empty_table);
    if let Some((sfile, ss)) = &structure_set {
        // Names first, so a clash is reported before any rasterizing.
        let mut named: Vec<(String, &rtstruct::Roi)> = Vec::new();
        for roi in &ss.rois {
            let name = aliases
                .resolve(&roi.name, &wanted)
                .unwrap_or_else(|| roi.name.clone());
            if let Some((_, other)) = named.iter().find(|(n, _)| *n == name) {
                return Err(Error::invalid(
                    sfile.path.display().to_string(),
                    "StructureSetROISequence (3006,0020)",
                    format!("\"{}\" and \"{}\"", other.name, roi.name),
                    format!(
                        "both are {name}: rename one in the structure set, or remove the \
                         spelling you do not want from the alias table"
                    ),
                ));
            }
            named.push((name, roi));
        }
        let rasters: Vec<_> = named
            .iter()
            .map(|(_, roi)| rtstruct::rasterize(&roi.contours, &grid))
            .collect();
        for ((name, roi), (mask, rnotes)) in named.into_iter().zip(rasters) {
            if !roi.skipped.is_empty() {
                notes.push(format!(
                    "{}: {} contours of other types skipped ({})",
                    roi.name,
                    roi.skipped.len(),
                    roi.skipped.join(", ")
                ));
            }
            if rnotes.points_off_grid > 0 {
                notes.push(format!(
                    "{}: {} contour points outside the CT grid: the structure is clipped to it",
                    roi.name, rnotes.points_off_grid
                ));
            }
            if rnotes.contours_off_slices > 0 {
                notes.push(format!(
                    "{}: {} contours on no CT slice, left out",
                    roi.name, rnotes.contours_off_slices
                ));
            }
            if rnotes.non_planar > 0 {
                notes.push(format!(
                    "{}: {} contours not in one axial plane, placed at their mean z",
                    roi.name, rnotes.non_planar
                ));
            }
            let voxels = mask.count();
            if voxels == 0 {
                notes.push(format!(
                    "{}: empty ({} contours, no voxel centre inside), not imported",
                    roi.name,
                    roi.contours.len()
                ));
                continue;
            }
            let role = role_of(&name, roi.interpreted_type.as_deref(), opts.protocol);
            structures.push(ImportedStructure {
                dicom_name: roi.name.clone(),
                name: name.clone(),
                role,
                contours: roi.contours.len(),
                voxels,
                volume_cc: voxels as f64 * grid.voxel_volume_cc(),
                notes: rnotes,
            });
            patient.add_structure(Structure::new(name, role, mask))?;
        }
    }
    if let Some(p) = opts.protocol {
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|n| patient.structure(n).is_none())
            .collect();
        if !missing.is_empty() {
            let found: Vec<String> = structure_set
                .as_ref()
                .map(|(_, ss)| ss.rois.iter().map(|r| format!("\"{}\"", r.name)).collect())
                .unwrap_or_default();
            return Err(Error::invalid(
                structure_set
                    .as_ref()
                    .map(|(f, _)| f.path.display().to_string())
                    .unwrap_or_else(|| dir.display().to_string()),
                "StructureSetROISequence (3006,0020)",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                format!(
                    "{} needs these structures and the structure set has none of their \
                     spellings (or only empty ones); found: {}. Add a spelling to the alias \
                     table (configs/dicom/aliases.toml) or rename the structure",
                    p.origin.display(),
                    if found.is_empty() {
                        "no structure set".into()
                    } else {
                        found.join(", ")
                    }
                ),
            ));
        }
        p.check_roles(&patient)?;
    }
    let dose = import_dose(&scan, opts, &info, &patient, &mut notes)?;
    for f in &scan.files {
        if let Kind::Other(m) = &f.kind {
            notes.push(format!("{}: {m}, not used", f.path.display()));
        }
    }
    if !scan.skipped.is_empty() {
        notes.push(format!(
            "{} files without the DICOM preamble skipped",
            scan.skipped.len()
        ));
    }
    Ok(Imported {
        report: Report {
            source: dir.to_path_buf(),
            found: scan.summary(),
            series: info,
            acquired_direction,
            structure_set: structure_set.map(|(f, ss)| (f.path.clone(), ss.label)),
            structures,
            notes,
        },
        patient,
        dose,
    })
}

fn import_dose(
    scan: &Scan,
    opts: &Options<'_>,
    ct: &SeriesInfo,
    patient: &Patient,
    notes: &mut Vec<String>,
) -> Result<Option<ImportedDose>> {
    let given;
    let file = match &opts.dose {
        Some(p) => {
            given = read::open(p)?;
            if given.kind != Kind::RtDose {
                return Err(Error::invalid(
                    p.display().to_string(),
                    "Modality (0008,0060)",
                    given.kind.to_string(),
                    "--dose must be an RTDOSE file",
                ));
            }
            &given
        }
        None => {
            let doses: Vec<&DicomFile> = scan.of_kind(&Kind::RtDose).collect();
            match doses.len() {
                0 => return Ok(None),
                1 => doses[0],
                n => {
                    notes.push(format!(
                        "{n} RT doses found ({}); none imported: give the one to use with --dose",
                        listing(doses.iter().copied())
                    ));
                    return Ok(None);
                }
            }
        }
    };
    let rd = rtdose::read(file)?;
    if let Some(f) = &rd.frame_uid
        && !ct.frame_uid.is_empty()
        && *f != ct.frame_uid
    {
        return Err(Error::invalid(
            file.path.display().to_string(),
            "FrameOfReferenceUID (0020,0052)",
            f,
            format!(
                "the dose is in another frame of reference than the CT ({})",
                ct.frame_uid
            ),
        ));
    }
    let on_ct = rtdose::onto(&rd.dose, patient.grid())?;
    Ok(Some(ImportedDose {
        on_ct,
        native: rd.dose,
        path: file.path.clone(),
        summation: rd.summation,
    }))
}
