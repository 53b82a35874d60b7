//! A patient and its plan written as DICOM RT: a CT series, an RT structure set traced from the
//! masks, an RT dose and an RT plan, in one study and one frame of reference, every reference
//! among them resolvable.
//!
//! - CT: one file per axial slice, signed 16-bit HU (RescaleSlope 1, RescaleIntercept 0), the
//!   patient lying head first supine on the LPS grid.
//! - RTSTRUCT: every structure, rings included, as closed planar contours along voxel edges
//!   (outer boundaries and holes; [`crate::trace`]), each naming the CT slice it lies on;
//!   RTROIInterpretedType from the role. Written in Implicit VR Little Endian, whose 32-bit
//!   value lengths hold the ContourData of any contour (Explicit VR's DS length is 16-bit).
//! - RTDOSE: the dose in Gy, 16-bit unsigned with DoseGridScaling = maximum / 65535 (so the
//!   maximum is quantized to better than 0.002 %), GridFrameOffsetVector relative, DoseType
//!   PHYSICAL, DoseSummationType PLAN, referring to the RT plan.
//! - RTPLAN: prescription (DoseReferenceSequence on the target ROI), one fraction group and,
//!   for a deliverable plan, its arcs as dynamic beams: control points with gantry angle and
//!   direction, jaws, MLC leaf positions and cumulative meterset weight, beam meterset in MU
//!   per fraction. A plan without a deliverable part holds no beams and says so.

use std::path::{Path, PathBuf};

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use tps_api::deliverable::{DeliverablePlan, Rotation};
use tps_api::dose::Dose;
use tps_api::error::{Error, Result};
use tps_api::patient::Patient;
use tps_api::protocol::Prescription;
use tps_api::structure::Role;

use crate::trace;
use crate::write::{Builder, ds, new_uid, save};

/// What to export.
pub struct PlanExport<'a> {
    /// The patient (CT and structures).
    pub patient: &'a Patient,
    /// The plan's dose (any LPS-aligned grid), when there is one.
    pub dose: Option<&'a Dose>,
    /// The prescription, for the RT plan.
    pub prescription: Option<&'a Prescription>,
    /// The deliverable plan, for the RT plan's beams.
    pub deliverable: Option<&'a DeliverablePlan>,
    /// Plan label (RTPlanLabel; cut to 16 characters).
    pub label: String,
    /// Free-text description of the plan (RTPlanDescription).
    pub description: String,
}

/// The files written and the identifiers they share.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Every file written, CT first.
    pub files: Vec<PathBuf>,
    /// StudyInstanceUID.
    pub study_uid: String,
    /// FrameOfReferenceUID.
    pub frame_uid: String,
    /// DoseGridScaling of the RT dose (Gy per stored unit), when one was written.
    pub dose_grid_scaling: Option<f64>,
}

/// UIDs and shared attributes of one export.
struct Context<'a> {
    patient: &'a Patient,
    study: String,
    frame: String,
    date: String,
    time: String,
}

impl Context<'_> {
    /// Patient, study, series, frame of reference, equipment and SOP common attributes.
    fn common(
        &self,
        sop_class: &str,
        sop: &str,
        modality: &str,
        series: &str,
        number: i64,
    ) -> Builder {
        let mut b = Builder::new();
        b.str(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192")
            .str(tags::SOP_CLASS_UID, VR::UI, sop_class)
            .str(tags::SOP_INSTANCE_UID, VR::UI, sop)
            .str(tags::STUDY_DATE, VR::DA, &self.date)
            .str(tags::STUDY_TIME, VR::TM, &self.time)
            .str(tags::ACCESSION_NUMBER, VR::SH, "")
            .str(tags::MODALITY, VR::CS, modality)
            .str(tags::MANUFACTURER, VR::LO, "autoplan")
            .str(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "")
            .str(tags::OPERATORS_NAME, VR::PN, "")
            // A person name's components are separated by '^'; '/' would read as a retired form.
            .str(
                tags::PATIENT_NAME,
                VR::PN,
                &short(&self.patient.id.replace(['/', '\\', '^', '='], "_"), 64),
            )
            .str(tags::PATIENT_ID, VR::LO, &short(&self.patient.id, 64))
            .str(tags::PATIENT_BIRTH_DATE, VR::DA, "")
            .str(tags::PATIENT_SEX, VR::CS, "")
            .str(tags::STUDY_INSTANCE_UID, VR::UI, &self.study)
            .str(tags::SERIES_INSTANCE_UID, VR::UI, series)
            .str(tags::STUDY_ID, VR::SH, "1")
            .is(tags::SERIES_NUMBER, number)
            .is(tags::INSTANCE_NUMBER, 1)
            .str(tags::FRAME_OF_REFERENCE_UID, VR::UI, &self.frame)
            .str(tags::POSITION_REFERENCE_INDICATOR, VR::LO, "");
        b
    }
}

