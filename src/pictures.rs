//! The pictures commands write: slices of a patient's structures, isodose lines, the DVH.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use evaluation::ProtocolEvaluator;
use evaluation::dvh::Dvh;
use patient_model::{MaskOps, render};
use tps_api::{Dose, Patient, Role};

/// Centre of the slices: the PTV's centroid, or the first target's.
pub fn slice_centre(p: &Patient) -> Result<[f64; 3]> {
    let target = p
        .structure("PTV")
        .or_else(|| p.first_with_role(Role::Target))
        .context("patient has no target structure to centre the slices on")?;
    target
        .mask
        .centroid_mm()
        .with_context(|| format!("structure {} is empty", target.name))
}

/// Axial, sagittal and coronal slices of every structure, `<stem>-<plane>.png` in `dir`.
pub fn structure_pngs(p: &Patient, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    let overlays = render::structure_overlays(p);
    Ok(render::write_orthogonal_pngs(
        p,
        &overlays,
        slice_centre(p)?,
        dir,
        stem,
    )?)
}

/// DVH figure (`dvh.png`, `dvh.svg` in `dir`) of every structure `ev`'s metrics name.
pub fn write_dvh(
    p: &Patient,
    dose: &Dose,
    ev: &ProtocolEvaluator,
    label: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    write_dvhs(p, (label, dose), None, ev, dir, "dvh")
}

/// The DVHs of the metric structures for plan `a`, with plan `b`'s overlaid (dashed) when
/// given, as `<stem>.png` (and `.svg`) in `dir`.
pub fn write_dvhs(
    p: &Patient,
    (label, dose): (&str, &Dose),
    b: Option<(&str, &Dose)>,
    ev: &ProtocolEvaluator,
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>> {
    let mut names: Vec<String> = Vec::new();
    for m in ev.metrics() {
        if let evaluation::Metric::Structure { name, .. } = m {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    let dvhs = names
        .iter()
        .map(|n| {
            let s = p.require(n, "DVH", "metrics")?;
            Ok(Dvh::new(n, dose.cgy(), &s.mask)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let second = match b {
        Some((_, dose_b)) => names
            .iter()
            .map(|n| {
                let s = p.require(n, "DVH", "metrics")?;
                Ok(Some(Dvh::new(n, dose_b.cgy(), &s.mask)?))
            })
            .collect::<Result<Vec<_>>>()?,
        None => vec![None; names.len()],
    };
    let fig = evaluation::figures::DvhComparison {
        title: format!("DVH, {}", p.id),
        plans: (label.to_string(), b.map(|(l, _)| l.to_string())),
        curves: dvhs
            .iter()
            .zip(&second)
            .map(|(d, e)| (d, e.as_ref()))
            .collect(),
    };
    Ok(evaluation::figures::save(
        &fig,
        &dir.join(stem),
        (1000, 700),
    )?)
}

/// Isodose lines (fractions of `rx_cgy`) with the target's outline on the three planes through
/// the target, written as `<stem>-<plane>.png` into `dir`.
pub fn isodose_pngs(
    p: &Patient,
    dose: &Dose,
    rx_cgy: f64,
    fractions: &[f64],
    target: &str,
    dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>> {
    let levels: Vec<f64> = fractions.iter().map(|f| f * rx_cgy).collect();
    let iso = render::isodose_masks(p.grid(), dose.cgy(), &levels, Some(rx_cgy));
    let t = p.require(target, "isodose picture", "target")?;
    let mut overlays = vec![render::Overlay {
        label: t.name.clone(),
        color: [255, 255, 255],
        mask: &t.mask,
    }];
    overlays.extend(iso.iter().map(|(label, color, mask)| render::Overlay {
        label: label.clone(),
        color: *color,
        mask,
    }));
    Ok(render::write_orthogonal_pngs(
        p,
        &overlays,
        slice_centre(p)?,
        dir,
        stem,
    )?)
}
