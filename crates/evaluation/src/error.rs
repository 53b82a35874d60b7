//! The evaluation crate's error type.

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything evaluation can refuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sample that a statistic cannot use.
    #[error("{what}: {reason}")]
    BadSample {
        /// Which statistic and sample.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Input out of range or not usable (gamma criteria, a dose that is not finite).
    #[error("{0}")]
    BadInput(String),
    /// Dose and structures that do not fit together.
    #[error("{0}")]
    Mismatch(String),
    /// An error of the patient model or a protocol (unknown structure, bad metric, files).
    #[error(transparent)]
    Tps(#[from] tps_api::Error),
    /// A table or figure could not be written.
    #[error("{path}: {reason}")]
    Output {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}
