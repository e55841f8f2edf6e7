//! Resource samples from Docker's stats stream.

use crate::error::{About, engine_error};
use bollard::Docker;
use bollard::models::{ContainerCpuStats, ContainerStatsResponse};
use bollard::query_parameters::{StatsOptionsBuilder, WaitContainerOptionsBuilder};
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use nexus_core::runtime::{ResourceStats, RuntimeError};
use nexus_engine::stats::{CpuCounters, CpuTracker};

/// CPU counters of one sample: the container's total CPU time against the host's (all
/// cores), in ns.
fn cpu_counters(stats: &ContainerCpuStats) -> Option<CpuCounters> {
    let used = stats.cpu_usage.as_ref()?.total_usage?;
    let reference = stats.system_cpu_usage?;
    (reference > 0).then_some(CpuCounters { used, reference })
}

/// The samples of container `id` until it stops.
///
/// Docker keeps a stats stream of a stopped container open on some versions (sending zeroed
/// samples), so the stream is also cut when the container's wait returns.
pub(crate) fn stream(docker: Docker, id: String) -> BoxStream<'static, Result<ResourceStats, RuntimeError>> {
    let options = StatsOptionsBuilder::default().stream(true).one_shot(false).build();
    let raw = docker.stats(&id, Some(options));
    let stopped = {
        let docker = docker.clone();
        let id = id.clone();
        async move {
            let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
            // Any answer (an exit code, an error, a removed container) means no more samples.
            let _ = docker.wait_container(&id, Some(options)).next().await;
        }
    };
    let mut cpu = CpuTracker::new();
    raw.take_until(Box::pin(stopped))
        .filter_map(move |item| {
            let sample = match item {
                Ok(raw) => sample(&raw, &mut cpu).map(Ok),
                Err(error) => Some(Err(engine_error(error, About::Container(&id)))),
            };
            futures::future::ready(sample)
        })
        .boxed()
}

/// Converts one raw sample, using the previous sample's CPU counters (or Docker's `precpu`)
/// for the CPU delta. `None` for the zeroed samples Docker sends for a stopped container.
fn sample(raw: &ContainerStatsResponse, cpu: &mut CpuTracker) -> Option<ResourceStats> {
    let at = raw.read.as_deref().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc));
    // Docker's "no data" timestamp is the zero time, year 1.
    if at.is_some_and(|t| t.timestamp() < 0) {
        return None;
    }
    let online_cpus = raw
        .cpu_stats
        .as_ref()
        .and_then(|c| {
            c.online_cpus
                .map(u64::from)
                .or_else(|| c.cpu_usage.as_ref().and_then(|u| u.percpu_usage.as_ref()).map(|p| p.len() as u64))
        })
        .filter(|n| *n > 0)
        .unwrap_or(1);
    // The host counter spans every online core, so the share of it is scaled by their count.
    let cpu_percent = cpu.percent(
        raw.cpu_stats.as_ref().and_then(cpu_counters),
        raw.precpu_stats.as_ref().and_then(cpu_counters),
        online_cpus,
    );

    let memory = raw.memory_stats.as_ref();
    // Page cache that can be dropped is not "in use" (the `docker stats` convention):
    // cgroup v1 reports it as total_inactive_file, v2 as inactive_file.
    let inactive = memory
        .and_then(|m| m.stats.as_ref())
        .and_then(|s| s.get("total_inactive_file").or_else(|| s.get("inactive_file")).copied())
        .unwrap_or(0);
    let (network_rx_bytes, network_tx_bytes) = raw
        .networks
        .iter()
        .flat_map(|n| n.values())
        .fold((0, 0), |(rx, tx), n| (rx + n.rx_bytes.unwrap_or(0), tx + n.tx_bytes.unwrap_or(0)));
    let (disk_read_bytes, disk_write_bytes) =
        raw.blkio_stats.as_ref().and_then(|b| b.io_service_bytes_recursive.as_ref()).into_iter().flatten().fold(
            (0, 0),
            |(read, write), entry| {
                let value = entry.value.unwrap_or(0);
                match entry.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("read") => (read + value, write),
                    Some("write") => (read, write + value),
                    _ => (read, write),
                }
            },
        );
    Some(ResourceStats {
        cpu_percent,
        memory_bytes: memory.and_then(|m| m.usage).unwrap_or(0).saturating_sub(inactive),
        memory_limit_bytes: memory.and_then(|m| m.limit).unwrap_or(0),
        network_rx_bytes,
        network_tx_bytes,
        disk_read_bytes,
        disk_write_bytes,
        pids: raw.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
        disk_bytes: 0,
        at: Some(at.unwrap_or_else(Utc::now)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuUsage, ContainerMemoryStats, ContainerNetworkStats,
        ContainerPidsStats,
    };
    use std::collections::HashMap;

    fn raw(container: u64, system: u64) -> ContainerStatsResponse {
        ContainerStatsResponse {
            read: Some("2024-05-01T10:00:00.5Z".into()),
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage { total_usage: Some(container), ..Default::default() }),
                system_cpu_usage: Some(system),
                online_cpus: Some(2),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(1000),
                limit: Some(4096),
                stats: Some(HashMap::from([("total_inactive_file".to_owned(), 300)])),
                ..Default::default()
            }),
            networks: Some(HashMap::from([
                (
                    "eth0".to_owned(),
                    ContainerNetworkStats { rx_bytes: Some(10), tx_bytes: Some(20), ..Default::default() },
                ),
                (
                    "eth1".to_owned(),
                    ContainerNetworkStats { rx_bytes: Some(1), tx_bytes: Some(2), ..Default::default() },
                ),
            ])),
            pids_stats: Some(ContainerPidsStats { current: Some(3), limit: None }),
            blkio_stats: Some(ContainerBlkioStats {
                io_service_bytes_recursive: Some(vec![
                    ContainerBlkioStatEntry { op: Some("Read".into()), value: Some(5), ..Default::default() },
                    ContainerBlkioStatEntry { op: Some("write".into()), value: Some(7), ..Default::default() },
                    ContainerBlkioStatEntry { op: Some("Total".into()), value: Some(12), ..Default::default() },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn converts_counters_and_cpu_deltas() {
        let mut cpu = CpuTracker::new();
        let first = sample(&raw(1_000, 10_000), &mut cpu).expect("sample");
        assert_eq!(first.cpu_percent, 0.0, "no delta yet");
        assert_eq!((first.memory_bytes, first.memory_limit_bytes), (700, 4096));
        assert_eq!((first.network_rx_bytes, first.network_tx_bytes), (11, 22));
        assert_eq!((first.disk_read_bytes, first.disk_write_bytes), (5, 7));
        assert_eq!(first.pids, 3);
        assert_eq!(first.at.map(|t| t.timestamp()), Some(1_714_557_600));
        // Half of the host's CPU time on a 2-CPU host is one full core.
        let second = sample(&raw(6_000, 20_000), &mut cpu).expect("sample");
        assert!((second.cpu_percent - 100.0).abs() < 1e-9, "{}", second.cpu_percent);
    }

    #[test]
    fn zeroed_samples_of_stopped_containers_are_skipped() {
        let mut stopped = raw(0, 0);
        stopped.read = Some("0001-01-01T00:00:00Z".into());
        assert_eq!(sample(&stopped, &mut CpuTracker::new()), None);
    }
}