/// `s` cut to `n` characters.
fn short(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn today() -> (String, String) {
    // Civil date from the Unix day count (Howard Hinnant's days_from_civil inverse).
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    )
}

/// RTROIInterpretedType for a structure.
fn interpreted_type(name: &str, role: Role) -> &'static str {
    match role {
        Role::External => "EXTERNAL",
        Role::Oar => "ORGAN",
        Role::Auxiliary => "CONTROL",
        Role::Target => {
            let n = name.to_ascii_uppercase();
            if n.starts_with("GTV") {
                "GTV"
            } else if n.starts_with("CTV") {
                "CTV"
            } else {
                "PTV"
            }
        }
    }
}

/// Display colours, cycled over the structures.
const COLOURS: [[i64; 3]; 8] = [
    [255, 0, 0],
    [0, 160, 255],
    [255, 200, 0],
    [0, 200, 80],
    [200, 0, 255],
    [255, 120, 0],
    [0, 220, 220],
    [160, 160, 160],
];

/// Writes the export into `dir` (which must exist).
pub fn export(x: &PlanExport<'_>, dir: &Path) -> Result<Exported> {
    let p = x.patient;
    let g = *p.grid();
    if !g.is_lps_aligned() {
        return Err(Error::invalid(
            "export",
            "patient grid",
            format!("{:?}", g.direction),
            "the CT grid must be LPS-aligned",
        ));
    }
    let (date, time) = today();
    let cx = Context {
        patient: p,
        study: new_uid(),
        frame: new_uid(),
        date,
        time,
    };
    let mut files = Vec::new();

    // CT series.
    let ct_series = new_uid();
    let [nx, ny, nz] = g.dims;
    let mut ct_uids = Vec::with_capacity(nz);
    for k in 0..nz {
        let sop = new_uid();
        let mut b = cx.common(uids::CT_IMAGE_STORAGE, &sop, "CT", &ct_series, 1);
        let z = g.coord_mm(2, k);
        let slice = &p.ct_hu()[k * nx * ny..(k + 1) * nx * ny];
        b.strs(tags::IMAGE_TYPE, VR::CS, &["DERIVED", "SECONDARY", "AXIAL"])
            .is(tags::INSTANCE_NUMBER, k as i64 + 1)
            .str(tags::PATIENT_POSITION, VR::CS, "HFS")
            .str(tags::LATERALITY, VR::CS, "")
            .strs(tags::PATIENT_ORIENTATION, VR::CS, &["L", "P"])
            .str(tags::CONTENT_DATE, VR::DA, &cx.date)
            .str(tags::CONTENT_TIME, VR::TM, &cx.time)
            .str(tags::KVP, VR::DS, "")
            .str(tags::ACQUISITION_NUMBER, VR::IS, "")
            .ds(tags::SLICE_THICKNESS, &[g.spacing_mm[2]])
            .ds(tags::SLICE_LOCATION, &[z])
            .ds(
                tags::IMAGE_POSITION_PATIENT,
                &[g.origin_mm[0], g.origin_mm[1], z],
            )
            .ds(
                tags::IMAGE_ORIENTATION_PATIENT,
                &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            )
            .ds(tags::PIXEL_SPACING, &[g.spacing_mm[1], g.spacing_mm[0]])
            .us(tags::SAMPLES_PER_PIXEL, &[1])
            .str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2")
            .us(tags::ROWS, &[ny as u16])
            .us(tags::COLUMNS, &[nx as u16])
            .us(tags::BITS_ALLOCATED, &[16])
            .us(tags::BITS_STORED, &[16])
            .us(tags::HIGH_BIT, &[15])
            .us(tags::PIXEL_REPRESENTATION, &[1])
            .ds(tags::RESCALE_INTERCEPT, &[0.0])
            .ds(tags::RESCALE_SLOPE, &[1.0])
            .str(tags::RESCALE_TYPE, VR::LO, "HU")
            .ow(tags::PIXEL_DATA, slice.iter().map(|&v| v as u16).collect());
        let path = dir.join(format!("CT.{:04}.dcm", k + 1));
        save(b.build(), uids::EXPLICIT_VR_LITTLE_ENDIAN, &path)?;
        files.push(path);
        ct_uids.push(sop);
    }
    check_dims(&g.dims)?;

    // RT structure set.
    let rs_sop = new_uid();
    let image_ref = |k: usize| {
        let mut im = Builder::new();
        im.str(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            uids::CT_IMAGE_STORAGE,
        )
        .str(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &ct_uids[k]);
        im
    };
    let mut rs = cx.common(
        uids::RT_STRUCTURE_SET_STORAGE,
        &rs_sop,
        "RTSTRUCT",
        &new_uid(),
        2,
    );
    rs.str(tags::STRUCTURE_SET_LABEL, VR::SH, &short(&x.label, 16))
        .str(tags::STRUCTURE_SET_DATE, VR::DA, &cx.date)
        .str(tags::STRUCTURE_SET_TIME, VR::TM, &cx.time);
    let mut series_ref = Builder::new();
    series_ref
        .str(tags::SERIES_INSTANCE_UID, VR::UI, &ct_series)
        .seq(
            tags::CONTOUR_IMAGE_SEQUENCE,
            (0..nz).map(image_ref).collect(),
        );
    let mut study_ref = Builder::new();
    study_ref
        // Study Component Management SOP Class, the conventional referenced class here.
        .str(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.3.1.2.3.2",
        )
        .str(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &cx.study)
        .seq(tags::RT_REFERENCED_SERIES_SEQUENCE, vec![series_ref]);
    let mut frame_ref = Builder::new();
    frame_ref
        .str(tags::FRAME_OF_REFERENCE_UID, VR::UI, &cx.frame)
        .seq(tags::RT_REFERENCED_STUDY_SEQUENCE, vec![study_ref]);
    rs.seq(
        tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE,
        vec![frame_ref],
    );
    let mut rois = Vec::new();
    let mut contours = Vec::new();
    let mut observations = Vec::new();
    let traced: Vec<Vec<(usize, Vec<trace::Loop>)>> = {
        use rayon::prelude::*;
        p.structures()
            .par_iter()
            .map(|s| {
                (0..nz)
                    .map(|k| (k, trace::slice_loops(&s.mask, k)))
                    .filter(|(_, l)| !l.is_empty())
                    .collect()
            })
            .collect()
    };
    for (n, (s, slices)) in p.structures().iter().zip(traced).enumerate() {
        let number = n as i64 + 1;
        let mut roi = Builder::new();
        roi.is(tags::ROI_NUMBER, number)
            .str(tags::REFERENCED_FRAME_OF_REFERENCE_UID, VR::UI, &cx.frame)
            .str(tags::ROI_NAME, VR::LO, &short(&s.name, 64))
            .str(tags::ROI_GENERATION_ALGORITHM, VR::CS, "AUTOMATIC");
        rois.push(roi);
        let mut items = Vec::new();
        for (k, loops) in slices {
            let z = g.coord_mm(2, k);
            for l in loops {
                let mut data = Vec::with_capacity(3 * l.len());
                for &(a, b) in &l {
                    data.push(g.origin_mm[0] + (a as f64 - 0.5) * g.spacing_mm[0]);
                    data.push(g.origin_mm[1] + (b as f64 - 0.5) * g.spacing_mm[1]);
                    data.push(z);
                }
                let mut c = Builder::new();
                c.seq(tags::CONTOUR_IMAGE_SEQUENCE, vec![image_ref(k)])
                    .str(tags::CONTOUR_GEOMETRIC_TYPE, VR::CS, "CLOSED_PLANAR")
                    .is(tags::NUMBER_OF_CONTOUR_POINTS, l.len() as i64)
                    .is(tags::CONTOUR_NUMBER, items.len() as i64 + 1)
                    .ds(tags::CONTOUR_DATA, &data);
                items.push(c);
            }
        }
        let mut rc = Builder::new();
        rc.is_multi(tags::ROI_DISPLAY_COLOR, &COLOURS[n % COLOURS.len()])
            .is(tags::REFERENCED_ROI_NUMBER, number);
        if !items.is_empty() {
            rc.seq(tags::CONTOUR_SEQUENCE, items);
        }
        contours.push(rc);
        let mut o = Builder::new();
        o.is(tags::OBSERVATION_NUMBER, number)
            .is(tags::REFERENCED_ROI_NUMBER, number)
            .str(
                tags::RTROI_INTERPRETED_TYPE,
                VR::CS,
                interpreted_type(&s.name, s.role),
            )
            .str(tags::ROI_INTERPRETER, VR::PN, "");
        observations.push(o);
    }
    rs.seq(tags::STRUCTURE_SET_ROI_SEQUENCE, rois)
        .seq(tags::ROI_CONTOUR_SEQUENCE, contours)
        .seq(tags::RTROI_OBSERVATIONS_SEQUENCE, observations);
    let path = dir.join("RS.dcm");
    save(rs.build(), uids::IMPLICIT_VR_LITTLE_ENDIAN, &path)?;
    files.push(path);

    // RT plan (written before the dose, which refers to it).
    let rp_sop = new_uid();
    let rp = plan(x, &cx, &rp_sop, &rs_sop)?;
    let rp_path = dir.join("RP.dcm");
    save(rp.build(), uids::EXPLICIT_VR_LITTLE_ENDIAN, &rp_path)?;

    // RT dose.
    let mut scaling = None;
    if let Some(d) = x.dose {
        let (rd, s) = dose(d, &cx, &rp_sop)?;
        let path = dir.join("RD.dcm");
        save(rd.build(), uids::EXPLICIT_VR_LITTLE_ENDIAN, &path)?;
        files.push(path);
        scaling = Some(s);
    }
    files.push(rp_path);
    Ok(Exported {
        files,
        study_uid: cx.study,
        frame_uid: cx.frame,
        dose_grid_scaling: scaling,
    })
}

