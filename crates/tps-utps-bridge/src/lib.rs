//! `Tps` over a remote protocol.
//!
//! This crate will hold the client that implements the `Tps` trait of `tps-core` by talking to
//! an external treatment planning system through a documented protocol, and the gateway that
//! serves any `Tps` over that protocol, so that the planner loop can drive a commercial TPS
//! exactly as it drives the native one.
