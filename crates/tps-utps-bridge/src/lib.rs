//! The uTPS bridge: the planning loop drives a TPS in another process or on another machine
//! through protocol v1 (docs/tps-protocol.md), exactly as it drives the native one.
//!
//! - [`client::RemoteTps`] implements `tps_api::Tps` over the protocol, with per-call
//!   timeouts, retries of temporary failures and a total time limit;
//! - [`gateway`] serves any `Tps` (through a [`gateway::CaseOpener`]) over the protocol;
//! - [`config::TpsConfig`] reads `configs/tps/*.toml`, which choose the TPS;
//! - [`wire`] holds the request and answer bodies both sides share;
//! - [`testing`] is a scripted HTTP server for the fault tests of any HTTP client here
//!   (std only; the binary's fault suite uses it too).
//!
//! It builds on `tps-api` alone among the project's crates, never on the native engine
//! (checked by `tests/architecture.rs`).

pub mod client;
pub mod config;
pub mod gateway;
pub mod testing;
pub mod wire;

pub use client::RemoteTps;
pub use config::{RemoteConfig, TpsConfig};
pub use tps_api::Tps;
