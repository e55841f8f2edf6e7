//! The conformance cases. Each takes an empty store and panics with a message on the first
//! deviation; the doc comment of each is the rule it checks.

/// Fails unless `$result` is an `Err` matching `$pattern`; the rest is a `format!` context.
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

mod accounts;
mod concurrency;
mod infra;
mod servers;

pub use accounts::*;
pub use concurrency::*;
pub use infra::*;
pub use servers::*;
