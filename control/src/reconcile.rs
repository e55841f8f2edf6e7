//! A node that comes back: its view and the panel's are brought together, from the server
//! list its heartbeat carries.
//!
//! * A server the node runs that the panel does not have (deleted while the node was away)
//!   is destroyed on the node, each one confirmed absent from the store first; never at a
//!   node's first contact (a re-registered node, a restored database): those are reported
//!   in [`Reconciled::unknown`] and left alone.
//! * A server the panel has but the node never received (`Requested`: the create did not
//!   reach it) is sent again, rebuilt from what the store holds, once the node's own fresh
//!   list (not the heartbeat's, which may be older than a create in flight) confirms it does
//!   not have it: a create is never sent twice to a node that has the server.
//! * A server deleted while the node was away (marked with `deletion_requested_at`) is
//!   destroyed on the node (its `Destroyed` event removes the row) or, when the node's fresh
//!   list lacks it, removed at once. A server suspended or unsuspended meanwhile gets its spec
//!   again.
//! * A server whose state on the node differs from the store's (events lost when the node or
//!   the panel was killed) takes the node's state.
//! * Nothing is ever started here: a server the node runs keeps running, one it does not run
//!   stays down until someone starts it, so no server is started twice.

use crate::{ControlError, ControlPlane};
use nexus_core::ids::{NodeId, ServerId};
use nexus_core::lifecycle::ServerState;
use nexus_core::model::Server;
use nexus_core::runtime::PortBinding;
use nexus_core::store::{Page, ServerFilter, StoreError};
use nexus_core::transport::{NodeCommand, NodeResponse, ServerSpec, ServerStatus, TransportError};
use nexus_eggs::spec::{Editor, ServerSettings, server_spec};
use std::collections::BTreeSet;

/// Most servers of one node read at once (a page of the store).
const PAGE: u64 = 1000;

/// What reconciling one node did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconciled {
    /// Servers destroyed on the node because the panel no longer has them.
    pub destroyed: Vec<nexus_core::ids::ServerId>,
    /// Servers sent to the node again because it never got them.
    pub resent: Vec<nexus_core::ids::ServerId>,
    /// Servers the node runs that the panel does not have, left alone (first contact).
    pub unknown: Vec<nexus_core::ids::ServerId>,
    /// Servers whose spec was sent again (suspended or unsuspended while the node was away).
    pub updated: Vec<nexus_core::ids::ServerId>,
    /// Servers whose state the panel took from the node's report (events were lost).
    pub adopted: Vec<nexus_core::ids::ServerId>,
    /// What could not be done now, and why (tried again at the node's next return).
    pub failed: Vec<String>,
}

