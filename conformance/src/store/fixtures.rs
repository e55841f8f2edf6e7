//! Builders that keep conformance cases short.
//!
//! Every builder returns a complete, valid record that is not yet stored. Timestamps are whole
//! seconds after [`BASE_TIME`], so every backend (microsecond `timestamptz`, `DATETIME(6)`,
//! SQLite text) round-trips them exactly; the few cases that check precision add whole
//! microseconds, the finest precision a store must keep. Names get a random tag where a case
//! may seed the same kind of record twice, so uniqueness rules never collide by accident.

use chrono::{DateTime, TimeZone, Utc};
use nexus_core::ids::*;
use nexus_core::lifecycle::{LifecycleEvent, ServerState, Trigger, next_state};
use nexus_core::model::*;
use nexus_core::store::{Repositories, StoreResult};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

/// 2024-01-01T00:00:00Z, the origin of [`ts`].
pub const BASE_TIME: i64 = 1_704_067_200;

/// `seconds` after [`BASE_TIME`].
pub fn ts(seconds: i64) -> DateTime<Utc> {
    match Utc.timestamp_opt(BASE_TIME + seconds, 0) {
        chrono::LocalResult::Single(at) => at,
        _ => panic!("fixture timestamp {seconds} out of range"),
    }
}

/// A short random tag for unique names (`3f9a1c0b`).
pub fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// A user `username` with e-mail `<username>@example.com`.
pub fn user(username: &str) -> User {
    User {
        id: UserId::new(),
        username: username.to_owned(),
        email: format!("{username}@example.com"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: Role::User,
        created_at: ts(0),
    }
}

/// A location with short code `short`.
pub fn location(short: &str) -> Location {
    Location { id: LocationId::new(), short: short.to_owned(), long: format!("Data centre {short}") }
}

/// An online node `name` without location, heartbeat or tags.
pub fn node(name: &str) -> Node {
    Node {
        id: NodeId::new(),
        name: name.to_owned(),
        fqdn: format!("{name}.example.com"),
        daemon_port: 8080,
        token_hash: "sha256:0123456789abcdef".into(),
        location: None,
        tags: BTreeSet::from(["ssd".to_owned()]),
        capacity: NodeCapacity { memory_mb: 16_384, disk_mb: 200_000, cpu_percent: 800 },
        overallocation: Overallocation::default(),
        maintenance: false,
        status: NodeStatus::Online,
        last_heartbeat: None,
    }
}

/// An unassigned allocation `ip:port` on `node`.
pub fn allocation(node: NodeId, ip: [u8; 4], port: u16) -> Allocation {
    Allocation { id: AllocationId::new(), node, ip: IpAddr::V4(Ipv4Addr::from(ip)), alias: None, port, server: None }
}

/// `count` unassigned allocations on `node`: `10.0.0.1`, ports 30000, 30001, ... (so they are
/// also in claim order).
pub fn allocations(node: NodeId, count: usize) -> Vec<Allocation> {
    (0..count)
        .map(|i| {
            let port = u16::try_from(30_000 + i).unwrap_or_else(|_| panic!("too many fixture allocations: {count}"));
            allocation(node, [10, 0, 0, 1], port)
        })
        .collect()
}

/// An egg `name` that uses every field, so that round-trips exercise the whole shape.
pub fn egg(name: &str) -> Egg {
    Egg {
        nest: None,
        id: EggId::new(),
        source_uuid: Some(uuid::Uuid::new_v4().to_string()),
        source_format: EggSourceFormat::PtdlV2,
        name: name.to_owned(),
        author: "eggs@example.com".into(),
        description: format!("{name} server"),
        update_url: Some("https://example.com/egg.json".into()),
        icon: None,
        exported_at: Some("2024-01-01T00:00:00+00:00".into()),
        tags: vec!["minecraft".into(), "java".into()],
        features: vec!["eula".into(), "java_version".into()],
        images: vec![
            EggImage { label: "Java 21".into(), image: "ghcr.io/pterodactyl/yolks:java_21".into() },
            EggImage { label: "Java 17".into(), image: "ghcr.io/pterodactyl/yolks:java_17".into() },
        ],
        file_denylist: vec!["*.jar.bak".into()],
        templates: vec!["base@1".parse().expect("a layer reference")],
        startup_commands: vec![EggStartup {
            label: "Default".into(),
            command: "java -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}".into(),
        }],
        config_files: vec![ConfigFile {
            path: "server.properties".into(),
            parser: ConfigParser::Properties,
            find: vec![
                ("server-port".into(), FindValue::Text("{{server.build.default.port}}".into())),
                ("max-players".into(), FindValue::Scalar(serde_json::json!(20))),
                ("online-mode".into(), FindValue::Match(vec![("true".into(), "false".into())])),
            ],
        }],
        done: vec![DoneMatcher::Substring(")! For help, type ".into())],
        stop: StopMethod::Command("stop".into()),
        logs: serde_json::json!({}),
        install: EggScript {
            script: "#!/bin/bash\ncurl -o server.jar https://example.com/server.jar\n".into(),
            container: "ghcr.io/pterodactyl/installers:alpine".into(),
            entrypoint: "ash".into(),
        },
        variables: vec![EggVariable {
            name: "Server Jar File".into(),
            description: "The jar to run.".into(),
            env_variable: "SERVER_JARFILE".into(),
            default_value: "server.jar".into(),
            user_viewable: true,
            user_editable: true,
            rules: vec!["required".into(), "regex:/^([\\w\\d._-]+)(\\.jar)$/".into()],
            field_type: Some("text".into()),
            sort: Some(1),
        }],
    }
}

/// A `Requested`, unsuspended server, version 0, created at `ts(0)`, using `allocations` (the
/// first is the primary; there must be at least one).
pub fn server(owner: &User, node: &Node, egg: &Egg, allocations: &[AllocationId]) -> Server {
    let Some((&primary, extra)) = allocations.split_first() else {
        panic!("a fixture server needs at least one allocation");
    };
    Server {
        id: ServerId::new(),
        name: format!("server-{}", tag()),
        owner: owner.id,
        node: node.id,
        egg: egg.id,
        image: "ghcr.io/pterodactyl/yolks:java_21".into(),
        startup: "java -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}".into(),
        environment: BTreeMap::from([("SERVER_JARFILE".to_owned(), "server.jar".to_owned())]),
        limits: ServerLimits { memory_mb: 1024, swap_mb: 0, cpu_percent: 100, disk_mb: 4096, io_weight: 500, pids: 0 },
        primary_allocation: primary,
        extra_allocations: extra.to_vec(),
        state: ServerState::Requested,
        version: 0,
        created_at: ts(0),
        suspended: false,
        deletion_requested_at: None,
        backup_limit: None,
        templates: Vec::new(),
    }
}

/// An enabled schedule `name` on `server`, due at `next_run_at`.
pub fn schedule(server: ServerId, name: &str, next_run_at: Option<DateTime<Utc>>) -> Schedule {
    Schedule {
        id: ScheduleId::new(),
        server,
        name: name.to_owned(),
        cron: "0 4 * * *".into(),
        timezone: "Europe/Berlin".into(),
        enabled: true,
        only_when_online: false,
        tasks: vec![
            Task {
                id: TaskId::new(),
                action: TaskAction::Command("say restarting".into()),
                offset_seconds: 0,
                continue_on_failure: true,
            },
            Task {
                id: TaskId::new(),
                action: TaskAction::Power("restart".into()),
                offset_seconds: 30,
                continue_on_failure: false,
            },
        ],
        last_run_at: None,
        next_run_at,
    }
}

/// A client API key of `user` with lookup prefix `prefix`, created at `created_at`.
pub fn api_key(user: UserId, prefix: &str, created_at: DateTime<Utc>) -> ApiKey {
    ApiKey {
        id: ApiKeyId::new(),
        user,
        prefix: prefix.to_owned(),
        secret_hash: format!("sha256:{prefix}"),
        memo: format!("key {prefix}"),
        scope: ApiKeyScope::Client,
        created_at,
        last_used_at: None,
        expires_at: Some(ts(86_400 * 365)),
        allowed_ips: vec!["203.0.113.0/24".to_owned(), "2001:db8::1".to_owned()],
    }
}

/// A pending, unlocked backup `name` of `server`, created at `created_at`.
pub fn backup(server: ServerId, name: &str, created_at: DateTime<Utc>) -> Backup {
    Backup {
        id: BackupId::new(),
        server,
        name: name.to_owned(),
        ignored: vec!["*.log".into()],
        state: BackupState::Pending,
        bytes: None,
        checksum: None,
        locked: false,
        created_at,
        completed_at: None,
    }
}

/// `user`'s grant on `server` with `permissions`, first added at `created_at`.
pub fn subuser(server: ServerId, user: UserId, permissions: &[&str], created_at: DateTime<Utc>) -> Subuser {
    Subuser { server, user, permissions: permissions.iter().map(|p| (*p).to_owned()).collect(), created_at }
}

/// A confirmed second factor of `user` with two recovery codes left, last used at step
/// `last_step`.
pub fn totp(user: UserId, last_step: Option<u64>) -> UserTotp {
    UserTotp {
        user,
        secret: "JBSWY3DPEHPK3PXP".into(),
        recovery_hashes: vec!["sha256:recovery-1".into(), "sha256:recovery-2".into()],
        enabled_at: Some(ts(60)),
        last_step,
    }
}

/// An audit event `action` about `subject` at `at`.
pub fn audit(subject: AuditSubject, action: &str, at: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::new(),
        actor: None,
        action: action.to_owned(),
        subject,
        metadata: serde_json::json!({ "action": action, "nested": { "list": [1, 2, 3] } }),
        ip: Some("203.0.113.7".into()),
        at,
    }
}

