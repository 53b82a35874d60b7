//! What a model call leaves behind, shared by advice, errors and transcripts: the record of
//! each call and why a reply could not be used. Kept apart so that `advice`, `reply` and
//! `error` all use it without using each other in a circle.

use serde::{Deserialize, Serialize};

/// Record of one call to a model, for transcripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Provider name.
    pub provider: String,
    /// Model, as configured (what the provider file or command asked for).
    pub model: String,
    /// The model name the server answered with, when it differs from the configured one (a
    /// dated snapshot behind an alias, the file a local server loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// System prompt.
    pub system: String,
    /// Messages sent, as (role, text).
    pub messages: Vec<(String, String)>,
    /// Raw reply text (empty when the call failed).
    pub reply: String,
    /// Wall time of the call including retries, s.
    pub latency_s: f64,
    /// Prompt tokens, when the API reports them.
    pub tokens_in: Option<u64>,
    /// Prompt tokens the model did not process again because it kept its state over them
    /// from an earlier call (a cached prompt prefix), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_cached: Option<u64>,
    /// Reply tokens, when the API reports them.
    pub tokens_out: Option<u64>,
    /// HTTP attempts made.
    pub attempts: u32,
    /// Why the call or its reply failed, if it did.
    pub error: Option<String>,
}

/// Why a reply could not be used, by kind: what the planner counts (the study's
/// "hallucinations" are the id and goal kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplyCause {
    /// Not JSON, not an object, a field missing or of the wrong type, a malformed action.
    Malformed,
    /// An objective id the report does not have.
    UnknownId,
    /// The same objective twice.
    DuplicateId,
    /// A goal that is not a finite positive dose (NaN, zero, negative).
    NotFinitePositive,
    /// The server cut the reply at its token limit.
    Truncated,
}
