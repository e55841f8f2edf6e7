//! In-memory implementations of the core traits, for tests and for embedding the panel and
//! node agents in one process.
//!
//! * [`MemoryStore`]: a [`Store`](crate::store::Store) that passes the store conformance suite
//!   (`nexus-conformance`).
//! * [`InProcessTransport`]: a [`NodeTransport`](crate::transport::NodeTransport) and
//!   [`PanelTransport`](crate::transport::PanelTransport) without a network.

mod store;
mod transport;

pub use store::MemoryStore;
pub use transport::{InProcessTransport, PanelInbox};
