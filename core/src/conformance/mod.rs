//! Conformance suites: the behaviour every implementation of a core trait must show, as
//! executable cases that backend crates run unchanged.
//!
//! - [`store`]: every [`Store`](crate::store::Store) (PostgreSQL, MySQL, SQLite, memory).
//! - [`runtime`]: every [`Runtime`](crate::runtime::Runtime) (Docker, Podman) on a real engine.
//!
//! Available in this crate's tests and, for backend crates, behind the `conformance` feature.
//! Tests that need an external service (a database server, a container engine) call
//! [`require_service`] so that a missing service fails the run under CI instead of skipping.

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

pub mod runtime;
pub mod store;

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
