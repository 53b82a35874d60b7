//! Reading a directory tree of DICOM files: which files are DICOM, what each holds, and
//! attribute access whose errors name the file, the attribute, its tag and the value.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use rayon::prelude::*;
use tps_api::error::{Error, Result};

/// What a DICOM file holds, from its Modality (0008,0060).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A CT image slice.
    Ct,
    /// An RT structure set.
    RtStruct,
    /// An RT dose.
    RtDose,
    /// An RT plan.
    RtPlan,
    /// Any other modality (kept for the listing of what was found).
    Other(String),
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Ct => f.write_str("CT"),
            Kind::RtStruct => f.write_str("RTSTRUCT"),
            Kind::RtDose => f.write_str("RTDOSE"),
            Kind::RtPlan => f.write_str("RTPLAN"),
            Kind::Other(m) => f.write_str(m),
        }
    }
}

/// One DICOM file read into memory.
pub struct DicomFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// What it holds.
    pub kind: Kind,
    /// Its data set, with the file meta group.
    pub obj: DefaultDicomObject,
}

impl DicomFile {
    /// Attribute access on the file's top-level data set.
    pub fn attrs(&self) -> Attrs<'_> {
        Attrs::new(&self.path, &self.obj, String::new())
    }

    /// The transfer syntax UID the file was written in.
    pub fn transfer_syntax(&self) -> &str {
        self.obj.meta().transfer_syntax()
    }
}

/// The DICOM files of a directory tree, and the files that were not DICOM.
pub struct Scan {
    /// Files with a DICOM preamble that parsed, in path order.
    pub files: Vec<DicomFile>,
    /// Files without the DICOM preamble ("DICM" at byte 128), skipped.
    pub skipped: Vec<PathBuf>,
}

impl Scan {
    /// Files of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a Kind) -> impl Iterator<Item = &'a DicomFile> + 'a {
        self.files.iter().filter(move |f| &f.kind == kind)
    }

    /// One line per kind with its count, for messages: "CT 120, RTSTRUCT 1".
    pub fn summary(&self) -> String {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for f in &self.files {
            let k = f.kind.to_string();
            match counts.iter_mut().find(|(n, _)| *n == k) {
                Some((_, c)) => *c += 1,
                None => counts.push((k, 1)),
            }
        }
        if counts.is_empty() {
            return "no DICOM files".into();
        }
        counts
            .iter()
            .map(|(k, c)| format!("{k} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut entries: Vec<PathBuf> = rd
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// True when the file carries the DICOM Part 10 preamble: 128 bytes, then "DICM".
fn has_preamble(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 132];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(|e| Error::io(path, e))? {
            0 => break,
            m => n += m,
        }
    }
    Ok(n == 132 && &head[128..132] == b"DICM")
}

/// Opens one DICOM file; every failure names the file.
pub fn open(path: &Path) -> Result<DicomFile> {
    let obj = dicom_object::OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| Error::corrupt(path, format!("not a readable DICOM file: {e}")))?;
    let modality = Attrs::new(path, &obj, String::new())
        .opt_str(tags::MODALITY, "Modality")?
        .unwrap_or_default();
    let kind = match modality.as_str() {
        "CT" => Kind::Ct,
        "RTSTRUCT" => Kind::RtStruct,
        "RTDOSE" => Kind::RtDose,
        "RTPLAN" => Kind::RtPlan,
        other => Kind::Other(if other.is_empty() {
            "no modality".into()
        } else {
            other.to_string()
        }),
    };
    Ok(DicomFile {
        path: path.to_path_buf(),
        kind,
        obj,
    })
}

/// Reads every DICOM file under `dir` (any file names, any depth), in parallel. A file with
/// the DICOM preamble that does not parse (truncated, damaged) is an error naming it; files
/// without the preamble are listed as skipped.
pub fn scan(dir: &Path) -> Result<Scan> {
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        ));
    }
    let mut paths = Vec::new();
    walk(dir, &mut paths)?;
    let read: Vec<Result<Option<DicomFile>>> = paths
        .par_iter()
        .map(|p| {
            if has_preamble(p)? {
                open(p).map(Some)
            } else {
                Ok(None)
            }
        })
        .collect();
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for (p, r) in paths.into_iter().zip(read) {
        match r? {
            Some(f) => files.push(f),
            None => skipped.push(p),
        }
    }
    Ok(Scan { files, skipped })
}

/// Attribute access on one data set (a file's, or an item of a sequence in it). Errors name
/// the file, the attribute with its tag (and the sequence items leading to it) and the value.
#[derive(Clone)]
pub struct Attrs<'a> {
    path: &'a Path,
    obj: &'a InMemDicomObject,
    prefix: String,
}

