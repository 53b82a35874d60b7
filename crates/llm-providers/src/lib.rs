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
//!   [`gemini::GeminiBackend`] (`generateContent`) and [`ollama::OllamaBackend`] (`/api/chat`),
//!   with one repair request for an unusable reply and a record of every
//!   call.
//!
//! Timeouts, retries with seeded backoff and rate limits are layers ([`layers`]) that wrap any
//! advisor. A provider TOML file ([`config::ProviderConfig`]) names the backend and its
//! layers; [`config::build`] turns it into a `Box<dyn LlmAdvisor>`. API keys are
//! [`secret::Secret`]s, never printed. This crate and the TPS bridge are the only ones that
//! speak HTTP.

pub mod advice;
pub mod chat;
pub mod config;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod error;
pub mod gemini;
pub mod layers;
#[cfg(feature = "embedded")]
pub mod llama;
pub mod ollama;
pub mod openai;
pub mod prompt;
pub mod record;
pub mod reply;
pub mod rule_based;
pub mod secret;
pub mod steps;

pub use advice::{
    Advice, AdvisorContext, CallRecord, Capabilities, FewShotExample, HistoryEntry, LlmAdvisor,
    ObjectiveAction, OutputMode,
};
pub use config::{ProviderConfig, build};
pub use error::AdvisorError;
pub use layers::CallPolicy;
pub use secret::Secret;
