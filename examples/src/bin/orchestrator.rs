//! A headless orchestrator in one program: the control plane's loop without any HTTP.
//!
//! 1. A SQLite store (the embedded default) and `nexus-control`'s `ControlPlane` over it, with
//!    a location, a node registered with its allocations, and an owner.
//! 2. An egg imported from a file (argument 1; the repository's busybox fixture by default).
//! 3. An in-process node: the node agent on Docker behind an `InProcessTransport`, whose
//!    messages (heartbeats, lifecycle events) the control plane ingests as a panel would.
//! 4. `create_server`: placement chooses the node, an allocation and the server row are stored
//!    together, `nexus_eggs::server_spec` builds what the node runs, and the node gets it.
//! 5. The server is installed, started (its console printed until the egg's done line makes it
//!    `running`), sent a command, stopped and removed.
//!
//! ```text
//! cargo run -p nexus-examples --bin orchestrator [egg.json]
//! ```
//! Needs Docker and the busybox test image (`scripts/images/busybox.sh`).

use nexus_agent::{AgentConfig, ConsoleEvent, NodeAgent};
use nexus_control::nodes::NewNode;
use nexus_control::servers::{Delivery, NewServer};
use nexus_control::{ControlConfig, ControlPlane};
use nexus_core::ids::{LocationId, ServerId};
use nexus_core::lifecycle::ServerState;
use nexus_core::memory::InProcessTransport;
use nexus_core::model::{Location, NodeCapacity, NodeStatus, Role, ServerLimits};
use nexus_core::store::Store;
use nexus_core::transport::{NodeHandler, NodeMessage, PowerAction};
use nexus_eggs::import::import_egg;
use nexus_runtime_docker::DockerRuntime;
use nexus_store_sqlite::SqliteStore;
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

    // 1. The store, the control plane, the infrastructure.
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::connect(&format!("sqlite://{}", work.path().join("nexus.db").display())).await?);
    let (transport, mut inbox) = InProcessTransport::new(256);
    let control =
        Arc::new(ControlPlane::new(store.clone(), Arc::new(transport.clone()), ControlConfig::default()).await?);
    let location = Location { id: LocationId::new(), short: "local".into(), long: "This machine".into() };
    store.create_location(&location).await?;
    let mut new_node =
        NewNode::new("local", "localhost", 8080, NodeCapacity { memory_mb: 4096, disk_mb: 20_480, cpu_percent: 200 });
    new_node.location = Some(location.id);
    let node = control.register_node(new_node).await?.node;
    control.add_allocations(node.id, IpAddr::V4(Ipv4Addr::LOCALHOST), "30100-30103").await?;
    let owner = control
        .create_user(nexus_control::accounts::NewUser::new(
            "owner",
            "owner@example.com",
            "an owner's password",
            Role::User,
        ))
        .await?;

    // 2. The egg.
    let egg = import_egg(&std::fs::read(&egg_path).map_err(|e| format!("{egg_path}: {e}"))?)?;
    store.create_egg(&egg).await?;
    println!("imported egg `{}` with {} variables", egg.name, egg.variables.len());

    // 3. The node, in this process, and the panel's ingest loop.
    let docker = DockerRuntime::connect_default().await.map_err(|e| format!("Docker unavailable: {e}"))?;
    let agent = NodeAgent::builder(AgentConfig::new(node.id, work.path().join("volumes")), Arc::new(docker))
        .panel(Arc::new(transport.clone()))
        .start()
        .await?;
    transport.register(node.id, Arc::clone(&agent) as Arc<dyn NodeHandler>);
    let (state_tx, mut state_rx) = watch::channel(ServerState::Requested);
    let ingesting = Arc::clone(&control);
    let ingest = tokio::spawn(async move {
        while let Some((from, message)) = inbox.recv().await {
            let lifecycle = match &message {
                NodeMessage::Lifecycle(event) => Some(event.clone()),
                _ => None,
            };
            if let Err(e) = ingesting.ingest(from, message).await {
                println!("message not applied: {e}");
            }
            // Announced once the store has it.
            if let Some(event) = lifecycle {
                println!("[panel] {:?} -> {:?} ({:?})", event.from, event.to, event.trigger);
                state_tx.send_replace(event.to);
            }
        }
    });
    // Placement chooses only nodes that report: wait for the first heartbeat.
    let deadline = tokio::time::Instant::now() + STEP;
    while store.get_node(node.id).await?.status != NodeStatus::Online {
        if tokio::time::Instant::now() > deadline {
            return Err("the node never reported".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 4. The server: placement, an allocation and the row together, the spec sent to the node.
    let limits = ServerLimits { memory_mb: 256, disk_mb: 1024, cpu_percent: 100, ..ServerLimits::default() };
    let mut request = NewServer::new("first", owner.id, egg.id, limits);
    if egg.variable("GREETING").is_some() {
        request.values.insert("GREETING".into(), "hi from nexus".into());
    }
    let created = control.create_server(request).await?;
    let server_id = created.server.id;
    if let Delivery::Pending(why) = &created.delivery {
        return Err(format!("the node did not take the server: {why}").into());
    }
    let port = created.spec.allocations[0];
    println!("placed server {server_id} on node `{}` at {}:{}", node.name, port.ip, port.port);

    // 5. Install, start, talk, stop, remove; on any failure on the way, the server is removed
    // from the node before the error is reported (no container left running).
    let life = life(&control, &agent, server_id, &mut state_rx);
    if let Err(e) = life.await {
        let _ = control.destroy_server(server_id).await;
        return Err(e);
    }
    println!("its row and its port are gone from the store: {}", store.get_server(server_id).await.is_err());
    agent.shutdown().await;
    drop(transport);
    ingest.abort();
    Ok(())
}

/// The server's life after its create reached the node.
async fn life(
    control: &ControlPlane,
    agent: &NodeAgent,
    id: ServerId,
    states: &mut watch::Receiver<ServerState>,
) -> Result<(), Error> {
    wait_for(states, ServerState::Installed).await?;
    print!("{}", agent.install_log(id).await.unwrap_or_default());
    let mut console = agent.console(id).await?;
    let printer = tokio::spawn(async move {
        while let Some(event) = console.recv().await {
            match event {
                ConsoleEvent::Line(line) => println!("[console] {}", line.text),
                ConsoleEvent::Notice(text) => println!("[notice] {text}"),
                _ => {}
            }
        }
    });
    control.power(id, PowerAction::Start).await?;
    wait_for(states, ServerState::Running).await?;
    // The egg's config files were patched before the start (the allocated port, a variable).
    let properties = tokio::fs::read_to_string(agent.data_dir(id).join("server.properties")).await?;
    println!("server.properties after the start: {}", properties.lines().collect::<Vec<_>>().join(", "));
    control.send_command(id, "are you there?").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    control.power(id, PowerAction::Stop).await?;
    wait_for(states, ServerState::Stopped).await?;
    let events = control.store().server_events(id, 100).await?.len();
    control.destroy_server(id).await?;
    wait_for(states, ServerState::Destroyed).await?;
    printer.abort();
    println!("the store recorded {events} lifecycle events up to the stop; the server is {:?}", *states.borrow());
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
