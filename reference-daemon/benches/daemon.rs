//! Daemon benchmarks on the real binary and the local Docker Engine (busybox servers):
//!
//! 1. **Idle RSS** of `nexus-wings` with no servers (goal ≤ 10 MB).
//! 2. **Console delivery**, container → daemon → WebSocket clients, against `docker logs -f`
//!    on the same container: the server prints a burst of 80-byte lines on command; k clients
//!    (1, 10, 100) read as fast as they can until the burst's `END` line, and the headline is
//!    the lines each kind of client *received* per second, summed over the k clients (lines
//!    skipped because a client lagged are not counted), against k `docker logs -f` followers
//!    doing the same. Rounds alternate. The daemon runs with the console throttle off
//!    (`console_lines_per_second = 0`): the throttle is a policy, this measures the pipeline.
//! 3. **API under console load**: 500 console sockets on the busy server while it prints a
//!    burst; `GET /api/system` latency p50/p99/max meanwhile, and the resident memory each
//!    idle console socket costs.
//! 4. **Line latency**: a `ping` command over the WebSocket until its `pong` line comes back
//!    over it (stdin → process → stdout → daemon → client), p50/p99; and the same through
//!    `POST /commands` observed with `docker logs -f`, for reference.
//! 5. **RSS with 100 busybox servers** running (goal ≤ 40 MB), and again after the daemon
//!    was restarted and re-adopted them.
//!
//! ```sh
//! cargo bench -p nexus-wings --bench daemon
//! NEXUS_BENCH_SERVERS=20 NEXUS_BENCH_LINES=100000 cargo bench -p nexus-wings --bench daemon
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it only prints how to run it.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "benchmark binary: fail loudly")]

#[path = "../tests/support/mod.rs"]
mod support;

