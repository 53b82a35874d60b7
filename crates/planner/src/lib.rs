//! The planning loop: optimize, report, advise, guard, apply, until the protocol's termination
//! criteria hold, then normalize.
//!
//! This crate will hold the loop (generic over `Tps` and `LlmAdvisor`), the prompts built from
//! a protocol file, the guard that validates every adjustment, and the transcripts that make a
//! plan auditable and replayable.
