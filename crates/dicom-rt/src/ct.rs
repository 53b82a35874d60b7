//! A CT series assembled into a volume on an LPS-aligned grid.
//!
//! Slices are ordered by their position along the slice normal (ImagePositionPatient projected
//! on ImageOrientationPatient's row x column), never by file name or InstanceNumber. The
//! spacing between neighbours must be uniform: a gap (a missing slice) or two slices at one
//! position is an error naming the files and positions. Stored values become HU through
//! RescaleSlope and RescaleIntercept. The series' own grid (rows along the row direction,
//! columns along the column direction, slices along the normal) is then reordered exactly onto
//! the patient axes, so a patient scanned head or feet first, supine or prone, lands on the
//! same LPS grid with every voxel where the scanner put it.

use dicom_dictionary_std::tags;
use tps_api::error::{Error, Result};
use tps_api::grid::Grid;

use crate::pixels::stored_values;
use crate::read::DicomFile;

/// Tolerance on direction cosines for an axial series: 1e-3 (0.06 degrees).
const AXIS_TOLERANCE: f64 = 1e-3;
/// Two slices closer than this along the normal are one position (mm).
const SAME_POSITION_MM: f64 = 1e-3;
/// Largest departure of one slice gap from the series' gap (mm); DICOM positions are written
/// with a few decimals, so rounding stays far below this, and a missing slice far above it.
const GAP_TOLERANCE_MM: f64 = 0.01;

/// The identifiers of a CT series, for matching it with a structure set and for messages.
#[derive(Debug, Clone)]
pub struct SeriesInfo {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// StudyInstanceUID.
    pub study_uid: String,
    /// FrameOfReferenceUID.
    pub frame_uid: String,
    /// SeriesDescription, when given.
    pub description: Option<String>,
    /// PatientID, when given.
    pub patient_id: Option<String>,
    /// PatientPosition (HFS, FFS, HFP, FFP, ...), when given.
    pub patient_position: Option<String>,
    /// Number of slices.
    pub slices: usize,
}

impl SeriesInfo {
    /// Reads the identifiers of the series `file` belongs to.
    pub fn of(file: &DicomFile, slices: usize) -> Result<Self> {
        let a = file.attrs();
        Ok(Self {
            series_uid: a.str(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?,
            study_uid: a.str(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?,
            frame_uid: a
                .opt_str(tags::FRAME_OF_REFERENCE_UID, "FrameOfReferenceUID")?
                .unwrap_or_default(),
            description: a.opt_str(tags::SERIES_DESCRIPTION, "SeriesDescription")?,
            patient_id: a.opt_str(tags::PATIENT_ID, "PatientID")?,
            patient_position: a.opt_str(tags::PATIENT_POSITION, "PatientPosition")?,
            slices,
        })
    }

    /// One line for listings: UID, description, slice count, frame of reference.
    pub fn describe(&self) -> String {
        format!(
            "series {} ({}{} slices, frame of reference {})",
            self.series_uid,
            self.description
                .as_deref()
                .map(|d| format!("\"{d}\", "))
                .unwrap_or_default(),
            self.slices,
            if self.frame_uid.is_empty() {
                "none"
            } else {
                &self.frame_uid
            }
        )
    }
}

/// A CT volume in HU on an LPS-aligned grid.
#[derive(Debug, Clone)]
pub struct CtVolume {
    /// The LPS-aligned grid.
    pub grid: Grid,
    /// HU, x-fastest on `grid`.
    pub hu: Vec<i16>,
    /// The series' identifiers.
    pub info: SeriesInfo,
    /// The series' own axes in patient coordinates (row, column, normal), before reordering.
    pub acquired_direction: [[f64; 3]; 3],
}

struct Slice<'a> {
    file: &'a DicomFile,
    position: [f64; 3],
    along: f64,
}

/// The unit patient axis `v` runs along (with its sign), if it is one within tolerance.
fn snap_axis(v: &[f64]) -> Option<[f64; 3]> {
    let c = (0..3).max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()))?;
    let mut out = [0.0; 3];
    out[c] = v[c].signum();
    let off = (0..3).map(|a| (v[a] - out[a]).powi(2)).sum::<f64>().sqrt();
    (off <= AXIS_TOLERANCE).then_some(out)
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    (0..3).map(|c| a[c] * b[c]).sum()
}

