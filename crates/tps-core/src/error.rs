//! The error type of tps-core: every variant names where the bad input came from.

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tps-core.
///
/// Variants carry the offending value and its origin (a file, or a logical source such as
/// `grid` when the value did not come from a file), so a message can be acted on without a
/// debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value that parsed but is not acceptable.
    #[error("{origin}: field `{field}` = {value}: {reason}")]
    Invalid {
        /// File (or logical source) the value came from.
        origin: String,
        /// Dotted path of the field, e.g. `auxiliary[2].gap-mm`.
        field: String,
        /// The offending value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TOML file that does not parse or does not match its schema (unknown key, wrong
    /// type, missing field). The message of the TOML parser names the key and its line.
    #[error("{}: {message}", file.display())]
    Toml {
        /// The file.
        file: PathBuf,
        /// The parser's message, including line, column and key.
        message: String,
    },
    /// A recipe or protocol names a structure the patient does not have.
    #[error("{origin}: field `{field}` = \"{name}\": no such structure (available: {})", available.join(", "))]
    UnknownStructure {
        /// File the reference came from.
        origin: String,
        /// Field holding the reference.
        field: String,
        /// The name that was not found.
        name: String,
        /// The structure names the patient has.
        available: Vec<String>,
    },
    /// An operation produced a structure with no voxels.
    #[error("{origin}: structure \"{name}\" is empty after {operation}")]
    EmptyStructure {
        /// File (or logical source) that asked for the operation.
        origin: String,
        /// Name of the structure that came out empty.
        name: String,
        /// The operation, with its parameters.
        operation: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A patient or image file that exists but cannot be trusted: truncated, wrong header,
    /// inconsistent with its manifest.
    #[error("{}: corrupt or unsupported file: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Two volumes that must share a grid do not.
    #[error("grid mismatch: {what}")]
    GridMismatch {
        /// Which volumes and how they differ.
        what: String,
    },
}

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(
        origin: impl Into<String>,
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            origin: origin.into(),
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Corrupt`] for `path`.
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Reads a TOML file into `T`, turning every failure into an error that names the file.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_toml(&text, path)
}

/// Parses TOML text that came from `path` (used in messages only).
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &std::path::Path) -> Result<T> {
    toml::from_str(text).map_err(|e| Error::Toml {
        file: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}
