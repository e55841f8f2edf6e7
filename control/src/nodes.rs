//! Nodes: registration with a token shown once, token checks, allocations.

use crate::ports::parse_ports;
use crate::{ControlError, ControlPlane};
use nexus_core::ids::{AllocationId, LocationId, NodeId};
use nexus_core::model::{Allocation, Node, NodeCapacity, NodeStatus, Overallocation};
use nexus_core::placement::Placement;
use nexus_core::store::{Page, ServerFilter, StoreError};
use nexus_wire::NodeToken;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// What an admin gives to register a node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewNode {
    /// Unique name.
    pub name: String,
    /// Host name the panel and browsers reach the daemon at.
    pub fqdn: String,
    /// The daemon's API port.
    pub daemon_port: u16,
    /// Location, if any.
    pub location: Option<LocationId>,
    /// Tags placement can require.
    pub tags: BTreeSet<String>,
    /// What the node may host.
    pub capacity: NodeCapacity,
}

impl NewNode {
    /// A node `name` at `fqdn:daemon_port` with `capacity`, no location or tags.
    pub fn new(name: impl Into<String>, fqdn: impl Into<String>, daemon_port: u16, capacity: NodeCapacity) -> Self {
        Self { name: name.into(), fqdn: fqdn.into(), daemon_port, location: None, tags: BTreeSet::new(), capacity }
    }
}

/// A registered node and its token. The token is only ever here: the store keeps its hash.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Registration {
    /// The node as stored.
    pub node: Node,
    /// The node token, to put in the daemon's configuration.
    pub token: String,
}

impl ControlPlane {
    /// Registers a node: stored `Offline` until its first heartbeat, with a fresh token whose
    /// hash is all the store keeps.
    pub async fn register_node(&self, new: NewNode) -> Result<Registration, ControlError> {
        let (name, fqdn) = check_node_address(&new.name, &new.fqdn)?;
        let id = NodeId::new();
        let (token, node_token) = match &self.config.node_secret {
            Some(secret) => NodeToken::derive(&secret.0, id),
            None => NodeToken::generate(),
        };
        let node = Node {
            id,
            name: name.to_owned(),
            fqdn: fqdn.to_owned(),
            daemon_port: new.daemon_port,
            token_hash: node_token.stored(),
            location: new.location,
            tags: new.tags,
            capacity: new.capacity,
            overallocation: Overallocation::default(),
            maintenance: false,
            status: NodeStatus::Offline,
            last_heartbeat: None,
        };
        self.store.create_node(&node).await?;
        self.placement().upsert_node(&node);
        Ok(Registration { node, token })
    }

    /// Stores an admin's changes to a node (name, address, port, location, capacity,
    /// overallocation, tags, maintenance), checked as at registration, onto the node as
    /// stored now (its status and heartbeat are the heartbeats', not the caller's copy), and
    /// lets placement see them at once. Answers the node as stored.
    pub async fn update_node(&self, changed: &Node) -> Result<Node, ControlError> {
        let (name, fqdn) = check_node_address(&changed.name, &changed.fqdn)?;
        let mut node = self.store.get_node(changed.id).await?;
        node.name = name.to_owned();
        node.fqdn = fqdn.to_owned();
        node.daemon_port = changed.daemon_port;
        node.location = changed.location;
        node.tags = changed.tags.clone();
        node.capacity = changed.capacity;
        node.overallocation = changed.overallocation;
        node.maintenance = changed.maintenance;
        self.store.update_node(&node).await?;
        self.placement().upsert_node(&node);
        Ok(node)
    }