/// Assembles the slices of one series (in any order) into a volume.
pub fn assemble(files: &[&DicomFile]) -> Result<CtVolume> {
    let first = *files.first().ok_or_else(|| {
        Error::invalid(
            "CT series",
            "slices",
            "0",
            "a series needs at least one slice",
        )
    })?;
    let a0 = first.attrs();
    let iop0 = a0.f64s(
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient",
        6,
    )?;
    let rows = a0.int(tags::ROWS, "Rows")?;
    let cols = a0.int(tags::COLUMNS, "Columns")?;
    let spacing0 = a0.f64s(tags::PIXEL_SPACING, "PixelSpacing", 2)?;
    if spacing0.iter().any(|&s| s <= 0.0) || rows < 1 || cols < 1 {
        return Err(a0.invalid(
            tags::PIXEL_SPACING,
            "PixelSpacing",
            format!("{spacing0:?} ({rows} rows, {cols} columns)"),
            "pixel spacing must be positive and the image non-empty",
        ));
    }
    let (Some(row), Some(col)) = (snap_axis(&iop0[..3]), snap_axis(&iop0[3..])) else {
        return Err(a0.invalid(
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
            format!("{iop0:?}"),
            "an oblique series: only series whose rows and columns run along the patient \
             axes are read",
        ));
    };
    let normal = cross(row, col);
    if normal[2].abs() != 1.0 {
        return Err(a0.invalid(
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
            format!("{iop0:?}"),
            "not an axial series (its slices are not perpendicular to the patient's \
             head-feet axis); only axial series are read",
        ));
    }
    let mut slices = Vec::with_capacity(files.len());
    for f in files {
        let a = f.attrs();
        let iop = a.f64s(
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
            6,
        )?;
        if iop
            .iter()
            .zip(&iop0)
            .any(|(x, y)| (x - y).abs() > AXIS_TOLERANCE)
        {
            return Err(a.invalid(
                tags::IMAGE_ORIENTATION_PATIENT,
                "ImageOrientationPatient",
                format!("{iop:?}"),
                &format!(
                    "differs from {:?} in {}: the slices of one series must share their \
                     orientation",
                    iop0,
                    first.path.display()
                ),
            ));
        }
        let (r, c) = (a.int(tags::ROWS, "Rows")?, a.int(tags::COLUMNS, "Columns")?);
        let sp = a.f64s(tags::PIXEL_SPACING, "PixelSpacing", 2)?;
        if (r, c) != (rows, cols) || sp.iter().zip(&spacing0).any(|(x, y)| (x - y).abs() > 1e-6) {
            return Err(a.invalid(
                tags::PIXEL_SPACING,
                "Rows, Columns, PixelSpacing",
                format!("{r} x {c}, {sp:?}"),
                &format!(
                    "differs from {rows} x {cols}, {spacing0:?} in {}: the slices of one \
                     series must share their matrix and pixel spacing",
                    first.path.display()
                ),
            ));
        }
        let p = a.f64s(tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient", 3)?;
        let position = [p[0], p[1], p[2]];
        slices.push(Slice {
            file: f,
            position,
            along: dot(position, normal),
        });
    }
    slices.sort_by(|a, b| a.along.total_cmp(&b.along));
    // Every slice must sit on the line through the first along the normal.
    let p0 = slices[0].position;
    for s in &slices[1..] {
        let off = [0, 1, 2].map(|c| s.position[c] - p0[c]);
        let lateral = [dot(off, row), dot(off, col)];
        if lateral.iter().any(|d| d.abs() > GAP_TOLERANCE_MM) {
            return Err(s.file.attrs().invalid(
                tags::IMAGE_POSITION_PATIENT,
                "ImagePositionPatient",
                format!("{:?}", s.position),
                &format!(
                    "shifted in-plane by {:.3} mm, {:.3} mm from {:?} in {}: the slices do not \
                     stack into one volume",
                    lateral[0],
                    lateral[1],
                    p0,
                    slices[0].file.path.display()
                ),
            ));
        }
    }
    for w in slices.windows(2) {
        if w[1].along - w[0].along < SAME_POSITION_MM {
            return Err(Error::invalid(
                w[1].file.path.display().to_string(),
                "ImagePositionPatient (0020,0032)",
                format!("{:?}", w[1].position),
                format!(
                    "a second slice at this position ({} has the same): duplicate slice",
                    w[0].file.path.display()
                ),
            ));
        }
    }
    let dz = if slices.len() > 1 {
        slices[1].along - slices[0].along
    } else {
        let t = a0.f64_or(tags::SLICE_THICKNESS, "SliceThickness", 0.0)?;
        if t <= 0.0 {
            return Err(a0.invalid(
                tags::SLICE_THICKNESS,
                "SliceThickness",
                t.to_string(),
                "a single-slice series needs a positive slice thickness",
            ));
        }
        t
    };
    for w in slices.windows(2) {
        let gap = w[1].along - w[0].along;
        if (gap - dz).abs() > GAP_TOLERANCE_MM {
            let hint = if gap > 1.5 * dz {
                format!(
                    " (about {} slices missing)",
                    ((gap / dz).round() as i64 - 1).max(1)
                )
            } else {
                String::new()
            };
            return Err(Error::invalid(
                w[1].file.path.display().to_string(),
                "ImagePositionPatient (0020,0032)",
                format!("{:?}", w[1].position),
                format!(
                    "{gap:.3} mm from the previous slice ({}, at {:?}), but the series' slices \
                     are {dz:.3} mm apart: non-uniform spacing{hint}",
                    w[0].file.path.display(),
                    w[0].position
                ),
            ));
        }
    }
    let (nx, ny, nz) = (cols as usize, rows as usize, slices.len());
    let per_slice = nx * ny;
    let mut hu = vec![0i16; per_slice * nz];
    let decoded: Vec<Result<Vec<i16>>> = {
        use rayon::prelude::*;
        slices
            .par_iter()
            .map(|s| {
                let a = s.file.attrs();
                let slope = a.f64_or(tags::RESCALE_SLOPE, "RescaleSlope", 1.0)?;
                let intercept = a.f64_or(tags::RESCALE_INTERCEPT, "RescaleIntercept", 0.0)?;
                let raw = stored_values(s.file, per_slice)?;
                Ok(raw
                    .into_iter()
                    .map(|v| {
                        (v as f64 * slope + intercept)
                            .round()
                            .clamp(-32768.0, 32767.0) as i16
                    })
                    .collect())
            })
            .collect()
    };
    for (k, d) in decoded.into_iter().enumerate() {
        hu[k * per_slice..(k + 1) * per_slice].copy_from_slice(&d?);
    }
    // PixelSpacing is (between rows, between columns): columns advance along the row direction.
    let direction = [row, col, normal];
    let acquired =
        Grid::with_direction([nx, ny, nz], [spacing0[1], spacing0[0], dz], p0, direction)?;
    let (grid, hu) = acquired.to_lps_aligned(&hu)?;
    Ok(CtVolume {
        grid,
        hu,
        info: SeriesInfo::of(first, nz)?,
        acquired_direction: direction,
    })
}