use futures::StreamExt as _;
use nexus_core::ids::NodeId;
use nexus_core::model::{DoneMatcher, StopMethod};
use nexus_core::transport::ServerSpec;
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncBufReadExt as _;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(120);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("daemon benchmark: run `cargo bench -p nexus-wings --bench daemon`");
        return;
    }
    let servers: usize = env_or("NEXUS_BENCH_SERVERS", 100);
    // 50,000 lines of ~75 bytes stay under the 10 MB json-file rotation of this host.
    let lines: usize = env_or("NEXUS_BENCH_LINES", 50_000);
    let rounds: usize = env_or("NEXUS_BENCH_ROUNDS", 5);
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    tokio.block_on(async {
        assert!(docker().await.is_some(), "Docker and nexus-test/busybox:latest are required");
        let dir = tempfile::tempdir().unwrap();
        let node = NodeId::new();
        let _cleanup = Cleanup(node);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut config = config(dir.path(), node, addr);
        config.console_lines_per_second = 0;
        // Section 3 opens 500 consoles on one server, section 2 up to 100, with the node token.
        config.console_max_per_server = 600;
        config.console_max_total = 1024;
        config.console_max_node_token = 1024;
        config.log_level = "warn".into();
        config.worker_threads = env_or("NEXUS_BENCH_WORKERS", 1);
        let config_path = dir.path().join("wings.toml");
        std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
        let c = Client::new(addr);

        // 1. Idle.
        let mut daemon = Wings::spawn(&config_path, Stdio::inherit());
        c.wait_up(T).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = daemon.rss();

        // 2 + 3. One chatty server.
        let spec = chatty_spec();
        let id = spec.id;
        assert_eq!(c.post("/api/servers", serde_json::to_value(&spec).unwrap()).await.0, 201);
        assert_eq!(c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "start" })).await.0, 204);
        c.wait_state(id, "running", T).await;
        // Each side of each round runs in a fresh container (a restart): Docker rotates the
        // json-file log at 10 MB on this host and `docker logs -f` can stall across a rotation,
        // so every burst must fit in one log file.
        let mut delivery = Vec::new();
        for clients in [1usize, 10, 100] {
            // At most ~1M messages a burst, so 100 clients stay quick on two cores.
            let n = lines.min(1_000_000 / clients);
            let (mut ws_rates, mut docker_rates, mut skipped_total) = (Vec::new(), Vec::new(), 0u64);
            for round in 0..=rounds {
                let ws_first = round % 2 == 0;
                for ws in [ws_first, !ws_first] {
                    restart(&c, id).await;
                    let tag = format!("c{clients}r{round}{}", if ws { "w" } else { "d" });
                    // Round 0 warms up (page cache, allocator) and is not counted.
                    let n = if round == 0 { n / 10 } else { n };
                    if ws {
                        let (elapsed, received, skipped) = burst_ws(&c, id, clients, n, &tag).await;
                        if round > 0 {
                            skipped_total += skipped;
                            ws_rates.push(received as f64 / elapsed.as_secs_f64());
                        }
                    } else {
                        let container = node_containers(node, true).pop().unwrap();
                        let (elapsed, received) = burst_docker(&c, id, &container, clients, n, &tag).await;
                        assert_eq!(received, n * clients, "docker logs -f lost lines");
                        if round > 0 {
                            docker_rates.push(received as f64 / elapsed.as_secs_f64());
                        }
                    }
                }
            }
            let sent = (n * clients * rounds) as f64;
            delivery.push((clients, n, median(&mut ws_rates), median(&mut docker_rates), skipped_total as f64 / sent));
        }

        // 3. The API next to 500 console sockets on the busy server.
        restart(&c, id).await;
        let before_sockets = daemon.rss();
        let mut sockets = Vec::new();
        for _ in 0..500 {
            sockets.push(console(&c.base, id, None).await);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let per_socket = daemon.rss().saturating_sub(before_sockets) / 500;
        let (api_latency, load_received) = api_under_load(&c, id, sockets, lines).await;
        let mut api_latency = api_latency;
        let rss_after_bursts = daemon.rss();
        restart(&c, id).await;
        let mut socket = console(&c.base, id, None).await;
        let mut ws_latency = ping_ws(&mut socket, 500).await;
        drop(socket);
        let container = node_containers(node, true).pop().unwrap();
        let mut docker_latency = ping_docker(&c, id, &container, 200).await;
        let (status, _) = c.call(reqwest::Method::DELETE, &format!("/api/servers/{id}"), None).await;
        assert_eq!(status, 204);
        daemon.terminate(T);

        // 4. Many servers, fresh daemon.
        let mut daemon = Wings::spawn(&config_path, Stdio::inherit());
        c.wait_up(T).await;
        let started = Instant::now();
        let ids = start_many(&c, servers).await;
        let start_all = started.elapsed();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let many = daemon.rss();
        daemon.terminate(T);
        let mut daemon = Wings::spawn(&config_path, Stdio::inherit());
        c.wait_up(T).await;
        for id in &ids {
            c.wait_state(*id, "running", T).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let adopted = daemon.rss();
        daemon.terminate(T);

        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "nexus-wings benchmark (release build, worker_threads = {}, {} cores)",
            config.worker_threads,
            std::thread::available_parallelism().map(usize::from).unwrap_or(1)
        );
        println!("  idle RSS                         {:>8.1} MiB   (goal <= 10 MiB: {})", mb(idle), verdict(idle <= 10 << 20));
        println!(
            "  RSS, {servers} busybox servers running {:>6.1} MiB   (goal <= 40 MiB: {}); started in {:.1} s",
            mb(many),
            verdict(many <= 40 << 20),
            start_all.as_secs_f64()
        );
        println!("  RSS, {servers} servers re-adopted      {:>6.1} MiB", mb(adopted));
        println!("  RSS after console bursts         {:>8.1} MiB", mb(rss_after_bursts));
        println!("  console delivery, lines received per second summed over k clients (80-byte lines, throttle off):");
        println!("    {:>4}  {:>8}  {:>14}  {:>14}  {:>6}  {:>8}", "k", "lines", "WebSocket", "docker logs -f", "ratio", "skipped");
        for (clients, n, ws, docker, skipped) in &delivery {
            println!(
                "    {clients:>4}  {n:>8}  {ws:>12.0}/s  {docker:>12.0}/s  {:>6.2}  {:>7.1} %",
                ws / docker,
                skipped * 100.0
            );
        }
        println!(
            "  API next to 500 console sockets on a server printing {lines} lines: GET /api/system p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests); the sockets received {load_received} lines",
            ms(percentile(&mut api_latency, 0.50)),
            ms(percentile(&mut api_latency, 0.99)),
            ms(percentile(&mut api_latency, 1.0)),
            api_latency.len()
        );
        println!("  resident memory per idle console socket: {:.1} KiB", per_socket as f64 / 1024.0);
        println!(
            "  line latency, command -> echoed line over the WebSocket: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} pings)",
            ms(percentile(&mut ws_latency, 0.50)),
            ms(percentile(&mut ws_latency, 0.99)),
            ms(percentile(&mut ws_latency, 1.0)),
            ws_latency.len()
        );
        println!(
            "  line latency, POST /commands -> line in docker logs -f: p50 {:.2} ms, p99 {:.2} ms ({} pings)",
            ms(percentile(&mut docker_latency, 0.50)),
            ms(percentile(&mut docker_latency, 0.99)),
            docker_latency.len()
        );
    });
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A server that answers `burst <n> <tag>` with n 80-byte lines and `END <tag>`, and
/// `ping <i>` with `pong <i>`.
fn chatty_spec() -> ServerSpec {
    let mut spec = busybox_spec();
    spec.startup = concat!(
        "echo ready; while read cmd n tag; do case $cmd in ",
        "burst) awk -v n=$n -v t=$tag 'BEGIN { pad = sprintf(\"%60s\", \"\"); gsub(/ /, \"x\", pad); ",
        "for (i = 1; i <= n; i++) printf \"%s %8d %s\\n\", t, i, pad; print \"END \" t }';; ",
        "ping) echo \"pong $n\";; esac; done"
    )
    .into();
    spec.done = vec![DoneMatcher::Substring("ready".into())];
    spec.stop = StopMethod::Signal(nexus_core::model::StopSignal::Kill);
    spec.limits.memory_mb = 256;
    spec.limits.pids = 256;
    spec
}

