//! Errors of advisors and their backends.

/// Why an advisor gave no adjustment.
#[derive(Debug, thiserror::Error)]
pub enum AdvisorError {
    /// A provider file or setting that cannot be used.
    #[error("{origin}: {field} = {value}: {reason}")]
    Config {
        /// File (or logical source).
        origin: String,
        /// Field.
        field: String,
        /// The value as written.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The environment variable that should hold the API key is unset or empty.
    #[error(
        "{origin}: api-key-env names {var}, which is not set: export {var}=<your key> (the key is \
         never stored in the provider file)"
    )]
    MissingKey {
        /// Provider file.
        origin: String,
        /// Variable name.
        var: String,
    },
    /// The endpoint answered with an HTTP error: one retrying cannot fix (400, 401, 403,
    /// 404), or a temporary one (408, 429, 5xx) that the retry layer may try again.
    #[error("{provider} at {endpoint}: HTTP {status}: {message}")]
    Http {
        /// Provider name.
        provider: String,
        /// Endpoint called.
        endpoint: String,
        /// Status code.
        status: u16,
        /// The API's error message (or body).
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<std::time::Duration>,
        /// Every model call made for the advice (prompts, replies, errors), attempts included
        /// (boxed: the error stays small on the success path).
        calls: Box<Vec<crate::record::CallRecord>>,
    },
    /// No connection could be made (after the retries).
    #[error("{provider} at {endpoint}: unreachable: {message}")]
    Unreachable {
        /// Provider name.
        provider: String,
        /// Endpoint called.
        endpoint: String,
        /// The transport's message.
        message: String,
        /// Every model call made for the advice (prompts, replies, errors), attempts included
        /// (boxed: the error stays small on the success path).
        calls: Box<Vec<crate::record::CallRecord>>,
    },
    /// No reply within the timeout (after the retries).
    #[error("{provider} at {endpoint}: no reply within {seconds} s")]
    Timeout {
        /// Provider name.
        provider: String,
        /// Endpoint called.
        endpoint: String,
        /// Timeout per attempt, s.
        seconds: f64,
        /// Every model call made for the advice (prompts, replies, errors), attempts included
        /// (boxed: the error stays small on the success path).
        calls: Box<Vec<crate::record::CallRecord>>,
    },
    /// The model's reply could not be used even after a repair request; the raw text is kept.
    #[error("{provider}: the reply is not a usable adjustment ({reason}); raw reply: {raw:?}")]
    BadReply {
        /// Provider name.
        provider: String,
        /// What is wrong with it.
        reason: String,
        /// The reply as received.
        raw: String,
        /// Why each reply could not be used, first to last.
        causes: Vec<crate::record::ReplyCause>,
        /// Every model call made (prompts, replies, the repair request, attempts).
        calls: Vec<crate::record::CallRecord>,
    },
    /// The endpoint's answer did not have the API's shape.
    #[error("{provider} at {endpoint}: unexpected response: {message}")]
    Protocol {
        /// Provider name.
        provider: String,
        /// Endpoint called.
        endpoint: String,
        /// What was wrong.
        message: String,
        /// Every model call made for the advice (prompts, replies, errors), attempts included
        /// (boxed: the error stays small on the success path).
        calls: Box<Vec<crate::record::CallRecord>>,
    },
}

impl AdvisorError {
    /// The model calls made before the advice failed (none for a configuration error).
    pub fn calls(&self) -> &[crate::record::CallRecord] {
        match self {
            AdvisorError::Http { calls, .. }
            | AdvisorError::Unreachable { calls, .. }
            | AdvisorError::Timeout { calls, .. }
            | AdvisorError::Protocol { calls, .. } => calls,
            AdvisorError::BadReply { calls, .. } => calls,
            AdvisorError::Config { .. } | AdvisorError::MissingKey { .. } => &[],
        }
    }

    /// The same error with `earlier` calls put before its own (a retry layer gathering every
    /// attempt's).
    pub fn with_earlier_calls(mut self, mut earlier: Vec<crate::record::CallRecord>) -> Self {
        match &mut self {
            AdvisorError::Http { calls, .. }
            | AdvisorError::Unreachable { calls, .. }
            | AdvisorError::Timeout { calls, .. }
            | AdvisorError::Protocol { calls, .. } => {
                earlier.append(calls);
                **calls = earlier;
            }
            AdvisorError::BadReply { calls, .. } => {
                earlier.append(calls);
                *calls = earlier;
            }
            AdvisorError::Config { .. } | AdvisorError::MissingKey { .. } => {}
        }
        self
    }

    /// Whether the same advice may succeed if asked again: a rate limit, an overloaded or
    /// failing server (408, 429, 500, 502, 503, 504), no connection, or no reply in time.
    /// Configuration errors, refused requests and unusable replies are not.
    pub fn is_temporary(&self) -> bool {
        match self {
            AdvisorError::Http { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            AdvisorError::Unreachable { .. } | AdvisorError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// How long the server asked to wait before trying again, if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            AdvisorError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, AdvisorError>;