fn check_dims(dims: &[usize; 3]) -> Result<()> {
    if dims[0] > u16::MAX as usize || dims[1] > u16::MAX as usize {
        return Err(Error::invalid(
            "export",
            "grid dims",
            format!("{dims:?}"),
            "rows and columns must fit 16 bits",
        ));
    }
    Ok(())
}

/// The RT dose data set and its DoseGridScaling.
fn dose(d: &Dose, cx: &Context<'_>, plan_sop: &str) -> Result<(Builder, f64)> {
    let lps;
    let d = if d.grid().is_lps_aligned() {
        d
    } else {
        lps = d.to_lps_aligned()?;
        &lps
    };
    if let Some((n, v)) = d.first_invalid() {
        return Err(Error::invalid(
            "export",
            "dose",
            format!("{v} cGy at voxel {n}"),
            "a dose must be finite and non-negative",
        ));
    }
    let g = *d.grid();
    check_dims(&g.dims)?;
    let max_gy = d.max_cgy() as f64 / 100.0;
    // The DS text is what readers multiply by: quantize with the value as written.
    let scaling: f64 = ds(if max_gy > 0.0 { max_gy / 65535.0 } else { 1e-6 })
        .parse()
        .expect("a decimal string parses");
    let words: Vec<u16> = d
        .cgy()
        .iter()
        .map(|&v| ((v as f64 / 100.0) / scaling).round().clamp(0.0, 65535.0) as u16)
        .collect();
    let offsets: Vec<f64> = (0..g.dims[2]).map(|k| k as f64 * g.spacing_mm[2]).collect();
    let mut b = cx.common(uids::RT_DOSE_STORAGE, &new_uid(), "RTDOSE", &new_uid(), 4);
    let mut plan_ref = Builder::new();
    plan_ref
        .str(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            uids::RT_PLAN_STORAGE,
        )
        .str(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, plan_sop);
    b.str(tags::CONTENT_DATE, VR::DA, &cx.date)
        .str(tags::CONTENT_TIME, VR::TM, &cx.time)
        .ds(tags::SLICE_THICKNESS, &[g.spacing_mm[2]])
        .ds(tags::IMAGE_POSITION_PATIENT, &g.origin_mm)
        .ds(
            tags::IMAGE_ORIENTATION_PATIENT,
            &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        )
        .ds(tags::PIXEL_SPACING, &[g.spacing_mm[1], g.spacing_mm[0]])
        .us(tags::SAMPLES_PER_PIXEL, &[1])
        .str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2")
        .is(tags::NUMBER_OF_FRAMES, g.dims[2] as i64)
        .at(
            tags::FRAME_INCREMENT_POINTER,
            tags::GRID_FRAME_OFFSET_VECTOR,
        )
        .us(tags::ROWS, &[g.dims[1] as u16])
        .us(tags::COLUMNS, &[g.dims[0] as u16])
        .us(tags::BITS_ALLOCATED, &[16])
        .us(tags::BITS_STORED, &[16])
        .us(tags::HIGH_BIT, &[15])
        .us(tags::PIXEL_REPRESENTATION, &[0])
        .str(tags::DOSE_UNITS, VR::CS, "GY")
        .str(tags::DOSE_TYPE, VR::CS, "PHYSICAL")
        .str(tags::DOSE_SUMMATION_TYPE, VR::CS, "PLAN")
        .seq(tags::REFERENCED_RT_PLAN_SEQUENCE, vec![plan_ref])
        .ds(tags::GRID_FRAME_OFFSET_VECTOR, &offsets)
        .ds(tags::DOSE_GRID_SCALING, &[scaling])
        .ow(tags::PIXEL_DATA, words);
    Ok((b, scaling))
}

