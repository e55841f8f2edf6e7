//! A headless orchestrator in one program: the control plane's loop without any HTTP.
//!
//! 1. A SQLite store (the embedded default) with a location, a node and its allocations.
//! 2. An egg imported from a file (argument 1; the repository's busybox fixture by default).
//! 3. Placement chooses the node; the store hands out an allocation; `nexus_eggs::server_spec`
//!    turns egg + settings + allocation + values into the spec the node runs.
//! 4. An in-process node: the node agent on Docker behind an `InProcessTransport`, whose
//!    events (lifecycle, heartbeats) this program ingests into the store as a panel would.
//! 5. The server is created and installed, started (its console printed until the egg's done
//!    line makes it `running`), sent a command, stopped and removed.
//!
//! ```text
//! cargo run -p nexus-examples --bin orchestrator [egg.json]
//! ```
//! Needs Docker and the busybox test image (`scripts/images/busybox.sh`).

use chrono::Utc;
use nexus_agent::{AgentConfig, ConsoleEvent, NodeAgent};
use nexus_core::ids::{AllocationId, LocationId, NodeId, ServerId, UserId};
use nexus_core::lifecycle::{LifecycleEvent, ServerState};
use nexus_core::memory::InProcessTransport;
use nexus_core::model::{
    Allocation, Location, Node, NodeCapacity, NodeStatus, Overallocation, Role, Server, ServerLimits, User,
};
use nexus_core::placement::{Placement, PlacementConfig, PlacementRequest, ScoringPlacement};
use nexus_core::runtime::PortBinding;
use nexus_core::store::{AllocationRepo, EggRepo, LocationRepo, NodeRepo, ServerRepo, Store, UserRepo};
use nexus_core::transport::{NodeCommand, NodeHandler, NodeMessage, NodeTransport, PowerAction};
use nexus_eggs::import::import_egg;
use nexus_eggs::spec::{ServerSettings, server_spec};
use nexus_runtime_docker::DockerRuntime;
use nexus_store_sqlite::SqliteStore;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Longest any one step may take.
const STEP: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let egg_path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../egg-engine/tests/fixtures/egg-busybox-echo.json").to_owned()
    });
    let work = tempfile::tempdir()?;

    // 1. The store and the infrastructure it knows about.
    let store = Arc::new(SqliteStore::connect(&format!("sqlite://{}", work.path().join("nexus.db").display())).await?);
    let location = Location { id: LocationId::new(), short: "local".into(), long: "This machine".into() };
    store.create_location(&location).await?;
    let node = Node {
        id: NodeId::new(),
        name: "local".into(),
        fqdn: "localhost".into(),
        daemon_port: 8080,
        token_hash: String::new(),
        location: Some(location.id),
        tags: BTreeSet::new(),
        capacity: NodeCapacity { memory_mb: 4096, disk_mb: 20_480, cpu_percent: 200 },
        overallocation: Overallocation::default(),
        maintenance: false,
        status: NodeStatus::Online,
        last_heartbeat: None,
    };
    store.create_node(&node).await?;
    let free_ports: Vec<Allocation> = (0..4)
        .map(|i| Allocation {
            id: AllocationId::new(),
            node: node.id,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            alias: None,
            port: 30_100 + i,
            server: None,
        })
        .collect();
    store.create_allocations(&free_ports).await?;
    let owner = User {
        id: UserId::new(),
        username: "owner".into(),
        email: "owner@example.com".into(),
        password_hash: String::new(),
        role: Role::User,
        created_at: Utc::now(),
    };
    store.create_user(&owner).await?;

    // 2. The egg.
    let egg = import_egg(&std::fs::read(&egg_path).map_err(|e| format!("{egg_path}: {e}"))?)?;
    store.create_egg(&egg).await?;
    println!("imported egg `{}` with {} variables", egg.name, egg.variables.len());

    // 3. Placement, an allocation, the spec.
    let limits = ServerLimits { memory_mb: 256, disk_mb: 1024, cpu_percent: 100, ..ServerLimits::default() };
    let request = PlacementRequest::new(limits.memory_mb, limits.disk_mb, limits.cpu_percent);
    let mut placement =
        ScoringPlacement::new(&store.list_nodes().await?, &store.node_usage().await?, PlacementConfig::default());
    let decision = placement.decide(&request)?;
    let server_id = ServerId::new();
    let allocation =
        store.claim_free_allocation(decision.node, server_id).await?.ok_or("the chosen node has no free allocation")?;
    let mut settings = ServerSettings::new(server_id);
    settings.limits = limits;
    settings.location = Some(location.short.clone());
    let values = BTreeMap::from([("GREETING".to_owned(), "hi from nexus".to_owned())]);
    let values: BTreeMap<String, String> =
        values.into_iter().filter(|(name, _)| egg.variable(name).is_some()).collect();
    let spec = server_spec(&egg, &settings, &[PortBinding { ip: allocation.ip, port: allocation.port }], &values)?;
    let server = Server {
        id: server_id,
        name: "first".into(),
        owner: owner.id,
        node: decision.node,
        egg: egg.id,
        image: spec.image.clone(),
        startup: spec.startup.clone(),
        environment: spec.environment.clone(),
        limits,
        primary_allocation: allocation.id,
        extra_allocations: Vec::new(),
        state: ServerState::Requested,
        version: 0,
        created_at: Utc::now(),
    };
    store.create_server(&server).await?;
    placement.commit(decision.node, &request.resources())?;
    println!("placed server {server_id} on node `{}` at {}:{}", node.name, allocation.ip, allocation.port);

    // 4. The node, in this process, and the panel's ingest loop.
    let (transport, mut inbox) = InProcessTransport::new(256);
    let docker = DockerRuntime::connect_default().await.map_err(|e| format!("Docker unavailable: {e}"))?;
    let agent = NodeAgent::builder(AgentConfig::new(node.id, work.path().join("volumes")), Arc::new(docker))
        .panel(Arc::new(transport.clone()))
        .start()
        .await?;
    transport.register(node.id, Arc::clone(&agent) as Arc<dyn NodeHandler>);
    let (state_tx, mut state_rx) = watch::channel(ServerState::Requested);
    let ingest_store = Arc::clone(&store);
    let ingest = tokio::spawn(async move {
        while let Some((from, message)) = inbox.recv().await {
            match message {
                NodeMessage::Heartbeat(beat) => {
                    if let Err(e) = ingest_store.record_heartbeat(from, beat.at).await {
                        println!("heartbeat of {from} not recorded: {e}");
                    }
                }
                NodeMessage::Lifecycle(event) => {
                    if let Err(e) = apply(&*ingest_store, from, &event).await {
                        println!("event not applied: {e}");
                    }
                    println!("[panel] {:?} -> {:?} ({:?})", event.from, event.to, event.trigger);
                    state_tx.send_replace(event.to);
                }
            }
        }
    });

    // 5. Create and install, start, talk, stop, remove; on any failure on the way, the server
    // is removed from the node before the error is reported (no container left running).
    transport.send(node.id, NodeCommand::CreateServer { spec: Box::new(spec), install: true }).await?;
    let life = async {
        wait_for(&mut state_rx, ServerState::Installed).await?;
        print!("{}", agent.install_log(server_id).await.unwrap_or_default());

        let mut console = agent.console(server_id).await?;
        let printer = tokio::spawn(async move {
            while let Some(event) = console.recv().await {
                match event {
                    ConsoleEvent::Line(line) => println!("[console] {}", line.text),
                    ConsoleEvent::Notice(text) => println!("[notice] {text}"),
                    _ => {}
                }
            }
        });
        transport.send(node.id, NodeCommand::Power { server: server_id, action: PowerAction::Start }).await?;
        wait_for(&mut state_rx, ServerState::Running).await?;
        // The egg's config files were patched before the start (the allocated port, a variable).
        let properties = tokio::fs::read_to_string(agent.data_dir(server_id).join("server.properties")).await?;
        println!("server.properties after the start: {}", properties.lines().collect::<Vec<_>>().join(", "));
        transport.send(node.id, NodeCommand::SendCommand { server: server_id, line: "are you there?".into() }).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        transport.send(node.id, NodeCommand::Power { server: server_id, action: PowerAction::Stop }).await?;
        wait_for(&mut state_rx, ServerState::Stopped).await?;
        transport.send(node.id, NodeCommand::DestroyServer { server: server_id }).await?;
        wait_for(&mut state_rx, ServerState::Destroyed).await?;
        printer.abort();
        Ok::<(), Error>(())
    };
    if let Err(e) = life.await {
        let _ = transport.send(node.id, NodeCommand::DestroyServer { server: server_id }).await;
        return Err(e);
    }

    let events = store.server_events(server_id, 100).await?;
    println!(
        "the store recorded {} lifecycle events; the server is {:?}",
        events.len(),
        store.get_server(server_id).await?.state
    );
    agent.shutdown().await;
    drop(transport);
    ingest.abort();
    Ok(())
}

