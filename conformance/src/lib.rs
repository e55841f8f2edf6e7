//! # nexus-conformance
//!
//! The behaviour every implementation of a Nexus trait must show, as executable cases that
//! backend crates (ours and yours) run unchanged, plus the real-game scenarios and the start
//! benchmark the runtime crates share.
//!
//! | module | for | cases |
//! |---|---|---|
//! | [`store`] | every [`Store`](nexus_core::store::Store) (PostgreSQL, MySQL, SQLite, memory, yours) | [`store::CASES`], one `#[test]` each with [`store_conformance_tests!`] |
//! | [`runtime`] | every [`Runtime`](nexus_core::runtime::Runtime) on a real container engine (Docker, Podman, yours) | [`runtime::CASES`], one `#[test]` each with [`runtime_conformance_tests!`] |
//! | [`teeworlds`], [`minetest`] | runtimes: a real game server from its real egg, started, reached on its port, stopped the egg's way | |
//! | [`bench`](mod@bench) | runtimes: create + start through the runtime against the engine's own `run -d` | |
//!
//! Add it as a dev-dependency:
//!
//! ```toml
//! [dev-dependencies]
//! nexus-conformance = "0.1"
//! ```
//!
//! # A custom store
//!
//! A store passes when every case passes on a fresh, empty store. The argument of the macro
//! is anything callable as `make()` whose future yields `Option<S>` (`None`: the service is
//! unavailable; see [`require_service`]). A complete test file for a store that wraps
//! [`MemoryStore`](nexus_core::memory::MemoryStore):
//!
//! ```ignore
//! // tests/conformance.rs of the crate that defines `TracingStore`
//! use my_store::TracingStore;
//! use nexus_core::memory::MemoryStore;
//!
//! mod conformance {
//!     nexus_conformance::store_conformance_tests!(|| async {
//!         Some(super::TracingStore::new(super::MemoryStore::new()))
//!     });
//! }
//! ```
//!
//! `examples/src/bin/custom_store.rs` in the Nexus repository is such a store, run against
//! the suite by the project's test command.
//!
//! # A custom runtime
//!
//! See [`runtime`]: besides the runtime, the test supplies an [`runtime::EngineProbe`] that
//! asks the engine directly for the three things the trait cannot show.
//!
//! Tests that need an external service (a database server, a container engine) call
//! [`require_service`] so that a missing service fails the run under `CI=true` instead of
//! skipping.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code compiled as a library: a failed expectation must fail the case"
)]

/// Fails unless `$result` is an `Err` matching `$pattern`; the rest is a `format!` context.
/// Defined before the suites so both see it (macro textual scope).
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?, $($context:tt)+) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "{}: expected Err({}), got {:?}",
                format_args!($($context)+),
                stringify!($pattern),
                other
            ),
        }
    };
}

pub mod bench;
pub mod data;
mod game;
pub mod minetest;
pub mod runtime;
pub mod s3;
pub mod store;
pub mod teeworlds;

/// Decides what a test does when the service it needs is unreachable.
///
/// Returns `true` when `probe` succeeded. When it failed: with `CI=true` in the environment this
/// panics (a skipped test proves nothing in CI); otherwise it prints why the test is skipped
/// and returns `false`, so a developer without the service can still run the rest.
pub fn require_service(service: &str, probe: Result<(), String>) -> bool {
    match probe {
        Ok(()) => true,
        Err(reason) if ci() => panic!("{service} is required under CI=true but unavailable: {reason}"),
        Err(reason) => {
            eprintln!("skipping: {service} unavailable ({reason}); set it up with scripts/test.sh");
            false
        }
    }
}

/// The runtime each conformance case runs on: multi-threaded, so cases see real concurrency
/// whatever runtime the calling test harness uses.
#[allow(clippy::expect_used, reason = "test support: without a runtime no case can run")]
fn case_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("building a tokio runtime for a conformance case")
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Panics unless `promtool check metrics` (Debian's `prometheus` package, installed by
/// `scripts/services/promtool.sh`) accepts `metrics`, a Prometheus text exposition, lint
/// included. A missing `promtool` fails under `CI=true` ([`require_service`]).
pub fn promtool_accepts(metrics: &str) {
    use std::io::Write as _;
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            require_service("promtool", Err(e.to_string()));
            return;
        }
    };
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\n{metrics}");
}