impl<'a> Attrs<'a> {
    /// Access to `obj`, read from `path`; `prefix` locates it in the file (empty for the top).
    pub fn new(path: &'a Path, obj: &'a InMemDicomObject, prefix: String) -> Self {
        Self { path, obj, prefix }
    }

    /// The file the data set came from.
    pub fn path(&self) -> &'a Path {
        self.path
    }

    /// The field as messages name it: "ROIContourSequence[2].ContourData (3006,0050)".
    pub fn field(&self, tag: Tag, name: &str) -> String {
        format!("{}{name} {tag}", self.prefix)
    }

    /// An [`Error::Invalid`] for attribute `name`.
    pub fn invalid(&self, tag: Tag, name: &str, value: impl Into<String>, reason: &str) -> Error {
        Error::invalid(
            self.path.display().to_string(),
            self.field(tag, name),
            value,
            reason,
        )
    }

    fn missing(&self, tag: Tag, name: &str) -> Error {
        self.invalid(tag, name, "(absent)", "required here")
    }

    fn text(&self, tag: Tag, name: &str) -> Result<Option<Cow<'a, str>>> {
        let Some(e) = self.obj.get(tag) else {
            return Ok(None);
        };
        let v = e
            .to_str()
            .map_err(|err| self.invalid(tag, name, "(unreadable)", &format!("not text: {err}")))?;
        Ok(Some(v))
    }

    /// A text attribute, trimmed (absent or empty gives `None`).
    pub fn opt_str(&self, tag: Tag, name: &str) -> Result<Option<String>> {
        Ok(self
            .text(tag, name)?
            .map(|s| s.trim_matches([' ', '\0']).to_string())
            .filter(|s| !s.is_empty()))
    }

    /// A required text attribute, trimmed.
    pub fn str(&self, tag: Tag, name: &str) -> Result<String> {
        self.opt_str(tag, name)?
            .ok_or_else(|| self.missing(tag, name))
    }

    /// Numbers of a numeric or decimal-string attribute (absent gives `None`).
    pub fn opt_f64s(&self, tag: Tag, name: &str) -> Result<Option<Vec<f64>>> {
        let Some(e) = self.obj.get(tag) else {
            return Ok(None);
        };
        let v = e.to_multi_float64().map_err(|err| {
            let shown = e
                .to_str()
                .map(|s| s.into_owned())
                .unwrap_or_else(|_| "(unreadable)".into());
            self.invalid(tag, name, shown, &format!("not a list of numbers: {err}"))
        })?;
        if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
            return Err(self.invalid(tag, name, bad.to_string(), "numbers must be finite"));
        }
        Ok(Some(v))
    }

    /// Exactly `n` numbers.
    pub fn f64s(&self, tag: Tag, name: &str, n: usize) -> Result<Vec<f64>> {
        let v = self
            .opt_f64s(tag, name)?
            .ok_or_else(|| self.missing(tag, name))?;
        if v.len() != n {
            return Err(self.invalid(tag, name, format!("{v:?}"), &format!("expected {n} values")));
        }
        Ok(v)
    }

    /// One number, or `default` when the attribute is absent or empty.
    pub fn f64_or(&self, tag: Tag, name: &str, default: f64) -> Result<f64> {
        match self.opt_f64s(tag, name)? {
            None => Ok(default),
            Some(v) if v.is_empty() => Ok(default),
            Some(v) => Ok(v[0]),
        }
    }

    /// A required integer.
    pub fn int(&self, tag: Tag, name: &str) -> Result<i64> {
        let e = self.obj.get(tag).ok_or_else(|| self.missing(tag, name))?;
        e.to_int::<i64>().map_err(|err| {
            let shown = e
                .to_str()
                .map(|s| s.into_owned())
                .unwrap_or_else(|_| "(unreadable)".into());
            self.invalid(tag, name, shown, &format!("not an integer: {err}"))
        })
    }

    /// The items of a sequence (absent gives none).
    pub fn items(&self, tag: Tag, name: &str) -> Vec<Attrs<'a>> {
        let Some(e) = self.obj.get(tag) else {
            return Vec::new();
        };
        e.items()
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .map(|(n, item)| Attrs {
                path: self.path,
                obj: item,
                prefix: format!("{}{name}[{n}].", self.prefix),
            })
            .collect()
    }

    /// The raw element, for pixel data.
    pub fn element(&self, tag: Tag) -> Option<&'a dicom_object::mem::InMemElement> {
        self.obj.get(tag)
    }
}
