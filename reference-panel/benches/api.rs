//! The panel API under load, on PostgreSQL (`cargo bench -p nexus-panel --bench api`; under
//! `cargo test --all-targets` one short pass on fewer servers, so the harness cannot rot).
//!
//! * `list`: `GET /api/v1/servers` (a user's first page of 50, with a client key) among
//!   10,000 servers, from 32 concurrent keep-alive clients for 10 s: requests/s, p50, p99.
//!   Goal: p99 ≤ 20 ms at ≥ 2,000 requests/s on this 2-core machine.
//! * `create`: `POST /api/v1/servers` (application key) to the store with an in-process
//!   node that accepts every server, 8 at once: creates/s. Goal ≥ 200/s.
//! * The panel's RSS idle (after seeding) and after the load.
//!
//! Needs PostgreSQL (`NEXUS_TEST_POSTGRES_URL`); fails under `CI=true` without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use nexus_control::nodes::NewNode;
use nexus_control::{ControlConfig, ControlPlane};
use nexus_core::memory::InProcessTransport;
use nexus_core::model::{ApiKeyScope, NodeCapacity, Role};
use nexus_core::store::Store;
use nexus_core::transport::{NodeCommand, NodeHandler, NodeResponse, TransportError};
use nexus_panel::api::PanelState;
use nexus_store_sql::SqlStore;
use nexus_store_sql::backend::Postgres;
use nexus_store_sql::testing::{seed_servers, throwaway};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A node that takes every command.
struct AcceptingNode;

#[async_trait]
impl NodeHandler for AcceptingNode {
    async fn handle(&self, command: NodeCommand) -> Result<NodeResponse, TransportError> {
        Ok(match command {
            NodeCommand::ListServers => NodeResponse::Servers(Vec::new()),
            _ => NodeResponse::Ok,
        })
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

async fn serve(control: Arc<ControlPlane>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(PanelState::new(control, base.clone()));
    tokio::spawn(warp::serve(nexus_panel::api::filter(state)).incoming(listener).run());
    base
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (servers, clients, seconds, creates) = if full { (10_000, 32, 10, 1_000) } else { (500, 4, 1, 20) };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let Some(db) = throwaway::<Postgres>() else { return };
    runtime.block_on(async move {
        let store = SqlStore::<Postgres>::connect(&db.url).await.unwrap();
        let started = Instant::now();
        let user = seed_servers(&store, servers).await;
        eprintln!("seeded {servers} servers in {:.1?}", started.elapsed());
        let store: Arc<dyn Store> = Arc::new(store);
        let (transport, _inbox) = InProcessTransport::new(64);
        let control = Arc::new(ControlPlane::new(store.clone(), Arc::new(transport.clone()), ControlConfig::default()).await.unwrap());
        let base = serve(Arc::clone(&control)).await;
        let (_, key) = control.create_api_key(user.id, ApiKeyScope::Client, "bench", None).await.unwrap();
        let idle = rss_mib();

        // Listing under load.
        let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let (http, base, key) = (http.clone(), base.clone(), key.clone());
            tasks.spawn(async move {
                let mut times = Vec::new();
                while Instant::now() < deadline {
                    let at = Instant::now();
                    let response = http.get(format!("{base}/api/v1/servers")).bearer_auth(&key).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    let body = response.bytes().await.unwrap();
                    assert!(body.len() > 100);
                    times.push(at.elapsed().as_secs_f64() * 1000.0);
                }
                times
            });
        }
        let mut times: Vec<f64> = Vec::new();
        while let Some(done) = tasks.join_next().await {
            times.extend(done.unwrap());
        }
        times.sort_by(f64::total_cmp);
        let rate = times.len() as f64 / seconds as f64;
        println!(
            "list (50 of one user's among {servers}, {clients} clients): {rate:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
            percentile(&times, 0.50),
            percentile(&times, 0.99)
        );
        let loaded = rss_mib();

        // Creates through the API with an in-process node.
        let admin = control
            .create_user(nexus_control::accounts::NewUser::new("benchadmin", "benchadmin@example.com", "bench password", Role::Admin))
            .await
            .unwrap();
        let (_, admin_key) = control.create_api_key(admin.id, ApiKeyScope::Application, "bench", None).await.unwrap();
        let capacity = NodeCapacity { memory_mb: 10_000_000, disk_mb: 10_000_000, cpu_percent: 100_000 };
        let node = control.register_node(NewNode::new("bench", "bench.invalid", 8080, capacity)).await.unwrap().node;
        transport.register(node.id, Arc::new(AcceptingNode));
        control.add_allocations(node.id, "10.9.0.1".parse().unwrap(), &format!("2000-{}", 2000 + creates - 1)).await.unwrap();
        let beat = nexus_core::transport::Heartbeat { node: node.id, at: chrono::Utc::now(), version: "b".into(), servers: vec![] };
        control.ingest(node.id, nexus_core::transport::NodeMessage::Heartbeat(beat)).await.unwrap();
        let egg = control.import_egg(include_bytes!("../eggs/busybox-echo.json").to_vec()).await.unwrap();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = creates / 8;
        for t in 0..8 {
            let (http, base, key) = (http.clone(), base.clone(), admin_key.clone());
            let body = serde_json::json!({ "owner": admin.id, "egg": egg.id, "node": node.id, "limits": { "memory_mb": 64 } });
            tasks.spawn(async move {
                for i in 0..per_task {
                    let mut body = body.clone();
                    body["name"] = serde_json::json!(format!("c-{t}-{i}"));
                    let response = http.post(format!("{base}/api/v1/servers")).bearer_auth(&key).json(&body).send().await.unwrap();
                    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let made = per_task * 8;
        println!("create ({made} through the API, 8 at once): {:.0} creates/s", made as f64 / started.elapsed().as_secs_f64());
        println!("panel RSS: {idle:.0} MiB idle after seeding, {loaded:.0} MiB after the list load, {:.0} MiB after the creates", rss_mib());
    });
}
