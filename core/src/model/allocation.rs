use crate::ids::{AllocationId, NodeId, ServerId};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One `ip:port` on a node that a server can bind. Unique per node.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Identifier.
    pub id: AllocationId,
    /// The node that owns the address.
    pub node: NodeId,
    /// Address to bind on the node.
    pub ip: IpAddr,
    /// Optional public alias shown to players (`play.example.com`).
    pub alias: Option<String>,
    /// Port (published for TCP and UDP).
    pub port: u16,
    /// The server using it, if any.
    pub server: Option<ServerId>,
}
