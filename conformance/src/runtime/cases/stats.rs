//! Resource statistics.

use crate::runtime::Ctx;
use crate::runtime::context::{expect_line, free_port};
use futures::StreamExt;
use nexus_core::model::{ServerLimits, StopSignal};
use nexus_core::runtime::{PortBinding, ResourceStats};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `stats` yields samples with CPU use (a busy loop shows), memory use and limit, pids and
/// network counters (datagrams sent to a published port count as received); the stream ends
/// once the container stops.
pub async fn stats_report_cpu_memory_pids_network(ctx: Ctx) {
    let port = free_port();
    let mut spec = ctx.spec("echo ready; while :; do :; done");
    spec.limits = ServerLimits { memory_mb: 128, swap_mb: 0, ..ServerLimits::default() };
    spec.ports = vec![PortBinding { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port }];
    let (id, mut console) = ctx.run_attached(&spec).await;
    expect_line(&mut console.output, "ready").await;
    let mut stats = ctx.runtime.stats(&id).await.expect("stats");

    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a UDP socket");
            for _ in 0..600 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = socket.send_to(&[0u8; 512], ("127.0.0.1", port));
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let complete =
        |s: &ResourceStats| s.cpu_percent > 5.0 && s.memory_bytes > 0 && s.pids >= 1 && s.network_rx_bytes > 0;
    let mut samples = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(sample) = stats.next().await {
            let sample = sample.expect("stats sample");
            let done = complete(&sample);
            samples.push(sample);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    sender.await.expect("UDP sender");
    let last = samples.last().cloned().unwrap_or_default();
    assert!(
        matches!(outcome, Ok(true)),
        "no sample with cpu > 5%, memory, pids and received bytes within 30 s ({} samples, last {last:?})",
        samples.len()
    );
    assert_eq!(last.memory_limit_bytes, 128 * 1024 * 1024, "memory limit in the sample");
    assert!(samples.iter().all(|s| s.cpu_percent.is_finite() && s.cpu_percent >= 0.0), "cpu % sane: {samples:?}");

    ctx.runtime.kill(&id, StopSignal::Kill).await.expect("kill");
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(sample) = stats.next().await {
            sample.expect("stats sample after kill");
        }
    })
    .await;
    assert!(ended.is_ok(), "the stats stream did not end within 15 s of the container stopping");
}
