//! # nexus-wire
//!
//! The panel↔node protocol of Nexus, so that a panel (ours, or one a hosting company writes)
//! depends on this crate and not on the daemon, and a daemon on it and not on the panel.
//!
//! | module | what |
//! |---|---|
//! | [`api`] | panel → node: the node API's paths, request and answer bodies; the spec itself is [`ServerSpec`] |
//! | [`backups`] | panel → node: the backup routes' bodies (create, restore, download) |
//! | [`events`] | node → panel: heartbeats and lifecycle events posted to [`events::EVENTS_PATH`] |
//! | [`token`] | the node token and the short-lived browser tokens the panel mints for one server's console and files |
//! | [`error`] | the JSON body of every error the node API answers, with its stable codes |
//!
//! The JSON of a [`ServerSpec`] (what `POST /api/servers` takes), of a [`NodeMessage`] and of
//! a [`ConsoleEvent`] is their serde form in `nexus-core`; the README's daemon section shows
//! each with an example, and the tests of this crate pin them.
//!
//! [`ServerSpec`]: nexus_core::transport::ServerSpec
//! [`NodeMessage`]: nexus_core::transport::NodeMessage
//! [`ConsoleEvent`]: nexus_core::console::ConsoleEvent

pub mod api;
pub mod backups;
pub mod error;
pub mod events;
pub mod token;

pub use error::{ErrorBody, ErrorDetail};
pub use events::{EVENTS_PATH, EventEnvelope};
pub use token::{NodeToken, TokenClaims, TokenError, TokenSigner};
