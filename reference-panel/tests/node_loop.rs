//! The panel's loop with a real node: the control plane creates a server from an egg and
//! drives it through `HttpNodeTransport` to a `nexus-wings` daemon on Docker; the daemon's
//! heartbeats and lifecycle events come back over HTTP to the panel's event endpoint, are
//! checked against the node's token and ingested, and the store follows the server through
//! install, start (on its done line), stop and removal. Needs Docker and the busybox test
//! image; fails under `CI=true` without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use nexus_conformance::require_service;
use nexus_control::nodes::NewNode;
use nexus_control::servers::{Delivery, NewServer};
use nexus_control::{ControlConfig, ControlPlane};
use nexus_core::ids::{NodeId, ServerId, UserId};
use nexus_core::lifecycle::ServerState;
use nexus_core::memory::MemoryStore;
use nexus_core::model::{NodeCapacity, NodeStatus, Role, ServerLimits, User};
use nexus_core::runtime::Runtime;
use nexus_core::store::{AllocationRepo, EggRepo, NodeRepo, ServerRepo, Store, UserRepo};
use nexus_core::transport::PowerAction;
use nexus_panel::node_client::HttpNodeTransport;
use nexus_runtime_docker::DockerRuntime;
use nexus_wings::config::Config;
use nexus_wings::daemon::Daemon;
use nexus_wings::panel::HttpPanelTransport;
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Removes the node's containers whatever happens.
struct Cleanup(NodeId);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={}={}", nexus_agent::NODE_LABEL, self.0);
        let Ok(out) = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker").arg("rm").arg("-f").args(&ids).output();
        }
    }
}

async fn wait_state(store: &dyn Store, id: ServerId, state: ServerState) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let now = store.get_server(id).await.unwrap().state;
        if now == state {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "server {id} stayed {now:?}, expected {state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_lives_its_whole_life_through_the_panel_and_a_real_node() {
    let docker = match DockerRuntime::connect_default().await {
        Ok(docker) if docker.image_exists(nexus_conformance::runtime::BUSYBOX_IMAGE).await.unwrap_or(false) => docker,
        Ok(_) => {
            require_service("Docker", Err("the busybox test image is missing".into()));
            return;
        }
        Err(e) => {
            require_service("Docker", Err(e.to_string()));
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();

    // The panel: store, control plane over HTTP to nodes, the event endpoint.
    let store = Arc::new(MemoryStore::new());
    let nodes = Arc::new(HttpNodeTransport::new(Duration::from_secs(30)).unwrap());
    let mut config = ControlConfig::default();
    config.node_timeout = Duration::from_secs(30);
    config.node_secret = Some(nexus_control::NodeSecret::new(b"the panel's node secret, 32+ bytes".to_vec()).unwrap());
    config.node_scheme = "http";
    let control = Arc::new(ControlPlane::new(store.clone() as Arc<dyn Store>, nodes.clone(), config).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let panel_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(nexus_panel::events::route(control.clone())).incoming(listener).run());

    // A registered node: its token goes into the daemon's configuration.
    let capacity = NodeCapacity { memory_mb: 4096, disk_mb: 10_240, cpu_percent: 200 };
    let registration = control.register_node(NewNode::new("local", "127.0.0.1", 0, capacity)).await.unwrap();
    let node = registration.node.id;
    let _cleanup = Cleanup(node);
    control.add_allocations(node, "127.0.0.1".parse().unwrap(), "30300-30301").await.unwrap();

    let daemon_config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        node_id: Some(node),
        token: Some(registration.token.clone()),
        token_secret: Some("browser-token-secret-0123456789abcdefghij".into()),
        panel_url: Some(panel_url.clone()),
        data_root: dir.path().join("volumes"),
        state_dir: dir.path().join("state"),
        heartbeat_interval_secs: 1,
        stop_timeout_secs: 10,
        ..Config::default()
    }
    .resolve()
    .unwrap();
    let link = HttpPanelTransport::new(&panel_url, &registration.token).unwrap();
    let runtime = Arc::new(docker.with_install_dir(dir.path().join("install")));
    let daemon = Daemon::start(&daemon_config, runtime, Arc::new(link)).await.unwrap();
    // The node's address as an admin would enter it; the panel derives its token again.
    let mut record = store.get_node(node).await.unwrap();
    record.daemon_port = daemon.local_addr().port();
    store.update_node(&record).await.unwrap();
    assert_eq!(nodes.sync_endpoints(&control).await.unwrap(), 1);
    let (stop_daemon, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(daemon.serve(async move {
        let _ = stopped.await;
    }));

    // Heartbeats over HTTP bring the node online.
    let deadline = tokio::time::Instant::now() + T;
    while store.get_node(node).await.unwrap().status != NodeStatus::Online {
        assert!(tokio::time::Instant::now() < deadline, "no heartbeat reached the panel");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A server from the repository's busybox egg.
    let egg = nexus_eggs::import::import_egg(include_bytes!("../../egg-engine/tests/fixtures/egg-busybox-echo.json"))
        .unwrap();
    store.create_egg(&egg).await.unwrap();
    let owner = User {
        id: UserId::new(),
        username: "owner".into(),
        email: "owner@example.com".into(),
        password_hash: String::new(),
        role: Role::User,
        created_at: Utc::now(),
    };
    store.create_user(&owner).await.unwrap();
    let mut request =
        NewServer::new("echo", owner.id, egg.id, ServerLimits { memory_mb: 128, ..ServerLimits::default() });
    request.values.insert("GREETING".into(), "hi from the panel".into());
    let created = control.create_server(request).await.unwrap();
    assert_eq!(created.delivery, Delivery::Sent);
    let id = created.server.id;

    wait_state(store.as_ref(), id, ServerState::Installed).await;
    control.power(id, PowerAction::Start).await.unwrap();
    wait_state(store.as_ref(), id, ServerState::Running).await;
    control.send_command(id, "are you there?").await.unwrap();
    control.power(id, PowerAction::Stop).await.unwrap();
    wait_state(store.as_ref(), id, ServerState::Stopped).await;

    // Every transition came from the node's events, each stored once, in order.
    let events = store.server_events(id, 100).await.unwrap();
    let mut path: Vec<ServerState> = events.iter().rev().map(|e| e.to).collect();
    path.dedup();
    assert_eq!(
        path,
        [
            ServerState::Installing,
            ServerState::Installed,
            ServerState::Starting,
            ServerState::Running,
            ServerState::Stopping,
            ServerState::Stopped,
        ],
        "{events:?}"
    );
    assert_eq!(events.len(), path.len(), "no event stored twice: {events:?}");

    // Removal: the node destroys it, its Destroyed event removes the row and frees the port.
    control.destroy_server(id).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while store.get_server(id).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the server was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let allocations = store.list_allocations(node).await.unwrap();
    assert!(allocations.iter().all(|a| a.server.is_none()), "{allocations:?}");

    // A node token that is not this node's is refused at the event endpoint.
    let refused = reqwest::Client::new()
        .post(format!("{panel_url}/api/remote/events"))
        .bearer_auth("not-the-token")
        .body(format!(r#"{{"node":"{node}","message":{{"type":"heartbeat","data":{{"node":"{node}","at":"2026-01-01T00:00:00Z","version":"x","servers":[]}}}}}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    let _ = stop_daemon.send(());
    let _ = served.await;
}