impl ControlPlane {
    /// Brings `node`'s servers in line with the panel, given the servers the node reports
    /// (its heartbeat's list); `first_contact` when the node never reported before. See the
    /// module docs.
    pub async fn reconcile(
        &self,
        node: NodeId,
        on_node: &[ServerStatus],
        first_contact: bool,
    ) -> Result<Reconciled, ControlError> {
        let mut known = Vec::new();
        let filter = ServerFilter { node: Some(node), ..ServerFilter::default() };
        loop {
            let page = self.store.list_servers(&filter, Page { offset: known.len() as u64, limit: PAGE }).await?;
            let last = (page.len() as u64) < PAGE;
            known.extend(page);
            if last {
                break;
            }
        }
        let known_ids: BTreeSet<_> = known.iter().map(|s| s.id).collect();
        let reported: BTreeSet<_> = on_node.iter().map(|s| s.server).collect();
        let mut done = Reconciled::default();
        for status in on_node.iter().filter(|s| !known_ids.contains(&s.server)) {
            // Pages can shift under a concurrent delete: ask for this one server.
            match self.store.get_server(status.server).await {
                Err(StoreError::NotFound { .. }) => {}
                Ok(_) => continue,
                Err(e) => return Err(e.into()),
            }
            if first_contact {
                done.unknown.push(status.server);
                continue;
            }
            match self.send(node, NodeCommand::DestroyServer { server: status.server }).await {
                Ok(()) => done.destroyed.push(status.server),
                Err(e) => done.failed.push(format!("destroy {}: {e}", status.server)),
            }
        }
        // Servers the node may lack (never delivered, or deleted while it was away): its own
        // fresh list decides, never the heartbeat's, which may predate a create in flight.
        let unsure: Vec<&Server> = known
            .iter()
            .filter(|s| !reported.contains(&s.id))
            .filter(|s| s.state == ServerState::Requested || s.deletion_requested_at.is_some())
            .collect();
        let has_now = if unsure.is_empty() { BTreeSet::new() } else { self.node_servers(node).await? };
        for server in unsure.into_iter().filter(|s| !has_now.contains(&s.id)) {
            if server.deletion_requested_at.is_some() {
                // Deleted while the node was away, and the node does not have it: done.
                match self.remove_destroyed(server).await {
                    Ok(()) => done.destroyed.push(server.id),
                    Err(e) => done.failed.push(format!("remove {}: {e}", server.id)),
                }
                continue;
            }
            let sent = async {
                let spec = self.spec_of(server).await?;
                self.send(node, NodeCommand::CreateServer { spec: Box::new(spec), install: true }).await
            };
            match sent.await {
                Ok(()) => done.resent.push(server.id),
                Err(e) => done.failed.push(format!("create {}: {e}", server.id)),
            }
        }
        let states: std::collections::BTreeMap<_, _> = on_node.iter().map(|s| (s.server, s.state)).collect();
        for server in &known {
            let Some(state) = states.get(&server.id) else { continue };
            if *state == ServerState::Requested && server.deletion_requested_at.is_none() {
                // The node has it but never began its install (killed in between): begin it.
                match self.send(node, NodeCommand::Install { server: server.id }).await {
                    Ok(()) => done.resent.push(server.id),
                    Err(e) => done.failed.push(format!("install {}: {e}", server.id)),
                }
                continue;
            }
            if server.deletion_requested_at.is_some() {
                // Its Destroyed event removes the row.
                match self.send(node, NodeCommand::DestroyServer { server: server.id }).await {
                    Ok(()) => done.destroyed.push(server.id),
                    Err(e) => done.failed.push(format!("destroy {}: {e}", server.id)),
                }
            } else if *state != server.state && server.state != ServerState::Destroyed {
                // Events were lost (a node or this panel was killed): what the node reports
                // is what is. Later events then apply from it.
                let adopted = self
                    .update_server_with(server.id, |stored| {
                        stored.state = *state;
                        Ok(())
                    })
                    .await;
                match adopted {
                    Ok(_) => {
                        // An install whose end was missed does not start the server (nor a
                        // later reinstall).
                        self.forget_start_after_install(server.id);
                        tracing::info!(server = %server.id, from = ?server.state, to = ?state, "state taken from the node");
                        done.adopted.push(server.id);
                    }
                    Err(e) => done.failed.push(format!("adopt the state of {}: {e}", server.id)),
                }
            } else if server.suspended != (*state == ServerState::Suspended) && *state != ServerState::Requested {
                // Suspended or unsuspended while the node was away: it gets the spec again.
                match self.resend_spec(server).await {
                    Ok(()) => done.updated.push(server.id),
                    Err(e) => done.failed.push(format!("update {}: {e}", server.id)),
                }
            }
        }
        if done != Reconciled::default() {
            tracing::info!(%node, ?done, "node reconciled");
        }
        Ok(done)
    }

    /// The servers `node` has, asked now.
    pub(crate) async fn node_servers(&self, node: NodeId) -> Result<BTreeSet<ServerId>, ControlError> {
        Ok(self.node_server_states(node).await?.into_keys().collect())
    }

