//! Resource samples from libpod's stats stream.

use crate::error::About;
use crate::libpod::Libpod;
use bytes::{Buf, BytesMut};
use chrono::DateTime;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use http_body_util::BodyExt;
use nexus_core::runtime::{ResourceStats, RuntimeError};
use nexus_engine::stats::{CpuCounters, CpuTracker};
use podman_api::models::ContainerStats;
use serde::Deserialize;

/// Seconds between samples.
const INTERVAL_SECONDS: u32 = 1;

/// One line of the stream: libpod reports all requested containers at once.
#[derive(Debug, Deserialize)]
struct Report {
    #[serde(rename = "Error")]
    error: Option<serde_json::Value>,
    #[serde(rename = "Stats", default)]
    stats: Option<Vec<ContainerStats>>,
}

/// The samples of container `id` until `stopped` completes.
///
/// libpod keeps the stream of a stopped container open, sending zeroed samples, so the
/// stream is cut when the container's wait returns (`stopped`) and zeroed samples are skipped.
pub(crate) async fn stream(
    libpod: &Libpod,
    id: String,
    stopped: BoxFuture<'static, ()>,
) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError> {
    let path = format!("/containers/stats?containers={id}&stream=true&interval={INTERVAL_SECONDS}");
    let body = libpod.get_stream(&path, About::Container(&id)).await?;
    let state = (body, BytesMut::new(), CpuTracker::new(), id);
    let samples = futures::stream::unfold(Some(state), |state| async move {
        let (mut body, mut pending, mut cpu, id) = state?;
        loop {
            // A whole line is a whole report; anything after it waits for the next frame.
            if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line = pending.split_to(end + 1);
                let line = &line[..end];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match parse(line, &mut cpu) {
                    Ok(Some(sample)) => return Some((Ok(sample), Some((body, pending, cpu, id)))),
                    Ok(None) => continue,
                    Err(message) => {
                        return Some((Err(RuntimeError::Engine(format!("stats of {id}: {message}"))), None));
                    }
                }
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            pending.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
                Some(Err(error)) => {
                    return Some((Err(RuntimeError::Engine(format!("stats of {id}: {error}"))), None));
                }
                None => return None,
            }
        }
    });
    Ok(samples.take_until(stopped).boxed())
}

/// Converts one report line; `None` for the zeroed samples of a stopped container.
fn parse(line: &[u8], cpu: &mut CpuTracker) -> Result<Option<ResourceStats>, String> {
    let report: Report = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if let Some(error) = report.error.filter(|e| !e.is_null()) {
        return Err(error.to_string());
    }
    let Some(raw) = report.stats.into_iter().flatten().next() else { return Ok(None) };
    let system = raw.system_nano.unwrap_or(0);
    if system == 0 {
        return Ok(None);
    }
    // `SystemNano` is wall-clock time, so the CPU share of it is already percent of one core.
    let now = raw.cpu_nano.map(|used| CpuCounters { used, reference: system });
    let cpu_percent = cpu.percent(now, None, 1);
    Ok(Some(ResourceStats {
        cpu_percent,
        memory_bytes: raw.mem_usage.unwrap_or(0),
        memory_limit_bytes: raw.mem_limit.unwrap_or(0),
        network_rx_bytes: raw.net_input.unwrap_or(0),
        network_tx_bytes: raw.net_output.unwrap_or(0),
        disk_read_bytes: raw.block_input.unwrap_or(0),
        disk_write_bytes: raw.block_output.unwrap_or(0),
        pids: raw.pi_ds.unwrap_or(0),
        disk_bytes: 0,
        at: i64::try_from(system).ok().map(DateTime::from_timestamp_nanos),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(cpu_nano: u64, system_nano: u64) -> String {
        format!(
            r#"{{"Error":null,"Stats":[{{"CPU":1.5,"CPUNano":{cpu_nano},"SystemNano":{system_nano},"MemUsage":700,"MemLimit":4096,"NetInput":11,"NetOutput":22,"BlockInput":5,"BlockOutput":7,"PIDs":3}}]}}"#
        )
    }

    #[test]
    fn converts_counters_and_cpu_deltas() {
        let mut cpu = CpuTracker::new();
        let first = parse(line(1_000_000, 1_714_557_600_000_000_000).as_bytes(), &mut cpu);
        let at = DateTime::from_timestamp(1_714_557_600, 0);
        let expected = ResourceStats {
            cpu_percent: 0.0, // no delta yet
            memory_bytes: 700,
            memory_limit_bytes: 4096,
            network_rx_bytes: 11,
            network_tx_bytes: 22,
            disk_read_bytes: 5,
            disk_write_bytes: 7,
            pids: 3,
            disk_bytes: 0,
            at,
        };
        assert_eq!(first, Ok(Some(expected)));
        // Half a second of CPU in one second of wall-clock time.
        let second =
            parse(line(501_000_000, 1_714_557_601_000_000_000).as_bytes(), &mut cpu).expect("ok").expect("sample");
        assert!((second.cpu_percent - 50.0).abs() < 1e-9, "{}", second.cpu_percent);
    }

    #[test]
    fn zeroed_samples_are_skipped_and_errors_reported() {
        let mut cpu = CpuTracker::new();
        assert_eq!(parse(line(0, 0).as_bytes(), &mut cpu), Ok(None));
        assert!(parse(br#"{"Error":{"message":"gone"},"Stats":null}"#, &mut cpu).is_err());
        assert!(parse(b"{not json", &mut cpu).is_err());
    }
}
