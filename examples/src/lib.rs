//! # nexus-examples
//!
//! Runnable programs that embed Nexus the way a hosting company would. Each is a binary in
//! `src/bin/`; `tests/` runs every one of them and runs the conformance suites against the
//! custom backends, so the examples cannot rot.
//!
//! | binary | what it shows |
//! |---|---|
//! | `orchestrator` | a whole control loop in one program: SQLite store, `nexus-control` (placement, events), an in-process node on Docker, an egg imported from a file, a server created, installed, started (console printed until the done line) and stopped |
//! | `custom_runtime` | a `Runtime` of your own: an image allow-list with an audit trail around any other runtime, passing the runtime conformance suite |
//! | `custom_store` | a `Store` of your own: a wrapper that traces every call around `MemoryStore`, passing the store conformance suite |
//! | `egg_tool` | the egg engine alone: validate values and render the startup of an egg file |
//!
//! The custom backends live in this library so that the binaries and the tests share them.

pub mod audited_runtime;
pub mod tracing_store;
