//! A cohort's structure volumes: one row per patient, one column per target and organ at
//! risk (taken from the patients' structure roles, so any site's cohort gets its own columns),
//! with min, mean and max rows.

use tps_api::{Patient, Role};

/// One structure's volume, as a cohort table reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StructureVolume {
    /// Structure name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Volume, cc.
    pub volume_cc: f64,
}

/// The volumes of `patient`'s structures, in order (small enough to keep for a whole cohort
/// while the patients themselves are dropped).
pub fn volumes(patient: &Patient) -> Vec<StructureVolume> {
    patient
        .structures()
        .iter()
        .map(|s| StructureVolume {
            name: s.name.clone(),
            role: s.role,
            volume_cc: s.mask.volume_cc(),
        })
        .collect()
}

/// One patient's row.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRow {
    /// Patient label, e.g. `p07`.
    pub patient: String,
    /// Set and notes, e.g. `test (inguinal)`.
    pub set: String,
    /// Volume per column, cc; `None` when the patient lacks the structure.
    pub volumes: Vec<Option<f64>>,
}

/// The columns for a cohort: every target and organ-at-risk structure, in the order the
/// first patient that has it lists it.
pub fn columns<'a>(patients: impl IntoIterator<Item = &'a [StructureVolume]>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in patients {
        for s in p {
            if matches!(s.role, Role::Target | Role::Oar) && !names.contains(&s.name) {
                names.push(s.name.clone());
            }
        }
    }
    names
}

/// A patient's row over `columns`.
pub fn row(volumes: &[StructureVolume], label: &str, set: &str, columns: &[String]) -> VolumeRow {
    VolumeRow {
        patient: label.to_string(),
        set: set.to_string(),
        volumes: columns
            .iter()
            .map(|n| volumes.iter().find(|s| &s.name == n).map(|s| s.volume_cc))
            .collect(),
    }
}

/// The Markdown table (after `preamble`), volumes rounded to whole cc.
pub fn volume_markdown(preamble: &str, columns: &[String], rows: &[VolumeRow]) -> String {
    let mut s = preamble.to_string();
    s += "| patient | set | ";
    s += &columns.join(" | ");
    s += " |\n|---|---|";
    s += &"---:|".repeat(columns.len());
    s += "\n";
    for r in rows {
        s += &format!("| {} | {} |", r.patient, r.set);
        for v in &r.volumes {
            s += &v.map_or(" - |".into(), |v| format!(" {v:.0} |"));
        }
        s += "\n";
    }
    for (label, f) in [("min", 0), ("mean", 1), ("max", 2)] {
        s += &format!("| **{label}** | |");
        for c in 0..columns.len() {
            let vals: Vec<f64> = rows.iter().filter_map(|r| r.volumes[c]).collect();
            let v = match f {
                0 => vals.iter().cloned().fold(f64::INFINITY, f64::min),
                1 => vals.iter().sum::<f64>() / vals.len().max(1) as f64,
                _ => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            };
            s += &format!(" {v:.0} |");
        }
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_come_from_roles_and_missing_structures_show_a_dash() {
        let a = phantoms::cylinder::water_cylinder("c/p01");
        let v = volumes(&a);
        let cols = columns([v.as_slice()]);
        let expected: Vec<String> = a
            .structures()
            .iter()
            .filter(|s| matches!(s.role, Role::Target | Role::Oar))
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(cols, expected);
        assert!(!cols.iter().any(|c| c == "External"), "{cols:?}");
        let mut wide = cols.clone();
        wide.push("Kidney".into());
        let r = row(&v, "p01", "test", &wide);
        assert_eq!(r.volumes.last(), Some(&None));
        let md = volume_markdown("# t\n\n", &wide, &[r]);
        assert!(md.contains("| p01 | test |") && md.contains(" - |"), "{md}");
        assert_eq!(md.lines().count(), 2 + 2 + 1 + 3, "{md}");
    }
}
