//! The virtual physicist's voice: the [`LlmAdvisor`] trait and its backends.
//!
//! An advisor reads the current iteration report of a plan (per objective: goal, current dose,
//! constraint target value and its ideal range), the history of earlier iterations and optional
//! few-shot examples, and proposes new dose goals. Backends:
//!
//! - [`rule_based::RuleBasedAdvisor`]: the study's strategy written as rules (no LLM),
//!   deterministic; the reproducible baseline and the teacher for few-shot examples;
//! - [`chat::ChatAdvisor`] over a chat backend: [`openai::OpenAiBackend`] (OpenAI-compatible
//!   chat completions: DashScope/Qwen, vLLM, llama.cpp server, OpenAI),
//!   [`gemini::GeminiBackend`] (`generateContent`) and [`ollama::OllamaBackend`] (`/api/chat`
//!   through `ollama-rs`), with timeouts, retries with backoff, one repair request for an
//!   unusable reply, and a record of every call.
//!
//! A provider TOML file ([`config::ProviderConfig`]) names the backend; [`config::build`]
//! turns it into a `Box<dyn LlmAdvisor>`. This is the only crate that speaks HTTP.

pub mod advice;
pub mod chat;
pub mod config;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod error;
pub mod gemini;
pub mod ollama;
pub mod openai;
pub mod prompt;
pub mod reply;
pub mod rule_based;
pub mod steps;

pub use advice::{
    Advice, AdvisorContext, CallRecord, Capabilities, FewShotExample, HistoryEntry, LlmAdvisor,
    ObjectiveAction, OutputMode,
};
pub use config::{ProviderConfig, build};
pub use error::AdvisorError;
