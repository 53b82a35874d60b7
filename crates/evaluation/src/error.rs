//! The evaluation crate's error type.

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything evaluation can refuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A metric string that does not parse, with where it came from.
    #[error("{origin}: metric \"{text}\" is not understood: {reason}")]
    BadMetric {
        /// File and field the metric came from.
        origin: String,
        /// The text as written.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A sample that a statistic cannot use.
    #[error("{what}: {reason}")]
    BadSample {
        /// Which statistic and sample.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Dose and structures that do not fit together.
    #[error("{0}")]
    Mismatch(String),
    /// An error from the patient model (unknown structure, files).
    #[error(transparent)]
    Core(#[from] tps_core::Error),
    /// A table or figure could not be written.
    #[error("{path}: {reason}")]
    Output {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}
