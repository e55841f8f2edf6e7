//! 1,000 console WebSocket clients at once, spread over 40 servers on three nodes, each
//! opened as the web UI opens it (credentials from the panel, then the node's socket), for
//! 60 s (`NEXUS_CONSOLE_LOAD_SECS` changes it). One client of each server types a command
//! every half second; every client of that server must receive every echoed line. Fails on
//! any unexpected disconnect or lost line; reports the line latency every client saw (from
//! the command sent to the echoed line received, p50/p99) and the memory of the panel and the
//! daemons, read from the kernel.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// One cluster at a time: each test holds a std mutex for its whole (single-runtime) body.
#![allow(clippy::await_holding_lock)]

use futures::{SinkExt, StreamExt};
use nexus_system_tests::{
    Cluster, ClusterConfig, busybox_egg, create_server, docker_ready, one_cluster_at_a_time, percentile,
};
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

const SERVERS: usize = 40;
const CLIENTS: usize = 1_000;
const EVERY: Duration = Duration::from_millis(500);

fn micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    latencies_ms: Vec<f64>,
    /// Echoed lines of its server's speaker.
    lines: usize,
    notices: usize,
    disconnected: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_console_clients_get_every_line() {
    if !docker_ready() {
        return;
    }
    let seconds: u64 = std::env::var("NEXUS_CONSOLE_LOAD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let _one = one_cluster_at_a_time();
    let cluster = Cluster::start(ClusterConfig { placement: "spread", first_port: 31700, ..Default::default() }).await;
    let api = cluster.api.clone();
    let egg = cluster.import_egg(busybox_egg()).await;
    let me = cluster.admin_id().await;
    let mut servers = Vec::new();
    for i in 0..SERVERS {
        let created = create_server(&api, &egg, &me, &format!("load-{i}"), 64).await;
        servers.push(created["server"]["id"].as_str().unwrap().to_owned());
    }
    for server in &servers {
        api.wait_state(server, "installed").await;
        api.expect(Method::POST, &format!("/api/v1/servers/{server}/power"), Some(json!({"action":"start"})), 202)
            .await;
    }
    for server in &servers {
        api.wait_state(server, "running").await;
    }
    let rss = |label: &str| {
        let nodes: Vec<String> =
            cluster.nodes.iter().map(|n| format!("{:.1}", cluster.rss_mib(&n.container))).collect();
        eprintln!(
            "[console load] {label}: panel RSS {:.1} MiB, daemons {} MiB",
            cluster.rss_mib(&cluster.panels[0].container),
            nodes.join(" / ")
        );
    };
    rss("before the clients");

    // Connect every client (32 at a time), each with its own credentials from the panel.
    let connecting = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut connects = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (api, server, gate) = (api.clone(), servers[c % SERVERS].clone(), gate.clone());
        connects.spawn(async move {
            let _slot = gate.acquire().await.unwrap();
            let access = api.get(&format!("/api/v1/servers/{server}/websocket")).await;
            let url = format!("{}?token={}", access["socket"].as_str().unwrap(), access["token"].as_str().unwrap());
            let (socket, _) =
                tokio_tungstenite::connect_async(url.as_str()).await.unwrap_or_else(|e| panic!("client {c}: {e}"));
            (c, socket)
        });
    }
    let mut sockets = Vec::new();
    while let Some(done) = connects.join_next().await {
        sockets.push(done.unwrap());
    }
    eprintln!("[console load] {CLIENTS} clients connected in {:.1} s", connecting.elapsed().as_secs_f64());

    // Readers: every client reads until told to stop; speakers: client `s` (< SERVERS) types.
    let stop = Arc::new(AtomicBool::new(false));
    // How many commands each server's speaker sent in all, once it stopped.
    let finals: Arc<Vec<AtomicUsize>> = Arc::new((0..SERVERS).map(|_| AtomicUsize::new(usize::MAX)).collect());
    let mut readers = tokio::task::JoinSet::new();
    let mut speakers = tokio::task::JoinSet::new();
    for (c, socket) in sockets {
        let (mut sink, mut stream) = socket.split();
        let server = c % SERVERS;
        if c < SERVERS {
            let (stop, finals) = (stop.clone(), finals.clone());
            speakers.spawn(async move {
                let mut sent = 0usize;
                let mut tick = tokio::time::interval(EVERY);
                while !stop.load(Ordering::SeqCst) {
                    tick.tick().await;
                    let line = json!({ "type": "command", "line": format!("t {server} {sent} {}", micros()) });
                    if sink.send(Message::text(line.to_string())).await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                finals[server].store(sent, Ordering::SeqCst);
                (server, sent, sink)
            });
        }
        let (stop, finals) = (stop.clone(), finals.clone());
        readers.spawn(async move {
            let mut seen = Seen::default();
            let prefix = format!("echo: t {server} ");
            let mut draining: Option<Instant> = None;
            loop {
                // After the stop, the reader ends once it has every line its server's speaker
                // sent (or 15 s later: then they are lost).
                if stop.load(Ordering::SeqCst) {
                    let since = *draining.get_or_insert_with(Instant::now);
                    if seen.lines >= finals[server].load(Ordering::SeqCst) || since.elapsed() > Duration::from_secs(15)
                    {
                        break;
                    }
                }
                let Ok(message) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await else {
                    continue;
                };
                match message {
                    Some(Ok(Message::Text(text))) => {
                        let event: serde_json::Value = serde_json::from_str(&text).unwrap();
                        match event["type"].as_str() {
                            Some("line") => {
                                let line = event["data"]["text"].as_str().unwrap_or_default();
                                if let Some(rest) = line.trim_end().strip_prefix(&prefix) {
                                    let sent: u64 = rest.split(' ').nth(1).and_then(|t| t.parse().ok()).unwrap_or(0);
                                    seen.latencies_ms.push(micros().saturating_sub(sent) as f64 / 1000.0);
                                    seen.lines += 1;
                                }
                            }
                            // Lag notices only (a new client's replay holds older notices).
                            Some("notice")
                                if event["data"].as_str().is_some_and(|n| n.contains("could not keep up")) =>
                            {
                                seen.notices += 1;
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        seen.disconnected = Some(e.to_string());
                        break;
                    }
                    None => {
                        seen.disconnected = Some("closed by the node".to_owned());
                        break;
                    }
                }
            }
            (server, seen)
        });
    }
    tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
    rss("halfway, under load");
    tokio::time::sleep(Duration::from_secs(seconds - seconds / 2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut sent = [0usize; SERVERS];
    let mut sinks = Vec::new();
    while let Some(done) = speakers.join_next().await {
        let (server, n, sink) = done.unwrap();
        sent[server] = n;
        sinks.push(sink);
    }
    let mut latencies = Vec::new();
    let (mut received, mut expected, mut notices, mut disconnects) = (0usize, 0usize, 0usize, Vec::new());
    while let Some(done) = readers.join_next().await {
        let (server, seen) = done.unwrap();
        expected += sent[server];
        received += seen.lines;
        notices += seen.notices;
        latencies.extend(seen.latencies_ms);
        disconnects.extend(seen.disconnected);
    }
    rss("after the load");
    let (p50, p99, max) =
        (percentile(&mut latencies, 50.0), percentile(&mut latencies, 99.0), percentile(&mut latencies, 100.0));
    eprintln!(
        "[console load] {CLIENTS} clients on {SERVERS} servers over 3 nodes for {seconds} s: {received} of {expected} \
         lines delivered ({:.0}/s), {notices} lag notices, {} unexpected disconnects; line latency p50 {p50:.1} ms, \
         p99 {p99:.1} ms, max {max:.1} ms",
        received as f64 / seconds as f64,
        disconnects.len()
    );
    assert!(disconnects.is_empty(), "unexpected disconnects: {disconnects:?}");
    assert_eq!(received, expected, "every client received every line of its server");
    assert_eq!(notices, 0, "no client fell behind");
    drop(sinks);
}
