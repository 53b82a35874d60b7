//! The virtual physicist's voice: the `LlmAdvisor` trait and its backends.
//!
//! This crate will hold the `LlmAdvisor` trait (given an iteration report and its history,
//! propose new dose goals) and its backends: Ollama, OpenAI-compatible chat completions, Gemini,
//! an offline embedded model, and a rule-based physicist, chosen by a provider TOML file.
//! It is the only crate that speaks HTTP.
