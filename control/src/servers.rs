//! Creating servers: placement, the allocation and the server row in one transaction, the
//! spec from the egg, delivery to the node.

use crate::{ControlError, ControlPlane};
use chrono::Utc;
use nexus_core::ids::{AllocationId, EggId, LocationId, NodeId, ServerId, UserId};
use nexus_core::lifecycle::ServerState;
use nexus_core::model::{Allocation, Egg, Server, ServerLimits};
use nexus_core::placement::{Placement, PlacementRequest, fits};
use nexus_core::runtime::PortBinding;
use nexus_core::store::{Store, StoreError};
use nexus_core::transport::{NodeCommand, NodeResponse, PowerAction, ServerSpec, TransportError};
use nexus_eggs::spec::{Editor, ServerSettings, server_spec};
use std::collections::{BTreeMap, BTreeSet};

/// Placement decisions one create may make: a node whose last port went to a concurrent
/// create is left for the next best.
const PLACEMENT_ATTEMPTS: usize = 3;

/// What a caller asks for when creating a server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewServer {
    /// Display name.
    pub name: String,
    /// Owner.
    pub owner: UserId,
    /// The egg it runs.
    pub egg: EggId,
    /// Limits (placement books memory, disk and CPU from them).
    pub limits: ServerLimits,
    /// Variable values (environment name → value); missing ones take the egg's defaults.
    pub values: BTreeMap<String, String>,
    /// Image; `None` for the egg's default.
    pub image: Option<String>,
    /// Startup template; `None` for the egg's default.
    pub startup: Option<String>,
    /// Only nodes in this location.
    pub location: Option<LocationId>,
    /// Only nodes carrying all these tags.
    pub required_tags: BTreeSet<String>,
    /// This node instead of placement's choice (admins).
    pub node: Option<NodeId>,
    /// This free allocation as the primary one (admins); its node is the server's node.
    pub allocation: Option<AllocationId>,
    /// Start the server once its install succeeds (Pterodactyl's `start_on_completion`).
    pub start_on_completion: bool,
    /// The primary allocation's port must lie in one of these ranges (Pterodactyl's
    /// `deploy.port_range`); empty for any port.
    pub port_ranges: Vec<std::ops::RangeInclusive<u16>>,
    /// Who gives the values: users may set only the variables the egg lets them edit.
    pub editor: Editor,
    /// How many backups it may keep (`None`: no limit), see
    /// [`Server::backup_limit`](nexus_core::model::Server::backup_limit); by default
    /// [`DEFAULT_BACKUP_LIMIT`](crate::backups::DEFAULT_BACKUP_LIMIT).
    pub backup_limit: Option<u32>,
    /// Its own template layers, applied after the egg's (see [`crate::templates`]).
    pub templates: Vec<nexus_core::template::LayerRef>,
}

impl NewServer {
    /// A server `name` of `owner` running `egg` within `limits`, with the egg's defaults.
    pub fn new(name: impl Into<String>, owner: UserId, egg: EggId, limits: ServerLimits) -> Self {
        Self {
            name: name.into(),
            owner,
            egg,
            limits,
            values: BTreeMap::new(),
            image: None,
            startup: None,
            location: None,
            required_tags: BTreeSet::new(),
            node: None,
            allocation: None,
            port_ranges: Vec::new(),
            start_on_completion: false,
            editor: Editor::User,
            backup_limit: Some(crate::backups::DEFAULT_BACKUP_LIMIT),
            templates: Vec::new(),
        }
    }
}

/// Whether the node has the new server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// The node took it and is installing it.
    Sent,
    /// The node could not be reached or refused; the server is stored as `Requested`.
    Pending(String),
}

/// A created server.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CreatedServer {
    /// The server as stored (`Requested`).
    pub server: Server,
    /// What the node runs.
    pub spec: ServerSpec,
    /// Whether the node has it.
    pub delivery: Delivery,
}

impl ControlPlane {
    /// A new server id whose first 8 characters (its Pterodactyl `identifier`) no numbered
    /// server shares, so identifiers name one server (as Pterodactyl regenerates a colliding
    /// UUID). The new server is numbered at once, claiming its identifier.
    async fn fresh_server_id(&self) -> Result<ServerId, ControlError> {
        use nexus_core::model::{RecordKind, RecordRef, RefLookup};
        for _ in 0..8 {
            let id = ServerId::new();
            let key = id.to_string();
            let short = RecordRef::short_of(&key);
            if self.store.find_record_refs(RecordKind::Server, RefLookup::Short(&short)).await?.is_empty() {
                self.store.record_refs(RecordKind::Server, &[key]).await?;
                return Ok(id);
            }
        }
        // 2^32 identifiers: eight collisions in a row do not happen by chance.
        Err(ControlError::Busy("no free server identifier; try again".into()))
    }

