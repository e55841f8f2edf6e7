//! What the API shows of stored records.

use chrono::{DateTime, Utc};
use nexus_core::ids::{AllocationId, ApiKeyId, EggId, LocationId, NestId, NodeId, ServerId, UserId};
use nexus_core::lifecycle::ServerState;
use nexus_core::model::{
    ApiKey, ApiKeyScope, Egg, EggImage, Node, NodeCapacity, NodeStatus, Overallocation, Role, Server, ServerLimits,
    User,
};
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Serialize, JsonSchema)]
pub(crate) struct UserView {
    id: UserId,
    username: String,
    email: String,
    role: Role,
    created_at: DateTime<Utc>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self { id: u.id, username: u.username.clone(), email: u.email.clone(), role: u.role, created_at: u.created_at }
    }
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct KeyView {
    id: ApiKeyId,
    identifier: String,
    kind: ApiKeyScope,
    memo: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    /// Addresses it is accepted from (anywhere when empty).
    allowed_ips: Vec<String>,
}

impl From<&ApiKey> for KeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id,
            identifier: k.prefix.clone(),
            kind: k.scope,
            memo: k.memo.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            allowed_ips: k.allowed_ips.clone(),
        }
    }
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct NodeView {
    id: NodeId,
    name: String,
    fqdn: String,
    daemon_port: u16,
    location: Option<LocationId>,
    tags: BTreeSet<String>,
    capacity: NodeCapacity,
    overallocation: Overallocation,
    maintenance: bool,
    status: NodeStatus,
    last_heartbeat: Option<DateTime<Utc>>,
}

impl From<&Node> for NodeView {
    fn from(n: &Node) -> Self {
        Self {
            id: n.id,
            name: n.name.clone(),
            fqdn: n.fqdn.clone(),
            daemon_port: n.daemon_port,
            location: n.location,
            tags: n.tags.clone(),
            capacity: n.capacity,
            overallocation: n.overallocation,
            maintenance: n.maintenance,
            status: n.status,
            last_heartbeat: n.last_heartbeat,
        }
    }
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct EggView {
    id: EggId,
    /// The nest it is grouped in.
    nest: Option<NestId>,
    name: String,
    author: String,
    description: String,
    images: Vec<EggImage>,
    startup: Option<String>,
    variables: Vec<VariableView>,
    /// Template layers its servers get after the install script (`name@version`).
    #[schemars(with = "Vec<String>")]
    templates: Vec<nexus_core::template::LayerRef>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct VariableView {
    name: String,
    description: String,
    env_variable: String,
    default_value: String,
    user_editable: bool,
    rules: Vec<String>,
}

impl EggView {
    /// The egg as `admin` or a user sees it: users see only viewable variables.
    pub(crate) fn of(e: &Egg, admin: bool) -> Self {
        Self {
            id: e.id,
            nest: e.nest,
            name: e.name.clone(),
            author: e.author.clone(),
            description: e.description.clone(),
            images: e.images.clone(),
            startup: e.startup_commands.first().map(|s| s.command.clone()),
            variables: e
                .variables
                .iter()
                .filter(|v| admin || v.user_viewable)
                .map(|v| VariableView {
                    name: v.name.clone(),
                    description: v.description.clone(),
                    env_variable: v.env_variable.clone(),
                    default_value: v.default_value.clone(),
                    user_editable: v.user_editable,
                    rules: v.rules.clone(),
                })
                .collect(),
            templates: e.templates.clone(),
        }
    }
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct ServerView {
    id: ServerId,
    name: String,
    owner: UserId,
    node: NodeId,
    egg: EggId,
    image: String,
    state: ServerState,
    limits: ServerLimits,
    primary_allocation: AllocationId,
    /// A suspended server cannot start.
    suspended: bool,
    /// Set while a deletion waits for the server's node.
    deletion_requested_at: Option<DateTime<Utc>>,
    /// How many backups it may keep (`null`: no limit).
    backup_limit: Option<u32>,
    /// Its own template layers, applied after its egg's (`name@version`).
    #[schemars(with = "Vec<String>")]
    templates: Vec<nexus_core::template::LayerRef>,
    created_at: DateTime<Utc>,
}

impl From<&Server> for ServerView {
    fn from(s: &Server) -> Self {
        Self {
            id: s.id,
            name: s.name.clone(),
            owner: s.owner,
            node: s.node,
            egg: s.egg,
            image: s.image.clone(),
            state: s.state,
            limits: s.limits,
            primary_allocation: s.primary_allocation,
            suspended: s.suspended,
            deletion_requested_at: s.deletion_requested_at,
            backup_limit: s.backup_limit,
            templates: s.templates.clone(),
            created_at: s.created_at,
        }
    }
}