/// The RT plan data set.
fn plan(x: &PlanExport<'_>, cx: &Context<'_>, sop: &str, structure_set: &str) -> Result<Builder> {
    let mut b = cx.common(uids::RT_PLAN_STORAGE, sop, "RTPLAN", &new_uid(), 3);
    let mut ss_ref = Builder::new();
    ss_ref
        .str(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            uids::RT_STRUCTURE_SET_STORAGE,
        )
        .str(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, structure_set);
    let description = match x.deliverable {
        Some(_) => x.description.clone(),
        None => format!(
            "{} No deliverable beams: a fluence plan (make one with autoplan plan --deliverable).",
            x.description
        ),
    };
    b.str(tags::RT_PLAN_LABEL, VR::SH, &short(&x.label, 16))
        .str(tags::RT_PLAN_NAME, VR::LO, &short(&x.label, 64))
        .str(
            tags::RT_PLAN_DESCRIPTION,
            VR::ST,
            &short(description.trim(), 1024),
        )
        .str(tags::RT_PLAN_DATE, VR::DA, &cx.date)
        .str(tags::RT_PLAN_TIME, VR::TM, &cx.time)
        .str(tags::RT_PLAN_GEOMETRY, VR::CS, "PATIENT")
        .seq(tags::REFERENCED_STRUCTURE_SET_SEQUENCE, vec![ss_ref]);
    let mut setup = Builder::new();
    setup
        .is(tags::PATIENT_SETUP_NUMBER, 1)
        .str(tags::PATIENT_POSITION, VR::CS, "HFS");
    b.seq(tags::PATIENT_SETUP_SEQUENCE, vec![setup]);
    let fractions = x
        .prescription
        .map(|r| r.fractions)
        .or(x.deliverable.map(|d| d.fractions))
        .unwrap_or(1);
    if let Some(rx) = x.prescription {
        let target = x
            .patient
            .structures()
            .iter()
            .position(|s| s.name == rx.target)
            .ok_or_else(|| {
                Error::invalid(
                    "export",
                    "prescription.target",
                    &rx.target,
                    "no such structure",
                )
            })?;
        let mut dr = Builder::new();
        dr.is(tags::DOSE_REFERENCE_NUMBER, 1)
            .str(tags::DOSE_REFERENCE_UID, VR::UI, &new_uid())
            .str(tags::DOSE_REFERENCE_STRUCTURE_TYPE, VR::CS, "VOLUME")
            .is(tags::REFERENCED_ROI_NUMBER, target as i64 + 1)
            .str(tags::DOSE_REFERENCE_TYPE, VR::CS, "TARGET")
            .str(
                tags::DOSE_REFERENCE_DESCRIPTION,
                VR::LO,
                &short(
                    &format!(
                        "{} Gy in {} fractions to {}% of {}",
                        ds(rx.dose_cgy / 100.0),
                        rx.fractions,
                        ds(rx.volume_percent),
                        rx.target
                    ),
                    64,
                ),
            )
            .ds(tags::TARGET_PRESCRIPTION_DOSE, &[rx.dose_cgy / 100.0]);
        b.seq(tags::DOSE_REFERENCE_SEQUENCE, vec![dr]);
    }
    let arcs = x.deliverable.map(|d| d.arcs.as_slice()).unwrap_or(&[]);
    let mut fg = Builder::new();
    fg.is(tags::FRACTION_GROUP_NUMBER, 1)
        .is(tags::NUMBER_OF_FRACTIONS_PLANNED, fractions as i64)
        .is(tags::NUMBER_OF_BEAMS, arcs.len() as i64)
        .is(tags::NUMBER_OF_BRACHY_APPLICATION_SETUPS, 0);
    if let Some(d) = x.deliverable {
        d.check("deliverable plan")?;
        let refs = d
            .arcs
            .iter()
            .enumerate()
            .map(|(n, a)| {
                let mut r = Builder::new();
                r.is(tags::REFERENCED_BEAM_NUMBER, n as i64 + 1)
                    .ds(tags::BEAM_METERSET, &[a.mu()]);
                r
            })
            .collect();
        fg.seq(tags::REFERENCED_BEAM_SEQUENCE, refs);
        let beams = d
            .arcs
            .iter()
            .enumerate()
            .map(|(n, a)| beam(d, a, n))
            .collect();
        b.seq(tags::BEAM_SEQUENCE, beams);
    }
    b.seq(tags::FRACTION_GROUP_SEQUENCE, vec![fg]);
    Ok(b)
}

