//! The error type of the TPS API, shared by the crates that build patients and plans on it:
//! every variant names where the bad input came from, and [`Error::is_temporary`] says whether
//! trying again may help (what a client of a remote TPS needs to decide on a retry).

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a TPS, a patient model or a protocol.
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
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error, shown in the message (and so not also the error's source,
        /// which a chain would print twice).
        cause: std::io::Error,
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
    /// A metric string (in a protocol or a reference file) that does not parse.
    #[error("{origin}: metric \"{text}\" is not understood: {reason}")]
    BadMetric {
        /// File and field the metric came from.
        origin: String,
        /// The text as written.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A TPS backend (a remote system, a gateway, a process) failed; `temporary` says whether
    /// the same call may succeed later (a timeout, an overloaded server) or never will (a
    /// refused request, an expired case).
    #[error("{backend}: {message} [{code}{}]", if *temporary { ", temporary" } else { "" })]
    Backend {
        /// Which backend, e.g. its endpoint.
        backend: String,
        /// A short machine-readable code, e.g. `timeout`, `unknown-case`.
        code: String,
        /// What happened.
        message: String,
        /// Whether a retry may succeed.
        temporary: bool,
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
            cause: source,
        }
    }

    /// An [`Error::Backend`].
    pub fn backend(
        backend: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
        temporary: bool,
    ) -> Self {
        Self::Backend {
            backend: backend.into(),
            code: code.into(),
            message: message.into(),
            temporary,
        }
    }

    /// Whether the same call may succeed if tried again: a backend's temporary failure, or an
    /// I/O error that timed out or was interrupted. Bad input, corrupt files and permanent
    /// backend failures are not.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Backend { temporary, .. } => *temporary,
            Error::Io { cause, .. } => matches!(
                cause.kind(),
                std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Printed as a chain (`anyhow`'s `{:#}`, what the binary shows), an I/O error names its
    /// cause once: the message holds it, so it is not also the error's source.
    #[test]
    fn an_io_error_names_its_cause_once_in_the_chain() {
        use std::error::Error as _;
        let e = Error::io(
            "/x/y.nrrd",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        let mut text = e.to_string();
        let mut next = e.source();
        while let Some(c) = next {
            text += &format!(": {c}");
            next = c.source();
        }
        assert_eq!(text, "/x/y.nrrd: gone");
    }

    #[test]
    fn temporary_and_permanent_errors() {
        let t = Error::backend("http://127.0.0.1:8000", "busy", "case is optimizing", true);
        assert!(t.is_temporary());
        assert!(t.to_string().contains("[busy, temporary]"), "{t}");
        let p = Error::backend(
            "http://127.0.0.1:8000",
            "unknown-case",
            "case 7 expired",
            false,
        );
        assert!(!p.is_temporary());
        assert!(!Error::invalid("p.toml", "x", "1", "bad").is_temporary());
        let timed_out = Error::io("f", std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(timed_out.is_temporary());
        let missing = Error::io("f", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!missing.is_temporary());
    }
}
