use crate::ids::NestId;
use serde::{Deserialize, Serialize};

/// A named group of eggs (Pterodactyl's nest: "Minecraft", "Source Engine").
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nest {
    /// Identifier.
    pub id: NestId,
    /// Unique name.
    pub name: String,
    /// What its eggs have in common.
    pub description: String,
}