    /// Removes a node and its allocations. A node with servers is refused (`InUse`) unless
    /// `forget_servers`: then, for a node that is gone for good (offline), its servers' rows
    /// go too, their allocations freed, without a word to the node; an online node is
    /// refused even then (delete its servers through it first, so nothing keeps running
    /// unaccounted). Answers how many servers were forgotten.
    pub async fn delete_node(&self, node: NodeId, forget_servers: bool) -> Result<usize, ControlError> {
        let record = self.store.get_node(node).await?;
        let filter = ServerFilter { node: Some(node), ..ServerFilter::default() };
        let servers = self.store.list_servers(&filter, Page::all()).await?;
        if !servers.is_empty() {
            if !forget_servers {
                return Err(StoreError::InUse {
                    entity: "node",
                    id: node.to_string(),
                    reason: format!(
                        "{} server(s) are placed on it; delete them, or forget them with the node",
                        servers.len()
                    ),
                }
                .into());
            }
            if record.status == NodeStatus::Online {
                return Err(ControlError::Invalid {
                    field: "forget_servers",
                    reason: "the node is online: delete its servers through it first".into(),
                });
            }
            for server in &servers {
                match self.store.delete_server(server.id).await {
                    Ok(()) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                tracing::warn!(server = %server.id, node = %node, "server forgotten with its node");
            }
        }
        self.store.delete_node(node).await?;
        self.node_tokens.forget(node);
        self.refresh_placement().await?;
        Ok(servers.len())
    }

    /// Where `node`'s API is and its token, derived from the panel's
    /// [`node_secret`](crate::ControlConfig::node_secret) and checked against the stored hash
    /// (a node registered with a random token, or under another secret, is refused).
    pub async fn node_endpoint(&self, node: NodeId) -> Result<(String, String), ControlError> {
        self.endpoint_of(&self.store.get_node(node).await?)
    }

    /// [`node_endpoint`](Self::node_endpoint) of a node record already read (a panel
    /// re-routing every node each interval reads them with one `list_nodes`).
    pub fn endpoint_of(&self, record: &Node) -> Result<(String, String), ControlError> {
        let Some(secret) = &self.config.node_secret else {
            return Err(ControlError::Invalid { field: "node_secret", reason: "no node secret configured".into() });
        };
        let node = record.id;
        let (token, _) = NodeToken::derive(&secret.0, node);
        if !NodeToken::from_stored(&record.token_hash).is_some_and(|stored| stored.matches(&token)) {
            return Err(ControlError::Invalid {
                field: "node_secret",
                reason: format!("node {node}'s token was not derived from this secret; register it again"),
            });
        }
        let url = format!("{}://{}:{}", self.config.node_scheme, url_host(&record.fqdn), record.daemon_port);
        Ok((url, token))
    }

    /// Whether `presented` is `node`'s token (constant time); false for an unknown node. The
    /// hash is read from the store once per [`TOKEN_TTL`](crate::node_tokens::TOKEN_TTL) and
    /// node (see [`node_tokens`](crate::node_tokens)).
    pub async fn node_token_matches(&self, node: NodeId, presented: &str) -> Result<bool, ControlError> {
        if let Some(matches) = self.node_tokens.check(node, presented) {
            return Ok(matches);
        }
        let record = match self.store.get_node(node).await {
            Ok(record) => record,
            Err(StoreError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let Some(token) = NodeToken::from_stored(&record.token_hash) else { return Ok(false) };
        let matches = token.matches(presented);
        self.node_tokens.remember(node, token);
        Ok(matches)
    }

    /// Adds allocations on `node` for every port of `ports` (`25565-25665`, see
    /// [`parse_ports`]) on `ip`; ports already allocated on that address are an error and
    /// nothing is added.
    pub async fn add_allocations(
        &self,
        node: NodeId,
        ip: IpAddr,
        ports: &str,
    ) -> Result<Vec<Allocation>, ControlError> {
        let ports = parse_ports(ports)?;
        self.store.get_node(node).await?;
        let allocations: Vec<Allocation> = ports
            .into_iter()
            .map(|port| Allocation { id: AllocationId::new(), node, ip, alias: None, port, server: None })
            .collect();
        self.store.create_allocations(&allocations).await?;
        self.refresh_usage(node).await?;
        Ok(allocations)
    }

    /// The short code of `node`'s location (`P_SERVER_LOCATION`), if it has one.
    pub(crate) async fn location_short(&self, node: NodeId) -> Result<Option<String>, ControlError> {
        self.location_short_of(&self.store.get_node(node).await?).await
    }

    /// [`location_short`](Self::location_short) of a node record already read.
    pub(crate) async fn location_short_of(&self, node: &Node) -> Result<Option<String>, ControlError> {
        let Some(location) = node.location else { return Ok(None) };
        Ok(self.store.list_locations().await?.into_iter().find(|l| l.id == location).map(|l| l.short))
    }

    /// Placement's booked usage of `node`, re-read from the store.
    pub(crate) async fn refresh_usage(&self, node: NodeId) -> Result<(), ControlError> {
        let usage = self.store.lock_node_usage(node).await?;
        self.placement().set_usage(&usage)?;
        Ok(())
    }
}

/// A node's address as the host of a URL: an IPv6 literal in brackets, anything else as it is.
pub fn url_host(fqdn: &str) -> std::borrow::Cow<'_, str> {
    match fqdn.parse::<std::net::Ipv6Addr>() {
        Ok(_) => std::borrow::Cow::Owned(format!("[{fqdn}]")),
        Err(_) => std::borrow::Cow::Borrowed(fqdn),
    }
}

/// A node's name and address as stored (trimmed), or why not: a name of 1 to 100 bytes on one
/// line, a host name or IP address (nothing a URL could read as a path, port or user).
fn check_node_address<'a>(name: &'a str, fqdn: &'a str) -> Result<(&'a str, &'a str), ControlError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ControlError::Invalid { field: "name", reason: "1 to 100 bytes, one line".into() });
    }
    let fqdn = fqdn.trim();
    let host_ok = fqdn.parse::<IpAddr>().is_ok()
        || (!fqdn.is_empty()
            && fqdn.len() <= 253
            && fqdn.split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }));
    if !host_ok {
        return Err(ControlError::Invalid { field: "fqdn", reason: "a host name or an IP address".into() });
    }
    Ok((name, fqdn))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv6_hosts_are_bracketed_in_urls() {
        assert_eq!(super::url_host("2001:db8::1"), "[2001:db8::1]");
        assert_eq!(super::url_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(super::url_host("node_1.example.com"), "node_1.example.com");
    }
}