/// Applies one lifecycle event to the store, as a panel ingests them: only from the node the
/// server is on, idempotent (an event already in the server's history changes nothing), and
/// checked against the stored version. `nexus-control` does this for a real panel.
async fn apply(store: &dyn Store, from: NodeId, event: &LifecycleEvent) -> Result<(), Error> {
    let server = store.get_server(event.server).await?;
    if server.node != from {
        return Err(format!("node {from} reported on server {}, which is not on it", server.id).into());
    }
    if server.state != event.from {
        if store.server_events(server.id, 50).await?.contains(event) {
            return Ok(());
        }
        return Err(format!("server is {:?}, the event goes from {:?}", server.state, event.from).into());
    }
    store.transition_server(server.version, event).await?;
    Ok(())
}

/// Waits until the server reaches `state`, or fails after [`STEP`] or on a failure state.
async fn wait_for(states: &mut watch::Receiver<ServerState>, state: ServerState) -> Result<(), Error> {
    let reached = tokio::time::timeout(
        STEP,
        states.wait_for(|s| *s == state || matches!(s, ServerState::InstallFailed | ServerState::Crashed)),
    )
    .await;
    match reached {
        Ok(Ok(now)) if *now == state => Ok(()),
        Ok(Ok(now)) => Err(format!("the server is {:?} instead of {state:?}", *now).into()),
        Ok(Err(_)) => Err("the node went away".into()),
        Err(_) => Err(format!("no {state:?} within {STEP:?}").into()),
    }
}
