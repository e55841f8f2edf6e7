//! Changing servers after creation, on the in-memory store with a scripted node: deletion
//! while the node is away finishes when it returns; suspension (stored, sent, re-sent to a
//! node that was away, start refused); startup variables (rights and rules, nothing stored
//! on a refusal); build; rename; reinstall; subusers and what their grants allow.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use chrono::Utc;
use nexus_control::accounts::NewUser;
use nexus_control::ingest::Ingested;
use nexus_control::nodes::NewNode;
use nexus_control::servers::{Delivery, NewServer};
use nexus_control::subusers::ServerAccess;
use nexus_control::{ControlConfig, ControlError, ControlPlane};
use nexus_core::ids::{NodeId, ServerId};
use nexus_core::lifecycle::{LifecycleEvent, ServerState, Trigger};
use nexus_core::memory::{InProcessTransport, MemoryStore};
use nexus_core::model::{NodeCapacity, Permission, Role, Server, ServerLimits, User};
use nexus_core::store::{AllocationRepo, EggRepo, NodeRepo, Page, ServerRepo};
use nexus_core::store::{ServerFilter, Store, SubuserRepo};
use nexus_core::transport::{Heartbeat, NodeCommand, NodeHandler, NodeMessage, NodeResponse, PowerAction};
use nexus_core::transport::{ServerStatus, TransportError};
use nexus_eggs::spec::Editor;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A node that records commands and keeps a server list; `down` makes it unreachable.
#[derive(Default)]
struct Node {
    seen: Mutex<Vec<NodeCommand>>,
    servers: Mutex<Vec<ServerStatus>>,
    down: AtomicBool,
}

#[async_trait]
impl NodeHandler for Node {
    async fn handle(&self, command: NodeCommand) -> Result<NodeResponse, TransportError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(TransportError::Unreachable("node".into(), "down".into()));
        }
        self.seen.lock().unwrap().push(command.clone());
        let mut servers = self.servers.lock().unwrap();
        match command {
            NodeCommand::CreateServer { spec, install } if !servers.iter().any(|s| s.server == spec.id) => {
                let state = if install { ServerState::Installing } else { ServerState::Installed };
                servers.push(ServerStatus { server: spec.id, state });
            }
            NodeCommand::DestroyServer { server } => servers.retain(|s| s.server != server),
            NodeCommand::ListServers => return Ok(NodeResponse::Servers(servers.clone())),
            _ => {}
        }
        Ok(NodeResponse::Ok)
    }
}

impl Node {
    fn take(&self) -> Vec<NodeCommand> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

struct World {
    control: ControlPlane,
    store: Arc<MemoryStore>,
    node: NodeId,
    handler: Arc<Node>,
    owner: User,
}

async fn world() -> World {
    let store = Arc::new(MemoryStore::new());
    let (transport, _inbox) = InProcessTransport::new(16);
    let mut config = ControlConfig::default();
    config.node_timeout = Duration::from_millis(300);
    let control =
        ControlPlane::new(store.clone() as Arc<dyn Store>, Arc::new(transport.clone()), config).await.unwrap();
    let owner =
        control.create_user(NewUser::new("owner", "owner@example.com", "owner password", Role::User)).await.unwrap();
    let capacity = NodeCapacity { memory_mb: 8192, disk_mb: 100_000, cpu_percent: 400 };
    let node = control.register_node(NewNode::new("n1", "n1.test", 8080, capacity)).await.unwrap().node.id;
    control.add_allocations(node, "10.0.0.1".parse().unwrap(), "30000-30009").await.unwrap();
    let handler = Arc::new(Node::default());
    transport.register(node, handler.clone());
    let beat = Heartbeat { node, at: Utc::now(), version: "t".into(), servers: vec![] };
    control.ingest(node, NodeMessage::Heartbeat(beat)).await.unwrap();
    World { control, store, node, handler, owner }
}

impl World {
    /// An installed server of the busybox egg.
    async fn server(&self) -> Server {
        let egg = self
            .control
            .import_egg(include_bytes!("../../egg-engine/tests/fixtures/egg-busybox-echo.json").to_vec())
            .await
            .unwrap();
        let request =
            NewServer::new("srv", self.owner.id, egg.id, ServerLimits { memory_mb: 256, ..ServerLimits::default() });
        let server = self.control.create_server(request).await.unwrap().server;
        for (from, to, trigger) in [
            (ServerState::Requested, ServerState::Installing, Trigger::InstallStarted),
            (ServerState::Installing, ServerState::Installed, Trigger::InstallSucceeded),
        ] {
            self.event(server.id, from, to, trigger).await;
        }
        self.handler.servers.lock().unwrap().iter_mut().for_each(|s| s.state = ServerState::Installed);
        self.handler.take();
        self.control.server(server.id).await.unwrap()
    }

