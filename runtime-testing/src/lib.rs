//! # nexus-runtime-testing
//!
//! What the runtime crates' tests and benchmarks share beyond the conformance suite of
//! `nexus-core` (which cannot depend on `nexus-eggs`): the end-to-end scenario with a real
//! game server through its real egg, and the start benchmark against the engine's CLI. Each
//! is written once against the [`Runtime`](nexus_core::runtime::Runtime) trait; a runtime
//! crate's test or bench is a few lines that connect its runtime and call in.
//!
//! Not published: a dev-dependency of `nexus-runtime-docker` and `nexus-runtime-podman`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test and benchmark code: a failed expectation must fail the test loudly"
)]

pub mod bench;
mod game;
pub mod minetest;
pub mod teeworlds;
