//! The conformance cases. Each takes an empty store and panics with a message on the first
//! deviation; the doc comment of each is the rule it checks.

mod access;
mod accounts;
mod concurrency;
mod infra;
mod refs;
mod servers;

pub use access::*;
pub use accounts::*;
pub use concurrency::*;
pub use infra::*;
pub use refs::*;
pub use servers::*;