/// One burst read by `clients` WebSockets reading as fast as they can: (elapsed until the
/// last one saw `END`, lines received by all, lines skipped by lag).
async fn burst_ws(
    c: &Client,
    id: nexus_core::ids::ServerId,
    clients: usize,
    n: usize,
    tag: &str,
) -> (Duration, usize, u64) {
    let mut sockets = Vec::with_capacity(clients);
    for _ in 0..clients {
        sockets.push(console(&c.base, id, None).await);
    }
    let readers: Vec<_> = sockets.into_iter().map(|socket| tokio::spawn(read_burst(socket, tag.to_owned()))).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (status, _) =
        c.post(&format!("/api/servers/{id}/commands"), json!({ "command": format!("burst {n} {tag}") })).await;
    assert_eq!(status, 204);
    let (mut received, mut skipped) = (0usize, 0u64);
    for reader in readers {
        let (r, s) = reader.await.unwrap();
        received += r;
        skipped += s;
    }
    (started.elapsed(), received, skipped)
}

/// Reads one socket until `END <tag>`: (lines of the burst received, lines skipped by lag).
async fn read_burst(mut socket: Socket, tag: String) -> (usize, u64) {
    let prefix = format!("{tag} ");
    let end = format!("END {tag}");
    let (mut received, mut skipped) = (0usize, 0u64);
    loop {
        let message = tokio::time::timeout(T, socket.next()).await.expect("burst timed out").unwrap().unwrap();
        let Message::Text(text) = message else { continue };
        // Cheap checks first: most messages are lines of this burst.
        if text.contains(&prefix) {
            received += 1;
        } else if text.contains(&end) {
            return (received, skipped);
        } else if text.contains("\"notice\"") && text.contains("skipped") {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            skipped +=
                value["data"].as_str().and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
}

/// Starts a burst of `n` lines read by every socket, and times `GET /api/system` every 10 ms
/// until every socket saw the end: (latencies, lines the sockets received).
async fn api_under_load(
    c: &Client,
    id: nexus_core::ids::ServerId,
    sockets: Vec<Socket>,
    n: usize,
) -> (Vec<Duration>, usize) {
    let tag = "load".to_owned();
    let readers: Vec<_> = sockets.into_iter().map(|socket| tokio::spawn(read_burst(socket, tag.clone()))).collect();
    let (status, _) =
        c.post(&format!("/api/servers/{id}/commands"), json!({ "command": format!("burst {n} {tag}") })).await;
    assert_eq!(status, 204);
    let mut latencies = Vec::new();
    while readers.iter().any(|r| !r.is_finished()) {
        let asked = Instant::now();
        let (status, _) = c.get("/api/system").await;
        assert_eq!(status, 200);
        latencies.push(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut received = 0;
    for reader in readers {
        received += reader.await.unwrap().0;
    }
    (latencies, received)
}

/// Restarts the server (a new container) and waits until it runs.
async fn restart(c: &Client, id: nexus_core::ids::ServerId) {
    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "restart" })).await;
    assert_eq!(status, 204, "{body}");
    c.wait_state(id, "running", T).await;
}

/// `docker logs -f --since now` on the container, started and ready before returning.
async fn docker_logs(
    container: &str,
) -> (tokio::process::Child, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) {
    let since = chrono::Utc::now().timestamp().to_string();
    let mut child = tokio::process::Command::new("docker")
        .args(["logs", "-f", "--since", &since, container])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Give the CLI time to connect before the burst starts (not timed).
    tokio::time::sleep(Duration::from_millis(100)).await;
    (child, tokio::io::BufReader::with_capacity(64 * 1024, stdout).lines())
}

/// One burst read by `clients` `docker logs -f` followers: (elapsed until the last one saw
/// `END`, lines received by all).
async fn burst_docker(
    c: &Client,
    id: nexus_core::ids::ServerId,
    container: &str,
    clients: usize,
    n: usize,
    tag: &str,
) -> (Duration, usize) {
    let mut followers = Vec::with_capacity(clients);
    for _ in 0..clients {
        followers.push(docker_logs(container).await);
    }
    let prefix = format!("{tag} ");
    let end = format!("END {tag}");
    let readers: Vec<_> = followers
        .into_iter()
        .map(|(mut child, mut lines)| {
            let (prefix, end) = (prefix.clone(), end.clone());
            tokio::spawn(async move {
                let mut received = 0;
                loop {
                    let line = tokio::time::timeout(T, lines.next_line())
                        .await
                        .expect("docker logs timed out")
                        .unwrap()
                        .unwrap();
                    if line.starts_with(&prefix) {
                        received += 1;
                    } else if line == end {
                        let _ = child.kill().await;
                        return received;
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let (status, _) =
        c.post(&format!("/api/servers/{id}/commands"), json!({ "command": format!("burst {n} {tag}") })).await;
    assert_eq!(status, 204);
    let mut received = 0;
    for reader in readers {
        received += reader.await.unwrap();
    }
    (started.elapsed(), received)
}

async fn ping_ws(socket: &mut Socket, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        send_command(socket, &format!("ping {i}")).await;
        let want = format!("pong {i}\"");
        loop {
            let message = tokio::time::timeout(T, socket.next()).await.unwrap().unwrap().unwrap();
            if let Message::Text(text) = message {
                if text.contains(&want) {
                    break;
                }
            }
        }
        times.push(started.elapsed());
    }
    times
}

async fn ping_docker(c: &Client, id: nexus_core::ids::ServerId, container: &str, n: usize) -> Vec<Duration> {
    let (mut child, mut lines) = docker_logs(container).await;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let (status, _) =
            c.post(&format!("/api/servers/{id}/commands"), json!({ "command": format!("ping d{i}") })).await;
        assert_eq!(status, 204);
        let want = format!("pong d{i}");
        loop {
            let line = tokio::time::timeout(T, lines.next_line()).await.unwrap().unwrap().unwrap();
            if line == want {
                break;
            }
        }
        times.push(started.elapsed());
    }
    let _ = child.kill().await;
    times
}

/// Creates and starts `n` busybox servers, 8 at a time, and waits until all run.
async fn start_many(c: &Client, n: usize) -> Vec<nexus_core::ids::ServerId> {
    let specs: Vec<ServerSpec> = (0..n).map(|_| busybox_spec()).collect();
    let ids: Vec<_> = specs.iter().map(|s| s.id).collect();
    futures::stream::iter(specs)
        .for_each_concurrent(8, |spec| async move {
            let id = spec.id;
            let (status, body) = c.post("/api/servers", serde_json::to_value(&spec).unwrap()).await;
            assert_eq!(status, 201, "{body}");
            let (status, body) =
                c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "start" })).await;
            assert_eq!(status, 204, "{body}");
        })
        .await;
    for id in &ids {
        c.wait_state(*id, "running", T).await;
    }
    ids
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort();
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index.min(values.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