    /// Forgets the record ref of a server that was not created after all (or is gone).
    pub(crate) async fn forget_server_ref(&self, id: ServerId) {
        use nexus_core::model::RecordKind;
        if let Err(e) = self.store.forget_record_refs(RecordKind::Server, &[id.to_string()]).await {
            tracing::warn!(server = %id, error = %e, "forgetting a server's record ref");
        }
    }

    /// Whether `server`, just installed, was created to start then (answered once).
    /// A failed install or a deletion forgets the wish (a later reinstall does not start it).
    pub fn take_start_after_install(&self, server: &Server) -> bool {
        match server.state {
            ServerState::Installed => self.forget_start_after_install(server.id),
            ServerState::InstallFailed | ServerState::Destroying | ServerState::Destroyed => {
                self.forget_start_after_install(server.id);
                false
            }
            _ => false,
        }
    }

    /// Forgets that `server` was to start after its install; whether it was.
    pub(crate) fn forget_start_after_install(&self, server: ServerId) -> bool {
        self.start_after_install.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&server)
    }

    /// Allocation `id`, if it is free and (when `node` is given) on `node`.
    async fn free_allocation(&self, id: AllocationId, node: Option<NodeId>) -> Result<Allocation, ControlError> {
        let allocation = match self.store.get_allocation(id).await {
            Ok(allocation) => allocation,
            Err(StoreError::NotFound { .. }) => {
                return Err(StoreError::InvalidReference(format!("allocation `{id}` does not exist")).into());
            }
            Err(e) => return Err(e.into()),
        };
        if allocation.server.is_some() {
            return Err(StoreError::AllocationUnavailable { allocation: id, reason: "it is assigned".into() }.into());
        }
        if node.is_some_and(|node| node != allocation.node) {
            return Err(
                StoreError::AllocationUnavailable { allocation: id, reason: "it is on another node".into() }.into()
            );
        }
        Ok(allocation)
    }

    /// Creates a server: every value checked by its variable's rules, a node chosen by
    /// placement (or `new.node`), a free allocation claimed in the same transaction as the
    /// server row (a failure leaves neither), then the spec sent to the node to install.
    pub async fn create_server(&self, new: NewServer) -> Result<CreatedServer, ControlError> {
        crate::backups::check_backup_limit(new.backup_limit)?;
        crate::templates::check_layers(&new.templates)?;
        let egg = match self.store.get_egg(new.egg).await {
            Ok(egg) => egg,
            Err(StoreError::NotFound { .. }) => return Err(ControlError::UnknownEgg(new.egg)),
            Err(e) => return Err(e.into()),
        };
        if new.editor == Editor::User {
            // As in Pterodactyl's client area: users choose among the egg's images and keep
            // its startup command.
            if new.startup.is_some() {
                return Err(ControlError::Forbidden("only admins may change the startup command".into()));
            }
            if let Some(image) = &new.image
                && !egg.images.iter().any(|i| &i.image == image)
            {
                return Err(ControlError::Forbidden("users choose among the egg's images".into()));
            }
        }
        let mut request = PlacementRequest::new(new.limits.memory_mb, new.limits.disk_mb, new.limits.cpu_percent);
        request.location = new.location;
        request.required_tags = new.required_tags.clone();
        let chosen = match new.allocation {
            Some(id) => Some(self.free_allocation(id, new.node).await?),
            None => None,
        };
        // `chose`: placement chose the node, so its room is checked and a full one is left for
        // the next best. A node without a free port is left only where any free port will do:
        // with port ranges, a node can have free ports and none in the ranges, and placement
        // would choose it again.
        let chose = chosen.is_none() && new.node.is_none();
        let placed = chose && new.port_ranges.is_empty();
        let mut attempts = 0;
        let (server, spec) = loop {
            let node = match (&chosen, new.node) {
                (Some(allocation), _) => allocation.node,
                (None, Some(node)) => node,
                (None, None) => self.placement().decide(&request)?.node,
            };
            match self.insert_server(&new, &egg, node, chosen.clone(), chose).await {
                // Placement chose a node whose last port or room another create took
                // meanwhile (this process's, or another panel's, whose bookings this placement
                // does not see): it learns the node's usage from the store and chooses again.
                Err(refused @ (ControlError::NoFreeAllocation(full) | ControlError::NodeFull(full)))
                    if attempts + 1 < PLACEMENT_ATTEMPTS
                        && (placed || (chose && matches!(refused, ControlError::NodeFull(_)))) =>
                {
                    attempts += 1;
                    // The node as stored too: another process may have lowered its capacity.
                    let fresh = async {
                        let record = self.store.get_node(full).await?;
                        self.placement().upsert_node(&record);
                        self.refresh_usage(full).await
                    };
                    if let Err(e) = fresh.await {
                        tracing::warn!(node = %full, error = %e, "re-reading a full node");
                        return Err(refused);
                    }
                }
                other => break other?,
            }
        };
        let node = server.node;
        if new.start_on_completion {
            self.start_after_install.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(server.id);
        }
        // Placement books what the store now holds, and the next decision sees it.
        if let Err(e) = self.placement().commit(node, &request.resources()) {
            tracing::warn!(%node, error = %e, "placement does not know the server's node");
        }
        let id = server.id;
        let delivery =
            match self.send(node, NodeCommand::CreateServer { spec: Box::new(spec.clone()), install: true }).await {
                Ok(()) => Delivery::Sent,
                Err(e) => {
                    tracing::warn!(server = %id, %node, error = %e, "the node does not have the new server yet");
                    Delivery::Pending(e.to_string())
                }
            };
        Ok(CreatedServer { server, spec, delivery })
    }

    /// Stores `new` on `node` in one transaction: the node locked, its allocation (`chosen`,
    /// or a free one of the node's) claimed and its row written; nothing is left when it fails.
    /// With `check_room` (placement chose the node), the node's room is checked by the store's
    /// count first ([`NodeFull`](ControlError::NodeFull)): placement only sees this process's
    /// bookings, and two panel processes must not both book a node's last room.
    async fn insert_server(
        &self,
        new: &NewServer,
        egg: &Egg,
        node: NodeId,
        chosen: Option<Allocation>,
        check_room: bool,
    ) -> Result<(Server, ServerSpec), ControlError> {
        let record = self.store.get_node(node).await?;
        let location = self.location_short_of(&record).await?;

        let id = self.fresh_server_id().await?;
        let tx = match self.store.begin().await {
            Ok(tx) => tx,
            Err(e) => {
                self.forget_server_ref(id).await;
                return Err(e.into());
            }
        };
        let built = async {
            // Every create locks its node, so a room check never misses a create on the same
            // node that has not committed yet (a pinned one included).
            let usage = tx.lock_node_usage(node).await?;
            if check_room {
                let limits = record.overallocation.limits(&record.capacity);
                if !(fits(usage.memory_mb, new.limits.memory_mb, limits.memory_mb)
                    && fits(usage.disk_mb, new.limits.disk_mb, limits.disk_mb)
                    && fits(usage.cpu_percent, new.limits.cpu_percent, limits.cpu_percent))
                {
                    return Err(ControlError::NodeFull(node));
                }
            }
            let allocation = match chosen {
                Some(allocation) => allocation,
                None if new.port_ranges.is_empty() => {
                    tx.claim_free_allocation(node, id).await?.ok_or(ControlError::NoFreeAllocation(node))?
                }
                None => tx
                    .list_allocations(node)
                    .await?
                    .into_iter()
                    .find(|a| a.server.is_none() && new.port_ranges.iter().any(|r| r.contains(&a.port)))
                    .ok_or(ControlError::NoFreeAllocation(node))?,
            };
            let mut settings = ServerSettings::new(id);
            settings.limits = new.limits;
            settings.image = new.image.clone();
            settings.startup = new.startup.clone();
            settings.location = location;
            settings.editor = new.editor;
            settings.templates.clone_from(&new.templates);
            let spec =
                server_spec(egg, &settings, &[PortBinding { ip: allocation.ip, port: allocation.port }], &new.values)?;
            let server = Server {
                id,
                name: new.name.clone(),
                owner: new.owner,
                node,
                egg: egg.id,
                image: spec.image.clone(),
                startup: spec.startup.clone(),
                environment: spec.environment.clone(),
                limits: new.limits,
                primary_allocation: allocation.id,
                extra_allocations: Vec::new(),
                state: ServerState::Requested,
                version: 0,
                created_at: Utc::now(),
                suspended: false,
                deletion_requested_at: None,
                backup_limit: new.backup_limit,
                templates: new.templates.clone(),
            };
            tx.create_server(&server).await?;
            Ok::<_, ControlError>((server, spec))
        }
        .await;
        match built {
            Ok(built) => match tx.commit().await {
                Ok(()) => Ok(built),
                Err(e) => {
                    self.forget_server_ref(id).await;
                    Err(e.into())
                }
            },
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback after a failed create");
                }
                self.forget_server_ref(id).await;
                Err(e)
            }
        }
    }

    /// Asks the server's node to `action` it (start, stop, restart, kill); the state changes
    /// arrive as events. A suspended server cannot start; one being deleted takes no action.
    pub async fn power(&self, id: ServerId, action: PowerAction) -> Result<(), ControlError> {
        let server = self.server(id).await?;
        refuse_if_deleting(&server)?;
        let starts = matches!(action, PowerAction::Start | PowerAction::Restart);
        if starts && (server.suspended || server.state == ServerState::Suspended) {
            return Err(ControlError::Suspended(id));
        }
        self.send(server.node, NodeCommand::Power { server: id, action }).await
    }

    /// Writes `line` to the server's console (through its node).
    pub async fn send_command(&self, id: ServerId, line: &str) -> Result<(), ControlError> {
        let server = self.server(id).await?;
        refuse_if_deleting(&server)?;
        self.send(server.node, NodeCommand::SendCommand { server: id, line: line.to_owned() }).await
    }

    /// Removes the server from its node; the node's `Destroyed` event then removes it from the
    /// store and frees its allocations ([`ingest`](ControlPlane::ingest)). A server the node
    /// never received (still `Requested`, and not in the node's list) sends no event: it is
    /// removed here. When the node cannot be reached, the server is marked for deletion
    /// ([`Delivery::Pending`]) and the deletion finishes when the node returns
    /// ([`reconcile`](ControlPlane::reconcile)).
    pub async fn destroy_server(&self, id: ServerId) -> Result<Delivery, ControlError> {
        let server = self.server(id).await?;
        self.forget_start_after_install(id);
        match self.send(server.node, NodeCommand::DestroyServer { server: id }).await {
            Ok(()) => {}
            Err(ControlError::Node { source: TransportError::Unreachable(_, reason), .. }) => {
                self.mark_for_deletion(id).await?;
                tracing::info!(server = %id, node = %server.node, %reason, "marked for deletion until its node returns");
                return Ok(Delivery::Pending(reason));
            }
            Err(e) => return Err(e),
        }
        if server.state == ServerState::Requested && !self.node_servers(server.node).await?.contains(&id) {
            self.remove_destroyed(&server).await?;
        }
        Ok(Delivery::Sent)
    }

    /// Records that `id` is to be deleted (once; retried on a concurrent change).
    async fn mark_for_deletion(&self, id: ServerId) -> Result<(), ControlError> {
        self.update_server_with(id, |server| {
            if server.deletion_requested_at.is_none() {
                server.deletion_requested_at = Some(Utc::now());
            }
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Applies `change` to the stored server and writes it, re-reading and retrying once when
    /// another writer (an event, another panel) changed it in between.
    pub(crate) async fn update_server_with(
        &self,
        id: ServerId,
        change: impl Fn(&mut Server) -> Result<(), ControlError>,
    ) -> Result<Server, ControlError> {
        for _ in 0..3 {
            let mut server = self.server(id).await?;
            change(&mut server)?;
            match self.store.update_server(&server).await {
                Ok(updated) => return Ok(updated),
                Err(StoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ControlError::Busy(format!("server {id} kept changing")))
    }

    /// A server by id.
    pub async fn server(&self, id: ServerId) -> Result<Server, ControlError> {
        server_of(self.store.as_ref(), id).await
    }

    /// Sends `command` to `node` within [`node_timeout`](crate::ControlConfig::node_timeout).
    pub(crate) async fn send(&self, node: NodeId, command: NodeCommand) -> Result<(), ControlError> {
        self.request(node, command).await.map(drop)
    }

    /// [`send`](Self::send), returning the node's answer.
    pub(crate) async fn request(&self, node: NodeId, command: NodeCommand) -> Result<NodeResponse, ControlError> {
        match tokio::time::timeout(self.config.node_timeout, self.nodes.send(node, command)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(source)) => Err(ControlError::Node { node, source }),
            Err(_) => Err(ControlError::Node {
                node,
                source: nexus_core::transport::TransportError::Unreachable(
                    format!("node {node}"),
                    format!("no answer within {:?}", self.config.node_timeout),
                ),
            }),
        }
    }
}

/// A server marked for deletion takes no further actions.
pub(crate) fn refuse_if_deleting(server: &Server) -> Result<(), ControlError> {
    match server.deletion_requested_at {
        Some(_) => Err(ControlError::Deleting(server.id)),
        None => Ok(()),
    }
}

pub(crate) async fn server_of(store: &dyn Store, id: ServerId) -> Result<Server, ControlError> {
    match store.get_server(id).await {
        Ok(server) => Ok(server),
        Err(StoreError::NotFound { .. }) => Err(ControlError::UnknownServer(id)),
        Err(e) => Err(e.into()),
    }
}
