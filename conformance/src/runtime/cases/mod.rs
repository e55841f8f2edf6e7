//! The conformance cases. Each takes a [`Ctx`](super::Ctx) and panics with a message on the
//! first deviation; the doc comment of each is the rule it checks. Every container runs
//! [`BUSYBOX_IMAGE`](super::BUSYBOX_IMAGE) with a `/bin/sh -c` script.

mod console;
mod containers;
mod images;
mod install;
mod isolation;
mod listing;
mod stats;
mod stopping;

pub use console::*;
pub use containers::*;
pub use images::*;
pub use install::*;
pub use isolation::*;
pub use listing::*;
pub use stats::*;
pub use stopping::*;
