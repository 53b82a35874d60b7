//! Protocol files: everything site-specific a plan needs, one TOML file per tumour site.
//!
//! This module reads the parts the patient model uses: the site's name and the auxiliary
//! structure recipes. Unknown keys are refused, in sections too.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result, parse_toml};
use crate::patient::Patient;
use crate::recipe::{self, Recipe, RecipeWire};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ProtocolWire {
    site: SiteWire,
    #[serde(default)]
    auxiliary: Vec<RecipeWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct SiteWire {
    name: String,
    description: Option<String>,
}

/// A checked protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    /// File it was read from.
    pub origin: PathBuf,
    /// Site name, e.g. `cervix`.
    pub site: String,
    /// Free-text description.
    pub description: Option<String>,
    /// Auxiliary structures to build, in order.
    pub auxiliary: Vec<Recipe>,
}

impl Protocol {
    /// Reads and checks a protocol file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and checks protocol TOML that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let w: ProtocolWire = parse_toml(text, path)?;
        let origin = path.display().to_string();
        if w.site.name.trim().is_empty() {
            return Err(Error::invalid(
                &origin,
                "site.name",
                "\"\"",
                "site name must not be empty",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut auxiliary = Vec::with_capacity(w.auxiliary.len());
        for (n, r) in w.auxiliary.into_iter().enumerate() {
            let field = format!("auxiliary[{n}]");
            let r = r.check(&origin, &field)?;
            if !names.insert(r.name.clone()) {
                return Err(Error::invalid(
                    &origin,
                    format!("{field}.name"),
                    &r.name,
                    "declared twice",
                ));
            }
            auxiliary.push(r);
        }
        Ok(Self {
            origin: path.to_path_buf(),
            site: w.site.name,
            description: w.site.description,
            auxiliary,
        })
    }

    /// Adds the protocol's auxiliary structures to `patient`.
    pub fn build_auxiliary(&self, patient: &mut Patient) -> Result<()> {
        recipe::apply_all(patient, &self.auxiliary)
    }
}
