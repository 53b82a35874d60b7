//! `Tps` over a remote protocol.
//!
//! This crate will hold the client that implements `tps_api::Tps` by talking to an external
//! treatment planning system through a documented protocol, and the gateway that serves any
//! `Tps` over that protocol, so that the planner loop can drive another TPS exactly as it
//! drives the native one. It depends on `tps-api` alone (checked by `tests/architecture.rs`),
//! and its client will pass `tps_api::conformance` like every `Tps`.

pub use tps_api::Tps;
