//! A patient: CT on a grid and the structures delineated on it.

use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::structure::{Role, Structure};

/// A planning CT with its structure set.
#[derive(Debug, Clone)]
pub struct Patient {
    /// Identifier, e.g. `cervix-35/p07`.
    pub id: String,
    grid: Grid,
    ct_hu: Vec<i16>,
    structures: Vec<Structure>,
}

impl Patient {
    /// A patient from a CT in Hounsfield units on `grid` (x-fastest), with no structures yet.
    /// The grid must be LPS-aligned: structure operations and dose calculation assume it (a
    /// series in another orientation is reordered first).
    pub fn new(id: impl Into<String>, grid: Grid, ct_hu: Vec<i16>) -> Result<Self> {
        grid.validate()?;
        if !grid.is_lps_aligned() {
            return Err(Error::invalid(
                "patient",
                "grid.direction",
                format!("{:?}", grid.direction),
                "a patient's CT grid must be LPS-aligned (axes along x, y, z of the patient)",
            ));
        }
        if ct_hu.len() != grid.len() {
            return Err(Error::GridMismatch {
                what: format!(
                    "CT has {} voxels but its grid {:?} has {}",
                    ct_hu.len(),
                    grid.dims,
                    grid.len()
                ),
            });
        }
        Ok(Self {
            id: id.into(),
            grid,
            ct_hu,
            structures: Vec::new(),
        })
    }

    /// The CT grid, on which every structure lives.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// CT numbers in HU, x-fastest.
    pub fn ct_hu(&self) -> &[i16] {
        &self.ct_hu
    }

    /// Structures in the order they were added.
    pub fn structures(&self) -> &[Structure] {
        &self.structures
    }

    /// Structure names in order.
    pub fn structure_names(&self) -> Vec<String> {
        self.structures.iter().map(|s| s.name.clone()).collect()
    }

    /// The structure called `name`, if any (exact match).
    pub fn structure(&self, name: &str) -> Option<&Structure> {
        self.structures.iter().find(|s| s.name == name)
    }

    /// The structure called `name`, or an error naming the file and field that asked for it.
    pub fn require(&self, name: &str, origin: &str, field: &str) -> Result<&Structure> {
        self.structure(name).ok_or_else(|| Error::UnknownStructure {
            origin: origin.to_string(),
            field: field.to_string(),
            name: name.to_string(),
            available: self.structure_names(),
        })
    }

    /// Adds a structure; its mask must be on the CT grid and its name new.
    pub fn add_structure(&mut self, structure: Structure) -> Result<()> {
        if structure.mask.grid() != &self.grid {
            return Err(Error::GridMismatch {
                what: format!(
                    "structure \"{}\" is on grid {:?}, the CT on {:?}",
                    structure.name,
                    structure.mask.grid(),
                    self.grid
                ),
            });
        }
        if self.structure(&structure.name).is_some() {
            return Err(Error::invalid(
                self.id.clone(),
                "structures",
                structure.name,
                "a structure with this name already exists",
            ));
        }
        self.structures.push(structure);
        Ok(())
    }

    /// The first structure with role `role`.
    pub fn first_with_role(&self, role: Role) -> Option<&Structure> {
        self.structures.iter().find(|s| s.role == role)
    }
}
