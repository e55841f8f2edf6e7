//! # nexus-wings
//!
//! The reference node daemon of Nexus ("wings"): the data plane that runs game servers on one
//! host. Today it holds the confined file manager; the node agent's HTTP/WebSocket face is
//! built on top of it.
//!
//! - [`files`]: every file operation a panel user can ask for (list, read, write, rename,
//!   copy, delete, mkdir, chmod, compress, decompress), confined to one server's data
//!   directory, with an egg denylist, archive-bomb limits and an incrementally tracked quota.

pub mod files;