fn device(kind: &str, pairs: i64, boundaries: Option<&[f64]>) -> Builder {
    let mut d = Builder::new();
    d.str(tags::RT_BEAM_LIMITING_DEVICE_TYPE, VR::CS, kind)
        .is(tags::NUMBER_OF_LEAF_JAW_PAIRS, pairs);
    if let Some(b) = boundaries {
        d.ds(tags::LEAF_POSITION_BOUNDARIES, b);
    }
    d
}

fn positions(kind: &str, values: &[f64]) -> Builder {
    let mut p = Builder::new();
    p.str(tags::RT_BEAM_LIMITING_DEVICE_TYPE, VR::CS, kind)
        .ds(tags::LEAF_JAW_POSITIONS, values);
    p
}

/// One arc as a dynamic beam.
fn beam(d: &DeliverablePlan, a: &tps_api::deliverable::Arc, n: usize) -> Builder {
    let pairs = d.leaf_pairs();
    let total = a.mu().max(f64::MIN_POSITIVE);
    let direction = match a.rotation {
        Rotation::Clockwise => "CW",
        Rotation::CounterClockwise => "CC",
    };
    let cps: Vec<Builder> = a
        .control_points
        .iter()
        .enumerate()
        .map(|(k, cp)| {
            let mut c = Builder::new();
            c.is(tags::CONTROL_POINT_INDEX, k as i64);
            let mut leaves: Vec<f64> = cp.leaves_mm.iter().map(|l| l[0]).collect();
            leaves.extend(cp.leaves_mm.iter().map(|l| l[1]));
            let mut devices = Vec::new();
            if k == 0 {
                c.ds(tags::NOMINAL_BEAM_ENERGY, &[d.energy_mv]);
                devices.push(positions("ASYMX", &a.jaws.x_mm));
                devices.push(positions("ASYMY", &a.jaws.y_mm));
            }
            devices.push(positions("MLCX", &leaves));
            c.seq(tags::BEAM_LIMITING_DEVICE_POSITION_SEQUENCE, devices)
                .ds(tags::GANTRY_ANGLE, &[cp.gantry_deg])
                .str(
                    tags::GANTRY_ROTATION_DIRECTION,
                    VR::CS,
                    if k + 1 == a.control_points.len() {
                        "NONE"
                    } else {
                        direction
                    },
                );
            if k == 0 {
                c.ds(tags::BEAM_LIMITING_DEVICE_ANGLE, &[a.collimator_deg])
                    .str(
                        tags::BEAM_LIMITING_DEVICE_ROTATION_DIRECTION,
                        VR::CS,
                        "NONE",
                    )
                    .ds(tags::PATIENT_SUPPORT_ANGLE, &[0.0])
                    .str(tags::PATIENT_SUPPORT_ROTATION_DIRECTION, VR::CS, "NONE")
                    .ds(tags::TABLE_TOP_ECCENTRIC_ANGLE, &[0.0])
                    .str(tags::TABLE_TOP_ECCENTRIC_ROTATION_DIRECTION, VR::CS, "NONE")
                    .ds(tags::ISOCENTER_POSITION, &d.isocentre_mm);
            }
            c.ds(
                tags::CUMULATIVE_METERSET_WEIGHT,
                &[cp.cumulative_mu / total],
            );
            c
        })
        .collect();
    let mut b = Builder::new();
    b.is(tags::BEAM_NUMBER, n as i64 + 1)
        .str(tags::BEAM_NAME, VR::LO, &format!("Arc {}", n + 1))
        .str(tags::BEAM_TYPE, VR::CS, "DYNAMIC")
        .str(tags::RADIATION_TYPE, VR::CS, "PHOTON")
        .str(tags::TREATMENT_MACHINE_NAME, VR::SH, &short(&d.machine, 16))
        .str(tags::PRIMARY_DOSIMETER_UNIT, VR::CS, "MU")
        .ds(tags::SOURCE_AXIS_DISTANCE, &[d.sad_mm])
        .seq(
            tags::BEAM_LIMITING_DEVICE_SEQUENCE,
            vec![
                device("ASYMX", 1, None),
                device("ASYMY", 1, None),
                device("MLCX", pairs as i64, Some(&d.leaf_boundaries_mm)),
            ],
        )
        .is(tags::REFERENCED_PATIENT_SETUP_NUMBER, 1)
        .str(tags::TREATMENT_DELIVERY_TYPE, VR::CS, "TREATMENT")
        .is(tags::NUMBER_OF_WEDGES, 0)
        .is(tags::NUMBER_OF_COMPENSATORS, 0)
        .is(tags::NUMBER_OF_BOLI, 0)
        .is(tags::NUMBER_OF_BLOCKS, 0)
        .ds(tags::FINAL_CUMULATIVE_METERSET_WEIGHT, &[1.0])
        .is(
            tags::NUMBER_OF_CONTROL_POINTS,
            a.control_points.len() as i64,
        )
        .seq(tags::CONTROL_POINT_SEQUENCE, cps);
    b
}
