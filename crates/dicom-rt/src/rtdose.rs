//! RT dose grids read from DICOM.
//!
//! A multi-frame RT dose is a stack of dose planes: frame `n` lies at GridFrameOffsetVector[n]
//! along the plane normal. The standard allows the vector relative to ImagePositionPatient
//! (its first value 0) or, for axial planes, as absolute z coordinates (its first value the
//! position's z); both are read as offsets from the first plane. Stored values times
//! DoseGridScaling are Gy; 16- and 32-bit, signed or unsigned, are read. Frames may run
//! towards the feet (negative offsets) or the head; the grid is reordered exactly onto the
//! patient axes.

use dicom_dictionary_std::tags;
use tps_api::dose::Dose;
use tps_api::error::{Error, Result};
use tps_api::grid::Grid;

use crate::pixels::stored_values;
use crate::read::DicomFile;

/// Largest departure of one frame gap from the first (mm).
const GAP_TOLERANCE_MM: f64 = 0.01;

/// An RT dose on its own (LPS-aligned) grid, with what the file says about it.
#[derive(Debug, Clone)]
pub struct RtDose {
    /// The dose in cGy.
    pub dose: Dose,
    /// FrameOfReferenceUID.
    pub frame_uid: Option<String>,
    /// DoseSummationType (PLAN, BEAM, FRACTION, ...).
    pub summation: Option<String>,
    /// DoseType (PHYSICAL, EFFECTIVE, ERROR).
    pub dose_type: Option<String>,
    /// Whether GridFrameOffsetVector was absolute (first value the first plane's z).
    pub absolute_offsets: bool,
}

fn snap(v: &[f64]) -> Option<[f64; 3]> {
    let c = (0..3).max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()))?;
    let mut out = [0.0; 3];
    out[c] = v[c].signum();
    let off = (0..3).map(|a| (v[a] - out[a]).powi(2)).sum::<f64>().sqrt();
    (off <= 1e-3).then_some(out)
}

/// Reads an RT dose file.
pub fn read(file: &DicomFile) -> Result<RtDose> {
    let a = file.attrs();
    let units = a
        .opt_str(tags::DOSE_UNITS, "DoseUnits")?
        .unwrap_or_default();
    if !units.eq_ignore_ascii_case("GY") {
        return Err(a.invalid(
            tags::DOSE_UNITS,
            "DoseUnits",
            units,
            "only absolute dose (GY) can be evaluated",
        ));
    }
    let iop = a.f64s(
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient",
        6,
    )?;
    let (Some(row), Some(col)) = (snap(&iop[..3]), snap(&iop[3..])) else {
        return Err(a.invalid(
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
            format!("{iop:?}"),
            "an oblique dose grid: only grids along the patient axes are read",
        ));
    };
    let ipp = a.f64s(tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient", 3)?;
    let sp = a.f64s(tags::PIXEL_SPACING, "PixelSpacing", 2)?;
    let rows = a.int(tags::ROWS, "Rows")?;
    let cols = a.int(tags::COLUMNS, "Columns")?;
    let frames = match a.opt_f64s(tags::NUMBER_OF_FRAMES, "NumberOfFrames")? {
        Some(v) if !v.is_empty() => v[0] as i64,
        _ => 1,
    };
    if rows < 1 || cols < 1 || frames < 1 || sp.iter().any(|&s| s <= 0.0) {
        return Err(a.invalid(
            tags::PIXEL_SPACING,
            "Rows, Columns, NumberOfFrames, PixelSpacing",
            format!("{rows}, {cols}, {frames}, {sp:?}"),
            "the dose grid must be non-empty with positive spacing",
        ));
    }
    let normal = [
        row[1] * col[2] - row[2] * col[1],
        row[2] * col[0] - row[0] * col[2],
        row[0] * col[1] - row[1] * col[0],
    ];
    let (dz, absolute) = if frames == 1 {
        (
            a.f64_or(tags::SLICE_THICKNESS, "SliceThickness", 1.0)?
                .abs()
                .max(1e-3),
            false,
        )
    } else {
        let off = a
            .opt_f64s(tags::GRID_FRAME_OFFSET_VECTOR, "GridFrameOffsetVector")?
            .ok_or_else(|| {
                a.invalid(
                    tags::GRID_FRAME_OFFSET_VECTOR,
                    "GridFrameOffsetVector",
                    "(absent)",
                    "required for a multi-frame dose",
                )
            })?;
        if off.len() != frames as usize {
            return Err(a.invalid(
                tags::GRID_FRAME_OFFSET_VECTOR,
                "GridFrameOffsetVector",
                format!("{} values", off.len()),
                &format!("NumberOfFrames is {frames}"),
            ));
        }
        let absolute = off[0] != 0.0;
        if absolute && (off[0] - ipp[2]).abs() > GAP_TOLERANCE_MM {
            return Err(a.invalid(
                tags::GRID_FRAME_OFFSET_VECTOR,
                "GridFrameOffsetVector",
                format!("[{}, ...]", off[0]),
                &format!(
                    "neither relative (first value 0) nor absolute (first value the \
                     position's z, {})",
                    ipp[2]
                ),
            ));
        }
        let dz = off[1] - off[0];
        for (n, w) in off.windows(2).enumerate() {
            if (w[1] - w[0] - dz).abs() > GAP_TOLERANCE_MM || dz == 0.0 {
                return Err(a.invalid(
                    tags::GRID_FRAME_OFFSET_VECTOR,
                    "GridFrameOffsetVector",
                    format!("[.., {}, {}, ..] at frame {}", w[0], w[1], n + 1),
                    &format!("frames must be evenly spaced (the first gap is {dz} mm)"),
                ));
            }
        }
        (dz, absolute)
    };
    // Absolute offsets are z coordinates: along the normal only when it points to +z.
    let sign = if absolute { normal[2].signum() } else { 1.0 };
    let step = dz * sign;
    let along = normal.map(|c| c * step.signum());
    let grid = Grid::with_direction(
        [cols as usize, rows as usize, frames as usize],
        [sp[1], sp[0], step.abs()],
        [ipp[0], ipp[1], ipp[2]],
        [row, col, along],
    )?;
    let scaling = a.f64_or(tags::DOSE_GRID_SCALING, "DoseGridScaling", 1.0)?;
    let raw = stored_values(file, grid.len())?;
    let cgy: Vec<f32> = raw
        .into_iter()
        .map(|v| (v as f64 * scaling * 100.0) as f32)
        .collect();
    if let Some(n) = cgy.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(Error::invalid(
            file.path.display().to_string(),
            "PixelData (7FE0,0010)",
            format!("{} Gy at value {n}", cgy[n] / 100.0),
            "a dose must be finite and non-negative",
        ));
    }
    let (grid, cgy) = grid.to_lps_aligned(&cgy)?;
    Ok(RtDose {
        dose: Dose::new(grid, cgy)?,
        frame_uid: a.opt_str(tags::FRAME_OF_REFERENCE_UID, "FrameOfReferenceUID")?,
        summation: a.opt_str(tags::DOSE_SUMMATION_TYPE, "DoseSummationType")?,
        dose_type: a.opt_str(tags::DOSE_TYPE, "DoseType")?,
        absolute_offsets: absolute,
    })
}

/// The dose trilinearly interpolated at the centres of `ct` (zero outside the dose grid).
pub fn onto(dose: &Dose, ct: &Grid) -> Result<Dose> {
    let cgy = patient_model::resample::resample_dose(dose.cgy(), dose.grid(), ct);
    Dose::new(*ct, cgy)
}