    /// The servers `node` has and their states, asked now.
    pub(crate) async fn node_server_states(
        &self,
        node: NodeId,
    ) -> Result<std::collections::BTreeMap<ServerId, ServerState>, ControlError> {
        match self.request(node, NodeCommand::ListServers).await? {
            NodeResponse::Servers(list) => Ok(list.into_iter().map(|s| (s.server, s.state)).collect()),
            other => Err(ControlError::Node {
                node,
                source: TransportError::Protocol(format!("expected a server list, got {other:?}")),
            }),
        }
    }

    /// Sends the node `server`'s current spec (no install): how changes to suspension,
    /// limits, startup or variables reach a node.
    pub(crate) async fn resend_spec(&self, server: &Server) -> Result<(), ControlError> {
        let spec = self.spec_of(server).await?;
        self.send(server.node, NodeCommand::CreateServer { spec: Box::new(spec), install: false }).await
    }

    /// The spec of a stored server, rebuilt from its egg, its stored values (set by whoever
    /// was allowed to when they were set), its allocations and its node's location.
    pub async fn spec_of(&self, server: &Server) -> Result<ServerSpec, ControlError> {
        let egg = match self.store.get_egg(server.egg).await {
            Ok(egg) => egg,
            Err(StoreError::NotFound { .. }) => return Err(ControlError::UnknownEgg(server.egg)),
            Err(e) => return Err(e.into()),
        };
        let mut ports = Vec::new();
        for id in server.allocations() {
            let allocation = self.store.get_allocation(id).await?;
            ports.push(PortBinding { ip: allocation.ip, port: allocation.port });
        }
        let location = self.location_short(server.node).await?;
        let mut settings = ServerSettings::new(server.id);
        settings.limits = server.limits;
        settings.image = Some(server.image.clone());
        settings.startup = Some(server.startup.clone());
        settings.location = location;
        settings.suspended = server.suspended;
        settings.templates.clone_from(&server.templates);
        settings.editor = Editor::Admin;
        Ok(server_spec(&egg, &settings, &ports, &server.environment)?)
    }
}

impl ControlPlane {
    /// Sends every server still `Requested` to its node if the node's own list lacks it: what
    /// a panel does at start, for creates a crash (or `kill -9`) interrupted between storing
    /// the server and telling the node. Returns the servers sent; nodes that cannot be
    /// reached are skipped (their return reconciles them).
    pub async fn resume_requested(&self) -> Result<Vec<ServerId>, ControlError> {
        let mut requested: std::collections::BTreeMap<NodeId, Vec<Server>> = std::collections::BTreeMap::new();
        let mut offset = 0;
        loop {
            let page = self.store.list_servers(&ServerFilter::default(), Page { offset, limit: PAGE }).await?;
            offset += page.len() as u64;
            let last = (page.len() as u64) < PAGE;
            for server in page {
                if server.state == ServerState::Requested && server.deletion_requested_at.is_none() {
                    requested.entry(server.node).or_default().push(server);
                }
            }
            if last {
                break;
            }
        }
        let mut sent = Vec::new();
        for (node, servers) in requested {
            let has = match self.node_server_states(node).await {
                Ok(has) => has,
                Err(e) => {
                    tracing::info!(%node, error = %e, "node away; its pending creates wait for its return");
                    continue;
                }
            };
            for server in &servers {
                let command = match has.get(&server.id) {
                    None => NodeCommand::CreateServer { spec: Box::new(self.spec_of(server).await?), install: true },
                    // Delivered, but the node stopped before its install began.
                    Some(ServerState::Requested) => NodeCommand::Install { server: server.id },
                    Some(_) => continue,
                };
                match self.send(node, command).await {
                    Ok(()) => sent.push(server.id),
                    Err(e) => tracing::warn!(server = %server.id, error = %e, "pending create not delivered"),
                }
            }
        }
        if !sent.is_empty() {
            tracing::info!(count = sent.len(), "pending creates delivered");
        }
        Ok(sent)
    }
}
