//! Structure recipes: derived structures (optimization rings, expansions, Boolean
//! combinations) declared in a protocol file rather than in code.
//!
//! ```toml
//! [[auxiliary]]
//! name = "R2"
//! op = "ring"            # expand | contract | ring | union | intersect | subtract
//! source = "PTV"
//! gap-mm = 5.0           # ring: starts this far outside the source
//! thickness-mm = 25.0    # ring: and is this thick
//! crop-to = "External"   # optional, any op: keep only voxels inside this structure
//! ```
//!
//! Fields per op: `expand` and `contract` take `source` and `margin-mm`; `ring` takes
//! `source`, `gap-mm`, `thickness-mm`; `union` and `intersect` take `sources`; `subtract`
//! takes `source` and `sources` (subtracted). A field an op does not use is an error, as is a
//! missing one, so a typo cannot silently change a structure.
//!
//! This module reads and checks recipes; building them on a patient is the patient model's
//! work (`patient_model::recipes`), so a remote TPS receives the same checked recipes.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::structure::Role;

/// The operation a recipe performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// Grow by a margin.
    Expand,
    /// Shrink by a margin.
    Contract,
    /// Shell outside the source.
    Ring,
    /// Voxels in any source.
    Union,
    /// Voxels in every source.
    Intersect,
    /// `source` minus every structure in `sources`.
    Subtract,
}

/// A recipe as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RecipeWire {
    name: String,
    #[serde(default)]
    role: Option<Role>,
    op: OpKind,
    source: Option<String>,
    sources: Option<Vec<String>>,
    margin_mm: Option<f64>,
    gap_mm: Option<f64>,
    thickness_mm: Option<f64>,
    crop_to: Option<String>,
}

/// A checked operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `expand(source, margin_mm)`.
    Expand {
        /// Structure to grow.
        source: String,
        /// Margin, mm (>= 0).
        margin_mm: f64,
    },
    /// `contract(source, margin_mm)`.
    Contract {
        /// Structure to shrink.
        source: String,
        /// Margin, mm (>= 0).
        margin_mm: f64,
    },
    /// `expand(source, gap + thickness) \ expand(source, gap)`.
    Ring {
        /// Structure the ring surrounds.
        source: String,
        /// Distance from the source to the ring's inner surface, mm (>= 0).
        gap_mm: f64,
        /// Ring thickness, mm (> 0).
        thickness_mm: f64,
    },
    /// Union of `sources`.
    Union {
        /// Structures to combine.
        sources: Vec<String>,
    },
    /// Intersection of `sources`.
    Intersect {
        /// Structures to intersect.
        sources: Vec<String>,
    },
    /// `source` minus `sources`.
    Subtract {
        /// Structure to cut from.
        source: String,
        /// Structures removed from it.
        sources: Vec<String>,
    },
}

/// A checked recipe: what to build, from what, and where it was declared.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// Name of the new structure.
    pub name: String,
    /// Its role (auxiliary unless stated).
    pub role: Role,
    /// The operation.
    pub op: Op,
    /// Optional structure the result is cropped to.
    pub crop_to: Option<String>,
    /// File the recipe came from.
    pub origin: String,
    /// Its field path in that file, e.g. `auxiliary[1]`.
    pub field: String,
}

/// Largest margin, gap or thickness of a recipe, mm: more than any patient is wide.
pub const MAX_DISTANCE_MM: f64 = 500.0;