    async fn event(&self, server: ServerId, from: ServerState, to: ServerState, trigger: Trigger) -> Ingested {
        let event = LifecycleEvent { server, from, to, trigger, at: Utc::now() };
        self.control.ingest(self.node, NodeMessage::Lifecycle(event)).await.unwrap()
    }

    /// The node goes silent (offline), then returns with its list.
    async fn away_and_back(&self) -> Ingested {
        let later = Utc::now() + chrono::Duration::seconds(120);
        assert_eq!(self.control.mark_silent_nodes_offline(later).await.unwrap(), vec![self.node]);
        self.handler.down.store(false, Ordering::SeqCst);
        let servers = self.handler.servers.lock().unwrap().clone();
        let beat = Heartbeat { node: self.node, at: Utc::now(), version: "t".into(), servers };
        self.control.ingest(self.node, NodeMessage::Heartbeat(beat)).await.unwrap()
    }
}

#[tokio::test]
async fn a_deletion_asked_while_the_node_is_away_finishes_when_it_returns() {
    let w = world().await;
    let server = w.server().await;
    w.handler.down.store(true, Ordering::SeqCst);
    let delivery = w.control.destroy_server(server.id).await.unwrap();
    assert!(matches!(delivery, Delivery::Pending(_)), "{delivery:?}");
    let marked = w.control.server(server.id).await.unwrap();
    assert!(marked.deletion_requested_at.is_some(), "the intention is stored");
    // Nothing else may happen to it meanwhile.
    assert!(matches!(w.control.power(server.id, PowerAction::Start).await, Err(ControlError::Deleting(_))));

    let Ingested::Returned(done) = w.away_and_back().await else { panic!("not a return") };
    assert_eq!(done.destroyed, vec![server.id], "{done:?}");
    assert!(w.handler.take().contains(&NodeCommand::DestroyServer { server: server.id }));
    // The node's events then remove the row and free the port.
    w.event(server.id, ServerState::Installed, ServerState::Destroying, Trigger::Destroy).await;
    let removed = w.event(server.id, ServerState::Destroying, ServerState::Destroyed, Trigger::DestroyCompleted).await;
    assert_eq!(removed, Ingested::Removed(server.id));
    assert!(w.store.list_servers(&ServerFilter::default(), Page::all()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_marked_server_the_returning_node_no_longer_has_is_removed_at_once() {
    let w = world().await;
    let server = w.server().await;
    w.handler.down.store(true, Ordering::SeqCst);
    w.control.destroy_server(server.id).await.unwrap();
    // The node lost it meanwhile (a wiped disk): nothing to destroy there.
    w.handler.servers.lock().unwrap().clear();
    let Ingested::Returned(done) = w.away_and_back().await else { panic!("not a return") };
    assert_eq!(done.destroyed, vec![server.id], "{done:?}");
    assert!(matches!(w.control.server(server.id).await, Err(ControlError::UnknownServer(_))));
}

#[tokio::test]
async fn a_suspended_server_cannot_start_and_its_node_is_told_even_after_being_away() {
    let w = world().await;
    let server = w.server().await;
    let suspended = w.control.set_suspended(server.id, true).await.unwrap();
    assert!(suspended.suspended);
    let sent = w.handler.take();
    assert!(
        sent.iter().any(|c| matches!(c, NodeCommand::CreateServer { spec, install: false } if spec.suspended)),
        "the node gets the suspended spec: {sent:?}"
    );
    assert!(matches!(w.control.power(server.id, PowerAction::Start).await, Err(ControlError::Suspended(_))));
    // The node reports the suspension.
    w.event(server.id, ServerState::Installed, ServerState::Suspended, Trigger::Suspend).await;
    w.handler.servers.lock().unwrap().iter_mut().for_each(|s| s.state = ServerState::Suspended);

    // Unsuspended while the node is away: stored, and sent when it returns.
    w.handler.down.store(true, Ordering::SeqCst);
    assert!(!w.control.set_suspended(server.id, false).await.unwrap().suspended);
    let Ingested::Returned(done) = w.away_and_back().await else { panic!("not a return") };
    assert_eq!(done.updated, vec![server.id], "{done:?}");
    assert!(
        w.handler
            .take()
            .iter()
            .any(|c| matches!(c, NodeCommand::CreateServer { spec, install: false } if !spec.suspended))
    );
}

#[tokio::test]
async fn startup_variables_are_checked_by_rights_and_rules_and_a_refusal_stores_nothing() {
    let w = world().await;
    let server = w.server().await;
    let values = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    // MOTD is viewable but not editable by users; admins may set it.
    let refused = w.control.update_variables(server.id, &values(&[("MOTD", "hi")]), Editor::User).await.unwrap_err();
    assert_eq!(refused.status_code(), 422, "{refused}");
    let refused =
        w.control.update_variables(server.id, &values(&[("MAX_PLAYERS", "500")]), Editor::User).await.unwrap_err();
    assert!(refused.to_string().contains("MAX_PLAYERS"), "{refused}");
    let unknown = w.control.update_variables(server.id, &values(&[("NOPE", "1")]), Editor::Admin).await.unwrap_err();
    assert_eq!(unknown.status_code(), 422);
    assert_eq!(w.control.server(server.id).await.unwrap().environment, server.environment, "nothing stored");
    assert!(w.handler.take().is_empty(), "nothing sent");

    let changed =
        w.control.update_variables(server.id, &values(&[("MAX_PLAYERS", " 12 ")]), Editor::User).await.unwrap();
    assert_eq!(changed.environment["MAX_PLAYERS"], "12");
    assert_eq!(changed.environment["GREETING"], server.environment["GREETING"], "the others are kept");
    let sent = w.handler.take();
    assert!(
        sent.iter().any(|c| matches!(c, NodeCommand::CreateServer { spec, install: false }
        if spec.environment["MAX_PLAYERS"] == "12")),
        "{sent:?}"
    );
    w.control.update_variables(server.id, &values(&[("MOTD", "admin says")]), Editor::Admin).await.unwrap();

    // A variable hidden from users answers them exactly as a name the egg lacks.
    let mut file: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../egg-engine/tests/fixtures/egg-busybox-echo.json")).unwrap();
    file["variables"].as_array_mut().unwrap().push(serde_json::json!({
        "name": "Secret", "description": "", "env_variable": "SECRET_TOKEN", "default_value": "s3cret",
        "user_viewable": false, "user_editable": false, "rules": "nullable|string|max:20"
    }));
    w.control.update_egg_from_file(server.egg, serde_json::to_vec(&file).unwrap()).await.unwrap();
    let hidden =
        w.control.update_variables(server.id, &values(&[("SECRET_TOKEN", "x")]), Editor::User).await.unwrap_err();
    let absent = w.control.update_variables(server.id, &values(&[("NO_SUCH", "x")]), Editor::User).await.unwrap_err();
    assert_eq!(
        (hidden.status_code(), hidden.to_string().replace("SECRET_TOKEN", "NAME")),
        (absent.status_code(), absent.to_string().replace("NO_SUCH", "NAME"))
    );
    w.control.update_variables(server.id, &values(&[("SECRET_TOKEN", "x")]), Editor::Admin).await.unwrap();

    // The hidden variable's stored value stops passing a newer rule: a user's change is
    // refused without naming it, its rule or its value; an admin sees all of it.
    file["variables"][3]["rules"] = serde_json::json!("required|integer");
    w.control.update_egg_from_file(server.egg, serde_json::to_vec(&file).unwrap()).await.unwrap();
    let refused =
        w.control.update_variables(server.id, &values(&[("MAX_PLAYERS", "9")]), Editor::User).await.unwrap_err();
    let said = format!("{refused} {refused:?}");
    assert!(!said.contains("SECRET") && !said.contains("integer") && !said.contains("Secret"), "{said}");
    assert_eq!(refused.status_code(), 422);
    let refused =
        w.control.update_variables(server.id, &values(&[("MAX_PLAYERS", "9")]), Editor::Admin).await.unwrap_err();
    assert!(refused.to_string().contains("SECRET_TOKEN"), "{refused}");
    // A user's own mistake on a visible variable is still shown on that variable.
    let refused =
        w.control.update_variables(server.id, &values(&[("MAX_PLAYERS", "500")]), Editor::User).await.unwrap_err();
    assert!(refused.to_string().contains("MAX_PLAYERS"), "{refused}");
}

#[tokio::test]
async fn rename_build_and_reinstall() {
    let w = world().await;
    let server = w.server().await;
    assert_eq!(w.control.rename_server(server.id, "  new name ").await.unwrap().name, "new name");
    assert_eq!(w.control.rename_server(server.id, "a\nb").await.unwrap_err().status_code(), 422);
    let limits = ServerLimits { memory_mb: 1024, ..server.limits };
    assert_eq!(w.control.update_build(server.id, limits).await.unwrap().limits.memory_mb, 1024);
    let bad = ServerLimits { memory_mb: 1, ..server.limits };
    assert_eq!(w.control.update_build(server.id, bad).await.unwrap_err().status_code(), 422, "a spec no node accepts");
    assert_eq!(w.control.server(server.id).await.unwrap().limits.memory_mb, 1024, "unchanged by the refusal");
    w.handler.take();
    w.control.reinstall_server(server.id).await.unwrap();
    assert!(w.handler.take().contains(&NodeCommand::Install { server: server.id }));
    w.event(server.id, ServerState::Installed, ServerState::Starting, Trigger::Start).await;
    assert!(matches!(w.control.reinstall_server(server.id).await, Err(ControlError::Running(_))));
}

#[tokio::test]
async fn subusers_get_what_they_were_granted_and_grant_no_more_than_they_hold() {
    let w = world().await;
    let server = w.server().await;
    let friend = w
        .control
        .create_user(NewUser::new("friend", "friend@example.com", "friend password", Role::User))
        .await
        .unwrap();
    let other =
        w.control.create_user(NewUser::new("other", "other@example.com", "other password", Role::User)).await.unwrap();
    let owner_access = w.control.server_access(&w.owner, &server).await.unwrap().unwrap();
    assert_eq!(owner_access, ServerAccess::Owner);
    assert_eq!(w.control.server_access(&friend, &server).await.unwrap(), None, "not theirs before a grant");

    let grant = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<BTreeSet<String>>();
    let bad = w
        .control
        .put_subuser(server.id, "friend@example.com", grant(&["control.all"]), false, (&w.owner, &owner_access))
        .await;
    assert_eq!(bad.unwrap_err().status_code(), 422);
    let bad = w
        .control
        .put_subuser(server.id, "owner@example.com", grant(&["control.console"]), false, (&w.owner, &owner_access))
        .await;
    assert_eq!(bad.unwrap_err().status_code(), 422, "the owner is no subuser");
    w.control
        .put_subuser(
            server.id,
            "friend@example.com",
            grant(&["control.console", "user.create"]),
            false,
            (&w.owner, &owner_access),
        )
        .await
        .unwrap();
    let friend_access = w.control.server_access(&friend, &server).await.unwrap().unwrap();
    assert!(friend_access.allows("control.console") && !friend_access.allows("control.start"));
    assert_eq!(friend_access.node_permissions(), [Permission::ConsoleRead, Permission::ConsoleWrite]);
    // The friend lists the server as theirs.
    let filter = ServerFilter { member: Some(friend.id), ..ServerFilter::default() };
    assert_eq!(w.store.list_servers(&filter, Page::all()).await.unwrap().len(), 1);

    // A subuser grants only what they hold, and never changes their own grant.
    let more = w
        .control
        .put_subuser(server.id, "other@example.com", grant(&["control.start"]), false, (&friend, &friend_access))
        .await;
    assert_eq!(more.unwrap_err().status_code(), 403);
    let own = w
        .control
        .put_subuser(server.id, "friend@example.com", grant(&["control.console"]), true, (&friend, &friend_access))
        .await;
    assert_eq!(own.unwrap_err().status_code(), 403);
    w.control
        .put_subuser(server.id, "other@example.com", grant(&["control.console"]), false, (&friend, &friend_access))
        .await
        .unwrap();
    // Adding again is a conflict (changing is the update's job); a user name is no e-mail.
    let again =
        w.control.put_subuser(server.id, "other@example.com", grant(&[]), false, (&friend, &friend_access)).await;
    assert_eq!(again.unwrap_err().status_code(), 409);
    let by_name = w.control.put_subuser(server.id, "other", grant(&[]), false, (&w.owner, &owner_access)).await;
    assert_eq!(by_name.unwrap_err().status_code(), 422);
    // The owner gives `other` a permission the friend lacks; the friend's later change (of
    // what the friend holds) keeps it: nobody takes away what they could not give.
    w.control
        .put_subuser(
            server.id,
            "other@example.com",
            grant(&["control.console", "file.delete"]),
            true,
            (&w.owner, &owner_access),
        )
        .await
        .unwrap();
    let friend_access = nexus_control::subusers::ServerAccess::Subuser(
        ["control.console", "user.update"].iter().map(|s| (*s).to_owned()).collect(),
    );
    let changed = w
        .control
        .put_subuser(server.id, "other@example.com", grant(&[]), true, (&friend, &friend_access))
        .await
        .unwrap();
    assert_eq!(changed.permissions, grant(&["file.delete"]), "control.console removed, file.delete kept");
    assert!(w.control.remove_subuser(server.id, friend.id, (&friend, &friend_access)).await.is_err());
    w.control.remove_subuser(server.id, other.id, (&w.owner, &owner_access)).await.unwrap();
    assert_eq!(w.store.list_subusers(server.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_schedule_cannot_do_what_its_author_may_not_do_by_hand() {
    let w = world().await;
    let server = w.server().await;
    let planner =
        ServerAccess::Subuser(["schedule.create", "schedule.update", "control.start"].map(String::from).into());
    let command: nexus_control::schedules::ScheduleInput = serde_json::from_str(
        r#"{"name":"say","cron":"0 4 * * *","tasks":[{"action":{"kind":"command","payload":"say hi"}}]}"#,
    )
    .unwrap();
    let refused = w.control.create_schedule(server.id, command.clone(), &planner).await.unwrap_err();
    assert_eq!(refused.status_code(), 403, "{refused}");
    let start: nexus_control::schedules::ScheduleInput = serde_json::from_str(
        r#"{"name":"boot","cron":"0 4 * * *","tasks":[{"action":{"kind":"power","payload":"start"}}]}"#,
    )
    .unwrap();
    let made = w.control.create_schedule(server.id, start, &planner).await.unwrap();
    // Nor can it be changed into one, nor run by someone who lacks what it does.
    assert_eq!(w.control.update_schedule(server.id, made.id, command, &planner).await.unwrap_err().status_code(), 403);
    let control = Arc::new(w.control);
    let watcher = ServerAccess::Subuser(["schedule.update"].map(String::from).into());
    assert_eq!(control.run_schedule_now(server.id, made.id, &watcher).await.unwrap_err().status_code(), 403);
    control.run_schedule_now(server.id, made.id, &ServerAccess::Owner).await.unwrap();
}

#[tokio::test]
async fn a_node_with_servers_is_removed_only_when_gone_and_told_to_forget_them() {
    let w = world().await;
    let server = w.server().await;
    let refused = w.control.delete_node(w.node, false).await;
    assert!(matches!(refused, Err(ControlError::Store(nexus_core::store::StoreError::InUse { .. }))), "{refused:?}");
    let online = w.control.delete_node(w.node, true).await;
    assert!(matches!(online, Err(ControlError::Invalid { field: "forget_servers", .. })), "{online:?}");
    assert!(w.control.server(server.id).await.is_ok(), "nothing removed by a refusal");

    let later = Utc::now() + chrono::Duration::seconds(120);
    w.control.mark_silent_nodes_offline(later).await.unwrap();
    assert_eq!(w.control.delete_node(w.node, true).await.unwrap(), 1);
    assert!(w.control.server(server.id).await.is_err(), "the server's row went with it");
    assert!(w.store.get_node(w.node).await.is_err());
    assert!(w.store.get_allocation(server.primary_allocation).await.is_err(), "its allocations too");
    assert!(w.handler.take().is_empty(), "the gone node was not called");
    // Placement no longer offers it.
    let egg = w.store.list_eggs().await.unwrap().remove(0);
    let request = NewServer::new("next", w.owner.id, egg.id, ServerLimits { memory_mb: 64, ..ServerLimits::default() });
    assert!(w.control.create_server(request).await.is_err(), "no node left to place on");
}

#[tokio::test]
async fn nests_hold_eggs_that_keep_their_nest_through_updates() {
    let w = world().await;
    let file = include_bytes!("../../egg-engine/tests/fixtures/egg-busybox-echo.json").to_vec();
    let nest = w.control.create_nest("  Test games ", "Eggs for the tests.").await.unwrap();
    assert_eq!(nest.name, "Test games");
    assert!(matches!(w.control.create_nest("Test games", "").await, Err(ControlError::Store(_))), "name taken");
    assert!(matches!(w.control.create_nest("bad\nname", "").await, Err(ControlError::Invalid { field: "name", .. })));
    let unknown = w.control.import_egg_into(file.clone(), Some(nexus_core::ids::NestId::new())).await;
    assert!(unknown.is_err(), "an unknown nest is refused before anything is stored");
    assert!(w.store.list_eggs().await.unwrap().is_empty());

    let egg = w.control.import_egg_into(file.clone(), Some(nest.id)).await.unwrap();
    assert_eq!(egg.nest, Some(nest.id));
    let updated = w.control.update_egg_from_file(egg.id, file).await.unwrap();
    assert_eq!(updated.nest, Some(nest.id), "an update from a file keeps the nest");
    let deleted = w.control.delete_nest(nest.id).await;
    assert!(matches!(deleted, Err(ControlError::Store(nexus_core::store::StoreError::InUse { .. }))), "{deleted:?}");
    let renamed = w.control.update_nest(nest.id, "Games", "").await.unwrap();
    assert_eq!(renamed.name, "Games");
    assert_eq!(w.control.move_egg(egg.id, None).await.unwrap().nest, None);
    w.control.delete_nest(nest.id).await.unwrap();
}
