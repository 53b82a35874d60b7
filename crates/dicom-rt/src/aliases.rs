//! The alias table: structure names found in structure sets mapped to a protocol's names.
//!
//! Names are compared after [`normalize`]: lower case, and each run of spaces, hyphens and
//! underscores one underscore. A protocol name always matches itself; the table adds other
//! spellings (`configs/dicom/aliases.toml`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use tps_api::error::{Error, Result, read_toml};

/// The comparison form of a structure name.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if c == ' ' || c == '-' || c == '_' {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('_');
        }
        sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Wire {
    #[serde(default)]
    aliases: BTreeMap<String, Vec<String>>,
}

/// Spellings of each protocol name, checked so that no spelling means two names.
#[derive(Debug, Clone, Default)]
pub struct AliasTable {
    /// Normalized spelling -> protocol name.
    by_spelling: BTreeMap<String, String>,
}

impl AliasTable {
    /// Reads a table; a spelling listed under two names is an error naming both.
    pub fn load(path: &Path) -> Result<Self> {
        let w: Wire = read_toml(path)?;
        let mut by_spelling: BTreeMap<String, String> = BTreeMap::new();
        for (name, spellings) in &w.aliases {
            for (n, s) in std::iter::once(name).chain(spellings).enumerate() {
                let key = normalize(s);
                if key.is_empty() {
                    return Err(Error::invalid(
                        path.display().to_string(),
                        format!("aliases.{name}[{}]", n.saturating_sub(1)),
                        s,
                        "an empty name",
                    ));
                }
                match by_spelling.get(&key) {
                    Some(other) if other != name => {
                        return Err(Error::invalid(
                            path.display().to_string(),
                            format!("aliases.{name}"),
                            s,
                            format!(
                                "\"{s}\" is also a spelling of {other}: a name can mean one structure only"
                            ),
                        ));
                    }
                    _ => {
                        by_spelling.insert(key, name.clone());
                    }
                }
            }
        }
        Ok(Self { by_spelling })
    }

    /// The protocol name `found` stands for: among `wanted` (a protocol's structures), the one
    /// it spells, by the table or by itself; `None` when it spells none of them.
    pub fn resolve(&self, found: &str, wanted: &[String]) -> Option<String> {
        let key = normalize(found);
        wanted
            .iter()
            .find(|w| normalize(w) == key)
            .or_else(|| {
                let name = self.by_spelling.get(&key)?;
                wanted.iter().find(|w| *w == name)
            })
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_without_case_or_separators() {
        assert_eq!(normalize("  Femur Head-L "), "femur_head_l");
        assert_eq!(normalize("BLADDER"), "bladder");
        assert_eq!(normalize("_x__y"), "x_y");
    }

    #[test]
    fn the_shipped_table_maps_common_spellings_to_the_protocol_names() {
        let t = AliasTable::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/dicom/aliases.toml"),
        )
        .unwrap();
        let wanted: Vec<String> = ["PTV", "Bladder", "Femur_Head_L", "External", "SpinalCord"]
            .map(String::from)
            .to_vec();
        for (found, name) in [
            ("Bladder", "Bladder"),
            ("BLADDER", "Bladder"),
            ("bladder_o", "Bladder"),
            ("Femoral Head L", "Femur_Head_L"),
            ("femur-head-l", "Femur_Head_L"),
            ("BODY", "External"),
            ("Spinal Cord", "SpinalCord"),
        ] {
            assert_eq!(t.resolve(found, &wanted).as_deref(), Some(name), "{found}");
        }
        assert_eq!(t.resolve("Femoral Head R", &wanted), None);
        assert_eq!(t.resolve("Couch", &wanted), None);
    }

    #[test]
    fn a_spelling_of_two_names_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "[aliases]\nBladder = [\"Bl\"]\nRectum = [\"BL\"]\n").unwrap();
        let e = AliasTable::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("also a spelling of Bladder") && e.contains("aliases.Rectum"),
            "{e}"
        );
        std::fs::write(&p, "[aliases]\nBladder = [\"x\"]\n[extra]\n").unwrap();
        assert!(AliasTable::load(&p).is_err());
    }
}