impl RecipeWire {
    /// Checks a recipe read from `origin` at `field`.
    pub fn check(self, origin: &str, field: &str) -> Result<Recipe> {
        let f = |k: &str| format!("{field}.{k}");
        let invalid = |k: &str, v: String, why: &str| Error::invalid(origin, f(k), v, why);
        if self.name.trim().is_empty() {
            return Err(invalid(
                "name",
                format!("{:?}", self.name),
                "name must not be empty",
            ));
        }
        let op_name = format!("{:?}", self.op).to_lowercase();
        let unused = |k: &str, present: bool| -> Result<()> {
            if present {
                return Err(invalid(
                    k,
                    "(set)".into(),
                    &format!("op `{op_name}` does not use this field"),
                ));
            }
            Ok(())
        };
        let need_str = |k: &str, v: &Option<String>| -> Result<String> {
            match v {
                Some(s) if !s.trim().is_empty() => Ok(s.clone()),
                _ => Err(invalid(
                    k,
                    "(missing)".into(),
                    &format!("op `{op_name}` needs this field"),
                )),
            }
        };
        let need_mm = |k: &str, v: Option<f64>, positive: bool| -> Result<f64> {
            let v = v.ok_or_else(|| {
                invalid(
                    k,
                    "(missing)".into(),
                    &format!("op `{op_name}` needs this field"),
                )
            })?;
            let ok = v <= MAX_DISTANCE_MM && if positive { v > 0.0 } else { v >= 0.0 };
            if !ok {
                let why = if positive {
                    format!("must be a positive distance in mm, at most {MAX_DISTANCE_MM} mm")
                } else {
                    format!(
                        "must be a non-negative distance in mm, at most {MAX_DISTANCE_MM} mm \
                         (use op = \"contract\" to shrink)"
                    )
                };
                return Err(invalid(k, v.to_string(), &why));
            }
            Ok(v)
        };
        let need_list = |k: &str, v: &Option<Vec<String>>, min: usize| -> Result<Vec<String>> {
            match v {
                Some(l) if l.len() >= min => Ok(l.clone()),
                Some(l) => Err(invalid(
                    k,
                    format!("{l:?}"),
                    &format!("op `{op_name}` needs at least {min} structure(s)"),
                )),
                None => Err(invalid(
                    k,
                    "(missing)".into(),
                    &format!("op `{op_name}` needs this field"),
                )),
            }
        };
        let op = match self.op {
            OpKind::Expand | OpKind::Contract => {
                unused("sources", self.sources.is_some())?;
                unused("gap-mm", self.gap_mm.is_some())?;
                unused("thickness-mm", self.thickness_mm.is_some())?;
                let source = need_str("source", &self.source)?;
                let margin_mm = need_mm("margin-mm", self.margin_mm, false)?;
                if self.op == OpKind::Expand {
                    Op::Expand { source, margin_mm }
                } else {
                    Op::Contract { source, margin_mm }
                }
            }
            OpKind::Ring => {
                unused("sources", self.sources.is_some())?;
                unused("margin-mm", self.margin_mm.is_some())?;
                Op::Ring {
                    source: need_str("source", &self.source)?,
                    gap_mm: need_mm("gap-mm", self.gap_mm, false)?,
                    thickness_mm: need_mm("thickness-mm", self.thickness_mm, true)?,
                }
            }
            OpKind::Union | OpKind::Intersect => {
                unused("source", self.source.is_some())?;
                unused("margin-mm", self.margin_mm.is_some())?;
                unused("gap-mm", self.gap_mm.is_some())?;
                unused("thickness-mm", self.thickness_mm.is_some())?;
                let sources = need_list("sources", &self.sources, 2)?;
                if self.op == OpKind::Union {
                    Op::Union { sources }
                } else {
                    Op::Intersect { sources }
                }
            }
            OpKind::Subtract => {
                unused("margin-mm", self.margin_mm.is_some())?;
                unused("gap-mm", self.gap_mm.is_some())?;
                unused("thickness-mm", self.thickness_mm.is_some())?;
                Op::Subtract {
                    source: need_str("source", &self.source)?,
                    sources: need_list("sources", &self.sources, 1)?,
                }
            }
        };
        Ok(Recipe {
            name: self.name,
            role: self.role.unwrap_or(Role::Auxiliary),
            op,
            crop_to: self.crop_to,
            origin: origin.to_string(),
            field: field.to_string(),
        })
    }
}

impl Recipe {
    /// A short description for messages, e.g. `ring of PTV, gap 5 mm, thickness 25 mm`.
    pub fn describe(&self) -> String {
        let base = match &self.op {
            Op::Expand { source, margin_mm } => format!("expand {source} by {margin_mm} mm"),
            Op::Contract { source, margin_mm } => format!("contract {source} by {margin_mm} mm"),
            Op::Ring {
                source,
                gap_mm,
                thickness_mm,
            } => {
                format!("ring of {source}, gap {gap_mm} mm, thickness {thickness_mm} mm")
            }
            Op::Union { sources } => format!("union of {}", sources.join(", ")),
            Op::Intersect { sources } => format!("intersection of {}", sources.join(", ")),
            Op::Subtract { source, sources } => format!("{source} minus {}", sources.join(", ")),
        };
        match &self.crop_to {
            Some(c) => format!("{base}, cropped to {c}"),
            None => base,
        }
    }
}
