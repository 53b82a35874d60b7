//! Building a protocol's structure recipes (rings, expansions, Boolean combinations) on a
//! patient. The recipes themselves are read and checked in `tps_api::recipe`.

use tps_api::error::{Error, Result};
use tps_api::patient::Patient;
use tps_api::protocol::Protocol;
use tps_api::recipe::{Op, Recipe};
use tps_api::structure::{Mask, Structure};

use crate::mask_ops::MaskOps;
use crate::morph;

/// Builds `recipe`'s structure on `patient` without adding it.
pub fn build(recipe: &Recipe, patient: &Patient) -> Result<Structure> {
    let get = |name: &str, sub: &str| -> Result<&Mask> {
        Ok(&patient
            .require(name, &recipe.origin, &format!("{}.{sub}", recipe.field))?
            .mask)
    };
    // The structure a margin, ring or subtraction starts from: when it is empty, it is what to
    // name (not the empty result).
    let source_of = |name: &str| -> Result<&Mask> {
        let m = get(name, "source")?;
        if m.is_empty() {
            return Err(Error::invalid(
                &recipe.origin,
                format!("{}.source", recipe.field),
                name,
                format!(
                    "structure \"{name}\" has no voxels on this patient, so {} ({}) cannot \
                     be built from it",
                    recipe.name,
                    recipe.describe()
                ),
            ));
        }
        Ok(m)
    };
    let list = |names: &[String]| -> Result<Vec<&Mask>> {
        names
            .iter()
            .enumerate()
            .map(|(n, s)| get(s, &format!("sources[{n}]")))
            .collect()
    };
    let mut mask = match &recipe.op {
        Op::Expand { source, margin_mm } => morph::expand(source_of(source)?, *margin_mm)?,
        Op::Contract { source, margin_mm } => morph::contract(source_of(source)?, *margin_mm)?,
        Op::Ring {
            source,
            gap_mm,
            thickness_mm,
        } => morph::ring(source_of(source)?, *gap_mm, *thickness_mm)?,
        Op::Union { sources } => {
            let ms = list(sources)?;
            let mut acc = ms[0].clone();
            for m in &ms[1..] {
                acc.union_in_place(m)?;
            }
            acc
        }
        Op::Intersect { sources } => {
            let ms = list(sources)?;
            let mut acc = ms[0].clone();
            for m in &ms[1..] {
                acc = acc.intersection(m)?;
            }
            acc
        }
        Op::Subtract { source, sources } => {
            let mut acc = source_of(source)?.clone();
            for m in list(sources)? {
                acc.subtract_in_place(m)?;
            }
            acc
        }
    };
    if let Some(c) = &recipe.crop_to {
        mask = mask.intersection(get(c, "crop-to")?)?;
    }
    if mask.is_empty() {
        return Err(Error::EmptyStructure {
            origin: format!("{}: {}", recipe.origin, recipe.field),
            name: recipe.name.clone(),
            operation: recipe.describe(),
        });
    }
    Ok(Structure::new(recipe.name.clone(), recipe.role, mask))
}

/// Builds every recipe in order and adds the results to `patient`; a later recipe may use an
/// earlier one's result. A name that already exists is an error naming the recipe.
pub fn apply_all(patient: &mut Patient, recipes: &[Recipe]) -> Result<()> {
    for r in recipes {
        if patient.structure(&r.name).is_some() {
            return Err(Error::invalid(
                &r.origin,
                format!("{}.name", r.field),
                &r.name,
                "the patient already has a structure with this name",
            ));
        }
        let s = build(r, patient)?;
        patient.add_structure(s)?;
    }
    Ok(())
}

/// Adds `protocol`'s auxiliary structures to `patient`; a name the patient already has is an
/// error.
pub fn build_auxiliary(protocol: &Protocol, patient: &mut Patient) -> Result<()> {
    apply_all(patient, &protocol.auxiliary)
}

/// Adds the auxiliary structures of `protocol` that `patient` lacks; those it has (for
/// example saved with it) are used as they are. Returns the names built.
pub fn build_missing_auxiliary(protocol: &Protocol, patient: &mut Patient) -> Result<Vec<String>> {
    let missing: Vec<Recipe> = protocol
        .auxiliary
        .iter()
        .filter(|r| patient.structure(&r.name).is_none())
        .cloned()
        .collect();
    apply_all(patient, &missing)?;
    Ok(missing.into_iter().map(|r| r.name).collect())
}