/// The lifecycle event `trigger` leads to from `from`, at `at`; panics if the table forbids it.
pub fn event(server: ServerId, from: ServerState, trigger: Trigger, at: DateTime<Utc>) -> LifecycleEvent {
    let Some(to) = next_state(from, trigger) else {
        panic!("fixture event {from:?} --{trigger:?}--> is not in the transition table");
    };
    LifecycleEvent { server, from, to, trigger, at }
}

/// A stored user, node with allocations, and egg: what a server needs.
#[derive(Clone, Debug)]
pub struct World {
    /// Owner of the servers.
    pub user: User,
    /// The node, online.
    pub node: Node,
    /// The node's allocations in claim order (ports 30000, 30001, ...).
    pub allocations: Vec<Allocation>,
    /// The egg.
    pub egg: Egg,
}

impl World {
    /// Stores a fresh user, node with `allocations` allocations, and egg, with random names.
    pub async fn seed<S: Repositories + ?Sized>(store: &S, allocations: usize) -> Self {
        Self::try_seed(store, allocations).await.unwrap_or_else(|err| panic!("seeding a world failed: {err}"))
    }

    async fn try_seed<S: Repositories + ?Sized>(store: &S, count: usize) -> StoreResult<Self> {
        let tag = tag();
        let user = user(&format!("owner-{tag}"));
        let node = node(&format!("node-{tag}"));
        let allocations = allocations(node.id, count);
        let egg = egg(&format!("egg-{tag}"));
        store.create_user(&user).await?;
        store.create_node(&node).await?;
        store.create_allocations(&allocations).await?;
        store.create_egg(&egg).await?;
        Ok(Self { user, node, allocations, egg })
    }

    /// The id of allocation `index`.
    pub fn allocation(&self, index: usize) -> AllocationId {
        match self.allocations.get(index) {
            Some(a) => a.id,
            None => panic!("world has {} allocations, no index {index}", self.allocations.len()),
        }
    }

    /// An unsaved server of this world using the allocations at `indices`.
    pub fn server(&self, indices: &[usize]) -> Server {
        let ids: Vec<AllocationId> = indices.iter().map(|&i| self.allocation(i)).collect();
        server(&self.user, &self.node, &self.egg, &ids)
    }

    /// Stores [`server`](Self::server) and returns it.
    pub async fn create_server<S: Repositories + ?Sized>(&self, store: &S, indices: &[usize]) -> Server {
        let server = self.server(indices);
        if let Err(err) = store.create_server(&server).await {
            panic!("creating a fixture server failed: {err}");
        }
        server
    }
}
